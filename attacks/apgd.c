/* apgd.c: APGD-CE / APGD-DLR / APGD-T driver behind attacks/apgd.h, device-agnostic, plus the
 * CPU reference of the APGD step. Twin of the step: cuda/attack_apgd.cu (Linf through the same
 * AL_HOSTDEV al_apgd_linf_elem). On CUDA the iterates, gradients, losses and step sizes stay on
 * the device; per iteration only the per-point losses and correct flags (N floats + N bytes)
 * come to the host for the step-size schedule (and the eta vector goes back at checkpoints).
 * Shapes: x, x_adv and every ws (B, d) buffer are (N, d) with d = C*H*W; logits (N, K).
 *
 * Layout of a call: one clean forward decides which points are attacked (correctly classified
 * ones) and, for APGD-T, each point's target order. Then for each target (APGD-T) and restart:
 * the still-robust points are gathered into the first rows of ws->xs (a "run" of m points,
 * remembering each one's batch position in h_idx for its random start), one single run of
 * n_iter iterations executes, and the points it broke get their x_best_adv scattered into
 * x_adv. Finally a fresh forward on x_adv gives `success`. */
#include "attacks/apgd.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "attacks/attack.h"
#include "losses/loss.h"

al_apgd_spec al_apgd_spec_default(al_apgd_loss loss, al_norm norm, float eps) {
    al_apgd_spec s;
    memset(&s, 0, sizeof s);
    s.norm = norm;
    s.eps = eps;
    s.loss = loss;
    s.n_iter = 100;
    s.n_restarts = 1;
    s.n_target_classes = 9;
    s.eot_iter = 1;
    s.rho = 0.75f;
    return s; /* fwd zeroed: slot 0, eval mode */
}

const char *al_apgd_loss_name(al_apgd_loss loss) {
    switch (loss) {
    case AL_APGD_CE: return "apgd-ce";
    case AL_APGD_DLR: return "apgd-dlr";
    case AL_APGD_T: return "apgd-t";
    }
    return "apgd-?";
}

/* ---------------------------------------------------------------- schedule */

/* The reference's integer constants: first interval, its decrement, and the minimum interval. */
static void sched_consts(int n_iter, int *h1, int *decr, int *h_min) {
    *h1 = AL_MAX((int)(0.22 * n_iter), 1);
    *decr = AL_MAX((int)(0.03 * n_iter), 1);
    *h_min = AL_MAX((int)(0.06 * n_iter), 1);
}

int al_apgd_checkpoints(int n_iter, int *w, int cap) {
    int h, decr, h_min, cnt = 0;
    sched_consts(n_iter, &h, &decr, &h_min);
    for (int at = h; at <= n_iter; h = AL_MAX(h - decr, h_min), at += h) {
        if (cnt < cap) w[cnt] = at;
        cnt++;
    }
    return cnt;
}

/* ---------------------------------------------------------------- step (CPU reference) */

al_status al_apgd_step_cpu(al_ctx *ctx, al_norm norm, int n, size_t d, float *x, float *x_prev,
                           const float *x0, const float *g, const float *eta, float a, float eps,
                           float *tmp) {
    (void)ctx;
    if (norm == AL_LINF) {
        for (int i = 0; i < n; i++) {
            const size_t o = (size_t)i * d;
            const float e = eta[i];
            for (size_t j = 0; j < d; j++) {
                float xk = x[o + j];
                x[o + j] = al_apgd_linf_elem(xk, x_prev[o + j], x0[o + j], g[o + j], e, a, eps);
                x_prev[o + j] = al_pgd_finitef(xk) ? xk : x0[o + j];
            }
        }
        return AL_OK;
    }
    /* L2: z = P(x + eta g / (||g|| + 1e-12)), then v = x + a (z - x) + (1 - a)(x - x_prev),
     * x_new = P(v), with P(w) = clamp(x0 + (w - x0) * min(eps, ||w - x0||) / (||w - x0|| +
     * 1e-12), 0, 1). Norms accumulate in double over finite elements; the scale is applied in
     * float as one multiply per element. */
    for (int i = 0; i < n; i++) {
        const size_t o = (size_t)i * d;
        float *xi = x + o, *pi = x_prev + o, *ti = tmp + o;
        const float *x0i = x0 + o, *gi = g + o;
        double gsq = 0.0;
        for (size_t j = 0; j < d; j++)
            if (al_pgd_finitef(gi[j])) gsq += (double)gi[j] * gi[j];
        const float ginv = (float)(1.0 / (sqrt(gsq) + 1e-12));
        const float e = eta[i];
        double dsq = 0.0;
        for (size_t j = 0; j < d; j++) {
            float xk = al_pgd_finitef(xi[j]) ? xi[j] : x0i[j];
            float gj = al_pgd_finitef(gi[j]) ? gi[j] : 0.0f;
            float z = xk + e * (gj * ginv);
            ti[j] = z;
            double dz = (double)z - x0i[j];
            dsq += dz * dz;
        }
        double nrm = sqrt(dsq);
        float s = (float)(fmin((double)eps, nrm) / (nrm + 1e-12));
        dsq = 0.0;
        for (size_t j = 0; j < d; j++) {
            float xk = al_pgd_finitef(xi[j]) ? xi[j] : x0i[j];
            float xp = al_pgd_finitef(pi[j]) ? pi[j] : x0i[j];
            float z = al_clampf(x0i[j] + (ti[j] - x0i[j]) * s, 0.0f, 1.0f);
            float v = xk + (z - xk) * a + (xk - xp) * (1.0f - a);
            ti[j] = v;
            double dv = (double)v - x0i[j];
            dsq += dv * dv;
        }
        nrm = sqrt(dsq);
        s = (float)(fmin((double)eps, nrm) / (nrm + 1e-12));
        for (size_t j = 0; j < d; j++) {
            pi[j] = al_pgd_finitef(xi[j]) ? xi[j] : x0i[j];
            xi[j] = al_clampf(x0i[j] + (ti[j] - x0i[j]) * s, 0.0f, 1.0f);
        }
    }
    return AL_OK;
}

