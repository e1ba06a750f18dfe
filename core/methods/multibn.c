/* multibn.c: AdvProp (Xie et al., CVPR 2020), MDProp and MultiBN (one BN branch per
 * perturbation type; methods.md §5.1-5.2) as al_method_def steps over the model's named BN
 * branches (al_model_opts.n_branches, al_fwd_opts.bn_branch).
 *
 * AdvProp (tingxueronghua/pytorch-classification-advprop @d0f6b045c8, read, not copied:
 * net.py AdvResNet.forward, attacker.py PGDAttacker, imagenet.py MixBatchNorm2d):
 *   1. eval mode, auxiliary BN (branch 1): PGD from a uniform random start towards a random
 *      target t = (y + r) mod K, r ~ U{1..K-1} (descend CE(t)); [multibn] random_target = 0
 *      ascends CE(y) instead. The reference draws r ~ U{0..999} mod 1000, so 1 target in 1000
 *      is the true label (the attack then *reduces* the loss of y); we exclude it.
 *      The reference starts from noise with probability P(N(0,1) > 0.2) = 0.42 per batch
 *      (`torch.randn([]) > prob_start_from_clean`); we always start from noise (attack init).
 *   2. train mode 'mix': clean half through the main BN (branch 0), adversarial half through
 *      the auxiliary BN (branch 1): two forwards in two slots (BN sees each half alone, as
 *      MixBatchNorm2d). loss = mean over the 2N concatenated examples of CE =
 *      (mean CE_main(x, y) + mean CE_aux(x_adv, y)) / 2.
 *   3. evaluation on the main BN (multibn.test_branch = 0, the default).
 * MDProp (no paper or code found: methods.md §5.2 [unverified]): branch 0 clean, branch 1
 * Linf PGD ([attack] eps/alpha/steps), branch 2 L2 PGD ([multibn] l2_eps/l2_alpha, [attack]
 * steps), each attack untargeted in eval mode on its own branch; three train-mode forwards,
 * loss = mean over the branches of each branch's mean CE.
 * MultiBN: MDProp + the learned selector of core/ops/bn_gate.h (Gated BN design, Liu et al.
 * arXiv 2012.01654): gate logits of every forward trained with CE towards that forward's
 * perturbation type (0 clean, 1 Linf, 2 L2), weight multibn.gate_weight, averaged over the
 * branches like the classification loss; at test time (test_branch = -1) the gate routes each
 * example through a softmax-weighted mixture of the BN branches (or its argmax branch). */
#include <math.h>
#include <string.h>

#include "core/cuda_api.h"
#include "core/log.h"
#include "core/methods/advprop_target.h"
#include "core/methods/method.h"
#include "core/ops/bn_gate.h"
#include "losses/loss.h"

typedef struct mbn_state {
    int n_dom;                          /* perturbation types trained: 2 (AdvProp) or 3 */
    int gate_buf;                       /* gate logits buffer, -1 without the gate */
    al_attack_spec spec[3];             /* [1] Linf / AdvProp attack, [2] L2 attack */
    int32_t *d_dom[3];                  /* (B) device: constant perturbation-type labels */
    int32_t *d_tgt;                     /* (B) device: AdvProp targets */
    int32_t *h_y;                       /* (B) host staging of the domain labels */
    float *dg[3];                       /* (B, n_branches) device: gate logit gradients */
} mbn_state;

static int needed_branches(al_method method) { return method == AL_METHOD_ADVPROP ? 2 : 3; }

al_status al_multibn_build(al_model *m, const al_config *cfg) {
    const al_method method = cfg->train.method;
    if (method != AL_METHOD_ADVPROP && method != AL_METHOD_MDPROP && method != AL_METHOD_MULTIBN)
        return AL_OK;
    const int tb = cfg->multibn.test_branch;
    if (m->n_branches < needed_branches(method))
        return AL_FAIL(AL_ERR_CONFIG, "config: train.method = %s needs model.bn_branches >= %d (got %d)",
                       al_config_enum_name("train.method", (int)method), needed_branches(method),
                       m->n_branches);
    if (tb >= m->n_branches)
        return AL_FAIL(AL_ERR_CONFIG, "config: multibn.test_branch = %d outside [-1, %d) (model.bn_branches)",
                       tb, m->n_branches);
    if (tb < 0) {
        if (method != AL_METHOD_MULTIBN)
            return AL_FAIL(AL_ERR_CONFIG,
                           "config: multibn.test_branch = -1 (learned selector) needs train.method = "
                           "multibn (got %s)",
                           al_config_enum_name("train.method", (int)method));
        if (!al_bn_gate_present(m)) AL_TRY(al_bn_gate_attach(m, cfg->multibn.gate_hard));
    }
    m->eval_branch = tb;
    return AL_OK;
}

