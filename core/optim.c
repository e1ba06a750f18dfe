/* optim.c: SGD (PyTorch semantics) + EMA over the model's flat parameter buffer, LR and
 * momentum schedules, optimiser state for checkpoints (see optim.h).
 * Twin: cuda/optim_sgd_ema.cu (al_sgd_step_cuda, declared in core/cuda_api.h). The CPU loop
 * below is the reference: one call of al_sgd_ema_elem per float. */
#include "core/optim.h"

#include <math.h>
#include <string.h>

#include "core/cuda_api.h"
#include "core/log.h"
#include "core/sums.h"

al_sgd_opts al_sgd_opts_from_config(const al_config *cfg) {
    al_sgd_opts o;
    o.momentum = cfg->train.momentum;
    o.weight_decay = cfg->train.weight_decay;
    o.nesterov = cfg->train.nesterov;
    o.ema = cfg->train.ema;
    o.ema_decay = cfg->train.ema_decay;
    return o;
}

/* ---- the step ---- */
void al_sgd_step_cpu(size_t n, const uint8_t *mask, float *params, const float *grads,
                     float *momentum, float *ema, const al_sgd_hparams *hp) {
    const al_sgd_hparams h = *hp;
    /* Threads only pay off on real models; tiny tables stay on one thread. */
#pragma omp parallel for schedule(static) if (n > 65536)
    for (size_t i = 0; i < n; i++) {
        float unused_b = 0.0f, unused_e = 0.0f; /* stand-ins for absent buffers */
        al_sgd_ema_elem(mask[i], &params[i], grads[i], momentum ? &momentum[i] : &unused_b,
                        ema ? &ema[i] : &unused_e, &h);
    }
}

al_status al_optim_init(al_ctx *ctx, al_optim *o, const al_model *m, const al_sgd_opts *opts) {
    memset(o, 0, sizeof *o);
    AL_ASSERT(m->setup_done, "al_optim_init before al_model_setup");
    if (!(opts->momentum >= 0 && opts->momentum <= 1 && opts->weight_decay >= 0 &&
          opts->ema_decay >= 0 && opts->ema_decay <= 1))
        return AL_FAIL(AL_ERR_VALUE,
                       "optimiser: momentum %g, weight_decay %g, ema_decay %g: "
                       "expected momentum, ema_decay in [0, 1], weight_decay >= 0",
                       opts->momentum, opts->weight_decay, opts->ema_decay);
    if (opts->nesterov && opts->momentum <= 0)
        return AL_FAIL(AL_ERR_VALUE, "optimiser: nesterov requires momentum > 0 (got %g)",
                       opts->momentum);
    o->opts = *opts;
    o->n_floats = m->n_param_floats;
    size_t n = o->n_floats;
    al_status st = AL_OK;
    uint8_t *h_mask = al_calloc(n ? n : 1, 1, "optimiser mask (host)");
    if (!h_mask) return AL_ERR_OOM;
    for (int i = 0; i < m->n_params; i++) {
        const al_param *p = &m->params[i];
        AL_ASSERT(p->offset + p->n_elems <= n, "param %s outside the buffer", p->name);
        uint8_t bits = p->trainable ? (uint8_t)(AL_OPT_TRAIN | (p->decay ? AL_OPT_DECAY : 0)) : 0;
        memset(h_mask + p->offset, bits, p->n_elems);
    }
    AL_CHECK(al_dev_alloc(ctx, (void **)&o->mask, n, "optimiser mask"));
    AL_CHECK(al_copy_to_dev(ctx, o->mask, h_mask, n));
    if (opts->momentum != 0) {
        AL_CHECK(al_dev_alloc(ctx, (void **)&o->momentum, n * sizeof(float), "momentum buffer"));
        AL_CHECK(al_memset_dev(ctx, o->momentum, 0, n * sizeof(float)));
    }
    if (opts->ema) {
        AL_CHECK(al_dev_alloc(ctx, (void **)&o->ema, n * sizeof(float), "EMA buffer"));
        AL_CHECK(al_copy_dev(ctx, o->ema, m->data, n * sizeof(float)));
    }
    AL_CHECK(al_sync(ctx)); /* h_mask is freed below */
done:
    al_free(h_mask);
    if (st != AL_OK) al_optim_fini(ctx, o);
    return st;
}

