/* test_cuda.c: every CUDA twin in cuda/ against its CPU reference on the same Philox inputs
 * (style rule 21a), plus a whole-model smallcnn forward/backward, determinism, and the
 * no-allocation-after-step-1 check (style rule 15). Without a usable GPU: "skipped: no GPU", 77.
 *
 * Conventions:
 * - Every device output sits between sentinel guards (GUARD_BYTES of a NaN-payload pattern on
 *   each side, style rule 23); '=' outputs start filled with that NaN pattern, so a kernel
 *   that reads an output it should only write shows up as NaN.
 * - Tolerances are derived, never picked by eye (style rule 22). A float sum of K terms each
 *   bounded by B carries rounding ~ eps*sqrt(K) relative to partial sums of size ~sqrt(K)*B:
 *   tol_sum(K, B) = al_tol_f32(K) * sqrt(K) * B (= 8 eps K B). TF32 rounds every input to a
 *   10-bit mantissa: + 8 * EPS_TF32 * sqrt(K) * B (independent per-product errors).
 * - Ops that mirror the CPU expression by expression (elementwise, pool, PGD Linf, SGD, argmax)
 *   are compared EXACTLY (cuda/ is compiled with --fmad=false for that reason). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attacks/pgd_step.h"
#include "core/ctx.h"
#include "core/cuda_api.h"
#include "core/model.h"
#include "core/ops/batchnorm.h"
#include "core/ops/conv2d.h"
#include "core/ops/elementwise.h"
#include "core/ops/linear.h"
#include "core/ops/pool.h"
#include "core/optim.h"
#include "core/rng.h"
#include "harness/check.h"
#include "losses/loss.h"

#define EPS_TF32 9.765625e-4 /* 2^-10: TF32 keeps 10 explicit mantissa bits */
#define GUARD_BYTES 256
#define N_TRACK 512

static const uint8_t SENT[4] = {0xAD, 0xDE, 0xC0, 0x7F}; /* little-endian 0x7FC0DEAD: a NaN */

static al_ctx cpu, gpu;

/* ---------------------------------------------------------------- test memory */

typedef struct {
    void *base;
    size_t n_bytes;
} dev_rec;
static dev_rec g_dev[N_TRACK];
static int g_n_dev;
static void *g_host[N_TRACK];
static int g_n_host;

static void *hnew(size_t n_bytes) {
    AL_ASSERT(g_n_host < N_TRACK, "too many host buffers in one case");
    void *p = calloc(1, n_bytes ? n_bytes : 1);
    AL_ASSERT(p, "out of host memory (%zu bytes)", n_bytes);
    g_host[g_n_host++] = p;
    return p;
}
static float *hf(size_t n) { return hnew(n * sizeof(float)); }
static float *hrand(size_t n, uint64_t id, float lo, float hi) {
    float *p = hf(n);
    al_test_fill(p, n, id, lo, hi);
    return p;
}
static float *hcopy(const float *src, size_t n) {
    float *p = hf(n);
    memcpy(p, src, n * sizeof(float));
    return p;
}

/* Device buffer of n_bytes between guards; filled from src_host, or with the NaN pattern. */
static void *dnew(size_t n_bytes, const void *src_host) {
    AL_ASSERT(g_n_dev < N_TRACK, "too many device buffers in one case");
    const size_t tot = n_bytes + 2 * GUARD_BYTES;
    uint8_t *h = malloc(tot);
    AL_ASSERT(h, "out of host memory");
    for (size_t i = 0; i < tot; i++) h[i] = SENT[i & 3];
    if (src_host && n_bytes) memcpy(h + GUARD_BYTES, src_host, n_bytes);
    void *base = NULL;
    al_status st = al_dev_alloc(&gpu, &base, tot, "test buffer");
    AL_ASSERT(st == AL_OK, "device alloc: %s", al_errmsg());
    st = al_copy_to_dev(&gpu, base, h, tot);
    AL_ASSERT(st == AL_OK, "copy to device: %s", al_errmsg());
    free(h);
    g_dev[g_n_dev].base = base;
    g_dev[g_n_dev].n_bytes = n_bytes;
    g_n_dev++;
    return (uint8_t *)base + GUARD_BYTES;
}
static float *dnewf(size_t n, const float *src) { return dnew(n * sizeof(float), src); }

/* Copy a dnew buffer back (n_bytes from its start) and check both guards byte for byte. */
static int dget(const char *what, const void *d, void *h_out, size_t n_bytes) {
    const uint8_t *base = (const uint8_t *)d - GUARD_BYTES;
    size_t cap = 0;
    for (int i = 0; i < g_n_dev; i++)
        if (g_dev[i].base == base) cap = g_dev[i].n_bytes;
    AL_ASSERT(cap >= n_bytes, "%s: not a test buffer or too short", what);
    const size_t tot = cap + 2 * GUARD_BYTES;
    uint8_t *h = malloc(tot);
    AL_ASSERT(h, "out of host memory");
    al_status st = al_copy_to_host(&gpu, h, base, tot);
    if (st != AL_OK) {
        fprintf(stderr, "  %s: copy to host failed: %s\n", what, al_errmsg());
        free(h);
        return 1;
    }
    int bad = 0;
    for (size_t i = 0; i < tot; i++) {
        if (i == GUARD_BYTES) i += cap;
        if (i < tot && h[i] != SENT[i & 3]) {
            const int before = i < GUARD_BYTES;
            fprintf(stderr, "  %s: guard byte %s%zu overwritten\n", what, before ? "-" : "+",
                    before ? GUARD_BYTES - i : i - GUARD_BYTES - cap);
            bad = 1;
            break;
        }
    }
    memcpy(h_out, h + GUARD_BYTES, n_bytes);
    free(h);
    return bad;
}

static int dcheck(const char *what, const float *d, const float *ref, size_t n, double atol,
                  double rtol) {
    float *h = hf(n);
    if (dget(what, d, h, n * sizeof(float))) return 1;
    return al_check_close(what, h, ref, n, atol, rtol);
}

static void case_cleanup(void) {
    (void)al_sync(&gpu);
    for (int i = 0; i < g_n_dev; i++) al_dev_free(&gpu, g_dev[i].base);
    for (int i = 0; i < g_n_host; i++) free(g_host[i]);
    g_n_dev = g_n_host = 0;
    gpu.precision = AL_FP32;
    gpu.deterministic = 1;
}

#define OK(call)                                                                           \
    do {                                                                                   \
        al_status st_ = (call);                                                            \
        if (st_ != AL_OK) {                                                                \
            fprintf(stderr, "  FAIL %s:%d: %s = %s: %s\n", __FILE__, __LINE__, #call,      \
                    al_status_str(st_), al_errmsg());                                      \
            return 1;                                                                      \
        }                                                                                  \
    } while (0)

/* ---------------------------------------------------------------- tolerances */

static double tol_sum(double k, double bound) {
    return al_tol_f32(k) * sqrt(k < 1 ? 1 : k) * bound;
}
static double tol_gemm(al_precision p, double k, double bound) {
    double t = tol_sum(k, bound);
    if (p != AL_FP32) t += 8.0 * EPS_TF32 * sqrt(k) * bound;
    return t;
}
static double rtol_gemm(al_precision p, double k) {
    return p == AL_FP32 ? al_tol_f32(k) : 8.0 * EPS_TF32;
}
static double maxabs(const float *a, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++)
        if (isfinite(a[i]) && fabs(a[i]) > m) m = fabs(a[i]);
    return m;
}

