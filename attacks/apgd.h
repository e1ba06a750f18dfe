/* apgd.h: Auto-PGD (Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an
 * ensemble of diverse parameter-free attacks"): APGD-CE, APGD-DLR and APGD-T (targeted DLR over
 * the top non-true classes), Linf and L2, with the step-size schedule, momentum and best-point
 * bookkeeping of fra31/auto-attack autopgd_base.py (read for the algorithm; not copied).
 * Implementation: attacks/apgd.c (device-agnostic driver: model forward / backward-to-input,
 * losses/ dispatchers, al_apgd_step). Per-point bookkeeping (losses, step sizes, checkpoint
 * decisions) touches N values on the host.
 * Shapes: x, x_adv (N, C, H, W) in [0,1] on ctx's device; y (N) int32 true labels on the device;
 * success (N) uint8 on the device.
 *
 * One run of n_iter iterations on the points it attacks (all float32, per point):
 *   start      x_0 = clamp_[0,1](x + eps * t / (||t|| + 1e-12)), t = 2U - 1 per element and
 *              ||.||_inf per point (Linf), t ~ N(0, I) and ||.||_2 (L2); Philox(seed, stream)
 *   step size  eta = 2 eps per point
 *   iteration  z = P(x_k + eta * dir(g_k));  x_{k+1} = P(x_k + a (z - x_k) + (1 - a)(x_k - x_{k-1}))
 *              a = 1 at k = 0, then 0.75; dir = sign (Linf) or g / (||g||_2 + 1e-12) (L2);
 *              P = projection onto the eps-ball, then [0,1]
 *   best       x_best (highest loss so far, with its gradient) and x_best_adv (last
 *              misclassified iterate) per point
 *   checkpoint after w_j iterations (al_apgd_checkpoints): halve eta and restart from x_best
 *              (and its gradient) where (1) the loss increased in at most rho * h of the last
 *              h = w_j - w_{j-1} steps, or (2) eta was not halved at the previous checkpoint and
 *              the best loss did not improve since then.
 * Restarts (and, for APGD-T, target classes) run only on the points still robust; a point is
 * broken once any iterate is misclassified; x_adv = its x_best_adv, else the clean x.
 * Input gradients only (al_model_backward with AL_BWD_INPUT); model->grads is never touched.
 * NaN rules as attacks/pgd_step.h: a NaN gradient element does not move (L2: non-finite
 * elements are left out of the norm), a non-finite iterate restarts at x. */
#ifndef AL_APGD_H
#define AL_APGD_H

#include "attacks/pgd_step.h"
#include "core/model.h"
#include "core/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum al_apgd_loss {
    AL_APGD_CE = 0,  /* cross-entropy (APGD-CE) */
    AL_APGD_DLR = 1, /* untargeted DLR (APGD-DLR) */
    AL_APGD_T = 2,   /* targeted DLR over the n_target_classes best non-true classes (APGD-T) */
} al_apgd_loss;

typedef struct al_apgd_spec {
    al_norm norm;
    float eps;            /* > 0, pixel units */
    al_apgd_loss loss;
    int n_iter;           /* iterations per run (100) */
    int n_restarts;       /* runs per point (APGD-T: per target class) (1; AA 'plus': 5) */
    int n_target_classes; /* APGD-T: targets = the 2nd .. (n+1)-th largest clean logits (9);
                           * clamped to K - 1 */
    int eot_iter;         /* gradient averaged over this many forward/backward passes (1; AA
                           * 'rand': 20); each pass uses dropout stream fwd.step + pass */
    float rho;            /* checkpoint condition (1) threshold (0.75) */
    al_fwd_opts fwd;      /* eval mode, slot 0 by default */
    /* On CUDA the per-iteration bookkeeping (loss history, best points, checkpoints) runs on
     * the device (cuda/attack_apgd.cu: no wait per iteration); 1 keeps it on the host, the
     * reference path (tests compare the two bitwise). */
    int host_schedule;
} al_apgd_spec;

/* AutoAttack 'standard' settings for `loss`: n_iter 100, 1 restart, 9 target classes, eot 1,
 * rho 0.75, eval mode on slot 0. */
al_apgd_spec al_apgd_spec_default(al_apgd_loss loss, al_norm norm, float eps);
const char *al_apgd_loss_name(al_apgd_loss loss); /* "apgd-ce", "apgd-dlr", "apgd-t" */

/* Checkpoint schedule: the iteration counts w_1 < w_2 < ... <= n_iter after which the step size
 * is checked, as the reference computes them in integers: h_1 = max(floor(0.22 n_iter), 1),
 * h_{j+1} = max(h_j - max(floor(0.03 n_iter), 1), max(floor(0.06 n_iter), 1)), w_j = h_1 + ...
 * + h_j (the paper's p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) scaled by n_iter; for
 * n_iter = 100: 22, 41, 57, 70, 80, 87, 93, 99). Writes up to `cap` counts; returns how many
 * there are. */
