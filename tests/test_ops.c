/* test_ops.c: the CPU ops (core/ops/ C files) against the double references (harness/refops.c),
 * and the references against finite differences.
 *   fd_*     (a) central 4-point finite differences of each DOUBLE reference's backward, on a
 *                scalar L = sum(w_out * y) with random w_out (skipping points whose stencil
 *                would cross a ReLU / max-pool kink).
 *   vs_ref_* (b) every float32 CPU op, forward and backward, vs the double reference; the
 *                tolerance of a value that reduces K products is al_tol_f32(K) relative to the
 *                RMS of the reference (see check_f). Write modes are checked on pre-filled
 *                buffers (dw/db '+=', dx '=' over a NaN sentinel, dx '+=' with dx_accum), and
 *                NULL gradients are skipped.
 *   determinism_* (c) two runs with the same thread count give bit-identical results.
 * Thread counts 1, 2 and 3 are all exercised (3 leaves uneven static partitions). */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/ops/batchnorm.h"
#include "core/ops/conv2d.h"
#include "core/ops/elementwise.h"
#include "core/ops/linear.h"
#include "core/ops/pool.h"
#include "core/rng.h"
#include "harness/check.h"
#include "harness/refops.h"

/* ------------------------------------------------------------------ helpers */

static double *dalloc(size_t n) {
    double *p = calloc(n ? n : 1, sizeof *p);
    AL_ASSERT(p, "out of memory");
    return p;
}
static float *falloc(size_t n) {
    float *p = calloc(n ? n : 1, sizeof *p);
    AL_ASSERT(p, "out of memory");
    return p;
}
static void f2d(const float *f, double *d, size_t n) {
    for (size_t i = 0; i < n; i++) d[i] = f[i];
}
static double rms_d(const double *a, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += a[i] * a[i];
    return n ? sqrt(s / (double)n) : 0.0;
}
static void fill_nan(float *a, size_t n) {
    for (size_t i = 0; i < n; i++) a[i] = NAN;
}

/* Test-input ids: every array of every case draws its own Philox stream. */
static uint64_t g_id = 1000;
static uint64_t next_id(void) { return g_id++; }

/* float result vs double reference for values that each reduce K products (rounded inputs are
 * exact in both, so only the float arithmetic differs): a recursive or blocked float sum of K
 * terms of size t errs by about eps*t*K^(1/2..1), the value itself is about t*sqrt(K), so the
 * error relative to the RMS output is bounded by c*eps*sqrt(K) = al_tol_f32(K). */
static int check_f(const char *what, const float *got, const double *ref, size_t n, double k) {
    double tol = al_tol_f32(k);
    double scale = rms_d(ref, n);
    return al_check_close_fd(what, got, ref, n, tol * (scale > 0 ? scale : 1e-30), tol);
}

/* Stale scratch must never leak into results: poison it with NaN before an op. */
static void poison_scratch(al_ctx *ctx) { fill_nan(ctx->scratch, ctx->scratch_bytes / sizeof(float)); }

static void ctx_init_threads(al_ctx *ctx, int threads) {
    al_status st = al_ctx_init(ctx, AL_DEV_CPU, 0, threads, 1);
    AL_ASSERT(st == AL_OK, "ctx init: %s", al_errmsg());
}

/* Every op must leave the scratch as it found it and never allocate. */
#define EXPECT_CLEAN(ctx, allocs0)                                                          \
    do {                                                                                     \
        AL_EXPECT((ctx)->scratch_used == 0, "scratch not released: %zu bytes in use",       \
                  (ctx)->scratch_used);                                                      \
        AL_EXPECT(al_alloc_count() == (allocs0), "op allocated (%llu -> %llu)",              \
                  (unsigned long long)(allocs0), (unsigned long long)al_alloc_count());     \
    } while (0)

/* ------------------------------------------------------------------ (a) finite differences */

/* The scalar under test: L = sum_i w_out[i] * y[i], where fwd() recomputes y from the case's
 * current inputs (al_fd_grad perturbs one of them in place). */
typedef struct fd_base {
    void (*fwd)(void *self);
    double *y;
    const double *wout;
    size_t ny;
} fd_base;

static double fd_loss(const double *unused, void *user) {
    (void)unused;
    fd_base *b = user;
    b->fwd(user);
    double s = 0.0;
    for (size_t i = 0; i < b->ny; i++) s += b->wout[i] * b->y[i];
    return s;
}

/* Compare an analytic gradient of L w.r.t. v (n) with 4-point central differences, step h.
 * Error budget of the stencil (-f2 + 8f1 - 8f-1 + f-2)/12h:
 *  - roundoff: each f carries ~eps_d * S with S = sum |w_out * y| (and the sums inside y), so
 *    the difference errs by < 18/12 * eps_d * S / h; we allow 64 * eps_d * (S + 1) / h;
 *  - truncation: h^4/30 * |d^5 L|. Conv/linear/pool/add/normalize/dropout/ReLU are linear in
 *    each perturbed input (away from kinks) so it is 0; for BN and softmax the 5th derivatives
 *    of unit-scale inputs are O(10^2), i.e. < 1e-9 at h = 1e-3.
 * A wrong gradient errs by O(|grad|) ~ 1e-2..1, orders of magnitude above this budget.
 * skip (n, or NULL): points whose stencil crosses a kink; excluded from the comparison. */
static int fd_check(const char *what, void *user, double *v, size_t n, const double *grad,
                    double h, const unsigned char *skip) {
    fd_base *b = user;
    b->fwd(user);
    double S = 0.0;
    for (size_t i = 0; i < b->ny; i++) S += fabs(b->wout[i] * b->y[i]);
    double *g = dalloc(n), *an = dalloc(n);
    al_fd_grad(fd_loss, user, v, n, h, g);
    size_t n_skip = 0;
    for (size_t i = 0; i < n; i++) {
        an[i] = grad[i];
        if (skip && skip[i]) {
            an[i] = g[i] = 0.0;
            n_skip++;
        }
    }
    double atol = 1e-9 + 64.0 * DBL_EPSILON * (S + 1.0) / h;
    int rc = al_check_close_d(what, an, g, n, atol, 1e-7);
    if (n_skip) fprintf(stderr, "  %s: %zu of %zu points skipped (kinks)\n", what, n_skip, n);
    if (n_skip * 4 > n) {
        fprintf(stderr, "  %s: too many skipped points\n", what);
        rc = 1;
    }
    free(g);
    free(an);
    return rc;
}

/* --- conv2d */
typedef struct fd_conv {
    fd_base b;
    int n, ci, h, w, co, k, s, p;
    double *x, *wt, *bias;
} fd_conv;
static void fd_conv_fwd(void *self) {
    fd_conv *c = self;
    al_ref_conv2d_forward(c->n, c->ci, c->h, c->w, c->co, c->k, c->s, c->p, c->x, c->wt, c->bias,
                          c->b.y);
}

static int fd_conv_case(int n, int ci, int h, int w, int co, int k, int s, int p, int bias) {
    fd_conv c = {{fd_conv_fwd, NULL, NULL, 0}, n, ci, h, w, co, k, s, p, NULL, NULL, NULL};
    int ho = al_ref_out_size(h, k, s, p), wo = al_ref_out_size(w, k, s, p);
    size_t nx = (size_t)n * ci * h * w, nw = (size_t)co * ci * k * k, ny = (size_t)n * co * ho * wo;
    c.x = dalloc(nx);
    c.wt = dalloc(nw);
    c.bias = bias ? dalloc(co) : NULL;
    c.b.y = dalloc(ny);
    double *wout = dalloc(ny), *dx = dalloc(nx), *dw = dalloc(nw), *db = dalloc(co);
    c.b.wout = wout;
    c.b.ny = ny;
    al_test_fill_d(c.x, nx, next_id(), -1, 1);
    al_test_fill_d(c.wt, nw, next_id(), -1, 1);
    if (bias) al_test_fill_d(c.bias, co, next_id(), -1, 1);
    al_test_fill_d(wout, ny, next_id(), -1, 1);
    al_ref_conv2d_backward(n, ci, h, w, co, k, s, p, c.x, c.wt, wout, dx, dw, db);
    int rc = 0;
    rc |= fd_check("ref conv2d dx vs FD", &c, c.x, nx, dx, 1e-3, NULL);
    rc |= fd_check("ref conv2d dw vs FD", &c, c.wt, nw, dw, 1e-3, NULL);
    if (bias) rc |= fd_check("ref conv2d db vs FD", &c, c.bias, co, db, 1e-3, NULL);
    free(c.x);
    free(c.wt);
    free(c.bias);
    free(c.b.y);
    free(wout);
    free(dx);
    free(dw);
    free(db);
    return rc;
}

static int fd_conv2d(void) {
    int rc = 0;
    rc |= fd_conv_case(2, 3, 5, 6, 4, 3, 1, 1, 1);  /* pad 1, bias */
    rc |= fd_conv_case(1, 2, 7, 6, 3, 3, 2, 0, 0);  /* stride 2, pad 0, no bias */
    rc |= fd_conv_case(2, 3, 4, 5, 2, 1, 1, 0, 1);  /* 1x1 */
    rc |= fd_conv_case(1, 2, 6, 6, 2, 4, 3, 2, 1);  /* even kernel, stride 3, pad 2 */
    return rc;
}

