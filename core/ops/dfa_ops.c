/* dfa_ops.c: L2 normalisation and absolute value (DFA's orthogonal head, methods.md §1.1): CPU
 * references, dispatchers and the graph-node tables. Twin: cuda/loss_dfa.cu.
 * Rows are (N, D) row-major; the row norm is accumulated in double and the division done in
 * double, then rounded once to float (the CUDA twin evaluates the same expressions, its sum in
 * a different order: the two agree to the final rounding). Write modes: y =, dx = / +=. */
#include "core/ops/dfa_ops.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ CPU references */

al_status al_l2normalize_forward_cpu(al_ctx *ctx, int n, int d, const float *restrict x,
                                     float *restrict y, float *restrict norm) {
    (void)ctx;
#pragma omp parallel for schedule(static) if (n >= 64)
    for (int i = 0; i < n; i++) {
        const float *xi = x + (size_t)i * d;
        float *yi = y + (size_t)i * d;
        double s = 0.0;
        for (int j = 0; j < d; j++) s += (double)xi[j] * xi[j];
        const double r = sqrt(s), den = r > AL_L2N_EPS ? r : AL_L2N_EPS;
        for (int j = 0; j < d; j++) yi[j] = (float)((double)xi[j] / den);
        norm[i] = (float)r;
    }
    return AL_OK;
}

al_status al_l2normalize_backward_cpu(al_ctx *ctx, int n, int d, const float *restrict y,
                                      const float *restrict norm, const float *restrict dy,
                                      float *restrict dx, int dx_accum) {
    (void)ctx;
#pragma omp parallel for schedule(static) if (n >= 64)
    for (int i = 0; i < n; i++) {
        const float *yi = y + (size_t)i * d, *gi = dy + (size_t)i * d;
        float *xi = dx + (size_t)i * d;
        const double r = norm[i];
        /* below eps the denominator is the constant eps: y = x / eps. NaN r takes the first
         * branch and propagates. */
        const int clamped = r <= AL_L2N_EPS;
        double dot = 0.0;
        if (!clamped)
            for (int j = 0; j < d; j++) dot += (double)yi[j] * gi[j];
        for (int j = 0; j < d; j++) {
            const double g = clamped ? (double)gi[j] / AL_L2N_EPS
                                     : ((double)gi[j] - (double)yi[j] * dot) / r;
            xi[j] = dx_accum ? (float)((double)xi[j] + g) : (float)g;
        }
    }
    return AL_OK;
}

al_status al_abs_forward_cpu(al_ctx *ctx, size_t n, const float *restrict x, float *restrict y) {
    (void)ctx;
    for (size_t i = 0; i < n; i++) y[i] = fabsf(x[i]);
    return AL_OK;
}

/* sign(x) with sign(0) = 0 and sign(NaN) = NaN (torch.sgn), times dy. */
static inline float sgn_times(float x, float g) {
    return x > 0.0f ? g : (x < 0.0f ? -g : (x == 0.0f ? 0.0f : x));
}

al_status al_abs_backward_cpu(al_ctx *ctx, size_t n, const float *restrict x,
                              const float *restrict dy, float *restrict dx, int dx_accum) {
    (void)ctx;
    if (dx_accum)
        for (size_t i = 0; i < n; i++) dx[i] += sgn_times(x[i], dy[i]);
    else
        for (size_t i = 0; i < n; i++) dx[i] = sgn_times(x[i], dy[i]);
    return AL_OK;
}

/* ------------------------------------------------------------------ dispatchers */

al_status al_l2normalize_forward(al_ctx *ctx, int n, int d, const float *x, float *y,
                                 float *norm) {
    AL_ASSERT(n >= 0 && d >= 1, "al_l2normalize_forward n=%d d=%d", n, d);
    if (ctx->device == AL_DEV_CPU) return al_l2normalize_forward_cpu(ctx, n, d, x, y, norm);
    AL_CUDA_OR_FAIL(al_l2normalize_forward_cuda(ctx, n, d, x, y, norm));
}

al_status al_l2normalize_backward(al_ctx *ctx, int n, int d, const float *y, const float *norm,
                                  const float *dy, float *dx, int dx_accum) {
    AL_ASSERT(n >= 0 && d >= 1, "al_l2normalize_backward n=%d d=%d", n, d);
    if (ctx->device == AL_DEV_CPU)
        return al_l2normalize_backward_cpu(ctx, n, d, y, norm, dy, dx, dx_accum);
    AL_CUDA_OR_FAIL(al_l2normalize_backward_cuda(ctx, n, d, y, norm, dy, dx, dx_accum));
}

al_status al_abs_forward(al_ctx *ctx, size_t n, const float *x, float *y) {
    if (ctx->device == AL_DEV_CPU) return al_abs_forward_cpu(ctx, n, x, y);
    AL_CUDA_OR_FAIL(al_abs_forward_cuda(ctx, n, x, y));
}

