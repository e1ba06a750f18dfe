/* loss.h: losses as pure functions of their inputs: value (mean over the batch unless stated)
 * and gradient w.r.t. logits (and features where the loss uses them). Write mode: every
 * gradient output is '=' (callers combine). CPU reference here; CUDA twins in cuda/loss_*.cu.
 * Gradients are of the RETURNED value (so they include the 1/N of a mean).
 * Memory: logits, labels and every per-example output (per_sample, dlogits*, correct) live on
 * ctx's device; scalar outputs (loss, parts, n_correct) are host. Every output pointer except
 * `loss` / `n_correct` may be NULL to skip it; so may those of the attack objectives
 * (al_xent, al_count_correct, al_cw_margin, al_trades_kl, al_dlr_loss): with no host scalar
 * the CUDA twin neither reduces nor syncs (an attack iteration then waits on nothing), and the
 * labels are checked only by the CPU reference: a caller passing NULL on CUDA has checked them
 * once (al_attack_run's first iteration asks for the loss). A call that returns a host scalar
 * counts one ctx->n_host_reads. The CPU reference evaluates each row in double
 * with max-subtracted log-sum-exp (stable for any finite logits) and rounds once to float.
 * Labels outside [0, k) return AL_ERR_VALUE naming the index. */
#ifndef AL_LOSS_H
#define AL_LOSS_H

#include "core/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Softmax cross-entropy, mean over n: loss = -1/n sum_i log softmax(z_i)[y_i].
 * per_sample (n) optional; dlogits (n,k) optional, = d loss / d z. Labels must be in [0,k).
 * `weight` scales the returned value and gradient (per_sample is the unweighted CE_i). */
al_status al_xent(al_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                  float weight, double *loss, float *per_sample, float *dlogits);

/* Number of correct argmax predictions (ties: lowest index wins, like torch.argmax; a NaN
 * logit counts as the maximum, as in torch). correct (n) optional, 1/0 per example. */
al_status al_count_correct(al_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                           int *n_correct, uint8_t *correct /* (n) or NULL */);

/* TRADES training loss (yaodongyu/TRADES trades.py @6e8e11b):
 *   loss = CE(z_nat, y) + beta * (1/n) * sum_i KL(softmax(z_kl_i) || softmax(z_adv_i))
 * (PyTorch KLDivLoss(log_softmax(z_adv), softmax(z_kl), sum) / n). The official code runs f(x)
 * twice in train mode (once for CE, once as the KL target) and the gradient flows through
 * both: pass the second clean forward as logits_nat_kl (n,k), or NULL to use logits_nat for
 * both, in which case dlogits_nat receives both terms and dlogits_nat_kl must be NULL.
 * Gradients: dlogits_nat = dloss/dz_nat, dlogits_nat_kl = dloss/dz_kl, dlogits_adv = dloss/dz_adv.
 * parts (2) optional, host: [0] = mean CE, [1] = (1/n) sum KL (before beta). */
al_status al_trades_loss(al_ctx *ctx, int n, int k, const float *logits_nat,
                         const float *logits_nat_kl, const float *logits_adv, const int32_t *labels,
                         float beta, double *loss, double *parts, float *dlogits_nat,
                         float *dlogits_nat_kl, float *dlogits_adv);

/* TRADES attack objective: loss = sum_i KL(softmax(z_nat_i) || softmax(z_adv_i)), SUM over
 * the batch (no 1/n: the official attack step sign()s the gradient). p_nat is detached:
 * dlogits_adv = softmax(z_adv) - softmax(z_nat). per_sample (n) = KL_i. */
al_status al_trades_kl(al_ctx *ctx, int n, int k, const float *logits_nat, const float *logits_adv,
                       double *loss, float *per_sample, float *dlogits_adv);

