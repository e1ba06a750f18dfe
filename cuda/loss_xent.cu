/* loss_xent.cu: softmax cross-entropy and argmax accuracy. Twin: losses/xent.c (+ rowops.h).
 * logits (N, K) row-major, labels (N) int32, on the device; loss / n_correct are host scalars.
 * Write modes as the twin: per_sample =, dlogits =, correct = (each optional).
 * Per row, exactly the twin's math in double (one warp per row, 8 rows per block):
 *   m = max_j z_j (NaNs skipped unless z_0 is NaN, as the twin's `z[j] > m` scan);
 *   lse = m if m is +-inf, else m + log(sum_j exp(z_j - m));  CE = lse - z_y;
 *   dz_j = (float)(weight/N * (exp(z_j - lse) - [j == y]))
 * so CUDA and CPU differ only by the order of the double sums (far below float rounding).
 * The batch mean is a second single-block kernel over the per-row CE (double, fixed tree:
 * deterministic), which also finds the first label outside [0, K); the two host scalars come
 * back in one D2H copy + stream sync (the loss value is a host output by contract). A bad
 * label returns AL_ERR_VALUE naming it, like the twin; device outputs are then unspecified. */
#include <math.h>

#include "cuda/cuda_base.cuh"
#include "losses/loss.h"

#define ROWS_PER_BLOCK 8
#define FINAL_BLOCK 1024

/* Host-visible result of the final kernel. */
struct xent_result {
    double sum;     /* sum of CE_i (xent) */
    int count;      /* number of correct rows (accuracy) */
    int bad_index;  /* first row with a label outside [0, K), or -1 */
    int bad_label;
};

/* Max of a warp's values, broadcast to every lane (order-free: max is exact). */
static __device__ __forceinline__ float warp_fmax(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}
static __device__ __forceinline__ double warp_sum_all(double v) {
    v = al_warp_sum(v);
    return __shfl_sync(0xffffffffu, v, 0);
}

static __global__ void xent_rows_kernel(int n, int k, const float *__restrict__ logits,
                                        const int32_t *__restrict__ labels, double scale,
                                        double *__restrict__ ce_row, float *__restrict__ per_sample,
                                        float *__restrict__ dlogits) {
    const int lane = threadIdx.x & 31;
    const int i = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (i >= n) return; /* whole warps exit together: the shuffles below stay full-warp */
    const float *z = logits + (size_t)i * k;
    const int y = labels[i];
    if (y < 0 || y >= k) { /* reported by the final kernel; never read z[y] */
        if (lane == 0) ce_row[i] = NAN;
        return;
    }
    /* fmaxf skips NaN; the twin's scan keeps a NaN only when it starts there (z_0) */
    float mx = -INFINITY;
    for (int j = lane; j < k; j += 32) mx = fmaxf(mx, z[j]);
    mx = warp_fmax(mx);
    const float z0 = z[0];
    const double m = isnan(z0) ? (double)z0 : (double)mx;
    double lse;
    if (isinf(m)) {
        lse = m;
    } else {
        double s = 0.0;
        for (int j = lane; j < k; j += 32) s += exp((double)z[j] - m);
        lse = m + log(warp_sum_all(s));
    }
    const double ce = lse - (double)z[y];
    if (lane == 0) {
        ce_row[i] = ce;
        if (per_sample) per_sample[i] = (float)ce;
    }
    if (dlogits) {
        float *dz = dlogits + (size_t)i * k;
        for (int j = lane; j < k; j += 32)
            dz[j] = (float)(scale * (exp((double)z[j] - lse) - (j == y ? 1.0 : 0.0)));
    }
}

/* Sum of ce_row (or of the correct flags) and the first bad label, in one block. */
static __global__ void final_kernel(int n, int k, const int32_t *__restrict__ labels,
                                    const double *__restrict__ ce_row,
                                    const uint8_t *__restrict__ flags,
                                    xent_result *__restrict__ out) {
    __shared__ int sh_bad[32];
    double s = 0.0;
    int cnt = 0, bad = n; /* n = none */
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        if (ce_row) s += ce_row[i];
        if (flags) cnt += flags[i];
        const int y = labels[i];
        if ((y < 0 || y >= k) && i < bad) bad = i;
    }
    s = al_block_sum(s);
    cnt = al_block_sum(cnt);
    /* block min of `bad` (integers: order-free) */
    for (int o = 16; o > 0; o >>= 1) bad = min(bad, __shfl_xor_sync(0xffffffffu, bad, o));
    if ((threadIdx.x & 31) == 0) sh_bad[threadIdx.x >> 5] = bad;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x >> 5); w++) bad = min(bad, sh_bad[w]);
        out->sum = s;
        out->count = cnt;
        out->bad_index = bad < n ? bad : -1;
        out->bad_label = bad < n ? labels[bad] : 0;
    }
}

/* Row argmax, the twin's row_argmax_excl(z, k, -1): the first NaN if any, else the lowest
 * index of the maximum. (v, j) pairs combine associatively under that order. */
