/* sums.c: the deferred step scalars (core/sums.h): reset, fold and read on either backend.
 * Twin: cuda/train_sums.cu (the fold as a single-thread kernel running al_sums_fold_elem). */
#include "core/sums.h"

#include <string.h>

#include "core/cuda_api.h"

al_status al_sums_reset(al_ctx *ctx, al_sums *s) {
    al_sums e;
    memset(&e, 0, sizeof e);
    e.bad_step = -1;
    e.bad_index = -1;
    e.bad_grad_step = -1;
    e.clip_coef = 1.0;
    return al_copy_to_dev(ctx, s, &e, sizeof e);
}

al_status al_sums_fold(al_ctx *ctx, al_sums *s, int n, int64_t step) {
    AL_ASSERT(!ctx->defer, "al_sums_fold with the deferral still open");
    if (ctx->device == AL_DEV_CPU) {
        al_sums_fold_elem(s, n, step);
        return AL_OK;
    }
    AL_CUDA_OR_FAIL(al_sums_fold_cuda(ctx, s, n, step));
}

al_status al_sums_read(al_ctx *ctx, const al_sums *s, al_sums *host) {
    return al_copy_to_host(ctx, host, s, sizeof *host);
}

al_status al_defer_refuse(const al_ctx *ctx, const char *fn, const void *parts) {
    if (ctx->defer && parts)
        return AL_FAIL(AL_ERR_VALUE, "%s: `parts` cannot be returned while the step's scalars "
                                     "are deferred (core/sums.h): pass NULL",
                       fn);
    return AL_OK;
}
