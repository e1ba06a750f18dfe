/* op_wsconv.cu: NF-ResNet ops -- scaled weight standardisation (forward + backward), ceil-mode
 * 2x2 average pooling, scale-add. Twin: core/ops/wsconv.c (formulas in core/ops/wsconv.h).
 * Weight standardisation: one block per output row (Co rows of fan_in), row sums in double in
 * a fixed strided order + shuffle tree (al_block_sum): deterministic, and equal to the CPU's
 * double sums up to summation order (a few ulp of double, invisible after the float rounding
 * in all but rare ties). Element formulas are the twin's, evaluated in double as there.
 * Pooling (double window sums) and scale-add: the twin's expressions in the same order
 * (bitwise equal with --fmad=false). Write modes: w_hat/y =; dw, dgain +=; dx = (+= when accumulating). */
#include "core/ops/wsconv.h"
#include "cuda/cuda_base.cuh"

#define GRID_STRIDE(i, n)                                                                  \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);                \
         i += (size_t)gridDim.x * blockDim.x)

/* ---------------------------------------------------------------- weight standardisation */

static __global__ void ws_fwd_kernel(int fan_in, double scale, float eps,
                                     const float *__restrict__ w, const float *__restrict__ gain,
                                     float *__restrict__ w_hat, float *__restrict__ mean,
                                     float *__restrict__ rstd) {
    const int o = blockIdx.x;
    const float *wr = w + (size_t)o * fan_in;
    double s = 0.0;
    for (int j = threadIdx.x; j < fan_in; j += blockDim.x) s += (double)wr[j];
    const double mu = al_block_sum(s) / fan_in;
    double ss = 0.0;
    for (int j = threadIdx.x; j < fan_in; j += blockDim.x) {
        const double d = (double)wr[j] - mu;
        ss += d * d;
    }
    ss = al_block_sum(ss);
    const double r = 1.0 / sqrt(ss / fan_in + (double)eps); /* biased variance, as the twin */
    const double a = (double)gain[o] * scale * r;
    float *out = w_hat + (size_t)o * fan_in;
    for (int j = threadIdx.x; j < fan_in; j += blockDim.x) out[j] = (float)(((double)wr[j] - mu) * a);
    if (threadIdx.x == 0 && mean) mean[o] = (float)mu;
    if (threadIdx.x == 0 && rstd) rstd[o] = (float)r;
}

static __global__ void ws_bwd_kernel(int fan_in, double scale, float eps,
                                     const float *__restrict__ w, const float *__restrict__ gain,
                                     const float *__restrict__ dw_hat, float *__restrict__ dw,
                                     float *__restrict__ dgain) {
    const int o = blockIdx.x;
    const float *wr = w + (size_t)o * fan_in, *g = dw_hat + (size_t)o * fan_in;
    /* the row statistics again, in double (see core/ops/wsconv.h) */
    double s0 = 0.0;
    for (int j = threadIdx.x; j < fan_in; j += blockDim.x) s0 += (double)wr[j];
    const double mu = al_block_sum(s0) / fan_in;
    double s1 = 0.0;
    for (int j = threadIdx.x; j < fan_in; j += blockDim.x) {
        const double d = (double)wr[j] - mu;
        s1 += d * d;
    }
    const double r = 1.0 / sqrt(al_block_sum(s1) / fan_in + (double)eps);
    double sg = 0.0, sgz = 0.0;
    for (int j = threadIdx.x; j < fan_in; j += blockDim.x) {
        const double z = ((double)wr[j] - mu) * r;
        sg += (double)g[j];
        sgz += (double)g[j] * z;
    }
    sg = al_block_sum(sg);
    sgz = al_block_sum(sgz);
    if (dgain && threadIdx.x == 0) dgain[o] += (float)(sgz * scale);
    if (dw) {
        const double a = (double)gain[o] * scale;
        const double mg = a * sg / fan_in, mgz = a * sgz / fan_in;
        float *dr = dw + (size_t)o * fan_in;
        for (int j = threadIdx.x; j < fan_in; j += blockDim.x) {
            const double z = ((double)wr[j] - mu) * r;
            dr[j] += (float)(r * (a * (double)g[j] - mg - z * mgz));
        }
    }
}

