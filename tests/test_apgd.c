/* test_apgd.c: losses/dlr.c and attacks/apgd.{h,c}.
 * Oracles: (b) the DLR gradient against central finite differences of an independent double
 * reference (full sort), skipping nothing because the test logits are spaced wider than the FD
 * stencil (no kinks crossed); the step-size schedule against the paper's formula
 * p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06) (n_iter = 100) and against an independent
 * simulation of the reference's counter loop (other n_iter), and against the checkpoints a real
 * run records; (c) invariants of every APGD variant (eps-ball, [0,1], success = a fresh forward
 * pass, failed points bit-identical to the clean input, determinism, model->grads untouched,
 * no allocation with a workspace); APGD at least as strong as PGD for the same gradient budget;
 * the gradient-masking checks on models built to mask (probability outputs with a zero input
 * gradient, dropout left on) and quiet on a plain SmallCNN; allocation failure reporting. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attacks/apgd.h"
#include "attacks/attack.h"
#include "attacks/autoattack.h"
#include "core/ctx.h"
#include "core/model.h"
#include "harness/attack_fixture.h"
#include "harness/check.h"
#include "losses/loss.h"

/* Under ASan (label asan), let the deliberately impossible allocation of case oom_and_bad_spec
 * return NULL as it does in a normal build instead of aborting the process; options given in
 * ASAN_OPTIONS still take precedence. */
const char *__asan_default_options(void);
const char *__asan_default_options(void) { return "allocator_may_return_null=1"; }

/* ---------------------------------------------------------------- DLR loss */

typedef struct dlr_fd_ctx {
    int k, y, t; /* t < 0: untargeted */
} dlr_fd_ctx;