/* ---------------------------------------------------------------- conv2d */

typedef struct {
    int n, ci, h, w, co, k, s, p;
} conv_shape;

static int conv_one(const conv_shape *cs, int bias, al_precision prec, int det) {
    al_conv2d_desc d;
    al_conv2d_desc_init(&d, cs->n, cs->ci, cs->h, cs->w, cs->co, cs->k, cs->s, cs->p);
    gpu.precision = prec;
    gpu.deterministic = det;
    fprintf(stderr, "  conv n=%d ci=%d %dx%d co=%d k=%d s=%d p=%d bias=%d prec=%d det=%d\n",
            cs->n, cs->ci, cs->h, cs->w, cs->co, cs->k, cs->s, cs->p, bias, (int)prec, det);
    const size_t nx = (size_t)d.n * d.c_in * d.h_in * d.w_in;
    const size_t nw = (size_t)d.c_out * d.c_in * d.kh * d.kw;
    const size_t ny = (size_t)d.n * d.c_out * d.h_out * d.w_out;
    const double K = (double)d.c_in * d.kh * d.kw;
    const double wb = 1.0 / sqrt(K); /* |w| bound: outputs O(1) */
    float *x = hrand(nx, 1, -1, 1), *w = hrand(nw, 2, -1, 1), *b = hrand(d.c_out, 3, -1, 1);
    for (size_t i = 0; i < nw; i++) w[i] *= (float)wb;
    float *dy = hrand(ny, 4, -1, 1), *dx0 = hrand(nx, 5, -1, 1), *dw0 = hrand(nw, 6, -1, 1);
    float *db0 = hrand(d.c_out, 7, -1, 1);

    /* CPU reference */
    OK(al_ctx_reserve_scratch(&cpu, al_conv2d_scratch_bytes(&cpu, &d)));
    float *y_c = hf(ny), *dx_c = hf(nx), *dxa_c = hcopy(dx0, nx), *dw_c = hcopy(dw0, nw);
    float *db_c = hcopy(db0, d.c_out);
    OK(al_conv2d_forward_cpu(&cpu, &d, x, w, bias ? b : NULL, y_c));
    OK(al_conv2d_backward_cpu(&cpu, &d, x, w, dy, dx_c, 0, dw_c, db_c));
    OK(al_conv2d_backward_cpu(&cpu, &d, x, w, dy, dxa_c, 1, NULL, NULL));

    /* CUDA */
    OK(al_ctx_reserve_scratch(&gpu, al_conv2d_scratch_bytes(&gpu, &d)));
    float *gx = dnewf(nx, x), *gw = dnewf(nw, w), *gb = dnewf(d.c_out, b), *gdy = dnewf(ny, dy);
    float *gy = dnewf(ny, NULL), *gdx = dnewf(nx, NULL), *gdxa = dnewf(nx, dx0);
    float *gdw = dnewf(nw, dw0), *gdb = dnewf(d.c_out, db0);
    OK(al_conv2d_forward_cuda(&gpu, &d, gx, gw, bias ? gb : NULL, gy));
    OK(al_conv2d_backward_cuda(&gpu, &d, gx, gw, gdy, gdx, 0, gdw, gdb));
    OK(al_conv2d_backward_cuda(&gpu, &d, gx, gw, gdy, gdxa, 1, NULL, NULL));

    /* y: K products bounded by wb (+ bias); dx: <= Co*k*k products bounded by wb;
     * dw, db: N*Ho*Wo products bounded by 1 (+ the prior value: 4 eps) */
    const double Kdx = (double)d.c_out * d.kh * d.kw, Kw = (double)d.n * d.h_out * d.w_out;
    int bad = 0;
    bad |= dcheck("conv y", gy, y_c, ny, tol_gemm(prec, K, wb) + 4 * AL_F32_EPS,
                  rtol_gemm(prec, K));
    bad |= dcheck("conv dx (=)", gdx, dx_c, nx, tol_gemm(prec, Kdx, wb), rtol_gemm(prec, Kdx));
    bad |= dcheck("conv dx (+=)", gdxa, dxa_c, nx, tol_gemm(prec, Kdx, wb) + 4 * AL_F32_EPS,
                  rtol_gemm(prec, Kdx));
    bad |= dcheck("conv dw (+=)", gdw, dw_c, nw, tol_gemm(prec, Kw, 1.0) + 4 * AL_F32_EPS,
                  rtol_gemm(prec, Kw));
    bad |= dcheck("conv db (+=)", gdb, db_c, d.c_out, tol_sum(Kw, 1.0) + 4 * AL_F32_EPS,
                  al_tol_f32(Kw));
    return bad;
}

static int case_conv2d(void) {
    static const conv_shape shapes[] = {
        {1, 3, 8, 8, 5, 3, 1, 1},     /* batch 1, tiny channels */
        {2, 33, 9, 9, 17, 3, 2, 1},   /* C % 32 != 0, stride 2, odd size */
        {3, 16, 7, 7, 40, 1, 1, 0},   /* 1x1 */
        {2, 1, 28, 28, 32, 3, 1, 0},  /* smallcnn conv1 */
        {2, 64, 8, 8, 64, 3, 1, 1},   /* resnet-ish */
        {2, 24, 10, 10, 48, 1, 2, 0}, /* 1x1 stride-2 shortcut */
    };
    int bad = 0;
    for (size_t i = 0; i < AL_ARRAY_LEN(shapes); i++) {
        bad |= conv_one(&shapes[i], 1, AL_FP32, 1);
        if (i == 1) bad |= conv_one(&shapes[i], 0, AL_FP32, 1);
    }
    bad |= conv_one(&shapes[4], 1, AL_FP32, 0); /* non-deterministic algorithms allowed */
    bad |= conv_one(&shapes[4], 1, AL_TF32, 1);
    return bad;
}

/* ---------------------------------------------------------------- linear */

