/* test_ancra.c: ANCRA -- the reverse-attention operator and graph nodes (core/ops/ra.h), the
 * head loss with the asymmetric negative contrast pair term and the negative selection
 * (losses/ancra.h), the RA archs (core/models/ancra_models.c) and their CUDA twins.
 * Oracles (style rule 21):
 *   (b) 4-point central finite differences of independent double implementations written
 *       here: a two-RA-block graph (shared fc, aux heads seeded, labels / argmax /
 *       straight-through masks) and the head loss; the float analytic gradients must match;
 *   (c) invariants of the negative selection (other class, the rule's argmax, no-candidate
 *       fallback, identical draws for identical seeds);
 *   (torch) tests/torch/ancra_ref.py: the official trades_loss_with_ANC / loss_fn written in
 *       PyTorch float64 on our logits, and the official ResNet_RA / RA_Block forward in
 *       train (label mask) and eval (argmax mask) mode with autograd, on our checkpoint;
 *   (a) CUDA vs CPU on the same inputs (skip, 77, without a GPU).
 * Tolerances: c * eps_f32 * sqrt(K) scaled by each quantity's magnitude (al_tol_f32). */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checkpoint.h"
#include "core/ctx.h"
#include "core/ops/ra.h"
#include "harness/check.h"
#include "losses/ancra.h"

/* ================================================================ RA graph vs double FD */

/* The graph under test: x (N, 4, 2, 2) -> [pool -> fc] p1 -> ra -> z1' -> [pool -> fc] p2 ->
 * ra -> z2' -> pool -> fc -> logits, one fc (W, b) shared by the three heads and both masks;
 * objective f = <R0, logits> + <R1, p1> + <R2, p2>. */
enum { G_N_MAX = 4, G_C = 4, G_S = 4, G_K = 5 }; /* C <= 4: the input normalisation */
enum { MODE_TRAIN = 0, MODE_PRED = 1, MODE_ST = 2 };

typedef struct gref {
    int n, mode;
    const int32_t *labels;
    double r0[G_N_MAX * G_K], r1[G_N_MAX * G_K], r2[G_N_MAX * G_K];
    /* recorded at theta0: selected classes, aux logits and W (straight-through surrogate) */
    int k[2][G_N_MAX];
    double p0[2][G_N_MAX * G_K], w0[G_K * G_C];
    int record;
} gref;

static void g_head(const double *z, const double *w, const double *b, int n, double *p) {
    for (int i = 0; i < n; i++)
        for (int j = 0; j < G_K; j++) {
            double s = b[j];
            for (int c = 0; c < G_C; c++) {
                double m = 0;
                for (int q = 0; q < G_S; q++) m += z[(i * G_C + c) * G_S + q];
                s += w[j * G_C + c] * (m / G_S);
            }
            p[i * G_K + j] = s;
        }
}

static void softmax_d(const double *z, int k, double *p) {
    double m = z[0], s = 0;
    for (int j = 1; j < k; j++) m = z[j] > m ? z[j] : m;
    for (int j = 0; j < k; j++) s += (p[j] = exp(z[j] - m));
    for (int j = 0; j < k; j++) p[j] /= s;
}

/* z' = z * mask; mask per the mode (see the header comment of ra.h). */
static void g_ra(gref *g, int blk, const double *z, const double *w, const double *p, double *zo) {
    for (int i = 0; i < g->n; i++) {
        int kk;
        if (g->record) {
            if (g->mode == MODE_TRAIN) {
                kk = g->labels[i];
            } else {
                kk = 0;
                for (int j = 1; j < G_K; j++)
                    if (p[i * G_K + j] > p[i * G_K + kk]) kk = j;
            }
            g->k[blk][i] = kk;
            memcpy(g->p0[blk] + i * G_K, p + i * G_K, G_K * sizeof(double));
        }
        kk = g->k[blk][i];
        double s[G_K] = {0}, s0[G_K] = {0};
        if (g->mode == MODE_ST) {
            softmax_d(p + i * G_K, G_K, s);
            softmax_d(g->p0[blk] + i * G_K, G_K, s0);
        }
        for (int c = 0; c < G_C; c++) {
            double mk = w[kk * G_C + c];
            if (g->mode == MODE_ST)
                for (int j = 0; j < G_K; j++) mk += (s[j] - s0[j]) * g->w0[j * G_C + c];
            for (int q = 0; q < G_S; q++)
                zo[(i * G_C + c) * G_S + q] = z[(i * G_C + c) * G_S + q] * mk;
        }
    }
}

/* theta = [x (n C S), W (K C), b (K)] */
static double g_f(const double *th, void *user) {
    gref *g = user;
    const int n = g->n;
    const double *x = th, *w = th + n * G_C * G_S, *b = w + G_K * G_C;
    double p1[G_N_MAX * G_K], p2[G_N_MAX * G_K], lg[G_N_MAX * G_K];
    double z1[G_N_MAX * G_C * G_S], z2[G_N_MAX * G_C * G_S];
    if (g->record) memcpy(g->w0, w, sizeof g->w0);
    g_head(x, w, b, n, p1);
    g_ra(g, 0, x, w, p1, z1);
    g_head(z1, w, b, n, p2);
    g_ra(g, 1, z1, w, p2, z2);
    g_head(z2, w, b, n, lg);
    double f = 0;
    for (int i = 0; i < n * G_K; i++) f += g->r0[i] * lg[i] + g->r1[i] * p1[i] + g->r2[i] * p2[i];
    return f;
}

/* Smallest top-2 gap of the aux logits at theta0 (argmax must not flip inside the stencil). */
static double g_min_gap(const gref *g) {
    double gap = INFINITY;
    for (int b = 0; b < 2; b++)
        for (int i = 0; i < g->n; i++) {
            const double *p = g->p0[b] + i * G_K;
            double a = -INFINITY, s = -INFINITY;
            for (int j = 0; j < G_K; j++) {
                if (p[j] > a) {
                    s = a;
                    a = p[j];
                } else if (p[j] > s) {
                    s = p[j];
                }
            }
            if (a - s < gap) gap = a - s;
        }
    return gap;
}

static al_model *make_ra_graph(al_ctx *ctx, int n) {
    al_model *m = al_model_new("ra-test", G_K, G_C, 2, 2);
    int aux;
    int z = al_ra_attach(m, "b1", al_model_input(m), &aux);
    z = al_ra_attach(m, "b2", z, &aux);
    int feat = al_model_avgpool(m, z, 2, 2);
    int lg = al_model_linear(m, "fc", feat, G_K, 1);
    al_model_set_output(m, lg, feat);
    al_ra_bind_fc(m, al_model_find_param(m, "fc.weight"), al_model_find_param(m, "fc.bias"));
    AL_ASSERT(al_model_setup(ctx, m, n, 1) == AL_OK, "%s", al_errmsg());
    return m;
}

