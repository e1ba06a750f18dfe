/* op_pool.cu: max and average pooling. Twin: core/ops/pool.c (mirrored exactly).
 * NCHW, square window k, stride s, no padding, floor mode.
 * Max: the first maximum in row-major window order wins, and a NaN wins over numbers
 * (`v > best || isnan(v)`, PyTorch's rule, so the last NaN); argmax = ih*W + iw in the plane.
 * Avg: sum in double in row-major window order, times 1/(k*k) in double, rounded once.
 * Backward is a GATHER, one thread per input element: it visits the windows that contain
 * the element in increasing output index, which is exactly the order in which the twin's
 * scatter adds into it, so dx is bitwise the twin's, deterministic and atomic-free even for
 * overlapping windows (s < k). dx = (+= if dx_accum); uncovered elements get 0 (or keep). */
#include "core/ops/pool.h"
#include "cuda/cuda_base.cuh"

/* Output rows whose window [o*s, o*s + k) contains input row i: [lo, hi] (empty if lo > hi). */
static __device__ __forceinline__ void covering(int i, int k, int s, int n_out, int *lo, int *hi) {
    *lo = i < k ? 0 : (i - k) / s + 1;
    int h = i / s;
    *hi = h < n_out - 1 ? h : n_out - 1;
}

static __global__ void maxpool_fwd_kernel(size_t n_out, int H, int W, int Ho, int Wo, int k,
                                          int s, const float *__restrict__ x,
                                          float *__restrict__ y, int32_t *__restrict__ argmax) {
    for (size_t o = blockIdx.x * (size_t)blockDim.x + threadIdx.x; o < n_out;
         o += (size_t)gridDim.x * blockDim.x) {
        const size_t pl = o / ((size_t)Ho * Wo);
        const int r = (int)(o - pl * (size_t)Ho * Wo), oh = r / Wo, ow = r - oh * Wo;
        const float *xp = x + pl * (size_t)H * W;
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
        y[o] = best;
        argmax[o] = bi;
    }
}

static __global__ void maxpool_bwd_kernel(size_t n_in, int H, int W, int Ho, int Wo, int k, int s,
                                          int accum, const int32_t *__restrict__ argmax,
                                          const float *__restrict__ dy, float *__restrict__ dx) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n_in;
         e += (size_t)gridDim.x * blockDim.x) {
        const size_t pl = e / ((size_t)H * W);
        const int idx = (int)(e - pl * (size_t)H * W), ih = idx / W, iw = idx - ih * W;
        const int32_t *ap = argmax + pl * (size_t)Ho * Wo;
        const float *gp = dy + pl * (size_t)Ho * Wo;
        int oh0, oh1, ow0, ow1;
        covering(ih, k, s, Ho, &oh0, &oh1);
        covering(iw, k, s, Wo, &ow0, &ow1);
        float acc = accum ? dx[e] : 0.0f;
        for (int oh = oh0; oh <= oh1; oh++)
            for (int ow = ow0; ow <= ow1; ow++) {
                const int q = oh * Wo + ow;
                if (ap[q] == idx) acc += gp[q];
            }
        dx[e] = acc;
    }
}

static __global__ void avgpool_fwd_kernel(size_t n_out, int H, int W, int Ho, int Wo, int k,
                                          int s, double inv, const float *__restrict__ x,
                                          float *__restrict__ y) {
    for (size_t o = blockIdx.x * (size_t)blockDim.x + threadIdx.x; o < n_out;
         o += (size_t)gridDim.x * blockDim.x) {
        const size_t pl = o / ((size_t)Ho * Wo);
        const int r = (int)(o - pl * (size_t)Ho * Wo), oh = r / Wo, ow = r - oh * Wo;
        const float *xp = x + pl * (size_t)H * W;
        /* double accumulation: global pooling sums up to H*W values (as the twin) */
        double acc = 0.0;
        for (int i = 0; i < k; i++) {
            const float *row = xp + (size_t)(oh * s + i) * W + (size_t)ow * s;
            for (int j = 0; j < k; j++) acc += row[j];
        }
        y[o] = (float)(acc * inv);
    }
}

