/* test_dfa.c: Dynamic Feature Aggregation (methods.md §1): the head operators
 * (core/ops/dfa_ops.c), the pivot loss and mixup helpers (losses/dfa.c), the archs
 * (core/models/dfa_models.c) and the method step (core/methods/dfa.c).
 * Oracles (style rule 21):
 *   (b) the float CPU loss / ops against 4-point central finite differences of independent
 *       double implementations written here (the DFA target held fixed: it is detached);
 *       the whole step's parameter gradient against a central difference of the objective
 *       (recomputed here from fresh forwards + the double loss) along the gradient direction;
 *   (c) invariants: unit embeddings, |W z| in [0, 1], orthonormal frozen rows, Beta moments and
 *       Kolmogorov-Smirnov distances against closed-form CDFs, permutations, reproducibility;
 *   PyTorch: the step's loss and every parameter gradient of dfa-wrn-10-2 against a float64
 *       autograd twin of the official Wide_ResNet_orthognal + dynamic_aggregate (a script
 *       generated at test time; skipped when python3-torch is missing);
 *   (a) CUDA vs CPU: `test_dfa cuda` (registered as test_dfa_cuda; skipped without a GPU).
 * Tolerances: float outputs of double math are off by one final rounding (rtol ~ eps_f32);
 * FD error of the 4-point stencil is O(h^4) << that. Model-level float32 comparisons use
 * c * eps_f32 * sqrt(reduction) per layer compounded over the depth (see each check). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/config.h"
#include "core/ctx.h"
#include "core/methods/method.h"
#include "core/model.h"
#include "core/ops/dfa_ops.h"
#include "core/rng.h"
#include "harness/check.h"
#include "losses/dfa.h"
#include "losses/loss.h"

#define OK(call) AL_TEST_OK(call)

static al_ctx cpu;

static double *dalloc(size_t n) {
    double *p = calloc(n ? n : 1, sizeof(double));
    AL_ASSERT(p, "out of memory");
    return p;
}
static float *falloc(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    AL_ASSERT(p, "out of memory");
    return p;
}
static void to_d(const float *x, size_t n, double *out) {
    for (size_t i = 0; i < n; i++) out[i] = x[i];
}
static void labels(int32_t *y, int n, int k, uint64_t id) {
    for (int i = 0; i < n; i++)
        y[i] = (int32_t)(al_rng_u32(5, al_stream(AL_STREAM_TEST, id), (uint64_t)i) % (uint32_t)k);
}
/* Rows of unit L2 norm (what the loss sees in training). */
static void unit_rows(float *e, int n, int d, uint64_t id) {
    al_test_fill(e, (size_t)n * d, id, -1.0f, 1.0f);
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < d; j++) s += (double)e[(size_t)i * d + j] * e[(size_t)i * d + j];
        for (int j = 0; j < d; j++) e[(size_t)i * d + j] = (float)(e[(size_t)i * d + j] / sqrt(s));
    }
}

/* ---------------------------------------------------------------- double references */

/* The DFA objective written the official way (models.py dynamic_aggregate + mixup_criterion):
 * probabilities by softmax, CE = -log p; the target t (n, d) is a constant (detached). */
static double dfa_ref(const double *em, const double *ea, const double *eb, const double *w,
                      double lam, const int32_t *ya, const int32_t *yb, const double *t, int n,
                      int d, int k, double *parts) {
    double cls = 0, mse = 0, s[64], p[64];
    AL_ASSERT(k <= 64, "k");
    for (int i = 0; i < n; i++) {
        const size_t o = (size_t)i * d;
        double mx = -INFINITY, z = 0;
        for (int c = 0; c < k; c++) {
            double u = 0, v = 0;
            for (int j = 0; j < d; j++) {
                u += w[(size_t)c * d + j] * (lam * ea[o + j] + (1 - lam) * eb[o + j]);
                v += w[(size_t)c * d + j] * em[o + j];
            }
            s[c] = fabs(u) + fabs(v);
            mx = s[c] > mx ? s[c] : mx;
        }
        for (int c = 0; c < k; c++) z += (p[c] = exp(s[c] - mx));
        for (int c = 0; c < k; c++) p[c] /= z;
        cls += -lam * log(p[ya[i]]) - (1 - lam) * log(p[yb[i]]);
        for (int j = 0; j < d; j++) mse += (em[o + j] - t[o + j]) * (em[o + j] - t[o + j]);
    }
    if (parts) {
        parts[0] = cls / n;
        parts[1] = mse / ((double)n * d);
    }
    return cls / n + mse / ((double)n * d);
}

/* t = lam e_a + (1 - lam) e_b + noise_std n_ij, the draws al_dfa_loss makes. */
static void dfa_target(const double *ea, const double *eb, double lam, float noise_std,
                       uint64_t seed, uint64_t stream, int n, int d, double *t) {
    for (size_t e = 0; e < (size_t)n * d; e++) {
        const double nz = noise_std != 0.0f
                              ? (double)noise_std * al_rng_normal(seed, stream, AL_DFA_NOISE_BASE + e)
                              : 0.0;
        t[e] = lam * ea[e] + (1 - lam) * eb[e] + nz;
    }
}

typedef struct loss_fd {
    const double *w, *t;
    double lam;
    const int32_t *ya, *yb;
    int n, d, k;
} loss_fd;
static double loss_fd_fn(const double *x, void *user) {
    const loss_fd *c = user;
    const size_t nd = (size_t)c->n * c->d;
    return dfa_ref(x, x + nd, x + 2 * nd, c->w, c->lam, c->ya, c->yb, c->t, c->n, c->d, c->k, NULL);
}

/* ---------------------------------------------------------------- head operators */

typedef struct l2n_fd {
    const double *dy;
    int n, d;
} l2n_fd;
/* sum_ij dy_ij y_ij(x), y = x / max(||x||, eps): its gradient is the backward of dy. */
static double l2n_fd_fn(const double *x, void *user) {
    const l2n_fd *c = user;
    double tot = 0;
    for (int i = 0; i < c->n; i++) {
        double s = 0;
        for (int j = 0; j < c->d; j++) s += x[(size_t)i * c->d + j] * x[(size_t)i * c->d + j];
        const double den = fmax(sqrt(s), AL_L2N_EPS);
        for (int j = 0; j < c->d; j++) tot += c->dy[(size_t)i * c->d + j] * x[(size_t)i * c->d + j] / den;
    }
    return tot;
}

static int ops_one(int n, int d, uint64_t id) {
    fprintf(stderr, "  l2normalize n=%d d=%d\n", n, d);
    const size_t nd = (size_t)n * d;
    float *x = falloc(nd), *y = falloc(nd), *r = falloc(n), *dy = falloc(nd), *dx = falloc(nd);
    double *xd = dalloc(nd), *dyd = dalloc(nd), *g = dalloc(nd), *yref = dalloc(nd);
    al_test_fill(x, nd, id, -2.0f, 2.0f);
    al_test_fill(dy, nd, id + 1, -1.0f, 1.0f);
    OK(al_l2normalize_forward(&cpu, n, d, x, y, r));
    int bad = 0;
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < d; j++) s += (double)x[(size_t)i * d + j] * x[(size_t)i * d + j];
        for (int j = 0; j < d; j++) yref[(size_t)i * d + j] = x[(size_t)i * d + j] / sqrt(s);
        float yn = 0;
        for (int j = 0; j < d; j++) yn += y[(size_t)i * d + j] * y[(size_t)i * d + j];
        /* unit rows: d float squares summed, each rounded: |1 - ||y||^2| <= (d + 2) eps */
        if (!(fabs(yn - 1.0) <= (d + 2) * AL_F32_EPS)) {
            fprintf(stderr, "  row %d: ||y||^2 = %.9g\n", i, (double)yn);
            bad = 1;
        }
    }
    /* double math rounded once: within half an ulp of the double reference */
    bad |= al_check_close_fd("l2normalize y vs double", y, yref, nd, 0, AL_F32_EPS);
    OK(al_l2normalize_backward(&cpu, n, d, y, r, dy, dx, 0));
    to_d(x, nd, xd);
    to_d(dy, nd, dyd);
    l2n_fd c = {dyd, n, d};
    al_fd_grad(l2n_fd_fn, &c, xd, nd, 1e-3, g);
    /* dx = (dy - y (y.dy)) / r in double from the float y (one rounding each: eps relative
     * per term, d terms in the dot): al_tol_f32(d) relative to the row scale |dy| / r */
    bad |= al_check_close_fd("l2normalize dx vs FD", dx, g, nd, al_tol_f32(d) / 1.0, al_tol_f32(d));
    /* '+=' mode adds exactly the '=' result (in double, rounded once) */
    float *acc = falloc(nd);
    for (size_t e = 0; e < nd; e++) acc[e] = 0.5f;
    OK(al_l2normalize_backward(&cpu, n, d, y, r, dy, acc, 1));
    double *accref = dalloc(nd);
    for (size_t e = 0; e < nd; e++) accref[e] = 0.5 + (double)dx[e];
    bad |= al_check_close_fd("l2normalize dx +=", acc, accref, nd, 2 * AL_F32_EPS, AL_F32_EPS);
    free(x), free(y), free(r), free(dy), free(dx), free(xd), free(dyd), free(g), free(yref);
    free(acc), free(accref);
    return bad;
}

