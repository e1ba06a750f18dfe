/* test_multibn.c: BN branches, the learned BN-branch selector (core/ops/bn_gate.c) and the
 * AdvProp / MDProp / MultiBN steps (core/methods/multibn.c).
 *
 * Unit cases (CPU, a 6x6 two-BN network "tnet" without ReLU, so every function is smooth and
 * finite differences need no kink handling):
 *   branch_isolation    a train-mode forward on branch 1 updates only branch-1 running stats
 *                       and counters; its backward reaches only branch-1 affine parameters;
 *                       eval on branch 1 == eval on branch 0 holding branch 1's parameters
 *   gate_train_same     with the gate attached, train-mode (and explicit-branch eval) forwards,
 *                       running stats and gradients are bit-identical to the plain model
 *   grad_branch_train   float backward vs central differences of a DOUBLE evaluation of the
 *                       same graph (harness/refops.c) on branches 0, 1, 2 in train mode
 *   grad_routed_soft    the same through the soft gate (eval, eval_branch = -1): input, gate,
 *                       every branch's affine parameters and the convs; batch 1 and 3
 *   routed_hard         hard routing == each example on its argmax branch; no gate gradient
 *   eval_branch_remap   eval_branch = 2 and forwards on branch 0 run branch 2
 *   method_steps        one AdvProp / MDProp / MultiBN step: loss = the documented formula
 *                       recomputed from the step's adversarial inputs; x_adv in the eps-balls;
 *                       AdvProp never touches branch 2; AdvProp targets differ from labels
 *   checkpoint_roundtrip  a checkpoint rebuilds branches, gate and evaluation branch
 *                       (al_checkpoint_create_model) with bit-identical logits and counters
 *   eval_branch_attacks an attack built with branch 0 (as every attack's default spec) runs
 *                       on m->eval_branch: same x_adv and counts as on that branch explicitly
 * E2E cases (Fashion-MNIST, $AL_FMNIST_H5; skipped without it), driven through the method
 * definitions with the trainer's building blocks (sampler, SGD schedule, al_evaluate): a small
 * BN CNN trained for a few hundred steps with each method and with standard training on the
 * same budget; PGD-20 evaluated on the method's test branch (the attack on that branch):
 *   e2e_advprop   loss falls; clean accuracy >= standard's - 0.04 (AdvProp's claim)
 *   e2e_mdprop    loss falls; Linf PGD-20 accuracy (branch 1) > standard's + 0.15
 *   e2e_multibn   loss falls; gate-routed Linf PGD-20 accuracy > standard's + 0.15 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attacks/attack.h"
#include "core/checkpoint.h"
#include "core/config.h"
#include "core/evaluate.h"
#include "core/log.h"
#include "core/methods/advprop_target.h"
#include "core/methods/method.h"
#include "core/model.h"
#include "core/ops/bn_gate.h"
#include "core/optim.h"
#include "core/rng.h"
#include "datasets/h5data.h"
#include "datasets/sampler.h"
#include "harness/check.h"
#include "harness/refops.h"
#include "losses/loss.h"

#define TRY_T(call)                                                                              \
    do {                                                                                         \
        al_status st_ = (call);                                                                  \
        AL_EXPECT(st_ == AL_OK, "%s -> %d: %s", #call, (int)st_, al_errmsg());                  \
    } while (0)

static double *dalloc(size_t n) {
    double *p = calloc(n ? n : 1, sizeof *p);
    AL_ASSERT(p, "out of memory");
    return p;
}
static float *falloc(size_t n) {
    float *p = calloc(n ? n : 1, sizeof *p);
    AL_ASSERT(p, "out of memory");
    return p;
}

/* ------------------------------------------------------------------ the test network */

enum { T_C = 1, T_HW = 6, T_K = 3, T_BR = 3 };

/* normalise -> conv1 (1->4, 3x3, pad 1) -> bn1 -> conv2 (4->5, 3x3, stride 2, pad 1) -> bn2
 * -> avgpool 3 -> fc (5->3). Optional ReLUs after the BNs (e2e-like) are off for FD tests. */
static al_model *build_tnet(int n_branches, int gate, int hard) {
    al_model *m = al_model_new("tnet", T_K, T_C, T_HW, T_HW);
    if (n_branches > 1) al_model_set_branches(m, n_branches);
    const float mean = 0.4f, sd = 0.3f;
    al_model_set_normalization(m, &mean, &sd);
    int x = al_model_conv(m, "conv1", al_model_input(m), 4, 3, 1, 1, 1);
    x = al_model_bn(m, "bn1", x);
    x = al_model_conv(m, "conv2", x, 5, 3, 2, 1, 0);
    x = al_model_bn(m, "bn2", x);
    int f = al_model_avgpool(m, x, 3, 3);
    int z = al_model_linear(m, "fc", f, T_K, 1);
    al_model_set_output(m, z, f);
    if (gate) AL_ASSERT(al_bn_gate_attach(m, hard) == AL_OK, "attach: %s", al_errmsg());
    return m;
}

/* Parameters with distinct per-branch BN values (gamma, beta, running stats) and a gate whose
 * routing is far from uniform. Deterministic: ids from the parameter name's position. */
static void tnet_params(al_ctx *ctx, al_model *m) {
    AL_ASSERT(al_model_init_params(ctx, m, 7) == AL_OK, "init");
    for (int i = 0; i < m->n_params; i++) {
        al_param *p = &m->params[i];
        float *w = al_param_data(m, i);
        uint64_t id = 100 + (uint64_t)i;
        switch (p->kind) {
        case AL_P_BN_WEIGHT: al_test_fill(w, p->n_elems, id, 0.5f, 1.5f); break;
        case AL_P_BN_BIAS: al_test_fill(w, p->n_elems, id, -0.5f, 0.5f); break;
        case AL_P_BN_MEAN: al_test_fill(w, p->n_elems, id, -0.3f, 0.3f); break;
        case AL_P_BN_VAR: al_test_fill(w, p->n_elems, id, 0.5f, 1.5f); break;
        default:
            if (strncmp(p->name, "bn_gate.fc", 10) == 0) al_test_fill(w, p->n_elems, id, -1.5f, 1.5f);
            break;
        }
    }
}

static al_model *tnet_setup(al_ctx *ctx, int n_branches, int gate, int hard, int max_batch) {
    al_model *m = build_tnet(n_branches, gate, hard);
    AL_ASSERT(al_model_setup(ctx, m, max_batch, 2) == AL_OK, "setup: %s", al_errmsg());
    tnet_params(ctx, m);
    return m;
}

static int find_param(const al_model *m, const char *name) {
    int i = al_model_find_param(m, name);
    AL_ASSERT(i >= 0, "no parameter %s", name);
    return i;
}

static int bit_equal(const float *a, const float *b, size_t n) { return memcmp(a, b, n * sizeof(float)) == 0; }

/* ------------------------------------------------------------------ double reference */

/* Walks m->nodes in double with refops: the plain ops, the gate's stats/softmax and the gated
 * BN (plain branch or routed mixture). theta = input (n*d) then every parameter (table order,
 * n_elems each, no padding). mode: train (batch stats), branch, routed / hard as bn_gate.h. */
typedef struct dref {
    const al_model *m;
    int n, train, branch, routed, hard;
    size_t *poff;   /* (n_params) offsets of the parameters in theta */
    size_t n_theta;
    const double *wl; /* (n, K) weights of L = <wl, logits> */
} dref;

static void dref_init(dref *r, const al_model *m, int n) {
    memset(r, 0, sizeof *r);
    r->m = m;
    r->n = n;
    r->poff = malloc((size_t)m->n_params * sizeof(size_t));
    size_t off = (size_t)n * m->bufs[0].per_sample;
    for (int i = 0; i < m->n_params; i++) {
        r->poff[i] = off;
        off += m->params[i].n_elems;
    }
    r->n_theta = off;
}

static double *theta_from_model(const dref *r, const float *x) {
    const al_model *m = r->m;
    double *t = dalloc(r->n_theta);
    for (size_t j = 0; j < (size_t)r->n * m->bufs[0].per_sample; j++) t[j] = x[j];
    for (int i = 0; i < m->n_params; i++)
        for (size_t j = 0; j < m->params[i].n_elems; j++)
            t[r->poff[i] + j] = m->data[m->params[i].offset + j];
    return t;
}

static int is_gated(const al_node *nd) { return nd->kind == AL_NODE_CUSTOM && !strcmp(nd->ops->kind, "gated_bn"); }