static int cmp_desc(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Independent double reference: full sort of a copy, the formula of the paper. */
static double dlr_ref(const double *z, void *user) {
    const dlr_fd_ctx *c = user;
    double s[64];
    memcpy(s, z, (size_t)c->k * sizeof *s);
    qsort(s, (size_t)c->k, sizeof *s, cmp_desc);
    if (c->t >= 0) return -(z[c->y] - z[c->t]) / (s[0] - 0.5 * (s[2] + s[3]) + 1e-12);
    double other = -INFINITY;
    for (int j = 0; j < c->k; j++)
        if (j != c->y && z[j] > other) other = z[j];
    return -(z[c->y] - other) / (s[0] - s[2] + 1e-12);
}

static int case_dlr_fd(void) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 1) == AL_OK, "%s", al_errmsg());
    enum { N = 6, KK = 10 };
    float z[N * KK], per[N], dz[N * KK], dz_t[N * KK], per_t[N];
    /* distinct logits spaced >= 0.05 apart (a random permutation of a grid + jitter < 0.01), so
     * the FD stencil (h = 1e-3, +-2h) never reorders them */
    for (int i = 0; i < N; i++) {
        float jit[KK];
        al_test_fill(jit, KK, 100 + i, 0.0f, 0.01f);
        int perm[KK];
        for (int j = 0; j < KK; j++) perm[j] = j;
        for (int j = KK - 1; j > 0; j--) {
            int r = (int)(al_rng_u32(7, 1, (uint64_t)(i * KK + j)) % (uint32_t)(j + 1));
            int tmp = perm[j];
            perm[j] = perm[r];
            perm[r] = tmp;
        }
        for (int j = 0; j < KK; j++) z[i * KK + j] = -2.0f + 0.45f * (float)perm[j] + jit[j];
    }
    /* labels: argmax for some rows (correctly classified), other classes for the rest;
     * targets: never the label */
    int32_t y[N], t[N];
    for (int i = 0; i < N; i++) {
        int a = 0;
        for (int j = 1; j < KK; j++)
            if (z[i * KK + j] > z[i * KK + a]) a = j;
        y[i] = i % 2 ? a : (a + 3) % KK;
        t[i] = (y[i] + 1 + i) % KK;
    }
    double loss, loss_t;
    AL_EXPECT(al_dlr_loss(&ctx, N, KK, z, y, NULL, (float)N, &loss, per, dz) == AL_OK, "%s",
              al_errmsg());
    AL_EXPECT(al_dlr_loss(&ctx, N, KK, z, y, t, (float)N, &loss_t, per_t, dz_t) == AL_OK, "%s",
              al_errmsg());
    double sum = 0, sum_t = 0;
    for (int i = 0; i < N; i++) {
        for (int targeted = 0; targeted < 2; targeted++) {
            dlr_fd_ctx c = {KK, y[i], targeted ? t[i] : -1};
            double zd[KK], g[KK];
            for (int j = 0; j < KK; j++) zd[j] = z[i * KK + j];
            const double ref = dlr_ref(zd, &c);
            const float got = targeted ? per_t[i] : per[i];
            /* value: one float rounding of a double computation */
            AL_EXPECT(fabs(got - ref) <= 2 * AL_F32_EPS * fabs(ref) + 1e-30,
                      "row %d targeted %d: L %.9g, reference %.9g", i, targeted, got, ref);
            al_fd_grad(dlr_ref, &c, zd, KK, 1e-3, g);
            char what[64];
            snprintf(what, sizeof what, "DLR%s row %d dL/dz vs FD", targeted ? "-T" : "", i);
            /* weight = n: dlogits is the gradient of the per-row value itself. FD error of the
             * 4-point stencil on a rational function with |z| <= 3: ~h^4 * |f^(5)| << 1e-6 */
            if (al_check_close_fd(what, (targeted ? dz_t : dz) + i * KK, g, KK, 1e-6, 1e-5))
                return 1;
        }
        sum += per[i];
        sum_t += per_t[i];
    }
    AL_EXPECT(fabs(loss - sum) <= 1e-5 * fabs(sum) + 1e-6, "loss %.9g vs sum %.9g", loss, sum);
    AL_EXPECT(fabs(loss_t - sum_t) <= 1e-5 * fabs(sum_t) + 1e-6, "loss_t %.9g vs %.9g", loss_t,
              sum_t);
    /* invariance to a positive affine map of the logits (why DLR survives saturated softmax) */
    float z2[N * KK], per2[N];
    for (int i = 0; i < N * KK; i++) z2[i] = 1000.0f * z[i] + 77.0f;
    AL_EXPECT(al_dlr_loss(&ctx, N, KK, z2, y, NULL, 1.0f, &loss, per2, NULL) == AL_OK, "%s",
              al_errmsg());
    for (int i = 0; i < N; i++)
        AL_EXPECT(fabs(per2[i] - per[i]) <= 1e-5 * fabs(per[i]) + 1e-6, "row %d: %g vs %g", i,
                  per2[i], per[i]);
    /* weight 1 = gradient of the mean */
    float dz1[N * KK];
    AL_EXPECT(al_dlr_loss(&ctx, N, KK, z, y, NULL, 1.0f, &loss, NULL, dz1) == AL_OK, "%s",
              al_errmsg());
    for (int i = 0; i < N * KK; i++)
        AL_EXPECT(fabs(dz1[i] * N - dz[i]) <= 1e-6 * fabs(dz[i]) + 1e-9, "weight scaling at %d", i);
    /* errors: too few classes, labels / targets out of range */
    AL_EXPECT(al_dlr_loss(&ctx, N, 2, z, y, NULL, 1.0f, &loss, NULL, NULL) == AL_ERR_VALUE, "k=2");
    AL_EXPECT(al_dlr_loss(&ctx, N, 3, z, y, t, 1.0f, &loss, NULL, NULL) == AL_ERR_VALUE, "k=3 T");
    int32_t tb[N];
    memcpy(tb, t, sizeof tb);
    tb[4] = KK;
    AL_EXPECT(al_dlr_loss(&ctx, N, KK, z, y, tb, 1.0f, &loss, NULL, NULL) == AL_ERR_VALUE &&
                  strstr(al_errmsg(), "index 4"),
              "bad target: %s", al_errmsg());
    /* ties: a constant row gives L = 0 (numerator 0), finite gradient */
    float zc[KK];
    for (int j = 0; j < KK; j++) zc[j] = 0.1f;
    int32_t y0 = 0;
    float pc, dc[KK];
    AL_EXPECT(al_dlr_loss(&ctx, 1, KK, zc, &y0, NULL, 1.0f, &loss, &pc, dc) == AL_OK, "%s",
              al_errmsg());
    AL_EXPECT(pc == 0.0f, "constant row: L = %g", pc);
    for (int j = 0; j < KK; j++) AL_EXPECT(isfinite(dc[j]), "constant row: non-finite gradient");
    al_ctx_fini(&ctx);
    return 0;
}

/* ---------------------------------------------------------------- schedule */

/* The reference's loop, simulated independently: a counter that fires at k, k shrinking. */
static int simulate_checks(int n_iter, int *w, int cap) {
    int k = (int)(0.22 * n_iter), decr = (int)(0.03 * n_iter), kmin = (int)(0.06 * n_iter);
    if (k < 1) k = 1;
    if (decr < 1) decr = 1;
    if (kmin < 1) kmin = 1;
    int cnt = 0, counter = 0;
    for (int i = 0; i < n_iter; i++) {
        if (++counter == k) {
            if (cnt < cap) w[cnt] = i + 1;
            cnt++;
            k = k - decr > kmin ? k - decr : kmin;
            counter = 0;
        }
    }
    return cnt;
}

