/* attack.c: FGSM / PGD driver behind attacks/attack.h, device-agnostic.
 * Twin: none needed for the driver itself: every per-step operation is a dispatcher (model
 * forward / backward-to-input, losses/, al_pgd_step -> cuda/attack_pgd_step.cu). Per-point
 * bookkeeping (restart selection, success) touches N values on the host; the random start is
 * drawn from the AL_HOSTDEV element functions of attack.h: in place on the CPU, by
 * cuda/attack_start.cu (the same functions, the same Philox indices) on CUDA.
 * Shapes: x, x_adv, ws->x_cur, ws->grad (N, d) with d = C*H*W; logits (N, K).
 *
 * Per restart r: x_cur = start(x, r); repeat `steps`: forward, objective gradient, backward to
 * the input only, al_pgd_step (project onto the ball around x, clamp to [0,1]). Then, when
 * anything needs it, one forward at the final iterate gives each point's success and
 * objective: the first successful restart is kept, else the max-objective one (training) or
 * finally the clean input (evaluation). A last forward on x_adv re-verifies `success`. */
#include "attacks/attack.h"

#include <math.h>
#include <string.h>

#include "core/cuda_api.h"
#include "core/log.h"
#include "losses/loss.h"

al_attack_spec al_attack_spec_make(al_attack_type type, al_norm norm, float eps, float alpha,
                                   int steps) {
    al_attack_spec s;
    memset(&s, 0, sizeof s);
    s.type = type;
    s.norm = norm;
    s.eps = eps;
    s.alpha = alpha;
    s.steps = type == AL_ATTACK_FGSM ? 1 : steps;
    s.restarts = 1;
    s.init = type == AL_ATTACK_PGD ? AL_ATTACK_INIT_UNIFORM : AL_ATTACK_INIT_NONE;
    s.init_std = 0.001f; /* TRADES / MART */
    s.loss = AL_ATTACK_LOSS_CE;
    s.keep_clean_if_failed = 1;
    return s; /* fwd zeroed: slot 0, eval mode, no BN update, branch 0, step 0 */
}

/* ---------------------------------------------------------------- workspace */

void al_attack_ws_fini(al_ctx *ctx, al_attack_ws *ws) {
    if (!ws) return;
    al_dev_free(ctx, ws->x_cur);
    al_dev_free(ctx, ws->grad);
    al_dev_free(ctx, ws->dlogits);
    al_dev_free(ctx, ws->logits_ref);
    al_dev_free(ctx, ws->per_sample);
    al_dev_free(ctx, ws->flag);
    al_free(ws->h_x);
    al_free(ws->h_loss);
    al_free(ws->h_best);
    al_free(ws->h_flag);
    al_free(ws->h_done);
    al_free(ws->tracked);
#ifdef AL_HAVE_CUDA
    for (int i = 0; i < AL_ATTACK_GRAPHS; i++) al_cuda_graph_free(ws->graph[i]);
#endif
    memset(ws, 0, sizeof *ws);
}

