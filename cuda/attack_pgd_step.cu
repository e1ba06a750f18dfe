/* attack_pgd_step.cu: one PGD step, fused. Twin: attacks/pgd_step.c; the per-element math is
 * the SAME AL_HOSTDEV functions of attacks/pgd_step.h (style rule 5), compiled here with
 * --fmad=false, so Linf steps are bitwise the CPU's.
 * x (n, d) is updated in place; x0 (n, d) clean inputs; g (n, d) ascent gradient.
 *   Linf: one elementwise kernel, x = al_pgd_linf_elem(x, x0, g, alpha, eps).
 *   L2:   two kernels. (1) one block per example: sum of g^2 over the FINITE gradient
 *         elements (non-finite ones do not move, as the element function treats them),
 *         inv_gnorm = al_pgd_l2_inv_gnorm (0 for a zero/overflowing norm: no move), then the
 *         sum of (v - x0)^2 of the unprojected v = al_pgd_l2_ascend_elem, and
 *         scale = al_pgd_l2_scale (min(1, eps/||v - x0||)); (2) elementwise
 *         x = al_pgd_l2_project_elem(v, x0, scale) with v recomputed (cheaper than storing it).
 *         Sums accumulate in double with a fixed block tree: deterministic, and equal to the
 *         CPU's up to summation order.
 * Non-finite rules (pgd_step.h): a NaN/Inf gradient element does not move; a non-finite x
 * restarts at x0. */
#include <math.h>

#include "attacks/pgd_step.h"
#include "cuda/cuda_base.cuh"

#define NORM_BLOCK 512

static __global__ void pgd_linf_kernel(size_t n_elems, float *__restrict__ x,
                                       const float *__restrict__ x0, const float *__restrict__ g,
                                       float alpha, float eps) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n_elems;
         i += (size_t)gridDim.x * blockDim.x)
        x[i] = al_pgd_linf_elem(x[i], x0[i], g[i], alpha, eps);
}

/* Per example e (= blockIdx.x): coef[2e] = inv_gnorm, coef[2e+1] = projection scale. */
static __global__ void pgd_l2_norms_kernel(size_t d, const float *__restrict__ x,
                                           const float *__restrict__ x0,
                                           const float *__restrict__ g, float alpha, float eps,
                                           float *__restrict__ coef) {
    const size_t base = (size_t)blockIdx.x * d;
    double gs = 0.0;
    for (size_t j = threadIdx.x; j < d; j += blockDim.x) {
        const float gj = g[base + j];
        if (al_pgd_finitef(gj)) gs += (double)gj * gj;
    }
    const float inv_gnorm = al_pgd_l2_inv_gnorm(al_block_sum(gs));
    double ds = 0.0;
    for (size_t j = threadIdx.x; j < d; j += blockDim.x) {
        const float v = al_pgd_l2_ascend_elem(x[base + j], x0[base + j], g[base + j], alpha,
                                              inv_gnorm);
        const double dj = (double)v - (double)x0[base + j];
        ds += dj * dj;
    }
    const float scale = al_pgd_l2_scale(al_block_sum(ds), eps);
    if (threadIdx.x == 0) {
        coef[2 * blockIdx.x] = inv_gnorm;
        coef[2 * blockIdx.x + 1] = scale;
    }
}

static __global__ void pgd_l2_update_kernel(size_t n_elems, size_t d, float *__restrict__ x,
                                            const float *__restrict__ x0,
                                            const float *__restrict__ g, float alpha,
                                            const float *__restrict__ coef) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n_elems;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t e = i / d;
        const float v = al_pgd_l2_ascend_elem(x[i], x0[i], g[i], alpha, coef[2 * e]);
        x[i] = al_pgd_l2_project_elem(v, x0[i], coef[2 * e + 1]);
    }
}

extern "C" al_status al_pgd_step_cuda(al_ctx *ctx, al_norm norm, int n, size_t d, float *x,
                                      const float *x0, const float *g, float alpha, float eps) {
    AL_ASSERT(n >= 1 && d >= 1 && x && x0 && g, "pgd step n=%d d=%zu", n, d);
    cudaStream_t stream = al_stream_of(ctx);
    const size_t ne = (size_t)n * d;
    if (norm == AL_LINF) {
        const unsigned grid = al_grid(ctx, ne, AL_BLOCK);
        pgd_linf_kernel<<<grid, AL_BLOCK, 0, stream>>>(ne, x, x0, g, alpha, eps);
        AL_LAUNCH_CHECK(ctx);
        return AL_OK;
    }
    if (norm != AL_L2) return AL_FAIL(AL_ERR_VALUE, "al_pgd_step_cuda: unknown norm %d", (int)norm);
    void *tmp;
    size_t mark;
    AL_TRY(al_cuda_tmp(ctx, (size_t)n * 2 * sizeof(float), &tmp, &mark));
    float *coef = (float *)tmp;
    const unsigned grid = al_grid(ctx, ne, AL_BLOCK);
    al_status st = AL_OK;
    pgd_l2_norms_kernel<<<n, NORM_BLOCK, 0, stream>>>(d, x, x0, g, alpha, eps, coef);
    AL_CUDA_CHECK(cudaGetLastError());
    pgd_l2_update_kernel<<<grid, AL_BLOCK, 0, stream>>>(ne, d, x, x0, g, alpha, coef);
    AL_CUDA_CHECK(cudaGetLastError());
    if (al_cst(ctx)->sync_check) AL_CUDA_CHECK(cudaStreamSynchronize(stream));
done:
    al_ctx_scratch_release(ctx, mark);
    return st;
}
