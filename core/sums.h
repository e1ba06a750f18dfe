/* sums.h: a training step's scalars (loss, correct count) kept where they are computed, so the
 * training loop does not wait on the device every step (style rule 15, DESIGN "hot path").
 *
 * Deferral. While ctx->defer points at an al_sums (memory on ctx's device), every op that
 * returns a host scalar through `double *loss` (al_xent, al_xent_smooth, al_trades_loss,
 * al_trades_kl, al_mart_loss, al_cw_margin, al_dlr_loss, al_dfa_loss, al_drsl_penalty,
 * al_ancra_head_loss) or `int *n_correct` (al_count_correct) instead ADDS that value to
 * defer->v[AL_SUM_LOSS] / v[AL_SUM_CORRECT], stores 0 in the host output and does not wait:
 * on CUDA the op's final reduction kernel adds it on the device (no copy, no sync); on the CPU
 * the dispatcher adds the twin's value (so the CPU runs the same protocol and its tests see any
 * host arithmetic a method does on a deferred value). A label outside [0, K) that a deferred
 * CUDA op meets is recorded (bad_*) instead of failing the call; the CPU twins still fail at
 * once. An op's optional `parts` output cannot be deferred (AL_ERR_VALUE if given).
 * What this asks of a method's step (core/methods/method.h): its reported loss is the plain SUM
 * of the host outputs of its loss calls (weights go into the calls), and no value it reads
 * back steers the step (the `!isfinite(*loss)` early returns see 0 and run the backward; the
 * trainer's checks below catch a non-finite loss before anything is saved). al_attack_run
 * suspends the deferral (its objective values steer restarts and early stops) and skips its
 * first-iteration label check, because the step's deferred losses check the same labels.
 *
 * The trainer (core/train.c) opens the deferral around each method step, folds the step with
 * al_sums_fold (on the device: one single-thread launch) and reads the al_sums back
 * (al_sums_read: one host read) only at step records (run.log_every), progress redraws, the
 * end of an epoch and a stop, where it also fails on a non-finite loss or a bad label. */
#ifndef AL_SUMS_H
#define AL_SUMS_H

#include <math.h>

#include "core/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { AL_SUM_LOSS = 0, AL_SUM_CORRECT = 1 };

typedef struct al_sums {
    double v[2];         /* the open step's deferred values (zeroed by the fold) */
    double last[2];      /* the last folded step's values */
    double total[2];     /* since the reset: sum of loss * n, sum of correct counts */
    double n;            /* examples folded since the reset */
    int64_t steps;       /* steps folded since the reset */
    int64_t bad_step;    /* first folded step whose loss was not finite; -1: none */
    double bad_loss;     /* that step's loss (NaN or +-Inf) */
    int32_t bad_index;   /* row of the first label outside [0, bad_k) a deferred op met; -1 */
    int32_t bad_label, bad_k, pad;
    /* deferred gradient clipping (al_optim_clip_coef_deferred, core/optim.h) */
    double grad_norm;      /* the last step's global L2 norm of the trainable gradients */
    double clip_coef;      /* its torch clip_grad_norm_ coefficient: the SGD step's grad scale */
    int64_t bad_grad_step; /* first optimiser step whose gradient norm was not finite; -1 */
    double bad_grad_norm;
} al_sums;

/* The fold of the open step (n examples, global step `step`): one code for the CPU and the
 * CUDA single-thread kernel, so both accumulate in the same order (the trainer's host loop
 * before deferral: total += loss * n). */
AL_HOSTDEV void al_sums_fold_elem(al_sums *s, int n, int64_t step) {
    s->last[0] = s->v[0];
    s->last[1] = s->v[1];
    s->total[0] += s->v[0] * n;
    s->total[1] += s->v[1];
    s->n += n;
    s->steps++;
    if (!isfinite(s->v[0]) && s->bad_step < 0) {
        s->bad_step = step;
        s->bad_loss = s->v[0];
    }
    s->v[0] = s->v[1] = 0.0;
}

/* A deferred op's value (and its first bad label, index < 0: none). */
AL_HOSTDEV void al_sums_add_elem(al_sums *s, int slot, double v, int bad_index, int bad_label,
                                 int k) {
    s->v[slot] += v;
    if (bad_index >= 0 && s->bad_index < 0) {
        s->bad_index = bad_index;
        s->bad_label = bad_label;
        s->bad_k = k;
    }
}

/* torch.nn.utils.clip_grad_norm_'s coefficient for a finite gradient norm:
 * min(1, max_norm / (norm + 1e-6)). The one formula of al_optim_clip_coef (both backends) and
 * the deferred clipping below. */
AL_HOSTDEV double al_clip_coef(double norm, double max_norm) {
    const double c = max_norm / (norm + 1e-6);
    return c < 1.0 ? c : 1.0;
}

/* Deferred clipping from the masked sum of squares sq of the gradients, shared by the CPU and
 * the CUDA final kernel. A non-finite norm gives coef NaN (never 0 or 1: the step must not pass
 * for a good one) and is recorded for the trainer's next read. */
AL_HOSTDEV void al_sums_clip_elem(al_sums *s, double sq, double max_norm, int64_t step) {
    const double norm = sqrt(sq);
    s->grad_norm = norm;
    s->clip_coef = isfinite(norm) ? al_clip_coef(norm, max_norm) : (double)NAN;
    if (!isfinite(norm) && s->bad_grad_step < 0) {
        s->bad_grad_step = step;
        s->bad_grad_norm = norm;
    }
}

/* *s = empty (bad_step = bad_index = bad_grad_step = -1, clip_coef = 1), on ctx's device: an
 * H2D copy, no host read. */
al_status al_sums_reset(al_ctx *ctx, al_sums *s);
/* Fold the open step into s (see al_sums_fold_elem); CUDA: one launch, no sync. */
al_status al_sums_fold(al_ctx *ctx, al_sums *s, int n, int64_t step);
/* *host = *s: one host read (the only wait of a deferred training step). */
al_status al_sums_read(al_ctx *ctx, const al_sums *s, al_sums *host);

/* The CPU arm of a deferring dispatcher: st is the twin's status; with ctx->defer set and a
 * value wanted, add *v to its slot and store 0 there. */
static inline al_status al_defer_cpu(al_ctx *ctx, al_status st, int slot, double *v) {
    if (st == AL_OK && ctx->defer && v) {
        al_sums_add_elem(ctx->defer, slot, *v, -1, 0, 0);
        *v = 0.0;
    }
    return st;
}
static inline al_status al_defer_cpu_count(al_ctx *ctx, al_status st, int *n_correct) {
    if (st == AL_OK && ctx->defer && n_correct) {
        al_sums_add_elem(ctx->defer, AL_SUM_CORRECT, (double)*n_correct, -1, 0, 0);
        *n_correct = 0;
    }
    return st;
}
/* A dispatcher's refusal of an output that cannot be deferred (`parts`). */
al_status al_defer_refuse(const al_ctx *ctx, const char *fn, const void *parts);

#ifdef __cplusplus
}
#endif
#endif
