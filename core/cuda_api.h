/* cuda_api.h: the extern "C" entry points cuda/ exports to the host code (only declared when
 * AL_HAVE_CUDA). Kernels live in cuda/<tag>_<name>.cu; each names its CPU twin. */
#ifndef AL_CUDA_API_H
#define AL_CUDA_API_H

#include "core/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif
#ifdef AL_HAVE_CUDA
int al_cuda_device_count(void);
al_status al_cuda_ctx_init(al_ctx *ctx);
void al_cuda_ctx_fini(al_ctx *ctx);
al_status al_cuda_malloc(al_ctx *ctx, void **p, size_t n_bytes, const char *what);
void al_cuda_free(al_ctx *ctx, void *p);
/* kind: 1 host->dev, 2 dev->host, 3 dev->dev (stream-ordered on the ctx stream). */
al_status al_cuda_memcpy(al_ctx *ctx, void *dst, const void *src, size_t n_bytes, int kind);
al_status al_cuda_memset(al_ctx *ctx, void *dst, int value, size_t n_bytes);
al_status al_cuda_sync(al_ctx *ctx);
/* Number of device allocations made through al_cuda_malloc on this ctx (tests assert it is
 * unchanged after step 1 of a repeated forward/backward: style rule 15). */
uint64_t al_cuda_alloc_count(const al_ctx *ctx);

/* Fused SGD + EMA: the CUDA twin of al_sgd_step_cpu (core/optim.h), same arguments after ctx.
 * One launch over the ONE flat buffer (style rule 17); every element runs the shared
 * AL_HOSTDEV al_sgd_ema_elem (core/optim.h), compiled with --fmad=false, so the result is
 * bitwise the CPU loop's. mask (n) holds the AL_OPT_* bits; momentum / ema may be NULL when
 * hp->momentum == 0 / !hp->ema. All pointers are device memory on ctx; no sync. */
struct al_sgd_hparams;
al_status al_sgd_step_cuda(al_ctx *ctx, size_t n, const uint8_t *mask /* (n) */,
                           float *params /* (n) */, const float *grads /* (n) */,
                           float *momentum /* (n) or NULL */, float *ema /* (n) or NULL */,
                           const struct al_sgd_hparams *hp);

/* NVTX ranges for Nsight Systems (nested, per host thread). No-ops without CUDA. */
void al_nvtx_push(const char *name);
void al_nvtx_pop(void);
#else
static inline void al_nvtx_push(const char *name) { (void)name; }
static inline void al_nvtx_pop(void) {}
#endif
#ifdef __cplusplus
}
#endif
#endif
