/* test_fab_square.c: attacks/fab.c (FAB, FAB-T) and attacks/square.c (Square, Linf and L2).
 * Oracles:
 *  - the FAB projection against an independent solver (bisection on the multiplier of the
 *    same box-constrained problem) and against the closed forms where the box is inactive;
 *  - invariants re-checked outside the attack code (style rule 21c): x_adv inside the eps-ball
 *    (in double from the stored floats: FAB and Square are exact, no rounding slack) and in
 *    [0,1]; `success` equal to a fresh forward's argmax test; failed points bit-identical to the
 *    clean input; clean-misclassified points succeed with x_adv = x; bit-identical results for
 *    the same seed; model->grads and parameters untouched;
 *  - FAB on a linear model, where the distance to each pairwise decision boundary has a closed
 *    form: found perturbations are never below the lower bound min_c |z_y - z_c| / ||w_y - w_c||_*
 *    and are close to it (FAB is a minimum-norm attack), far inside eps;
 *  - Square lowers the accuracy of a weak (random) model using forward passes only.
 * Models are tiny builder graphs (1x28x28 K=10 and 3x16x16 K=7) so the whole file runs in
 * seconds; the second model runs with 2 OpenMP threads (per-thread scratch of the host
 * geometry), the rest with 1 (OpenMP spin-waits make loaded 2-core CI machines slow). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attacks/fab.h"
#include "attacks/square.h"
#include "core/ctx.h"
#include "core/model.h"
#include "core/rng.h"
#include "harness/check.h"

/* ---------------------------------------------------------------- projection */

/* Independent reference: d(lam) = clip(-lam s, -t, 1 - t) on the active set, with the
 * orientation of w chosen so that the step lowers <w, z>; bisection on lam for <w, d> = -c. */
static double ref_elem(al_norm norm, double sg, float t, float w, double lam) {
    double wj = sg * (double)w;
    if (!(norm == AL_LINF ? wj != 0.0 : fabs(wj) > 1e-8)) return 0.0;
    double v = -(norm == AL_LINF ? (wj > 0 ? 1.0 : -1.0) : wj) * lam;
    if (v < -(double)t) v = -(double)t;
    if (v > 1.0 - (double)t) v = 1.0 - (double)t;
    return v;
}
static double ref_h(al_norm norm, double sg, size_t n, const float *t, const float *w, double lam) {
    double h = 0.0; /* -<w', d(lam)>: increasing in lam */
    for (size_t j = 0; j < n; j++) h += -sg * (double)w[j] * ref_elem(norm, sg, t[j], w[j], lam);
    return h;
}
static void proj_ref(al_norm norm, size_t n, const float *t, const float *w, double c, double *d) {
    const double sg = c >= 0 ? 1.0 : -1.0, cc = fabs(c);
    double lam;
    if (cc == 0.0) {
        lam = 0.0;
    } else if (ref_h(norm, sg, n, t, w, 1e300) < cc) {
        lam = 1e300; /* unreachable: every active element at its box face */
    } else {
        double lo = 0.0, hi = 1.0;
        while (ref_h(norm, sg, n, t, w, hi) < cc) hi *= 2.0;
        for (int it = 0; it < 200; it++) {
            double mid = 0.5 * (lo + hi);
            if (ref_h(norm, sg, n, t, w, mid) >= cc)
                hi = mid;
            else
                lo = mid;
        }
        lam = hi;
    }
    for (size_t j = 0; j < n; j++) d[j] = ref_elem(norm, sg, t[j], w[j], lam);
}

