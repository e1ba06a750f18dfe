/* dfa.h: Dynamic Feature Aggregation's pivot loss (methods.md §1.2) and the mixup helpers it
 * shares with Interpolated AT (methods.md §5.4): Beta draws and permutations from Philox, the
 * paired mixing of a batch, and the aggregation loss with its gradients.
 * CPU references + dispatchers: losses/dfa.c. CUDA twins: cuda/loss_dfa.cu.
 * Shapes: images (N, D_in) row-major (an image = C*H*W floats); embeddings (N, D); the head
 * W (K, D) PyTorch layout; labels (N) int32. Device arrays live on ctx's device; scalars are
 * host. Write modes: every output array '='. */
#ifndef AL_LOSS_DFA_H
#define AL_LOSS_DFA_H

#include "core/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- randomness of a mixup step (host, from Philox; reproducible and resumable) ----
 * A method step draws everything from the stream al_stream(AL_STREAM_METHOD, step), at
 * disjoint index ranges: sequence q (a Beta draw, a permutation) reads 32-bit words from
 * AL_MIX_WORDS(q) on (2^40 words each, far more than any draw consumes); the DFA target noise
 * reads normal number AL_DFA_NOISE_BASE + i*D + j (al_rng_normal: block index/2, i.e. blocks
 * from 2^61, above every word range). */
#define AL_MIX_WORDS(q) ((uint64_t)(q) << 40)
#define AL_DFA_NOISE_BASE ((uint64_t)1 << 62)

/* lam ~ Beta(alpha, alpha) (alpha > 0), in [0, 1]. X, Y ~ Gamma(alpha, 1) by Marsaglia & Tsang
 * (ACM TOMS 26(3), 2000) on Philox doubles (53-bit uniforms, Box-Muller normals) from word
 * `word0` on; alpha < 1 by the boost Gamma(a) = Gamma(a + 1) U^(1/a). Both draws are kept in
 * log space and lam = 1 / (1 + exp(log Y - log X)), so small alpha (where X and Y underflow
 * double) still gives a lam in [0, 1] instead of 0/0. Same distribution as np.random.beta,
 * not the same numbers. */
double al_beta_sample(uint64_t seed, uint64_t stream, uint64_t word0, double alpha);
/* idx (n, host) = a uniformly random permutation of 0..n-1 (Fisher-Yates, descending, on
 * 53-bit Philox uniforms from word `word0` on). Same distribution as torch.randperm. */
void al_philox_perm(uint64_t seed, uint64_t stream, uint64_t word0, int n, int32_t *idx);

/* The one mixing rule of both backends (--fmad=false in cuda/: bitwise the same). */
AL_HOSTDEV float al_mix_elem(float lam, float a, float b) { return lam * a + (1.0f - lam) * b; }

/* Paired mixup of a batch, pairing row i with row idx[i]:
 *   x_b[i] = x[idx[i]] (optional), x_mix[i] = lam x[i] + (1 - lam) x[idx[i]], y_b[i] = y[idx[i]]
 * (optional). x (N, D_in), idx (N) in [0, N) (unchecked: from al_philox_perm), y (N) device.
 * In pixel space; the model's first node normalises, and (x - mean)/std is affine, so this
 * equals the official mixing of normalised inputs up to float rounding. */
al_status al_mixup_pairs(al_ctx *ctx, int n, size_t d_in, float lam, const float *x,
                         const int32_t *y, const int32_t *idx, float *x_b, float *x_mix,
                         int32_t *y_b);

/* DFA pivot loss on three embeddings of the same batch (official `dynamic_aggregate` with
 * x_a = x, x_b = x[idx], x_mix = lam x_a + (1 - lam) x_b; e_* = the L2-normalised features):
 *   p      = lam e_a + (1 - lam) e_b                       (the pivot)
 *   t      = p + noise_std * n,  n_ij = al_rng_normal(seed, stream, AL_DFA_NOISE_BASE + i*D + j)
 *   L_mix  = 1/(N D) sum_ij (e_mix_ij - t_ij)^2            (t detached: no gradient)
 *   s      = |W p| + |W e_mix|                             (N, K): the pivot is NOT detached
 *   L_cls  = 1/N sum_i lam CE(s_i, y_a_i) + (1 - lam) CE(s_i, y_b_i)
 *   loss   = L_cls + L_mix;  parts (2, host, optional) = {L_cls, L_mix}
 * Gradients ('=', each optional): with g = dL_cls/ds = (softmax(s) - lam 1[y_a] - (1-lam) 1[y_b])/N,
 *   de_mix = W^T (g . sign(W e_mix)) + 2/(N D) (e_mix - t)
 *   de_a   = lam W^T (g . sign(W p)),   de_b = (1 - lam) W^T (g . sign(W p))
 * (sign(0) = 0, torch.abs' subgradient). logits (N, K) optional = s (float). W is the frozen
 * head: no dW. Every row is evaluated in double (max-subtracted log-sum-exp). Labels outside
 * [0, K) return AL_ERR_VALUE naming the array and index. */
al_status al_dfa_loss(al_ctx *ctx, int n, int d, int k, const float *e_mix, const float *e_a,
                      const float *e_b, const float *w, float lam, const int32_t *y_a,
                      const int32_t *y_b, float noise_std, uint64_t seed, uint64_t stream,
                      double *loss, double *parts, float *logits, float *de_mix, float *de_a,
                      float *de_b);

al_status al_mixup_pairs_cpu(al_ctx *ctx, int n, size_t d_in, float lam, const float *x,
                             const int32_t *y, const int32_t *idx, float *x_b, float *x_mix,
                             int32_t *y_b);
al_status al_dfa_loss_cpu(al_ctx *ctx, int n, int d, int k, const float *e_mix, const float *e_a,
                          const float *e_b, const float *w, float lam, const int32_t *y_a,
                          const int32_t *y_b, float noise_std, uint64_t seed, uint64_t stream,
                          double *loss, double *parts, float *logits, float *de_mix, float *de_a,
                          float *de_b);
#ifdef AL_HAVE_CUDA
al_status al_mixup_pairs_cuda(al_ctx *ctx, int n, size_t d_in, float lam, const float *x,
                              const int32_t *y, const int32_t *idx, float *x_b, float *x_mix,
                              int32_t *y_b);
al_status al_dfa_loss_cuda(al_ctx *ctx, int n, int d, int k, const float *e_mix,
                           const float *e_a, const float *e_b, const float *w, float lam,
                           const int32_t *y_a, const int32_t *y_b, float noise_std, uint64_t seed,
                           uint64_t stream, double *loss, double *parts, float *logits,
                           float *de_mix, float *de_a, float *de_b);
#endif

#ifdef __cplusplus
}
#endif
#endif