static int case_ops(void) {
    int bad = 0;
    bad |= ops_one(1, 1, 10);  /* batch 1, D = 1: y = sign(x), dx = 0 */
    bad |= ops_one(1, 640, 11); /* the WRN-28-10 embedding */
    bad |= ops_one(7, 33, 12);
    bad |= ops_one(65, 24, 13); /* the OpenMP branch (n >= 64) */
    /* a zero row: the norm is clamped to eps, y = 0, dx = dy / eps (F.normalize's autograd) */
    {
        float x[3] = {0, 0, 0}, y[3], r, dy[3] = {1e-13f, -2e-13f, 0}, dx[3];
        OK(al_l2normalize_forward(&cpu, 1, 3, x, y, &r));
        AL_EXPECT(r == 0 && y[0] == 0 && y[1] == 0 && y[2] == 0, "zero row: r %g y %g", r, y[0]);
        OK(al_l2normalize_backward(&cpu, 1, 3, y, &r, dy, dx, 0));
        const double ref[3] = {1e-13f / 1e-12, -2e-13f / 1e-12, 0};
        bad |= al_check_close_fd("l2normalize zero row dx", dx, ref, 3, 0, AL_F32_EPS);
    }
    /* abs: exact; sign(0) = 0; NaN propagates (torch.abs / sgn) */
    {
        float x[6] = {-2.5f, 0.0f, -0.0f, 3.0f, NAN, -INFINITY}, y[6], dy[6] = {1, 2, 3, 4, 5, 6},
              dx[6];
        OK(al_abs_forward(&cpu, 6, x, y));
        const float yr[6] = {2.5f, 0, 0, 3.0f, NAN, INFINITY};
        bad |= al_check_close("abs y", y, yr, 6, 0, 0);
        OK(al_abs_backward(&cpu, 6, x, dy, dx, 0));
        const float dr[6] = {-1, 0, 0, 4, NAN, -6};
        bad |= al_check_close("abs dx", dx, dr, 6, 0, 0);
        OK(al_abs_backward(&cpu, 6, x, dy, dx, 1));
        const float dr2[6] = {-2, 0, 0, 8, NAN, -12};
        bad |= al_check_close("abs dx +=", dx, dr2, 6, 0, 0);
    }
    return bad;
}

/* ---------------------------------------------------------------- the pivot loss */

static int loss_one(int n, int d, int k, float lam, float noise_std, int same_labels, uint64_t id) {
    fprintf(stderr, "  dfa loss n=%d d=%d k=%d lam=%g noise=%g same_labels=%d\n", n, d, k,
            (double)lam, (double)noise_std, same_labels);
    const size_t nd = (size_t)n * d, nk = (size_t)n * k;
    float *em = falloc(nd), *ea = falloc(nd), *eb = falloc(nd), *w = falloc((size_t)k * d);
    float *gm = falloc(nd), *ga = falloc(nd), *gb = falloc(nd), *lg = falloc(nk);
    int32_t *ya = calloc(n, sizeof *ya), *yb = calloc(n, sizeof *yb);
    unit_rows(em, n, d, id);
    unit_rows(ea, n, d, id + 1);
    unit_rows(eb, n, d, id + 2);
    al_test_fill(w, (size_t)k * d, id + 3, -0.5f, 0.5f);
    labels(ya, n, k, id + 4);
    labels(yb, n, k, id + 5);
    if (same_labels) memcpy(yb, ya, n * sizeof *ya);
    const uint64_t seed = 77, stream = al_stream(AL_STREAM_METHOD, id);
    double loss = 0, parts[2];
    OK(al_dfa_loss(&cpu, n, d, k, em, ea, eb, w, lam, ya, yb, noise_std, seed, stream, &loss, parts,
                   lg, gm, ga, gb));

    double *x = dalloc(3 * nd), *g = dalloc(3 * nd), *wd = dalloc((size_t)k * d), *t = dalloc(nd);
    to_d(em, nd, x);
    to_d(ea, nd, x + nd);
    to_d(eb, nd, x + 2 * nd);
    to_d(w, (size_t)k * d, wd);
    dfa_target(x + nd, x + 2 * nd, lam, noise_std, seed, stream, n, d, t);
    double pref[2];
    const double ref = dfa_ref(x, x + nd, x + 2 * nd, wd, lam, ya, yb, t, n, d, k, pref);
    int bad = 0;
    /* both in double from the same float inputs: only the summation order differs */
    bad |= al_check_close_d("dfa loss value", &loss, &ref, 1, 0, 1e-12);
    bad |= al_check_close_d("dfa loss parts", parts, pref, 2, 1e-15, 1e-12);
    /* logits |W p| + |W e_mix|: double rounded once */
    double *lref = dalloc(nk);
    double min_kink = INFINITY;
    for (int i = 0; i < n; i++)
        for (int c = 0; c < k; c++) {
            double u = 0, v = 0;
            for (int j = 0; j < d; j++) {
                const size_t o = (size_t)i * d + j;
                u += wd[(size_t)c * d + j] * (lam * x[nd + o] + (1.0 - lam) * x[2 * nd + o]);
                v += wd[(size_t)c * d + j] * x[o];
            }
            lref[(size_t)i * k + c] = fabs(u) + fabs(v);
            min_kink = fmin(min_kink, fmin(fabs(u), fabs(v)));
        }
    bad |= al_check_close_fd("dfa logits", lg, lref, nk, 0, AL_F32_EPS);
    /* FD: a step of 2h in one coordinate moves u, v by <= 2h max|W| = h; stay off the |.|
     * kinks (skip points within eps of kinks, style rule 21) */
    const double h = 1e-4;
    AL_EXPECT(min_kink > 4 * h, "inputs too close to a kink of |.| (min |u|,|v| = %g): change id",
              min_kink);
    loss_fd c = {wd, t, lam, ya, yb, n, d, k};
    al_fd_grad(loss_fd_fn, &c, x, 3 * nd, h, g);
    float *fg = falloc(3 * nd);
    memcpy(fg, gm, nd * sizeof(float));
    memcpy(fg + nd, ga, nd * sizeof(float));
    memcpy(fg + 2 * nd, gb, nd * sizeof(float));
    /* each entry is a K-term double sum rounded once (rtol eps) plus the FD error: O(h^4) from
     * the stencil and 1e-16 |L| / h from rounding (< 1e-11): atol al_tol_f32(k) / n scales
     * with an entry's natural size |W| / n */
    bad |= al_check_close_fd("dfa d(e_mix, e_a, e_b) vs FD", fg, g, 3 * nd, al_tol_f32(k) / n,
                             al_tol_f32(k));
    /* the target is detached: e_a, e_b gradients are exactly lam : (1 - lam) of one vector */
    for (size_t e = 0; e < nd && lam > 0 && lam < 1; e++) {
        const double ratio_ref = (double)lam / (1.0 - lam);
        if (fabs(gb[e]) > 1e-6 && fabs(ga[e] / gb[e] - ratio_ref) > 4 * AL_F32_EPS * (1 + ratio_ref)) {
            fprintf(stderr, "  de_a / de_b at %zu = %.9g, expected lam/(1-lam) = %.9g\n", e,
                    (double)(ga[e] / gb[e]), ratio_ref);
            bad = 1;
            break;
        }
    }
    /* optional outputs: NULL gradients leave the value unchanged */
    double loss2 = 0;
    OK(al_dfa_loss(&cpu, n, d, k, em, ea, eb, w, lam, ya, yb, noise_std, seed, stream, &loss2, NULL,
                   NULL, NULL, NULL, NULL));
    AL_EXPECT(loss2 == loss, "loss without outputs %.17g != %.17g", loss2, loss);
    free(em), free(ea), free(eb), free(w), free(gm), free(ga), free(gb), free(lg), free(ya);
    free(yb), free(x), free(g), free(wd), free(t), free(lref), free(fg);
    return bad;
}

