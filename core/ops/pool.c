/* pool.c: max and average pooling, CPU reference + dispatcher. Twin: cuda/op_pool.cu.
 * NCHW, square window k, stride s, no padding, floor mode. One (n, c) plane per OpenMP
 * iteration (static schedule); overlapping windows (s < k) accumulate into dx sequentially
 * within the plane, so backward is deterministic. Max pool: argmax is the flat index
 * ih*W + iw in the input plane; the first maximum in row-major window order wins, and a NaN
 * wins over numbers (PyTorch's CPU kernel: `val > max || isnan(val)`, so the last NaN).
 * Backward: dx = (+= when dx_accum); elements outside every window get 0 (or keep their value). */
#include "core/ops/pool.h"

#include <math.h>
#include <omp.h>
#include <string.h>

void al_pool_desc_init(al_pool_desc *d, int n, int c, int h, int w, int k, int stride) {
    AL_ASSERT(n >= 1 && c >= 1 && h >= 1 && w >= 1, "pool shape n=%d c=%d h=%d w=%d", n, c, h, w);
    AL_ASSERT(k >= 1 && stride >= 1 && k <= h && k <= w, "pool k=%d stride=%d on %dx%d", k, stride,
              h, w);
    d->n = n;
    d->c = c;
    d->h = h;
    d->w = w;
    d->k = k;
    d->stride = stride;
    d->h_out = (h - k) / stride + 1;
    d->w_out = (w - k) / stride + 1;
    d->nhwc = 0;
}

al_status al_maxpool_forward_cpu(al_ctx *ctx, const al_pool_desc *d, const float *x, float *y,
                                 int32_t *argmax) {
    AL_ASSERT(!d->nhwc, "al_maxpool_forward_cpu: channels-last tensors are CUDA only");
    (void)ctx;
    AL_ASSERT(x && y && argmax, "maxpool forward: NULL x/y/argmax");
    const int H = d->h, W = d->w, Ho = d->h_out, Wo = d->w_out, k = d->k, s = d->stride;
    const long planes = (long)d->n * d->c;
#pragma omp parallel for schedule(static)
    for (long pl = 0; pl < planes; pl++) {
        const float *xp = x + (size_t)pl * H * W;
        float *yp = y + (size_t)pl * Ho * Wo;
        int32_t *ap = argmax + (size_t)pl * Ho * Wo;
        if (k == 2 && s == 2) {
            /* the common 2x2/2 window, unrolled: same comparisons in the same order (the
             * first element wins against -inf unless it is -inf, where it is kept anyway) */
            for (int oh = 0; oh < Ho; oh++)
                for (int ow = 0; ow < Wo; ow++) {
                    const int i0 = 2 * oh * W + 2 * ow, idx[4] = {i0, i0 + 1, i0 + W, i0 + W + 1};
                    float best = xp[i0];
                    int32_t bi = i0;
                    for (int q = 1; q < 4; q++) {
                        const float v = xp[idx[q]];
                        if (v > best || isnan(v)) {
                            best = v;
                            bi = idx[q];
                        }
                    }
                    yp[oh * Wo + ow] = best;
                    ap[oh * Wo + ow] = bi;
                }
            continue;
        }
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++) {
                const int h0 = oh * s, w0 = ow * s;
                float best = -INFINITY;
                int32_t bi = h0 * W + w0;
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++) {
                        const int idx = (h0 + i) * W + w0 + j;
                        const float v = xp[idx];
                        if (v > best || isnan(v)) {
                            best = v;
                            bi = idx;
                        }
                    }
                yp[oh * Wo + ow] = best;
                ap[oh * Wo + ow] = bi;
            }
    }
    return AL_OK;
}

al_status al_maxpool_backward_cpu(al_ctx *ctx, const al_pool_desc *d, const int32_t *argmax,
                                  const float *dy, float *dx, int dx_accum) {
    AL_ASSERT(!d->nhwc, "al_maxpool_backward_cpu: channels-last tensors are CUDA only");
    (void)ctx;
    AL_ASSERT(argmax && dy && dx, "maxpool backward: NULL argmax/dy/dx");
    const int HW = d->h * d->w, HWo = d->h_out * d->w_out;
    const long planes = (long)d->n * d->c;
#pragma omp parallel for schedule(static)
    for (long pl = 0; pl < planes; pl++) {
        float *dxp = dx + (size_t)pl * HW;
        const float *gp = dy + (size_t)pl * HWo;
        const int32_t *ap = argmax + (size_t)pl * HWo;
        if (!dx_accum) memset(dxp, 0, (size_t)HW * sizeof(float));
        for (int q = 0; q < HWo; q++) dxp[ap[q]] += gp[q];
    }
    return AL_OK;
}

