/* op_elementwise.cu: ReLU, add, accumulate, input normalisation, dropout. Twin:
 * core/ops/elementwise.c, mirrored expression by expression (with --fmad=false the results
 * are bitwise the CPU's). Flat grid-stride loops over n_elems (size_t); every dx is =
 * (+= when dx_accum). NaN conventions as the twin (PyTorch's): relu(NaN) = NaN (x <= 0 is
 * false for NaN), -0.0 -> +0.0; dropout of NaN is NaN (x * mask, also where dropped).
 * Dropout draws u_i = al_rng_uniform(seed, stream, i) from core/rng.h (AL_HOSTDEV Philox):
 * the same mask as the CPU for the same (seed, stream). mask[i] = u_i >= p ? 1/(1-p) : 0,
 * with 1/(1-p) rounded from double once, as the twin; p = 1 drops everything. */
#include <math.h>

#include "core/ops/elementwise.h"
#include "core/rng.h"
#include "cuda/cuda_base.cuh"

#define GRID_STRIDE(i, n)                                                                  \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);                \
         i += (size_t)gridDim.x * blockDim.x)

static __global__ void relu_fwd_kernel(size_t n, const float *__restrict__ x,
                                       float *__restrict__ y) {
    GRID_STRIDE(i, n) { y[i] = x[i] <= 0.0f ? 0.0f : x[i]; }
}

/* The gradient at the kink (y == 0) is 0, as PyTorch's threshold_backward. */
static __global__ void relu_bwd_kernel(size_t n, int accum, const float *__restrict__ y,
                                       const float *__restrict__ dy, float *__restrict__ dx) {
    GRID_STRIDE(i, n) {
        const float v = y[i] > 0.0f ? dy[i] : 0.0f;
        dx[i] = accum ? dx[i] + v : v;
    }
}

/* a, b and y may alias (residual add in place): no __restrict__. */
static __global__ void add_kernel(size_t n, const float *a, const float *b, float *y) {
    GRID_STRIDE(i, n) { y[i] = a[i] + b[i]; }
}

static __global__ void accumulate_kernel(size_t n, const float *__restrict__ src,
                                         float *__restrict__ dst) {
    GRID_STRIDE(i, n) { dst[i] += src[i]; }
}

/* A true division, as torchvision's (x - mean) / std (no reciprocal rounding). */
static __global__ void normalize_fwd_kernel(size_t n, int c, int hw, const float *__restrict__ x,
                                            const float *__restrict__ mean,
                                            const float *__restrict__ std,
                                            float *__restrict__ y) {
    GRID_STRIDE(i, n) {
        const int ch = (int)((i / (size_t)hw) % (size_t)c);
        y[i] = (x[i] - mean[ch]) / std[ch];
    }
}

static __global__ void normalize_bwd_kernel(size_t n, int c, int hw, int accum,
                                            const float *__restrict__ std,
                                            const float *__restrict__ dy,
                                            float *__restrict__ dx) {
    GRID_STRIDE(i, n) {
        const int ch = (int)((i / (size_t)hw) % (size_t)c);
        const float v = dy[i] / std[ch];
        dx[i] = accum ? dx[i] + v : v;
    }
}

/* One Philox block serves four consecutive elements (word i & 3 of block i >> 2), so each
 * thread handles a group of four: one 10-round Philox per four outputs, as the twin. */
static __global__ void dropout_fwd_kernel(size_t n, float p, float scale, uint64_t seed,
                                          uint64_t stream, const float *__restrict__ x,
                                          float *__restrict__ y, float *__restrict__ mask) {
    const size_t n_blocks = (n + 3) / 4;
    GRID_STRIDE(blk, n_blocks) {
        const al_u32x4 r = al_rng_block(seed, stream, blk);
#pragma unroll
        for (int t = 0; t < 4; t++) {
            const size_t i = blk * 4 + (size_t)t;
            if (i < n) {
                const float u = al_u32_to_unit(r.v[t]);
                const float mk = u >= p ? scale : 0.0f;
                mask[i] = mk;
                y[i] = x[i] * mk;
            }
        }
    }
}

