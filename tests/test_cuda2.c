/* test_cuda2.c: the second batch of CUDA twins against their CPU references (style rule 21a):
 * TRADES loss / KL, MART, CW margin (cuda/loss_{trades,mart,cw}.cu), the attack random start
 * and early-stop row zeroing (cuda/attack_start.cu, also through al_attack_run), the masked
 * sum of squares of gradient clipping (cuda/reduce_sumsq.cu, also through al_optim_clip_coef)
 * and device-resident batch assembly with crop/flip (cuda/data_augment.cu); the DRSL penalty
 * (cuda/loss_drsl.cu), the label-smoothed CE (cuda/loss_xent_smooth.cu), the DLR loss and the APGD step and row bookkeeping (cuda/loss_dlr.cu,
 * cuda/attack_apgd.cu); the deferred step scalars (core/sums.h, cuda/train_sums.cu) and
 * AdvProp's device targets (cuda/train_advprop.cu); Square's device Linf iterations
 * (cuda/attack_square.cu) against its host proposals; FAB's projection and FAB-T's device
 * iterations (cuda/attack_fab.cu) against al_fab_project and the host loop; APGD's device
 * bookkeeping (cuda/attack_apgd.cu) against the host schedule.
 * Without a usable GPU: "skipped: no GPU", exit 77.
 *
 * Conventions (as tests/test_cuda.c):
 * - Every device output sits between sentinel guards of a NaN-payload pattern; '=' outputs
 *   start filled with that NaN, so a kernel that skips an element or reads an output shows up.
 * - EXACT comparisons where both sides run the same float expression (shared AL_HOSTDEV element
 *   functions, --fmad=false): uniform start, row zeroing, CW per_sample/dlogits, augmentation.
 * - Losses: both sides evaluate the same DOUBLE expressions per row; they differ by the order
 *   of double sums and by libm vs CUDA exp/log (each within an ulp in double). With u = 2^-53
 *   and logits bounded by R: a row's lse is off by <= (K + 4 + R) u; p = exp(z - lse) by that
 *   relative; a KL-like sum of K terms p (lp - lq), |lp - lq| <= L, by <= (L + 2)(2K + 6 + R) u;
 *   a mean over N rows by N L u more: dbl_budget() (x4: two sides, slack). That is <= ~2e-10
 *   here, far below float rounding, so a float output differs by the one final rounding of
 *   each side (<= 1 ulp: rtol 2 eps) plus budget * (the output's scale factor 1/N, beta/N). */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attacks/apgd.h"
#include "attacks/attack.h"
#include "attacks/fab.h"
#include "attacks/square.h"
#include "core/config.h"
#include "core/ctx.h"
#include "core/cuda_api.h"
#include "core/methods/advprop_target.h"
#include "core/model.h"
#include "core/optim.h"
#include "core/rng.h"
#include "core/sums.h"
#include "datasets/sampler.h"
#include "harness/check.h"
#include "harness/devbuf.h"
#include "losses/ancra.h"
#include "losses/dfa.h"
#include "losses/loss.h"

#define U_DBL 1.1102230246251565e-16 /* 2^-53: unit roundoff of double */

static al_ctx cpu, gpu;

/* Test memory: tests/harness/devbuf.h (guarded device buffers, tracked host buffers). */
static void case_cleanup(void) {
    devbuf_release();
    al_clear_error();
}

#define OK(call) AL_TEST_OK(call)

/* ---------------------------------------------------------------- tolerances */

/* Spread of the log-probabilities of logits in [lo, hi] over K classes: |lp_j - lq_j| <=
 * (hi - lo) + log K for softmax logs, + 28 for MART's log(q + 1e-12) >= log(1e-12) = -27.6. */
static double log_spread(double lo, double hi, int k) { return (hi - lo) + log((double)k) + 28.0; }

/* Absolute double-level disagreement of a per-row KL-like quantity or its mean over N rows,
 * for logits bounded by R and log-probability differences bounded by L (file comment). */
static double dbl_budget(int n, int k, double L, double R) {
    return 4.0 * (L + 2.0) * (2.0 * k + n + 8.0 + R) * U_DBL;
}

/* Logits in [lo, hi]; quantise: multiples of 1/4 (ties in argmax / y2). */
static float *logits(int n, int k, uint64_t id, float lo, float hi, int quantise) {
    float *z = hrand((size_t)n * k, id, lo, hi);
    if (quantise)
        for (size_t i = 0; i < (size_t)n * k; i++) z[i] = roundf(z[i] * 4.0f) / 4.0f;
    return z;
}

/* ---------------------------------------------------------------- TRADES */

static int trades_one(int n, int k, float range, int quantise, int separate_kl) {
    fprintf(stderr, "  trades n=%d k=%d range=%g quantise=%d separate_kl=%d\n", n, k,
            (double)range, quantise, separate_kl);
    const size_t ne = (size_t)n * k;
    const float beta = 6.0f;
    float *zn = logits(n, k, 101, -range, range, quantise);
    float *zk = logits(n, k, 102, -range, range, quantise);
    float *za = logits(n, k, 103, -range, range, quantise);
    int32_t *y = hlabels(n, k, 104);
    double loss_c = 0, loss_g = 0, parts_c[2], parts_g[2];
    float *dn_c = hf(ne), *dk_c = hf(ne), *da_c = hf(ne);
    OK(al_trades_loss_cpu(&cpu, n, k, zn, separate_kl ? zk : NULL, za, y, beta, &loss_c, parts_c,
                          dn_c, separate_kl ? dk_c : NULL, da_c));
    float *gzn = dnewf(ne, zn), *gzk = dnewf(ne, zk), *gza = dnewf(ne, za);
    int32_t *gy = dnew((size_t)n * sizeof(int32_t), y);
    float *gdn = dnewf(ne, NULL), *gdk = dnewf(ne, NULL), *gda = dnewf(ne, NULL);
    /* through the dispatcher: the AL_DEV_CUDA branch of losses/trades.c */
    OK(al_trades_loss(&gpu, n, k, gzn, separate_kl ? gzk : NULL, gza, gy, beta, &loss_g, parts_g,
                      gdn, separate_kl ? gdk : NULL, gda));
    const double D = dbl_budget(n, k, log_spread(-range, range, k), range);
    const double inv_n = 1.0 / n, bn = (double)beta / n;
    int bad = 0;
    bad |= al_check_close_d("trades loss", &loss_g, &loss_c, 1, (1.0 + beta) * D, 0);
    bad |= al_check_close_d("trades parts", parts_g, parts_c, 2, D, 0);
    bad |= dcheck("trades dlogits_nat", gdn, dn_c, ne, (inv_n + bn) * D, 2 * AL_F32_EPS);
    if (separate_kl) bad |= dcheck("trades dlogits_nat_kl", gdk, dk_c, ne, bn * D, 2 * AL_F32_EPS);
    bad |= dcheck("trades dlogits_adv", gda, da_c, ne, bn * D, 2 * AL_F32_EPS);
    /* every output optional: loss alone */
    double loss_g2 = 0;
    OK(al_trades_loss(&gpu, n, k, gzn, separate_kl ? gzk : NULL, gza, gy, beta, &loss_g2, NULL,
                      NULL, NULL, NULL));
    AL_EXPECT(loss_g2 == loss_g, "trades loss without outputs %.17g != %.17g (determinism)",
              loss_g2, loss_g);
    return bad;
}

static int trades_kl_one(int n, int k, float range) {
    fprintf(stderr, "  trades_kl n=%d k=%d range=%g\n", n, k, (double)range);
    const size_t ne = (size_t)n * k;
    float *zn = logits(n, k, 111, -range, range, 0), *za = logits(n, k, 112, -range, range, 0);
    double loss_c = 0, loss_g = 0;
    float *ps_c = hf(n), *da_c = hf(ne);
    OK(al_trades_kl_cpu(&cpu, n, k, zn, za, &loss_c, ps_c, da_c));
    float *gzn = dnewf(ne, zn), *gza = dnewf(ne, za), *gps = dnewf(n, NULL), *gda = dnewf(ne, NULL);
    OK(al_trades_kl(&gpu, n, k, gzn, gza, &loss_g, gps, gda));
    const double D = dbl_budget(n, k, log_spread(-range, range, k), range);
    int bad = 0;
    bad |= al_check_close_d("trades_kl loss (sum)", &loss_g, &loss_c, 1, n * D, 0);
    bad |= dcheck("trades_kl per_sample", gps, ps_c, n, D, 2 * AL_F32_EPS);
    bad |= dcheck("trades_kl dlogits_adv", gda, da_c, ne, D, 2 * AL_F32_EPS);
    return bad;
}

static int case_trades(void) {
    int bad = 0;
    bad |= trades_one(1, 10, 8, 0, 1);     /* batch 1 */
    bad |= trades_one(7, 37, 8, 0, 0);     /* K % 32 != 0, shared KL target */
    bad |= trades_one(7, 37, 8, 0, 1);
    bad |= trades_one(300, 1000, 8, 0, 1); /* K > 32 lanes many times, N not a multiple of 8 */
    bad |= trades_one(129, 10, 4, 1, 0);   /* ties */
    bad |= trades_one(33, 37, 80, 0, 1);   /* large logits: softmax tails underflow */
    bad |= trades_kl_one(1, 10, 8);
    bad |= trades_kl_one(129, 37, 8);
    bad |= trades_kl_one(300, 1000, 80);
    return bad;
}

/* ---------------------------------------------------------------- MART */

static int mart_one(int n, int k, float range, int quantise) {
    fprintf(stderr, "  mart n=%d k=%d range=%g quantise=%d\n", n, k, (double)range, quantise);
    const size_t ne = (size_t)n * k;
    const float beta = 5.0f;
    float *zn = logits(n, k, 121, -range, range, quantise);
    float *za = logits(n, k, 122, -range, range, quantise);
    int32_t *y = hlabels(n, k, 123);
    double loss_c = 0, loss_g = 0, parts_c[2], parts_g[2];
    float *dn_c = hf(ne), *da_c = hf(ne);
    OK(al_mart_loss_cpu(&cpu, n, k, zn, za, y, beta, &loss_c, parts_c, dn_c, da_c));
    float *gzn = dnewf(ne, zn), *gza = dnewf(ne, za), *gdn = dnewf(ne, NULL), *gda = dnewf(ne, NULL);
    int32_t *gy = dnew((size_t)n * sizeof(int32_t), y);
    OK(al_mart_loss(&gpu, n, k, gzn, gza, gy, beta, &loss_g, parts_g, gdn, gda));
    /* c = 1.0001 - q_y2 + 1e-12 >= 1e-4: log(c) and q_y2 / c amplify q_y2's error by <= 1e4 */
    const double D = dbl_budget(n, k, log_spread(-range, range, k), range) * 1e4;
    const double inv_n = 1.0 / n, bn = (double)beta / n;
    int bad = 0;
    bad |= al_check_close_d("mart loss", &loss_g, &loss_c, 1, (1.0 + beta) * D, 0);
    bad |= al_check_close_d("mart parts", parts_g, parts_c, 2, D, 0);
    bad |= dcheck("mart dlogits_nat", gdn, dn_c, ne, bn * D, 2 * AL_F32_EPS);
    bad |= dcheck("mart dlogits_adv", gda, da_c, ne, (inv_n + bn) * D, 2 * AL_F32_EPS);
    return bad;
}