/* forward; returns L and fills logits (n, K) if non-NULL */
static double dref_forward(const dref *r, const double *theta, double *logits) {
    const al_model *m = r->m;
    const int n = r->n;
    double **buf = calloc((size_t)m->n_bufs, sizeof *buf);
    for (int b = 0; b < m->n_bufs; b++) buf[b] = dalloc((size_t)n * m->bufs[b].per_sample);
    memcpy(buf[0], theta, (size_t)n * m->bufs[0].per_sample * sizeof(double));
#define TP(pi) ((pi) >= 0 ? theta + r->poff[pi] : NULL)
    for (int i = 0; i < m->n_nodes; i++) {
        const al_node *nd = &m->nodes[i];
        const al_buf ib = m->bufs[nd->in0], ob = m->bufs[nd->out];
        const double *x = buf[nd->in0];
        double *y = buf[nd->out];
        const int hw = ib.h * ib.w;
        if (nd->kind == AL_NODE_NORMALIZE) {
            double mu[4], sd[4];
            for (int c = 0; c < ib.c; c++) mu[c] = m->mean[c], sd[c] = m->std[c];
            al_ref_normalize_forward(n, ib.c, hw, x, mu, sd, y);
        } else if (nd->kind == AL_NODE_CONV) {
            al_ref_conv2d_forward(n, ib.c, ib.h, ib.w, ob.c, nd->k, nd->stride, nd->pad, x,
                                  TP(nd->param[0][0]), TP(nd->param[0][1]), y);
        } else if (nd->kind == AL_NODE_LINEAR) {
            al_ref_linear_forward(n, (int)ib.per_sample, (int)ob.per_sample, x, TP(nd->param[0][0]),
                                  TP(nd->param[0][1]), y);
        } else if (nd->kind == AL_NODE_AVGPOOL) {
            al_ref_avgpool_forward(n, ib.c, ib.h, ib.w, nd->k, nd->stride, x, y);
        } else if (nd->kind == AL_NODE_RELU) {
            al_ref_relu_forward((size_t)n * ib.per_sample, x, y);
        } else if (nd->kind == AL_NODE_BN || (is_gated(nd) && !r->routed)) {
            const int *pp = nd->param[r->branch];
            double *rm = dalloc(ib.c), *rv = dalloc(ib.c);
            memcpy(rm, theta + r->poff[pp[2]], ib.c * sizeof(double));
            memcpy(rv, theta + r->poff[pp[3]], ib.c * sizeof(double));
            al_ref_bn_forward(n, ib.c, hw, nd->eps, nd->momentum, r->train, x, TP(pp[0]), TP(pp[1]),
                              r->train ? NULL : rm, r->train ? NULL : rv, y, NULL, NULL);
            free(rm);
            free(rv);
        } else if (is_gated(nd)) {
            const double *p = buf[nd->in1];
            const int nb = m->n_branches;
            double *t = dalloc((size_t)n * ib.per_sample);
            memset(y, 0, (size_t)n * ib.per_sample * sizeof(double));
            for (int q = 0; q < nb; q++) {
                const int *pp = nd->param[q];
                al_ref_bn_forward(n, ib.c, hw, nd->eps, nd->momentum, 0, x, TP(pp[0]), TP(pp[1]),
                                  (double *)TP(pp[2]), (double *)TP(pp[3]), t, NULL, NULL);
                for (int e = 0; e < n; e++)
                    for (size_t j = 0; j < ib.per_sample; j++)
                        y[e * ib.per_sample + j] += p[e * nb + q] * t[e * ib.per_sample + j];
            }
            free(t);
        } else if (nd->kind == AL_NODE_CUSTOM && !strcmp(nd->ops->kind, "bn_gate_stats")) {
            for (int e = 0; e < n; e++)
                for (int c = 0; c < ib.c; c++) {
                    const double *xr = x + ((size_t)e * ib.c + c) * hw;
                    double s = 0, v = 0;
                    for (int k = 0; k < hw; k++) s += xr[k];
                    s /= hw;
                    for (int k = 0; k < hw; k++) v += (xr[k] - s) * (xr[k] - s);
                    y[(size_t)e * 2 * ib.c + c] = s;
                    y[(size_t)e * 2 * ib.c + ib.c + c] = sqrt(v / hw + 1e-5);
                }
        } else if (nd->kind == AL_NODE_CUSTOM && !strcmp(nd->ops->kind, "bn_gate_softmax")) {
            const int nb = (int)ib.per_sample;
            for (int e = 0; e < n; e++) {
                const double *z = x + (size_t)e * nb;
                int arg = 0;
                for (int q = 1; q < nb; q++)
                    if (z[q] > z[arg]) arg = q;
                double s = 0;
                for (int q = 0; q < nb; q++) s += exp(z[q] - z[arg]);
                for (int q = 0; q < nb; q++)
                    y[(size_t)e * nb + q] = r->hard ? (q == arg) : exp(z[q] - z[arg]) / s;
            }
        } else {
            AL_ASSERT(0, "dref: node kind %d not handled", nd->kind);
        }
    }
#undef TP
    const double *z = buf[m->out_buf];
    double L = 0;
    for (size_t j = 0; j < (size_t)n * m->num_classes; j++) L += r->wl[j] * z[j];
    if (logits) memcpy(logits, z, (size_t)n * m->num_classes * sizeof(double));
    for (int b = 0; b < m->n_bufs; b++) free(buf[b]);
    free(buf);
    return L;
}

/* Relative error bound of the float graph's outputs and gradients: each op contributes at
 * most al_tol_f32(K) relative to its output RMS (test_ops verifies the built-in ops one by
 * one, K = the longest reduction of its forward, dx and dw), and relative errors add along
 * the chain (as test_model_graph.c's graph_tol). Custom nodes: K = the reduction they run. */
static double graph_tol(const al_model *m, int n) {
    double t = 0.0;
    for (int i = 0; i < m->n_nodes; i++) {
        const al_node *nd = &m->nodes[i];
        const al_buf ib = m->bufs[nd->in0], ob = m->bufs[nd->out];
        double k = 1;
        if (nd->kind == AL_NODE_CONV)
            k = AL_MAX(AL_MAX((double)ib.c * nd->k * nd->k, (double)ob.c * nd->k * nd->k), (double)n * ob.h * ob.w);
        else if (nd->kind == AL_NODE_LINEAR)
            k = AL_MAX(AL_MAX((double)ib.per_sample, (double)ob.per_sample), (double)n);
        else if (nd->kind == AL_NODE_BN || nd->kind == AL_NODE_CUSTOM)
            k = (double)n * ib.h * ib.w * m->n_branches;
        else if (nd->kind == AL_NODE_AVGPOOL)
            k = (double)nd->k * nd->k;
        t += al_tol_f32(k);
    }
    return t;
}

static double rms_d(const double *a, size_t n) {
    double s = 0;
    for (size_t i = 0; i < n; i++) s += a[i] * a[i];
    return n ? sqrt(s / (double)n) : 0;
}

/* Float model gradient (dx and m->grads from one backward of L = <wl, logits>) vs central
 * differences (4-point, h = 1e-3 in double: truncation ~h^4 |f^(5)|, rounding ~1e-16/h) of
 * the double reference, over the input and every trainable parameter. Also the logits. */
