/* wsconv.c: NF-ResNet ops (see wsconv.h) -- CPU reference, dispatchers and graph nodes.
 * Twin: cuda/op_wsconv.cu. Row statistics of the weight standardisation and its backward are
 * accumulated in double and rounded once; pooling and scale-add are plain float loops that
 * the CUDA kernels mirror expression by expression.
 * Conv scratch: the node's scratch_bytes hook makes al_model_setup reserve what its conv needs
 * at the model's max batch; ensure_scratch stays as a guard for a smaller batch whose conv
 * layout needs more (it grows ctx->scratch only between ops, when nothing holds it). */
#include "core/ops/wsconv.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <string.h>

#include "core/ops/conv2d.h"

#define WS_PAR_MIN ((size_t)1 << 16)

/* ================================================================ CPU reference */

/* Row statistics in double, two passes: mean and 1/sqrt(biased variance + eps). */
static void row_stats(const float *wr, int fan_in, double eps, double *mu, double *r) {
    double s = 0.0;
    for (int j = 0; j < fan_in; j++) s += (double)wr[j];
    const double m = s / fan_in;
    double ss = 0.0;
    for (int j = 0; j < fan_in; j++) {
        const double dd = (double)wr[j] - m;
        ss += dd * dd;
    }
    *mu = m;
    *r = 1.0 / sqrt(ss / fan_in + eps);
}

al_status al_ws_weight_forward_cpu(al_ctx *ctx, int co, int fan_in, float gamma, float eps,
                                   const float *restrict w, const float *restrict gain,
                                   float *restrict w_hat, float *restrict mean,
                                   float *restrict rstd) {
    (void)ctx;
    const double scale = (double)gamma / sqrt((double)fan_in);
#pragma omp parallel for schedule(static) if ((size_t)co * fan_in >= WS_PAR_MIN)
    for (int o = 0; o < co; o++) {
        const float *wr = w + (size_t)o * fan_in;
        double mu, r;
        row_stats(wr, fan_in, (double)eps, &mu, &r);
        const double a = (double)gain[o] * scale * r;
        float *out = w_hat + (size_t)o * fan_in;
        for (int j = 0; j < fan_in; j++) out[j] = (float)(((double)wr[j] - mu) * a);
        if (mean) mean[o] = (float)mu;
        if (rstd) rstd[o] = (float)r;
    }
    return AL_OK;
}

al_status al_ws_weight_backward_cpu(al_ctx *ctx, int co, int fan_in, float gamma, float eps,
                                    const float *restrict w, const float *restrict gain,
                                    const float *restrict dw_hat, float *restrict dw,
                                    float *restrict dgain) {
    (void)ctx;
    const double scale = (double)gamma / sqrt((double)fan_in);
#pragma omp parallel for schedule(static) if ((size_t)co * fan_in >= WS_PAR_MIN)
    for (int o = 0; o < co; o++) {
        const float *wr = w + (size_t)o * fan_in, *g = dw_hat + (size_t)o * fan_in;
        double mu, r;
        row_stats(wr, fan_in, (double)eps, &mu, &r);
        double sg = 0.0, sgz = 0.0;
        for (int j = 0; j < fan_in; j++) {
            const double z = ((double)wr[j] - mu) * r;
            sg += (double)g[j];
            sgz += (double)g[j] * z;
        }
        if (dgain) dgain[o] += (float)(sgz * scale);
        if (dw) {
            const double a = (double)gain[o] * scale;
            const double mg = a * sg / fan_in, mgz = a * sgz / fan_in;
            float *dr = dw + (size_t)o * fan_in;
            for (int j = 0; j < fan_in; j++) {
                const double z = ((double)wr[j] - mu) * r;
                dr[j] += (float)(r * (a * (double)g[j] - mg - z * mgz));
            }
        }
    }
    return AL_OK;
}

al_status al_avgpool2_ceil_forward_cpu(al_ctx *ctx, int n, int c, int h, int w,
                                       const float *restrict x, float *restrict y) {
    (void)ctx;
    const int ho = (h + 1) / 2, wo = (w + 1) / 2, planes = n * c;
#pragma omp parallel for schedule(static) if ((size_t)planes * h * w >= WS_PAR_MIN)
    for (int p = 0; p < planes; p++) {
        const float *xp = x + (size_t)p * h * w;
        float *yp = y + (size_t)p * ho * wo;
        for (int i = 0; i < ho; i++)
            for (int j = 0; j < wo; j++) {
                const int h1 = AL_MIN(2 * i + 2, h), w1 = AL_MIN(2 * j + 2, w);
                double s = 0.0; /* double, as the built-in pool (core/ops/pool.c) */
                for (int a = 2 * i; a < h1; a++)
                    for (int b = 2 * j; b < w1; b++) s += xp[a * w + b];
                yp[i * wo + j] = (float)(s / ((h1 - 2 * i) * (w1 - 2 * j)));
            }
    }
    return AL_OK;
}