al_status al_attack_ws_init(al_ctx *ctx, al_attack_ws *ws, const al_model *m, int max_batch) {
    memset(ws, 0, sizeof *ws);
    if (max_batch < 1)
        return AL_FAIL(AL_ERR_VALUE, "al_attack_ws_init: max_batch %d < 1", max_batch);
    ws->max_batch = max_batch;
    ws->k = m->num_classes;
    ws->d = (size_t)m->in_c * m->in_h * m->in_w;
    const size_t b = (size_t)max_batch, xd = b * ws->d * sizeof(float);
    const size_t kd = b * (size_t)ws->k * sizeof(float);
    al_status st = AL_OK;
    AL_CHECK(al_dev_alloc(ctx, (void **)&ws->x_cur, xd, "attack iterate"));
    AL_CHECK(al_dev_alloc(ctx, (void **)&ws->grad, xd, "attack input gradient"));
    AL_CHECK(al_dev_alloc(ctx, (void **)&ws->dlogits, kd, "attack logit gradient"));
    AL_CHECK(al_dev_alloc(ctx, (void **)&ws->logits_ref, kd, "attack reference logits"));
    AL_CHECK(al_dev_alloc(ctx, (void **)&ws->per_sample, b * sizeof(float), "attack objective"));
    AL_CHECK(al_dev_alloc(ctx, (void **)&ws->flag, b, "attack flags"));
    if (ctx->device != AL_DEV_CPU) {
        ws->h_x = al_malloc(xd, "attack host staging");
        if (!ws->h_x) {
            st = AL_ERR_OOM;
            goto done;
        }
    }
    ws->h_loss = al_malloc(b * sizeof(float), "attack host objective");
    ws->h_best = al_malloc(b * sizeof(double), "attack host best objective");
    ws->h_flag = al_malloc(b, "attack host flags");
    ws->h_done = al_malloc(b, "attack host done flags");
    if (!ws->h_loss || !ws->h_best || !ws->h_flag || !ws->h_done) st = AL_ERR_OOM;
    if (st == AL_OK && ctx->device == AL_DEV_CUDA) {
        ws->tracked_nodes = m->n_nodes;
        ws->tracked = al_malloc(2 * (size_t)m->n_nodes * AL_MAX_BN_BRANCHES * sizeof(int64_t),
                                "attack BN counters");
        if (!ws->tracked) st = AL_ERR_OOM;
    }
done:
    if (st != AL_OK) al_attack_ws_fini(ctx, ws);
    return st;
}

al_cuda_graph_info al_attack_ws_graph_info(const al_attack_ws *ws) {
    al_cuda_graph_info t;
    memset(&t, 0, sizeof t);
#ifdef AL_HAVE_CUDA
    for (int i = 0; i < AL_ATTACK_GRAPHS; i++) {
        const al_cuda_graph_info g = al_cuda_graph_get_info(ws->graph[i]);
        t.nodes = AL_MAX(t.nodes, g.nodes);
        t.captures += g.captures;
        t.instantiations += g.instantiations;
        t.updates += g.updates;
        t.launches += g.launches;
    }
#else
    (void)ws;
#endif
    return t;
}

/* ---------------------------------------------------------------- pieces */

al_status al_attack_check_io(const char *fn, const al_model *m, int n, const float *x,
                             const int32_t *y, const float *x_adv) {
    if (!m->setup_done) return AL_FAIL(AL_ERR_VALUE, "%s: model %s is not set up", fn, m->arch);
    if (n < 1 || n > m->max_batch)
        return AL_FAIL(AL_ERR_VALUE, "%s: n=%d outside [1, %d] (model max_batch)", fn, n,
                       m->max_batch);
    if (!x || !x_adv || !y) return AL_FAIL(AL_ERR_VALUE, "%s: x, y and x_adv are required", fn);
    if (x == x_adv) return AL_FAIL(AL_ERR_VALUE, "%s: x_adv must not alias x", fn);
    return AL_OK;
}

