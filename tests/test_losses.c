/* test_losses.c: losses/ (CE, argmax accuracy, TRADES loss + attack KL, MART, CW margin).
 * Oracles (style rule 21): (b) the float implementation's gradients against 4-point central
 * finite differences of an independent double implementation written here (naive softmax via
 * probabilities, the way the official code writes each loss); (c) PyTorch (float64 autograd on
 * the same float32 inputs) through tests/torch/losses_ref.py; plus stability at +-80 and +-1e4
 * logits, tie rules and bad labels. Tolerances: c * eps_f32 * sqrt(K) scaled by each output's
 * natural magnitude (1/n per gradient entry, (1 + beta) for the two-term losses). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "harness/check.h"
#include "losses/loss.h"

/* ---------------------------------------------------------------- double references */

static void softmax_d(const double *z, int k, double *p) {
    double m = z[0], s = 0;
    for (int j = 1; j < k; j++) m = z[j] > m ? z[j] : m;
    for (int j = 0; j < k; j++) s += (p[j] = exp(z[j] - m));
    for (int j = 0; j < k; j++) p[j] /= s;
}
/* KL(p || q) as PyTorch's KLDivLoss(input = log q, target = p): sum p (log p - log q), 0 log 0 = 0
 */
static double kl_d(const double *p, const double *logq, int k) {
    double s = 0;
    for (int j = 0; j < k; j++) s += p[j] > 0 ? p[j] * (log(p[j]) - logq[j]) : 0.0;
    return s;
}

typedef struct fd_ctx {
    int n, k, which, targeted;
    const int32_t *y;
    double beta, weight;
    const double *fixed; /* trades_kl: z_nat (n,k) */
} fd_ctx;
enum { L_XENT, L_TRADES2, L_TRADES1, L_TRADES_KL, L_MART, L_CW };

static double loss_ref(const double *x, void *user) {
    const fd_ctx *c = user;
    const int n = c->n, k = c->k;
    const size_t nk = (size_t)n * k;
    double p[64], q[64], lq[64], tot = 0;
    for (int i = 0; i < n; i++) {
        const int y = c->y[i];
        const size_t o = (size_t)i * k;
        switch (c->which) {
        case L_XENT:
            softmax_d(x + o, k, p);
            tot += -log(p[y]) * c->weight / n;
            break;
        case L_TRADES2:
        case L_TRADES1: {
            const double *zn = x + o, *zk = c->which == L_TRADES2 ? x + nk + o : zn;
            const double *za = x + (c->which == L_TRADES2 ? 2 : 1) * nk + o;
            softmax_d(zn, k, p);
            tot += -log(p[y]) / n;
            softmax_d(zk, k, p);
            softmax_d(za, k, q);
            for (int j = 0; j < k; j++) lq[j] = log(q[j]);
            tot += c->beta / n * kl_d(p, lq, k);
            break;
        }
        case L_TRADES_KL:
            softmax_d(c->fixed + o, k, p);
            softmax_d(x + o, k, q);
            for (int j = 0; j < k; j++) lq[j] = log(q[j]);
            tot += kl_d(p, lq, k);
            break;
        case L_MART: {
            softmax_d(x + o, k, p);      /* nat */
            softmax_d(x + nk + o, k, q); /* adv */
            int y2 = -1;
            for (int j = 0; j < k; j++)
                if (j != y && (y2 < 0 || q[j] > q[y2])) y2 = j;
            tot += (-log(q[y]) - log(1.0001 - q[y2] + 1e-12)) / n;
            for (int j = 0; j < k; j++) lq[j] = log(q[j] + 1e-12);
            tot += c->beta / n * kl_d(p, lq, k) * (1.0000001 - p[y]);
            break;
        }
        case L_CW: {
            const double *z = x + o;
            double mo = -INFINITY;
            for (int j = 0; j < k; j++)
                if (j != y && z[j] > mo) mo = z[j];
            tot += (c->targeted ? z[y] - mo : mo - z[y]) / n;
            break;
        }
        }
    }
    return tot;
}