/* --- linear */
typedef struct fd_linear {
    fd_base b;
    int n, in, out;
    double *x, *w, *bias;
} fd_linear;
static void fd_linear_fwd(void *self) {
    fd_linear *c = self;
    al_ref_linear_forward(c->n, c->in, c->out, c->x, c->w, c->bias, c->b.y);
}
static int fd_linear_case(void) {
    const int n = 3, in = 7, out = 5;
    fd_linear c = {{fd_linear_fwd, NULL, NULL, 0}, n, in, out, NULL, NULL, NULL};
    c.x = dalloc((size_t)n * in);
    c.w = dalloc((size_t)out * in);
    c.bias = dalloc(out);
    c.b.y = dalloc((size_t)n * out);
    double *wout = dalloc((size_t)n * out), *dx = dalloc((size_t)n * in),
           *dw = dalloc((size_t)out * in), *db = dalloc(out);
    c.b.wout = wout;
    c.b.ny = (size_t)n * out;
    al_test_fill_d(c.x, (size_t)n * in, next_id(), -1, 1);
    al_test_fill_d(c.w, (size_t)out * in, next_id(), -1, 1);
    al_test_fill_d(c.bias, out, next_id(), -1, 1);
    al_test_fill_d(wout, (size_t)n * out, next_id(), -1, 1);
    al_ref_linear_backward(n, in, out, c.x, c.w, wout, dx, dw, db);
    int rc = 0;
    rc |= fd_check("ref linear dx vs FD", &c, c.x, (size_t)n * in, dx, 1e-3, NULL);
    rc |= fd_check("ref linear dw vs FD", &c, c.w, (size_t)out * in, dw, 1e-3, NULL);
    rc |= fd_check("ref linear db vs FD", &c, c.bias, out, db, 1e-3, NULL);
    free(c.x);
    free(c.w);
    free(c.bias);
    free(c.b.y);
    free(wout);
    free(dx);
    free(dw);
    free(db);
    return rc;
}

/* --- batch norm (train: gradients flow through the batch statistics; eval: they don't) */
typedef struct fd_bn {
    fd_base b;
    int n, c, hw, train;
    double *x, *gamma, *beta, *rm, *rv;
} fd_bn;
static void fd_bn_fwd(void *self) {
    fd_bn *c = self;
    /* running stats are inputs in eval mode and are never updated here */
    al_ref_bn_forward(c->n, c->c, c->hw, 1e-5, 0.1, c->train, c->x, c->gamma, c->beta,
                      c->train ? NULL : c->rm, c->train ? NULL : c->rv, c->b.y, NULL, NULL);
}
static int fd_bn_case(int train) {
    const int n = 3, ch = 4, hw = 5;
    const size_t nx = (size_t)n * ch * hw;
    fd_bn c = {{fd_bn_fwd, NULL, NULL, 0}, n, ch, hw, train, NULL, NULL, NULL, NULL, NULL};
    c.x = dalloc(nx);
    c.gamma = dalloc(ch);
    c.beta = dalloc(ch);
    c.rm = dalloc(ch);
    c.rv = dalloc(ch);
    c.b.y = dalloc(nx);
    double *wout = dalloc(nx), *dx = dalloc(nx), *dg = dalloc(ch), *dbt = dalloc(ch),
           *mean = dalloc(ch), *invstd = dalloc(ch);
    c.b.wout = wout;
    c.b.ny = nx;
    al_test_fill_d(c.x, nx, next_id(), -1, 2);
    al_test_fill_d(c.gamma, ch, next_id(), 0.5, 1.5);
    al_test_fill_d(c.beta, ch, next_id(), -1, 1);
    al_test_fill_d(c.rm, ch, next_id(), -0.5, 0.5);
    al_test_fill_d(c.rv, ch, next_id(), 0.5, 1.5);
    al_test_fill_d(wout, nx, next_id(), -1, 1);
    al_ref_bn_forward(n, ch, hw, 1e-5, 0.1, train, c.x, c.gamma, c.beta, train ? NULL : c.rm,
                      train ? NULL : c.rv, c.b.y, mean, invstd);
    al_ref_bn_backward(n, ch, hw, train, c.x, c.gamma, mean, invstd, wout, dx, dg, dbt);
    int rc = 0;
    rc |= fd_check(train ? "ref bn(train) dx vs FD" : "ref bn(eval) dx vs FD", &c, c.x, nx, dx,
                   1e-3, NULL);
    rc |= fd_check(train ? "ref bn(train) dgamma vs FD" : "ref bn(eval) dgamma vs FD", &c,
                   c.gamma, ch, dg, 1e-3, NULL);
    rc |= fd_check(train ? "ref bn(train) dbeta vs FD" : "ref bn(eval) dbeta vs FD", &c, c.beta,
                   ch, dbt, 1e-3, NULL);
    free(c.x);
    free(c.gamma);
    free(c.beta);
    free(c.rm);
    free(c.rv);
    free(c.b.y);
    free(wout);
    free(dx);
    free(dg);
    free(dbt);
    free(mean);
    free(invstd);
    return rc;
}
static int fd_batchnorm(void) { return fd_bn_case(1) | fd_bn_case(0); }

/* --- elementwise: relu (kinks skipped), add, normalize, dropout */
typedef struct fd_ew {
    fd_base b;
    int kind; /* 0 relu, 1 add, 2 normalize, 3 dropout */
    int n, c, hw;
    double *x, *x2, *mean, *std, *mask;
} fd_ew;
static void fd_ew_fwd(void *self) {
    fd_ew *e = self;
    size_t n = (size_t)e->n * e->c * e->hw;
    switch (e->kind) {
    case 0: al_ref_relu_forward(n, e->x, e->b.y); break;
    case 1: al_ref_add_forward(n, e->x, e->x2, e->b.y); break;
    case 2: al_ref_normalize_forward(e->n, e->c, e->hw, e->x, e->mean, e->std, e->b.y); break;
    default: al_ref_dropout_forward(n, e->x, e->mask, e->b.y); break;
    }
}
static int fd_elementwise(void) {
    const int n = 2, ch = 3, hw = 10;
    const size_t ne = (size_t)n * ch * hw;
    const double h = 1e-3;
    int rc = 0;
    for (int kind = 0; kind < 4; kind++) {
        fd_ew e = {{fd_ew_fwd, NULL, NULL, ne}, kind, n, ch, hw, NULL, NULL, NULL, NULL, NULL};
        e.x = dalloc(ne);
        e.x2 = dalloc(ne);
        e.mean = dalloc(ch);
        e.std = dalloc(ch);
        e.mask = dalloc(ne);
        e.b.y = dalloc(ne);
        double *wout = dalloc(ne), *dx = dalloc(ne), *dx2 = dalloc(ne);
        unsigned char *skip = calloc(ne, 1);
        e.b.wout = wout;
        al_test_fill_d(e.x, ne, next_id(), -1, 1);
        al_test_fill_d(e.x2, ne, next_id(), -1, 1);
        al_test_fill_d(e.mean, ch, next_id(), 0.2, 0.6);
        al_test_fill_d(e.std, ch, next_id(), 0.2, 0.4);
        al_test_fill_d(wout, ne, next_id(), -1, 1);
        al_ref_dropout_mask(ne, 0.3, 7, al_stream(AL_STREAM_TEST, 99), e.mask);
        switch (kind) {
        case 0:
            al_ref_relu_backward(ne, e.x, wout, dx);
            /* the stencil reaches x +- 2h: points within 4h of the kink at 0 are skipped */
            for (size_t i = 0; i < ne; i++) skip[i] = fabs(e.x[i]) < 4 * h;
            rc |= fd_check("ref relu dx vs FD", &e, e.x, ne, dx, h, skip);
            break;
        case 1:
            al_ref_add_backward(ne, wout, dx, dx2);
            rc |= fd_check("ref add da vs FD", &e, e.x, ne, dx, h, NULL);
            rc |= fd_check("ref add db vs FD", &e, e.x2, ne, dx2, h, NULL);
            break;
        case 2:
            al_ref_normalize_backward(n, ch, hw, e.std, wout, dx);
            rc |= fd_check("ref normalize dx vs FD", &e, e.x, ne, dx, h, NULL);
            break;
        default:
            al_ref_dropout_backward(ne, e.mask, wout, dx);
            rc |= fd_check("ref dropout dx vs FD", &e, e.x, ne, dx, h, NULL);
            break;
        }
        free(e.x);
        free(e.x2);
        free(e.mean);
        free(e.std);
        free(e.mask);
        free(e.b.y);
        free(wout);
        free(dx);
        free(dx2);
        free(skip);
    }
    return rc;
}

