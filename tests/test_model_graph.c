/* test_model_graph.c: model-level forward/backward (core/model.c over the CPU ops) against a
 * DOUBLE-precision evaluation of the same graph built from the reference ops
 * (harness/refops.c), and that evaluation against finite differences.
 *
 * The reference walks m->nodes itself (its own backward, always '+=' into zeroed buffers, so
 * it shares nothing with model.c's write-mode planning). ReLU on/off patterns, max-pool argmax
 * and dropout masks are taken from the float forward: a unit whose pre-activation lies within
 * float rounding of 0 would otherwise flip between the two evaluations and change the gradient
 * by a whole unit's contribution. The patterns are checked to be the double forward's own up
 * to such near-zero units, and with them fixed the function is smooth, so finite differences
 * need no kink handling.
 *   smallcnn_*   al_model_create("smallcnn", 10, 1, 28): train-mode forward (dropout on).
 *   graph_*      hand-built: normalise, conv, BN, ReLU, a strided residual block with a 1x1
 *                shortcut (a buffer consumed twice: dx_accum planning), add, global avgpool,
 *                dropout, linear; train- and eval-mode BN; a feature gradient (dfeat).
 *   slots        two slots interleaved == the same passes run one after the other.
 *   input_only / weights_only: the AL_BWD_* switches. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/model.h"
#include "core/rng.h"
#include "harness/check.h"
#include "harness/refops.h"

/* ------------------------------------------------------------------ helpers */

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
static double rms_d(const double *a, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += a[i] * a[i];
    return n ? sqrt(s / (double)n) : 0.0;
}
static void fill_nan(float *a, size_t n) {
    for (size_t i = 0; i < n; i++) a[i] = NAN;
}

/* The float slot layout documented in model.h: buffer b of slot s starts at
 * act + bufs[b].offset * max_batch; a node's saved state at save + save_offset. */
static const float *slot_act(const al_model *m, int slot, int b) {
    if (b == 0) return m->slots[slot].x;
    return m->slots[slot].act + m->bufs[b].offset * (size_t)m->max_batch;
}
static const float *slot_save(const al_model *m, int slot, int node) {
    return m->slots[slot].save + m->nodes[node].save_offset;
}
static size_t buf_floats(const al_model *m, int b, int n) { return (size_t)n * m->bufs[b].per_sample; }

/* Relative error bound of the float graph: each op contributes at most al_tol_f32(K) relative
 * to its output RMS (what test_ops verifies op by op, K = the op's longest reduction over
 * forward, dx and dw), and relative errors add along the chain, so their sum over the nodes
 * bounds the error of logits and gradients relative to their RMS. */
static double graph_tol(const al_model *m, int n) {
    double t = 0.0;
    for (int i = 0; i < m->n_nodes; i++) {
        const al_node *nd = &m->nodes[i];
        const al_buf ib = m->bufs[nd->in0], ob = m->bufs[nd->out];
        double k = 1;
        switch (nd->kind) {
        case AL_NODE_CONV:
            k = AL_MAX((double)ib.c * nd->k * nd->k, (double)ob.c * nd->k * nd->k);
            k = AL_MAX(k, (double)n * ob.h * ob.w);
            break;
        case AL_NODE_LINEAR:
            k = AL_MAX(AL_MAX((double)ib.per_sample, (double)ob.per_sample), (double)n);
            break;
        case AL_NODE_BN: k = (double)n * ib.h * ib.w; break;
        case AL_NODE_AVGPOOL: k = (double)nd->k * nd->k; break;
        case AL_NODE_MAXPOOL: k = (double)AL_CEIL_DIV(nd->k, nd->stride) * AL_CEIL_DIV(nd->k, nd->stride); break;
        default: k = 2; break;
        }
        t += al_tol_f32(k);
    }
    return t;
}

/* ------------------------------------------------------------------ double-precision graph */

typedef struct refnet {
    al_model *m;
    int n, train;
    double *p, *gp;             /* (n_param_floats) parameters and their gradients */
    double **act, **grad;       /* per buffer, (n, per_sample) */
    double **bn_mean, **bn_invstd;
    int32_t **argmax;           /* per max-pool node: fixed from the float forward */
    unsigned char **relu_on;    /* per ReLU node: fixed from the float forward */
    double **drop;              /* per dropout node: the float forward's mask */
    double *tmp, *tmpw, *tmpb;  /* backward scratch */
} refnet;

