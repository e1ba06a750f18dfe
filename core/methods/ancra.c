/* ancra.c: TRADES-ANCRA (Zhou et al. 2023, arXiv 2310.03358; changzhang777/ANCRA @b3ebc8e
 * TRADES-ANCRA/train_CIFAR10_ResNet.py; methods.md §3) as an al_method_def step on an RA arch
 * (core/models/ancra_models.c). One step, in the official order:
 *   1. negatives (pick_neg): a random other-class row of the batch, or after
 *      [ancra] random_epochs epochs the hard/soft/easy rule on clean eval-mode logits
 *      (losses/ancra.h al_ancra_pick_neg); *_adv strategies then run t_pgd: a TARGETED PGD of
 *      the negative towards its anchor's label;
 *   2. x_adv = u_pgd(x): CE-based PGD, NOT the TRADES KL, in eval mode (the RA mask is the
 *      auxiliary head's argmax), loss CE(final) + cr_beta/n_aux sum_k CE(aux_k), start
 *      x + 0.001 N(0,1) ([attack] random_init auto), [attack] eps/alpha/steps;
 *   3. three train-mode forwards (3 BN updates): x_nat and x_adv with the true label as RA mask,
 *      x_neg with ITS OWN label (neg_gt);
 *   4. loss = sum over heads (final: weight 1, aux: cr_beta / n_aux) of
 *      CE + beta KL(P_nat || P_adv) + zeta ANC(P_nat, P_neg)   (al_ancra_head_loss);
 *   5. backward of the three slots, each seeded at the logits and at every auxiliary head;
 *   6. the reported accuracy: one eval-mode forward of x_adv (as the official log).
 * Randomness: negatives Philox(run.seed, AL_STREAM_METHOD, step); attack starts
 * Philox(run.seed, AL_STREAM_ATTACK, step), restart index 0 (u_pgd) / 1 (t_pgd).
 * The model-level RA flag ([ancra] eval_mask) is forced to "predicted" inside the step (the
 * training attacks use the published gradient) and restored afterwards, so the trainer's
 * evaluation honours the configured mask mode. */
#include <math.h>
#include <string.h>

#include "core/cuda_api.h"
#include "core/methods/method.h"
#include "core/ops/ra.h"
#include "losses/ancra.h"
#include "losses/loss.h"

#define MAX_AUX 4

typedef struct ancra_state {
    int n_aux;
    float *d_aux[3][MAX_AUX]; /* (B, K) gradient at auxiliary head a of slot s */
    float *grad;              /* (B, d) attack input gradient */
    int32_t *idx;             /* (B) negative row per anchor */
    uint8_t *valid;           /* (B) anchor has a negative */
} ancra_state;

static al_status ancra_setup(al_step_io *io) {
    al_model *m = io->m;
    if (al_ra_count(m) < 1 || m->n_aux < 1)
        return AL_FAIL(AL_ERR_CONFIG,
                       "config: train.method = ancra needs a reverse-attention arch "
                       "(model.arch = ancra-resnet18 or ancra-small), not %s",
                       m->arch);
    if (m->n_aux > MAX_AUX)
        return AL_FAIL(AL_ERR_CONFIG, "ancra: %d auxiliary heads, at most %d", m->n_aux, MAX_AUX);
    if (io->spec.init == AL_ATTACK_INIT_UNIFORM && io->spec.norm != AL_LINF)
        return AL_FAIL(AL_ERR_UNSUPPORTED,
                       "config: ancra with attack.norm = l2 needs attack.random_init = "
                       "normal_0.001 or none");
    ancra_state *st = al_calloc(1, sizeof *st, "ancra state");
    if (!st) return AL_ERR_OOM;
    io->state = st;
    st->n_aux = m->n_aux;
    const size_t B = (size_t)m->max_batch, bk = B * (size_t)io->k * sizeof(float);
    for (int s = 0; s < 3; s++)
        for (int a = 0; a < st->n_aux; a++)
            AL_TRY(al_dev_alloc(io->ctx, (void **)&st->d_aux[s][a], bk, "ancra head gradients"));
    AL_TRY(al_dev_alloc(io->ctx, (void **)&st->grad, B * io->d * sizeof(float), "ancra gradient"));
    AL_TRY(al_dev_alloc(io->ctx, (void **)&st->idx, B * sizeof(int32_t), "ancra negatives"));
    AL_TRY(al_dev_alloc(io->ctx, (void **)&st->valid, B, "ancra negative flags"));
    al_ra_set_eval_mask(m, (int)io->cfg->ancra.eval_mask);
    return AL_OK;
}

static void ancra_teardown(al_step_io *io) {
    ancra_state *st = io->state;
    if (!st) return;
    for (int s = 0; s < 3; s++)
        for (int a = 0; a < MAX_AUX; a++) al_dev_free(io->ctx, st->d_aux[s][a]);
    al_dev_free(io->ctx, st->grad);
    al_dev_free(io->ctx, st->idx);
    al_dev_free(io->ctx, st->valid);
    al_free(st);
    io->state = NULL;
}

