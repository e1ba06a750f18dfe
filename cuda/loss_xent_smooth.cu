/* loss_xent_smooth.cu: label-smoothed softmax cross-entropy (NoFrost). Twin:
 * al_xent_smooth_cpu in losses/xent_smooth.c; definitions there. One warp per row
 * (loss_rows.cuh): lse by lr_row_lse (the twin's row_lse), sum_j z_j by a warp sum, the row
 * loss in double, dz_j = (float)(scale (exp(z_j - lse) - t_j)) ('=' write). The two sides
 * differ by the order of double sums and libm vs CUDA exp/log (~K 2^-53 relative): dlogits to
 * one float rounding, the loss to ~N K 2^-53. Batch sum: the fixed-tree final kernel. */
#include "cuda/loss_rows.cuh"
#include "losses/loss.h"

static __global__ void xent_smooth_rows_kernel(int n, int k, const float *__restrict__ logits,
                                               const int32_t *__restrict__ labels, double s,
                                               double scale, double *__restrict__ l_row,
                                               float *__restrict__ dlogits) {
    const int lane = threadIdx.x & 31, i = lr_row_index();
    if (i >= n) return; /* whole warps exit together */
    const int y = lr_row_label(labels, i, k, lane, l_row, NULL);
    if (y < 0) return;
    const size_t off = (size_t)i * k;
    const float *z = logits + off;
    const double lse = lr_row_lse(z, k, lane);
    double sz = 0.0;
    for (int j = lane; j < k; j += 32) sz += (double)z[j];
    sz = lr_warp_sum(sz);
    const double conf = 1.0 - s;
    if (lane == 0) l_row[i] = conf * (lse - (double)z[y]) + s * (lse - sz / k);
    if (dlogits) {
        float *g = dlogits + off;
        for (int j = lane; j < k; j += 32)
            g[j] = (float)(scale * (exp((double)z[j] - lse) - ((j == y ? conf : 0.0) + s / k)));
    }
}

extern "C" al_status al_xent_smooth_cuda(al_ctx *ctx, int n, int k, const float *logits,
                                         const int32_t *labels, double smoothing, double weight,
                                         double *loss, float *dlogits) {
    AL_ASSERT(n >= 1 && k >= 2 && logits && labels && loss, "al_xent_smooth_cuda n=%d k=%d", n, k);
    lr_tmp t;
    AL_TRY(lr_tmp_get(ctx, n, &t));
    lr_result r = {};
    xent_smooth_rows_kernel<<<lr_grid(n), LR_ROWS_PER_BLOCK * 32, 0, al_stream_of(ctx)>>>(
        n, k, logits, labels, smoothing, weight / n, t.a, dlogits);
    const al_status st =
        lr_finish(ctx, "al_xent_smooth", n, k, &t, 1, labels, "label", NULL, NULL, &r,
                  AL_SUM_LOSS, weight / n, 0.0);
    if (st == AL_OK) *loss = weight * r.sum[0] / n;
    al_ctx_scratch_release(ctx, t.mark);
    return st;
}
