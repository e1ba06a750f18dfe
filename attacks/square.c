/* square.c: Square Attack, Linf and L2 (attacks/square.h), device-agnostic and score-based:
 * the model is only queried through al_model_forward (eval mode, slot 0), never differentiated.
 * Twin: none for the driver; proposals are built on the host (one example per OpenMP thread,
 * static schedule) and sent as one batched forward per iteration; on CUDA the Linf iterations
 * (query list, proposals, acceptance) run on the device instead (cuda/attack_square.cu,
 * shared attacks/square_elem.h; Linf bitwise the same for the same logits, L2 up to the order
 * of double sums), with no image copy per iteration and one host wait (the query count that
 * sizes the forward).
 * Shapes: x, x_adv (N, C, H, W); logits (N, K); "active" rows are compacted (row a <-> act[a]).
 *
 * Algorithm (Andriushchenko et al. 2020; fra31/auto-attack square.py read, not copied):
 *   margin m = z_y - max_{j != y} z_j (> 0: still correct); the loss minimised is m itself.
 *   init  Linf: x + eps * (+-1 per channel and image COLUMN: vertical stripes), clipped.
 *         L2:   a 5x5 grid of s = H/5 squares, each the "eta" pattern (two opposite-signed
 *               halves of nested rectangles weighted 1/(r+1)^2) times a random sign per channel,
 *               rescaled to norm eps.
 *   each iteration, for every point still correct: p = p_selection(it) (p_init halved at the
 *   reference's iteration marks, rescaled to n_queries), square side s ~ sqrt(p * H * W);
 *         Linf: one random s x s window gets x_best + 2 eps * (+-1 per channel), clipped to the
 *               ball and [0,1];
 *         L2:   the perturbation mass of window 1 and window 2 is moved into window 1 as
 *               eta * sign + the old window content, keeping the total norm at eps;
 *   accept the proposal if the margin decreased or the point is now misclassified.
 * Deviation from AutoAttack's vectorised square.py (documented choice): the window positions,
 * the eta transposition and the signs are drawn PER POINT (as the original max-andr/square-attack
 * and the paper), from Philox(seed, stream, index(restart, iteration, point, word)), so a point's
 * result does not depend on which other points share its batch. AutoAttack draws one window per
 * iteration for the whole batch (and Linf signs per channel shared across the batch).
 * Outputs are exactly inside the ball: Linf bounds are nudged by one ulp where x +- eps rounds
 * outside; an L2 proposal whose float rounding exceeds eps is rescaled (see place_l2). */
#include "attacks/square.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "attacks/attack.h"
#include "attacks/square_elem.h"
#include "core/cuda_api.h"
#include "core/rng.h"
#include "losses/rowops.h"

al_square_spec al_square_spec_default(al_norm norm, float eps) {
    al_square_spec s;
    memset(&s, 0, sizeof s);
    s.norm = norm;
    s.eps = eps;
    s.n_queries = 5000;
    s.p_init = 0.8f;
    s.n_restarts = 1;
    return s;
}

/* ---------------------------------------------------------------- pieces */

/* The reference schedule: p_init / 2^k at iteration marks 10, 50, 200, 500, 1000, 2000, 4000,
 * 6000, 8000 of a 10000-query budget, the iteration rescaled to n_queries (resc_schedule). */
static double p_selection(double p_init, int it, int n_queries) {
    int i = (int)((double)it / (double)n_queries * 10000.0);
    static const int mark[] = {10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000};
    double p = p_init;
    for (int k = 0; k < 9; k++)
        if (i > mark[k]) p = p_init / (double)(2 << k);
    return p;
}

/* out = clamp(x0 + scale * delta, 0, 1) in float with ||out - x0||_2 <= eps (double, from the
 * stored floats): if rounding lands above eps, shrink the scale and redo (one retry in practice;
 * after 8 the clean x0, which is always inside). */
static void place_l2(const float *x0, const double *delta, double scale, double eps, size_t d,
                     float *out) {
    for (int tries = 0; tries < 8; tries++) {
        double s2 = 0.0;
        for (size_t j = 0; j < d; j++) {
            double v = (double)x0[j] + scale * delta[j];
            out[j] = (float)(v < 0.0 ? 0.0 : (v > 1.0 ? 1.0 : v));
            double e = (double)out[j] - (double)x0[j];
            s2 += e * e;
        }
        double nrm = sqrt(s2);
        if (nrm <= eps) return;
        scale *= eps / nrm * (1.0 - 1e-6);
    }
    memcpy(out, x0, d * sizeof(float));
}

