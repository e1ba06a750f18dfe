/* iat.c: Interpolated Adversarial Training (Lamb et al., AISec 2019 / Neural Networks 2022,
 * arXiv 1906.06784; methods.md §5.4) as an al_method_def step, input-space Mixup variant.
 * No official repository was found; the step follows the paper's description (mixup applied
 * SEPARATELY to the clean and the adversarial batch, the two losses averaged), cross-checked
 * against the widely used re-implementation ndb796/Pytorch-Adversarial-Training-CIFAR
 * interpolated_adversarial_training.py (loss = (loss1 + loss2) / 2, each on the full batch).
 *
 * One step (randomness: Philox stream al_stream(AL_STREAM_METHOD, step), losses/dfa.h layout):
 *   x_adv = the configured training attack ([attack], PGD) on the UNMIXED batch
 *           (attack stream al_stream(AL_STREAM_ATTACK, step), BN mode per train.bn_mode_attack)
 *   clean half: lam_c ~ Beta(iat.mixup_alpha) (AL_MIX_WORDS(0)), idx_c (AL_MIX_WORDS(1)),
 *               x_c = lam_c x + (1 - lam_c) x[idx_c]
 *   adv half:   lam_v ~ Beta(iat.mixup_alpha) (AL_MIX_WORDS(2)), idx_v (AL_MIX_WORDS(3)),
 *               x_v = lam_v x_adv + (1 - lam_v) x_adv[idx_v]
 *   forwards (train mode): slot 0 x_c, slot 1 x_v
 *   loss = 1/2 [lam_c CE(f(x_c), y) + (1 - lam_c) CE(f(x_c), y[idx_c])]
 *        + 1/2 [lam_v CE(f(x_v), y) + (1 - lam_v) CE(f(x_v), y[idx_v])]
 *   backward through both slots (x_adv is a constant, as in every AT method).
 * Reported accuracy: the adversarial mix's argmax vs its dominant label (y when lam_v >= 1/2,
 * else y[idx_v]). */
#include <math.h>

#include "core/methods/method.h"
#include "core/ops/elementwise.h"
#include "core/rng.h"
#include "losses/dfa.h"
#include "losses/loss.h"

typedef struct iat_state {
    int32_t *h_idx; /* (2B) host: clean then adversarial permutation */
    int32_t *d_idx; /* (2B) device copy */
    int32_t *d_yb;  /* (2B) y[idx_c], y[idx_v] */
} iat_state;

static al_status iat_setup(al_step_io *io) {
    if (io->no_attack)
        return AL_FAIL(AL_ERR_CONFIG, "config: train.method = iat needs a training attack");
    if (io->m->n_slots < 2)
        return AL_FAIL(AL_ERR_VALUE, "iat: the model has %d activation slots, the step needs 2",
                       io->m->n_slots);
    iat_state *s = al_calloc(1, sizeof *s, "iat state");
    if (!s) return AL_ERR_OOM;
    io->state = s;
    const size_t B = (size_t)io->m->max_batch;
    s->h_idx = al_malloc(2 * B * sizeof(int32_t), "iat permutations");
    if (!s->h_idx) return AL_ERR_OOM;
    AL_TRY(al_dev_alloc(io->ctx, (void **)&s->d_idx, 2 * B * sizeof(int32_t), "iat permutations"));
    AL_TRY(al_dev_alloc(io->ctx, (void **)&s->d_yb, 2 * B * sizeof(int32_t), "iat labels y_b"));
    return AL_OK;
}

static void iat_teardown(al_step_io *io) {
    iat_state *s = io->state;
    if (!s) return;
    al_free(s->h_idx);
    al_dev_free(io->ctx, s->d_idx);
    al_dev_free(io->ctx, s->d_yb);
    al_free(s);
    io->state = NULL;
}

/* dl = dloss/dz of w (lam CE(z, y) + (1 - lam) CE(z, y_b)); adds the value to *loss. tmp is
 * (n, k) scratch. */
static al_status mixed_xent(al_step_io *io, const float *z, const int32_t *y_b, float lam, float w,
                            float *dl, float *tmp, double *loss) {
    double la = 0, lb = 0;
    AL_TRY(al_xent(io->ctx, io->n, io->k, z, io->y, w * lam, &la, NULL, dl));
    AL_TRY(al_xent(io->ctx, io->n, io->k, z, y_b, w * (1.0f - lam), &lb, NULL, tmp));
    AL_TRY(al_accumulate(io->ctx, (size_t)io->n * io->k, tmp, dl, 1));
    *loss += la + lb;
    return AL_OK;
}

static al_status iat_step(al_step_io *io, double *loss, int *n_correct) {
    al_ctx *ctx = io->ctx;
    al_model *m = io->m;
    iat_state *s = io->state;
    const int n = io->n;
    const double alpha = io->cfg->iat.mixup_alpha;
    const uint64_t stream = al_stream(AL_STREAM_METHOD, (uint64_t)io->step);

    AL_TRY(al_step_attack(io, &io->spec, io->x, io->y, io->xadv));

    const float lam_c = (float)al_beta_sample(io->seed, stream, AL_MIX_WORDS(0), alpha);
    al_philox_perm(io->seed, stream, AL_MIX_WORDS(1), n, s->h_idx);
    const float lam_v = (float)al_beta_sample(io->seed, stream, AL_MIX_WORDS(2), alpha);
    al_philox_perm(io->seed, stream, AL_MIX_WORDS(3), n, s->h_idx + n);
    AL_TRY(al_copy_to_dev(ctx, s->d_idx, s->h_idx, 2 * (size_t)n * sizeof(int32_t)));
    int32_t *yb_c = s->d_yb, *yb_v = s->d_yb + n;
    float *x_c = io->xaux[0], *x_v = io->xaux[1];
    AL_TRY(al_mixup_pairs(ctx, n, io->d, lam_c, io->x, io->y, s->d_idx, NULL, x_c, yb_c));
    AL_TRY(al_mixup_pairs(ctx, n, io->d, lam_v, io->xadv, io->y, s->d_idx + n, NULL, x_v, yb_v));

    al_fwd_opts o0 = al_step_train_opts(io, 0, 0), o1 = al_step_train_opts(io, 1, 1);
    AL_TRY(al_model_forward(ctx, m, x_c, n, &o0));
    AL_TRY(al_model_forward(ctx, m, x_v, n, &o1));
    *loss = 0;
    AL_TRY(mixed_xent(io, al_model_logits(m, 0), yb_c, lam_c, 0.5f, io->dl[0], io->fbuf[0], loss));
    AL_TRY(mixed_xent(io, al_model_logits(m, 1), yb_v, lam_v, 0.5f, io->dl[1], io->fbuf[1], loss));
    AL_TRY(al_count_correct(ctx, n, io->k, al_model_logits(m, 1), lam_v >= 0.5f ? io->y : yb_v,
                            n_correct, NULL));
    if (!isfinite(*loss)) return AL_OK;
    AL_TRY(al_model_zero_grad(ctx, m));
    for (int k = 1; k >= 0; k--)
        AL_TRY(al_model_backward(ctx, m, k, io->dl[k], NULL, AL_BWD_WEIGHTS, NULL));
    return AL_OK;
}

const al_method_def al_method_iat = {AL_METHOD_IAT, "iat", 2, iat_setup, iat_teardown, iat_step};