static int case_mart(void) {
    int bad = 0;
    bad |= mart_one(1, 2, 8, 0); /* smallest K */
    bad |= mart_one(1, 10, 8, 0);
    bad |= mart_one(7, 37, 8, 0);
    bad |= mart_one(129, 10, 2, 1); /* ties for y2: lowest index, as the twin */
    bad |= mart_one(300, 1000, 8, 0);
    bad |= mart_one(33, 37, 80, 0); /* q_y2 -> 1: c -> 1e-4 */
    return bad;
}

/* ---------------------------------------------------------------- CW margin */

static int cw_one(int n, int k, int targeted, int quantise) {
    fprintf(stderr, "  cw n=%d k=%d targeted=%d quantise=%d\n", n, k, targeted, quantise);
    const size_t ne = (size_t)n * k;
    float *z = logits(n, k, 131, -8, 8, quantise);
    int32_t *y = hlabels(n, k, 132);
    double loss_c = 0, loss_g = 0;
    float *ps_c = hf(n), *dz_c = hf(ne);
    OK(al_cw_margin_cpu(&cpu, n, k, z, y, targeted, &loss_c, ps_c, dz_c));
    float *gz = dnewf(ne, z), *gps = dnewf(n, NULL), *gdz = dnewf(ne, NULL);
    int32_t *gy = dnew((size_t)n * sizeof(int32_t), y);
    OK(al_cw_margin(&gpu, n, k, gz, gy, targeted, &loss_g, gps, gdz));
    int bad = 0;
    /* the same argmax and the same float/double expressions: exact */
    bad |= dcheck("cw per_sample", gps, ps_c, n, 0, 0);
    bad |= dcheck("cw dlogits", gdz, dz_c, ne, 0, 0);
    /* m_i are exact float differences (|m| <= 16); only the order of their double sum differs */
    bad |= al_check_close_d("cw loss", &loss_g, &loss_c, 1, 4.0 * n * 16.0 * U_DBL, 0);
    return bad;
}

static int case_cw(void) {
    int bad = 0;
    bad |= cw_one(1, 2, 0, 0);
    bad |= cw_one(1, 10, 1, 0);
    bad |= cw_one(7, 37, 0, 0);
    bad |= cw_one(129, 10, 0, 1); /* ties: lowest index */
    bad |= cw_one(129, 10, 1, 1);
    bad |= cw_one(300, 1000, 0, 0);
    return bad;
}

/* ---------------------------------------------------------------- DRSL penalty */

static int drsl_one(int n, int k, int variant, float range) {
    fprintf(stderr, "  drsl n=%d k=%d variant=%d range=%g\n", n, k, variant, (double)range);
    const size_t ne = (size_t)n * k;
    const float w = 0.37f;
    float *z = logits(n, k, 141, -range, range, 0);
    int32_t *y = hlabels(n, k, 142);
    float *acc = hrand(ne, 143, -1, 1); /* dlogits is accumulated: start from a CE-like gradient */
    float *dz_c = hf(ne);
    memcpy(dz_c, acc, ne * sizeof(float));
    double pen_c = 0, pen_g = 0, pen_g2 = 0;
    OK(al_drsl_penalty_cpu(&cpu, n, k, z, y, w, variant, &pen_c, dz_c));
    float *gz = dnewf(ne, z), *gdz = dnewf(ne, acc);
    int32_t *gy = dnew((size_t)n * sizeof(int32_t), y);
    OK(al_drsl_penalty(&gpu, n, k, gz, gy, w, variant, &pen_g, gdz));
    OK(al_drsl_penalty(&gpu, n, k, gz, gy, w, variant, &pen_g2, NULL)); /* NULL dlogits */
    int bad = 0;
    /* a sum of squares: only the order of the double sums differs (relative) */
    const double rt = 8.0 * (n + 2.0 * k + 8.0) * U_DBL;
    bad |= al_check_close_d("drsl pen", &pen_g, &pen_c, 1, 0, rt);
    bad |= al_check_close_d("drsl pen (no dlogits)", &pen_g2, &pen_c, 1, 0, rt);
    /* each added term |2w((z - m) - d/c)| <= 8 w R is rounded to float once on each side */
    bad |= dcheck("drsl dlogits (+=)", gdz, dz_c, ne, 8.0 * w * range * AL_F32_EPS, 2 * AL_F32_EPS);
    return bad;
}

static int case_drsl(void) {
    int bad = 0;
    for (int v = 0; v < 2; v++) {
        bad |= drsl_one(1, 2, v, 8); /* smallest K */
        bad |= drsl_one(7, 10, v, 8);
        bad |= drsl_one(129, 37, v, 8); /* K > 32: lanes stride */
        bad |= drsl_one(300, 1000, v, 30);
    }
    /* a label outside [0, K) is an error naming the row, as the twin */
    float *gz = dnewf(30, NULL);
    int32_t *gyb = dnew(3 * sizeof(int32_t), (int32_t[]){0, 10, 1});
    double pen = 0;
    al_status st = al_drsl_penalty(&gpu, 3, 10, gz, gyb, 1.0f, 0, &pen, NULL);
    if (st != AL_ERR_VALUE || !strstr(al_errmsg(), "index 1")) {
        fprintf(stderr, "  drsl bad label: got %s (%s)\n", al_status_str(st), al_errmsg());
        bad = 1;
    }
    al_clear_error();
    return bad;
}

/* ---------------------------------------------------------------- label-smoothed CE (NoFrost) */

static int xent_smooth_one(int n, int k, double sm, float range) {
    fprintf(stderr, "  xent_smooth n=%d k=%d s=%g range=%g\n", n, k, sm, (double)range);
    const size_t ne = (size_t)n * k;
    float *z = logits(n, k, 181, -range, range, 0);
    int32_t *y = hlabels(n, k, 182);
    double loss_c = 0, loss_g = 0, loss_g2 = 0;
    float *dz_c = hf(ne);
    OK(al_xent_smooth_cpu(&cpu, n, k, z, y, sm, 0.7, &loss_c, dz_c));
    float *gz = dnewf(ne, z), *gdz = dnewf(ne, NULL);
    int32_t *gy = dnew((size_t)n * sizeof(int32_t), y);
    OK(al_xent_smooth(&gpu, n, k, gz, gy, sm, 0.7, &loss_g, gdz));
    OK(al_xent_smooth(&gpu, n, k, gz, gy, sm, 0.7, &loss_g2, NULL));
    const double D = dbl_budget(n, k, log_spread(-range, range, k), range);
    int bad = 0;
    bad |= al_check_close_d("xent_smooth loss", &loss_g, &loss_c, 1, 0.7 * D, 0);
    bad |= al_check_close_d("xent_smooth loss (no dlogits)", &loss_g2, &loss_c, 1, 0.7 * D, 0);
    bad |= dcheck("xent_smooth dlogits", gdz, dz_c, ne, 0.7 / n * D, 2 * AL_F32_EPS);
    return bad;
}

static int case_xent_smooth(void) {
    int bad = 0;
    bad |= xent_smooth_one(1, 2, 0.1, 8);
    bad |= xent_smooth_one(7, 10, 0.1, 8);
    bad |= xent_smooth_one(129, 37, 0.3, 8);
    bad |= xent_smooth_one(300, 1000, 1.0, 30);
    bad |= xent_smooth_one(33, 10, 0.0, 80); /* s = 0: plain CE, saturated softmax */
    return bad;
}

/* ---------------------------------------------------------------- DLR loss (APGD-DLR / APGD-T) */

static int dlr_one(int n, int k, int targeted, int quantise) {
    fprintf(stderr, "  dlr n=%d k=%d targeted=%d quantise=%d\n", n, k, targeted, quantise);
    const size_t ne = (size_t)n * k;
    float *z = logits(n, k, 151, -8, 8, quantise);
    int32_t *y = hlabels(n, k, 152), *t = targeted ? hlabels(n, k, 153) : NULL;
    const float w = (float)n; /* APGD's weight: the gradient of the sum */
    double loss_c = 0, loss_g = 0, loss_g2 = 0;
    float *ps_c = hf(n), *dz_c = hf(ne);
    OK(al_dlr_loss_cpu(&cpu, n, k, z, y, t, w, &loss_c, ps_c, dz_c));
    float *gz = dnewf(ne, z), *gps = dnewf(n, NULL), *gdz = dnewf(ne, NULL);
    int32_t *gy = dnew((size_t)n * sizeof(int32_t), y);
    int32_t *gt = targeted ? dnew((size_t)n * sizeof(int32_t), t) : NULL;
    OK(al_dlr_loss(&gpu, n, k, gz, gy, gt, w, &loss_g, gps, gdz));
    OK(al_dlr_loss(&gpu, n, k, gz, gy, gt, w, &loss_g2, NULL, NULL));
    int bad = 0;
    /* one row function (losses/dlr_row.h) on both sides: exact */
    bad |= dcheck("dlr per_sample", gps, ps_c, n, 0, 0);
    bad |= dcheck("dlr dlogits", gdz, dz_c, ne, 0, 0);
    /* only the order of the double batch sum differs; |L_i| <= ~1e13 for a zero denominator
     * guard, so compare relative to the sum of |L_i| */
    double mag = 0;
    for (int i = 0; i < n; i++) mag += fabs((double)ps_c[i]) + 1.0;
    const double at = 4.0 * n * mag * w / n * U_DBL;
    bad |= al_check_close_d("dlr loss", &loss_g, &loss_c, 1, at, 0);
    bad |= al_check_close_d("dlr loss (no outputs)", &loss_g2, &loss_c, 1, at, 0);
    return bad;
}

static int case_dlr(void) {
    int bad = 0;
    for (int tg = 0; tg < 2; tg++) {
        bad |= dlr_one(1, 4, tg, 0);      /* smallest K of the targeted loss */
        bad |= dlr_one(7, 10, tg, 0);
        bad |= dlr_one(129, 10, tg, 1);   /* ties in the top-4 order: lower index first */
        bad |= dlr_one(300, 100, tg, 0);
    }
    /* a bad target is reported as the twin reports it (labels first) */
    float *gz = dnewf(30, NULL);
    int32_t *gy = dnew(3 * sizeof(int32_t), (int32_t[]){0, 1, 2});
    int32_t *gt = dnew(3 * sizeof(int32_t), (int32_t[]){1, 2, -1});
    double l = 0;
    al_status st = al_dlr_loss(&gpu, 3, 10, gz, gy, gt, 3.0f, &l, NULL, NULL);
    if (st != AL_ERR_VALUE || !strstr(al_errmsg(), "target -1 at index 2")) {
        fprintf(stderr, "  dlr bad target: got %s (%s)\n", al_status_str(st), al_errmsg());
        bad = 1;
    }
    al_clear_error();
    return bad;
}

/* ---------------------------------------------------------------- APGD step and row bookkeeping */

