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
#endif
#ifdef __cplusplus
}
#endif
#endif
