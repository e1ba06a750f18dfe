/* attack.h: one interface for gradient attacks (model, x, y, spec -> x_adv, per-point success).
 * Implementation: attacks/attack.c (device-agnostic driver: model forward/backward-to-input,
 * losses/ dispatchers, al_pgd_step). Shapes: x, x_adv (N, C, H, W) in [0,1] on ctx's device,
 * labels/targets (N) int32 on the device, success (N) uint8 on the device.
 *
 * An attack never computes weight gradients (al_model_backward with AL_BWD_INPUT only) and
 * never touches model->grads; it overwrites the activations of spec->fwd.slot.
 * Outputs are always inside the eps-ball around x (Linf: |d| <= eps up to the rounding of
 * x + eps; L2: ||d|| <= eps (1 + 1e-6)) and inside [0,1].
 *
 * Recipes (official code, methods.md 6-7):
 *   PGD-AT (Madry, Rice):  PGD, Linf, eps 8/255, alpha 2/255, 10 steps, init UNIFORM, CE,
 *                          eval-mode BN, keep_clean_if_failed = 0
 *   TRADES attack:         PGD, Linf, eps 0.031, alpha 0.007, 10 steps, init NORMAL (0.001),
 *                          loss KL_TRADES, eval mode, keep_clean_if_failed = 0
 *   MART attack:           as TRADES but loss CE
 *   Fast-AT (Wong):        FGSM, init UNIFORM, alpha 1.25 eps, fwd.train = fwd.update_bn = 1
 *   Evaluation PGD-k:      PGD, init UNIFORM, restarts R, keep_clean_if_failed = 1 (formats.md 3)
 */
#ifndef AL_ATTACK_H
#define AL_ATTACK_H

#include "attacks/pgd_step.h"
#include "core/cuda_api.h"
#include "core/model.h"
#include "core/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum al_attack_type {
    AL_ATTACK_FGSM = 0, /* one step of size alpha (alpha <= 0: eps) from the start point */
    AL_ATTACK_PGD = 1,  /* `steps` projected steps of size alpha */
} al_attack_type;

typedef enum al_attack_init {
    AL_ATTACK_INIT_NONE = 0,    /* start at x */
    AL_ATTACK_INIT_UNIFORM = 1, /* Linf: x + U(-eps, eps) per element, clamped to [0,1].
                                 * L2: x + r * v / ||v||, v ~ N(0, I), r ~ eps * U(0, 1), clamped
                                 * (robust_overfitting's L2 start: radius uniform, NOT uniform in
                                 * volume, which would sit on the shell in high dimension) */
    AL_ATTACK_INIT_NORMAL = 2,  /* x + init_std * N(0, I), NOT clamped (TRADES/MART official: the
                                 * first step's projection and clamp bring it back) */
} al_attack_init;

typedef enum al_attack_loss_kind {
    AL_ATTACK_LOSS_CE = 0,        /* untargeted: ascend CE(z, y); targeted: descend CE(z, t) */
    AL_ATTACK_LOSS_CW = 1,        /* ascend the CW margin (losses/loss.h al_cw_margin) */
    AL_ATTACK_LOSS_KL_TRADES = 2, /* ascend sum_i KL(p(x_i) || p(x_adv_i)), p(x) from one clean
                                   * forward (same fwd opts, no BN update) at the start */
} al_attack_loss_kind;            /* (config.h owns the name al_attack_loss) */

typedef struct al_attack_spec {
    al_attack_type type;
    al_norm norm;
    float eps;    /* ball radius in pixel units ([0,1] images), >= 0 */
    float alpha;  /* step size (L2: step length); FGSM: <= 0 means eps */
    int steps;    /* PGD iterations, >= 0 (0: the projected start point); FGSM: always 1 */
    int restarts; /* >= 1; each restart draws a fresh start (restart index in the RNG) */
    al_attack_init init;
    float init_std; /* AL_ATTACK_INIT_NORMAL: noise std (0.001 in TRADES/MART) */
    al_attack_loss_kind loss;
    int targeted;           /* 1: success = classified as targets[i] (needs targets; not with KL) */
    const int32_t *targets; /* (N) device, targeted only */
    /* 1 (evaluation, formats.md 3): a point where no restart succeeded gets the CLEAN input.
     * 0 (training): it gets the max-objective restart (the last iterate when restarts = 1). */
    int keep_clean_if_failed;
    /* 1: once an iterate is adversarial its gradient is zeroed, so it stays there (the PGD of
     * Fast-AT's evaluate_pgd and robust_overfitting's early_stop). 0: plain PGD. */
    int early_stop;
    /* Forward options for every attack forward: slot, train (BN batch statistics + dropout),
     * update_bn (BN running stats, train only; Fast-AT updates them in its FGSM forward),
     * bn_branch, step (dropout stream). Bookkeeping forwards (clean KL target, end-of-restart
     * evaluation, final verification) use the same options with update_bn = 0. */
    al_fwd_opts fwd;
} al_attack_spec;

/* A spec with the evaluation defaults: restarts 1, init UNIFORM for PGD / NONE for FGSM,
 * init_std 0.001, loss CE, untargeted, keep_clean_if_failed 1, early_stop 0, eval mode, slot 0. */
al_attack_spec al_attack_spec_make(al_attack_type type, al_norm norm, float eps, float alpha,
                                   int steps);

/* Attack workspace for batches up to max_batch of model m (device buffers + host bookkeeping).
 * Allocate once at setup: al_attack_run then never allocates. */