void al_optim_fini(al_ctx *ctx, al_optim *o) {
    if (!o) return;
    al_dev_free(ctx, o->mask);
    al_dev_free(ctx, o->momentum);
    al_dev_free(ctx, o->ema);
    o->mask = NULL;
    o->momentum = NULL;
    o->ema = NULL;
}

/* The step, its gradient scale from the host (grad_scale) or, when dev_scale != NULL, read on
 * the device by the update itself. */
static al_status step_impl(al_ctx *ctx, al_optim *o, al_model *m, double lr, double momentum,
                           double grad_scale, const double *dev_scale) {
    AL_ASSERT(o->mask && m->n_param_floats == o->n_floats, "optimiser not set up for this model");
    AL_ASSERT(momentum == 0 || o->momentum,
              "step momentum %g but the optimiser was set up with momentum 0", momentum);
    if (!isfinite(lr) || lr < 0 || !isfinite(grad_scale))
        return AL_FAIL(AL_ERR_VALUE,
                       "optimiser step %lld: lr %g, grad_scale %g: expected "
                       "finite, lr >= 0",
                       (long long)o->step, lr, grad_scale);
    al_sgd_hparams hp;
    hp.lr = (float)lr;
    hp.momentum = (float)momentum;
    hp.weight_decay = (float)o->opts.weight_decay;
    hp.grad_scale = (float)grad_scale;
    hp.nesterov = o->opts.nesterov;
    hp.first = momentum != 0 && !o->have_buf;
    hp.ema = o->ema != NULL;
    hp.ema_decay = (float)o->opts.ema_decay;
    /* 1 - d in double, then rounded once, as torch's `alpha=1 - d` (a Python float) is. */
    hp.ema_one_minus_decay = (float)(1.0 - o->opts.ema_decay);
    float *mom_buf = hp.momentum != 0.0f ? o->momentum : NULL;
    if (ctx->device == AL_DEV_CUDA) {
#ifdef AL_HAVE_CUDA
        AL_TRY(
            al_sgd_step_cuda(ctx, o->n_floats, o->mask, m->data, m->grads, mom_buf, o->ema, &hp,
                             dev_scale));
#else
        return AL_FAIL(AL_ERR_NO_GPU, "optimiser: device cuda but advlab was built without CUDA");
#endif
    } else {
        if (dev_scale) hp.grad_scale = (float)*dev_scale;
        al_sgd_step_cpu(o->n_floats, o->mask, m->data, m->grads, mom_buf, o->ema, &hp);
    }
    if (momentum != 0) o->have_buf = 1;
    o->step++;
    return AL_OK;
}

al_status al_optim_step(al_ctx *ctx, al_optim *o, al_model *m, double lr, double momentum,
                        double grad_scale) {
    return step_impl(ctx, o, m, lr, momentum, grad_scale, NULL);
}

al_status al_optim_step_sched(al_ctx *ctx, al_optim *o, al_model *m, const al_cfg_train *t,
                              int64_t steps_per_epoch, double grad_scale) {
    double lr = al_lr_at(t, o->step, steps_per_epoch);
    double mom = al_momentum_at(t, o->step, steps_per_epoch);
    return step_impl(ctx, o, m, lr, mom, grad_scale, NULL);
}

al_status al_optim_step_sched_dev(al_ctx *ctx, al_optim *o, al_model *m, const al_cfg_train *t,
                                  int64_t steps_per_epoch, const double *dev_scale) {
    AL_ASSERT(dev_scale, "al_optim_step_sched_dev: NULL dev_scale");
    double lr = al_lr_at(t, o->step, steps_per_epoch);
    double mom = al_momentum_at(t, o->step, steps_per_epoch);
    return step_impl(ctx, o, m, lr, mom, 1.0, dev_scale);
}

/* ---- gradient norm ---- */
/* Sum over the trainable elements of g^2 in double. Fixed chunking (not per thread) so the sum
 * is the same for every thread count. */
static double masked_sumsq_cpu(size_t n, const float *g, const uint8_t *mask) {
    enum { N_CHUNKS = 64 };
    double part[N_CHUNKS];
    const size_t per = AL_CEIL_DIV(n, (size_t)N_CHUNKS);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (int c = 0; c < N_CHUNKS; c++) {
        double s = 0;
        size_t lo = (size_t)c * per, hi = AL_MIN(n, lo + per);
        for (size_t i = lo; i < hi; i++)
            if (mask[i] & AL_OPT_TRAIN) s += (double)g[i] * (double)g[i];
        part[c] = s;
    }
    double total = 0;
    for (int c = 0; c < N_CHUNKS; c++) total += part[c];
    return total;
}