static int linear_one(int n, int in, int out, int bias, al_precision prec) {
    gpu.precision = prec;
    fprintf(stderr, "  linear n=%d in=%d out=%d bias=%d prec=%d\n", n, in, out, bias, (int)prec);
    const size_t nx = (size_t)n * in, nw = (size_t)out * in, ny = (size_t)n * out;
    const double wb = 1.0 / sqrt((double)in);
    float *x = hrand(nx, 11, -1, 1), *w = hrand(nw, 12, -1, 1), *b = hrand(out, 13, -1, 1);
    for (size_t i = 0; i < nw; i++) w[i] *= (float)wb;
    float *dy = hrand(ny, 14, -1, 1), *dx0 = hrand(nx, 15, -1, 1), *dw0 = hrand(nw, 16, -1, 1);
    float *db0 = hrand(out, 17, -1, 1);
    float *y_c = hf(ny), *dx_c = hf(nx), *dxa_c = hcopy(dx0, nx), *dw_c = hcopy(dw0, nw);
    float *db_c = hcopy(db0, out);
    OK(al_linear_forward_cpu(&cpu, n, in, out, x, w, bias ? b : NULL, y_c));
    OK(al_linear_backward_cpu(&cpu, n, in, out, x, w, dy, dx_c, 0, dw_c, db_c));
    OK(al_linear_backward_cpu(&cpu, n, in, out, x, w, dy, dxa_c, 1, NULL, NULL));

    float *gx = dnewf(nx, x), *gw = dnewf(nw, w), *gb = dnewf(out, b), *gdy = dnewf(ny, dy);
    float *gy = dnewf(ny, NULL), *gdx = dnewf(nx, NULL), *gdxa = dnewf(nx, dx0);
    float *gdw = dnewf(nw, dw0), *gdb = dnewf(out, db0);
    OK(al_linear_forward_cuda(&gpu, n, in, out, gx, gw, bias ? gb : NULL, gy));
    OK(al_linear_backward_cuda(&gpu, n, in, out, gx, gw, gdy, gdx, 0, gdw, gdb));
    OK(al_linear_backward_cuda(&gpu, n, in, out, gx, gw, gdy, gdxa, 1, NULL, NULL));

    int bad = 0;
    bad |= dcheck("linear y", gy, y_c, ny, tol_gemm(prec, in, wb) + 4 * AL_F32_EPS,
                  rtol_gemm(prec, in));
    bad |= dcheck("linear dx (=)", gdx, dx_c, nx, tol_gemm(prec, out, wb), rtol_gemm(prec, out));
    bad |= dcheck("linear dx (+=)", gdxa, dxa_c, nx, tol_gemm(prec, out, wb) + 4 * AL_F32_EPS,
                  rtol_gemm(prec, out));
    bad |= dcheck("linear dw (+=)", gdw, dw_c, nw, tol_gemm(prec, n, 1.0) + 4 * AL_F32_EPS,
                  rtol_gemm(prec, n));
    bad |= dcheck("linear db (+=)", gdb, db_c, out, tol_sum(n, 1.0) + 4 * AL_F32_EPS,
                  al_tol_f32(n));
    return bad;
}

static int case_linear(void) {
    int bad = 0;
    bad |= linear_one(1, 7, 3, 1, AL_FP32);
    bad |= linear_one(5, 100, 33, 1, AL_FP32);
    bad |= linear_one(5, 100, 33, 0, AL_FP32);
    bad |= linear_one(64, 1024, 200, 1, AL_FP32);
    bad |= linear_one(64, 1024, 200, 1, AL_TF32);
    return bad;
}

/* ---------------------------------------------------------------- batch norm */

static int bn_one(int n, int c, int hw, int train) {
    fprintf(stderr, "  bn n=%d c=%d hw=%d train=%d\n", n, c, hw, train);
    const size_t ne = (size_t)n * c * hw, m = (size_t)n * hw;
    al_bn_desc d = {n, c, hw, 1e-5f, 0.1f, train, train};
    float *x = hrand(ne, 21, -1.5f, 2.5f), *gamma = hrand(c, 22, 0.5f, 1.5f);
    float *beta = hrand(c, 23, -0.5f, 0.5f), *rm0 = hrand(c, 24, -0.5f, 0.5f);
    float *rv0 = hrand(c, 25, 0.5f, 1.5f), *dy = hrand(ne, 26, -1, 1);
    float *dx0 = hrand(ne, 27, -1, 1), *dg0 = hrand(c, 28, -1, 1), *db0 = hrand(c, 29, -1, 1);

    float *rm_c = hcopy(rm0, c), *rv_c = hcopy(rv0, c), *y_c = hf(ne), *sm_c = hf(c);
    float *si_c = hf(c), *dx_c = hf(ne), *dxa_c = hcopy(dx0, ne), *dg_c = hcopy(dg0, c);
    float *db_c = hcopy(db0, c);
    OK(al_bn_forward_cpu(&cpu, &d, x, gamma, beta, rm_c, rv_c, y_c, sm_c, si_c));
    OK(al_bn_backward_cpu(&cpu, &d, x, gamma, sm_c, si_c, dy, dx_c, 0, dg_c, db_c));
    OK(al_bn_backward_cpu(&cpu, &d, x, gamma, sm_c, si_c, dy, dxa_c, 1, NULL, NULL));

    float *gx = dnewf(ne, x), *gg = dnewf(c, gamma), *gbeta = dnewf(c, beta);
    float *grm = dnewf(c, rm0), *grv = dnewf(c, rv0), *gy = dnewf(ne, NULL);
    float *gsm = dnewf(c, NULL), *gsi = dnewf(c, NULL), *gdy = dnewf(ne, dy);
    float *gdx = dnewf(ne, NULL), *gdxa = dnewf(ne, dx0), *gdg = dnewf(c, dg0);
    float *gdb = dnewf(c, db0);
    OK(al_bn_forward_cuda(&gpu, &d, gx, gg, gbeta, grm, grv, gy, gsm, gsi));
    OK(al_bn_backward_cuda(&gpu, &d, gx, gg, gsm, gsi, gdy, gdx, 0, gdg, gdb));
    OK(al_bn_backward_cuda(&gpu, &d, gx, gg, gsm, gsi, gdy, gdxa, 1, NULL, NULL));

    /* Statistics: double sums on both sides, differing only in order -> a float rounding
     * apart at most (4 eps relative). Outputs: 2-3 float ops on per-channel constants that
     * may differ by that much: al_tol_f32(4) relative to the output scale. Parameter
     * gradients: double sums of M terms rounded once, plus the prior value. */
    const double r = al_tol_f32(4);
    int bad = 0;
    bad |= dcheck("bn y", gy, y_c, ne, r * maxabs(y_c, ne), r);
    bad |= dcheck("bn save_mean", gsm, sm_c, c, r * maxabs(sm_c, c), r);
    bad |= dcheck("bn save_invstd", gsi, si_c, c, 0, r);
    bad |= dcheck("bn running_mean", grm, rm_c, c, r * maxabs(rm_c, c), r);
    bad |= dcheck("bn running_var", grv, rv_c, c, 0, r);
    bad |= dcheck("bn dx (=)", gdx, dx_c, ne, al_tol_f32((double)m) * maxabs(dx_c, ne), r);
    bad |= dcheck("bn dx (+=)", gdxa, dxa_c, ne, al_tol_f32((double)m) * maxabs(dxa_c, ne), r);
    /* |sum| <= |result| + |prior| <= max|ref| + 1, each rounded a few times */
    bad |= dcheck("bn dgamma (+=)", gdg, dg_c, c, r * (maxabs(dg_c, c) + 2), r);
    bad |= dcheck("bn dbeta (+=)", gdb, db_c, c, r * (maxabs(db_c, c) + 2), r);
    return bad;
}

static int case_batchnorm(void) {
    int bad = 0;
    const int shapes[][3] = {{1, 3, 25}, {4, 33, 49}, {8, 64, 1}, {2, 5, 1000}, {2, 1, 1}};
    for (size_t i = 0; i < AL_ARRAY_LEN(shapes); i++)
        for (int train = 0; train <= 1; train++)
            bad |= bn_one(shapes[i][0], shapes[i][1], shapes[i][2], train);
    /* N*HW = 1 in train mode: both refuse with AL_ERR_VALUE */
    al_bn_desc d1 = {1, 2, 1, 1e-5f, 0.1f, 1, 0};
    float one[2] = {1, 2};
    float *gx = dnewf(2, one), *gy = dnewf(2, NULL);
    al_status st = al_bn_forward_cuda(&gpu, &d1, gx, NULL, NULL, NULL, NULL, gy, NULL, NULL);
    AL_EXPECT(st == AL_ERR_VALUE, "bn with N*HW = 1 in train mode: got %s", al_status_str(st));
    return bad;
}

