/* op_meansparse.cu: MeanSparse forward/backward and per-channel batch statistics.
 * Twin: core/ops/meansparse.c. Forward and backward evaluate the same AL_HOSTDEV element
 * functions (al_ms_crop, al_ms_fwd_elem, al_ms_bwd_elem in core/ops/meansparse.h) in flat
 * grid-stride loops over (N, C, HW), so with --fmad=false the outputs are bitwise the CPU's.
 * alpha == 0 (and the BPDA backward) is a stream-ordered copy (or an add when accumulating):
 * exactly the bypass of the twin. Write modes: y =, dx = (+= when dx_accum).
 * Batch statistics: one block per channel, two passes in double (mean, then squared
 * deviations), fixed strided order + shuffle tree (al_block_sum): deterministic; they differ
 * from the CPU only by the order of the double sums. Results go to the host (one D2H copy +
 * sync: the statistics pass accumulates them on the host, once per batch). */
#include "core/ops/meansparse.h"
#include "cuda/cuda_base.cuh"

#define GRID_STRIDE(i, n)                                                                  \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);                \
         i += (size_t)gridDim.x * blockDim.x)

static __global__ void ms_fwd_kernel(size_t n, int c, int hw, float alpha,
                                     const float *__restrict__ x, const float *__restrict__ mean,
                                     const float *__restrict__ var, float *__restrict__ y) {
    GRID_STRIDE(i, n) {
        const int ch = (int)((i / (size_t)hw) % (size_t)c);
        y[i] = al_ms_fwd_elem(x[i], mean[ch], al_ms_crop(alpha, var[ch]));
    }
}

static __global__ void ms_bwd_kernel(size_t n, int c, int hw, float alpha, int accum,
                                     const float *__restrict__ x, const float *__restrict__ mean,
                                     const float *__restrict__ var, const float *__restrict__ dy,
                                     float *__restrict__ dx) {
    GRID_STRIDE(i, n) {
        const int ch = (int)((i / (size_t)hw) % (size_t)c);
        const float g = al_ms_bwd_elem(x[i], mean[ch], al_ms_crop(alpha, var[ch]), dy[i]);
        dx[i] = accum ? dx[i] + g : g;
    }
}

static __global__ void ms_add_kernel(size_t n, const float *__restrict__ src,
                                     float *__restrict__ dst) {
    GRID_STRIDE(i, n) { dst[i] += src[i]; }
}

/* Block ch: mean and unbiased variance of channel ch over (N, HW) -> out[ch], out[C + ch]. */
static __global__ void ms_stats_kernel(int n, int c, int hw, const float *__restrict__ x,
                                       double *__restrict__ out) {
    const int ch = blockIdx.x;
    const size_t per = (size_t)n * hw;
    double s = 0.0;
    for (size_t j = threadIdx.x; j < per; j += blockDim.x) {
        const size_t img = j / (size_t)hw, q = j % (size_t)hw;
        s += (double)x[(img * c + ch) * hw + q];
    }
    const double mu = al_block_sum(s) / (double)per;
    double ss = 0.0;
    for (size_t j = threadIdx.x; j < per; j += blockDim.x) {
        const size_t img = j / (size_t)hw, q = j % (size_t)hw;
        const double d = (double)x[(img * c + ch) * hw + q] - mu;
        ss += d * d;
    }
    ss = al_block_sum(ss);
    if (threadIdx.x == 0) {
        out[ch] = mu;
        out[c + ch] = ss / ((double)per - 1.0); /* Bessel; 0/0 = NaN for one element, as torch */
    }
}

extern "C" al_status al_meansparse_forward_cuda(al_ctx *ctx, int n, int c, int hw, const float *x,
                                                const float *mean, const float *var, float alpha,
                                                float *y) {
    const size_t total = (size_t)n * c * hw;
    if (alpha == 0.0f) {
        AL_CUDA_TRY(cudaMemcpyAsync(y, x, total * sizeof(float), cudaMemcpyDeviceToDevice,
                                    al_stream_of(ctx)));
        AL_LAUNCH_CHECK(ctx);
        return AL_OK;
    }
    ms_fwd_kernel<<<al_grid(ctx, total, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        total, c, hw, alpha, x, mean, var, y);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_meansparse_backward_cuda(al_ctx *ctx, int n, int c, int hw,
                                                 const float *x, const float *mean,
                                                 const float *var, float alpha, int bpda,
                                                 const float *dy, float *dx, int dx_accum) {
    const size_t total = (size_t)n * c * hw;
    const unsigned grid = al_grid(ctx, total, AL_BLOCK);
    if (alpha == 0.0f || bpda) {
        if (dx_accum) {
            ms_add_kernel<<<grid, AL_BLOCK, 0, al_stream_of(ctx)>>>(total, dy, dx);
        } else {
            AL_CUDA_TRY(cudaMemcpyAsync(dx, dy, total * sizeof(float), cudaMemcpyDeviceToDevice,
                                        al_stream_of(ctx)));
        }
        AL_LAUNCH_CHECK(ctx);
        return AL_OK;
    }
    ms_bwd_kernel<<<grid, AL_BLOCK, 0, al_stream_of(ctx)>>>(total, c, hw, alpha, dx_accum ? 1 : 0,
                                                            x, mean, var, dy, dx);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_meansparse_batch_stats_cuda(al_ctx *ctx, int n, int c, int hw,
                                                    const float *x, double *h_mean,
                                                    double *h_var) {
    void *tmp;
    size_t mark;
    AL_TRY(al_cuda_tmp(ctx, 2 * (size_t)c * sizeof(double), &tmp, &mark));
    double *d_out = (double *)tmp;
    al_status st = AL_OK;
    cudaStream_t s = al_stream_of(ctx);
    ms_stats_kernel<<<c, AL_BLOCK, 0, s>>>(n, c, hw, x, d_out);
    AL_CUDA_CHECK(cudaGetLastError());
    AL_CUDA_CHECK(cudaMemcpyAsync(h_mean, d_out, (size_t)c * sizeof(double),
                                  cudaMemcpyDeviceToHost, s));
    AL_CUDA_CHECK(cudaMemcpyAsync(h_var, d_out + c, (size_t)c * sizeof(double),
                                  cudaMemcpyDeviceToHost, s));
    AL_CHECK(al_cuda_host_sync(ctx));
done:
    al_ctx_scratch_release(ctx, mark);
    return st;
}
