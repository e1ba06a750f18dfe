/* fab.c: FAB and FAB-T (attacks/fab.h), device-agnostic driver.
 * Twin: none for the driver: the model runs through al_model_forward / al_model_backward
 * (AL_BWD_INPUT only) on ctx's device; the per-example geometry (the box-constrained hyperplane
 * projections and the FAB update) runs on the host in double, one example per OpenMP thread
 * (static schedule: the result does not depend on the thread count).
 * On CUDA the runs iterate on the device instead: linearisation (untargeted: K - 1 backward
 * passes, the closest class kept per row), projection (bisection on the breakpoint function,
 * then the host's segment formula), step, acceptance and backward step in cuda/attack_fab.cu,
 * with no copy or wait per iteration; spec.host_iterations keeps the host loop (the
 * reference).
 * Shapes: x, x_adv (N, D) with D = C*H*W; logits (N, K); "active" buffers are compacted to the
 * points still being attacked (row a <-> original point act[a]).
 *
 * One run (target t, restart r) over the active points, as fab_base.py attack_single_run:
 *   x1 = x0 (r = 0) or a random start at half eps (r > 0)
 *   repeat n_iter: linearise f = z_c - z_y at x1 (c: the target, or for untargeted FAB the class
 *     whose linearised boundary is closest in the dual norm), project x1 and x0 onto the
 *     hyperplane inside the box (d1, d2), step x1 = clamp((x1 + eta d1)(1 - a) + (x0 + eta d2) a)
 *     with a = min(|d1| / (|d1| + |d2|), alpha_max); where x1 is now misclassified keep it if
 *     it is the closest so far and pull it back towards x0 by beta.
 * A point succeeds in a run when its closest misclassified iterate lies within eps and a fresh
 * forward pass confirms it; it then leaves the active set (later targets and restarts run
 * on the points still robust, as AutoAttack's perturb()). */
#include "attacks/fab.h"

#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

#include "attacks/attack.h"
#include "attacks/fab_elem.h"
#include "core/cuda_api.h"
#include "core/rng.h"
#include "losses/rowops.h"

al_fab_spec al_fab_spec_default(al_norm norm, float eps) {
    al_fab_spec s;
    memset(&s, 0, sizeof s);
    s.norm = norm;
    s.eps = eps;
    s.n_iter = 100;
    s.n_restarts = 1;
    s.n_target_classes = 9;
    s.targeted = 1;
    s.alpha_max = 0.1f;
    s.eta = 1.05f;
    s.beta = 0.9f;
    return s;
}

/* ---------------------------------------------------------------- projection */

typedef struct bp {
    double lam;  /* lambda at which the element saturates at the box */
    double cap;  /* |w_j| * (distance to the box along the move): its final contribution */
    double rate; /* d h / d lambda while unsaturated: |w_j| * |s_j| */
} bp;

static int bp_cmp(const void *a, const void *b) {
    double x = ((const bp *)a)->lam, y = ((const bp *)b)->lam;
    return (x > y) - (x < y);
}