/* out = start of restart r from x0 (the attack's Philox indices, attacks/attack.h). */
static al_status start_point(al_step_io *io, const float *x0, int r, float *out) {
    al_ctx *ctx = io->ctx;
    const al_attack_spec *s = &io->spec;
    const int n = io->n;
    const size_t d = io->d;
    const uint64_t stream = al_stream(AL_STREAM_ATTACK, (uint64_t)io->step);
    (void)ctx; /* CPU-only builds */
#ifdef AL_HAVE_CUDA
    if (ctx->device == AL_DEV_CUDA) {
        if (s->init == AL_ATTACK_INIT_NORMAL)
            return al_attack_start_normal_cuda(ctx, n, d, x0, out, s->init_std, r, io->seed,
                                               stream);
        if (s->init == AL_ATTACK_INIT_UNIFORM)
            return al_attack_start_uniform_cuda(ctx, n, d, x0, out, s->eps, r, io->seed, stream);
        return al_copy_dev(ctx, out, x0, (size_t)n * d * sizeof(float));
    }
#endif
    for (int i = 0; i < n; i++)
        for (size_t j = 0; j < d; j++) {
            const size_t e = (size_t)i * d + j;
            const uint64_t ix = al_attack_rng_index(r, n, i, d, j);
            if (s->init == AL_ATTACK_INIT_NORMAL)
                out[e] = al_attack_start_normal_elem(x0[e], s->init_std, io->seed, stream, ix);
            else if (s->init == AL_ATTACK_INIT_UNIFORM)
                out[e] = al_attack_start_uniform_elem(x0[e], s->eps, io->seed, stream, ix);
            else
                out[e] = x0[e];
        }
    return AL_OK;
}

/* u_pgd (targeted = 0: ascend CE towards misclassifying `lab`) / t_pgd (targeted = 1: descend
 * CE towards the class `lab`), both with the auxiliary heads in the loss, slot 0, the training
 * attack's forward options (eval mode: the RA mask is the predicted class). */
static al_status ra_pgd(al_step_io *io, const float *x0, const int32_t *lab, int targeted, int r,
                        float *out) {
    al_ctx *ctx = io->ctx;
    al_model *m = io->m;
    ancra_state *st = io->state;
    const al_attack_spec *s = &io->spec;
    const int n = io->n, k = io->k, na = st->n_aux;
    const float sign = targeted ? -1.0f : 1.0f;
    const float w_aux = (float)io->cfg->ancra.cr_beta / (float)na;
    al_fwd_opts o = s->fwd;
    o.slot = 0;
    o.labels = NULL;
    o.step = (uint64_t)io->step * 4 + 3;
    AL_TRY(start_point(io, x0, r, out));
    al_bwd_seed seeds[1 + MAX_AUX];
    seeds[0].buf = m->out_buf;
    seeds[0].grad = io->dl[3];
    for (int a = 0; a < na; a++) {
        seeds[1 + a].buf = m->aux_buf[a];
        seeds[1 + a].grad = st->d_aux[0][a];
    }
    if (s->steps == 0) { /* the projected start point */
        AL_TRY(al_memset_dev(ctx, st->grad, 0, (size_t)n * io->d * sizeof(float)));
        return al_pgd_step(ctx, s->norm, n, io->d, out, x0, st->grad, 0.0f, s->eps);
    }
    for (int t = 0; t < s->steps; t++) {
        double l;
        AL_TRY(al_model_forward(ctx, m, out, n, &o));
        /* only the gradients are used: the first call returns the value because that is what
         * checks `lab` on the device; later calls neither reduce nor wait (DESIGN "hot path").
         * In a deferred step (core/sums.h) the step's head losses check the same labels. */
        const int check = t == 0 && !ctx->defer;
        AL_TRY(al_xent(ctx, n, k, al_model_logits(m, 0), lab, sign, check ? &l : NULL, NULL,
                       io->dl[3]));
        for (int a = 0; a < na; a++)
            AL_TRY(al_xent(ctx, n, k, al_model_buffer(m, 0, m->aux_buf[a]), lab, sign * w_aux,
                           NULL, NULL, st->d_aux[0][a]));
        AL_TRY(al_model_backward_seeds(ctx, m, 0, seeds, 1 + na, AL_BWD_INPUT, st->grad));
        AL_TRY(al_pgd_step(ctx, s->norm, n, io->d, out, x0, st->grad, s->alpha, s->eps));
    }
    return AL_OK;
}

static int pick_kind(const al_step_io *io) {
    const al_cfg_ancra *a = &io->cfg->ancra;
    if (io->epoch < a->random_epochs) return AL_ANCRA_PICK_RANDOM;
    switch (a->strategy) {
    case AL_ANCRA_HARD:
    case AL_ANCRA_HARD_ADV: return AL_ANCRA_PICK_HARD;
    case AL_ANCRA_SOFT:
    case AL_ANCRA_SOFT_ADV: return AL_ANCRA_PICK_SOFT;
    case AL_ANCRA_EASY:
    case AL_ANCRA_EASY_ADV: return AL_ANCRA_PICK_EASY;
    default: return AL_ANCRA_PICK_RANDOM;
    }
}