/* Mirror the float model after its forward on `slot`: parameters and the fixed patterns. */
static void refnet_init(refnet *r, al_model *m, int slot) {
    memset(r, 0, sizeof *r);
    r->m = m;
    r->n = m->slots[slot].n;
    r->train = m->slots[slot].train;
    AL_ASSERT(m->slots[slot].branch == 0, "refnet evaluates BN branch 0");
    r->p = dalloc(m->n_param_floats);
    r->gp = dalloc(m->n_param_floats);
    for (size_t i = 0; i < m->n_param_floats; i++) r->p[i] = m->data[i];
    r->act = calloc((size_t)m->n_bufs, sizeof *r->act);
    r->grad = calloc((size_t)m->n_bufs, sizeof *r->grad);
    size_t max_buf = 0, max_param = 0;
    for (int b = 0; b < m->n_bufs; b++) {
        r->act[b] = dalloc(buf_floats(m, b, r->n));
        r->grad[b] = dalloc(buf_floats(m, b, r->n));
        max_buf = AL_MAX(max_buf, buf_floats(m, b, r->n));
    }
    for (int i = 0; i < m->n_params; i++) max_param = AL_MAX(max_param, m->params[i].n_elems);
    r->tmp = dalloc(max_buf);
    r->tmpw = dalloc(max_param);
    r->tmpb = dalloc(max_param);
    r->bn_mean = calloc((size_t)m->n_nodes, sizeof *r->bn_mean);
    r->bn_invstd = calloc((size_t)m->n_nodes, sizeof *r->bn_invstd);
    r->argmax = calloc((size_t)m->n_nodes, sizeof *r->argmax);
    r->relu_on = calloc((size_t)m->n_nodes, sizeof *r->relu_on);
    r->drop = calloc((size_t)m->n_nodes, sizeof *r->drop);
    for (int i = 0; i < m->n_nodes; i++) {
        const al_node *nd = &m->nodes[i];
        size_t no = buf_floats(m, nd->out, r->n);
        if (nd->kind == AL_NODE_BN) {
            r->bn_mean[i] = dalloc(m->bufs[nd->in0].c);
            r->bn_invstd[i] = dalloc(m->bufs[nd->in0].c);
        } else if (nd->kind == AL_NODE_RELU) {
            const float *y = slot_act(m, slot, nd->out);
            r->relu_on[i] = malloc(no);
            for (size_t q = 0; q < no; q++) r->relu_on[i][q] = y[q] > 0.0f;
        } else if (nd->kind == AL_NODE_MAXPOOL) {
            r->argmax[i] = malloc(no * sizeof(int32_t));
            memcpy(r->argmax[i], slot_save(m, slot, i), no * sizeof(int32_t));
        } else if (nd->kind == AL_NODE_DROPOUT) {
            const float *mk = slot_save(m, slot, i);
            r->drop[i] = dalloc(no);
            for (size_t q = 0; q < no; q++) r->drop[i][q] = r->train ? mk[q] : 1.0;
        }
    }
}

static void refnet_free(refnet *r) {
    for (int b = 0; b < r->m->n_bufs; b++) free(r->act[b]), free(r->grad[b]);
    for (int i = 0; i < r->m->n_nodes; i++) {
        free(r->bn_mean[i]), free(r->bn_invstd[i]), free(r->argmax[i]), free(r->relu_on[i]);
        free(r->drop[i]);
    }
    free(r->act), free(r->grad), free(r->bn_mean), free(r->bn_invstd), free(r->argmax);
    free(r->relu_on), free(r->drop), free(r->p), free(r->gp), free(r->tmp), free(r->tmpw);
    free(r->tmpb);
}

static double *P(refnet *r, int param) { return param >= 0 ? r->p + r->m->params[param].offset : NULL; }
static double *GP(refnet *r, int param) { return r->gp + r->m->params[param].offset; }

/* Forward of the double graph from act[0] (set by the caller). */
static void refnet_forward(refnet *r) {
    const al_model *m = r->m;
    const int n = r->n;
    double mean[4], stdv[4];
    for (int c = 0; c < 4; c++) mean[c] = m->mean[c], stdv[c] = m->std[c];
    for (int i = 0; i < m->n_nodes; i++) {
        const al_node *nd = &m->nodes[i];
        const al_buf ib = m->bufs[nd->in0], ob = m->bufs[nd->out];
        const double *x = r->act[nd->in0];
        double *y = r->act[nd->out];
        const int *pp = nd->param[0];
        const size_t no = buf_floats(m, nd->out, n);
        switch (nd->kind) {
        case AL_NODE_NORMALIZE: al_ref_normalize_forward(n, ib.c, ib.h * ib.w, x, mean, stdv, y); break;
        case AL_NODE_CONV:
            al_ref_conv2d_forward(n, ib.c, ib.h, ib.w, ob.c, nd->k, nd->stride, nd->pad, x,
                                  P(r, pp[0]), P(r, pp[1]), y);
            break;
        case AL_NODE_BN:
            al_ref_bn_forward(n, ib.c, ib.h * ib.w, nd->eps, nd->momentum, r->train, x, P(r, pp[0]),
                              P(r, pp[1]), r->train ? NULL : P(r, pp[2]),
                              r->train ? NULL : P(r, pp[3]), y, r->bn_mean[i], r->bn_invstd[i]);
            break;
        case AL_NODE_RELU:
            for (size_t q = 0; q < no; q++) y[q] = r->relu_on[i][q] ? x[q] : 0.0;
            break;
        case AL_NODE_MAXPOOL: {
            const size_t hw = (size_t)ib.h * ib.w, hwo = (size_t)ob.h * ob.w;
            for (size_t q = 0; q < no; q++) y[q] = x[(q / hwo) * hw + (size_t)r->argmax[i][q]];
            break;
        }
        case AL_NODE_AVGPOOL:
            al_ref_avgpool_forward(n, ib.c, ib.h, ib.w, nd->k, nd->stride, x, y);
            break;
        case AL_NODE_LINEAR:
            al_ref_linear_forward(n, (int)ib.per_sample, (int)ob.per_sample, x, P(r, pp[0]),
                                  P(r, pp[1]), y);
            break;
        case AL_NODE_ADD: al_ref_add_forward(no, x, r->act[nd->in1], y); break;
        case AL_NODE_DROPOUT: al_ref_dropout_forward(no, x, r->drop[i], y); break;
        default: AL_ASSERT(0, "node kind %d", nd->kind);
        }
    }
}

