/* ancra.c: ANCRA head loss (CE + beta KL + zeta ANC pair term), negative selection and row
 * gather; CPU reference + dispatchers (see ancra.h). Twin: cuda/loss_contrastive.cu.
 * Shapes: logits (N, K) row-major, labels/idx (N) int32, pair/valid (N) uint8, rows (N, d).
 * Write modes: every output '='. Each row is evaluated in double from the float inputs
 * (max-subtracted log-sum-exp, rowops.h) and rounded once, so the CUDA twin differs only by
 * the order of its double sums. */
#include "losses/ancra.h"
#include "core/sums.h"

#include <math.h>
#include <string.h>

#include "losses/rowops.h"

/* One anchor: returns CE, KL and the ANC value through ce/kl/anc; writes the row gradients
 * of weight/n * (CE + beta KL + zeta pair ANC) when the pointers are non-NULL. */
static void head_row(int k, const float *zn, const float *za, const float *zq, int y, int pair,
                     double wn, double beta, double zeta, double alpha, double *ce, double *kl,
                     double *anc, float *dn, float *da, float *dq) {
    const double lse_n = row_lse(zn, k), lse_a = row_lse(za, k), lse_q = row_lse(zq, k);
    double kls = 0.0;
    for (int j = 0; j < k; j++) {
        const double lp = (double)zn[j] - lse_n, la = (double)za[j] - lse_a;
        kls += exp(lp) * (lp - la);
    }
    /* the pair term: argmax agreement of P and Q, s = sqrt(max P * max Q) */
    const int c = row_argmax_excl(zn, k, -1), cq = row_argmax_excl(zq, k, -1);
    double s = 0.0;
    if (pair && c == cq) s = sqrt(exp((double)zn[c] - lse_n) * exp((double)zq[cq] - lse_q));
    *ce = lse_n - (double)zn[y];
    *kl = kls;
    *anc = s;
    const double gn = wn * zeta * (1.0 - alpha) * 0.5 * s, gq = wn * zeta * alpha * 0.5 * s;
    for (int j = 0; j < k; j++) {
        const double lp = (double)zn[j] - lse_n, la = (double)za[j] - lse_a;
        const double p = exp(lp), a = exp(la);
        if (dn)
            dn[j] = (float)(wn * (p - (j == y ? 1.0 : 0.0)) + wn * beta * p * ((lp - la) - kls) +
                            gn * ((j == c ? 1.0 : 0.0) - p));
        if (da) da[j] = (float)(wn * beta * (a - p));
        if (dq) dq[j] = (float)(gq * ((j == cq ? 1.0 : 0.0) - exp((double)zq[j] - lse_q)));
    }
}

al_status al_ancra_head_loss_cpu(al_ctx *ctx, int n, int k, const float *z_nat,
                                 const float *z_adv, const float *z_neg, const int32_t *labels,
                                 const uint8_t *pair, float weight, float beta, float zeta,
                                 float alpha, double *loss, double *parts, float *d_nat,
                                 float *d_adv, float *d_neg) {
    (void)ctx;
    const int bad = first_bad_label(labels, n, k);
    if (bad >= 0)
        return AL_FAIL(AL_ERR_VALUE, "al_ancra_head_loss: label %d at index %d outside [0,%d)",
                       (int)labels[bad], bad, k);
    const double wn = (double)weight / n;
    double sce = 0.0, skl = 0.0, sanc = 0.0;
    for (int i = 0; i < n; i++) {
        const size_t o = (size_t)i * k;
        double ce, kl, anc;
        head_row(k, z_nat + o, z_adv + o, z_neg + o, labels[i], pair ? pair[i] : 1, wn, beta,
                 zeta, alpha, &ce, &kl, &anc, d_nat ? d_nat + o : NULL, d_adv ? d_adv + o : NULL,
                 d_neg ? d_neg + o : NULL);
        sce += ce;
        skl += kl;
        sanc += anc;
    }
    /* the CUDA twin's expression: w/n * (sum CE + beta sum KL + zeta sum ANC) */
    *loss = wn * (sce + (double)beta * skl + (double)zeta * sanc);
    if (parts) {
        parts[0] = sce / n;
        parts[1] = skl / n;
        parts[2] = sanc / n;
    }
    return AL_OK;
}

/* argmax of each row (the twin's torch.argmax order), into pred (n). */
static void row_preds(int n, int k, const float *logits, int32_t *pred) {
    for (int i = 0; i < n; i++) pred[i] = row_argmax_excl(logits + (size_t)i * k, k, -1);
}

