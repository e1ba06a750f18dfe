/* op_conv2d.cu: 2-D convolution through cuDNN. Twin: core/ops/conv2d.c (im2col + SGEMM).
 * NCHW float or bf16 (core/ops/bf16.h) activations with OIHW weights, or channels last
 * (d->nhwc: NHWC activations, OHWI weights -- the caller's converted shadow, core/model.c),
 * groups = 1, square stride/pad.
 * Write modes as the twin: y =; dx = (+= when dx_accum, cuDNN beta = 1); dw += (beta = 1);
 * db += (our deterministic channel-sum kernel, not cudnnConvolutionBackwardBias).
 * Plans: per (shape, precision, deterministic) the descriptors and the three algorithms are
 * chosen ONCE from cudnnGet*_v7 (heuristics: no benchmarking, no device allocation, no sync)
 * and cached in the ctx state. Rules for picking, in the heuristic's order:
 *   - status SUCCESS and workspace (queried again, authoritatively) within the limit;
 *   - deterministic ctx: CUDNN_DETERMINISTIC only (style rule 20);
 *   - fp32 precision: FMA math (no TF32) and, in a first pass, no FFT/Winograd (their
 *     transforms lose ~1e-5 relative, beyond the eps*sqrt(K) agreement the CPU twin is held
 *     to); only if that pass finds nothing are they admitted. tf32 takes anything.
 * Workspace comes from ctx->scratch; al_conv2d_scratch_bytes_cuda plans at setup (max batch)
 * and reports the largest workspace, so the model reserves it before the hot path. */
#include <string.h>

#include "core/ops/batchnorm.h"
#include "core/ops/conv2d.h"
#include "cuda/cuda_base.cuh"

/* Workspace cap for a plan made at setup: large enough for the fast GEMM algorithms of
 * WRN-34-10 at batch 128 (~100-200 MiB), small enough to leave the activations room. */
#define CONV_WS_LIMIT ((size_t)256 << 20)

/* ---------------------------------------------------------------- plan cache */

static int same_key(const al_conv_plan *p, const al_conv2d_desc *d, int precision, int det,
                    int bf16) {
    const al_conv2d_desc *a = &p->d;
    return p->used && a->n == d->n && a->c_in == d->c_in && a->h_in == d->h_in &&
           a->w_in == d->w_in && a->c_out == d->c_out && a->kh == d->kh && a->kw == d->kw &&
           a->stride == d->stride && a->pad == d->pad && a->nhwc == d->nhwc &&
           p->precision == precision &&
           p->deterministic == det && p->bf16 == bf16;
}

static void plan_destroy(al_conv_plan *p) {
    if (p->x) (void)cudnnDestroyTensorDescriptor(p->x);
    if (p->y) (void)cudnnDestroyTensorDescriptor(p->y);
    if (p->b) (void)cudnnDestroyTensorDescriptor(p->b);
    if (p->w) (void)cudnnDestroyFilterDescriptor(p->w);
    if (p->conv) (void)cudnnDestroyConvolutionDescriptor(p->conv);
    memset(p, 0, sizeof *p);
}

void al_conv_plans_destroy(al_cuda_state *s) {
    for (int i = 0; i < AL_CONV_PLANS; i++) plan_destroy(&s->plans[i]);
    s->n_plans = 0;
    s->next_evict = 0;
}

/* FFT and Winograd trade accuracy for speed (see the file comment). */
static int accurate_fwd(cudnnConvolutionFwdAlgo_t a) {
    return a != CUDNN_CONVOLUTION_FWD_ALGO_FFT && a != CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING &&
           a != CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD &&
           a != CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED;
}
static int accurate_bwd_data(cudnnConvolutionBwdDataAlgo_t a) {
    return a != CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT &&
           a != CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING &&
           a != CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD &&
           a != CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED;
}
static int accurate_bwd_filter(cudnnConvolutionBwdFilterAlgo_t a) {
    return a != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT &&
           a != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING &&
           a != CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED;
}

