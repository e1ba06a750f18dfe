/* test_attacks.c: attacks/ (al_pgd_step element rules, FGSM, PGD Linf/L2, targeted, TRADES-KL,
 * CW, restarts, early stop, training mode) on a small model.
 * Oracle (c) of style rule 21: invariants re-checked independently of the attack code: every
 * x_adv inside the eps-ball (Linf: max|d| <= eps + 1e-7, the rounding of x + eps; L2:
 * ||d|| <= eps (1 + 1e-6), float rounding of the projected delta) and inside [0,1]; `success`
 * equal to a fresh forward pass's argmax; failed points bit-identical to the clean input in
 * evaluation mode; attacks raise their objective; PGD at least as strong as FGSM; restarts
 * only add successes; determinism; model->grads untouched. Plus the documented NaN/Inf/eps=0/
 * boundary behaviour of al_pgd_step itself. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attacks/apgd.h"
#include "attacks/attack.h"
#include "attacks/fab.h"
#include "attacks/square.h"
#include "core/ctx.h"
#include "core/model.h"
#include "harness/attack_fixture.h"
#include "harness/check.h"
#include "losses/loss.h"

/* ---------------------------------------------------------------- al_pgd_step unit cases */

static int case_step_linf(void) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 1) == AL_OK, "%s", al_errmsg());
    /* columns: plain +, plain -, zero grad, NaN grad, +Inf grad, -Inf grad, at 0 pushed down,
     * at 1 pushed up, NaN x, x outside the ball (clamped back), Inf x */
    enum { D = 11 };
    const float x0[D] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.0f, 1.0f, 0.3f, 0.3f, 0.6f};
    float x[D] = {0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.5f, 0.0f, 1.0f, NAN, 0.9f, INFINITY};
    const float g[D] = {2.0f,  -1e-30f, 0.0f, NAN,  INFINITY, -INFINITY,
                        -1.0f, 1.0f,    1.0f, 1.0f, -1.0f};
    const float eps = 0.1f, alpha = 0.03f;
    AL_EXPECT(al_pgd_step(&ctx, AL_LINF, 1, D, x, x0, g, alpha, eps) == AL_OK, "%s", al_errmsg());
    const float want[D] = {0.5f + alpha, 0.5f - alpha, 0.5f,        0.5f,
                           0.5f + alpha, 0.5f - alpha, 0.0f,        1.0f,
                           0.3f + alpha, 0.3f + eps,   0.6f - alpha};
    for (int j = 0; j < D; j++)
        AL_EXPECT(x[j] == want[j], "elem %d: %.9g want %.9g", j, x[j], want[j]);
    /* eps = 0: x0 exactly, whatever x and g */
    float y[D];
    memcpy(y, x, sizeof y);
    AL_EXPECT(al_pgd_step(&ctx, AL_LINF, 1, D, y, x0, g, 0.5f, 0.0f) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(memcmp(y, x0, sizeof y) == 0, "eps=0 must return x0 bit-exactly");
    /* bad arguments are reported, not silently clamped */
    AL_EXPECT(al_pgd_step(&ctx, AL_LINF, 1, D, y, x0, g, 0.1f, -1.0f) == AL_ERR_VALUE, "eps < 0");
    AL_EXPECT(al_pgd_step(&ctx, AL_LINF, 1, D, y, x0, g, NAN, 0.1f) == AL_ERR_VALUE, "alpha NaN");
    al_ctx_fini(&ctx);
    return 0;
}

static double l2_dist(const float *a, const float *b, size_t d) {
    double s = 0;
    for (size_t j = 0; j < d; j++) s += ((double)a[j] - b[j]) * ((double)a[j] - b[j]);
    return sqrt(s);
}