al_status al_ancra_pick_neg_cpu(al_ctx *ctx, int n, int k, const int32_t *labels,
                                const float *logits, int kind, uint64_t seed, uint64_t stream,
                                int32_t *idx, uint8_t *valid) {
    int32_t *pred = NULL;
    size_t mark = al_ctx_scratch_mark(ctx);
    if (kind != AL_ANCRA_PICK_RANDOM) {
        pred = al_ctx_scratch(ctx, (size_t)n * sizeof(int32_t));
        row_preds(n, k, logits, pred);
    }
    for (int i = 0; i < n; i++) {
        int v;
        idx[i] = al_ancra_pick_one(i, n, k, labels, pred, logits, kind, seed, stream, &v);
        valid[i] = (uint8_t)v;
    }
    al_ctx_scratch_release(ctx, mark);
    return AL_OK;
}

al_status al_ancra_gather_cpu(al_ctx *ctx, int n, size_t d, const float *src, const int32_t *idx,
                              float *dst, const int32_t *labels, int32_t *dst_labels) {
    (void)ctx;
    for (int i = 0; i < n; i++) {
        memcpy(dst + (size_t)i * d, src + (size_t)idx[i] * d, d * sizeof(float));
        if (labels && dst_labels) dst_labels[i] = labels[idx[i]];
    }
    return AL_OK;
}

/* ---------------------------------------------------------------- dispatchers */

#define DISPATCH(cpu_call, cuda_call)                                                          \
    do {                                                                                       \
        if (ctx->device == AL_DEV_CPU) return cpu_call;                                        \
        AL_CUDA_OR_FAIL(cuda_call);                                                            \
    } while (0)

al_status al_ancra_head_loss(al_ctx *ctx, int n, int k, const float *z_nat, const float *z_adv,
                             const float *z_neg, const int32_t *labels, const uint8_t *pair,
                             float weight, float beta, float zeta, float alpha, double *loss,
                             double *parts, float *d_nat, float *d_adv, float *d_neg) {
    AL_ASSERT(n >= 1 && k >= 1 && z_nat && z_adv && z_neg && labels && loss,
              "al_ancra_head_loss n=%d k=%d", n, k);
    AL_TRY(al_defer_refuse(ctx, "al_ancra_head_loss", parts));
    al_note_host_read(ctx, loss);
    DISPATCH(
        al_defer_cpu(ctx,
                     al_ancra_head_loss_cpu(ctx, n, k, z_nat, z_adv, z_neg, labels, pair, weight,
                                            beta, zeta, alpha, loss, parts, d_nat, d_adv, d_neg),
                     AL_SUM_LOSS, loss),
        al_ancra_head_loss_cuda(ctx, n, k, z_nat, z_adv, z_neg, labels, pair, weight, beta, zeta,
                                alpha, loss, parts, d_nat, d_adv, d_neg));
}

al_status al_ancra_pick_neg(al_ctx *ctx, int n, int k, const int32_t *labels, const float *logits,
                            int kind, uint64_t seed, uint64_t stream, int32_t *idx,
                            uint8_t *valid) {
    AL_ASSERT(n >= 1 && k >= 1 && labels && idx && valid, "al_ancra_pick_neg n=%d k=%d", n, k);
    AL_ASSERT(kind >= AL_ANCRA_PICK_RANDOM && kind <= AL_ANCRA_PICK_EASY, "pick kind %d", kind);
    AL_ASSERT(kind == AL_ANCRA_PICK_RANDOM || logits, "al_ancra_pick_neg: kind %d needs logits",
              kind);
    DISPATCH(al_ancra_pick_neg_cpu(ctx, n, k, labels, logits, kind, seed, stream, idx, valid),
             al_ancra_pick_neg_cuda(ctx, n, k, labels, logits, kind, seed, stream, idx, valid));
}

al_status al_ancra_gather(al_ctx *ctx, int n, size_t d, const float *src, const int32_t *idx,
                          float *dst, const int32_t *labels, int32_t *dst_labels) {
    AL_ASSERT(n >= 1 && d >= 1 && src && idx && dst && src != dst, "al_ancra_gather n=%d", n);
    DISPATCH(al_ancra_gather_cpu(ctx, n, d, src, idx, dst, labels, dst_labels),
             al_ancra_gather_cuda(ctx, n, d, src, idx, dst, labels, dst_labels));
}