al_status al_apgd_step(al_ctx *ctx, al_norm norm, int n, size_t d, float *x, float *x_prev,
                       const float *x0, const float *g, const float *eta, float a, float eps,
                       float *tmp) {
    if (norm != AL_LINF && norm != AL_L2)
        return AL_FAIL(AL_ERR_VALUE, "al_apgd_step: norm %d is not linf|l2", (int)norm);
    switch (ctx->device) {
    case AL_DEV_CPU: return al_apgd_step_cpu(ctx, norm, n, d, x, x_prev, x0, g, eta, a, eps, tmp);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_apgd_step_cuda(ctx, norm, n, d, x, x_prev, x0, g, eta, a, eps, tmp));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_apgd_step: unknown device %d", (int)ctx->device);
}

al_status al_apgd_rows_cpu(al_ctx *ctx, const uint8_t *ops, int n, size_t d, float *xa,
                           float *grad, float *xbadv, float *xbest, float *gbest) {
    (void)ctx;
    for (int p = 0; p < n; p++) {
        const unsigned op = ops[p];
        if (!op) continue;
        const size_t o = (size_t)p * d, nb = d * sizeof(float);
        if (op & AL_APGD_ROW_BADV) memcpy(xbadv + o, xa + o, nb);
        if (op & AL_APGD_ROW_BEST) {
            memcpy(xbest + o, xa + o, nb);
            memcpy(gbest + o, grad + o, nb);
        }
        if (op & AL_APGD_ROW_RESTORE) {
            memcpy(xa + o, xbest + o, nb);
            memcpy(grad + o, gbest + o, nb);
        }
    }
    return AL_OK;
}

al_status al_apgd_rows(al_ctx *ctx, const uint8_t *ops, int n, size_t d, float *xa, float *grad,
                       float *xbadv, float *xbest, float *gbest) {
    switch (ctx->device) {
    case AL_DEV_CPU: return al_apgd_rows_cpu(ctx, ops, n, d, xa, grad, xbadv, xbest, gbest);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_apgd_rows_cuda(ctx, ops, n, d, xa, grad, xbadv, xbest, gbest));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_apgd_rows: unknown device %d", (int)ctx->device);
}

/* ---------------------------------------------------------------- workspace */

void al_apgd_ws_fini(al_ctx *ctx, al_apgd_ws *ws) {
    if (!ws) return;
    float **dev_f[] = {&ws->xs,    &ws->xa,   &ws->xprev, &ws->xbest,   &ws->xbadv,
                       &ws->grad,  &ws->gbest, &ws->gtmp, &ws->tmp,     &ws->dlogits,
                       &ws->per_sample, &ws->eta};
    for (size_t i = 0; i < AL_ARRAY_LEN(dev_f); i++) al_dev_free(ctx, *dev_f[i]);
    al_dev_free(ctx, ws->ys);
    al_dev_free(ctx, ws->ts);
    al_dev_free(ctx, ws->flag);
    al_dev_free(ctx, ws->d_hist);
    al_dev_free(ctx, ws->d_best);
    al_dev_free(ctx, ws->d_best_last);
    al_dev_free(ctx, ws->d_reduced);
    al_dev_free(ctx, ws->d_acc_run);
    al_dev_free(ctx, ws->d_halved);
    void *host[] = {ws->h_x, ws->h_sx, ws->h_sg, ws->h_logits, ws->h_loss, ws->h_best,  ws->h_best_last,
                    ws->h_eta,     ws->h_hist,   ws->h_reduced, ws->h_acc, ws->h_acc_run,
                    ws->h_pred,    ws->h_zero,   ws->h_ops,   ws->h_y,    ws->h_ys,  ws->h_t,     ws->h_idx,
                    ws->h_order};
    for (size_t i = 0; i < AL_ARRAY_LEN(host); i++) al_free(host[i]);
    memset(ws, 0, sizeof *ws);
}