static al_status validate(const al_model *m, const al_attack_spec *s, const al_attack_ws *ws,
                          const float *x, const float *x_adv, const int32_t *y, int n) {
    const char *fn = "al_attack_run";
    AL_TRY(al_attack_check_io(fn, m, n, x, y, x_adv));
    if (ws && (n > ws->max_batch || ws->k != m->num_classes ||
               ws->d != (size_t)m->in_c * m->in_h * m->in_w))
        return AL_FAIL(AL_ERR_VALUE,
                       "%s: workspace (batch %d, k %d, d %zu) does not fit n=%d of "
                       "model %s",
                       fn, ws->max_batch, ws->k, ws->d, n, m->arch);
    if (s->type != AL_ATTACK_FGSM && s->type != AL_ATTACK_PGD)
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.type %d is not fgsm|pgd", fn, (int)s->type);
    if (s->norm != AL_LINF && s->norm != AL_L2)
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.norm %d is not linf|l2", fn, (int)s->norm);
    if (!(s->eps >= 0.0f) || !isfinite(s->eps))
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.eps %g must be finite and >= 0", fn, (double)s->eps);
    if (!isfinite(s->alpha) || (s->type == AL_ATTACK_PGD && s->alpha < 0.0f))
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.alpha %g must be finite and >= 0", fn,
                       (double)s->alpha);
    if (s->type == AL_ATTACK_PGD && s->steps < 0)
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.steps %d < 0", fn, s->steps);
    if (s->restarts < 1) return AL_FAIL(AL_ERR_VALUE, "%s: spec.restarts %d < 1", fn, s->restarts);
    if (s->init != AL_ATTACK_INIT_NONE && s->init != AL_ATTACK_INIT_UNIFORM &&
        s->init != AL_ATTACK_INIT_NORMAL)
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.init %d is not none|uniform|normal", fn,
                       (int)s->init);
    if (s->init == AL_ATTACK_INIT_NORMAL && (!(s->init_std >= 0.0f) || !isfinite(s->init_std)))
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.init_std %g must be finite and >= 0", fn,
                       (double)s->init_std);
    if (s->loss != AL_ATTACK_LOSS_CE && s->loss != AL_ATTACK_LOSS_CW &&
        s->loss != AL_ATTACK_LOSS_KL_TRADES)
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.loss %d is not ce|cw|kl_trades", fn, (int)s->loss);
    if (s->targeted && !s->targets)
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.targeted needs spec.targets", fn);
    if (s->targeted && s->loss == AL_ATTACK_LOSS_KL_TRADES)
        return AL_FAIL(AL_ERR_VALUE, "%s: the kl_trades loss has no targeted form", fn);
    if (s->fwd.slot < 0 || s->fwd.slot >= m->n_slots)
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.fwd.slot %d outside [0, %d)", fn, s->fwd.slot,
                       m->n_slots);
    return AL_OK;
}

/* Per-example objective (ascended) into ws->per_sample and, if dlogits, its gradient. */
/* check_labels: ask for the (unused) host scalar, which is what makes the CUDA twins check
 * the labels; every other call asks for none, so an attack iteration waits on nothing. */
static al_status objective(al_ctx *ctx, const al_attack_spec *s, al_attack_ws *ws, int n, int k,
                           const float *logits, const int32_t *y, float *dlogits,
                           int check_labels) {
    double loss_v, *loss = check_labels ? &loss_v : NULL;
    const int32_t *lab = s->targeted ? s->targets : y;
    switch (s->loss) {
    case AL_ATTACK_LOSS_CE: /* targeted: weight -1 turns descent on CE(z, t) into ascent */
        return al_xent(ctx, n, k, logits, lab, s->targeted ? -1.0f : 1.0f, loss, ws->per_sample,
                       dlogits);
    case AL_ATTACK_LOSS_CW:
        return al_cw_margin(ctx, n, k, logits, lab, s->targeted, loss, ws->per_sample, dlogits);
    case AL_ATTACK_LOSS_KL_TRADES:
        return al_trades_kl(ctx, n, k, ws->logits_ref, logits, loss, ws->per_sample, dlogits);
    }
    return AL_FAIL(AL_ERR_VALUE, "al_attack_run: spec.loss %d", (int)s->loss);
}

/* ws->h_flag[i] = 1 where logits make point i a success (untargeted: argmax != y; targeted:
 * argmax == target). Returns the count in *n_succ. */
static al_status success_flags(al_ctx *ctx, const al_attack_spec *s, al_attack_ws *ws, int n, int k,
                               const float *logits, const int32_t *y, int *n_succ) {
    int n_correct;
    AL_TRY(al_count_correct(ctx, n, k, logits, s->targeted ? s->targets : y, &n_correct, ws->flag));
    AL_TRY(al_copy_to_host(ctx, ws->h_flag, ws->flag, (size_t)n));
    if (!s->targeted)
        for (int i = 0; i < n; i++) ws->h_flag[i] = (uint8_t)!ws->h_flag[i];
    *n_succ = s->targeted ? n_correct : n - n_correct;
    return AL_OK;
}

