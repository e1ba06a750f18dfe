/* linear.h: y = x W^T + b, x (N, In), W (Out, In) PyTorch layout, b (Out) or NULL.
 * CPU: core/ops/linear.c (OpenBLAS SGEMM). CUDA twin: cuda/op_linear.cu (cuBLAS).
 * Backward: dw +=, db +=, dx = (+= if dx_accum); any of them NULL to skip. */
#ifndef AL_OP_LINEAR_H
#define AL_OP_LINEAR_H
#include "core/ctx.h"
#ifdef __cplusplus
extern "C" {
#endif

al_status al_linear_forward(al_ctx *ctx, int n, int in, int out, const float *x, const float *w,
                            const float *b, float *y);
al_status al_linear_backward(al_ctx *ctx, int n, int in, int out, const float *x, const float *w,
                             const float *dy, float *dx, int dx_accum, float *dw, float *db);

al_status al_linear_forward_cpu(al_ctx *, int, int, int, const float *, const float *,
                                const float *, float *);
al_status al_linear_backward_cpu(al_ctx *, int, int, int, const float *, const float *,
                                 const float *, float *, int, float *, float *);
#ifdef AL_HAVE_CUDA
al_status al_linear_forward_cuda(al_ctx *, int, int, int, const float *, const float *,
                                 const float *, float *);
al_status al_linear_backward_cuda(al_ctx *, int, int, int, const float *, const float *,
                                  const float *, float *, int, float *, float *);
#endif
#ifdef __cplusplus
}
#endif
#endif
