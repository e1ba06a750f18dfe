/* fab.h: FAB attack (Croce & Hein 2020, "Minimally distorted adversarial examples with a fast
 * adaptive boundary attack"), the targeted variant FAB-T used by AutoAttack "standard"
 * (fra31/auto-attack fab_pt.py / fab_base.py, read for the algorithm; not copied).
 * Implementation: attacks/fab.c (device-agnostic driver; per-example geometry on the host).
 * Shapes: x, x_adv (N, C, H, W) in [0,1] on ctx's device; y (N) int32 true labels on the
 * device; success (N) uint8 on the device (optional, may be NULL).
 *
 * Contract (shared with attacks/square.h and used by attacks/autoattack.c):
 *  - n <= model max_batch; x_adv must not alias x.
 *  - x_adv[i] = the smallest-norm adversarial point found if it lies within eps (norm s->norm),
 *    otherwise the clean x[i]. x_adv is inside the eps-ball and [0,1].
 *  - success[i] = 1 iff a fresh eval-mode forward pass on x_adv[i] misclassifies it
 *    (argmax != y[i]; FAB-T success is untargeted misclassification, as in AutoAttack).
 *  - The model is used only through al_model_forward (eval mode, slot 0) and al_model_backward
 *    with AL_BWD_INPUT (no weight gradients); slot 0's activations are overwritten.
 *  - Deterministic: the same (seed, stream, inputs, spec) gives a bit-identical x_adv on a
 *    given backend. Random starts draw Philox(seed, stream, ...). */
#ifndef AL_FAB_H
#define AL_FAB_H

#include "attacks/pgd_step.h"
#include "core/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct al_fab_spec {
    al_norm norm;         /* AL_LINF | AL_L2 */
    float eps;            /* success radius (pixel units), > 0 */
    int n_iter;           /* iterations per restart and target (100) */
    int n_restarts;       /* restarts per target (1); restart 0 starts at x, later ones random */
    int n_target_classes; /* targets = top-k non-true classes by clean logit (9) */
    int targeted;         /* 1 = FAB-T (AutoAttack standard); 0 = untargeted FAB */
    float alpha_max;      /* max extrapolation weight (0.1) */
    float eta;            /* overshoot of the projection step (1.05) */
    float beta;           /* backward step towards x on success (0.9) */
    /* On CUDA, runs iterate on the device (cuda/attack_fab.cu: no per-iteration copies or
     * waits); 1 keeps the host loop, the reference path (tests compare the two). */
    int host_iterations;
} al_fab_spec;

/* AutoAttack-standard FAB-T: targeted, 9 targets, 100 iterations, 1 restart, alpha_max 0.1,
 * eta 1.05, beta 0.9. */
al_fab_spec al_fab_spec_default(al_norm norm, float eps);

/* Run FAB on n points (see the contract above). Errors: AL_ERR_VALUE for a bad spec or n
 * (the message names the field), AL_ERR_OOM, model errors propagate. Allocates its workspace
 * per call (setup cost, not the hot path of an evaluation). */
al_status al_fab_run(al_ctx *ctx, al_model *m, const al_fab_spec *s, const float *x,
                     const int32_t *y, int n, uint64_t seed, uint64_t stream, float *x_adv,
                     uint8_t *success /* device (n) */);

/* The FAB projection (the problem fab_projections.py solves, here solved exactly on the host in
 * double): the minimal-norm step d (norm Linf or L2) with t + d in [0,1]^D onto the hyperplane
 * {z : <w, z> = b}, given c = <w, t> - b. When the box makes the hyperplane unreachable, every
 * active element moves to the box face that brings <w, z> closest to b. Inactive elements
 * (Linf: w_j == 0; L2: |w_j| <= 1e-8, as the reference) get d_j = 0; c == 0 gives d = 0.
 * t (D) host floats, w (D) host floats, d (D) host doubles out ('='), scratch: 4*D doubles.
 * Returns ||d|| in the norm. Host-only, thread-safe. */
double al_fab_project(al_norm norm, size_t n_elems, const float *t, const float *w, double c,
                      double *d, void *scratch);

#ifdef __cplusplus
}
#endif
#endif