double al_fab_project(al_norm norm, size_t n_elems, const float *t, const float *w, double c,
                      double *d, void *scratch) {
    /* Orient the hyperplane so that <w', t> - b' = c' >= 0: the step must lower <w', z> by c'.
     * Moving element j by -lambda s_j (s = sign(w') for Linf, w' for L2) lowers it fastest per
     * unit of norm; clipped at the box it becomes d_j(lambda) = clip(-lambda s_j, -t_j, 1 - t_j)
     * and lowers <w', z> by h(lambda) = sum_j |w_j| min(lambda |s_j|, room_j), room_j = t_j
     * (w'_j > 0) or 1 - t_j (w'_j < 0). h is piecewise linear and increasing: sort the
     * breakpoints lambda_j = room_j / |s_j| and find the segment where h = c'. Unreachable
     * (h(inf) < c'): every active element goes to its box face (lambda = inf). */
    const double sg = c >= 0.0 ? 1.0 : -1.0;
    const double cc = sg * c;
    bp *b = (bp *)scratch;
    size_t m = 0;
    for (size_t j = 0; j < n_elems; j++) {
        const double wj = sg * (double)w[j];
        if (!al_fab_active(norm, wj)) continue;
        al_fab_breakpoint(norm, wj, t[j], &b[m].lam, &b[m].cap, &b[m].rate);
        m++;
    }
    double lam = INFINITY;
    if (!(cc > 0.0)) {
        lam = 0.0; /* on the hyperplane already (or c NaN: do not move) */
    } else if (m > 0) {
        qsort(b, m, sizeof *b, bp_cmp);
        /* suffix sums of the rates (no cancellation), running prefix of saturated caps */
        double *suffix = (double *)(b + m); /* scratch holds 4 doubles per element */
        double acc = 0.0;
        for (size_t k = m; k-- > 0;) {
            acc += b[k].rate;
            suffix[k] = acc;
        }
        double sat = 0.0;
        for (size_t k = 0; k < m; k++) {
            /* on [lam_{k-1}, lam_k] elements k.. are unsaturated: h = sat + lambda suffix_k */
            if (sat + b[k].lam * suffix[k] >= cc) {
                lam = (cc - sat) / suffix[k];
                break;
            }
            sat += b[k].cap;
        }
    }
    double nrm = 0.0;
    for (size_t j = 0; j < n_elems; j++) {
        const double dj = al_fab_move(norm, sg * (double)w[j], t[j], lam);
        d[j] = dj;
        nrm = norm == AL_LINF ? fmax(nrm, fabs(dj)) : nrm + dj * dj;
    }
    return norm == AL_LINF ? nrm : sqrt(nrm);
}

/* ---------------------------------------------------------------- helpers */

/* Distance of row a from x0 in the norm, in double from the float values (the acceptance test
 * "within eps" and the tests' ball check use exactly this). */
static double dist_row(al_norm norm, const float *a, const float *x0, size_t d) {
    double s = 0.0;
    for (size_t j = 0; j < d; j++) {
        double v = fabs((double)a[j] - (double)x0[j]);
        s = norm == AL_LINF ? fmax(s, v) : s + v * v;
    }
    return norm == AL_LINF ? s : sqrt(s);
}

typedef struct fab_ws {
    int n, k, n_threads;
    size_t d;
    float *h_x0;      /* (N, D) clean inputs */
    int32_t *h_y;     /* (N) */
    float *h_out;     /* (N, D) result rows: clean until a run succeeds */
    uint8_t *h_rob;   /* (N) still robust (clean-correct and not yet fooled within eps) */
    int32_t *h_tgt;   /* (N, K-1) non-true classes by clean logit, descending */
    int *act;         /* (N) original index of active row a */
    float *h_x1;      /* (N, D) iterates */
    float *h_best;    /* (N, D) closest misclassified iterate */
    float *h_g;       /* (N, D) gradient of the chosen f = z_c - z_y */
    float *h_gc;      /* (N, D) untargeted: gradient of the class being scanned */
    float *h_z;       /* (N, K) logits */
    float *h_dl;      /* (N, K) dlogits */
    double *h_df;     /* (N) f at x1 for the chosen class */
    double *h_dist;   /* (N) untargeted: best linearised distance so far */
    double *h_res;    /* (N) norm of h_best (INFINITY: none) */
    uint8_t *h_flag;  /* (N) */
    double *scratch;  /* (threads, 6 D): d1, d2 (D each), projection scratch (4 D) */
    float *d_x, *d_g, *d_dl; /* device (N, D), (N, D), (N, K) */
    /* CUDA targeted runs: best points, their norms, f, the row maps on the device */
    float *d_best, *d_gc;  /* d_gc: untargeted, the gradient of the class being scanned */
    double *d_res, *d_df, *d_dist;
    int *d_act, *d_tgt, *d_ya, *h_ya;
    uint8_t *d_chosen;
} fab_ws;