size_t al_apgd_ws_bytes(const al_model *m, int max_batch, int n_iter_cap) {
    const size_t b = (size_t)max_batch, d = (size_t)m->in_c * m->in_h * m->in_w;
    const size_t k = (size_t)m->num_classes;
    size_t dev = 9 * b * d * sizeof(float) + 2 * b * sizeof(int32_t) + b * k * sizeof(float) +
                 2 * b * sizeof(float) + b;
    size_t host = b * k * sizeof(float) + 4 * b * sizeof(float) +
                  b * (size_t)n_iter_cap * sizeof(float) + 6 * b + 3 * b * sizeof(int32_t) +
                  b * sizeof(int) + b * k * sizeof(int);
    /* + off the CPU: 3 (B, d) host staging buffers and the device bookkeeping */
    return dev + host;
}

al_status al_apgd_ws_init(al_ctx *ctx, al_apgd_ws *ws, const al_model *m, int max_batch,
                          int n_iter_cap) {
    memset(ws, 0, sizeof *ws);
    if (max_batch < 1 || n_iter_cap < 1)
        return AL_FAIL(AL_ERR_VALUE, "al_apgd_ws_init: max_batch %d, n_iter_cap %d (need >= 1)",
                       max_batch, n_iter_cap);
    ws->max_batch = max_batch;
    ws->n_iter_cap = n_iter_cap;
    ws->k = m->num_classes;
    ws->d = (size_t)m->in_c * m->in_h * m->in_w;
    const size_t b = (size_t)max_batch, bd = b * ws->d * sizeof(float), k = (size_t)ws->k;
    al_status st = AL_OK;
    float **dev_bd[] = {&ws->xs,   &ws->xa,    &ws->xprev, &ws->xbest, &ws->xbadv,
                        &ws->grad, &ws->gbest, &ws->gtmp,  &ws->tmp};
    for (size_t i = 0; i < AL_ARRAY_LEN(dev_bd); i++)
        AL_CHECK(al_dev_alloc(ctx, (void **)dev_bd[i], bd, "APGD (batch, C*H*W) buffer"));
    AL_CHECK(al_dev_alloc(ctx, (void **)&ws->ys, b * sizeof(int32_t), "APGD labels"));
    AL_CHECK(al_dev_alloc(ctx, (void **)&ws->ts, b * sizeof(int32_t), "APGD targets"));
    AL_CHECK(al_dev_alloc(ctx, (void **)&ws->dlogits, b * k * sizeof(float), "APGD dlogits"));
    AL_CHECK(al_dev_alloc(ctx, (void **)&ws->per_sample, b * sizeof(float), "APGD losses"));
    AL_CHECK(al_dev_alloc(ctx, (void **)&ws->eta, b * sizeof(float), "APGD step sizes"));
    AL_CHECK(al_dev_alloc(ctx, (void **)&ws->flag, b, "APGD flags"));
    if (ctx->device == AL_DEV_CUDA) {
        AL_CHECK(al_dev_alloc(ctx, (void **)&ws->d_hist, b * (size_t)n_iter_cap * sizeof(float),
                              "APGD loss history"));
        AL_CHECK(al_dev_alloc(ctx, (void **)&ws->d_best, b * sizeof(float), "APGD best losses"));
        AL_CHECK(al_dev_alloc(ctx, (void **)&ws->d_best_last, b * sizeof(float), "APGD best losses"));
        AL_CHECK(al_dev_alloc(ctx, (void **)&ws->d_reduced, b, "APGD flags"));
        AL_CHECK(al_dev_alloc(ctx, (void **)&ws->d_acc_run, b, "APGD flags"));
        AL_CHECK(al_dev_alloc(ctx, (void **)&ws->d_halved, 65 * sizeof(int), "APGD checkpoints"));
    }
    if (ctx->device != AL_DEV_CPU) {
        ws->h_x = al_malloc(bd, "APGD host staging");
        ws->h_sx = al_malloc(bd, "APGD host staging");
        ws->h_sg = al_malloc(bd, "APGD host staging");
    }
    ws->h_logits = al_malloc(b * k * sizeof(float), "APGD host logits");
    ws->h_loss = al_malloc(b * sizeof(float), "APGD host losses");
    ws->h_best = al_malloc(b * sizeof(float), "APGD host best losses");
    ws->h_best_last = al_malloc(b * sizeof(float), "APGD host best losses");
    ws->h_eta = al_malloc(b * sizeof(float), "APGD host step sizes");
    ws->h_hist = al_malloc(b * (size_t)n_iter_cap * sizeof(float), "APGD loss history");
    ws->h_reduced = al_malloc(b, "APGD host flags");
    ws->h_acc = al_malloc(b, "APGD host flags");
    ws->h_acc_run = al_malloc(b, "APGD host flags");
    ws->h_pred = al_malloc(b, "APGD host flags");
    ws->h_zero = al_malloc(b, "APGD host flags");
    ws->h_ops = al_malloc(b, "APGD host row ops");
    ws->h_y = al_malloc(b * sizeof(int32_t), "APGD host labels");
    ws->h_ys = al_malloc(b * sizeof(int32_t), "APGD host labels");
    ws->h_t = al_malloc(b * sizeof(int32_t), "APGD host targets");
    ws->h_idx = al_malloc(b * sizeof(int), "APGD host index");
    ws->h_order = al_malloc(b * k * sizeof(int), "APGD host class order");
    if ((ctx->device != AL_DEV_CPU &&
         (!ws->h_x || !ws->h_sx || !ws->h_sg)) ||
        !ws->h_logits || !ws->h_loss || !ws->h_best ||
        !ws->h_best_last || !ws->h_eta || !ws->h_hist || !ws->h_reduced || !ws->h_acc ||
        !ws->h_acc_run || !ws->h_pred || !ws->h_zero || !ws->h_ops || !ws->h_y || !ws->h_ys || !ws->h_t || !ws->h_idx ||
        !ws->h_order)
        st = AL_ERR_OOM;
done:
    if (st != AL_OK) {
        al_apgd_ws_fini(ctx, ws);
        if (st == AL_ERR_OOM) {
            char prev[512];
            snprintf(prev, sizeof prev, "%s", al_errmsg());
            st = AL_FAIL(AL_ERR_OOM,
                         "APGD workspace for batch %d (%zu bytes in all, %zu per (batch, C*H*W) "
                         "buffer): %s; lower the attack batch (--bs)",
                         max_batch, al_apgd_ws_bytes(m, max_batch, n_iter_cap), bd, prev);
        }
    }
    return st;
}