static int case_schedule(void) {
    /* the paper: p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06); checks
     * at ceil(p_j N) (in hundredths to stay exact) */
    int paper[32], n_paper = 0;
    {
        int p_prev = 0, p = 22;
        while (p <= 100) {
            paper[n_paper++] = p;
            int step = p - p_prev - 3 > 6 ? p - p_prev - 3 : 6;
            p_prev = p;
            p += step;
        }
    }
    int w[64];
    int n = al_apgd_checkpoints(100, w, 64);
    fprintf(stderr, "  n_iter 100 checkpoints:");
    for (int j = 0; j < n; j++) fprintf(stderr, " %d", w[j]);
    fprintf(stderr, "\n");
    static const int want100[] = {22, 41, 57, 70, 80, 87, 93, 99};
    AL_EXPECT(n == (int)AL_ARRAY_LEN(want100) && n == n_paper, "n_iter 100: %d checkpoints (paper %d)",
              n, n_paper);
    for (int j = 0; j < n; j++)
        AL_EXPECT(w[j] == want100[j] && w[j] == paper[j], "checkpoint %d: %d (paper %d)", j, w[j],
                  paper[j]);
    static const int iters[] = {1, 2, 5, 10, 20, 37, 50, 64, 101, 250, 1000};
    for (size_t q = 0; q < AL_ARRAY_LEN(iters); q++) {
        int a[512], b[512];
        int na = al_apgd_checkpoints(iters[q], a, 512), nb = simulate_checks(iters[q], b, 512);
        AL_EXPECT(na == nb, "n_iter %d: %d checkpoints, simulation %d", iters[q], na, nb);
        for (int j = 0; j < na && j < 512; j++)
            AL_EXPECT(a[j] == b[j], "n_iter %d checkpoint %d: %d vs %d", iters[q], j, a[j], b[j]);
    }
    return 0;
}

static int case_oscillation(void) {
    enum { NI = 100 };
    float h[NI];
    /* strictly increasing for the 22 steps of the first window (plus the wrap-around read of
     * hist[99] = 0 < hist[0]): 22 increases > 16.5 -> keep the step */
    memset(h, 0, sizeof h);
    for (int i = 0; i < 22; i++) h[i] = 1.0f + (float)i;
    AL_EXPECT(al_apgd_oscillation(h, NI, 21, 22, 0.75f) == 0, "increasing losses halved");
    /* flat: no increases -> halve */
    for (int i = 0; i < 22; i++) h[i] = 1.0f;
    AL_EXPECT(al_apgd_oscillation(h, NI, 21, 22, 0.75f) == 1, "flat losses kept");
    /* the wrap-around: hist[-1] reads hist[99] (0): a first loss of -1 is not an increase */
    for (int i = 0; i < 22; i++) h[i] = (i % 4 == 3) ? 0.0f : 1.0f + (float)i; /* 17 rises */
    int rises = 0;
    for (int c = 0; c < 22; c++) rises += h[21 - c] > (21 - c - 1 >= 0 ? h[21 - c - 1] : h[NI - 1]);
    AL_EXPECT(rises == 17, "test setup: %d rises", rises);
    AL_EXPECT(al_apgd_oscillation(h, NI, 21, 22, 0.75f) == 0, "17 of 22 rises > 16.5: keep");
    h[0] = -1.0f; /* now hist[0] > hist[-1] = 0 is false: 16 rises <= 16.5 -> halve */
    AL_EXPECT(al_apgd_oscillation(h, NI, 21, 22, 0.75f) == 1, "16 of 22 rises: halve");
    /* threshold equality: h = 8, rho 0.75 -> 6 rises halve, 7 keep */
    float g[NI];
    memset(g, 0, sizeof g);
    for (int i = 30; i < 38; i++) g[i] = (float)(i - 30 < 6 ? i : 0);
    g[29] = -1.0f;
    AL_EXPECT(al_apgd_oscillation(g, NI, 37, 8, 0.75f) == 1, "6 of 8 rises <= 6: halve");
    g[36] = 100.0f, g[37] = 200.0f;
    AL_EXPECT(al_apgd_oscillation(g, NI, 37, 8, 0.75f) == 0, "8 of 8: keep");
    return 0;
}