static void ws_fini(al_ctx *ctx, fab_ws *w) {
    al_free(w->h_x0);
    al_free(w->h_y);
    al_free(w->h_out);
    al_free(w->h_rob);
    al_free(w->h_tgt);
    al_free(w->act);
    al_free(w->h_x1);
    al_free(w->h_best);
    al_free(w->h_g);
    al_free(w->h_gc);
    al_free(w->h_z);
    al_free(w->h_dl);
    al_free(w->h_df);
    al_free(w->h_dist);
    al_free(w->h_res);
    al_free(w->h_flag);
    al_free(w->scratch);
    al_dev_free(ctx, w->d_x);
    al_dev_free(ctx, w->d_g);
    al_dev_free(ctx, w->d_dl);
    al_dev_free(ctx, w->d_best);
    al_dev_free(ctx, w->d_gc);
    al_dev_free(ctx, w->d_dist);
    al_dev_free(ctx, w->d_chosen);
    al_dev_free(ctx, w->d_res);
    al_dev_free(ctx, w->d_df);
    al_dev_free(ctx, w->d_act);
    al_dev_free(ctx, w->d_tgt);
    al_dev_free(ctx, w->d_ya);
    al_free(w->h_ya);
    memset(w, 0, sizeof *w);
}

static al_status ws_init(al_ctx *ctx, fab_ws *w, int n, int k, size_t d, int untargeted,
                         int dev_iters) {
    memset(w, 0, sizeof *w);
    w->n = n;
    w->k = k;
    w->d = d;
    w->n_threads = omp_get_max_threads();
    const size_t nd = (size_t)n * d, nk = (size_t)n * k;
    w->h_x0 = al_malloc(nd * sizeof(float), "fab clean inputs");
    w->h_y = al_malloc((size_t)n * sizeof(int32_t), "fab labels");
    w->h_out = al_malloc(nd * sizeof(float), "fab result");
    w->h_rob = al_malloc((size_t)n, "fab robust flags");
    w->h_tgt = al_malloc((size_t)n * (k - 1) * sizeof(int32_t), "fab targets");
    w->act = al_malloc((size_t)n * sizeof(int), "fab active list");
    w->h_x1 = al_malloc(nd * sizeof(float), "fab iterates");
    w->h_best = al_malloc(nd * sizeof(float), "fab best points");
    w->h_g = al_malloc(nd * sizeof(float), "fab gradients");
    if (untargeted) w->h_gc = al_malloc(nd * sizeof(float), "fab class gradients");
    w->h_z = al_malloc(nk * sizeof(float), "fab logits");
    w->h_dl = al_malloc(nk * sizeof(float), "fab dlogits");
    w->h_df = al_malloc((size_t)n * sizeof(double), "fab logit differences");
    w->h_dist = al_malloc((size_t)n * sizeof(double), "fab distances");
    w->h_res = al_malloc((size_t)n * sizeof(double), "fab best norms");
    w->h_flag = al_malloc((size_t)n, "fab flags");
    w->scratch = al_malloc((size_t)w->n_threads * 6 * d * sizeof(double), "fab projection scratch");
    if (!w->h_x0 || !w->h_y || !w->h_out || !w->h_rob || !w->h_tgt || !w->act || !w->h_x1 ||
        !w->h_best || !w->h_g || (untargeted && !w->h_gc) || !w->h_z || !w->h_dl || !w->h_df ||
        !w->h_dist || !w->h_res || !w->h_flag || !w->scratch) {
        ws_fini(ctx, w);
        return AL_ERR_OOM;
    }
    al_status st = AL_OK;
    AL_CHECK(al_dev_alloc(ctx, (void **)&w->d_x, nd * sizeof(float), "fab device iterates"));
    AL_CHECK(al_dev_alloc(ctx, (void **)&w->d_g, nd * sizeof(float), "fab device gradients"));
    AL_CHECK(al_dev_alloc(ctx, (void **)&w->d_dl, nk * sizeof(float), "fab device dlogits"));
    if (dev_iters) {
        const size_t ni = (size_t)n * sizeof(int);
        AL_CHECK(al_dev_alloc(ctx, (void **)&w->d_best, nd * sizeof(float), "fab best points"));
        AL_CHECK(al_dev_alloc(ctx, (void **)&w->d_res, (size_t)n * sizeof(double), "fab best norms"));
        AL_CHECK(al_dev_alloc(ctx, (void **)&w->d_df, (size_t)n * sizeof(double), "fab differences"));
        AL_CHECK(al_dev_alloc(ctx, (void **)&w->d_act, ni, "fab active list"));
        AL_CHECK(al_dev_alloc(ctx, (void **)&w->d_tgt, ni, "fab targets"));
        AL_CHECK(al_dev_alloc(ctx, (void **)&w->d_ya, ni, "fab labels"));
        w->h_ya = al_malloc(ni, "fab active labels");
        if (!w->h_ya) AL_CHECK(AL_ERR_OOM);
        if (untargeted) {
            AL_CHECK(al_dev_alloc(ctx, (void **)&w->d_gc, nd * sizeof(float), "fab class gradients"));
            AL_CHECK(al_dev_alloc(ctx, (void **)&w->d_dist, (size_t)n * sizeof(double), "fab distances"));
            AL_CHECK(al_dev_alloc(ctx, (void **)&w->d_chosen, (size_t)n, "fab chosen flags"));
        }
    }
done:
    if (st != AL_OK) ws_fini(ctx, w);
    return st;
}