/* MART loss (YisenWang/MART mart.py @2d83e17), p = softmax(z_nat), q = softmax(z_adv):
 *   y2_i  = argmax_{j != y_i} q_ij                    (the official argsort top-2 trick)
 *   BCE   = (1/n) sum_i [ -log q_i[y_i] - log(1.0001 - q_i[y2_i] + 1e-12) ]
 *   KLw   = (1/n) sum_i sum_j p_ij (log p_ij - log(q_ij + 1e-12)) * (1.0000001 - p_i[y_i])
 *   loss  = BCE + beta * KLw
 * As in the official code NOTHING is detached: the gradient w.r.t. z_nat flows through the KL
 * target p AND through the weight (1.0000001 - p[y]); y2 is a constant (argsort). Ties in y2
 * take the lowest index (torch.argsort leaves them unspecified). The constants are applied in
 * double (PyTorch float32 rounds them to 1.0001f / 1.0000001f: a 2e-9 difference).
 * parts (2) optional, host: [0] = BCE, [1] = KLw (before beta). */
al_status al_mart_loss(al_ctx *ctx, int n, int k, const float *logits_nat, const float *logits_adv,
                       const int32_t *labels, float beta, double *loss, double *parts,
                       float *dlogits_nat, float *dlogits_adv);

/* Carlini-Wagner margin, in the form an attack ASCENDS (positive <=> the attack succeeded):
 *   untargeted (labels = true classes):    m_i = max_{j != y_i} z_ij - z_i[y_i]
 *   targeted   (labels = target classes):  m_i = z_i[t_i] - max_{j != t_i} z_ij
 * loss = (1/n) sum_i m_i; per_sample (n) = m_i; dlogits = dloss/dz (+-1/n at two entries; the
 * max takes the lowest index on ties, as a subgradient). Needs k >= 2. */
al_status al_cw_margin(al_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                       int targeted, double *loss, float *per_sample, float *dlogits);

/* DRSL penalty (losses/drsl.c, methods.md §4): *pen = weight * sum_i sum_{j != y_i}
 * (z_ij - m_i)^2 (SUM over the batch), m_i = mean of the C-1 non-label logits (variant 0,
 * DRSLX) or their sum / C (variant 1). dlogits (n,k) is ACCUMULATED ('+='), may be NULL. */
al_status al_drsl_penalty(al_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                          float weight, int variant, double *pen, float *dlogits);

/* Label-smoothed softmax CE (timm LabelSmoothingCrossEntropy; NoFrost), losses/xent_smooth.c:
 * L_i = (1-s)(lse_i - z_iy) + s (lse_i - mean_j z_ij); *loss = weight * mean_i L_i; dlogits
 * (n, k) = d loss / dz ('='), may be NULL. s in [0, 1]; s = 0 is al_xent's loss. */
al_status al_xent_smooth(al_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                         double smoothing, double weight, double *loss, float *dlogits);

/* CPU references (the dispatchers above call these for AL_DEV_CPU). */
al_status al_xent_cpu(al_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                      float weight, double *loss, float *per_sample, float *dlogits);
al_status al_count_correct_cpu(al_ctx *ctx, int n, int k, const float *logits,
                               const int32_t *labels, int *n_correct, uint8_t *correct);
al_status al_trades_loss_cpu(al_ctx *ctx, int n, int k, const float *logits_nat,
                             const float *logits_nat_kl, const float *logits_adv,
                             const int32_t *labels, float beta, double *loss, double *parts,
                             float *dlogits_nat, float *dlogits_nat_kl, float *dlogits_adv);
al_status al_trades_kl_cpu(al_ctx *ctx, int n, int k, const float *logits_nat,
                           const float *logits_adv, double *loss, float *per_sample,
                           float *dlogits_adv);
al_status al_mart_loss_cpu(al_ctx *ctx, int n, int k, const float *logits_nat,
                           const float *logits_adv, const int32_t *labels, float beta, double *loss,
                           double *parts, float *dlogits_nat, float *dlogits_adv);
al_status al_cw_margin_cpu(al_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                           int targeted, double *loss, float *per_sample, float *dlogits);
al_status al_drsl_penalty_cpu(al_ctx *ctx, int n, int k, const float *logits,
                              const int32_t *labels, float weight, int variant, double *pen,
                              float *dlogits);