static int ra_graph_case(al_ctx *ctx, int n, int mode, uint64_t id) {
    const int nx = n * G_C * G_S, nt = nx + G_K * G_C + G_K;
    al_model *m = make_ra_graph(ctx, n);
    const int wi = al_model_find_param(m, "fc.weight"), bi = al_model_find_param(m, "fc.bias");
    gref g;
    memset(&g, 0, sizeof g);
    g.n = n;
    g.mode = mode;
    int32_t labels[G_N_MAX];
    double *th = malloc(nt * sizeof(double)), *fd = malloc(nt * sizeof(double));
    float *xf = malloc(nx * sizeof(float)), *dx = malloc(nx * sizeof(float));
    float r[3][G_N_MAX * G_K];
    /* draw until every argmax is well separated (eval modes) */
    for (uint64_t tries = 0;; tries++) {
        al_test_fill_d(th, nt, id + 10 * tries, -1.0, 1.0);
        for (int i = 0; i < n; i++) labels[i] = (int32_t)((id + 3 * i + tries) % G_K);
        g.labels = labels;
        g.record = 1;
        g_f(th, &g);
        g.record = 0;
        if (mode == MODE_TRAIN || g_min_gap(&g) > 0.05) break;
        AL_EXPECT(tries < 50, "no well-separated draw");
    }
    for (int s = 0; s < 3; s++) al_test_fill(r[s], (size_t)n * G_K, id + 100 + s, -1.0f, 1.0f);
    for (int i = 0; i < n * G_K; i++) g.r0[i] = r[0][i], g.r1[i] = r[1][i], g.r2[i] = r[2][i];
    /* the model gets the float-rounded theta; the reference differentiates those values */
    for (int i = 0; i < nt; i++) th[i] = (double)(float)th[i];
    for (int i = 0; i < nx; i++) xf[i] = (float)th[i];
    for (int i = 0; i < G_K * G_C; i++) al_param_data(m, wi)[i] = (float)th[nx + i];
    for (int i = 0; i < G_K; i++) al_param_data(m, bi)[i] = (float)th[nx + G_K * G_C + i];
    g.record = 1;
    const double f0 = g_f(th, &g);
    g.record = 0;
    al_fd_grad(g_f, &g, th, (size_t)nt, 1e-4, fd);

    al_ra_set_eval_mask(m, mode == MODE_ST ? AL_RA_MASK_FIXED : AL_RA_MASK_PREDICTED);
    al_fwd_opts o = {0, mode == MODE_TRAIN, 0, 0, 0, mode == MODE_TRAIN ? labels : NULL};
    AL_EXPECT(al_model_forward(ctx, m, xf, n, &o) == AL_OK, "%s", al_errmsg());
    const float *lg = al_model_logits(m, 0);
    const float *p1 = al_model_buffer(m, 0, m->aux_buf[0]), *p2 = al_model_buffer(m, 0, m->aux_buf[1]);
    double f = 0;
    for (int i = 0; i < n * G_K; i++) f += g.r0[i] * lg[i] + g.r1[i] * p1[i] + g.r2[i] * p2[i];
    al_bwd_seed seeds[3] = {{m->out_buf, r[0]}, {m->aux_buf[0], r[1]}, {m->aux_buf[1], r[2]}};
    AL_EXPECT(al_model_zero_grad(ctx, m) == AL_OK, "zero");
    AL_EXPECT(al_model_backward_seeds(ctx, m, 0, seeds, 3, AL_BWD_WEIGHTS | AL_BWD_INPUT, dx) ==
                  AL_OK,
              "%s", al_errmsg());
    char what[128];
    int bad = 0;
    const double tol = al_tol_f32(G_C * G_S * G_K);
    double scale = 1e-3;
    for (int i = 0; i < nt; i++) scale = fabs(fd[i]) > scale ? fabs(fd[i]) : scale;
    snprintf(what, sizeof what, "ra graph mode %d n=%d: objective", mode, n);
    bad |= al_check_close_d(what, &f, &f0, 1, tol * (1 + fabs(f0)), tol);
    snprintf(what, sizeof what, "ra graph mode %d n=%d: dx vs FD", mode, n);
    bad |= al_check_close_fd(what, dx, fd, (size_t)nx, tol * scale, tol);
    snprintf(what, sizeof what, "ra graph mode %d n=%d: d fc.weight vs FD", mode, n);
    bad |= al_check_close_fd(what, al_param_grad(m, wi), fd + nx, G_K * G_C, tol * scale * n, tol);
    snprintf(what, sizeof what, "ra graph mode %d n=%d: d fc.bias vs FD", mode, n);
    bad |= al_check_close_fd(what, al_param_grad(m, bi), fd + nx + G_K * G_C, G_K, tol * scale * n,
                             tol);
    /* the selected classes are the labels (train) or the aux argmax (eval) */
    const int32_t *sel = (const int32_t *)(m->slots[0].save + m->nodes[m->n_nodes - 3].save_offset);
    for (int i = 0; i < n; i++)
        AL_EXPECT(sel[i] == g.k[1][i], "block 2 example %d: class %d, reference %d", i, sel[i],
                  g.k[1][i]);
    free(th), free(fd), free(xf), free(dx);
    al_model_destroy(ctx, m);
    return bad;
}

static int case_ra_graph_fd(void) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 1) == AL_OK, "%s", al_errmsg());
    int bad = 0;
    for (int mode = 0; mode < 3; mode++) {
        bad |= ra_graph_case(&ctx, 1, mode, 1000 + 17 * mode); /* batch 1 */
        bad |= ra_graph_case(&ctx, 4, mode, 2000 + 17 * mode);
    }
    al_ctx_fini(&ctx);
    return bad;
}

/* ================================================================ RA op: shapes, modes, errors */

