/* batchnorm.h: 2-D batch norm over (N, HW) per channel, PyTorch semantics.
 * CPU: core/ops/batchnorm.c. CUDA twin: cuda/op_batchnorm.cu.
 * Train mode (use_batch_stats=1): normalise with the biased batch variance; when
 * update_running=1 also running = (1-momentum)*running + momentum*stat, with the UNBIASED
 * variance (n/(n-1)) for running_var, as torch.nn.BatchNorm2d does.
 * Eval mode: normalise with running stats. save_mean/save_invstd (C) always receive the
 * statistics used, so backward is uniform. Backward: dgamma +=, dbeta +=, dx = (+= if accum).
 * Named branches (AdvProp/MultiBN) are separate parameter sets chosen by the model. */
#ifndef AL_OP_BATCHNORM_H
#define AL_OP_BATCHNORM_H
#include "core/ctx.h"
#ifdef __cplusplus
extern "C" {
#endif

typedef struct al_bn_desc {
    int n, c, hw;
    float eps, momentum;       /* PyTorch defaults 1e-5, 0.1 */
    int use_batch_stats;       /* 1 = train mode statistics */
    int update_running;        /* 1 = update running_mean/var (only with use_batch_stats) */
    int nhwc;                  /* CUDA only: x/y/dx/dy channels last (N, HW, C) */
} al_bn_desc;

al_status al_bn_forward(al_ctx *ctx, const al_bn_desc *d, const float *x /* (N,C,HW) */,
                        const float *gamma /* (C) */, const float *beta /* (C) */,
                        float *running_mean /* (C) */, float *running_var /* (C) */,
                        float *y /* (N,C,HW) */, float *save_mean /* (C) */,
                        float *save_invstd /* (C) */);
al_status al_bn_backward(al_ctx *ctx, const al_bn_desc *d, const float *x, const float *gamma,
                         const float *save_mean, const float *save_invstd, const float *dy,
                         float *dx /* or NULL */, int dx_accum, float *dgamma /* or NULL */,
                         float *dbeta /* or NULL */);

al_status al_bn_forward_cpu(al_ctx *, const al_bn_desc *, const float *, const float *,
                            const float *, float *, float *, float *, float *, float *);
al_status al_bn_backward_cpu(al_ctx *, const al_bn_desc *, const float *, const float *,
                             const float *, const float *, const float *, float *, int, float *,
                             float *);
#ifdef AL_HAVE_CUDA
/* Device scratch bytes a train-mode forward or a backward takes (its split per-channel
 * partial sums, cuda/op_batchnorm.cu). Model setup reserves it; without that the op uses the
 * ctx's aux buffer. */
size_t al_bn_scratch_bytes_cuda(const al_bn_desc *d);
al_status al_bn_forward_cuda(al_ctx *, const al_bn_desc *, const float *, const float *,
                             const float *, float *, float *, float *, float *, float *);
al_status al_bn_backward_cuda(al_ctx *, const al_bn_desc *, const float *, const float *,
                              const float *, const float *, const float *, float *, int, float *,
                              float *);
#endif
#ifdef __cplusplus
}
#endif
#endif