/* Smallest gap between the two largest logits excluding the label, over rows (max/argmax
 * kinks of CW and MART's y2 must be further than the FD stencil from every test point). */
static double min_gap_excl(const float *z, const int32_t *y, int n, int k) {
    double g = INFINITY;
    for (int i = 0; i < n; i++) {
        double a = -INFINITY, b = -INFINITY;
        for (int j = 0; j < k; j++) {
            if (j == y[i]) continue;
            double v = z[(size_t)i * k + j];
            if (v > a) {
                b = a;
                a = v;
            } else if (v > b) {
                b = v;
            }
        }
        if (a - b < g) g = a - b;
    }
    return g;
}

typedef struct inputs {
    int n, k;
    float *zn, *zk, *za;
    int32_t *y, *t;
} inputs;

/* Logits uniform in [-scale, scale) plus, when `spread`, one row pushed to +-scale extremes. */
static inputs make_inputs(int n, int k, uint64_t id, float scale) {
    inputs in = {n, k, NULL, NULL, NULL, NULL, NULL};
    size_t nk = (size_t)n * k;
    in.zn = malloc(nk * sizeof(float));
    in.zk = malloc(nk * sizeof(float));
    in.za = malloc(nk * sizeof(float));
    in.y = malloc((size_t)n * sizeof(int32_t));
    in.t = malloc((size_t)n * sizeof(int32_t));
    al_test_fill(in.zn, nk, id, -scale, scale);
    al_test_fill(in.zk, nk, id + 1, -scale, scale);
    al_test_fill(in.za, nk, id + 2, -scale, scale);
    float u[256];
    al_test_fill(u, (size_t)2 * n, id + 3, 0.0f, 1.0f);
    for (int i = 0; i < n; i++) {
        in.y[i] = (int32_t)(u[i] * k) % k;
        in.t[i] = (in.y[i] + 1 + (int32_t)(u[n + i] * (k - 1))) % k; /* t != y */
    }
    return in;
}
static void free_inputs(inputs *in) {
    free(in->zn);
    free(in->zk);
    free(in->za);
    free(in->y);
    free(in->t);
}

static double *to_d(const float *a, size_t n, double *out) {
    for (size_t i = 0; i < n; i++) out[i] = a[i];
    return out;
}

/* ---------------------------------------------------------------- FD cases */

