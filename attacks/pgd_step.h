/* pgd_step.h: the per-element PGD step shared by CPU and CUDA (style rule 5).
 * One step: x <- clamp_[0,1]( proj_{B_eps(x0)}( x + alpha * dir(g) ) ) where dir is sign(g)
 * for Linf and g/||g||_2 (per example) for L2. Projection for L2 scales the whole delta,
 * so it needs the per-example delta norm: the L2 step is two passes (norms, then update).
 * Twin: cuda/attack_pgd_step.cu calls the same AL_HOSTDEV functions.
 * NaN handling (documented, tested): a NaN gradient element is treated as 0 (no move), so
 * the output stays inside the ball and [0,1]; a NaN or +-Inf in x restarts that element at
 * x0. Inf gradients: Linf moves by sign(+-Inf) = +-1 (well defined); L2 treats +-Inf elements
 * like NaN (0): g/||g|| is undefined with an infinite element. The L2 per-example norm is
 * taken over the finite elements; a norm of 0, non-finite, or whose inverse overflows float
 * (< ~3e-39) gives inv_gnorm = 0: that example does not move (it is still projected and clamped).
 * eps = 0 returns x0 exactly; an L2 delta whose norm is <= eps is not rescaled (scale = 1). */
#ifndef AL_PGD_STEP_H
#define AL_PGD_STEP_H

#include <math.h>

#include "core/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum al_norm { AL_LINF = 0, AL_L2 = 1 } al_norm;

AL_HOSTDEV float al_clampf(float v, float lo, float hi) { return v < lo ? lo : (v > hi ? hi : v); }

AL_HOSTDEV float al_signf(float g) { return g > 0.0f ? 1.0f : (g < 0.0f ? -1.0f : 0.0f); }

/* 1 for finite v, 0 for NaN and +-Inf (v - v is NaN exactly then; needs IEEE, no fast-math). */
AL_HOSTDEV int al_pgd_finitef(float v) { return v - v == 0.0f; }

/* L2 helpers shared by both backends, given the per-example sums (accumulated in double on the
 * CPU): inverse gradient norm (0 = do not move, see above) and the projection scale. */
AL_HOSTDEV float al_pgd_l2_inv_gnorm(double sumsq_finite) {
    double nrm = sqrt(sumsq_finite);
    if (!(nrm > 0.0) || !(nrm < 1e300)) return 0.0f;
    double inv = 1.0 / nrm;
    return inv < 3.0e38 ? (float)inv : 0.0f;
}
AL_HOSTDEV float al_pgd_l2_scale(double delta_sumsq, float eps) {
    double nrm = sqrt(delta_sumsq);
    return nrm > (double)eps ? (float)((double)eps / nrm) : 1.0f;
}

/* Linf step for one element: returns the new x. `g` is the ascent direction's raw gradient. */
AL_HOSTDEV float al_pgd_linf_elem(float x, float x0, float g, float alpha, float eps) {
    if (g != g) g = 0.0f;
    if (!al_pgd_finitef(x)) x = x0;
    float v = x + alpha * al_signf(g);
    v = al_clampf(v, x0 - eps, x0 + eps);
    return al_clampf(v, 0.0f, 1.0f);
}

/* L2 step, first half for one element: the unprojected value x + alpha * g / gnorm. */
AL_HOSTDEV float al_pgd_l2_ascend_elem(float x, float x0, float g, float alpha, float inv_gnorm) {
    if (!al_pgd_finitef(g)) g = 0.0f; /* NaN and +-Inf (see the header comment) */
    if (!al_pgd_finitef(x)) x = x0;
    return x + alpha * g * inv_gnorm;
}
/* L2 projection for one element given delta scale s = min(1, eps/||delta||): then [0,1]. */
AL_HOSTDEV float al_pgd_l2_project_elem(float v, float x0, float scale) {
    return al_clampf(x0 + (v - x0) * scale, 0.0f, 1.0f);
}

/* Whole-batch step (dispatcher: CPU loop or CUDA kernel). x (n, d) updated in place;
 * x0 (n, d) clean inputs; g (n, d) gradient of the loss to ascend; for targeted attacks the
 * caller passes the negated gradient. `scratch` unused on CPU. */
al_status al_pgd_step(al_ctx *ctx, al_norm norm, int n, size_t d, float *x, const float *x0,
                      const float *g, float alpha, float eps);
al_status al_pgd_step_cpu(al_ctx *ctx, al_norm norm, int n, size_t d, float *x, const float *x0,
                          const float *g, float alpha, float eps);
#ifdef AL_HAVE_CUDA
al_status al_pgd_step_cuda(al_ctx *ctx, al_norm norm, int n, size_t d, float *x, const float *x0,
                           const float *g, float alpha, float eps);
#endif

#ifdef __cplusplus
}
#endif
#endif