/* ---------------------------------------------------------------- elementwise */

#define EW_N ((size_t)100003) /* not a multiple of the block, of 4 (dropout groups), of 32 */

static int case_elementwise(void) {
    const size_t n = EW_N;
    float *x = hrand(n, 31, -1, 1), *b = hrand(n, 32, -1, 1), *dy = hrand(n, 33, -1, 1);
    float *dx0 = hrand(n, 34, -1, 1);
    x[0] = NAN;
    x[1] = 0.0f;
    x[2] = -0.0f;
    x[3] = INFINITY;
    x[4] = -INFINITY;
    dy[5] = NAN;
    int bad = 0;
    float *gx = dnewf(n, x), *gb = dnewf(n, b), *gdy = dnewf(n, dy);

    /* relu */
    float *y_c = hf(n), *dx_c = hf(n), *dxa_c = hcopy(dx0, n);
    OK(al_relu_forward_cpu(&cpu, n, x, y_c));
    OK(al_relu_backward_cpu(&cpu, n, y_c, dy, dx_c, 0));
    OK(al_relu_backward_cpu(&cpu, n, y_c, dy, dxa_c, 1));
    float *gy = dnewf(n, NULL), *gdx = dnewf(n, NULL), *gdxa = dnewf(n, dx0);
    OK(al_relu_forward_cuda(&gpu, n, gx, gy));
    OK(al_relu_backward_cuda(&gpu, n, gy, gdy, gdx, 0));
    OK(al_relu_backward_cuda(&gpu, n, gy, gdy, gdxa, 1));
    bad |= dcheck("relu y", gy, y_c, n, 0, 0);
    bad |= dcheck("relu dx (=)", gdx, dx_c, n, 0, 0);
    bad |= dcheck("relu dx (+=)", gdxa, dxa_c, n, 0, 0);

    /* add, accumulate */
    float *s_c = hf(n), *acc_c = hcopy(dx0, n), *cp_c = hf(n);
    OK(al_add_forward_cpu(&cpu, n, x, b, s_c));
    OK(al_accumulate_cpu(&cpu, n, b, acc_c, 1));
    OK(al_accumulate_cpu(&cpu, n, b, cp_c, 0));
    float *gs = dnewf(n, NULL), *gacc = dnewf(n, dx0), *gcp = dnewf(n, NULL);
    OK(al_add_forward_cuda(&gpu, n, gx, gb, gs));
    OK(al_accumulate_cuda(&gpu, n, gb, gacc, 1));
    OK(al_accumulate_cuda(&gpu, n, gb, gcp, 0));
    bad |= dcheck("add y", gs, s_c, n, 0, 0);
    bad |= dcheck("accumulate (+=)", gacc, acc_c, n, 0, 0);
    bad |= dcheck("accumulate (=)", gcp, cp_c, n, 0, 0);

    /* normalize: (N, C, HW) = (3, 3, 1025) */
    const int nn = 3, nc = 3, hw = 1025;
    const size_t nne = (size_t)nn * nc * hw;
    const float mean[3] = {0.4914f, 0.4822f, 0.4465f}, sd[3] = {0.2471f, 0.2435f, 0.2616f};
    float *xn = hrand(nne, 35, 0, 1), *dyn = hrand(nne, 36, -1, 1), *dxn0 = hrand(nne, 37, -1, 1);
    float *yn_c = hf(nne), *dxn_c = hf(nne), *dxna_c = hcopy(dxn0, nne);
    OK(al_normalize_forward_cpu(&cpu, nn, nc, hw, xn, mean, sd, yn_c));
    OK(al_normalize_backward_cpu(&cpu, nn, nc, hw, sd, dyn, dxn_c, 0));
    OK(al_normalize_backward_cpu(&cpu, nn, nc, hw, sd, dyn, dxna_c, 1));
    float *gmean = dnewf(3, mean), *gsd = dnewf(3, sd), *gxn = dnewf(nne, xn);
    float *gdyn = dnewf(nne, dyn), *gyn = dnewf(nne, NULL), *gdxn = dnewf(nne, NULL);
    float *gdxna = dnewf(nne, dxn0);
    OK(al_normalize_forward_cuda(&gpu, nn, nc, hw, gxn, gmean, gsd, gyn));
    OK(al_normalize_backward_cuda(&gpu, nn, nc, hw, gsd, gdyn, gdxn, 0));
    OK(al_normalize_backward_cuda(&gpu, nn, nc, hw, gsd, gdyn, gdxna, 1));
    bad |= dcheck("normalize y", gyn, yn_c, nne, 0, 0);
    bad |= dcheck("normalize dx (=)", gdxn, dxn_c, nne, 0, 0);
    bad |= dcheck("normalize dx (+=)", gdxna, dxna_c, nne, 0, 0);

    /* dropout: the same Philox mask on both backends */
    const float ps[] = {0.0f, 0.3f, 0.5f, 1.0f};
    for (size_t t = 0; t < AL_ARRAY_LEN(ps); t++) {
        const uint64_t seed = 1234, stream = al_stream(AL_STREAM_DROPOUT, 77 + t);
        float *yd_c = hf(n), *mk_c = hf(n), *dxd_c = hf(n), *dxda_c = hcopy(dx0, n);
        OK(al_dropout_forward_cpu(&cpu, n, ps[t], seed, stream, x, yd_c, mk_c));
        OK(al_dropout_backward_cpu(&cpu, n, mk_c, dy, dxd_c, 0));
        OK(al_dropout_backward_cpu(&cpu, n, mk_c, dy, dxda_c, 1));
        float *gyd = dnewf(n, NULL), *gmk = dnewf(n, NULL), *gdxd = dnewf(n, NULL);
        float *gdxda = dnewf(n, dx0);
        OK(al_dropout_forward_cuda(&gpu, n, ps[t], seed, stream, gx, gyd, gmk));
        OK(al_dropout_backward_cuda(&gpu, n, gmk, gdy, gdxd, 0));
        OK(al_dropout_backward_cuda(&gpu, n, gmk, gdy, gdxda, 1));
        fprintf(stderr, "  dropout p=%g\n", (double)ps[t]);
        bad |= dcheck("dropout mask", gmk, mk_c, n, 0, 0);
        bad |= dcheck("dropout y", gyd, yd_c, n, 0, 0);
        bad |= dcheck("dropout dx (=)", gdxd, dxd_c, n, 0, 0);
        bad |= dcheck("dropout dx (+=)", gdxda, dxda_c, n, 0, 0);
    }
    float *gyd = dnewf(n, NULL), *gmk = dnewf(n, NULL);
    al_status st = al_dropout_forward_cuda(&gpu, n, 1.5f, 1, 1, gx, gyd, gmk);
    AL_EXPECT(st == AL_ERR_VALUE, "dropout p = 1.5: got %s", al_status_str(st));
    return bad;
}