static void mbn_teardown(al_step_io *io) {
    mbn_state *s = io->state;
    if (!s) return;
    for (int b = 0; b < 3; b++) {
        al_dev_free(io->ctx, s->d_dom[b]);
        al_dev_free(io->ctx, s->dg[b]);
    }
    al_dev_free(io->ctx, s->d_tgt);
    al_free(s->h_y);
    al_free(s);
    io->state = NULL;
}

static al_status mbn_setup(al_step_io *io) {
    al_model *m = io->m;
    const al_config *cfg = io->cfg;
    const al_method method = cfg->train.method;
    const char *name = al_config_enum_name("train.method", (int)method);
    /* the trainer builds the model without this hook today: validate here as well */
    if (m->n_branches < needed_branches(method))
        return AL_FAIL(AL_ERR_CONFIG, "config: train.method = %s needs model.bn_branches >= %d (got %d)",
                       name, needed_branches(method), m->n_branches);
    if (io->no_attack || io->spec.type != AL_ATTACK_PGD)
        return AL_FAIL(AL_ERR_CONFIG, "train.method = %s: expected a PGD training attack", name);
    const int tb = cfg->multibn.test_branch;
    if (tb >= m->n_branches || (tb < 0 && (method != AL_METHOD_MULTIBN || !al_bn_gate_present(m))))
        return AL_FAIL(AL_ERR_CONFIG,
                       "config: multibn.test_branch = %d: needs a branch < model.bn_branches = %d, or "
                       "-1 with train.method = multibn and the BN gate attached before model setup "
                       "(al_multibn_build)",
                       tb, m->n_branches);
    if (method != AL_METHOD_ADVPROP && (al_norm)io->spec.norm != AL_LINF)
        return AL_FAIL(AL_ERR_CONFIG, "config: train.method = %s: branch 1 is the Linf branch, so "
                                      "attack.norm must be linf (the L2 branch uses multibn.l2_eps)",
                       name);
    m->eval_branch = tb;

    mbn_state *s = al_calloc(1, sizeof *s, "multibn state");
    if (!s) return AL_ERR_OOM;
    io->state = s;
    s->n_dom = needed_branches(method);
    s->gate_buf = method == AL_METHOD_MULTIBN ? al_bn_gate_logits_buf(m) : -1;
    const int B = io->ws->max_batch;
    al_status st = AL_OK;
    s->h_y = al_malloc((size_t)B * sizeof(int32_t), "multibn labels");
    if (!s->h_y) AL_CHECK(AL_ERR_OOM);
    AL_CHECK(al_dev_alloc(io->ctx, (void **)&s->d_tgt, (size_t)B * sizeof(int32_t), "advprop targets"));
    for (int b = 0; b < s->n_dom; b++) {
        for (int i = 0; i < B; i++) s->h_y[i] = b;
        AL_CHECK(al_dev_alloc(io->ctx, (void **)&s->d_dom[b], (size_t)B * sizeof(int32_t), "domain labels"));
        AL_CHECK(al_copy_to_dev(io->ctx, s->d_dom[b], s->h_y, (size_t)B * sizeof(int32_t)));
        if (s->gate_buf >= 0)
            AL_CHECK(al_dev_alloc(io->ctx, (void **)&s->dg[b], (size_t)B * m->n_branches * sizeof(float),
                                  "gate gradients"));
    }
    /* branch 1: the configured attack ([attack] norm/eps/alpha/steps/random_init, eval-mode BN
     * by default) on the auxiliary BN */
    s->spec[1] = io->spec;
    s->spec[1].fwd.bn_branch = 1;
    if (method == AL_METHOD_ADVPROP && cfg->multibn.random_target) {
        s->spec[1].targeted = 1;
        s->spec[1].targets = s->d_tgt;
    }
    if (s->n_dom == 3) {
        s->spec[2] = io->spec;
        s->spec[2].norm = AL_L2;
        s->spec[2].eps = cfg->multibn.l2_eps;
        s->spec[2].alpha = cfg->multibn.l2_alpha;
        s->spec[2].fwd.bn_branch = 2;
    }
done:
    if (st != AL_OK) mbn_teardown(io);
    return st;
}

/* Attack for branch b of this step into xadv. Streams: branch 1 uses the baselines' stream
 * (AL_STREAM_ATTACK, step); branch 2 a disjoint one (bit 47 of the sub-id set). */
static al_status branch_attack(al_step_io *io, int b, float *xadv) {
    mbn_state *s = io->state;
    al_attack_spec sp = s->spec[b];
    sp.fwd.step = (uint64_t)io->step * 4 + 3;
    uint64_t sub = (uint64_t)io->step | (b == 2 ? (1ull << 47) : 0);
    return al_attack_run(io->ctx, io->m, &sp, io->ws, io->x, io->y, io->n, io->seed,
                         al_stream(AL_STREAM_ATTACK, sub), xadv, NULL, NULL);
}

/* AdvProp targets t_i = al_advprop_target(y_i, K, seed, stream, i) (advprop_target.h) with
 * stream = (AL_STREAM_METHOD, step): on the device by cuda/train_advprop.cu (no host copy),
 * on the CPU in place. */
