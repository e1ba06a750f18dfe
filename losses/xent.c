/* xent.c: softmax cross-entropy and argmax accuracy: CPU reference + dispatchers.
 * Twin: cuda/loss_xent.cu (al_xent_cuda, al_count_correct_cuda). Shapes: logits (N, K) row-major,
 * labels (N). Write mode: per_sample =, dlogits = (never accumulated).
 * CE_i = lse(z_i) - z_i[y_i]; dCE_i/dz_ij = softmax(z_i)_j - [j == y_i]. */
#include <math.h>

#include "losses/loss.h"
#include "core/sums.h"
#include "losses/rowops.h"

al_status al_xent_cpu(al_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                      float weight, double *loss, float *per_sample, float *dlogits) {
    (void)ctx;
    int bad = first_bad_label(labels, n, k);
    if (bad >= 0)
        return AL_FAIL(AL_ERR_VALUE, "al_xent: label %d at index %d outside [0,%d)",
                       (int)labels[bad], bad, k);
    const double scale = (double)weight / n; /* d(weight * mean)/dCE_i */
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * k;
        const int y = labels[i];
        const double lse = row_lse(z, k);
        const double ce = lse - (double)z[y];
        sum += ce;
        if (per_sample) per_sample[i] = (float)ce;
        if (dlogits) {
            float *dz = dlogits + (size_t)i * k;
            for (int j = 0; j < k; j++)
                dz[j] = (float)(scale * (exp((double)z[j] - lse) - (j == y ? 1.0 : 0.0)));
        }
    }
    if (loss) *loss = (double)weight * sum / n;
    return AL_OK;
}

al_status al_count_correct_cpu(al_ctx *ctx, int n, int k, const float *logits,
                               const int32_t *labels, int *n_correct, uint8_t *correct) {
    (void)ctx;
    int bad = first_bad_label(labels, n, k);
    if (bad >= 0)
        return AL_FAIL(AL_ERR_VALUE, "al_count_correct: label %d at index %d outside [0,%d)",
                       (int)labels[bad], bad, k);
    int cnt = 0;
    for (int i = 0; i < n; i++) {
        int ok = row_argmax_excl(logits + (size_t)i * k, k, -1) == labels[i];
        cnt += ok;
        if (correct) correct[i] = (uint8_t)ok;
    }
    if (n_correct) *n_correct = cnt;
    return AL_OK;
}

/* ---------------------------------------------------------------- dispatchers */

static al_status check_shape(const char *fn, int n, int k, int k_min) {
    if (n < 1 || k < k_min)
        return AL_FAIL(AL_ERR_VALUE, "%s: n=%d k=%d (need n >= 1, k >= %d)", fn, n, k, k_min);
    return AL_OK;
}

al_status al_xent(al_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                  float weight, double *loss, float *per_sample, float *dlogits) {
    AL_TRY(check_shape("al_xent", n, k, 1));
    al_note_host_read(ctx, loss);
    switch (ctx->device) {
    case AL_DEV_CPU:
        return al_defer_cpu(
            ctx, al_xent_cpu(ctx, n, k, logits, labels, weight, loss, per_sample, dlogits),
            AL_SUM_LOSS, loss);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_xent_cuda(ctx, n, k, logits, labels, weight, loss, per_sample, dlogits));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_xent: unknown device %d", (int)ctx->device);
}

al_status al_count_correct(al_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                           int *n_correct, uint8_t *correct) {
    AL_TRY(check_shape("al_count_correct", n, k, 1));
    al_note_host_read(ctx, n_correct);
    switch (ctx->device) {
    case AL_DEV_CPU:
        return al_defer_cpu_count(
            ctx, al_count_correct_cpu(ctx, n, k, logits, labels, n_correct, correct), n_correct);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_count_correct_cuda(ctx, n, k, logits, labels, n_correct, correct));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_count_correct: unknown device %d", (int)ctx->device);
}