static int case_ra_op(void) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 2, 1) == AL_OK, "%s", al_errmsg());
    const int n = 3, c = 37, hw = 5, k = 7;
    const size_t nz = (size_t)n * c * hw;
    float *z = malloc(nz * 4), *dy = malloc(nz * 4), *y = malloc(nz * 4), *dz = malloc(nz * 4);
    float *w = malloc((size_t)k * c * 4), *p = malloc((size_t)n * k * 4), *dp = malloc((size_t)n * k * 4);
    float *dw = calloc((size_t)k * c, 4);
    int32_t sel[3], lab[3] = {6, 0, 6};
    al_test_fill(z, nz, 1, -1, 1);
    al_test_fill(dy, nz, 2, -1, 1);
    al_test_fill(w, (size_t)k * c, 3, -1, 1);
    al_test_fill(p, (size_t)n * k, 4, -3, 3);
    int bad = 0;
    /* labels: y = z * W[label]; dW rows of unused classes stay exactly 0; '+=' modes */
    AL_EXPECT(al_ra_forward(&ctx, n, c, hw, k, z, w, p, lab, y, sel) == AL_OK, "%s", al_errmsg());
    for (int i = 0; i < n; i++) AL_EXPECT(sel[i] == lab[i], "sel[%d] = %d", i, sel[i]);
    for (size_t e = 0; e < nz; e++) {
        const size_t i = e / ((size_t)c * hw), ch = (e / hw) % c;
        AL_EXPECT(y[e] == z[e] * w[(size_t)lab[i] * c + ch], "y[%zu]", e);
    }
    for (size_t e = 0; e < nz; e++) dz[e] = 1.0f;
    for (int e = 0; e < n * k; e++) dp[e] = 2.0f;
    AL_EXPECT(al_ra_backward(&ctx, n, c, hw, k, z, w, p, sel, dy, dz, 1, dw, dp, 1, 0) == AL_OK,
              "%s", al_errmsg());
    for (size_t e = 0; e < nz; e++) {
        const size_t i = e / ((size_t)c * hw), ch = (e / hw) % c;
        AL_EXPECT(dz[e] == 1.0f + dy[e] * w[(size_t)lab[i] * c + ch], "dz += at %zu", e);
    }
    for (int e = 0; e < n * k; e++) AL_EXPECT(dp[e] == 2.0f, "dp += 0 at %d", e);
    for (int j = 0; j < k; j++)
        for (int ch = 0; ch < c; ch++) {
            double ref = 0;
            for (int i = 0; i < n; i++)
                if (lab[i] == j)
                    for (int q = 0; q < hw; q++)
                        ref += (double)z[((size_t)i * c + ch) * hw + q] * dy[((size_t)i * c + ch) * hw + q];
            if (j != 0 && j != 6) AL_EXPECT(dw[j * c + ch] == 0.0f, "dw row %d untouched", j);
            bad |= al_check_close_fd("ra dW (labels)", dw + j * c + ch, &ref, 1, al_tol_f32(2 * hw), al_tol_f32(2 * hw));
        }
    /* '=' mode of dp without straight-through writes zeros */
    AL_EXPECT(al_ra_backward(&ctx, n, c, hw, k, z, w, p, sel, dy, NULL, 0, NULL, dp, 0, 0) == AL_OK,
              "%s", al_errmsg());
    for (int e = 0; e < n * k; e++) AL_EXPECT(dp[e] == 0.0f, "dp = 0 at %d", e);
    /* argmax with a tie (lowest index) and a NaN (wins, as torch.argmax) */
    p[0 * k + 2] = p[0 * k + 5] = 10.0f;
    p[1 * k + 4] = NAN;
    AL_EXPECT(al_ra_forward(&ctx, n, c, hw, k, z, w, p, NULL, y, sel) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(sel[0] == 2, "tie -> lowest index, got %d", sel[0]);
    AL_EXPECT(sel[1] == 4, "NaN -> its index, got %d", sel[1]);
    /* a label outside [0, K) names its index */
    lab[1] = 7;
    AL_EXPECT(al_ra_forward(&ctx, n, c, hw, k, z, w, p, lab, y, sel) == AL_ERR_VALUE, "bad label");
    AL_EXPECT(strstr(al_errmsg(), "index 1") != NULL, "message: %s", al_errmsg());
    al_clear_error();
    free(z), free(dy), free(y), free(dz), free(w), free(p), free(dp), free(dw);
    al_ctx_fini(&ctx);
    return bad;
}

/* ================================================================ head loss vs double FD */

typedef struct lref {
    int n, k, which; /* which: 0 = z_nat, 1 = z_adv, 2 = z_neg varies */
    const int32_t *y;
    const uint8_t *pair;
    double w, beta, zeta, alpha;
    const double *z[3];
    int c[G_N_MAX * 4], cq[G_N_MAX * 4]; /* argmax at theta0 (held: no flips in the stencil) */
} lref;

static double anc0(const double *p, const double *q, int k, int cp, int cq) {
    (void)k;
    return cp == cq ? sqrt(p[cp] * q[cq]) : 0.0;
}

/* The loss written the official way: on probabilities, KLDivLoss(log A, P) sum, loss_fn. The
 * detach in loss_fn is modelled by evaluating each ANC0 with one side frozen at theta0. */
static double l_f(const double *v, void *user) {
    const lref *r = user;
    const int n = r->n, k = r->k;
    double tot = 0;
    for (int i = 0; i < n; i++) {
        const double *zs[3];
        for (int s = 0; s < 3; s++) zs[s] = (s == r->which ? v : r->z[s]) + (size_t)i * k;
        double p[64], a[64], q[64], p0[64], q0[64];
        softmax_d(zs[0], k, p);
        softmax_d(zs[1], k, a);
        softmax_d(zs[2], k, q);
        softmax_d(r->z[0] + (size_t)i * k, k, p0);
        softmax_d(r->z[2] + (size_t)i * k, k, q0);
        double kl = 0;
        for (int j = 0; j < k; j++) kl += p[j] * (log(p[j]) - log(a[j]));
        double anc = 0;
        if (!r->pair || r->pair[i])
            anc = r->alpha * anc0(p0, q, k, r->c[i], r->cq[i]) +
                  (1 - r->alpha) * anc0(q0, p, k, r->cq[i], r->c[i]);
        tot += -log(p[r->y[i]]) + r->beta * kl + r->zeta * anc;
    }
    return r->w / n * tot;
}

static int argmax_d(const double *z, int k) {
    int b = 0;
    for (int j = 1; j < k; j++)
        if (z[j] > z[b]) b = j;
    return b;
}

static int argmax_f(const float *z, int k) {
    int b = 0;
    for (int j = 1; j < k; j++)
        if (z[j] > z[b]) b = j;
    return b;
}

static double top2_gap(const float *z, int k) {
    double a = -INFINITY, s = -INFINITY;
    for (int j = 0; j < k; j++) {
        if (z[j] > a) {
            s = a;
            a = z[j];
        } else if (z[j] > s) {
            s = z[j];
        }
    }
    return a - s;
}

static int loss_case(al_ctx *ctx, int n, int k, uint64_t id, float scale, float alpha,
                     int use_pair) {
    const size_t nk = (size_t)n * k;
    float *z[3], *d[3];
    double *zd[3], *fd = malloc(nk * sizeof(double));
    int32_t y[G_N_MAX * 4];
    uint8_t pair[G_N_MAX * 4];
    for (int s = 0; s < 3; s++) {
        z[s] = malloc(nk * 4), d[s] = malloc(nk * 4), zd[s] = malloc(nk * sizeof(double));
        al_test_fill(z[s], nk, id + s, -scale, scale);
    }
    for (int i = 0; i < n; i++) {
        y[i] = (int32_t)((id + 7 * i) % k);
        pair[i] = (uint8_t)(i % 3 != 2);
        /* half the negatives share the anchor's argmax (the pair term is on), and every row's
         * top-2 gap exceeds the stencil (argmax cannot flip) */
        if (i % 2 == 0) {
            int c = 0;
            for (int j = 1; j < k; j++)
                if (z[0][i * k + j] > z[0][i * k + c]) c = j;
            z[2][i * k + c] = scale + 0.5f;
        }
        for (int s = 0; s < 3; s += 2)
            if (top2_gap(z[s] + i * k, k) < 1e-2) z[s][i * k + argmax_f(z[s] + i * k, k)] += 0.1f;
    }
    for (int s = 0; s < 3; s++)
        for (size_t e = 0; e < nk; e++) zd[s][e] = z[s][e];
    lref r = {n, k, 0, y, use_pair ? pair : NULL, 0.75, 6.0, 3.0, alpha, {zd[0], zd[1], zd[2]}, {0}, {0}};
    for (int i = 0; i < n; i++) {
        r.c[i] = argmax_d(zd[0] + i * k, k);
        r.cq[i] = argmax_d(zd[2] + i * k, k);
    }
    double loss, parts[3];
    AL_EXPECT(al_ancra_head_loss(ctx, n, k, z[0], z[1], z[2], y, use_pair ? pair : NULL,
                                 (float)r.w, (float)r.beta, (float)r.zeta, alpha, &loss, parts,
                                 d[0], d[1], d[2]) == AL_OK,
              "%s", al_errmsg());
    int bad = 0;
    char what[128];
    const double vtol = al_tol_f32((double)nk);
    const double ref = l_f(zd[0], &r);
    snprintf(what, sizeof what, "ancra head loss n=%d k=%d s=%g alpha=%g", n, k, scale, alpha);
    bad |= al_check_close_d(what, &loss, &ref, 1, vtol * (1 + fabs(ref)), vtol);
    /* parts reproduce the loss */
    const double rec = r.w * (parts[0] + r.beta * parts[1] + r.zeta * parts[2]);
    bad |= al_check_close_d("ancra parts recombine", &rec, &loss, 1, vtol * (1 + fabs(loss)), vtol);
    static const char *nm[3] = {"d_nat", "d_adv", "d_neg"};
    for (int s = 0; s < 3; s++) {
        r.which = s;
        double *v = malloc(nk * sizeof(double));
        memcpy(v, zd[s], nk * sizeof(double));
        al_fd_grad(l_f, &r, v, nk, 1e-4, fd);
        snprintf(what, sizeof what, "ancra %s vs FD n=%d k=%d s=%g alpha=%g pair=%d", nm[s], n, k,
                 scale, alpha, use_pair);
        const double gt = al_tol_f32(k) * (1 + r.beta + r.zeta) * r.w / n;
        bad |= al_check_close_fd(what, d[s], fd, nk, gt, al_tol_f32(k));
        free(v);
    }
    for (int s = 0; s < 3; s++) free(z[s]), free(d[s]), free(zd[s]);
    free(fd);
    return bad;
}