/* The math type a direction runs with: fp32 forces FMA (no TF32 tensor cores). */
static cudnnMathType_t run_math(int precision, cudnnMathType_t suggested) {
    return precision == AL_FP32 ? CUDNN_FMA_MATH : suggested;
}

#define MAX_ALGOS 16

static al_status pick_fwd(const al_ctx *ctx, al_conv_plan *p, size_t limit) {
    al_cuda_state *s = al_cst(ctx);
    cudnnConvolutionFwdAlgoPerf_t perf[MAX_ALGOS];
    int got = 0;
    AL_CUDNN_TRY(cudnnSetConvolutionMathType(p->conv, run_math(p->precision, CUDNN_DEFAULT_MATH)));
    AL_CUDNN_TRY(cudnnGetConvolutionForwardAlgorithm_v7(s->cudnn, p->x, p->w, p->conv, p->y,
                                                        MAX_ALGOS, &got, perf));
    for (int strict = 1; strict >= 0; strict--)
        for (int i = 0; i < got; i++) {
            if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
            if (p->deterministic && perf[i].determinism != CUDNN_DETERMINISTIC) continue;
            if (strict && p->precision == AL_FP32 && !accurate_fwd(perf[i].algo)) continue;
            const cudnnMathType_t m = run_math(p->precision, perf[i].mathType);
            size_t ws = 0;
            if (cudnnSetConvolutionMathType(p->conv, m) != CUDNN_STATUS_SUCCESS) continue;
            if (cudnnGetConvolutionForwardWorkspaceSize(s->cudnn, p->x, p->w, p->conv, p->y,
                                                        perf[i].algo, &ws) != CUDNN_STATUS_SUCCESS)
                continue;
            if (ws > limit) continue;
            p->fwd = perf[i].algo;
            p->math_fwd = m;
            p->ws_fwd = ws;
            return AL_OK;
        }
    return AL_FAIL(AL_ERR_CUDA,
                   "cuda/op_conv2d.cu: no cuDNN forward algorithm for conv %dx%dx%dx%d -> %d "
                   "k%d s%d p%d within %zu bytes of workspace (deterministic %d, precision %d)",
                   p->d.n, p->d.c_in, p->d.h_in, p->d.w_in, p->d.c_out, p->d.kh, p->d.stride,
                   p->d.pad, limit, p->deterministic, p->precision);
}

static al_status pick_bwd_data(const al_ctx *ctx, al_conv_plan *p, size_t limit) {
    al_cuda_state *s = al_cst(ctx);
    cudnnConvolutionBwdDataAlgoPerf_t perf[MAX_ALGOS];
    int got = 0;
    AL_CUDNN_TRY(cudnnSetConvolutionMathType(p->conv, run_math(p->precision, CUDNN_DEFAULT_MATH)));
    AL_CUDNN_TRY(cudnnGetConvolutionBackwardDataAlgorithm_v7(s->cudnn, p->w, p->y, p->conv, p->x,
                                                             MAX_ALGOS, &got, perf));
    for (int strict = 1; strict >= 0; strict--)
        for (int i = 0; i < got; i++) {
            if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
            if (p->deterministic && perf[i].determinism != CUDNN_DETERMINISTIC) continue;
            if (strict && p->precision == AL_FP32 && !accurate_bwd_data(perf[i].algo)) continue;
            const cudnnMathType_t m = run_math(p->precision, perf[i].mathType);
            size_t ws = 0;
            if (cudnnSetConvolutionMathType(p->conv, m) != CUDNN_STATUS_SUCCESS) continue;
            if (cudnnGetConvolutionBackwardDataWorkspaceSize(s->cudnn, p->w, p->y, p->conv, p->x,
                                                             perf[i].algo,
                                                             &ws) != CUDNN_STATUS_SUCCESS)
                continue;
            if (ws > limit) continue;
            p->bwd_data = perf[i].algo;
            p->math_bwd_data = m;
            p->ws_bwd_data = ws;
            return AL_OK;
        }
    return AL_FAIL(AL_ERR_CUDA,
                   "cuda/op_conv2d.cu: no cuDNN backward-data algorithm for conv %dx%dx%dx%d -> "
                   "%d k%d s%d p%d within %zu bytes of workspace (deterministic %d, precision %d)",
                   p->d.n, p->d.c_in, p->d.h_in, p->d.w_in, p->d.c_out, p->d.kh, p->d.stride,
                   p->d.pad, limit, p->deterministic, p->precision);
}