/* ---------------------------------------------------------------- pieces */

static al_status validate(const al_model *m, const al_apgd_spec *s, const al_apgd_ws *ws,
                          const float *x, const float *x_adv, const int32_t *y, int n) {
    const char *fn = "al_apgd_run";
    AL_TRY(al_attack_check_io(fn, m, n, x, y, x_adv));
    if (ws && (n > ws->max_batch || ws->k != m->num_classes ||
               ws->d != (size_t)m->in_c * m->in_h * m->in_w || s->n_iter > ws->n_iter_cap))
        return AL_FAIL(AL_ERR_VALUE,
                       "%s: workspace (batch %d, k %d, d %zu, n_iter cap %d) does not fit n=%d, "
                       "n_iter=%d of model %s",
                       fn, ws->max_batch, ws->k, ws->d, ws->n_iter_cap, n, s->n_iter, m->arch);
    if (s->norm != AL_LINF && s->norm != AL_L2)
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.norm %d is not linf|l2", fn, (int)s->norm);
    if (!(s->eps > 0.0f) || !isfinite(s->eps))
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.eps %g must be finite and > 0", fn, (double)s->eps);
    if (s->loss != AL_APGD_CE && s->loss != AL_APGD_DLR && s->loss != AL_APGD_T)
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.loss %d is not ce|dlr|t", fn, (int)s->loss);
    if (s->n_iter < 1) return AL_FAIL(AL_ERR_VALUE, "%s: spec.n_iter %d < 1", fn, s->n_iter);
    if (s->n_restarts < 1)
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.n_restarts %d < 1", fn, s->n_restarts);
    if (s->eot_iter < 1) return AL_FAIL(AL_ERR_VALUE, "%s: spec.eot_iter %d < 1", fn, s->eot_iter);
    if (s->loss == AL_APGD_T && s->n_target_classes < 1)
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.n_target_classes %d < 1", fn, s->n_target_classes);
    if (!(s->rho >= 0.0f && s->rho <= 1.0f))
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.rho %g outside [0, 1]", fn, (double)s->rho);
    const int k_min = s->loss == AL_APGD_T ? 4 : s->loss == AL_APGD_DLR ? 3 : 2;
    if (m->num_classes < k_min)
        return AL_FAIL(AL_ERR_VALUE, "%s: %s needs at least %d classes, model %s has %d", fn,
                       al_apgd_loss_name(s->loss), k_min, m->arch, m->num_classes);
    if (s->fwd.slot < 0 || s->fwd.slot >= m->n_slots)
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.fwd.slot %d outside [0, %d)", fn, s->fwd.slot,
                       m->n_slots);
    return AL_OK;
}

/* Loss to ascend for the m points of the run: per_sample into ws->per_sample and, if dlogits,
 * the gradient of their SUM. The host scalar is unused: asked for only when check_labels (it
 * is what makes the CUDA twins check labels and targets), so later iterations skip its sync. */
static al_status objective(al_ctx *ctx, const al_apgd_spec *s, al_apgd_ws *ws, int m, int k,
                           const float *logits, float *dlogits, int check_labels) {
    double loss_v, *loss = check_labels ? &loss_v : NULL;
    if (s->loss == AL_APGD_CE)
        return al_xent(ctx, m, k, logits, ws->ys, (float)m, loss, ws->per_sample, dlogits);
    return al_dlr_loss(ctx, m, k, logits, ws->ys, s->loss == AL_APGD_T ? ws->ts : NULL, (float)m,
                       loss, ws->per_sample, dlogits);
}

/* dst += src over n floats (device arrays; staged through the host off the CPU). */
static al_status add_dev(al_ctx *ctx, al_apgd_ws *ws, float *dst, const float *src, size_t n) {
    if (ctx->device == AL_DEV_CPU) {
        for (size_t j = 0; j < n; j++) dst[j] += src[j];
        return AL_OK;
    }
    AL_TRY(al_copy_to_host(ctx, ws->h_sx, dst, n * sizeof(float)));
    AL_TRY(al_copy_to_host(ctx, ws->h_sg, src, n * sizeof(float)));
    for (size_t j = 0; j < n; j++) ws->h_sx[j] += ws->h_sg[j];
    return al_copy_to_dev(ctx, dst, ws->h_sx, n * sizeof(float));
}