static int check_grads(al_ctx *ctx, al_model *m, const float *x, int n, const al_fwd_opts *o,
                       int routed, int hard, const char *tag) {
    const int K = m->num_classes;
    const size_t d = m->bufs[0].per_sample;
    dref r;
    dref_init(&r, m, n);
    r.train = o->train;
    r.routed = routed;
    r.hard = hard;
    r.branch = routed ? 0 : (o->train || o->bn_branch != 0 || m->eval_branch <= 0 ? o->bn_branch : m->eval_branch);
    double *wl = dalloc((size_t)n * K);
    al_test_fill_d(wl, (size_t)n * K, 900, -1, 1);
    r.wl = wl;
    float *wlf = falloc((size_t)n * K), *dx = falloc((size_t)n * d);
    for (size_t j = 0; j < (size_t)n * K; j++) wlf[j] = (float)wl[j];

    TRY_T(al_model_forward(ctx, m, x, n, o));
    double *theta = theta_from_model(&r, x), *zref = dalloc((size_t)n * K);
    dref_forward(&r, theta, zref);
    const double tol = graph_tol(m, n);
    char what[160];
    int fails = 0;
    snprintf(what, sizeof what, "%s logits", tag);
    fails += al_check_close_fd(what, al_model_logits(m, o->slot), zref, (size_t)n * K, tol * rms_d(zref, (size_t)n * K), tol);

    TRY_T(al_model_zero_grad(ctx, m));
    TRY_T(al_model_backward(ctx, m, o->slot, wlf, NULL, AL_BWD_WEIGHTS | AL_BWD_INPUT, dx));
    /* the float gradient vector in theta order (input, then parameters; frozen/buffers 0) */
    double *g_fd = dalloc(r.n_theta);
    float *g_an = falloc(r.n_theta);
    char *want = calloc(r.n_theta, 1);
    for (size_t j = 0; j < (size_t)n * d; j++) g_an[j] = dx[j], want[j] = 1;
    for (int i = 0; i < m->n_params; i++) {
        if (!m->params[i].trainable) continue;
        for (size_t j = 0; j < m->params[i].n_elems; j++) {
            g_an[r.poff[i] + j] = m->grads[m->params[i].offset + j];
            want[r.poff[i] + j] = 1;
        }
    }
    const double h = 1e-3;
    for (size_t j = 0; j < r.n_theta; j++) {
        if (!want[j]) continue;
        double t0 = theta[j], f[4];
        const double s[4] = {2 * h, h, -h, -2 * h};
        for (int q = 0; q < 4; q++) {
            theta[j] = t0 + s[q];
            f[q] = dref_forward(&r, theta, NULL);
        }
        theta[j] = t0;
        g_fd[j] = (-f[0] + 8 * f[1] - 8 * f[2] + f[3]) / (12 * h);
    }
    /* compare per group (input, each parameter) so a failure names what is wrong; the
     * absolute part of the tolerance is tol times the group's RMS plus the RMS of the whole
     * gradient: float rounding is relative to the magnitude of the summed terms, which for a
     * gradient that cancels to ~0 (a conv bias before a train-mode BN) is the overall scale */
    double g_rms = 0;
    {
        size_t cnt = 0;
        for (size_t j = 0; j < r.n_theta; j++)
            if (want[j]) g_rms += g_fd[j] * g_fd[j], cnt++;
        g_rms = sqrt(g_rms / (double)cnt);
    }
    snprintf(what, sizeof what, "%s d/dx", tag);
    fails += al_check_close_fd(what, g_an, g_fd, (size_t)n * d, tol * (rms_d(g_fd, (size_t)n * d) + g_rms), tol);
    for (int i = 0; i < m->n_params; i++) {
        if (!m->params[i].trainable) continue;
        size_t ne = m->params[i].n_elems;
        snprintf(what, sizeof what, "%s d/d%s", tag, m->params[i].name);
        double sc = rms_d(g_fd + r.poff[i], ne);
        fails += al_check_close_fd(what, g_an + r.poff[i], g_fd + r.poff[i], ne, tol * (sc + g_rms), tol);
    }
    /* without routing, parameters of the other branches and the gate get exactly 0 */
    if (!routed) {
        for (int i = 0; i < m->n_nodes; i++) {
            const al_node *nd = &m->nodes[i];
            if (nd->kind != AL_NODE_BN && !is_gated(nd)) continue;
            for (int q = 0; q < m->n_branches; q++)
                for (int j = 0; j < 2 && q != r.branch; j++) {
                    const al_param *pq = &m->params[nd->param[q][j]];
                    for (size_t e = 0; e < pq->n_elems; e++)
                        if (m->grads[pq->offset + e] != 0.0f) {
                            fprintf(stderr, "  %s: %s gradient %g, expected exactly 0\n", tag, pq->name,
                                    m->grads[pq->offset + e]);
                            fails++;
                            break;
                        }
                }
        }
        for (int i = 0; i < m->n_params; i++)
            if (!strncmp(m->params[i].name, "bn_gate.", 8))
                for (size_t e = 0; e < m->params[i].n_elems; e++)
                    if (m->grads[m->params[i].offset + e] != 0.0f) {
                        fprintf(stderr, "  %s: %s gradient nonzero without routing\n", tag, m->params[i].name);
                        fails++;
                        break;
                    }
    }
    free(wl), free(wlf), free(dx), free(theta), free(zref), free(g_fd), free(g_an), free(want);
    free(r.poff);
    return fails ? 1 : 0;
}

/* ------------------------------------------------------------------ unit cases */

static al_ctx g_ctx;
static int ctx_ready;
static al_ctx *ctx_cpu(void) {
    if (!ctx_ready) {
        AL_ASSERT(al_ctx_init(&g_ctx, AL_DEV_CPU, 0, 0, 1) == AL_OK, "ctx");
        ctx_ready = 1;
    }
    return &g_ctx;
}

static float *tnet_input(int n, uint64_t id) {
    float *x = falloc((size_t)n * T_C * T_HW * T_HW);
    al_test_fill(x, (size_t)n * T_C * T_HW * T_HW, id, 0, 1);
    return x;
}

static int case_branch_isolation(void) {
    al_ctx *ctx = ctx_cpu();
    al_model *m = tnet_setup(ctx, T_BR, 0, 0, 4);
    const int n = 4;
    float *x = tnet_input(n, 1);
    float *before = falloc(m->n_param_floats);
    memcpy(before, m->data, m->n_param_floats * sizeof(float));
    al_fwd_opts o = {0, 1, 1, 1, 0, NULL};
    TRY_T(al_model_forward(ctx, m, x, n, &o));
    float *dl = falloc((size_t)n * T_K);
    al_test_fill(dl, (size_t)n * T_K, 2, -1, 1);
    TRY_T(al_model_zero_grad(ctx, m));
    TRY_T(al_model_backward(ctx, m, 0, dl, NULL, AL_BWD_WEIGHTS, NULL));
    for (int i = 0; i < m->n_nodes; i++) {
        const al_node *nd = &m->nodes[i];
        if (nd->kind != AL_NODE_BN) continue;
        for (int b = 0; b < T_BR; b++) {
            AL_EXPECT(nd->bn_tracked[b] == (b == 1), "%s: branch %d num_batches_tracked %lld", nd->name, b,
                      (long long)nd->bn_tracked[b]);
            for (int j = 0; j < 4; j++) {
                const al_param *p = &m->params[nd->param[b][j]];
                const int same = bit_equal(m->data + p->offset, before + p->offset, p->n_elems);
                if (j >= 2) AL_EXPECT(same == (b != 1), "%s: running stat of branch %d %s", p->name, b,
                                      same ? "unchanged" : "changed");
                else AL_EXPECT(same, "%s: affine parameter changed by a forward", p->name);
                if (j < 2) {
                    double s = 0;
                    for (size_t e = 0; e < p->n_elems; e++) s += fabs(m->grads[p->offset + e]);
                    AL_EXPECT((s > 0) == (b == 1), "%s: gradient |sum| %g (branch %d)", p->name, s, b);
                }
            }
        }
    }
    /* eval on branch 1 == eval on branch 0 holding branch 1's parameters (bitwise) */
    al_fwd_opts e1 = {0, 0, 0, 1, 0, NULL};
    TRY_T(al_model_forward(ctx, m, x, n, &e1));
    float *z1 = falloc((size_t)n * T_K);
    memcpy(z1, al_model_logits(m, 0), (size_t)n * T_K * sizeof(float));
    for (int i = 0; i < m->n_nodes; i++) {
        const al_node *nd = &m->nodes[i];
        if (nd->kind != AL_NODE_BN) continue;
        for (int j = 0; j < 4; j++)
            memcpy(al_param_data(m, nd->param[0][j]), al_param_data(m, nd->param[1][j]),
                   m->params[nd->param[0][j]].n_elems * sizeof(float));
    }
    TRY_T(al_model_forward_eval(ctx, m, x, n, 0));
    AL_EXPECT(bit_equal(z1, al_model_logits(m, 0), (size_t)n * T_K), "branch-1 eval differs from branch 0 with branch-1 parameters");
    free(x), free(before), free(dl), free(z1);
    al_model_destroy(ctx, m);
    return 0;
}