al_status al_optim_clip_coef_deferred(al_ctx *ctx, const al_optim *o, const al_model *m,
                                      double max_norm, al_sums *s) {
    AL_ASSERT(max_norm > 0 && s, "al_optim_clip_coef_deferred: max_norm %g", max_norm);
    if (ctx->device == AL_DEV_CPU) {
        al_sums_clip_elem(s, masked_sumsq_cpu(o->n_floats, m->grads, o->mask), max_norm, o->step);
        return AL_OK;
    }
    AL_CUDA_OR_FAIL(al_clip_coef_deferred_cuda(ctx, o->n_floats, m->grads, o->mask, AL_OPT_TRAIN,
                                               max_norm, s, o->step));
}
al_status al_optim_clip_coef(al_ctx *ctx, const al_optim *o, const al_model *m, double max_norm,
                             double *norm, double *coef) {
    *coef = 1.0;
    if (norm) *norm = 0;
    if (!(max_norm > 0)) return AL_OK;
    al_note_host_read(ctx, coef);
    double sq = 0;
    if (ctx->device == AL_DEV_CUDA) {
#ifdef AL_HAVE_CUDA
        /* the deterministic masked sum of cuda/reduce_sumsq.cu */
        AL_TRY(al_masked_sumsq_cuda(ctx, o->n_floats, m->grads, o->mask, AL_OPT_TRAIN, &sq));
#else
        return AL_FAIL(AL_ERR_NO_GPU,
                       "optimiser: CUDA device requested but advlab was built without CUDA");
#endif
    } else {
        sq = masked_sumsq_cpu(o->n_floats, m->grads, o->mask);
    }
    const double nrm = sqrt(sq);
    if (norm) *norm = nrm;
    if (!isfinite(nrm))
        return AL_FAIL(AL_ERR_NAN, "optimiser step %lld: gradient norm is %g", (long long)o->step,
                       nrm);
    *coef = al_clip_coef(nrm, max_norm);
    return AL_OK;
}

/* ---- checkpoint state ---- */
al_status al_optim_get_state(al_ctx *ctx, const al_optim *o, float *h_momentum, float *h_ema) {
    size_t bytes = o->n_floats * sizeof(float);
    if (h_momentum && o->momentum) AL_TRY(al_copy_to_host(ctx, h_momentum, o->momentum, bytes));
    if (h_ema && o->ema) AL_TRY(al_copy_to_host(ctx, h_ema, o->ema, bytes));
    return al_sync(ctx);
}

al_status al_optim_set_state(al_ctx *ctx, al_optim *o, const al_model *m, int64_t step,
                             const float *h_momentum, const float *h_ema) {
    size_t bytes = o->n_floats * sizeof(float);
    if (step < 0) return AL_FAIL(AL_ERR_VALUE, "optimiser: resume step %lld < 0", (long long)step);
    if (o->momentum) {
        if (h_momentum) {
            AL_TRY(al_copy_to_dev(ctx, o->momentum, h_momentum, bytes));
            /* A zero buffer behaves exactly like "no history": m * 0 + g == g. */
            o->have_buf = 1;
        } else if (step > 0) {
            return AL_FAIL(AL_ERR_VALUE,
                           "optimiser: resuming at step %lld needs the momentum buffer, which the "
                           "checkpoint lacks (momentum %g)",
                           (long long)step, o->opts.momentum);
        } else {
            AL_TRY(al_memset_dev(ctx, o->momentum, 0, bytes));
            o->have_buf = 0;
        }
    }
    if (o->ema) {
        if (h_ema) {
            AL_TRY(al_copy_to_dev(ctx, o->ema, h_ema, bytes));
        } else {
            if (step > 0)
                al_log_warn("resuming at step %lld without an EMA in the checkpoint: the EMA "
                            "restarts from the current weights",
                            (long long)step);
            AL_TRY(al_copy_dev(ctx, o->ema, m->data, bytes));
        }
    }
    o->step = step;
    return al_sync(ctx);
}

al_status al_optim_swap_ema(al_optim *o, al_model *m) {
    if (!o->ema) return AL_FAIL(AL_ERR_VALUE, "optimiser: no EMA weights (train.ema = 0)");
    float *t = m->data;
    m->data = o->ema;
    o->ema = t;
    return AL_OK;
}

