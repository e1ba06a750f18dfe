/* train_advprop.cu: AdvProp's per-step attack targets on the device. Twin: advprop_targets()
 * in core/methods/multibn.c; both run al_advprop_target (core/methods/advprop_target.h), so
 * the targets are bitwise the CPU's. Labels are the step's (checked at load, in [0, K)). */
#include "core/methods/advprop_target.h"
#include "cuda/cuda_base.cuh"

static __global__ void advprop_targets_kernel(int n, int k, const int32_t *__restrict__ y,
                                              uint64_t seed, uint64_t stream,
                                              int32_t *__restrict__ t) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        t[i] = al_advprop_target(y[i], k, seed, stream, i);
}

extern "C" al_status al_advprop_targets_cuda(al_ctx *ctx, int n, int k, const int32_t *y,
                                             uint64_t seed, uint64_t stream, int32_t *t) {
    AL_ASSERT(n >= 0 && k >= 2 && y && t, "al_advprop_targets_cuda n=%d k=%d", n, k);
    if (n == 0) return AL_OK;
    advprop_targets_kernel<<<al_grid(ctx, (size_t)n, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        n, k, y, seed, stream, t);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}