int al_apgd_checkpoints(int n_iter, int *w, int cap);

/* Checkpoint condition (1) for one point: 1 when the loss increased in at most rho * h of the
 * h steps ending at iteration i (0-based), i.e. #{c < h : hist[i-c] > hist[i-c-1]} <= h * rho.
 * hist (n_iter) is the point's per-iteration loss history, zero where not yet written; index -1
 * wraps to n_iter - 1 (the reference's Python indexing, which reads that not-yet-written 0 at
 * the first checkpoint). */
AL_HOSTDEV int al_apgd_oscillation(const float *hist, int n_iter, int i, int h, float rho) {
    int inc = 0;
    for (int c = 0; c < h; c++) {
        int cur = i - c, prev = i - c - 1;
        if (cur < 0) cur += n_iter;
        if (prev < 0) prev += n_iter;
        inc += hist[cur] > hist[prev];
    }
    /* float32 threshold as the reference (k * k3 on a float tensor) */
    return (float)inc <= (float)h * rho;
}

/* ---- per-element step (AL_HOSTDEV: the CUDA twin calls the same functions) ----
 * Linf, one element: x (x_k), x_prev (x_{k-1}), x0 (clean), g (gradient), eta, a, eps. */
AL_HOSTDEV float al_apgd_linf_elem(float x, float x_prev, float x0, float g, float eta, float a,
                                   float eps) {
    if (g != g) g = 0.0f;
    if (!al_pgd_finitef(x)) x = x0;
    if (!al_pgd_finitef(x_prev)) x_prev = x0;
    float lo = x0 - eps, hi = x0 + eps;
    float z = al_clampf(al_clampf(x + eta * al_signf(g), lo, hi), 0.0f, 1.0f);
    float v = x + (z - x) * a + (x - x_prev) * (1.0f - a);
    return al_clampf(al_clampf(v, lo, hi), 0.0f, 1.0f);
}

/* One APGD step for the whole batch (dispatcher). x (n, d) = x_k in, x_{k+1} out; x_prev (n, d)
 * = x_{k-1} in, x_k out; x0 (n, d) clean; g (n, d) gradient of the loss to ascend; eta (n)
 * per-point step sizes; a = momentum weight (1 on the first iteration, 0.75 after); tmp (n, d)
 * scratch (L2). All on ctx's device (CUDA twin: cuda/attack_apgd.cu). */
al_status al_apgd_step(al_ctx *ctx, al_norm norm, int n, size_t d, float *x, float *x_prev,
                       const float *x0, const float *g, const float *eta, float a, float eps,
                       float *tmp);
al_status al_apgd_step_cpu(al_ctx *ctx, al_norm norm, int n, size_t d, float *x, float *x_prev,
                           const float *x0, const float *g, const float *eta, float a, float eps,
                           float *tmp);
#ifdef AL_HAVE_CUDA
al_status al_apgd_step_cuda(al_ctx *ctx, al_norm norm, int n, size_t d, float *x, float *x_prev,
                            const float *x0, const float *g, const float *eta, float a, float eps,
                            float *tmp);
#endif

/* Per-row bookkeeping of an APGD iteration in one pass (one kernel on CUDA instead of a copy per
 * row): for each row p with ops[p] (device, n bytes) having
 *   AL_APGD_ROW_BADV:    xbadv_p = xa_p                 (the latest misclassified iterate)
 *   AL_APGD_ROW_BEST:    xbest_p = xa_p, gbest_p = grad_p (a new best loss)
 *   AL_APGD_ROW_RESTORE: xa_p = xbest_p, grad_p = gbest_p (a checkpoint halved the step)
 * applied in that order. All arrays (n, d) on ctx's device; bitwise copies. */
enum { AL_APGD_ROW_BADV = 1, AL_APGD_ROW_BEST = 2, AL_APGD_ROW_RESTORE = 4 };
al_status al_apgd_rows(al_ctx *ctx, const uint8_t *ops, int n, size_t d, float *xa, float *grad,
                       float *xbadv, float *xbest, float *gbest);
al_status al_apgd_rows_cpu(al_ctx *ctx, const uint8_t *ops, int n, size_t d, float *xa,
                           float *grad, float *xbadv, float *xbest, float *gbest);
#ifdef AL_HAVE_CUDA
al_status al_apgd_rows_cuda(al_ctx *ctx, const uint8_t *ops, int n, size_t d, float *xa,
                            float *grad, float *xbadv, float *xbest, float *gbest);
/* The per-iteration bookkeeping of single_run() (attacks/apgd.c) on the device, one thread
 * per point, the host loop's float comparisons (so the decisions are bitwise the same):
 *   track: iteration i: ops[p] (in: the correct-prediction flag, out: the row ops) =
 *          BADV where misclassified (acc_run[p] = 0) | BEST where loss[p] > best[p] (best
 *          updated); hist[p * n_iter + i] = loss[p];
 *   check: checkpoint at iteration i with window h: ops[p] = RESTORE where the oscillation
 *          test (al_apgd_oscillation) or "no improvement since the last checkpoint" holds,
 *          then eta[p] /= 2 and *halved += 1; reduced / best_last updated. */