/* --- pooling */
typedef struct fd_pool {
    fd_base b;
    int max, n, c, h, w, k, s;
    double *x;
    int32_t *argmax;
} fd_pool;
static void fd_pool_fwd(void *self) {
    fd_pool *p = self;
    if (p->max)
        al_ref_maxpool_forward(p->n, p->c, p->h, p->w, p->k, p->s, p->x, p->b.y, p->argmax);
    else
        al_ref_avgpool_forward(p->n, p->c, p->h, p->w, p->k, p->s, p->x, p->b.y);
}
static int fd_pool_case(int max, int n, int c, int h, int w, int k, int s) {
    const double hstep = 1e-3;
    int ho = al_ref_out_size(h, k, s, 0), wo = al_ref_out_size(w, k, s, 0);
    size_t nx = (size_t)n * c * h * w, ny = (size_t)n * c * ho * wo;
    fd_pool p = {{fd_pool_fwd, NULL, NULL, ny}, max, n, c, h, w, k, s, NULL, NULL};
    p.x = dalloc(nx);
    p.b.y = dalloc(ny);
    p.argmax = calloc(ny, sizeof *p.argmax);
    double *wout = dalloc(ny), *dx = dalloc(nx);
    unsigned char *skip = calloc(nx, 1);
    p.b.wout = wout;
    al_test_fill_d(p.x, nx, next_id(), -1, 1);
    al_test_fill_d(wout, ny, next_id(), -1, 1);
    fd_pool_fwd(&p);
    if (max) {
        al_ref_maxpool_backward(n, c, h, w, k, s, p.argmax, wout, dx);
        /* kinks: a window whose two largest values are within 4h (the stencil moves one of
         * them by up to 2h) can change its argmax; skip both contenders */
        for (int pl = 0; pl < n * c; pl++)
            for (int oh = 0; oh < ho; oh++)
                for (int ow = 0; ow < wo; ow++) {
                    const double *xp = p.x + (size_t)pl * h * w;
                    int i1 = -1, i2 = -1;
                    for (int i = 0; i < k; i++)
                        for (int j = 0; j < k; j++) {
                            int idx = (oh * s + i) * w + ow * s + j;
                            if (i1 < 0 || xp[idx] > xp[i1]) {
                                i2 = i1;
                                i1 = idx;
                            } else if (i2 < 0 || xp[idx] > xp[i2]) {
                                i2 = idx;
                            }
                        }
                    if (i2 >= 0 && xp[i1] - xp[i2] < 4 * hstep)
                        skip[(size_t)pl * h * w + i1] = skip[(size_t)pl * h * w + i2] = 1;
                }
    } else {
        al_ref_avgpool_backward(n, c, h, w, k, s, wout, dx);
    }
    int rc = fd_check(max ? "ref maxpool dx vs FD" : "ref avgpool dx vs FD", &p, p.x, nx, dx,
                      hstep, skip);
    free(p.x);
    free(p.b.y);
    free(p.argmax);
    free(wout);
    free(dx);
    free(skip);
    return rc;
}
static int fd_pool_all(void) {
    int rc = 0;
    rc |= fd_pool_case(1, 2, 3, 6, 7, 2, 2); /* disjoint windows, odd width (floor) */
    rc |= fd_pool_case(1, 1, 2, 7, 7, 3, 2); /* overlapping windows */
    rc |= fd_pool_case(0, 2, 3, 6, 7, 2, 2);
    rc |= fd_pool_case(0, 1, 2, 7, 7, 3, 2);
    rc |= fd_pool_case(0, 2, 2, 5, 5, 5, 5); /* global average */
    return rc;
}

/* --- softmax cross-entropy (mean): y is the loss itself, w_out = 1 */
typedef struct fd_xent {
    fd_base b;
    int n, k;
    double *z;
    int32_t *labels;
    double loss;
} fd_xent;
static void fd_xent_fwd(void *self) {
    fd_xent *e = self;
    e->loss = al_ref_xent_forward(e->n, e->k, e->z, e->labels);
}
static int fd_xent_case(void) {
    const int n = 4, k = 7;
    static const double one = 1.0;
    fd_xent e = {{fd_xent_fwd, NULL, &one, 1}, n, k, NULL, NULL, 0};
    e.b.y = &e.loss;
    e.z = dalloc((size_t)n * k);
    e.labels = calloc(n, sizeof *e.labels);
    double *dz = dalloc((size_t)n * k);
    al_test_fill_d(e.z, (size_t)n * k, next_id(), -3, 3);
    for (int i = 0; i < n; i++) e.labels[i] = (i * 3 + 1) % k;
    al_ref_xent_backward(n, k, e.z, e.labels, dz);
    int rc = fd_check("ref xent dlogits vs FD", &e, e.z, (size_t)n * k, dz, 1e-3, NULL);
    /* and one value by hand: uniform logits give log(k) */
    double zero[7] = {0};
    int32_t lab = 3;
    double l0 = al_ref_xent_forward(1, 7, zero, &lab);
    if (fabs(l0 - log(7.0)) > 1e-15) {
        fprintf(stderr, "  xent of uniform logits %.17g, expected log 7\n", l0);
        rc = 1;
    }
    free(e.z);
    free(e.labels);
    free(dz);
    return rc;
}

/* ------------------------------------------------------------------ (b) conv2d vs reference */

typedef struct conv_cfg {
    int n, ci, h, w, co, k, s, p, bias;
} conv_cfg;

static const conv_cfg conv_cfgs[] = {
    {1, 3, 7, 7, 5, 3, 1, 1, 1},    /* batch 1, odd sizes, pad 1 */
    {3, 5, 9, 11, 33, 3, 2, 1, 1},  /* stride 2, C_out % 32 != 0, non-square */
    {2, 33, 6, 6, 7, 1, 1, 0, 0},   /* 1x1 stride 1 pad 0: direct path, no bias */
    {4, 8, 5, 5, 16, 1, 2, 0, 1},   /* 1x1 stride 2: not direct */
    {5, 6, 4, 4, 10, 3, 1, 1, 1},   /* 4x4 plane: several images per GEMM */
    {7, 16, 8, 8, 20, 1, 1, 0, 1},  /* grouped direct 1x1 (last group of one image) */
    {2, 4, 10, 10, 6, 5, 3, 2, 1},  /* k 5, stride 3, pad 2 */
    {3, 3, 9, 9, 5, 4, 2, 1, 0},    /* even kernel */
    /* stride 1 with (k-1)*4 <= Wo: the "wide" column layout of conv2d.c */
    {3, 2, 12, 12, 4, 3, 1, 0, 1},  /* wide, pad 0 */
    {2, 3, 10, 9, 6, 3, 1, 1, 1},   /* wide, pad 1, H != W */
    {4, 5, 8, 8, 7, 3, 1, 1, 0},    /* wide, several images per GEMM */
    {1, 2, 20, 22, 3, 5, 1, 2, 1},  /* wide, k 5, pad 2, batch 1 */
    /* wide with C_in >= 8: shifted GEMMs per tap, no column matrix */
    {3, 8, 10, 10, 12, 3, 1, 1, 1}, /* taps, pad 1 */
    {2, 9, 12, 11, 5, 3, 1, 0, 0},  /* taps, pad 0, H != W */
    {1, 16, 9, 18, 33, 5, 1, 2, 1}, /* taps, k 5, pad 2, batch 1 */
    {2, 128, 8, 8, 128, 3, 1, 1, 0},/* short runs of a big GEMM: back to the standard path */
};

