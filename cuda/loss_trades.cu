/* loss_trades.cu: TRADES training loss and attack objective. Twin: losses/trades.c (+ rowops.h).
 * logits (N, K) row-major, labels (N) int32, on the device; loss / parts are host scalars.
 * Write modes as the twin: dlogits_* =, per_sample = (each optional).
 * One warp per row evaluates exactly the twin's double expressions (p = softmax(z_kl),
 * q = softmax(z_adv), lp/lq their logs):
 *   KL_i = sum_j p_j (lp_j - lq_j);  CE_i = lse(z_nat) - z_nat[y]
 *   dz_adv = (float)(beta/n (q - p));  dz_kl = beta/n p ((lp - lq) - KL_i)
 *   dz_nat = (float)(1/n (softmax(z_nat) - onehot(y))) [+ dz_kl when z_kl is z_nat]
 * so CUDA and CPU differ only by the order of the per-row double sums. Per-row CE / KL go to
 * a device buffer; one single-block kernel sums them in a fixed tree (deterministic) and finds
 * the first bad label; the host scalars come back in one D2H copy + sync. A bad label returns
 * AL_ERR_VALUE naming it, like the twin; device outputs are then unspecified. */
#include "cuda/loss_rows.cuh"
#include "losses/loss.h"

/* Per row i (= warp): ce_row[i], kl_row[i] and the three gradients. zkl/dkl may alias
 * znat/dnat (`shared`: the KL target is z_nat and its gradient joins dlogits_nat). */
static __global__ void trades_rows_kernel(int n, int k, const float *__restrict__ znat_all,
                                          const float *zkl_all, const float *__restrict__ zadv_all,
                                          const int32_t *__restrict__ labels, double inv_n,
                                          double bn, int shared, double *__restrict__ ce_row,
                                          double *__restrict__ kl_row, float *dnat_all,
                                          float *dkl_all, float *__restrict__ dadv_all) {
    const int lane = threadIdx.x & 31, i = lr_row_index();
    if (i >= n) return; /* whole warps exit together: the shuffles stay full-warp */
    const int y = lr_row_label(labels, i, k, lane, ce_row, kl_row);
    if (y < 0) return; /* never read zn[y] */
    const size_t off = (size_t)i * k;
    const float *zn = znat_all + off, *zk = zkl_all + off, *za = zadv_all + off;
    const double lse_n = lr_row_lse(zn, k, lane), lse_k = lr_row_lse(zk, k, lane);
    const double lse_a = lr_row_lse(za, k, lane);
    double kl = 0.0;
    for (int j = lane; j < k; j += 32) {
        const double lp = (double)zk[j] - lse_k, lq = (double)za[j] - lse_a;
        kl += exp(lp) * (lp - lq);
    }
    kl = lr_warp_sum(kl);
    if (lane == 0) {
        ce_row[i] = lse_n - (double)zn[y];
        kl_row[i] = kl;
    }
    float *dn = dnat_all ? dnat_all + off : NULL, *dk = dkl_all ? dkl_all + off : NULL;
    float *da = dadv_all ? dadv_all + off : NULL;
    if (!dn && !dk && !da) return;
    for (int j = lane; j < k; j += 32) {
        const double lp = (double)zk[j] - lse_k, lq = (double)za[j] - lse_a;
        const double p = exp(lp), q = exp(lq);
        const double g_kl = bn * p * ((lp - lq) - kl); /* d(beta/n KL_i)/dz_kl_j */
        if (da) da[j] = (float)(bn * (q - p));
        double g_ce = 0.0;
        if (dn) g_ce = inv_n * (exp((double)zn[j] - lse_n) - (j == y ? 1.0 : 0.0));
        if (shared) {
            if (dn) dn[j] = (float)(g_ce + g_kl);
        } else {
            if (dn) dn[j] = (float)g_ce;
            if (dk) dk[j] = (float)g_kl;
        }
    }
}

/* Attack objective rows: kl_row[i] = KL(softmax(z_nat_i) || softmax(z_adv_i)), per_sample,
 * dz_adv = (float)(q - p) (p detached). */
