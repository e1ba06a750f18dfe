/* op_bn_gate.cu: the MultiBN gate's three nodes (bn_gate.stats, bn_gate.softmax, routed gated
 * BN). Twin: core/ops/bn_gate.c, expression by expression:
 * - stats: one warp per (i, c), the two double sums (mean, squared deviations) in warp order
 *   instead of the twin's sequential order (relative ~HW 2^-53, below the float rounding);
 *   its backward is elementwise and bitwise the twin's given the same inputs.
 * - softmax: one thread per row running the shared AL_HOSTDEV row (core/ops/bn_gate_row.h):
 *   bitwise the twin's.
 * - routed gated BN forward: the twin's per-channel coefficients (mean, (float)(gamma invstd),
 *   beta) once per (c, branch), then elementwise the twin's float expression in its branch
 *   order (--fmad=false): bitwise. Backward: one warp per (i, c) computes S0 = sum dy and
 *   S1 = sum x dy (double) and writes dx; then one thread per (c, q) adds the twin's float
 *   terms to dgamma_q[c] / dbeta_q[c] in the twin's order (i ascending) and one thread per
 *   (i, q) sums dp over c in the twin's order: the parameter and gate gradients differ from
 *   the CPU only through S0 / S1 (order of their double sums). Deterministic: no atomics. */
#include <math.h>

#include "core/ops/bn_gate.h"
#include "core/ops/bn_gate_row.h"
#include "cuda/cuda_base.cuh"

#define GATE_STD_EPS 1e-5 /* as bn_gate.c */
#define WARPS 8

static __device__ __forceinline__ double warp_sum_bcast(double v) {
    v = al_warp_sum(v);
    return __shfl_sync(0xffffffffu, v, 0);
}

/* ---------------------------------------------------------------- stats */

static __global__ void stats_fwd_kernel(int nc, int c_n, int hw, const float *__restrict__ x,
                                        float *__restrict__ y) {
    const int lane = threadIdx.x & 31, r = blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (r >= nc) return;
    const int i = r / c_n, c = r % c_n;
    const float *xr = x + (size_t)r * hw;
    double s = 0.0;
    for (int q = lane; q < hw; q += 32) s += xr[q];
    const double mean = warp_sum_bcast(s) / hw;
    double v = 0.0;
    for (int q = lane; q < hw; q += 32) v += (xr[q] - mean) * (xr[q] - mean);
    v = warp_sum_bcast(v);
    if (lane == 0) {
        y[(size_t)i * 2 * c_n + c] = (float)mean;
        y[(size_t)i * 2 * c_n + c_n + c] = (float)sqrt(v / hw + GATE_STD_EPS);
    }
}

static __global__ void stats_bwd_kernel(size_t total, int c_n, int hw, int acc,
                                        const float *__restrict__ x, const float *__restrict__ y,
                                        const float *__restrict__ dy, float *__restrict__ dx) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total;
         e += (size_t)gridDim.x * blockDim.x) {
        const size_t r = e / (size_t)hw;
        const size_t i = r / (size_t)c_n, c = r % (size_t)c_n;
        const double mean = y[i * 2 * c_n + c], sd = y[i * 2 * c_n + c_n + c];
        const double gm = dy[i * 2 * c_n + c] / hw;
        const double gs = dy[i * 2 * c_n + c_n + c] / (hw * sd);
        const float g = (float)(gm + gs * (x[e] - mean));
        dx[e] = acc ? dx[e] + g : g;
    }
}

extern "C" al_status al_bn_gate_stats_forward_cuda(al_ctx *ctx, int n, int c, int hw,
                                                   const float *x, float *y) {
    const int nc = n * c;
    stats_fwd_kernel<<<(unsigned)AL_CEIL_DIV(nc, WARPS), WARPS * 32, 0, al_stream_of(ctx)>>>(
        nc, c, hw, x, y);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_bn_gate_stats_backward_cuda(al_ctx *ctx, int n, int c, int hw,
                                                    const float *x, const float *y,
                                                    const float *dy, float *dx, int acc) {
    const size_t total = (size_t)n * c * hw;
    stats_bwd_kernel<<<al_grid(ctx, total, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        total, c, hw, acc, x, y, dy, dx);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

/* ---------------------------------------------------------------- softmax */

static __global__ void softmax_fwd_kernel(int n, int b_n, int hard, const float *__restrict__ z,
                                          float *__restrict__ p) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) al_gate_softmax_row(z + (size_t)i * b_n, b_n, hard, p + (size_t)i * b_n);
}