static int case_projection(void) {
    enum { N = 97 };
    float t[N], w[N];
    double d[N], r[N], scratch[4 * N];
    int bad = 0, n_unreach = 0, n_reach = 0;
    for (int trial = 0; trial < 60; trial++) {
        al_norm norm = trial % 2 ? AL_L2 : AL_LINF;
        al_test_fill(t, N, 300 + trial, 0.0f, 1.0f);
        al_test_fill(w, N, 400 + trial, -1.0f, 1.0f);
        for (int j = 0; j < N; j++) {
            if (t[j] < 0.15f) t[j] = 0.0f; /* saturated pixels: zero room on one side */
            if (t[j] > 0.9f) t[j] = 1.0f;
            if (j % 11 == 3) w[j] = 0.0f;  /* inactive elements */
            if (j % 13 == 5) w[j] = 1e-9f; /* inactive for L2 only */
        }
        double wt = 0.0, wl1 = 0.0;
        for (int j = 0; j < N; j++) {
            wt += (double)w[j] * t[j];
            wl1 += fabs((double)w[j]);
        }
        /* c spans: on the plane, small, a large part of the reachable range, unreachable */
        double scale[] = {0.0, 1e-3, 0.3, 3.0, 12.0, 40.0};
        double c = scale[trial % 6] * (trial % 4 < 2 ? 1.0 : -1.0) * wl1 / 10.0;
        double nrm = al_fab_project(norm, N, t, w, c, d, scratch);
        proj_ref(norm, N, t, w, c, r);
        char what[96];
        snprintf(what, sizeof what, "projection trial %d (%s, c %.4g)", trial,
                 norm == AL_LINF ? "Linf" : "L2", c);
        bad |= al_check_close_d(what, d, r, N, 1e-9, 1e-9);
        /* box, and the hyperplane reached when reachable */
        double after = 0.0, nn = 0.0;
        for (int j = 0; j < N; j++) {
            AL_EXPECT(t[j] + d[j] >= -1e-15 && t[j] + d[j] <= 1.0 + 1e-15, "%s: elem %d leaves box",
                      what, j);
            after += (double)w[j] * d[j];
            nn = norm == AL_LINF ? fmax(nn, fabs(d[j])) : nn + d[j] * d[j];
        }
        if (norm == AL_L2) nn = sqrt(nn);
        AL_EXPECT(fabs(nn - nrm) <= 1e-12 * (1 + nn), "%s: returned norm %.17g, ||d|| %.17g", what,
                  nrm, nn);
        if (fabs(after + c) <= 1e-9 * (1 + fabs(c)))
            n_reach++;
        else
            n_unreach++;
        (void)wt;
    }
    fprintf(stderr, "  %d reachable, %d unreachable (box corner) cases\n", n_reach, n_unreach);
    AL_EXPECT(n_reach >= 30 && n_unreach >= 5, "cases do not cover both regimes");
    /* closed forms with an inactive box: L2 d = -c w / ||w||^2, Linf d = -c sign(w) / ||w||_1 */
    float tm[N], wm[N];
    for (int j = 0; j < N; j++) tm[j] = 0.5f;
    al_test_fill(wm, N, 500, -1.0f, 1.0f);
    double w2 = 0.0, w1 = 0.0, c = 0.01;
    for (int j = 0; j < N; j++) {
        w2 += (double)wm[j] * wm[j];
        w1 += fabs((double)wm[j]);
    }
    al_fab_project(AL_L2, N, tm, wm, c, d, scratch);
    for (int j = 0; j < N; j++) r[j] = -c * wm[j] / w2;
    bad |= al_check_close_d("L2 closed form", d, r, N, 1e-15, 1e-12);
    al_fab_project(AL_LINF, N, tm, wm, -c, d, scratch);
    for (int j = 0; j < N; j++) r[j] = c * (wm[j] > 0 ? 1.0 : -1.0) / w1;
    bad |= al_check_close_d("Linf closed form", d, r, N, 1e-15, 1e-12);
    return bad;
}

/* ---------------------------------------------------------------- model fixtures */

enum { NB = 12 };

typedef struct fixture {
    al_ctx ctx;
    al_model *m;
    int k;
    size_t d;
    float *x;
    int32_t *y;
} fixture;

/* conv(3x3, s2) -> relu -> conv(3x3, s2) -> relu -> linear: a weak random CNN, seeded. */
static al_model *tiny_cnn(int k, int c, int hw) {
    al_model *m = al_model_new("tiny_cnn", k, c, hw, hw);
    int x = al_model_input(m);
    x = al_model_conv(m, "conv1", x, 8, 3, 2, 0, 1);
    x = al_model_relu(m, x);
    x = al_model_conv(m, "conv2", x, 12, 3, 2, 0, 1);
    int f = al_model_relu(m, x);
    int z = al_model_linear(m, "fc", f, k, 1);
    al_model_set_output(m, z, f);
    return m;
}

static al_model *linear_model(int k, int c, int hw) {
    al_model *m = al_model_new("linear", k, c, hw, hw);
    int x = al_model_input(m);
    int z = al_model_linear(m, "fc", x, k, 1);
    al_model_set_output(m, z, x);
    return m;
}