al_status al_avgpool_forward_cpu(al_ctx *ctx, const al_pool_desc *d, const float *x, float *y) {
    AL_ASSERT(!d->nhwc, "al_avgpool_forward_cpu: channels-last tensors are CUDA only");
    (void)ctx;
    AL_ASSERT(x && y, "avgpool forward: NULL x/y");
    const int H = d->h, W = d->w, Ho = d->h_out, Wo = d->w_out, k = d->k, s = d->stride;
    const double inv = 1.0 / ((double)k * k);
    const long planes = (long)d->n * d->c;
#pragma omp parallel for schedule(static)
    for (long pl = 0; pl < planes; pl++) {
        const float *xp = x + (size_t)pl * H * W;
        float *yp = y + (size_t)pl * Ho * Wo;
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++) {
                /* double accumulation: global pooling sums up to H*W values */
                double acc = 0.0;
                for (int i = 0; i < k; i++) {
                    const float *r = xp + (size_t)(oh * s + i) * W + (size_t)ow * s;
                    for (int j = 0; j < k; j++) acc += r[j];
                }
                yp[oh * Wo + ow] = (float)(acc * inv);
            }
    }
    return AL_OK;
}

al_status al_avgpool_backward_cpu(al_ctx *ctx, const al_pool_desc *d, const float *dy, float *dx,
                                  int dx_accum) {
    AL_ASSERT(!d->nhwc, "al_avgpool_backward_cpu: channels-last tensors are CUDA only");
    (void)ctx;
    AL_ASSERT(dy && dx, "avgpool backward: NULL dy/dx");
    const int H = d->h, W = d->w, Ho = d->h_out, Wo = d->w_out, k = d->k, s = d->stride;
    const float inv = (float)(1.0 / ((double)k * k));
    const long planes = (long)d->n * d->c;
#pragma omp parallel for schedule(static)
    for (long pl = 0; pl < planes; pl++) {
        float *dxp = dx + (size_t)pl * H * W;
        const float *gp = dy + (size_t)pl * Ho * Wo;
        if (s >= k) {
            /* disjoint windows: each covered element receives exactly one contribution */
            if (!dx_accum && (Ho * k != H || Wo * k != W || s != k))
                memset(dxp, 0, (size_t)H * W * sizeof(float));
            for (int oh = 0; oh < Ho; oh++)
                for (int ow = 0; ow < Wo; ow++) {
                    const float g = gp[oh * Wo + ow] * inv;
                    for (int i = 0; i < k; i++) {
                        float *r = dxp + (size_t)(oh * s + i) * W + (size_t)ow * s;
                        if (dx_accum)
                            for (int j = 0; j < k; j++) r[j] += g;
                        else
                            for (int j = 0; j < k; j++) r[j] = g;
                    }
                }
        } else {
            if (!dx_accum) memset(dxp, 0, (size_t)H * W * sizeof(float));
            for (int oh = 0; oh < Ho; oh++)
                for (int ow = 0; ow < Wo; ow++) {
                    const float g = gp[oh * Wo + ow] * inv;
                    for (int i = 0; i < k; i++) {
                        float *r = dxp + (size_t)(oh * s + i) * W + (size_t)ow * s;
                        for (int j = 0; j < k; j++) r[j] += g;
                    }
                }
        }
    }
    return AL_OK;
}

/* ------------------------------------------------------------------ dispatch */

al_status al_maxpool_forward(al_ctx *ctx, const al_pool_desc *d, const float *x, float *y,
                             int32_t *argmax) {
    switch (ctx->device) {
    case AL_DEV_CPU: return al_maxpool_forward_cpu(ctx, d, x, y, argmax);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_maxpool_forward_cuda(ctx, d, x, y, argmax));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_maxpool_forward: unknown device %d", (int)ctx->device);
}

al_status al_maxpool_backward(al_ctx *ctx, const al_pool_desc *d, const int32_t *argmax,
                              const float *dy, float *dx, int dx_accum) {
    switch (ctx->device) {
    case AL_DEV_CPU: return al_maxpool_backward_cpu(ctx, d, argmax, dy, dx, dx_accum);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_maxpool_backward_cuda(ctx, d, argmax, dy, dx, dx_accum));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_maxpool_backward: unknown device %d", (int)ctx->device);
}

al_status al_avgpool_forward(al_ctx *ctx, const al_pool_desc *d, const float *x, float *y) {
    switch (ctx->device) {
    case AL_DEV_CPU: return al_avgpool_forward_cpu(ctx, d, x, y);
    case AL_DEV_CUDA: AL_CUDA_OR_FAIL(al_avgpool_forward_cuda(ctx, d, x, y));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_avgpool_forward: unknown device %d", (int)ctx->device);
}

al_status al_avgpool_backward(al_ctx *ctx, const al_pool_desc *d, const float *dy, float *dx,
                              int dx_accum) {
    switch (ctx->device) {
    case AL_DEV_CPU: return al_avgpool_backward_cpu(ctx, d, dy, dx, dx_accum);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_avgpool_backward_cuda(ctx, d, dy, dx, dx_accum));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_avgpool_backward: unknown device %d", (int)ctx->device);
}
