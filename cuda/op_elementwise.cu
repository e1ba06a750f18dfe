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

/* ReLU, add and cast are templated on the storage type (fp32 or bf16, al_ld / al_st): the
 * float instantiations are the fp32 kernels, the bf16 ones compute in fp32 and round once. */
template <typename T>
static __global__ void relu_fwd_kernel(size_t n, const T *__restrict__ x, T *__restrict__ y) {
    GRID_STRIDE(i, n) {
        const float v = al_ld(x, i);
        al_st(y, i, v <= 0.0f ? 0.0f : v);
    }
}

/* The gradient at the kink (y == 0) is 0, as PyTorch's threshold_backward. */
template <typename T>
static __global__ void relu_bwd_kernel(size_t n, int accum, const T *__restrict__ y,
                                       const T *__restrict__ dy, T *__restrict__ dx) {
    GRID_STRIDE(i, n) {
        const float v = al_ld(y, i) > 0.0f ? al_ld(dy, i) : 0.0f;
        al_st(dx, i, accum ? al_ld(dx, i) + v : v);
    }
}

/* a, b and y may alias (residual add in place): no __restrict__. */
template <typename T>
static __global__ void add_kernel(size_t n, const T *a, const T *b, T *y) {
    GRID_STRIDE(i, n) { al_st(y, i, al_ld(a, i) + al_ld(b, i)); }
}