static int case_gate_train_same(void) {
    al_ctx *ctx = ctx_cpu();
    const int n = 3;
    al_model *a = tnet_setup(ctx, T_BR, 0, 0, n), *g = tnet_setup(ctx, T_BR, 1, 0, n);
    /* the gate's parameters come after the trunk's: the trunk is initialised identically */
    for (int i = 0; i < a->n_params; i++) {
        AL_EXPECT(!strcmp(a->params[i].name, g->params[i].name), "param %d: %s vs %s", i, a->params[i].name,
                  g->params[i].name);
        AL_EXPECT(bit_equal(al_param_data(a, i), al_param_data(g, i), a->params[i].n_elems), "%s init differs",
                  a->params[i].name);
    }
    float *x = tnet_input(n, 3), *dl = falloc((size_t)n * T_K);
    al_test_fill(dl, (size_t)n * T_K, 4, -1, 1);
    for (int b = 0; b < T_BR; b++) {
        for (int train = 1; train >= 0; train--) {
            al_fwd_opts o = {0, train, train, b, 0, NULL};
            TRY_T(al_model_forward(ctx, a, x, n, &o));
            TRY_T(al_model_forward(ctx, g, x, n, &o));
            AL_EXPECT(bit_equal(al_model_logits(a, 0), al_model_logits(g, 0), (size_t)n * T_K),
                      "branch %d train %d: logits differ", b, train);
            TRY_T(al_model_zero_grad(ctx, a));
            TRY_T(al_model_zero_grad(ctx, g));
            TRY_T(al_model_backward(ctx, a, 0, dl, NULL, AL_BWD_WEIGHTS, NULL));
            TRY_T(al_model_backward(ctx, g, 0, dl, NULL, AL_BWD_WEIGHTS, NULL));
            for (int i = 0; i < a->n_params; i++) {
                AL_EXPECT(bit_equal(al_param_data(a, i), al_param_data(g, i), a->params[i].n_elems),
                          "branch %d train %d: %s differs", b, train, a->params[i].name);
                AL_EXPECT(bit_equal(al_param_grad(a, i), al_param_grad(g, i), a->params[i].n_elems),
                          "branch %d train %d: grad %s differs", b, train, a->params[i].name);
            }
        }
    }
    /* num_batches_tracked counted per branch like the built-in node */
    for (int i = 0, j = 0; i < a->n_nodes; i++) {
        if (a->nodes[i].kind != AL_NODE_BN) continue;
        while (!is_gated(&g->nodes[j])) j++;
        for (int b = 0; b < T_BR; b++)
            AL_EXPECT(a->nodes[i].bn_tracked[b] == g->nodes[j].bn_tracked[b], "%s tracked", a->nodes[i].name);
        j++;
    }
    free(x), free(dl);
    al_model_destroy(ctx, a);
    al_model_destroy(ctx, g);
    return 0;
}

static int case_grad_branch_train(void) {
    al_ctx *ctx = ctx_cpu();
    int fails = 0;
    for (int gate = 0; gate <= 1; gate++) {
        al_model *m = tnet_setup(ctx, T_BR, gate, 0, 3);
        float *x = tnet_input(3, 5);
        for (int b = 0; b < T_BR; b++) {
            char tag[64];
            snprintf(tag, sizeof tag, "%s train branch %d", gate ? "gated" : "plain", b);
            al_fwd_opts o = {0, 1, 0, b, 0, NULL};
            fails += check_grads(ctx, m, x, 3, &o, 0, 0, tag);
            al_fwd_opts e = {0, 0, 0, b, 0, NULL};
            snprintf(tag, sizeof tag, "%s eval branch %d", gate ? "gated" : "plain", b);
            fails += check_grads(ctx, m, x, 3, &e, 0, 0, tag);
        }
        free(x);
        al_model_destroy(ctx, m);
    }
    return fails ? 1 : 0;
}

static int case_grad_routed_soft(void) {
    al_ctx *ctx = ctx_cpu();
    int fails = 0;
    for (int n = 1; n <= 3; n += 2) {
        al_model *m = tnet_setup(ctx, T_BR, 1, 0, n);
        m->eval_branch = -1;
        float *x = tnet_input(n, 6);
        al_fwd_opts o = {0, 0, 0, 0, 0, NULL};
        /* the routing must be a real mixture for the test to mean something */
        TRY_T(al_model_forward(ctx, m, x, n, &o));
        int sm = -1;
        for (int i = 0; i < m->n_nodes; i++)
            if (m->nodes[i].kind == AL_NODE_CUSTOM && !strcmp(m->nodes[i].ops->kind, "bn_gate_softmax")) sm = i;
        const float *p = al_model_buffer(m, 0, m->nodes[sm].out);
        for (int e = 0; e < n; e++) {
            fprintf(stderr, "  example %d gate p = [%.3f %.3f %.3f]\n", e, p[e * 3], p[e * 3 + 1], p[e * 3 + 2]);
            for (int q = 0; q < 3; q++) AL_EXPECT(p[e * 3 + q] > 0.02f && p[e * 3 + q] < 0.98f, "gate saturated");
        }
        char tag[64];
        snprintf(tag, sizeof tag, "soft routed n=%d", n);
        fails += check_grads(ctx, m, x, n, &o, 1, 0, tag);
        free(x);
        al_model_destroy(ctx, m);
    }
    return fails ? 1 : 0;
}

static int case_routed_hard(void) {
    al_ctx *ctx = ctx_cpu();
    const int n = 6;
    al_model *g = tnet_setup(ctx, T_BR, 1, 1, n), *a = tnet_setup(ctx, T_BR, 0, 0, 1);
    g->eval_branch = -1;
    float *x = tnet_input(n, 8), *dl = falloc((size_t)n * T_K), *dx = falloc((size_t)n * 36),
          *dxa = falloc(36);
    al_test_fill(dl, (size_t)n * T_K, 9, -1, 1);
    /* spread the examples' statistics (contrast 0.3 .. 1.55) and centre each gate logit over
     * the batch, so the argmax differs between examples */
    for (int e = 0; e < n; e++)
        for (int j = 0; j < 36; j++) x[e * 36 + j] = 0.5f + (x[e * 36 + j] - 0.5f) * (0.3f + 0.25f * e);
    {
        TRY_T(al_model_forward_eval(ctx, g, x, n, 0));
        const float *z0 = al_model_buffer(g, 0, al_bn_gate_logits_buf(g));
        float *bias = al_param_data(g, find_param(g, "bn_gate.fc.bias"));
        for (int q = 0; q < T_BR; q++) {
            double mz = 0;
            for (int e = 0; e < n; e++) mz += z0[e * T_BR + q];
            bias[q] -= (float)(mz / n);
        }
    }
    TRY_T(al_model_forward_eval(ctx, g, x, n, 0));
    TRY_T(al_model_zero_grad(ctx, g));
    TRY_T(al_model_backward(ctx, g, 0, dl, NULL, AL_BWD_WEIGHTS | AL_BWD_INPUT, dx));
    const int zb = al_bn_gate_logits_buf(g);
    const float *z = al_model_buffer(g, 0, zb);
    int used[T_BR] = {0};
    for (int e = 0; e < n; e++) {
        int arg = 0;
        for (int q = 1; q < T_BR; q++)
            if (z[e * T_BR + q] > z[e * T_BR + arg]) arg = q;
        used[arg]++;
        al_fwd_opts o = {0, 0, 0, arg, 0, NULL};
        TRY_T(al_model_forward(ctx, a, x + e * 36, 1, &o));
        AL_EXPECT(bit_equal(al_model_logits(a, 0), al_model_logits(g, 0) + e * T_K, T_K),
                  "example %d (branch %d): hard routing != plain branch", e, arg);
        TRY_T(al_model_backward(ctx, a, 0, dl + e * T_K, NULL, AL_BWD_INPUT, dxa));
        /* dx differs only through the (zero) gate path: equal up to rounding of the sums */
        char what[64];
        snprintf(what, sizeof what, "hard dx example %d", e);
        AL_EXPECT(al_check_close(what, dx + e * 36, dxa, 36, al_tol_f32(36 * 9) * 4, al_tol_f32(36 * 9) * 4) == 0, "dx");
    }
    fprintf(stderr, "  hard routing used branches [%d %d %d]\n", used[0], used[1], used[2]);
    AL_EXPECT((used[0] > 0) + (used[1] > 0) + (used[2] > 0) >= 2, "the test needs >= 2 branches in use");
    for (const char *nm = "bn_gate.fc.weight"; nm; nm = strcmp(nm, "bn_gate.fc.weight") ? NULL : "bn_gate.fc.bias") {
        int pi = find_param(g, nm);
        for (size_t j = 0; j < g->params[pi].n_elems; j++)
            AL_EXPECT(al_param_grad(g, pi)[j] == 0.0f, "%s gradient %g under hard routing", nm, al_param_grad(g, pi)[j]);
    }
    free(x), free(dl), free(dx), free(dxa);
    al_model_destroy(ctx, g);
    al_model_destroy(ctx, a);
    return 0;
}

static int case_eval_branch_remap(void) {
    al_ctx *ctx = ctx_cpu();
    al_model *g = tnet_setup(ctx, T_BR, 1, 0, 3);
    float *x = tnet_input(3, 10), *z2 = falloc(3 * T_K);
    al_fwd_opts o2 = {0, 0, 0, 2, 0, NULL}, o0 = {0, 0, 0, 0, 0, NULL};
    TRY_T(al_model_forward(ctx, g, x, 3, &o2));
    memcpy(z2, al_model_logits(g, 0), 3 * T_K * sizeof(float));
    g->eval_branch = 2;
    TRY_T(al_model_forward(ctx, g, x, 3, &o0));
    AL_EXPECT(bit_equal(z2, al_model_logits(g, 0), 3 * T_K), "eval_branch 2 with bn_branch 0");
    TRY_T(al_model_forward_eval(ctx, g, x, 3, 0));
    AL_EXPECT(bit_equal(z2, al_model_logits(g, 0), 3 * T_K), "al_model_forward_eval with eval_branch 2");
    /* a train-mode forward ignores eval_branch */
    al_fwd_opts t0 = {0, 1, 0, 0, 0, NULL};
    TRY_T(al_model_forward(ctx, g, x, 3, &t0));
    AL_EXPECT(!bit_equal(z2, al_model_logits(g, 0), 3 * T_K), "train mode must use branch 0");
    free(x), free(z2);
    al_model_destroy(ctx, g);
    return 0;
}

