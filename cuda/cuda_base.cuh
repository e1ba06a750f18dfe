/* cuda_base.cuh: plumbing shared by every cuda/ source (C++17, never included from C).
 * Twin: core/ctx.c (host side of the context); cuda/cuda_ctx.cu implements what is declared here.
 * - struct al_cuda_state: what ctx->cuda points to (stream, cuBLAS/cuDNN handles bound to it,
 *   the conv algorithm cache, the device allocation counter, a small aux buffer).
 * - AL_CUDA_TRY / AL_CUBLAS_TRY / AL_CUDNN_TRY record ONE line and return AL_ERR_CUDA:
 *   "[rank 3 gpu 1] cuda/op_conv2d.cu:212 al_conv2d_forward_cuda: cudnnConvolutionForward(..)
 *   = CUDNN_STATUS_BAD_PARAM"; the _CHECK variants set `st` and `goto done` instead.
 * - AL_LAUNCH_CHECK(ctx) after every launch; with ADVLAB_SYNC_CHECK=1 it also syncs.
 * - Deterministic warp/block sums: a fixed shuffle tree, no atomics (style rule 20). */
#ifndef AL_CUDA_BASE_CUH
#define AL_CUDA_BASE_CUH

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "core/base.h"
#include "core/ctx.h"
#include "core/cuda_api.h"
#include "core/ops/bf16.h"
#include "core/ops/conv2d.h"

/* ---------------------------------------------------------------- context state */

/* One cached cuDNN plan: key (shape, precision, determinism) -> descriptors + algorithms. */
typedef struct al_conv_plan {
    int used;
    al_conv2d_desc d;          /* key: the full shape */
    int precision;             /* key: al_precision */
    int deterministic;         /* key */
    int bf16;                  /* key: bf16 x/w/y (cuDNN BFLOAT16 config), else fp32 */
    cudnnTensorDescriptor_t x, y, b;
    cudnnFilterDescriptor_t w;
    cudnnConvolutionDescriptor_t conv;
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    cudnnMathType_t math_fwd, math_bwd_data, math_bwd_filter;
    size_t ws_fwd, ws_bwd_data, ws_bwd_filter; /* workspace bytes of the chosen algorithms */
} al_conv_plan;

/* Distinct conv shapes x batch sizes in one process: resnet18 has ~12 shapes, attacks add a
 * second batch size; 64 leaves room, and a full table evicts round-robin (re-plan, no leak). */
#define AL_CONV_PLANS 64
/* Per-row temporaries of the loss and PGD kernels (8 bytes per row): 1 MiB = 131072 rows. */
#define AL_CUDA_AUX_BYTES (1u << 20)

struct al_cuda_state {
    int device;
    int sm_count;
    cudaStream_t stream;       /* every launch, copy and library call of this ctx */
    cublasHandle_t cublas;     /* bound to `stream` */
    cudnnHandle_t cudnn;       /* bound to `stream` */
    int cublas_math;           /* cublasMath_t currently set on the handle (-1 = unknown) */
    int sync_check;            /* ADVLAB_SYNC_CHECK=1: sync after each launch */
    uint64_t n_allocs;         /* cudaMalloc calls through al_cuda_malloc (hot-path check) */
    uint64_t n_syncs;          /* host waits on the stream via al_cuda_host_sync (hot path) */
    uint64_t n_alloc_bytes;
    void *aux;                 /* device, AL_CUDA_AUX_BYTES */
    void *h_aux;               /* pinned host, AL_CUDA_AUX_BYTES: D2H of scalar results */
    void *cublas_ws;           /* device: cuBLAS workspace (no allocation inside a capture) */
    size_t cublas_ws_bytes;
    int n_plans, next_evict;
    al_conv_plan plans[AL_CONV_PLANS];
};
typedef struct al_cuda_state al_cuda_state;

static inline al_cuda_state *al_cst(const al_ctx *ctx) {
    AL_ASSERT(ctx && ctx->device == AL_DEV_CUDA && ctx->cuda,
              "CUDA op called without an initialised CUDA context");
    return (al_cuda_state *)ctx->cuda;
}
static inline cudaStream_t al_stream_of(const al_ctx *ctx) { return al_cst(ctx)->stream; }

/* ---------------------------------------------------------------- errors */

/* Record "[rank R gpu G] cuda/<file>:<line> <func>: <call name>(..) = <status>"; returns st. */
al_status al_cuda_fail(al_status st, const char *file, int line, const char *func,
                       const char *call, const char *status_name);
