/* ctx.h: the execution context every working function takes first (style rule 18).
 * Holds the backend (CPU reference or CUDA), device, precision, determinism, RNG seed,
 * rank/world and a scratch workspace. No globals: two contexts can coexist. */
#ifndef AL_CTX_H
#define AL_CTX_H

#include "core/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum al_device { AL_DEV_CPU = 0, AL_DEV_CUDA = 1 } al_device;
typedef enum al_precision { AL_FP32 = 0, AL_TF32 = 1, AL_BF16 = 2 } al_precision;
/* Activation layout of the conv/BN/ReLU/add/pool nodes (core/model.c "storage formats"):
 * NCHW everywhere, or NHWC (channels last, CUDA only) as cuDNN's tensor-core kernels want. */
typedef enum al_layout { AL_NCHW = 0, AL_NHWC = 1 } al_layout;

struct al_sums;

typedef struct al_ctx {
    al_device device;
    int device_id;        /* CUDA ordinal */
    int n_threads;        /* CPU OpenMP threads (0 = OpenMP default) */
    int deterministic;    /* 1: deterministic algorithms only (CPU is always deterministic) */
    al_precision precision;
    al_layout layout;     /* AL_NCHW (al_ctx_init's default) or AL_NHWC (CUDA; model setup) */
    int cuda_graphs;      /* 1 (al_ctx_init's default): CUDA replays the PGD/FGSM iteration as a
                           * CUDA graph (attacks/attack.c); results are the same either way */
    uint64_t seed;        /* Philox key of this run */
    int rank, world;      /* data-parallel rank / world size */
    /* Scratch workspace (host or device memory per `device`), bump-allocated by ops and
     * released by the op itself (al_ctx_scratch_mark / _release). Grows only at setup. */
    void *scratch;
    size_t scratch_bytes, scratch_used;
    void *cuda;           /* struct al_cuda_state * when device == AL_DEV_CUDA */
    /* Hot-path audit (style rule 15), on every backend; tests assert their deltas over a loop:
     * n_dev_allocs: al_dev_alloc calls; n_host_reads: values brought back to the host
     * (al_copy_to_host, al_sync, and each op call that returns a host scalar: on CUDA every one
     * is a D2H copy + stream sync, which cuda/ counts separately as al_cuda_sync_count). */
    uint64_t n_dev_allocs, n_host_reads;
    /* Deferred step scalars (core/sums.h): while set, ops returning a host loss / correct
     * count add it to this al_sums on the device instead and do not wait. */
    struct al_sums *defer;
} al_ctx;

/* Count one host read when the caller asked for a host result (want != NULL) that is not
 * deferred (ctx->defer, core/sums.h). */
static inline void al_note_host_read(al_ctx *ctx, const void *want) {
    if (want && !ctx->defer) ctx->n_host_reads++;
}

/* Create a context. device CPU always works; CUDA returns AL_ERR_NO_GPU with a message when
 * the build has no CUDA or no device is present. */
al_status al_ctx_init(al_ctx *ctx, al_device device, int device_id, int n_threads, uint64_t seed);
void al_ctx_fini(al_ctx *ctx);

/* Ensure the scratch workspace holds at least n_bytes (setup time only: may allocate). */
al_status al_ctx_reserve_scratch(al_ctx *ctx, size_t n_bytes);
/* Bump-allocate from scratch (64-byte aligned); AL_ASSERTs on overflow (sizes are planned). */
void *al_ctx_scratch(al_ctx *ctx, size_t n_bytes);
static inline size_t al_ctx_scratch_mark(const al_ctx *ctx) { return ctx->scratch_used; }
static inline void al_ctx_scratch_release(al_ctx *ctx, size_t mark) { ctx->scratch_used = mark; }

/* Memory on the context's device. */
al_status al_dev_alloc(al_ctx *ctx, void **p, size_t n_bytes, const char *what);
void al_dev_free(al_ctx *ctx, void *p);
/* Copies: kind is derived from ctx->device (host<->device); on CPU these are memcpy. */
al_status al_copy_to_dev(al_ctx *ctx, void *dst, const void *src_host, size_t n_bytes);
al_status al_copy_to_host(al_ctx *ctx, void *dst_host, const void *src, size_t n_bytes);
al_status al_copy_dev(al_ctx *ctx, void *dst, const void *src, size_t n_bytes);
al_status al_memset_dev(al_ctx *ctx, void *dst, int value, size_t n_bytes);
al_status al_sync(al_ctx *ctx);

/* The CUDA arm of every backend dispatcher: `case AL_DEV_CUDA: AL_CUDA_OR_FAIL(al_x_cuda(...));`
 * returns the CUDA twin's status; in a build without CUDA (where the twin is not even declared)
 * it returns AL_ERR_NO_GPU naming the dispatching function. */
#ifdef AL_HAVE_CUDA
#define AL_CUDA_OR_FAIL(call) return (call)
#else
#define AL_CUDA_OR_FAIL(call)                                                                  \
    return AL_FAIL(AL_ERR_NO_GPU,                                                              \
                   "%s: the context's device is CUDA but advlab was built without CUDA "       \
                   "(configure with -DADVLAB_CUDA=ON)",                                        \
                   __func__)
#endif

/* Is a CUDA device usable in this build/process? (1/0, with no error recorded). */
int al_cuda_available(void);

#ifdef __cplusplus
}
#endif
#endif