static al_status pick_bwd_filter(const al_ctx *ctx, al_conv_plan *p, size_t limit) {
    al_cuda_state *s = al_cst(ctx);
    cudnnConvolutionBwdFilterAlgoPerf_t perf[MAX_ALGOS];
    int got = 0;
    AL_CUDNN_TRY(cudnnSetConvolutionMathType(p->conv, run_math(p->precision, CUDNN_DEFAULT_MATH)));
    AL_CUDNN_TRY(cudnnGetConvolutionBackwardFilterAlgorithm_v7(s->cudnn, p->x, p->y, p->conv,
                                                               p->w, MAX_ALGOS, &got, perf));
    for (int strict = 1; strict >= 0; strict--)
        for (int i = 0; i < got; i++) {
            if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
            if (p->deterministic && perf[i].determinism != CUDNN_DETERMINISTIC) continue;
            if (strict && p->precision == AL_FP32 && !accurate_bwd_filter(perf[i].algo)) continue;
            const cudnnMathType_t m = run_math(p->precision, perf[i].mathType);
            size_t ws = 0;
            if (cudnnSetConvolutionMathType(p->conv, m) != CUDNN_STATUS_SUCCESS) continue;
            if (cudnnGetConvolutionBackwardFilterWorkspaceSize(s->cudnn, p->x, p->y, p->conv, p->w,
                                                               perf[i].algo,
                                                               &ws) != CUDNN_STATUS_SUCCESS)
                continue;
            if (ws > limit) continue;
            p->bwd_filter = perf[i].algo;
            p->math_bwd_filter = m;
            p->ws_bwd_filter = ws;
            return AL_OK;
        }
    return AL_FAIL(AL_ERR_CUDA,
                   "cuda/op_conv2d.cu: no cuDNN backward-filter algorithm for conv %dx%dx%dx%d "
                   "-> %d k%d s%d p%d within %zu bytes of workspace (deterministic %d, "
                   "precision %d)",
                   p->d.n, p->d.c_in, p->d.h_in, p->d.w_in, p->d.c_out, p->d.kh, p->d.stride,
                   p->d.pad, limit, p->deterministic, p->precision);
}