static al_status scale_dev(al_ctx *ctx, al_apgd_ws *ws, float *x, size_t n, float div) {
    float *h = x;
    if (ctx->device != AL_DEV_CPU) {
        AL_TRY(al_copy_to_host(ctx, ws->h_sx, x, n * sizeof(float)));
        h = ws->h_sx;
    }
    for (size_t j = 0; j < n; j++) h[j] /= div;
    return h == x ? AL_OK : al_copy_to_dev(ctx, x, h, n * sizeof(float));
}

/* The APGD step on the run's mr rows (x0 = the gathered clean rows ws->xs). */
static al_status step_any(al_ctx *ctx, const al_apgd_spec *s, al_apgd_ws *ws, int mr, float a) {
    return al_apgd_step(ctx, s->norm, mr, ws->d, ws->xa, ws->xprev, ws->xs, ws->grad, ws->eta, a,
                        s->eps, ws->tmp);
}

/* Forward + objective + backward at ws->xa, averaged over eot_iter passes, into ws->grad;
 * per-point loss in ws->h_loss and correct-prediction flags in ws->h_pred (last pass). */
static al_status grad_at(al_ctx *ctx, al_model *m, const al_apgd_spec *s, al_apgd_ws *ws, int mr,
                         uint64_t step_base, int check_labels, int to_host) {
    const int k = m->num_classes, slot = s->fwd.slot;
    const size_t nd = (size_t)mr * ws->d;
    for (int e = 0; e < s->eot_iter; e++) {
        al_fwd_opts fwd = s->fwd;
        fwd.update_bn = 0; /* an evaluation attack never moves BN running statistics */
        fwd.step = s->fwd.step + step_base * (uint64_t)s->eot_iter + (uint64_t)e;
        AL_TRY(al_model_forward(ctx, m, ws->xa, mr, &fwd));
        const float *logits = al_model_logits(m, slot);
        AL_TRY(objective(ctx, s, ws, mr, k, logits, ws->dlogits, check_labels && e == 0));
        float *dst = e == 0 ? ws->grad : ws->gtmp;
        AL_TRY(al_model_backward(ctx, m, slot, ws->dlogits, NULL, AL_BWD_INPUT, dst));
        if (e > 0) AL_TRY(add_dev(ctx, ws, ws->grad, ws->gtmp, nd));
        if (e == s->eot_iter - 1) {
            /* the flags come back below (unless the device keeps the books); no count */
            AL_TRY(al_count_correct(ctx, mr, k, logits, ws->ys, NULL, ws->flag));
            if (to_host) {
                AL_TRY(al_copy_to_host(ctx, ws->h_pred, ws->flag, (size_t)mr));
                AL_TRY(al_copy_to_host(ctx, ws->h_loss, ws->per_sample, (size_t)mr * sizeof(float)));
            }
        }
    }
    /* the mean over the passes (the reference divides the summed gradient) */
    if (s->eot_iter > 1) AL_TRY(scale_dev(ctx, ws, ws->grad, nd, (float)s->eot_iter));
    return AL_OK;
}

static al_status copy_row(al_ctx *ctx, float *dst, int di, const float *src, int si, size_t d) {
    return al_copy_dev(ctx, dst + (size_t)di * d, src + (size_t)si * d, d * sizeof(float));
}

/* Apply the per-row ops of ws->h_ops[0..mr) (AL_APGD_ROW_*) in one pass; off the CPU the
 * mr-byte op vector goes to the device first (ws->flag is free between forwards). */
static al_status apply_rows(al_ctx *ctx, al_apgd_ws *ws, int mr) {
    const uint8_t *ops = ws->h_ops;
    if (ctx->device != AL_DEV_CPU) {
        AL_TRY(al_copy_to_dev(ctx, ws->flag, ws->h_ops, (size_t)mr));
        ops = ws->flag;
    }
    return al_apgd_rows(ctx, ops, mr, ws->d, ws->xa, ws->grad, ws->xbadv, ws->xbest, ws->gbest);
}

