/* method.h: training methods as one interface (the trainer's attack-in-the-loop + loss step).
 * A method is {name, slots, setup, step}; the trainer (core/train.c) owns data, schedule,
 * optimiser, logging and checkpoints, and calls step() once per batch. step() runs the
 * method's attack(s) and forward(s), computes the loss, zeroes the gradients and runs the
 * backward passes that leave dLoss/dW in m->grads. The optimiser step is the trainer's.
 *
 * Files: core/methods/baselines.c (standard, pgd_at, fast_at, trades, mart) and one file per
 * seed method (core/methods/<name>.c) exporting `const al_method_def al_method_<name>`;
 * core/methods/registry.c lists them (a method whose file is absent from the build is
 * reported as not built, never silently replaced). */
#ifndef AL_METHOD_H
#define AL_METHOD_H

#include "attacks/attack.h"
#include "core/config.h"
#include "core/model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define AL_STEP_MAX_SLOTS 4

/* Everything a step sees. Device buffers are sized for max_batch = the local batch. */
typedef struct al_step_io {
    al_ctx *ctx;
    al_model *m;
    const al_config *cfg;
    al_attack_ws *ws;              /* attack workspace (max_batch) */
    al_attack_spec spec;           /* the training attack of [attack]/[train] (al_train_spec_from_config) */
    int no_attack;                 /* the method's spec is "none" */
    const float *x;                /* (n, d) clean batch in [0,1] (augmented) */
    const int32_t *y;              /* (n) labels */
    int n, k;
    size_t d;                      /* floats per image */
    float *xadv;                   /* (max_batch, d) scratch inputs */
    float *xaux[2];                /* (max_batch, d) more scratch inputs (negatives, mixes) */
    int32_t *yaux[2];              /* (max_batch) scratch labels */
    float *dl[AL_STEP_MAX_SLOTS];  /* (max_batch, k) logit gradients, one per slot */
    float *dfeat[AL_STEP_MAX_SLOTS]; /* (max_batch, feature dim) feature gradients */
    float *fbuf[4];                /* (max_batch, max(k, feature dim)) method scratch */
    int64_t step;                  /* global optimiser step (0-based) */
    int epoch;                     /* 0-based */
    uint64_t seed;                 /* run.seed */
    void *state;                   /* method state from setup() (freed by teardown) */
} al_step_io;

typedef struct al_method_def {
    al_method method;              /* config enum value (train.method) */
    const char *name;
    int n_slots;                   /* activation slots the step keeps alive */
    /* optional: check the config/model combination and allocate method state */
    al_status (*setup)(al_step_io *io);
    void (*teardown)(al_step_io *io);
    /* one batch: attacks, forwards, loss, zero_grad, backward. *loss: the objective value
     * (finite check by the trainer), *n_correct: correct predictions of the logits the
     * method reports (adversarial for AT methods, clean for standard). The trainer runs it
     * with the step's scalars deferred (core/sums.h): *loss must be the plain sum of the
     * loss calls' host outputs and *n_correct al_count_correct's, which then read 0 on the
     * host while the values accumulate on the device; nothing read back may steer the step. */
    al_status (*step)(al_step_io *io, double *loss, int *n_correct);
    /* optional: graph changes and evaluation settings the method needs on the built model,
     * before al_model_setup (e.g. MultiBN's BN-branch selector, m->eval_branch) */
    al_status (*build)(al_model *m, const al_config *cfg);
} al_method_def;

/* The definition of a configured method, or AL_ERR_UNSUPPORTED naming it when its file is
 * not part of this build. */
al_status al_method_lookup(al_method method, const al_method_def **def);

/* Helpers for steps. */
/* The training attack into io->xadv from io->x (dropout stream: step*4 + 3). */
al_status al_step_attack(al_step_io *io, const al_attack_spec *spec, const float *x,
                         const int32_t *y, float *xadv);
/* Train-mode forward options of forward number `k` (0..3) of this step in `slot`. */
al_fwd_opts al_step_train_opts(const al_step_io *io, int slot, int k);
/* DRSL penalty (losses/drsl.c) added to a CE-type logit gradient when train.drsl_weight > 0:
 * adds to *loss and to dlogits ('+='). No-op when the weight is 0. */
al_status al_step_add_drsl(al_step_io *io, const float *logits, const int32_t *y, int n,
                           double *loss, float *dlogits);

#ifdef __cplusplus
}
#endif
#endif