/* Find or build the plan for this shape; a new plan's algorithms fit `limit` bytes. */
static al_status get_plan(const al_ctx *ctx, const al_conv2d_desc *d, int bf16, size_t limit,
                          al_conv_plan **out) {
    al_cuda_state *s = al_cst(ctx);
    const int prec = (int)ctx->precision, det = ctx->deterministic ? 1 : 0;
    *out = NULL;
    for (int i = 0; i < s->n_plans; i++)
        if (same_key(&s->plans[i], d, prec, det, bf16)) {
            *out = &s->plans[i];
            return AL_OK;
        }
    AL_ASSERT(d->n >= 1 && d->c_in >= 1 && d->c_out >= 1 && d->kh >= 1 && d->kw >= 1 &&
                  d->stride >= 1 && d->pad >= 0 && d->h_out >= 1 && d->w_out >= 1,
              "conv shape n=%d ci=%d co=%d k=%d s=%d p=%d out %dx%d", d->n, d->c_in, d->c_out,
              d->kh, d->stride, d->pad, d->h_out, d->w_out);
    al_conv_plan *p;
    if (s->n_plans < AL_CONV_PLANS) {
        p = &s->plans[s->n_plans++];
    } else {
        p = &s->plans[s->next_evict];
        s->next_evict = (s->next_evict + 1) % AL_CONV_PLANS;
        plan_destroy(p);
    }
    al_status st = AL_OK;
    int on = 0, oc = 0, oh = 0, ow = 0;
    const cudnnDataType_t dt = bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
    /* channels last: activations NHWC and the filter KRSC (OHWI), cuDNN's tensor-core layout */
    const cudnnTensorFormat_t fmt = d->nhwc ? CUDNN_TENSOR_NHWC : CUDNN_TENSOR_NCHW;
    p->d = *d;
    p->precision = prec;
    p->deterministic = det;
    p->bf16 = bf16;
    AL_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->x));
    AL_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->y));
    AL_CUDNN_CHECK(cudnnCreateTensorDescriptor(&p->b));
    AL_CUDNN_CHECK(cudnnCreateFilterDescriptor(&p->w));
    AL_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&p->conv));
    /* bf16: cuDNN's BFLOAT16 config (bf16 x, w, y; fp32 compute type in the conv descriptor) */
    AL_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->x, fmt, dt, d->n, d->c_in, d->h_in, d->w_in));
    AL_CUDNN_CHECK(cudnnSetFilter4dDescriptor(p->w, dt, fmt,
                                              d->c_out, d->c_in, d->kh, d->kw));
    AL_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(p->conv, d->pad, d->pad, d->stride, d->stride,
                                                   1, 1, CUDNN_CROSS_CORRELATION,
                                                   CUDNN_DATA_FLOAT));
    AL_CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(p->conv, p->x, p->w, &on, &oc, &oh, &ow));
    if (on != d->n || oc != d->c_out || oh != d->h_out || ow != d->w_out) {
        st = AL_FAIL(AL_ERR_VALUE,
                     "cuda/op_conv2d.cu: cuDNN output %dx%dx%dx%d differs from the descriptor's "
                     "%dx%dx%dx%d",
                     on, oc, oh, ow, d->n, d->c_out, d->h_out, d->w_out);
        goto done;
    }
    AL_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->y, fmt, dt, d->n, d->c_out, d->h_out, d->w_out));
    AL_CUDNN_CHECK(cudnnSetTensor4dDescriptor(p->b, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 1,
                                              d->c_out, 1, 1));
    p->used = 1; /* descriptors valid: destroy on failure below via plan_destroy */
    AL_CHECK(pick_fwd(ctx, p, limit));
    AL_CHECK(pick_bwd_data(ctx, p, limit));
    AL_CHECK(pick_bwd_filter(ctx, p, limit));
    *out = p;
done:
    if (st != AL_OK) {
        plan_destroy(p);
        if (p == &s->plans[s->n_plans - 1]) s->n_plans--; /* keep the table dense */
    }
    return st;
}

/* The plan's largest workspace, plus (bf16 or channels last) the weight gradient in the
 * plan's format, converted into the fp32 OIHW dw after cuDNN; or the bias gradient's
 * partials, if larger. al_ctx_scratch aligns each start to 64 bytes. */
static size_t scratch_bytes(const al_ctx *ctx, const al_conv2d_desc *d, int bf16) {
    al_conv_plan *p = NULL;
    if (get_plan(ctx, d, bf16, CONV_WS_LIMIT, &p) != AL_OK) return 0; /* re-raised at the call */
    size_t ws = AL_MAX(p->ws_fwd, AL_MAX(p->ws_bwd_data, p->ws_bwd_filter)) + 64;
    if (bf16 || d->nhwc)
        ws += (size_t)d->c_out * d->c_in * d->kh * d->kw * (bf16 ? sizeof(al_bf16) : sizeof(float)) + 64;
    const al_bn_desc sum = {d->n, d->c_out, d->h_out * d->w_out, 0, 0, 0, 0, d->nhwc};
    return AL_MAX(ws, al_bn_scratch_bytes_cuda(&sum));
}

extern "C" size_t al_conv2d_scratch_bytes_cuda(const al_ctx *ctx, const al_conv2d_desc *d) {
    return scratch_bytes(ctx, d, 0);
}

extern "C" size_t al_conv2d_scratch_bytes_bf16_cuda(const al_ctx *ctx, const al_conv2d_desc *d) {
    return scratch_bytes(ctx, d, 1);
}