/* eta_rectangles(x, y) of square.py: rows [0, x), cols [0, y) of e (row stride ld), nested
 * rectangles around the centre, ring r weighted 1/(r+1)^2, normalised to unit L2 norm. */
static void eta_rect(double *e, int ld, int x, int y) {
    for (int i = 0; i < x; i++)
        for (int j = 0; j < y; j++) e[i * ld + j] = 0.0;
    int xc = x / 2 + 1, yc = y / 2 + 1, c0 = xc - 1, c1 = yc - 1;
    for (int r = 0; r < AL_MAX(xc, yc); r++) {
        for (int i = AL_MAX(c0, 0); i < AL_MIN(c0 + 2 * r + 1, x); i++)
            for (int j = AL_MAX(c1, 0); j < AL_MIN(c1 + 2 * r + 1, y); j++)
                e[i * ld + j] += 1.0 / ((double)(r + 1) * (r + 1));
        c0--;
        c1--;
    }
    double n2 = 0.0;
    for (int i = 0; i < x; i++)
        for (int j = 0; j < y; j++) n2 += e[i * ld + j] * e[i * ld + j];
    if (n2 > 0.0)
        for (int i = 0; i < x; i++)
            for (int j = 0; j < y; j++) e[i * ld + j] /= sqrt(n2);
}

/* eta(s) of square.py (L2): top s/2 rows +eta_rect, bottom rows -eta_rect, unit norm. */
static void eta_square(double *e, int s) {
    int top = s / 2;
    eta_rect(e, s, top, s);
    eta_rect(e + (size_t)top * s, s, s - top, s);
    double n2 = 0.0;
    for (int i = 0; i < s * s; i++) {
        if (i >= top * s) e[i] = -e[i];
        n2 += e[i] * e[i];
    }
    if (n2 > 0.0)
        for (int i = 0; i < s * s; i++) e[i] /= sqrt(n2);
}

/* ---------------------------------------------------------------- workspace */

typedef struct sq_ws {
    int n, k, c, h, w;
    size_t d;
    float *h_x0, *h_out;  /* (N, D) clean inputs; result rows */
    int32_t *h_y;         /* (N) */
    uint8_t *h_rob;       /* (N) still robust */
    int *act, *fool;      /* (N) active original indices; rows queried this iteration */
    float *h_best, *h_new;/* (N, D) x_best per active row; proposals (compact over fool) */
    double *h_mmin;       /* (N) margin_min = loss_min (margin loss) per active row */
    float *h_z;           /* (N, K) */
    double *eta;          /* (H*H) the eta pattern of the current side */
    double *scratch;      /* (threads, 2 D) */
    float *d_x;           /* device (N, D) */
    /* CUDA Linf iterations: x_best, margins, active and query lists on the device */
    float *d_best;
    double *d_mmin;
    int *d_act, *d_fool;
    double *d_eta;        /* L2: the iteration's eta pattern */
} sq_ws;

static void ws_fini(al_ctx *ctx, sq_ws *w) {
    al_free(w->h_x0);
    al_free(w->h_out);
    al_free(w->h_y);
    al_free(w->h_rob);
    al_free(w->act);
    al_free(w->fool);
    al_free(w->h_best);
    al_free(w->h_new);
    al_free(w->h_mmin);
    al_free(w->h_z);
    al_free(w->eta);
    al_free(w->scratch);
    al_dev_free(ctx, w->d_x);
    al_dev_free(ctx, w->d_best);
    al_dev_free(ctx, w->d_mmin);
    al_dev_free(ctx, w->d_act);
    al_dev_free(ctx, w->d_fool);
    al_dev_free(ctx, w->d_eta);
    memset(w, 0, sizeof *w);
}