static int apgd_step_one(al_norm norm, int n, size_t d, int nonfinite) {
    fprintf(stderr, "  apgd step norm=%s n=%d d=%zu nonfinite=%d\n", norm == AL_LINF ? "linf" : "l2",
            n, d, nonfinite);
    const size_t nd = (size_t)n * d;
    const float eps = norm == AL_LINF ? 0.1f : 1.5f;
    float *x0 = hrand(nd, 161, 0, 1), *g = hrand(nd, 162, -1, 1), *eta = hrand(n, 163, 0, 2 * eps);
    float *x = hf(nd), *xp = hf(nd), *dx = hrand(nd, 164, -eps, eps), *dp = hrand(nd, 165, -eps, eps);
    for (size_t i = 0; i < nd; i++) {
        x[i] = al_clampf(x0[i] + dx[i], 0, 1);
        xp[i] = al_clampf(x0[i] + dp[i], 0, 1);
    }
    if (nonfinite) /* NaN/Inf gradients do not move; a non-finite iterate restarts at x0 */
        for (size_t i = 0; i < nd; i += 37) {
            g[i] = (i / 37) % 2 ? NAN : INFINITY;
            if (i % 3 == 0) x[i] = NAN;
            if (i % 5 == 0) xp[i] = -INFINITY;
        }
    float *gx = dnewf(nd, x), *gxp = dnewf(nd, xp), *gx0 = dnewf(nd, x0), *gg = dnewf(nd, g);
    float *geta = dnewf(n, eta), *gtmp = dnewf(nd, NULL);
    float *tmp = hf(nd);
    const float a = 0.75f;
    OK(al_apgd_step_cpu(&cpu, norm, n, d, x, xp, x0, g, eta, a, eps, tmp));
    OK(al_apgd_step(&gpu, norm, n, d, gx, gxp, gx0, gg, geta, a, eps, gtmp));
    int bad = 0;
    if (norm == AL_LINF) /* the same AL_HOSTDEV element function: exact */
        bad |= dcheck("apgd linf x", gx, x, nd, 0, 0);
    else /* the row norms differ in summation order only: a few float ulps of values in [0, 1] */
        bad |= dcheck("apgd l2 x", gx, x, nd, 16 * AL_F32_EPS, 0);
    bad |= dcheck("apgd x_prev", gxp, xp, nd, 0, 0); /* a copy of the (sanitised) iterate */
    return bad;
}

static int case_apgd_step(void) {
    int bad = 0;
    for (int nn = 0; nn < 2; nn++) {
        al_norm norm = nn ? AL_L2 : AL_LINF;
        bad |= apgd_step_one(norm, 1, 1, 0);
        bad |= apgd_step_one(norm, 5, 784, 0);    /* Fashion-MNIST rows */
        bad |= apgd_step_one(norm, 9, 3072, 1);   /* CIFAR rows, non-finite entries */
        bad |= apgd_step_one(norm, 3, 100003, 0); /* rows longer than a block's stride */
    }
    return bad;
}

static int case_apgd_rows(void) {
    int bad = 0;
    const int n = 37;
    const size_t d = 300, nd = (size_t)n * d;
    uint8_t ops[37];
    for (int p = 0; p < n; p++) ops[p] = (uint8_t)(p % 8); /* every combination, in order */
    float *h[5], *g[5];
    for (int i = 0; i < 5; i++) {
        h[i] = hrand(nd, 170 + (uint64_t)i, -1, 1);
        g[i] = dnewf(nd, h[i]);
    }
    uint8_t *gops = dnew(sizeof ops, ops);
    OK(al_apgd_rows_cpu(&cpu, ops, n, d, h[0], h[1], h[2], h[3], h[4]));
    OK(al_apgd_rows(&gpu, gops, n, d, g[0], g[1], g[2], g[3], g[4]));
    static const char *names[5] = {"apgd rows xa", "apgd rows grad", "apgd rows xbadv",
                                   "apgd rows xbest", "apgd rows gbest"};
    for (int i = 0; i < 5; i++) bad |= dcheck(names[i], g[i], h[i], nd, 0, 0);
    return bad;
}

/* ---------------------------------------------------------------- non-finite logits, labels */

static int case_loss_nonfinite(void) {
    /* NaN, +inf and -inf entries in z_nat / z_adv: NaN and Inf land where the twin's do */
    const int n = 4, k = 5;
    const size_t ne = (size_t)n * k;
    float zn[20] = {NAN, 1, 2, 3, 4, 1, NAN, 2, 3, 4, -INFINITY, 0, 1, 2, 3, INFINITY, 0, 1, 2, 3};
    float za[20] = {0, 1, 2, 3, 4, 4, 3, INFINITY, 1, 0, 1, 1, NAN, 1, 1, -INFINITY, 0, 0, 2, 3};
    int32_t y[4] = {1, 2, 0, 1};
    float *gzn = dnewf(ne, zn), *gza = dnewf(ne, za);
    int32_t *gy = dnew(sizeof y, y);
    int bad = 0;
    {
        double l_c, l_g, p_c[2], p_g[2];
        float dn_c[20], da_c[20];
        OK(al_trades_loss_cpu(&cpu, n, k, zn, NULL, za, y, 6.0f, &l_c, p_c, dn_c, NULL, da_c));
        float *gdn = dnewf(ne, NULL), *gda = dnewf(ne, NULL);
        OK(al_trades_loss(&gpu, n, k, gzn, NULL, gza, gy, 6.0f, &l_g, p_g, gdn, NULL, gda));
        bad |= al_check_close_d("trades non-finite parts", p_g, p_c, 2, 1e-12, 1e-12);
        bad |= dcheck("trades non-finite dnat", gdn, dn_c, ne, 1e-12, 2 * AL_F32_EPS);
        bad |= dcheck("trades non-finite dadv", gda, da_c, ne, 1e-12, 2 * AL_F32_EPS);
    }
    {
        double l_c, l_g;
        float ps_c[4], da_c[20];
        OK(al_trades_kl_cpu(&cpu, n, k, zn, za, &l_c, ps_c, da_c));
        float *gps = dnewf(n, NULL), *gda = dnewf(ne, NULL);
        OK(al_trades_kl(&gpu, n, k, gzn, gza, &l_g, gps, gda));
        bad |= al_check_close_d("trades_kl non-finite loss", &l_g, &l_c, 1, 1e-12, 1e-12);
        bad |= dcheck("trades_kl non-finite per_sample", gps, ps_c, n, 1e-12, 2 * AL_F32_EPS);
        bad |= dcheck("trades_kl non-finite dadv", gda, da_c, ne, 1e-12, 2 * AL_F32_EPS);
    }
    {
        double l_c, l_g, p_c[2], p_g[2];
        float dn_c[20], da_c[20];
        OK(al_mart_loss_cpu(&cpu, n, k, zn, za, y, 5.0f, &l_c, p_c, dn_c, da_c));
        float *gdn = dnewf(ne, NULL), *gda = dnewf(ne, NULL);
        OK(al_mart_loss(&gpu, n, k, gzn, gza, gy, 5.0f, &l_g, p_g, gdn, gda));
        bad |= al_check_close_d("mart non-finite parts", p_g, p_c, 2, 1e-12, 1e-12);
        bad |= dcheck("mart non-finite dnat", gdn, dn_c, ne, 1e-12, 2 * AL_F32_EPS);
        bad |= dcheck("mart non-finite dadv", gda, da_c, ne, 1e-12, 2 * AL_F32_EPS);
    }
    for (int t = 0; t <= 1; t++) {
        double l_c, l_g;
        float ps_c[4], dz_c[20];
        OK(al_cw_margin_cpu(&cpu, n, k, zn, y, t, &l_c, ps_c, dz_c));
        float *gps = dnewf(n, NULL), *gdz = dnewf(ne, NULL);
        OK(al_cw_margin(&gpu, n, k, gzn, gy, t, &l_g, gps, gdz));
        bad |= al_check_close_d("cw non-finite loss", &l_g, &l_c, 1, 1e-12, 1e-12);
        bad |= dcheck("cw non-finite per_sample", gps, ps_c, n, 0, 0);
        bad |= dcheck("cw non-finite dlogits", gdz, dz_c, ne, 0, 0);
    }
    /* a bad label: AL_ERR_VALUE naming the FIRST bad index, as the twins */
    int32_t yb[3] = {0, 12, -1};
    float *gz = dnewf(30, hrand(30, 133, -1, 1));
    int32_t *gyb = dnew(sizeof yb, yb);
    double l, parts[2];
    al_status st = al_trades_loss(&gpu, 3, 10, gz, NULL, gz, gyb, 6.0f, &l, parts, NULL, NULL, NULL);
    AL_EXPECT(st == AL_ERR_VALUE && strstr(al_errmsg(), "index 1"), "trades bad label: %s: %s",
              al_status_str(st), al_errmsg());
    st = al_mart_loss(&gpu, 3, 10, gz, gz, gyb, 5.0f, &l, parts, NULL, NULL);
    AL_EXPECT(st == AL_ERR_VALUE && strstr(al_errmsg(), "index 1"), "mart bad label: %s: %s",
              al_status_str(st), al_errmsg());
    st = al_cw_margin(&gpu, 3, 10, gz, gyb, 0, &l, NULL, NULL);
    AL_EXPECT(st == AL_ERR_VALUE && strstr(al_errmsg(), "index 1"), "cw bad label: %s: %s",
              al_status_str(st), al_errmsg());
    al_clear_error();
    return bad;
}

/* ---------------------------------------------------------------- attack random start */

/* The CPU start of attacks/attack.c start_point(), written out for a direct kernel check
 * (the same loops and element functions; al_attack_run below checks the real driver). */
static void start_ref(int init, al_norm norm, int n, size_t d, const float *x, float *out, float eps,
                      float init_std, int r, uint64_t seed, uint64_t stream) {
    memcpy(out, x, (size_t)n * d * sizeof(float));
    for (int i = 0; i < n; i++) {
        float *v = out + (size_t)i * d;
        if (init == AL_ATTACK_INIT_NORMAL) {
            for (size_t j = 0; j < d; j++)
                v[j] = al_attack_start_normal_elem(v[j], init_std, seed, stream,
                                                   al_attack_rng_index(r, n, i, d, j));
        } else if (norm == AL_LINF) {
            for (size_t j = 0; j < d; j++)
                v[j] = al_attack_start_uniform_elem(v[j], eps, seed, stream,
                                                    al_attack_rng_index(r, n, i, d, j));
        } else {
            double sq = 0.0;
            for (size_t j = 0; j < d; j++) {
                double g = al_rng_normal(seed, stream, al_attack_rng_index(r, n, i, d, j));
                sq += g * g;
            }
            const uint64_t rw = AL_ATTACK_RADIUS_WORD + (uint64_t)r * n + (uint64_t)i;
            const double radius = (double)eps * al_rng_uniform(seed, stream, rw);
            const float scale = sq > 0.0 ? (float)(radius / sqrt(sq)) : 0.0f;
            for (size_t j = 0; j < d; j++) {
                float g = al_rng_normal(seed, stream, al_attack_rng_index(r, n, i, d, j));
                v[j] = al_clampf(v[j] + scale * g, 0.0f, 1.0f);
            }
        }
    }
}

/* Normals g = r cos(t), r = sqrtf(-2 logf(u1)) <= 5.77 (u1 >= 2^-24): CUDA computes
 * cospif(2 u2), libm cosf(6.2831853f * u2), whose rounded argument moves cos by up to
 * 2 pi 2^-24 + 2 ulp ~ 6e-7 ABSOLUTE (not relative: near a zero of cos); logf/sqrtf add a few
 * ulps of r. So |dg| <= 5.77 * 6e-7 + 4 eps * 5.77 < G_ABS. A start x + s g then moves by
 * <= s G_ABS plus one rounding of the sum (|x + s g| <= 1 + s |g|): start_tol(). */
#define G_ABS 1e-5
static double start_tol(double s, double gmax) {
    return s * G_ABS + 2.0 * AL_F32_EPS * (1.0 + s * gmax);
}