/* Images: seeded pixels, a third saturated at exactly 0 or 1 (MNIST-like). Labels: the clean
 * predictions, except points 2 and 7, which are misclassified from the start. */
static int fixture_init(fixture *f, al_model *m, uint64_t id, int threads) {
    memset(f, 0, sizeof *f);
    AL_EXPECT(al_ctx_init(&f->ctx, AL_DEV_CPU, 0, threads, 7) == AL_OK, "%s", al_errmsg());
    f->m = m;
    f->k = m->num_classes;
    f->d = (size_t)m->in_c * m->in_h * m->in_w;
    AL_EXPECT(al_model_setup(&f->ctx, m, NB, 1) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_model_init_params(&f->ctx, m, 1000 + id) == AL_OK, "%s", al_errmsg());
    f->x = malloc(NB * f->d * sizeof(float));
    f->y = malloc(NB * sizeof(int32_t));
    al_test_fill(f->x, NB * f->d, 600 + id, 0.0f, 1.0f);
    for (size_t i = 0; i < NB * f->d; i++) {
        if (f->x[i] < 0.2f)
            f->x[i] = 0.0f;
        else if (f->x[i] > 0.85f)
            f->x[i] = 1.0f;
    }
    AL_EXPECT(al_model_forward_eval(&f->ctx, m, f->x, NB, 0) == AL_OK, "%s", al_errmsg());
    const float *z = al_model_logits(m, 0);
    for (int i = 0; i < NB; i++) {
        int a = 0;
        for (int j = 1; j < f->k; j++)
            if (z[i * f->k + j] > z[i * f->k + a]) a = j;
        f->y[i] = (i == 2 || i == 7) ? (a + 1) % f->k : a;
    }
    return 0;
}

static void fixture_fini(fixture *f) {
    al_model_destroy(&f->ctx, f->m);
    al_ctx_fini(&f->ctx);
    free(f->x);
    free(f->y);
}

static double dist(al_norm norm, const float *a, const float *b, size_t d) {
    double s = 0.0;
    for (size_t j = 0; j < d; j++) {
        double v = fabs((double)a[j] - (double)b[j]);
        s = norm == AL_LINF ? fmax(s, v) : s + v * v;
    }
    return norm == AL_LINF ? s : sqrt(s);
}

/* Every invariant of the attack contract. dists (NB) out: the perturbation norms. */
static int check_contract(fixture *f, const char *what, al_norm norm, float eps, const float *xa,
                          const uint8_t *succ, double *dists, int *n_succ) {
    const size_t d = f->d;
    double worst = 0.0;
    for (int i = 0; i < NB; i++) {
        const float *a = xa + i * d, *c = f->x + i * d;
        for (size_t j = 0; j < d; j++)
            AL_EXPECT(a[j] >= 0.0f && a[j] <= 1.0f, "%s: point %d elem %zu = %g outside [0,1]",
                      what, i, j, a[j]);
        dists[i] = dist(norm, a, c, d);
        worst = fmax(worst, dists[i]);
        AL_EXPECT(dists[i] <= (double)eps, "%s: point %d at %.12g > eps %.12g", what, i, dists[i],
                  (double)eps);
    }
    AL_EXPECT(al_model_forward_eval(&f->ctx, f->m, xa, NB, 0) == AL_OK, "%s", al_errmsg());
    const float *z = al_model_logits(f->m, 0);
    int cnt = 0;
    for (int i = 0; i < NB; i++) {
        int a = 0;
        for (int j = 1; j < f->k; j++)
            if (z[i * f->k + j] > z[i * f->k + a]) a = j;
        int s = a != f->y[i];
        AL_EXPECT(s == succ[i], "%s: point %d success %d, fresh forward says %d", what, i, succ[i],
                  s);
        if (!s)
            AL_EXPECT(memcmp(xa + i * d, f->x + i * d, d * sizeof(float)) == 0,
                      "%s: failed point %d is not the clean input", what, i);
        cnt += s;
    }
    /* points 2 and 7 are misclassified from the start: success with the clean input */
    for (int i = 2; i <= 7; i += 5)
        AL_EXPECT(succ[i] == 1 && memcmp(xa + i * d, f->x + i * d, d * sizeof(float)) == 0,
                  "%s: clean-misclassified point %d must succeed unchanged", what, i);
    fprintf(stderr, "  %-30s success %2d / %d, max dist %.6g (eps %g)\n", what, cnt, NB, worst,
            (double)eps);
    *n_succ = cnt;
    return 0;
}

