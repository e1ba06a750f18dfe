/* loss_dlr.cu: the DLR loss (untargeted and targeted; APGD-DLR / APGD-T). Twin:
 * al_dlr_loss_cpu in losses/dlr.c. Both evaluate each row with al_dlr_row (losses/dlr_row.h,
 * AL_HOSTDEV; --fmad=false here), so per_sample and dlogits are bitwise the twin's; the batch
 * mean is the fixed-tree double sum of loss_rows.cuh (deterministic), equal to the twin's
 * sequential sum up to order. One thread per row (the row work is a top-4 scan of K logits
 * and at most five writes besides the zeroing: latency-bound and tiny next to the backward).
 * Labels (then targets) outside [0, K) are reported as the twin reports them, both found by
 * the one final kernel (one sync a call). */
#include "cuda/loss_rows.cuh"
#include "losses/dlr_row.h"
#include "losses/loss.h"

static __global__ void dlr_rows_kernel(int n, int k, const float *__restrict__ logits,
                                       const int32_t *__restrict__ labels,
                                       const int32_t *__restrict__ targets, double scale,
                                       double *__restrict__ l_row, float *__restrict__ per_sample,
                                       float *__restrict__ dlogits) {
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const int y = labels[i], t = targets ? targets[i] : -1;
    if (y < 0 || y >= k || (targets && (t < 0 || t >= k))) { /* reported by the final kernels */
        l_row[i] = NAN;
        return;
    }
    const size_t off = (size_t)i * k;
    const double l = al_dlr_row(logits + off, k, y, t, scale, dlogits ? dlogits + off : NULL);
    l_row[i] = l;
    if (per_sample) per_sample[i] = (float)l;
}

extern "C" al_status al_dlr_loss_cuda(al_ctx *ctx, int n, int k, const float *logits,
                                      const int32_t *labels, const int32_t *targets, float weight,
                                      double *loss, float *per_sample, float *dlogits) {
    AL_ASSERT(n >= 1 && k >= 3 && logits && labels, "al_dlr_loss_cuda n=%d k=%d", n, k);
    lr_tmp t;
    AL_TRY(lr_tmp_get(ctx, n, &t));
    lr_result r = {};
    const double scale = (double)weight / n; /* d(weight * mean) / dL_i, as the twin */
    dlr_rows_kernel<<<(unsigned)AL_CEIL_DIV(n, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        n, k, logits, labels, targets, scale, t.a, per_sample, dlogits);
    const al_status st =
        lr_finish(ctx, "al_dlr_loss", n, k, &t, 1, labels, "label", targets, "target",
                  loss ? &r : NULL, AL_SUM_LOSS, (double)weight / n, 0.0);
    if (st == AL_OK && loss) *loss = (double)weight * r.sum[0] / n;
    al_ctx_scratch_release(ctx, t.mark);
    return st;
}
