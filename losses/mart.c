/* mart.c: MART loss (Wang et al., ICLR 2020), CPU reference + dispatcher.
 * Reference: YisenWang/MART mart.py @2d83e17 (methods.md 6.3), followed term by term, including
 * its +1e-12 inside both logs and the fact that nothing is detached. CUDA twin:
 * cuda/loss_mart.cu. Shapes: logits (N, K), labels (N).
 * Write mode: dlogits_nat =, dlogits_adv =.
 *
 * Per example (p = softmax(z_nat), q = softmax(z_adv), y2 = argmax_{j != y} q_j, a constant):
 *   BCE_i = -log q_y - log(c),  c = 1.0001 - q_y2 + 1e-12
 *   KL_i  = sum_j p_j (lp_j - la_j),  la_j = log(q_j + 1e-12),  w_i = 1.0000001 - p_y
 *   loss  = (1/n) sum_i BCE_i + beta (1/n) sum_i w_i KL_i
 * Gradients (r_j = q_j / (q_j + 1e-12), S = sum_j p_j r_j):
 *   dBCE_i/dz_adv_k = (q_k - [k==y]) + q_y2 ([k==y2] - q_k) / c
 *   dKL_i/dz_adv_k  = -(p_k r_k - q_k S)
 *   dKL_i/dz_nat_k  = p_k ((lp_k - la_k) - KL_i)
 *   dw_i/dz_nat_k   = -p_y ([k==y] - p_k)
 * so dz_nat_k = beta/n (w_i dKL_i/dz_nat_k + KL_i dw_i/dz_nat_k). */
#include <math.h>

#include "losses/loss.h"
#include "core/sums.h"
#include "losses/rowops.h"

/* The official constants (applied in double; PyTorch float32 rounds them, a 2e-9 change). */
static const double MART_NLL_C = 1.0001;  /* log(1.0001 - q_y2 + 1e-12) */
static const double MART_W_C = 1.0000001; /* weight (1.0000001 - p_y) */
static const double MART_LOG_EPS = 1e-12; /* log(q + 1e-12) in both terms */

al_status al_mart_loss_cpu(al_ctx *ctx, int n, int k, const float *logits_nat,
                           const float *logits_adv, const int32_t *labels, float beta, double *loss,
                           double *parts, float *dlogits_nat, float *dlogits_adv) {
    (void)ctx;
    int bad = first_bad_label(labels, n, k);
    if (bad >= 0)
        return AL_FAIL(AL_ERR_VALUE, "al_mart_loss: label %d at index %d outside [0,%d)",
                       (int)labels[bad], bad, k);
    const double inv_n = 1.0 / n, bn = (double)beta / n;
    double sum_bce = 0.0, sum_klw = 0.0;
    for (int i = 0; i < n; i++) {
        const size_t off = (size_t)i * k;
        const float *zn = logits_nat + off, *za = logits_adv + off;
        const int y = labels[i];
        const double lse_n = row_lse(zn, k), lse_a = row_lse(za, k);
        /* softmax is monotone, so argmax over q == argmax over z_adv (ties: lowest index) */
        const int y2 = row_argmax_excl(za, k, y);
        const double q_y2 = exp((double)za[y2] - lse_a);
        const double c = MART_NLL_C - q_y2 + MART_LOG_EPS;
        const double p_y = exp((double)zn[y] - lse_n);
        const double w = MART_W_C - p_y;
        double kl = 0.0, s = 0.0;
        for (int j = 0; j < k; j++) {
            const double lp = (double)zn[j] - lse_n, p = exp(lp);
            const double q = exp((double)za[j] - lse_a);
            kl += p * (lp - log(q + MART_LOG_EPS));
            s += p * (q / (q + MART_LOG_EPS));
        }
        sum_bce += (lse_a - (double)za[y]) - log(c);
        sum_klw += kl * w;
        for (int j = 0; j < k; j++) {
            const double lp = (double)zn[j] - lse_n, p = exp(lp);
            const double q = exp((double)za[j] - lse_a);
            const double la = log(q + MART_LOG_EPS), r = q / (q + MART_LOG_EPS);
            const double dy = j == y ? 1.0 : 0.0, dy2 = j == y2 ? 1.0 : 0.0;
            if (dlogits_adv) {
                double g_bce = (q - dy) + q_y2 * (dy2 - q) / c;
                double g_kl = -(p * r - q * s);
                dlogits_adv[off + j] = (float)(inv_n * g_bce + bn * w * g_kl);
            }
            if (dlogits_nat) {
                double g_kl = p * ((lp - la) - kl);
                double g_w = -p_y * (dy - p);
                dlogits_nat[off + j] = (float)(bn * (w * g_kl + kl * g_w));
            }
        }
    }
    *loss = sum_bce * inv_n + (double)beta * sum_klw * inv_n;
    if (parts) {
        parts[0] = sum_bce * inv_n;
        parts[1] = sum_klw * inv_n;
    }
    return AL_OK;
}

al_status al_mart_loss(al_ctx *ctx, int n, int k, const float *logits_nat, const float *logits_adv,
                       const int32_t *labels, float beta, double *loss, double *parts,
                       float *dlogits_nat, float *dlogits_adv) {
    if (n < 1 || k < 2)
        return AL_FAIL(AL_ERR_VALUE, "al_mart_loss: n=%d k=%d (need n >= 1, k >= 2)", n, k);
    AL_TRY(al_defer_refuse(ctx, "al_mart_loss", parts));
    al_note_host_read(ctx, loss);
    switch (ctx->device) {
    case AL_DEV_CPU:
        return al_defer_cpu(ctx,
                            al_mart_loss_cpu(ctx, n, k, logits_nat, logits_adv, labels, beta, loss,
                                             parts, dlogits_nat, dlogits_adv),
                            AL_SUM_LOSS, loss);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_mart_loss_cuda(ctx, n, k, logits_nat, logits_adv, labels, beta, loss,
                                          parts, dlogits_nat, dlogits_adv));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_mart_loss: unknown device %d", (int)ctx->device);
}
