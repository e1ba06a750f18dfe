/* dfa.c: Dynamic Feature Aggregation (Liu et al. 2022, arXiv 2205.07466) as an al_method_def
 * step, following HaozheLiu-ST/DynamicFeatureAggregation @53f2fd9 (models.py
 * `dynamic_aggregate`, train.py `train_clean`; methods.md §1.2). Not adversarial training:
 * clean data and convex combinations only. Needs a DFA arch (dfa-wrn-D-W, dfa-smallcnn): the
 * feature buffer is the L2-normalised embedding z and logits = |W z| with W frozen.
 *
 * One step, all randomness from Philox stream al_stream(AL_STREAM_METHOD, step) (losses/dfa.h
 * index layout), so a run is reproducible and a resumed run draws the same numbers:
 *   lam ~ Beta(dfa.alpha, dfa.alpha) (one per batch; word range AL_MIX_WORDS(0))
 *   idx = a random permutation (AL_MIX_WORDS(1)); x_a = x, x_b = x[idx], y_b = y[idx]
 *   x_mix = lam x_a + (1 - lam) x_b
 *   three train-mode forwards in the official order, each in its own slot (3 BN updates):
 *     slot 0: e_mix = z(x_mix), slot 1: e_a = z(x_a), slot 2: e_b = z(x_b)
 *   loss = L_cls + L_mix (al_dfa_loss: pivot, noisy detached target, |W p| + |W e_mix|)
 *   backward: each slot seeded at its feature buffer with dloss/de (al_model_backward_seeds);
 *   e_a and e_b receive gradient only through the classification term (the target is
 *   detached), the frozen head none.
 * Reported accuracy: the clean forward's |W e_a| logits vs y (the official loop reports the
 * test accuracy instead). The per-epoch momentum reset (the official optimiser is rebuilt
 * every epoch) is done by core/train.c when dfa.reset_momentum = 1. */
#include <math.h>

#include "core/methods/method.h"
#include "core/ops/dfa_ops.h"
#include "core/rng.h"
#include "losses/dfa.h"
#include "losses/loss.h"

typedef struct dfa_state {
    int w_param;      /* the frozen head W (K, D) */
    int32_t *h_idx;   /* (B) host permutation */
    int32_t *d_idx;   /* (B) device copy */
    int32_t *d_yb;    /* (B) y[idx] */
} dfa_state;

static al_status dfa_setup(al_step_io *io) {
    const int wp = al_model_dfa_head_param(io->m);
    if (wp < 0)
        return AL_FAIL(AL_ERR_CONFIG,
                       "config: train.method = dfa needs a DFA arch (dfa-wrn-D-W, dfa-smallcnn): "
                       "model.arch = %s has no frozen |W z| head on L2-normalised features",
                       io->m->arch);
    if (io->m->n_slots < 3)
        return AL_FAIL(AL_ERR_VALUE, "dfa: the model has %d activation slots, the step needs 3",
                       io->m->n_slots);
    dfa_state *s = al_calloc(1, sizeof *s, "dfa state");
    if (!s) return AL_ERR_OOM;
    io->state = s;
    s->w_param = wp;
    const int B = io->m->max_batch;
    s->h_idx = al_malloc((size_t)B * sizeof(int32_t), "dfa permutation");
    if (!s->h_idx) return AL_ERR_OOM;
    AL_TRY(al_dev_alloc(io->ctx, (void **)&s->d_idx, (size_t)B * sizeof(int32_t), "dfa permutation"));
    AL_TRY(al_dev_alloc(io->ctx, (void **)&s->d_yb, (size_t)B * sizeof(int32_t), "dfa labels y_b"));
    return AL_OK;
}

static void dfa_teardown(al_step_io *io) {
    dfa_state *s = io->state;
    if (!s) return;
    al_free(s->h_idx);
    al_dev_free(io->ctx, s->d_idx);
    al_dev_free(io->ctx, s->d_yb);
    al_free(s);
    io->state = NULL;
}

static al_status dfa_step(al_step_io *io, double *loss, int *n_correct) {
    al_ctx *ctx = io->ctx;
    al_model *m = io->m;
    dfa_state *s = io->state;
    const al_cfg_dfa *c = &io->cfg->dfa;
    const int n = io->n, D = al_model_feature_dim(m);
    const uint64_t stream = al_stream(AL_STREAM_METHOD, (uint64_t)io->step);

    const float lam = (float)al_beta_sample(io->seed, stream, AL_MIX_WORDS(0), c->alpha);
    al_philox_perm(io->seed, stream, AL_MIX_WORDS(1), n, s->h_idx);
    AL_TRY(al_copy_to_dev(ctx, s->d_idx, s->h_idx, (size_t)n * sizeof(int32_t)));
    float *x_b = io->xaux[0], *x_mix = io->xaux[1];
    AL_TRY(al_mixup_pairs(ctx, n, io->d, lam, io->x, io->y, s->d_idx, x_b, x_mix, s->d_yb));

    /* official order: x_mixed, x_a, x_b; all train mode */
    const float *xs[3] = {x_mix, io->x, x_b};
    for (int k = 0; k < 3; k++) {
        al_fwd_opts o = al_step_train_opts(io, k, k);
        AL_TRY(al_model_forward(ctx, m, xs[k], n, &o));
    }
    AL_TRY(al_dfa_loss(ctx, n, D, io->k, al_model_features(m, 0), al_model_features(m, 1),
                       al_model_features(m, 2), al_param_data(m, s->w_param), lam, io->y, s->d_yb,
                       (float)c->noise, io->seed, stream, loss, NULL, NULL, io->dfeat[0],
                       io->dfeat[1], io->dfeat[2]));
    AL_TRY(al_count_correct(ctx, n, io->k, al_model_logits(m, 1), io->y, n_correct, NULL));
    if (!isfinite(*loss)) return AL_OK;
    AL_TRY(al_model_zero_grad(ctx, m));
    for (int k = 2; k >= 0; k--) {
        const al_bwd_seed seed = {m->feat_buf, io->dfeat[k]};
        AL_TRY(al_model_backward_seeds(ctx, m, k, &seed, 1, AL_BWD_WEIGHTS, NULL));
    }
    return AL_OK;
}

const al_method_def al_method_dfa = {AL_METHOD_DFA, "dfa", 3, dfa_setup, dfa_teardown, dfa_step};
