/* pool.h: max and average pooling (square window k, stride s, no padding, floor mode),
 * NCHW. Global average pooling is avgpool with k = H = W.
 * CPU: core/ops/pool.c. CUDA twin: cuda/op_pool.cu.
 * Max pool saves the argmax (flat index within the input plane, first max wins on ties, like
 * PyTorch) for backward. Backward: dx = (+= if dx_accum). */
#ifndef AL_OP_POOL_H
#define AL_OP_POOL_H
#include "core/ctx.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct al_pool_desc {
    int n, c, h, w, k, stride;
    int h_out, w_out;   /* filled by al_pool_desc_init */
    int nhwc;           /* CUDA only: x/y/dx/dy and argmax channels last (0 from the init) */
} al_pool_desc;

void al_pool_desc_init(al_pool_desc *d, int n, int c, int h, int w, int k, int stride);

al_status al_maxpool_forward(al_ctx *ctx, const al_pool_desc *d, const float *x, float *y,
                             int32_t *argmax /* (N,C,Ho,Wo) */);
al_status al_maxpool_backward(al_ctx *ctx, const al_pool_desc *d, const int32_t *argmax,
                              const float *dy, float *dx, int dx_accum);
al_status al_avgpool_forward(al_ctx *ctx, const al_pool_desc *d, const float *x, float *y);
al_status al_avgpool_backward(al_ctx *ctx, const al_pool_desc *d, const float *dy, float *dx,
                              int dx_accum);

al_status al_maxpool_forward_cpu(al_ctx *, const al_pool_desc *, const float *, float *, int32_t *);
al_status al_maxpool_backward_cpu(al_ctx *, const al_pool_desc *, const int32_t *, const float *,
                                  float *, int);
al_status al_avgpool_forward_cpu(al_ctx *, const al_pool_desc *, const float *, float *);
al_status al_avgpool_backward_cpu(al_ctx *, const al_pool_desc *, const float *, float *, int);
#ifdef AL_HAVE_CUDA
al_status al_maxpool_forward_cuda(al_ctx *, const al_pool_desc *, const float *, float *, int32_t *);
al_status al_maxpool_backward_cuda(al_ctx *, const al_pool_desc *, const int32_t *, const float *,
                                   float *, int);
al_status al_avgpool_forward_cuda(al_ctx *, const al_pool_desc *, const float *, float *);
al_status al_avgpool_backward_cuda(al_ctx *, const al_pool_desc *, const float *, float *, int);
#endif
#ifdef __cplusplus
}
#endif
#endif