/* ---- method steps on tnet with random data ---- */

typedef struct io_bufs {
    al_step_io io;
    al_attack_ws ws;
} io_bufs;

static void io_alloc(io_bufs *b, al_ctx *ctx, al_model *m, const al_config *cfg, int B) {
    memset(b, 0, sizeof *b);
    al_step_io *io = &b->io;
    const size_t d = m->bufs[0].per_sample;
    const int k = m->num_classes, fd = al_model_feature_dim(m), wide = AL_MAX(fd, k);
    AL_ASSERT(al_attack_ws_init(ctx, &b->ws, m, B) == AL_OK, "ws");
    io->ctx = ctx;
    io->m = m;
    io->cfg = cfg;
    io->ws = &b->ws;
    int none = 0;
    AL_ASSERT(al_train_spec_from_config(cfg, &io->spec, &none) == AL_OK, "spec: %s", al_errmsg());
    io->no_attack = none;
    io->k = k;
    io->d = d;
    io->seed = (uint64_t)cfg->run.seed;
    io->xadv = falloc((size_t)B * d);
    for (int i = 0; i < 2; i++) {
        io->xaux[i] = falloc((size_t)B * d);
        io->yaux[i] = calloc((size_t)B, sizeof(int32_t));
    }
    for (int s = 0; s < AL_STEP_MAX_SLOTS; s++) {
        io->dl[s] = falloc((size_t)B * k);
        io->dfeat[s] = falloc((size_t)B * fd);
    }
    for (int i = 0; i < 4; i++) io->fbuf[i] = falloc((size_t)B * wide);
}

static void io_free(io_bufs *b, al_ctx *ctx) {
    al_step_io *io = &b->io;
    al_attack_ws_fini(ctx, &b->ws);
    free(io->xadv);
    for (int i = 0; i < 2; i++) free(io->xaux[i]), free(io->yaux[i]);
    for (int s = 0; s < AL_STEP_MAX_SLOTS; s++) free(io->dl[s]), free(io->dfeat[s]);
    for (int i = 0; i < 4; i++) free(io->fbuf[i]);
}

static void method_config(al_config *cfg, al_method method, int test_branch) {
    al_config_defaults(cfg);
    cfg->train.method = method;
    cfg->model.bn_branches = method == AL_METHOD_ADVPROP ? 2 : 3;
    cfg->multibn.test_branch = test_branch;
    cfg->attack.eps = 0.1f;
    cfg->attack.alpha = 0.04f;
    cfg->attack.steps = 3;
    cfg->multibn.l2_eps = 1.0f;
    cfg->multibn.l2_alpha = 0.4f;
    AL_ASSERT(al_config_validate(cfg) == AL_OK, "validate: %s", al_errmsg());
}

static double linf_dist(const float *a, const float *b, size_t n) {
    double d = 0;
    for (size_t i = 0; i < n; i++) d = fmax(d, fabs((double)a[i] - b[i]));
    return d;
}

static int case_method_steps(void) {
    al_ctx *ctx = ctx_cpu();
    const int n = 5;
    const al_method methods[3] = {AL_METHOD_ADVPROP, AL_METHOD_MDPROP, AL_METHOD_MULTIBN};
    for (int mi = 0; mi < 3; mi++) {
        al_config cfg;
        method_config(&cfg, methods[mi], methods[mi] == AL_METHOD_MULTIBN ? -1 : 0);
        const al_method_def *def;
        TRY_T(al_method_lookup(methods[mi], &def));
        al_model *m = build_tnet(T_BR, 0, 0);
        TRY_T(al_multibn_build(m, &cfg));
        AL_EXPECT(al_bn_gate_present(m) == (methods[mi] == AL_METHOD_MULTIBN), "%s: gate presence", def->name);
        TRY_T(al_model_setup(ctx, m, n, def->n_slots));
        tnet_params(ctx, m);
        io_bufs b;
        io_alloc(&b, ctx, m, &cfg, n);
        al_step_io *io = &b.io;
        float *x = tnet_input(n, 11);
        int32_t y[5] = {0, 1, 2, 1, 0};
        io->x = x;
        io->y = y;
        io->n = n;
        io->step = 3;
        TRY_T(def->setup(io));
        AL_EXPECT(m->eval_branch == cfg.multibn.test_branch, "eval_branch %d", m->eval_branch);
        float *before = falloc(m->n_param_floats);
        memcpy(before, m->data, m->n_param_floats * sizeof(float));
        double loss = 0;
        int nc = 0;
        TRY_T(def->step(io, &loss, &nc));
        AL_EXPECT(isfinite(loss) && nc >= 0 && nc <= n, "%s: loss %g correct %d", def->name, loss, nc);
        const size_t d = io->d;
        AL_EXPECT(linf_dist(io->xadv, x, n * d) <= cfg.attack.eps * (1 + 1e-6), "Linf ball");
        /* recompute the objective from the step's inputs: train-mode forwards (batch stats;
         * running stats are not used by train-mode outputs) without a BN update */
        const int n_dom = methods[mi] == AL_METHOD_ADVPROP ? 2 : 3;
        const float *xb[3] = {x, io->xadv, io->xaux[0]};
        double ref = 0;
        for (int q = 0; q < n_dom; q++) {
            al_fwd_opts o = {0, 1, 0, q, 0, NULL};
            TRY_T(al_model_forward(ctx, m, xb[q], n, &o));
            double l = 0;
            TRY_T(al_xent(ctx, n, T_K, al_model_logits(m, 0), y, 1.0f / n_dom, &l, NULL, NULL));
            ref += l;
            if (methods[mi] == AL_METHOD_MULTIBN) {
                int32_t dom[5] = {q, q, q, q, q};
                TRY_T(al_xent(ctx, n, T_BR, al_model_buffer(m, 0, al_bn_gate_logits_buf(m)), dom,
                              (float)(cfg.multibn.gate_weight / 3), &l, NULL, NULL));
                ref += l;
            }
        }
        AL_EXPECT(fabs(ref - loss) <= 1e-6 * fabs(ref), "%s: loss %.9g, recomputed %.9g", def->name, loss, ref);
        if (n_dom == 3) {
            double l2max = 0;
            for (int e = 0; e < n; e++) {
                double s = 0;
                for (size_t j = 0; j < d; j++) s += pow((double)io->xaux[0][e * d + j] - x[e * d + j], 2);
                l2max = fmax(l2max, sqrt(s));
            }
            AL_EXPECT(l2max <= cfg.multibn.l2_eps * (1 + 1e-5) && l2max > 0, "L2 ball: %g", l2max);
        }
        /* AdvProp trains branches 0 and 1 only: branch 2 of every BN gets no gradient and its
         * running statistics do not move; MDProp moves all three */
        for (int i = 0; i < m->n_nodes; i++) {
            const al_node *nd = &m->nodes[i];
            if (nd->kind != AL_NODE_BN && !is_gated(nd)) continue;
            const al_param *rm = &m->params[nd->param[2][2]], *gw = &m->params[nd->param[2][0]];
            int moved = !bit_equal(m->data + rm->offset, before + rm->offset, rm->n_elems);
            double gs = 0;
            for (size_t e = 0; e < gw->n_elems; e++) gs += fabs(m->grads[gw->offset + e]);
            AL_EXPECT(moved == (n_dom == 3) && (gs > 0) == (n_dom == 3), "%s: %s branch 2 moved %d grad %g",
                      def->name, nd->name, moved, gs);
        }
        def->teardown(io);
        io_free(&b, ctx);
        free(x), free(before);
        al_model_destroy(ctx, m);
    }
    /* AdvProp's random targets: never the label, all other classes reached. Re-derived here
     * from the documented draw (Philox(seed, AL_STREAM_METHOD, step), word i) */
    {
        const int k = 10;
        int hit[10] = {0};
        for (int i = 0; i < 20000; i++) {
            uint32_t u = al_rng_u32(0, al_stream(AL_STREAM_METHOD, 7), (uint64_t)i);
            int r = 1 + (int)(((uint64_t)u * (uint64_t)(k - 1)) >> 32);
            AL_EXPECT(r >= 1 && r <= k - 1, "offset %d", r);
            hit[r]++;
            /* the shared draw (CPU loop and cuda/train_advprop.cu) is exactly this */
            const int32_t y = (int32_t)(i % k);
            const int32_t t = al_advprop_target(y, k, 0, al_stream(AL_STREAM_METHOD, 7), i);
            AL_EXPECT(t == (y + r) % k && t != y, "al_advprop_target(%d) = %d, want %d", y, t,
                      (y + r) % k);
        }
        for (int r = 1; r < k; r++) AL_EXPECT(hit[r] > 2000 && hit[r] < 2450, "offset %d drawn %d times", r, hit[r]);
    }
    /* the config errors name the key */
    {
        al_config cfg;
        method_config(&cfg, AL_METHOD_MDPROP, -1);
        al_model *m = build_tnet(T_BR, 0, 0);
        AL_EXPECT(al_multibn_build(m, &cfg) == AL_ERR_CONFIG && strstr(al_errmsg(), "multibn.test_branch"),
                  "mdprop with test_branch -1: %s", al_errmsg());
        al_model_destroy(ctx, m);
        method_config(&cfg, AL_METHOD_MDPROP, 0);
        m = build_tnet(2, 0, 0);
        AL_EXPECT(al_multibn_build(m, &cfg) == AL_ERR_CONFIG && strstr(al_errmsg(), "model.bn_branches"),
                  "mdprop with 2 branches: %s", al_errmsg());
        al_model_destroy(ctx, m);
    }
    return 0;
}


