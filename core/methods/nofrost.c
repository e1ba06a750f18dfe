/* nofrost.c: NoFrost (Wang et al., ICML 2022, "Removing Batch Normalization Boosts Adversarial
 * Training"; methods.md §5.3), read against amazon-research/normalizer-free-robust-training
 * @89cd8c5 PGDAT.py (not copied). One step, in the official order:
 *   1. logits = f(x), train mode (slot 0); loss_clean = LSCE(logits, y)
 *   2. x_adv = PGD(x) with the model in EVAL mode and no parameter gradients (advertorch
 *      PGDAttack under ctx_noparamgrad_and_eval: CE, uniform random start, clamp to [0,1]);
 *      the attack runs in slot 1 so the clean activations stay alive for the backward
 *   3. logits_adv = f(x_adv), train mode (slot 1); loss = (1-lam) loss_clean + lam LSCE(..)
 *   4. zero_grad, backward through both forwards
 * LSCE is timm's LabelSmoothingCrossEntropy: per row (1-s) * (-log p_y) + s * mean_j(-log p_j)
 * (the smoothing mass spread over all K classes, target included), averaged over the batch;
 * d/dz_j = (p_j - (1-s) [j = y] - s/K) / n: al_xent_smooth (losses/xent_smooth.c, CUDA twin
 * cuda/loss_xent_smooth.cu), on the context's device.
 * The architecture is the config's (nf_resnet18 for NoFrost proper: no BN anywhere); the
 * attack recipe is [attack] with train.bn_mode_attack = auto -> eval and random_init = auto
 * -> uniform for this method (core/config.c). n_correct counts the adversarial logits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/methods/method.h"
#include "losses/loss.h"

static al_status nf_setup(al_step_io *io) {
    const al_cfg_nofrost *c = &io->cfg->nofrost;
    if (io->no_attack && c->lam > 0)
        return AL_FAIL(AL_ERR_CONFIG, "nofrost: lam = %g needs a training attack", c->lam);
    int n_bn = 0;
    for (int i = 0; i < io->m->n_nodes; i++) n_bn += io->m->nodes[i].kind == AL_NODE_BN;
    if (n_bn > 0)
        al_log_warn("nofrost: arch %s has %d BN layers; NoFrost proper removes BN (use nf_resnet18)",
                    io->m->arch, n_bn);
    return AL_OK;
}

static void nf_teardown(al_step_io *io) { (void)io; }

/* *loss += weight * mean LSCE(logits, y); dlogits = its gradient (ctx device). */
static al_status lsce(al_step_io *io, const float *logits, double smoothing, double weight,
                      double *loss, float *dlogits) {
    double l = 0.0;
    AL_TRY(al_xent_smooth(io->ctx, io->n, io->k, logits, io->y, smoothing, weight,
                          &l, dlogits));
    *loss += l;
    return AL_OK;
}

static al_status step_nofrost(al_step_io *io, double *loss, int *n_correct) {
    al_ctx *ctx = io->ctx;
    al_model *m = io->m;
    const double lam = io->cfg->nofrost.lam, sm = io->cfg->nofrost.label_smoothing;
    al_status st = AL_OK;
    *loss = 0.0;
    /* 1. clean forward (train mode) */
    al_fwd_opts o0 = al_step_train_opts(io, 0, 0);
    AL_CHECK(al_model_forward(ctx, m, io->x, io->n, &o0));
    AL_CHECK(lsce(io, al_model_logits(m, 0), sm, 1.0 - lam, loss, io->dl[0]));
    const int adv = lam > 0;
    if (adv) {
        /* 2. attack in slot 1 (eval mode per the config's auto BN mode) */
        al_attack_spec sp = io->spec;
        sp.fwd.slot = 1;
        AL_CHECK(al_step_attack(io, &sp, io->x, io->y, io->xadv));
        /* 3. adversarial forward (train mode) */
        al_fwd_opts o1 = al_step_train_opts(io, 1, 1);
        AL_CHECK(al_model_forward(ctx, m, io->xadv, io->n, &o1));
        AL_CHECK(lsce(io, al_model_logits(m, 1), sm, lam, loss, io->dl[1]));
    }
    AL_CHECK(al_count_correct(ctx, io->n, io->k, al_model_logits(m, adv ? 1 : 0), io->y, n_correct,
                              NULL));
    if (!isfinite(*loss)) goto done;
    /* 4. gradients of both terms (a zero-weight term contributes nothing: skipped) */
    AL_CHECK(al_model_zero_grad(ctx, m));
    if (adv) AL_CHECK(al_model_backward(ctx, m, 1, io->dl[1], NULL, AL_BWD_WEIGHTS, NULL));
    if (lam < 1) AL_CHECK(al_model_backward(ctx, m, 0, io->dl[0], NULL, AL_BWD_WEIGHTS, NULL));
done:
    return st;
}

const al_method_def al_method_nofrost = {AL_METHOD_NOFROST, "nofrost", 2, nf_setup, nf_teardown,
                                         step_nofrost};
