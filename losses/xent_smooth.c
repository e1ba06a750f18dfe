/* xent_smooth.c: label-smoothed softmax cross-entropy (timm LabelSmoothingCrossEntropy, used by
 * NoFrost; methods.md §5.3), CPU reference + dispatcher. CUDA twin: cuda/loss_xent_smooth.cu.
 * Per row, s = smoothing, K classes:
 *   L_i = (1 - s) (lse_i - z_iy) + s (lse_i - mean_j z_ij)
 *   dL_i/dz_ij = p_ij - (1 - s) [j = y_i] - s / K
 * loss = weight * mean_i L_i; dlogits = d loss / dz ('=' write), may be NULL. Values in
 * double from the float logits (row_lse of rowops.h, the same reference the CUDA lse twins). */
#include <math.h>

#include "losses/loss.h"
#include "core/sums.h"
#include "losses/rowops.h"

al_status al_xent_smooth_cpu(al_ctx *ctx, int n, int k, const float *logits,
                             const int32_t *labels, double smoothing, double weight, double *loss,
                             float *dlogits) {
    (void)ctx;
    const int bad = first_bad_label(labels, n, k);
    if (bad >= 0)
        return AL_FAIL(AL_ERR_VALUE, "al_xent_smooth: label %d at index %d outside [0,%d)",
                       (int)labels[bad], bad, k);
    const double s = smoothing, conf = 1.0 - s, scale = weight / n;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * k;
        const int y = labels[i];
        const double lse = row_lse(z, k);
        double sz = 0.0;
        for (int j = 0; j < k; j++) sz += (double)z[j];
        sum += conf * (lse - (double)z[y]) + s * (lse - sz / k);
        if (dlogits) {
            float *g = dlogits + (size_t)i * k;
            for (int j = 0; j < k; j++)
                g[j] = (float)(scale * (exp((double)z[j] - lse) - ((j == y ? conf : 0.0) + s / k)));
        }
    }
    *loss = weight * sum / n;
    return AL_OK;
}

al_status al_xent_smooth(al_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                         double smoothing, double weight, double *loss, float *dlogits) {
    if (n < 1 || k < 2)
        return AL_FAIL(AL_ERR_VALUE, "al_xent_smooth: n=%d k=%d (need n >= 1, k >= 2)", n, k);
    if (!(smoothing >= 0.0 && smoothing <= 1.0))
        return AL_FAIL(AL_ERR_VALUE, "al_xent_smooth: smoothing %g outside [0, 1]",
                       smoothing);
    al_note_host_read(ctx, loss);
    switch (ctx->device) {
    case AL_DEV_CPU:
        return al_defer_cpu(
            ctx, al_xent_smooth_cpu(ctx, n, k, logits, labels, smoothing, weight, loss, dlogits),
            AL_SUM_LOSS, loss);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_xent_smooth_cuda(ctx, n, k, logits, labels, smoothing, weight, loss,
                                            dlogits));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_xent_smooth: unknown device %d", (int)ctx->device);
}
