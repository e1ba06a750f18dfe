/* trades.c: TRADES training loss and attack objective, CPU reference + dispatchers.
 * Reference: yaodongyu/TRADES trades.py @6e8e11b (see methods.md 6.2). CUDA twin:
 * cuda/loss_trades.cu (same per-row double expressions). Shapes: logits (N, K), labels (N).
 * Write mode: every gradient and per_sample output is '='.
 *
 * Gradients in logit space (p = softmax(z_kl), q = softmax(z_adv), lp/lq their logs):
 *   KL_i          = sum_j p_j (lp_j - lq_j)
 *   dKL_i/dz_adv  = q - p
 *   dKL_i/dz_kl_k = p_k ((lp_k - lq_k) - KL_i)
 * The last form is what autograd through softmax + KLDivLoss's xlogy(p, p) reduces to; written
 * this way it never forms log(0) (PyTorch float32 can, for p underflowing to 0). */
#include <math.h>

#include "losses/loss.h"
#include "core/sums.h"
#include "losses/rowops.h"

/* KL(p || q) of one row from log-probabilities evaluated on the fly. */
static double row_kl(const float *zp, double lse_p, const float *zq, double lse_q, int k) {
    double kl = 0.0;
    for (int j = 0; j < k; j++) {
        double lp = (double)zp[j] - lse_p, lq = (double)zq[j] - lse_q;
        kl += exp(lp) * (lp - lq);
    }
    return kl;
}

al_status al_trades_loss_cpu(al_ctx *ctx, int n, int k, const float *logits_nat,
                             const float *logits_nat_kl, const float *logits_adv,
                             const int32_t *labels, float beta, double *loss, double *parts,
                             float *dlogits_nat, float *dlogits_nat_kl, float *dlogits_adv) {
    (void)ctx;
    int bad = first_bad_label(labels, n, k);
    if (bad >= 0)
        return AL_FAIL(AL_ERR_VALUE, "al_trades_loss: label %d at index %d outside [0,%d)",
                       (int)labels[bad], bad, k);
    /* Without a second clean forward the KL target is z_nat and its gradient joins dlogits_nat. */
    const int shared = logits_nat_kl == NULL;
    const float *zkl_all = shared ? logits_nat : logits_nat_kl;
    float *dkl_all = shared ? dlogits_nat : dlogits_nat_kl;
    const double inv_n = 1.0 / n, bn = (double)beta / n;
    double sum_ce = 0.0, sum_kl = 0.0;
    for (int i = 0; i < n; i++) {
        const size_t off = (size_t)i * k;
        const float *zn = logits_nat + off, *zk = zkl_all + off, *za = logits_adv + off;
        const int y = labels[i];
        const double lse_n = row_lse(zn, k), lse_k = row_lse(zk, k), lse_a = row_lse(za, k);
        const double kl = row_kl(zk, lse_k, za, lse_a, k);
        sum_ce += lse_n - (double)zn[y];
        sum_kl += kl;
        for (int j = 0; j < k; j++) {
            const double lp = (double)zk[j] - lse_k, lq = (double)za[j] - lse_a;
            const double p = exp(lp), q = exp(lq);
            const double g_kl = bn * p * ((lp - lq) - kl); /* d(beta/n KL_i)/dz_kl_j */
            if (dlogits_adv) dlogits_adv[off + j] = (float)(bn * (q - p));
            double g_ce = 0.0;
            if (dlogits_nat) g_ce = inv_n * (exp((double)zn[j] - lse_n) - (j == y ? 1.0 : 0.0));
            if (shared) {
                if (dlogits_nat) dlogits_nat[off + j] = (float)(g_ce + g_kl);
            } else {
                if (dlogits_nat) dlogits_nat[off + j] = (float)g_ce;
                if (dkl_all) dkl_all[off + j] = (float)g_kl;
            }
        }
    }
    *loss = sum_ce * inv_n + (double)beta * sum_kl * inv_n;
    if (parts) {
        parts[0] = sum_ce * inv_n;
        parts[1] = sum_kl * inv_n;
    }
    return AL_OK;
}

al_status al_trades_kl_cpu(al_ctx *ctx, int n, int k, const float *logits_nat,
                           const float *logits_adv, double *loss, float *per_sample,
                           float *dlogits_adv) {
    (void)ctx;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const size_t off = (size_t)i * k;
        const float *zn = logits_nat + off, *za = logits_adv + off;
        const double lse_n = row_lse(zn, k), lse_a = row_lse(za, k);
        const double kl = row_kl(zn, lse_n, za, lse_a, k);
        sum += kl;
        if (per_sample) per_sample[i] = (float)kl;
        if (dlogits_adv)
            for (int j = 0; j < k; j++)
                dlogits_adv[off + j] =
                    (float)(exp((double)za[j] - lse_a) - exp((double)zn[j] - lse_n));
    }
    if (loss) *loss = sum;
    return AL_OK;
}

/* ---------------------------------------------------------------- dispatchers */

al_status al_trades_loss(al_ctx *ctx, int n, int k, const float *logits_nat,
                         const float *logits_nat_kl, const float *logits_adv, const int32_t *labels,
                         float beta, double *loss, double *parts, float *dlogits_nat,
                         float *dlogits_nat_kl, float *dlogits_adv) {
    if (n < 1 || k < 1)
        return AL_FAIL(AL_ERR_VALUE, "al_trades_loss: n=%d k=%d (need n >= 1, k >= 1)", n, k);
    if (!logits_nat_kl && dlogits_nat_kl)
        return AL_FAIL(AL_ERR_VALUE, "al_trades_loss: dlogits_nat_kl given without logits_nat_kl "
                                     "(the KL gradient goes to dlogits_nat then)");
    AL_TRY(al_defer_refuse(ctx, "al_trades_loss", parts));
    al_note_host_read(ctx, loss);
    switch (ctx->device) {
    case AL_DEV_CPU:
        return al_defer_cpu(ctx,
                            al_trades_loss_cpu(ctx, n, k, logits_nat, logits_nat_kl, logits_adv,
                                               labels, beta, loss, parts, dlogits_nat,
                                               dlogits_nat_kl, dlogits_adv),
                            AL_SUM_LOSS, loss);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_trades_loss_cuda(ctx, n, k, logits_nat, logits_nat_kl, logits_adv,
                                            labels, beta, loss, parts, dlogits_nat, dlogits_nat_kl,
                                            dlogits_adv));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_trades_loss: unknown device %d", (int)ctx->device);
}

al_status al_trades_kl(al_ctx *ctx, int n, int k, const float *logits_nat, const float *logits_adv,
                       double *loss, float *per_sample, float *dlogits_adv) {
    if (n < 1 || k < 1)
        return AL_FAIL(AL_ERR_VALUE, "al_trades_kl: n=%d k=%d (need n >= 1, k >= 1)", n, k);
    al_note_host_read(ctx, loss);
    switch (ctx->device) {
    case AL_DEV_CPU:
        return al_defer_cpu(
            ctx, al_trades_kl_cpu(ctx, n, k, logits_nat, logits_adv, loss, per_sample, dlogits_adv),
            AL_SUM_LOSS, loss);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_trades_kl_cuda(ctx, n, k, logits_nat, logits_adv, loss, per_sample,
                                          dlogits_adv));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_trades_kl: unknown device %d", (int)ctx->device);
}