static int case_step_elem(void) {
    const float x0 = 0.5f, eps = 0.1f;
    /* first iteration (a = 1): exactly the projected sign step */
    AL_EXPECT(al_apgd_linf_elem(0.5f, 0.5f, x0, 3.0f, 0.2f, 1.0f, eps) == 0.6f, "a=1 step");
    AL_EXPECT(al_apgd_linf_elem(0.55f, 0.5f, x0, -1.0f, 0.01f, 1.0f, eps) == 0.55f - 0.01f,
              "a=1 small step");
    /* momentum: x + 0.75 (z - x) + 0.25 (x - x_prev), then projection */
    float got = al_apgd_linf_elem(0.52f, 0.50f, x0, 1.0f, 0.04f, 0.75f, eps);
    const float z = 0.52f + 0.04f;
    float want = 0.52f + (z - 0.52f) * 0.75f + (0.52f - 0.50f) * 0.25f;
    AL_EXPECT(got == want, "momentum %.9g want %.9g", got, want);
    AL_EXPECT(al_apgd_linf_elem(0.59f, 0.5f, x0, 1.0f, 0.2f, 0.75f, eps) == x0 + eps,
              "ball projection");
    AL_EXPECT(al_apgd_linf_elem(0.98f, 0.95f, 0.95f, 1.0f, 0.2f, 0.75f, eps) == 1.0f, "[0,1]");
    AL_EXPECT(al_apgd_linf_elem(0.5f, 0.5f, x0, NAN, 0.2f, 1.0f, eps) == 0.5f, "NaN gradient");
    AL_EXPECT(al_apgd_linf_elem(NAN, 0.5f, x0, 1.0f, 0.05f, 1.0f, eps) == 0.55f, "NaN x");
    /* L2 batch step: the result is inside the ball and [0,1] for any eta, NaN gradients move
     * nothing, and a zero gradient stays put at a = 1 */
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 1) == AL_OK, "%s", al_errmsg());
    enum { NP = 3, D = 29 };
    float xs0[NP * D], xa[NP * D], xp[NP * D], g[NP * D], tmp[NP * D], eta[NP] = {5.0f, 0.01f, 1.0f};
    al_test_fill(xs0, NP * D, 5, 0.0f, 1.0f);
    al_test_fill(g, NP * D, 6, -1.0f, 1.0f);
    for (int j = 0; j < D; j++) g[2 * D + j] = 0.0f;
    g[3] = NAN;
    memcpy(xa, xs0, sizeof xa);
    memcpy(xp, xs0, sizeof xp);
    for (int it = 0; it < 5; it++) {
        AL_EXPECT(al_apgd_step(&ctx, AL_L2, NP, D, xa, xp, xs0, g, eta, it ? 0.75f : 1.0f, 0.3f,
                               tmp) == AL_OK,
                  "%s", al_errmsg());
        for (int i = 0; i < NP; i++) {
            double s = 0;
            for (int j = 0; j < D; j++) {
                AL_EXPECT(xa[i * D + j] >= 0.0f && xa[i * D + j] <= 1.0f, "L2 step outside [0,1]");
                s += ((double)xa[i * D + j] - xs0[i * D + j]) * (xa[i * D + j] - xs0[i * D + j]);
            }
            AL_EXPECT(sqrt(s) <= 0.3 * (1 + 1e-6), "L2 step: point %d norm %.9g", i, sqrt(s));
        }
    }
    AL_EXPECT(xa[3] == xs0[3], "NaN gradient element moved");
    AL_EXPECT(memcmp(xa + 2 * D, xs0 + 2 * D, D * sizeof(float)) == 0, "zero gradient moved");
    AL_EXPECT(al_apgd_step(&ctx, (al_norm)5, NP, D, xa, xp, xs0, g, eta, 1, 0.3f, tmp) ==
                  AL_ERR_VALUE,
              "bad norm accepted");
    al_ctx_fini(&ctx);
    return 0;
}

/* ---------------------------------------------------------------- model fixture */

enum { NB = AL_FIX_NB, K = AL_FIX_K, IMG = AL_FIX_IMG };
static const size_t DX = AL_FIX_DX;

/* the shared seeded smallcnn (tests/harness/attack_fixture.h) */
typedef al_attack_fixture fixture;
static int fixture_init(fixture *f) { return al_attack_fixture_init(f, 1); }
static void fixture_fini(fixture *f) { al_attack_fixture_fini(f); }
static int check_ball(const char *what, al_norm norm, float eps, const float *x, const float *xa,
                      int n) {
    return al_check_ball(what, norm, eps, x, xa, n, DX);
}

/* success == a fresh forward's misclassification; failed points == clean; count matches. */
static int check_success(fixture *f, const char *what, const float *xa, const uint8_t *succ,
                         int n_succ) {
    AL_EXPECT(al_model_forward_eval(&f->ctx, f->m, xa, NB, 0) == AL_OK, "%s", al_errmsg());
    const float *z = al_model_logits(f->m, 0);
    int cnt = 0;
    for (int i = 0; i < NB; i++) {
        int a = 0;
        for (int j = 1; j < K; j++)
            if (z[i * K + j] > z[i * K + a]) a = j;
        int s = a != f->y[i];
        AL_EXPECT(s == succ[i], "%s: point %d success %d, fresh forward says %d", what, i, succ[i],
                  s);
        if (!s)
            AL_EXPECT(memcmp(xa + i * DX, f->x + i * DX, DX * sizeof(float)) == 0,
                      "%s: failed point %d is not the clean input", what, i);
        cnt += s;
    }
    AL_EXPECT(cnt == n_succ, "%s: n_success %d, counted %d", what, n_succ, cnt);
    /* points misclassified from the start are returned unchanged */
    AL_EXPECT(succ[3] && succ[7], "%s: initially misclassified points not reported", what);
    AL_EXPECT(!memcmp(xa + 3 * DX, f->x + 3 * DX, DX * sizeof(float)) &&
                  !memcmp(xa + 7 * DX, f->x + 7 * DX, DX * sizeof(float)),
              "%s: an initially misclassified point was attacked", what);
    fprintf(stderr, "  %-30s success %d / %d\n", what, cnt, NB);
    return 0;
}