/* Forward na host rows (eval mode, slot 0); logits to w->h_z. The rows stay on the device in
 * w->d_x for a following backward. */
static al_status forward_rows(al_ctx *ctx, al_model *m, fab_ws *w, const float *rows, int na) {
    AL_TRY(al_copy_to_dev(ctx, w->d_x, rows, (size_t)na * w->d * sizeof(float)));
    AL_TRY(al_model_forward_eval(ctx, m, w->d_x, na, 0));
    return al_copy_to_host(ctx, w->h_z, al_model_logits(m, 0), (size_t)na * w->k * sizeof(float));
}

/* Input gradient of sum_a (z_a[c_a] - z_a[y_a]) for the last forward (rows with c_a < 0 get a
 * zero dlogits row), to host buffer g. One backward, input gradient only. */
static al_status diff_grad(al_ctx *ctx, al_model *m, fab_ws *w, int na, const int *cls, float *g) {
    const int k = w->k;
    memset(w->h_dl, 0, (size_t)na * k * sizeof(float));
    for (int a = 0; a < na; a++)
        if (cls[a] >= 0) {
            w->h_dl[(size_t)a * k + cls[a]] = 1.0f;
            w->h_dl[(size_t)a * k + w->h_y[w->act[a]]] = -1.0f;
        }
    AL_TRY(al_copy_to_dev(ctx, w->d_dl, w->h_dl, (size_t)na * k * sizeof(float)));
    AL_TRY(al_model_backward(ctx, m, 0, w->d_dl, NULL, AL_BWD_INPUT, w->d_g));
    return al_copy_to_host(ctx, g, w->d_g, (size_t)na * w->d * sizeof(float));
}

/* Random start of restart r > 0 (fab_base.py): x0 + (eps / 2) v / ||v||, v uniform in [-1,1]^D
 * (Linf) or standard normal (L2), clamped to [0,1]. Draws Philox(seed, stream, index) with
 * index = ((round * R + r) * N + i) * D + j: a point's start depends on its position i in the
 * batch, not on which other points are still active. */
static void random_start(const al_fab_spec *s, fab_ws *w, int na, int round, uint64_t seed,
                         uint64_t stream, int r) {
    const size_t d = w->d;
#pragma omp parallel for schedule(static)
    for (int a = 0; a < na; a++) {
        const int i = w->act[a];
        const float *x0 = w->h_x0 + (size_t)i * d;
        float *x1 = w->h_x1 + (size_t)a * d;
        double *v = w->scratch + (size_t)omp_get_thread_num() * 6 * d;
        const uint64_t base =
            (((uint64_t)round * (uint64_t)s->n_restarts + (uint64_t)r) * (uint64_t)w->n +
             (uint64_t)i) * (uint64_t)d;
        double nrm = 0.0;
        for (size_t j = 0; j < d; j++) {
            double t = s->norm == AL_LINF ? 2.0 * al_rng_uniform(seed, stream, base + j) - 1.0
                                          : (double)al_rng_normal(seed, stream, base + j);
            v[j] = t;
            nrm = s->norm == AL_LINF ? fmax(nrm, fabs(t)) : nrm + t * t;
        }
        if (s->norm == AL_L2) nrm = sqrt(nrm);
        const double scale = nrm > 0.0 ? 0.5 * (double)s->eps / nrm : 0.0;
        for (size_t j = 0; j < d; j++) {
            double u = (double)x0[j] + scale * v[j];
            x1[j] = (float)(u < 0.0 ? 0.0 : (u > 1.0 ? 1.0 : u));
        }
    }
}