static al_status ws_init(al_ctx *ctx, sq_ws *w, const al_model *m, int n, int dev_iters) {
    memset(w, 0, sizeof *w);
    w->n = n;
    w->k = m->num_classes;
    w->c = m->in_c;
    w->h = m->in_h;
    w->w = m->in_w;
    w->d = (size_t)w->c * w->h * w->w;
    const size_t nd = (size_t)n * w->d, side = (size_t)AL_MAX(w->h, w->w);
    w->h_x0 = al_malloc(nd * sizeof(float), "square clean inputs");
    w->h_out = al_malloc(nd * sizeof(float), "square result");
    w->h_y = al_malloc((size_t)n * sizeof(int32_t), "square labels");
    w->h_rob = al_malloc((size_t)n, "square robust flags");
    w->act = al_malloc((size_t)n * sizeof(int), "square active list");
    w->fool = al_malloc((size_t)n * sizeof(int), "square query list");
    w->h_best = al_malloc(nd * sizeof(float), "square best points");
    w->h_new = al_malloc(nd * sizeof(float), "square proposals");
    w->h_mmin = al_malloc((size_t)n * sizeof(double), "square margins");
    w->h_z = al_malloc((size_t)n * w->k * sizeof(float), "square logits");
    w->eta = al_malloc(side * side * sizeof(double), "square eta pattern");
    w->scratch = al_malloc((size_t)omp_get_max_threads() * 2 * w->d * sizeof(double),
                           "square scratch");
    if (!w->h_x0 || !w->h_out || !w->h_y || !w->h_rob || !w->act || !w->fool || !w->h_best ||
        !w->h_new || !w->h_mmin || !w->h_z || !w->eta || !w->scratch) {
        ws_fini(ctx, w);
        return AL_ERR_OOM;
    }
    al_status st = al_dev_alloc(ctx, (void **)&w->d_x, nd * sizeof(float), "square device batch");
    if (st == AL_OK && dev_iters) {
        st = al_dev_alloc(ctx, (void **)&w->d_best, nd * sizeof(float), "square best points");
        if (st == AL_OK)
            st = al_dev_alloc(ctx, (void **)&w->d_mmin, (size_t)n * sizeof(double), "square margins");
        if (st == AL_OK)
            st = al_dev_alloc(ctx, (void **)&w->d_act, (size_t)n * sizeof(int), "square active list");
        if (st == AL_OK)
            st = al_dev_alloc(ctx, (void **)&w->d_fool, (size_t)n * sizeof(int), "square query list");
        if (st == AL_OK)
            st = al_dev_alloc(ctx, (void **)&w->d_eta, side * side * sizeof(double), "square eta");
    }
    if (st != AL_OK) ws_fini(ctx, w);
    return st;
}

static al_status forward_rows(al_ctx *ctx, al_model *m, sq_ws *w, const float *rows, int na) {
    AL_TRY(al_copy_to_dev(ctx, w->d_x, rows, (size_t)na * w->d * sizeof(float)));
    AL_TRY(al_model_forward_eval(ctx, m, w->d_x, na, 0));
    return al_copy_to_host(ctx, w->h_z, al_model_logits(m, 0), (size_t)na * w->k * sizeof(float));
}

/* ---------------------------------------------------------------- proposals */

/* Philox words of (restart r, phase, point i): square_elem.h (validate() bounds what a phase
 * uses of its 2^24). */
static uint64_t word_base(const al_square_spec *s, int n, int r, int phase, int i) {
    return al_square_word_base(s->n_queries, n, r, phase, i);
}
#define U(j) al_square_u(seed, stream, base, (uint64_t)(j))
#define SIGN(j) (U(j) < 0.5f ? -1.0 : 1.0)

static void init_linf(const al_square_spec *s, sq_ws *w, int a, uint64_t seed, uint64_t stream,
                      int r) {
    const int i = w->act[a], C = w->c, H = w->h, W = w->w;
    const float *x0 = w->h_x0 + (size_t)i * w->d;
    float *xb = w->h_best + (size_t)a * w->d;
    const uint64_t base = word_base(s, w->n, r, 0, i);
    for (int ch = 0; ch < C; ch++)
        for (int col = 0; col < W; col++) {
            const float v = (float)(s->eps * SIGN(ch * W + col));
            for (int row = 0; row < H; row++) {
                size_t j = ((size_t)ch * H + row) * W + col;
                xb[j] = al_square_clip_linf(x0[j] + v, x0[j], s->eps);
            }
        }
}