static int conv_vs_ref(const conv_cfg *cf, int threads) {
    al_ctx ctx;
    ctx_init_threads(&ctx, threads);
    al_conv2d_desc d;
    al_conv2d_desc_init(&d, cf->n, cf->ci, cf->h, cf->w, cf->co, cf->k, cf->s, cf->p);
    AL_EXPECT(d.h_out == al_ref_out_size(cf->h, cf->k, cf->s, cf->p) &&
                  d.w_out == al_ref_out_size(cf->w, cf->k, cf->s, cf->p),
              "desc out size %dx%d", d.h_out, d.w_out);
    AL_EXPECT(al_ctx_reserve_scratch(&ctx, al_conv2d_scratch_bytes(&ctx, &d)) == AL_OK, "scratch");
    const size_t nx = (size_t)cf->n * cf->ci * cf->h * cf->w,
                 nw = (size_t)cf->co * cf->ci * cf->k * cf->k,
                 ny = (size_t)cf->n * cf->co * d.h_out * d.w_out, nb = (size_t)cf->co;
    float *x = falloc(nx), *w = falloc(nw), *b = falloc(nb), *y = falloc(ny), *dy = falloc(ny),
          *dx = falloc(nx), *dw = falloc(nw), *db = falloc(nb), *pre_x = falloc(nx),
          *pre_w = falloc(nw), *pre_b = falloc(nb);
    double *xd = dalloc(nx), *wd = dalloc(nw), *bd = dalloc(nb), *yd = dalloc(ny),
           *dyd = dalloc(ny), *dxd = dalloc(nx), *dwd = dalloc(nw), *dbd = dalloc(nb),
           *exp_ = dalloc(nx > nw ? nx : nw);
    al_test_fill(x, nx, next_id(), -1, 1);
    al_test_fill(w, nw, next_id(), -1, 1);
    al_test_fill(b, nb, next_id(), -1, 1);
    al_test_fill(dy, ny, next_id(), -1, 1);
    al_test_fill(pre_x, nx, next_id(), -1, 1);
    al_test_fill(pre_w, nw, next_id(), -1, 1);
    al_test_fill(pre_b, nb, next_id(), -1, 1);
    f2d(x, xd, nx);
    f2d(w, wd, nw);
    f2d(b, bd, nb);
    f2d(dy, dyd, ny);
    const float *bias = cf->bias ? b : NULL;
    al_ref_conv2d_forward(cf->n, cf->ci, cf->h, cf->w, cf->co, cf->k, cf->s, cf->p, xd, wd,
                          cf->bias ? bd : NULL, yd);
    al_ref_conv2d_backward(cf->n, cf->ci, cf->h, cf->w, cf->co, cf->k, cf->s, cf->p, xd, wd, dyd,
                           dxd, dwd, dbd);
    const double k_fwd = (double)cf->ci * cf->k * cf->k + 1;         /* products + bias */
    const double k_dx = (double)cf->co * cf->k * cf->k;              /* taps reaching one x */
    const double k_dw = (double)cf->n * d.h_out * d.w_out + 1;       /* + the '+=' */
    char what[128];
    int rc = 0;
    uint64_t allocs0 = al_alloc_count();

    fill_nan(y, ny);
    poison_scratch(&ctx);
    AL_EXPECT(al_conv2d_forward(&ctx, &d, x, w, bias, y) == AL_OK, "%s", al_errmsg());
    EXPECT_CLEAN(&ctx, allocs0);
    snprintf(what, sizeof what, "conv y  n%d c%d->%d %dx%d k%d s%d p%d t%d", cf->n, cf->ci, cf->co,
             cf->h, cf->w, cf->k, cf->s, cf->p, threads);
    rc |= check_f(what, y, yd, ny, k_fwd);

    /* all three gradients: dx '=' over a NaN sentinel, dw/db '+=' onto random values */
    fill_nan(dx, nx);
    memcpy(dw, pre_w, nw * sizeof *dw);
    memcpy(db, pre_b, nb * sizeof *db);
    poison_scratch(&ctx);
    AL_EXPECT(al_conv2d_backward(&ctx, &d, x, w, dy, dx, 0, dw, db) == AL_OK, "%s", al_errmsg());
    EXPECT_CLEAN(&ctx, allocs0);
    snprintf(what, sizeof what, "conv dx (=) t%d", threads);
    rc |= check_f(what, dx, dxd, nx, k_dx);
    for (size_t i = 0; i < nw; i++) exp_[i] = pre_w[i] + dwd[i];
    snprintf(what, sizeof what, "conv dw (+=) t%d", threads);
    rc |= check_f(what, dw, exp_, nw, k_dw);
    for (size_t i = 0; i < nb; i++) exp_[i] = pre_b[i] + dbd[i];
    snprintf(what, sizeof what, "conv db (+=) t%d", threads);
    rc |= check_f(what, db, exp_, nb, k_dw);

    /* dx_accum: dx += onto random values; dw and db skipped */
    memcpy(dx, pre_x, nx * sizeof *dx);
    poison_scratch(&ctx);
    AL_EXPECT(al_conv2d_backward(&ctx, &d, x, w, dy, dx, 1, NULL, NULL) == AL_OK, "%s",
              al_errmsg());
    for (size_t i = 0; i < nx; i++) exp_[i] = pre_x[i] + dxd[i];
    snprintf(what, sizeof what, "conv dx (+=, dw/db NULL) t%d", threads);
    rc |= check_f(what, dx, exp_, nx, k_dx + 1);

    /* weights only (dx NULL), from zero */
    memset(dw, 0, nw * sizeof *dw);
    poison_scratch(&ctx);
    AL_EXPECT(al_conv2d_backward(&ctx, &d, x, w, dy, NULL, 0, dw, NULL) == AL_OK, "%s",
              al_errmsg());
    snprintf(what, sizeof what, "conv dw (dx/db NULL) t%d", threads);
    rc |= check_f(what, dw, dwd, nw, k_dw);
    /* bias only */
    memset(db, 0, nb * sizeof *db);
    poison_scratch(&ctx);
    AL_EXPECT(al_conv2d_backward(&ctx, &d, x, w, dy, NULL, 0, NULL, db) == AL_OK, "%s",
              al_errmsg());
    snprintf(what, sizeof what, "conv db (dx/dw NULL) t%d", threads);
    rc |= check_f(what, db, dbd, nb, k_dw);
    EXPECT_CLEAN(&ctx, allocs0);

    free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db);
    free(pre_x), free(pre_w), free(pre_b);
    free(xd), free(wd), free(bd), free(yd), free(dyd), free(dxd), free(dwd), free(dbd), free(exp_);
    al_ctx_fini(&ctx);
    return rc;
}

static int vs_ref_conv2d(void) {
    int rc = 0;
    for (size_t i = 0; i < AL_ARRAY_LEN(conv_cfgs); i++)
        for (int t = 1; t <= 3; t++) rc |= conv_vs_ref(&conv_cfgs[i], t);
    return rc;
}

/* The scratch planned for max_batch serves every smaller batch, and the batch size does not
 * change the per-image result layout (n = 1..N against the reference of the first images). */
static int conv2d_smaller_batch(void) {
    const conv_cfg cf = {6, 12, 4, 4, 24, 3, 1, 1, 1};
    al_ctx ctx;
    ctx_init_threads(&ctx, 2);
    al_conv2d_desc dmax;
    al_conv2d_desc_init(&dmax, cf.n, cf.ci, cf.h, cf.w, cf.co, cf.k, cf.s, cf.p);
    AL_EXPECT(al_ctx_reserve_scratch(&ctx, al_conv2d_scratch_bytes(&ctx, &dmax)) == AL_OK, "scratch");
    const size_t per_x = (size_t)cf.ci * cf.h * cf.w, per_y = (size_t)cf.co * dmax.h_out * dmax.w_out,
                 nw = (size_t)cf.co * cf.ci * 9;
    float *x = falloc(cf.n * per_x), *w = falloc(nw), *b = falloc(cf.co), *y = falloc(cf.n * per_y),
          *dx = falloc(cf.n * per_x);
    double *xd = dalloc(cf.n * per_x), *wd = dalloc(nw), *bd = dalloc(cf.co),
           *yd = dalloc(cf.n * per_y), *dyd = dalloc(cf.n * per_y), *dxd = dalloc(cf.n * per_x);
    al_test_fill(x, cf.n * per_x, next_id(), -1, 1);
    al_test_fill(w, nw, next_id(), -1, 1);
    al_test_fill(b, cf.co, next_id(), -1, 1);
    f2d(x, xd, cf.n * per_x);
    f2d(w, wd, nw);
    f2d(b, bd, cf.co);
    int rc = 0;
    for (int n = 1; n <= cf.n; n++) {
        al_conv2d_desc d;
        al_conv2d_desc_init(&d, n, cf.ci, cf.h, cf.w, cf.co, cf.k, cf.s, cf.p);
        AL_EXPECT(al_conv2d_scratch_bytes(&ctx, &d) <= al_conv2d_scratch_bytes(&ctx, &dmax),
                  "scratch for n=%d exceeds n=%d", n, cf.n);
        AL_EXPECT(al_conv2d_forward(&ctx, &d, x, w, b, y) == AL_OK, "%s", al_errmsg());
        al_ref_conv2d_forward(n, cf.ci, cf.h, cf.w, cf.co, cf.k, cf.s, cf.p, xd, wd, bd, yd);
        rc |= check_f("conv y (n <= max_batch)", y, yd, n * per_y, cf.ci * 9 + 1);
        /* y as dy: backward of a smaller batch */
        f2d(y, dyd, n * per_y);
        AL_EXPECT(al_conv2d_backward(&ctx, &d, x, w, y, dx, 0, NULL, NULL) == AL_OK, "%s",
                  al_errmsg());
        al_ref_conv2d_backward(n, cf.ci, cf.h, cf.w, cf.co, cf.k, cf.s, cf.p, xd, wd, dyd, dxd,
                               NULL, NULL);
        rc |= check_f("conv dx (n <= max_batch)", dx, dxd, n * per_x, cf.co * 9);
    }
    free(x), free(w), free(b), free(y), free(dx);
    free(xd), free(wd), free(bd), free(yd), free(dyd), free(dxd);
    al_ctx_fini(&ctx);
    return rc;
}

/* ------------------------------------------------------------------ (b) linear vs reference */

static int linear_vs_ref(int n, int in, int out, int bias, int threads) {
    al_ctx ctx;
    ctx_init_threads(&ctx, threads);
    const size_t nx = (size_t)n * in, nw = (size_t)out * in, ny = (size_t)n * out;
    float *x = falloc(nx), *w = falloc(nw), *b = falloc(out), *y = falloc(ny), *dy = falloc(ny),
          *dx = falloc(nx), *dw = falloc(nw), *db = falloc(out), *pre_x = falloc(nx),
          *pre_w = falloc(nw), *pre_b = falloc(out);
    double *xd = dalloc(nx), *wd = dalloc(nw), *bd = dalloc(out), *yd = dalloc(ny),
           *dyd = dalloc(ny), *dxd = dalloc(nx), *dwd = dalloc(nw), *dbd = dalloc(out),
           *exp_ = dalloc(nx > nw ? nx : nw);
    al_test_fill(x, nx, next_id(), -1, 1);
    al_test_fill(w, nw, next_id(), -1, 1);
    al_test_fill(b, out, next_id(), -1, 1);
    al_test_fill(dy, ny, next_id(), -1, 1);
    al_test_fill(pre_x, nx, next_id(), -1, 1);
    al_test_fill(pre_w, nw, next_id(), -1, 1);
    al_test_fill(pre_b, out, next_id(), -1, 1);
    f2d(x, xd, nx);
    f2d(w, wd, nw);
    f2d(b, bd, out);
    f2d(dy, dyd, ny);
    al_ref_linear_forward(n, in, out, xd, wd, bias ? bd : NULL, yd);
    al_ref_linear_backward(n, in, out, xd, wd, dyd, dxd, dwd, dbd);
    char what[128];
    int rc = 0;
    uint64_t allocs0 = al_alloc_count();
    fill_nan(y, ny);
    AL_EXPECT(al_linear_forward(&ctx, n, in, out, x, w, bias ? b : NULL, y) == AL_OK, "%s",
              al_errmsg());
    snprintf(what, sizeof what, "linear y  %dx%d->%d t%d", n, in, out, threads);
    rc |= check_f(what, y, yd, ny, in + 1);
    fill_nan(dx, nx);
    memcpy(dw, pre_w, nw * sizeof *dw);
    memcpy(db, pre_b, out * sizeof *db);
    AL_EXPECT(al_linear_backward(&ctx, n, in, out, x, w, dy, dx, 0, dw, db) == AL_OK, "%s",
              al_errmsg());
    EXPECT_CLEAN(&ctx, allocs0);
    rc |= check_f("linear dx (=)", dx, dxd, nx, out);
    for (size_t i = 0; i < nw; i++) exp_[i] = pre_w[i] + dwd[i];
    rc |= check_f("linear dw (+=)", dw, exp_, nw, n + 1);
    for (int i = 0; i < out; i++) exp_[i] = pre_b[i] + dbd[i];
    rc |= check_f("linear db (+=)", db, exp_, out, n + 1);
    memcpy(dx, pre_x, nx * sizeof *dx);
    AL_EXPECT(al_linear_backward(&ctx, n, in, out, x, w, dy, dx, 1, NULL, NULL) == AL_OK, "%s",
              al_errmsg());
    for (size_t i = 0; i < nx; i++) exp_[i] = pre_x[i] + dxd[i];
    rc |= check_f("linear dx (+=, dw/db NULL)", dx, exp_, nx, out + 1);
    memset(dw, 0, nw * sizeof *dw);
    AL_EXPECT(al_linear_backward(&ctx, n, in, out, x, w, dy, NULL, 0, dw, NULL) == AL_OK, "%s",
              al_errmsg());
    rc |= check_f("linear dw (dx/db NULL)", dw, dwd, nw, n);
    free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db);
    free(pre_x), free(pre_w), free(pre_b);
    free(xd), free(wd), free(bd), free(yd), free(dyd), free(dxd), free(dwd), free(dbd), free(exp_);
    al_ctx_fini(&ctx);
    return rc;
}