/* The FAB update of active row a (see the file comment); x1 row updated in place. */
static void fab_step(const al_fab_spec *s, fab_ws *w, int a) {
    const size_t d = w->d;
    const float *x0 = w->h_x0 + (size_t)w->act[a] * d;
    float *x1 = w->h_x1 + (size_t)a * d;
    const float *g = w->h_g + (size_t)a * d;
    double *d1 = w->scratch + (size_t)omp_get_thread_num() * 6 * d, *d2 = d1 + d, *sc = d2 + d;
    /* hyperplane <g, z> = <g, x1> - df; c for x1 is df, for x0 it is df + <g, x0 - x1> */
    const double df = w->h_df[a];
    double gx = 0.0;
    for (size_t j = 0; j < d; j++) gx += (double)g[j] * ((double)x0[j] - (double)x1[j]);
    double a1 = al_fab_project(s->norm, d, x1, g, df, d1, sc);
    double a2 = al_fab_project(s->norm, d, x0, g, df + gx, d2, sc);
    a1 = fmax(a1, 1e-8);
    a2 = fmax(a2, 1e-8);
    double alpha = a1 / (a1 + a2);
    alpha = fmin(fmax(alpha, 0.0), (double)s->alpha_max);
    const double eta = s->eta;
    for (size_t j = 0; j < d; j++) {
        double u = ((double)x1[j] + eta * d1[j]) * (1.0 - alpha) + ((double)x0[j] + eta * d2[j]) * alpha;
        x1[j] = (float)(u < 0.0 ? 0.0 : (u > 1.0 ? 1.0 : u));
    }
}

/* Linearisation at the current iterates: h_df, h_g for each active row. Targeted: class tgt[a];
 * untargeted: over every class c != y the one minimising |f_c| / ||grad f_c||_dual (ties: the
 * lowest class, as torch's min), K - 1 backward passes. */
static al_status linearise(al_ctx *ctx, al_model *m, const al_fab_spec *s, fab_ws *w, int na,
                           const int *tgt, int *cls) {
    const int k = w->k;
    const size_t d = w->d;
    AL_TRY(forward_rows(ctx, m, w, w->h_x1, na));
    if (s->targeted) {
        for (int a = 0; a < na; a++) {
            const float *z = w->h_z + (size_t)a * k;
            w->h_df[a] = (double)z[tgt[a]] - (double)z[w->h_y[w->act[a]]];
        }
        return diff_grad(ctx, m, w, na, tgt, w->h_g);
    }
    memset(w->h_flag, 0, (size_t)na); /* h_flag[a]: a class has been chosen for row a */
    for (int c = 0; c < k; c++) {
        int any = 0;
        for (int a = 0; a < na; a++) {
            cls[a] = w->h_y[w->act[a]] == c ? -1 : c;
            any |= cls[a] >= 0;
        }
        if (!any) continue;
        AL_TRY(diff_grad(ctx, m, w, na, cls, w->h_gc));
#pragma omp parallel for schedule(static)
        for (int a = 0; a < na; a++) {
            if (cls[a] < 0) continue;
            const float *z = w->h_z + (size_t)a * k, *gc = w->h_gc + (size_t)a * d;
            double df = (double)z[c] - (double)z[w->h_y[w->act[a]]], q = 0.0;
            for (size_t j = 0; j < d; j++)
                q = s->norm == AL_LINF ? q + fabs((double)gc[j]) : q + (double)gc[j] * gc[j];
            if (s->norm == AL_L2) q = sqrt(q);
            double dist = fabs(df) / (1e-12 + q); /* dual norm: L1 for Linf, L2 for L2 */
            if (!w->h_flag[a] || dist < w->h_dist[a]) {
                w->h_flag[a] = 1;
                w->h_dist[a] = dist;
                w->h_df[a] = df;
                memcpy(w->h_g + (size_t)a * d, gc, d * sizeof(float));
            }
        }
    }
    return AL_OK;
}