static void init_l2(const al_square_spec *s, sq_ws *w, int a, uint64_t seed, uint64_t stream,
                    int r, const double *eta0, int s0) {
    const int i = w->act[a], C = w->c, H = w->h, W = w->w;
    const float *x0 = w->h_x0 + (size_t)i * w->d;
    double *delta = w->scratch + (size_t)omp_get_thread_num() * 2 * w->d;
    const uint64_t base = word_base(s, w->n, r, 0, i);
    memset(delta, 0, w->d * sizeof(double));
    /* square.py's grid; images below 5 pixels (s0 = 1) start at 0 rather than off the image */
    const int sp = AL_MAX((H - 5 * s0) / 2, 0), nh = H / s0, nw = W / s0;
    for (int qh = 0; qh < nh; qh++)
        for (int qw = 0; qw < nw; qw++) {
            const int q = qh * nw + qw, vh = sp + qh * s0, vw = sp + qw * s0;
            const int tr = U(q * (1 + C)) > 0.5f; /* square.py eta(): transpose if rand > 0.5 */
            for (int ch = 0; ch < C; ch++) {
                const double sg = SIGN(q * (1 + C) + 1 + ch);
                for (int u = 0; u < s0 && vh + u < H; u++)
                    for (int v = 0; v < s0 && vw + v < W; v++)
                        delta[((size_t)ch * H + vh + u) * W + vw + v] +=
                            sg * (tr ? eta0[v * s0 + u] : eta0[u * s0 + v]);
            }
        }
    double n2 = 0.0;
    for (size_t j = 0; j < w->d; j++) n2 += delta[j] * delta[j];
    place_l2(x0, delta, (double)s->eps / (sqrt(n2) + 1e-12), (double)s->eps, w->d,
             w->h_best + (size_t)a * w->d);
}

/* Linf proposal of active row a into proposal row f. */
static void step_linf(const al_square_spec *s, sq_ws *w, int a, int f, int sq, uint64_t seed,
                      uint64_t stream, int r, int it) {
    const int i = w->act[a], C = w->c, H = w->h, W = w->w;
    const float *x0 = w->h_x0 + (size_t)i * w->d, *xb = w->h_best + (size_t)a * w->d;
    float *xn = w->h_new + (size_t)f * w->d;
    const uint64_t base = word_base(s, w->n, r, it + 1, i);
    int vh, vw;
    al_square_window(seed, stream, base, H, W, sq, &vh, &vw);
    memcpy(xn, xb, w->d * sizeof(float));
    for (int ch = 0; ch < C; ch++) {
        const float v = al_square_linf_value(seed, stream, base, ch, s->eps);
        for (int u = vh; u < vh + sq; u++)
            for (int q = vw; q < vw + sq; q++) {
                size_t j = ((size_t)ch * H + u) * W + q;
                xn[j] = al_square_clip_linf(xb[j] + v, x0[j], s->eps);
            }
    }
}