static __global__ void softmax_bwd_kernel(int n, int b_n, int hard, int acc,
                                          const float *__restrict__ p,
                                          const float *__restrict__ dp, float *__restrict__ dz) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        al_gate_softmax_bwd_row(p + (size_t)i * b_n, dp + (size_t)i * b_n, b_n, hard, acc,
                                dz + (size_t)i * b_n);
}

extern "C" al_status al_bn_gate_softmax_forward_cuda(al_ctx *ctx, int n, int b, int hard,
                                                     const float *z, float *p) {
    softmax_fwd_kernel<<<(unsigned)AL_CEIL_DIV(n, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        n, b, hard, z, p);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_bn_gate_softmax_backward_cuda(al_ctx *ctx, int n, int b, int hard,
                                                      const float *p, const float *dp, float *dz,
                                                      int acc) {
    softmax_bwd_kernel<<<(unsigned)AL_CEIL_DIV(n, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        n, b, hard, acc, p, dp, dz);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

/* ---------------------------------------------------------------- routed gated BN */

static __device__ __forceinline__ double gbn_invstd(const al_gbn_branches &br, int q, int c) {
    return 1.0 / sqrt((double)br.rvar[q][c] + (double)br.eps);
}

/* Per (c, q), once per call as the twin's per-channel prologue: coef[3 (c B + q) + {0,1,2}] =
 * running mean, (float)(gamma invstd), beta; the elementwise pass then does no sqrt. */
static __global__ void gbn_coef_kernel(int c_n, al_gbn_branches br, float *__restrict__ coef) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= c_n * br.n_branches) return;
    const int c = t / br.n_branches, q = t % br.n_branches;
    coef[3 * t] = br.rmean[q][c];
    coef[3 * t + 1] = (float)(br.gamma[q][c] * gbn_invstd(br, q, c));
    coef[3 * t + 2] = br.beta[q][c];
}

static __global__ void gbn_fwd_kernel(size_t total, int c_n, int hw, int b_n,
                                      const float *__restrict__ coef, const float *__restrict__ x,
                                      const float *__restrict__ p, float *__restrict__ y) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total;
         e += (size_t)gridDim.x * blockDim.x) {
        const size_t r = e / (size_t)hw;
        const int i = (int)(r / (size_t)c_n), c = (int)(r % (size_t)c_n);
        const float *pr = p + (size_t)i * b_n, *cf = coef + 3 * (size_t)c * b_n;
        float acc = 0.0f;
        for (int q = 0; q < b_n; q++)
            if (pr[q] != 0.0f) acc += pr[q] * ((x[e] - cf[3 * q]) * cf[3 * q + 1] + cf[3 * q + 2]);
        y[e] = acc;
    }
}

/* Warp per (i, c): s01[2r] = S0, s01[2r + 1] = S1, and dx = (sum_q p_q gamma_q invstd_q) dy. */
static __global__ void gbn_bwd_rows_kernel(int nc, int c_n, int hw, int acc0, al_gbn_branches br,
                                           const float *__restrict__ x,
                                           const float *__restrict__ p,
                                           const float *__restrict__ dy, float *__restrict__ dx,
                                           double *__restrict__ s01) {
    const int lane = threadIdx.x & 31, r = blockIdx.x * WARPS + (threadIdx.x >> 5);
    if (r >= nc) return;
    const int i = r / c_n, c = r % c_n;
    const size_t off = (size_t)r * hw;
    double s0 = 0.0, s1 = 0.0;
    for (int k = lane; k < hw; k += 32) {
        s0 += dy[off + k];
        s1 += (double)x[off + k] * dy[off + k];
    }
    s0 = warp_sum_bcast(s0);
    s1 = warp_sum_bcast(s1);
    if (lane == 0) {
        s01[2 * (size_t)r] = s0;
        s01[2 * (size_t)r + 1] = s1;
    }
    if (!dx) return;
    const float *pr = p + (size_t)i * br.n_branches;
    double a = 0.0;
    for (int q = 0; q < br.n_branches; q++)
        a += (double)pr[q] * (double)br.gamma[q][c] * gbn_invstd(br, q, c);
    for (int k = lane; k < hw; k += 32) {
        const float g = (float)(a * dy[off + k]);
        dx[off + k] = acc0 ? dx[off + k] + g : g;
    }
}