#ifdef AL_HAVE_CUDA
/* The n_iter iterations of a run on the device (cuda/attack_fab.cu): from the start rows h_x1
 * (and the targets tgt of a targeted run) of the na active rows to h_best / h_res, as the host
 * loop below. x: the caller's device inputs (the rows' x0). */
static al_status iterate_cuda(al_ctx *ctx, al_model *m, const al_fab_spec *s, fab_ws *w, int na,
                              const int *tgt, const float *x) {
    const size_t d = w->d;
    const int k = w->k;
    for (int a = 0; a < na; a++) w->h_ya[a] = w->h_y[w->act[a]];
    AL_TRY(al_copy_to_dev(ctx, w->d_x, w->h_x1, (size_t)na * d * sizeof(float)));
    AL_TRY(al_copy_to_dev(ctx, w->d_act, w->act, (size_t)na * sizeof(int)));
    if (s->targeted) AL_TRY(al_copy_to_dev(ctx, w->d_tgt, tgt, (size_t)na * sizeof(int)));
    AL_TRY(al_copy_to_dev(ctx, w->d_ya, w->h_ya, (size_t)na * sizeof(int)));
    AL_TRY(al_copy_to_dev(ctx, w->d_res, w->h_res, (size_t)na * sizeof(double)));
    for (int it = 0; it < s->n_iter; it++) {
        AL_TRY(al_model_forward_eval(ctx, m, w->d_x, na, 0));
        const float *z = al_model_logits(m, 0);
        if (s->targeted) {
            AL_TRY(al_fab_dlogits_cuda(ctx, na, k, -1, w->d_tgt, w->d_ya, z, w->d_df, w->d_dl));
            AL_TRY(al_model_backward(ctx, m, 0, w->d_dl, NULL, AL_BWD_INPUT, w->d_g));
        } else { /* linearise(): every class c != y, the linearly closest kept */
            AL_TRY(al_memset_dev(ctx, w->d_chosen, 0, (size_t)na));
            for (int c = 0; c < k; c++) {
                int any = 0;
                for (int a = 0; a < na && !any; a++) any = w->h_ya[a] != c;
                if (!any) continue;
                AL_TRY(al_fab_dlogits_cuda(ctx, na, k, c, NULL, w->d_ya, z, NULL, w->d_dl));
                AL_TRY(al_model_backward(ctx, m, 0, w->d_dl, NULL, AL_BWD_INPUT, w->d_gc));
                AL_TRY(al_fab_pick_cuda(ctx, s->norm, na, (int)d, k, c, w->d_ya, z, w->d_gc,
                                        w->d_df, w->d_g, w->d_dist, w->d_chosen));
            }
        }
        AL_TRY(al_fab_step_cuda(ctx, s->norm, na, (int)d, s->alpha_max, s->eta, w->d_act, x,
                                w->d_x, w->d_g, w->d_df));
        AL_TRY(al_model_forward_eval(ctx, m, w->d_x, na, 0));
        AL_TRY(al_fab_accept_cuda(ctx, s->norm, na, (int)d, k, s->beta, w->d_act, w->d_ya,
                                  al_model_logits(m, 0), x, w->d_x, w->d_best, w->d_res));
    }
    AL_TRY(al_copy_to_host(ctx, w->h_res, w->d_res, (size_t)na * sizeof(double)));
    return al_copy_to_host(ctx, w->h_best, w->d_best, (size_t)na * d * sizeof(float));
}
#endif