typedef al_status (*runner)(fixture *f, const void *spec, uint64_t seed, float *xa, uint8_t *s);
static al_status run_fab(fixture *f, const void *spec, uint64_t seed, float *xa, uint8_t *s) {
    return al_fab_run(&f->ctx, f->m, (const al_fab_spec *)spec, f->x, f->y, NB, seed, 3, xa, s);
}
static al_status run_square(fixture *f, const void *spec, uint64_t seed, float *xa, uint8_t *s) {
    return al_square_run(&f->ctx, f->m, (const al_square_spec *)spec, f->x, f->y, NB, seed, 3, xa,
                         s);
}

/* Run twice (determinism), check the contract, model state untouched. */
static int run_checked(fixture *f, const char *what, runner fn, const void *spec, al_norm norm,
                       float eps, double *dists, int *n_succ) {
    const size_t np = f->m->n_param_floats, nd = NB * f->d;
    float *sentinel = malloc(np * sizeof(float)), *params = malloc(np * sizeof(float));
    al_test_fill(sentinel, np, 77, -1.0f, 1.0f);
    memcpy(f->m->grads, sentinel, np * sizeof(float));
    memcpy(params, f->m->data, np * sizeof(float));
    float *xa = malloc(nd * sizeof(float)), *xb = malloc(nd * sizeof(float));
    uint8_t sa[NB], sb[NB];
    double t0 = al_now();
    AL_EXPECT(fn(f, spec, 11, xa, sa) == AL_OK, "%s: %s", what, al_errmsg());
    double t1 = al_now();
    AL_EXPECT(fn(f, spec, 11, xb, sb) == AL_OK, "%s: %s", what, al_errmsg());
    AL_EXPECT(memcmp(xa, xb, nd * sizeof(float)) == 0 && memcmp(sa, sb, NB) == 0,
              "%s: same seed, different result", what);
    AL_EXPECT(memcmp(f->m->grads, sentinel, np * sizeof(float)) == 0, "%s: touched model->grads",
              what);
    AL_EXPECT(memcmp(f->m->data, params, np * sizeof(float)) == 0, "%s: changed parameters", what);
    int rc = check_contract(f, what, norm, eps, xa, sa, dists, n_succ);
    fprintf(stderr, "  %-30s %.2f s per run\n", what, t1 - t0);
    free(sentinel);
    free(params);
    free(xa);
    free(xb);
    return rc;
}

/* ---------------------------------------------------------------- FAB */

static int case_fab_invariants(void) {
    int bad = 0;
    for (int mi = 0; mi < 2 && !bad; mi++) {
        fixture f;
        al_model *m = mi == 0 ? tiny_cnn(10, 1, 28) : tiny_cnn(7, 3, 16);
        if (fixture_init(&f, m, (uint64_t)mi, mi + 1)) return 1;
        double dists[NB];
        int ns;
        for (int ni = 0; ni < 2 && !bad; ni++) {
            al_norm norm = ni == 0 ? AL_LINF : AL_L2;
            float eps = norm == AL_LINF ? 0.02f : 0.3f;
            char what[96];
            /* FAB-T, AutoAttack settings but fewer iterations and targets (CI time) */
            al_fab_spec s = al_fab_spec_default(norm, eps);
            s.n_iter = 15;
            s.n_target_classes = 3;
            snprintf(what, sizeof what, "fab-t %s m%d", ni ? "L2" : "Linf", mi);
            bad |= run_checked(&f, what, run_fab, &s, norm, eps, dists, &ns);
            int n_t = ns;
            /* untargeted with 2 restarts (random start at eps/2 on the second) */
            s.targeted = 0;
            s.n_restarts = 2;
            snprintf(what, sizeof what, "fab %s m%d (2 restarts)", ni ? "L2" : "Linf", mi);
            bad |= run_checked(&f, what, run_fab, &s, norm, eps, dists, &ns);
            /* a big eps: every point falls (a random CNN is far from robust) */
            s.eps = norm == AL_LINF ? 0.3f : 6.0f;
            s.n_restarts = 1;
            snprintf(what, sizeof what, "fab %s m%d big eps", ni ? "L2" : "Linf", mi);
            bad |= run_checked(&f, what, run_fab, &s, norm, s.eps, dists, &ns);
            AL_EXPECT(ns == NB, "%s: %d / %d fooled at a large eps", what, ns, NB);
            AL_EXPECT(n_t > 2, "fab-t found nothing beyond the misclassified points");
        }
        /* eps = 0: nothing moves; only the misclassified points count */
        al_fab_spec z = al_fab_spec_default(AL_LINF, 0.0f);
        z.n_iter = 3;
        z.n_target_classes = 2;
        bad |= run_checked(&f, "fab-t eps 0", run_fab, &z, AL_LINF, 0.0f, dists, &ns);
        AL_EXPECT(ns == 2, "eps 0: %d successes, want the 2 misclassified points", ns);
        fixture_fini(&f);
    }
    return bad;
}