const char *al_cublas_status_name(cublasStatus_t s);

#define AL_CUDA_TRY(call)                                                                  \
    do {                                                                                   \
        cudaError_t al_e_ = (call);                                                        \
        if (al_e_ != cudaSuccess)                                                          \
            return al_cuda_fail(AL_ERR_CUDA, __FILE__, __LINE__, __func__, #call,          \
                                cudaGetErrorName(al_e_));                                  \
    } while (0)
#define AL_CUBLAS_TRY(call)                                                                \
    do {                                                                                   \
        cublasStatus_t al_e_ = (call);                                                     \
        if (al_e_ != CUBLAS_STATUS_SUCCESS)                                                \
            return al_cuda_fail(AL_ERR_CUDA, __FILE__, __LINE__, __func__, #call,          \
                                al_cublas_status_name(al_e_));                             \
    } while (0)
#define AL_CUDNN_TRY(call)                                                                 \
    do {                                                                                   \
        cudnnStatus_t al_e_ = (call);                                                      \
        if (al_e_ != CUDNN_STATUS_SUCCESS)                                                 \
            return al_cuda_fail(AL_ERR_CUDA, __FILE__, __LINE__, __func__, #call,          \
                                cudnnGetErrorString(al_e_));                               \
    } while (0)
/* Same, for functions with cleanup: set `st`, jump to `done`. */
#define AL_CUDA_CHECK(call)                                                                \
    do {                                                                                   \
        cudaError_t al_e_ = (call);                                                        \
        if (al_e_ != cudaSuccess) {                                                        \
            st = al_cuda_fail(AL_ERR_CUDA, __FILE__, __LINE__, __func__, #call,            \
                              cudaGetErrorName(al_e_));                                    \
            goto done;                                                                     \
        }                                                                                  \
    } while (0)
#define AL_CUBLAS_CHECK(call)                                                              \
    do {                                                                                   \
        cublasStatus_t al_e_ = (call);                                                     \
        if (al_e_ != CUBLAS_STATUS_SUCCESS) {                                              \
            st = al_cuda_fail(AL_ERR_CUDA, __FILE__, __LINE__, __func__, #call,            \
                              al_cublas_status_name(al_e_));                               \
            goto done;                                                                     \
        }                                                                                  \
    } while (0)
#define AL_CUDNN_CHECK(call)                                                               \
    do {                                                                                   \
        cudnnStatus_t al_e_ = (call);                                                      \
        if (al_e_ != CUDNN_STATUS_SUCCESS) {                                               \
            st = al_cuda_fail(AL_ERR_CUDA, __FILE__, __LINE__, __func__, #call,            \
                              cudnnGetErrorString(al_e_));                                 \
            goto done;                                                                     \
        }                                                                                  \
    } while (0)

/* After every kernel launch (and library call when debugging): launch-config errors always,
 * asynchronous faults at the launch site when ADVLAB_SYNC_CHECK=1. */
#define AL_LAUNCH_CHECK(ctx)                                                               \
    do {                                                                                   \
        AL_CUDA_TRY(cudaGetLastError());                                                   \
        if (al_cst(ctx)->sync_check) AL_CUDA_TRY(cudaStreamSynchronize(al_stream_of(ctx))); \
    } while (0)

/* The host waits for the ctx stream: every result the host reads (a scalar loss, a D2H copy)
 * goes through here, so al_cuda_sync_count tells a test how often a loop waited (the
 * ADVLAB_SYNC_CHECK debug syncs are not counted). */
static inline al_status al_cuda_host_sync(al_ctx *ctx) {
    al_cuda_state *s = al_cst(ctx);
    s->n_syncs++;
    AL_CUDA_TRY(cudaStreamSynchronize(s->stream));
    return AL_OK;
}

/* ---------------------------------------------------------------- element access */

/* Loads and stores of a storage type (fp32 or bf16, core/ops/bf16.h) in fp32 arithmetic:
 * kernels templated on the storage type compute identically for both; for float these are
 * plain accesses, so the fp32 instantiation is the kernel it was before. */
static __device__ __forceinline__ float al_ld(const float *p, size_t i) { return p[i]; }
static __device__ __forceinline__ float al_ld(const al_bf16 *p, size_t i) {
    return al_bf16_to_f32(p[i]);
}
static __device__ __forceinline__ void al_st(float *p, size_t i, float v) { p[i] = v; }
static __device__ __forceinline__ void al_st(al_bf16 *p, size_t i, float v) {
    p[i] = al_f32_to_bf16(v);
}