static void add_into(double *dst, const double *src, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

/* Backward of L = sum dlogits*logits + sum dfeat*features (dfeat may be NULL) after
 * refnet_forward: grad[0] is dL/dx, gp the parameter gradients. */
static void refnet_backward(refnet *r, const double *dlogits, const double *dfeat) {
    const al_model *m = r->m;
    const int n = r->n;
    double stdv[4];
    for (int c = 0; c < 4; c++) stdv[c] = m->std[c];
    for (int b = 0; b < m->n_bufs; b++) memset(r->grad[b], 0, buf_floats(m, b, n) * sizeof(double));
    memset(r->gp, 0, m->n_param_floats * sizeof(double));
    add_into(r->grad[m->out_buf], dlogits, buf_floats(m, m->out_buf, n));
    if (dfeat) add_into(r->grad[m->feat_buf], dfeat, buf_floats(m, m->feat_buf, n));
    for (int i = m->n_nodes - 1; i >= 0; i--) {
        const al_node *nd = &m->nodes[i];
        const al_buf ib = m->bufs[nd->in0], ob = m->bufs[nd->out];
        const double *x = r->act[nd->in0], *dy = r->grad[nd->out];
        const int *pp = nd->param[0];
        const size_t ni = buf_floats(m, nd->in0, n), no = buf_floats(m, nd->out, n);
        double *dx = r->tmp;
        switch (nd->kind) {
        case AL_NODE_NORMALIZE: al_ref_normalize_backward(n, ib.c, ib.h * ib.w, stdv, dy, dx); break;
        case AL_NODE_CONV:
            al_ref_conv2d_backward(n, ib.c, ib.h, ib.w, ob.c, nd->k, nd->stride, nd->pad, x,
                                   P(r, pp[0]), dy, dx, r->tmpw, pp[1] >= 0 ? r->tmpb : NULL);
            add_into(GP(r, pp[0]), r->tmpw, m->params[pp[0]].n_elems);
            if (pp[1] >= 0) add_into(GP(r, pp[1]), r->tmpb, m->params[pp[1]].n_elems);
            break;
        case AL_NODE_BN:
            al_ref_bn_backward(n, ib.c, ib.h * ib.w, r->train, x, P(r, pp[0]), r->bn_mean[i],
                               r->bn_invstd[i], dy, dx, r->tmpw, r->tmpb);
            add_into(GP(r, pp[0]), r->tmpw, (size_t)ib.c);
            add_into(GP(r, pp[1]), r->tmpb, (size_t)ib.c);
            break;
        case AL_NODE_RELU:
            for (size_t q = 0; q < no; q++) dx[q] = r->relu_on[i][q] ? dy[q] : 0.0;
            break;
        case AL_NODE_MAXPOOL: {
            const size_t hw = (size_t)ib.h * ib.w, hwo = (size_t)ob.h * ob.w;
            memset(dx, 0, ni * sizeof *dx);
            for (size_t q = 0; q < no; q++) dx[(q / hwo) * hw + (size_t)r->argmax[i][q]] += dy[q];
            break;
        }
        case AL_NODE_AVGPOOL:
            al_ref_avgpool_backward(n, ib.c, ib.h, ib.w, nd->k, nd->stride, dy, dx);
            break;
        case AL_NODE_LINEAR:
            al_ref_linear_backward(n, (int)ib.per_sample, (int)ob.per_sample, x, P(r, pp[0]), dy,
                                   dx, r->tmpw, pp[1] >= 0 ? r->tmpb : NULL);
            add_into(GP(r, pp[0]), r->tmpw, m->params[pp[0]].n_elems);
            if (pp[1] >= 0) add_into(GP(r, pp[1]), r->tmpb, m->params[pp[1]].n_elems);
            break;
        case AL_NODE_ADD:
            add_into(r->grad[nd->in1], dy, no);
            memcpy(dx, dy, no * sizeof *dx);
            break;
        case AL_NODE_DROPOUT: al_ref_dropout_backward(no, r->drop[i], dy, dx); break;
        default: AL_ASSERT(0, "node kind %d", nd->kind);
        }
        add_into(r->grad[nd->in0], dx, ni);
    }
}

static double refnet_loss(refnet *r, const double *dlogits, const double *dfeat, double *scale) {
    const al_model *m = r->m;
    double l = 0.0, s = 0.0;
    size_t nk = buf_floats(m, m->out_buf, r->n), nf = buf_floats(m, m->feat_buf, r->n);
    for (size_t i = 0; i < nk; i++) {
        l += dlogits[i] * r->act[m->out_buf][i];
        s += fabs(dlogits[i] * r->act[m->out_buf][i]);
    }
    if (dfeat)
        for (size_t i = 0; i < nf; i++) {
            l += dfeat[i] * r->act[m->feat_buf][i];
            s += fabs(dfeat[i] * r->act[m->feat_buf][i]);
        }
    if (scale) *scale = s;
    return l;
}

/* The fixed patterns must be the double forward's own, except at units within rounding of a
 * kink: every disagreeing ReLU has |z| <= tau*rms(z), every max-pool window's fixed argmax is
 * within tau*rms of the true maximum, and at most 0.1% of units disagree. */
static int refnet_check_patterns(refnet *r, double tau) {
    const al_model *m = r->m;
    size_t units = 0, flips = 0;
    int rc = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const al_node *nd = &m->nodes[i];
        const size_t no = buf_floats(m, nd->out, r->n);
        const double *z = r->act[nd->in0];
        if (nd->kind == AL_NODE_RELU) {
            double zr = rms_d(z, no);
            for (size_t q = 0; q < no; q++) {
                units++;
                if ((z[q] > 0) != (r->relu_on[i][q] != 0)) {
                    flips++;
                    if (fabs(z[q]) > tau * zr) {
                        fprintf(stderr, "  node %d relu unit %zu: float says %s, double z = %.3g\n",
                                i, q, r->relu_on[i][q] ? "on" : "off", z[q]);
                        rc = 1;
                    }
                }
            }
        } else if (nd->kind == AL_NODE_MAXPOOL) {
            const al_buf ib = m->bufs[nd->in0], ob = m->bufs[nd->out];
            const size_t hw = (size_t)ib.h * ib.w, hwo = (size_t)ob.h * ob.w;
            double zr = rms_d(z, buf_floats(m, nd->in0, r->n));
            for (size_t q = 0; q < no; q++) {
                const double *zp = z + (q / hwo) * hw;
                int oh = (int)(q % hwo) / ob.w, ow = (int)(q % hwo) % ob.w;
                double best = -INFINITY;
                for (int a = 0; a < nd->k; a++)
                    for (int b = 0; b < nd->k; b++) {
                        double v = zp[(oh * nd->stride + a) * ib.w + ow * nd->stride + b];
                        best = v > best ? v : best;
                    }
                units++;
                double gap = best - zp[r->argmax[i][q]];
                if (gap > 0) flips++;
                if (gap > tau * zr) {
                    fprintf(stderr, "  node %d maxpool window %zu: fixed argmax %.3g below max\n", i,
                            q, gap);
                    rc = 1;
                }
            }
        }
    }
    fprintf(stderr, "  patterns: %zu of %zu ReLU/max-pool units differ from the double forward\n",
            flips, units);
    if (flips * 1000 > units) rc = 1;
    return rc;
}

