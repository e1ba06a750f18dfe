/* train_sums.cu: the fold of a training step's deferred scalars (core/sums.h) on the device.
 * Twin: al_sums_fold in core/sums.c; both run al_sums_fold_elem, so the epoch's sums are
 * accumulated in the same order on either backend. One thread: the struct is 96 bytes and the
 * fold runs once per optimiser step, where a host read would cost a stream sync. */
#include "core/sums.h"
#include "cuda/cuda_base.cuh"

static __global__ void sums_fold_kernel(al_sums *s, int n, int64_t step) {
    al_sums_fold_elem(s, n, step);
}

extern "C" al_status al_sums_fold_cuda(al_ctx *ctx, al_sums *s, int n, int64_t step) {
    AL_ASSERT(s && n >= 0, "al_sums_fold_cuda n=%d", n);
    sums_fold_kernel<<<1, 1, 0, al_stream_of(ctx)>>>(s, n, step);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}