static __global__ void dropout_bwd_kernel(size_t n, int accum, const float *__restrict__ mask,
                                          const float *__restrict__ dy, float *__restrict__ dx) {
    GRID_STRIDE(i, n) {
        const float v = dy[i] * mask[i];
        dx[i] = accum ? dx[i] + v : v;
    }
}

/* ------------------------------------------------------------------ entry points */

#define LAUNCH(kernel, n_items, ...)                                                       \
    do {                                                                                   \
        if ((n_items) == 0) return AL_OK;                                                  \
        kernel<<<al_grid(ctx, (n_items), AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(      \
            __VA_ARGS__);                                                                  \
        AL_LAUNCH_CHECK(ctx);                                                              \
        return AL_OK;                                                                      \
    } while (0)

extern "C" al_status al_relu_forward_cuda(al_ctx *ctx, size_t n, const float *x, float *y) {
    LAUNCH(relu_fwd_kernel, n, n, x, y);
}

extern "C" al_status al_relu_backward_cuda(al_ctx *ctx, size_t n, const float *y, const float *dy,
                                           float *dx, int dx_accum) {
    LAUNCH(relu_bwd_kernel, n, n, dx_accum ? 1 : 0, y, dy, dx);
}

extern "C" al_status al_add_forward_cuda(al_ctx *ctx, size_t n, const float *a, const float *b,
                                         float *y) {
    LAUNCH(add_kernel, n, n, a, b, y);
}

extern "C" al_status al_accumulate_cuda(al_ctx *ctx, size_t n, const float *src, float *dst,
                                        int accum) {
    if (!accum) { /* dst = src: a stream-ordered device copy */
        if (n == 0 || src == dst) return AL_OK;
        AL_CUDA_TRY(cudaMemcpyAsync(dst, src, n * sizeof(float), cudaMemcpyDeviceToDevice,
                                    al_stream_of(ctx)));
        AL_LAUNCH_CHECK(ctx);
        return AL_OK;
    }
    LAUNCH(accumulate_kernel, n, n, src, dst);
}

extern "C" al_status al_normalize_forward_cuda(al_ctx *ctx, int n, int c, int hw, const float *x,
                                               const float *mean, const float *std, float *y) {
    AL_ASSERT(n >= 1 && c >= 1 && hw >= 1, "normalize n=%d c=%d hw=%d", n, c, hw);
    const size_t ne = (size_t)n * c * hw;
    LAUNCH(normalize_fwd_kernel, ne, ne, c, hw, x, mean, std, y);
}

extern "C" al_status al_normalize_backward_cuda(al_ctx *ctx, int n, int c, int hw,
                                                const float *std, const float *dy, float *dx,
                                                int dx_accum) {
    AL_ASSERT(n >= 1 && c >= 1 && hw >= 1, "normalize n=%d c=%d hw=%d", n, c, hw);
    const size_t ne = (size_t)n * c * hw;
    LAUNCH(normalize_bwd_kernel, ne, ne, c, hw, dx_accum ? 1 : 0, std, dy, dx);
}

extern "C" al_status al_dropout_forward_cuda(al_ctx *ctx, size_t n, float p, uint64_t seed,
                                             uint64_t stream, const float *x, float *y,
                                             float *mask) {
    if (!(p >= 0.0f && p <= 1.0f))
        return AL_FAIL(AL_ERR_VALUE, "al_dropout_forward_cuda: p = %g outside [0, 1]", (double)p);
    const float scale = p < 1.0f ? (float)(1.0 / (1.0 - (double)p)) : 0.0f;
    LAUNCH(dropout_fwd_kernel, (n + 3) / 4, n, p, scale, seed, stream, x, y, mask);
}

extern "C" al_status al_dropout_backward_cuda(al_ctx *ctx, size_t n, const float *mask,
                                              const float *dy, float *dx, int dx_accum) {
    LAUNCH(dropout_bwd_kernel, n, n, dx_accum ? 1 : 0, mask, dy, dx);
}
