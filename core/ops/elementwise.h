/* elementwise.h: ReLU, residual add, input normalisation, dropout, gradient accumulation.
 * CPU: core/ops/elementwise.c. CUDA twin: cuda/op_elementwise.cu.
 * Write modes: every dx is = (or += when dx_accum). */
#ifndef AL_OP_ELEMENTWISE_H
#define AL_OP_ELEMENTWISE_H
#include "core/ctx.h"
#ifdef __cplusplus
extern "C" {
#endif

/* y = max(x, 0). Backward uses y: dx = dy * (y > 0) (gradient 0 at the kink, as PyTorch). */
al_status al_relu_forward(al_ctx *ctx, size_t n_elems, const float *x, float *y);
al_status al_relu_backward(al_ctx *ctx, size_t n_elems, const float *y, const float *dy, float *dx,
                           int dx_accum);
/* y = a + b. */
al_status al_add_forward(al_ctx *ctx, size_t n_elems, const float *a, const float *b, float *y);
/* dst = src (accum 0) or dst += src (accum 1). */
al_status al_accumulate(al_ctx *ctx, size_t n_elems, const float *src, float *dst, int accum);
/* y = (x - mean[c]) / std[c] over (N, C, HW). Backward dx = dy / std[c]. */
al_status al_normalize_forward(al_ctx *ctx, int n, int c, int hw, const float *x,
                               const float *mean /* (C) host or device per ctx */,
                               const float *std, float *y);
al_status al_normalize_backward(al_ctx *ctx, int n, int c, int hw, const float *std, const float *dy,
                                float *dx, int dx_accum);
/* Inverted dropout: mask[i] = (u_i >= p) / (1 - p) with u_i = al_rng_uniform(seed, stream, i);
 * y = x * mask. Backward dx = dy * mask. p = 0 gives mask = 1. */
al_status al_dropout_forward(al_ctx *ctx, size_t n_elems, float p, uint64_t seed, uint64_t stream,
                             const float *x, float *y, float *mask);
al_status al_dropout_backward(al_ctx *ctx, size_t n_elems, const float *mask, const float *dy,
                              float *dx, int dx_accum);

al_status al_relu_forward_cpu(al_ctx *, size_t, const float *, float *);
al_status al_relu_backward_cpu(al_ctx *, size_t, const float *, const float *, float *, int);
al_status al_add_forward_cpu(al_ctx *, size_t, const float *, const float *, float *);
al_status al_accumulate_cpu(al_ctx *, size_t, const float *, float *, int);
al_status al_normalize_forward_cpu(al_ctx *, int, int, int, const float *, const float *,
                                   const float *, float *);
al_status al_normalize_backward_cpu(al_ctx *, int, int, int, const float *, const float *, float *,
                                    int);
al_status al_dropout_forward_cpu(al_ctx *, size_t, float, uint64_t, uint64_t, const float *, float *,
                                 float *);
al_status al_dropout_backward_cpu(al_ctx *, size_t, const float *, const float *, float *, int);
#ifdef AL_HAVE_CUDA
al_status al_relu_forward_cuda(al_ctx *, size_t, const float *, float *);
al_status al_relu_backward_cuda(al_ctx *, size_t, const float *, const float *, float *, int);
al_status al_add_forward_cuda(al_ctx *, size_t, const float *, const float *, float *);
al_status al_accumulate_cuda(al_ctx *, size_t, const float *, float *, int);
al_status al_normalize_forward_cuda(al_ctx *, int, int, int, const float *, const float *,
                                    const float *, float *);
al_status al_normalize_backward_cuda(al_ctx *, int, int, int, const float *, const float *, float *,
                                     int);
al_status al_dropout_forward_cuda(al_ctx *, size_t, float, uint64_t, uint64_t, const float *,
                                  float *, float *);
al_status al_dropout_backward_cuda(al_ctx *, size_t, const float *, const float *, float *, int);
#endif
#ifdef __cplusplus
}
#endif
#endif