static float g_xa[NB * IMG * IMG], g_xb[NB * IMG * IMG];
static uint8_t g_sa[NB], g_sb[NB];

static int case_invariants(void) {
    fixture f;
    if (fixture_init(&f)) return 1;
    static const struct {
        al_apgd_loss loss;
        al_norm norm;
        float eps;
    } v[] = {{AL_APGD_CE, AL_LINF, 0.01f},  {AL_APGD_DLR, AL_LINF, 0.01f},
             {AL_APGD_T, AL_LINF, 0.01f},   {AL_APGD_CE, AL_L2, 0.15f},
             {AL_APGD_DLR, AL_L2, 0.15f},   {AL_APGD_T, AL_L2, 0.15f}};
    for (size_t q = 0; q < AL_ARRAY_LEN(v); q++) {
        al_apgd_spec s = al_apgd_spec_default(v[q].loss, v[q].norm, v[q].eps);
        s.n_iter = 12;
        s.n_target_classes = 3;
        s.n_restarts = 2;
        al_apgd_stats st;
        int ns;
        char what[64];
        snprintf(what, sizeof what, "%s %s", al_apgd_loss_name(v[q].loss),
                 v[q].norm == AL_LINF ? "Linf" : "L2");
        AL_EXPECT(al_apgd_run(&f.ctx, f.m, &s, NULL, f.x, f.y, NB, 3, 4, g_xa, g_sa, &ns, &st) ==
                      AL_OK,
                  "%s: %s", what, al_errmsg());
        if (check_ball(what, s.norm, s.eps, f.x, g_xa, NB)) return 1;
        if (check_success(&f, what, g_xa, g_sa, ns)) return 1;
        AL_EXPECT(ns > 2 && ns < NB, "%s: %d successes (want some, not all)", what, ns);
        AL_EXPECT(st.n_zero_grad == 0, "%s: %d zero-gradient points on a plain model", what,
                  st.n_zero_grad);
        AL_EXPECT(st.n_runs >= 1 && st.n_runs <= (v[q].loss == AL_APGD_T ? 6 : 2), "%s: %d runs",
                  what, st.n_runs);
    }
    fixture_fini(&f);
    return 0;
}

/* The run's recorded checkpoints are the schedule's; restarts only add successes and keep the
 * first run's images; determinism; grads untouched; no allocation with a workspace. */