extern "C" al_status al_ws_weight_forward_cuda(al_ctx *ctx, int co, int fan_in, float gamma,
                                               float eps, const float *w, const float *gain,
                                               float *w_hat, float *mean, float *rstd) {
    const double scale = (double)gamma / sqrt((double)fan_in);
    ws_fwd_kernel<<<co, AL_BLOCK, 0, al_stream_of(ctx)>>>(fan_in, scale, eps, w, gain, w_hat, mean,
                                                          rstd);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_ws_weight_backward_cuda(al_ctx *ctx, int co, int fan_in, float gamma,
                                                float eps, const float *w, const float *gain,
                                                const float *dw_hat, float *dw, float *dgain) {
    const double scale = (double)gamma / sqrt((double)fan_in);
    ws_bwd_kernel<<<co, AL_BLOCK, 0, al_stream_of(ctx)>>>(fan_in, scale, eps, w, gain, dw_hat, dw,
                                                          dgain);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

/* ---------------------------------------------------------------- ceil-mode 2x2 avg pool */

static __global__ void pool_fwd_kernel(size_t n_out, int h, int w, const float *__restrict__ x,
                                       float *__restrict__ y) {
    const int ho = (h + 1) / 2, wo = (w + 1) / 2;
    GRID_STRIDE(t, n_out) {
        const size_t p = t / ((size_t)ho * wo);
        const int i = (int)(t / wo % ho), j = (int)(t % wo);
        const float *xp = x + p * h * w;
        const int h1 = min(2 * i + 2, h), w1 = min(2 * j + 2, w);
        double s = 0.0;
        for (int a = 2 * i; a < h1; a++)
            for (int b = 2 * j; b < w1; b++) s += xp[a * w + b];
        y[t] = (float)(s / ((h1 - 2 * i) * (w1 - 2 * j)));
    }
}

static __global__ void pool_bwd_kernel(size_t n_in, int h, int w, int accum,
                                       const float *__restrict__ dy, float *__restrict__ dx) {
    const int ho = (h + 1) / 2, wo = (w + 1) / 2;
    GRID_STRIDE(t, n_in) {
        const size_t p = t / ((size_t)h * w);
        const int a = (int)(t / w % h), b = (int)(t % w);
        const int i = a / 2, j = b / 2;
        const int cnt = (min(2 * i + 2, h) - 2 * i) * (min(2 * j + 2, w) - 2 * j);
        const float g = dy[(p * ho + i) * wo + j] / (float)cnt;
        dx[t] = accum ? dx[t] + g : g;
    }
}

extern "C" al_status al_avgpool2_ceil_forward_cuda(al_ctx *ctx, int n, int c, int h, int w,
                                                   const float *x, float *y) {
    const size_t n_out = (size_t)n * c * ((h + 1) / 2) * ((w + 1) / 2);
    pool_fwd_kernel<<<al_grid(ctx, n_out, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(n_out, h, w,
                                                                                        x, y);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_avgpool2_ceil_backward_cuda(al_ctx *ctx, int n, int c, int h, int w,
                                                    const float *dy, float *dx, int dx_accum) {
    const size_t n_in = (size_t)n * c * h * w;
    pool_bwd_kernel<<<al_grid(ctx, n_in, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        n_in, h, w, dx_accum ? 1 : 0, dy, dx);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

/* ---------------------------------------------------------------- scale-add */

/* x0, x1 and y may alias (in-place residual): no __restrict__. */
static __global__ void sa_fwd_kernel(size_t n, float a, const float *x0, const float *x1, float *y) {
    GRID_STRIDE(i, n) {
        const float t = a * x0[i]; /* rounded before the add, as the twin */
        y[i] = x1 ? t + x1[i] : t;
    }
}

static __global__ void sa_bwd_kernel(size_t n, float a, const float *__restrict__ dy, float *dx0,
                                     int acc0, float *dx1, int acc1) {
    GRID_STRIDE(i, n) {
        const float g = dy[i];
        if (dx0) dx0[i] = acc0 ? dx0[i] + a * g : a * g;
        if (dx1) dx1[i] = acc1 ? dx1[i] + g : g;
    }
}

extern "C" al_status al_scale_add_forward_cuda(al_ctx *ctx, size_t n, float a, const float *x0,
                                               const float *x1, float *y) {
    sa_fwd_kernel<<<al_grid(ctx, n, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(n, a, x0, x1, y);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_scale_add_backward_cuda(al_ctx *ctx, size_t n, float a, const float *dy,
                                                float *dx0, int acc0, float *dx1, int acc1) {
    sa_bwd_kernel<<<al_grid(ctx, n, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        n, a, dy, dx0, acc0 ? 1 : 0, dx1, acc1 ? 1 : 0);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}