/* ---- wiring: checkpoints rebuild branches, gate and evaluation branch; eval-mode forwards on
 * branch 0 run m->eval_branch in every model (core/model.c), so attacks agree with it ---- */

static int case_checkpoint_roundtrip(void) {
    al_ctx *ctx = ctx_cpu();
    const al_method methods[2] = {AL_METHOD_MULTIBN, AL_METHOD_MDPROP};
    for (int k = 0; k < 2; k++) {
        al_config cfg;
        method_config(&cfg, methods[k], methods[k] == AL_METHOD_MULTIBN ? -1 : 1);
        al_model_opts mo = {3};
        al_model *m;
        TRY_T(al_model_create_opts("wrn-10-1", 10, 1, 28, &mo, &m));
        TRY_T(al_multibn_build(m, &cfg));
        TRY_T(al_model_setup(ctx, m, 2, 1));
        tnet_params(ctx, m);
        for (int i = 0; i < m->n_nodes; i++)
            for (int b = 0; b < 3; b++) m->nodes[i].bn_tracked[b] = 10 * i + b + 1;
        char path[1024];
        snprintf(path, sizeof path, "%s/multibn_ckpt_%d.h5", al_test_tmpdir(), k);
        al_train_state ts;
        memset(&ts, 0, sizeof ts);
        TRY_T(al_checkpoint_save(ctx, m, &ts, path));
        al_model *r;
        TRY_T(al_checkpoint_create_model(path, &r));
        AL_EXPECT(r->n_branches == 3 && r->eval_branch == m->eval_branch &&
                      al_bn_gate_mode(r) == al_bn_gate_mode(m),
                  "rebuilt: %d branches, eval_branch %d, gate %d", r->n_branches, r->eval_branch,
                  al_bn_gate_mode(r));
        TRY_T(al_model_setup(ctx, r, 2, 1));
        TRY_T(al_checkpoint_load(ctx, r, path));
        float x[2 * 784];
        al_test_fill(x, 2 * 784, 12, 0, 1);
        TRY_T(al_model_forward_eval(ctx, m, x, 2, 0));
        TRY_T(al_model_forward_eval(ctx, r, x, 2, 0));
        AL_EXPECT(bit_equal(al_model_logits(m, 0), al_model_logits(r, 0), 20), "rebuilt model's logits differ");
        for (int i = 0; i < m->n_nodes; i++)
            for (int b = 0; b < 3 && al_bn_gate_is_bn_node(&m->nodes[i]); b++)
                AL_EXPECT(r->nodes[i].bn_tracked[b] == m->nodes[i].bn_tracked[b], "%s tracked[%d]",
                          m->nodes[i].name, b);
        al_model_destroy(ctx, r);
        al_model_destroy(ctx, m);
        remove(path);
    }
    return 0;
}

static int case_eval_branch_attacks(void) {
    al_ctx *ctx = ctx_cpu();
    const int n = 6;
    al_model *m = tnet_setup(ctx, T_BR, 0, 0, n);
    uint8_t img[6 * 36];
    int32_t y[6] = {0, 1, 2, 0, 1, 2};
    for (int i = 0; i < 6 * 36; i++) img[i] = (uint8_t)((i * 37) % 256);
    /* eval_branch 2: a forward on branch 0 in eval mode runs branch 2 in the plain model too */
    float x[6 * 36], z2[6 * T_K];
    for (int i = 0; i < 6 * 36; i++) x[i] = img[i] / 255.0f;
    al_fwd_opts o2 = {0, 0, 0, 2, 0, NULL}, o0 = {0, 0, 0, 0, 0, NULL};
    TRY_T(al_model_forward(ctx, m, x, n, &o2));
    memcpy(z2, al_model_logits(m, 0), sizeof z2);
    m->eval_branch = 2;
    TRY_T(al_model_forward(ctx, m, x, n, &o0));
    AL_EXPECT(bit_equal(z2, al_model_logits(m, 0), 6 * T_K), "plain model: eval_branch not applied");
    /* an attack built with the default spec (branch 0) == the same attack on branch 2 */
    al_attack_spec s0 = al_attack_spec_make(AL_ATTACK_PGD, AL_LINF, 0.2f, 0.05f, 5), s2 = s0;
    s2.fwd.bn_branch = 2;
    float a0[6 * 36], a2[6 * 36];
    al_eval_counts c0, c2;
    TRY_T(al_evaluate(ctx, m, img, y, n, n, &s0, 3, "b0", a0, NULL, NULL, &c0));
    TRY_T(al_evaluate(ctx, m, img, y, n, n, &s2, 3, "b2", a2, NULL, NULL, &c2));
    AL_EXPECT(bit_equal(a0, a2, 6 * 36) && c0.robust_correct == c2.robust_correct,
              "attack on branch 0 spec differs from branch 2 under eval_branch 2");
    al_model_destroy(ctx, m);
    return 0;
}

/* ------------------------------------------------------------------ e2e on Fashion-MNIST */

/* A small BN CNN (the WRNs run at ~8 img/s for MDProp on two loaded cores, too slow for a
 * few hundred steps in a CI test): conv 3x3/2 (1->16) BN ReLU, conv 3x3/2 (16->32) BN ReLU,
 * conv 3x3 (32->32) BN ReLU, global average pool, fc. 14x14 and 7x7 maps. */
static al_model *build_fnet(int n_branches) {
    al_model *m = al_model_new("bncnn", 10, 1, 28, 28);
    if (n_branches > 1) al_model_set_branches(m, n_branches);
    const float mean = 0.2860f, sd = 0.3530f; /* Fashion-MNIST train statistics */
    al_model_set_normalization(m, &mean, &sd);
    int x = al_model_conv(m, "conv1", al_model_input(m), 16, 3, 2, 1, 0);
    x = al_model_relu(m, al_model_bn(m, "bn1", x));
    x = al_model_conv(m, "conv2", x, 32, 3, 2, 1, 0);
    x = al_model_relu(m, al_model_bn(m, "bn2", x));
    x = al_model_conv(m, "conv3", x, 32, 3, 1, 1, 0);
    x = al_model_relu(m, al_model_bn(m, "bn3", x));
    int f = al_model_avgpool(m, x, 7, 7);
    int z = al_model_linear(m, "fc", f, 10, 1);
    al_model_set_output(m, z, f);
    return m;
}

typedef struct e2e_data {
    int64_t n_tr, n_te;
    uint8_t *tr_x, *te_x;
    int32_t *tr_y, *te_y;
} e2e_data;

static int e2e_load(e2e_data *D, int64_t n_tr, int64_t n_te) {
    const char *path = getenv("AL_FMNIST_H5");
    if (!path || !*path) {
        fprintf(stderr, "skipped: set AL_FMNIST_H5 to the converted Fashion-MNIST file\n");
        return AL_SKIP_CODE;
    }
    memset(D, 0, sizeof *D);
    const char *split[2] = {"train", "test"};
    for (int s = 0; s < 2; s++) {
        al_dataset ds;
        TRY_T(al_dataset_open(&ds, path, split[s]));
        int64_t n = s ? n_te : n_tr;
        uint8_t *x = malloc((size_t)n * 784);
        int32_t *y = malloc((size_t)n * sizeof(int32_t));
        TRY_T(al_dataset_read(&ds, 0, n, x, y));
        al_dataset_close(&ds);
        if (s) D->te_x = x, D->te_y = y, D->n_te = n;
        else D->tr_x = x, D->tr_y = y, D->n_tr = n;
    }
    return 0;
}