static __device__ __forceinline__ bool arg_better(float v, int j, float bv, int bj) {
    const bool vn = isnan(v), bn = isnan(bv);
    if (vn || bn) return vn && (!bn || j < bj);
    return v > bv || (v == bv && j < bj);
}

static __global__ void argmax_rows_kernel(int n, int k, const float *__restrict__ logits,
                                          const int32_t *__restrict__ labels,
                                          uint8_t *__restrict__ flags) {
    const int lane = threadIdx.x & 31;
    const int i = blockIdx.x * ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (i >= n) return;
    const float *z = logits + (size_t)i * k;
    float bv = z[0];
    int bj = 0;
    for (int j = lane; j < k; j += 32)
        if (arg_better(z[j], j, bv, bj)) {
            bv = z[j];
            bj = j;
        }
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int oj = __shfl_xor_sync(0xffffffffu, bj, o);
        if (arg_better(ov, oj, bv, bj)) {
            bv = ov;
            bj = oj;
        }
    }
    if (lane == 0) flags[i] = (uint8_t)(bj == labels[i]);
}

/* Run the final kernel and bring its result to the host (pinned aux, one sync). */
static al_status finish(al_ctx *ctx, int n, int k, const int32_t *labels, const double *ce_row,
                        const uint8_t *flags, xent_result *d_out, xent_result *h_out) {
    al_cuda_state *s = al_cst(ctx);
    final_kernel<<<1, FINAL_BLOCK, 0, s->stream>>>(n, k, labels, ce_row, flags, d_out);
    AL_LAUNCH_CHECK(ctx);
    xent_result *h = (xent_result *)s->h_aux;
    AL_CUDA_TRY(cudaMemcpyAsync(h, d_out, sizeof *h, cudaMemcpyDeviceToHost, s->stream));
    AL_CUDA_TRY(cudaStreamSynchronize(s->stream));
    *h_out = *h;
    return AL_OK;
}

extern "C" al_status al_xent_cuda(al_ctx *ctx, int n, int k, const float *logits,
                                  const int32_t *labels, float weight, double *loss,
                                  float *per_sample, float *dlogits) {
    AL_ASSERT(n >= 1 && k >= 1 && logits && labels && loss, "al_xent_cuda n=%d k=%d", n, k);
    void *tmp;
    size_t mark;
    /* [result (64 B)][ce_row: n doubles] in one temporary */
    AL_TRY(al_cuda_tmp(ctx, 64 + (size_t)n * sizeof(double), &tmp, &mark));
    xent_result *d_out = (xent_result *)tmp;
    double *ce_row = (double *)((char *)tmp + 64);
    const double scale = (double)weight / n; /* d(weight * mean)/dCE_i, as the twin */
    al_status st = AL_OK;
    xent_result r;
    const unsigned grid = (unsigned)AL_CEIL_DIV(n, ROWS_PER_BLOCK);
    xent_rows_kernel<<<grid, ROWS_PER_BLOCK * 32, 0, al_stream_of(ctx)>>>(
        n, k, logits, labels, scale, ce_row, per_sample, dlogits);
    AL_CUDA_CHECK(cudaGetLastError());
    AL_CHECK(finish(ctx, n, k, labels, ce_row, NULL, d_out, &r));
    if (r.bad_index >= 0) {
        st = AL_FAIL(AL_ERR_VALUE, "al_xent: label %d at index %d outside [0,%d)", r.bad_label,
                     r.bad_index, k);
        goto done;
    }
    *loss = (double)weight * r.sum / n;
done:
    al_ctx_scratch_release(ctx, mark);
    return st;
}

extern "C" al_status al_count_correct_cuda(al_ctx *ctx, int n, int k, const float *logits,
                                           const int32_t *labels, int *n_correct,
                                           uint8_t *correct) {
    AL_ASSERT(n >= 1 && k >= 1 && logits && labels && n_correct, "al_count_correct_cuda n=%d k=%d",
              n, k);
    void *tmp;
    size_t mark;
    /* [result (64 B)][flags: n bytes, used when `correct` is NULL] */
    AL_TRY(al_cuda_tmp(ctx, 64 + (size_t)n, &tmp, &mark));
    xent_result *d_out = (xent_result *)tmp;
    uint8_t *flags = correct ? correct : (uint8_t *)tmp + 64;
    al_status st = AL_OK;
    xent_result r;
    const unsigned grid = (unsigned)AL_CEIL_DIV(n, ROWS_PER_BLOCK);
    argmax_rows_kernel<<<grid, ROWS_PER_BLOCK * 32, 0, al_stream_of(ctx)>>>(n, k, logits, labels,
                                                                           flags);
    AL_CUDA_CHECK(cudaGetLastError());
    AL_CHECK(finish(ctx, n, k, labels, NULL, flags, d_out, &r));
    if (r.bad_index >= 0) {
        st = AL_FAIL(AL_ERR_VALUE, "al_count_correct: label %d at index %d outside [0,%d)",
                     r.bad_label, r.bad_index, k);
        goto done;
    }
    *n_correct = r.count;
done:
    al_ctx_scratch_release(ctx, mark);
    return st;
}