static int case_head_loss_fd(void) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 1) == AL_OK, "%s", al_errmsg());
    int bad = 0;
    bad |= loss_case(&ctx, 1, 10, 10, 3.0f, 1.0f, 0); /* batch 1, official alpha */
    bad |= loss_case(&ctx, 6, 10, 20, 3.0f, 1.0f, 1);
    bad |= loss_case(&ctx, 6, 7, 30, 4.0f, 0.3f, 1); /* both sides of the asymmetry */
    bad |= loss_case(&ctx, 5, 10, 40, 2.0f, 0.0f, 0);
    bad |= loss_case(&ctx, 4, 3, 50, 20.0f, 0.6f, 1); /* peaked softmax */
    /* bad label */
    float z[20] = {0};
    int32_t y[2] = {0, 10};
    double l;
    AL_EXPECT(al_ancra_head_loss(&ctx, 2, 10, z, z, z, y, NULL, 1, 6, 3, 1, &l, NULL, NULL, NULL,
                                 NULL) == AL_ERR_VALUE,
              "bad label accepted");
    AL_EXPECT(strstr(al_errmsg(), "index 1") != NULL, "message: %s", al_errmsg());
    al_clear_error();
    al_ctx_fini(&ctx);
    return bad;
}

/* ================================================================ negative selection */

static int case_pick_neg(void) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 1) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_ctx_reserve_scratch(&ctx, 1 << 16) == AL_OK, "%s", al_errmsg());
    enum { N = 40, K = 10 };
    int32_t y[N], idx[N], idx2[N];
    uint8_t valid[N];
    float lg[N * K], u[N];
    al_test_fill(lg, N * K, 77, -3, 3);
    al_test_fill(u, N, 78, 0, 1);
    for (int i = 0; i < N; i++) y[i] = (int32_t)(u[i] * 6); /* 6 of the 10 classes present */
    int pred[N];
    for (int i = 0; i < N; i++) pred[i] = argmax_f(lg + i * K, K);
    int hist[K] = {0};
    for (int rep = 0; rep < 50; rep++) {
        AL_EXPECT(al_ancra_pick_neg(&ctx, N, K, y, NULL, AL_ANCRA_PICK_RANDOM, 5,
                                    al_stream(AL_STREAM_METHOD, (uint64_t)rep), idx, valid) == AL_OK,
                  "%s", al_errmsg());
        for (int i = 0; i < N; i++) {
            AL_EXPECT(valid[i] && idx[i] >= 0 && idx[i] < N, "random: idx[%d] = %d", i, idx[i]);
            AL_EXPECT(y[idx[i]] != y[i], "random: same class at %d", i);
            hist[y[idx[i]]]++;
        }
    }
    for (int c = 0; c < 6; c++) AL_EXPECT(hist[c] > 0, "class %d never drawn", c);
    for (int c = 6; c < K; c++) AL_EXPECT(hist[c] == 0, "absent class %d drawn", c);
    /* the same draws for the same (seed, stream) */
    AL_EXPECT(al_ancra_pick_neg(&ctx, N, K, y, NULL, 0, 5, al_stream(AL_STREAM_METHOD, 3), idx, valid) == AL_OK, "pick");
    AL_EXPECT(al_ancra_pick_neg(&ctx, N, K, y, NULL, 0, 5, al_stream(AL_STREAM_METHOD, 3), idx2, valid) == AL_OK, "pick");
    AL_EXPECT(!memcmp(idx, idx2, sizeof idx), "random draws are not reproducible");
    /* hard / soft / easy: the rule's best candidate, or a random other-class row */
    for (int kind = AL_ANCRA_PICK_HARD; kind <= AL_ANCRA_PICK_EASY; kind++) {
        AL_EXPECT(al_ancra_pick_neg(&ctx, N, K, y, lg, kind, 5, 9, idx, valid) == AL_OK, "%s",
                  al_errmsg());
        for (int i = 0; i < N; i++) {
            int best = -1;
            for (int j = 0; j < N; j++) {
                if (y[j] == y[i]) continue;
                int ok = kind == AL_ANCRA_PICK_HARD   ? pred[j] == y[i]
                         : kind == AL_ANCRA_PICK_SOFT ? pred[j] == pred[i]
                                                      : pred[j] != y[i] && pred[j] != pred[i];
                if (ok && (best < 0 || lg[j * K + y[i]] > lg[best * K + y[i]])) best = j;
            }
            AL_EXPECT(valid[i] && y[idx[i]] != y[i], "kind %d anchor %d: idx %d", kind, i, idx[i]);
            if (best >= 0) AL_EXPECT(idx[i] == best, "kind %d anchor %d: %d, expected %d", kind, i, idx[i], best);
        }
    }
    /* a batch of one class: no negative, flagged */
    for (int i = 0; i < 5; i++) y[i] = 3;
    AL_EXPECT(al_ancra_pick_neg(&ctx, 5, K, y, NULL, 0, 5, 9, idx, valid) == AL_OK, "pick");
    for (int i = 0; i < 5; i++) AL_EXPECT(!valid[i] && idx[i] == i, "no-negative anchor %d", i);
    /* gather */
    float src[4 * 3], dst[2 * 3];
    int32_t gi[2] = {3, 1}, gl[4] = {9, 8, 7, 6}, dl[2];
    for (int e = 0; e < 12; e++) src[e] = (float)e;
    AL_EXPECT(al_ancra_gather(&ctx, 2, 3, src, gi, dst, gl, dl) == AL_OK, "gather");
    AL_EXPECT(dst[0] == 9 && dst[5] == 5 && dl[0] == 6 && dl[1] == 8, "gather rows/labels");
    al_ctx_fini(&ctx);
    return 0;
}