/* ------------------------------------------------------------------ finite differences */

/* FD over a sample of scalars (pointers into refnet inputs/parameters). */
typedef struct fd_probe {
    refnet *r;
    double **loc;
    size_t n;
    const double *dlogits, *dfeat;
} fd_probe;

static double probe_loss(const double *v, void *user) {
    fd_probe *pr = user;
    for (size_t i = 0; i < pr->n; i++) *pr->loc[i] = v[i];
    refnet_forward(pr->r);
    return refnet_loss(pr->r, pr->dlogits, pr->dfeat, NULL);
}

/* Compare the double graph's analytic gradient at the probes with 4-point FD (h = 1e-3).
 * With fixed patterns every op but BN is linear in each probed scalar, so the stencil's
 * truncation error is 0 except through BN (h^4/30 * O(10^2) < 1e-9). Roundoff: L carries the
 * double analogue of graph_tol, tol_d = graph_tol * eps_d/eps_f, relative to
 * S = sum |dlogits*logits| (+ features); the stencil amplifies it by 18/12h. */
static int fd_probe_check(const char *what, refnet *r, double **loc, const double *analytic,
                          size_t n, const double *dlogits, const double *dfeat, double tol_f) {
    const double h = 1e-3;
    fd_probe pr = {r, loc, n, dlogits, dfeat};
    double *v = dalloc(n), *g = dalloc(n);
    for (size_t i = 0; i < n; i++) v[i] = *loc[i];
    refnet_forward(r);
    double S;
    refnet_loss(r, dlogits, dfeat, &S);
    al_fd_grad(probe_loss, &pr, v, n, h, g);
    probe_loss(v, &pr); /* restore the forward state at the unperturbed point */
    const double tol_d = tol_f * DBL_EPSILON / AL_F32_EPS;
    const double atol = 1e-9 + 4 * 1.5 * tol_d * (S + 1.0) / h;
    int rc = al_check_close_d(what, analytic, g, n, atol, 1e-6);
    free(v);
    free(g);
    return rc;
}

/* ------------------------------------------------------------------ float vs double graph */

typedef struct run_cfg {
    int n, train, step;
    int with_dfeat;
    int n_probe_x, n_probe_per_param; /* FD sample sizes (0 = every element) */
} run_cfg;

/* Forward + backward of the float model on slot 0, against the double graph: logits, features,
 * dx and every trainable gradient, then FD of the double graph at a sample of probes. The
 * model's activation-gradient buffer is poisoned with NaN first: a consumer planned '+=' that
 * runs first (a write-mode planning error) would propagate it. */
