/* baselines.c: standard, PGD-AT (Madry; Rice et al.), Fast AT (Wong et al.), TRADES (Zhang
 * et al.) and MART (Wang et al.) as al_method_def steps (methods.md §6). The attack recipe of
 * each comes from the config (al_train_spec_from_config: per-method BN mode and random start),
 * the forwards/loss/backward follow the official code. A DRSL term (methods.md §4) is added
 * to the CE of standard/pgd_at/fast_at and to TRADES' natural CE when drsl.weight > 0. */
#include <math.h>

#include "core/methods/method.h"
#include "losses/loss.h"

al_status al_step_attack(al_step_io *io, const al_attack_spec *spec, const float *x,
                         const int32_t *y, float *xadv) {
    al_attack_spec sp = *spec;
    sp.fwd.step = (uint64_t)io->step * 4 + 3;
    return al_attack_run(io->ctx, io->m, &sp, io->ws, x, y, io->n, io->seed,
                         al_stream(AL_STREAM_ATTACK, (uint64_t)io->step), xadv, NULL, NULL);
}

al_fwd_opts al_step_train_opts(const al_step_io *io, int slot, int k) {
    al_fwd_opts o = {slot, 1, 1, 0, (uint64_t)io->step * 4 + (uint64_t)k, NULL};
    return o;
}

al_status al_step_add_drsl(al_step_io *io, const float *logits, const int32_t *y, int n,
                           double *loss, float *dlogits) {
    const al_cfg_drsl *d = &io->cfg->drsl;
    if (d->weight <= 0) return AL_OK;
    double pen = 0;
    AL_TRY(al_drsl_penalty(io->ctx, n, io->k, logits, y, (float)d->weight, (int)d->variant, &pen,
                           dlogits));
    *loss += pen;
    return AL_OK;
}

/* CE on one forward of `x` (train mode, slot 0), optional DRSL, weight backward. */
static al_status ce_step(al_step_io *io, const float *x, double *loss, int *n_correct) {
    al_ctx *ctx = io->ctx;
    al_model *m = io->m;
    al_fwd_opts o = al_step_train_opts(io, 0, 0);
    AL_TRY(al_model_forward(ctx, m, x, io->n, &o));
    const float *z = al_model_logits(m, 0);
    float ce_w = io->cfg->drsl.weight > 0 ? (float)io->cfg->drsl.ce_weight : 1.0f;
    AL_TRY(al_xent(ctx, io->n, io->k, z, io->y, ce_w, loss, NULL, io->dl[0]));
    AL_TRY(al_step_add_drsl(io, z, io->y, io->n, loss, io->dl[0]));
    AL_TRY(al_count_correct(ctx, io->n, io->k, z, io->y, n_correct, NULL));
    if (!isfinite(*loss)) return AL_OK;
    AL_TRY(al_model_zero_grad(ctx, m));
    return al_model_backward(ctx, m, 0, io->dl[0], NULL, AL_BWD_WEIGHTS, NULL);
}

static al_status step_standard(al_step_io *io, double *loss, int *n_correct) {
    return ce_step(io, io->x, loss, n_correct);
}

/* PGD-AT and Fast AT differ only in the attack spec (PGD vs FGSM with random start). */
static al_status step_adv_ce(al_step_io *io, double *loss, int *n_correct) {
    AL_TRY(al_step_attack(io, &io->spec, io->x, io->y, io->xadv));
    return ce_step(io, io->xadv, loss, n_correct);
}

static al_status step_trades(al_step_io *io, double *loss, int *n_correct) {
    al_ctx *ctx = io->ctx;
    al_model *m = io->m;
    AL_TRY(al_step_attack(io, &io->spec, io->x, io->y, io->xadv));
    /* official order: f(x_nat) for CE, f(x_adv), f(x_nat) again as the KL target; all in
     * train mode (3 BN updates), gradient through all three (methods.md §6.2) */
    al_fwd_opts o0 = al_step_train_opts(io, 0, 0), o1 = al_step_train_opts(io, 1, 1),
                o2 = al_step_train_opts(io, 2, 2);
    AL_TRY(al_model_forward(ctx, m, io->x, io->n, &o0));
    AL_TRY(al_model_forward(ctx, m, io->xadv, io->n, &o1));
    AL_TRY(al_model_forward(ctx, m, io->x, io->n, &o2));
    AL_TRY(al_trades_loss(ctx, io->n, io->k, al_model_logits(m, 0), al_model_logits(m, 2),
                          al_model_logits(m, 1), io->y, (float)io->cfg->train.beta, loss, NULL,
                          io->dl[0], io->dl[2], io->dl[1]));
    AL_TRY(al_step_add_drsl(io, al_model_logits(m, 0), io->y, io->n, loss, io->dl[0]));
    AL_TRY(al_count_correct(ctx, io->n, io->k, al_model_logits(m, 1), io->y, n_correct, NULL));
    if (!isfinite(*loss)) return AL_OK;
    AL_TRY(al_model_zero_grad(ctx, m));
    for (int s = 2; s >= 0; s--) AL_TRY(al_model_backward(ctx, m, s, io->dl[s], NULL, AL_BWD_WEIGHTS, NULL));
    return AL_OK;
}

static al_status step_mart(al_step_io *io, double *loss, int *n_correct) {
    al_ctx *ctx = io->ctx;
    al_model *m = io->m;
    AL_TRY(al_step_attack(io, &io->spec, io->x, io->y, io->xadv));
    /* official order: logits = f(x_nat), logits_adv = f(x_adv), both train mode */
    al_fwd_opts o0 = al_step_train_opts(io, 0, 0), o1 = al_step_train_opts(io, 1, 1);
    AL_TRY(al_model_forward(ctx, m, io->x, io->n, &o0));
    AL_TRY(al_model_forward(ctx, m, io->xadv, io->n, &o1));
    AL_TRY(al_mart_loss(ctx, io->n, io->k, al_model_logits(m, 0), al_model_logits(m, 1), io->y,
                        (float)io->cfg->train.beta, loss, NULL, io->dl[0], io->dl[1]));
    AL_TRY(al_count_correct(ctx, io->n, io->k, al_model_logits(m, 1), io->y, n_correct, NULL));
    if (!isfinite(*loss)) return AL_OK;
    AL_TRY(al_model_zero_grad(ctx, m));
    for (int s = 1; s >= 0; s--) AL_TRY(al_model_backward(ctx, m, s, io->dl[s], NULL, AL_BWD_WEIGHTS, NULL));
    return AL_OK;
}

const al_method_def al_method_standard = {AL_METHOD_STANDARD, "standard", 1, NULL, NULL, step_standard};
const al_method_def al_method_pgd_at = {AL_METHOD_PGD_AT, "pgd_at", 1, NULL, NULL, step_adv_ce};
const al_method_def al_method_fast_at = {AL_METHOD_FAST_AT, "fast_at", 1, NULL, NULL, step_adv_ce};
const al_method_def al_method_trades = {AL_METHOD_TRADES, "trades", 3, NULL, NULL, step_trades};
const al_method_def al_method_mart = {AL_METHOD_MART, "mart", 2, NULL, NULL, step_mart};