/* The channel of element i of an (N, C, HW) tensor, NCHW or channels last (nhwc). */
static __device__ __forceinline__ int al_chan_index(size_t i, int c_total, int hw, int nhwc) {
    return nhwc ? (int)(i % (size_t)c_total) : (int)((i / (size_t)hw) % (size_t)c_total);
}

/* ---------------------------------------------------------------- launch helpers */

#define AL_BLOCK 256
/* Grid for a grid-stride loop over n items: enough blocks to fill the GPU 16 deep, never more
 * than the items need (every launch has >= 1 block). */
static inline unsigned al_grid(const al_ctx *ctx, size_t n_items, int block) {
    size_t want = (n_items + (size_t)block - 1) / (size_t)block;
    size_t cap = (size_t)al_cst(ctx)->sm_count * 16;
    if (want > cap) want = cap;
    return (unsigned)(want ? want : 1);
}

/* Workspace bytes still free in ctx->scratch (al_ctx_scratch aligns each start to 64). */
static inline size_t al_scratch_avail(const al_ctx *ctx) {
    size_t off = (ctx->scratch_used + 63) & ~(size_t)63;
    return off < ctx->scratch_bytes ? ctx->scratch_bytes - off : 0;
}

/* cuBLAS math mode for ctx->precision (fp32: pure FP32; tf32/bf16: TF32 tensor cores). The
 * precision is a runtime field that callers may change after init, so ops call this. */
al_status al_cuda_set_gemm_math(al_ctx *ctx);

/* Device temporaries for per-row values: from ctx->scratch when it has room, else the ctx's
 * aux buffer (stream order makes reuse safe: the previous user's kernels ran first).
 * Release with al_ctx_scratch_release(ctx, *mark). */
al_status al_cuda_tmp(al_ctx *ctx, size_t n_bytes, void **p, size_t *mark);

/* Destroy every cached conv plan's descriptors (cuda/op_conv2d.cu; called by ctx fini). */
void al_conv_plans_destroy(al_cuda_state *s);

/* db[c] += sum over (N, HW) of dy, NCHW or channels last (nhwc): the bias gradients of conv
 * and linear (HW = 1). cuda/op_batchnorm.cu's split, fixed-order reductions (deterministic);
 * temporaries from ctx scratch (al_bn_scratch_bytes_cuda of the same shape) or the aux buffer. */
al_status al_channel_sum_add_cuda(al_ctx *ctx, int n, int c, int hw, int nhwc, const float *dy,
                                  float *db);
al_status al_channel_sum_add_bf16_cuda(al_ctx *ctx, int n, int c, int hw, int nhwc,
                                       const al_bf16 *dy, float *db);

/* ---------------------------------------------------------------- reductions */

/* Sum over the warp; the result is valid in lane 0 (fixed butterfly order). */
template <typename T>
__device__ __forceinline__ T al_warp_sum(T v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    return v;
}

/* Sum over the block, valid in EVERY thread. blockDim.x must be a multiple of 32 (<= 1024).
 * Deterministic: each thread's partial is combined in the same tree on every run. May be
 * called repeatedly in one kernel (the trailing barrier protects the shared slots). */
template <typename T>
__device__ T al_block_sum(T v) {
    __shared__ T sh[33];
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = al_warp_sum(v);
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    if (wid == 0) {
        T t = lane < nw ? sh[lane] : T(0);
        t = al_warp_sum(t);
        if (lane == 0) sh[32] = t;
    }
    __syncthreads();
    const T r = sh[32];
    __syncthreads();
    return r;
}

/* Max over the block (order-free: max is exact), valid in every thread; NaNs are skipped
 * (fmax). blockDim.x a multiple of 32; may be called repeatedly in one kernel. */
static __device__ inline double al_block_max(double v) {
    __shared__ double sh[33];
    const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
    for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
    if (lane == 0) sh[wid] = v;
    __syncthreads();
    if (wid == 0) {
        double t = lane < nw ? sh[lane] : -INFINITY;
        for (int o = 16; o > 0; o >>= 1) t = fmax(t, __shfl_xor_sync(0xffffffffu, t, o));
        if (lane == 0) sh[32] = t;
    }
    __syncthreads();
    const double r = sh[32];
    __syncthreads();
    return r;
}

#endif