static al_status advprop_targets(al_step_io *io) {
    mbn_state *s = io->state;
    const uint64_t stream = al_stream(AL_STREAM_METHOD, (uint64_t)io->step);
    if (io->ctx->device == AL_DEV_CPU) {
        for (int i = 0; i < io->n; i++)
            s->d_tgt[i] = al_advprop_target(io->y[i], io->k, io->seed, stream, i);
        return AL_OK;
    }
    AL_CUDA_OR_FAIL(al_advprop_targets_cuda(io->ctx, io->n, io->k, io->y, io->seed, stream, s->d_tgt));
}

static al_status step_advprop(al_step_io *io, double *loss, int *n_correct) {
    al_ctx *ctx = io->ctx;
    al_model *m = io->m;
    mbn_state *s = io->state;
    if (s->spec[1].targeted) AL_TRY(advprop_targets(io));
    AL_TRY(branch_attack(io, 1, io->xadv));
    al_fwd_opts o0 = al_step_train_opts(io, 0, 0), o1 = al_step_train_opts(io, 1, 1);
    o1.bn_branch = 1;
    AL_TRY(al_model_forward(ctx, m, io->x, io->n, &o0));
    AL_TRY(al_model_forward(ctx, m, io->xadv, io->n, &o1));
    /* mean over the 2N concatenated examples: each half's mean CE weighted 1/2 */
    double l0 = 0, l1 = 0;
    AL_TRY(al_xent(ctx, io->n, io->k, al_model_logits(m, 0), io->y, 0.5f, &l0, NULL, io->dl[0]));
    AL_TRY(al_xent(ctx, io->n, io->k, al_model_logits(m, 1), io->y, 0.5f, &l1, NULL, io->dl[1]));
    *loss = l0 + l1;
    AL_TRY(al_count_correct(ctx, io->n, io->k, al_model_logits(m, 1), io->y, n_correct, NULL));
    if (!isfinite(*loss)) return AL_OK;
    AL_TRY(al_model_zero_grad(ctx, m));
    for (int b = 1; b >= 0; b--) AL_TRY(al_model_backward(ctx, m, b, io->dl[b], NULL, AL_BWD_WEIGHTS, NULL));
    return AL_OK;
}

static al_status step_mdprop(al_step_io *io, double *loss, int *n_correct) {
    al_ctx *ctx = io->ctx;
    al_model *m = io->m;
    mbn_state *s = io->state;
    const float *xb[3] = {io->x, io->xadv, io->xaux[0]};
    AL_TRY(branch_attack(io, 1, io->xadv));
    AL_TRY(branch_attack(io, 2, io->xaux[0]));
    const float w = 1.0f / 3.0f;
    *loss = 0;
    for (int b = 0; b < 3; b++) {
        al_fwd_opts o = al_step_train_opts(io, b, b);
        o.bn_branch = b;
        AL_TRY(al_model_forward(ctx, m, xb[b], io->n, &o));
        double l = 0;
        AL_TRY(al_xent(ctx, io->n, io->k, al_model_logits(m, b), io->y, w, &l, NULL, io->dl[b]));
        *loss += l;
        if (s->gate_buf >= 0) {
            const float gw = (float)(io->cfg->multibn.gate_weight / 3.0);
            AL_TRY(al_xent(ctx, io->n, m->n_branches, al_model_buffer(m, b, s->gate_buf), s->d_dom[b], gw,
                           &l, NULL, s->dg[b]));
            *loss += l;
        }
    }
    AL_TRY(al_count_correct(ctx, io->n, io->k, al_model_logits(m, 1), io->y, n_correct, NULL));
    if (!isfinite(*loss)) return AL_OK;
    AL_TRY(al_model_zero_grad(ctx, m));
    for (int b = 2; b >= 0; b--) {
        al_bwd_seed seeds[2] = {{m->out_buf, io->dl[b]}, {s->gate_buf, s->dg[b]}};
        AL_TRY(al_model_backward_seeds(ctx, m, b, seeds, s->gate_buf >= 0 ? 2 : 1, AL_BWD_WEIGHTS, NULL));
    }
    return AL_OK;
}

const al_method_def al_method_advprop = {
    .method = AL_METHOD_ADVPROP, .name = "advprop", .n_slots = 2,
    .setup = mbn_setup, .teardown = mbn_teardown, .step = step_advprop, .build = al_multibn_build};
const al_method_def al_method_mdprop = {
    .method = AL_METHOD_MDPROP, .name = "mdprop", .n_slots = 3,
    .setup = mbn_setup, .teardown = mbn_teardown, .step = step_mdprop, .build = al_multibn_build};
const al_method_def al_method_multibn = {
    .method = AL_METHOD_MULTIBN, .name = "multibn", .n_slots = 3,
    .setup = mbn_setup, .teardown = mbn_teardown, .step = step_mdprop, .build = al_multibn_build};
