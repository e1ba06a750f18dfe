/* dfa.c: DFA pivot loss (methods.md §1.2, HaozheLiu-ST/DynamicFeatureAggregation models.py
 * @53f2fd9 `dynamic_aggregate` + train.py `mixup_criterion`) and the Philox mixup helpers
 * shared with IAT: CPU references and dispatchers. Twin: cuda/loss_dfa.cu.
 * Shapes: embeddings (N, D), head W (K, D), images (N, D_in), labels (N). Write modes: '='.
 *
 * Per row i (everything in double from the float inputs, rounded once at the end):
 *   p_j = lam a_j + (1 - lam) b_j;  u_c = sum_j W_cj p_j;  v_c = sum_j W_cj m_j  (m = e_mix)
 *   s_c = |u_c| + |v_c|;  lse = log sum_c exp(s_c)  (max subtracted)
 *   cls_i = lam (lse - s_ya) + (1 - lam) (lse - s_yb)
 *   t_j = p_j + noise_std n_ij;  mse_i = sum_j (m_j - t_j)^2
 *   g_c = (exp(s_c - lse) - lam [c == ya] - (1 - lam) [c == yb]) / N
 *   dp_j = sum_c W_cj g_c sgn(u_c);  dm_j = sum_c W_cj g_c sgn(v_c) + 2/(N D) (m_j - t_j)
 *   de_a = lam dp, de_b = (1 - lam) dp, de_mix = dm
 *   loss = sum_i cls_i / N + sum_i mse_i / (N D)
 * The class sums run c = 0..K-1 in order on both backends; only the j-sums (u, v, mse) differ
 * in order between CPU and CUDA (double: far below the final float rounding). */
#include "losses/dfa.h"
#include "core/sums.h"

#include <math.h>
#include <stdlib.h>

#include "core/rng.h"
#include "losses/rowops.h"

/* ------------------------------------------------------------------ Philox draws (host) */

/* Sequential reader of one Philox stream's 32-bit words. */
typedef struct seq {
    uint64_t seed, stream, word;
} seq;

/* Uniform double in (0, 1): 53 random bits from two words, offset by half an ulp so neither
 * 0 nor 1 occurs (log(u) and log(1-u) stay finite). */
static double seq_uniform(seq *s) {
    const uint32_t a = al_rng_u32(s->seed, s->stream, s->word++) >> 5; /* 27 bits */
    const uint32_t b = al_rng_u32(s->seed, s->stream, s->word++) >> 6; /* 26 bits */
    return ((double)a * 67108864.0 + (double)b + 0.5) * (1.0 / 9007199254740992.0);
}

/* Standard normal (Box-Muller, one of the pair; the other is discarded to keep draws simple). */
static double seq_normal(seq *s) {
    const double u1 = seq_uniform(s), u2 = seq_uniform(s);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}

/* log of a Gamma(a, 1) draw, a > 0. Marsaglia & Tsang for a >= 1 (acceptance >= 95%, so the
 * loop ends after a few tries; the cap only guards an impossible Philox pathology); a < 1
 * boosted: log G(a) = log G(a + 1) + log(U) / a, kept in log space (G(a) underflows double
 * for small a). */
static double log_gamma_draw(seq *s, double a) {
    if (a < 1.0) {
        const double lg = log_gamma_draw(s, a + 1.0);
        return lg + log(seq_uniform(s)) / a;
    }
    const double d = a - 1.0 / 3.0, c = 1.0 / sqrt(9.0 * d);
    for (int tries = 0; tries < 100000; tries++) {
        const double x = seq_normal(s);
        double v = 1.0 + c * x;
        if (v <= 0.0) continue;
        v = v * v * v;
        const double u = seq_uniform(s), x2 = x * x;
        if (u < 1.0 - 0.0331 * x2 * x2 || log(u) < 0.5 * x2 + d * (1.0 - v + log(v)))
            return log(d) + log(v);
    }
    AL_ASSERT(0, "Marsaglia-Tsang did not accept in 100000 tries (a = %g)", a);
    return 0.0;
}

double al_beta_sample(uint64_t seed, uint64_t stream, uint64_t word0, double alpha) {
    AL_ASSERT(alpha > 0 && isfinite(alpha), "Beta(alpha, alpha) needs alpha > 0, got %g", alpha);
    seq s = {seed, stream, word0};
    const double lx = log_gamma_draw(&s, alpha), ly = log_gamma_draw(&s, alpha);
    /* X / (X + Y) = 1 / (1 + exp(log Y - log X)); exp overflow gives lam = 0, as it should */
    return 1.0 / (1.0 + exp(ly - lx));
}

