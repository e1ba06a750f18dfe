/* ctx.c: context lifecycle, scratch workspace, device-memory dispatch (CPU side).
 * Twin: cuda/cuda_ctx.cu implements the al_cuda_* entry points used here. */
#include "core/ctx.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "core/blas.h"
#include "core/cuda_api.h"

/* OpenBLAS runs single-threaded inside our OpenMP regions: ops parallelise over images. */
extern void openblas_set_num_threads(int);

al_status al_ctx_init(al_ctx *ctx, al_device device, int device_id, int n_threads, uint64_t seed) {
    memset(ctx, 0, sizeof *ctx);
    ctx->device = device;
    ctx->device_id = device_id;
    ctx->seed = seed;
    ctx->world = 1;
    ctx->cuda_graphs = 1;
    ctx->n_threads = n_threads > 0 ? n_threads : omp_get_max_threads();
    omp_set_num_threads(ctx->n_threads);
    al_blas_select_kernels();
    openblas_set_num_threads(1);
    if (device == AL_DEV_CUDA) {
#ifdef AL_HAVE_CUDA
        AL_TRY(al_cuda_ctx_init(ctx));
#else
        return AL_FAIL(AL_ERR_NO_GPU, "device = cuda requested but advlab was built without CUDA "
                                      "(configure with -DADVLAB_CUDA=ON)");
#endif
    }
    return AL_OK;
}

void al_ctx_fini(al_ctx *ctx) {
    if (!ctx) return;
    if (ctx->scratch) al_dev_free(ctx, ctx->scratch);
    ctx->scratch = NULL;
#ifdef AL_HAVE_CUDA
    if (ctx->device == AL_DEV_CUDA) al_cuda_ctx_fini(ctx);
#endif
}

al_status al_ctx_reserve_scratch(al_ctx *ctx, size_t n_bytes) {
    if (n_bytes <= ctx->scratch_bytes) return AL_OK;
    AL_ASSERT(ctx->scratch_used == 0, "scratch grown while in use");
    if (ctx->scratch) al_dev_free(ctx, ctx->scratch);
    ctx->scratch = NULL;
    ctx->scratch_bytes = 0;
    AL_TRY(al_dev_alloc(ctx, &ctx->scratch, n_bytes, "scratch workspace"));
    ctx->scratch_bytes = n_bytes;
    return AL_OK;
}

void *al_ctx_scratch(al_ctx *ctx, size_t n_bytes) {
    size_t off = (ctx->scratch_used + 63) & ~(size_t)63;
    AL_ASSERT(off + n_bytes <= ctx->scratch_bytes,
              "scratch overflow: need %zu bytes at offset %zu, have %zu", n_bytes, off,
              ctx->scratch_bytes);
    ctx->scratch_used = off + n_bytes;
    return (char *)ctx->scratch + off;
}

al_status al_dev_alloc(al_ctx *ctx, void **p, size_t n_bytes, const char *what) {
    *p = NULL;
    ctx->n_dev_allocs++;
    if (ctx->device == AL_DEV_CUDA) {
#ifdef AL_HAVE_CUDA
        return al_cuda_malloc(ctx, p, n_bytes, what);
#endif
    }
    /* 64-byte alignment for SIMD; n rounded up as aligned_alloc requires. */
    size_t n = (n_bytes + 63) & ~(size_t)63;
    *p = aligned_alloc(64, n ? n : 64);
    if (!*p) return AL_FAIL(AL_ERR_OOM, "out of host memory: %zu bytes for %s", n_bytes, what);
    return AL_OK;
}

void al_dev_free(al_ctx *ctx, void *p) {
    if (!p) return;
    if (ctx->device == AL_DEV_CUDA) {
#ifdef AL_HAVE_CUDA
        al_cuda_free(ctx, p);
        return;
#endif
    }
    free(p);
}

al_status al_copy_to_dev(al_ctx *ctx, void *dst, const void *src, size_t n) {
#ifdef AL_HAVE_CUDA
    if (ctx->device == AL_DEV_CUDA) return al_cuda_memcpy(ctx, dst, src, n, 1);
#endif
    if (n) memcpy(dst, src, n);
    return AL_OK;
}

al_status al_copy_to_host(al_ctx *ctx, void *dst, const void *src, size_t n) {
    ctx->n_host_reads++;
#ifdef AL_HAVE_CUDA
    if (ctx->device == AL_DEV_CUDA) return al_cuda_memcpy(ctx, dst, src, n, 2);
#endif
    if (n) memcpy(dst, src, n);
    return AL_OK;
}

al_status al_copy_dev(al_ctx *ctx, void *dst, const void *src, size_t n) {
#ifdef AL_HAVE_CUDA
    if (ctx->device == AL_DEV_CUDA) return al_cuda_memcpy(ctx, dst, src, n, 3);
#endif
    if (n && dst != src) memmove(dst, src, n);
    return AL_OK;
}

al_status al_memset_dev(al_ctx *ctx, void *dst, int value, size_t n) {
#ifdef AL_HAVE_CUDA
    if (ctx->device == AL_DEV_CUDA) return al_cuda_memset(ctx, dst, value, n);
#endif
    if (n) memset(dst, value, n);
    return AL_OK;
}

al_status al_sync(al_ctx *ctx) {
    ctx->n_host_reads++;
#ifdef AL_HAVE_CUDA
    if (ctx->device == AL_DEV_CUDA) return al_cuda_sync(ctx);
#endif
    (void)ctx;
    return AL_OK;
}

int al_cuda_available(void) {
#ifdef AL_HAVE_CUDA
    return al_cuda_device_count() > 0;
#else
    return 0;
#endif
}