static int fd_check_one(al_ctx *ctx, int n, int k, uint64_t id, float scale, float beta) {
    inputs in = make_inputs(n, k, id, scale);
    const size_t nk = (size_t)n * k;
    const double h = 1e-3;
    AL_EXPECT(min_gap_excl(in.za, in.y, n, k) > 10 * h, "adv logits too close to a MART y2 tie");
    AL_EXPECT(min_gap_excl(in.zn, in.y, n, k) > 10 * h, "logits too close to a CW tie");
    AL_EXPECT(min_gap_excl(in.zn, in.t, n, k) > 10 * h, "logits too close to a CW tie");
    double *x = malloc(3 * nk * sizeof(double)), *g = malloc(3 * nk * sizeof(double));
    double *zfix = malloc(nk * sizeof(double));
    float *d1 = malloc(nk * sizeof(float)), *d2 = malloc(nk * sizeof(float));
    float *d3 = malloc(nk * sizeof(float)), *fg = malloc(3 * nk * sizeof(float));
    double loss, ref;
    int bad = 0;
    char what[128];
    const double gscale = (1.0 + beta) / n; /* magnitude of a gradient entry */
    const double gtol = al_tol_f32(k) * gscale, vtol = al_tol_f32((double)n * k);
    fd_ctx c = {n, k, 0, 0, in.y, beta, 1.0, NULL};

    /* CE, weight -0.5 (the attack's targeted sign flip uses a negative weight) */
    c.which = L_XENT;
    c.weight = -0.5;
    AL_EXPECT(al_xent(ctx, n, k, in.zn, in.y, -0.5f, &loss, NULL, d1) == AL_OK, "%s", al_errmsg());
    to_d(in.zn, nk, x);
    ref = loss_ref(x, &c);
    al_fd_grad(loss_ref, &c, x, nk, h, g);
    snprintf(what, sizeof what, "xent value n=%d k=%d s=%g", n, k, scale);
    bad |= al_check_close_d(what, &loss, &ref, 1, vtol * fabs(ref), vtol);
    snprintf(what, sizeof what, "xent dz vs FD n=%d k=%d s=%g", n, k, scale);
    bad |= al_check_close_fd(what, d1, g, nk, al_tol_f32(k) / n, al_tol_f32(k));

    /* TRADES with two clean forwards: gradient w.r.t. all three logit sets */
    c.which = L_TRADES2;
    AL_EXPECT(al_trades_loss(ctx, n, k, in.zn, in.zk, in.za, in.y, beta, &loss, NULL, d1, d2, d3) ==
                  AL_OK,
              "%s", al_errmsg());
    to_d(in.zn, nk, x);
    to_d(in.zk, nk, x + nk);
    to_d(in.za, nk, x + 2 * nk);
    ref = loss_ref(x, &c);
    al_fd_grad(loss_ref, &c, x, 3 * nk, h, g);
    memcpy(fg, d1, nk * sizeof(float));
    memcpy(fg + nk, d2, nk * sizeof(float));
    memcpy(fg + 2 * nk, d3, nk * sizeof(float));
    snprintf(what, sizeof what, "trades value n=%d k=%d s=%g", n, k, scale);
    bad |= al_check_close_d(what, &loss, &ref, 1, vtol * fabs(ref), vtol);
    snprintf(what, sizeof what, "trades d(nat,nat2,adv) vs FD n=%d k=%d s=%g", n, k, scale);
    bad |= al_check_close_fd(what, fg, g, 3 * nk, gtol, al_tol_f32(k));

    /* TRADES with one clean forward (KL gradient joins dlogits_nat) */
    c.which = L_TRADES1;
    AL_EXPECT(al_trades_loss(ctx, n, k, in.zn, NULL, in.za, in.y, beta, &loss, NULL, d1, NULL,
                             d3) == AL_OK,
              "%s", al_errmsg());
    to_d(in.zn, nk, x);
    to_d(in.za, nk, x + nk);
    ref = loss_ref(x, &c);
    al_fd_grad(loss_ref, &c, x, 2 * nk, h, g);
    memcpy(fg, d1, nk * sizeof(float));
    memcpy(fg + nk, d3, nk * sizeof(float));
    snprintf(what, sizeof what, "trades(shared) value n=%d k=%d s=%g", n, k, scale);
    bad |= al_check_close_d(what, &loss, &ref, 1, vtol * fabs(ref), vtol);
    snprintf(what, sizeof what, "trades(shared) d(nat,adv) vs FD n=%d k=%d", n, k);
    bad |= al_check_close_fd(what, fg, g, 2 * nk, gtol, al_tol_f32(k));

    /* TRADES attack KL (sum, p_nat fixed) */
    c.which = L_TRADES_KL;
    c.fixed = to_d(in.zn, nk, zfix);
    AL_EXPECT(al_trades_kl(ctx, n, k, in.zn, in.za, &loss, NULL, d3) == AL_OK, "%s", al_errmsg());
    to_d(in.za, nk, x);
    ref = loss_ref(x, &c);
    al_fd_grad(loss_ref, &c, x, nk, h, g);
    snprintf(what, sizeof what, "trades_kl value n=%d k=%d s=%g", n, k, scale);
    bad |= al_check_close_d(what, &loss, &ref, 1, vtol * fabs(ref), vtol);
    snprintf(what, sizeof what, "trades_kl dadv vs FD n=%d k=%d s=%g", n, k, scale);
    bad |= al_check_close_fd(what, d3, g, nk, al_tol_f32(k), al_tol_f32(k));

    /* MART: gradient w.r.t. both (nothing detached) */
    c.which = L_MART;
    AL_EXPECT(al_mart_loss(ctx, n, k, in.zn, in.za, in.y, beta, &loss, NULL, d1, d3) == AL_OK, "%s",
              al_errmsg());
    to_d(in.zn, nk, x);
    to_d(in.za, nk, x + nk);
    ref = loss_ref(x, &c);
    al_fd_grad(loss_ref, &c, x, 2 * nk, h, g);
    memcpy(fg, d1, nk * sizeof(float));
    memcpy(fg + nk, d3, nk * sizeof(float));
    snprintf(what, sizeof what, "mart value n=%d k=%d s=%g", n, k, scale);
    bad |= al_check_close_d(what, &loss, &ref, 1, vtol * fabs(ref), vtol);
    snprintf(what, sizeof what, "mart d(nat,adv) vs FD n=%d k=%d s=%g", n, k, scale);
    bad |= al_check_close_fd(what, fg, g, 2 * nk, gtol, al_tol_f32(k));

    /* CW margin, both forms */
    for (int targeted = 0; targeted <= 1; targeted++) {
        c.which = L_CW;
        c.targeted = targeted;
        c.y = targeted ? in.t : in.y;
        AL_EXPECT(al_cw_margin(ctx, n, k, in.zn, c.y, targeted, &loss, NULL, d1) == AL_OK, "%s",
                  al_errmsg());
        to_d(in.zn, nk, x);
        ref = loss_ref(x, &c);
        al_fd_grad(loss_ref, &c, x, nk, h, g);
        snprintf(what, sizeof what, "cw(targeted=%d) value n=%d k=%d", targeted, n, k);
        bad |= al_check_close_d(what, &loss, &ref, 1, vtol * fabs(ref) + vtol, vtol);
        snprintf(what, sizeof what, "cw(targeted=%d) dz vs FD n=%d k=%d", targeted, n, k);
        bad |= al_check_close_fd(what, d1, g, nk, al_tol_f32(k) / n, al_tol_f32(k));
        c.y = in.y;
    }
    free(x), free(g), free(zfix), free(d1), free(d2), free(d3), free(fg);
    free_inputs(&in);
    return bad;
}

