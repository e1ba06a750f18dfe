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
 * d/dz_j = (p_j - (1-s) [j = y] - s/K) / n. The framework's loss library has no smoothed CE
 * yet, so it is evaluated here on the host in double (CUDA: the (n, K) logits are copied down
 * and the gradient up, two small copies per forward). TODO(#7): al_xent_smooth in losses/.
 * The architecture is the config's (nf_resnet18 for NoFrost proper: no BN anywhere); the
 * attack recipe is [attack] with train.bn_mode_attack = auto -> eval and random_init = auto
 * -> uniform for this method (core/config.c). n_correct counts the adversarial logits. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/methods/method.h"
#include "losses/loss.h"

typedef struct nofrost_state {
    float *h_logits; /* (max_batch, k) host staging (CUDA) */
    float *h_grad;   /* (max_batch, k) host staging (CUDA) */
    int32_t *h_y;    /* (max_batch) labels on the host */
    int cap;         /* rows */
} nofrost_state;

static al_status nf_setup(al_step_io *io) {
    const al_cfg_nofrost *c = &io->cfg->nofrost;
    if (io->no_attack && c->lam > 0)
        return AL_FAIL(AL_ERR_CONFIG, "nofrost: lam = %g needs a training attack", c->lam);
    int n_bn = 0;
    for (int i = 0; i < io->m->n_nodes; i++) n_bn += io->m->nodes[i].kind == AL_NODE_BN;
    if (n_bn > 0)
        al_log_warn("nofrost: arch %s has %d BN layers; NoFrost proper removes BN (use nf_resnet18)",
                    io->m->arch, n_bn);
    nofrost_state *s = calloc(1, sizeof *s);
    if (!s) return AL_FAIL(AL_ERR_OOM, "nofrost: out of memory");
    s->cap = io->m->max_batch;
    s->h_y = al_malloc((size_t)s->cap * sizeof(int32_t), "nofrost labels");
    if (!s->h_y) {
        free(s);
        return AL_ERR_OOM;
    }
    if (io->ctx->device != AL_DEV_CPU) {
        s->h_logits = al_malloc((size_t)s->cap * io->k * sizeof(float), "nofrost logits staging");
        s->h_grad = al_malloc((size_t)s->cap * io->k * sizeof(float), "nofrost gradient staging");
        if (!s->h_logits || !s->h_grad) {
            al_free(s->h_logits);
            al_free(s->h_grad);
            al_free(s->h_y);
            free(s);
            return AL_ERR_OOM;
        }
    }
    io->state = s;
    return AL_OK;
}

static void nf_teardown(al_step_io *io) {
    nofrost_state *s = io->state;
    if (!s) return;
    al_free(s->h_logits);
    al_free(s->h_grad);
    al_free(s->h_y);
    free(s);
    io->state = NULL;
}

/* Label-smoothed CE of logits (n, k) (ctx device) with labels y (n) (ctx device): *loss +=
 * weight * mean_i LSCE_i; dlogits (n, k) (ctx device) = d(weight * mean LSCE)/dz. Labels are
 * read on the host: y_host (n). */
static al_status lsce(al_step_io *io, const float *logits, const int32_t *y_host, int n,
                      double smoothing, double weight, double *loss, float *dlogits) {
    nofrost_state *s = io->state;
    const int k = io->k;
    const int on_dev = io->ctx->device != AL_DEV_CPU;
    const float *z = logits;
    float *g = dlogits;
    if (on_dev) {
        AL_TRY(al_copy_to_host(io->ctx, s->h_logits, logits, (size_t)n * k * sizeof(float)));
        z = s->h_logits;
        g = s->h_grad;
    }
    const double conf = 1.0 - smoothing, scale = weight / n;
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const float *zi = z + (size_t)i * k;
        const int yi = y_host[i];
        if (yi < 0 || yi >= k)
            return AL_FAIL(AL_ERR_VALUE, "nofrost: label %d at index %d outside [0,%d)", yi, i, k);
        double mx = -INFINITY;
        for (int j = 0; j < k; j++) mx = fmax(mx, (double)zi[j]);
        double se = 0.0, sz = 0.0;
        for (int j = 0; j < k; j++) {
            se += exp((double)zi[j] - mx);
            sz += (double)zi[j];
        }
        const double lse = mx + log(se);
        /* -log p_y and -mean_j log p_j = lse - mean_j z_j */
        sum += conf * (lse - (double)zi[yi]) + smoothing * (lse - sz / k);
        float *gi = g + (size_t)i * k;
        for (int j = 0; j < k; j++) {
            const double t = (j == yi ? conf : 0.0) + smoothing / k;
            gi[j] = (float)(scale * (exp((double)zi[j] - lse) - t));
        }
    }
    *loss += weight * sum / n;
    if (on_dev) AL_TRY(al_copy_to_dev(io->ctx, dlogits, g, (size_t)n * k * sizeof(float)));
    return AL_OK;
}

static al_status step_nofrost(al_step_io *io, double *loss, int *n_correct) {
    al_ctx *ctx = io->ctx;
    al_model *m = io->m;
    nofrost_state *s = io->state;
    const double lam = io->cfg->nofrost.lam, sm = io->cfg->nofrost.label_smoothing;
    AL_ASSERT(io->n <= s->cap, "nofrost: batch %d above %d", io->n, s->cap);
    /* labels on the host for the smoothed CE (a copy of n int32 on CUDA) */
    int32_t *y_host = s->h_y;
    al_status st = AL_OK;
    AL_CHECK(al_copy_to_host(ctx, y_host, io->y, (size_t)io->n * sizeof(int32_t)));
    *loss = 0.0;
    /* 1. clean forward (train mode) */
    al_fwd_opts o0 = al_step_train_opts(io, 0, 0);
    AL_CHECK(al_model_forward(ctx, m, io->x, io->n, &o0));
    AL_CHECK(lsce(io, al_model_logits(m, 0), y_host, io->n, sm, 1.0 - lam, loss, io->dl[0]));
    const int adv = lam > 0;
    if (adv) {
        /* 2. attack in slot 1 (eval mode per the config's auto BN mode) */
        al_attack_spec sp = io->spec;
        sp.fwd.slot = 1;
        AL_CHECK(al_step_attack(io, &sp, io->x, io->y, io->xadv));
        /* 3. adversarial forward (train mode) */
        al_fwd_opts o1 = al_step_train_opts(io, 1, 1);
        AL_CHECK(al_model_forward(ctx, m, io->xadv, io->n, &o1));
        AL_CHECK(lsce(io, al_model_logits(m, 1), y_host, io->n, sm, lam, loss, io->dl[1]));
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