/* ---------------------------------------------------------------- pooling */

static int pool_one(int n, int c, int h, int w, int k, int s, int is_max) {
    al_pool_desc d;
    al_pool_desc_init(&d, n, c, h, w, k, s);
    fprintf(stderr, "  %spool n=%d c=%d %dx%d k=%d s=%d\n", is_max ? "max" : "avg", n, c, h, w, k,
            s);
    const size_t nx = (size_t)n * c * h * w, ny = (size_t)n * c * d.h_out * d.w_out;
    float *x = hrand(nx, 41, -1, 1), *dy = hrand(ny, 42, -1, 1), *dx0 = hrand(nx, 43, -1, 1);
    /* quantise to multiples of 1/4: plenty of ties to exercise "first maximum wins" */
    for (size_t i = 0; i < nx; i++) x[i] = roundf(x[i] * 4.0f) / 4.0f;
    if (is_max && nx > 10) {
        x[7] = NAN; /* NaN wins (PyTorch rule) */
        x[nx - 2] = NAN;
    }
    float *y_c = hf(ny), *dx_c = hf(nx), *dxa_c = hcopy(dx0, nx);
    int32_t *am_c = hnew(ny * sizeof(int32_t));
    float *gx = dnewf(nx, x), *gdy = dnewf(ny, dy), *gy = dnewf(ny, NULL), *gdx = dnewf(nx, NULL);
    float *gdxa = dnewf(nx, dx0);
    int32_t *gam = dnew(ny * sizeof(int32_t), NULL);
    if (is_max) {
        OK(al_maxpool_forward_cpu(&cpu, &d, x, y_c, am_c));
        OK(al_maxpool_backward_cpu(&cpu, &d, am_c, dy, dx_c, 0));
        OK(al_maxpool_backward_cpu(&cpu, &d, am_c, dy, dxa_c, 1));
        OK(al_maxpool_forward_cuda(&gpu, &d, gx, gy, gam));
        OK(al_maxpool_backward_cuda(&gpu, &d, gam, gdy, gdx, 0));
        OK(al_maxpool_backward_cuda(&gpu, &d, gam, gdy, gdxa, 1));
    } else {
        OK(al_avgpool_forward_cpu(&cpu, &d, x, y_c));
        OK(al_avgpool_backward_cpu(&cpu, &d, dy, dx_c, 0));
        OK(al_avgpool_backward_cpu(&cpu, &d, dy, dxa_c, 1));
        OK(al_avgpool_forward_cuda(&gpu, &d, gx, gy));
        OK(al_avgpool_backward_cuda(&gpu, &d, gdy, gdx, 0));
        OK(al_avgpool_backward_cuda(&gpu, &d, gdy, gdxa, 1));
    }
    /* the gather visits windows in the twin's scatter order: exact */
    int bad = 0;
    bad |= dcheck("pool y", gy, y_c, ny, 0, 0);
    bad |= dcheck("pool dx (=)", gdx, dx_c, nx, 0, 0);
    bad |= dcheck("pool dx (+=)", gdxa, dxa_c, nx, 0, 0);
    if (is_max) {
        int32_t *am_g = hnew(ny * sizeof(int32_t));
        bad |= dget("maxpool argmax", gam, am_g, ny * sizeof(int32_t));
        for (size_t i = 0; i < ny; i++)
            if (am_g[i] != am_c[i]) {
                fprintf(stderr, "  maxpool argmax[%zu]: got %d ref %d\n", i, am_g[i], am_c[i]);
                bad = 1;
                break;
            }
    }
    return bad;
}

static int case_pool(void) {
    int bad = 0;
    bad |= pool_one(1, 3, 7, 7, 2, 2, 1);   /* floor mode: last row/col uncovered */
    bad |= pool_one(2, 33, 9, 9, 3, 2, 1);  /* overlapping windows */
    bad |= pool_one(2, 5, 8, 8, 2, 1, 1);   /* stride 1 */
    bad |= pool_one(2, 32, 24, 24, 2, 2, 1); /* smallcnn */
    bad |= pool_one(2, 33, 8, 8, 8, 8, 0);  /* global average */
    bad |= pool_one(1, 3, 7, 7, 2, 2, 0);
    bad |= pool_one(3, 5, 9, 9, 3, 2, 0);   /* overlapping */
    bad |= pool_one(2, 4, 6, 6, 3, 3, 0);   /* exact tiling */
    return bad;
}

/* ---------------------------------------------------------------- PGD step */

static int pgd_one(al_norm norm, int n, size_t d, float alpha, float eps) {
    fprintf(stderr, "  pgd %s n=%d d=%zu alpha=%g eps=%g\n", norm == AL_LINF ? "Linf" : "L2", n, d,
            (double)alpha, (double)eps);
    const size_t ne = (size_t)n * d;
    float *x0 = hrand(ne, 51, 0, 1), *g = hrand(ne, 52, -1, 1), *x = hrand(ne, 53, -1, 1);
    for (size_t i = 0; i < ne; i++) x[i] = al_clampf(x0[i] + x[i] * eps, 0.0f, 1.0f);
    /* the documented non-finite rules: NaN/Inf gradients, NaN/Inf x, exact zero gradients */
    g[0] = NAN;
    g[1] = INFINITY;
    g[2] = -INFINITY;
    g[3] = 0.0f;
    x[4] = NAN;
    x[5] = INFINITY;
    if (n >= 3) /* example 1: an all-zero gradient does not move (L2 inv_gnorm = 0) */
        for (size_t j = 0; j < d; j++) g[d + j] = 0.0f;
    float *x_c = hcopy(x, ne);
    OK(al_pgd_step_cpu(&cpu, norm, n, d, x_c, x0, g, alpha, eps));
    float *gx = dnewf(ne, x), *gx0 = dnewf(ne, x0), *gg = dnewf(ne, g);
    OK(al_pgd_step_cuda(&gpu, norm, n, d, gx, gx0, gg, alpha, eps));
    float *x_g = hf(ne);
    int bad = dget("pgd x", gx, x_g, ne * sizeof(float));
    /* Linf: same element function, exact. L2: the two per-example norms are double sums in a
     * different order; their float roundings may differ by an ulp, moving x by
     * (alpha + 2 eps)-scaled ulps: al_tol_f32(d) bounds that */
    if (norm == AL_LINF)
        bad |= al_check_close("pgd Linf x", x_g, x_c, ne, 0, 0);
    else
        bad |= al_check_close("pgd L2 x", x_g, x_c, ne, al_tol_f32((double)d), 0);
    /* invariants (style rule 21c): finite, inside [0,1] and the eps-ball */
    for (int e = 0; e < n; e++) {
        double dsq = 0;
        for (size_t j = 0; j < d; j++) {
            const size_t i = (size_t)e * d + j;
            const float v = x_g[i];
            AL_EXPECT(isfinite(v) && v >= 0.0f && v <= 1.0f, "x[%zu] = %g outside [0,1]", i,
                      (double)v);
            const double dl = (double)v - x0[i];
            if (norm == AL_LINF)
                AL_EXPECT(fabs(dl) <= eps * (1 + 4 * AL_F32_EPS) + 4 * AL_F32_EPS,
                          "x[%zu]: |delta| %g > eps %g", i, fabs(dl), (double)eps);
            dsq += dl * dl;
        }
        if (norm == AL_L2)
            AL_EXPECT(sqrt(dsq) <= eps * (1 + al_tol_f32((double)d)) + al_tol_f32((double)d),
                      "example %d: ||delta|| %g > eps %g", e, sqrt(dsq), (double)eps);
    }
    return bad;
}