/* ================================================================ PyTorch references */

static int have_torch(void) {
    static int cached = -1;
    if (cached < 0) {
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "%s -c 'import torch, h5py' >/dev/null 2>&1", al_test_python());
        cached = system(cmd) == 0;
        if (!cached) printf("skipped: %s has no torch/h5py\n", al_test_python());
    }
    return cached;
}

static int run_ref(const char *args) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s/tests/torch/ancra_ref.py %s", al_test_python(),
             al_test_source_dir(), args);
    int rc = system(cmd);
    if (rc != 0) fprintf(stderr, "  command failed (status %d): %s\n", rc, cmd);
    return rc;
}

static double *read_doubles(const char *path, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    double *r = malloc(n * sizeof(double));
    size_t got = fread(r, sizeof(double), n + 1, f);
    fclose(f);
    if (got != n) {
        fprintf(stderr, "  %s: %zu values, expected %zu\n", path, got, n);
        free(r);
        return NULL;
    }
    return r;
}

/* Official loss on logits of three forwards x three heads (final + 2 aux). */
static int case_torch_loss(void) {
    if (!have_torch()) return AL_SKIP_CODE;
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 1) == AL_OK, "%s", al_errmsg());
    enum { N = 8, K = 10, H = 3 };
    const float beta = 6, zeta = 3, cr_beta = 2;
    int bad = 0;
    for (int ai = 0; ai < 2; ai++) {
        const float alpha = ai ? 0.4f : 1.0f;
        float z[H][3][N * K], g[H][3][N * K];
        int32_t y[N];
        for (int h = 0; h < H; h++)
            for (int s = 0; s < 3; s++) al_test_fill(z[h][s], N * K, 300 + 10 * h + s + 100 * ai, -3, 3);
        for (int i = 0; i < N; i++) {
            y[i] = (int32_t)((5 * i + 1) % K);
            if (i % 2 == 0) /* agreeing pairs on every head */
                for (int h = 0; h < H; h++) {
                    int c = 0;
                    for (int j = 1; j < K; j++)
                        if (z[h][0][i * K + j] > z[h][0][i * K + c]) c = j;
                    z[h][2][i * K + c] = 4.0f;
                }
        }
        char pin[512], pout[512], args[1200];
        snprintf(pin, sizeof pin, "%s/ancra_loss_in_%d.bin", al_test_tmpdir(), ai);
        snprintf(pout, sizeof pout, "%s/ancra_loss_out_%d.bin", al_test_tmpdir(), ai);
        FILE *f = fopen(pin, "wb");
        AL_EXPECT(f, "cannot write %s", pin);
        fwrite(z, sizeof(float), (size_t)H * 3 * N * K, f);
        fwrite(y, sizeof(int32_t), N, f);
        fclose(f);
        snprintf(args, sizeof args, "loss %s %s %d %d %g %g %g %g", pin, pout, N, K, beta, zeta,
                 cr_beta, alpha);
        if (run_ref(args) != 0) return 1;
        const size_t n_ref = 1 + (size_t)H * 3 * N * K;
        double *r = read_doubles(pout, n_ref);
        AL_EXPECT(r, "reference output");
        double tot = 0;
        for (int h = 0; h < H; h++) {
            double lh;
            const float w = h == 0 ? 1.0f : cr_beta / (H - 1);
            AL_EXPECT(al_ancra_head_loss(&ctx, N, K, z[h][0], z[h][1], z[h][2], y, NULL, w, beta,
                                         zeta, alpha, &lh, NULL, g[h][0], g[h][1], g[h][2]) == AL_OK,
                      "%s", al_errmsg());
            tot += lh;
        }
        char what[96];
        const double vt = al_tol_f32(H * 3 * N * K);
        snprintf(what, sizeof what, "torch ANCRA loss alpha=%g", alpha);
        bad |= al_check_close_d(what, &tot, r, 1, vt * (1 + fabs(r[0])), vt);
        snprintf(what, sizeof what, "torch ANCRA dlogits (3 heads x nat/adv/neg) alpha=%g", alpha);
        bad |= al_check_close_fd(what, &g[0][0][0], r + 1, (size_t)H * 3 * N * K,
                                 al_tol_f32(K) * (1 + beta + zeta) * (1 + cr_beta) / N, al_tol_f32(K));
        free(r);
    }
    al_ctx_fini(&ctx);
    return bad;
}