/* L2 proposal of active row a into proposal row f (square.py's L2 branch, per point). */
static void step_l2(const al_square_spec *s, sq_ws *w, int a, int f, int sq, uint64_t seed,
                    uint64_t stream, int r, int it) {
    const int i = w->act[a], C = w->c, H = w->h, W = w->w;
    const size_t d = w->d;
    const float *x0 = w->h_x0 + (size_t)i * d, *xb = w->h_best + (size_t)a * d;
    double *delta = w->scratch + (size_t)omp_get_thread_num() * 2 * d, *nd = delta + d;
    const uint64_t base = word_base(s, w->n, r, it + 1, i);
    int vh, vw, vh2, vw2, tr;
    al_square_l2_draws(seed, stream, base, H, W, sq, &vh, &vw, &vh2, &vw2, &tr);
    const double eps = s->eps;
    double img2 = 0.0;
    for (size_t j = 0; j < d; j++) {
        delta[j] = (double)xb[j] - (double)x0[j];
        img2 += delta[j] * delta[j];
    }
#define IN1(u, q) ((u) >= vh && (u) < vh + sq && (q) >= vw && (q) < vw + sq)
#define IN2(u, q) ((u) >= vh2 && (u) < vh2 + sq && (q) >= vw2 && (q) < vw2 + sq)
    for (int ch = 0; ch < C; ch++) {
        const double *dc = delta + (size_t)ch * H * W;
        double w1 = 0.0, wu = 0.0; /* norms of window 1 and of windows 1 u 2, this channel */
        for (int u = AL_MIN(vh, vh2); u < AL_MAX(vh, vh2) + sq; u++)
            for (int q = AL_MIN(vw, vw2); q < AL_MAX(vw, vw2) + sq; q++) {
                double v2 = dc[u * W + q] * dc[u * W + q];
                if (IN1(u, q)) w1 += v2;
                if (IN1(u, q) || IN2(u, q)) wu += v2;
            }
        w1 = sqrt(w1);
        const double sg = al_square_sign(seed, stream, base, 5 + (uint64_t)ch);
        double *nc = nd + (size_t)ch * sq * sq, nn = 0.0;
        for (int u = 0; u < sq; u++)
            for (int q = 0; q < sq; q++) {
                double e = tr ? w->eta[q * sq + u] : w->eta[u * sq + q];
                double v = e * sg + dc[(vh + u) * W + vw + q] / (1e-12 + w1);
                nc[u * sq + q] = v;
                nn += v * v;
            }
        /* new window norm: its old share plus an equal share of the unused budget */
        const double target = sqrt(fmax(eps * eps - img2, 0.0) / C + wu);
        const double scale = target / (1e-12 + sqrt(nn));
        for (int u = 0; u < sq * sq; u++) nc[u] *= scale;
    }
    for (int ch = 0; ch < C; ch++) { /* window 2 emptied, then window 1 written */
        double *dc = delta + (size_t)ch * H * W;
        for (int u = vh2; u < vh2 + sq; u++)
            for (int q = vw2; q < vw2 + sq; q++) dc[u * W + q] = 0.0;
        const double *nc = nd + (size_t)ch * sq * sq;
        for (int u = 0; u < sq; u++)
            for (int q = 0; q < sq; q++) dc[(vh + u) * W + vw + q] = nc[u * sq + q];
    }
#undef IN1
#undef IN2
    double n2 = 0.0;
    for (size_t j = 0; j < d; j++) n2 += delta[j] * delta[j];
    place_l2(x0, delta, eps / (sqrt(n2) + 1e-12), eps, d, w->h_new + (size_t)f * d);
}
#undef U
#undef SIGN

/* Window side of iteration it: sqrt(p * H * W) rounded half to even (Python's round), >= 1
 * (Linf) or odd >= 3 (L2), at most the image side. */
static int side_at(const al_square_spec *s, int it, int H, int W) {
    const double p = p_selection((double)s->p_init, it, s->n_queries);
    int sq = (int)rint(sqrt(p * ((double)H * (double)W))); /* p * n_features / c */
    if (s->norm == AL_LINF) {
        sq = AL_MAX(sq, 1);
    } else {
        sq = AL_MAX(sq, 3);
        if (sq % 2 == 0) sq++;
    }
    return AL_MIN(sq, AL_MIN(H, W));
}

#ifdef AL_HAVE_CUDA
/* The iterations of square_once on the device (see the file comment): from h_best / h_mmin
 * of the na active rows, back into h_best. x, y: the caller's device inputs. L2: the eta
 * pattern of each iteration's side is built on the host and copied up (no wait). */
static al_status iterate_cuda(al_ctx *ctx, al_model *m, const al_square_spec *s, sq_ws *w,
                              int na, int r, uint64_t seed, uint64_t stream, const float *x,
                              const int32_t *y) {
    const size_t d = w->d;
    AL_TRY(al_copy_to_dev(ctx, w->d_best, w->h_best, (size_t)na * d * sizeof(float)));
    AL_TRY(al_copy_to_dev(ctx, w->d_mmin, w->h_mmin, (size_t)na * sizeof(double)));
    AL_TRY(al_copy_to_dev(ctx, w->d_act, w->act, (size_t)na * sizeof(int)));
    int eta_side = 0; /* the side d_eta holds (L2; the side changes ~10 times per run) */
    for (int it = 0; it < s->n_queries; it++) {
        int nf = 0;
        ctx->n_host_reads++;
        AL_TRY(al_square_fool_cuda(ctx, na, w->d_mmin, w->d_fool, &nf));
        if (nf == 0) break;
        const int sq = side_at(s, it, w->h, w->w);
        if (s->norm == AL_LINF) {
            AL_TRY(al_square_linf_propose_cuda(ctx, nf, w->c, w->h, w->w, sq, s->eps, w->n,
                                               s->n_queries, r, it, seed, stream, w->d_fool,
                                               w->d_act, x, w->d_best, w->d_x));
        } else {
            if (sq != eta_side) {
                eta_square(w->eta, sq);
                AL_TRY(al_copy_to_dev(ctx, w->d_eta, w->eta, (size_t)sq * sq * sizeof(double)));
                eta_side = sq;
            }
            AL_TRY(al_square_l2_propose_cuda(ctx, nf, w->c, w->h, w->w, sq, s->eps, w->n,
                                             s->n_queries, r, it, seed, stream, w->d_eta,
                                             w->d_fool, w->d_act, x, w->d_best, w->d_x));
        }
        AL_TRY(al_model_forward_eval(ctx, m, w->d_x, nf, 0));
        AL_TRY(al_square_accept_cuda(ctx, nf, w->k, (int)d, w->d_fool, w->d_act, y,
                                     al_model_logits(m, 0), w->d_mmin, w->d_x, w->d_best));
    }
    return al_copy_to_host(ctx, w->h_best, w->d_best, (size_t)na * d * sizeof(float));
}
#endif