static int case_step_l2(void) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 1) == AL_OK, "%s", al_errmsg());
    enum { N = 5, D = 37 }; /* D not a multiple of any vector width */
    float x0[N * D], x[N * D], g[N * D];
    al_test_fill(x0, N * D, 1, 0.2f, 0.8f);
    al_test_fill(g, N * D, 2, -1.0f, 1.0f);
    memcpy(x, x0, sizeof x);
    for (int j = 0; j < D; j++) g[1 * D + j] = 0.0f;   /* ex 1: zero gradient */
    g[2 * D + 3] = NAN;                                /* ex 2: one NaN element */
    g[3 * D + 5] = INFINITY;                           /* ex 3: one Inf element */
    for (int j = 0; j < D; j++) g[4 * D + j] = 1e-40f; /* ex 4: 1/||g|| > FLT_MAX */
    const float eps = 0.5f, alpha = 0.2f;              /* alpha < eps: no projection on this step */
    AL_EXPECT(al_pgd_step(&ctx, AL_L2, N, D, x, x0, g, alpha, eps) == AL_OK, "%s", al_errmsg());
    /* ex 0: x0 + alpha g/||g|| (double reference; float error ~ 1 ulp of x) */
    double nrm = 0;
    for (int j = 0; j < D; j++) nrm += (double)g[j] * g[j];
    nrm = sqrt(nrm);
    double ref[D];
    for (int j = 0; j < D; j++) ref[j] = x0[j] + alpha * g[j] / nrm;
    if (al_check_close_fd("L2 ascend direction", x, ref, D, 2 * AL_F32_EPS, 0)) return 1;
    AL_EXPECT(memcmp(x + D, x0 + D, D * sizeof(float)) == 0, "zero-gradient example moved");
    AL_EXPECT(memcmp(x + 4 * D, x0 + 4 * D, D * sizeof(float)) == 0, "tiny-gradient example moved");
    /* ex 2/3: the NaN/Inf element does not move, the rest move along the finite elements */
    AL_EXPECT(x[2 * D + 3] == x0[2 * D + 3] && x[3 * D + 5] == x0[3 * D + 5],
              "non-finite g moved x");
    for (int i = 2; i <= 3; i++) {
        double dd = l2_dist(x + i * D, x0 + i * D, D);
        AL_EXPECT(fabs(dd - alpha) < 1e-6, "ex %d step length %.9g, want alpha", i, dd);
    }
    /* repeated steps: the delta norm saturates at eps, never above (1 + 1e-6) */
    for (int s = 0; s < 6; s++)
        AL_EXPECT(al_pgd_step(&ctx, AL_L2, N, D, x, x0, g, alpha, eps) == AL_OK, "%s", al_errmsg());
    double d0 = l2_dist(x, x0, D);
    AL_EXPECT(d0 <= eps * (1 + 1e-6) && d0 > eps * (1 - 1e-5), "projected norm %.9g eps %g", d0,
              (double)eps);
    for (int i = 0; i < N * D; i++) AL_EXPECT(x[i] >= 0.0f && x[i] <= 1.0f, "out of [0,1]");
    /* boundaries: pixels at 0/1 pushed outward stay at 0/1; eps = 0 returns x0 exactly */
    float b0[4] = {0.0f, 1.0f, 0.0f, 1.0f}, bx[4], bg[4] = {-1.0f, 1.0f, -1.0f, 1.0f};
    memcpy(bx, b0, sizeof bx);
    AL_EXPECT(al_pgd_step(&ctx, AL_L2, 1, 4, bx, b0, bg, 0.3f, 1.0f) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(memcmp(bx, b0, sizeof bx) == 0, "boundary pixels moved outward");
    memcpy(bx, b0, sizeof bx);
    bg[0] = 1.0f;
    AL_EXPECT(al_pgd_step(&ctx, AL_L2, 1, 4, bx, b0, bg, 0.3f, 0.0f) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(memcmp(bx, b0, sizeof bx) == 0, "L2 eps=0 must return x0");
    /* NaN x restarts at x0 */
    float nx[2] = {NAN, 0.5f}, n0[2] = {0.25f, 0.5f}, ng[2] = {0.0f, 0.0f};
    AL_EXPECT(al_pgd_step(&ctx, AL_L2, 1, 2, nx, n0, ng, 0.1f, 1.0f) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(nx[0] == 0.25f && nx[1] == 0.5f, "NaN x: %g %g", nx[0], nx[1]);
    al_ctx_fini(&ctx);
    return 0;
}

/* ---------------------------------------------------------------- model fixture */

enum { NB = AL_FIX_NB, K = AL_FIX_K, IMG = AL_FIX_IMG };
static const size_t DX = AL_FIX_DX;

/* the shared seeded smallcnn (tests/harness/attack_fixture.h) */
typedef al_attack_fixture fixture;
static int fixture_init(fixture *f) { return al_attack_fixture_init(f, 2); }
static void fixture_fini(fixture *f) { al_attack_fixture_fini(f); }
static int check_ball(const char *what, al_norm norm, float eps, const float *x, const float *xa,
                      int n) {
    return al_check_ball(what, norm, eps, x, xa, n, DX);
}

/* `success` equals a fresh eval forward's argmax test (own argmax, lowest index on ties). */
static int check_success(fixture *f, const char *what, const float *xa, const int32_t *lab,
                         int targeted, const uint8_t *succ, int n, int n_succ_reported) {
    AL_EXPECT(al_model_forward_eval(&f->ctx, f->m, xa, n, 0) == AL_OK, "%s", al_errmsg());
    const float *z = al_model_logits(f->m, 0);
    int cnt = 0;
    for (int i = 0; i < n; i++) {
        int a = 0;
        for (int j = 1; j < K; j++)
            if (z[i * K + j] > z[i * K + a]) a = j;
        int s = targeted ? a == lab[i] : a != lab[i];
        AL_EXPECT(s == succ[i], "%s: point %d success %d, fresh forward says %d", what, i, succ[i],
                  s);
        cnt += s;
    }
    AL_EXPECT(cnt == n_succ_reported, "%s: n_success %d, counted %d", what, n_succ_reported, cnt);
    fprintf(stderr, "  %-34s success %d / %d\n", what, cnt, n);
    return 0;
}

static int check_failed_clean(const char *what, const float *x, const float *xa,
                              const uint8_t *succ, int n) {
    for (int i = 0; i < n; i++)
        if (!succ[i])
            AL_EXPECT(memcmp(xa + i * DX, x + i * DX, DX * sizeof(float)) == 0,
                      "%s: failed point %d is not the clean input", what, i);
    return 0;
}

static double mean_ce(fixture *f, const float *xa, int n) {
    double loss = NAN;
    if (al_model_forward_eval(&f->ctx, f->m, xa, n, 0) != AL_OK) return NAN;
    if (al_xent(&f->ctx, n, K, al_model_logits(f->m, 0), f->y, 1.0f, &loss, NULL, NULL) != AL_OK)
        return NAN;
    return loss;
}

/* Run an evaluation-mode attack and apply every invariant. Returns 0/1; *n_succ out. */
static int run_eval(fixture *f, const char *what, const al_attack_spec *s, uint64_t seed, float *xa,
                    uint8_t *succ, int *n_succ) {
    AL_EXPECT(al_attack_run(&f->ctx, f->m, s, NULL, f->x, f->y, NB, seed, 99, xa, succ, n_succ) ==
                  AL_OK,
              "%s: %s", what, al_errmsg());
    if (check_ball(what, s->norm, s->eps, f->x, xa, NB)) return 1;
    if (check_success(f, what, xa, s->targeted ? s->targets : f->y, s->targeted, succ, NB, *n_succ))
        return 1;
    if (s->keep_clean_if_failed && check_failed_clean(what, f->x, xa, succ, NB)) return 1;
    return 0;
}

/* ---------------------------------------------------------------- attack cases */

static float g_xa[NB * IMG * IMG], g_xb[NB * IMG * IMG];
static uint8_t g_sa[NB], g_sb[NB];

static int case_fgsm(void) {
    fixture f;
    if (fixture_init(&f)) return 1;
    int ns;
    /* plain FGSM: x + eps sign(grad CE), exactly al_pgd_linf_elem from x with step eps */
    al_attack_spec s = al_attack_spec_make(AL_ATTACK_FGSM, AL_LINF, 0.01f, 0.0f, 1);
    if (run_eval(&f, "fgsm", &s, 1, g_xa, g_sa, &ns)) return 1;
    AL_EXPECT(ns > 2 && ns < NB, "FGSM should succeed on some but not all points (%d)", ns);
    static float grad[NB * IMG * IMG], dz[NB * K];
    double l;
    AL_EXPECT(al_model_forward_eval(&f.ctx, f.m, f.x, NB, 0) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_xent(&f.ctx, NB, K, al_model_logits(f.m, 0), f.y, 1.0f, &l, NULL, dz) == AL_OK,
              "x");
    AL_EXPECT(al_model_backward(&f.ctx, f.m, 0, dz, NULL, AL_BWD_INPUT, grad) == AL_OK, "%s",
              al_errmsg());
    for (int i = 0; i < NB; i++) {
        if (!g_sa[i]) continue; /* failed points were reset to the clean input */
        for (size_t j = 0; j < DX; j++) {
            size_t e = i * DX + j;
            float want = al_pgd_linf_elem(f.x[e], f.x[e], grad[e], s.eps, s.eps);
            AL_EXPECT(g_xa[e] == want, "FGSM point %d elem %zu: %.9g want %.9g", i, j, g_xa[e],
                      want);
        }
    }
    /* Fast-AT form: uniform start, alpha = 1.25 eps, in train mode (dropout on) */
    al_attack_spec fa = al_attack_spec_make(AL_ATTACK_FGSM, AL_LINF, 0.01f, 0.0125f, 1);
    fa.init = AL_ATTACK_INIT_UNIFORM;
    fa.keep_clean_if_failed = 0;
    fa.fwd.train = 1;
    fa.fwd.update_bn = 1;
    fa.fwd.step = 5;
    AL_EXPECT(al_attack_run(&f.ctx, f.m, &fa, NULL, f.x, f.y, NB, 3, 4, g_xb, NULL, NULL) == AL_OK,
              "%s", al_errmsg());
    if (check_ball("fgsm fast-at (train mode)", AL_LINF, fa.eps, f.x, g_xb, NB)) return 1;
    fixture_fini(&f);
    return 0;
}

static int case_pgd_linf(void) {
    fixture f;
    if (fixture_init(&f)) return 1;
    int n_fgsm, n_pgd;
    al_attack_spec fg = al_attack_spec_make(AL_ATTACK_FGSM, AL_LINF, 0.01f, 0.0f, 1);
    if (run_eval(&f, "fgsm (reference)", &fg, 1, g_xb, g_sb, &n_fgsm)) return 1;
    al_attack_spec s = al_attack_spec_make(AL_ATTACK_PGD, AL_LINF, 0.01f, 0.0025f, 10);
    if (run_eval(&f, "pgd-linf", &s, 1, g_xa, g_sa, &n_pgd)) return 1;
    AL_EXPECT(n_pgd >= n_fgsm, "PGD-10 (%d) weaker than FGSM (%d)", n_pgd, n_fgsm);
    double l0 = mean_ce(&f, f.x, NB), l1 = mean_ce(&f, g_xa, NB);
    fprintf(stderr, "  clean CE %.5f -> PGD CE %.5f\n", l0, l1);
    AL_EXPECT(l1 > l0, "PGD did not raise the mean CE (%g -> %g)", l0, l1);
    /* training form (last iterate, no clean fallback): loss rises on every point on average */
    s.keep_clean_if_failed = 0;
    AL_EXPECT(al_attack_run(&f.ctx, f.m, &s, NULL, f.x, f.y, NB, 1, 99, g_xb, NULL, NULL) == AL_OK,
              "%s", al_errmsg());
    if (check_ball("pgd-linf (training form)", AL_LINF, s.eps, f.x, g_xb, NB)) return 1;
    double l2 = mean_ce(&f, g_xb, NB);
    AL_EXPECT(l2 >= l1, "last iterate CE %g below eval-mode CE %g", l2, l1);
    fixture_fini(&f);
    return 0;
}

static int case_pgd_l2(void) {
    fixture f;
    if (fixture_init(&f)) return 1;
    int ns;
    al_attack_spec s = al_attack_spec_make(AL_ATTACK_PGD, AL_L2, 0.2f, 0.05f, 10);
    if (run_eval(&f, "pgd-l2", &s, 2, g_xa, g_sa, &ns)) return 1;
    AL_EXPECT(ns > 0 && ns < NB, "PGD-L2 should succeed on some but not all points (%d)", ns);
    AL_EXPECT(mean_ce(&f, g_xa, NB) > mean_ce(&f, f.x, NB), "PGD-L2 did not raise the CE");
    s.init = AL_ATTACK_INIT_NONE;
    if (run_eval(&f, "pgd-l2 (no init)", &s, 2, g_xa, g_sa, &ns)) return 1;
    s.init = AL_ATTACK_INIT_NORMAL;
    s.keep_clean_if_failed = 0;
    if (run_eval(&f, "pgd-l2 (normal init, training)", &s, 2, g_xa, g_sa, &ns)) return 1;
    fixture_fini(&f);
    return 0;
}

static int case_targeted(void) {
    fixture f;
    if (fixture_init(&f)) return 1;
    int ns, ns_cw;
    al_attack_spec s = al_attack_spec_make(AL_ATTACK_PGD, AL_LINF, 0.03f, 0.005f, 15);
    s.targeted = 1;
    s.targets = f.t;
    if (run_eval(&f, "pgd-linf targeted CE", &s, 5, g_xa, g_sa, &ns)) return 1;
    AL_EXPECT(ns > 0, "targeted PGD reached no target");
    /* the CE to the target went down */
    double l0, l1;
    AL_EXPECT(al_model_forward_eval(&f.ctx, f.m, f.x, NB, 0) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_xent(&f.ctx, NB, K, al_model_logits(f.m, 0), f.t, 1.0f, &l0, NULL, NULL) == AL_OK,
              "%s", al_errmsg());
    AL_EXPECT(al_model_forward_eval(&f.ctx, f.m, g_xa, NB, 0) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_xent(&f.ctx, NB, K, al_model_logits(f.m, 0), f.t, 1.0f, &l1, NULL, NULL) == AL_OK,
              "%s", al_errmsg());
    AL_EXPECT(l1 < l0, "targeted CE did not decrease (%g -> %g)", l0, l1);
    s.loss = AL_ATTACK_LOSS_CW;
    if (run_eval(&f, "pgd-linf targeted CW", &s, 5, g_xa, g_sa, &ns_cw)) return 1;
    AL_EXPECT(ns_cw > 0, "targeted CW reached no target");
    fixture_fini(&f);
    return 0;
}

static int case_cw(void) {
    fixture f;
    if (fixture_init(&f)) return 1;
    int ns;
    al_attack_spec s = al_attack_spec_make(AL_ATTACK_PGD, AL_LINF, 0.01f, 0.0025f, 10);
    s.loss = AL_ATTACK_LOSS_CW;
    if (run_eval(&f, "pgd-linf CW", &s, 6, g_xa, g_sa, &ns)) return 1;
    double m0, m1;
    AL_EXPECT(al_model_forward_eval(&f.ctx, f.m, f.x, NB, 0) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_cw_margin(&f.ctx, NB, K, al_model_logits(f.m, 0), f.y, 0, &m0, NULL, NULL) ==
                  AL_OK,
              "%s", al_errmsg());
    AL_EXPECT(al_model_forward_eval(&f.ctx, f.m, g_xa, NB, 0) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_cw_margin(&f.ctx, NB, K, al_model_logits(f.m, 0), f.y, 0, &m1, NULL, NULL) ==
                  AL_OK,
              "%s", al_errmsg());
    fprintf(stderr, "  CW margin %.5f -> %.5f\n", m0, m1);
    AL_EXPECT(m1 > m0, "CW attack did not raise the margin");
    fixture_fini(&f);
    return 0;
}

/* TRADES: KL(p(x) || p(x_adv)) ascended from x + 0.001 N(0,1), eval mode, last iterate. */
static int case_trades_kl(void) {
    fixture f;
    if (fixture_init(&f)) return 1;
    al_attack_spec s = al_attack_spec_make(AL_ATTACK_PGD, AL_LINF, 0.031f, 0.007f, 10);
    s.init = AL_ATTACK_INIT_NORMAL;
    s.init_std = 0.001f;
    s.loss = AL_ATTACK_LOSS_KL_TRADES;
    s.keep_clean_if_failed = 0;
    AL_EXPECT(al_attack_run(&f.ctx, f.m, &s, NULL, f.x, f.y, NB, 8, 9, g_xa, NULL, NULL) == AL_OK,
              "%s", al_errmsg());
    if (check_ball("trades-kl", AL_LINF, s.eps, f.x, g_xa, NB)) return 1;
    /* KL at x_adv vs at the (projected) start point */
    s.steps = 0;
    AL_EXPECT(al_attack_run(&f.ctx, f.m, &s, NULL, f.x, f.y, NB, 8, 9, g_xb, NULL, NULL) == AL_OK,
              "%s", al_errmsg());
    if (check_ball("trades-kl start (steps 0)", AL_LINF, s.eps, f.x, g_xb, NB)) return 1;
    static float zn[NB * K];
    double kl0, kl1;
    AL_EXPECT(al_model_forward_eval(&f.ctx, f.m, f.x, NB, 0) == AL_OK, "%s", al_errmsg());
    memcpy(zn, al_model_logits(f.m, 0), sizeof zn);
    AL_EXPECT(al_model_forward_eval(&f.ctx, f.m, g_xb, NB, 0) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_trades_kl(&f.ctx, NB, K, zn, al_model_logits(f.m, 0), &kl0, NULL, NULL) == AL_OK,
              "%s", al_errmsg());
    AL_EXPECT(al_model_forward_eval(&f.ctx, f.m, g_xa, NB, 0) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_trades_kl(&f.ctx, NB, K, zn, al_model_logits(f.m, 0), &kl1, NULL, NULL) == AL_OK,
              "%s", al_errmsg());
    fprintf(stderr, "  TRADES KL sum: start %.3g -> attack %.5g\n", kl0, kl1);
    AL_EXPECT(kl1 > 100 * kl0 && kl1 > 1e-3, "KL attack did not move away from p(x)");
    /* with a start point of exactly x and 0 steps, x_adv == x (KL 0) */
    s.init = AL_ATTACK_INIT_NONE;
    AL_EXPECT(al_attack_run(&f.ctx, f.m, &s, NULL, f.x, f.y, NB, 8, 9, g_xb, NULL, NULL) == AL_OK,
              "%s", al_errmsg());
    AL_EXPECT(memcmp(g_xb, f.x, sizeof g_xb) == 0, "0 steps from x must return x");
    fixture_fini(&f);
    return 0;
}

/* Restarts keep the first successful restart: the success set only grows (restart 0 draws the
 * same start as the single-restart run). */
static int case_restarts(void) {
    fixture f;
    if (fixture_init(&f)) return 1;
    int n1, n4;
    al_attack_spec s = al_attack_spec_make(AL_ATTACK_PGD, AL_LINF, 0.005f, 0.00125f, 5);
    if (run_eval(&f, "pgd-5 1 restart", &s, 11, g_xa, g_sa, &n1)) return 1;
    s.restarts = 4;
    if (run_eval(&f, "pgd-5 4 restarts", &s, 11, g_xb, g_sb, &n4)) return 1;
    for (int i = 0; i < NB; i++) {
        AL_EXPECT(!g_sa[i] || g_sb[i], "point %d lost its success with more restarts", i);
        if (g_sa[i])
            AL_EXPECT(memcmp(g_xa + i * DX, g_xb + i * DX, DX * sizeof(float)) == 0,
                      "point %d: restart 0's success must be the one kept", i);
    }
    AL_EXPECT(n4 >= n1, "restarts %d < %d", n4, n1);
    /* training form with restarts: the max-loss restart, inside the ball */
    s.keep_clean_if_failed = 0;
    if (run_eval(&f, "pgd-5 4 restarts (max loss)", &s, 11, g_xb, g_sb, &n4)) return 1;
    /* early stop: frozen points stay adversarial in eval mode */
    s.keep_clean_if_failed = 1;
    s.restarts = 1;
    s.early_stop = 1;
    if (run_eval(&f, "pgd-5 early stop", &s, 11, g_xb, g_sb, &n4)) return 1;
    AL_EXPECT(n4 >= n1, "early stop (%d) below plain PGD (%d)", n4, n1);
    fixture_fini(&f);
    return 0;
}

/* eps = 0: x_adv == x bit-exactly for every start and norm; nothing "succeeds" except the two
 * points misclassified from the start. */
static int case_eps_zero(void) {
    fixture f;
    if (fixture_init(&f)) return 1;
    const al_attack_init inits[3] = {AL_ATTACK_INIT_NONE, AL_ATTACK_INIT_UNIFORM,
                                     AL_ATTACK_INIT_NORMAL};
    for (int nrm = 0; nrm < 2; nrm++)
        for (int ii = 0; ii < 3; ii++) {
            al_attack_spec s = al_attack_spec_make(AL_ATTACK_PGD, (al_norm)nrm, 0.0f, 0.01f, 3);
            s.init = inits[ii];
            int ns;
            AL_EXPECT(al_attack_run(&f.ctx, f.m, &s, NULL, f.x, f.y, NB, 1, 2, g_xa, g_sa, &ns) ==
                          AL_OK,
                      "%s", al_errmsg());
            AL_EXPECT(memcmp(g_xa, f.x, sizeof g_xa) == 0, "eps=0 norm %d init %d changed x", nrm,
                      ii);
            AL_EXPECT(ns == 2 && g_sa[3] && g_sa[7], "eps=0: successes %d (want points 3, 7)", ns);
        }
    fixture_fini(&f);
    return 0;
}

/* Same seed => bit-identical x_adv; another seed => a different start; weight grads untouched. */
static int case_determinism_and_grads(void) {
    fixture f;
    if (fixture_init(&f)) return 1;
    const size_t np = f.m->n_param_floats;
    float *sentinel = malloc(np * sizeof(float));
    al_test_fill(sentinel, np, 77, -1.0f, 1.0f);
    memcpy(f.m->grads, sentinel, np * sizeof(float));
    float *params = malloc(np * sizeof(float));
    memcpy(params, f.m->data, np * sizeof(float));
    al_attack_spec s = al_attack_spec_make(AL_ATTACK_PGD, AL_L2, 0.2f, 0.05f, 4);
    s.restarts = 2;
    int n1, n2;
    AL_EXPECT(al_attack_run(&f.ctx, f.m, &s, NULL, f.x, f.y, NB, 42, 1, g_xa, g_sa, &n1) == AL_OK,
              "%s", al_errmsg());
    AL_EXPECT(al_attack_run(&f.ctx, f.m, &s, NULL, f.x, f.y, NB, 42, 1, g_xb, g_sb, &n2) == AL_OK,
              "%s", al_errmsg());
    AL_EXPECT(memcmp(g_xa, g_xb, sizeof g_xa) == 0 && memcmp(g_sa, g_sb, NB) == 0,
              "same seed, different x_adv");
    s.keep_clean_if_failed = 0;
    s.restarts = 1;
    s.init = AL_ATTACK_INIT_UNIFORM;
    AL_EXPECT(al_attack_run(&f.ctx, f.m, &s, NULL, f.x, f.y, NB, 42, 1, g_xa, NULL, NULL) == AL_OK,
              "%s", al_errmsg());
    AL_EXPECT(al_attack_run(&f.ctx, f.m, &s, NULL, f.x, f.y, NB, 43, 1, g_xb, NULL, NULL) == AL_OK,
              "%s", al_errmsg());
    AL_EXPECT(memcmp(g_xa, g_xb, sizeof g_xa) != 0, "different seeds gave the same x_adv");
    AL_EXPECT(al_attack_run(&f.ctx, f.m, &s, NULL, f.x, f.y, NB, 42, 2, g_xb, NULL, NULL) == AL_OK,
              "%s", al_errmsg());
    AL_EXPECT(memcmp(g_xa, g_xb, sizeof g_xa) != 0, "different streams gave the same x_adv");
    /* a caller-owned workspace gives the same result and no allocation per call */
    al_attack_ws ws;
    AL_EXPECT(al_attack_ws_init(&f.ctx, &ws, f.m, NB) == AL_OK, "%s", al_errmsg());
    uint64_t a0 = al_alloc_count();
    const uint64_t r0 = f.ctx.n_host_reads, d0 = f.ctx.n_dev_allocs;
    AL_EXPECT(al_attack_run(&f.ctx, f.m, &s, &ws, f.x, f.y, NB, 42, 1, g_xb, NULL, NULL) == AL_OK,
              "%s", al_errmsg());
    AL_EXPECT(al_alloc_count() == a0, "al_attack_run with a workspace allocated");
    /* the hot path of a training-mode run (one restart, no success wanted): no device
     * allocation and ONE host read in all, whatever the step count (the first iteration's
     * loss, which is what checks the labels on CUDA; every later one asks for none) */
    AL_EXPECT(f.ctx.n_dev_allocs == d0, "attack run made %llu device allocations",
              (unsigned long long)(f.ctx.n_dev_allocs - d0));
    AL_EXPECT(f.ctx.n_host_reads - r0 == 1, "training-mode attack run (%d steps): %llu host reads",
              s.steps, (unsigned long long)(f.ctx.n_host_reads - r0));
    AL_EXPECT(memcmp(g_xa, g_xb, sizeof g_xa) == 0, "workspace run differs");
    AL_EXPECT(al_attack_run(&f.ctx, f.m, &s, &ws, f.x, f.y, 5, 42, 1, g_xb, NULL, NULL) == AL_OK,
              "batch below the workspace size");
    al_attack_ws_fini(&f.ctx, &ws);
    AL_EXPECT(memcmp(f.m->grads, sentinel, np * sizeof(float)) == 0, "attack touched model->grads");
    AL_EXPECT(memcmp(f.m->data, params, np * sizeof(float)) == 0, "eval attack changed parameters");
    free(sentinel);
    free(params);
    fixture_fini(&f);
    return 0;
}

static int case_bad_spec(void) {
    fixture f;
    if (fixture_init(&f)) return 1;
    al_attack_spec s = al_attack_spec_make(AL_ATTACK_PGD, AL_LINF, 0.1f, 0.01f, 2);
    al_attack_spec b;
#define BAD(field_expr, needle)                                                                    \
    do {                                                                                           \
        b = s;                                                                                     \
        field_expr;                                                                                \
        AL_EXPECT(al_attack_run(&f.ctx, f.m, &b, NULL, f.x, f.y, NB, 1, 1, g_xa, NULL, NULL) ==    \
                      AL_ERR_VALUE,                                                                \
                  "%s accepted", #field_expr);                                                     \
        AL_EXPECT(strstr(al_errmsg(), needle) != NULL, "message '%s' lacks '%s'", al_errmsg(),     \
                  needle);                                                                         \
    } while (0)
    BAD(b.eps = -0.1f, "eps");
    BAD(b.eps = NAN, "eps");
    BAD(b.alpha = -1.0f, "alpha");
    BAD(b.steps = -1, "steps");
    BAD(b.restarts = 0, "restarts");
    BAD(b.targeted = 1, "targets");
    BAD((b.loss = AL_ATTACK_LOSS_KL_TRADES, b.targeted = 1, b.targets = f.t), "targeted");
    BAD(b.fwd.slot = 1, "slot");
    BAD(b.norm = (al_norm)7, "norm");
    BAD(b.init = (al_attack_init)9, "init");
#undef BAD
    AL_EXPECT(al_attack_run(&f.ctx, f.m, &s, NULL, f.x, f.y, NB + 1, 1, 1, g_xa, NULL, NULL) ==
                  AL_ERR_VALUE,
              "n > max_batch accepted");
    AL_EXPECT(al_attack_run(&f.ctx, f.m, &s, NULL, f.x, f.y, NB, 1, 1, f.x, NULL, NULL) ==
                  AL_ERR_VALUE,
              "aliasing accepted");
    int32_t ybad[NB];
    memcpy(ybad, f.y, sizeof ybad);
    ybad[5] = K;
    AL_EXPECT(al_attack_run(&f.ctx, f.m, &s, NULL, f.x, ybad, NB, 1, 1, g_xa, NULL, NULL) ==
                  AL_ERR_VALUE,
              "label 10 accepted");
    AL_EXPECT(strstr(al_errmsg(), "index 5") != NULL, "%s", al_errmsg());
    fixture_fini(&f);
    return 0;
}

/* The input checks every attack entry point shares (al_attack_check_io): each refuses a bad n,
 * a missing buffer and x_adv aliasing x with AL_ERR_VALUE and a message naming itself, and
 * leaves x_adv untouched. */
enum { ENTRY_PGD, ENTRY_APGD, ENTRY_FAB, ENTRY_SQUARE, N_ENTRY };
static const char *const ENTRY_NAME[N_ENTRY] = {"al_attack_run", "al_apgd_run", "al_fab_run",
                                                "al_square_run"};

static al_status run_entry(fixture *f, int e, const float *x, const int32_t *y, int n,
                           float *xa, uint8_t *succ) {
    switch (e) {
    case ENTRY_PGD: {
        const al_attack_spec s = al_attack_spec_make(AL_ATTACK_PGD, AL_LINF, 0.1f, 0.01f, 2);
        return al_attack_run(&f->ctx, f->m, &s, NULL, x, y, n, 1, 1, xa, succ, NULL);
    }
    case ENTRY_APGD: {
        al_apgd_spec s = al_apgd_spec_default(AL_APGD_CE, AL_LINF, 0.1f);
        s.n_iter = 2;
        return al_apgd_run(&f->ctx, f->m, &s, NULL, x, y, n, 1, 1, xa, succ, NULL, NULL);
    }
    case ENTRY_FAB: {
        al_fab_spec s = al_fab_spec_default(AL_LINF, 0.1f);
        s.n_iter = 2;
        return al_fab_run(&f->ctx, f->m, &s, x, y, n, 1, 1, xa, succ);
    }
    default: {
        al_square_spec s = al_square_spec_default(AL_LINF, 0.1f);
        s.n_queries = 2;
        return al_square_run(&f->ctx, f->m, &s, x, y, n, 1, 1, xa, succ);
    }
    }
}

static int case_entry_checks(void) {
    fixture f;
    if (fixture_init(&f)) return 1;
    uint8_t succ[NB];
    for (int e = 0; e < N_ENTRY; e++) {
        const struct {
            const float *x;
            const int32_t *y;
            int n;
            float *xa;
            const char *what, *needle;
        } bad[] = {
            {f.x, f.y, 0, g_xa, "n = 0", "n=0 outside"},
            {f.x, f.y, NB + 1, g_xa, "n > max_batch", "max_batch"},
            {NULL, f.y, NB, g_xa, "x NULL", "required"},
            {f.x, NULL, NB, g_xa, "y NULL", "required"},
            {f.x, f.y, NB, NULL, "x_adv NULL", "required"},
            {f.x, f.y, NB, f.x, "x_adv = x", "must not alias x"},
        };
        for (size_t b = 0; b < AL_ARRAY_LEN(bad); b++) {
            for (size_t i = 0; i < NB * DX; i++) g_xa[i] = -7.0f;
            al_clear_error();
            const al_status st = run_entry(&f, e, bad[b].x, bad[b].y, bad[b].n, bad[b].xa, succ);
            const char *msg = al_errmsg();
            AL_EXPECT(st == AL_ERR_VALUE, "%s with %s: %s (%s)", ENTRY_NAME[e], bad[b].what,
                      al_status_str(st), msg);
            AL_EXPECT(strncmp(msg, ENTRY_NAME[e], strlen(ENTRY_NAME[e])) == 0 &&
                          strstr(msg, bad[b].needle) != NULL,
                      "%s with %s: message '%s' lacks the entry point or '%s'", ENTRY_NAME[e],
                      bad[b].what, msg, bad[b].needle);
            for (size_t i = 0; i < NB * DX; i++)
                AL_EXPECT(g_xa[i] == -7.0f, "%s with %s wrote x_adv", ENTRY_NAME[e], bad[b].what);
        }
        /* the same call with good inputs runs */
        al_clear_error();
        const al_status st = run_entry(&f, e, f.x, f.y, NB, g_xa, succ);
        AL_EXPECT(st == AL_OK, "%s with good inputs: %s", ENTRY_NAME[e], al_errmsg());
    }
    fixture_fini(&f);
    return 0;
}

int main(int argc, char **argv) {
    static const al_case cases[] = {
        {"step_linf", case_step_linf},
        {"step_l2", case_step_l2},
        {"fgsm", case_fgsm},
        {"pgd_linf", case_pgd_linf},
        {"pgd_l2", case_pgd_l2},
        {"targeted", case_targeted},
        {"cw", case_cw},
        {"trades_kl", case_trades_kl},
        {"restarts", case_restarts},
        {"eps_zero", case_eps_zero},
        {"determinism_and_grads", case_determinism_and_grads},
        {"bad_spec", case_bad_spec},
        {"entry_checks", case_entry_checks},
    };
    return al_run_cases(cases, (int)AL_ARRAY_LEN(cases), argc, argv);
}