/* x_cur = the start point of restart r (see al_attack_init in attack.h). */
static al_status start_point(al_ctx *ctx, const al_attack_spec *s, al_attack_ws *ws, const float *x,
                             int n, int r, uint64_t seed, uint64_t stream) {
    const size_t d = ws->d, nd = (size_t)n * d;
#ifdef AL_HAVE_CUDA
    /* CUDA: the same element functions in cuda/attack_start.cu, x -> x_cur with no staging */
    if (ctx->device == AL_DEV_CUDA && s->init != AL_ATTACK_INIT_NONE) {
        if (s->init == AL_ATTACK_INIT_NORMAL)
            return al_attack_start_normal_cuda(ctx, n, d, x, ws->x_cur, s->init_std, r, seed,
                                               stream);
        if (s->norm == AL_LINF)
            return al_attack_start_uniform_cuda(ctx, n, d, x, ws->x_cur, s->eps, r, seed, stream);
        return al_attack_start_l2_cuda(ctx, n, d, x, ws->x_cur, s->eps, r, seed, stream);
    }
#endif
    AL_TRY(al_copy_dev(ctx, ws->x_cur, x, nd * sizeof(float)));
    if (s->init == AL_ATTACK_INIT_NONE) return AL_OK;
    /* CPU: drawn in place (CUDA returned above; h_x staging only if a build lacks the kernel). */
    float *h = ctx->device == AL_DEV_CPU ? ws->x_cur : ws->h_x;
    if (h != ws->x_cur) AL_TRY(al_copy_to_host(ctx, h, x, nd * sizeof(float)));
    if (s->init == AL_ATTACK_INIT_NORMAL) {
        for (int i = 0; i < n; i++)
            for (size_t j = 0; j < d; j++) {
                float *v = &h[(size_t)i * d + j];
                *v = al_attack_start_normal_elem(*v, s->init_std, seed, stream,
                                                 al_attack_rng_index(r, n, i, d, j));
            }
    } else if (s->norm == AL_LINF) {
        for (int i = 0; i < n; i++)
            for (size_t j = 0; j < d; j++) {
                float *v = &h[(size_t)i * d + j];
                *v = al_attack_start_uniform_elem(*v, s->eps, seed, stream,
                                                  al_attack_rng_index(r, n, i, d, j));
            }
    } else {
        /* L2: Gaussian direction, normalised per example, radius eps * U(0,1) */
        for (int i = 0; i < n; i++) {
            double sq = 0.0;
            for (size_t j = 0; j < d; j++) {
                double g = al_rng_normal(seed, stream, al_attack_rng_index(r, n, i, d, j));
                sq += g * g;
            }
            const uint64_t rw = AL_ATTACK_RADIUS_WORD + (uint64_t)r * n + (uint64_t)i;
            const double radius = (double)s->eps * al_rng_uniform(seed, stream, rw);
            const float scale = sq > 0.0 ? (float)(radius / sqrt(sq)) : 0.0f;
            for (size_t j = 0; j < d; j++) {
                float *v = &h[(size_t)i * d + j];
                float g = al_rng_normal(seed, stream, al_attack_rng_index(r, n, i, d, j));
                *v = al_clampf(*v + scale * g, 0.0f, 1.0f);
            }
        }
    }
    if (h != ws->x_cur) AL_TRY(al_copy_to_dev(ctx, ws->x_cur, h, nd * sizeof(float)));
    return AL_OK;
}

static al_status copy_row(al_ctx *ctx, float *dst, const float *src, int i, size_t d) {
    return al_copy_dev(ctx, dst + (size_t)i * d, src + (size_t)i * d, d * sizeof(float));
}

/* ---------------------------------------------------------------- one iteration */

/* One iteration from ws->x_cur: forward, objective gradient, backward to the input only,
 * (early stop) zero the input gradient of the points already successful, al_pgd_step. On CUDA
 * it waits on nothing unless check_labels (the first iteration's host read), which is what
 * lets capture_iter record it into a CUDA graph. */
