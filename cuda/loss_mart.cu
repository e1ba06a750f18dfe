/* loss_mart.cu: MART loss. Twin: losses/mart.c (+ rowops.h), term by term.
 * logits (N, K) row-major, labels (N) int32, on the device; loss / parts are host scalars.
 * Write modes as the twin: dlogits_nat =, dlogits_adv = (each optional).
 * One warp per row evaluates exactly the twin's double expressions (p = softmax(z_nat),
 * q = softmax(z_adv), y2 = argmax_{j != y} z_adv (ties: lowest index; a constant)):
 *   c = 1.0001 - q_y2 + 1e-12;  w = 1.0000001 - p_y;  la_j = log(q_j + 1e-12)
 *   BCE_i = (lse_a - z_adv[y]) - log(c);  KL_i = sum_j p_j (lp_j - la_j);  S = sum_j p_j r_j
 *   dz_adv_j = 1/n ((q_j - [j==y]) + q_y2 ([j==y2] - q_j) / c) + beta/n w (-(p_j r_j - q_j S))
 *   dz_nat_j = beta/n (w p_j ((lp_j - la_j) - KL_i) + KL_i (-p_y ([j==y] - p_j)))
 * with r_j = q_j / (q_j + 1e-12). CUDA and CPU differ only by the order of the per-row double
 * sums (and libm vs CUDA exp/log, both within an ulp in double). Per-row BCE and w*KL go to a
 * device buffer, one single-block kernel sums them (fixed tree: deterministic) and finds the
 * first bad label; the host scalars come back in one D2H copy + sync. */
#include "cuda/loss_rows.cuh"
#include "losses/loss.h"

/* The official constants, as the twin (applied in double). */
#define MART_NLL_C 1.0001
#define MART_W_C 1.0000001
#define MART_LOG_EPS 1e-12

static __global__ void mart_rows_kernel(int n, int k, const float *__restrict__ znat_all,
                                        const float *__restrict__ zadv_all,
                                        const int32_t *__restrict__ labels, double inv_n,
                                        double bn, double *__restrict__ bce_row,
                                        double *__restrict__ klw_row,
                                        float *__restrict__ dnat_all,
                                        float *__restrict__ dadv_all) {
    const int lane = threadIdx.x & 31, i = lr_row_index();
    if (i >= n) return; /* whole warps exit together */
    const int y = lr_row_label(labels, i, k, lane, bce_row, klw_row);
    if (y < 0) return;
    const size_t off = (size_t)i * k;
    const float *zn = znat_all + off, *za = zadv_all + off;
    const double lse_n = lr_row_lse(zn, k, lane), lse_a = lr_row_lse(za, k, lane);
    /* softmax is monotone: argmax over q == argmax over z_adv (k >= 2, so y2 >= 0) */
    const int y2 = lr_row_argmax_excl(za, k, y, lane);
    const double q_y2 = exp((double)za[y2] - lse_a);
    const double c = MART_NLL_C - q_y2 + MART_LOG_EPS;
    const double p_y = exp((double)zn[y] - lse_n);
    const double w = MART_W_C - p_y;
    double kl = 0.0, s = 0.0;
    for (int j = lane; j < k; j += 32) {
        const double lp = (double)zn[j] - lse_n, p = exp(lp);
        const double q = exp((double)za[j] - lse_a);
        kl += p * (lp - log(q + MART_LOG_EPS));
        s += p * (q / (q + MART_LOG_EPS));
    }
    kl = lr_warp_sum(kl);
    s = lr_warp_sum(s);
    if (lane == 0) {
        bce_row[i] = (lse_a - (double)za[y]) - log(c);
        klw_row[i] = kl * w;
    }
    float *dn = dnat_all ? dnat_all + off : NULL, *da = dadv_all ? dadv_all + off : NULL;
    if (!dn && !da) return;
    for (int j = lane; j < k; j += 32) {
        const double lp = (double)zn[j] - lse_n, p = exp(lp);
        const double q = exp((double)za[j] - lse_a);
        const double la = log(q + MART_LOG_EPS), r = q / (q + MART_LOG_EPS);
        const double dy = j == y ? 1.0 : 0.0, dy2 = j == y2 ? 1.0 : 0.0;
        if (da) {
            const double g_bce = (q - dy) + q_y2 * (dy2 - q) / c;
            const double g_kl = -(p * r - q * s);
            da[j] = (float)(inv_n * g_bce + bn * w * g_kl);
        }
        if (dn) {
            const double g_kl = p * ((lp - la) - kl);
            const double g_w = -p_y * (dy - p);
            dn[j] = (float)(bn * (w * g_kl + kl * g_w));
        }
    }
}

extern "C" al_status al_mart_loss_cuda(al_ctx *ctx, int n, int k, const float *logits_nat,
                                       const float *logits_adv, const int32_t *labels, float beta,
                                       double *loss, double *parts, float *dlogits_nat,
                                       float *dlogits_adv) {
    AL_ASSERT(n >= 1 && k >= 2 && logits_nat && logits_adv && labels && loss,
              "al_mart_loss_cuda n=%d k=%d", n, k);
    const double inv_n = 1.0 / n, bn = (double)beta / n;
    lr_tmp t;
    AL_TRY(lr_tmp_get(ctx, n, &t));
    lr_result r = {};
    mart_rows_kernel<<<lr_grid(n), LR_ROWS_PER_BLOCK * 32, 0, al_stream_of(ctx)>>>(
        n, k, logits_nat, logits_adv, labels, inv_n, bn, t.a, t.b, dlogits_nat, dlogits_adv);
    const al_status st =
        lr_finish(ctx, "al_mart_loss", n, k, &t, 2, labels, "label", NULL, NULL, &r,
                  AL_SUM_LOSS, inv_n, (double)beta * inv_n);
    if (st == AL_OK) {
        /* the twin's expressions: sum_bce * inv_n + beta * sum_klw * inv_n */
        *loss = r.sum[0] * inv_n + (double)beta * r.sum[1] * inv_n;
        if (parts) {
            parts[0] = r.sum[0] * inv_n;
            parts[1] = r.sum[1] * inv_n;
        }
    }
    al_ctx_scratch_release(ctx, t.mark);
    return st;
}