static int h5_put(hid_t f, const char *name, hid_t mt, hid_t ft, int nd, const hsize_t *dims,
                  const void *x) {
    hid_t sp = H5Screate_simple(nd, dims, NULL);
    hid_t ds = H5Dcreate2(f, name, ft, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = ds < 0 ? -1 : H5Dwrite(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(sp);
    return rc < 0;
}

/* The RA arch against the official RA_Block/ResNet_RA (written out in ancra_ref.py for any
 * widths): a train-mode forward with the label mask + backward (weights and input), then an
 * eval-mode forward (argmax mask) + backward (input), three seeds each. */
static int torch_model_case(const char *arch, int image, int n) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 2, 1) == AL_OK, "%s", al_errmsg());
    al_model *m;
    AL_EXPECT(al_model_create(arch, 10, 3, image, &m) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_model_setup(&ctx, m, n, 1) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_model_init_params(&ctx, m, 11) == AL_OK, "%s", al_errmsg());
    char ckpt[512], io[512], ref[512], args[2048];
    snprintf(ckpt, sizeof ckpt, "%s/ancra_%s_ckpt.h5", al_test_tmpdir(), arch);
    snprintf(io, sizeof io, "%s/ancra_%s_io.h5", al_test_tmpdir(), arch);
    snprintf(ref, sizeof ref, "%s/ancra_%s_ref.h5", al_test_tmpdir(), arch);
    AL_EXPECT(al_checkpoint_save(&ctx, m, NULL, ckpt) == AL_OK, "%s", al_errmsg());
    const size_t d = (size_t)3 * image * image, nk = (size_t)n * 10;
    float *x = malloc(n * d * 4), *dx = malloc(n * d * 4), *sd[3];
    int32_t y[16];
    al_test_fill(x, n * d, 901, 0, 1);
    for (int s = 0; s < 3; s++) {
        sd[s] = malloc(nk * 4);
        al_test_fill(sd[s], nk, 910 + s, -1, 1);
    }
    for (int i = 0; i < n; i++) y[i] = (int32_t)((3 * i + 2) % 10);
    hid_t f = H5Fcreate(io, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t dx4[4] = {(hsize_t)n, 3, (hsize_t)image, (hsize_t)image}, d2[2] = {(hsize_t)n, 10},
            d1[1] = {(hsize_t)n};
    int e = h5_put(f, "x", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 4, dx4, x);
    e |= h5_put(f, "y", H5T_NATIVE_INT32, H5T_STD_I32LE, 1, d1, y);
    for (int s = 0; s < 3; s++) {
        char nm[16];
        snprintf(nm, sizeof nm, "seed%d", s);
        e |= h5_put(f, nm, H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 2, d2, sd[s]);
    }
    H5Fclose(f);
    AL_EXPECT(!e, "cannot write %s", io);
    snprintf(args, sizeof args, "model %s %s %s", ckpt, io, ref);
    if (run_ref(args) != 0) return 1;

    hid_t rf = H5Fopen(ref, H5F_ACC_RDONLY, H5P_DEFAULT);
    AL_EXPECT(rf >= 0, "cannot read %s", ref);
    int bad = 0;
    al_bwd_seed seeds[3] = {{m->out_buf, sd[0]}, {m->aux_buf[0], sd[1]}, {m->aux_buf[1], sd[2]}};
    double *buf = malloc((m->n_param_floats + n * d) * sizeof(double));
    for (int pass = 0; pass < 2; pass++) {
        const char *tag = pass ? "eval" : "train";
        al_fwd_opts o = {0, !pass, !pass, 0, 0, pass ? NULL : y};
        AL_EXPECT(al_model_forward(&ctx, m, x, n, &o) == AL_OK, "%s", al_errmsg());
        AL_EXPECT(al_model_zero_grad(&ctx, m) == AL_OK, "zero");
        AL_EXPECT(al_model_backward_seeds(&ctx, m, 0, seeds, 3,
                                          (pass ? 0 : AL_BWD_WEIGHTS) | AL_BWD_INPUT, dx) == AL_OK,
                  "%s", al_errmsg());
        const float *outs[3] = {al_model_logits(m, 0), al_model_buffer(m, 0, m->aux_buf[0]),
                                al_model_buffer(m, 0, m->aux_buf[1])};
        static const char *onm[3] = {"logits", "aux0", "aux1"};
        /* values are O(1) after BN; a logit sums C products of O(1) terms */
        const double tol = al_tol_f32(512 * 9) * 4;
        char key[256], what[300];
        for (int s = 0; s < 3; s++) {
            snprintf(key, sizeof key, "%s/%s", tag, onm[s]);
            hid_t ds = H5Dopen2(rf, key, H5P_DEFAULT);
            H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
            H5Dclose(ds);
            snprintf(what, sizeof what, "%s %s %s vs torch", arch, tag, onm[s]);
            bad |= al_check_close_fd(what, outs[s], buf, nk, tol, tol);
        }
        snprintf(key, sizeof key, "%s/dx", tag);
        hid_t ds = H5Dopen2(rf, key, H5P_DEFAULT);
        H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
        H5Dclose(ds);
        double sc = 1e-6;
        for (size_t i = 0; i < n * d; i++) sc = fabs(buf[i]) > sc ? fabs(buf[i]) : sc;
        snprintf(what, sizeof what, "%s %s dx vs torch", arch, tag);
        bad |= al_check_close_fd(what, dx, buf, n * d, tol * sc, tol * 10);
        if (pass) continue;
        for (int pi = 0; pi < m->n_params; pi++) {
            const al_param *p = &m->params[pi];
            if (!p->trainable) continue;
            snprintf(key, sizeof key, "train/grad/%s", p->name);
            ds = H5Dopen2(rf, key, H5P_DEFAULT);
            AL_EXPECT(ds >= 0, "reference has no %s", key);
            H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
            H5Dclose(ds);
            sc = 1e-6;
            for (size_t i = 0; i < p->n_elems; i++) sc = fabs(buf[i]) > sc ? fabs(buf[i]) : sc;
            snprintf(what, sizeof what, "%s train grad %s vs torch", arch, p->name);
            bad |= al_check_close_fd(what, al_param_grad(m, pi), buf, p->n_elems, tol * sc, tol * 10);
        }
    }
    H5Fclose(rf);
    free(buf), free(x), free(dx);
    for (int s = 0; s < 3; s++) free(sd[s]);
    al_model_destroy(&ctx, m);
    al_ctx_fini(&ctx);
    return bad;
}

static int case_torch_small(void) {
    if (!have_torch()) return AL_SKIP_CODE;
    return torch_model_case("ancra-small", 28, 4);
}
static int case_torch_resnet18(void) {
    if (!have_torch()) return AL_SKIP_CODE;
    return torch_model_case("ancra-resnet18", 32, 2);
}

/* ================================================================ CUDA vs CPU */

#ifdef AL_HAVE_CUDA
static float *to_dev(al_ctx *g, const void *h, size_t bytes) {
    void *d = NULL;
    AL_ASSERT(al_dev_alloc(g, &d, bytes, "test") == AL_OK, "%s", al_errmsg());
    AL_ASSERT(al_copy_to_dev(g, d, h, bytes) == AL_OK, "%s", al_errmsg());
    return d;
}
static void to_host(al_ctx *g, void *h, const void *d, size_t bytes) {
    AL_ASSERT(al_copy_to_host(g, h, d, bytes) == AL_OK, "%s", al_errmsg());
}
#endif