static int vs_ref_linear(void) {
    int rc = 0;
    for (int t = 1; t <= 3; t++) {
        rc |= linear_vs_ref(1, 7, 5, 1, t);       /* batch 1 */
        rc |= linear_vs_ref(33, 100, 37, 0, t);   /* odd sizes, no bias */
        rc |= linear_vs_ref(64, 300, 70, 1, t);   /* above the thread-split threshold */
    }
    rc |= linear_vs_ref(128, 1024, 200, 1, 2);    /* SmallCNN fc1 */
    return rc;
}

/* ------------------------------------------------------------------ (b) batch norm vs reference */

static int bn_vs_ref(int n, int c, int hw, int threads) {
    al_ctx ctx;
    ctx_init_threads(&ctx, threads);
    const size_t nx = (size_t)n * c * hw;
    const double m = (double)n * hw;
    float *x = falloc(nx), *g = falloc(c), *bt = falloc(c), *rm = falloc(c), *rv = falloc(c),
          *y = falloc(nx), *dy = falloc(nx), *dx = falloc(nx), *dg = falloc(c), *dbt = falloc(c),
          *sm = falloc(c), *si = falloc(c), *pre_x = falloc(nx), *pre_c = falloc(c);
    double *xd = dalloc(nx), *gd = dalloc(c), *btd = dalloc(c), *rmd = dalloc(c), *rvd = dalloc(c),
           *yd = dalloc(nx), *dyd = dalloc(nx), *dxd = dalloc(nx), *dgd = dalloc(c),
           *dbtd = dalloc(c), *md = dalloc(c), *isd = dalloc(c), *exp_ = dalloc(nx);
    al_test_fill(x, nx, next_id(), -1, 3); /* mean 1, so centring matters */
    al_test_fill(g, c, next_id(), 0.5f, 1.5f);
    al_test_fill(bt, c, next_id(), -1, 1);
    al_test_fill(rm, c, next_id(), -0.5f, 0.5f);
    al_test_fill(rv, c, next_id(), 0.5f, 1.5f);
    al_test_fill(dy, nx, next_id(), -1, 1);
    al_test_fill(pre_x, nx, next_id(), -1, 1);
    al_test_fill(pre_c, c, next_id(), -1, 1);
    f2d(x, xd, nx);
    f2d(g, gd, c);
    f2d(bt, btd, c);
    f2d(rm, rmd, c);
    f2d(rv, rvd, c);
    f2d(dy, dyd, nx);
    char what[128];
    int rc = 0;
    for (int train = 1; train >= 0; train--) {
        al_bn_desc d = {n, c, hw, 1e-5f, 0.1f, train, train};
        /* eval normalises with the running stats the train pass left in float */
        if (!train) f2d(rm, rmd, c), f2d(rv, rvd, c);
        AL_EXPECT(al_bn_forward(&ctx, &d, x, g, bt, rm, rv, y, sm, si) == AL_OK, "%s", al_errmsg());
        al_ref_bn_forward(n, c, hw, (double)1e-5f, (double)0.1f, train, xd, gd, btd, rmd, rvd, yd,
                          md, isd);
        /* statistics reduce M = N*HW values; y then takes 3 roundings */
        snprintf(what, sizeof what, "bn(%s) y  n%d c%d hw%d t%d", train ? "train" : "eval", n, c,
                 hw, threads);
        rc |= check_f(what, y, yd, nx, m);
        rc |= check_f("bn save_mean", sm, md, c, m);
        rc |= check_f("bn save_invstd", si, isd, c, m);
        if (train) {
            /* updated running stats (the ref updated rmd/rvd in place; unbiased variance) */
            rc |= check_f("bn running_mean", rm, rmd, c, m);
            rc |= check_f("bn running_var (unbiased)", rv, rvd, c, m);
        }
        /* backward from the float saved stats vs the ref from its own */
        al_ref_bn_backward(n, c, hw, train, xd, gd, md, isd, dyd, dxd, dgd, dbtd);
        fill_nan(dx, nx);
        memcpy(dg, pre_c, c * sizeof *dg);
        memcpy(dbt, pre_c, c * sizeof *dbt);
        AL_EXPECT(al_bn_backward(&ctx, &d, x, g, sm, si, dy, dx, 0, dg, dbt) == AL_OK, "%s",
                  al_errmsg());
        snprintf(what, sizeof what, "bn(%s) dx (=)", train ? "train" : "eval");
        rc |= check_f(what, dx, dxd, nx, m);
        for (int i = 0; i < c; i++) exp_[i] = pre_c[i] + dgd[i];
        rc |= check_f("bn dgamma (+=)", dg, exp_, c, m + 1);
        for (int i = 0; i < c; i++) exp_[i] = pre_c[i] + dbtd[i];
        rc |= check_f("bn dbeta (+=)", dbt, exp_, c, m + 1);
        memcpy(dx, pre_x, nx * sizeof *dx);
        AL_EXPECT(al_bn_backward(&ctx, &d, x, g, sm, si, dy, dx, 1, NULL, NULL) == AL_OK, "%s",
                  al_errmsg());
        for (size_t i = 0; i < nx; i++) exp_[i] = pre_x[i] + dxd[i];
        snprintf(what, sizeof what, "bn(%s) dx (+=, dgamma/dbeta NULL)", train ? "train" : "eval");
        rc |= check_f(what, dx, exp_, nx, m + 1);
        memset(dg, 0, c * sizeof *dg);
        AL_EXPECT(al_bn_backward(&ctx, &d, x, g, sm, si, dy, NULL, 0, dg, NULL) == AL_OK, "%s",
                  al_errmsg());
        rc |= check_f("bn dgamma (dx NULL)", dg, dgd, c, m);
    }
    free(x), free(g), free(bt), free(rm), free(rv), free(y), free(dy), free(dx), free(dg);
    free(dbt), free(sm), free(si), free(pre_x), free(pre_c);
    free(xd), free(gd), free(btd), free(rmd), free(rvd), free(yd), free(dyd), free(dxd);
    free(dgd), free(dbtd), free(md), free(isd), free(exp_);
    al_ctx_fini(&ctx);
    return rc;
}

static int vs_ref_batchnorm(void) {
    int rc = 0;
    for (int t = 1; t <= 3; t++) {
        rc |= bn_vs_ref(1, 3, 7, t);     /* batch 1 */
        rc |= bn_vs_ref(4, 33, 25, t);   /* C % 32 != 0, HW not a multiple of 8 lanes */
        rc |= bn_vs_ref(8, 5, 1, t);     /* HW = 1 (after global pooling) */
        rc |= bn_vs_ref(2, 4, 100, t);
    }
    return rc;
}

/* PyTorch semantics by hand: x = {1,2,3,4} in one channel: mean 2.5, biased var 1.25 (used to
 * normalise), unbiased var 5/3 (running_var). From running (0, 1), momentum 0.1:
 * running_mean = 0.25, running_var = 0.9 + 0.1*5/3. An N*HW = 1 batch is refused. */