/* ws->xa = the random start of run `run` for the m gathered points (see apgd.h). */
static al_status start_point(al_ctx *ctx, const al_apgd_spec *s, al_apgd_ws *ws, int mr, int n,
                             int run, uint64_t seed, uint64_t stream) {
    const size_t d = ws->d, nd = (size_t)mr * d;
    float *h = ctx->device == AL_DEV_CPU ? ws->xa : ws->h_x;
    /* x_clean is needed on the host: on CPU xs is host memory; on CUDA stage it */
    const float *x0 = ws->xs;
    if (ctx->device != AL_DEV_CPU) {
        AL_TRY(al_copy_to_host(ctx, h, ws->xs, nd * sizeof(float)));
        x0 = NULL; /* read from h in place below */
    }
    for (int p = 0; p < mr; p++) {
        const uint64_t base = al_attack_rng_index(run, n, ws->h_idx[p], d, 0);
        float *hp = h + (size_t)p * d;
        /* pass 1: the norm of t */
        double tn = 0.0;
        for (size_t j = 0; j < d; j++) {
            float t = s->norm == AL_LINF ? 2.0f * al_rng_uniform(seed, stream, base + j) - 1.0f
                                         : al_rng_normal(seed, stream, base + j);
            if (s->norm == AL_LINF)
                tn = fmax(tn, fabs((double)t));
            else
                tn += (double)t * t;
        }
        const float tnorm = s->norm == AL_LINF ? (float)tn : (float)sqrt(tn);
        const float inv = 1.0f / (tnorm + 1e-12f);
        /* pass 2: x + eps * t / (||t|| + 1e-12), clamped to [0,1] (and, for Linf, to the
         * float ball [x0 - eps, x0 + eps], the rounding every later projection uses) */
        for (size_t j = 0; j < d; j++) {
            float t = s->norm == AL_LINF ? 2.0f * al_rng_uniform(seed, stream, base + j) - 1.0f
                                         : al_rng_normal(seed, stream, base + j);
            float xj = x0 ? x0[(size_t)p * d + j] : hp[j];
            float v = xj + s->eps * (t * inv);
            if (s->norm == AL_LINF) v = al_clampf(v, xj - s->eps, xj + s->eps);
            hp[j] = al_clampf(v, 0.0f, 1.0f);
        }
    }
    if (h != ws->xa) AL_TRY(al_copy_to_dev(ctx, ws->xa, h, nd * sizeof(float)));
    return AL_OK;
}

/* Points (of the first mr rows) whose gradient is all zero: ws->h_zero[h_idx[p]] = 1. */
static al_status zero_grad_check(al_ctx *ctx, al_apgd_ws *ws, int mr) {
    const size_t d = ws->d;
    const float *g = ws->grad;
    if (ctx->device != AL_DEV_CPU) {
        AL_TRY(al_copy_to_host(ctx, ws->h_x, ws->grad, (size_t)mr * d * sizeof(float)));
        g = ws->h_x;
    }
    for (int p = 0; p < mr; p++) {
        int zero = 1;
        for (size_t j = 0; j < d && zero; j++) zero = g[(size_t)p * d + j] == 0.0f;
        if (zero) ws->h_zero[ws->h_idx[p]] = 1;
    }
    return AL_OK;
}

#ifdef AL_HAVE_CUDA
/* The iterations of single_run() with the bookkeeping on the device (al_apgd_track_cuda,
 * al_apgd_check_cuda): the same decisions in the same float arithmetic, no wait per iteration;
 * h_acc_run and the checkpoint counts come back once at the end. The state after the first
 * gradient (h_acc_run, h_best, h_best_last, h_reduced, eta) is set up by the caller. */
static al_status iterate_cuda(al_ctx *ctx, al_model *m, const al_apgd_spec *s, al_apgd_ws *ws,
                              int mr, uint64_t fstep, int h, int decr, int h_min) {
    const int n_iter = s->n_iter;
    const size_t b = (size_t)mr;
    AL_TRY(al_copy_to_dev(ctx, ws->d_acc_run, ws->h_acc_run, b));
    AL_TRY(al_copy_to_dev(ctx, ws->d_best, ws->h_best, b * sizeof(float)));
    AL_TRY(al_copy_to_dev(ctx, ws->d_best_last, ws->h_best_last, b * sizeof(float)));
    AL_TRY(al_copy_to_dev(ctx, ws->d_reduced, ws->h_reduced, b));
    AL_TRY(al_memset_dev(ctx, ws->d_hist, 0, b * (size_t)n_iter * sizeof(float)));
    AL_TRY(al_memset_dev(ctx, ws->d_halved, 0, 65 * sizeof(int)));
    int counter = 0;
    for (int i = 0; i < n_iter; i++) {
        AL_TRY(step_any(ctx, s, ws, mr, i > 0 ? 0.75f : 1.0f));
        AL_TRY(grad_at(ctx, m, s, ws, mr, fstep++, 0, 0));
        /* ws->flag: the correct flags in, the row ops out */
        AL_TRY(al_apgd_track_cuda(ctx, mr, n_iter, i, ws->flag, ws->per_sample, ws->d_acc_run,
                                  ws->d_hist, ws->d_best));
        AL_TRY(al_apgd_rows(ctx, ws->flag, mr, ws->d, ws->xa, ws->grad, ws->xbadv, ws->xbest,
                            ws->gbest));
        if (++counter < h) continue;
        const int slot = AL_MIN(ws->n_checks, 64); /* 64: past the record, a sink */
        AL_TRY(al_apgd_check_cuda(ctx, mr, n_iter, i, h, s->rho, ws->d_hist, ws->d_reduced,
                                  ws->d_best_last, ws->d_best, ws->eta, ws->flag,
                                  ws->d_halved + slot));
        AL_TRY(al_apgd_rows(ctx, ws->flag, mr, ws->d, ws->xa, ws->grad, ws->xbadv, ws->xbest,
                            ws->gbest));
        if (ws->n_checks < (int)AL_ARRAY_LEN(ws->check_iter)) ws->check_iter[ws->n_checks++] = i + 1;
        h = AL_MAX(h - decr, h_min);
        counter = 0;
    }
    AL_TRY(al_copy_to_host(ctx, ws->h_acc_run, ws->d_acc_run, b));
    if (ws->n_checks > 0)
        AL_TRY(al_copy_to_host(ctx, ws->check_halved, ws->d_halved,
                               (size_t)ws->n_checks * sizeof(int)));
    return AL_OK;
}
#endif