static int model_vs_ref(al_ctx *ctx, al_model *m, const run_cfg *cf, uint64_t data_id) {
    const int n = cf->n;
    const size_t nx = (size_t)n * m->bufs[0].per_sample, nk = (size_t)n * m->num_classes,
                 nf = (size_t)n * al_model_feature_dim(m);
    float *x = falloc(nx), *dlog = falloc(nk), *dfeat = falloc(nf), *dx = falloc(nx);
    double *dlogd = dalloc(nk), *dfeatd = dalloc(nf), *tmp = dalloc(m->n_param_floats + nx);
    al_test_fill(x, nx, data_id, 0, 1);
    al_test_fill(dlog, nk, data_id + 1, -1, 1);
    al_test_fill(dfeat, nf, data_id + 2, -0.5f, 0.5f);
    for (size_t i = 0; i < nk; i++) dlogd[i] = dlog[i];
    for (size_t i = 0; i < nf; i++) dfeatd[i] = dfeat[i];
    int rc = 0;

    al_fwd_opts o = {0, cf->train, 0, 0, (uint64_t)cf->step};
    AL_EXPECT(al_model_forward(ctx, m, x, n, &o) == AL_OK, "forward: %s", al_errmsg());
    AL_EXPECT(al_model_zero_grad(ctx, m) == AL_OK, "zero grad");
    fill_nan(m->gbuf, m->act_floats_per_sample * (size_t)m->max_batch);
    fill_nan(dx, nx);
    AL_EXPECT(al_model_backward(ctx, m, 0, dlog, cf->with_dfeat ? dfeat : NULL,
                                AL_BWD_WEIGHTS | AL_BWD_INPUT, dx) == AL_OK,
              "backward: %s", al_errmsg());

    refnet r;
    refnet_init(&r, m, 0);
    for (size_t i = 0; i < nx; i++) r.act[0][i] = x[i];
    refnet_forward(&r);
    const double tol = graph_tol(m, n);
    fprintf(stderr, "  graph tolerance (sum of per-op al_tol_f32): %.3g\n", tol);
    rc |= refnet_check_patterns(&r, tol);
    rc |= al_check_close_fd("model logits vs double graph", al_model_logits(m, 0),
                            r.act[m->out_buf], nk, tol * rms_d(r.act[m->out_buf], nk), tol);
    rc |= al_check_close_fd("model features vs double graph", al_model_features(m, 0),
                            r.act[m->feat_buf], nf, tol * rms_d(r.act[m->feat_buf], nf), tol);
    refnet_backward(&r, dlogd, cf->with_dfeat ? dfeatd : NULL);
    rc |= al_check_close_fd("model dx vs double graph", dx, r.grad[0], nx,
                            tol * rms_d(r.grad[0], nx), tol);
    /* A parameter gradient sums K = N*HWo terms (dy * input, or dy alone for a bias); when
     * they cancel (a conv bias feeding train-mode BN has an exactly zero gradient) the float
     * result keeps a rounding residue of the terms, not of the sum. So the absolute tolerance
     * scales with the larger of the reference's RMS and the size of the terms,
     * rms(dy) * rms(input) * sqrt(K). */
    double *term = dalloc((size_t)m->n_params);
    for (int i = 0; i < m->n_nodes; i++) {
        const al_node *nd = &m->nodes[i];
        const int *pp = nd->param[0];
        if (pp[0] < 0) continue;
        const al_buf ob = m->bufs[nd->out];
        const size_t no = buf_floats(m, nd->out, n), ni = buf_floats(m, nd->in0, n);
        const double k = (double)n * ob.h * ob.w, g = rms_d(r.grad[nd->out], no);
        const double xin = nd->kind == AL_NODE_BN ? 1.0 /* xhat */ : rms_d(r.act[nd->in0], ni);
        term[pp[0]] = g * xin * sqrt(k);
        if (pp[1] >= 0) term[pp[1]] = g * sqrt(k);
    }
    for (int i = 0; i < m->n_params; i++) {
        const al_param *p = &m->params[i];
        if (!p->trainable) continue;
        const double *ref = r.gp + p->offset;
        char what[AL_NAME_LEN + 32];
        snprintf(what, sizeof what, "d %s", p->name);
        rc |= al_check_close_fd(what, m->grads + p->offset, ref, p->n_elems,
                                tol * AL_MAX(rms_d(ref, p->n_elems), term[i]), tol);
    }
    free(term);

    /* FD of the double graph at probes: input pixels, then elements of every parameter */
    size_t cap = nx + m->n_param_floats, np = 0;
    double **loc = calloc(cap, sizeof *loc);
    double *an = tmp;
    const size_t sx = cf->n_probe_x ? (size_t)cf->n_probe_x : nx;
    for (size_t j = 0; j < sx && j < nx; j++) {
        size_t idx = cf->n_probe_x ? (j * 7919u + 13u) % nx : j; /* spread over the batch */
        loc[np] = &r.act[0][idx];
        an[np++] = r.grad[0][idx];
    }
    rc |= fd_probe_check("double graph dL/dx vs FD", &r, loc, an, np, dlogd,
                         cf->with_dfeat ? dfeatd : NULL, tol);
    np = 0;
    for (int i = 0; i < m->n_params; i++) {
        const al_param *p = &m->params[i];
        if (!p->trainable) continue;
        size_t s = cf->n_probe_per_param ? (size_t)cf->n_probe_per_param : p->n_elems;
        for (size_t j = 0; j < s && j < p->n_elems; j++) {
            size_t idx = cf->n_probe_per_param ? (j * 104729u + 31u * (size_t)i) % p->n_elems : j;
            loc[np] = &r.p[p->offset + idx];
            an[np++] = r.gp[p->offset + idx];
        }
    }
    rc |= fd_probe_check("double graph dL/dparams vs FD", &r, loc, an, np, dlogd,
                         cf->with_dfeat ? dfeatd : NULL, tol);
    free(loc);
    refnet_free(&r);
    free(x), free(dlog), free(dfeat), free(dx), free(dlogd), free(dfeatd), free(tmp);
    return rc;
}

/* ------------------------------------------------------------------ models */