static int case_cuda_ra(void) {
    if (al_test_no_gpu()) return AL_SKIP_CODE;
#ifdef AL_HAVE_CUDA
    al_ctx c, g;
    AL_EXPECT(al_ctx_init(&c, AL_DEV_CPU, 0, 2, 1) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_ctx_init(&g, AL_DEV_CUDA, 0, 0, 1) == AL_OK, "%s", al_errmsg());
    int bad = 0;
    static const int shp[][4] = {{1, 3, 1, 2}, {5, 37, 16, 10}, {7, 512, 16, 10}, {3, 65, 9, 100}};
    for (size_t t = 0; t < sizeof shp / sizeof shp[0]; t++) {
        const int n = shp[t][0], ch = shp[t][1], hw = shp[t][2], k = shp[t][3];
        const size_t nz = (size_t)n * ch * hw, nk = (size_t)n * k, kc = (size_t)k * ch;
        float *z = malloc(nz * 4), *dy = malloc(nz * 4), *w = malloc(kc * 4), *p = malloc(nk * 4);
        float *y = malloc(nz * 4), *dz = malloc(nz * 4), *dw = malloc(kc * 4), *dp = malloc(nk * 4);
        float *gy = malloc(nz * 4), *gdz = malloc(nz * 4), *gdw = malloc(kc * 4), *gdp = malloc(nk * 4);
        int32_t lab[8], sel[8], gsel[8];
        al_test_fill(z, nz, 40 + t, -1, 1);
        al_test_fill(dy, nz, 50 + t, -1, 1);
        al_test_fill(w, kc, 60 + t, -1, 1);
        al_test_fill(p, nk, 70 + t, -2, 2);
        for (int i = 0; i < n; i++) lab[i] = (int32_t)((i * 7 + 1) % k);
        float *Dz = to_dev(&g, z, nz * 4), *Ddy = to_dev(&g, dy, nz * 4), *Dw = to_dev(&g, w, kc * 4);
        float *Dp = to_dev(&g, p, nk * 4), *Dy = to_dev(&g, y, nz * 4), *Ddz = to_dev(&g, dz, nz * 4);
        float *Ddp = to_dev(&g, dp, nk * 4);
        int32_t *Dlab = (int32_t *)to_dev(&g, lab, n * 4), *Dsel = (int32_t *)to_dev(&g, sel, n * 4);
        for (int mode = 0; mode < 3; mode++) { /* labels, argmax, argmax + straight-through */
            const int st = mode == 2;
            for (size_t e = 0; e < kc; e++) dw[e] = 0.5f;
            for (size_t e = 0; e < nz; e++) dz[e] = 0.25f;
            for (size_t e = 0; e < nk; e++) dp[e] = -0.5f;
            float *Ddw = to_dev(&g, dw, kc * 4);
            AL_EXPECT(al_copy_to_dev(&g, Ddz, dz, nz * 4) == AL_OK && al_copy_to_dev(&g, Ddp, dp, nk * 4) == AL_OK, "copy");
            const int32_t *L = mode == 0 ? lab : NULL, *DL = mode == 0 ? Dlab : NULL;
            AL_EXPECT(al_ra_forward(&c, n, ch, hw, k, z, w, p, L, y, sel) == AL_OK, "%s", al_errmsg());
            AL_EXPECT(al_ra_forward(&g, n, ch, hw, k, Dz, Dw, Dp, DL, Dy, Dsel) == AL_OK, "%s", al_errmsg());
            AL_EXPECT(al_ra_backward(&c, n, ch, hw, k, z, w, p, sel, dy, dz, 1, dw, dp, 1, st) == AL_OK, "%s", al_errmsg());
            AL_EXPECT(al_ra_backward(&g, n, ch, hw, k, Dz, Dw, Dp, Dsel, Ddy, Ddz, 1, Ddw, Ddp, 1, st) == AL_OK, "%s", al_errmsg());
            to_host(&g, gsel, Dsel, n * 4);
            to_host(&g, gy, Dy, nz * 4);
            to_host(&g, gdz, Ddz, nz * 4);
            to_host(&g, gdw, Ddw, kc * 4);
            to_host(&g, gdp, Ddp, nk * 4);
            AL_EXPECT(!memcmp(sel, gsel, n * 4), "selected classes differ (mode %d)", mode);
            char what[128];
            snprintf(what, sizeof what, "cuda ra y mode %d shape %zu", mode, t);
            bad |= al_check_close(what, gy, y, nz, 0, 0);
            snprintf(what, sizeof what, "cuda ra dz mode %d shape %zu", mode, t);
            bad |= al_check_close(what, gdz, dz, nz, 0, 0);
            snprintf(what, sizeof what, "cuda ra dW mode %d shape %zu", mode, t);
            bad |= al_check_close(what, gdw, dw, kc, 1e-6, 1e-6);
            snprintf(what, sizeof what, "cuda ra dp mode %d shape %zu", mode, t);
            bad |= al_check_close(what, gdp, dp, nk, 1e-6, 1e-6);
            al_dev_free(&g, Ddw);
        }
        /* bad label on the device: a NaN row, sel = -1 */
        lab[0] = k;
        AL_EXPECT(al_copy_to_dev(&g, Dlab, lab, n * 4) == AL_OK, "copy");
        AL_EXPECT(al_ra_forward(&g, n, ch, hw, k, Dz, Dw, Dp, Dlab, Dy, Dsel) == AL_OK, "%s", al_errmsg());
        to_host(&g, gsel, Dsel, n * 4);
        to_host(&g, gy, Dy, nz * 4);
        AL_EXPECT(gsel[0] == -1 && isnan(gy[0]), "bad label on the device");
        al_dev_free(&g, Dz), al_dev_free(&g, Ddy), al_dev_free(&g, Dw), al_dev_free(&g, Dp);
        al_dev_free(&g, Dy), al_dev_free(&g, Ddz), al_dev_free(&g, Ddp), al_dev_free(&g, Dlab);
        al_dev_free(&g, Dsel);
        free(z), free(dy), free(w), free(p), free(y), free(dz), free(dw), free(dp);
        free(gy), free(gdz), free(gdw), free(gdp);
    }
    al_ctx_fini(&g);
    al_ctx_fini(&c);
    return bad;
#else
    return AL_SKIP_CODE;
#endif
}

static int case_cuda_loss(void) {
    if (al_test_no_gpu()) return AL_SKIP_CODE;
#ifdef AL_HAVE_CUDA
    al_ctx c, g;
    AL_EXPECT(al_ctx_init(&c, AL_DEV_CPU, 0, 1, 1) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_ctx_init(&g, AL_DEV_CUDA, 0, 0, 1) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_ctx_reserve_scratch(&c, 1 << 20) == AL_OK && al_ctx_reserve_scratch(&g, 1 << 20) == AL_OK, "scratch");
    int bad = 0;
    static const int shp[][2] = {{1, 10}, {37, 10}, {130, 7}, {64, 100}, {5, 1000}};
    for (size_t t = 0; t < sizeof shp / sizeof shp[0]; t++) {
        const int n = shp[t][0], k = shp[t][1];
        const size_t nk = (size_t)n * k;
        float *z[3], *d[3], *gd[3], *Dz[3], *Dd[3];
        int32_t *y = malloc(n * 4), *idx = malloc(n * 4), *gidx = malloc(n * 4);
        uint8_t *pair = malloc(n), *gval = malloc(n);
        for (int s = 0; s < 3; s++) {
            z[s] = malloc(nk * 4), d[s] = malloc(nk * 4), gd[s] = malloc(nk * 4);
            al_test_fill(z[s], nk, 500 + 10 * t + s, -4, 4);
        }
        for (int i = 0; i < n; i++) {
            y[i] = (int32_t)((i * 13 + t) % k);
            pair[i] = (uint8_t)(i % 5 != 4);
            if (i % 2) { /* agreeing pairs */
                int cc = 0;
                for (int j = 1; j < k; j++)
                    if (z[0][i * k + j] > z[0][i * k + cc]) cc = j;
                z[2][i * k + cc] = 5.0f;
            }
        }
        for (int s = 0; s < 3; s++) Dz[s] = to_dev(&g, z[s], nk * 4), Dd[s] = to_dev(&g, d[s], nk * 4);
        int32_t *Dy = (int32_t *)to_dev(&g, y, n * 4), *Didx = (int32_t *)to_dev(&g, y, n * 4);
        uint8_t *Dpair = (uint8_t *)to_dev(&g, pair, n), *Dval = (uint8_t *)to_dev(&g, pair, n);
        double lc, lg, pc[3], pg[3];
        AL_EXPECT(al_ancra_head_loss(&c, n, k, z[0], z[1], z[2], y, pair, 0.7f, 6, 3, 0.8f, &lc, pc, d[0], d[1], d[2]) == AL_OK, "%s", al_errmsg());
        AL_EXPECT(al_ancra_head_loss(&g, n, k, Dz[0], Dz[1], Dz[2], Dy, Dpair, 0.7f, 6, 3, 0.8f, &lg, pg, Dd[0], Dd[1], Dd[2]) == AL_OK, "%s", al_errmsg());
        const double vt = 1e-12 * n;
        bad |= al_check_close_d("cuda ancra loss", &lg, &lc, 1, vt, vt);
        bad |= al_check_close_d("cuda ancra parts", pg, pc, 3, vt, vt);
        for (int s = 0; s < 3; s++) {
            to_host(&g, gd[s], Dd[s], nk * 4);
            bad |= al_check_close("cuda ancra dlogits", gd[s], d[s], nk, 1e-7 / n, 1e-6);
        }
        for (int kind = 0; kind <= AL_ANCRA_PICK_EASY; kind++) {
            uint8_t *val = malloc(n);
            AL_EXPECT(al_ancra_pick_neg(&c, n, k, y, z[0], kind, 3, 44, idx, val) == AL_OK, "%s", al_errmsg());
            AL_EXPECT(al_ancra_pick_neg(&g, n, k, Dy, Dz[0], kind, 3, 44, Didx, Dval) == AL_OK, "%s", al_errmsg());
            to_host(&g, gidx, Didx, n * 4);
            to_host(&g, gval, Dval, n);
            AL_EXPECT(!memcmp(idx, gidx, n * 4) && !memcmp(val, gval, n), "pick kind %d differs", kind);
            free(val);
        }
        /* gather */
        float *Dg = NULL;
        AL_EXPECT(al_dev_alloc(&g, (void **)&Dg, nk * 4, "t") == AL_OK, "alloc");
        AL_EXPECT(al_ancra_gather(&g, n, k, Dz[1], Didx, Dg, NULL, NULL) == AL_OK, "%s", al_errmsg());
        AL_EXPECT(al_ancra_gather(&c, n, k, z[1], idx, d[0], NULL, NULL) == AL_OK, "%s", al_errmsg());
        to_host(&g, gd[0], Dg, nk * 4);
        bad |= al_check_close("cuda ancra gather", gd[0], d[0], nk, 0, 0);
        al_dev_free(&g, Dg);
        for (int s = 0; s < 3; s++) al_dev_free(&g, Dz[s]), al_dev_free(&g, Dd[s]), free(z[s]), free(d[s]), free(gd[s]);
        al_dev_free(&g, Dy), al_dev_free(&g, Didx), al_dev_free(&g, Dpair), al_dev_free(&g, Dval);
        free(y), free(idx), free(gidx), free(pair), free(gval);
    }
    al_ctx_fini(&g);
    al_ctx_fini(&c);
    return bad;
#else
    return AL_SKIP_CODE;
#endif
}