/* On a linear model, f_c(x) = z_c - z_y is exactly linear: the minimal distance to the pairwise
 * boundary y|c is |f_c| / ||w_c - w_y||_* (dual norm) when the box is not in the way. Pixels in
 * [0.25, 0.75] and small boundary distances keep the box inactive. */
static int case_fab_minimal(void) {
    fixture f;
    enum { K = 10 };
    if (fixture_init(&f, linear_model(K, 1, 28), 5, 1)) return 1;
    const size_t d = f.d;
    for (size_t i = 0; i < NB * d; i++) f.x[i] = 0.25f + 0.5f * f.x[i];
    AL_EXPECT(al_model_forward_eval(&f.ctx, f.m, f.x, NB, 0) == AL_OK, "%s", al_errmsg());
    float z[NB * K];
    memcpy(z, al_model_logits(f.m, 0), sizeof z);
    for (int i = 0; i < NB; i++) { /* all clean-correct here */
        int a = 0;
        for (int j = 1; j < K; j++)
            if (z[i * K + j] > z[i * K + a]) a = j;
        f.y[i] = a;
    }
    const int wi = al_model_find_param(f.m, "fc.weight");
    const float *W = al_param_data(f.m, wi);
    int bad = 0;
    for (int ni = 0; ni < 2; ni++) {
        al_norm norm = ni ? AL_L2 : AL_LINF;
        double lb[NB], lb_t1[NB];
        for (int i = 0; i < NB; i++) {
            int t1 = -1; /* FAB-T's first target: the largest non-true logit */
            for (int c = 0; c < K; c++)
                if (c != f.y[i] && (t1 < 0 || z[i * K + c] > z[i * K + t1])) t1 = c;
            lb[i] = INFINITY;
            for (int c = 0; c < K; c++) {
                if (c == f.y[i]) continue;
                double q = 0.0;
                for (size_t j = 0; j < d; j++) {
                    double g = (double)W[c * d + j] - (double)W[f.y[i] * d + j];
                    q = norm == AL_LINF ? q + fabs(g) : q + g * g;
                }
                if (norm == AL_L2) q = sqrt(q);
                double dc = ((double)z[i * K + f.y[i]] - z[i * K + c]) / q;
                lb[i] = fmin(lb[i], dc);
                if (c == t1) lb_t1[i] = dc;
            }
        }
        const float eps = norm == AL_LINF ? 0.1f : 2.0f;
        double dists[NB];
        int ns;
        for (int targeted = 1; targeted >= 0; targeted--) {
            al_fab_spec s = al_fab_spec_default(norm, eps);
            s.targeted = targeted;
            s.n_iter = 100;
            char what[64];
            snprintf(what, sizeof what, "fab%s linear %s", targeted ? "-t" : "",
                     ni ? "L2" : "Linf");
            /* the fixture's points 2 and 7 are correct here: run without check_contract's
             * misclassified-point rule */
            float *xa = malloc(NB * d * sizeof(float));
            uint8_t sa[NB];
            AL_EXPECT(al_fab_run(&f.ctx, f.m, &s, f.x, f.y, NB, 1, 1, xa, sa) == AL_OK, "%s",
                      al_errmsg());
            /* slack: the iterates are floats, so a boundary a few ulps (6e-8 each near 0.5) away
             * cannot be approached closer than that */
            const double slack = norm == AL_LINF ? 1e-6 : 1e-6 * sqrt((double)d);
            double worst_ratio = 0.0;
            ns = 0;
            for (int i = 0; i < NB; i++) {
                dists[i] = dist(norm, xa + i * d, f.x + i * d, d);
                if (!sa[i]) continue;
                ns++;
                /* a target's own boundary bounds FAB-T's first run; every boundary bounds both */
                double ref = targeted ? lb_t1[i] : lb[i];
                AL_EXPECT(dists[i] >= lb[i] * (1 - 1e-5), "%s: point %d at %.9g below the lower "
                          "bound %.9g", what, i, dists[i], lb[i]);
                /* FAB's extrapolation overshoots by eta = 1.05 and refines back towards x0 */
                AL_EXPECT(dists[i] <= 1.02 * ref + slack, "%s: point %d at %.9g, boundary at %.9g: "
                          "not minimal", what, i, dists[i], ref);
                AL_EXPECT(dists[i] < 0.5 * eps, "%s: point %d at %.6g (eps %g)", what, i, dists[i],
                          (double)eps);
                if (ref > 100 * slack) worst_ratio = fmax(worst_ratio, dists[i] / ref);
            }
            fprintf(stderr, "  %-24s %d/%d fooled, worst dist / boundary distance %.5f\n", what, ns,
                    NB, worst_ratio);
            AL_EXPECT(ns == NB, "%s: only %d / %d fooled", what, ns, NB);
            free(xa);
        }
    }
    fixture_fini(&f);
    return bad;
}