al_status al_xent_smooth_cpu(al_ctx *ctx, int n, int k, const float *logits,
                             const int32_t *labels, double smoothing, double weight, double *loss,
                             float *dlogits);

#ifdef AL_HAVE_CUDA
/* CUDA twins (cuda/loss_xent.cu, loss_trades.cu, loss_mart.cu, loss_cw.cu,
 * loss_drsl.cu): same arguments
 * and semantics as the CPU references; per-row math in double, batch sums in a fixed order
 * (deterministic); the host scalars come back with one D2H copy + stream sync per call. */
al_status al_xent_cuda(al_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                       float weight, double *loss, float *per_sample, float *dlogits);
al_status al_count_correct_cuda(al_ctx *ctx, int n, int k, const float *logits,
                                const int32_t *labels, int *n_correct, uint8_t *correct);
al_status al_trades_loss_cuda(al_ctx *ctx, int n, int k, const float *logits_nat,
                              const float *logits_nat_kl, const float *logits_adv,
                              const int32_t *labels, float beta, double *loss, double *parts,
                              float *dlogits_nat, float *dlogits_nat_kl, float *dlogits_adv);
al_status al_trades_kl_cuda(al_ctx *ctx, int n, int k, const float *logits_nat,
                            const float *logits_adv, double *loss, float *per_sample,
                            float *dlogits_adv);
al_status al_mart_loss_cuda(al_ctx *ctx, int n, int k, const float *logits_nat,
                            const float *logits_adv, const int32_t *labels, float beta,
                            double *loss, double *parts, float *dlogits_nat, float *dlogits_adv);
al_status al_cw_margin_cuda(al_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                            int targeted, double *loss, float *per_sample, float *dlogits);
al_status al_drsl_penalty_cuda(al_ctx *ctx, int n, int k, const float *logits,
                               const int32_t *labels, float weight, int variant, double *pen,
                               float *dlogits);
al_status al_xent_smooth_cuda(al_ctx *ctx, int n, int k, const float *logits,
                              const int32_t *labels, double smoothing, double weight, double *loss,
                              float *dlogits);
#endif

/* ---- DLR loss (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an
 * ensemble of diverse parameter-free attacks"; losses/dlr.c, CUDA twin cuda/loss_dlr.cu, both
 * built on the row function of losses/dlr_row.h). Per row z (K), with z_(1) >= z_(2) >= ... the
 * sorted logits (ties: lower class index first), in the form APGD ASCENDS:
 *   untargeted (targets NULL, K >= 3):
 *     L_i = -(z_y - max_{j != y} z_j) / (z_(1) - z_(3) + 1e-12)
 *   targeted (targets (N) on the device, K >= 4; APGD-T):
 *     L_i = -(z_y - z_t) / (z_(1) - (z_(3) + z_(4)) / 2 + 1e-12)
 * Both are invariant to shifting and scaling the logits, so saturated softmax (huge logits)
 * does not zero the gradient. loss = weight * (1/n) sum_i L_i; per_sample (n) = L_i
 * (unweighted); dlogits (n, K) = dloss/dz (APGD passes weight = n: the gradient of the SUM, as
 * the reference's loss_indiv.sum()). The sort is treated as constant (a subgradient at ties),
 * as autograd through torch.sort does. */
al_status al_dlr_loss(al_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                      const int32_t *targets, float weight, double *loss, float *per_sample,
                      float *dlogits);
al_status al_dlr_loss_cpu(al_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                          const int32_t *targets, float weight, double *loss, float *per_sample,
                          float *dlogits);
#ifdef AL_HAVE_CUDA
al_status al_dlr_loss_cuda(al_ctx *ctx, int n, int k, const float *logits,
                           const int32_t *labels, const int32_t *targets, float weight,
                           double *loss, float *per_sample, float *dlogits);
#endif

#ifdef __cplusplus
}
#endif
#endif
