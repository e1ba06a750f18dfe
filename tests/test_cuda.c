/* test_cuda.c: every CUDA twin in cuda/ against its CPU reference on the same Philox inputs
 * (style rule 21a), plus a whole-model smallcnn forward/backward, determinism, and the
 * no-allocation-after-step-1 check (style rule 15); bf16 activations (core/ops/bf16.h): the
 * conversion rule, every bf16 kernel, and smallcnn / PreActResNet-18 in bf16 against the
 * executor's CPU twin and the fp32 model. Without a usable GPU: "skipped: no GPU", 77.
 *
 * Conventions:
 * - Every device output sits between sentinel guards (tests/harness/devbuf.h: a NaN-payload
 *   pattern on each side, style rule 23); '=' outputs start filled with that NaN pattern, so
 *   a kernel that reads an output it should only write shows up as NaN.
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
#include "core/ops/bf16.h"
#include "core/ops/conv2d.h"
#include "core/ops/elementwise.h"
#include "core/ops/linear.h"
#include "core/ops/pool.h"
#include "core/optim.h"
#include "core/rng.h"
#include "harness/check.h"
#include "harness/devbuf.h"
#include "losses/loss.h"

#define EPS_TF32 9.765625e-4 /* 2^-10: TF32 keeps 10 explicit mantissa bits */
static al_ctx cpu, gpu;

/* Test memory: tests/harness/devbuf.h (guarded device buffers, tracked host buffers). */
static int dcheck_bytes_b(const char *what, const void *d, const void *ref, size_t n_elems16) {
    return dcheck_bytes(what, d, ref, n_elems16 * 2); /* 16-bit words: bf16 or float halves */
}

static void case_cleanup(void) {
    devbuf_release();
    gpu.precision = AL_FP32;
    gpu.deterministic = 1;
}

#define OK(call) AL_TEST_OK(call)

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
    /* {10, 300, 6}: the split reductions (cuda/op_batchnorm.cu) put 1024/300 -> 3 slices of
     * 4, 4 and 2 images on a channel, so a slice spans several images and the last is short */
    const int shapes[][3] = {{1, 3, 25}, {4, 33, 49}, {8, 64, 1}, {2, 5, 1000}, {2, 1, 1},
                             {10, 300, 6}};
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

/* CPU reference of a pooling test: y, dx (=), dxa (+= onto its prior contents), argmax. */
static int pool_ref_cpu(const al_pool_desc *d, int is_max, const float *x, const float *dy,
                        float *y, float *dx, float *dxa, int32_t *am) {
    if (is_max) {
        OK(al_maxpool_forward_cpu(&cpu, d, x, y, am));
        OK(al_maxpool_backward_cpu(&cpu, d, am, dy, dx, 0));
        OK(al_maxpool_backward_cpu(&cpu, d, am, dy, dxa, 1));
    } else {
        OK(al_avgpool_forward_cpu(&cpu, d, x, y));
        OK(al_avgpool_backward_cpu(&cpu, d, dy, dx, 0));
        OK(al_avgpool_backward_cpu(&cpu, d, dy, dxa, 1));
    }
    return 0;
}

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
    if (pool_ref_cpu(&d, is_max, x, dy, y_c, dx_c, dxa_c, am_c)) return 1;
    if (is_max) {
        OK(al_maxpool_forward_cuda(&gpu, &d, gx, gy, gam));
        OK(al_maxpool_backward_cuda(&gpu, &d, gam, gdy, gdx, 0));
        OK(al_maxpool_backward_cuda(&gpu, &d, gam, gdy, gdxa, 1));
    } else {
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
    return b == 0 ? (float *)m->slots[0].x : (float *)((char *)m->slots[0].act + m->bufs[b].boff);
}

/* Count the discrete decisions (ReLU active set, max-pool argmax) on which the two forwards
 * disagree. Such a flip happens only when a value lies within rounding (~1e-6) of a kink; it
 * re-routes one gradient element, which no float tolerance should absorb, so the backward
 * comparison below switches to a norm-wise check when (and only when) flips exist. */