static int case_loss_fd(void) {
    int bad = 0;
    bad |= loss_one(1, 13, 10, 0.3f, 0.05f, 0, 100); /* batch 1 */
    bad |= loss_one(5, 37, 10, 0.7f, 0.05f, 0, 110);
    bad |= loss_one(3, 64, 7, 0.0f, 0.0f, 0, 120);  /* lam = 0: e_a gets nothing */
    bad |= loss_one(4, 20, 3, 1.0f, 0.05f, 0, 130); /* lam = 1 */
    bad |= loss_one(6, 33, 10, 0.45f, 0.05f, 1, 140); /* y_a == y_b */
    /* bad labels name the array and index */
    {
        float e[4] = {1, 0, 0, 1}, w[4] = {1, 0, 0, 1};
        int32_t ya[2] = {0, 1}, yb[2] = {1, 2};
        double l;
        al_status st = al_dfa_loss(&cpu, 2, 2, 2, e, e, e, w, 0.5f, ya, yb, 0, 1, 1, &l, NULL, NULL,
                                   NULL, NULL, NULL);
        AL_EXPECT(st == AL_ERR_VALUE && strstr(al_errmsg(), "y_b label 2 at index 1"), "got %s: %s",
                  al_status_str(st), al_errmsg());
        st = al_dfa_loss(&cpu, 2, 2, 2, e, e, e, w, 1.5f, ya, ya, 0, 1, 1, &l, NULL, NULL, NULL,
                         NULL, NULL);
        AL_EXPECT(st == AL_ERR_VALUE, "lam 1.5 accepted");
        al_clear_error();
    }
    return bad;
}

/* ---------------------------------------------------------------- Beta, permutations, mixup */

static int cmp_d(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
/* Closed-form Beta(a, a) CDFs: a = 1/2 arcsine, 1 uniform, 2: 3x^2 - 2x^3. */
static double beta_cdf(double a, double x) {
    if (a == 0.5) return 2.0 / 3.14159265358979323846 * asin(sqrt(x));
    if (a == 1.0) return x;
    return 3 * x * x - 2 * x * x * x;
}

static int case_beta(void) {
    const int N = 20000;
    double *s = dalloc(N);
    int bad = 0;
    /* KS distance against the exact CDF: the 0.1% critical value is 1.95 / sqrt(N) */
    const double alphas_ks[3] = {0.5, 1.0, 2.0};
    for (int a = 0; a < 3; a++) {
        for (int i = 0; i < N; i++)
            s[i] = al_beta_sample(3, al_stream(AL_STREAM_METHOD, (uint64_t)i), AL_MIX_WORDS(a),
                                  alphas_ks[a]);
        qsort(s, N, sizeof *s, cmp_d);
        double dmax = 0;
        for (int i = 0; i < N; i++) {
            const double f = beta_cdf(alphas_ks[a], s[i]);
            dmax = fmax(dmax, fmax(fabs(f - (double)i / N), fabs(f - (double)(i + 1) / N)));
        }
        fprintf(stderr, "  Beta(%g, %g): KS distance %.4f (0.1%% critical %.4f)\n", alphas_ks[a],
                alphas_ks[a], dmax, 1.95 / sqrt(N));
        if (!(dmax < 1.95 / sqrt(N)) || s[0] < 0 || s[N - 1] > 1) bad = 1;
    }
    /* moments for shapes without a simple CDF: mean 1/2, variance 1/(4(2a + 1)); mean within
     * 5 standard errors, variance within 10% */
    const double alphas_m[4] = {0.01, 0.2, 5.0, 100.0};
    for (int a = 0; a < 4; a++) {
        double m = 0, v = 0;
        for (int i = 0; i < N; i++) {
            s[i] = al_beta_sample(4, al_stream(AL_STREAM_METHOD, (uint64_t)i), AL_MIX_WORDS(7),
                                  alphas_m[a]);
            if (!(s[i] >= 0 && s[i] <= 1)) {
                fprintf(stderr, "  Beta(%g): draw %d = %g outside [0, 1]\n", alphas_m[a], i, s[i]);
                bad = 1;
                break;
            }
            m += s[i];
        }
        m /= N;
        for (int i = 0; i < N; i++) v += (s[i] - m) * (s[i] - m);
        v /= N - 1;
        const double vr = 1.0 / (4 * (2 * alphas_m[a] + 1));
        fprintf(stderr, "  Beta(%g, %g): mean %.4f (0.5), var %.5f (%.5f)\n", alphas_m[a],
                alphas_m[a], m, v, vr);
        if (!(fabs(m - 0.5) < 5 * sqrt(vr / N)) || !(fabs(v - vr) < 0.1 * vr)) bad = 1;
    }
    /* a pure function of (seed, stream, word0) */
    const uint64_t st = al_stream(AL_STREAM_METHOD, 12);
    AL_EXPECT(al_beta_sample(9, st, 0, 1.0) == al_beta_sample(9, st, 0, 1.0), "not reproducible");
    AL_EXPECT(al_beta_sample(9, st, 0, 1.0) != al_beta_sample(9, st, AL_MIX_WORDS(2), 1.0),
              "sequences 0 and 2 coincide");
    free(s);
    return bad;
}

static int case_perm(void) {
    int32_t idx[128];
    const int sizes[4] = {1, 2, 7, 128};
    for (int t = 0; t < 4; t++) {
        al_philox_perm(1, al_stream(AL_STREAM_METHOD, 3), AL_MIX_WORDS(1), sizes[t], idx);
        int seen[128] = {0};
        for (int i = 0; i < sizes[t]; i++) {
            AL_EXPECT(idx[i] >= 0 && idx[i] < sizes[t] && !seen[idx[i]], "n=%d: not a permutation",
                      sizes[t]);
            seen[idx[i]] = 1;
        }
    }
    /* uniformity: where element 0 lands for n = 5, over 50000 streams; chi-square with 4
     * degrees of freedom, 0.1% critical value 18.47 */
    const int N = 50000;
    double cnt[5] = {0};
    for (int s = 0; s < N; s++) {
        al_philox_perm(2, al_stream(AL_STREAM_METHOD, (uint64_t)s), AL_MIX_WORDS(1), 5, idx);
        for (int i = 0; i < 5; i++)
            if (idx[i] == 0) cnt[i]++;
    }
    double chi = 0;
    for (int i = 0; i < 5; i++) chi += (cnt[i] - N / 5.0) * (cnt[i] - N / 5.0) / (N / 5.0);
    fprintf(stderr, "  perm n=5: position of 0 chi^2 = %.2f (0.1%% critical 18.47)\n", chi);
    AL_EXPECT(chi < 18.47, "permutation not uniform: chi^2 %.2f", chi);
    return 0;
}

static int case_mixup(void) {
    const int n = 5;
    const size_t d = 11;
    float *x = falloc(n * d), *xb = falloc(n * d), *xm = falloc(n * d);
    int32_t y[5], yb[5], idx[5];
    al_test_fill(x, n * d, 300, 0, 1);
    labels(y, n, 10, 301);
    al_philox_perm(1, 2, 0, n, idx);
    const float lam = 0.3125f;
    OK(al_mixup_pairs(&cpu, n, d, lam, x, y, idx, xb, xm, yb));
    for (int i = 0; i < n; i++) {
        AL_EXPECT(yb[i] == y[idx[i]], "y_b[%d]", i);
        for (size_t j = 0; j < d; j++) {
            const float a = x[i * d + j], b = x[(size_t)idx[i] * d + j];
            AL_EXPECT(xb[i * d + j] == b, "x_b[%d][%zu]", i, j);
            /* the shared element rule, float arithmetic: bitwise */
            AL_EXPECT(xm[i * d + j] == lam * a + (1.0f - lam) * b, "x_mix[%d][%zu]", i, j);
        }
    }
    free(x), free(xb), free(xm);
    return 0;
}

/* ---------------------------------------------------------------- architectures */

static int case_arch(void) {
    al_model *m = NULL;
    int bad = 0;
    /* dfa-wrn-16-2: names in the official state_dict order, conv biases, frozen head */
    OK(al_model_create("dfa-wrn-16-2", 10, 3, 32, &m));
    static const char *first[] = {
        "conv1.weight",           "conv1.bias",                  "layer1.0.bn1.weight",
        "layer1.0.bn1.bias",      "layer1.0.bn1.running_mean",   "layer1.0.bn1.running_var",
        "layer1.0.conv1.weight",  "layer1.0.conv1.bias",         "layer1.0.bn2.weight",
        "layer1.0.bn2.bias",      "layer1.0.bn2.running_mean",   "layer1.0.bn2.running_var",
        "layer1.0.conv2.weight",  "layer1.0.conv2.bias",         "layer1.0.shortcut.0.weight",
        "layer1.0.shortcut.0.bias", "layer1.1.bn1.weight"};
    for (size_t i = 0; i < AL_ARRAY_LEN(first); i++)
        AL_EXPECT(!strcmp(m->params[i].name, first[i]), "param %zu is %s, expected %s", i,
                  m->params[i].name, first[i]);
    /* layer1.1 (16W -> 16W, stride 1) has no shortcut conv; layer2.0 does (stride 2) */
    AL_EXPECT(al_model_find_param(m, "layer1.1.shortcut.0.weight") < 0, "identity shortcut");
    int sc = al_model_find_param(m, "layer2.0.shortcut.0.weight");
    AL_EXPECT(sc >= 0 && m->params[sc].shape[0] == 64 && m->params[sc].shape[1] == 32 &&
                  m->params[sc].shape[2] == 1,
              "layer2.0 shortcut shape");
    /* conv2 carries the stride (wide_basic), conv1 keeps the resolution */
    const char *tail[] = {"bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var",
                          "linear.weight"};
    for (int i = 0; i < 5; i++) {
        const al_param *p = &m->params[m->n_params - 5 + i];
        AL_EXPECT(!strcmp(p->name, tail[i]) && !p->trainable && !p->decay,
                  "tail param %s trainable=%d", p->name, p->trainable);
    }
    AL_EXPECT(al_model_feature_dim(m) == 128 && m->bufs[m->out_buf].per_sample == 10, "dims");
    AL_EXPECT(al_model_dfa_head_param(m) == m->n_params - 1, "head not found");
    /* trainable floats: conv (out*in*k*k + out) and BN (2c) counted from the definition */
    {
        size_t want = 3 * 16 * 9 + 16;
        const int ch[4] = {16, 32, 64, 128};
        for (int g = 1; g <= 3; g++)
            for (int j = 0; j < 2; j++) {
                const int in = j == 0 ? ch[g - 1] : ch[g], out = ch[g];
                want += 2 * in + (size_t)out * in * 9 + out + 2 * out + (size_t)out * out * 9 + out;
                if (j == 0) want += (size_t)out * in + out;
            }
        AL_EXPECT(al_model_n_trainable(m) == want, "trainable floats %zu, expected %zu",
                  al_model_n_trainable(m), want);
    }
    /* forward invariants after init: rows of W orthonormal; z unit; logits = |W z| in [0, 1] */
    const int n = 3;
    OK(al_model_setup(&cpu, m, n, 1));
    OK(al_model_init_params(&cpu, m, 5));
    const int wp = al_model_dfa_head_param(m);
    const float *w = al_param_data(m, wp);
    const int K = 10, D = 128;
    for (int a = 0; a < K; a++)
        for (int b = 0; b < K; b++) {
            double dot = 0;
            for (int j = 0; j < D; j++) dot += (double)w[a * D + j] * w[b * D + j];
            /* Gram-Schmidt in double, rounded to float: D roundings of 2^-24 each */
            if (fabs(dot - (a == b)) > al_tol_f32(D)) {
                fprintf(stderr, "  W W^T [%d][%d] = %.9g\n", a, b, dot);
                bad = 1;
            }
        }
    float *x = falloc((size_t)n * 3 * 32 * 32);
    al_test_fill(x, (size_t)n * 3 * 32 * 32, 400, 0, 1);
    al_fwd_opts o = {0, 1, 1, 0, 0, NULL};
    OK(al_model_forward(&cpu, m, x, n, &o));
    const float *z = al_model_features(m, 0), *lg = al_model_logits(m, 0);
    /* the feature buffer is the normalize node's output; its input is the pooled feature */
    int pooled = -1;
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].out == m->feat_buf) pooled = m->nodes[i].in0;
    const float *f = al_model_buffer(m, 0, pooled);
    double *lref = dalloc((size_t)n * K);
    for (int i = 0; i < n; i++) {
        double s = 0;
        for (int j = 0; j < D; j++) s += (double)f[i * D + j] * f[i * D + j];
        for (int c = 0; c < K; c++) {
            double u = 0;
            for (int j = 0; j < D; j++) u += (double)w[c * D + j] * (f[i * D + j] / sqrt(s));
            lref[i * K + c] = fabs(u);
            if (!(lg[i * K + c] >= 0 && lg[i * K + c] <= 1 + 4 * AL_F32_EPS)) bad = 1;
        }
        double zn = 0;
        for (int j = 0; j < D; j++) zn += (double)z[i * D + j] * z[i * D + j];
        if (fabs(zn - 1) > al_tol_f32(D)) bad = 1;
    }
    /* float GEMM over D after a double normalisation: al_tol_f32(D) */
    bad |= al_check_close_fd("dfa-wrn logits = |W normalize(pool)|", lg, lref, (size_t)n * K,
                             al_tol_f32(D), al_tol_f32(D));
    al_model_destroy(&cpu, m);
    free(x), free(lref);

    /* the other archs and the name checks of the registry */
    OK(al_model_create("dfa-wrn-28-10", 10, 3, 32, &m));
    fprintf(stderr, "  dfa-wrn-28-10: %zu trainable floats (Wide_ResNet_orthognal 28-10)\n",
            al_model_n_trainable(m));
    AL_EXPECT(al_model_feature_dim(m) == 640 && al_model_dfa_head_param(m) >= 0, "wrn-28-10 head");
    al_model_destroy(&cpu, m);
    OK(al_model_create("dfa-smallcnn", 10, 1, 28, &m));
    AL_EXPECT(al_model_feature_dim(m) == 200 && al_model_dfa_head_param(m) >= 0, "smallcnn head");
    AL_EXPECT(al_model_find_param(m, "classifier.fc3.weight") < 0, "fc3 must be replaced");
    al_model_destroy(&cpu, m);
    OK(al_model_create("dfa-wrn-10-1", 10, 1, 28, &m)); /* 28x28: the whole 7x7 map pooled */
    AL_EXPECT(al_model_feature_dim(m) == 64, "dfa-wrn-10-1 at 28");
    al_model_destroy(&cpu, m);
    OK(al_model_create("smallcnn", 10, 1, 28, &m));
    AL_EXPECT(al_model_dfa_head_param(m) < 0, "smallcnn has no DFA head");
    al_model_destroy(&cpu, m);
    const char *badnames[3] = {"dfa-wrn-11-2", "dfa-wrn-28", "dfa-smallcnnx"};
    for (int i = 0; i < 3; i++) {
        al_status st = al_model_create(badnames[i], 10, 3, 32, &m);
        AL_EXPECT(st == AL_ERR_VALUE && m == NULL, "%s accepted", badnames[i]);
    }
    al_clear_error();
    return bad;
}