/* One restart on the points still robust; successes (confirmed by a fresh forward) go to
 * h_out and leave the robust set. */
static al_status square_once(al_ctx *ctx, al_model *m, const al_square_spec *s, sq_ws *w, int r,
                             uint64_t seed, uint64_t stream, const float *x, const int32_t *y) {
    const int k = w->k, H = w->h, W = w->w;
    const size_t d = w->d;
    int na = 0;
    for (int i = 0; i < w->n; i++)
        if (w->h_rob[i]) w->act[na++] = i;
    if (na == 0) return AL_OK;

    if (s->norm == AL_LINF) {
#pragma omp parallel for schedule(static)
        for (int a = 0; a < na; a++) init_linf(s, w, a, seed, stream, r);
    } else {
        const int s0 = AL_MAX(H / 5, 1);
        eta_square(w->eta, s0);
#pragma omp parallel for schedule(static)
        for (int a = 0; a < na; a++) init_l2(s, w, a, seed, stream, r, w->eta, s0);
    }
    AL_TRY(forward_rows(ctx, m, w, w->h_best, na));
    int all_neg = 1;
    for (int a = 0; a < na; a++) {
        w->h_mmin[a] = al_square_margin(w->h_z + (size_t)a * k, k, w->h_y[w->act[a]]);
        all_neg &= w->h_mmin[a] < 0.0;
    }
#ifdef AL_HAVE_CUDA
    if (w->d_best && !all_neg) AL_TRY(iterate_cuda(ctx, m, s, w, na, r, seed, stream, x, y));
#else
    (void)x;
    (void)y;
#endif
    int eta_side = 0; /* the side w->eta holds for the iterations (the init used its own) */
    for (int it = 0; it < s->n_queries && !all_neg && !w->d_best; it++) {
        int nf = 0;
        for (int a = 0; a < na; a++)
            if (w->h_mmin[a] > 0.0) w->fool[nf++] = a;
        if (nf == 0) break;
        const int sq = side_at(s, it, H, W);
        if (s->norm == AL_L2 && sq != eta_side) { /* the side changes ~10 times per run */
            eta_square(w->eta, sq);
            eta_side = sq;
        }
#pragma omp parallel for schedule(static)
        for (int f = 0; f < nf; f++) {
            if (s->norm == AL_LINF)
                step_linf(s, w, w->fool[f], f, sq, seed, stream, r, it);
            else
                step_l2(s, w, w->fool[f], f, sq, seed, stream, r, it);
        }
        AL_TRY(forward_rows(ctx, m, w, w->h_new, nf));
        for (int f = 0; f < nf; f++) {
            const int a = w->fool[f];
            const double mg = al_square_margin(w->h_z + (size_t)f * k, k, w->h_y[w->act[a]]);
            /* margin loss: improved if lower; a misclassified proposal is always taken */
            if (mg < w->h_mmin[a] || mg <= 0.0) {
                w->h_mmin[a] = mg;
                memcpy(w->h_best + (size_t)a * d, w->h_new + (size_t)f * d, d * sizeof(float));
            }
        }
    }
    /* fresh forward on the final points (square.py perturb): misclassified -> success */
    AL_TRY(forward_rows(ctx, m, w, w->h_best, na));
    for (int a = 0; a < na; a++) {
        const int i = w->act[a];
        if (row_argmax_excl(w->h_z + (size_t)a * k, k, -1) == w->h_y[i]) continue;
        memcpy(w->h_out + (size_t)i * d, w->h_best + (size_t)a * d, d * sizeof(float));
        w->h_rob[i] = 0;
    }
    return AL_OK;
}

