/* loss_drsl.cu: the DRSL penalty (methods.md §4). Twin: losses/drsl.c (al_drsl_penalty_cpu).
 * logits (N, K) row-major and labels (N) on the device; pen is a host scalar; dlogits (N, K)
 * is ACCUMULATED ('+='), as the twin, and may be NULL.
 * One warp per row (loss_rows.cuh): s = sum_{j != y} z_j, m = s / c_m (c_m = K-1 drslx, K
 * drsl), d = sum_{j != y} (z_j - m), q = sum_{j != y} (z_j - m)^2, all in double from the float
 * logits as the twin; dz_j += (float)(2 w ((z_j - m) - d / c_m)) for j != y. The twin's
 * sequential double sums and these warp sums differ only in order (relative ~K 2^-53), so
 * dlogits agree to within one float rounding and pen to ~N K 2^-53 relative. The batch sum of
 * q is the fixed-tree final kernel (deterministic); one D2H copy + sync for the host scalar. */
#include "cuda/loss_rows.cuh"
#include "losses/loss.h"

static __global__ void drsl_rows_kernel(int n, int k, const float *__restrict__ logits,
                                        const int32_t *__restrict__ labels, double c_m, float w,
                                        double *__restrict__ q_row, float *__restrict__ dlogits) {
    const int lane = threadIdx.x & 31, i = lr_row_index();
    if (i >= n) return; /* whole warps exit together */
    const int y = lr_row_label(labels, i, k, lane, q_row, NULL);
    if (y < 0) return;
    const size_t off = (size_t)i * k;
    const float *z = logits + off;
    double s = 0.0;
    for (int j = lane; j < k; j += 32)
        if (j != y) s += (double)z[j];
    const double m = lr_warp_sum(s) / c_m;
    double d = 0.0, q = 0.0;
    for (int j = lane; j < k; j += 32)
        if (j != y) {
            const double dv = (double)z[j] - m;
            d += dv;
            q += dv * dv;
        }
    d = lr_warp_sum(d);
    q = lr_warp_sum(q);
    if (lane == 0) q_row[i] = q;
    if (dlogits) {
        float *dz = dlogits + off;
        const double dm = d / c_m;
        for (int j = lane; j < k; j += 32)
            if (j != y) dz[j] += (float)(2.0 * (double)w * (((double)z[j] - m) - dm));
    }
}

extern "C" al_status al_drsl_penalty_cuda(al_ctx *ctx, int n, int k, const float *logits,
                                          const int32_t *labels, float weight, int variant,
                                          double *pen, float *dlogits) {
    AL_ASSERT(n >= 1 && k >= 2 && logits && labels && pen, "al_drsl_penalty_cuda n=%d k=%d", n, k);
    const double c_m = variant == 0 ? (double)(k - 1) : (double)k;
    lr_tmp t;
    AL_TRY(lr_tmp_get(ctx, n, &t));
    lr_result r = {};
    drsl_rows_kernel<<<lr_grid(n), LR_ROWS_PER_BLOCK * 32, 0, al_stream_of(ctx)>>>(
        n, k, logits, labels, c_m, weight, t.a, dlogits);
    const al_status st = lr_finish(ctx, "drsl", n, k, &t, 1, labels, "label", NULL, NULL, &r,
                                   AL_SUM_LOSS, (double)weight, 0.0);
    if (st == AL_OK) *pen = (double)weight * r.sum[0];
    al_ctx_scratch_release(ctx, t.mark);
    return st;
}