/* ---------------------------------------------------------------- the method step */

typedef struct io_bufs {
    al_step_io io;
    al_config cfg;
} io_bufs;

static void io_free(io_bufs *b) {
    al_step_io *io = &b->io;
    al_dev_free(io->ctx, io->xadv);
    for (int i = 0; i < 2; i++) {
        al_dev_free(io->ctx, io->xaux[i]);
        al_dev_free(io->ctx, io->yaux[i]);
    }
    for (int s = 0; s < AL_STEP_MAX_SLOTS; s++) {
        al_dev_free(io->ctx, io->dl[s]);
        al_dev_free(io->ctx, io->dfeat[s]);
    }
    for (int i = 0; i < 4; i++) al_dev_free(io->ctx, io->fbuf[i]);
}

/* The buffers core/train.c gives a step, for batch n of model m (set up with >= n). */
static al_status io_init(io_bufs *b, al_ctx *ctx, al_model *m, int n, const float *x,
                         const int32_t *y, uint64_t seed) {
    al_step_io *io = &b->io;
    memset(io, 0, sizeof *io);
    io->ctx = ctx;
    io->m = m;
    io->cfg = &b->cfg;
    io->k = m->num_classes;
    io->d = (size_t)m->in_c * m->in_h * m->in_w;
    io->n = n;
    io->seed = seed;
    const size_t B = (size_t)m->max_batch, fd = (size_t)al_model_feature_dim(m);
    const size_t wide = fd > (size_t)io->k ? fd : (size_t)io->k, xb = B * io->d * sizeof(float);
    AL_TRY(al_dev_alloc(ctx, (void **)&io->xadv, xb, "xadv"));
    for (int i = 0; i < 2; i++) {
        AL_TRY(al_dev_alloc(ctx, (void **)&io->xaux[i], xb, "xaux"));
        AL_TRY(al_dev_alloc(ctx, (void **)&io->yaux[i], B * sizeof(int32_t), "yaux"));
    }
    for (int s = 0; s < AL_STEP_MAX_SLOTS; s++) {
        AL_TRY(al_dev_alloc(ctx, (void **)&io->dl[s], B * io->k * sizeof(float), "dl"));
        AL_TRY(al_dev_alloc(ctx, (void **)&io->dfeat[s], B * fd * sizeof(float), "dfeat"));
    }
    for (int i = 0; i < 4; i++)
        AL_TRY(al_dev_alloc(ctx, (void **)&io->fbuf[i], B * wide * sizeof(float), "fbuf"));
    io->x = x;
    io->y = y;
    return AL_OK;
}