static __global__ void trades_kl_rows_kernel(int n, int k, const float *__restrict__ znat_all,
                                             const float *__restrict__ zadv_all,
                                             double *__restrict__ kl_row,
                                             float *__restrict__ per_sample,
                                             float *__restrict__ dadv_all) {
    const int lane = threadIdx.x & 31, i = lr_row_index();
    if (i >= n) return;
    const size_t off = (size_t)i * k;
    const float *zn = znat_all + off, *za = zadv_all + off;
    const double lse_n = lr_row_lse(zn, k, lane), lse_a = lr_row_lse(za, k, lane);
    double kl = 0.0;
    for (int j = lane; j < k; j += 32) {
        const double lp = (double)zn[j] - lse_n, lq = (double)za[j] - lse_a;
        kl += exp(lp) * (lp - lq);
    }
    kl = lr_warp_sum(kl);
    if (lane == 0) {
        kl_row[i] = kl;
        if (per_sample) per_sample[i] = (float)kl;
    }
    if (dadv_all) {
        float *da = dadv_all + off;
        for (int j = lane; j < k; j += 32)
            da[j] = (float)(exp((double)za[j] - lse_a) - exp((double)zn[j] - lse_n));
    }
}

extern "C" al_status al_trades_loss_cuda(al_ctx *ctx, int n, int k, const float *logits_nat,
                                         const float *logits_nat_kl, const float *logits_adv,
                                         const int32_t *labels, float beta, double *loss,
                                         double *parts, float *dlogits_nat, float *dlogits_nat_kl,
                                         float *dlogits_adv) {
    AL_ASSERT(n >= 1 && k >= 1 && logits_nat && logits_adv && labels && loss,
              "al_trades_loss_cuda n=%d k=%d", n, k);
    AL_ASSERT(logits_nat_kl || !dlogits_nat_kl,
              "al_trades_loss_cuda: dlogits_nat_kl without logits_nat_kl");
    const int shared = logits_nat_kl == NULL;
    const float *zkl = shared ? logits_nat : logits_nat_kl;
    float *dkl = shared ? dlogits_nat : dlogits_nat_kl;
    const double inv_n = 1.0 / n, bn = (double)beta / n;
    lr_tmp t;
    AL_TRY(lr_tmp_get(ctx, n, &t));
    lr_result r = {};
    trades_rows_kernel<<<lr_grid(n), LR_ROWS_PER_BLOCK * 32, 0, al_stream_of(ctx)>>>(
        n, k, logits_nat, zkl, logits_adv, labels, inv_n, bn, shared, t.a, t.b, dlogits_nat, dkl,
        dlogits_adv);
    const al_status st =
        lr_finish(ctx, "al_trades_loss", n, k, &t, 2, labels, "label", NULL, NULL, &r,
                  AL_SUM_LOSS, inv_n, (double)beta * inv_n);
    if (st == AL_OK) {
        /* the twin's expressions: sum_ce * inv_n + beta * sum_kl * inv_n */
        *loss = r.sum[0] * inv_n + (double)beta * r.sum[1] * inv_n;
        if (parts) {
            parts[0] = r.sum[0] * inv_n;
            parts[1] = r.sum[1] * inv_n;
        }
    }
    al_ctx_scratch_release(ctx, t.mark);
    return st;
}

extern "C" al_status al_trades_kl_cuda(al_ctx *ctx, int n, int k, const float *logits_nat,
                                       const float *logits_adv, double *loss, float *per_sample,
                                       float *dlogits_adv) {
    AL_ASSERT(n >= 1 && k >= 1 && logits_nat && logits_adv, "al_trades_kl_cuda n=%d k=%d", n, k);
    lr_tmp t;
    AL_TRY(lr_tmp_get(ctx, n, &t));
    lr_result r = {};
    trades_kl_rows_kernel<<<lr_grid(n), LR_ROWS_PER_BLOCK * 32, 0, al_stream_of(ctx)>>>(
        n, k, logits_nat, logits_adv, t.a, per_sample, dlogits_adv);
    const al_status st =
        lr_finish(ctx, "al_trades_kl", n, k, &t, 1, NULL, NULL, NULL, NULL, loss ? &r : NULL,
                  AL_SUM_LOSS, 1.0, 0.0);
    if (st == AL_OK && loss) *loss = r.sum[0]; /* a SUM over the batch, as the twin */
    al_ctx_scratch_release(ctx, t.mark);
    return st;
}