/* ---------------------------------------------------------------- Square */

static int case_square(void) {
    int bad = 0;
    for (int mi = 0; mi < 2 && !bad; mi++) {
        fixture f;
        al_model *m = mi == 0 ? tiny_cnn(10, 1, 28) : tiny_cnn(7, 3, 16);
        if (fixture_init(&f, m, 10 + (uint64_t)mi, mi + 1)) return 1;
        double dists[NB];
        for (int ni = 0; ni < 2; ni++) {
            al_norm norm = ni ? AL_L2 : AL_LINF;
            const float eps = norm == AL_LINF ? 0.05f : 1.0f;
            al_square_spec s = al_square_spec_default(norm, eps);
            s.n_queries = 150;
            char what[64];
            int ns, n0;
            snprintf(what, sizeof what, "square %s m%d q0", ni ? "L2" : "Linf", mi);
            al_square_spec s0 = s;
            s0.n_queries = 0; /* the initialisation alone */
            bad |= run_checked(&f, what, run_square, &s0, norm, eps, dists, &n0);
            snprintf(what, sizeof what, "square %s m%d", ni ? "L2" : "Linf", mi);
            bad |= run_checked(&f, what, run_square, &s, norm, eps, dists, &ns);
            /* the random search lowers the accuracy (clean: 10/12): at least 3 more points fall
             * than the 2 misclassified ones, and no fewer than from the initialisation alone */
            AL_EXPECT(ns >= n0 && ns >= 2 + 3, "%s: %d successes (init alone %d)", what, ns, n0);
            /* a different seed draws a different search */
            float *xa = malloc(NB * f.d * sizeof(float)), *xb = malloc(NB * f.d * sizeof(float));
            AL_EXPECT(run_square(&f, &s, 11, xa, NULL) == AL_OK, "%s", al_errmsg());
            AL_EXPECT(run_square(&f, &s, 12, xb, NULL) == AL_OK, "%s", al_errmsg());
            AL_EXPECT(memcmp(xa, xb, NB * f.d * sizeof(float)) != 0, "%s: seed has no effect",
                      what);
            free(xa);
            free(xb);
        }
        fixture_fini(&f);
    }
    return bad;
}

/* Square's L2 proposals sit on the eps sphere unless clamping cut them: the search uses its
 * budget. Restarts only add successes. */
static int case_square_l2_budget_and_restarts(void) {
    fixture f;
    if (fixture_init(&f, tiny_cnn(10, 1, 28), 20, 1)) return 1;
    al_square_spec s = al_square_spec_default(AL_L2, 0.5f);
    s.n_queries = 60;
    double dists[NB];
    int n1, n3;
    if (run_checked(&f, "square L2 1 restart", run_square, &s, AL_L2, s.eps, dists, &n1)) return 1;
    for (int i = 0; i < NB; i++)
        if (dists[i] > 0)
            AL_EXPECT(dists[i] > 0.3 * s.eps, "point %d: L2 perturbation %.4g far inside eps", i,
                      dists[i]);
    s.n_restarts = 3;
    if (run_checked(&f, "square L2 3 restarts", run_square, &s, AL_L2, s.eps, dists, &n3))
        return 1;
    AL_EXPECT(n3 >= n1, "restarts lost successes (%d -> %d)", n1, n3);
    fixture_fini(&f);
    return 0;
}