static int start_one(int init, al_norm norm, int n, size_t d, int r) {
    fprintf(stderr, "  start init=%d norm=%s n=%d d=%zu r=%d\n", init,
            norm == AL_LINF ? "linf" : "l2", n, d, r);
    const size_t ne = (size_t)n * d;
    const float eps = norm == AL_LINF ? 8.0f / 255 : 0.5f, init_std = 0.001f;
    const uint64_t seed = 2024, stream = al_stream(AL_STREAM_ATTACK, 99);
    float *x = hrand(ne, 141, 0, 1);
    x[0] = 0.0f; /* the clamp's edges */
    x[ne - 1] = 1.0f;
    float *ref = hf(ne);
    start_ref(init, norm, n, d, x, ref, eps, init_std, r, seed, stream);
    float *gx = dnewf(ne, x), *gout = dnewf(ne, NULL);
    if (init == AL_ATTACK_INIT_NORMAL)
        OK(al_attack_start_normal_cuda(&gpu, n, d, gx, gout, init_std, r, seed, stream));
    else if (norm == AL_LINF)
        OK(al_attack_start_uniform_cuda(&gpu, n, d, gx, gout, eps, r, seed, stream));
    else
        OK(al_attack_start_l2_cuda(&gpu, n, d, gx, gout, eps, r, seed, stream));
    float *got = hf(ne);
    int bad = dget("start x", gout, got, ne * sizeof(float));
    double gmax = 0, gnorm_min = INFINITY; /* max |N(0,1)| drawn, min per-example ||g|| */
    for (int e = 0; e < n; e++) {
        double sq = 0;
        for (size_t j = 0; j < d; j++) {
            const double g = al_rng_normal(seed, stream, al_attack_rng_index(r, n, e, d, j));
            sq += g * g;
            if (fabs(g) > gmax) gmax = fabs(g);
        }
        if (sqrt(sq) < gnorm_min) gnorm_min = sqrt(sq);
    }
    if (init == AL_ATTACK_INIT_UNIFORM && norm == AL_LINF) {
        bad |= al_check_close("start uniform (exact)", got, ref, ne, 0, 0);
    } else if (init == AL_ATTACK_INIT_NORMAL) {
        bad |= al_check_close("start normal", got, ref, ne, start_tol(init_std, gmax), 0);
    } else {
        /* g is scaled by radius / ||g|| <= eps / min ||g||; that scale itself moves only by the
         * normals' relative error averaged over d terms plus double rounding (far smaller) */
        bad |= al_check_close("start l2", got, ref, ne, start_tol(eps / gnorm_min, gmax), 0);
        for (int e = 0; e < n; e++) { /* invariant: inside the ball (and [0,1]) */
            double dsq = 0;
            for (size_t j = 0; j < d; j++) {
                const double dl = (double)got[(size_t)e * d + j] - x[(size_t)e * d + j];
                dsq += dl * dl;
            }
            AL_EXPECT(sqrt(dsq) <= eps * (1 + 1e-5), "l2 start %d: ||delta|| %g > eps %g", e,
                      sqrt(dsq), (double)eps);
        }
    }
    if (init != AL_ATTACK_INIT_NORMAL)
        for (size_t i = 0; i < ne; i++)
            AL_EXPECT(got[i] >= 0.0f && got[i] <= 1.0f, "start x[%zu] = %g outside [0,1]", i,
                      (double)got[i]);
    return bad;
}

/* al_attack_run with steps = 0 and no per-point bookkeeping runs no forward at all: x_adv is
 * the start projected onto the ball and [0,1] (al_pgd_step with alpha 0). This checks the
 * CUDA branch of start_point() in attacks/attack.c end to end against its CPU path. */
static int driver_start_one(al_attack_init init, al_norm norm) {
    fprintf(stderr, "  al_attack_run steps=0 init=%d norm=%s\n", (int)init,
            norm == AL_LINF ? "linf" : "l2");
    const int B = 5;
    al_model *mc = NULL, *mg = NULL;
    OK(al_model_create("smallcnn", 10, 1, 28, &mc));
    OK(al_model_create("smallcnn", 10, 1, 28, &mg));
    OK(al_model_setup(&cpu, mc, B, 1));
    OK(al_model_setup(&gpu, mg, B, 1));
    const size_t d = 784, ne = (size_t)B * d;
    al_attack_spec s = al_attack_spec_make(AL_ATTACK_PGD, norm, norm == AL_LINF ? 0.1f : 1.0f,
                                           0.0f, 0);
    s.init = init;
    s.keep_clean_if_failed = 0;
    float *x = hrand(ne, 151, 0, 1);
    int32_t *y = hlabels(B, 10, 152);
    float *xa_c = hf(ne);
    OK(al_attack_run(&cpu, mc, &s, NULL, x, y, B, 77, 5, xa_c, NULL, NULL));
    float *gx = dnewf(ne, x), *gxa = dnewf(ne, NULL);
    int32_t *gy = dnew((size_t)B * sizeof(int32_t), y);
    OK(al_attack_run(&gpu, mg, &s, NULL, gx, gy, B, 77, 5, gxa, NULL, NULL));
    float *xa_g = hf(ne);
    int bad = dget("attack x_adv", gxa, xa_g, ne * sizeof(float));
    if (init == AL_ATTACK_INIT_UNIFORM && norm == AL_LINF)
        bad |= al_check_close("driver start uniform (exact)", xa_g, xa_c, ne, 0, 0);
    else if (init == AL_ATTACK_INIT_NORMAL) /* then the elementwise Linf projection: exact */
        bad |= al_check_close("driver start normal", xa_g, xa_c, ne, start_tol(s.init_std, 6.0),
                              0);
    else /* scale <= eps (||g|| >= 1 for d = 784 beyond any doubt), + the L2 projection's double
          * norms (test_cuda's pgd tolerance al_tol_f32(d)) */
        bad |= al_check_close("driver start l2", xa_g, xa_c, ne,
                              start_tol(s.eps, 6.0) + al_tol_f32((double)d), 0);
    al_model_destroy(&cpu, mc);
    al_model_destroy(&gpu, mg);
    return bad;
}

static int case_attack_start(void) {
    int bad = 0;
    bad |= start_one(AL_ATTACK_INIT_UNIFORM, AL_LINF, 1, 784, 0);
    bad |= start_one(AL_ATTACK_INIT_UNIFORM, AL_LINF, 3, 3073, 1); /* d not a block multiple */
    bad |= start_one(AL_ATTACK_INIT_NORMAL, AL_LINF, 3, 3073, 2);
    bad |= start_one(AL_ATTACK_INIT_UNIFORM, AL_L2, 1, 784, 0);
    bad |= start_one(AL_ATTACK_INIT_UNIFORM, AL_L2, 5, 3073, 3);
    bad |= start_one(AL_ATTACK_INIT_UNIFORM, AL_L2, 2, 100, 0); /* d < the block */
    bad |= driver_start_one(AL_ATTACK_INIT_UNIFORM, AL_LINF);
    bad |= driver_start_one(AL_ATTACK_INIT_NORMAL, AL_LINF);
    bad |= driver_start_one(AL_ATTACK_INIT_UNIFORM, AL_L2);
    return bad;
}

static int case_zero_rows(void) {
    const int n = 37;
    const size_t d = 1001;
    const size_t ne = (size_t)n * d;
    float *g = hrand(ne, 161, -1, 1);
    uint8_t *flag = hnew((size_t)n);
    for (int i = 0; i < n; i++) flag[i] = (uint8_t)(i % 3 == 0 ? 0 : i % 3); /* 0, 1 and 2 */
    int bad = 0;
    for (int sv = 0; sv <= 1; sv++) {
        float *ref = hf(ne);
        memcpy(ref, g, ne * sizeof(float));
        for (int i = 0; i < n; i++) /* attack.c: zero where h_flag (success) */
            if ((flag[i] != 0) == sv) memset(ref + (size_t)i * d, 0, d * sizeof(float));
        float *gg = dnewf(ne, g);
        uint8_t *gf = dnew((size_t)n, flag);
        OK(al_attack_zero_rows_cuda(&gpu, n, d, gg, gf, sv));
        bad |= dcheck(sv ? "zero rows (targeted)" : "zero rows (untargeted)", gg, ref, ne, 0, 0);
    }
    return bad;
}

/* ---------------------------------------------------------------- masked sum of squares */

static int sumsq_one(size_t n, int use_mask, unsigned bits) {
    fprintf(stderr, "  sumsq n=%zu mask=%d bits=%u\n", n, use_mask, bits);
    float *x = hrand(n, 171, -2, 2);
    uint8_t *mask = hnew(n);
    for (size_t i = 0; i < n; i++)
        mask[i] = (uint8_t)(al_rng_u32(3, al_stream(AL_STREAM_TEST, 172), i) & 3u);
    if (n > 10 && use_mask) { /* a non-finite value the mask excludes must not count */
        x[5] = NAN;
        mask[5] = 0;
    }
    double ref = 0.0;
    for (size_t i = 0; i < n; i++)
        if (!use_mask || (mask[i] & bits)) ref += (double)x[i] * (double)x[i];
    float *gx = dnewf(n, x);
    uint8_t *gm = dnew(n, mask);
    double got = -1, got2 = -2;
    OK(al_masked_sumsq_cuda(&gpu, n, gx, use_mask ? gm : NULL, bits, &got));
    OK(al_masked_sumsq_cuda(&gpu, n, gx, use_mask ? gm : NULL, bits, &got2));
    AL_EXPECT(memcmp(&got, &got2, sizeof got) == 0, "sumsq not deterministic: %.17g vs %.17g",
              got, got2);
    /* exact products, non-negative terms: each side's sum is within n u of the exact one */
    return al_check_close_d("sumsq", &got, &ref, 1, 0, 2.0 * (double)n * U_DBL);
}