static al_model *make_smallcnn(al_ctx *ctx, int max_batch, int slots) {
    al_model *m = NULL;
    al_status st = al_model_create("smallcnn", 10, 1, 28, &m);
    AL_ASSERT(st == AL_OK, "smallcnn: %s", al_errmsg());
    st = al_model_setup(ctx, m, max_batch, slots);
    AL_ASSERT(st == AL_OK, "setup: %s", al_errmsg());
    AL_ASSERT(al_model_init_params(ctx, m, 42) == AL_OK, "init: %s", al_errmsg());
    /* the reference init zeroes fc3, which would make every gradient below it zero: give it
     * random weights so the test sees the whole chain */
    int wi = al_model_find_param(m, "classifier.fc3.weight"),
        bi = al_model_find_param(m, "classifier.fc3.bias");
    AL_ASSERT(wi >= 0 && bi >= 0, "smallcnn has no classifier.fc3");
    al_test_fill(al_param_data(m, wi), m->params[wi].n_elems, 501, -0.15f, 0.15f);
    al_test_fill(al_param_data(m, bi), m->params[bi].n_elems, 502, -0.1f, 0.1f);
    return m;
}

/* normalise -> conv(3->6, pad 1) -> BN -> ReLU = a
 *   a -> conv(6->8, s2, pad 1) -> BN -> ReLU -> conv(8->8, pad 1) -> BN = b
 *   a -> conv1x1(6->8, s2) -> BN = s            (a has two consumers: dx_accum)
 *   relu(b + s) -> avgpool(4) = feature -> dropout(0.25) -> linear(8->10) = logits */
static al_model *make_graph(al_ctx *ctx, int max_batch, int slots) {
    al_model *m = al_model_new("test_graph", 10, 3, 8, 8);
    const float mean[3] = {0.45f, 0.5f, 0.55f}, stdv[3] = {0.25f, 0.2f, 0.3f};
    al_model_set_normalization(m, mean, stdv);
    int x = al_model_input(m);
    x = al_model_conv(m, "conv1", x, 6, 3, 1, 1, 0);
    x = al_model_bn(m, "bn1", x);
    int a = al_model_relu(m, x);
    int b = al_model_conv(m, "block.conv1", a, 8, 3, 2, 1, 0);
    b = al_model_bn(m, "block.bn1", b);
    b = al_model_relu(m, b);
    b = al_model_conv(m, "block.conv2", b, 8, 3, 1, 1, 1);
    b = al_model_bn(m, "block.bn2", b);
    int s = al_model_conv(m, "block.shortcut.0", a, 8, 1, 2, 0, 0);
    s = al_model_bn(m, "block.shortcut.1", s);
    int y = al_model_relu(m, al_model_add(m, b, s));
    int feat = al_model_avgpool(m, y, 4, 4);
    int dr = al_model_dropout(m, feat, 0.25f);
    int logits = al_model_linear(m, "fc", dr, 10, 1);
    al_model_set_output(m, logits, feat);
    AL_ASSERT(al_model_setup(ctx, m, max_batch, slots) == AL_OK, "setup: %s", al_errmsg());
    AL_ASSERT(al_model_init_params(ctx, m, 7) == AL_OK, "init: %s", al_errmsg());
    /* non-trivial BN affine parameters and running statistics */
    for (int i = 0; i < m->n_params; i++) {
        al_param *p = &m->params[i];
        float *d = al_param_data(m, i);
        if (p->kind == AL_P_BN_WEIGHT) al_test_fill(d, p->n_elems, 600 + i, 0.5f, 1.5f);
        if (p->kind == AL_P_BN_BIAS) al_test_fill(d, p->n_elems, 600 + i, -0.3f, 0.3f);
        if (p->kind == AL_P_BN_MEAN) al_test_fill(d, p->n_elems, 600 + i, -0.2f, 0.2f);
        if (p->kind == AL_P_BN_VAR) al_test_fill(d, p->n_elems, 600 + i, 0.5f, 2.0f);
    }
    return m;
}

static void ctx_init_cpu(al_ctx *ctx) {
    AL_ASSERT(al_ctx_init(ctx, AL_DEV_CPU, 0, 0, 1234) == AL_OK, "ctx: %s", al_errmsg());
}

static int smallcnn_vs_double(void) {
    al_ctx ctx;
    ctx_init_cpu(&ctx);
    al_model *m = make_smallcnn(&ctx, 3, 1);
    /* train mode: dropout active; FD (4 double forwards of 20M multiply-adds each per probe)
     * at 8 pixels and 2 elements of each parameter; the hand-built graph is probed fully */
    run_cfg cf = {2, 1, 3, 1, 8, 2};
    int rc = model_vs_ref(&ctx, m, &cf, 100);
    al_model_destroy(&ctx, m);
    al_ctx_fini(&ctx);
    return rc;
}

