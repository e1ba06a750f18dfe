/* ancra.h: the ANCRA objective and its negatives (methods.md §3.2-3.3; changzhang777/ANCRA
 * @b3ebc8e TRADES-ANCRA/train_CIFAR10_ResNet.py trades_loss_with_ANC, loss_fn, pick_neg).
 * CPU reference + dispatchers: losses/ancra.c. CUDA twin: cuda/loss_contrastive.cu.
 *
 * ONE HEAD of the loss (the method sums the final head with weight 1 and each auxiliary RA
 * head with weight cr_beta / n_aux), per anchor i with P = softmax(z_nat_i),
 * A = softmax(z_adv_i), Q = softmax(z_neg_i) (z_neg_i: the negative paired with anchor i):
 *   CE_i  = -log P[y_i]
 *   KL_i  = KL(P || A)                         (KLDivLoss(log A, P), target NOT detached)
 *   ANC_i = alpha * a(P.detach, Q) + (1 - alpha) * a(Q.detach, P)      (loss_fn)
 *   a(P, Q) = 1[argmax P == argmax Q] * sqrt(max P * max Q)             (loss_fn_ori)
 *   loss  = weight / n * sum_i (CE_i + beta KL_i + zeta pair_i ANC_i)
 * The ANC pair term is a masked similarity: only pairs whose predicted classes agree count,
 * the similarity being the geometric mean of the two top probabilities. With c = the common
 * argmax and s = sqrt(max P max Q) its gradients reduce to
 *   d/dz_neg = w/n zeta alpha       s/2 (onehot(c) - Q)
 *   d/dz_nat += w/n zeta (1-alpha)  s/2 (onehot(c) - P)
 * (alpha = 1, the default: the natural example is frozen, only the negative is pushed away).
 * Memory: logits/labels/pair/gradients on ctx's device; loss/parts host. Gradients '=' (each
 * optional). parts (3) optional: the unweighted means (1/n) sum CE_i, KL_i, pair_i ANC_i.
 * Rows are evaluated in double (max-subtracted log-sum-exp) and rounded once to float; argmax
 * takes the lowest index on ties (on logits; exp is monotone). Labels outside [0, k) return
 * AL_ERR_VALUE naming the index. */
#ifndef AL_LOSS_ANCRA_H
#define AL_LOSS_ANCRA_H

#include "core/ctx.h"
#include "core/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

al_status al_ancra_head_loss(al_ctx *ctx, int n, int k, const float *z_nat, const float *z_adv,
                             const float *z_neg, const int32_t *labels,
                             const uint8_t *pair /* (n) 0 = no negative, or NULL */, float weight,
                             float beta, float zeta, float alpha, double *loss, double *parts,
                             float *d_nat, float *d_adv, float *d_neg);

/* ---- negatives (pick_neg with sample_class_number = sample_number = 1) ----
 * kind AL_ANCRA_PICK_RANDOM: a class c != y_i present in the batch, uniformly, then a row of
 * class c, uniformly. HARD / SOFT / EASY (logits (n, k): the clean eval-mode logits, pred =
 * their argmax): candidates j with y_j != y_i and
 *   hard: pred_j == y_i;   soft: pred_j == pred_i;   easy: pred_j != y_i and pred_j != pred_i
 * and the candidate with the largest logits[j, y_i] wins (ties: lowest j); no candidate ->
 * the random rule. A batch with no class other than y_i gives idx_i = i, valid_i = 0 (the
 * pair is then left out of the ANC term; the official code raises there).
 * Draws: word 2i of Philox(seed, stream) picks the class, word 2i+1 the row, by integer
 * scaling ((u * count) >> 32), so both backends pick the same rows. Candidate classes are
 * taken in the order of their first row in the batch (uniform either way). */
enum { AL_ANCRA_PICK_RANDOM = 0, AL_ANCRA_PICK_HARD, AL_ANCRA_PICK_SOFT, AL_ANCRA_PICK_EASY };
al_status al_ancra_pick_neg(al_ctx *ctx, int n, int k, const int32_t *labels,
                            const float *logits /* (n, k) or NULL for random */, int kind,
                            uint64_t seed, uint64_t stream, int32_t *idx /* (n) */,
                            uint8_t *valid /* (n) */);
