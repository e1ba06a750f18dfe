/* op_reduce.cu: deterministic per-channel sums shared by the bias gradients of conv and linear.
 * Twins: the db loops in core/ops/conv2d.c and core/ops/linear.c (db +=).
 * Layout (N, C, HW); linear's dy (N, Out) is the HW = 1 case. One block per channel walks the
 * N*HW values of its channel in a fixed strided order with double partials, then a fixed
 * shuffle tree: bitwise the same result on every run (no atomics, style rule 20). */
#include "cuda/cuda_base.cuh"

#define SUM_BLOCK 256

/* db[c] += sum_{i, q} dy[(i*C + c)*HW + q]. grid = C blocks. */
template <typename T>
static __global__ void channel_sum_add_kernel(int n, int c_total, int hw,
                                              const T *__restrict__ dy, float *__restrict__ db) {
    const int c = blockIdx.x;
    const size_t m = (size_t)n * hw;
    double acc = 0.0;
    /* flat index over (i, q): consecutive threads read consecutive q (coalesced when HW is
     * large; for HW = 1 the stride is C floats, acceptable for the small linear layers) */
    for (size_t t = threadIdx.x; t < m; t += blockDim.x) {
        const size_t i = t / (size_t)hw, q = t - i * (size_t)hw;
        acc += (double)al_ld(dy, (i * (size_t)c_total + (size_t)c) * (size_t)hw + q);
    }
    acc = al_block_sum(acc);
    if (threadIdx.x == 0) db[c] += (float)acc;
}

al_status al_channel_sum_add_cuda(al_ctx *ctx, int n, int c, int hw, const float *dy, float *db) {
    AL_ASSERT(n >= 1 && c >= 1 && hw >= 1, "channel sum n=%d c=%d hw=%d", n, c, hw);
    channel_sum_add_kernel<float><<<c, SUM_BLOCK, 0, al_stream_of(ctx)>>>(n, c, hw, dy, db);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

al_status al_channel_sum_add_bf16_cuda(al_ctx *ctx, int n, int c, int hw, const al_bf16 *dy,
                                       float *db) {
    AL_ASSERT(n >= 1 && c >= 1 && hw >= 1, "channel sum n=%d c=%d hw=%d", n, c, hw);
    channel_sum_add_kernel<al_bf16><<<c, SUM_BLOCK, 0, al_stream_of(ctx)>>>(n, c, hw, dy, db);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}