/* The DFA objective recomputed here: the step's draws, three fresh train-mode forwards, and
 * the double loss with the target `t` held fixed (t NULL: computed now from these forwards,
 * written to t_out). */
static double objective(al_step_io *io, const double *t, double *t_out) {
    al_model *m = io->m;
    const int n = io->n, D = al_model_feature_dim(m), K = io->k;
    const uint64_t stream = al_stream(AL_STREAM_METHOD, (uint64_t)io->step);
    const float lam = (float)al_beta_sample(io->seed, stream, AL_MIX_WORDS(0), io->cfg->dfa.alpha);
    int32_t idx[64], yb[64];
    AL_ASSERT(n <= 64, "n");
    al_philox_perm(io->seed, stream, AL_MIX_WORDS(1), n, idx);
    AL_ASSERT(al_mixup_pairs(io->ctx, n, io->d, lam, io->x, io->y, idx, io->xaux[0], io->xaux[1],
                             yb) == AL_OK,
              "mixup");
    const float *xs[3] = {io->xaux[1], io->x, io->xaux[0]};
    double *e = dalloc(3 * (size_t)n * D), *w = dalloc((size_t)K * D);
    for (int k = 0; k < 3; k++) {
        al_fwd_opts o = al_step_train_opts(io, k, k);
        AL_ASSERT(al_model_forward(io->ctx, m, xs[k], n, &o) == AL_OK, "forward");
        to_d(al_model_features(m, k), (size_t)n * D, e + (size_t)k * n * D);
    }
    to_d(al_param_data(m, al_model_dfa_head_param(m)), (size_t)K * D, w);
    const size_t nd = (size_t)n * D;
    if (!t) {
        dfa_target(e + nd, e + 2 * nd, lam, (float)io->cfg->dfa.noise, io->seed, stream, n, D, t_out);
        t = t_out;
    }
    const double L = dfa_ref(e, e + nd, e + 2 * nd, w, lam, io->y, yb, t, n, D, K, NULL);
    free(e), free(w);
    return L;
}

static int case_step(void) {
    /* dfa-wrn-10-1 (BN in train mode: batch statistics, so the objective is a deterministic
     * function of the parameters) on 28x28 single-channel inputs, batch 6 */
    const int n = 6;
    al_model *m = NULL;
    OK(al_model_create("dfa-wrn-10-1", 10, 1, 28, &m));
    OK(al_model_setup(&cpu, m, n, 3));
    OK(al_model_init_params(&cpu, m, 11));
    float *x = falloc((size_t)n * 784);
    int32_t y[6];
    al_test_fill(x, (size_t)n * 784, 500, 0, 1);
    labels(y, n, 10, 501);
    io_bufs b;
    al_config_defaults(&b.cfg);
    b.cfg.train.method = AL_METHOD_DFA;
    OK(io_init(&b, &cpu, m, n, x, y, 1234));
    al_step_io *io = &b.io;
    io->step = 17;
    const al_method_def *def;
    OK(al_method_lookup(AL_METHOD_DFA, &def));
    AL_EXPECT(def->n_slots == 3 && !strcmp(def->name, "dfa"), "dfa def");
    OK(def->setup(io));
    int bad = 0;

    /* 1. the step's loss equals the objective recomputed independently */
    int bn0 = -1;
    for (int i = 0; i < m->n_nodes && bn0 < 0; i++)
        if (m->nodes[i].kind == AL_NODE_BN) bn0 = i;
    const int64_t tracked0 = m->nodes[bn0].bn_tracked[0];
    double loss = 0;
    int nc = 0;
    OK(def->step(io, &loss, &nc));
    AL_EXPECT(m->nodes[bn0].bn_tracked[0] == tracked0 + 3, "3 BN updates per step (got %lld)",
              (long long)(m->nodes[bn0].bn_tracked[0] - tracked0));
    const size_t P = m->n_param_floats;
    float *g = falloc(P), *theta = falloc(P);
    memcpy(g, m->grads, P * sizeof(float));
    memcpy(theta, m->data, P * sizeof(float));
    const int D = al_model_feature_dim(m);
    double *t = dalloc((size_t)n * D);
    const double L0 = objective(io, NULL, t);
    fprintf(stderr, "  step loss %.9g, recomputed %.9g, %d/%d correct\n", loss, L0, nc, n);
    /* same float forwards, double loss in a different order */
    bad |= al_check_close_d("dfa step loss vs recomputed", &loss, &L0, 1, 0, 1e-12);

    /* 2. the gradient: frozen parameters get none; along v = g/|g| the central difference of
     * the objective (target fixed) equals |g| */
    double gn = 0;
    for (int i = 0; i < m->n_params; i++) {
        const al_param *p = &m->params[i];
        for (size_t j = 0; j < p->n_elems; j++) {
            const double gv = g[p->offset + j];
            if (!p->trainable && gv != 0) {
                fprintf(stderr, "  frozen %s has gradient %g\n", p->name, gv);
                bad = 1;
                break;
            }
            if (p->trainable) gn += gv * gv;
        }
    }
    gn = sqrt(gn);
    /* float forwards: the objective carries ~1e-6 relative noise; h = 1e-2 along a unit
     * vector keeps that at ~1e-4 of |g| while the O(h^2) curvature term stays below 1% */
    const double hs[2] = {1e-2, 5e-3};
    double fd[2];
    for (int r = 0; r < 2; r++) {
        double f[2];
        for (int sgn = 0; sgn < 2; sgn++) {
            const double h = sgn ? -hs[r] : hs[r];
            for (int i = 0; i < m->n_params; i++) {
                const al_param *p = &m->params[i];
                if (!p->trainable) continue;
                for (size_t j = 0; j < p->n_elems; j++)
                    m->data[p->offset + j] = (float)(theta[p->offset + j] + h * g[p->offset + j] / gn);
            }
            f[sgn] = objective(io, t, NULL);
        }
        fd[r] = (f[0] - f[1]) / (2 * hs[r]);
    }
    memcpy(m->data, theta, P * sizeof(float));
    /* Richardson: the O(h^2) terms of the two steps cancel */
    const double fd_r = (4 * fd[1] - fd[0]) / 3;
    fprintf(stderr, "  |g| = %.6g, FD along g/|g|: h=1e-2 %.6g, h=5e-3 %.6g, Richardson %.6g\n", gn,
            fd[0], fd[1], fd_r);
    if (!(fabs(fd_r - gn) <= 0.02 * gn)) {
        fprintf(stderr, "  FAIL: directional derivative %.6g vs |g| %.6g\n", fd_r, gn);
        bad = 1;
    }

    /* 3. reproducible: the same step index draws the same lam, permutation and noise */
    double loss2 = 0;
    OK(def->step(io, &loss2, &nc));
    AL_EXPECT(loss2 == loss, "step not reproducible: %.17g vs %.17g", loss2, loss);
    AL_EXPECT(!memcmp(g, m->grads, P * sizeof(float)), "gradients not reproducible");
    io->step = 18;
    OK(def->step(io, &loss2, &nc));
    AL_EXPECT(loss2 != loss, "step 18 drew the same as step 17");

    /* 4. setup refuses a model without the head */
    al_model *plain = NULL;
    OK(al_model_create("smallcnn", 10, 1, 28, &plain));
    OK(al_model_setup(&cpu, plain, n, 3));
    al_step_io io2 = *io;
    io2.m = plain;
    io2.state = NULL;
    al_status st = def->setup(&io2);
    AL_EXPECT(st == AL_ERR_CONFIG && strstr(al_errmsg(), "DFA arch"), "smallcnn accepted: %s",
              al_errmsg());
    al_clear_error();
    def->teardown(&io2);
    al_model_destroy(&cpu, plain);

    def->teardown(io);
    io_free(&b);
    al_model_destroy(&cpu, m);
    free(x), free(g), free(theta), free(t);
    return bad;
}

/* ---------------------------------------------------------------- PyTorch twin */

/* A float64 twin of the official Wide_ResNet_orthognal and dynamic_aggregate, written for
 * this test from the description in methods.md §1 (pre-activation wide_basic with biased
 * convs, stride on conv2, 1x1 biased shortcut on the raw input, no final BN, normalise, |W z|).
 * Reads /manifest (name shape... per line), /params.bin (float32, manifest order),
 * /batch.bin (x, y, idx, lam, noise) and writes the loss and every trainable gradient. */
