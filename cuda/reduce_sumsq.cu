/* reduce_sumsq.cu: masked sum of squares in double, for gradient clipping by global norm.
 * Twin: the CPU loop of al_optim_clip_coef in core/optim.c (sum over i with mask[i] & bits of
 * (double)x[i] * (double)x[i]). x (n) float, mask (n) uint8 or NULL (= every element), device;
 * the sum is a host scalar (one D2H copy + sync), or, deferred (al_clip_coef_deferred_cuda,
 * the trainer's path), turned into the clip coefficient on the device with no wait.
 * Deterministic on any GPU (style rule 20): a FIXED number of chunks (SUMSQ_CHUNKS, not tied
 * to the SM count) each reduced by one block in a fixed strided order and shuffle tree, then
 * one block sums the chunk partials in a fixed tree. No atomics. The products are exact in
 * double (24-bit mantissas), so CPU and GPU differ only by the order of the double sum.
 * Memory-bound: 5 bytes per element; 11M parameters (PreActResNet-18) ~ 55 MB, ~20 us. */
#include "core/sums.h"
#include "cuda/cuda_base.cuh"

#define SUMSQ_CHUNKS 512
#define SUMSQ_BLOCK 256

/* part[b] = masked sum of squares of chunk b = [b * per, min(n, (b + 1) * per)). */
static __global__ void sumsq_chunks_kernel(size_t n, size_t per, const float *__restrict__ x,
                                           const uint8_t *__restrict__ mask, unsigned bits,
                                           double *__restrict__ part) {
    const size_t lo = (size_t)blockIdx.x * per;
    const size_t hi = lo + per < n ? lo + per : n;
    double s = 0.0;
    for (size_t i = lo + threadIdx.x; i < hi; i += blockDim.x)
        if (!mask || (mask[i] & bits)) s += (double)x[i] * (double)x[i];
    s = al_block_sum(s);
    if (threadIdx.x == 0) part[blockIdx.x] = s;
}

/* *out = the sum of the chunk partials; or, deferred (sink != NULL), the clip coefficient of
 * that sum into the sink (al_sums_clip_elem, core/sums.h). */
static __global__ void sumsq_final_kernel(const double *__restrict__ part,
                                          double *__restrict__ out, al_sums *__restrict__ sink,
                                          double max_norm, int64_t step) {
    double s = 0.0;
    for (int i = threadIdx.x; i < SUMSQ_CHUNKS; i += blockDim.x) s += part[i];
    s = al_block_sum(s);
    if (threadIdx.x == 0) {
        if (sink)
            al_sums_clip_elem(sink, s, max_norm, step);
        else
            *out = s;
    }
}

/* The two kernels into d_out (or the sink); tmp holds the partials. */
static al_status sumsq_launch(al_ctx *ctx, size_t n, const float *x, const uint8_t *mask,
                              unsigned bits, double *part, double *d_out, al_sums *sink,
                              double max_norm, int64_t step) {
    cudaStream_t st = al_stream_of(ctx);
    const size_t per = (n + SUMSQ_CHUNKS - 1) / SUMSQ_CHUNKS;
    sumsq_chunks_kernel<<<SUMSQ_CHUNKS, SUMSQ_BLOCK, 0, st>>>(n, per, x, mask, bits, part);
    AL_LAUNCH_CHECK(ctx);
    sumsq_final_kernel<<<1, SUMSQ_BLOCK, 0, st>>>(part, d_out, sink, max_norm, step);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_masked_sumsq_cuda(al_ctx *ctx, size_t n, const float *x,
                                          const uint8_t *mask, unsigned bits, double *h_sum) {
    AL_ASSERT(h_sum && (x || n == 0), "al_masked_sumsq_cuda: NULL x / h_sum");
    *h_sum = 0.0;
    if (n == 0) return AL_OK;
    al_cuda_state *s = al_cst(ctx);
    void *tmp;
    size_t mark;
    /* [out: 1 double, padded to 64 B][part: SUMSQ_CHUNKS doubles] */
    AL_TRY(al_cuda_tmp(ctx, 64 + SUMSQ_CHUNKS * sizeof(double), &tmp, &mark));
    double *d_out = (double *)tmp, *part = (double *)((char *)tmp + 64);
    double *h = (double *)s->h_aux;
    al_status st = AL_OK;
    AL_CHECK(sumsq_launch(ctx, n, x, mask, bits, part, d_out, NULL, 0.0, 0));
    AL_CUDA_CHECK(cudaMemcpyAsync(h, d_out, sizeof *h, cudaMemcpyDeviceToHost, s->stream));
    AL_CHECK(al_cuda_host_sync(ctx));
    *h_sum = *h;
done:
    al_ctx_scratch_release(ctx, mark);
    return st;
}

extern "C" al_status al_clip_coef_deferred_cuda(al_ctx *ctx, size_t n, const float *x,
                                                const uint8_t *mask, unsigned bits,
                                                double max_norm, al_sums *s, int64_t step) {
    AL_ASSERT(s && (x || n == 0), "al_clip_coef_deferred_cuda: NULL x / s");
    void *tmp;
    size_t mark;
    AL_TRY(al_cuda_tmp(ctx, SUMSQ_CHUNKS * sizeof(double), &tmp, &mark));
    const al_status st = sumsq_launch(ctx, n, x, mask, bits, (double *)tmp, NULL, s, max_norm, step);
    al_ctx_scratch_release(ctx, mark);
    return st;
}
