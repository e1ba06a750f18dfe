/* conv2d.h: 2-D convolution, NCHW activations, OIHW weights (PyTorch layout), groups = 1.
 * CPU: core/ops/conv2d.c (im2col + OpenBLAS SGEMM, OpenMP over images).
 * CUDA twin: cuda/op_conv2d.cu (cuDNN, algorithm cached per shape).
 * Backward write modes: dw +=, db +=, dx = (or += when dx_accum). Each of dx/dw/db may be NULL
 * to skip it: attacks pass dw = db = NULL (no weight gradients). */
#ifndef AL_OP_CONV2D_H
#define AL_OP_CONV2D_H
#include "core/ctx.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct al_conv2d_desc {
    int n, c_in, h_in, w_in;   /* input  (N, C_in, H_in, W_in) */
    int c_out, kh, kw;         /* weight (C_out, C_in, kh, kw) */
    int stride, pad;           /* same in both spatial dims */
    int h_out, w_out;          /* filled by al_conv2d_desc_init */
    int nhwc;                  /* CUDA only: x/y/dx/dy channels last and the weight OHWI
                                * (run.layout = nhwc; 0 from the init) */
} al_conv2d_desc;

void al_conv2d_desc_init(al_conv2d_desc *d, int n, int c_in, int h_in, int w_in, int c_out, int k,
                         int stride, int pad);
/* Scratch bytes the op needs from ctx->scratch for this shape (per backend). */
size_t al_conv2d_scratch_bytes(const al_ctx *ctx, const al_conv2d_desc *d);

al_status al_conv2d_forward(al_ctx *ctx, const al_conv2d_desc *d, const float *x /* (N,Ci,H,W) */,
                            const float *w /* (Co,Ci,kh,kw) */, const float *b /* (Co) or NULL */,
                            float *y /* (N,Co,Ho,Wo) */);
al_status al_conv2d_backward(al_ctx *ctx, const al_conv2d_desc *d, const float *x, const float *w,
                             const float *dy /* (N,Co,Ho,Wo) */, float *dx /* (N,Ci,H,W) or NULL */,
                             int dx_accum, float *dw /* (Co,Ci,kh,kw) or NULL */,
                             float *db /* (Co) or NULL */);

al_status al_conv2d_forward_cpu(al_ctx *, const al_conv2d_desc *, const float *, const float *,
                                const float *, float *);
al_status al_conv2d_backward_cpu(al_ctx *, const al_conv2d_desc *, const float *, const float *,
                                 const float *, float *, int, float *, float *);
#ifdef AL_HAVE_CUDA
al_status al_conv2d_forward_cuda(al_ctx *, const al_conv2d_desc *, const float *, const float *,
                                 const float *, float *);
al_status al_conv2d_backward_cuda(al_ctx *, const al_conv2d_desc *, const float *, const float *,
                                  const float *, float *, int, float *, float *);
size_t al_conv2d_scratch_bytes_cuda(const al_ctx *ctx, const al_conv2d_desc *d);
#endif
#ifdef __cplusplus
}
#endif
#endif