/* The whole RA arch on the device vs the CPU: train-mode forward with labels and backward
 * (weights + input), eval forward + straight-through backward. */
static int case_cuda_model(void) {
    if (al_test_no_gpu()) return AL_SKIP_CODE;
#ifdef AL_HAVE_CUDA
    al_ctx c, g;
    AL_EXPECT(al_ctx_init(&c, AL_DEV_CPU, 0, 2, 1) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_ctx_init(&g, AL_DEV_CUDA, 0, 0, 1) == AL_OK, "%s", al_errmsg());
    const int n = 6;
    al_model *mc, *mg;
    AL_EXPECT(al_model_create("ancra-small", 10, 1, 28, &mc) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_model_create("ancra-small", 10, 1, 28, &mg) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_model_setup(&c, mc, n, 1) == AL_OK && al_model_setup(&g, mg, n, 1) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_model_init_params(&c, mc, 3) == AL_OK && al_model_init_params(&g, mg, 3) == AL_OK, "%s", al_errmsg());
    const size_t d = 28 * 28, nk = (size_t)n * 10;
    float *x = malloc(n * d * 4), *dx = malloc(n * d * 4), *gdx = malloc(n * d * 4), *sd[3];
    int32_t y[6] = {1, 2, 3, 4, 5, 6};
    al_test_fill(x, n * d, 31, 0, 1);
    float *Dx = to_dev(&g, x, n * d * 4), *Ddx = to_dev(&g, x, n * d * 4), *Dsd[3];
    int32_t *Dy = (int32_t *)to_dev(&g, y, sizeof y);
    for (int s = 0; s < 3; s++) {
        sd[s] = malloc(nk * 4);
        al_test_fill(sd[s], nk, 32 + s, -1, 1);
        Dsd[s] = to_dev(&g, sd[s], nk * 4);
    }
    int bad = 0;
    float *hg = malloc(mc->n_param_floats * 4);
    for (int pass = 0; pass < 2; pass++) {
        al_ra_set_eval_mask(mc, pass ? AL_RA_MASK_FIXED : AL_RA_MASK_PREDICTED);
        al_ra_set_eval_mask(mg, pass ? AL_RA_MASK_FIXED : AL_RA_MASK_PREDICTED);
        al_fwd_opts oc = {0, !pass, 0, 0, 0, pass ? NULL : y}, og = oc;
        og.labels = pass ? NULL : Dy;
        AL_EXPECT(al_model_forward(&c, mc, x, n, &oc) == AL_OK && al_model_forward(&g, mg, Dx, n, &og) == AL_OK, "%s", al_errmsg());
        al_bwd_seed sc[3] = {{mc->out_buf, sd[0]}, {mc->aux_buf[0], sd[1]}, {mc->aux_buf[1], sd[2]}};
        al_bwd_seed sg[3] = {{mg->out_buf, Dsd[0]}, {mg->aux_buf[0], Dsd[1]}, {mg->aux_buf[1], Dsd[2]}};
        AL_EXPECT(al_model_zero_grad(&c, mc) == AL_OK && al_model_zero_grad(&g, mg) == AL_OK, "zero");
        AL_EXPECT(al_model_backward_seeds(&c, mc, 0, sc, 3, AL_BWD_WEIGHTS | AL_BWD_INPUT, dx) == AL_OK, "%s", al_errmsg());
        AL_EXPECT(al_model_backward_seeds(&g, mg, 0, sg, 3, AL_BWD_WEIGHTS | AL_BWD_INPUT, Ddx) == AL_OK, "%s", al_errmsg());
        float lg[60];
        to_host(&g, lg, al_model_logits(mg, 0), nk * 4);
        const double tol = al_tol_f32(32 * 9) * 8;
        bad |= al_check_close("cuda ancra-small logits", lg, al_model_logits(mc, 0), nk, tol, tol);
        to_host(&g, gdx, Ddx, n * d * 4);
        double s = 1e-6;
        for (size_t i = 0; i < n * d; i++) s = fabs(dx[i]) > s ? fabs(dx[i]) : s;
        bad |= al_check_close("cuda ancra-small dx", gdx, dx, n * d, tol * s, tol * 10);
        to_host(&g, hg, mg->grads, mc->n_param_floats * 4);
        s = 1e-6;
        for (size_t i = 0; i < mc->n_param_floats; i++) s = fabs(mc->grads[i]) > s ? fabs(mc->grads[i]) : s;
        bad |= al_check_close("cuda ancra-small dW", hg, mc->grads, mc->n_param_floats, tol * s, tol * 10);
    }
    free(hg), free(x), free(dx), free(gdx);
    for (int s = 0; s < 3; s++) free(sd[s]), al_dev_free(&g, Dsd[s]);
    al_dev_free(&g, Dx), al_dev_free(&g, Ddx), al_dev_free(&g, Dy);
    al_model_destroy(&g, mg);
    al_model_destroy(&c, mc);
    al_ctx_fini(&g);
    al_ctx_fini(&c);
    return bad;
#else
    return AL_SKIP_CODE;
#endif
}

int main(int argc, char **argv) {
    static const al_case cases[] = {
        {"ra_graph_fd", case_ra_graph_fd},   {"ra_op", case_ra_op},
        {"head_loss_fd", case_head_loss_fd}, {"pick_neg", case_pick_neg},
        {"torch_loss", case_torch_loss},     {"torch_small", case_torch_small},
        {"torch_resnet18", case_torch_resnet18}, {"cuda_ra", case_cuda_ra},
        {"cuda_loss", case_cuda_loss},       {"cuda_model", case_cuda_model},
    };
    return al_run_cases(cases, (int)(sizeof cases / sizeof cases[0]), argc, argv);
}