static long count_flips(al_model *mc, al_model *mg, int n, long *n_decisions) {
    long flips = 0;
    if (n_decisions) *n_decisions = 0;
    for (int i = 0; i < mc->n_nodes; i++) {
        const al_node *nd = &mc->nodes[i];
        if (nd->kind == AL_NODE_RELU) {
            const size_t ne = (size_t)n * mc->bufs[nd->out].per_sample;
            const int bf = mg->bufs[nd->out].bf16;
            float *h = malloc(ne * sizeof(float));
            AL_ASSERT(h, "oom");
            AL_ASSERT(al_copy_to_host(&gpu, h, model_act(mg, nd->out),
                                      ne * (bf ? sizeof(al_bf16) : sizeof(float))) == AL_OK,
                      "copy: %s", al_errmsg());
            for (size_t j = ne; bf && j-- > 0;) h[j] = al_bf16_to_f32(((const al_bf16 *)h)[j]);
            const float *c = model_act(mc, nd->out);
            const al_bf16 *cb = (const al_bf16 *)c; /* the CPU twin's bf16 buffer */
            const int cbf = mc->bufs[nd->out].bf16;
            for (size_t j = 0; j < ne; j++)
                flips += ((cbf ? al_bf16_to_f32(cb[j]) : c[j]) > 0.0f) != (h[j] > 0.0f);
            if (n_decisions) *n_decisions += (long)ne;
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
            if (n_decisions) *n_decisions += (long)ne;
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

/* One forward + zeroed-gradient backward (weights and input) of slot 0. */
static int fwd_bwd(al_ctx *c, al_model *m, const float *x, int n, const al_fwd_opts *o,
                   const float *dl, float *dx) {
    OK(al_model_forward(c, m, x, n, o));
    OK(al_model_zero_grad(c, m));
    OK(al_model_backward(c, m, 0, dl, NULL, AL_BWD_WEIGHTS | AL_BWD_INPUT, dx));
    return 0;
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

    if (fwd_bwd(&cpu, mc, x, B, &o, dl, dx_c) || fwd_bwd(&gpu, mg, gx, B, &o, gdl, gdx)) return 1;
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

    const long flips = count_flips(mc, mg, B, NULL);
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
        if (fwd_bwd(&gpu, mg, gx, B, &o2, gdl, gdx)) return 1;
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

/* ---------------------------------------------------------------- bf16 (core/ops/bf16.h)
 * The CPU reference of a bf16 op is the fp32 CPU op on the same inputs, which are drawn
 * bf16-representable. Where the CUDA op evaluates the fp32 expression the CPU evaluates
 * (ReLU, add, pooling: the same float operations, --fmad=false) and rounds once on the store,
 * its output is EXACTLY the CPU's fp32 output rounded to bf16 (bfr below). Where the two
 * differ by summation order (BN statistics, conv) they differ by the fp32 tolerance before
 * the final rounding, and by at most one bf16 rounding (2^-9 relative) after it: RT_BF. */

#define RT_BF (1.0 / 256.0) /* 2^-8: one bf16 rounding (2^-9) with a factor 2 of slack */

static float bfr(float v) { return al_bf16_to_f32(al_f32_to_bf16(v)); }
static void round_bf(float *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = bfr(p[i]);
}
static float *hbf(size_t n, uint64_t id, float lo, float hi) {
    float *p = hrand(n, id, lo, hi);
    round_bf(p, n);
    return p;
}
/* Device bf16 buffer between guards from fp32 host values (rounded), or the NaN pattern. */
static al_bf16 *dnewb(size_t n, const float *src) {
    if (!src) return dnew(n * sizeof(al_bf16), NULL);
    al_bf16 *h = hnew(n * sizeof(al_bf16));
    for (size_t i = 0; i < n; i++) h[i] = al_f32_to_bf16(src[i]);
    return dnew(n * sizeof(al_bf16), h);
}
static int dcheckb(const char *what, const al_bf16 *d, const float *ref, size_t n, double atol,
                   double rtol) {
    al_bf16 *hb = hnew(n * sizeof(al_bf16));
    if (dget(what, d, hb, n * sizeof(al_bf16))) return 1;
    float *h = hf(n);
    for (size_t i = 0; i < n; i++) h[i] = al_bf16_to_f32(hb[i]);
    return al_check_close(what, h, ref, n, atol, rtol);
}

static int case_bf16_convert(void) {
    /* the conversion rule against hand-worked bit patterns */
    static const struct {
        uint32_t f;
        uint16_t b;
    } rules[] = {
        {0x3f800000u, 0x3f80}, /* 1 */
        {0x3f808000u, 0x3f80}, /* 1 + 2^-8: a tie, to even (down) */
        {0x3f818000u, 0x3f82}, /* 1 + 3 * 2^-8: a tie, to even (up) */
        {0x3f808001u, 0x3f81}, /* just above the tie: up */
        {0x3f807fffu, 0x3f80}, /* just below: down */
        {0x80000000u, 0x8000}, /* -0 */
        {0x7f800000u, 0x7f80}, /* +inf */
        {0xff800000u, 0xff80}, /* -inf */
        {0x7f7fffffu, 0x7f80}, /* FLT_MAX rounds to inf */
        {0x00000001u, 0x0000}, /* smallest denormal rounds to 0 */
        {0x00008000u, 0x0000}, /* denormal tie, to even (0) */
        {0x00018000u, 0x0002}, /* denormal tie, to even (2) */
        {0x7fc00000u, 0x7fc0}, /* quiet NaN */
        {0x7f800001u, 0x7fc0}, /* signalling NaN (payload in the low half) stays NaN */
        {0xff800001u, 0xffc0}, /* negative NaN keeps its sign */
    };
    int bad = 0;
    for (size_t i = 0; i < AL_ARRAY_LEN(rules); i++) {
        float f;
        memcpy(&f, &rules[i].f, sizeof f);
        const uint16_t got = al_f32_to_bf16(f);
        if (got != rules[i].b) {
            fprintf(stderr, "  bf16(0x%08x) = 0x%04x, want 0x%04x\n", rules[i].f, got, rules[i].b);
            bad = 1;
        }
    }
    /* every non-NaN bf16 survives the round trip; every NaN stays NaN */
    for (uint32_t v = 0; v < 65536; v++) {
        const float f = al_bf16_to_f32((al_bf16)v);
        const uint16_t back = al_f32_to_bf16(f);
        if (isnan(f) ? !isnan(al_bf16_to_f32(back)) : back != v) {
            fprintf(stderr, "  round trip 0x%04x -> %g -> 0x%04x\n", v, (double)f, back);
            bad = 1;
            break;
        }
    }
    fprintf(stderr, "  %-40s %zu rules, 65536 round trips %s\n", "bf16 host conversion",
            AL_ARRAY_LEN(rules), bad ? "FAIL" : "ok");
    /* the device cast: bitwise the host conversion (random values and every rule) */
    const size_t n = EW_N;
    float *x = hrand(n, 301, -3e4f, 3e4f), *acc0 = hbf(n, 302, -2, 2);
    for (size_t i = 0; i < AL_ARRAY_LEN(rules); i++) memcpy(&x[i * 7], &rules[i].f, sizeof(float));
    al_bf16 *want = hnew(n * sizeof(al_bf16)), *want_acc = hnew(n * sizeof(al_bf16));
    float *back = hf(n), *back_acc = hf(n);
    for (size_t i = 0; i < n; i++) {
        want[i] = al_f32_to_bf16(x[i]);
        want_acc[i] = al_f32_to_bf16(acc0[i] + x[i]);
        back[i] = al_bf16_to_f32(want[i]);
        back_acc[i] = acc0[i] + back[i];
    }
    float *gx = dnewf(n, x), *gback = dnewf(n, NULL), *gback_acc = dnewf(n, acc0);
    al_bf16 *gb = dnewb(n, NULL), *gacc = dnewb(n, acc0);
    OK(al_cast(&gpu, n, gx, 0, gb, 1, 0));
    OK(al_cast(&gpu, n, gx, 0, gacc, 1, 1));
    OK(al_cast(&gpu, n, gb, 1, gback, 0, 0));
    OK(al_cast(&gpu, n, gb, 1, gback_acc, 0, 1));
    bad |= dcheck_bytes_b("cast f32 -> bf16", gb, want, n);
    bad |= dcheck_bytes_b("cast f32 -> bf16 (+=)", gacc, want_acc, n);
    bad |= dcheck_bytes_b("cast bf16 -> f32", gback, back, n * 2);
    bad |= dcheck_bytes_b("cast bf16 -> f32 (+=)", gback_acc, back_acc, n * 2);
    /* the CPU dispatcher runs the same conversion */
    al_bf16 *cb = hnew(n * sizeof(al_bf16));
    OK(al_cast(&cpu, n, x, 0, cb, 1, 0));
    AL_EXPECT(memcmp(cb, want, n * sizeof(al_bf16)) == 0, "CPU al_cast differs from the rule");
    return bad;
}

static int case_bf16_ops(void) {
    int bad = 0;
    const size_t n = EW_N;
    /* ReLU, add, ReLU backward (= and +=) */
    float *x = hbf(n, 311, -1, 1), *b = hbf(n, 312, -1, 1), *dy = hbf(n, 313, -1, 1);
    float *dx0 = hbf(n, 314, -1, 1);
    x[3] = 0.0f, x[5] = -0.0f, x[9] = NAN;
    float *y_c = hf(n), *s_c = hf(n), *dx_c = hf(n), *dxa_c = hcopy(dx0, n);
    OK(al_relu_forward_cpu(&cpu, n, x, y_c));
    OK(al_add_forward_cpu(&cpu, n, x, b, s_c));
    OK(al_relu_backward_cpu(&cpu, n, y_c, dy, dx_c, 0));
    OK(al_relu_backward_cpu(&cpu, n, y_c, dy, dxa_c, 1));
    round_bf(s_c, n), round_bf(dxa_c, n);
    al_bf16 *gx = dnewb(n, x), *gb = dnewb(n, b), *gdy = dnewb(n, dy), *gy = dnewb(n, NULL);
    al_bf16 *gs = dnewb(n, NULL), *gdx = dnewb(n, NULL), *gdxa = dnewb(n, dx0);
    OK(al_relu_forward_bf16_cuda(&gpu, n, gx, gy));
    OK(al_add_forward_bf16_cuda(&gpu, n, gx, gb, gs));
    OK(al_relu_backward_bf16_cuda(&gpu, n, gy, gdy, gdx, 0));
    OK(al_relu_backward_bf16_cuda(&gpu, n, gy, gdy, gdxa, 1));
    bad |= dcheckb("bf16 relu y", gy, y_c, n, 0, 0);
    bad |= dcheckb("bf16 add y", gs, s_c, n, 0, 0);
    bad |= dcheckb("bf16 relu dx (=)", gdx, dx_c, n, 0, 0);
    bad |= dcheckb("bf16 relu dx (+=)", gdxa, dxa_c, n, 0, 0);

    /* pooling: overlapping max windows (k3 s2), global average (k = H) */
    for (int is_max = 0; is_max <= 1; is_max++) {
        al_pool_desc d;
        if (is_max) al_pool_desc_init(&d, 2, 5, 9, 9, 3, 2);
        else al_pool_desc_init(&d, 2, 7, 8, 8, 8, 8);
        const size_t nx = (size_t)d.n * d.c * d.h * d.w, ny = (size_t)d.n * d.c * d.h_out * d.w_out;
        float *px = hbf(nx, 321, -1, 1), *pdy = hbf(ny, 322, -1, 1), *pdx0 = hbf(nx, 323, -1, 1);
        for (size_t i = 0; i < nx; i++) px[i] = roundf(px[i] * 4.0f) / 4.0f; /* ties */
        float *py_c = hf(ny), *pdx_c = hf(nx), *pdxa_c = hcopy(pdx0, nx);
        int32_t *am_c = hnew(ny * sizeof(int32_t));
        al_bf16 *gpx = dnewb(nx, px), *gpdy = dnewb(ny, pdy), *gpy = dnewb(ny, NULL);
        al_bf16 *gpdx = dnewb(nx, NULL), *gpdxa = dnewb(nx, pdx0);
        int32_t *gam = dnew(ny * sizeof(int32_t), NULL);
        if (pool_ref_cpu(&d, is_max, px, pdy, py_c, pdx_c, pdxa_c, am_c)) return 1;
        if (is_max) {
            OK(al_maxpool_forward_bf16_cuda(&gpu, &d, gpx, gpy, gam));
            OK(al_maxpool_backward_bf16_cuda(&gpu, &d, gam, gpdy, gpdx, 0));
            OK(al_maxpool_backward_bf16_cuda(&gpu, &d, gam, gpdy, gpdxa, 1));
            bad |= dcheck_bytes_b("bf16 maxpool argmax", gam, am_c, ny * 2);
        } else {
            OK(al_avgpool_forward_bf16_cuda(&gpu, &d, gpx, gpy));
            OK(al_avgpool_backward_bf16_cuda(&gpu, &d, gpdy, gpdx, 0));
            OK(al_avgpool_backward_bf16_cuda(&gpu, &d, gpdy, gpdxa, 1));
        }
        round_bf(py_c, ny), round_bf(pdx_c, nx), round_bf(pdxa_c, nx);
        bad |= dcheckb(is_max ? "bf16 maxpool y" : "bf16 avgpool y", gpy, py_c, ny, 0, 0);
        bad |= dcheckb(is_max ? "bf16 maxpool dx (=)" : "bf16 avgpool dx (=)", gpdx, pdx_c, nx, 0, 0);
        bad |= dcheckb(is_max ? "bf16 maxpool dx (+=)" : "bf16 avgpool dx (+=)", gpdxa, pdxa_c, nx,
                       0, 0);
    }

    /* batch norm, train and eval: fp32 statistics as the fp32 kernel (same tolerance as
     * bn_one), bf16 outputs one rounding from the CPU's */
    for (int train = 0; train <= 1; train++) {
        const int bn_n = 4, c = 6, hw = 49;
        const size_t ne = (size_t)bn_n * c * hw;
        al_bn_desc d = {bn_n, c, hw, 1e-5f, 0.1f, train, train};
        float *bx = hbf(ne, 331, -1.5f, 2.5f), *gam = hrand(c, 332, 0.5f, 1.5f);
        float *bet = hrand(c, 333, -0.5f, 0.5f), *rm0 = hrand(c, 334, -0.5f, 0.5f);
        float *rv0 = hrand(c, 335, 0.5f, 1.5f), *bdy = hbf(ne, 336, -1, 1);
        float *rm_c = hcopy(rm0, c), *rv_c = hcopy(rv0, c), *by_c = hf(ne), *sm_c = hf(c);
        float *si_c = hf(c), *bdx_c = hf(ne), *dg_c = hf(c), *db_c = hf(c);
        OK(al_bn_forward_cpu(&cpu, &d, bx, gam, bet, rm_c, rv_c, by_c, sm_c, si_c));
        OK(al_bn_backward_cpu(&cpu, &d, bx, gam, sm_c, si_c, bdy, bdx_c, 0, dg_c, db_c));
        al_bf16 *gbx = dnewb(ne, bx), *gby = dnewb(ne, NULL), *gbdy = dnewb(ne, bdy);
        al_bf16 *gbdx = dnewb(ne, NULL);
        float *ggam = dnewf(c, gam), *gbet = dnewf(c, bet), *grm = dnewf(c, rm0), *grv = dnewf(c, rv0);
        float *gsm = dnewf(c, NULL), *gsi = dnewf(c, NULL), *zero = hf(c);
        float *gdg = dnewf(c, zero), *gdb = dnewf(c, zero);
        OK(al_bn_forward_bf16_cuda(&gpu, &d, gbx, ggam, gbet, grm, grv, gby, gsm, gsi));
        OK(al_bn_backward_bf16_cuda(&gpu, &d, gbx, ggam, gsm, gsi, gbdy, gbdx, 0, gdg, gdb));
        const double r = al_tol_f32(4), m = (double)bn_n * hw;
        bad |= dcheck("bf16 bn save_mean", gsm, sm_c, c, r * maxabs(sm_c, c), r);
        bad |= dcheck("bf16 bn save_invstd", gsi, si_c, c, 0, r);
        bad |= dcheck("bf16 bn running_var", grv, rv_c, c, 0, r);
        bad |= dcheckb("bf16 bn y", gby, by_c, ne, r * maxabs(by_c, ne), RT_BF);
        bad |= dcheckb("bf16 bn dx", gbdx, bdx_c, ne, al_tol_f32(m) * maxabs(bdx_c, ne), RT_BF);
        bad |= dcheck("bf16 bn dgamma", gdg, dg_c, c, r * (maxabs(dg_c, c) + 2), r);
        bad |= dcheck("bf16 bn dbeta", gdb, db_c, c, r * (maxabs(db_c, c) + 2), r);
    }

    /* conv (cuDNN BFLOAT16 config), with bias: y, dx (= and +=), dw and db added into fp32 */
    static const conv_shape shapes[] = {{2, 16, 8, 8, 24, 3, 1, 1}, {2, 1, 28, 28, 8, 3, 1, 0},
                                        {2, 24, 10, 10, 16, 1, 2, 0}};
    gpu.precision = AL_BF16;
    for (size_t si = 0; si < AL_ARRAY_LEN(shapes); si++) {
        const conv_shape *cs = &shapes[si];
        al_conv2d_desc d;
        al_conv2d_desc_init(&d, cs->n, cs->ci, cs->h, cs->w, cs->co, cs->k, cs->s, cs->p);
        fprintf(stderr, "  bf16 conv n=%d ci=%d %dx%d co=%d k=%d s=%d p=%d\n", cs->n, cs->ci,
                cs->h, cs->w, cs->co, cs->k, cs->s, cs->p);
        const size_t nx = (size_t)d.n * d.c_in * d.h_in * d.w_in;
        const size_t nw = (size_t)d.c_out * d.c_in * d.kh * d.kw;
        const size_t ny = (size_t)d.n * d.c_out * d.h_out * d.w_out;
        const double K = (double)d.c_in * d.kh * d.kw, wb = 1.0 / sqrt(K);
        const double Kdx = (double)d.c_out * d.kh * d.kw, Kw = (double)d.n * d.h_out * d.w_out;
        float *cx = hbf(nx, 341, -1, 1), *cw = hrand(nw, 342, -1, 1), *cb = hrand(d.c_out, 343, -1, 1);
        for (size_t i = 0; i < nw; i++) cw[i] = bfr(cw[i] * (float)wb);
        float *cdy = hbf(ny, 344, -1, 1), *cdx0 = hbf(nx, 345, -1, 1);
        OK(al_ctx_reserve_scratch(&cpu, al_conv2d_scratch_bytes(&cpu, &d)));
        float *cy_c = hf(ny), *cdx_c = hf(nx), *cdxa_c = hcopy(cdx0, nx), *cdw_c = hf(nw);
        float *cdb_c = hf(d.c_out);
        OK(al_conv2d_forward_cpu(&cpu, &d, cx, cw, cb, cy_c));
        OK(al_conv2d_backward_cpu(&cpu, &d, cx, cw, cdy, cdx_c, 0, cdw_c, cdb_c));
        OK(al_conv2d_backward_cpu(&cpu, &d, cx, cw, cdy, cdxa_c, 1, NULL, NULL));
        OK(al_ctx_reserve_scratch(&gpu, al_conv2d_scratch_bytes_bf16_cuda(&gpu, &d)));
        al_bf16 *gcx = dnewb(nx, cx), *gcw = dnewb(nw, cw), *gcdy = dnewb(ny, cdy);
        al_bf16 *gcy = dnewb(ny, NULL), *gcdx = dnewb(nx, NULL), *gcdxa = dnewb(nx, cdx0);
        float *zw = hf(nw), *zb = hf(d.c_out);
        float *gcb = dnewf(d.c_out, cb), *gcdw = dnewf(nw, zw), *gcdb = dnewf(d.c_out, zb);
        OK(al_conv2d_forward_bf16_cuda(&gpu, &d, gcx, gcw, gcb, gcy));
        OK(al_conv2d_backward_bf16_cuda(&gpu, &d, gcx, gcw, gcdy, gcdx, 0, gcdw, gcdb));
        OK(al_conv2d_backward_bf16_cuda(&gpu, &d, gcx, gcw, gcdy, gcdxa, 1, NULL, NULL));
        /* y = bf16(bf16(conv) + b): the bias is added to the rounded conv output (as PyTorch's
         * cuDNN path adds it to the bf16 output), so the bound holds per element: one rounding
         * of the pre-bias value and one of the result */
        {
            al_bf16 *hb = hnew(ny * sizeof(al_bf16));
            bad |= dget("bf16 conv y", gcy, hb, ny * sizeof(al_bf16));
            const size_t hw = (size_t)d.h_out * d.w_out;
            const double atol = tol_gemm(AL_FP32, K, wb) + 4 * AL_F32_EPS;
            double worst = 0;
            size_t n_bad = 0;
            for (size_t i = 0; i < ny; i++) {
                const double r = cy_c[i], pre = r - cb[(i / hw) % (size_t)d.c_out];
                const double err = fabs((double)al_bf16_to_f32(hb[i]) - r);
                const double lim = atol + RT_BF * (fabs(r) + fabs(pre));
                if (err / lim > worst) worst = err / lim;
                n_bad += !(err <= lim);
            }
            fprintf(stderr, "  %-40s n=%-8zu worst err/bound %.3g %s\n", "bf16 conv y (bias)", ny,
                    worst, n_bad ? "FAIL" : "ok");
            bad |= n_bad != 0;
        }
        bad |= dcheckb("bf16 conv dx (=)", gcdx, cdx_c, nx, tol_gemm(AL_FP32, Kdx, wb), RT_BF);
        bad |= dcheckb("bf16 conv dx (+=)", gcdxa, cdxa_c, nx,
                       tol_gemm(AL_FP32, Kdx, wb) + 4 * AL_F32_EPS, RT_BF);
        bad |= dcheck("bf16 conv dw (+= into fp32)", gcdw, cdw_c, nw, tol_gemm(AL_FP32, Kw, 1.0),
                      RT_BF);
        bad |= dcheck("bf16 conv db (+= into fp32)", gcdb, cdb_c, d.c_out, tol_sum(Kw, 1.0),
                      al_tol_f32(Kw));
    }
    gpu.precision = AL_FP32;
    return bad;
}

/* Whole models in bf16 on CUDA against the CPU twin of the bf16 executor (core/model.c: the
 * fp32 CPU ops on widened bf16 values, rounded on store) on the same weights: forward (train
 * mode, dropout on), backward to the input and every parameter, BN running statistics; then
 * the hot-path and determinism checks of case_model_smallcnn and a weight-shadow check. The two
 * differ by fp32 summation order before each rounding, so a small fraction of values lands one
 * bf16 ulp (2^-8 relative) apart; along L bf16 nodes that stays far below L * RT_BF, the
 * norm-wise bound used (a wrong kernel, a missed cast or a stale shadow is off by O(1)).
 * Rarely such an ulp flips a discrete decision (ReLU sign, max-pool argmax), re-routing one
 * gradient element whole: with a fraction f of the decisions flipped, + 2 sqrt(2 f).
 * The logits are also held to the fp32 CPU model: bf16 changes them by <= L * RT_BF. */
static int bf16_model_one(const char *arch, int in_c, int size, int B) {
    const int K = 10;
    al_model *mc = NULL, *mb = NULL, *mg = NULL;
    OK(al_model_create(arch, K, in_c, size, &mc));
    OK(al_model_create(arch, K, in_c, size, &mb));
    OK(al_model_create(arch, K, in_c, size, &mg));
    gpu.precision = AL_BF16;
    OK(al_model_setup(&cpu, mc, B, 1));
    cpu.precision = AL_BF16;
    OK(al_model_setup(&cpu, mb, B, 1));
    cpu.precision = AL_FP32;
    OK(al_model_setup(&gpu, mg, B, 1));
    OK(al_model_init_params(&cpu, mc, 7));
    OK(al_model_init_params(&cpu, mb, 7));
    OK(al_model_init_params(&gpu, mg, 7));
    int n_bf = 0, n_bf_nodes = 0, bad = 0;
    for (int b = 0; b < mg->n_bufs; b++) n_bf += mg->bufs[b].bf16;
    for (int i = 0; i < mg->n_nodes; i++) {
        const al_node *nd = &mg->nodes[i];
        n_bf_nodes += nd->kind == AL_NODE_CONV || nd->kind == AL_NODE_BN ||
                      nd->kind == AL_NODE_RELU || nd->kind == AL_NODE_ADD ||
                      nd->kind == AL_NODE_MAXPOOL || nd->kind == AL_NODE_AVGPOOL;
    }
    const size_t f32_bytes = mg->act_floats_per_sample * (size_t)B * sizeof(float);
    fprintf(stderr, "  %s bf16: %d of %d buffers bf16, %d bf16 nodes, activations %zu bytes "
            "(fp32 layout %zu), cast area %zu bytes\n", arch, n_bf, mg->n_bufs, n_bf_nodes,
            mg->act_bytes, f32_bytes, mg->cast_bytes);
    AL_EXPECT(mg->bf16 && mb->bf16 && !mc->bf16 && n_bf > 0 && !mg->bufs[0].bf16 &&
                  !mg->bufs[mg->out_buf].bf16 && !mg->bufs[mg->feat_buf].bf16,
              "%s: bf16 layout (models bf16 %d %d %d, %d bf16 buffers; input, logits, features "
              "fp32)", arch, mc->bf16, mb->bf16, mg->bf16, n_bf);
    AL_EXPECT(mg->act_bytes < f32_bytes * 3 / 5, "%s: bf16 activations take %zu of %zu bytes",
              arch, mg->act_bytes, f32_bytes);
    if (strcmp(arch, "smallcnn") == 0) { /* fc3 is zero-initialised: randomise (as above) */
        static const char *fc3[2] = {"classifier.fc3.weight", "classifier.fc3.bias"};
        for (int t = 0; t < 2; t++) {
            const int pi = al_model_find_param(mc, fc3[t]);
            const size_t ne = mc->params[pi].n_elems;
            float *v = hrand(ne, 80 + (uint64_t)t, -0.07f, 0.07f);
            memcpy(al_param_data(mc, pi), v, ne * sizeof(float));
            memcpy(al_param_data(mb, pi), v, ne * sizeof(float));
            OK(al_copy_to_dev(&gpu, al_param_data(mg, pi), v, ne * sizeof(float)));
        }
    }
    const size_t nin = (size_t)B * in_c * size * size, nout = (size_t)B * K;
    const size_t np = mc->n_param_floats;
    float *x = hrand(nin, 351, 0, 1), *dl = hrand(nout, 352, -1.0f / B, 1.0f / B);
    float *gx = dnewf(nin, x), *gdl = dnewf(nout, dl), *gdx = dnewf(nin, NULL);
    float *dx_b = hf(nin), *dx_c = hf(nin);
    const al_fwd_opts o = {0, 1, 1, 0, 3};
    const double tol_f = n_bf_nodes * RT_BF;
    /* a train-mode forward (batch statistics, running update, dropout): logits and running
     * statistics; then the gradients of an eval-mode forward. In train mode at this batch a
     * BN backward subtracts nearly equal means (the last BN sees 2 images of 4x4), so bf16's
     * ulp in its inputs is amplified without bound: the train-mode backward is held to its CPU
     * twin per op (case bf16_ops), the affine eval-mode one here, through the whole model. */
    float *lt = hf(nout);
    OK(al_model_forward(&cpu, mc, x, B, &o));
    OK(al_model_forward(&cpu, mb, x, B, &o));
    OK(al_model_forward(&gpu, mg, gx, B, &o));
    OK(al_copy_to_host(&gpu, lt, al_model_logits(mg, 0), nout * sizeof(float)));
    bad |= check_normwise("bf16 train logits vs fp32 CPU", lt, al_model_logits(mc, 0), nout, tol_f);
    bad |= check_normwise("bf16 train logits vs CPU twin", lt, al_model_logits(mb, 0), nout, tol_f);
    const al_fwd_opts ob = {0, 0, 0, 0, 0};
    if (fwd_bwd(&cpu, mc, x, B, &ob, dl, dx_c) || fwd_bwd(&cpu, mb, x, B, &ob, dl, dx_b) ||
        fwd_bwd(&gpu, mg, gx, B, &ob, gdl, gdx))
        return 1;
    OK(al_sync(&gpu));
    const uint64_t allocs1 = al_cuda_alloc_count(&gpu);

    long n_dec = 0, n_dec_f = 0;
    const long flips_f = count_flips(mc, mg, B, &n_dec_f);
    const long flips = count_flips(mb, mg, B, &n_dec);
    const double tol = n_bf_nodes * RT_BF;
    const double tol_b = tol + 2.0 * sqrt(2.0 * (double)flips / (double)(n_dec ? n_dec : 1));
    const double tol_bf = tol + 2.0 * sqrt(2.0 * (double)flips_f / (double)(n_dec_f ? n_dec_f : 1));
    fprintf(stderr, "  decision flips (ReLU / max-pool): vs CPU twin %ld of %ld (bound %.3g), vs "
            "fp32 %ld (bound %.3g)\n", flips, n_dec, tol_b, flips_f, tol_bf);
    float *lg = hf(nout), *gdx_h = hf(nin), *grads_g = hf(np), *data_g = hf(np);
    OK(al_copy_to_host(&gpu, lg, al_model_logits(mg, 0), nout * sizeof(float)));
    bad |= dget("bf16 model dx", gdx, gdx_h, nin * sizeof(float));
    OK(al_copy_to_host(&gpu, grads_g, mg->grads, np * sizeof(float)));
    OK(al_copy_to_host(&gpu, data_g, mg->data, np * sizeof(float)));
    bad |= check_normwise("bf16 logits vs CPU twin", lg, al_model_logits(mb, 0), nout, tol);
    bad |= check_normwise("bf16 dx vs CPU twin", gdx_h, dx_b, nin, tol_b);
    {
        /* against fp32 the decision flips dominate dx (a max-pool tie re-routes a large
         * element), beyond the sqrt(2 f) estimate; what an attack needs is the direction:
         * cosine >= 0.9 (a sign-flipped or mis-routed gradient is far below) */
        double dot = 0, na = 0, nr = 0;
        for (size_t j = 0; j < nin; j++) {
            dot += (double)gdx_h[j] * dx_c[j];
            na += (double)gdx_h[j] * gdx_h[j];
            nr += (double)dx_c[j] * dx_c[j];
        }
        const double cosv = dot / sqrt(na * nr > 0 ? na * nr : 1);
        fprintf(stderr, "  %-40s cosine %.4f (>= 0.9) %s\n", "bf16 dx vs fp32 CPU", cosv,
                cosv >= 0.9 ? "ok" : "FAIL");
        bad |= !(cosv >= 0.9);
    }
    {
        /* all parameter gradients at once against the fp32 model (the executor's casts) */
        double num = 0, den = 0;
        for (size_t j = 0; j < np; j++) {
            num += ((double)grads_g[j] - mc->grads[j]) * ((double)grads_g[j] - mc->grads[j]);
            den += (double)mc->grads[j] * mc->grads[j];
        }
        const double rel = sqrt(num / (den > 0 ? den : 1));
        fprintf(stderr, "  %-40s normwise rel %.3g (tol %.3g) %s\n", "bf16 dW (all) vs fp32 CPU",
                rel, tol_bf, rel <= tol_bf ? "ok" : "FAIL");
        bad |= !(rel <= tol_bf);
    }
    /* every trainable parameter's gradient (worst shown); BN running statistics */
    double worst = 0, worst_stat = 0;
    const char *worst_name = "", *worst_stat_name = "";
    for (int i = 0; i < mc->n_params; i++) {
        const al_param *p = &mc->params[i];
        const int stat = p->kind == AL_P_BN_MEAN || p->kind == AL_P_BN_VAR;
        if (!p->trainable && !stat) continue;
        const float *r = (stat ? mb->data : mb->grads) + p->offset;
        const float *g = (stat ? data_g : grads_g) + p->offset;
        double num = 0, den = 0;
        for (size_t j = 0; j < p->n_elems; j++) {
            num += ((double)g[j] - r[j]) * ((double)g[j] - r[j]);
            den += (double)r[j] * r[j];
        }
        const double rel = den > 0 ? sqrt(num / den) : sqrt(num);
        double *w = stat ? &worst_stat : &worst;
        if (!(rel <= *w)) *w = rel, *(stat ? &worst_stat_name : &worst_name) = p->name;
    }
    fprintf(stderr, "  %-40s worst normwise rel %.3g (%s, tol %.3g) %s\n", "bf16 dW vs CPU twin",
            worst, worst_name, tol_b, worst <= tol_b ? "ok" : "FAIL");
    fprintf(stderr, "  %-40s worst normwise rel %.3g (%s, tol %.3g) %s\n",
            "bf16 BN running stats vs CPU twin", worst_stat, worst_stat_name, tol,
            worst_stat <= tol ? "ok" : "FAIL");
    bad |= !(worst <= tol_b) || !(worst_stat <= tol);
    /* steps 2 and 3: no device allocation; step 3 repeats step 1 bitwise */
    for (int step = 2; step <= 3; step++) {
        al_fwd_opts o2 = step == 2 ? o : ob; /* a train step, then step 1's eval step again */
        o2.step = step == 2 ? 4 : 0;
        o2.update_bn = 0;
        if (fwd_bwd(&gpu, mg, gx, B, &o2, gdl, gdx)) return 1;
    }
    OK(al_sync(&gpu));
    AL_EXPECT(al_cuda_alloc_count(&gpu) == allocs1, "device allocations after step 1: %llu -> %llu",
              (unsigned long long)allocs1, (unsigned long long)al_cuda_alloc_count(&gpu));
    float *grads_g3 = hf(np);
    OK(al_copy_to_host(&gpu, grads_g3, mg->grads, np * sizeof(float)));
    AL_EXPECT(memcmp(grads_g, grads_g3, np * sizeof(float)) == 0,
              "%s: bf16 gradients of a repeated step differ (non-deterministic)", arch);
    /* the weight shadow follows the master weights: zero the first conv's weights on the
     * device; the next forward must see it (a stale shadow would keep the old logits) */
    int wi = -1;
    for (int i = 0; i < mg->n_nodes && wi < 0; i++)
        if (mg->nodes[i].kind == AL_NODE_CONV) wi = mg->nodes[i].param[0][0];
    float *wz = hf(mg->params[wi].n_elems);
    OK(al_copy_to_dev(&gpu, al_param_data(mg, wi), wz, mg->params[wi].n_elems * sizeof(float)));
    const al_fwd_opts oe = {0, 0, 0, 0, 0};
    OK(al_model_forward(&gpu, mg, gx, B, &oe));
    float *lz = hf(nout);
    OK(al_copy_to_host(&gpu, lz, al_model_logits(mg, 0), nout * sizeof(float)));
    memcpy(al_param_data(mb, wi), wz, mg->params[wi].n_elems * sizeof(float));
    memcpy(mb->data, data_g, np * sizeof(float)); /* the device's running stats after 3 steps */
    memcpy(al_param_data(mb, wi), wz, mg->params[wi].n_elems * sizeof(float));
    OK(al_model_forward(&cpu, mb, x, B, &oe));
    bad |= check_normwise("bf16 logits, first conv zeroed", lz, al_model_logits(mb, 0), nout, tol);
    gpu.precision = AL_FP32;
    al_model_destroy(&cpu, mc);
    al_model_destroy(&cpu, mb);
    al_model_destroy(&gpu, mg);
    return bad;
}

static int case_bf16_model(void) {
    int bad = 0;
    bad |= bf16_model_one("smallcnn", 1, 28, 3);       /* max-pool, dropout, linear casts */
    bad |= bf16_model_one("preact_resnet18", 1, 28, 2); /* residual adds, global pooling */
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
CASE(case_bf16_convert)
CASE(case_bf16_ops)
CASE(case_bf16_model)

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
        {"bf16_convert", run_case_bf16_convert},
        {"bf16_ops", run_case_bf16_ops},
        {"bf16_model", run_case_bf16_model},
    };
    int rc = al_run_cases(cases, (int)AL_ARRAY_LEN(cases), argc, argv);
    al_ctx_fini(&gpu);
    al_ctx_fini(&cpu);
    return rc;
}
