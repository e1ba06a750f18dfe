/* square.h: Square Attack (Andriushchenko et al. 2020, "Square Attack: a query-efficient
 * black-box adversarial attack via random search"), Linf and L2, score-based: forward passes
 * only (fra31/auto-attack square.py read for the algorithm; not copied).
 * Implementation: attacks/square.c (device-agnostic; proposals built from Philox draws, on
 * the host or, on CUDA, on the device; one batched forward per iteration). Shapes: x, x_adv (N, C, H, W) in [0,1] on ctx's
 * device; y (N) int32 true labels on the device; success (N) uint8 on the device (optional).
 *
 * Contract (as attacks/fab.h): n <= model max_batch; x_adv must not alias x; x_adv[i] = the
 * adversarial point found (inside the eps-ball and [0,1]) or the clean x[i] where the attack
 * failed; success re-verified by a fresh eval-mode forward; the model is used only through
 * al_model_forward (eval mode, slot 0), never backward; deterministic for (seed, stream). */
#ifndef AL_SQUARE_H
#define AL_SQUARE_H

#include "attacks/pgd_step.h"
#include "core/model.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct al_square_spec {
    al_norm norm;   /* AL_LINF | AL_L2 */
    float eps;      /* ball radius (pixel units), > 0 */
    int n_queries;  /* iterations (model queries per point after the init) (5000) */
    float p_init;   /* initial fraction of pixels per square (0.8) */
    int n_restarts; /* restarts on the points still robust (1) */
    /* On CUDA, the iterations run on the device (cuda/attack_square.cu: no per-iteration
     * image copies, one host wait for the query count; L2 for images of <= 16 channels);
     * 1 keeps them on the host, the reference path (tests compare the two). */
    int host_proposals;
} al_square_spec;

/* AutoAttack-standard Square: 5000 queries, p_init 0.8, 1 restart. */
al_square_spec al_square_spec_default(al_norm norm, float eps);

/* Run Square on n points (see the contract above). Untargeted margin loss. Errors:
 * AL_ERR_VALUE for a bad spec or n, AL_ERR_OOM; model errors propagate. */
al_status al_square_run(al_ctx *ctx, al_model *m, const al_square_spec *s, const float *x,
                        const int32_t *y, int n, uint64_t seed, uint64_t stream, float *x_adv,
                        uint8_t *success /* device (n) */);

#ifdef __cplusplus
}
#endif
#endif