/* One run (target round `round`, restart r) on the points still robust. */
static al_status fab_run_once(al_ctx *ctx, al_model *m, const al_fab_spec *s, fab_ws *w, int round,
                              int r, uint64_t seed, uint64_t stream, const float *x) {
    const int k = w->k;
    const size_t d = w->d;
    int na = 0;
    for (int i = 0; i < w->n; i++)
        if (w->h_rob[i]) w->act[na++] = i;
    if (na == 0) return AL_OK;
    int *tgt = malloc((size_t)na * sizeof(int)), *cls = malloc((size_t)na * sizeof(int));
    if (!tgt || !cls) {
        free(tgt);
        free(cls);
        return AL_FAIL(AL_ERR_OOM, "al_fab_run: out of host memory (%d points)", na);
    }
    al_status st = AL_OK;
    for (int a = 0; a < na; a++) {
        tgt[a] = s->targeted ? w->h_tgt[(size_t)w->act[a] * (k - 1) + round] : -1;
        w->h_res[a] = INFINITY;
    }
    if (r == 0)
        for (int a = 0; a < na; a++)
            memcpy(w->h_x1 + (size_t)a * d, w->h_x0 + (size_t)w->act[a] * d, d * sizeof(float));
    else
        random_start(s, w, na, round, seed, stream, r);

#ifdef AL_HAVE_CUDA
    if (w->d_best) AL_CHECK(iterate_cuda(ctx, m, s, w, na, tgt, x));
#else
    (void)x;
#endif
    for (int it = 0; it < s->n_iter && !w->d_best; it++) {
        AL_CHECK(linearise(ctx, m, s, w, na, tgt, cls));
#pragma omp parallel for schedule(static)
        for (int a = 0; a < na; a++) fab_step(s, w, a);
        AL_CHECK(forward_rows(ctx, m, w, w->h_x1, na));
        for (int a = 0; a < na; a++) {
            const int i = w->act[a];
            if (row_argmax_excl(w->h_z + (size_t)a * k, k, -1) == w->h_y[i]) continue;
            const float *x0 = w->h_x0 + (size_t)i * d;
            float *x1 = w->h_x1 + (size_t)a * d;
            double t = dist_row(s->norm, x1, x0, d);
            if (t < w->h_res[a]) {
                memcpy(w->h_best + (size_t)a * d, x1, d * sizeof(float));
                w->h_res[a] = t;
            }
            /* backward step towards x0 (fab_base.py: x1 = x0 + (x1 - x0) * beta) */
            for (size_t j = 0; j < d; j++)
                x1[j] = (float)((double)x0[j] + ((double)x1[j] - (double)x0[j]) * (double)s->beta);
        }
    }
    /* candidates within eps, confirmed by a fresh forward pass on exactly those rows */
    int nc = 0;
    for (int a = 0; a < na; a++)
        if (w->h_res[a] <= (double)s->eps) {
            if (nc != a) memcpy(w->h_best + (size_t)nc * d, w->h_best + (size_t)a * d, d * sizeof(float));
            cls[nc++] = w->act[a];
        }
    if (nc > 0) {
        AL_CHECK(forward_rows(ctx, m, w, w->h_best, nc));
        for (int b = 0; b < nc; b++) {
            const int i = cls[b];
            if (row_argmax_excl(w->h_z + (size_t)b * k, k, -1) == w->h_y[i]) continue;
            memcpy(w->h_out + (size_t)i * d, w->h_best + (size_t)b * d, d * sizeof(float));
            w->h_rob[i] = 0;
        }
    }
done:
    free(tgt);
    free(cls);
    return st;
}

static al_status validate(const al_model *m, const al_fab_spec *s, const float *x,
                          const int32_t *y, int n, const float *x_adv) {
    const char *fn = "al_fab_run";
    AL_TRY(al_attack_check_io(fn, m, n, x, y, x_adv));
    if (!s) return AL_FAIL(AL_ERR_VALUE, "%s: spec is required", fn);
    if (m->num_classes < 2)
        return AL_FAIL(AL_ERR_VALUE, "%s: model %s has %d classes (need >= 2)", fn, m->arch,
                       m->num_classes);
    if (s->norm != AL_LINF && s->norm != AL_L2)
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.norm %d is not linf|l2", fn, (int)s->norm);
    if (!(s->eps >= 0.0f) || !isfinite(s->eps))
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.eps %g must be finite and >= 0", fn, (double)s->eps);
    if (s->n_iter < 0) return AL_FAIL(AL_ERR_VALUE, "%s: spec.n_iter %d < 0", fn, s->n_iter);
    if (s->n_restarts < 1)
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.n_restarts %d < 1", fn, s->n_restarts);
    if (s->targeted && s->n_target_classes < 1)
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.n_target_classes %d < 1", fn, s->n_target_classes);
    if (!(s->alpha_max >= 0.0f && s->alpha_max <= 1.0f))
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.alpha_max %g outside [0, 1]", fn,
                       (double)s->alpha_max);
    if (!(s->eta > 0.0f) || !isfinite(s->eta))
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.eta %g must be finite and > 0", fn, (double)s->eta);
    if (!(s->beta >= 0.0f && s->beta <= 1.0f))
        return AL_FAIL(AL_ERR_VALUE, "%s: spec.beta %g outside [0, 1]", fn, (double)s->beta);
    return AL_OK;
}