/* ---------------------------------------------------------------- forward / backward */

/* y += b[c] for bf16 or channels-last y (fp32 NCHW uses cudnnAddTensor). */
template <typename T>
static __global__ void bias_add_kernel(size_t n_elems, int c_total, int hw, int nhwc,
                                       const float *__restrict__ b, T *__restrict__ y) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n_elems;
         i += (size_t)gridDim.x * blockDim.x) {
        al_st(y, i, al_ld(y, i) + b[al_chan_index(i, c_total, hw, nhwc)]);
    }
}

static al_status conv_fwd(al_ctx *ctx, const al_conv2d_desc *d, int bf16, const void *x,
                          const void *w, const float *b, void *y) {
    al_cuda_state *s = al_cst(ctx);
    al_conv_plan *p;
    const size_t avail = al_scratch_avail(ctx);
    AL_TRY(get_plan(ctx, d, bf16, AL_MIN(avail, CONV_WS_LIMIT), &p));
    /* planned at setup with more scratch than is free now (caller holds scratch): re-pick */
    if (p->ws_fwd > avail) AL_TRY(pick_fwd(ctx, p, avail));
    const size_t mark = al_ctx_scratch_mark(ctx);
    void *ws = p->ws_fwd ? al_ctx_scratch(ctx, p->ws_fwd) : NULL;
    const float one = 1.0f, zero = 0.0f;
    al_status st = AL_OK;
    AL_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, p->math_fwd));
    AL_CUDNN_CHECK(cudnnConvolutionForward(s->cudnn, &one, p->x, x, p->w, w, p->conv, p->fwd, ws,
                                           p->ws_fwd, &zero, p->y, y));
    /* y += b broadcast over (N, HW): an elementwise add, deterministic */
    if (b && !bf16 && !d->nhwc)
        AL_CUDNN_CHECK(cudnnAddTensor(s->cudnn, &one, p->b, b, &one, p->y, y));
    if (b && (bf16 || d->nhwc)) {
        const size_t ne = (size_t)d->n * d->c_out * d->h_out * d->w_out;
        const unsigned grid = al_grid(ctx, ne, AL_BLOCK);
        if (bf16)
            bias_add_kernel<al_bf16><<<grid, AL_BLOCK, 0, s->stream>>>(
                ne, d->c_out, d->h_out * d->w_out, d->nhwc, b, (al_bf16 *)y);
        else
            bias_add_kernel<float><<<grid, AL_BLOCK, 0, s->stream>>>(
                ne, d->c_out, d->h_out * d->w_out, d->nhwc, b, (float *)y);
    }
    AL_CUDA_CHECK(cudaGetLastError());
    if (s->sync_check) AL_CUDA_CHECK(cudaStreamSynchronize(s->stream));
done:
    al_ctx_scratch_release(ctx, mark);
    return st;
}