static int case_fd(void) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 1) == AL_OK, "%s", al_errmsg());
    int bad = 0;
    bad |= fd_check_one(&ctx, 1, 10, 100, 4.0f, 6.0f); /* batch 1 */
    bad |= fd_check_one(&ctx, 5, 10, 110, 4.0f, 6.0f);
    bad |= fd_check_one(&ctx, 3, 7, 120, 4.0f, 1.0f);   /* K not a power of two */
    bad |= fd_check_one(&ctx, 4, 10, 130, 80.0f, 6.0f); /* extreme logits: p underflows in f32 */
    bad |= fd_check_one(&ctx, 2, 2, 140, 4.0f, 6.0f);   /* binary */
    al_ctx_fini(&ctx);
    return bad;
}

/* ---------------------------------------------------------------- PyTorch reference */

static int torch_check_one(al_ctx *ctx, int n, int k, uint64_t id, float scale, float beta) {
    const float weight = 0.75f;
    inputs in = make_inputs(n, k, id, scale);
    const size_t nk = (size_t)n * k;
    char pin[512], pout[512], cmd[2048], what[128];
    snprintf(pin, sizeof pin, "%s/losses_in_%llu.bin", al_test_tmpdir(), (unsigned long long)id);
    snprintf(pout, sizeof pout, "%s/losses_out_%llu.bin", al_test_tmpdir(), (unsigned long long)id);
    FILE *f = fopen(pin, "wb");
    AL_EXPECT(f, "cannot write %s", pin);
    fwrite(in.zn, sizeof(float), nk, f);
    fwrite(in.zk, sizeof(float), nk, f);
    fwrite(in.za, sizeof(float), nk, f);
    fwrite(in.y, sizeof(int32_t), (size_t)n, f);
    fwrite(in.t, sizeof(int32_t), (size_t)n, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s %s/tests/torch/losses_ref.py %s %s %d %d %.9g %.9g",
             al_test_python(), al_test_source_dir(), pin, pout, n, k, (double)beta, (double)weight);
    int rc = system(cmd);
    if (rc != 0) {
        /* torch missing is an environment problem, not a loss bug: skip, loudly */
        fprintf(stderr, "  python reference failed (rc %d): %s\n", rc, cmd);
        free_inputs(&in);
        return AL_SKIP_CODE;
    }
    /* expected layout, see losses_ref.py */
    size_t n_ref = (1 + n + nk) + (1 + n) + (3 + 3 * nk) + (1 + 2 * nk) + (1 + n + nk) +
                   (3 + 2 * nk) + 2 * (1 + n + nk);
    double *r = malloc(n_ref * sizeof(double));
    f = fopen(pout, "rb");
    AL_EXPECT(f, "cannot read %s", pout);
    size_t got = fread(r, sizeof(double), n_ref, f);
    fclose(f);
    AL_EXPECT(got == n_ref, "reference has %zu values, expected %zu", got, n_ref);

    float *ps = malloc((size_t)n * sizeof(float)), *d1 = malloc(nk * sizeof(float));
    float *d2 = malloc(nk * sizeof(float)), *d3 = malloc(nk * sizeof(float));
    uint8_t *corr = malloc((size_t)n);
    double loss, parts[2];
    int bad = 0, ncorr;
    const double vt = al_tol_f32((double)nk);               /* a value sums n*k terms */
    const double gt = al_tol_f32(k), gs = (1.0 + beta) / n; /* gradient entry: K terms */
    const double *p = r;
#define CMP_D(name, val, cnt, scl)                                                                 \
    do {                                                                                           \
        snprintf(what, sizeof what, "%s n=%d k=%d s=%g", name, n, k, scale);                       \
        bad |= al_check_close_d(what, val, p, cnt, vt * (scl), vt);                                \
        p += cnt;                                                                                  \
    } while (0)
#define CMP_F(name, val, cnt, atol)                                                                \
    do {                                                                                           \
        snprintf(what, sizeof what, "%s n=%d k=%d s=%g", name, n, k, scale);                       \
        bad |= al_check_close_fd(what, val, p, cnt, atol, gt);                                     \
        p += cnt;                                                                                  \
    } while (0)

    AL_EXPECT(al_xent(ctx, n, k, in.zn, in.y, weight, &loss, ps, d1) == AL_OK, "%s", al_errmsg());
    CMP_D("torch xent loss", &loss, 1, 1 + fabs(loss));
    CMP_F("torch xent per_sample", ps, (size_t)n, gt * (1 + scale));
    CMP_F("torch xent dz", d1, nk, gt * weight / n);

    AL_EXPECT(al_count_correct(ctx, n, k, in.zn, in.y, &ncorr, corr) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(ncorr == (int)p[0], "count_correct %d, torch %d", ncorr, (int)p[0]);
    for (int i = 0; i < n; i++) AL_EXPECT(corr[i] == (uint8_t)p[1 + i], "correct[%d]", i);
    p += 1 + n;

    AL_EXPECT(al_trades_loss(ctx, n, k, in.zn, in.zk, in.za, in.y, beta, &loss, parts, d1, d2,
                             d3) == AL_OK,
              "%s", al_errmsg());
    CMP_D("torch trades loss", &loss, 1, 1 + fabs(loss));
    CMP_D("torch trades CE part", &parts[0], 1, 1 + fabs(parts[0]));
    CMP_D("torch trades KL part", &parts[1], 1, 1 + fabs(parts[1]));
    CMP_F("torch trades dnat", d1, nk, gt * gs);
    CMP_F("torch trades dnat2", d2, nk, gt * gs);
    CMP_F("torch trades dadv", d3, nk, gt * gs);

    AL_EXPECT(al_trades_loss(ctx, n, k, in.zn, NULL, in.za, in.y, beta, &loss, NULL, d1, NULL,
                             d3) == AL_OK,
              "%s", al_errmsg());
    CMP_D("torch trades(shared) loss", &loss, 1, 1 + fabs(loss));
    CMP_F("torch trades(shared) dnat", d1, nk, gt * gs);
    CMP_F("torch trades(shared) dadv", d3, nk, gt * gs);

    AL_EXPECT(al_trades_kl(ctx, n, k, in.zn, in.za, &loss, ps, d3) == AL_OK, "%s", al_errmsg());
    CMP_D("torch trades_kl loss", &loss, 1, 1 + fabs(loss));
    CMP_F("torch trades_kl per_sample", ps, (size_t)n, gt * (1 + 2 * scale));
    CMP_F("torch trades_kl dadv", d3, nk, gt);

    AL_EXPECT(al_mart_loss(ctx, n, k, in.zn, in.za, in.y, beta, &loss, parts, d1, d3) == AL_OK,
              "%s", al_errmsg());
    CMP_D("torch mart loss", &loss, 1, 1 + fabs(loss));
    CMP_D("torch mart BCE part", &parts[0], 1, 1 + fabs(parts[0]));
    CMP_D("torch mart KLw part", &parts[1], 1, 1 + fabs(parts[1]));
    CMP_F("torch mart dnat", d1, nk, gt * gs * (1 + 2 * scale)); /* KL_i ~ 2*scale multiplies */
    /* q_y2 (1 - q_y2) / c <= 1: the NLL term's gradient stays O(1/n) even near c = 1e-4 */
    CMP_F("torch mart dadv", d3, nk, gt * gs);

    for (int targeted = 0; targeted <= 1; targeted++) {
        AL_EXPECT(al_cw_margin(ctx, n, k, in.zn, targeted ? in.t : in.y, targeted, &loss, ps, d1) ==
                      AL_OK,
                  "%s", al_errmsg());
        CMP_D(targeted ? "torch cw(t) loss" : "torch cw loss", &loss, 1, 1 + fabs(loss));
        CMP_F(targeted ? "torch cw(t) per_sample" : "torch cw per_sample", ps, (size_t)n,
              gt * (1 + 2 * scale));
        CMP_F(targeted ? "torch cw(t) dz" : "torch cw dz", d1, nk, gt / n);
    }
#undef CMP_D
#undef CMP_F
    AL_EXPECT(p == r + n_ref, "consumed %td of %zu reference values", p - r, n_ref);
    free(r), free(ps), free(d1), free(d2), free(d3), free(corr);
    free_inputs(&in);
    return bad;
}

static int case_torch(void) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 1) == AL_OK, "%s", al_errmsg());
    int rc = 0, r;
    const struct {
        int n, k;
        uint64_t id;
        float scale, beta;
    } sets[] = {
        {1, 10, 200, 4.0f, 6.0f},  {8, 10, 210, 4.0f, 6.0f},   {5, 7, 220, 2.0f, 1.0f},
        {6, 10, 230, 80.0f, 6.0f}, {3, 100, 240, 10.0f, 5.0f}, {4, 2, 250, 4.0f, 6.0f},
    };
    for (size_t s = 0; s < AL_ARRAY_LEN(sets); s++) {
        r = torch_check_one(&ctx, sets[s].n, sets[s].k, sets[s].id, sets[s].scale, sets[s].beta);
        if (r == AL_SKIP_CODE) {
            al_ctx_fini(&ctx);
            return AL_SKIP_CODE;
        }
        rc |= r;
    }
    al_ctx_fini(&ctx);
    return rc;
}