static int case_schedule_run_determinism(void) {
    fixture f;
    if (fixture_init(&f)) return 1;
    const size_t np = f.m->n_param_floats;
    float *sentinel = malloc(np * sizeof(float));
    al_test_fill(sentinel, np, 77, -1.0f, 1.0f);
    memcpy(f.m->grads, sentinel, np * sizeof(float));
    al_apgd_ws ws;
    AL_EXPECT(al_apgd_ws_init(&f.ctx, &ws, f.m, NB, 100) == AL_OK, "%s", al_errmsg());
    /* a tiny eps keeps points robust for the whole run, so every checkpoint has points */
    al_apgd_spec s = al_apgd_spec_default(AL_APGD_CE, AL_LINF, 0.002f);
    int n1, n3;
    uint64_t a0 = al_alloc_count();
    AL_EXPECT(al_apgd_run(&f.ctx, f.m, &s, &ws, f.x, f.y, NB, 9, 1, g_xa, g_sa, &n1, NULL) ==
                  AL_OK,
              "%s", al_errmsg());
    AL_EXPECT(al_alloc_count() == a0, "al_apgd_run with a workspace allocated");
    int w[16];
    int nw = al_apgd_checkpoints(100, w, 16);
    AL_EXPECT(ws.n_checks == nw, "run recorded %d checkpoints, schedule has %d", ws.n_checks, nw);
    int halved = 0;
    for (int j = 0; j < nw; j++) {
        AL_EXPECT(ws.check_iter[j] == w[j], "checkpoint %d at %d, schedule %d", j,
                  ws.check_iter[j], w[j]);
        halved += ws.check_halved[j];
    }
    fprintf(stderr, "  100 iterations: %d successes, %d step halvings\n", n1, halved);
    AL_EXPECT(halved > 0, "no point ever halved its step in 100 iterations");
    if (check_success(&f, "apgd-ce 100 it", g_xa, g_sa, n1)) return 1;
    AL_EXPECT(al_apgd_run(&f.ctx, f.m, &s, &ws, f.x, f.y, NB, 9, 1, g_xb, g_sb, &n3, NULL) ==
                  AL_OK,
              "%s", al_errmsg());
    AL_EXPECT(!memcmp(g_xa, g_xb, sizeof g_xa) && !memcmp(g_sa, g_sb, NB), "not deterministic");
    s.n_restarts = 3;
    AL_EXPECT(al_apgd_run(&f.ctx, f.m, &s, &ws, f.x, f.y, NB, 9, 1, g_xb, g_sb, &n3, NULL) ==
                  AL_OK,
              "%s", al_errmsg());
    for (int i = 0; i < NB; i++) {
        AL_EXPECT(!g_sa[i] || g_sb[i], "point %d lost its success with restarts", i);
        if (g_sa[i])
            AL_EXPECT(!memcmp(g_xa + i * DX, g_xb + i * DX, DX * sizeof(float)),
                      "point %d: the first run's image must be kept", i);
    }
    s.n_restarts = 1;
    AL_EXPECT(al_apgd_run(&f.ctx, f.m, &s, &ws, f.x, f.y, NB, 10, 1, g_xb, g_sb, &n3, NULL) ==
                  AL_OK,
              "%s", al_errmsg());
    AL_EXPECT(memcmp(g_xa, g_xb, sizeof g_xa) != 0 || n1 == 2, "another seed, same images");
    /* host reads per APGD iteration: the per-point losses and the prediction flags (the
     * schedule is decided on the host), nothing else: 50 more iterations, 100 more reads */
    {
        al_apgd_spec s2 = s;
        uint64_t r[2];
        for (int v = 0; v < 2; v++) {
            s2.n_iter = v == 0 ? 40 : 90;
            const uint64_t r0 = f.ctx.n_host_reads, d0 = f.ctx.n_dev_allocs;
            AL_EXPECT(al_apgd_run(&f.ctx, f.m, &s2, &ws, f.x, f.y, NB, 9, 1, g_xb, g_sb, &n3,
                                  NULL) == AL_OK,
                      "%s", al_errmsg());
            r[v] = f.ctx.n_host_reads - r0;
            AL_EXPECT(f.ctx.n_dev_allocs == d0, "apgd run made device allocations");
        }
        AL_EXPECT(r[1] - r[0] == 100, "host reads: %llu at 40 iterations, %llu at 90 (want +100)",
                  (unsigned long long)r[0], (unsigned long long)r[1]);
    }
    AL_EXPECT(memcmp(f.m->grads, sentinel, np * sizeof(float)) == 0, "APGD touched model->grads");
    al_apgd_ws_fini(&f.ctx, &ws);
    free(sentinel);
    fixture_fini(&f);
    return 0;
}

/* Same gradient budget (20 iterations): APGD-CE breaks at least as many points as PGD-20 with
 * the usual step eps/4, on several radii. */
static int case_vs_pgd(void) {
    fixture f;
    if (fixture_init(&f)) return 1;
    static const float eps[] = {0.003f, 0.006f, 0.01f};
    int total_a = 0, total_p = 0;
    for (size_t q = 0; q < AL_ARRAY_LEN(eps); q++) {
        al_attack_spec p = al_attack_spec_make(AL_ATTACK_PGD, AL_LINF, eps[q], eps[q] / 4, 20);
        int np_, na;
        AL_EXPECT(al_attack_run(&f.ctx, f.m, &p, NULL, f.x, f.y, NB, 5, 1, g_xb, g_sb, &np_) ==
                      AL_OK,
                  "%s", al_errmsg());
        al_apgd_spec s = al_apgd_spec_default(AL_APGD_CE, AL_LINF, eps[q]);
        s.n_iter = 20;
        AL_EXPECT(al_apgd_run(&f.ctx, f.m, &s, NULL, f.x, f.y, NB, 5, 1, g_xa, g_sa, &na, NULL) ==
                      AL_OK,
                  "%s", al_errmsg());
        fprintf(stderr, "  eps %.3f: PGD-20 %d, APGD-CE-20 %d successes of %d\n", (double)eps[q],
                np_, na, NB);
        AL_EXPECT(na >= np_, "eps %g: APGD (%d) weaker than PGD (%d)", (double)eps[q], na, np_);
        total_a += na;
        total_p += np_;
    }
    AL_EXPECT(total_a >= total_p, "APGD weaker overall");
    fixture_fini(&f);
    return 0;
}

/* ---------------------------------------------------------------- masking checks */

/* A linear model (28x28 -> 10) whose weight is 0 and bias 0.1: outputs are a constant
 * probability vector (rows in [0,1] summing to 1) and the input gradient is exactly zero. */