/* One APGD run of n_iter iterations on the mr gathered points (rows of ws->xs, labels ws->ys,
 * targets ws->ts). Out: ws->xbadv rows and ws->h_acc_run[p] (0 = broken). */
static al_status single_run(al_ctx *ctx, al_model *m, const al_apgd_spec *s, al_apgd_ws *ws,
                            int mr, int n, int run, uint64_t seed, uint64_t stream) {
    const size_t d = ws->d, nd = (size_t)mr * d;
    const int n_iter = s->n_iter;
    int h, decr, h_min;
    sched_consts(n_iter, &h, &decr, &h_min);
    AL_TRY(start_point(ctx, s, ws, mr, n, run, seed, stream));
    uint64_t fstep = (uint64_t)run * (uint64_t)(n_iter + 1);
    AL_TRY(grad_at(ctx, m, s, ws, mr, fstep++, 1, 1)); /* each run's first: labels, targets */
    if (s->loss != AL_APGD_CE) AL_TRY(zero_grad_check(ctx, ws, mr));
    AL_TRY(al_copy_dev(ctx, ws->xbest, ws->xa, nd * sizeof(float)));
    AL_TRY(al_copy_dev(ctx, ws->xbadv, ws->xa, nd * sizeof(float)));
    AL_TRY(al_copy_dev(ctx, ws->gbest, ws->grad, nd * sizeof(float)));
    AL_TRY(al_copy_dev(ctx, ws->xprev, ws->xa, nd * sizeof(float)));
    memset(ws->h_hist, 0, (size_t)mr * n_iter * sizeof(float));
    for (int p = 0; p < mr; p++) {
        ws->h_acc_run[p] = ws->h_pred[p];
        ws->h_best[p] = ws->h_loss[p];
        ws->h_best_last[p] = ws->h_loss[p];
        ws->h_reduced[p] = 1; /* condition (2) cannot fire at the first checkpoint */
        ws->h_eta[p] = 2.0f * s->eps;
    }
    AL_TRY(al_copy_to_dev(ctx, ws->eta, ws->h_eta, (size_t)mr * sizeof(float)));
    ws->n_checks = 0;
#ifdef AL_HAVE_CUDA
    if (ctx->device == AL_DEV_CUDA && !s->host_schedule)
        return iterate_cuda(ctx, m, s, ws, mr, fstep, h, decr, h_min);
#endif
    int counter = 0;
    for (int i = 0; i < n_iter; i++) {
        const float a = i > 0 ? 0.75f : 1.0f;
        AL_TRY(step_any(ctx, s, ws, mr, a));
        AL_TRY(grad_at(ctx, m, s, ws, mr, fstep++, 0, 1));
        int any = 0;
        for (int p = 0; p < mr; p++) {
            uint8_t op = 0;
            if (!ws->h_pred[p]) { /* misclassified: the latest such iterate is kept */
                ws->h_acc_run[p] = 0;
                op |= AL_APGD_ROW_BADV;
            }
            const float l = ws->h_loss[p];
            ws->h_hist[(size_t)p * n_iter + i] = l;
            if (l > ws->h_best[p]) {
                op |= AL_APGD_ROW_BEST;
                ws->h_best[p] = l;
            }
            ws->h_ops[p] = op;
            any |= op;
        }
        if (any) AL_TRY(apply_rows(ctx, ws, mr));
        if (++counter < h) continue;
        /* checkpoint: halve the step and go back to the best point where (1) or (2) holds */
        int halved = 0;
        for (int p = 0; p < mr; p++) {
            int osc = al_apgd_oscillation(ws->h_hist + (size_t)p * n_iter, n_iter, i, h, s->rho);
            int no_impr = !ws->h_reduced[p] && ws->h_best_last[p] >= ws->h_best[p];
            int fl = osc || no_impr;
            ws->h_reduced[p] = (uint8_t)fl;
            ws->h_best_last[p] = ws->h_best[p];
            ws->h_ops[p] = fl ? AL_APGD_ROW_RESTORE : 0;
            if (fl) {
                ws->h_eta[p] /= 2.0f;
                halved++;
            }
        }
        if (halved) {
            AL_TRY(apply_rows(ctx, ws, mr));
            AL_TRY(al_copy_to_dev(ctx, ws->eta, ws->h_eta, (size_t)mr * sizeof(float)));
        }
        if (ws->n_checks < (int)AL_ARRAY_LEN(ws->check_iter)) {
            ws->check_iter[ws->n_checks] = i + 1;
            ws->check_halved[ws->n_checks] = halved;
            ws->n_checks++;
        }
        h = AL_MAX(h - decr, h_min);
        counter = 0;
    }
    return AL_OK;
}