al_status al_abs_backward(al_ctx *ctx, size_t n, const float *x, const float *dy, float *dx,
                          int dx_accum) {
    if (ctx->device == AL_DEV_CPU) return al_abs_backward_cpu(ctx, n, x, dy, dx, dx_accum);
    AL_CUDA_OR_FAIL(al_abs_backward_cuda(ctx, n, x, dy, dx, dx_accum));
}

/* ------------------------------------------------------------------ graph nodes */

static al_status l2n_fwd(al_ctx *ctx, al_model *m, al_node *nd, const al_fwd_opts *o, int n,
                         const float *x0, const float *x1, float *y, float *save) {
    (void)o, (void)x1;
    return al_l2normalize_forward(ctx, n, (int)m->bufs[nd->in0].per_sample, x0, y, save);
}

static al_status l2n_bwd(al_ctx *ctx, al_model *m, al_node *nd, int n, int train, const float *x0,
                         const float *x1, const float *y, const float *dy, float *dx0, int acc0,
                         float *dx1, int acc1, int want_w, const float *save,
                         const int32_t *labels) {
    (void)train, (void)x0, (void)x1, (void)dx1, (void)acc1, (void)want_w, (void)labels;
    if (!dx0) return AL_OK;
    return al_l2normalize_backward(ctx, n, (int)m->bufs[nd->in0].per_sample, y, save, dy, dx0,
                                   acc0);
}

static al_status abs_fwd(al_ctx *ctx, al_model *m, al_node *nd, const al_fwd_opts *o, int n,
                         const float *x0, const float *x1, float *y, float *save) {
    (void)o, (void)x1, (void)save;
    return al_abs_forward(ctx, (size_t)n * m->bufs[nd->in0].per_sample, x0, y);
}

static al_status abs_bwd(al_ctx *ctx, al_model *m, al_node *nd, int n, int train, const float *x0,
                         const float *x1, const float *y, const float *dy, float *dx0, int acc0,
                         float *dx1, int acc1, int want_w, const float *save,
                         const int32_t *labels) {
    (void)train, (void)x1, (void)y, (void)dx1, (void)acc1, (void)want_w, (void)save, (void)labels;
    if (!dx0) return AL_OK;
    return al_abs_backward(ctx, (size_t)n * m->bufs[nd->in0].per_sample, x0, dy, dx0, acc0);
}

const al_node_ops al_node_l2normalize = {"l2normalize", l2n_fwd, l2n_bwd, 0};
const al_node_ops al_node_abs = {"abs", abs_fwd, abs_bwd, 0};

int al_model_l2normalize(al_model *m, const char *name, int in) {
    const al_buf b = m->bufs[in];
    /* one saved float per sample: the row norm */
    return al_model_custom(m, name, &al_node_l2normalize, in, -1, (int)b.per_sample, 1, 1, 1, 0);
}

int al_model_abs(al_model *m, const char *name, int in) {
    const al_buf b = m->bufs[in];
    return al_model_custom(m, name, &al_node_abs, in, -1, b.c, b.h, b.w, 0, 0);
}

int al_model_dfa_head(al_model *m, const char *name, int feat) {
    char nn[AL_NAME_LEN + 16], pn[AL_NAME_LEN + 16];
    snprintf(nn, sizeof nn, "%s.normalize", name);
    int z = al_model_l2normalize(m, nn, feat);
    int w = al_model_linear(m, name, z, m->num_classes, 0);
    snprintf(pn, sizeof pn, "%s.weight", name);
    /* nn.init.orthogonal_(gain 1) then requires_grad = False: frozen, no weight decay */
    al_model_param_init(m, pn, AL_INIT_ORTHOGONAL);
    al_model_param_freeze(m, pn);
    snprintf(nn, sizeof nn, "%s.abs", name);
    int logits = al_model_abs(m, nn, w);
    al_model_set_output(m, logits, z);
    return logits;
}

int al_model_dfa_head_param(const al_model *m) {
    int lin = -1;
    for (int i = 0; i < m->n_nodes; i++) {
        const al_node *nd = &m->nodes[i];
        if (nd->kind == AL_NODE_LINEAR && nd->in0 == m->feat_buf) lin = i;
    }
    if (lin < 0) return -1;
    const al_node *ln = &m->nodes[lin];
    const int wi = ln->param[0][0];
    if (wi < 0 || ln->param[0][1] >= 0 || m->params[wi].trainable) return -1;
    if (m->params[wi].shape[0] != m->num_classes ||
        m->params[wi].shape[1] != (int)m->bufs[m->feat_buf].per_sample)
        return -1;
    int feat_ok = 0, abs_ok = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const al_node *nd = &m->nodes[i];
        if (nd->kind != AL_NODE_CUSTOM) continue;
        if (nd->ops == &al_node_l2normalize && nd->out == m->feat_buf) feat_ok = 1;
        if (nd->ops == &al_node_abs && nd->in0 == ln->out && nd->out == m->out_buf) abs_ok = 1;
    }
    return feat_ok && abs_ok ? wi : -1;
}