typedef struct e2e_result {
    double loss_first, loss_last;  /* mean loss of the first / last 30 steps */
    double clean, rob_linf, rob_l2; /* on the method's test branch (gate for multibn) */
    double gate_acc[3];             /* multibn: gate's argmax == perturbation type */
} e2e_result;

enum { E_BATCH = 64, E_WIN = 30 };
/* budget (env overrides for exploring; the registered tests use the defaults) */
static int env_int(const char *name, int def) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : def;
}
static int E_STEPS = 200, E_NTEST = 500;

static al_attack_spec eval_spec(al_norm norm, float eps, float alpha, int bn_branch) {
    al_attack_spec s = al_attack_spec_make(AL_ATTACK_PGD, norm, eps, alpha, 20);
    s.fwd.bn_branch = bn_branch;
    return s;
}

/* Train with `method` for E_STEPS steps of 64 (cosine lr 0.05 -> 0, SGD momentum 0.9, wd 5e-4;
 * AdvProp PGD-1 eps = step = 0.1 towards random targets; MDProp/MultiBN Linf PGD-2 eps 0.1 step
 * 0.06 and L2 PGD-2 eps 1.5 step 0.9), then evaluate E_NTEST test points:
 * clean, Linf PGD-20 (eps 0.1, step 0.01) and L2 PGD-20 (eps 1.5, step 0.15) on the test
 * branch; attacks run through the same branch (spec.fwd.bn_branch = max(eval_branch, 0): the
 * gate routes branch-0 eval forwards). */
static int e2e_run(const e2e_data *D, al_method method, int want_l2, e2e_result *R) {
    const double t0 = al_now();
    al_ctx ctx;
    /* one thread by default: on shared, loaded cores OpenMP barriers between two threads cost
     * 10x (measured: 233 s vs 18 s for a 60-step MDProp run at load 11 on 2 cores) */
    TRY_T(al_ctx_init(&ctx, AL_DEV_CPU, 0, env_int("AL_E2E_THREADS", 1), 11));
    al_config cfg;
    al_config_defaults(&cfg);
    cfg.run.seed = 11;
    cfg.train.method = method;
    cfg.model.bn_branches = method == AL_METHOD_ADVPROP ? 2 : method == AL_METHOD_STANDARD ? 1 : 3;
    cfg.multibn.test_branch = method == AL_METHOD_MULTIBN ? -1 : method == AL_METHOD_MDPROP ? 1 : 0;
    cfg.train.lr = 0.05;
    cfg.train.lr_schedule = AL_LR_COSINE;
    cfg.train.epochs = 1;
    /* AdvProp: PGD-1 with step = eps (the reference's example command, --attack-iter 1, and
     * its step_size = max(step, eps / iters)); MDProp/MultiBN: PGD-2 per branch */
    const int adv = method == AL_METHOD_ADVPROP;
    cfg.attack.eps = 0.1f;
    cfg.attack.alpha = adv ? 0.1f : 0.06f;
    cfg.attack.steps = adv ? 1 : 2;
    cfg.multibn.l2_eps = 1.5f;
    cfg.multibn.l2_alpha = 0.9f;
    cfg.data.batch_size = E_BATCH;
    TRY_T(al_config_validate(&cfg));
    const al_method_def *def;
    TRY_T(al_method_lookup(method, &def));
    al_model *m = build_fnet(cfg.model.bn_branches);
    TRY_T(al_multibn_build(m, &cfg));
    TRY_T(al_model_setup(&ctx, m, E_BATCH, def->n_slots));
    TRY_T(al_model_init_params(&ctx, m, (uint64_t)cfg.run.seed));
    al_optim opt;
    al_sgd_opts so = al_sgd_opts_from_config(&cfg);
    TRY_T(al_optim_init(&ctx, &opt, m, &so));
    io_bufs b;
    io_alloc(&b, &ctx, m, &cfg, E_BATCH);
    al_step_io *io = &b.io;
    if (def->setup) TRY_T(def->setup(io));
    int64_t *perm = malloc((size_t)D->n_tr * sizeof(int64_t)), rows[E_BATCH];
    uint8_t *bx = malloc((size_t)E_BATCH * 784);
    int32_t by[E_BATCH];
    float *x = falloc((size_t)E_BATCH * 784);
    const int64_t spe = D->n_tr / E_BATCH;
    double sum_first = 0, sum_last = 0;
    for (int64_t step = 0; step < E_STEPS; step++) {
        int epoch = (int)(step / spe);
        if (step % spe == 0) al_sampler_perm((uint64_t)cfg.run.seed, epoch, D->n_tr, 1, perm);
        int nb = al_sampler_batch(perm, D->n_tr, step % spe, E_BATCH, 1, 0, 1, rows);
        for (int i = 0; i < nb; i++) {
            memcpy(bx + (size_t)i * 784, D->tr_x + (size_t)rows[i] * 784, 784);
            by[i] = D->tr_y[rows[i]];
        }
        al_batch_to_float(bx, nb, 1, 28, 28, 0, (uint64_t)cfg.run.seed, (uint64_t)step, x);
        io->x = x;
        io->y = by;
        io->n = nb;
        io->step = step;
        io->epoch = epoch;
        double loss = 0;
        int nc = 0;
        TRY_T(def->step(io, &loss, &nc));
        AL_EXPECT(isfinite(loss), "step %lld: loss %g", (long long)step, loss);
        /* the schedule spans the E_STEPS steps: one "epoch" of E_STEPS steps */
        TRY_T(al_optim_step_sched(&ctx, &opt, m, &cfg.train, E_STEPS, 1.0));
        if (step < E_WIN) sum_first += loss;
        if (step >= E_STEPS - E_WIN) sum_last += loss;
    }
    const double t_train = al_now() - t0;
    R->loss_first = sum_first / E_WIN;
    R->loss_last = sum_last / E_WIN;
    /* evaluation on the test branch */
    const int eb = m->eval_branch > 0 ? m->eval_branch : 0;
    al_eval_counts c;
    TRY_T(al_evaluate(&ctx, m, D->te_x, D->te_y, E_NTEST, 250, NULL, 0, "clean", NULL, NULL, NULL, &c));
    R->clean = (double)c.clean_correct / c.n;
    al_attack_spec sl = eval_spec(AL_LINF, 0.1f, 0.01f, eb), s2 = eval_spec(AL_L2, 1.5f, 0.15f, eb);
    TRY_T(al_evaluate(&ctx, m, D->te_x, D->te_y, E_NTEST, 250, &sl, 77, "pgd20 linf", NULL, NULL, NULL, &c));
    R->rob_linf = (double)c.robust_correct / c.n;
    R->rob_l2 = NAN;
    if (want_l2) {
        TRY_T(al_evaluate(&ctx, m, D->te_x, D->te_y, E_NTEST, 250, &s2, 78, "pgd20 l2", NULL, NULL, NULL, &c));
        R->rob_l2 = (double)c.robust_correct / c.n;
    }
    /* gate diagnostics: the fraction of clean / Linf-PGD / L2-PGD test images (attacked on
     * branches 1 and 2, the training recipe) the gate sends to their own branch */
    for (int q = 0; q < 3; q++) R->gate_acc[q] = NAN;
    if (al_bn_gate_present(m)) {
        const int nb = E_BATCH;
        float *xa = falloc((size_t)nb * 784);
        int32_t yy[E_BATCH];
        int hits[3] = {0}, tot = 0;
        for (int s0 = 0; s0 + nb <= 512 && s0 + nb <= D->n_te; s0 += nb) {
            al_batch_to_float(D->te_x + (size_t)s0 * 784, nb, 1, 28, 28, 0, 0, 0, x);
            memcpy(yy, D->te_y + s0, sizeof yy);
            for (int q = 0; q < 3; q++) {
                const float *in = x;
                if (q > 0) {
                    al_attack_spec sp = eval_spec(q == 1 ? AL_LINF : AL_L2, q == 1 ? 0.1f : 1.5f,
                                                  q == 1 ? 0.04f : 0.6f, q);
                    sp.steps = 3;
                    sp.keep_clean_if_failed = 0;
                    TRY_T(al_attack_run(&ctx, m, &sp, NULL, x, yy, nb, 5, al_stream(AL_STREAM_TEST, s0 + q), xa, NULL, NULL));
                    in = xa;
                }
                TRY_T(al_model_forward_eval(&ctx, m, in, nb, 0));
                const float *z = al_model_buffer(m, 0, al_bn_gate_logits_buf(m));
                for (int e = 0; e < nb; e++) {
                    int arg = 0;
                    for (int k = 1; k < 3; k++)
                        if (z[e * 3 + k] > z[e * 3 + arg]) arg = k;
                    hits[q] += arg == q;
                }
            }
            tot += nb;
        }
        for (int q = 0; q < 3; q++) R->gate_acc[q] = (double)hits[q] / tot;
        free(xa);
    }
    fprintf(stderr, "  %-8s %d steps: loss %.3f -> %.3f | %d test points: clean %.3f | PGD-20 Linf 0.1 "
                    "%.3f | PGD-20 L2 1.5 %.3f (eval branch %d) | gate clean/linf/l2 %.2f %.2f %.2f | "
                    "train %.0fs, eval %.0fs\n",
            def->name, E_STEPS, R->loss_first, R->loss_last, E_NTEST, R->clean, R->rob_linf, R->rob_l2,
            m->eval_branch, R->gate_acc[0], R->gate_acc[1], R->gate_acc[2], t_train,
            al_now() - t0 - t_train);
    if (def->teardown) def->teardown(io);
    io_free(&b, &ctx);
    al_optim_fini(&ctx, &opt);
    al_model_destroy(&ctx, m);
    al_ctx_fini(&ctx);
    free(perm), free(bx), free(x);
    return 0;
}