/* ---- schedules ---- */
/* pi to double precision (= Python's math.pi); M_PI is not ISO C. */
static const double k_pi = 3.14159265358979323846;

/* CyclicLR's triangular position (torch 1.13 get_lr, mode "triangular", step_size_up =
 * step_size_down = T/2): scale in [0, 1], written with the same operations in the same order
 * so the double result matches bit for bit. */
static double cyclic_scale(double step, double total) {
    double cycle = floor(1.0 + step / total);
    double x = 1.0 + step / total - cycle;
    const double ratio = 0.5; /* step_size_up / total_size */
    return x <= ratio ? x / ratio : (x - 1.0) / (ratio - 1.0);
}

/* OneCycleLR's cosine anneal (torch 1.13 _annealing_cos). */
static double anneal_cos(double start, double end, double pct) {
    double cos_out = cos(k_pi * pct) + 1.0;
    return end + (start - end) / 2.0 * cos_out;
}

/* OneCycleLR, two phases: phase 0 ends at step pct_start*T - 1 (lr initial -> max,
 * momentum max -> min), phase 1 at T - 1 (lr max -> min, momentum min -> max). which = 0:
 * lr, 1: momentum. */
static double onecycle(const al_cfg_train *t, double step, double total, double peak, int which) {
    double initial = peak / t->onecycle_div;
    double min_lr = initial / t->onecycle_final_div;
    double end0 = t->onecycle_pct_start * total - 1.0, end1 = total - 1.0;
    double start_step, end_step, a, b;
    if (step <= end0) {
        start_step = 0;
        end_step = end0;
        a = which ? t->momentum : initial;
        b = which ? t->momentum_min : peak;
    } else {
        start_step = end0;
        end_step = end1;
        a = which ? t->momentum_min : peak;
        b = which ? t->momentum : min_lr;
    }
    double span = end_step - start_step;
    double pct = span > 0 ? (step - start_step) / span : 1.0;
    return anneal_cos(a, b, pct);
}

static double schedule_total(const al_cfg_train *t, int64_t spe) {
    return (double)t->epochs * (double)(spe > 0 ? spe : 1);
}

double al_lr_at(const al_cfg_train *t, int64_t step, int64_t steps_per_epoch) {
    int64_t spe = steps_per_epoch > 0 ? steps_per_epoch : 1;
    double total = schedule_total(t, spe);
    double s = (double)(step < 0 ? 0 : step);
    if (s > total) s = total; /* past the end: the schedule's final value */
    double peak = t->lr_max > 0 ? t->lr_max : t->lr;
    double lr = t->lr;
    switch (t->lr_schedule) {
    case AL_LR_CONSTANT: break;
    case AL_LR_MULTISTEP: {
        /* MultiStepLR multiplies the group's lr by gamma at each milestone, in order. */
        int64_t epoch = step / spe;
        for (int i = 0; i < t->milestones.n; i++)
            if (t->milestones.v[i] <= epoch) lr = lr * t->gamma;
        break;
    }
    case AL_LR_COSINE: lr = t->lr * 0.5 * (1.0 + cos(k_pi * s / total)); break;
    case AL_LR_CYCLIC: lr = 0.0 + peak * cyclic_scale(s, total); break;
    case AL_LR_ONECYCLE: lr = onecycle(t, s, total, peak, 0); break;
    }
    int64_t warm = (int64_t)llround(t->warmup_epochs * (double)spe);
    if (warm > 0 && step < warm) lr *= (double)(step + 1) / (double)warm;
    return lr;
}

double al_momentum_at(const al_cfg_train *t, int64_t step, int64_t steps_per_epoch) {
    if (!t->cycle_momentum) return t->momentum;
    double total = schedule_total(t, steps_per_epoch);
    double s = (double)(step < 0 ? 0 : step);
    if (s > total) s = total;
    switch (t->lr_schedule) {
    case AL_LR_CYCLIC:
        return t->momentum - (t->momentum - t->momentum_min) * cyclic_scale(s, total);
    case AL_LR_ONECYCLE: {
        double peak = t->lr_max > 0 ? t->lr_max : t->lr;
        return onecycle(t, s, total, peak, 1);
    }
    default: return t->momentum;
    }
}