static const char *TORCH_TWIN =
    "import sys, numpy as np, torch, torch.nn as nn, torch.nn.functional as F\n"
    "d = sys.argv[1]; depth, width, K, n, D = map(int, sys.argv[2:7])\n"
    "mu = torch.tensor([0.4914, 0.4822, 0.4465], dtype=torch.float64).view(3, 1, 1)\n"
    "sd = torch.tensor([0.2023, 0.1994, 0.2010], dtype=torch.float64).view(3, 1, 1)\n"
    "class Block(nn.Module):\n"
    "    def __init__(s, cin, cout, stride):\n"
    "        super().__init__()\n"
    "        s.bn1 = nn.BatchNorm2d(cin); s.conv1 = nn.Conv2d(cin, cout, 3, padding=1)\n"
    "        s.bn2 = nn.BatchNorm2d(cout); s.conv2 = nn.Conv2d(cout, cout, 3, stride, 1)\n"
    "        s.shortcut = nn.Sequential()\n"
    "        if stride != 1 or cin != cout: s.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride))\n"
    "    def forward(s, x):\n"
    "        h = s.conv2(F.relu(s.bn2(s.conv1(F.relu(s.bn1(x))))))\n"
    "        return h + s.shortcut(x)\n"
    "class Net(nn.Module):\n"
    "    def __init__(s):\n"
    "        super().__init__(); nb = (depth - 4) // 6; ch = [16, 16 * width, 32 * width, 64 * width]\n"
    "        s.conv1 = nn.Conv2d(3, 16, 3, padding=1); cin = 16\n"
    "        for g in range(1, 4):\n"
    "            L = []\n"
    "            for j in range(nb):\n"
    "                L.append(Block(cin, ch[g], 2 if (j == 0 and g > 1) else 1)); cin = ch[g]\n"
    "            setattr(s, 'layer%d' % g, nn.Sequential(*L))\n"
    "        s.bn1 = nn.BatchNorm2d(ch[3]); s.linear = nn.Linear(ch[3], K, bias=False)\n"
    "        s.linear.weight.requires_grad = False\n"
    "    def emb(s, x):\n"
    "        h = s.layer3(s.layer2(s.layer1(s.conv1((x - mu) / sd))))\n"
    "        return F.normalize(F.avg_pool2d(h, 8).flatten(1), p=2, dim=1)\n"
    "net = Net().double().train()\n"
    "raw = np.fromfile(d + '/params.bin', dtype=np.float32); off = 0; sdict = {}\n"
    "names = []\n"
    "for line in open(d + '/manifest'):\n"
    "    f = line.split(); shape = [int(v) for v in f[1:]]; cnt = int(np.prod(shape))\n"
    "    sdict[f[0]] = torch.from_numpy(raw[off:off + cnt].astype(np.float64)).view(shape); off += cnt\n"
    "    names.append(f[0])\n"
    "miss, unexp = net.load_state_dict(sdict, strict=False)\n"
    "assert not unexp and all(k.endswith('num_batches_tracked') for k in miss), (miss, unexp)\n"
    "b = np.fromfile(d + '/batch.bin', dtype=np.float32)\n"
    "x = torch.from_numpy(b[:n * 3072].astype(np.float64)).view(n, 3, 32, 32); o = n * 3072\n"
    "y = torch.from_numpy(b[o:o + n].astype(np.int64)); o += n\n"
    "idx = torch.from_numpy(b[o:o + n].astype(np.int64)); o += n\n"
    "lam = float(b[o]); o += 1\n"
    "noise = torch.from_numpy(b[o:o + n * D].astype(np.float64)).view(n, D)\n"
    "xa, xb = x, x[idx]\n"
    "em = net.emb(lam * xa + (1 - lam) * xb); ea = net.emb(xa); eb = net.emb(xb)\n"
    "mz = lam * ea + (1 - lam) * eb\n"
    "lmix = F.mse_loss(em, (mz + noise).detach())\n"
    "out = torch.abs(net.linear(mz)) + torch.abs(net.linear(em))\n"
    "loss = lam * F.cross_entropy(out, y) + (1 - lam) * F.cross_entropy(out, y[idx]) + lmix\n"
    "loss.backward()\n"
    "res = [np.array([loss.item()])]\n"
    "params = dict(net.named_parameters())\n"
    "for nm in names:\n"
    "    p = params.get(nm)\n"
    "    if p is not None and p.grad is not None: res.append(p.grad.numpy().ravel())\n"
    "np.concatenate(res).astype(np.float64).tofile(d + '/out.bin')\n";

static int case_torch(void) {
    const int depth = 10, width = 2, K = 10, n = 4;
    al_model *m = NULL;
    OK(al_model_create("dfa-wrn-10-2", K, 3, 32, &m));
    const float mean[3] = {0.4914f, 0.4822f, 0.4465f}, std[3] = {0.2023f, 0.1994f, 0.2010f};
    al_model_set_normalization(m, mean, std);
    OK(al_model_setup(&cpu, m, n, 3));
    OK(al_model_init_params(&cpu, m, 21));
    const int D = al_model_feature_dim(m);
    float *x = falloc((size_t)n * 3072);
    int32_t y[4];
    al_test_fill(x, (size_t)n * 3072, 600, 0, 1);
    labels(y, n, K, 601);
    io_bufs b;
    al_config_defaults(&b.cfg);
    b.cfg.train.method = AL_METHOD_DFA;
    OK(io_init(&b, &cpu, m, n, x, y, 99));
    al_step_io *io = &b.io;
    io->step = 4;
    const al_method_def *def;
    OK(al_method_lookup(AL_METHOD_DFA, &def));
    OK(def->setup(io));
    double loss = 0;
    int nc;
    OK(def->step(io, &loss, &nc));

    /* the step's draws, for the twin */
    const uint64_t stream = al_stream(AL_STREAM_METHOD, 4);
    const float lam = (float)al_beta_sample(99, stream, AL_MIX_WORDS(0), b.cfg.dfa.alpha);
    int32_t idx[4];
    al_philox_perm(99, stream, AL_MIX_WORDS(1), n, idx);
    char dir[512], path[600], cmd[1400];
    snprintf(dir, sizeof dir, "%s/dfa_torch", al_test_tmpdir());
    snprintf(cmd, sizeof cmd, "mkdir -p %s", dir);
    AL_EXPECT(system(cmd) == 0, "mkdir %s", dir);
    snprintf(path, sizeof path, "%s/twin.py", dir);
    FILE *f = fopen(path, "w");
    AL_EXPECT(f, "cannot write %s", path);
    fputs(TORCH_TWIN, f);
    fclose(f);
    snprintf(path, sizeof path, "%s/manifest", dir);
    FILE *fm = fopen(path, "w");
    snprintf(path, sizeof path, "%s/params.bin", dir);
    FILE *fp = fopen(path, "wb");
    AL_EXPECT(fm && fp, "cannot write the manifest");
    size_t n_trainable = 0;
    for (int i = 0; i < m->n_params; i++) {
        const al_param *p = &m->params[i];
        fprintf(fm, "%s", p->name);
        for (int dd = 0; dd < p->ndim; dd++) fprintf(fm, " %d", p->shape[dd]);
        fputc('\n', fm);
        fwrite(m->data + p->offset, sizeof(float), p->n_elems, fp);
        if (p->trainable) n_trainable += p->n_elems;
    }
    fclose(fm);
    fclose(fp);
    snprintf(path, sizeof path, "%s/batch.bin", dir);
    FILE *fb = fopen(path, "wb");
    AL_EXPECT(fb, "cannot write %s", path);
    fwrite(x, sizeof(float), (size_t)n * 3072, fb);
    for (int i = 0; i < n; i++) {
        const float v = (float)y[i];
        fwrite(&v, sizeof v, 1, fb);
    }
    for (int i = 0; i < n; i++) {
        const float v = (float)idx[i];
        fwrite(&v, sizeof v, 1, fb);
    }
    fwrite(&lam, sizeof lam, 1, fb);
    for (size_t e = 0; e < (size_t)n * D; e++) {
        /* the same number the loss adds, rounded to float (noise_std * N(0,1) is double there:
         * a 1e-9 absolute difference in the target, far below the tolerances) */
        const float v = (float)(b.cfg.dfa.noise * al_rng_normal(99, stream, AL_DFA_NOISE_BASE + e));
        fwrite(&v, sizeof v, 1, fb);
    }
    fclose(fb);
    snprintf(cmd, sizeof cmd, "%s %s/twin.py %s %d %d %d %d %d", al_test_python(), dir, dir, depth,
             width, K, n, D);
    const int rc = system(cmd);
    if (rc != 0) {
        fprintf(stderr, "  python3-torch twin failed (rc %d): %s -- skipped\n", rc, cmd);
        def->teardown(io);
        io_free(&b);
        al_model_destroy(&cpu, m);
        free(x);
        return AL_SKIP_CODE;
    }
    double *ref = dalloc(1 + n_trainable);
    snprintf(path, sizeof path, "%s/out.bin", dir);
    FILE *fo = fopen(path, "rb");
    AL_EXPECT(fo && fread(ref, sizeof(double), 1 + n_trainable, fo) == 1 + n_trainable,
              "%s: short read", path);
    fclose(fo);
    int bad = 0;
    /* float32 WRN forward vs float64: ~eps_f32 sqrt(288) per conv, over 3 forwards of 10
     * layers: 1e-4 relative covers it (measured ~1e-6) */
    bad |= al_check_close_d("dfa step loss vs torch", &loss, ref, 1, 0, 1e-4);
    double gmax = 0;
    for (size_t j = 1; j <= n_trainable; j++) gmax = fmax(gmax, fabs(ref[j]));
    size_t off = 1;
    for (int i = 0; i < m->n_params; i++) {
        const al_param *p = &m->params[i];
        if (!p->trainable) continue;
        double mx = 0;
        for (size_t j = 0; j < p->n_elems; j++) mx = fmax(mx, fabs(ref[off + j]));
        /* gradients of a float32 net: relative to the tensor's largest entry, 1e-3 (the
         * backward adds the forward's error once more through BN's batch statistics). A conv
         * bias followed by train-mode BN has gradient exactly 0 (BN removes per-channel
         * shifts); float32 leaves the residue of a cancelling sum over N*H*W = 4096 terms,
         * bounded by al_tol_f32(4096) times the gradient scale. */
        char what[160];
        snprintf(what, sizeof what, "grad %s", p->name);
        bad |= al_check_close_fd(what, m->grads + p->offset, ref + off, p->n_elems,
                                 1e-3 * mx + al_tol_f32(4096) * gmax, 1e-3);
        off += p->n_elems;
    }
    def->teardown(io);
    io_free(&b);
    al_model_destroy(&cpu, m);
    free(x), free(ref);
    return bad;
}