/* Thread per (c, q): the twin's '+=' of (float)(p t) and (float)(p S0), i ascending. */
static __global__ void gbn_bwd_params_kernel(int n, int c_n, al_gbn_branches br,
                                             const float *__restrict__ p,
                                             const double *__restrict__ s01) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    if (t >= c_n * br.n_branches) return;
    const int c = t / br.n_branches, q = t % br.n_branches;
    const double inv = gbn_invstd(br, q, c), rm = br.rmean[q][c];
    float *dg = br.dgamma[q], *db = br.dbeta[q];
    for (int i = 0; i < n; i++) {
        const float pq = p[(size_t)i * br.n_branches + q];
        if (pq == 0.0f) continue;
        const double s0 = s01[2 * ((size_t)i * c_n + c)], s1 = s01[2 * ((size_t)i * c_n + c) + 1];
        if (dg) dg[c] += (float)(pq * (inv * (s1 - rm * s0)));
        if (db) db[c] += (float)(pq * s0);
    }
}

/* Thread per (i, q): dp[i, q] = sum_c gamma_q invstd_q (S1 - rm_q S0) + beta_q S0, c ascending. */
static __global__ void gbn_bwd_gate_kernel(int n, int c_n, int acc1, al_gbn_branches br,
                                           const double *__restrict__ s01,
                                           float *__restrict__ dp) {
    const int t = blockIdx.x * blockDim.x + threadIdx.x;
    const int b_n = br.n_branches;
    if (t >= n * b_n) return;
    const int i = t / b_n, q = t % b_n;
    double gp = 0.0;
    for (int c = 0; c < c_n; c++) {
        const double s0 = s01[2 * ((size_t)i * c_n + c)], s1 = s01[2 * ((size_t)i * c_n + c) + 1];
        const double g = br.gamma[q][c], be = br.beta[q][c], rm = br.rmean[q][c];
        gp += g * (gbn_invstd(br, q, c) * (s1 - rm * s0)) + be * s0;
    }
    dp[t] = acc1 ? dp[t] + (float)gp : (float)gp;
}

extern "C" al_status al_gated_bn_forward_cuda(al_ctx *ctx, int n, int c, int hw,
                                              const al_gbn_branches *br, const float *x,
                                              const float *p, float *y) {
    const size_t total = (size_t)n * c * hw;
    const int cb = c * br->n_branches;
    void *tmp;
    size_t mark;
    AL_TRY(al_cuda_tmp(ctx, 3 * (size_t)cb * sizeof(float), &tmp, &mark));
    float *coef = (float *)tmp;
    al_status st = AL_OK;
    cudaStream_t s = al_stream_of(ctx);
    gbn_coef_kernel<<<(unsigned)AL_CEIL_DIV(cb, AL_BLOCK), AL_BLOCK, 0, s>>>(c, *br, coef);
    AL_CUDA_CHECK(cudaGetLastError());
    gbn_fwd_kernel<<<al_grid(ctx, total, AL_BLOCK), AL_BLOCK, 0, s>>>(total, c, hw, br->n_branches,
                                                                       coef, x, p, y);
    AL_CUDA_CHECK(cudaGetLastError());
done:
    al_ctx_scratch_release(ctx, mark);
    return st;
}

extern "C" al_status al_gated_bn_backward_cuda(al_ctx *ctx, int n, int c, int hw,
                                               const al_gbn_branches *br, const float *x,
                                               const float *p, const float *dy, float *dx,
                                               int acc0, float *dp, int acc1) {
    void *tmp;
    size_t mark;
    AL_TRY(al_cuda_tmp(ctx, 2 * (size_t)n * c * sizeof(double), &tmp, &mark));
    double *s01 = (double *)tmp;
    al_status st = AL_OK;
    cudaStream_t s = al_stream_of(ctx);
    const int nc = n * c;
    gbn_bwd_rows_kernel<<<(unsigned)AL_CEIL_DIV(nc, WARPS), WARPS * 32, 0, s>>>(
        nc, c, hw, acc0, *br, x, p, dy, dx, s01);
    AL_CUDA_CHECK(cudaGetLastError());
    {
        const int t = c * br->n_branches; /* branches without wanted gradients skip inside */
        gbn_bwd_params_kernel<<<(unsigned)AL_CEIL_DIV(t, AL_BLOCK), AL_BLOCK, 0, s>>>(n, c, *br,
                                                                                    p, s01);
        AL_CUDA_CHECK(cudaGetLastError());
    }
    if (dp) {
        const int t = n * br->n_branches;
        gbn_bwd_gate_kernel<<<(unsigned)AL_CEIL_DIV(t, AL_BLOCK), AL_BLOCK, 0, s>>>(n, c, acc1,
                                                                                  *br, s01, dp);
        AL_CUDA_CHECK(cudaGetLastError());
    }
done:
    al_ctx_scratch_release(ctx, mark);
    return st;
}
