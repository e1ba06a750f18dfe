/* drsl.c: the distribution-restrained softmax loss penalty (methods.md §4; the DRSL/DRSLX
 * code of the authors' follow-up repo karlieswift/Mattack lossfunction_test.py):
 *   pen = b * sum_i sum_{j != y_i} (z_ij - m_i)^2      (SUM over the batch and classes)
 *   drslx: m_i = mean_{j != y_i} z_ij     drsl: m_i = (1/C) sum_{j != y_i} z_ij
 * Gradient (j != y_i):  2b (z_ij - m_i) - (2b / c_m) * sum_{j' != y_i} (z_ij' - m_i)
 * with c_m = C-1 (drslx; the sum of deviations is then 0) or C (drsl); the label logit gets 0.
 * dlogits is ACCUMULATED ('+='): the penalty is added to a CE gradient. CUDA twin:
 * cuda/loss_drsl.cu. */
#include "losses/loss.h"
#include "core/sums.h"

al_status al_drsl_penalty_cpu(al_ctx *ctx, int n, int k, const float *logits,
                              const int32_t *labels, float weight, int variant, double *pen,
                              float *dlogits) {
    (void)ctx;
    const double c_m = variant == 0 ? (double)(k - 1) : (double)k;
    double total = 0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * k;
        int y = labels[i];
        if (y < 0 || y >= k)
            return AL_FAIL(AL_ERR_VALUE, "drsl: label %d at index %d outside [0,%d)", y, i, k);
        double sum = 0;
        for (int j = 0; j < k; j++)
            if (j != y) sum += z[j];
        double mi = sum / c_m, dev_sum = 0, sq = 0;
        for (int j = 0; j < k; j++)
            if (j != y) {
                double dv = z[j] - mi;
                dev_sum += dv;
                sq += dv * dv;
            }
        total += sq;
        if (dlogits) {
            float *g = dlogits + (size_t)i * k;
            for (int j = 0; j < k; j++)
                if (j != y) g[j] += (float)(2.0 * weight * ((z[j] - mi) - dev_sum / c_m));
        }
    }
    *pen = (double)weight * total;
    return AL_OK;
}

al_status al_drsl_penalty(al_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                          float weight, int variant, double *pen, float *dlogits) {
    if (k < 2) return AL_FAIL(AL_ERR_VALUE, "drsl: needs at least 2 classes (k = %d)", k);
    if (n < 1) return AL_FAIL(AL_ERR_VALUE, "drsl: empty batch (n = %d)", n);
    al_note_host_read(ctx, pen);
    switch (ctx->device) {
    case AL_DEV_CPU:
        return al_defer_cpu(
            ctx, al_drsl_penalty_cpu(ctx, n, k, logits, labels, weight, variant, pen, dlogits),
            AL_SUM_LOSS, pen);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_drsl_penalty_cuda(ctx, n, k, logits, labels, weight, variant, pen,
                                             dlogits));
    }
    return AL_FAIL(AL_ERR_VALUE, "drsl: unknown device %d", (int)ctx->device);
}