static int case_pgd_step(void) {
    int bad = 0;
    bad |= pgd_one(AL_LINF, 1, 784, 2.0f / 255, 8.0f / 255);
    bad |= pgd_one(AL_LINF, 3, 3073, 2.0f / 255, 8.0f / 255);
    bad |= pgd_one(AL_LINF, 2, 1000, 0.01f, 0.0f); /* eps = 0 returns x0 */
    bad |= pgd_one(AL_L2, 1, 784, 0.1f, 0.5f);
    bad |= pgd_one(AL_L2, 3, 3073, 0.1f, 0.5f);
    bad |= pgd_one(AL_L2, 3, 3073, 2.0f, 0.5f); /* the projection binds */
    /* more elements than any launch has threads (al_grid caps at 16 blocks of 256 per SM:
     * 540,672 on an H100, 16,384 under simcuda), so every grid-stride loop runs again */
    bad |= pgd_one(AL_LINF, 200, 3072, 2.0f / 255, 8.0f / 255);
    bad |= pgd_one(AL_L2, 200, 3072, 0.1f, 0.5f);
    return bad;
}

/* ---------------------------------------------------------------- cross-entropy, accuracy */

static int xent_one(int n, int k, int quantise) {
    fprintf(stderr, "  xent n=%d k=%d\n", n, k);
    const size_t ne = (size_t)n * k;
    float *z = hrand(ne, 61, -8, 8);
    if (quantise)
        for (size_t i = 0; i < ne; i++) z[i] = roundf(z[i] / 4.0f);
    int32_t *y = hnew((size_t)n * sizeof(int32_t));
    for (int i = 0; i < n; i++)
        y[i] = (int32_t)(al_rng_u32(9, al_stream(AL_STREAM_TEST, 62), (uint64_t)i) % (uint32_t)k);
    const float weight = 0.75f;
    double loss_c = 0, loss_g = 0;
    float *ps_c = hf(n), *dz_c = hf(ne);
    OK(al_xent_cpu(&cpu, n, k, z, y, weight, &loss_c, ps_c, dz_c));
    float *gz = dnewf(ne, z), *gps = dnewf(n, NULL), *gdz = dnewf(ne, NULL);
    int32_t *gy = dnew((size_t)n * sizeof(int32_t), y);
    OK(al_xent_cuda(&gpu, n, k, gz, gy, weight, &loss_g, gps, gdz));
    int bad = 0;
    /* per-row math in double on both sides: only the double summation order differs */
    const double lref = loss_c;
    bad |= al_check_close_d("xent loss", &loss_g, &lref, 1, 1e-12, 1e-12);
    bad |= dcheck("xent per_sample", gps, ps_c, n, 2 * AL_F32_EPS, 2 * AL_F32_EPS);
    bad |= dcheck("xent dlogits", gdz, dz_c, ne, 2 * AL_F32_EPS * weight / n, 2 * AL_F32_EPS);

    int cnt_c = 0, cnt_g = 0;
    uint8_t *ok_c = hnew((size_t)n), *ok_g = hnew((size_t)n);
    OK(al_count_correct_cpu(&cpu, n, k, z, y, &cnt_c, ok_c));
    uint8_t *gok = dnew((size_t)n, NULL);
    OK(al_count_correct_cuda(&gpu, n, k, gz, gy, &cnt_g, gok));
    bad |= dget("correct flags", gok, ok_g, (size_t)n);
    AL_EXPECT(cnt_c == cnt_g, "n_correct: cuda %d cpu %d", cnt_g, cnt_c);
    AL_EXPECT(memcmp(ok_c, ok_g, (size_t)n) == 0, "correct flags differ");
    int cnt_g2 = -1;
    OK(al_count_correct_cuda(&gpu, n, k, gz, gy, &cnt_g2, NULL));
    AL_EXPECT(cnt_g2 == cnt_c, "n_correct without flags: cuda %d cpu %d", cnt_g2, cnt_c);
    return bad;
}

static int case_xent(void) {
    int bad = 0;
    bad |= xent_one(1, 10, 0);
    bad |= xent_one(7, 37, 0);
    bad |= xent_one(300, 1000, 0);
    bad |= xent_one(129, 37, 1); /* ties for argmax (lowest index wins) */
    /* non-finite logits: NaN and +-inf rows behave as the twin */
    {
        const int n = 4, k = 5;
        float z[20] = {NAN, 1, 2, 3, 4, 1, NAN, 2, 3, 4, -INFINITY, 0, 1, 2, 3,
                       INFINITY, 0, 1, 2, 3};
        int32_t y[4] = {1, 2, 0, 1};
        double l_c, l_g;
        float ps_c[4], dz_c[20];
        OK(al_xent_cpu(&cpu, n, k, z, y, 1.0f, &l_c, ps_c, dz_c));
        float *gz = dnewf(20, z), *gps = dnewf(4, NULL), *gdz = dnewf(20, NULL);
        int32_t *gy = dnew(sizeof y, y);
        OK(al_xent_cuda(&gpu, n, k, gz, gy, 1.0f, &l_g, gps, gdz));
        bad |= dcheck("xent non-finite per_sample", gps, ps_c, 4, 2 * AL_F32_EPS, 2 * AL_F32_EPS);
        bad |= dcheck("xent non-finite dlogits", gdz, dz_c, 20, 2 * AL_F32_EPS, 2 * AL_F32_EPS);
        int c_c, c_g;
        uint8_t f_c[4], f_g[4];
        OK(al_count_correct_cpu(&cpu, n, k, z, y, &c_c, f_c));
        uint8_t *gf = dnew(4, NULL);
        OK(al_count_correct_cuda(&gpu, n, k, gz, gy, &c_g, gf));
        bad |= dget("non-finite flags", gf, f_g, 4);
        AL_EXPECT(c_c == c_g && memcmp(f_c, f_g, 4) == 0, "NaN argmax: cuda %d cpu %d", c_g, c_c);
    }
    /* a bad label: AL_ERR_VALUE naming the first bad index, as the twin */
    {
        int32_t y[3] = {0, 12, -1};
        float *gz = dnewf(30, hrand(30, 63, -1, 1));
        int32_t *gy = dnew(sizeof y, y);
        double l;
        int c;
        al_status st = al_xent_cuda(&gpu, 3, 10, gz, gy, 1.0f, &l, NULL, NULL);
        AL_EXPECT(st == AL_ERR_VALUE && strstr(al_errmsg(), "index 1"), "bad label: %s: %s",
                  al_status_str(st), al_errmsg());
        st = al_count_correct_cuda(&gpu, 3, 10, gz, gy, &c, NULL);
        AL_EXPECT(st == AL_ERR_VALUE && strstr(al_errmsg(), "index 1"), "bad label: %s: %s",
                  al_status_str(st), al_errmsg());
        al_clear_error();
    }
    return bad;
}

/* ---------------------------------------------------------------- SGD + EMA */