static int strategy_adv(al_ancra_strategy s) {
    return s == AL_ANCRA_RANDOM_ADV || s == AL_ANCRA_HARD_ADV || s == AL_ANCRA_SOFT_ADV ||
           s == AL_ANCRA_EASY_ADV;
}

static al_status step_body(al_step_io *io, double *loss, int *n_correct) {
    al_ctx *ctx = io->ctx;
    al_model *m = io->m;
    ancra_state *st = io->state;
    const al_cfg_ancra *a = &io->cfg->ancra;
    const int n = io->n, k = io->k, na = st->n_aux;

    /* 1. negatives */
    const int kind = pick_kind(io);
    const float *clean_logits = NULL;
    if (kind != AL_ANCRA_PICK_RANDOM) {
        al_fwd_opts oe = {0, 0, 0, 0, (uint64_t)io->step * 4 + 3, NULL};
        AL_TRY(al_model_forward(ctx, m, io->x, n, &oe));
        clean_logits = al_model_logits(m, 0);
    }
    AL_TRY(al_ancra_pick_neg(ctx, n, k, io->y, clean_logits, kind, io->seed,
                             al_stream(AL_STREAM_METHOD, (uint64_t)io->step), st->idx, st->valid));
    AL_TRY(al_ancra_gather(ctx, n, io->d, io->x, st->idx, io->xaux[0], io->y, io->yaux[0]));
    const float *x_neg = io->xaux[0];
    if (strategy_adv(a->strategy)) {
        AL_TRY(ra_pgd(io, io->xaux[0], io->y, 1, 1, io->xaux[1]));
        x_neg = io->xaux[1];
    }

    /* 2. the adversarial example */
    AL_TRY(ra_pgd(io, io->x, io->y, 0, 0, io->xadv));

    /* 3. three train-mode forwards, RA masks from the labels */
    const float *xs[3] = {io->x, io->xadv, x_neg};
    const int32_t *ls[3] = {io->y, io->y, io->yaux[0]};
    for (int s = 0; s < 3; s++) {
        al_fwd_opts o = al_step_train_opts(io, s, s);
        o.labels = ls[s];
        AL_TRY(al_model_forward(ctx, m, xs[s], n, &o));
    }

    /* 4. the loss, head by head */
    *loss = 0.0;
    for (int h = 0; h <= na; h++) {
        const float *z[3];
        float *g[3];
        for (int s = 0; s < 3; s++) {
            z[s] = h == 0 ? al_model_logits(m, s) : al_model_buffer(m, s, m->aux_buf[h - 1]);
            g[s] = h == 0 ? io->dl[s] : st->d_aux[s][h - 1];
        }
        const float w = h == 0 ? 1.0f : (float)(a->cr_beta / na);
        double lh;
        AL_TRY(al_ancra_head_loss(ctx, n, k, z[0], z[1], z[2], io->y, st->valid, w,
                                  (float)io->cfg->train.beta, (float)a->zeta, (float)a->alpha,
                                  &lh, NULL, g[0], g[1], g[2]));
        *loss += lh;
    }
    if (!isfinite(*loss)) return AL_OK;

    /* 5. backward, each slot seeded at the logits and the auxiliary heads */
    AL_TRY(al_model_zero_grad(ctx, m));
    for (int s = 2; s >= 0; s--) {
        al_bwd_seed seeds[1 + MAX_AUX];
        seeds[0].buf = m->out_buf;
        seeds[0].grad = io->dl[s];
        for (int q = 0; q < na; q++) {
            seeds[1 + q].buf = m->aux_buf[q];
            seeds[1 + q].grad = st->d_aux[s][q];
        }
        AL_TRY(al_model_backward_seeds(ctx, m, s, seeds, 1 + na, AL_BWD_WEIGHTS, NULL));
    }
    /* reported accuracy: an EVAL-mode forward of x_adv (the official logs output_adv_eval):
     * the train-mode logits carry the true label through the RA mask (z' = z * W[y]) and
     * would read ~100% */
    al_fwd_opts oe = {0, 0, 0, 0, (uint64_t)io->step * 4 + 3, NULL};
    AL_TRY(al_model_forward(ctx, m, io->xadv, n, &oe));
    return al_count_correct(ctx, n, k, al_model_logits(m, 0), io->y, n_correct, NULL);
}

static al_status step_ancra(al_step_io *io, double *loss, int *n_correct) {
    al_ra_set_eval_mask(io->m, AL_RA_MASK_PREDICTED);
    al_status st = step_body(io, loss, n_correct);
    al_ra_set_eval_mask(io->m, (int)io->cfg->ancra.eval_mask);
    return st;
}

const al_method_def al_method_ancra = {AL_METHOD_ANCRA, "ancra", 3, ancra_setup, ancra_teardown,
                                       step_ancra};