/* ---------------------------------------------------------------- CUDA twins */

#ifdef AL_HAVE_CUDA
static al_ctx gpu;

static void *dup_dev(const void *h, size_t n_bytes) {
    void *p = NULL;
    AL_ASSERT(al_dev_alloc(&gpu, &p, n_bytes ? n_bytes : 4, "test") == AL_OK, "%s", al_errmsg());
    if (h) AL_ASSERT(al_copy_to_dev(&gpu, p, h, n_bytes) == AL_OK, "%s", al_errmsg());
    else AL_ASSERT(al_memset_dev(&gpu, p, 0xFF, n_bytes) == AL_OK, "%s", al_errmsg()); /* NaN */
    return p;
}
static float *back(const void *d, size_t n) {
    float *h = falloc(n);
    AL_ASSERT(al_copy_to_host(&gpu, h, d, n * sizeof(float)) == AL_OK, "%s", al_errmsg());
    return h;
}

static int cuda_loss_one(int n, int d, int k, float lam, uint64_t id) {
    fprintf(stderr, "  cuda dfa loss n=%d d=%d k=%d lam=%g\n", n, d, k, (double)lam);
    const size_t nd = (size_t)n * d, nk = (size_t)n * k;
    float *em = falloc(nd), *ea = falloc(nd), *eb = falloc(nd), *w = falloc((size_t)k * d);
    int32_t *ya = calloc(n, 4), *yb = calloc(n, 4);
    unit_rows(em, n, d, id);
    unit_rows(ea, n, d, id + 1);
    unit_rows(eb, n, d, id + 2);
    al_test_fill(w, (size_t)k * d, id + 3, -0.5f, 0.5f);
    labels(ya, n, k, id + 4);
    labels(yb, n, k, id + 5);
    float *gm = falloc(nd), *ga = falloc(nd), *gb = falloc(nd), *lg = falloc(nk);
    double lc, pc[2], lgpu, pg[2];
    const uint64_t stream = al_stream(AL_STREAM_METHOD, id);
    OK(al_dfa_loss_cpu(&cpu, n, d, k, em, ea, eb, w, lam, ya, yb, 0.05f, 3, stream, &lc, pc, lg, gm,
                       ga, gb));
    float *dem = dup_dev(em, nd * 4), *dea = dup_dev(ea, nd * 4), *deb = dup_dev(eb, nd * 4);
    float *dw = dup_dev(w, (size_t)k * d * 4);
    int32_t *dya = dup_dev(ya, n * 4), *dyb = dup_dev(yb, n * 4);
    float *dgm = dup_dev(NULL, nd * 4), *dga = dup_dev(NULL, nd * 4), *dgb = dup_dev(NULL, nd * 4);
    float *dlg = dup_dev(NULL, nk * 4);
    OK(al_dfa_loss(&gpu, n, d, k, dem, dea, deb, dw, lam, dya, dyb, 0.05f, 3, stream, &lgpu, pg, dlg,
                   dgm, dga, dgb));
    int bad = 0;
    /* double sums in another order (~(d + k) 2^-53 relative) and the normals' few-ulp
     * libm/CUDA difference (noise_std * 4 ulp_f32 per target entry, squared error linear in
     * it): the loss within 1e-9 relative, float outputs within 2 ulp */
    bad |= al_check_close_d("cuda dfa loss", &lgpu, &lc, 1, 1e-9, 1e-9);
    bad |= al_check_close_d("cuda dfa parts", pg, pc, 2, 1e-9, 1e-9);
    float *h;
    bad |= al_check_close("cuda dfa logits", h = back(dlg, nk), lg, nk, 0, 2 * AL_F32_EPS);
    free(h);
    /* de_mix carries the noise term: 2/(nd) * noise_std * 4 ulp of a normal */
    bad |= al_check_close("cuda dfa de_mix", h = back(dgm, nd), gm, nd,
                          2.0 / nd * 0.05 * 8 * AL_F32_EPS * 8, 2 * AL_F32_EPS);
    free(h);
    bad |= al_check_close("cuda dfa de_a", h = back(dga, nd), ga, nd, 1e-12, 2 * AL_F32_EPS);
    free(h);
    bad |= al_check_close("cuda dfa de_b", h = back(dgb, nd), gb, nd, 1e-12, 2 * AL_F32_EPS);
    free(h);
    void *ptrs[] = {dem, dea, deb, dw, dya, dyb, dgm, dga, dgb, dlg};
    for (size_t i = 0; i < AL_ARRAY_LEN(ptrs); i++) al_dev_free(&gpu, ptrs[i]);
    free(em), free(ea), free(eb), free(w), free(ya), free(yb), free(gm), free(ga), free(gb), free(lg);
    return bad;
}