/* ---------------------------------------------------------------- stability, edge cases */

static int all_finite(const float *a, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(a[i])) return 0;
    return 1;
}

/* Logits far beyond float exp range (+-1e4): everything stays finite and exact limits hold. */
static int case_huge_logits(void) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 1) == AL_OK, "%s", al_errmsg());
    const int n = 2, k = 3;
    const float zn[6] = {1e4f, -1e4f, 0.0f, -1e4f, 1e4f, 1e4f};
    const float za[6] = {-1e4f, 1e4f, 0.0f, 1e4f, -1e4f, 0.0f};
    const int32_t y[2] = {1, 0};
    float d1[6], d2[6], ps[2];
    double loss, parts[2];
    AL_EXPECT(al_xent(&ctx, n, k, zn, y, 1.0f, &loss, ps, d1) == AL_OK, "%s", al_errmsg());
    /* row 0: CE = 2e4, grad = (1, -1, 0)/n exactly; row 1: CE = 2e4 + log 2 */
    AL_EXPECT(fabs(ps[0] - 2e4) < 1e-2 && fabs(ps[1] - (2e4 + log(2.0))) < 1e-2, "CE %g %g", ps[0],
              ps[1]);
    AL_EXPECT(d1[0] == 0.5f && d1[1] == -0.5f && d1[2] == 0.0f, "CE grad row 0: %g %g %g", d1[0],
              d1[1], d1[2]);
    AL_EXPECT(al_trades_loss(&ctx, n, k, zn, NULL, za, y, 6.0f, &loss, parts, d1, NULL, d2) ==
                  AL_OK,
              "%s", al_errmsg());
    AL_EXPECT(isfinite(loss) && all_finite(d1, 6) && all_finite(d2, 6), "TRADES not finite");
    AL_EXPECT(al_trades_kl(&ctx, n, k, zn, za, &loss, ps, d2) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(isfinite(loss) && all_finite(d2, 6) && all_finite(ps, 2), "TRADES KL not finite");
    AL_EXPECT(al_mart_loss(&ctx, n, k, zn, za, y, 6.0f, &loss, parts, d1, d2) == AL_OK, "%s",
              al_errmsg());
    AL_EXPECT(isfinite(loss) && all_finite(d1, 6) && all_finite(d2, 6), "MART not finite");
    /* MART log(q + 1e-12) caps the KL per class at ~27.6 + |lp|: row 0's KL is finite */
    AL_EXPECT(al_cw_margin(&ctx, n, k, zn, y, 0, &loss, ps, d1) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(ps[0] == 2e4f && ps[1] == 2e4f, "CW %g %g", ps[0], ps[1]);
    al_ctx_fini(&ctx);
    return 0;
}

/* Ties: argmax and the CW/MART "best other class" take the lowest index; bad labels fail. */
static int case_ties_and_labels(void) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 1) == AL_OK, "%s", al_errmsg());
    const float z[8] = {1, 3, 3, 0, /* row 1: NaN counts as the max */ 0, NAN, 5, 0};
    const int32_t y1[2] = {1, 1}, y2[2] = {2, 2}, ybad[2] = {0, 4}, yneg[2] = {-1, 0};
    int nc;
    uint8_t corr[2];
    AL_EXPECT(al_count_correct(&ctx, 2, 4, z, y1, &nc, corr) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(nc == 2 && corr[0] && corr[1], "ties/NaN: nc=%d", nc);
    AL_EXPECT(al_count_correct(&ctx, 2, 4, z, y2, &nc, corr) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(nc == 0, "tie must go to index 1, not 2");
    float d[4], ps[1];
    double loss;
    const int32_t y0[1] = {0};
    AL_EXPECT(al_cw_margin(&ctx, 1, 4, z, y0, 0, &loss, ps, d) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(ps[0] == 2.0f && d[1] == 1.0f && d[2] == 0.0f && d[0] == -1.0f, "CW tie subgradient");
    AL_EXPECT(al_xent(&ctx, 2, 4, z, ybad, 1.0f, &loss, NULL, NULL) == AL_ERR_VALUE,
              "label 4 of 4");
    AL_EXPECT(strstr(al_errmsg(), "index 1") != NULL, "message names the index: %s", al_errmsg());
    AL_EXPECT(al_xent(&ctx, 2, 4, z, yneg, 1.0f, &loss, NULL, NULL) == AL_ERR_VALUE, "label -1");
    AL_EXPECT(al_mart_loss(&ctx, 2, 4, z, z, ybad, 1.0f, &loss, NULL, NULL, NULL) == AL_ERR_VALUE,
              "mart bad label");
    AL_EXPECT(al_cw_margin(&ctx, 1, 1, z, y0, 0, &loss, NULL, NULL) == AL_ERR_VALUE, "CW k=1");
    AL_EXPECT(al_trades_loss(&ctx, 1, 4, z, NULL, z, y0, 1.0f, &loss, NULL, d, d, d) ==
                  AL_ERR_VALUE,
              "dlogits_nat_kl without logits_nat_kl");
    /* identical nat/adv logits: KL = 0 and the TRADES KL gradients vanish */
    float dn[4], dk[4], da[4];
    double parts[2];
    AL_EXPECT(al_trades_loss(&ctx, 1, 4, z, z, z, y0, 6.0f, &loss, parts, dn, dk, da) == AL_OK,
              "%s", al_errmsg());
    AL_EXPECT(fabs(parts[1]) < 1e-15, "KL(p||p) = %g", parts[1]);
    for (int j = 0; j < 4; j++) AL_EXPECT(fabsf(dk[j]) < 1e-7f && fabsf(da[j]) < 1e-7f, "j=%d", j);
#ifndef AL_HAVE_CUDA
    al_ctx cuda = ctx;
    cuda.device = AL_DEV_CUDA;
    /* every loss dispatcher refuses through the one AL_CUDA_OR_FAIL, naming itself */
#define NO_GPU(name, call)                                                                     \
    do {                                                                                       \
        const al_status st_ = (call);                                                          \
        AL_EXPECT(st_ == AL_ERR_NO_GPU &&                                                      \
                      strstr(al_errmsg(), name ": the context's device is CUDA"),              \
                  "%s on a no-GPU build: %s: %s", name, al_status_str(st_), al_errmsg());      \
    } while (0)
    NO_GPU("al_xent", al_xent(&cuda, 1, 4, z, y0, 1.0f, &loss, NULL, NULL));
    NO_GPU("al_trades_kl", al_trades_kl(&cuda, 1, 4, z, z, &loss, NULL, NULL));
    NO_GPU("al_mart_loss", al_mart_loss(&cuda, 1, 4, z, z, y0, 6.0f, &loss, NULL, NULL, NULL));
    NO_GPU("al_cw_margin", al_cw_margin(&cuda, 1, 4, z, y0, 0, &loss, NULL, NULL));
    NO_GPU("al_drsl_penalty", al_drsl_penalty(&cuda, 1, 4, z, y0, 1.0f, 0, &loss, NULL));
    NO_GPU("al_xent_smooth", al_xent_smooth(&cuda, 1, 4, z, y0, 0.1, 1.0, &loss, NULL));
    NO_GPU("al_dlr_loss", al_dlr_loss(&cuda, 1, 4, z, y0, NULL, 1.0f, &loss, NULL, NULL));
#undef NO_GPU
    al_clear_error();
#endif
    al_ctx_fini(&ctx);
    return 0;
}

int main(int argc, char **argv) {
    static const al_case cases[] = {
        {"fd", case_fd},
        {"torch", case_torch},
        {"huge_logits", case_huge_logits},
        {"ties_and_labels", case_ties_and_labels},
    };
    return al_run_cases(cases, (int)AL_ARRAY_LEN(cases), argc, argv);
}