static al_status pgd_iter(al_ctx *ctx, al_model *m, const al_attack_spec *spec, al_attack_ws *ws,
                          const float *x, const int32_t *y, int n, const al_fwd_opts *fwd,
                          float alpha, int check_labels) {
    const int k = m->num_classes, slot = fwd->slot;
    const size_t d = ws->d;
    int n_succ = 0;
    AL_TRY(al_model_forward(ctx, m, ws->x_cur, n, fwd));
    const float *logits = al_model_logits(m, slot);
    AL_TRY(objective(ctx, spec, ws, n, k, logits, y, ws->dlogits, check_labels));
    if (spec->early_stop && ctx->device == AL_DEV_CUDA)
        /* the flags stay on the device for the zeroing kernel below: no host read */
        AL_TRY(al_count_correct(ctx, n, k, logits, spec->targeted ? spec->targets : y, NULL,
                                ws->flag));
    else if (spec->early_stop)
        AL_TRY(success_flags(ctx, spec, ws, n, k, logits, y, &n_succ));
    AL_TRY(al_model_backward(ctx, m, slot, ws->dlogits, NULL, AL_BWD_INPUT, ws->grad));
#ifdef AL_HAVE_CUDA
    /* CUDA: one launch on the device flags (success = correct for targeted attacks, not
     * correct for untargeted ones, as success_flags) instead of a memset per row */
    if (spec->early_stop && ctx->device == AL_DEV_CUDA)
        AL_TRY(al_attack_zero_rows_cuda(ctx, n, d, ws->grad, ws->flag, spec->targeted));
    else
#endif
    if (spec->early_stop)
        /* zero the INPUT gradient (exact in any BN mode): those points do not move */
        for (int i = 0; i < n; i++)
            if (ws->h_flag[i]) AL_TRY(al_memset_dev(ctx, ws->grad + (size_t)i * d, 0, d * sizeof(float)));
    return al_pgd_step(ctx, spec->norm, n, d, ws->x_cur, x, ws->grad, alpha, spec->eps);
}

#ifdef AL_HAVE_CUDA
/* What fixes an iteration's node sequence (kernels, library calls): the graph to update. */
static uint64_t graph_key(const al_model *m, const al_attack_spec *s, const al_fwd_opts *o,
                          int n) {
    const uint64_t parts[] = {(uint64_t)(uintptr_t)m, (uint64_t)n, (uint64_t)s->norm,
                              (uint64_t)s->loss, (uint64_t)s->early_stop, (uint64_t)s->targeted,
                              (uint64_t)o->slot, (uint64_t)o->train, (uint64_t)o->update_bn,
                              (uint64_t)o->bn_branch, (uint64_t)(o->labels != NULL)};
    uint64_t h = 1469598103934665603ull; /* FNV-1a over the parts */
    for (size_t i = 0; i < AL_ARRAY_LEN(parts); i++)
        for (int b = 0; b < 8; b++) h = (h ^ ((parts[i] >> (8 * b)) & 0xff)) * 1099511628211ull;
    return h;
}

/* Record one iteration into graph *g. Nothing runs, yet the host code did: the BN counters it
 * advanced are put back, and what it added is kept for replay_iter. */
static al_status capture_iter(al_ctx *ctx, al_model *m, const al_attack_spec *spec,
                              al_attack_ws *ws, const float *x, const int32_t *y, int n,
                              const al_fwd_opts *fwd, float alpha, al_cuda_graph **g) {
    const size_t nt = (size_t)m->n_nodes * AL_MAX_BN_BRANCHES;
    int64_t *before = ws->tracked, *delta = ws->tracked + nt;
    al_model_get_tracked(m, before);
    AL_TRY(al_cuda_graph_begin(ctx));
    const al_status body = pgd_iter(ctx, m, spec, ws, x, y, n, fwd, alpha, 0);
    const al_status st = al_cuda_graph_end(ctx, g, body);
    al_model_get_tracked(m, delta);
    for (size_t i = 0; i < nt; i++) delta[i] -= before[i];
    al_model_add_tracked(m, delta, -1);
    return st;
}
/* One replay of the captured iteration, with its host effect on the BN counters. */
static al_status replay_iter(al_ctx *ctx, al_model *m, al_attack_ws *ws, al_cuda_graph *g) {
    AL_TRY(al_cuda_graph_launch(ctx, g));
    al_model_add_tracked(m, ws->tracked + (size_t)m->n_nodes * AL_MAX_BN_BRANCHES, 1);
    return AL_OK;
}
#endif