static int case_sgd(void) {
    const size_t n = EW_N;
    float *p = hrand(n, 71, -1, 1), *gr = hrand(n, 72, -1, 1), *e = hrand(n, 73, -1, 1);
    float *buf = hf(n);
    uint8_t *mask = hnew(n);
    for (size_t i = 0; i < n; i++) /* all four combinations of the bits */
        mask[i] = (uint8_t)(al_rng_u32(5, al_stream(AL_STREAM_TEST, 74), i) & 3u);
    float *gp = dnewf(n, p), *ggr = dnewf(n, gr), *ge = dnewf(n, e), *gbuf = dnewf(n, buf);
    uint8_t *gmask = dnew(n, mask);
    int bad = 0;
    for (int step = 0; step < 3; step++) {
        al_sgd_hparams hp;
        memset(&hp, 0, sizeof hp);
        hp.lr = 0.1f * (float)(step + 1);
        hp.momentum = 0.9f;
        hp.weight_decay = 5e-4f;
        hp.grad_scale = step == 2 ? 0.5f : 1.0f;
        hp.nesterov = step == 1;
        hp.first = step == 0;
        hp.ema = 1;
        hp.ema_decay = 0.999f;
        hp.ema_one_minus_decay = (float)(1.0 - 0.999);
        al_sgd_step_cpu(n, mask, p, gr, buf, e, &hp);
        OK(al_sgd_step_cuda(&gpu, n, gmask, gp, ggr, gbuf, ge, &hp, NULL));
        fprintf(stderr, "  sgd step %d (nesterov %d, grad_scale %g)\n", step, hp.nesterov,
                (double)hp.grad_scale);
        /* the shared al_sgd_ema_elem, no contraction on either side: exact */
        bad |= dcheck("sgd params", gp, p, n, 0, 0);
        bad |= dcheck("sgd momentum", gbuf, buf, n, 0, 0);
        bad |= dcheck("sgd ema", ge, e, n, 0, 0);
    }
    /* momentum 0 and no EMA: both buffers may be NULL */
    al_sgd_hparams hp0;
    memset(&hp0, 0, sizeof hp0);
    hp0.lr = 0.05f;
    hp0.grad_scale = 1.0f;
    al_sgd_step_cpu(n, mask, p, gr, NULL, NULL, &hp0);
    OK(al_sgd_step_cuda(&gpu, n, gmask, gp, ggr, NULL, NULL, &hp0, NULL));
    bad |= dcheck("sgd params (no momentum, no ema)", gp, p, n, 0, 0);
    return bad;
}

/* ---------------------------------------------------------------- whole model */

/* Buffer b of slot 0 (model.c's act(), on either backend's memory). */
static float *model_act(al_model *m, int b) {
    return b == 0 ? (float *)m->slots[0].x
                  : m->slots[0].act + m->bufs[b].offset * (size_t)m->max_batch;
}

/* Count the discrete decisions (ReLU active set, max-pool argmax) on which the two forwards
 * disagree. Such a flip happens only when a value lies within rounding (~1e-6) of a kink; it
 * re-routes one gradient element, which no float tolerance should absorb, so the backward
 * comparison below switches to a norm-wise check when (and only when) flips exist. */
static long count_flips(al_model *mc, al_model *mg, int n) {
    long flips = 0;
    for (int i = 0; i < mc->n_nodes; i++) {
        const al_node *nd = &mc->nodes[i];
        if (nd->kind == AL_NODE_RELU) {
            const size_t ne = (size_t)n * mc->bufs[nd->out].per_sample;
            float *h = malloc(ne * sizeof(float));
            AL_ASSERT(h, "oom");
            AL_ASSERT(al_copy_to_host(&gpu, h, model_act(mg, nd->out), ne * sizeof(float)) == AL_OK,
                      "copy: %s", al_errmsg());
            const float *c = model_act(mc, nd->out);
            for (size_t j = 0; j < ne; j++) flips += (c[j] > 0.0f) != (h[j] > 0.0f);
            free(h);
        } else if (nd->kind == AL_NODE_MAXPOOL) {
            const size_t ne = (size_t)n * mc->bufs[nd->out].per_sample;
            int32_t *h = malloc(ne * sizeof(int32_t));
            AL_ASSERT(h, "oom");
            AL_ASSERT(al_copy_to_host(&gpu, h, mg->slots[0].save + mg->nodes[i].save_offset,
                                      ne * sizeof(int32_t)) == AL_OK,
                      "copy: %s", al_errmsg());
            const int32_t *c = (const int32_t *)(mc->slots[0].save + nd->save_offset);
            for (size_t j = 0; j < ne; j++) flips += c[j] != h[j];
            free(h);
        }
    }
    return flips;
}

/* ||g - r||_2 / ||r||_2 <= tol (used only when decisions flipped, see count_flips) */
static int check_normwise(const char *what, const float *g, const float *r, size_t n, double tol) {
    double num = 0, den = 0;
    for (size_t i = 0; i < n; i++) {
        num += ((double)g[i] - r[i]) * ((double)g[i] - r[i]);
        den += (double)r[i] * r[i];
    }
    const double rel = den > 0 ? sqrt(num / den) : sqrt(num);
    fprintf(stderr, "  %-40s n=%-8zu normwise rel %.3g (tol %.3g) %s\n", what, n, rel, tol,
            rel <= tol ? "ok" : "FAIL");
    return !(rel <= tol);
}