static int batchnorm_running_stats(void) {
    al_ctx ctx;
    ctx_init_threads(&ctx, 2);
    const float x[4] = {1, 2, 3, 4};
    float y[4], rm = 0.0f, rv = 1.0f, sm, si;
    al_bn_desc d = {1, 1, 4, 1e-5f, 0.1f, 1, 1};
    AL_EXPECT(al_bn_forward(&ctx, &d, x, NULL, NULL, &rm, &rv, y, &sm, &si) == AL_OK, "%s",
              al_errmsg());
    const double tol = al_tol_f32(4);
    AL_EXPECT(fabs(rm - 0.25) <= tol * 0.25, "running_mean %.9g, expected 0.25", rm);
    AL_EXPECT(fabs(rv - (0.9 + 0.1 * 5.0 / 3.0)) <= tol, "running_var %.9g, expected %.9g", rv,
              0.9 + 0.1 * 5.0 / 3.0);
    AL_EXPECT(fabs(sm - 2.5) <= tol, "save_mean %.9g", sm);
    AL_EXPECT(fabs(si - 1.0 / sqrt(1.25 + 1e-5)) <= tol, "save_invstd %.9g (biased var)", si);
    AL_EXPECT(fabs(y[0] + 1.5 / sqrt(1.25 + 1e-5)) <= tol, "y[0] %.9g", y[0]);
    /* eval mode normalises with the running stats and leaves them alone */
    al_bn_desc de = {1, 1, 4, 1e-5f, 0.1f, 0, 0};
    float rm2 = rm, rv2 = rv;
    AL_EXPECT(al_bn_forward(&ctx, &de, x, NULL, NULL, &rm2, &rv2, y, &sm, &si) == AL_OK, "%s",
              al_errmsg());
    AL_EXPECT(rm2 == rm && rv2 == rv, "eval mode changed running stats");
    AL_EXPECT(fabs(y[3] - (4.0 - rm) / sqrt(rv + 1e-5)) <= tol, "eval y[3] %.9g", y[3]);
    al_bn_desc d1 = {1, 1, 1, 1e-5f, 0.1f, 1, 1};
    AL_EXPECT(al_bn_forward(&ctx, &d1, x, NULL, NULL, &rm, &rv, y, &sm, &si) == AL_ERR_VALUE,
              "train BN over a single value must fail");
    fprintf(stderr, "  refused as expected: %s\n", al_errmsg());
    al_ctx_fini(&ctx);
    return 0;
}

/* ------------------------------------------------------------------ (b) pooling vs reference */

static int pool_vs_ref(int max, int n, int c, int h, int w, int k, int s, int threads) {
    al_ctx ctx;
    ctx_init_threads(&ctx, threads);
    al_pool_desc d;
    al_pool_desc_init(&d, n, c, h, w, k, s);
    AL_EXPECT(d.h_out == al_ref_out_size(h, k, s, 0) && d.w_out == al_ref_out_size(w, k, s, 0),
              "pool desc out size");
    const size_t nx = (size_t)n * c * h * w, ny = (size_t)n * c * d.h_out * d.w_out;
    float *x = falloc(nx), *y = falloc(ny), *dy = falloc(ny), *dx = falloc(nx), *pre = falloc(nx);
    int32_t *am = calloc(ny, sizeof *am), *amd = calloc(ny, sizeof *amd);
    double *xd = dalloc(nx), *yd = dalloc(ny), *dyd = dalloc(ny), *dxd = dalloc(nx),
           *exp_ = dalloc(nx);
    al_test_fill(x, nx, next_id(), -1, 1);
    al_test_fill(dy, ny, next_id(), -1, 1);
    al_test_fill(pre, nx, next_id(), -1, 1);
    f2d(x, xd, nx);
    f2d(dy, dyd, ny);
    /* windows overlapping an element: ceil(k/s)^2 dy values add into one dx */
    const double k_bwd = (double)AL_CEIL_DIV(k, s) * AL_CEIL_DIV(k, s);
    char what[128];
    int rc = 0;
    if (max) {
        AL_EXPECT(al_maxpool_forward(&ctx, &d, x, y, am) == AL_OK, "%s", al_errmsg());
        al_ref_maxpool_forward(n, c, h, w, k, s, xd, yd, amd);
        snprintf(what, sizeof what, "maxpool y n%d c%d %dx%d k%d s%d t%d", n, c, h, w, k, s,
                 threads);
        rc |= al_check_close_fd(what, y, yd, ny, 0, 0); /* a max is exact */
        for (size_t i = 0; i < ny; i++)
            AL_EXPECT(am[i] == amd[i], "maxpool argmax[%zu] = %d, ref %d", i, am[i], amd[i]);
        al_ref_maxpool_backward(n, c, h, w, k, s, amd, dyd, dxd);
        fill_nan(dx, nx);
        AL_EXPECT(al_maxpool_backward(&ctx, &d, am, dy, dx, 0) == AL_OK, "%s", al_errmsg());
        rc |= check_f("maxpool dx (=)", dx, dxd, nx, k_bwd);
        memcpy(dx, pre, nx * sizeof *dx);
        AL_EXPECT(al_maxpool_backward(&ctx, &d, am, dy, dx, 1) == AL_OK, "%s", al_errmsg());
    } else {
        AL_EXPECT(al_avgpool_forward(&ctx, &d, x, y) == AL_OK, "%s", al_errmsg());
        al_ref_avgpool_forward(n, c, h, w, k, s, xd, yd);
        snprintf(what, sizeof what, "avgpool y n%d c%d %dx%d k%d s%d t%d", n, c, h, w, k, s,
                 threads);
        rc |= check_f(what, y, yd, ny, (double)k * k);
        al_ref_avgpool_backward(n, c, h, w, k, s, dyd, dxd);
        fill_nan(dx, nx);
        AL_EXPECT(al_avgpool_backward(&ctx, &d, dy, dx, 0) == AL_OK, "%s", al_errmsg());
        rc |= check_f("avgpool dx (=)", dx, dxd, nx, k_bwd + 1);
        memcpy(dx, pre, nx * sizeof *dx);
        AL_EXPECT(al_avgpool_backward(&ctx, &d, dy, dx, 1) == AL_OK, "%s", al_errmsg());
    }
    for (size_t i = 0; i < nx; i++) exp_[i] = pre[i] + dxd[i];
    rc |= check_f(max ? "maxpool dx (+=)" : "avgpool dx (+=)", dx, exp_, nx, k_bwd + 2);
    free(x), free(y), free(dy), free(dx), free(pre), free(am), free(amd);
    free(xd), free(yd), free(dyd), free(dxd), free(exp_);
    al_ctx_fini(&ctx);
    return rc;
}

static int vs_ref_pool(void) {
    int rc = 0;
    for (int t = 1; t <= 3; t++)
        for (int max = 0; max <= 1; max++) {
            rc |= pool_vs_ref(max, 2, 3, 7, 9, 2, 2, t);  /* floor mode: last row/col unused */
            rc |= pool_vs_ref(max, 1, 5, 8, 8, 3, 2, t);  /* overlapping windows, batch 1 */
            rc |= pool_vs_ref(max, 2, 2, 7, 7, 2, 3, t);  /* stride > k: gaps */
            rc |= pool_vs_ref(max, 3, 7, 8, 8, 8, 8, t);  /* global */
            rc |= pool_vs_ref(max, 2, 33, 4, 4, 2, 2, t); /* exact tiling */
        }
    return rc;
}