static al_model *probability_model(al_ctx *ctx, int n) {
    al_model *m = al_model_new("prob", K, 1, IMG, IMG);
    int in = al_model_input(m);
    int out = al_model_linear(m, "fc", in, K, 1);
    al_model_set_output(m, out, in);
    if (al_model_setup(ctx, m, n, 1) != AL_OK) return NULL;
    int w = al_model_find_param(m, "fc.weight"), b = al_model_find_param(m, "fc.bias");
    memset(al_param_data(m, w), 0, m->params[w].n_elems * sizeof(float));
    for (size_t j = 0; j < m->params[b].n_elems; j++) al_param_data(m, b)[j] = 0.1f;
    return m;
}

/* 28x28 -> 64 -> relu -> dropout(0.5) -> 10: randomized when run in train mode. */
static al_model *dropout_model(al_ctx *ctx, int n) {
    al_model *m = al_model_new("drop", K, 1, IMG, IMG);
    int h = al_model_linear(m, "fc1", al_model_input(m), 64, 1);
    h = al_model_dropout(m, al_model_relu(m, h), 0.5f);
    int out = al_model_linear(m, "fc2", h, K, 1);
    al_model_set_output(m, out, h);
    if (al_model_setup(ctx, m, n, 1) != AL_OK || al_model_init_params(ctx, m, 5) != AL_OK)
        return NULL;
    return m;
}