static int case_model_smallcnn(void) {
    const int B = 3, K = 10;
    al_model *mc = NULL, *mg = NULL;
    OK(al_model_create("smallcnn", K, 1, 28, &mc));
    OK(al_model_create("smallcnn", K, 1, 28, &mg));
    int bad = 0;
    OK(al_model_setup(&cpu, mc, B, 1));
    OK(al_model_setup(&gpu, mg, B, 1));
    OK(al_model_init_params(&cpu, mc, 7));
    OK(al_model_init_params(&gpu, mg, 7));
    /* the reference zero-initialises fc3, which would zero every other gradient: randomise */
    static const char *fc3[2] = {"classifier.fc3.weight", "classifier.fc3.bias"};
    for (int t = 0; t < 2; t++) {
        const int pi = al_model_find_param(mc, fc3[t]);
        AL_EXPECT(pi >= 0, "no parameter %s", fc3[t]);
        const size_t ne = mc->params[pi].n_elems;
        float *v = hrand(ne, 80 + (uint64_t)t, -0.07f, 0.07f); /* ~ U(+-1/sqrt(200)) */
        memcpy(al_param_data(mc, pi), v, ne * sizeof(float));
        OK(al_copy_to_dev(&gpu, al_param_data(mg, pi), v, ne * sizeof(float)));
    }
    const size_t nin = (size_t)B * 28 * 28, nout = (size_t)B * K;
    float *x = hrand(nin, 82, 0, 1), *dl = hrand(nout, 83, -1.0f / B, 1.0f / B);
    float *gx = dnewf(nin, x), *gdl = dnewf(nout, dl), *gdx = dnewf(nin, NULL);
    float *dx_c = hf(nin);
    const al_fwd_opts o = {0, 1, 1, 0, 3}; /* train mode: dropout on, step 3 */
    const int flags = AL_BWD_WEIGHTS | AL_BWD_INPUT;

    OK(al_model_forward(&cpu, mc, x, B, &o));
    OK(al_model_zero_grad(&cpu, mc));
    OK(al_model_backward(&cpu, mc, 0, dl, NULL, flags, dx_c));
    OK(al_model_forward(&gpu, mg, gx, B, &o));
    OK(al_model_zero_grad(&gpu, mg));
    OK(al_model_backward(&gpu, mg, 0, gdl, NULL, flags, gdx));
    OK(al_sync(&gpu));
    const uint64_t allocs1 = al_cuda_alloc_count(&gpu), host_allocs1 = al_alloc_count();

    /* Reduction lengths along the longest path (conv 9,288,576,576; fc 1024,200,200; dW sums
     * over B*26*26 positions): the float error budget of the whole chain. */
    const double Kchain = 9 + 288 + 576 + 576 + 1024 + 200 + 200 + (double)B * 26 * 26;
    const double tol = al_tol_f32(Kchain);
    float *lg = hf(nout);
    OK(al_copy_to_host(&gpu, lg, al_model_logits(mg, 0), nout * sizeof(float)));
    const float *lc = al_model_logits(mc, 0);
    bad |= al_check_close("smallcnn logits", lg, lc, nout, tol * maxabs(lc, nout), tol);

    const long flips = count_flips(mc, mg, B);
    fprintf(stderr, "  decision flips (ReLU / max-pool) between backends: %ld\n", flips);
    float *gdx_h = hf(nin);
    bad |= dget("smallcnn dx", gdx, gdx_h, nin * sizeof(float));
    /* one flip re-routes one element of a sum over >= B*8*8 positions: norm-wise <= 1/sqrt */
    const double flip_tol = 2.0 / sqrt((double)B * 8 * 8);
    if (flips == 0)
        bad |= al_check_close("smallcnn dx", gdx_h, dx_c, nin, tol * maxabs(dx_c, nin), tol);
    else
        bad |= check_normwise("smallcnn dx", gdx_h, dx_c, nin, flip_tol);
    float *grads_g = hf(mc->n_param_floats);
    OK(al_copy_to_host(&gpu, grads_g, mg->grads, mc->n_param_floats * sizeof(float)));
    for (int i = 0; i < mc->n_params; i++) {
        const al_param *p = &mc->params[i];
        if (!p->trainable) continue;
        const float *r = mc->grads + p->offset, *g = grads_g + p->offset;
        if (flips == 0)
            bad |= al_check_close(p->name, g, r, p->n_elems, tol * maxabs(r, p->n_elems), tol);
        else
            bad |= check_normwise(p->name, g, r, p->n_elems, flip_tol);
    }

    /* Steps 2 and 3: same shapes, no device (or host) allocation; step 3 repeats step 1's
     * inputs and dropout stream and must reproduce its gradients bitwise (determinism). */
    for (int step = 2; step <= 3; step++) {
        al_fwd_opts o2 = o;
        o2.step = step == 2 ? 4 : 3;
        OK(al_model_forward(&gpu, mg, gx, B, &o2));
        OK(al_model_zero_grad(&gpu, mg));
        OK(al_model_backward(&gpu, mg, 0, gdl, NULL, flags, gdx));
    }
    OK(al_sync(&gpu));
    AL_EXPECT(al_cuda_alloc_count(&gpu) == allocs1, "device allocations after step 1: %llu -> %llu",
              (unsigned long long)allocs1, (unsigned long long)al_cuda_alloc_count(&gpu));
    AL_EXPECT(al_alloc_count() == host_allocs1, "host allocations after step 1: %llu -> %llu",
              (unsigned long long)host_allocs1, (unsigned long long)al_alloc_count());
    float *grads_g3 = hf(mc->n_param_floats);
    OK(al_copy_to_host(&gpu, grads_g3, mg->grads, mc->n_param_floats * sizeof(float)));
    AL_EXPECT(memcmp(grads_g, grads_g3, mc->n_param_floats * sizeof(float)) == 0,
              "gradients of a repeated step differ (non-deterministic)");
    al_model_destroy(&cpu, mc);
    al_model_destroy(&gpu, mg);
    return bad;
}

/* ---------------------------------------------------------------- context plumbing */

static int case_ctx(void) {
    /* device count, error line format, memset/memcpy round trip, NVTX calls */
    AL_EXPECT(al_cuda_device_count() >= 1, "no device");
    uint8_t pat[1000];
    for (int i = 0; i < 1000; i++) pat[i] = (uint8_t)i;
    uint8_t *d = dnew(1000, pat), back[1000];
    OK(al_memset_dev(&gpu, d + 100, 0x5A, 10));
    OK(al_copy_dev(&gpu, d + 500, d, 100));
    al_nvtx_push("test_cuda");
    AL_EXPECT(dget("ctx buffer", d, back, 1000) == 0, "guards");
    al_nvtx_pop();
    for (int i = 0; i < 1000; i++) {
        /* stream order: the memset lands before the copy of bytes 0..99 to 500..599 */
        const int src = i >= 500 && i < 600 ? i - 500 : i;
        const uint8_t want = (uint8_t)(i >= 100 && i < 110 ? 0x5A : src);
        AL_EXPECT(back[i] == want, "byte %d: %u want %u", i, back[i], want);
    }
    /* a failing CUDA call records one line naming file, function and status */
    al_ctx bad_ctx;
    al_status st = al_ctx_init(&bad_ctx, AL_DEV_CUDA, 999, 0, 1);
    AL_EXPECT(st == AL_ERR_NO_GPU && strstr(al_errmsg(), "999"), "device 999: %s: %s",
              al_status_str(st), al_errmsg());
    al_clear_error();
    return 0;
}

#define CASE(fn)                                                                           \
    static int run_##fn(void) {                                                            \
        int rc = fn();                                                                     \
        case_cleanup();                                                                    \
        return rc;                                                                         \
    }
CASE(case_ctx)
CASE(case_conv2d)
CASE(case_linear)
CASE(case_batchnorm)
CASE(case_elementwise)
CASE(case_pool)
CASE(case_pgd_step)
CASE(case_xent)
CASE(case_sgd)
CASE(case_model_smallcnn)

int main(int argc, char **argv) {
    if (al_test_no_gpu()) return AL_SKIP_CODE;
    if (al_ctx_init(&cpu, AL_DEV_CPU, 0, 0, 42) != AL_OK ||
        al_ctx_init(&gpu, AL_DEV_CUDA, 0, 0, 42) != AL_OK) {
        fprintf(stderr, "context init failed: %s\n", al_errmsg());
        return 1;
    }
    gpu.deterministic = 1;
    static const al_case cases[] = {
        {"ctx", run_case_ctx},
        {"conv2d", run_case_conv2d},
        {"linear", run_case_linear},
        {"batchnorm", run_case_batchnorm},
        {"elementwise", run_case_elementwise},
        {"pool", run_case_pool},
        {"pgd_step", run_case_pgd_step},
        {"xent", run_case_xent},
        {"sgd", run_case_sgd},
        {"model_smallcnn", run_case_model_smallcnn},
    };
    int rc = al_run_cases(cases, (int)AL_ARRAY_LEN(cases), argc, argv);
    al_ctx_fini(&gpu);
    al_ctx_fini(&cpu);
    return rc;
}