/* al_optim_clip_coef on both backends (the CUDA branch of core/optim.c). */
static int clip_coef_check(void) {
    const int B = 2;
    al_model *mc = NULL, *mg = NULL;
    OK(al_model_create("smallcnn", 10, 1, 28, &mc));
    OK(al_model_create("smallcnn", 10, 1, 28, &mg));
    OK(al_model_setup(&cpu, mc, B, 1));
    OK(al_model_setup(&gpu, mg, B, 1));
    al_sgd_opts so = {0.9, 5e-4, 0, 0, 0.999};
    al_optim oc, og;
    memset(&oc, 0, sizeof oc);
    memset(&og, 0, sizeof og);
    OK(al_optim_init(&cpu, &oc, mc, &so));
    OK(al_optim_init(&gpu, &og, mg, &so));
    const size_t nf = mc->n_param_floats;
    float *g = hrand(nf, 181, -0.01f, 0.01f);
    memcpy(mc->grads, g, nf * sizeof(float));
    OK(al_copy_to_dev(&gpu, mg->grads, g, nf * sizeof(float)));
    double nc = 0, cc = 0, ng = 0, cg = 0;
    OK(al_optim_clip_coef(&cpu, &oc, mc, 0.5, &nc, &cc));
    OK(al_optim_clip_coef(&gpu, &og, mg, 0.5, &ng, &cg));
    fprintf(stderr, "  clip: norm cpu %.17g cuda %.17g; coef cpu %.17g cuda %.17g\n", nc, ng, cc,
            cg);
    const double tol = 2.0 * (double)nf * U_DBL; /* sqrt halves the sums' relative error */
    int bad = al_check_close_d("clip norm", &ng, &nc, 1, 0, tol);
    bad |= al_check_close_d("clip coef", &cg, &cc, 1, 0, 2 * tol);
    /* deferred (the trainer's path, core/sums.h): each backend's norm and coefficient exactly
     * as its immediate path, with no stream sync; then an SGD step scaled on the device by
     * that coefficient equals the CPU step scaled by the CPU's, bitwise, once both start from
     * the same coefficient (the same float rounding of the same double) */
    al_sums cs, *gs = dnew(sizeof(al_sums), NULL), h;
    OK(al_sums_reset(&cpu, &cs));
    OK(al_sums_reset(&gpu, gs));
    OK(al_sync(&gpu));
    const uint64_t s0 = al_cuda_sync_count(&gpu);
    OK(al_optim_clip_coef_deferred(&cpu, &oc, mc, 0.5, &cs));
    OK(al_optim_clip_coef_deferred(&gpu, &og, mg, 0.5, gs));
    AL_EXPECT(al_cuda_sync_count(&gpu) == s0, "deferred clipping synced %llu times",
              (unsigned long long)(al_cuda_sync_count(&gpu) - s0));
    bad |= dget("clip sums", gs, &h, sizeof h);
    AL_EXPECT(cs.grad_norm == nc && cs.clip_coef == cc && cs.bad_grad_step == -1,
              "CPU deferred clip: norm %.17g coef %.17g (immediate %.17g %.17g)", cs.grad_norm,
              cs.clip_coef, nc, cc);
    AL_EXPECT(h.grad_norm == ng && h.clip_coef == cg && h.bad_grad_step == -1,
              "CUDA deferred clip: norm %.17g coef %.17g (immediate %.17g %.17g)", h.grad_norm,
              h.clip_coef, ng, cg);
    al_config cfg;
    al_config_defaults(&cfg);
    float *p0 = hf(nf), *pg = hf(nf);
    OK(al_model_init_params(&cpu, mc, 3));
    OK(al_copy_to_dev(&gpu, mg->data, mc->data, nf * sizeof(float)));
    OK(al_copy_to_dev(&gpu, &gs->clip_coef, &cs.clip_coef, sizeof(double)));
    OK(al_optim_step_sched(&cpu, &oc, mc, &cfg.train, 10, cs.clip_coef));
    OK(al_optim_step_sched_dev(&gpu, &og, mg, &cfg.train, 10, &gs->clip_coef));
    memcpy(p0, mc->data, nf * sizeof(float));
    OK(al_copy_to_host(&gpu, pg, mg->data, nf * sizeof(float)));
    AL_EXPECT(memcmp(p0, pg, nf * sizeof(float)) == 0, "SGD with the device clip coefficient "
                                                       "differs from the host one");
    /* the same step with the coefficient 1 would differ: the scale was applied */
    AL_EXPECT(cs.clip_coef < 1.0, "test gradients too small to clip (coef %g)", cs.clip_coef);
    /* a NaN in a trainable gradient: refused with AL_ERR_NAN, as the CPU path */
    int pi = 0;
    while (pi < mc->n_params && !mc->params[pi].trainable) pi++;
    AL_EXPECT(pi < mc->n_params, "smallcnn has no trainable parameter");
    const float nan = NAN;
    OK(al_copy_to_dev(&gpu, mg->grads + mc->params[pi].offset, &nan, sizeof nan));
    al_status st = al_optim_clip_coef(&gpu, &og, mg, 0.5, &ng, &cg);
    AL_EXPECT(st == AL_ERR_NAN, "NaN gradient: %s", al_status_str(st));
    al_clear_error();
    /* deferred: recorded in the sums (step, norm), coefficient NaN */
    OK(al_sums_reset(&gpu, gs));
    OK(al_optim_clip_coef_deferred(&gpu, &og, mg, 0.5, gs));
    bad |= dget("clip sums (NaN)", gs, &h, sizeof h);
    AL_EXPECT(h.bad_grad_step == og.step && isnan(h.bad_grad_norm) && isnan(h.clip_coef),
              "deferred NaN gradient: bad_grad_step %lld (want %lld) norm %g coef %g",
              (long long)h.bad_grad_step, (long long)og.step, h.bad_grad_norm, h.clip_coef);
    al_optim_fini(&cpu, &oc);
    al_optim_fini(&gpu, &og);
    al_model_destroy(&cpu, mc);
    al_model_destroy(&gpu, mg);
    return bad;
}

static int case_sumsq(void) {
    int bad = 0;
    bad |= sumsq_one(1, 0, 1);
    bad |= sumsq_one(5, 1, 1);      /* fewer elements than chunks */
    bad |= sumsq_one(100003, 1, AL_OPT_TRAIN);
    bad |= sumsq_one(100003, 1, AL_OPT_DECAY);
    bad |= sumsq_one(1000003, 0, 1);
    bad |= clip_coef_check();
    return bad;
}

/* ---------------------------------------------------------------- batch assembly */