static int case_cuda(void) {
    if (al_test_no_gpu()) return AL_SKIP_CODE;
    if (al_ctx_init(&gpu, AL_DEV_CUDA, 0, 0, 42) != AL_OK) {
        fprintf(stderr, "cuda ctx: %s\n", al_errmsg());
        return 1;
    }
    gpu.deterministic = 1;
    int bad = 0;
    /* every launch-config branch: batch 1, K < 32 and K > 32 (warp 0 strides), D not a
     * multiple of 32 or of the block, more classes than warps */
    bad |= cuda_loss_one(1, 13, 10, 0.3f, 700);
    bad |= cuda_loss_one(5, 640, 10, 0.7f, 710);
    bad |= cuda_loss_one(33, 257, 37, 0.5f, 720);
    bad |= cuda_loss_one(3, 100, 100, 1.0f, 730);
    /* bad labels: the shared final kernel checks both arrays and words it as the twin */
    {
        float e[6] = {1, 0, 0, 1, 0.6f, 0.8f}, w[4] = {1, 0, 0, 1};
        int32_t ya[3] = {0, 1, 0}, yb[3] = {1, 0, 2}, yab[3] = {0, -1, 5};
        float *de = dup_dev(e, sizeof e), *dw = dup_dev(w, sizeof w);
        int32_t *dya = dup_dev(ya, sizeof ya), *dyb = dup_dev(yb, sizeof yb);
        int32_t *dyab = dup_dev(yab, sizeof yab);
        double l;
        /* n = 2: both arrays valid over the rows read */
        al_status st = al_dfa_loss(&gpu, 2, 2, 2, de, de, de, dw, 0.5f, dya, dyb, 0, 1, 1, &l, NULL,
                                   NULL, NULL, NULL, NULL);
        AL_EXPECT(st == AL_OK && isfinite(l), "n = 2 valid rows: %s: %s", al_status_str(st),
                  al_errmsg());
        st = al_dfa_loss(&gpu, 3, 2, 2, de, de, de, dw, 0.5f, dya, dyb, 0, 1, 1, &l, NULL, NULL,
                         NULL, NULL, NULL);
        AL_EXPECT(st == AL_ERR_VALUE && strstr(al_errmsg(), "y_b label 2 at index 2"),
                  "cuda y_b: %s: %s", al_status_str(st), al_errmsg());
        /* y_a is reported before y_b, the first bad index of it */
        st = al_dfa_loss(&gpu, 3, 2, 2, de, de, de, dw, 0.5f, dyab, dyb, 0, 1, 1, &l, NULL, NULL,
                         NULL, NULL, NULL);
        AL_EXPECT(st == AL_ERR_VALUE && strstr(al_errmsg(), "y_a label -1 at index 1"),
                  "cuda y_a first: %s: %s", al_status_str(st), al_errmsg());
        al_clear_error();
        void *ptrs[] = {de, dw, dya, dyb, dyab};
        for (size_t i = 0; i < AL_ARRAY_LEN(ptrs); i++) al_dev_free(&gpu, ptrs[i]);
    }
    /* head ops and mixup */
    {
        const int n = 37, d = 130;
        const size_t nd = (size_t)n * d;
        float *x = falloc(nd), *dy = falloc(nd), *y = falloc(nd), *r = falloc(n), *dx = falloc(nd);
        al_test_fill(x, nd, 740, -2, 2);
        al_test_fill(dy, nd, 741, -1, 1);
        x[5] = 0.0f;
        OK(al_l2normalize_forward_cpu(&cpu, n, d, x, y, r));
        OK(al_l2normalize_backward_cpu(&cpu, n, d, y, r, dy, dx, 0));
        float *gx = dup_dev(x, nd * 4), *gy = dup_dev(NULL, nd * 4), *gr = dup_dev(NULL, n * 4);
        float *gdy = dup_dev(dy, nd * 4), *gdx = dup_dev(NULL, nd * 4);
        OK(al_l2normalize_forward(&gpu, n, d, gx, gy, gr));
        OK(al_l2normalize_backward(&gpu, n, d, gy, gr, gdy, gdx, 0));
        float *h;
        /* double norm in another order, one rounding: <= 1 ulp apart */
        bad |= al_check_close("cuda l2normalize y", h = back(gy, nd), y, nd, 0, 2 * AL_F32_EPS);
        free(h);
        bad |= al_check_close("cuda l2normalize norm", h = back(gr, n), r, n, 0, 2 * AL_F32_EPS);
        free(h);
        bad |= al_check_close("cuda l2normalize dx", h = back(gdx, nd), dx, nd, 1e-7, 4 * AL_F32_EPS);
        free(h);
        /* abs: bitwise */
        float *ay = falloc(nd), *adx = falloc(nd);
        OK(al_abs_forward_cpu(&cpu, nd, x, ay));
        OK(al_abs_backward_cpu(&cpu, nd, x, dy, adx, 0));
        OK(al_abs_forward(&gpu, nd, gx, gy));
        OK(al_abs_backward(&gpu, nd, gx, gdy, gdx, 0));
        bad |= al_check_close("cuda abs y", h = back(gy, nd), ay, nd, 0, 0);
        free(h);
        bad |= al_check_close("cuda abs dx", h = back(gdx, nd), adx, nd, 0, 0);
        free(h);
        /* mixup: the shared element rule, bitwise; labels gathered */
        int32_t yl[37], idx[37], yb[37];
        labels(yl, n, 10, 742);
        al_philox_perm(1, 1, 0, n, idx);
        float *xb = falloc(nd), *xm = falloc(nd);
        OK(al_mixup_pairs_cpu(&cpu, n, d, 0.37f, x, yl, idx, xb, xm, yb));
        int32_t *gyl = dup_dev(yl, n * 4), *gidx = dup_dev(idx, n * 4), *gyb = dup_dev(NULL, n * 4);
        float *gxb = dup_dev(NULL, nd * 4), *gxm = dup_dev(NULL, nd * 4);
        OK(al_mixup_pairs(&gpu, n, d, 0.37f, gx, gyl, gidx, gxb, gxm, gyb));
        bad |= al_check_close("cuda mixup x_b", h = back(gxb, nd), xb, nd, 0, 0);
        free(h);
        bad |= al_check_close("cuda mixup x_mix", h = back(gxm, nd), xm, nd, 0, 0);
        free(h);
        int32_t ybg[37];
        OK(al_copy_to_host(&gpu, ybg, gyb, sizeof ybg));
        AL_EXPECT(!memcmp(ybg, yb, sizeof yb), "cuda mixup y_b");
        void *ptrs[] = {gx, gy, gr, gdy, gdx, gyl, gidx, gyb, gxb, gxm};
        for (size_t i = 0; i < AL_ARRAY_LEN(ptrs); i++) al_dev_free(&gpu, ptrs[i]);
        free(x), free(dy), free(y), free(r), free(dx), free(ay), free(adx), free(xb), free(xm);
    }
    /* the whole step on dfa-smallcnn: GPU vs CPU loss and gradient (cuDNN/cuBLAS float32 vs
     * the CPU reference: 1e-4 relative, as test_cuda's model checks) */
    {
        const int n = 8;
        al_model *mc = NULL, *mg = NULL;
        OK(al_model_create("dfa-smallcnn", 10, 1, 28, &mc));
        OK(al_model_create("dfa-smallcnn", 10, 1, 28, &mg));
        OK(al_model_setup(&cpu, mc, n, 3));
        OK(al_model_setup(&gpu, mg, n, 3));
        OK(al_model_init_params(&cpu, mc, 8));
        OK(al_model_init_params(&gpu, mg, 8));
        float *x = falloc((size_t)n * 784);
        int32_t y[8];
        al_test_fill(x, (size_t)n * 784, 750, 0, 1);
        labels(y, n, 10, 751);
        float *gx = dup_dev(x, (size_t)n * 784 * 4);
        int32_t *gyl = dup_dev(y, sizeof y);
        io_bufs bc, bg;
        al_config_defaults(&bc.cfg);
        al_config_defaults(&bg.cfg);
        OK(io_init(&bc, &cpu, mc, n, x, y, 5));
        OK(io_init(&bg, &gpu, mg, n, gx, gyl, 5));
        bc.io.step = bg.io.step = 3;
        const al_method_def *def;
        OK(al_method_lookup(AL_METHOD_DFA, &def));
        OK(def->setup(&bc.io));
        OK(def->setup(&bg.io));
        double lc, lgpu;
        int ncc, ncg;
        OK(def->step(&bc.io, &lc, &ncc));
        OK(def->step(&bg.io, &lgpu, &ncg));
        bad |= al_check_close_d("cuda dfa step loss", &lgpu, &lc, 1, 0, 1e-4);
        float *h = back(mg->grads, mg->n_param_floats);
        double mx = 0;
        for (size_t e = 0; e < mc->n_param_floats; e++) mx = fmax(mx, fabs(mc->grads[e]));
        bad |= al_check_close("cuda dfa step grads", h, mc->grads, mc->n_param_floats, 1e-3 * mx,
                              1e-3);
        free(h);
        def->teardown(&bc.io);
        def->teardown(&bg.io);
        io_free(&bc);
        io_free(&bg);
        al_dev_free(&gpu, gx);
        al_dev_free(&gpu, gyl);
        al_model_destroy(&cpu, mc);
        al_model_destroy(&gpu, mg);
        free(x);
    }
    al_ctx_fini(&gpu);
    return bad;
}
#else
static int case_cuda(void) {
    printf("skipped: no GPU (built without CUDA)\n");
    return AL_SKIP_CODE;
}
#endif

int main(int argc, char **argv) {
    if (al_ctx_init(&cpu, AL_DEV_CPU, 0, 0, 42) != AL_OK) {
        fprintf(stderr, "ctx: %s\n", al_errmsg());
        return 1;
    }
    OK(al_ctx_reserve_scratch(&cpu, 1 << 20));
    static const al_case cpu_cases[] = {
        {"ops", case_ops},     {"loss_fd", case_loss_fd}, {"beta", case_beta},
        {"perm", case_perm},   {"mixup", case_mixup},     {"arch", case_arch},
        {"step", case_step},   {"torch", case_torch},
    };
    static const al_case cuda_cases[] = {{"cuda", case_cuda}};
    int rc;
    if (argc > 1 && !strcmp(argv[1], "cuda"))
        rc = al_run_cases(cuda_cases, 1, argc, argv);
    else
        rc = al_run_cases(cpu_cases, (int)AL_ARRAY_LEN(cpu_cases), argc, argv);
    al_ctx_fini(&cpu);
    return rc;
}
