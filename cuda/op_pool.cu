/* op_pool.cu: max and average pooling. Twin: core/ops/pool.c (mirrored exactly).
 * NCHW or channels last (d->nhwc, run.layout = nhwc), square window k, stride s, no padding,
 * floor mode; argmax has the output's layout and holds ih*W + iw either way.
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

/* Element e of an (N, C, P-position) tensor -> image i, channel c, position pos (NCHW, or
 * channels last when nhwc); then plane (i, c) of a tensor with P2 positions starts at *base
 * and its positions are *se elements apart. Channels last keeps consecutive threads on
 * consecutive channels, so every access below is coalesced in both layouts. */
static __device__ __forceinline__ void split(size_t e, int nhwc, int c_total, int p, size_t *i,
                                             int *c, int *pos) {
    if (nhwc) {
        *c = (int)(e % (size_t)c_total);
        const size_t t = e / (size_t)c_total;
        *i = t / (size_t)p;
        *pos = (int)(t - *i * (size_t)p);
    } else {
        const size_t ic = e / (size_t)p;
        *pos = (int)(e - ic * (size_t)p);
        *i = ic / (size_t)c_total;
        *c = (int)(ic - *i * (size_t)c_total);
    }
}
static __device__ __forceinline__ size_t plane(int nhwc, int c_total, int p, size_t i, int c,
                                               size_t *se) {
    *se = nhwc ? (size_t)c_total : 1;
    return nhwc ? i * (size_t)p * c_total + (size_t)c : (i * (size_t)c_total + c) * (size_t)p;
}

template <typename T>
static __global__ void maxpool_fwd_kernel(size_t n_out, int C, int nhwc, int H, int W, int Ho,
                                          int Wo, int k, int s, const T *__restrict__ x,
                                          T *__restrict__ y, int32_t *__restrict__ argmax) {
    for (size_t o = blockIdx.x * (size_t)blockDim.x + threadIdx.x; o < n_out;
         o += (size_t)gridDim.x * blockDim.x) {
        size_t i, se;
        int c, r;
        split(o, nhwc, C, Ho * Wo, &i, &c, &r);
        const size_t xb = plane(nhwc, C, H * W, i, c, &se);
        const int oh = r / Wo, ow = r - oh * Wo;
        const int h0 = oh * s, w0 = ow * s;
        float best = -INFINITY;
        int32_t bi = h0 * W + w0;
        for (int a = 0; a < k; a++)
            for (int b = 0; b < k; b++) {
                const int idx = (h0 + a) * W + w0 + b;
                const float v = al_ld(x, xb + (size_t)idx * se);
                if (v > best || isnan(v)) {
                    best = v;
                    bi = idx;
                }
            }
        al_st(y, o, best);
        argmax[o] = bi;
    }
}

template <typename T>
static __global__ void maxpool_bwd_kernel(size_t n_in, int C, int nhwc, int H, int W, int Ho,
                                          int Wo, int k, int s, int accum,
                                          const int32_t *__restrict__ argmax,
                                          const T *__restrict__ dy, T *__restrict__ dx) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n_in;
         e += (size_t)gridDim.x * blockDim.x) {
        size_t i, se;
        int c, idx;
        split(e, nhwc, C, H * W, &i, &c, &idx);
        const size_t ob = plane(nhwc, C, Ho * Wo, i, c, &se);
        const int ih = idx / W, iw = idx - ih * W;
        int oh0, oh1, ow0, ow1;
        covering(ih, k, s, Ho, &oh0, &oh1);
        covering(iw, k, s, Wo, &ow0, &ow1);
        float acc = accum ? al_ld(dx, e) : 0.0f;
        for (int oh = oh0; oh <= oh1; oh++)
            for (int ow = ow0; ow <= ow1; ow++) {
                const size_t q = ob + (size_t)(oh * Wo + ow) * se;
                if (argmax[q] == idx) acc += al_ld(dy, q);
            }
        al_st(dx, e, acc);
    }
}

template <typename T>
static __global__ void avgpool_fwd_kernel(size_t n_out, int C, int nhwc, int H, int W, int Ho,
                                          int Wo, int k, int s, double inv,
                                          const T *__restrict__ x, T *__restrict__ y) {
    for (size_t o = blockIdx.x * (size_t)blockDim.x + threadIdx.x; o < n_out;
         o += (size_t)gridDim.x * blockDim.x) {
        size_t i, se;
        int c, r;
        split(o, nhwc, C, Ho * Wo, &i, &c, &r);
        const size_t xb = plane(nhwc, C, H * W, i, c, &se);
        const int oh = r / Wo, ow = r - oh * Wo;
        /* double accumulation: global pooling sums up to H*W values (as the twin) */
        double acc = 0.0;
        for (int a = 0; a < k; a++) {
            const size_t row = xb + ((size_t)(oh * s + a) * W + (size_t)ow * s) * se;
            for (int b = 0; b < k; b++) acc += al_ld(x, row + (size_t)b * se);
        }
        al_st(y, o, (float)(acc * inv));
    }
}

template <typename T>
static __global__ void avgpool_bwd_kernel(size_t n_in, int C, int nhwc, int H, int W, int Ho,
                                          int Wo, int k, int s, float inv, int accum,
                                          const T *__restrict__ dy, T *__restrict__ dx) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < n_in;
         e += (size_t)gridDim.x * blockDim.x) {
        size_t i, se;
        int c, idx;
        split(e, nhwc, C, H * W, &i, &c, &idx);
        const size_t ob = plane(nhwc, C, Ho * Wo, i, c, &se);
        const int ih = idx / W, iw = idx - ih * W;
        int oh0, oh1, ow0, ow1;
        covering(ih, k, s, Ho, &oh0, &oh1);
        covering(iw, k, s, Wo, &ow0, &ow1);
        float acc = accum ? al_ld(dx, e) : 0.0f;
        for (int oh = oh0; oh <= oh1; oh++)
            for (int ow = ow0; ow <= ow1; ow++)
                acc += al_ld(dy, ob + (size_t)(oh * Wo + ow) * se) * inv;
        al_st(dx, e, acc);
    }
}

