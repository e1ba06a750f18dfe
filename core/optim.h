/* optim.h: SGD with PyTorch semantics, EMA of the weights, and LR/momentum schedules.
 * Twin: cuda/optim_sgd_ema.cu (al_sgd_step_cuda) runs the same per-element function
 * al_sgd_ema_elem below, fused over the whole parameter buffer in one launch.
 *
 * Buffers (style rule 17): the model's params (m->data) and grads (m->grads) plus ONE momentum
 * buffer and ONE EMA buffer of m->n_param_floats each, on the ctx device, all indexed by the
 * model's parameter table. A per-float mask byte, built once from that table, says what the
 * step does to each float: AL_OPT_TRAIN (trainable: SGD-updated, EMA-averaged) and
 * AL_OPT_DECAY (weight decay applies). Non-trainable floats (BN running stats, frozen layers)
 * are never touched by SGD.
 *
 * SGD step, per trainable element (torch.optim.SGD, dampening 0, maximize off):
 *   g = grad * grad_scale            (grad_scale: 1, or the clip-by-norm coefficient)
 *   g += weight_decay * p            if AL_OPT_DECAY
 *   if momentum != 0:  b = (first step ? g : momentum * b + g);  g = nesterov ? g + momentum*b : b
 *   p -= lr * g
 * "first step" is the first step taken with momentum != 0 (PyTorch creates the buffer then).
 * EMA, after the SGD step: e = d * e + (1 - d) * p for trainable floats; other floats (BN
 * running mean/var, frozen weights) are COPIED (e = p). Why copy: the running stats are
 * already an exponential average of batch statistics, and averaging them again would lag
 * behind the weights they normalise; this is what the robustness EMA recipes we follow do
 * (timm's ModelEmaV2 instead averages buffers too). The EMA starts as a copy of the
 * parameters at al_optim_init. */
#ifndef AL_OPTIM_H
#define AL_OPTIM_H

#include "core/config.h"
#include "core/model.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { AL_OPT_TRAIN = 1, AL_OPT_DECAY = 2 };

/* One step's hyper-parameters (float: the precision PyTorch applies them in). */
typedef struct al_sgd_hparams {
    float lr, momentum, weight_decay;
    float grad_scale; /* multiplies the gradient first (clip coefficient); 1 = none */
    int nesterov;
    int first;                            /* 1: momentum buffer = g (no history yet) */
    int ema;                              /* 1: update the EMA buffer after the step */
    float ema_decay, ema_one_minus_decay; /* d and (float)(1 - (double)d) */
} al_sgd_hparams;

/* The per-element update shared by the CPU loop and the CUDA kernel (style rule 5). Updates
 * *p, *buf (if momentum != 0), *e (if hp->ema). Plain float arithmetic, no fused multiply-add
 * (the CUDA twin must compile it with -fmad=false or __fmul_rn/__fadd_rn to stay bitwise
 * equal to the CPU). */
AL_HOSTDEV void al_sgd_ema_elem(unsigned mask, float *p, float grad, float *buf, float *e,
                                const al_sgd_hparams *hp) {
    float w = *p;
    if (mask & AL_OPT_TRAIN) {
        float g = grad * hp->grad_scale;
        if (mask & AL_OPT_DECAY) g = g + hp->weight_decay * w;
        if (hp->momentum != 0.0f) {
            float b = hp->first ? g : hp->momentum * *buf + g;
            *buf = b;
            g = hp->nesterov ? g + hp->momentum * b : b;
        }
        w = w - hp->lr * g;
        *p = w;
    }
    if (hp->ema) *e = (mask & AL_OPT_TRAIN) ? hp->ema_decay * *e + hp->ema_one_minus_decay * w : w;
}

/* Fixed optimiser settings (per-step lr/momentum come from the schedule). */
typedef struct al_sgd_opts {
    double momentum; /* maximum momentum (cycle_momentum varies it per step) */
    double weight_decay;
    int nesterov;
    int ema; /* keep an EMA buffer */
    double ema_decay;
} al_sgd_opts;
al_sgd_opts al_sgd_opts_from_config(const al_config *cfg);

typedef struct al_optim {
    al_sgd_opts opts;
    size_t n_floats; /* = model n_param_floats */
    uint8_t *mask;   /* (n_floats) AL_OPT_* bits, ctx device */
    float *momentum; /* (n_floats) momentum buffer, ctx device; NULL if momentum == 0 */
    float *ema;      /* (n_floats) EMA weights, ctx device; NULL if opts.ema == 0 */
    int64_t step;    /* optimiser steps taken (the next step is number `step`) */
    int have_buf;    /* momentum buffer holds history (PyTorch: state exists) */
} al_optim;