/* dst (n, d) row i = src row idx[i]; dst_labels[i] = labels[idx[i]] when both are non-NULL. */
al_status al_ancra_gather(al_ctx *ctx, int n, size_t d, const float *src, const int32_t *idx,
                          float *dst, const int32_t *labels, int32_t *dst_labels);

/* The per-anchor rule shared by both backends (style rule 5). pred (n): argmax of each row's
 * logits (unused for random); returns the negative's row, *valid = 0 when there is none. */
AL_HOSTDEV int al_ancra_pick_one(int i, int n, int k, const int32_t *labels, const int32_t *pred,
                                 const float *logits, int kind, uint64_t seed, uint64_t stream,
                                 int *valid) {
    const int yi = labels[i];
    *valid = 1;
    if (kind != AL_ANCRA_PICK_RANDOM) {
        int best = -1;
        float bs = 0.0f;
        for (int j = 0; j < n; j++) {
            if (labels[j] == yi) continue;
            const int pj = pred[j];
            const int ok = kind == AL_ANCRA_PICK_HARD   ? pj == yi
                           : kind == AL_ANCRA_PICK_SOFT ? pj == pred[i]
                                                        : (pj != yi && pj != pred[i]);
            if (!ok) continue;
            const float sc = logits[(size_t)j * k + yi];
            if (best < 0 || sc > bs) {
                best = j;
                bs = sc;
            }
        }
        if (best >= 0) return best;
    }
    /* random: count the candidate classes (first rows of labels != y_i) */
    int n_cls = 0;
    for (int j = 0; j < n; j++) {
        if (labels[j] == yi) continue;
        int first = 1;
        for (int q = 0; q < j && first; q++) first = labels[q] != labels[j];
        n_cls += first;
    }
    if (n_cls == 0) {
        *valid = 0;
        return i;
    }
    const uint32_t u1 = al_rng_u32(seed, stream, 2 * (uint64_t)i);
    const uint32_t u2 = al_rng_u32(seed, stream, 2 * (uint64_t)i + 1);
    int r = (int)(((uint64_t)u1 * (uint64_t)n_cls) >> 32), cls = -1;
    for (int j = 0; j < n && cls < 0; j++) {
        if (labels[j] == yi) continue;
        int first = 1;
        for (int q = 0; q < j && first; q++) first = labels[q] != labels[j];
        if (first && r-- == 0) cls = labels[j];
    }
    int cnt = 0;
    for (int j = 0; j < n; j++) cnt += labels[j] == cls;
    int r2 = (int)(((uint64_t)u2 * (uint64_t)cnt) >> 32);
    for (int j = 0; j < n; j++)
        if (labels[j] == cls && r2-- == 0) return j;
    *valid = 0; /* unreachable: cnt >= 1 */
    return i;
}

/* CPU references (the dispatchers call these for AL_DEV_CPU). */
al_status al_ancra_head_loss_cpu(al_ctx *ctx, int n, int k, const float *z_nat,
                                 const float *z_adv, const float *z_neg, const int32_t *labels,
                                 const uint8_t *pair, float weight, float beta, float zeta,
                                 float alpha, double *loss, double *parts, float *d_nat,
                                 float *d_adv, float *d_neg);
al_status al_ancra_pick_neg_cpu(al_ctx *ctx, int n, int k, const int32_t *labels,
                                const float *logits, int kind, uint64_t seed, uint64_t stream,
                                int32_t *idx, uint8_t *valid);
al_status al_ancra_gather_cpu(al_ctx *ctx, int n, size_t d, const float *src, const int32_t *idx,
                              float *dst, const int32_t *labels, int32_t *dst_labels);
#ifdef AL_HAVE_CUDA
al_status al_ancra_head_loss_cuda(al_ctx *ctx, int n, int k, const float *z_nat,
                                  const float *z_adv, const float *z_neg, const int32_t *labels,
                                  const uint8_t *pair, float weight, float beta, float zeta,
                                  float alpha, double *loss, double *parts, float *d_nat,
                                  float *d_adv, float *d_neg);
al_status al_ancra_pick_neg_cuda(al_ctx *ctx, int n, int k, const int32_t *labels,
                                 const float *logits, int kind, uint64_t seed, uint64_t stream,
                                 int32_t *idx, uint8_t *valid);
al_status al_ancra_gather_cuda(al_ctx *ctx, int n, size_t d, const float *src, const int32_t *idx,
                               float *dst, const int32_t *labels, int32_t *dst_labels);
#endif

#ifdef __cplusplus
}
#endif
#endif