static void check_desc(const al_pool_desc *d) {
    AL_ASSERT(d->n >= 1 && d->c >= 1 && d->k >= 1 && d->stride >= 1 && d->h_out >= 1 &&
                  d->w_out >= 1 && d->h_out == (d->h - d->k) / d->stride + 1 &&
                  d->w_out == (d->w - d->k) / d->stride + 1,
              "pool desc n=%d c=%d %dx%d k=%d s=%d out %dx%d (use al_pool_desc_init)", d->n, d->c,
              d->h, d->w, d->k, d->stride, d->h_out, d->w_out);
}

template <typename T>
static al_status maxpool_fwd(al_ctx *ctx, const al_pool_desc *d, const T *x, T *y,
                             int32_t *argmax) {
    check_desc(d);
    AL_ASSERT(x && y && argmax, "maxpool forward: NULL x/y/argmax");
    const size_t n_out = (size_t)d->n * d->c * d->h_out * d->w_out;
    maxpool_fwd_kernel<T><<<al_grid(ctx, n_out, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        n_out, d->c, d->nhwc, d->h, d->w, d->h_out, d->w_out, d->k, d->stride, x, y, argmax);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

template <typename T>
static al_status maxpool_bwd(al_ctx *ctx, const al_pool_desc *d, const int32_t *argmax,
                             const T *dy, T *dx, int dx_accum) {
    check_desc(d);
    AL_ASSERT(argmax && dy && dx, "maxpool backward: NULL argmax/dy/dx");
    const size_t n_in = (size_t)d->n * d->c * d->h * d->w;
    maxpool_bwd_kernel<T><<<al_grid(ctx, n_in, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        n_in, d->c, d->nhwc, d->h, d->w, d->h_out, d->w_out, d->k, d->stride, dx_accum ? 1 : 0, argmax,
        dy, dx);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

template <typename T>
static al_status avgpool_fwd(al_ctx *ctx, const al_pool_desc *d, const T *x, T *y) {
    check_desc(d);
    AL_ASSERT(x && y, "avgpool forward: NULL x/y");
    const size_t n_out = (size_t)d->n * d->c * d->h_out * d->w_out;
    const double inv = 1.0 / ((double)d->k * d->k);
    avgpool_fwd_kernel<T><<<al_grid(ctx, n_out, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        n_out, d->c, d->nhwc, d->h, d->w, d->h_out, d->w_out, d->k, d->stride, inv, x, y);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

template <typename T>
static al_status avgpool_bwd(al_ctx *ctx, const al_pool_desc *d, const T *dy, T *dx,
                             int dx_accum) {
    check_desc(d);
    AL_ASSERT(dy && dx, "avgpool backward: NULL dy/dx");
    const size_t n_in = (size_t)d->n * d->c * d->h * d->w;
    const float inv = (float)(1.0 / ((double)d->k * d->k));
    avgpool_bwd_kernel<T><<<al_grid(ctx, n_in, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        n_in, d->c, d->nhwc, d->h, d->w, d->h_out, d->w_out, d->k, d->stride, inv, dx_accum ? 1 : 0,
        dy, dx);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_maxpool_forward_cuda(al_ctx *ctx, const al_pool_desc *d, const float *x,
                                             float *y, int32_t *argmax) {
    return maxpool_fwd(ctx, d, x, y, argmax);
}
extern "C" al_status al_maxpool_backward_cuda(al_ctx *ctx, const al_pool_desc *d,
                                              const int32_t *argmax, const float *dy, float *dx,
                                              int dx_accum) {
    return maxpool_bwd(ctx, d, argmax, dy, dx, dx_accum);
}
extern "C" al_status al_avgpool_forward_cuda(al_ctx *ctx, const al_pool_desc *d, const float *x,
                                             float *y) {
    return avgpool_fwd(ctx, d, x, y);
}
extern "C" al_status al_avgpool_backward_cuda(al_ctx *ctx, const al_pool_desc *d, const float *dy,
                                              float *dx, int dx_accum) {
    return avgpool_bwd(ctx, d, dy, dx, dx_accum);
}

/* bf16 twins (core/ops/bf16.h): the same kernels on bf16 storage, fp32/double arithmetic */
extern "C" al_status al_maxpool_forward_bf16_cuda(al_ctx *ctx, const al_pool_desc *d,
                                                  const al_bf16 *x, al_bf16 *y, int32_t *argmax) {
    return maxpool_fwd(ctx, d, x, y, argmax);
}
extern "C" al_status al_maxpool_backward_bf16_cuda(al_ctx *ctx, const al_pool_desc *d,
                                                   const int32_t *argmax, const al_bf16 *dy,
                                                   al_bf16 *dx, int dx_accum) {
    return maxpool_bwd(ctx, d, argmax, dy, dx, dx_accum);
}
extern "C" al_status al_avgpool_forward_bf16_cuda(al_ctx *ctx, const al_pool_desc *d,
                                                  const al_bf16 *x, al_bf16 *y) {
    return avgpool_fwd(ctx, d, x, y);
}
extern "C" al_status al_avgpool_backward_bf16_cuda(al_ctx *ctx, const al_pool_desc *d,
                                                   const al_bf16 *dy, al_bf16 *dx, int dx_accum) {
    return avgpool_bwd(ctx, d, dy, dx, dx_accum);
}