al_status al_avgpool2_ceil_backward_cpu(al_ctx *ctx, int n, int c, int h, int w,
                                        const float *restrict dy, float *restrict dx,
                                        int dx_accum) {
    (void)ctx;
    const int ho = (h + 1) / 2, wo = (w + 1) / 2, planes = n * c;
#pragma omp parallel for schedule(static) if ((size_t)planes * h * w >= WS_PAR_MIN)
    for (int p = 0; p < planes; p++) {
        const float *gp = dy + (size_t)p * ho * wo;
        float *dp = dx + (size_t)p * h * w;
        /* windows do not overlap (stride = kernel): every input element has one window */
        for (int a = 0; a < h; a++)
            for (int b = 0; b < w; b++) {
                const int i = a / 2, j = b / 2;
                const int cnt = (AL_MIN(2 * i + 2, h) - 2 * i) * (AL_MIN(2 * j + 2, w) - 2 * j);
                const float g = gp[i * wo + j] / (float)cnt;
                dp[a * w + b] = dx_accum ? dp[a * w + b] + g : g;
            }
    }
    return AL_OK;
}

al_status al_scale_add_forward_cpu(al_ctx *ctx, size_t n, float a, const float *x0,
                                   const float *x1, float *y) {
    (void)ctx;
    if (x1) {
#pragma omp parallel for simd schedule(static) if (n >= WS_PAR_MIN)
        for (size_t i = 0; i < n; i++) {
            const float t = a * x0[i]; /* rounded before the add, as `out * alpha + shortcut` */
            y[i] = t + x1[i];
        }
    } else {
#pragma omp parallel for simd schedule(static) if (n >= WS_PAR_MIN)
        for (size_t i = 0; i < n; i++) y[i] = a * x0[i];
    }
    return AL_OK;
}

al_status al_scale_add_backward_cpu(al_ctx *ctx, size_t n, float a, const float *restrict dy,
                                    float *restrict dx0, int acc0, float *restrict dx1, int acc1) {
    (void)ctx;
    if (dx0) {
#pragma omp parallel for simd schedule(static) if (n >= WS_PAR_MIN)
        for (size_t i = 0; i < n; i++) dx0[i] = acc0 ? dx0[i] + a * dy[i] : a * dy[i];
    }
    if (dx1) {
#pragma omp parallel for simd schedule(static) if (n >= WS_PAR_MIN)
        for (size_t i = 0; i < n; i++) dx1[i] = acc1 ? dx1[i] + dy[i] : dy[i];
    }
    return AL_OK;
}

/* ================================================================ dispatchers */

al_status al_ws_weight_forward(al_ctx *ctx, int co, int fan_in, float gamma, float eps,
                               const float *w, const float *gain, float *w_hat, float *mean,
                               float *rstd) {
    if (co < 1 || fan_in < 1)
        return AL_FAIL(AL_ERR_VALUE, "al_ws_weight_forward: co=%d fan_in=%d, both must be >= 1", co, fan_in);
    if (!(eps > 0.0f))
        return AL_FAIL(AL_ERR_VALUE, "al_ws_weight_forward: eps = %g, expected > 0", (double)eps);
    if (ctx->device == AL_DEV_CUDA)
        AL_CUDA_OR_FAIL(al_ws_weight_forward_cuda(ctx, co, fan_in, gamma, eps, w, gain, w_hat, mean, rstd));
    return al_ws_weight_forward_cpu(ctx, co, fan_in, gamma, eps, w, gain, w_hat, mean, rstd);
}

al_status al_ws_weight_backward(al_ctx *ctx, int co, int fan_in, float gamma, float eps,
                                const float *w, const float *gain, const float *dw_hat, float *dw,
                                float *dgain) {
    if (co < 1 || fan_in < 1)
        return AL_FAIL(AL_ERR_VALUE, "al_ws_weight_backward: co=%d fan_in=%d, both must be >= 1", co, fan_in);
    if (!dw && !dgain) return AL_OK;
    if (ctx->device == AL_DEV_CUDA)
        AL_CUDA_OR_FAIL(al_ws_weight_backward_cuda(ctx, co, fan_in, gamma, eps, w, gain, dw_hat, dw, dgain));
    return al_ws_weight_backward_cpu(ctx, co, fan_in, gamma, eps, w, gain, dw_hat, dw, dgain);
}