/* Allocate mask/momentum/EMA on ctx's device for a set-up model; EMA = current params. */
al_status al_optim_init(al_ctx *ctx, al_optim *o, const al_model *m, const al_sgd_opts *opts);
void al_optim_fini(al_ctx *ctx, al_optim *o); /* NULL-safe, half-built-safe */

/* One SGD (+EMA) step on m->data from m->grads with this step's lr and momentum (momentum <=
 * opts.momentum; pass opts.momentum without cycling). grad_scale multiplies the gradient
 * (1, or the coefficient from al_optim_clip_coef). Increments o->step. Device: ctx->device. */
al_status al_optim_step(al_ctx *ctx, al_optim *o, al_model *m, double lr, double momentum,
                        double grad_scale);
/* The same step with lr and momentum from the config's schedule at o->step. */
al_status al_optim_step_sched(al_ctx *ctx, al_optim *o, al_model *m, const al_cfg_train *t,
                              int64_t steps_per_epoch, double grad_scale);

/* Global L2 norm of the trainable gradients (double accumulation) and the clip coefficient
 * torch.nn.utils.clip_grad_norm_ uses: min(1, max_norm / (norm + 1e-6)); max_norm <= 0 gives
 * 1. Pass *coef as grad_scale to the step. */
al_status al_optim_clip_coef(al_ctx *ctx, const al_optim *o, const al_model *m, double max_norm,
                             double *norm, double *coef);

/* The same clipping with no host wait (core/sums.h): the masked sum of squares on ctx's
 * device, then al_sums_clip_elem(s, sq, max_norm, o->step) there (s: ctx device memory), so
 * s->clip_coef is the coefficient, s->grad_norm the norm, and a non-finite norm is recorded in
 * s->bad_grad_step for the trainer's next read. Pass &s->clip_coef to al_optim_step_sched_dev. */
struct al_sums;
al_status al_optim_clip_coef_deferred(al_ctx *ctx, const al_optim *o, const al_model *m,
                                      double max_norm, struct al_sums *s);
/* al_optim_step_sched with the gradient scale read on the device from *dev_scale (ctx device
 * memory, a double rounded to float as grad_scale is). */
al_status al_optim_step_sched_dev(al_ctx *ctx, al_optim *o, al_model *m, const al_cfg_train *t,
                                  int64_t steps_per_epoch, const double *dev_scale);

/* Checkpoint hooks (core/checkpoint.h: al_train_state.momentum/.ema are host buffers of
 * n_param_floats). get: copy to host buffers (either NULL to skip; momentum is left untouched
 * when the optimiser has none). set (resume): step, momentum (NULL = no history: allowed only
 * at step 0 or without momentum) and EMA (NULL = restart the EMA from the current params). */
al_status al_optim_get_state(al_ctx *ctx, const al_optim *o, float *h_momentum, float *h_ema);
al_status al_optim_set_state(al_ctx *ctx, al_optim *o, const al_model *m, int64_t step,
                             const float *h_momentum, const float *h_ema);

/* Swap the model's parameters with the EMA (evaluate with EMA weights, then swap back). */
al_status al_optim_swap_ema(al_optim *o, al_model *m);

/* ---- schedules: pure functions of (step, steps_per_epoch, config), so resume is exact ----
 * step = optimiser steps already taken (0 for the first update). T = epochs *
 * steps_per_epoch, peak = lr_max > 0 ? lr_max : lr, W = round(warmup_epochs * spe).
 *   constant   lr
 *   multistep  lr * gamma^(number of milestones <= step / spe)   (MultiStepLR stepped per epoch)
 *   cosine     lr * (1 + cos(pi * step / T)) / 2                 (CosineAnnealingLR, T_max = T,
 *                                                                  eta_min 0, stepped per step)
 *   cyclic     peak * (1 - |2x - 1|), x = step/T - floor(step/T) (CyclicLR base 0, max peak,
 *                                                                  up = down = T/2, per step)
 *   onecycle   OneCycleLR(max_lr = peak, total_steps = T, pct_start, div_factor, final_div,
 *              cos annealing, two phases), stepped per step
 * then, for step < W, multiplied by (step + 1) / W (linear warm-up). */
double al_lr_at(const al_cfg_train *t, int64_t step, int64_t steps_per_epoch);
/* Momentum at a step: train.momentum, or with cycle_momentum the CyclicLR/OneCycleLR
 * inverse cycle between momentum_min (at peak lr) and momentum. */
double al_momentum_at(const al_cfg_train *t, int64_t step, int64_t steps_per_epoch);

/* CPU twin of al_sgd_step_cuda: the fused step over all n floats. momentum / ema may be
 * NULL when hp->momentum == 0 / !hp->ema. OpenMP static schedule (deterministic). */
void al_sgd_step_cpu(size_t n, const uint8_t *mask, float *params, const float *grads,
                     float *momentum, float *ema, const al_sgd_hparams *hp);

#ifdef __cplusplus
}
#endif
#endif