static int case_masking_flags(void) {
    fixture f;
    if (fixture_init(&f)) return 1;
    al_fwd_opts eval = {0, 0, 0, 0, 0}, train = {0, 1, 0, 0, 0};
    int raised;
    double diff;
    /* plain SmallCNN: quiet */
    AL_EXPECT(al_aa_check_randomized(&f.ctx, f.m, &eval, f.x, f.y, NB, &raised, &diff) == AL_OK,
              "%s", al_errmsg());
    AL_EXPECT(!raised && diff == 0.0, "smallcnn flagged randomized (diff %g)", diff);
    AL_EXPECT(al_aa_check_softmax(&f.ctx, f.m, &eval, f.x, NB, &raised) == AL_OK, "%s",
              al_errmsg());
    AL_EXPECT(!raised, "smallcnn flagged as probability output");
    /* probability outputs + zero gradient */
    al_model *pm = probability_model(&f.ctx, NB);
    AL_EXPECT(pm, "probability model: %s", al_errmsg());
    AL_EXPECT(al_aa_check_softmax(&f.ctx, pm, &eval, f.x, NB, &raised) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(raised, "probability outputs not flagged");
    AL_EXPECT(al_aa_check_randomized(&f.ctx, pm, &eval, f.x, f.y, NB, &raised, NULL) == AL_OK &&
                  !raised,
              "deterministic probability model flagged randomized");
    int32_t y0[NB];
    for (int i = 0; i < NB; i++) y0[i] = 0; /* constant output: argmax 0 (lowest index) */
    al_apgd_spec s = al_apgd_spec_default(AL_APGD_DLR, AL_LINF, 0.05f);
    s.n_iter = 5;
    al_apgd_stats st;
    int ns;
    AL_EXPECT(al_apgd_run(&f.ctx, pm, &s, NULL, f.x, y0, NB, 1, 1, g_xa, g_sa, &ns, &st) == AL_OK,
              "%s", al_errmsg());
    AL_EXPECT(st.n_zero_grad == NB && ns == 0, "zero-gradient flag: %d of %d points, %d broken",
              st.n_zero_grad, NB, ns);
    /* the flag is for DLR starts only (as the reference); APGD-CE does not count */
    s.loss = AL_APGD_CE;
    AL_EXPECT(al_apgd_run(&f.ctx, pm, &s, NULL, f.x, y0, NB, 1, 1, g_xa, g_sa, &ns, &st) == AL_OK &&
                  st.n_zero_grad == 0,
              "APGD-CE counted zero gradients");
    al_model_destroy(&f.ctx, pm);
    /* dropout on at attack time: randomized */
    al_model *dm = dropout_model(&f.ctx, NB);
    AL_EXPECT(dm, "dropout model: %s", al_errmsg());
    AL_EXPECT(al_aa_check_randomized(&f.ctx, dm, &train, f.x, f.y, NB, &raised, &diff) == AL_OK,
              "%s", al_errmsg());
    fprintf(stderr, "  dropout in train mode: max normalised logit difference %.3g\n", diff);
    AL_EXPECT(raised, "dropout in train mode not flagged randomized");
    AL_EXPECT(al_aa_check_randomized(&f.ctx, dm, &eval, f.x, f.y, NB, &raised, &diff) == AL_OK &&
                  !raised,
              "dropout model in eval mode flagged randomized");
    al_model_destroy(&f.ctx, dm);
    fixture_fini(&f);
    return 0;
}

/* EOT: on a deterministic model the mean of identical gradients is exact (g + g = 2g, / 2), so
 * eot_iter 2 must reproduce eot_iter 1 bit for bit; on a randomized model (dropout on) the
 * attack still keeps every invariant. */
static int case_eot(void) {
    fixture f;
    if (fixture_init(&f)) return 1;
    al_apgd_spec s = al_apgd_spec_default(AL_APGD_DLR, AL_LINF, 0.01f);
    s.n_iter = 8;
    int n1, n2;
    AL_EXPECT(al_apgd_run(&f.ctx, f.m, &s, NULL, f.x, f.y, NB, 4, 2, g_xa, g_sa, &n1, NULL) ==
                  AL_OK,
              "%s", al_errmsg());
    s.eot_iter = 2;
    AL_EXPECT(al_apgd_run(&f.ctx, f.m, &s, NULL, f.x, f.y, NB, 4, 2, g_xb, g_sb, &n2, NULL) ==
                  AL_OK,
              "%s", al_errmsg());
    AL_EXPECT(!memcmp(g_xa, g_xb, sizeof g_xa) && n1 == n2, "EOT 2 on a deterministic model "
                                                             "differs from EOT 1");
    al_model *dm = dropout_model(&f.ctx, NB);
    AL_EXPECT(dm, "dropout model: %s", al_errmsg());
    s.loss = AL_APGD_CE;
    s.eot_iter = 4;
    s.fwd.train = 1; /* dropout on in every attack pass: a randomized model */
    int ns;
    AL_EXPECT(al_apgd_run(&f.ctx, dm, &s, NULL, f.x, f.y, NB, 4, 2, g_xa, g_sa, &ns, NULL) ==
                  AL_OK,
              "%s", al_errmsg());
    if (check_ball("apgd-ce eot 4 (dropout on)", AL_LINF, s.eps, f.x, g_xa, NB)) return 1;
    al_model_destroy(&f.ctx, dm);
    fixture_fini(&f);
    return 0;
}

/* ---------------------------------------------------------------- errors */

static int case_oom_and_bad_spec(void) {
    fixture f;
    if (fixture_init(&f)) return 1;
    al_apgd_ws ws;
    const int huge = 1 << 30; /* (2^30, 784) floats = 3.4 TB per buffer */
    AL_EXPECT(al_apgd_ws_init(&f.ctx, &ws, f.m, huge, 100) == AL_ERR_OOM, "huge batch allocated");
    fprintf(stderr, "  OOM message: %s\n", al_errmsg());
    AL_EXPECT(strstr(al_errmsg(), "batch 1073741824") && strstr(al_errmsg(), "bytes") &&
                  strstr(al_errmsg(), "--bs"),
              "OOM message lacks the batch size / bytes / hint: %s", al_errmsg());
    al_apgd_spec s = al_apgd_spec_default(AL_APGD_CE, AL_LINF, 0.1f), b;
#define BAD(expr, needle)                                                                          \
    do {                                                                                           \
        b = s;                                                                                     \
        expr;                                                                                      \
        AL_EXPECT(al_apgd_run(&f.ctx, f.m, &b, NULL, f.x, f.y, NB, 1, 1, g_xa, NULL, NULL, NULL) ==  \
                      AL_ERR_VALUE,                                                                \
                  "%s accepted", #expr);                                                           \
        AL_EXPECT(strstr(al_errmsg(), needle) != NULL, "message '%s' lacks '%s'", al_errmsg(),     \
                  needle);                                                                         \
    } while (0)
    BAD(b.eps = 0.0f, "eps");
    BAD(b.eps = NAN, "eps");
    BAD(b.n_iter = 0, "n_iter");
    BAD(b.n_restarts = 0, "n_restarts");
    BAD(b.eot_iter = 0, "eot_iter");
    BAD(b.rho = 1.5f, "rho");
    BAD((b.loss = AL_APGD_T, b.n_target_classes = 0), "n_target_classes");
    BAD(b.norm = (al_norm)3, "norm");
    BAD(b.fwd.slot = 2, "slot");
#undef BAD
    AL_EXPECT(al_apgd_run(&f.ctx, f.m, &s, NULL, f.x, f.y, NB, 1, 1, f.x, NULL, NULL, NULL) ==
                  AL_ERR_VALUE,
              "aliasing accepted");
    AL_EXPECT(al_apgd_run(&f.ctx, f.m, &s, NULL, f.x, f.y, NB + 1, 1, 1, g_xa, NULL, NULL, NULL) ==
                  AL_ERR_VALUE,
              "n > max_batch accepted");
    fixture_fini(&f);
    return 0;
}

int main(int argc, char **argv) {
    static const al_case cases[] = {
        {"dlr_fd", case_dlr_fd},
        {"schedule", case_schedule},
        {"oscillation", case_oscillation},
        {"step_elem", case_step_elem},
        {"invariants", case_invariants},
        {"schedule_run_determinism", case_schedule_run_determinism},
        {"vs_pgd", case_vs_pgd},
        {"masking_flags", case_masking_flags},
        {"eot", case_eot},
        {"oom_and_bad_spec", case_oom_and_bad_spec},
    };
    return al_run_cases(cases, (int)AL_ARRAY_LEN(cases), argc, argv);
}