al_status al_avgpool2_ceil_forward(al_ctx *ctx, int n, int c, int h, int w, const float *x,
                                   float *y) {
    if (n < 1 || c < 1 || h < 1 || w < 1)
        return AL_FAIL(AL_ERR_VALUE, "al_avgpool2_ceil_forward: shape %dx%dx%dx%d", n, c, h, w);
    if (ctx->device == AL_DEV_CUDA)
        AL_CUDA_OR_FAIL(al_avgpool2_ceil_forward_cuda(ctx, n, c, h, w, x, y));
    return al_avgpool2_ceil_forward_cpu(ctx, n, c, h, w, x, y);
}

al_status al_avgpool2_ceil_backward(al_ctx *ctx, int n, int c, int h, int w, const float *dy,
                                    float *dx, int dx_accum) {
    if (n < 1 || c < 1 || h < 1 || w < 1)
        return AL_FAIL(AL_ERR_VALUE, "al_avgpool2_ceil_backward: shape %dx%dx%dx%d", n, c, h, w);
    if (ctx->device == AL_DEV_CUDA)
        AL_CUDA_OR_FAIL(al_avgpool2_ceil_backward_cuda(ctx, n, c, h, w, dy, dx, dx_accum));
    return al_avgpool2_ceil_backward_cpu(ctx, n, c, h, w, dy, dx, dx_accum);
}

al_status al_scale_add_forward(al_ctx *ctx, size_t n, float a, const float *x0, const float *x1,
                               float *y) {
    if (n == 0) return AL_OK;
    if (ctx->device == AL_DEV_CUDA)
        AL_CUDA_OR_FAIL(al_scale_add_forward_cuda(ctx, n, a, x0, x1, y));
    return al_scale_add_forward_cpu(ctx, n, a, x0, x1, y);
}

al_status al_scale_add_backward(al_ctx *ctx, size_t n, float a, const float *dy, float *dx0,
                                int acc0, float *dx1, int acc1) {
    if (n == 0 || (!dx0 && !dx1)) return AL_OK;
    if (ctx->device == AL_DEV_CUDA)
        AL_CUDA_OR_FAIL(al_scale_add_backward_cuda(ctx, n, a, dy, dx0, acc0, dx1, acc1));
    return al_scale_add_backward_cpu(ctx, n, a, dy, dx0, acc0, dx1, acc1);
}

/* ================================================================ graph nodes */

/* WS conv node: param[0] = {weight, bias or -1, gain}; k/stride/pad as a conv node;
 * fparam[0] = gamma, fparam[1] = eps. Saved state per slot: [W_hat | dW_hat]. */
static void ws_desc(const al_model *m, const al_node *nd, int n, al_conv2d_desc *d) {
    const al_buf ib = m->bufs[nd->in0];
    al_conv2d_desc_init(d, n, ib.c, ib.h, ib.w, m->bufs[nd->out].c, nd->k, nd->stride, nd->pad);
}

/* Grow ctx scratch to what this conv needs (see the file comment). */
static al_status ensure_scratch(al_ctx *ctx, const al_model *m, const al_node *nd, int n) {
    al_conv2d_desc d;
    ws_desc(m, nd, m->max_batch, &d);
    size_t need = al_conv2d_scratch_bytes(ctx, &d);
    ws_desc(m, nd, n, &d);
    const size_t need_n = al_conv2d_scratch_bytes(ctx, &d);
    if (need_n > need) need = need_n;
    need += 64; /* al_ctx_scratch aligns each start to 64 bytes */
    if (ctx->scratch_used + need <= ctx->scratch_bytes) return AL_OK;
    if (ctx->scratch_used != 0)
        return AL_FAIL(AL_ERR_VALUE, "WS conv %s: ctx scratch (%zu bytes, %zu in use) cannot grow to %zu",
                       nd->name, ctx->scratch_bytes, ctx->scratch_used, need);
    return al_ctx_reserve_scratch(ctx, need);
}