/* dst = src (accum 0) or dst += src, any pair of storage types. */
template <typename S, typename D>
static __global__ void cast_kernel(size_t n, int accum, const S *__restrict__ src,
                                   D *__restrict__ dst) {
    GRID_STRIDE(i, n) {
        const float v = al_ld(src, i);
        al_st(dst, i, accum ? al_ld(dst, i) + v : v);
    }
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

/* cast instantiations by name (a template-id's comma cannot pass through LAUNCH's arguments) */
#define CAST_FF cast_kernel<float, float>
#define CAST_FB cast_kernel<float, al_bf16>
#define CAST_BF cast_kernel<al_bf16, float>
#define CAST_BB cast_kernel<al_bf16, al_bf16>

#define LAUNCH(kernel, n_items, ...)                                                       \
    do {                                                                                   \
        if ((n_items) == 0) return AL_OK;                                                  \
        kernel<<<al_grid(ctx, (n_items), AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(      \
            __VA_ARGS__);                                                                  \
        AL_LAUNCH_CHECK(ctx);                                                              \
        return AL_OK;                                                                      \
    } while (0)

extern "C" al_status al_relu_forward_cuda(al_ctx *ctx, size_t n, const float *x, float *y) {
    LAUNCH(relu_fwd_kernel<float>, n, n, x, y);
}

extern "C" al_status al_relu_backward_cuda(al_ctx *ctx, size_t n, const float *y, const float *dy,
                                           float *dx, int dx_accum) {
    LAUNCH(relu_bwd_kernel<float>, n, n, dx_accum ? 1 : 0, y, dy, dx);
}

extern "C" al_status al_add_forward_cuda(al_ctx *ctx, size_t n, const float *a, const float *b,
                                         float *y) {
    LAUNCH(add_kernel<float>, n, n, a, b, y);
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
    LAUNCH(CAST_FF, n, n, 1, src, dst);
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

/* ------------------------------------------------------------------ bf16 (core/ops/bf16.h) */

extern "C" al_status al_relu_forward_bf16_cuda(al_ctx *ctx, size_t n, const al_bf16 *x,
                                               al_bf16 *y) {
    LAUNCH(relu_fwd_kernel<al_bf16>, n, n, x, y);
}

extern "C" al_status al_relu_backward_bf16_cuda(al_ctx *ctx, size_t n, const al_bf16 *y,
                                                const al_bf16 *dy, al_bf16 *dx, int dx_accum) {
    LAUNCH(relu_bwd_kernel<al_bf16>, n, n, dx_accum ? 1 : 0, y, dy, dx);
}

extern "C" al_status al_add_forward_bf16_cuda(al_ctx *ctx, size_t n, const al_bf16 *a,
                                              const al_bf16 *b, al_bf16 *y) {
    LAUNCH(add_kernel<al_bf16>, n, n, a, b, y);
}

extern "C" al_status al_cast_cuda(al_ctx *ctx, size_t n, const void *src, int src_bf16, void *dst,
                                  int dst_bf16, int accum) {
    const int a = accum ? 1 : 0;
    if (!src_bf16 && !dst_bf16) return al_accumulate_cuda(ctx, n, (const float *)src, (float *)dst, a);
    if (src_bf16 && dst_bf16 && !a) { /* a copy */
        if (n == 0 || src == dst) return AL_OK;
        AL_CUDA_TRY(cudaMemcpyAsync(dst, src, n * sizeof(al_bf16), cudaMemcpyDeviceToDevice,
                                    al_stream_of(ctx)));
        AL_LAUNCH_CHECK(ctx);
        return AL_OK;
    }
    if (src_bf16 && dst_bf16)
        LAUNCH(CAST_BB, n, n, a, (const al_bf16 *)src, (al_bf16 *)dst);
    if (src_bf16) LAUNCH(CAST_BF, n, n, a, (const al_bf16 *)src, (float *)dst);
    LAUNCH(CAST_FB, n, n, a, (const float *)src, (al_bf16 *)dst);
}

/* ------------------------------------------------------------------ layout (core/ops/bf16.h)
 * al_convert between NCHW and NHWC: per image the source is an (R, S) row-major matrix (NCHW:
 * R = C, S = HW; NHWC: R = HW, S = C) written transposed, through a 32 x 33 shared tile so
 * that both the reads and the writes are coalesced. The value is converted to the destination
 * type exactly as al_cast does (one rounding of the fp32 sum when accumulating into bf16). */
#define TR_TILE 32
#define TR_ROWS 8

template <typename TS, typename TD>
static __global__ void transpose_kernel(int R, int S, int accum, const TS *__restrict__ src,
                                        TD *__restrict__ dst) {
    __shared__ float tile[TR_TILE][TR_TILE + 1];
    const size_t off = (size_t)blockIdx.z * R * S;
    const int r0 = blockIdx.y * TR_TILE, s0 = blockIdx.x * TR_TILE;
    for (int j = threadIdx.y; j < TR_TILE; j += TR_ROWS) {
        const int r = r0 + j, c = s0 + threadIdx.x;
        if (r < R && c < S) tile[j][threadIdx.x] = al_ld(src, off + (size_t)r * S + c);
    }
    __syncthreads();
    for (int j = threadIdx.y; j < TR_TILE; j += TR_ROWS) {
        const int c = s0 + j, r = r0 + threadIdx.x; /* destination row c, column r */
        if (r < R && c < S) {
            const size_t o = off + (size_t)c * R + r;
            const float v = tile[threadIdx.x][j];
            al_st(dst, o, accum ? al_ld(dst, o) + v : v);
        }
    }
}

template <typename TS, typename TD>
static void transpose(al_ctx *ctx, dim3 grid, int R, int S, int accum, const void *src,
                      void *dst) {
    transpose_kernel<TS, TD><<<grid, dim3(TR_TILE, TR_ROWS), 0, al_stream_of(ctx)>>>(
        R, S, accum, (const TS *)src, (TD *)dst);
}

extern "C" al_status al_convert_cuda(al_ctx *ctx, int n, int c, int hw, const void *src,
                                     int src_fmt, void *dst, int dst_fmt, int accum) {
    if (((src_fmt ^ dst_fmt) & AL_FMT_NHWC) == 0 || c == 1 || hw == 1)
        return al_cast_cuda(ctx, (size_t)n * c * hw, src, src_fmt & AL_FMT_BF16, dst,
                            dst_fmt & AL_FMT_BF16, accum);
    if (n == 0) return AL_OK;
    const int R = src_fmt & AL_FMT_NHWC ? hw : c, S = src_fmt & AL_FMT_NHWC ? c : hw;
    const int a = accum ? 1 : 0;
    AL_ASSERT(n <= 65535 && AL_CEIL_DIV(R, TR_TILE) <= 65535,
              "al_convert_cuda: %d images of %d x %d exceed the launch grid", n, R, S);
    const dim3 grid((unsigned)AL_CEIL_DIV(S, TR_TILE), (unsigned)AL_CEIL_DIV(R, TR_TILE), (unsigned)n);
    const int sb = src_fmt & AL_FMT_BF16, db = dst_fmt & AL_FMT_BF16;
    if (sb && db) transpose<al_bf16, al_bf16>(ctx, grid, R, S, a, src, dst);
    else if (sb) transpose<al_bf16, float>(ctx, grid, R, S, a, src, dst);
    else if (db) transpose<float, al_bf16>(ctx, grid, R, S, a, src, dst);
    else transpose<float, float>(ctx, grid, R, S, a, src, dst);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}
