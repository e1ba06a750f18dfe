/* cw.c: Carlini-Wagner margin loss, CPU reference + dispatcher. CUDA twin:
 * cuda/loss_cw.cu. Shapes: logits (N, K), labels (N).
 * Ascent form: positive margin <=> attack success, so untargeted and targeted attacks both
 * ascend it. Write mode: per_sample =, dlogits = . */
#include "losses/loss.h"
#include "core/sums.h"
#include "losses/rowops.h"

#include <string.h>

al_status al_cw_margin_cpu(al_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                           int targeted, double *loss, float *per_sample, float *dlogits) {
    (void)ctx;
    int bad = first_bad_label(labels, n, k);
    if (bad >= 0)
        return AL_FAIL(AL_ERR_VALUE, "al_cw_margin: label %d at index %d outside [0,%d)",
                       (int)labels[bad], bad, k);
    const float sgn = targeted ? -1.0f : 1.0f; /* untargeted: z_other - z_y; targeted: negated */
    const float g = 1.0f / (float)n;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * k;
        const int y = labels[i];
        const int o = row_argmax_excl(z, k, y); /* best other class, lowest index on ties */
        const double m = (double)sgn * ((double)z[o] - (double)z[y]);
        sum += m;
        if (per_sample) per_sample[i] = (float)m;
        if (dlogits) {
            float *dz = dlogits + (size_t)i * k;
            memset(dz, 0, (size_t)k * sizeof *dz);
            dz[o] = sgn * g;
            dz[y] = -sgn * g;
        }
    }
    if (loss) *loss = sum / n;
    return AL_OK;
}

al_status al_cw_margin(al_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                       int targeted, double *loss, float *per_sample, float *dlogits) {
    if (n < 1 || k < 2)
        return AL_FAIL(AL_ERR_VALUE, "al_cw_margin: n=%d k=%d (need n >= 1, k >= 2)", n, k);
    al_note_host_read(ctx, loss);
    switch (ctx->device) {
    case AL_DEV_CPU:
        return al_defer_cpu(
            ctx, al_cw_margin_cpu(ctx, n, k, logits, labels, targeted, loss, per_sample, dlogits),
            AL_SUM_LOSS, loss);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_cw_margin_cuda(ctx, n, k, logits, labels, targeted, loss, per_sample,
                                          dlogits));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_cw_margin: unknown device %d", (int)ctx->device);
}