static al_status wsconv_forward(al_ctx *ctx, al_model *m, al_node *nd, const al_fwd_opts *o,
                                int n, const float *x0, const float *x1, float *y, float *save) {
    (void)o;
    (void)x1;
    const al_param *pw = &m->params[nd->param[0][0]];
    const int co = pw->shape[0], fan = (int)(pw->n_elems / (size_t)co);
    AL_TRY(al_ws_weight_forward(ctx, co, fan, nd->fparam[0], nd->fparam[1], al_param_data(m, nd->param[0][0]),
                                al_param_data(m, nd->param[0][2]), save, NULL, NULL));
    const float *w_hat = save;
    AL_TRY(ensure_scratch(ctx, m, nd, n));
    al_conv2d_desc d;
    ws_desc(m, nd, n, &d);
    const int pb = nd->param[0][1];
    return al_conv2d_forward(ctx, &d, x0, w_hat, pb >= 0 ? al_param_data(m, pb) : NULL, y);
}

static al_status wsconv_backward(al_ctx *ctx, al_model *m, al_node *nd, int n, int train,
                                 const float *x0, const float *x1, const float *y,
                                 const float *dy, float *dx0, int acc0, float *dx1, int acc1,
                                 int want_w, const float *save, const int32_t *labels) {
    (void)train, (void)x1, (void)y, (void)dx1, (void)acc1, (void)labels;
    const int iw = nd->param[0][0], ib = nd->param[0][1], ig = nd->param[0][2];
    const al_param *pw = &m->params[iw];
    const int co = pw->shape[0], fan = (int)(pw->n_elems / (size_t)co);
    float *dw = want_w && m->params[iw].trainable ? al_param_grad(m, iw) : NULL;
    float *db = want_w && ib >= 0 && m->params[ib].trainable ? al_param_grad(m, ib) : NULL;
    float *dg = want_w && m->params[ig].trainable ? al_param_grad(m, ig) : NULL;
    if (!dx0 && !dw && !db && !dg) return AL_OK;
    /* the slot's saved state belongs to this node: its dW_hat half is scratch */
    const float *w_hat = save;
    float *dw_hat = (float *)save + pw->n_elems;
    AL_TRY(ensure_scratch(ctx, m, nd, n));
    al_conv2d_desc d;
    ws_desc(m, nd, n, &d);
    const int need_whg = dw || dg;
    if (need_whg) AL_TRY(al_memset_dev(ctx, dw_hat, 0, pw->n_elems * sizeof(float)));
    AL_TRY(al_conv2d_backward(ctx, &d, x0, w_hat, dy, dx0, acc0, need_whg ? dw_hat : NULL, db));
    if (need_whg)
        AL_TRY(al_ws_weight_backward(ctx, co, fan, nd->fparam[0], nd->fparam[1], al_param_data(m, iw),
                                     al_param_data(m, ig), dw_hat, dw, dg));
    return AL_OK;
}

static size_t wsconv_scratch_bytes(const al_ctx *ctx, const al_model *m, const al_node *nd,
                                   int max_batch) {
    al_conv2d_desc d;
    ws_desc(m, nd, max_batch, &d);
    return al_conv2d_scratch_bytes(ctx, &d) + 64;
}

const al_node_ops al_wsconv_node_ops = {"wsconv", wsconv_forward, wsconv_backward, 1,
                                        wsconv_scratch_bytes};

int al_model_wsconv(al_model *m, const char *name, int in, int c_out, int k, int stride, int pad,
                    int bias, float gamma, float eps, int gain_zero) {
    const al_buf ib = m->bufs[in];
    const int ho = (ib.h + 2 * pad - k) / stride + 1, wo = (ib.w + 2 * pad - k) / stride + 1;
    const int fan_in = ib.c * k * k;
    const size_t nw = (size_t)c_out * fan_in;
    int out = al_model_custom(m, name, &al_wsconv_node_ops, in, -1, c_out, ho, wo, 0, 2 * nw);
    const int node_i = m->n_nodes - 1;
    char pn[AL_NAME_LEN + 16];
    const int wshape[4] = {c_out, ib.c, k, k}, gshape[4] = {c_out, 1, 1, 1};
    /* kaiming_normal_(mode='fan_in', nonlinearity='linear') = N(0, 1/fan_in): the init table's
     * AL_INIT_KAIMING_NORMAL draws N(0, 2/fan_in), so the init fan is recorded as 2*fan_in
     * (fan_in is read only by the initialiser). */
    snprintf(pn, sizeof pn, "%s.weight", name);
    const int iw = al_model_add_param(m, pn, 4, wshape, AL_P_WEIGHT, AL_INIT_KAIMING_NORMAL,
                                      2 * fan_in, c_out * k * k, 1);
    int ibias = -1;
    if (bias) {
        snprintf(pn, sizeof pn, "%s.bias", name);
        ibias = al_model_add_param(m, pn, 1, &c_out, AL_P_BIAS, AL_INIT_ZERO, fan_in, c_out * k * k, 1);
    }
    snprintf(pn, sizeof pn, "%s.gain", name);
    const int ig = al_model_add_param(m, pn, 4, gshape, AL_P_OTHER, gain_zero ? AL_INIT_ZERO : AL_INIT_ONE,
                                      0, 0, 1);
    al_node *nd = &m->nodes[node_i];
    nd->k = k;
    nd->stride = stride;
    nd->pad = pad;
    nd->param[0][0] = iw;
    nd->param[0][1] = ibias;
    nd->param[0][2] = ig;
    nd->fparam[0] = gamma;
    nd->fparam[1] = eps;
    return out;
}