/* ---------------------------------------------------------------- errors */

static int case_bad_spec(void) {
    fixture f;
    if (fixture_init(&f, tiny_cnn(10, 1, 28), 30, 1)) return 1;
    float *xa = malloc(NB * f.d * sizeof(float));
    al_fab_spec fs = al_fab_spec_default(AL_LINF, 0.1f), fb;
    al_square_spec ss = al_square_spec_default(AL_LINF, 0.1f), sb;
#define BAD_FAB(expr, needle)                                                                     \
    do {                                                                                          \
        fb = fs;                                                                                  \
        expr;                                                                                     \
        AL_EXPECT(al_fab_run(&f.ctx, f.m, &fb, f.x, f.y, NB, 1, 1, xa, NULL) == AL_ERR_VALUE,    \
                  "fab: %s accepted", #expr);                                                     \
        AL_EXPECT(strstr(al_errmsg(), needle), "message '%s' lacks '%s'", al_errmsg(), needle);   \
    } while (0)
#define BAD_SQ(expr, needle)                                                                      \
    do {                                                                                          \
        sb = ss;                                                                                  \
        expr;                                                                                     \
        AL_EXPECT(al_square_run(&f.ctx, f.m, &sb, f.x, f.y, NB, 1, 1, xa, NULL) == AL_ERR_VALUE, \
                  "square: %s accepted", #expr);                                                  \
        AL_EXPECT(strstr(al_errmsg(), needle), "message '%s' lacks '%s'", al_errmsg(), needle);   \
    } while (0)
    BAD_FAB(fb.eps = NAN, "eps");
    BAD_FAB(fb.eps = -1.0f, "eps");
    BAD_FAB(fb.n_iter = -1, "n_iter");
    BAD_FAB(fb.n_restarts = 0, "n_restarts");
    BAD_FAB(fb.n_target_classes = 0, "n_target_classes");
    BAD_FAB(fb.alpha_max = 1.5f, "alpha_max");
    BAD_FAB(fb.eta = 0.0f, "eta");
    BAD_FAB(fb.beta = -0.1f, "beta");
    BAD_FAB(fb.norm = (al_norm)5, "norm");
    BAD_SQ(sb.eps = INFINITY, "eps");
    BAD_SQ(sb.n_queries = -1, "n_queries");
    BAD_SQ(sb.p_init = 0.0f, "p_init");
    BAD_SQ(sb.n_restarts = 0, "n_restarts");
    BAD_SQ(sb.norm = (al_norm)5, "norm");
#undef BAD_FAB
#undef BAD_SQ
    AL_EXPECT(al_fab_run(&f.ctx, f.m, &fs, f.x, f.y, NB + 1, 1, 1, xa, NULL) == AL_ERR_VALUE,
              "fab: n > max_batch accepted");
    AL_EXPECT(al_square_run(&f.ctx, f.m, &ss, f.x, f.y, NB, 1, 1, f.x, NULL) == AL_ERR_VALUE,
              "square: aliasing accepted");
    f.y[4] = 10;
    AL_EXPECT(al_fab_run(&f.ctx, f.m, &fs, f.x, f.y, NB, 1, 1, xa, NULL) == AL_ERR_VALUE &&
                  strstr(al_errmsg(), "index 4"),
              "fab: label 10 accepted (%s)", al_errmsg());
    AL_EXPECT(al_square_run(&f.ctx, f.m, &ss, f.x, f.y, NB, 1, 1, xa, NULL) == AL_ERR_VALUE &&
                  strstr(al_errmsg(), "index 4"),
              "square: label 10 accepted (%s)", al_errmsg());
    free(xa);
    fixture_fini(&f);
    return 0;
}

int main(int argc, char **argv) {
    static const al_case cases[] = {
        {"projection", case_projection},
        {"fab_invariants", case_fab_invariants},
        {"fab_minimal", case_fab_minimal},
        {"square", case_square},
        {"square_l2_budget_and_restarts", case_square_l2_budget_and_restarts},
        {"bad_spec", case_bad_spec},
    };
    return al_run_cases(cases, (int)AL_ARRAY_LEN(cases), argc, argv);
}