static al_status validate(const al_model *m, const al_square_spec *s, const float *x,
                          const int32_t *y, int n, const float *x_adv) {
    const char *fn = "al_square_run";
    AL_TRY(al_attack_check_io(fn, m, n, x, y, x_adv));
    if (!s) return AL_FAIL(AL_ERR_VALUE, "%s: spec is required", fn);
    if (m->num_classes < 2)
        return AL_FAIL(AL_ERR_VALUE, "%s: model %s has %d classes (need >= 2)", fn, m->arch,
                       m->num_classes);
    if (s->norm != AL_LINF && s->norm != AL_L2)
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.norm %d is not linf|l2", fn, (int)s->norm);
    if (!(s->eps >= 0.0f) || !isfinite(s->eps))
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.eps %g must be finite and >= 0", fn, (double)s->eps);
    if (s->n_queries < 0 || s->n_queries > 100000000)
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.n_queries %d outside [0, 1e8]", fn, s->n_queries);
    if (!(s->p_init > 0.0f && s->p_init <= 1.0f))
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.p_init %g outside (0, 1]", fn, (double)s->p_init);
    if (s->n_restarts < 1 || s->n_restarts > 1000)
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.n_restarts %d outside [1, 1000]", fn,
                       s->n_restarts);
    /* words per (restart, phase, point) must fit the 2^24 of word_base */
    const int s0 = AL_MAX(m->in_h / 5, 1);
    const int64_t words = AL_MAX((int64_t)m->in_c * m->in_w,
                                 (int64_t)(m->in_h / s0) * (m->in_w / s0) * (1 + m->in_c) + 8);
    if (words >= (1 << 24))
        return AL_FAIL(AL_ERR_VALUE, "%s: image %dx%dx%d too large for the square draws", fn,
                       m->in_c, m->in_h, m->in_w);
    return AL_OK;
}

al_status al_square_run(al_ctx *ctx, al_model *m, const al_square_spec *s, const float *x,
                        const int32_t *y, int n, uint64_t seed, uint64_t stream, float *x_adv,
                        uint8_t *success) {
    AL_TRY(validate(m, s, x, y, n, x_adv));
    sq_ws w;
    const int dev_iters = ctx->device == AL_DEV_CUDA && !s->host_proposals &&
                          (s->norm == AL_LINF || m->in_c <= 16);
    AL_TRY(ws_init(ctx, &w, m, n, dev_iters));
    const int k = w.k;
    const size_t d = w.d;
    al_status st = AL_OK;
    AL_CHECK(al_copy_to_host(ctx, w.h_x0, x, (size_t)n * d * sizeof(float)));
    AL_CHECK(al_copy_to_host(ctx, w.h_y, y, (size_t)n * sizeof(int32_t)));
    for (int i = 0; i < n; i++)
        if (w.h_y[i] < 0 || w.h_y[i] >= k) {
            st = AL_FAIL(AL_ERR_VALUE, "al_square_run: label %d at index %d outside [0,%d)",
                         (int)w.h_y[i], i, k);
            goto done;
        }
    memcpy(w.h_out, w.h_x0, (size_t)n * d * sizeof(float));
    AL_CHECK(forward_rows(ctx, m, &w, w.h_x0, n));
    for (int i = 0; i < n; i++) w.h_rob[i] = row_argmax_excl(w.h_z + (size_t)i * k, k, -1) == w.h_y[i];
    for (int r = 0; r < s->n_restarts; r++) AL_CHECK(square_once(ctx, m, s, &w, r, seed, stream, x, y));

    /* final verification on exactly the returned points (failures -> clean rows) */
    AL_CHECK(forward_rows(ctx, m, &w, w.h_out, n));
    for (int i = 0; i < n; i++) {
        w.h_rob[i] = row_argmax_excl(w.h_z + (size_t)i * k, k, -1) != w.h_y[i]; /* now: success */
        if (!w.h_rob[i]) memcpy(w.h_out + (size_t)i * d, w.h_x0 + (size_t)i * d, d * sizeof(float));
    }
    AL_CHECK(al_copy_to_dev(ctx, x_adv, w.h_out, (size_t)n * d * sizeof(float)));
    if (success) AL_CHECK(al_copy_to_dev(ctx, success, w.h_rob, (size_t)n));
done:
    ws_fini(ctx, &w);
    return st;
}