static int graph_vs_double(void) {
    al_ctx ctx;
    ctx_init_cpu(&ctx);
    al_model *m = make_graph(&ctx, 4, 1);
    /* plan: the fork buffer `a` (first ReLU output) has two consumers, one '=' one '+=' */
    int fork = -1, n_eq = 0, n_acc = 0;
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].kind == AL_NODE_RELU) {
            fork = m->nodes[i].out;
            break;
        }
    for (int i = 0; i < m->n_nodes; i++) {
        if (m->nodes[i].in0 == fork) *(m->nodes[i].dx_accum[0] ? &n_acc : &n_eq) += 1;
        if (m->nodes[i].in1 == fork) *(m->nodes[i].dx_accum[1] ? &n_acc : &n_eq) += 1;
    }
    AL_EXPECT(n_eq == 1 && n_acc == 1, "fork buffer %d: %d '=' and %d '+=' consumers", fork, n_eq,
              n_acc);
    int rc = 0;
    /* train-mode BN (batch statistics), with a feature gradient; every input and parameter */
    run_cfg train = {3, 1, 5, 1, 0, 0};
    rc |= model_vs_ref(&ctx, m, &train, 200);
    /* batch 1: BN statistics over one image's plane (the smallest, 4x4, still has 16 values) */
    run_cfg train1 = {1, 1, 6, 0, 0, 4};
    rc |= model_vs_ref(&ctx, m, &train1, 210);
    /* update running stats, then eval mode (running statistics, dropout off) */
    {
        const size_t nx = (size_t)4 * m->bufs[0].per_sample;
        float *x = falloc(nx);
        al_test_fill(x, nx, 220, 0, 1);
        al_fwd_opts o = {0, 1, 1, 0, 9};
        AL_EXPECT(al_model_forward(&ctx, m, x, 4, &o) == AL_OK, "%s", al_errmsg());
        free(x);
    }
    run_cfg eval = {4, 0, 0, 1, 0, 0};
    rc |= model_vs_ref(&ctx, m, &eval, 230);
    al_model_destroy(&ctx, m);
    al_ctx_fini(&ctx);
    return rc;
}

/* ------------------------------------------------------------------ slots and switches */

static int bits_equal(const char *what, const float *a, const float *b, size_t n) {
    if (memcmp(a, b, n * sizeof *a) == 0) return 0;
    for (size_t i = 0; i < n; i++)
        if (memcmp(&a[i], &b[i], sizeof *a) != 0) {
            fprintf(stderr, "  %s: differs at %zu (%.9g vs %.9g)\n", what, i, a[i], b[i]);
            break;
        }
    return 1;
}

/* Two forwards in slots 0 and 1, then both backwards, must give exactly what the same
 * passes give one after the other in slot 0: a slot's activations and saved state (BN batch
 * statistics, argmax, dropout mask) survive a forward in the other slot. */
static int slots_case(al_model *(*make)(al_ctx *, int, int), const char *name) {
    al_ctx ctx;
    ctx_init_cpu(&ctx);
    al_model *m = make(&ctx, 3, 2);
    const int n = 3;
    const size_t nx = (size_t)n * m->bufs[0].per_sample, nk = (size_t)n * m->num_classes,
                 np = m->n_param_floats;
    float *x1 = falloc(nx), *x2 = falloc(nx), *g1 = falloc(nk), *g2 = falloc(nk);
    float *dxa1 = falloc(nx), *dxa2 = falloc(nx), *dxb1 = falloc(nx), *dxb2 = falloc(nx);
    float *la1 = falloc(nk), *la2 = falloc(nk), *ga = falloc(np), *pa = falloc(np);
    al_test_fill(x1, nx, 300, 0, 1);
    al_test_fill(x2, nx, 301, 0, 1);
    al_test_fill(g1, nk, 302, -1, 1);
    al_test_fill(g2, nk, 303, -1, 1);
    const int both = AL_BWD_WEIGHTS | AL_BWD_INPUT;
    al_fwd_opts o1 = {0, 1, 1, 0, 11}, o2 = {0, 1, 1, 0, 12};
    float *p0 = falloc(np);
    memcpy(p0, m->data, np * sizeof *p0); /* BN running stats change: restore for run B */

    /* run A: one slot, sequential */
    AL_EXPECT(al_model_zero_grad(&ctx, m) == AL_OK, "zero");
    AL_EXPECT(al_model_forward(&ctx, m, x1, n, &o1) == AL_OK, "%s", al_errmsg());
    memcpy(la1, al_model_logits(m, 0), nk * sizeof *la1);
    AL_EXPECT(al_model_backward(&ctx, m, 0, g1, NULL, both, dxa1) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_model_forward(&ctx, m, x2, n, &o2) == AL_OK, "%s", al_errmsg());
    memcpy(la2, al_model_logits(m, 0), nk * sizeof *la2);
    AL_EXPECT(al_model_backward(&ctx, m, 0, g2, NULL, both, dxa2) == AL_OK, "%s", al_errmsg());
    memcpy(ga, m->grads, np * sizeof *ga);
    memcpy(pa, m->data, np * sizeof *pa);

    /* run B: two slots, interleaved */
    memcpy(m->data, p0, np * sizeof *p0);
    AL_EXPECT(al_model_zero_grad(&ctx, m) == AL_OK, "zero");
    o2.slot = 1;
    AL_EXPECT(al_model_forward(&ctx, m, x1, n, &o1) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_model_forward(&ctx, m, x2, n, &o2) == AL_OK, "%s", al_errmsg());
    int rc = 0;
    char what[96];
    snprintf(what, sizeof what, "%s slot 0 logits", name);
    rc |= bits_equal(what, al_model_logits(m, 0), la1, nk);
    snprintf(what, sizeof what, "%s slot 1 logits", name);
    rc |= bits_equal(what, al_model_logits(m, 1), la2, nk);
    AL_EXPECT(al_model_backward(&ctx, m, 0, g1, NULL, both, dxb1) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_model_backward(&ctx, m, 1, g2, NULL, both, dxb2) == AL_OK, "%s", al_errmsg());
    snprintf(what, sizeof what, "%s slot 0 dx", name);
    rc |= bits_equal(what, dxb1, dxa1, nx);
    snprintf(what, sizeof what, "%s slot 1 dx", name);
    rc |= bits_equal(what, dxb2, dxa2, nx);
    snprintf(what, sizeof what, "%s grads", name);
    rc |= bits_equal(what, m->grads, ga, np);
    snprintf(what, sizeof what, "%s params (BN running stats)", name);
    rc |= bits_equal(what, m->data, pa, np);
    /* and the two inputs really differ, so the check is not vacuous */
    AL_EXPECT(memcmp(dxa1, dxa2, nx * sizeof *dxa1) != 0, "both inputs gave the same dx");
    fprintf(stderr, "  %s: interleaved slots bit-identical to sequential runs: %s\n", name,
            rc ? "NO" : "yes");
    free(x1), free(x2), free(g1), free(g2), free(dxa1), free(dxa2), free(dxb1), free(dxb2);
    free(la1), free(la2), free(ga), free(pa), free(p0);
    al_model_destroy(&ctx, m);
    al_ctx_fini(&ctx);
    return rc;
}
static int slots(void) {
    return slots_case(make_smallcnn, "smallcnn") | slots_case(make_graph, "graph");
}

