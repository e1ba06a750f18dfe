/* dlr.c: Difference-of-Logits-Ratio loss (untargeted and targeted), CPU reference + dispatcher.
 * Twin: cuda/loss_dlr.cu; both evaluate each row with al_dlr_row (losses/dlr_row.h).
 * Shapes: logits (N, K) row-major, labels / targets (N). Write mode: per_sample =, dlogits =.
 * Definitions in losses/loss.h. */
#include "losses/dlr_row.h"
#include "core/sums.h"
#include "losses/loss.h"
#include "losses/rowops.h"

al_status al_dlr_loss_cpu(al_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                          const int32_t *targets, float weight, double *loss, float *per_sample,
                          float *dlogits) {
    (void)ctx;
    int bad = first_bad_label(labels, n, k);
    if (bad >= 0)
        return AL_FAIL(AL_ERR_VALUE, "al_dlr_loss: label %d at index %d outside [0,%d)",
                       (int)labels[bad], bad, k);
    if (targets) {
        bad = first_bad_label(targets, n, k);
        if (bad >= 0)
            return AL_FAIL(AL_ERR_VALUE, "al_dlr_loss: target %d at index %d outside [0,%d)",
                           (int)targets[bad], bad, k);
    }
    const double scale = (double)weight / n; /* d(weight * mean) / dL_i */
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const double l = al_dlr_row(logits + (size_t)i * k, k, labels[i], targets ? targets[i] : -1,
                                    scale, dlogits ? dlogits + (size_t)i * k : NULL);
        sum += l;
        if (per_sample) per_sample[i] = (float)l;
    }
    if (loss) *loss = (double)weight * sum / n;
    return AL_OK;
}

al_status al_dlr_loss(al_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                      const int32_t *targets, float weight, double *loss, float *per_sample,
                      float *dlogits) {
    const int k_min = targets ? 4 : 3;
    if (n < 1 || k < k_min)
        return AL_FAIL(AL_ERR_VALUE,
                       "al_dlr_loss: n=%d k=%d (the %s DLR loss needs n >= 1 and k >= %d classes)",
                       n, k, targets ? "targeted" : "untargeted", k_min);
    al_note_host_read(ctx, loss);
    switch (ctx->device) {
    case AL_DEV_CPU:
        return al_defer_cpu(
            ctx,
            al_dlr_loss_cpu(ctx, n, k, logits, labels, targets, weight, loss, per_sample, dlogits),
            AL_SUM_LOSS, loss);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_dlr_loss_cuda(ctx, n, k, logits, labels, targets, weight, loss,
                                         per_sample, dlogits));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_dlr_loss: unknown device %d", (int)ctx->device);
}