/* ---- ceil-mode average pool ---- */
static al_status pool_forward(al_ctx *ctx, al_model *m, al_node *nd, const al_fwd_opts *o, int n,
                              const float *x0, const float *x1, float *y, float *save) {
    (void)o, (void)x1, (void)save;
    const al_buf b = m->bufs[nd->in0];
    return al_avgpool2_ceil_forward(ctx, n, b.c, b.h, b.w, x0, y);
}
static al_status pool_backward(al_ctx *ctx, al_model *m, al_node *nd, int n, int train,
                               const float *x0, const float *x1, const float *y, const float *dy,
                               float *dx0, int acc0, float *dx1, int acc1, int want_w,
                               const float *save, const int32_t *labels) {
    (void)train, (void)x0, (void)x1, (void)y, (void)dx1, (void)acc1, (void)want_w, (void)save,
        (void)labels;
    if (!dx0) return AL_OK;
    const al_buf b = m->bufs[nd->in0];
    return al_avgpool2_ceil_backward(ctx, n, b.c, b.h, b.w, dy, dx0, acc0);
}
const al_node_ops al_avgpool2_ceil_node_ops = {"avgpool2_ceil", pool_forward, pool_backward, 0};

int al_model_avgpool2_ceil(al_model *m, int in) {
    const al_buf b = m->bufs[in];
    return al_model_custom(m, "", &al_avgpool2_ceil_node_ops, in, -1, b.c, (b.h + 1) / 2,
                           (b.w + 1) / 2, 0, 0);
}

/* ---- scale-add ---- */
static al_status sa_forward(al_ctx *ctx, al_model *m, al_node *nd, const al_fwd_opts *o, int n,
                            const float *x0, const float *x1, float *y, float *save) {
    (void)o, (void)save;
    return al_scale_add_forward(ctx, (size_t)n * m->bufs[nd->in0].per_sample, nd->fparam[0], x0,
                                nd->in1 >= 0 ? x1 : NULL, y);
}
static al_status sa_backward(al_ctx *ctx, al_model *m, al_node *nd, int n, int train,
                             const float *x0, const float *x1, const float *y, const float *dy,
                             float *dx0, int acc0, float *dx1, int acc1, int want_w,
                             const float *save, const int32_t *labels) {
    (void)train, (void)x0, (void)x1, (void)y, (void)want_w, (void)save, (void)labels;
    return al_scale_add_backward(ctx, (size_t)n * m->bufs[nd->in0].per_sample, nd->fparam[0], dy,
                                 dx0, acc0, dx1, acc1);
}
const al_node_ops al_scale_add_node_ops = {"scale_add", sa_forward, sa_backward, 0};

int al_model_scale_add(al_model *m, float a, int x0, int x1) {
    const al_buf b = m->bufs[x0];
    if (x1 >= 0) {
        const al_buf b1 = m->bufs[x1];
        AL_ASSERT(b.c == b1.c && b.h == b1.h && b.w == b1.w, "scale_add of mismatched shapes %dx%dx%d + %dx%dx%d",
                  b.c, b.h, b.w, b1.c, b1.h, b1.w);
    }
    const int out = al_model_custom(m, "", &al_scale_add_node_ops, x0, x1, b.c, b.h, b.w, 0, 0);
    m->nodes[m->n_nodes - 1].fparam[0] = a;
    return out;
}