/* Target order of each point from its clean logits: h_order[i*K + r] = class of rank r
 * (descending; ties lower index first). */
static void class_order(const float *z, int k, int *order) {
    for (int j = 0; j < k; j++) order[j] = j;
    for (int j = 1; j < k; j++) { /* insertion sort, stable: ties keep the lower index first */
        int c = order[j], q = j;
        while (q > 0 && z[c] > z[order[q - 1]]) {
            order[q] = order[q - 1];
            q--;
        }
        order[q] = c;
    }
}

/* ---------------------------------------------------------------- driver */

al_status al_apgd_run(al_ctx *ctx, al_model *m, const al_apgd_spec *spec, al_apgd_ws *ws,
                      const float *x, const int32_t *y, int n, uint64_t seed, uint64_t stream,
                      float *x_adv, uint8_t *success, int *n_success, al_apgd_stats *stats) {
    AL_TRY(validate(m, spec, ws, x, x_adv, y, n));
    al_apgd_ws local;
    memset(&local, 0, sizeof local);
    if (!ws) {
        AL_TRY(al_apgd_ws_init(ctx, &local, m, n, spec->n_iter));
        ws = &local;
    }
    al_status st = AL_OK;
    const int k = m->num_classes, slot = spec->fwd.slot;
    const size_t d = ws->d;
    al_fwd_opts fq = spec->fwd;
    fq.update_bn = 0;
    const int n_targets = spec->loss == AL_APGD_T ? AL_MIN(spec->n_target_classes, k - 1) : 1;
    if (stats) memset(stats, 0, sizeof *stats);

    /* clean pass: who is attacked, and (APGD-T) the class order */
    AL_CHECK(al_copy_to_host(ctx, ws->h_y, y, (size_t)n * sizeof(int32_t)));
    AL_CHECK(al_model_forward(ctx, m, x, n, &fq));
    {
        int n_correct;
        AL_CHECK(al_count_correct(ctx, n, k, al_model_logits(m, slot), y, &n_correct, ws->flag));
        AL_CHECK(al_copy_to_host(ctx, ws->h_acc, ws->flag, (size_t)n));
        if (spec->loss == AL_APGD_T) {
            AL_CHECK(al_copy_to_host(ctx, ws->h_logits, al_model_logits(m, slot),
                                     (size_t)n * k * sizeof(float)));
            for (int i = 0; i < n; i++)
                class_order(ws->h_logits + (size_t)i * k, k, ws->h_order + (size_t)i * k);
        }
    }
    memset(ws->h_zero, 0, (size_t)n);
    AL_CHECK(al_copy_dev(ctx, x_adv, x, (size_t)n * d * sizeof(float)));

    for (int t = 0; t < n_targets; t++) {
        for (int r = 0; r < spec->n_restarts; r++) {
            int mr = 0;
            for (int i = 0; i < n; i++)
                if (ws->h_acc[i]) ws->h_idx[mr++] = i;
            if (mr == 0) goto verify;
            /* gather the run: rows of x, labels, and targets (rank t + 1 of the clean logits) */
            for (int p = 0; p < mr; p++) {
                const int i = ws->h_idx[p];
                AL_CHECK(copy_row(ctx, ws->xs, p, x, i, d));
                ws->h_ys[p] = ws->h_y[i];
                if (spec->loss == AL_APGD_T) ws->h_t[p] = ws->h_order[(size_t)i * k + t + 1];
            }
            AL_CHECK(al_copy_to_dev(ctx, ws->ys, ws->h_ys, (size_t)mr * sizeof(int32_t)));
            if (spec->loss == AL_APGD_T)
                AL_CHECK(al_copy_to_dev(ctx, ws->ts, ws->h_t, (size_t)mr * sizeof(int32_t)));
            const int run = t * spec->n_restarts + r;
            AL_CHECK(single_run(ctx, m, spec, ws, mr, n, run, seed, stream));
            if (stats) stats->n_runs++;
            for (int p = 0; p < mr; p++)
                if (!ws->h_acc_run[p]) {
                    const int i = ws->h_idx[p];
                    ws->h_acc[i] = 0;
                    AL_CHECK(copy_row(ctx, x_adv, i, ws->xbadv, p, d));
                }
        }
    }
verify:
    if (stats)
        for (int i = 0; i < n; i++) stats->n_zero_grad += ws->h_zero[i];
    if (success || n_success) {
        int n_correct;
        AL_CHECK(al_model_forward(ctx, m, x_adv, n, &fq));
        AL_CHECK(al_count_correct(ctx, n, k, al_model_logits(m, slot), y, &n_correct, ws->flag));
        AL_CHECK(al_copy_to_host(ctx, ws->h_pred, ws->flag, (size_t)n));
        for (int i = 0; i < n; i++) ws->h_pred[i] = (uint8_t)!ws->h_pred[i];
        if (success) AL_CHECK(al_copy_to_dev(ctx, success, ws->h_pred, (size_t)n));
        if (n_success) *n_success = n - n_correct;
    }
done:
    if (ws == &local) al_apgd_ws_fini(ctx, &local);
    return st;
}