void al_philox_perm(uint64_t seed, uint64_t stream, uint64_t word0, int n, int32_t *idx) {
    seq s = {seed, stream, word0};
    for (int i = 0; i < n; i++) idx[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)(seq_uniform(&s) * (double)(i + 1)); /* uniform in [0, i] */
        if (j > i) j = i;                                  /* u < 1 already; belt and braces */
        const int32_t t = idx[i];
        idx[i] = idx[j];
        idx[j] = t;
    }
}

/* ------------------------------------------------------------------ mixup pairs */

al_status al_mixup_pairs_cpu(al_ctx *ctx, int n, size_t d_in, float lam, const float *x,
                             const int32_t *y, const int32_t *idx, float *x_b, float *x_mix,
                             int32_t *y_b) {
    (void)ctx;
    for (int i = 0; i < n; i++) {
        const float *xa = x + (size_t)i * d_in, *xb = x + (size_t)idx[i] * d_in;
        if (x_b)
            for (size_t j = 0; j < d_in; j++) x_b[(size_t)i * d_in + j] = xb[j];
        if (x_mix)
            for (size_t j = 0; j < d_in; j++) x_mix[(size_t)i * d_in + j] = al_mix_elem(lam, xa[j], xb[j]);
        if (y_b) y_b[i] = y[idx[i]];
    }
    return AL_OK;
}

al_status al_mixup_pairs(al_ctx *ctx, int n, size_t d_in, float lam, const float *x,
                         const int32_t *y, const int32_t *idx, float *x_b, float *x_mix,
                         int32_t *y_b) {
    if (n < 1 || d_in < 1)
        return AL_FAIL(AL_ERR_VALUE, "al_mixup_pairs: n=%d d=%zu (need >= 1)", n, d_in);
    switch (ctx->device) {
    case AL_DEV_CPU: return al_mixup_pairs_cpu(ctx, n, d_in, lam, x, y, idx, x_b, x_mix, y_b);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_mixup_pairs_cuda(ctx, n, d_in, lam, x, y, idx, x_b, x_mix, y_b));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_mixup_pairs: unknown device %d", (int)ctx->device);
}

/* ------------------------------------------------------------------ DFA pivot loss */

static inline double sgn(double v) { return v > 0.0 ? 1.0 : (v < 0.0 ? -1.0 : 0.0); }