static int batch_one(int n_all, int n, int c, int h, int w, int pad, int use_rows) {
    fprintf(stderr, "  batch n_all=%d n=%d c=%d %dx%d pad=%d rows=%d\n", n_all, n, c, h, w, pad,
            use_rows);
    const size_t img = (size_t)c * h * w;
    uint8_t *all = hnew((size_t)n_all * img);
    for (size_t i = 0; i < (size_t)n_all * img; i++)
        all[i] = (uint8_t)al_rng_u32(4, al_stream(AL_STREAM_TEST, 191), i);
    all[0] = 0;
    all[1] = 255;
    int32_t *lab = hlabels(n_all, 10, 192);
    int64_t *rows = hnew((size_t)n * sizeof(int64_t));
    for (int i = 0; i < n; i++) /* repeats allowed, as any index list */
        rows[i] = use_rows ? (int64_t)(al_rng_u32(5, al_stream(AL_STREAM_TEST, 193), (uint64_t)i) %
                                       (uint32_t)n_all)
                           : i;
    /* CPU: train.c's host gather, then al_batch_to_float */
    uint8_t *bx = hnew((size_t)n * img);
    int32_t *by = hnew((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++) {
        memcpy(bx + (size_t)i * img, all + (size_t)rows[i] * img, img);
        by[i] = lab[rows[i]];
    }
    float *ref = hf((size_t)n * img);
    const uint64_t seed = 11, step = 123456789;
    al_batch_to_float(bx, n, c, h, w, pad, seed, step, ref);
    uint8_t *gall = dnew((size_t)n_all * img, all);
    int32_t *glab = dnew((size_t)n_all * sizeof(int32_t), lab);
    int64_t *grows = use_rows ? dnew((size_t)n * sizeof(int64_t), rows) : NULL;
    float *gout = dnewf((size_t)n * img, NULL);
    int32_t *gy = dnew((size_t)n * sizeof(int32_t), NULL);
    OK(al_batch_to_float_cuda(&gpu, gall, grows, n, c, h, w, pad, seed, step, gout));
    OK(al_gather_labels_cuda(&gpu, glab, grows, n, gy));
    int bad = 0;
    bad |= dcheck("batch images (exact)", gout, ref, (size_t)n * img, 0, 0);
    bad |= dcheck_bytes("batch labels", gy, by, (size_t)n * sizeof(int32_t));
    return bad;
}

static int case_batch(void) {
    int bad = 0;
    bad |= batch_one(50, 37, 3, 32, 32, 4, 1); /* CIFAR: crop 4 + flip */
    bad |= batch_one(50, 37, 3, 32, 32, 0, 1); /* no augmentation */
    bad |= batch_one(20, 1, 1, 28, 28, 2, 1);  /* batch 1, Fashion-MNIST shape */
    bad |= batch_one(9, 9, 2, 5, 7, 3, 0);     /* H != W, rows NULL (identity) */
    bad |= batch_one(9, 7, 2, 5, 7, 9, 1);     /* pad > H, W: some images all padding */
    return bad;
}

/* ---------------------------------------------------------------- hot path */

/* A set-up TRADES SmallCNN (K classes, 1x28x28, max batch B, one slot) on the GPU, seed 5. */
static al_status gpu_smallcnn(int B, int K, al_model **m) {
    AL_TRY(al_model_create("smallcnn", K, 1, 28, m));
    AL_TRY(al_model_setup(&gpu, *m, B, 1));
    return al_model_init_params(&gpu, *m, 5);
}

/* The attack loop waits on the device once per run: a training-mode PGD-10 (one restart, no
 * success wanted) with a workspace makes no device allocation and exactly one stream sync
 * (the first iteration's loss, which checks the labels), with and without early stopping
 * (its flags stay on the device). The loss calls without a host scalar give the same device
 * outputs as those with one. */
static int case_hot_path(void) {
    const int B = 8, K = 10;
    const size_t d = 784, ne = (size_t)B * d;
    al_model *mg = NULL;
    OK(gpu_smallcnn(B, K, &mg));
    float *x = hrand(ne, 191, 0, 1);
    int32_t *y = hlabels(B, K, 192);
    float *gx = dnewf(ne, x), *gxa = dnewf(ne, NULL);
    int32_t *gy = dnew((size_t)B * sizeof(int32_t), y);
    al_attack_ws ws;
    OK(al_attack_ws_init(&gpu, &ws, mg, B));
    int bad = 0;
    for (int es = 0; es <= 1; es++) {
        al_attack_spec s = al_attack_spec_make(AL_ATTACK_PGD, AL_LINF, 0.1f, 0.025f, 10);
        s.keep_clean_if_failed = 0;
        s.early_stop = es;
        OK(al_attack_run(&gpu, mg, &s, &ws, gx, gy, B, 7, 1, gxa, NULL, NULL)); /* warm-up */
        OK(al_sync(&gpu));
        const uint64_t s0 = al_cuda_sync_count(&gpu), a0 = al_cuda_alloc_count(&gpu);
        const uint64_t r0 = gpu.n_host_reads;
        OK(al_attack_run(&gpu, mg, &s, &ws, gx, gy, B, 7, 1, gxa, NULL, NULL));
        const uint64_t ds = al_cuda_sync_count(&gpu) - s0, dr = gpu.n_host_reads - r0;
        fprintf(stderr, "  PGD-10 early_stop=%d: %llu stream syncs, %llu host reads\n", es,
                (unsigned long long)ds, (unsigned long long)dr);
        AL_EXPECT(ds == 1 && dr == 1, "PGD-10 (early_stop %d): %llu syncs, %llu host reads (want 1)",
                  es, (unsigned long long)ds, (unsigned long long)dr);
        AL_EXPECT(al_cuda_alloc_count(&gpu) == a0, "PGD-10 allocated on the device");
    }
    /* loss == NULL / n_correct == NULL: same device outputs, no sync */
    const size_t nk = (size_t)B * K;
    float *z = hrand(nk, 193, -4, 4);
    float *gz = dnewf(nk, z), *gd1 = dnewf(nk, NULL), *gd2 = dnewf(nk, NULL);
    float *gp1 = dnewf((size_t)B, NULL), *gp2 = dnewf((size_t)B, NULL);
    uint8_t *gf1 = dnew((size_t)B, NULL), *gf2 = dnew((size_t)B, NULL);
    double l;
    int nc;
    OK(al_xent(&gpu, B, K, gz, gy, 1.0f, &l, gp1, gd1));
    OK(al_count_correct(&gpu, B, K, gz, gy, &nc, gf1));
    OK(al_sync(&gpu));
    const uint64_t s0 = al_cuda_sync_count(&gpu);
    OK(al_xent(&gpu, B, K, gz, gy, 1.0f, NULL, gp2, gd2));
    OK(al_count_correct(&gpu, B, K, gz, gy, NULL, gf2));
    OK(al_cw_margin(&gpu, B, K, gz, gy, 0, NULL, gp2, gd2));
    OK(al_dlr_loss(&gpu, B, K, gz, gy, NULL, 1.0f, NULL, gp2, gd2));
    OK(al_trades_kl(&gpu, B, K, gz, gz, NULL, gp2, gd2));
    AL_EXPECT(al_cuda_sync_count(&gpu) == s0, "a loss without a host scalar synced");
    OK(al_xent(&gpu, B, K, gz, gy, 1.0f, NULL, gp2, gd2));
    float *h1 = hf(nk), *h2 = hf(nk);
    bad |= dget("xent dlogits", gd1, h1, nk * sizeof(float));
    bad |= dget("xent dlogits (no scalar)", gd2, h2, nk * sizeof(float));
    AL_EXPECT(memcmp(h1, h2, nk * sizeof(float)) == 0, "xent dlogits differ without the scalar");
    uint8_t f1[8], f2[8];
    bad |= dget("flags", gf1, f1, (size_t)B);
    bad |= dget("flags (no count)", gf2, f2, (size_t)B);
    AL_EXPECT(memcmp(f1, f2, (size_t)B) == 0, "count_correct flags differ without the count");
    al_attack_ws_fini(&gpu, &ws);
    al_model_destroy(&gpu, mg);
    return bad;
}

/* ---------------------------------------------------------------- deferred step scalars */

/* The inputs of every op that can defer its host scalar (core/sums.h), on one backend. */
typedef struct {
    const float *z, *za, *zq, *e_mix, *e_a, *e_b, *w;
    const int32_t *y, *yb;
    float *g1, *g2, *g3, *ge1, *ge2, *ge3; /* gradient outputs */
} defer_in;
#define N_DEFER_OPS 11

/* Every deferring op once, host scalars into v[0..N_DEFER_OPS) (the count as a double). */
static al_status defer_ops(al_ctx *c, const defer_in *a, int n, int k, int dd, double *v) {
    int nc = -1;
    AL_TRY(al_xent(c, n, k, a->z, a->y, 0.7f, &v[0], NULL, a->g1));
    AL_TRY(al_count_correct(c, n, k, a->z, a->y, &nc, NULL));
    v[1] = nc;
    AL_TRY(al_trades_loss(c, n, k, a->z, a->zq, a->za, a->y, 6.0f, &v[2], NULL, a->g1, a->g2, a->g3));
    AL_TRY(al_trades_kl(c, n, k, a->z, a->za, &v[3], NULL, a->g1));
    AL_TRY(al_mart_loss(c, n, k, a->z, a->za, a->y, 5.0f, &v[4], NULL, a->g1, a->g2));
    AL_TRY(al_drsl_penalty(c, n, k, a->z, a->y, 0.5f, 0, &v[5], a->g1));
    AL_TRY(al_xent_smooth(c, n, k, a->z, a->y, 0.1, 0.8, &v[6], a->g1));
    AL_TRY(al_cw_margin(c, n, k, a->z, a->y, 0, &v[7], NULL, a->g1));
    AL_TRY(al_dlr_loss(c, n, k, a->z, a->y, NULL, 1.0f, &v[8], NULL, a->g1));
    AL_TRY(al_dfa_loss(c, n, dd, k, a->e_mix, a->e_a, a->e_b, a->w, 0.3f, a->y, a->yb, 0.1f, 7, 9,
                       &v[9], NULL, NULL, a->ge1, a->ge2, a->ge3));
    AL_TRY(al_ancra_head_loss(c, n, k, a->z, a->za, a->zq, a->y, NULL, 0.9f, 6.0f, 3.0f, 0.4f,
                              &v[10], NULL, a->g1, a->g2, a->g3));
    return AL_OK;
}

/* core/sums.h on both backends. With ctx->defer open every op above stores 0 in its host
 * output and adds its value to the sums: the CPU's sums are exactly its own values summed in
 * call order; the CUDA ops make NO stream sync and no host read, and their sums equal the
 * CUDA ops' immediate values (the same row sums; only the final scaling's rounding differs)
 * and the CPU's within the double budget. The CUDA fold (one launch) equals the CPU fold
 * bitwise from the same values, and records the first non-finite step; a bad label reaches
 * the sums on CUDA (the CPU twins fail at once); `parts` is refused; al_attack_run inside a
 * deferral adds nothing, makes no sync (no label-check read) and restores the deferral;
 * AdvProp's device targets are bitwise the CPU's. */
static int case_deferred(void) {
    const int B = 37, K = 10, D = 24;
    const size_t nk = (size_t)B * K, nd = (size_t)B * D;
    float *z = logits(B, K, 301, -5, 5, 0), *za = logits(B, K, 302, -5, 5, 0);
    float *zq = logits(B, K, 303, -5, 5, 0);
    float *em = hrand(nd, 304, -1, 1), *ea = hrand(nd, 305, -1, 1), *eb = hrand(nd, 306, -1, 1);
    float *w = hrand((size_t)K * D, 307, -0.5f, 0.5f);
    int32_t *y = hlabels(B, K, 308), *yb = hlabels(B, K, 309);
    defer_in hc = {z, za, zq, em, ea, eb, w, y, yb, hf(nk), hf(nk), hf(nk), hf(nd), hf(nd), hf(nd)};
    defer_in dc = {dnewf(nk, z), dnewf(nk, za), dnewf(nk, zq), dnewf(nd, em), dnewf(nd, ea),
                   dnewf(nd, eb), dnewf((size_t)K * D, w),
                   dnew((size_t)B * sizeof(int32_t), y), dnew((size_t)B * sizeof(int32_t), yb),
                   dnewf(nk, NULL), dnewf(nk, NULL), dnewf(nk, NULL), dnewf(nd, NULL),
                   dnewf(nd, NULL), dnewf(nd, NULL)};
    double vc[N_DEFER_OPS], vg[N_DEFER_OPS], zero[N_DEFER_OPS];
    OK(defer_ops(&cpu, &hc, B, K, D, vc));
    OK(defer_ops(&gpu, &dc, B, K, D, vg));
    double ref_c = 0, ref_g = 0, scale = 0;
    for (int i = 0; i < N_DEFER_OPS; i++)
        if (i != 1) {
            ref_c += vc[i];
            ref_g += vg[i];
            scale += fabs(vc[i]);
        }
    AL_EXPECT(vc[1] == vg[1], "correct count CPU %g CUDA %g", vc[1], vg[1]);

    /* CPU deferral: host outputs 0, sums = the values in call order, bitwise */
    al_sums cs;
    OK(al_sums_reset(&cpu, &cs));
    cpu.defer = &cs;
    al_status st = defer_ops(&cpu, &hc, B, K, D, zero);
    cpu.defer = NULL;
    OK(st);
    for (int i = 0; i < N_DEFER_OPS; i++) AL_EXPECT(zero[i] == 0.0, "CPU op %d host value %g", i, zero[i]);
    AL_EXPECT(cs.v[0] == ref_c && cs.v[1] == vc[1], "CPU sums %.17g / %g, want %.17g / %g", cs.v[0],
              cs.v[1], ref_c, vc[1]);

    /* CUDA deferral: no sync, no host read; one read brings the sums */
    al_sums *gs = dnew(sizeof(al_sums), NULL), h;
    OK(al_sums_reset(&gpu, gs));
    OK(al_sync(&gpu));
    const uint64_t s0 = al_cuda_sync_count(&gpu), r0 = gpu.n_host_reads;
    gpu.defer = gs;
    st = defer_ops(&gpu, &dc, B, K, D, zero);
    gpu.defer = NULL;
    OK(st);
    const uint64_t ds = al_cuda_sync_count(&gpu) - s0, dr = gpu.n_host_reads - r0;
    fprintf(stderr, "  %d deferred ops: %llu stream syncs, %llu host reads\n", N_DEFER_OPS,
            (unsigned long long)ds, (unsigned long long)dr);
    AL_EXPECT(ds == 0 && dr == 0, "deferred ops: %llu syncs, %llu host reads (want 0)",
              (unsigned long long)ds, (unsigned long long)dr);
    for (int i = 0; i < N_DEFER_OPS; i++) AL_EXPECT(zero[i] == 0.0, "CUDA op %d host value %g", i, zero[i]);
    int bad = dget("sums", gs, &h, sizeof h);
    AL_EXPECT(al_cuda_sync_count(&gpu) - s0 == 1, "reading the sums: %llu syncs",
              (unsigned long long)(al_cuda_sync_count(&gpu) - s0));
    const double tol_g = 64 * U_DBL * scale, tol_c = 1e-10 * (1 + scale);
    fprintf(stderr, "  sums CUDA %.17g, CUDA immediate %.17g, CPU %.17g; correct %g\n", h.v[0],
            ref_g, ref_c, h.v[1]);
    AL_EXPECT(fabs(h.v[0] - ref_g) <= tol_g, "CUDA sums %.17g vs its immediate values %.17g",
              h.v[0], ref_g);
    AL_EXPECT(fabs(h.v[0] - ref_c) <= tol_c, "CUDA sums %.17g vs CPU %.17g", h.v[0], ref_c);
    AL_EXPECT(h.v[1] == vc[1] && h.bad_index == -1 && h.bad_step == -1,
              "CUDA correct %g bad_index %d bad_step %lld", h.v[1], h.bad_index,
              (long long)h.bad_step);

    /* the fold: CUDA (one launch) vs CPU from the same values, bitwise; then a NaN step */
    al_sums hc_sums = h;
    OK(al_sums_fold(&gpu, gs, B, 41));
    al_sums_fold_elem(&hc_sums, B, 41);
    float *znan = hf(nk);
    memcpy(znan, z, nk * sizeof(float));
    znan[5] = NAN;
    float *dznan = dnewf(nk, znan);
    double l = -1;
    gpu.defer = gs;
    st = al_xent(&gpu, B, K, dznan, dc.y, 1.0f, &l, NULL, NULL);
    gpu.defer = NULL;
    OK(st);
    OK(al_xent(&cpu, B, K, znan, y, 1.0f, &l, NULL, NULL));
    hc_sums.v[0] += l;
    OK(al_sums_fold(&gpu, gs, B, 42));
    al_sums_fold_elem(&hc_sums, B, 42);
    bad |= dget("sums after two folds", gs, &h, sizeof h);
    /* field by field (the NaN step's NaNs may carry different payloads) */
#define SAME(u, v) ((u) == (v) || (isnan(u) && isnan(v)))
    AL_EXPECT(SAME(h.v[0], hc_sums.v[0]) && SAME(h.v[1], hc_sums.v[1]) &&
                  SAME(h.last[0], hc_sums.last[0]) && SAME(h.last[1], hc_sums.last[1]) &&
                  SAME(h.total[0], hc_sums.total[0]) && SAME(h.total[1], hc_sums.total[1]) &&
                  h.n == hc_sums.n && h.steps == hc_sums.steps && h.bad_step == hc_sums.bad_step,
              "folds: CUDA total %.17g / %g n %g steps %lld bad_step %lld; CPU total %.17g / %g "
              "n %g steps %lld bad_step %lld",
              h.total[0], h.total[1], h.n, (long long)h.steps, (long long)h.bad_step,
              hc_sums.total[0], hc_sums.total[1], hc_sums.n, (long long)hc_sums.steps,
              (long long)hc_sums.bad_step);
#undef SAME
    AL_EXPECT(h.bad_step == 42 && isnan(h.bad_loss) && h.steps == 2 && h.n == 2.0 * B,
              "NaN step: bad_step %lld (want 42), steps %lld, n %g", (long long)h.bad_step,
              (long long)h.steps, h.n);

    /* a bad label: recorded in the sums on CUDA, an immediate error on the CPU */
    int32_t *ybad = hnew((size_t)B * sizeof(int32_t));
    memcpy(ybad, y, (size_t)B * sizeof(int32_t));
    ybad[6] = K;
    ybad[9] = -1;
    int32_t *dybad = dnew((size_t)B * sizeof(int32_t), ybad);
    OK(al_sums_reset(&gpu, gs));
    gpu.defer = gs;
    st = al_xent(&gpu, B, K, dc.z, dybad, 1.0f, &l, NULL, NULL);
    gpu.defer = NULL;
    OK(st);
    bad |= dget("sums after a bad label", gs, &h, sizeof h);
    AL_EXPECT(h.bad_index == 6 && h.bad_label == K && h.bad_k == K,
              "bad label: index %d label %d k %d (want 6, %d, %d)", h.bad_index, h.bad_label,
              h.bad_k, K, K);
    cpu.defer = &cs;
    st = al_xent(&cpu, B, K, z, ybad, 1.0f, &l, NULL, NULL);
    cpu.defer = NULL;
    AL_EXPECT(st == AL_ERR_VALUE, "CPU deferred xent with a bad label: %s", al_status_str(st));
    al_clear_error();

    /* parts cannot be deferred */
    double parts[3];
    for (int u = 0; u < 2; u++) {
        al_ctx *c = u ? &gpu : &cpu;
        const defer_in *a = u ? &dc : &hc;
        c->defer = u ? gs : &cs;
        st = al_trades_loss(c, B, K, a->z, NULL, a->za, a->y, 6.0f, &l, parts, a->g1, NULL, a->g3);
        c->defer = NULL;
        AL_EXPECT(st == AL_ERR_VALUE && strstr(al_errmsg(), "parts"), "%s: parts deferred: %s",
                  u ? "CUDA" : "CPU", al_errmsg());
        al_clear_error();
    }

    /* an attack inside the deferral: suspended (nothing added), no sync, restored */
    al_model *mg = NULL;
    OK(gpu_smallcnn(B, K, &mg));
    float *x = hrand((size_t)B * 784, 310, 0, 1);
    float *gx = dnewf((size_t)B * 784, x), *gxa = dnewf((size_t)B * 784, NULL);
    al_attack_ws ws;
    OK(al_attack_ws_init(&gpu, &ws, mg, B));
    al_attack_spec sp = al_attack_spec_make(AL_ATTACK_PGD, AL_LINF, 0.1f, 0.025f, 3);
    sp.keep_clean_if_failed = 0;
    OK(al_sums_reset(&gpu, gs));
    OK(al_sync(&gpu));
    const uint64_t s1 = al_cuda_sync_count(&gpu);
    gpu.defer = gs;
    st = al_attack_run(&gpu, mg, &sp, &ws, gx, dc.y, B, 7, 1, gxa, NULL, NULL);
    AL_EXPECT(gpu.defer == gs, "al_attack_run did not restore the deferral");
    gpu.defer = NULL;
    OK(st);
    AL_EXPECT(al_cuda_sync_count(&gpu) == s1, "a deferred training attack synced %llu times",
              (unsigned long long)(al_cuda_sync_count(&gpu) - s1));
    bad |= dget("sums after an attack", gs, &h, sizeof h);
    AL_EXPECT(h.v[0] == 0.0 && h.v[1] == 0.0, "the attack added %g / %g to the sums", h.v[0], h.v[1]);
    al_attack_ws_fini(&gpu, &ws);
    al_model_destroy(&gpu, mg);

    /* AdvProp's targets on the device = the CPU's, never the label */
    int32_t *tc = hnew((size_t)B * sizeof(int32_t)), *dt = dnew((size_t)B * sizeof(int32_t), NULL);
    const uint64_t stream = al_stream(AL_STREAM_METHOD, 17);
    for (int i = 0; i < B; i++) {
        tc[i] = al_advprop_target(y[i], K, 11, stream, i);
        AL_EXPECT(tc[i] != y[i] && tc[i] >= 0 && tc[i] < K, "target %d of label %d", tc[i], y[i]);
    }
    OK(al_advprop_targets_cuda(&gpu, B, K, dc.y, 11, stream, dt));
    bad |= dcheck_bytes("advprop targets", dt, tc, (size_t)B * sizeof(int32_t));
    return bad;
}

/* ---------------------------------------------------------------- Square on the device */

/* A GPU SmallCNN with a random classifier (the TRADES init is zero: constant logits), B random
 * inputs *x (host) / *gx (device) and, as labels *gy, the model's own predictions: every point
 * starts correctly classified, so a score attack has work to do. x_id / w_id pick the draws. */
static al_status predicted_batch(int B, int K, uint64_t x_id, uint64_t w_id, al_model **mg,
                                 float **x, float **gx, int32_t **gy) {
    const size_t ne = (size_t)B * 784;
    AL_TRY(gpu_smallcnn(B, K, mg));
    const int fc = al_model_find_param(*mg, "classifier.fc3.weight");
    AL_ASSERT(fc >= 0, "smallcnn has no classifier.fc3.weight");
    const size_t nw = (*mg)->params[fc].n_elems;
    float *wfc = hrand(nw, w_id, -0.3f, 0.3f);
    AL_TRY(al_copy_to_dev(&gpu, (*mg)->data + (*mg)->params[fc].offset, wfc, nw * sizeof(float)));
    float *z = hf((size_t)B * K);
    *x = hrand(ne, x_id, 0, 1);
    *gx = dnewf(ne, *x);
    AL_TRY(al_model_forward_eval(&gpu, *mg, *gx, B, 0));
    AL_TRY(al_copy_to_host(&gpu, z, al_model_logits(*mg, 0), (size_t)B * K * sizeof(float)));
    int32_t *y = hnew((size_t)B * sizeof(int32_t));
    for (int i = 0; i < B; i++) {
        y[i] = 0;
        for (int j = 1; j < K; j++)
            if (z[(size_t)i * K + j] > z[(size_t)i * K + y[i]]) y[i] = j;
    }
    *gy = dnew((size_t)B * sizeof(int32_t), y);
    return AL_OK;
}

/* A device-iteration attack run (xa_d, ok_d: device) against the host loop's (xa_h, ok_h) on
 * the same GPU model and inputs x (host). exact: x_adv and the flags must be bitwise equal.
 * Otherwise the two differ by the order of double sums, so a near-tie decision may part a
 * point's trajectory: success counts within 2, at most 3 outcomes and at most 2 points'
 * x_adv (beyond 1e-4) may differ. Always: some but not all points fooled (the case has work
 * to do), every device success within eps of x, every failure the clean input. */
static int compare_runs(const char *what, al_norm norm, float eps, int B, size_t d,
                        const float *x, const float *xa_h, const uint8_t *ok_h, const float *xa_d,
                        const uint8_t *ok_d, int exact, uint64_t syncs) {
    const size_t ne = (size_t)B * d;
    uint8_t *fh = hnew((size_t)B), *fd = hnew((size_t)B);
    float *ph = hf(ne), *pd = hf(ne);
    int bad = dget("success (host)", ok_h, fh, (size_t)B);
    bad |= dget("success (device)", ok_d, fd, (size_t)B);
    bad |= dget("x_adv (host)", xa_h, ph, ne * sizeof(float));
    bad |= dget("x_adv (device)", xa_d, pd, ne * sizeof(float));
    int nh = 0, nd = 0, same = 0, parted = 0;
    double worst_out = 0, worst_diff = 0;
    for (int i = 0; i < B; i++) {
        nh += fh[i];
        nd += fd[i];
        same += fh[i] == fd[i];
        double dist = 0, diff = 0;
        for (size_t j = 0; j < d; j++) {
            const double v = fabs((double)pd[i * d + j] - (double)x[i * d + j]);
            dist = norm == AL_L2 ? dist + v * v : fmax(dist, v);
            if (fh[i] && fd[i]) diff = fmax(diff, fabs((double)pd[i * d + j] - (double)ph[i * d + j]));
        }
        if (norm == AL_L2) dist = sqrt(dist);
        worst_diff = fmax(worst_diff, diff);
        parted += diff > 1e-4;
        if (fd[i]) worst_out = fmax(worst_out, dist - eps);
        if (!fd[i])
            AL_EXPECT(memcmp(pd + i * d, x + i * d, d * sizeof(float)) == 0,
                      "%s: failed point %d is not the clean input", what, i);
    }
    fprintf(stderr, "  %s: host %d/%d fooled, device %d/%d, same outcome %d/%d, max |x_adv diff| "
                    "where both %.3g (%d points > 1e-4), device run %llu stream syncs\n",
            what, nh, B, nd, B, same, B, worst_diff, parted, (unsigned long long)syncs);
    AL_EXPECT(nh > 0 && nh < B, "%s: the host run fooled %d of %d (want some, not all)", what, nh, B);
    AL_EXPECT(worst_out <= 1e-6, "%s: a device success lies %g beyond eps", what, worst_out);
    if (exact) {
        AL_EXPECT(memcmp(ph, pd, ne * sizeof(float)) == 0 && memcmp(fh, fd, (size_t)B) == 0,
                  "%s: device and host runs differ (%d same outcomes, max diff %g)", what, same,
                  worst_diff);
    } else {
        AL_EXPECT(abs(nh - nd) <= 2 && same >= B - 3 && parted <= 2,
                  "%s: host %d, device %d fooled, %d same outcomes, %d parted", what, nh, nd,
                  same, parted);
    }
    return bad;
}

/* Square with its iterations on the device (cuda/attack_square.cu) against the host
 * proposals on the same GPU model (spec.host_proposals = 1): Linf bitwise equal (shared
 * element functions, the same forwards), L2 equal up to the order of double sums; the device
 * loop waits once per iteration (the query count) at most. */
static int case_square(void) {
    const int B = 24, K = 10;
    const size_t d = 784, ne = (size_t)B * d;
    al_model *mg = NULL;
    float *x, *gx;
    int32_t *gy;
    OK(predicted_batch(B, K, 401, 402, &mg, &x, &gx, &gy));
    int bad = 0;
    for (int u = 0; u < 2; u++) {
        const al_norm norm = u ? AL_L2 : AL_LINF;
        float *xa_h = dnewf(ne, NULL), *xa_d = dnewf(ne, NULL);
        uint8_t *ok_h = dnew((size_t)B, NULL), *ok_d = dnew((size_t)B, NULL);
        al_square_spec sp = al_square_spec_default(norm, u ? 2.0f : 0.2f);
        sp.n_queries = 60;
        sp.n_restarts = 2;
        sp.host_proposals = 1;
        OK(al_square_run(&gpu, mg, &sp, gx, gy, B, 13, 2, xa_h, ok_h));
        sp.host_proposals = 0;
        OK(al_sync(&gpu));
        const uint64_t s0 = al_cuda_sync_count(&gpu);
        OK(al_square_run(&gpu, mg, &sp, gx, gy, B, 13, 2, xa_d, ok_d));
        const uint64_t ds = al_cuda_sync_count(&gpu) - s0;
        bad |= compare_runs(u ? "square l2" : "square linf", norm, sp.eps, B, d, x, xa_h, ok_h,
                            xa_d, ok_d, !u, ds);
        AL_EXPECT(ds <= (uint64_t)sp.n_restarts * (sp.n_queries + 8) + 8,
                  "device Square loop: %llu syncs", (unsigned long long)ds);
    }
    al_model_destroy(&gpu, mg);
    return bad;
}

/* ---------------------------------------------------------------- APGD bookkeeping */

/* APGD with its per-iteration bookkeeping on the device (al_apgd_track_cuda /
 * al_apgd_check_cuda) against the host's (spec.host_schedule = 1) on the same GPU model:
 * the same float comparisons on the same losses, so x_adv, the success flags, the checkpoint
 * iterations and the points halved at each are bitwise equal; the device runs wait a fixed
 * number of times per run, not per iteration. APGD-CE Linf, APGD-T Linf (DLR, 2 targets),
 * APGD-CE L2. */
static int case_apgd_device(void) {
    const int B = 24, K = 10;
    const size_t d = 784, ne = (size_t)B * d;
    al_model *mg = NULL;
    float *x, *gx;
    int32_t *gy;
    OK(predicted_batch(B, K, 601, 602, &mg, &x, &gx, &gy));
    int bad = 0;
    static const char *const names[3] = {"apgd-ce linf", "apgd-t linf", "apgd-ce l2"};
    for (int u = 0; u < 3; u++) {
        al_apgd_spec sp = al_apgd_spec_default(u == 1 ? AL_APGD_T : AL_APGD_CE,
                                               u == 2 ? AL_L2 : AL_LINF, u == 2 ? 0.5f : 0.02f);
        sp.n_iter = 30;
        sp.n_target_classes = 2;
        float *xa[2] = {dnewf(ne, NULL), dnewf(ne, NULL)};
        uint8_t *ok[2] = {dnew((size_t)B, NULL), dnew((size_t)B, NULL)};
        int ns[2], checks[2], iters[2][64], halved[2][64];
        uint64_t syncs = 0;
        for (int v = 0; v < 2; v++) {
            al_apgd_ws ws;
            OK(al_apgd_ws_init(&gpu, &ws, mg, B, sp.n_iter));
            sp.host_schedule = v == 0;
            OK(al_sync(&gpu));
            const uint64_t s0 = al_cuda_sync_count(&gpu);
            OK(al_apgd_run(&gpu, mg, &sp, &ws, gx, gy, B, 31, 6, xa[v], ok[v], &ns[v], NULL));
            if (v == 1) syncs = al_cuda_sync_count(&gpu) - s0;
            checks[v] = ws.n_checks; /* of the last run */
            memcpy(iters[v], ws.check_iter, sizeof iters[v]);
            memcpy(halved[v], ws.check_halved, sizeof halved[v]);
            al_apgd_ws_fini(&gpu, &ws);
        }
        int tot = 0;
        for (int c = 0; c < checks[0]; c++) tot += halved[0][c];
        fprintf(stderr, "  %s: host schedule %d/%d fooled, device %d/%d; %d checkpoints, %d "
                        "halvings (last run); device run %llu stream syncs\n",
                names[u], ns[0], B, ns[1], B, checks[0], tot, (unsigned long long)syncs);
        AL_EXPECT(ns[0] > 0 && ns[0] < B, "%s: fooled %d of %d (want some, not all)", names[u],
                  ns[0], B);
        AL_EXPECT(tot > 0, "%s: no checkpoint halved a step (the test checks nothing)", names[u]);
        AL_EXPECT(ns[0] == ns[1] && checks[0] == checks[1] &&
                      memcmp(iters[0], iters[1], (size_t)checks[0] * sizeof(int)) == 0 &&
                      memcmp(halved[0], halved[1], (size_t)checks[0] * sizeof(int)) == 0,
                  "%s: host and device schedules differ (fooled %d / %d, checkpoints %d / %d)",
                  names[u], ns[0], ns[1], checks[0], checks[1]);
        float *h0 = hf(ne);
        bad |= dget("apgd x_adv (host schedule)", xa[0], h0, ne * sizeof(float));
        bad |= dcheck_bytes("apgd x_adv (device vs host schedule)", xa[1], h0, ne * sizeof(float));
        uint8_t f0[24];
        bad |= dget("apgd success (host schedule)", ok[0], f0, (size_t)B);
        bad |= dcheck_bytes("apgd success (device vs host schedule)", ok[1], f0, (size_t)B);
        const int runs = u == 1 ? sp.n_target_classes : 1;
        AL_EXPECT(syncs <= (uint64_t)(runs * 8 + 8), "%s: %llu syncs for %d runs of %d iterations",
                  names[u], (unsigned long long)syncs, runs, sp.n_iter);
    }
    al_model_destroy(&gpu, mg);
    return bad;
}

/* ---------------------------------------------------------------- FAB-T on the device */

/* One row's projection on the device vs al_fab_project (the host's sorted breakpoints): the
 * device brackets lambda by bisection and solves the same segment, so they agree up to the
 * order of double sums: moves within 1e-9 (they are <= 1), norms within 1e-9 relative. */
static int fab_project_one(al_norm norm, int n, double c, int zeros, uint64_t id) {
    float *t = hrand((size_t)n, id, 0, 1), *w = hrand((size_t)n, id + 1, -1, 1);
    for (int j = 0; j < n; j += zeros ? 3 : n) w[j] = 0.0f; /* inactive elements */
    double *d = hnew((size_t)n * sizeof(double)), *scratch = hnew((size_t)n * 4 * sizeof(double));
    const double nrm = al_fab_project(norm, (size_t)n, t, w, c, d, scratch);
    float *gt = dnewf((size_t)n, t), *gw = dnewf((size_t)n, w);
    double *gd = dnew((size_t)n * sizeof(double), NULL), *gn = dnew(sizeof(double), NULL);
    OK(al_fab_project_cuda(&gpu, norm, n, gt, gw, c, gd, gn));
    double *hd = hnew((size_t)n * sizeof(double)), hn;
    int bad = dget("fab moves", gd, hd, (size_t)n * sizeof(double));
    bad |= dget("fab norm", gn, &hn, sizeof hn);
    double worst = 0;
    for (int j = 0; j < n; j++) worst = fmax(worst, fabs(hd[j] - d[j]));
    fprintf(stderr, "  fab project %s n=%d c=%g: norm host %.17g device %.17g, max |move diff| "
                    "%.3g\n",
            norm == AL_LINF ? "linf" : "l2", n, c, nrm, hn, worst);
    AL_EXPECT(worst <= 1e-9 && fabs(hn - nrm) <= 1e-9 * (1.0 + nrm),
              "fab projection: moves differ by %g, norm %.17g vs %.17g", worst, hn, nrm);
    return bad;
}

/* FAB-T (Linf, L2) and untargeted FAB (Linf) with their iterations on the device
 * (cuda/attack_fab.cu) against the host loop on the same GPU model (spec.host_iterations =
 * 1): the projections agree up to rounding (compare_runs' tolerance; a step 10% short in the
 * kernel parts 17 of 24 points). */
static int case_fab(void) {
    int bad = 0;
    bad |= fab_project_one(AL_LINF, 1000, 3.0, 0, 501);
    bad |= fab_project_one(AL_LINF, 3072, -20.0, 1, 503);
    bad |= fab_project_one(AL_L2, 1000, 2.0, 1, 505);
    bad |= fab_project_one(AL_L2, 3072, -5.0, 0, 507);
    bad |= fab_project_one(AL_LINF, 784, 1e6, 0, 509); /* unreachable: every element to a face */
    bad |= fab_project_one(AL_L2, 784, 0.0, 0, 511);   /* on the hyperplane: no move */
    const int B = 24, K = 10;
    const size_t d = 784, ne = (size_t)B * d;
    al_model *mg = NULL;
    float *x, *gx;
    int32_t *gy;
    OK(predicted_batch(B, K, 513, 512, &mg, &x, &gx, &gy));
    static const char *const names[3] = {"fab-t linf", "fab-t l2", "fab linf (untargeted)"};
    for (int u = 0; u < 3; u++) {
        al_fab_spec sp = al_fab_spec_default(u == 1 ? AL_L2 : AL_LINF, u == 1 ? 0.6f : 0.03f);
        sp.n_iter = u == 2 ? 6 : 12; /* untargeted: K - 1 backward passes per iteration */
        sp.n_target_classes = 2;
        sp.n_restarts = 2; /* restart 1 starts at random: the host draws, uploaded per run */
        sp.targeted = u != 2;
        float *xa_h = dnewf(ne, NULL), *xa_d = dnewf(ne, NULL);
        uint8_t *ok_h = dnew((size_t)B, NULL), *ok_d = dnew((size_t)B, NULL);
        sp.host_iterations = 1;
        OK(al_fab_run(&gpu, mg, &sp, gx, gy, B, 21, 4, xa_h, ok_h));
        sp.host_iterations = 0;
        OK(al_sync(&gpu));
        const uint64_t s0 = al_cuda_sync_count(&gpu);
        OK(al_fab_run(&gpu, mg, &sp, gx, gy, B, 21, 4, xa_d, ok_d));
        const uint64_t ds = al_cuda_sync_count(&gpu) - s0;
        bad |= compare_runs(names[u], sp.norm, sp.eps, B, d, x, xa_h, ok_h, xa_d, ok_d, 0, ds);
        /* waits: per run (round x restart) the copies in and out, none per iteration */
        const int runs = (sp.targeted ? sp.n_target_classes : 1) * sp.n_restarts;
        AL_EXPECT(ds <= (uint64_t)(runs * 4 + 8), "device %s: %llu syncs for %d runs", names[u],
                  (unsigned long long)ds, runs);
    }
    al_model_destroy(&gpu, mg);
    return bad;
}

/* ---------------------------------------------------------------- main */

#define CASE(fn)                                                                           \
    static int run_##fn(void) {                                                            \
        int rc = fn();                                                                     \
        case_cleanup();                                                                    \
        return rc;                                                                         \
    }