/* ---------------------------------------------------------------- driver */

al_status al_attack_run(al_ctx *ctx, al_model *m, const al_attack_spec *spec, al_attack_ws *ws,
                        const float *x, const int32_t *y, int n, uint64_t seed, uint64_t stream,
                        float *x_adv, uint8_t *success, int *n_success) {
    AL_TRY(validate(m, spec, ws, x, x_adv, y, n));
    /* A training step's deferred scalars (core/sums.h) are suspended here: the objective values
     * and success counts below steer restarts and early stops, and are not the step's loss.
     * The first iteration's label check (a host read) is skipped in a deferred step: the
     * step's own deferred losses check the same labels on the device. */
    struct al_sums *deferred = ctx->defer;
    ctx->defer = NULL;
    al_attack_ws local;
    memset(&local, 0, sizeof local);
    if (!ws) {
        AL_TRY(al_attack_ws_init(ctx, &local, m, n));
        ws = &local;
    }
    al_status st = AL_OK;
    const int k = m->num_classes, slot = spec->fwd.slot;
    const size_t d = ws->d;
    const int steps = spec->type == AL_ATTACK_FGSM ? 1 : spec->steps;
    const float alpha =
        spec->type == AL_ATTACK_FGSM && spec->alpha <= 0.0f ? spec->eps : spec->alpha;
    al_fwd_opts fwd = spec->fwd, fwd_quiet = spec->fwd;
    fwd_quiet.update_bn = 0; /* bookkeeping forwards leave BN running stats alone */
    const int want_success = success != NULL || n_success != NULL;
    const int per_point = spec->restarts > 1 || spec->keep_clean_if_failed || want_success;
    int n_succ = 0;

    if (spec->loss == AL_ATTACK_LOSS_KL_TRADES) {
        /* TRADES: p(x) from one clean forward; the official code recomputes it every step in
         * eval mode, which gives the same logits. */
        AL_CHECK(al_model_forward(ctx, m, x, n, &fwd_quiet));
        AL_CHECK(al_copy_dev(ctx, ws->logits_ref, al_model_logits(m, slot),
                             (size_t)n * k * sizeof(float)));
    }
    memset(ws->h_done, 0, (size_t)n);
    for (int i = 0; i < n; i++) ws->h_best[i] = -INFINITY;
    /* CUDA graphs: every iteration of every restart queues the same launches with the same
     * arguments (nothing in it depends on r or t but the first one's label check), so the
     * first runs eagerly (checking the labels and settling every lazily made cuDNN plan), the
     * second is captured and every later one replays the capture. 0 eager, 1 capture next,
     * 2 captured. Below three iterations a capture does not pay for itself. */
#ifdef AL_HAVE_CUDA
    int graph = 0;
    al_cuda_graph **gslot = NULL; /* this iteration shape's graph (graph_key) */
    if (al_cuda_graphs_usable(ctx) && !ws->graph_off && ws->tracked &&
        m->n_nodes <= ws->tracked_nodes && spec->restarts * steps >= 3) {
        const uint64_t key = graph_key(m, spec, &fwd, n);
        for (int i = 0; i < AL_ATTACK_GRAPHS && !gslot; i++)
            if (ws->graph[i] && ws->graph_key[i] == key) gslot = &ws->graph[i];
        if (!gslot) { /* a new shape: the next slot (its old graph is replaced) */
            const int i = ws->graph_next;
            ws->graph_next = (i + 1) % AL_ATTACK_GRAPHS;
            al_cuda_graph_free(ws->graph[i]);
            ws->graph[i] = NULL;
            ws->graph_key[i] = key;
            gslot = &ws->graph[i];
        }
        graph = 1;
    }
#endif

    for (int r = 0; r < spec->restarts; r++) {
        AL_CHECK(start_point(ctx, spec, ws, x, n, r, seed, stream));
        for (int t = 0; t < steps; t++) {
            al_nvtx_push("attack step");
#ifdef AL_HAVE_CUDA
            if (graph == 2) { /* captured: replay */
                st = replay_iter(ctx, m, ws, *gslot);
            } else if (graph == 1 && (r > 0 || t > 0)) {
                /* after the first (eager) iteration: capture this one, then replay it */
                st = capture_iter(ctx, m, spec, ws, x, y, n, &fwd, alpha, gslot);
                if (st == AL_OK) {
                    graph = 2;
                    st = replay_iter(ctx, m, ws, *gslot);
                } else { /* refused by the capture: say so once, run eagerly from here on */
                    al_log_warn("attack: CUDA graph capture of the %s iteration failed (%s); "
                                "running it without a graph",
                                spec->type == AL_ATTACK_FGSM ? "FGSM" : "PGD", al_errmsg());
                    ws->graph_off = 1;
                    graph = 0;
                    st = pgd_iter(ctx, m, spec, ws, x, y, n, &fwd, alpha, 0);
                }
            } else
#endif
                st = pgd_iter(ctx, m, spec, ws, x, y, n, &fwd, alpha, r == 0 && t == 0 && !deferred);
            al_nvtx_pop();
            if (st != AL_OK) goto done;
        }
        if (steps == 0) {
            /* a zero-gradient step is exactly the projection onto the ball and [0,1] */
            AL_CHECK(al_memset_dev(ctx, ws->grad, 0, (size_t)n * d * sizeof(float)));
            AL_CHECK(al_pgd_step(ctx, spec->norm, n, d, ws->x_cur, x, ws->grad, 0.0f, spec->eps));
        }
        if (!per_point) { /* training, one restart, no success wanted: the last iterate */
            AL_CHECK(al_copy_dev(ctx, x_adv, ws->x_cur, (size_t)n * d * sizeof(float)));
            break;
        }
        AL_CHECK(al_model_forward(ctx, m, ws->x_cur, n, &fwd_quiet));
        const float *logits = al_model_logits(m, slot);
        AL_CHECK(objective(ctx, spec, ws, n, k, logits, y, NULL, 0));
        AL_CHECK(success_flags(ctx, spec, ws, n, k, logits, y, &n_succ));
        AL_CHECK(al_copy_to_host(ctx, ws->h_loss, ws->per_sample, (size_t)n * sizeof(float)));
        int all_done = 1;
        for (int i = 0; i < n; i++) {
            if (ws->h_done[i]) continue;
            /* objective to maximise: targeted CE reports CE(z, t), which is descended */
            double obj = ws->h_loss[i];
            if (spec->targeted && spec->loss == AL_ATTACK_LOSS_CE) obj = -obj;
            if (ws->h_flag[i]) {
                AL_CHECK(copy_row(ctx, x_adv, ws->x_cur, i, d));
                ws->h_done[i] = 1;
                continue;
            }
            all_done = 0;
            /* r == 0 always writes the row, so a NaN objective never leaves it unset */
            if (!spec->keep_clean_if_failed && (r == 0 || obj > ws->h_best[i])) {
                AL_CHECK(copy_row(ctx, x_adv, ws->x_cur, i, d));
                ws->h_best[i] = obj;
            }
        }
        if (all_done) break; /* every point has its first successful restart */
    }
    if (spec->keep_clean_if_failed)
        for (int i = 0; i < n; i++)
            if (!ws->h_done[i]) AL_CHECK(copy_row(ctx, x_adv, x, i, d));

    if (want_success) {
        /* re-verify on exactly the returned points */
        AL_CHECK(al_model_forward(ctx, m, x_adv, n, &fwd_quiet));
        AL_CHECK(success_flags(ctx, spec, ws, n, k, al_model_logits(m, slot), y, &n_succ));
        if (success) AL_CHECK(al_copy_to_dev(ctx, success, ws->h_flag, (size_t)n));
        if (n_success) *n_success = n_succ;
    }
done:
    if (ws == &local) al_attack_ws_fini(ctx, &local);
    ctx->defer = deferred;
    return st;
}