/* AL_BWD_INPUT alone leaves the gradient buffer all-zero bits and gives the same dx as a full
 * backward; AL_BWD_WEIGHTS alone never touches dx and gives the same weight gradients. */
static int switches_case(al_model *(*make)(al_ctx *, int, int), const char *name) {
    al_ctx ctx;
    ctx_init_cpu(&ctx);
    al_model *m = make(&ctx, 2, 1);
    const int n = 2;
    const size_t nx = (size_t)n * m->bufs[0].per_sample, nk = (size_t)n * m->num_classes,
                 np = m->n_param_floats;
    float *x = falloc(nx), *g = falloc(nk), *dx_full = falloc(nx), *dx = falloc(nx),
          *gr_full = falloc(np), *zero = falloc(np);
    al_test_fill(x, nx, 400, 0, 1);
    al_test_fill(g, nk, 401, -1, 1);
    al_fwd_opts o = {0, 1, 0, 0, 4};
    int rc = 0;
    char what[96];
    AL_EXPECT(al_model_forward(&ctx, m, x, n, &o) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_model_zero_grad(&ctx, m) == AL_OK, "zero");
    AL_EXPECT(al_model_backward(&ctx, m, 0, g, NULL, AL_BWD_WEIGHTS | AL_BWD_INPUT, dx_full) ==
                  AL_OK, "%s", al_errmsg());
    memcpy(gr_full, m->grads, np * sizeof *gr_full);

    AL_EXPECT(al_model_zero_grad(&ctx, m) == AL_OK, "zero");
    fill_nan(dx, nx);
    AL_EXPECT(al_model_backward(&ctx, m, 0, g, NULL, AL_BWD_INPUT, dx) == AL_OK, "%s", al_errmsg());
    snprintf(what, sizeof what, "%s grads after AL_BWD_INPUT", name);
    rc |= bits_equal(what, m->grads, zero, np);
    snprintf(what, sizeof what, "%s dx (input only vs full)", name);
    rc |= bits_equal(what, dx, dx_full, nx);

    fill_nan(dx, nx);
    float *sentinel = falloc(nx);
    fill_nan(sentinel, nx);
    AL_EXPECT(al_model_backward(&ctx, m, 0, g, NULL, AL_BWD_WEIGHTS, dx) == AL_OK, "%s", al_errmsg());
    snprintf(what, sizeof what, "%s dx untouched by AL_BWD_WEIGHTS", name);
    rc |= bits_equal(what, dx, sentinel, nx);
    snprintf(what, sizeof what, "%s grads (weights only vs full)", name);
    rc |= bits_equal(what, m->grads, gr_full, np);
    free(x), free(g), free(dx_full), free(dx), free(gr_full), free(zero), free(sentinel);
    al_model_destroy(&ctx, m);
    al_ctx_fini(&ctx);
    return rc;
}
static int backward_switches(void) {
    return switches_case(make_smallcnn, "smallcnn") | switches_case(make_graph, "graph");
}

/* run.layout = nhwc is a CUDA layout: a CPU model refuses it at setup with a clear error (the
 * config refuses it earlier; this covers contexts built by hand) and allocates nothing. */
static int layout_cpu(void) {
    al_ctx ctx;
    AL_ASSERT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 1) == AL_OK, "ctx: %s", al_errmsg());
    ctx.layout = AL_NHWC;
    al_model *m = NULL;
    AL_ASSERT(al_model_create("smallcnn", 10, 1, 28, &m) == AL_OK, "%s", al_errmsg());
    const al_status st = al_model_setup(&ctx, m, 2, 1);
    int rc = 0;
    AL_EXPECT(st == AL_ERR_VALUE && strstr(al_errmsg(), "run.layout = nhwc needs run.device = cuda"),
              "CPU setup with layout nhwc: status %d, '%s'", (int)st, al_errmsg());
    AL_EXPECT(!m->setup_done && !m->data, "a refused setup left state behind");
    al_model_destroy(&ctx, m);
    al_ctx_fini(&ctx);
    return rc;
}

int main(int argc, char **argv) {
    static const al_case cases[] = {
        {"layout_cpu", layout_cpu},
        {"smallcnn_vs_double", smallcnn_vs_double},
        {"graph_vs_double", graph_vs_double},
        {"slots", slots},
        {"backward_switches", backward_switches},
    };
    return al_run_cases(cases, (int)AL_ARRAY_LEN(cases), argc, argv);
}