CASE(case_trades)
CASE(case_mart)
CASE(case_cw)
CASE(case_drsl)
CASE(case_xent_smooth)
CASE(case_dlr)
CASE(case_apgd_step)
CASE(case_apgd_rows)
CASE(case_loss_nonfinite)
CASE(case_attack_start)
CASE(case_zero_rows)
CASE(case_sumsq)
CASE(case_batch)
CASE(case_hot_path)
CASE(case_deferred)
CASE(case_square)
CASE(case_fab)
CASE(case_apgd_device)

int main(int argc, char **argv) {
    if (al_test_no_gpu()) return AL_SKIP_CODE;
    if (al_ctx_init(&cpu, AL_DEV_CPU, 0, 0, 42) != AL_OK ||
        al_ctx_init(&gpu, AL_DEV_CUDA, 0, 0, 42) != AL_OK) {
        fprintf(stderr, "context init failed: %s\n", al_errmsg());
        return 1;
    }
    devbuf_use(&gpu);
    gpu.deterministic = 1;
    static const al_case cases[] = {
        {"trades", run_case_trades},
        {"mart", run_case_mart},
        {"cw", run_case_cw},
        {"drsl", run_case_drsl},
        {"xent_smooth", run_case_xent_smooth},
        {"dlr", run_case_dlr},
        {"apgd_step", run_case_apgd_step},
        {"apgd_rows", run_case_apgd_rows},
        {"loss_nonfinite", run_case_loss_nonfinite},
        {"attack_start", run_case_attack_start},
        {"zero_rows", run_case_zero_rows},
        {"sumsq", run_case_sumsq},
        {"batch", run_case_batch},
        {"hot_path", run_case_hot_path},
        {"deferred", run_case_deferred},
        {"square", run_case_square},
        {"fab", run_case_fab},
        {"apgd_device", run_case_apgd_device},
    };
    int rc = al_run_cases(cases, (int)AL_ARRAY_LEN(cases), argc, argv);
    al_ctx_fini(&gpu);
    al_ctx_fini(&cpu);
    return rc;
}