/* Ties: the first maximum in row-major window order wins (PyTorch); NaN propagates. */
static int maxpool_ties_nan(void) {
    al_ctx ctx;
    ctx_init_threads(&ctx, 1);
    al_pool_desc d;
    al_pool_desc_init(&d, 1, 1, 4, 4, 2, 2); /* the unrolled 2x2/2 path */
    float x[16], y[4];
    int32_t am[4];
    for (int i = 0; i < 16; i++) x[i] = 0.5f;
    x[5] = 0.75f; /* window 0: (1,1) */
    x[7] = 0.75f; x[6] = 0.75f; /* window 1: tie between (1,2) and (1,3): row-major first is 6 */
    x[8] = NAN;   /* window 2: NaN wins */
    x[11] = -INFINITY; x[10] = -INFINITY; x[14] = -INFINITY; x[15] = -INFINITY; /* window 3 */
    AL_EXPECT(al_maxpool_forward(&ctx, &d, x, y, am) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(am[0] == 5 && y[0] == 0.75f, "window 0: argmax %d y %g", am[0], y[0]);
    AL_EXPECT(am[1] == 6 && y[1] == 0.75f, "window 1 (tie): argmax %d, expected 6", am[1]);
    AL_EXPECT(am[2] == 8 && isnan(y[2]), "window 2 (NaN): argmax %d y %g", am[2], y[2]);
    AL_EXPECT(am[3] == 10 && isinf(y[3]) && y[3] < 0, "window 3 (all -inf): argmax %d y %g",
              am[3], y[3]);
    /* all equal: the window's first element */
    for (int i = 0; i < 16; i++) x[i] = 1.0f;
    AL_EXPECT(al_maxpool_forward(&ctx, &d, x, y, am) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(am[0] == 0 && am[1] == 2 && am[2] == 8 && am[3] == 10, "equal windows: %d %d %d %d",
              am[0], am[1], am[2], am[3]);
    /* the generic path (3x3 windows, stride 1): ties, NaN and -inf alike */
    al_pool_desc d3;
    al_pool_desc_init(&d3, 1, 1, 4, 4, 3, 1);
    for (int i = 0; i < 16; i++) x[i] = -INFINITY;
    x[6] = 2.0f; x[9] = 2.0f;  /* window (0,0) holds both: 6 comes first */
    x[11] = NAN;               /* windows (0,1), (1,1) */
    AL_EXPECT(al_maxpool_forward(&ctx, &d3, x, y, am) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(am[0] == 6 && y[0] == 2.0f, "3x3 tie: argmax %d", am[0]);
    AL_EXPECT(am[1] == 11 && isnan(y[1]) && am[3] == 11, "3x3 NaN: argmax %d %d", am[1], am[3]);
    AL_EXPECT(am[2] == 6, "3x3 window (1,0): argmax %d", am[2]);
    for (int i = 0; i < 16; i++) x[i] = -INFINITY;
    AL_EXPECT(al_maxpool_forward(&ctx, &d3, x, y, am) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(am[0] == 0 && am[1] == 1 && am[2] == 4 && am[3] == 5 && isinf(y[0]),
              "3x3 all -inf: %d %d %d %d", am[0], am[1], am[2], am[3]);
    al_ctx_fini(&ctx);
    return 0;
}

/* ------------------------------------------------------------------ (b) elementwise */

static int ew_vs_ref(size_t ne, int threads) {
    al_ctx ctx;
    ctx_init_threads(&ctx, threads);
    const int c = 3;
    const int hw = (int)(ne / (2 * c)), n = 2;
    const size_t nn = (size_t)n * c * hw; /* normalize shape */
    float *a = falloc(ne), *b = falloc(ne), *y = falloc(ne), *dy = falloc(ne), *dx = falloc(ne),
          *pre = falloc(ne), *mask = falloc(ne);
    double *ad = dalloc(ne), *bd = dalloc(ne), *yd = dalloc(ne), *dyd = dalloc(ne),
           *dxd = dalloc(ne), *exp_ = dalloc(ne), *maskd = dalloc(ne);
    const float mean[3] = {0.4914f, 0.4822f, 0.4465f}, stdv[3] = {0.2471f, 0.2435f, 0.2616f};
    const double meand[3] = {mean[0], mean[1], mean[2]}, stdd[3] = {stdv[0], stdv[1], stdv[2]};
    al_test_fill(a, ne, next_id(), -1, 1);
    al_test_fill(b, ne, next_id(), -1, 1);
    al_test_fill(dy, ne, next_id(), -1, 1);
    al_test_fill(pre, ne, next_id(), -1, 1);
    f2d(a, ad, ne);
    f2d(b, bd, ne);
    f2d(dy, dyd, ne);
    int rc = 0;
    uint64_t allocs0 = al_alloc_count();

    /* relu: exact in both directions */
    AL_EXPECT(al_relu_forward(&ctx, ne, a, y) == AL_OK, "relu");
    al_ref_relu_forward(ne, ad, yd);
    rc |= al_check_close_fd("relu y", y, yd, ne, 0, 0);
    al_ref_relu_backward(ne, ad, dyd, dxd);
    fill_nan(dx, ne);
    AL_EXPECT(al_relu_backward(&ctx, ne, y, dy, dx, 0) == AL_OK, "relu bwd");
    rc |= al_check_close_fd("relu dx (=)", dx, dxd, ne, 0, 0);
    memcpy(dx, pre, ne * sizeof *dx);
    AL_EXPECT(al_relu_backward(&ctx, ne, y, dy, dx, 1) == AL_OK, "relu bwd");
    for (size_t i = 0; i < ne; i++) exp_[i] = pre[i] + dxd[i];
    rc |= check_f("relu dx (+=)", dx, exp_, ne, 1);

    /* add and accumulate: one correctly rounded addition */
    AL_EXPECT(al_add_forward(&ctx, ne, a, b, y) == AL_OK, "add");
    al_ref_add_forward(ne, ad, bd, yd);
    rc |= check_f("add y", y, yd, ne, 1);
    memcpy(dx, pre, ne * sizeof *dx);
    AL_EXPECT(al_accumulate(&ctx, ne, dy, dx, 1) == AL_OK, "acc");
    for (size_t i = 0; i < ne; i++) exp_[i] = pre[i] + dyd[i];
    rc |= check_f("accumulate (+=)", dx, exp_, ne, 1);
    fill_nan(dx, ne);
    AL_EXPECT(al_accumulate(&ctx, ne, dy, dx, 0) == AL_OK, "acc");
    AL_EXPECT(memcmp(dx, dy, ne * sizeof *dx) == 0, "accumulate (=) is not a copy");

    /* normalize: a subtraction and a division */
    AL_EXPECT(al_normalize_forward(&ctx, n, c, hw, a, mean, stdv, y) == AL_OK, "norm");
    al_ref_normalize_forward(n, c, hw, ad, meand, stdd, yd);
    rc |= check_f("normalize y", y, yd, nn, 2);
    al_ref_normalize_backward(n, c, hw, stdd, dyd, dxd);
    fill_nan(dx, nn);
    AL_EXPECT(al_normalize_backward(&ctx, n, c, hw, stdv, dy, dx, 0) == AL_OK, "norm bwd");
    rc |= check_f("normalize dx (=)", dx, dxd, nn, 1);
    memcpy(dx, pre, nn * sizeof *dx);
    AL_EXPECT(al_normalize_backward(&ctx, n, c, hw, stdv, dy, dx, 1) == AL_OK, "norm bwd");
    for (size_t i = 0; i < nn; i++) exp_[i] = pre[i] + dxd[i];
    rc |= check_f("normalize dx (+=)", dx, exp_, nn, 2);

    /* dropout: the mask is the documented Philox formula, element by element */
    const float p = 0.3f;
    const uint64_t seed = 0x1234abcdULL, stream = al_stream(AL_STREAM_DROPOUT, 77);
    AL_EXPECT(al_dropout_forward(&ctx, ne, p, seed, stream, a, y, mask) == AL_OK, "dropout");
    al_ref_dropout_mask(ne, p, seed, stream, maskd);
    rc |= check_f("dropout mask", mask, maskd, ne, 1);
    al_ref_dropout_forward(ne, ad, maskd, yd);
    rc |= check_f("dropout y", y, yd, ne, 2);
    size_t kept = 0;
    for (size_t i = 0; i < ne; i++) kept += mask[i] != 0.0f;
    /* binomial(ne, 0.7): 6 sigma */
    double sd = sqrt(ne * 0.3 * 0.7);
    AL_EXPECT(fabs((double)kept - 0.7 * ne) <= 6 * sd + 1, "dropout kept %zu of %zu", kept, ne);
    al_ref_dropout_backward(ne, maskd, dyd, dxd);
    fill_nan(dx, ne);
    AL_EXPECT(al_dropout_backward(&ctx, ne, mask, dy, dx, 0) == AL_OK, "dropout bwd");
    rc |= check_f("dropout dx (=)", dx, dxd, ne, 2);
    memcpy(dx, pre, ne * sizeof *dx);
    AL_EXPECT(al_dropout_backward(&ctx, ne, mask, dy, dx, 1) == AL_OK, "dropout bwd");
    for (size_t i = 0; i < ne; i++) exp_[i] = pre[i] + dxd[i];
    rc |= check_f("dropout dx (+=)", dx, exp_, ne, 3);
    /* u == p keeps the element (u >= p): take p equal to element 5's own draw */
    const float p5 = al_rng_uniform(seed, stream, 5);
    AL_EXPECT(al_dropout_forward(&ctx, ne, p5, seed, stream, a, y, mask) == AL_OK, "p=u5");
    AL_EXPECT(mask[5] != 0.0f, "dropout dropped u == p (mask %g)", mask[5]);
    /* p = 0 is the identity, p = 1 drops everything, p outside [0,1] is an error */
    AL_EXPECT(al_dropout_forward(&ctx, ne, 0.0f, seed, stream, a, y, mask) == AL_OK, "p=0");
    AL_EXPECT(memcmp(y, a, ne * sizeof *y) == 0, "dropout p=0 is not the identity");
    AL_EXPECT(al_dropout_forward(&ctx, ne, 1.0f, seed, stream, a, y, mask) == AL_OK, "p=1");
    for (size_t i = 0; i < ne; i++) AL_EXPECT(y[i] == 0.0f && mask[i] == 0.0f, "p=1 keeps %zu", i);
    AL_EXPECT(al_dropout_forward(&ctx, ne, 1.5f, seed, stream, a, y, mask) == AL_ERR_VALUE,
              "p=1.5 accepted");
    AL_EXPECT(al_dropout_forward(&ctx, ne, NAN, seed, stream, a, y, mask) == AL_ERR_VALUE,
              "p=NaN accepted");
    EXPECT_CLEAN(&ctx, allocs0);

    free(a), free(b), free(y), free(dy), free(dx), free(pre), free(mask);
    free(ad), free(bd), free(yd), free(dyd), free(dxd), free(exp_), free(maskd);
    al_ctx_fini(&ctx);
    return rc;
}

static int vs_ref_elementwise(void) {
    int rc = 0;
    for (int t = 1; t <= 3; t++) {
        rc |= ew_vs_ref(6 * 7, t);       /* tiny, below the vector width */
        rc |= ew_vs_ref(6 * 20011, t);   /* above the OpenMP threshold, odd */
    }
    return rc;
}

/* relu(NaN) = NaN (PyTorch), relu(-0) = +0, relu(+-inf) = +inf / 0. */
static int relu_nan_inf(void) {
    al_ctx ctx;
    ctx_init_threads(&ctx, 1);
    const float x[5] = {NAN, -0.0f, INFINITY, -INFINITY, 2.0f};
    float y[5];
    AL_EXPECT(al_relu_forward(&ctx, 5, x, y) == AL_OK, "relu");
    AL_EXPECT(isnan(y[0]), "relu(NaN) = %g", y[0]);
    AL_EXPECT(y[1] == 0.0f && !signbit(y[1]), "relu(-0) = %g (sign %d)", y[1], signbit(y[1]));
    AL_EXPECT(isinf(y[2]) && y[2] > 0 && y[3] == 0.0f && y[4] == 2.0f, "relu(+-inf, 2)");
    al_ctx_fini(&ctx);
    return 0;
}

/* ------------------------------------------------------------------ (c) determinism */

static int determinism_conv2d(void) {
    const conv_cfg cf = {8, 16, 9, 9, 24, 3, 1, 1, 1};
    int rc = 0;
    for (int t = 2; t <= 3; t++) {
        al_ctx ctx;
        ctx_init_threads(&ctx, t);
        al_conv2d_desc d;
        al_conv2d_desc_init(&d, cf.n, cf.ci, cf.h, cf.w, cf.co, cf.k, cf.s, cf.p);
        AL_EXPECT(al_ctx_reserve_scratch(&ctx, al_conv2d_scratch_bytes(&ctx, &d)) == AL_OK, "scr");
        const size_t nx = (size_t)cf.n * cf.ci * cf.h * cf.w, nw = (size_t)cf.co * cf.ci * 9,
                     ny = (size_t)cf.n * cf.co * d.h_out * d.w_out;
        float *x = falloc(nx), *w = falloc(nw), *b = falloc(cf.co), *dy = falloc(ny),
              *y[2], *dx[2], *dw[2], *db[2];
        al_test_fill(x, nx, next_id(), -1, 1);
        al_test_fill(w, nw, next_id(), -1, 1);
        al_test_fill(b, cf.co, next_id(), -1, 1);
        al_test_fill(dy, ny, next_id(), -1, 1);
        for (int r = 0; r < 2; r++) {
            y[r] = falloc(ny);
            dx[r] = falloc(nx);
            dw[r] = falloc(nw);
            db[r] = falloc(cf.co);
            AL_EXPECT(al_conv2d_forward(&ctx, &d, x, w, b, y[r]) == AL_OK, "fwd");
            AL_EXPECT(al_conv2d_backward(&ctx, &d, x, w, dy, dx[r], 0, dw[r], db[r]) == AL_OK,
                      "bwd");
        }
        if (memcmp(y[0], y[1], ny * 4) || memcmp(dx[0], dx[1], nx * 4) ||
            memcmp(dw[0], dw[1], nw * 4) || memcmp(db[0], db[1], cf.co * 4)) {
            fprintf(stderr, "  conv2d: two runs with %d threads differ\n", t);
            rc = 1;
        }
        for (int r = 0; r < 2; r++) free(y[r]), free(dx[r]), free(dw[r]), free(db[r]);
        free(x), free(w), free(b), free(dy);
        al_ctx_fini(&ctx);
    }
    return rc;
}

static int determinism_linear_bn(void) {
    const int n = 64, in = 300, out = 70, c = 12, hw = 49;
    al_ctx ctx;
    ctx_init_threads(&ctx, 3);
    float *x = falloc((size_t)n * in), *w = falloc((size_t)out * in), *dy = falloc((size_t)n * out);
    float *dw[2] = {falloc((size_t)out * in), falloc((size_t)out * in)};
    float *dx[2] = {falloc((size_t)n * in), falloc((size_t)n * in)};
    float *db[2] = {falloc(out), falloc(out)};
    al_test_fill(x, (size_t)n * in, next_id(), -1, 1);
    al_test_fill(w, (size_t)out * in, next_id(), -1, 1);
    al_test_fill(dy, (size_t)n * out, next_id(), -1, 1);
    for (int r = 0; r < 2; r++)
        AL_EXPECT(al_linear_backward(&ctx, n, in, out, x, w, dy, dx[r], 0, dw[r], db[r]) == AL_OK,
                  "linear");
    AL_EXPECT(!memcmp(dw[0], dw[1], (size_t)out * in * 4) && !memcmp(dx[0], dx[1], (size_t)n * in * 4) &&
                  !memcmp(db[0], db[1], (size_t)out * 4),
              "linear: two runs differ");
    const size_t nx = (size_t)16 * c * hw;
    float *bx = falloc(nx), *bdy = falloc(nx), *g = falloc(c), *bt = falloc(c), *sm = falloc(c),
          *si = falloc(c), *y = falloc(nx);
    float *bdx[2] = {falloc(nx), falloc(nx)}, *dg[2] = {falloc(c), falloc(c)},
          *dbt[2] = {falloc(c), falloc(c)};
    al_test_fill(bx, nx, next_id(), -1, 1);
    al_test_fill(bdy, nx, next_id(), -1, 1);
    al_test_fill(g, c, next_id(), 0.5f, 1.5f);
    al_bn_desc d = {16, c, hw, 1e-5f, 0.1f, 1, 0};
    for (int r = 0; r < 2; r++) {
        AL_EXPECT(al_bn_forward(&ctx, &d, bx, g, bt, NULL, NULL, y, sm, si) == AL_OK, "bn");
        AL_EXPECT(al_bn_backward(&ctx, &d, bx, g, sm, si, bdy, bdx[r], 0, dg[r], dbt[r]) == AL_OK,
                  "bn");
    }
    AL_EXPECT(!memcmp(bdx[0], bdx[1], nx * 4) && !memcmp(dg[0], dg[1], (size_t)c * 4) &&
                  !memcmp(dbt[0], dbt[1], (size_t)c * 4),
              "bn: two runs differ");
    free(x), free(w), free(dy), free(dw[0]), free(dw[1]), free(dx[0]), free(dx[1]), free(db[0]);
    free(db[1]), free(bx), free(bdy), free(g), free(bt), free(sm), free(si), free(y);
    free(bdx[0]), free(bdx[1]), free(dg[0]), free(dg[1]), free(dbt[0]), free(dbt[1]);
    al_ctx_fini(&ctx);
    return 0;
}

/* ------------------------------------------------------------------ dispatch */

/* A CUDA context in a build without CUDA: every dispatcher refuses with AL_ERR_NO_GPU. */
static int dispatch_no_gpu(void) {
#ifdef AL_HAVE_CUDA
    printf("skipped: CUDA build (covered by the CUDA tests)\n");
    return AL_SKIP_CODE;
#else
    al_ctx ctx;
    ctx_init_threads(&ctx, 1);
    ctx.device = AL_DEV_CUDA;
    float x[8] = {0}, y[8], m[8];
    int32_t am[8];
    al_conv2d_desc cd;
    al_conv2d_desc_init(&cd, 1, 1, 2, 2, 1, 1, 1, 0);
    al_pool_desc pd;
    al_pool_desc_init(&pd, 1, 1, 2, 2, 2, 2);
    al_bn_desc bd = {1, 1, 4, 1e-5f, 0.1f, 1, 0};
    const al_status st[] = {
        al_conv2d_forward(&ctx, &cd, x, x, NULL, y),
        al_conv2d_backward(&ctx, &cd, x, x, x, y, 0, NULL, NULL),
        al_linear_forward(&ctx, 1, 2, 2, x, x, NULL, y),
        al_linear_backward(&ctx, 1, 2, 2, x, x, x, y, 0, NULL, NULL),
        al_bn_forward(&ctx, &bd, x, NULL, NULL, NULL, NULL, y, m, m + 4),
        al_bn_backward(&ctx, &bd, x, NULL, m, m + 4, x, y, 0, NULL, NULL),
        al_maxpool_forward(&ctx, &pd, x, y, am),
        al_maxpool_backward(&ctx, &pd, am, x, y, 0),
        al_avgpool_forward(&ctx, &pd, x, y),
        al_avgpool_backward(&ctx, &pd, x, y, 0),
        al_relu_forward(&ctx, 8, x, y),
        al_relu_backward(&ctx, 8, x, x, y, 0),
        al_add_forward(&ctx, 8, x, x, y),
        al_accumulate(&ctx, 8, x, y, 0),
        al_normalize_forward(&ctx, 1, 1, 8, x, x, x, y),
        al_normalize_backward(&ctx, 1, 1, 8, x, x, y, 0),
        al_dropout_forward(&ctx, 8, 0.5f, 1, 1, x, y, m),
        al_dropout_backward(&ctx, 8, m, x, y, 0),
    };
    for (size_t i = 0; i < AL_ARRAY_LEN(st); i++)
        AL_EXPECT(st[i] == AL_ERR_NO_GPU, "dispatcher %zu returned %s", i, al_status_str(st[i]));
    fprintf(stderr, "  e.g. %s\n", al_errmsg());
    AL_EXPECT(al_conv2d_scratch_bytes(&ctx, &cd) == 0, "no CUDA scratch without CUDA");
    ctx.device = AL_DEV_CPU;
    al_ctx_fini(&ctx);
    return 0;
#endif
}

int main(int argc, char **argv) {
    static const al_case cases[] = {
        {"fd_conv2d", fd_conv2d},
        {"fd_linear", fd_linear_case},
        {"fd_batchnorm", fd_batchnorm},
        {"fd_elementwise", fd_elementwise},
        {"fd_pool", fd_pool_all},
        {"fd_xent", fd_xent_case},
        {"vs_ref_conv2d", vs_ref_conv2d},
        {"conv2d_smaller_batch", conv2d_smaller_batch},
        {"vs_ref_linear", vs_ref_linear},
        {"vs_ref_batchnorm", vs_ref_batchnorm},
        {"batchnorm_running_stats", batchnorm_running_stats},
        {"vs_ref_pool", vs_ref_pool},
        {"maxpool_ties_nan", maxpool_ties_nan},
        {"vs_ref_elementwise", vs_ref_elementwise},
        {"relu_nan_inf", relu_nan_inf},
        {"determinism_conv2d", determinism_conv2d},
        {"determinism_linear_bn", determinism_linear_bn},
        {"dispatch_no_gpu", dispatch_no_gpu},
    };
    return al_run_cases(cases, (int)AL_ARRAY_LEN(cases), argc, argv);
}