static void e2e_free(e2e_data *D) {
    free(D->tr_x), free(D->tr_y), free(D->te_x), free(D->te_y);
}

static int e2e_case(al_method method) {
    e2e_data D;
    E_STEPS = env_int("AL_E2E_STEPS", E_STEPS);
    E_NTEST = env_int("AL_E2E_NTEST", E_NTEST);
    int rc = e2e_load(&D, 12000, E_NTEST);
    if (rc) return rc;
    e2e_result s, r;
    const int want_l2 = method != AL_METHOD_ADVPROP;
    rc = e2e_run(&D, AL_METHOD_STANDARD, want_l2, &s);
    if (!rc) rc = e2e_run(&D, method, want_l2, &r);
    e2e_free(&D);
    if (rc) return rc;
    AL_EXPECT(r.loss_last < r.loss_first, "loss did not fall: %.4f -> %.4f", r.loss_first, r.loss_last);
    if (method == AL_METHOD_ADVPROP) {
        /* AdvProp's claim is clean accuracy: >= standard up to noise (2 binomial standard
         * errors of a difference of two accuracies near 0.8 on 1000 points: 2 * 0.018) */
        AL_EXPECT(r.clean >= s.clean - 0.04, "advprop clean %.3f vs standard %.3f", r.clean, s.clean);
    } else {
        AL_EXPECT(r.rob_linf > s.rob_linf + 0.15, "robust Linf %.3f vs standard %.3f", r.rob_linf, s.rob_linf);
    }
    return 0;
}

static int case_e2e_advprop(void) { return e2e_case(AL_METHOD_ADVPROP); }
static int case_e2e_mdprop(void) { return e2e_case(AL_METHOD_MDPROP); }
static int case_e2e_multibn(void) { return e2e_case(AL_METHOD_MULTIBN); }
/* The gate's CUDA twin (cuda/op_bn_gate.cu) end to end: the gated test net in routed eval mode
 * (soft and hard), forward + backward (input and weight gradients, gate included) on both
 * backends from the same parameters. GPU-only: 77 without one. */
static int case_cuda(void) {
#ifndef AL_HAVE_CUDA
    printf("skipped: no GPU (built without CUDA)\n");
    return AL_SKIP_CODE;
#else
    if (al_test_no_gpu()) return AL_SKIP_CODE;
    al_ctx *cpu = ctx_cpu(), gpu;
    if (al_ctx_init(&gpu, AL_DEV_CUDA, 0, 0, 42) != AL_OK) {
        fprintf(stderr, "cuda ctx: %s\n", al_errmsg());
        return 1;
    }
    gpu.deterministic = 1;
    int bad = 0;
    const int n = 5;
    for (int hard = 0; hard <= 1; hard++) {
        al_model *mc = tnet_setup(cpu, T_BR, 1, hard, n), *mg = build_tnet(T_BR, 1, hard);
        TRY_T(al_model_setup(&gpu, mg, n, 2));
        const size_t np = mc->n_param_floats, nin = (size_t)n * T_C * T_HW * T_HW;
        const size_t nout = (size_t)n * T_K;
        TRY_T(al_copy_to_dev(&gpu, mg->data, mc->data, np * sizeof(float)));
        mc->eval_branch = mg->eval_branch = -1; /* routed */
        float *x = tnet_input(n, 6), *dl = falloc(nout), *dxc = falloc(nin), *h = falloc(np);
        al_test_fill(dl, nout, 61, -1.0f, 1.0f);
        float *gx, *gdl, *gdx;
        TRY_T(al_dev_alloc(&gpu, (void **)&gx, nin * sizeof(float), "x"));
        TRY_T(al_dev_alloc(&gpu, (void **)&gdl, nout * sizeof(float), "dl"));
        TRY_T(al_dev_alloc(&gpu, (void **)&gdx, nin * sizeof(float), "dx"));
        TRY_T(al_copy_to_dev(&gpu, gx, x, nin * sizeof(float)));
        TRY_T(al_copy_to_dev(&gpu, gdl, dl, nout * sizeof(float)));
        al_fwd_opts o = {0, 0, 0, 0, 0, NULL};
        const int flags = AL_BWD_WEIGHTS | AL_BWD_INPUT;
        TRY_T(al_model_forward(cpu, mc, x, n, &o));
        TRY_T(al_model_zero_grad(cpu, mc));
        TRY_T(al_model_backward(cpu, mc, 0, dl, NULL, flags, dxc));
        TRY_T(al_model_forward(&gpu, mg, gx, n, &o));
        TRY_T(al_model_zero_grad(&gpu, mg));
        TRY_T(al_model_backward(&gpu, mg, 0, gdl, NULL, flags, gdx));
        char tag[64];
        /* double reductions in another order, float rounding once per op: a few ulp */
        const double rt = 1e-5, at = 1e-6;
        TRY_T(al_copy_to_host(&gpu, h, al_model_logits(mg, 0), nout * sizeof(float)));
        snprintf(tag, sizeof tag, "%s logits", hard ? "hard" : "soft");
        bad |= al_check_close(tag, h, al_model_logits(mc, 0), nout, at, rt);
        TRY_T(al_copy_to_host(&gpu, h, gdx, nin * sizeof(float)));
        snprintf(tag, sizeof tag, "%s dx", hard ? "hard" : "soft");
        bad |= al_check_close(tag, h, dxc, nin, at, rt);
        TRY_T(al_copy_to_host(&gpu, h, mg->grads, np * sizeof(float)));
        for (int i = 0; i < mc->n_params; i++) {
            const al_param *p = &mc->params[i];
            if (!p->trainable) continue;
            bad |= al_check_close(p->name, h + p->offset, mc->grads + p->offset, p->n_elems, at,
                                  rt);
        }
        al_dev_free(&gpu, gx), al_dev_free(&gpu, gdl), al_dev_free(&gpu, gdx);
        free(x), free(dl), free(dxc), free(h);
        al_model_destroy(cpu, mc);
        al_model_destroy(&gpu, mg);
    }
    al_ctx_fini(&gpu);
    return bad;
#endif
}

int main(int argc, char **argv) {
    al_log_set_level(AL_LOG_WARN);
    static const al_case unit[] = {
        {"branch_isolation", case_branch_isolation}, {"gate_train_same", case_gate_train_same},
        {"grad_branch_train", case_grad_branch_train}, {"grad_routed_soft", case_grad_routed_soft},
        {"routed_hard", case_routed_hard},           {"eval_branch_remap", case_eval_branch_remap},
        {"method_steps", case_method_steps},
        {"checkpoint_roundtrip", case_checkpoint_roundtrip},
        {"eval_branch_attacks", case_eval_branch_attacks},
    };
    if (argc > 1 && strcmp(argv[1], "cuda") == 0) {
        static const al_case cu[] = {{"cuda", case_cuda}};
        int rc = al_run_cases(cu, 1, argc, argv);
        if (ctx_ready) al_ctx_fini(&g_ctx);
        return rc;
    }
    static const al_case e2e[] = {
        {"e2e_advprop", case_e2e_advprop},
        {"e2e_mdprop", case_e2e_mdprop},
        {"e2e_multibn", case_e2e_multibn},
    };
    if (argc > 1 && strncmp(argv[1], "e2e", 3) == 0) return al_run_cases(e2e, 3, argc, argv);
    int rc = al_run_cases(unit, (int)(sizeof unit / sizeof unit[0]), argc, argv);
    if (ctx_ready) al_ctx_fini(&g_ctx);
    return rc;
}