typedef struct al_attack_ws {
    int max_batch, k;
    size_t d;          /* floats per example (C*H*W) */
    float *x_cur;      /* (B, d) device: the iterate */
    float *grad;       /* (B, d) device: input gradient */
    float *dlogits;    /* (B, K) device: objective gradient */
    float *logits_ref; /* (B, K) device: clean logits (KL target) */
    float *per_sample; /* (B) device: per-example objective */
    uint8_t *flag;     /* (B) device: per-example correct mask */
    float *h_x;        /* (B, d) host staging for the random start (NULL on CPU) */
    float *h_loss;     /* (B) host */
    double *h_best;    /* (B) host: best objective so far */
    uint8_t *h_flag;   /* (B) host */
    uint8_t *h_done;   /* (B) host: a successful restart was kept */
    /* CUDA: the captured iteration (core/cuda_api.h), recaptured by every al_attack_run call
     * and updated in place. One graph per iteration shape (graph_key: model, batch, norm,
     * objective, early stop, targeted, forward options), so a method that alternates attacks
     * (MultiBN's Linf and L2) updates each instead of instantiating at every call; the
     * least recently made is replaced. graph_off = 1 after a refused capture (eager from
     * then on). */
#define AL_ATTACK_GRAPHS 4
    struct al_cuda_graph *graph[AL_ATTACK_GRAPHS];
    uint64_t graph_key[AL_ATTACK_GRAPHS];
    int graph_next;
    int graph_off;
    /* (2, tracked_nodes * AL_MAX_BN_BRANCHES) host: BN counters before a capture, and what one
     * iteration adds to them (al_model_get_tracked) */
    int64_t *tracked;
    int tracked_nodes;
} al_attack_ws;

al_status al_attack_ws_init(al_ctx *ctx, al_attack_ws *ws, const al_model *m, int max_batch);
void al_attack_ws_fini(al_ctx *ctx, al_attack_ws *ws); /* accepts zeroed / half-built ws */
/* Totals over the workspace's CUDA graphs (nodes: the largest); zeros without CUDA. */
al_cuda_graph_info al_attack_ws_graph_info(const al_attack_ws *ws);

/* Run the attack on n <= min(ws->max_batch, m->max_batch) points.
 *   x (N,C,H,W) clean inputs, labels y (N) (true classes; success for untargeted attacks means
 *   argmax != y). x_adv (N,C,H,W) out, must not alias x. success (N) optional: 1 where a fresh
 *   forward pass on x_adv (spec->fwd, update_bn 0) misclassifies (untargeted) or hits the
 *   target (targeted); n_success (host) optional: their count. When both are NULL and
 *   restarts = 1 with keep_clean_if_failed = 0 (training), no extra forward is run.
 *   seed/stream: the random start draws Philox(seed, stream, index) (al_attack_rng_index);
 *   the same (seed, stream, inputs, spec) gives a bit-identical x_adv.
 *   ws: NULL allocates a workspace for this call (convenient; not for the hot path).
 * Errors: AL_ERR_VALUE for a bad spec or n (message names the field); loss/step errors
 * propagate (AL_ERR_UNSUPPORTED on CUDA for losses without a CUDA twin). */
al_status al_attack_run(al_ctx *ctx, al_model *m, const al_attack_spec *spec, al_attack_ws *ws,
                        const float *x, const int32_t *y, int n, uint64_t seed, uint64_t stream,
                        float *x_adv, uint8_t *success, int *n_success);

/* The checks every attack entry point (al_attack_run, al_apgd_run, al_fab_run, al_square_run)
 * makes of its model and buffers first: the model is set up, 1 <= n <= its max_batch, x, y
 * and x_adv are given and x_adv is not x. AL_ERR_VALUE with a message starting "fn: ". */
al_status al_attack_check_io(const char *fn, const al_model *m, int n, const float *x,
                             const int32_t *y, const float *x_adv);

/* ---- random start, per element (AL_HOSTDEV so a CUDA kernel can draw the identical start) ----
 * Index of element j of example i in restart r for a batch of n examples of d floats. L2
 * radii use word AL_ATTACK_RADIUS_WORD + r*n + i of the same stream (disjoint from the
 * normals' blocks for any batch below 2^60 elements). */
#define AL_ATTACK_RADIUS_WORD (1ull << 62)
AL_HOSTDEV uint64_t al_attack_rng_index(int r, int n, int i, size_t d, size_t j) {
    return ((uint64_t)r * (uint64_t)n + (uint64_t)i) * (uint64_t)d + (uint64_t)j;
}
/* Linf uniform start: clamp(x0 + eps (2u - 1), 0, 1) with u = al_rng_uniform(.., index). */
AL_HOSTDEV float al_attack_start_uniform_elem(float x0, float eps, uint64_t seed, uint64_t stream,
                                              uint64_t index) {
    float u = al_rng_uniform(seed, stream, index);
    return al_clampf(x0 + eps * (2.0f * u - 1.0f), 0.0f, 1.0f);
}
/* Normal start: x0 + std * N(0,1) (unclamped, as TRADES/MART). */
AL_HOSTDEV float al_attack_start_normal_elem(float x0, float std, uint64_t seed, uint64_t stream,
                                             uint64_t index) {
    return x0 + std * al_rng_normal(seed, stream, index);
}

#ifdef __cplusplus
}
#endif
#endif