al_status al_fab_run(al_ctx *ctx, al_model *m, const al_fab_spec *s, const float *x,
                     const int32_t *y, int n, uint64_t seed, uint64_t stream, float *x_adv,
                     uint8_t *success) {
    AL_TRY(validate(m, s, x, y, n, x_adv));
    const int k = m->num_classes;
    const size_t d = (size_t)m->in_c * m->in_h * m->in_w;
    fab_ws w;
    const int dev_iters = ctx->device == AL_DEV_CUDA && !s->host_iterations;
    AL_TRY(ws_init(ctx, &w, n, k, d, !s->targeted, dev_iters));
    al_status st = AL_OK;
    AL_CHECK(al_copy_to_host(ctx, w.h_x0, x, (size_t)n * d * sizeof(float)));
    AL_CHECK(al_copy_to_host(ctx, w.h_y, y, (size_t)n * sizeof(int32_t)));
    for (int i = 0; i < n; i++)
        if (w.h_y[i] < 0 || w.h_y[i] >= k) {
            st = AL_FAIL(AL_ERR_VALUE, "al_fab_run: label %d at index %d outside [0,%d)",
                         (int)w.h_y[i], i, k);
            goto done;
        }
    memcpy(w.h_out, w.h_x0, (size_t)n * d * sizeof(float));

    /* clean pass: only clean-correct points are attacked; targets = the non-true classes by
     * clean logit, descending (ties: lower class first; AutoAttack takes sort()[-2], [-3], ..) */
    AL_CHECK(forward_rows(ctx, m, &w, w.h_x0, n));
    for (int i = 0; i < n; i++) {
        const float *z = w.h_z + (size_t)i * k;
        w.h_rob[i] = row_argmax_excl(z, k, -1) == w.h_y[i];
        int32_t *t = w.h_tgt + (size_t)i * (k - 1);
        int nt = 0;
        for (int c = 0; c < k; c++)
            if (c != w.h_y[i]) t[nt++] = c;
        for (int p = 1; p < nt; p++) { /* stable insertion sort, descending logit */
            int32_t v = t[p];
            int q = p;
            while (q > 0 && z[t[q - 1]] < z[v]) {
                t[q] = t[q - 1];
                q--;
            }
            t[q] = v;
        }
    }
    const int n_rounds = s->targeted ? AL_MIN(s->n_target_classes, k - 1) : 1;
    for (int round = 0; round < n_rounds; round++)
        for (int r = 0; r < s->n_restarts; r++)
            AL_CHECK(fab_run_once(ctx, m, s, &w, round, r, seed, stream, x));

    /* final verification on exactly the returned points */
    AL_CHECK(forward_rows(ctx, m, &w, w.h_out, n));
    for (int i = 0; i < n; i++) {
        w.h_flag[i] = row_argmax_excl(w.h_z + (size_t)i * k, k, -1) != w.h_y[i];
        if (!w.h_flag[i]) /* not confirmed (never, unless the batch changes the rounding) */
            memcpy(w.h_out + (size_t)i * d, w.h_x0 + (size_t)i * d, d * sizeof(float));
    }
    AL_CHECK(al_copy_to_dev(ctx, x_adv, w.h_out, (size_t)n * d * sizeof(float)));
    if (success) AL_CHECK(al_copy_to_dev(ctx, success, w.h_flag, (size_t)n));
done:
    ws_fini(ctx, &w);
    return st;
}