static al_status conv_bwd(al_ctx *ctx, const al_conv2d_desc *d, int bf16, const void *x,
                          const void *w, const void *dy, void *dx, int dx_accum, float *dw,
                          float *db) {
    al_cuda_state *s = al_cst(ctx);
    if (!dx && !dw && !db) return AL_OK;
    al_conv_plan *p;
    const size_t avail = al_scratch_avail(ctx);
    AL_TRY(get_plan(ctx, d, bf16, AL_MIN(avail, CONV_WS_LIMIT), &p));
    const float one = 1.0f, zero = 0.0f;
    const size_t mark = al_ctx_scratch_mark(ctx);
    al_status st = AL_OK;
    if (dx) {
        if (p->ws_bwd_data > avail) AL_CHECK(pick_bwd_data(ctx, p, avail));
        void *ws = p->ws_bwd_data ? al_ctx_scratch(ctx, p->ws_bwd_data) : NULL;
        /* beta = 0: cuDNN does not read dx, so stale NaNs in it cannot leak through */
        AL_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, p->math_bwd_data));
        AL_CUDNN_CHECK(cudnnConvolutionBackwardData(s->cudnn, &one, p->w, w, p->y, dy, p->conv,
                                                    p->bwd_data, ws, p->ws_bwd_data,
                                                    dx_accum ? &one : &zero, p->x, dx));
        al_ctx_scratch_release(ctx, mark);
    }
    if (dw) {
        /* fp32 NCHW: dw += (beta = 1). Otherwise cuDNN writes the gradient in the plan's type
         * and filter layout into ctx scratch (beta = 0), and al_convert_cuda adds it into the
         * fp32 OIHW dw (bf16 -> fp32 as autocast does, OHWI -> OIHW). */
        const size_t wn = (size_t)d->c_out * d->c_in * d->kh * d->kw;
        void *tmp = bf16 || d->nhwc
                        ? al_ctx_scratch(ctx, wn * (bf16 ? sizeof(al_bf16) : sizeof(float)))
                        : NULL;
        const size_t avail_f = al_scratch_avail(ctx);
        if (p->ws_bwd_filter > avail_f) AL_CHECK(pick_bwd_filter(ctx, p, avail_f));
        void *ws = p->ws_bwd_filter ? al_ctx_scratch(ctx, p->ws_bwd_filter) : NULL;
        AL_CUDNN_CHECK(cudnnSetConvolutionMathType(p->conv, p->math_bwd_filter));
        AL_CUDNN_CHECK(cudnnConvolutionBackwardFilter(s->cudnn, &one, p->x, x, p->y, dy, p->conv,
                                                      p->bwd_filter, ws, p->ws_bwd_filter,
                                                      tmp ? &zero : &one, p->w, tmp ? tmp : dw));
        if (tmp)
            AL_CHECK(al_convert_cuda(ctx, d->c_out, d->c_in, d->kh * d->kw, tmp,
                                     (bf16 ? AL_FMT_BF16 : 0) | (d->nhwc ? AL_FMT_NHWC : 0), dw, 0,
                                     1));
        al_ctx_scratch_release(ctx, mark);
    }
    AL_CUDA_CHECK(cudaGetLastError());
    if (s->sync_check) AL_CUDA_CHECK(cudaStreamSynchronize(s->stream));
    if (db && bf16)
        AL_CHECK(al_channel_sum_add_bf16_cuda(ctx, d->n, d->c_out, d->h_out * d->w_out, d->nhwc,
                                              (const al_bf16 *)dy, db));
    else if (db)
        AL_CHECK(al_channel_sum_add_cuda(ctx, d->n, d->c_out, d->h_out * d->w_out, d->nhwc,
                                         (const float *)dy, db));
done:
    al_ctx_scratch_release(ctx, mark);
    return st;
}

extern "C" al_status al_conv2d_forward_cuda(al_ctx *ctx, const al_conv2d_desc *d, const float *x,
                                            const float *w, const float *b, float *y) {
    return conv_fwd(ctx, d, 0, x, w, b, y);
}

extern "C" al_status al_conv2d_backward_cuda(al_ctx *ctx, const al_conv2d_desc *d, const float *x,
                                             const float *w, const float *dy, float *dx,
                                             int dx_accum, float *dw, float *db) {
    return conv_bwd(ctx, d, 0, x, w, dy, dx, dx_accum, dw, db);
}

extern "C" al_status al_conv2d_forward_bf16_cuda(al_ctx *ctx, const al_conv2d_desc *d,
                                                 const al_bf16 *x, const al_bf16 *w,
                                                 const float *b, al_bf16 *y) {
    return conv_fwd(ctx, d, 1, x, w, b, y);
}

extern "C" al_status al_conv2d_backward_bf16_cuda(al_ctx *ctx, const al_conv2d_desc *d,
                                                  const al_bf16 *x, const al_bf16 *w,
                                                  const al_bf16 *dy, al_bf16 *dx, int dx_accum,
                                                  float *dw, float *db) {
    return conv_bwd(ctx, d, 1, x, w, dy, dx, dx_accum, dw, db);
}