al_status al_dfa_loss_cpu(al_ctx *ctx, int n, int d, int k, const float *e_mix, const float *e_a,
                          const float *e_b, const float *w, float lam, const int32_t *y_a,
                          const int32_t *y_b, float noise_std, uint64_t seed, uint64_t stream,
                          double *loss, double *parts, float *logits, float *de_mix, float *de_a,
                          float *de_b) {
    int bad = first_bad_label(y_a, n, k);
    if (bad >= 0)
        return AL_FAIL(AL_ERR_VALUE, "al_dfa_loss: y_a label %d at index %d outside [0,%d)",
                       (int)y_a[bad], bad, k);
    bad = first_bad_label(y_b, n, k);
    if (bad >= 0)
        return AL_FAIL(AL_ERR_VALUE, "al_dfa_loss: y_b label %d at index %d outside [0,%d)",
                       (int)y_b[bad], bad, k);
    const double l = lam, l1 = 1.0 - l, inv_n = 1.0 / n, c_mse = 2.0 / ((double)n * d);
    /* per-row scratch: u, v, su, sv (K each) and p, t (D each), in double; from the ctx
     * workspace (reserved at model setup, so the training step does not allocate), or the heap
     * for callers without one (tests) */
    const size_t n_bytes = ((size_t)4 * k + 2 * (size_t)d) * sizeof(double);
    const size_t mark = al_ctx_scratch_mark(ctx);
    const size_t start = (ctx->scratch_used + 63) & ~(size_t)63;
    const int heap = !ctx->scratch || start + n_bytes > ctx->scratch_bytes;
    double *u = heap ? malloc(n_bytes) : al_ctx_scratch(ctx, n_bytes);
    if (!u) return AL_FAIL(AL_ERR_OOM, "al_dfa_loss: out of memory for K=%d D=%d rows", k, d);
    double *v = u + k, *su = v + k, *sv = su + k, *p = sv + k, *t = p + d;
    double sum_cls = 0.0, sum_mse = 0.0;
    for (int i = 0; i < n; i++) {
        const size_t off = (size_t)i * d;
        const float *m = e_mix + off, *a = e_a + off, *b = e_b + off;
        double mse = 0.0;
        for (int j = 0; j < d; j++) {
            p[j] = l * a[j] + l1 * b[j];
            const double nz =
                noise_std != 0.0f
                    ? (double)noise_std * al_rng_normal(seed, stream, AL_DFA_NOISE_BASE + off + j)
                    : 0.0;
            t[j] = p[j] + nz;
            const double e = (double)m[j] - t[j];
            mse += e * e;
        }
        for (int c = 0; c < k; c++) {
            const float *wc = w + (size_t)c * d;
            double su_ = 0.0, sv_ = 0.0;
            for (int j = 0; j < d; j++) {
                su_ += (double)wc[j] * p[j];
                sv_ += (double)wc[j] * m[j];
            }
            u[c] = su_;
            v[c] = sv_;
        }
        double mx = -INFINITY;
        for (int c = 0; c < k; c++) mx = fmax(mx, fabs(u[c]) + fabs(v[c]));
        double se = 0.0;
        for (int c = 0; c < k; c++) se += exp(fabs(u[c]) + fabs(v[c]) - mx);
        const double lse = mx + log(se);
        const int ya = y_a[i], yb = y_b[i];
        const double sa = fabs(u[ya]) + fabs(v[ya]), sb = fabs(u[yb]) + fabs(v[yb]);
        sum_cls += l * (lse - sa) + l1 * (lse - sb);
        sum_mse += mse;
        for (int c = 0; c < k; c++) {
            const double s = fabs(u[c]) + fabs(v[c]);
            if (logits) logits[(size_t)i * k + c] = (float)s;
            const double g =
                (exp(s - lse) - (c == ya ? l : 0.0) - (c == yb ? l1 : 0.0)) * inv_n;
            su[c] = g * sgn(u[c]);
            sv[c] = g * sgn(v[c]);
        }
        if (!de_mix && !de_a && !de_b) continue;
        for (int j = 0; j < d; j++) {
            double dp = 0.0, dm = 0.0;
            for (int c = 0; c < k; c++) {
                const double wcj = w[(size_t)c * d + j];
                dp += wcj * su[c];
                dm += wcj * sv[c];
            }
            dm += c_mse * ((double)m[j] - t[j]);
            if (de_mix) de_mix[off + j] = (float)dm;
            if (de_a) de_a[off + j] = (float)(l * dp);
            if (de_b) de_b[off + j] = (float)(l1 * dp);
        }
    }
    if (heap)
        free(u);
    else
        al_ctx_scratch_release(ctx, mark);
    const double cls = sum_cls * inv_n, lmix = sum_mse / ((double)n * d);
    *loss = cls + lmix;
    if (parts) {
        parts[0] = cls;
        parts[1] = lmix;
    }
    return AL_OK;
}

al_status al_dfa_loss(al_ctx *ctx, int n, int d, int k, const float *e_mix, const float *e_a,
                      const float *e_b, const float *w, float lam, const int32_t *y_a,
                      const int32_t *y_b, float noise_std, uint64_t seed, uint64_t stream,
                      double *loss, double *parts, float *logits, float *de_mix, float *de_a,
                      float *de_b) {
    if (n < 1 || d < 1 || k < 2)
        return AL_FAIL(AL_ERR_VALUE, "al_dfa_loss: n=%d d=%d k=%d (need n, d >= 1, k >= 2)", n, d,
                       k);
    if (!(lam >= 0.0f && lam <= 1.0f))
        return AL_FAIL(AL_ERR_VALUE, "al_dfa_loss: lam = %g outside [0, 1]", (double)lam);
    AL_TRY(al_defer_refuse(ctx, "al_dfa_loss", parts));
    al_note_host_read(ctx, loss);
    switch (ctx->device) {
    case AL_DEV_CPU:
        return al_defer_cpu(ctx,
                            al_dfa_loss_cpu(ctx, n, d, k, e_mix, e_a, e_b, w, lam, y_a, y_b,
                                            noise_std, seed, stream, loss, parts, logits, de_mix,
                                            de_a, de_b),
                            AL_SUM_LOSS, loss);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_dfa_loss_cuda(ctx, n, d, k, e_mix, e_a, e_b, w, lam, y_a, y_b, noise_std,
                                         seed, stream, loss, parts, logits, de_mix, de_a, de_b));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_dfa_loss: unknown device %d", (int)ctx->device);
}