al_status al_apgd_track_cuda(al_ctx *ctx, int n, int n_iter, int i, uint8_t *ops,
                             const float *loss, uint8_t *acc_run, float *hist, float *best);
al_status al_apgd_check_cuda(al_ctx *ctx, int n, int n_iter, int i, int h, float rho,
                             const float *hist, uint8_t *reduced, float *best_last,
                             const float *best, float *eta, uint8_t *ops, int *halved);
#endif

/* Workspace for batches up to max_batch of model m (device buffers + host bookkeeping).
 * Allocate once: al_apgd_run then never allocates. Errors: AL_ERR_OOM naming the batch size and
 * the bytes requested. */
typedef struct al_apgd_ws {
    int max_batch, k, n_iter_cap;
    size_t d;
    /* device (B, d) */
    float *xs, *xa, *xprev, *xbest, *xbadv, *grad, *gbest, *gtmp, *tmp;
    /* device small */
    int32_t *ys, *ts;     /* (B) labels / targets of the points in the run */
    float *dlogits;       /* (B, K) */
    float *per_sample;    /* (B) */
    float *eta;           /* (B) step sizes */
    uint8_t *flag;        /* (B) */
    /* host */
    float *h_x;           /* (B, d) staging (random start, gradient check) on CUDA; NULL on CPU */
    float *h_sx, *h_sg; /* (B, d) host staging off the CPU (EOT sums); else NULL */
    float *h_logits;      /* (B, K) clean logits (APGD-T target order) */
    float *h_loss, *h_best, *h_best_last, *h_eta; /* (B) */
    float *h_hist;        /* (B, n_iter_cap) loss history */
    uint8_t *h_ops;       /* (B) per-row ops of al_apgd_rows */
    uint8_t *h_reduced, *h_acc, *h_acc_run, *h_pred, *h_zero; /* (B) */
    int32_t *h_y, *h_ys, *h_t; /* (B): labels of the batch; labels and targets of the run */
    int *h_idx;           /* (B) batch position of each point of the run */
    int *h_order;         /* (B, K) clean logit order per point, descending */
    /* instrumentation of the last run (tests): iterations (1-based) at which the step size was
     * checked and how many points halved it there */
    int n_checks;
    int check_iter[64], check_halved[64];
    /* CUDA: the bookkeeping on the device (al_apgd_track_cuda / al_apgd_check_cuda) */
    float *d_hist, *d_best, *d_best_last; /* (B, n_iter_cap), (B), (B) */
    uint8_t *d_reduced, *d_acc_run;       /* (B) */
    int *d_halved;                        /* (65) points halved at each checkpoint (64: sink) */
} al_apgd_ws;

al_status al_apgd_ws_init(al_ctx *ctx, al_apgd_ws *ws, const al_model *m, int max_batch,
                          int n_iter_cap);
void al_apgd_ws_fini(al_ctx *ctx, al_apgd_ws *ws); /* accepts zeroed / half-built ws */
/* Bytes al_apgd_ws_init allocates (device + host) for a batch, for memory planning. */
size_t al_apgd_ws_bytes(const al_model *m, int max_batch, int n_iter_cap);

typedef struct al_apgd_stats {
    int n_zero_grad; /* points whose input gradient was all zero at a DLR start point (the
                      * AutoAttack zero-gradient flag; only checked for DLR losses) */
    int n_runs;      /* single runs executed (restarts x targets with points left) */
} al_apgd_stats;

/* Run APGD on n <= min(ws->max_batch, m->max_batch) points (see the header comment).
 * Points misclassified at x are not attacked (x_adv = x, success 1). success (N, device) and
 * n_success (host) optional: 1 where a fresh forward pass on x_adv (spec->fwd) misclassifies.
 * seed/stream: random starts draw Philox(seed, stream, al_attack_rng_index(run, n, i, d, j))
 * with `run` = target * n_restarts + restart and i the point's position in THIS batch, so a
 * point's start does not depend on which other points are still robust. ws NULL: allocated for
 * this call. stats optional (host). Errors: AL_ERR_VALUE (bad spec / n, naming the field),
 * loss/model errors propagate. On CUDA the step, the losses and (unless spec.host_schedule)
 * the per-iteration bookkeeping run on the device: no wait per iteration (eot_iter > 1 still
 * sums the passes' gradients through the host). */
al_status al_apgd_run(al_ctx *ctx, al_model *m, const al_apgd_spec *spec, al_apgd_ws *ws,
                      const float *x, const int32_t *y, int n, uint64_t seed, uint64_t stream,
                      float *x_adv, uint8_t *success, int *n_success, al_apgd_stats *stats);

#ifdef __cplusplus
}
#endif
#endif
