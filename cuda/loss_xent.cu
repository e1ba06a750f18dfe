/* loss_xent.cu: softmax cross-entropy and argmax accuracy. Twin: losses/xent.c (+ rowops.h).
 * logits (N, K) row-major, labels (N) int32, on the device; loss / n_correct are host scalars
 * (each optional: NULL = no host result, no sync; see lr_finish).
 * Write modes as the twin: per_sample =, dlogits =, correct = (each optional).
 * Per row, exactly the twin's math in double (one warp per row, loss_rows.cuh):
 *   lse = lr_row_lse(z) (the twin's row_lse);  CE = lse - z_y;
 *   dz_j = (float)(weight/N * (exp(z_j - lse) - [j == y]))
 * so CUDA and CPU differ only by the order of the double sums (far below float rounding).
 * Accuracy: argmax by lr_row_argmax_excl(z, K, -1) (the twin's row_argmax_excl order), the
 * flag also written as a double so the final kernel's sum is the exact count. The batch sums
 * and the first bad label come from the shared final kernel (fixed tree: deterministic). */
#include "cuda/loss_rows.cuh"
#include "losses/loss.h"

static __global__ void xent_rows_kernel(int n, int k, const float *__restrict__ logits,
                                        const int32_t *__restrict__ labels, double scale,
                                        double *__restrict__ ce_row, float *__restrict__ per_sample,
                                        float *__restrict__ dlogits) {
    const int lane = threadIdx.x & 31, i = lr_row_index();
    if (i >= n) return; /* whole warps exit together: the shuffles below stay full-warp */
    const int y = lr_row_label(labels, i, k, lane, ce_row, NULL);
    if (y < 0) return; /* never read z[y] */
    const float *z = logits + (size_t)i * k;
    const double lse = lr_row_lse(z, k, lane);
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

static __global__ void correct_rows_kernel(int n, int k, const float *__restrict__ logits,
                                           const int32_t *__restrict__ labels,
                                           double *__restrict__ ok_row,
                                           uint8_t *__restrict__ flags) {
    const int lane = threadIdx.x & 31, i = lr_row_index();
    if (i >= n) return;
    const int y = lr_row_label(labels, i, k, lane, ok_row, NULL);
    if (y < 0) return;
    const int am = lr_row_argmax_excl(logits + (size_t)i * k, k, -1, lane);
    if (lane == 0) {
        ok_row[i] = am == y ? 1.0 : 0.0;
        if (flags) flags[i] = (uint8_t)(am == y);
    }
}

extern "C" al_status al_xent_cuda(al_ctx *ctx, int n, int k, const float *logits,
                                  const int32_t *labels, float weight, double *loss,
                                  float *per_sample, float *dlogits) {
    AL_ASSERT(n >= 1 && k >= 1 && logits && labels, "al_xent_cuda n=%d k=%d", n, k);
    lr_tmp t;
    AL_TRY(lr_tmp_get(ctx, n, &t));
    lr_result r = {};
    const double scale = (double)weight / n; /* d(weight * mean)/dCE_i, as the twin */
    xent_rows_kernel<<<lr_grid(n), LR_ROWS_PER_BLOCK * 32, 0, al_stream_of(ctx)>>>(
        n, k, logits, labels, scale, t.a, per_sample, dlogits);
    const al_status st =
        lr_finish(ctx, "al_xent", n, k, &t, 1, labels, "label", NULL, NULL, loss ? &r : NULL,
                  AL_SUM_LOSS, (double)weight / n, 0.0);
    if (st == AL_OK && loss) *loss = (double)weight * r.sum[0] / n;
    al_ctx_scratch_release(ctx, t.mark);
    return st;
}

extern "C" al_status al_count_correct_cuda(al_ctx *ctx, int n, int k, const float *logits,
                                           const int32_t *labels, int *n_correct,
                                           uint8_t *correct) {
    AL_ASSERT(n >= 1 && k >= 1 && logits && labels, "al_count_correct_cuda n=%d k=%d", n, k);
    lr_tmp t;
    AL_TRY(lr_tmp_get(ctx, n, &t));
    lr_result r = {};
    correct_rows_kernel<<<lr_grid(n), LR_ROWS_PER_BLOCK * 32, 0, al_stream_of(ctx)>>>(
        n, k, logits, labels, t.a, correct);
    const al_status st = lr_finish(ctx, "al_count_correct", n, k, &t, 1, labels, "label", NULL,
                                   NULL, n_correct ? &r : NULL, AL_SUM_CORRECT, 1.0, 0.0);
    if (st == AL_OK && n_correct) *n_correct = (int)r.sum[0]; /* exact: a sum of n <= 2^31 ones */
    al_ctx_scratch_release(ctx, t.mark);
    return st;
}
