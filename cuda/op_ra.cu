/* op_ra.cu: ANCRA reverse attention on the device. Twin: core/ops/ra.c (see core/ops/ra.h).
 * Shapes (N, C, HW) for z/y/dy/dz, W (K, C), p/dp (N, K), labels/sel (N) int32.
 * Write modes as the twin: y =, sel =, dz = / += (acc_z), dW +=, dp = / += (acc_p).
 * Kernels:
 *   select  one warp per example: sel = label (or -1 when outside [0, K): the twin's
 *           AL_ERR_VALUE becomes NaN rows here, no host round trip) or argmax p (the twin's
 *           torch.argmax order via lr_row_argmax_excl: first NaN, else max, lowest index)
 *   scale   grid-stride over N*C*HW: y = z * W[sel, c]; also dz = dy * W[sel, c]
 *   dw      one thread per (class, channel), examples in order, double sums: deterministic
 *           (no atomics, style rule 20), the twin's loop order exactly
 *   dp      one block per example (straight-through only): G[c] = sum_q z dy in shared
 *           memory (double), s = softmax(p), g_j = W[j,:] . G, dp_j = s_j (g_j - sum s g)
 * No allocation, no sync. */
#include <math.h>

#include "core/ops/ra.h"
#include "cuda/loss_rows.cuh"

#define RA_DP_BLOCK 256

static __global__ void ra_select_kernel(int n, int k, const float *__restrict__ p,
                                        const int32_t *__restrict__ labels,
                                        int32_t *__restrict__ sel) {
    const int lane = threadIdx.x & 31;
    const int i = blockIdx.x * LR_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (i >= n) return; /* whole warps exit together */
    int kk;
    if (labels) {
        kk = labels[i];
        if (kk < 0 || kk >= k) kk = -1;
    } else {
        kk = lr_row_argmax_excl(p + (size_t)i * k, k, -1, lane);
    }
    if (lane == 0) sel[i] = kk;
}

/* out = in * W[sel, c] (acc: out += ...); sel < 0 gives NaN (a bad label). */
static __global__ void ra_scale_kernel(int n, int c, int hw, const float *__restrict__ in,
                                       const float *__restrict__ w,
                                       const int32_t *__restrict__ sel, float *out, int acc) {
    const size_t ne = (size_t)n * c * hw, chw = (size_t)c * hw;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < ne;
         e += (size_t)gridDim.x * blockDim.x) {
        const int i = (int)(e / chw), ch = (int)((e - (size_t)i * chw) / hw);
        const int kk = sel[i];
        const float g = kk >= 0 ? in[e] * w[(size_t)kk * c + ch] : NAN;
        out[e] = acc ? out[e] + g : g;
    }
}

static __global__ void ra_dw_kernel(int n, int c, int hw, int k, const float *__restrict__ z,
                                    const float *__restrict__ dy,
                                    const int32_t *__restrict__ sel, float *__restrict__ dw) {
    const int kc = k * c;
    for (int jc = blockIdx.x * blockDim.x + threadIdx.x; jc < kc; jc += gridDim.x * blockDim.x) {
        const int j = jc / c, ch = jc - j * c;
        double s = 0.0;
        for (int i = 0; i < n; i++) {
            if (sel[i] != j) continue;
            const size_t off = ((size_t)i * c + ch) * hw;
            for (int q = 0; q < hw; q++) s += (double)z[off + q] * dy[off + q];
        }
        if (s != 0.0) dw[jc] += (float)s;
    }
}

static __global__ void ra_dp_kernel(int c, int hw, int k, const float *__restrict__ z,
                                    const float *__restrict__ w, const float *__restrict__ p,
                                    const float *__restrict__ dy, float *__restrict__ dp,
                                    int acc_p) {
    extern __shared__ double gc[]; /* (C) */
    const int i = blockIdx.x;
    for (int ch = threadIdx.x; ch < c; ch += blockDim.x) {
        const size_t off = ((size_t)i * c + ch) * hw;
        double s = 0.0;
        for (int q = 0; q < hw; q++) s += (double)z[off + q] * dy[off + q];
        gc[ch] = s;
    }
    __syncthreads();
    const float *pr = p + (size_t)i * k;
    float *dr = dp + (size_t)i * k;
    /* the twin's softmax: max of the row (a NaN row gives NaN everywhere, as there) */
    double mx = -INFINITY;
    for (int j = threadIdx.x; j < k; j += blockDim.x) mx = fmax(mx, (double)pr[j]);
    mx = al_block_max(mx);
    if (isnan((double)pr[0])) mx = (double)pr[0];
    double se = 0.0;
    for (int j = threadIdx.x; j < k; j += blockDim.x) se += exp((double)pr[j] - mx);
    se = al_block_sum(se);
    double sb = 0.0;
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
        double g = 0.0;
        for (int ch = 0; ch < c; ch++) g += (double)w[(size_t)j * c + ch] * gc[ch];
        sb += exp((double)pr[j] - mx) / se * g;
    }
    sb = al_block_sum(sb);
    for (int j = threadIdx.x; j < k; j += blockDim.x) {
        double g = 0.0;
        for (int ch = 0; ch < c; ch++) g += (double)w[(size_t)j * c + ch] * gc[ch];
        const float v = (float)(exp((double)pr[j] - mx) / se * (g - sb));
        dr[j] = acc_p ? dr[j] + v : v;
    }
}

extern "C" al_status al_ra_forward_cuda(al_ctx *ctx, int n, int c, int hw, int k, const float *z,
                                        const float *w, const float *p, const int32_t *labels,
                                        float *y, int32_t *sel) {
    cudaStream_t s = al_stream_of(ctx);
    ra_select_kernel<<<lr_grid(n), LR_ROWS_PER_BLOCK * 32, 0, s>>>(n, k, p, labels, sel);
    AL_LAUNCH_CHECK(ctx);
    const size_t ne = (size_t)n * c * hw;
    ra_scale_kernel<<<al_grid(ctx, ne, AL_BLOCK), AL_BLOCK, 0, s>>>(n, c, hw, z, w, sel, y, 0);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_ra_backward_cuda(al_ctx *ctx, int n, int c, int hw, int k,
                                         const float *z, const float *w, const float *p,
                                         const int32_t *sel, const float *dy, float *dz,
                                         int acc_z, float *dw, float *dp, int acc_p,
                                         int straight_through) {
    cudaStream_t s = al_stream_of(ctx);
    if (dz) {
        const size_t ne = (size_t)n * c * hw;
        ra_scale_kernel<<<al_grid(ctx, ne, AL_BLOCK), AL_BLOCK, 0, s>>>(n, c, hw, dy, w, sel, dz,
                                                                       acc_z);
        AL_LAUNCH_CHECK(ctx);
    }
    if (dw) {
        ra_dw_kernel<<<al_grid(ctx, (size_t)k * c, AL_BLOCK), AL_BLOCK, 0, s>>>(n, c, hw, k, z, dy,
                                                                              sel, dw);
        AL_LAUNCH_CHECK(ctx);
    }
    if (dp) {
        if (!straight_through) {
            if (!acc_p) AL_CUDA_TRY(cudaMemsetAsync(dp, 0, (size_t)n * k * sizeof(float), s));
            return AL_OK;
        }
        ra_dp_kernel<<<n, RA_DP_BLOCK, (size_t)c * sizeof(double), s>>>(c, hw, k, z, w, p, dy, dp,
                                                                      acc_p);
        AL_LAUNCH_CHECK(ctx);
    }
    return AL_OK;
}