static __global__ void avgpool_bwd_kernel(size_t n_in, int H, int W, int Ho, int Wo, int k, int s,
                                          float inv, int accum, const float *__restrict__ dy,
                                          float *__restrict__ dx) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n_in;
         e += (size_t)gridDim.x * blockDim.x) {
        const size_t pl = e / ((size_t)H * W);
        const int idx = (int)(e - pl * (size_t)H * W), ih = idx / W, iw = idx - ih * W;
        const float *gp = dy + pl * (size_t)Ho * Wo;
        int oh0, oh1, ow0, ow1;
        covering(ih, k, s, Ho, &oh0, &oh1);
        covering(iw, k, s, Wo, &ow0, &ow1);
        float acc = accum ? dx[e] : 0.0f;
        for (int oh = oh0; oh <= oh1; oh++)
            for (int ow = ow0; ow <= ow1; ow++) acc += gp[oh * Wo + ow] * inv;
        dx[e] = acc;
    }
}

static void check_desc(const al_pool_desc *d) {
    AL_ASSERT(d->n >= 1 && d->c >= 1 && d->k >= 1 && d->stride >= 1 && d->h_out >= 1 &&
                  d->w_out >= 1 && d->h_out == (d->h - d->k) / d->stride + 1 &&
                  d->w_out == (d->w - d->k) / d->stride + 1,
              "pool desc n=%d c=%d %dx%d k=%d s=%d out %dx%d (use al_pool_desc_init)", d->n, d->c,
              d->h, d->w, d->k, d->stride, d->h_out, d->w_out);
}

extern "C" al_status al_maxpool_forward_cuda(al_ctx *ctx, const al_pool_desc *d, const float *x,
                                             float *y, int32_t *argmax) {
    check_desc(d);
    AL_ASSERT(x && y && argmax, "maxpool forward: NULL x/y/argmax");
    const size_t n_out = (size_t)d->n * d->c * d->h_out * d->w_out;
    maxpool_fwd_kernel<<<al_grid(ctx, n_out, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        n_out, d->h, d->w, d->h_out, d->w_out, d->k, d->stride, x, y, argmax);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_maxpool_backward_cuda(al_ctx *ctx, const al_pool_desc *d,
                                              const int32_t *argmax, const float *dy, float *dx,
                                              int dx_accum) {
    check_desc(d);
    AL_ASSERT(argmax && dy && dx, "maxpool backward: NULL argmax/dy/dx");
    const size_t n_in = (size_t)d->n * d->c * d->h * d->w;
    maxpool_bwd_kernel<<<al_grid(ctx, n_in, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        n_in, d->h, d->w, d->h_out, d->w_out, d->k, d->stride, dx_accum ? 1 : 0, argmax, dy, dx);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_avgpool_forward_cuda(al_ctx *ctx, const al_pool_desc *d, const float *x,
                                             float *y) {
    check_desc(d);
    AL_ASSERT(x && y, "avgpool forward: NULL x/y");
    const size_t n_out = (size_t)d->n * d->c * d->h_out * d->w_out;
    const double inv = 1.0 / ((double)d->k * d->k);
    avgpool_fwd_kernel<<<al_grid(ctx, n_out, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        n_out, d->h, d->w, d->h_out, d->w_out, d->k, d->stride, inv, x, y);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_avgpool_backward_cuda(al_ctx *ctx, const al_pool_desc *d, const float *dy,
                                              float *dx, int dx_accum) {
    check_desc(d);
    AL_ASSERT(dy && dx, "avgpool backward: NULL dy/dx");
    const size_t n_in = (size_t)d->n * d->c * d->h * d->w;
    const float inv = (float)(1.0 / ((double)d->k * d->k));
    avgpool_bwd_kernel<<<al_grid(ctx, n_in, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        n_in, d->h, d->w, d->h_out, d->w_out, d->k, d->stride, inv, dx_accum ? 1 : 0, dy, dx);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}
