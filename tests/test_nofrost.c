/* test_nofrost.c: NoFrost -- the NF-ResNet ops (core/ops/wsconv.{h,c}, cuda/op_wsconv.cu), the
 * nf_resnet18 builder (core/models/nf_resnet.c) and the method step (core/methods/nofrost.c).
 *
 * ws_weight_fd     a double reference of scaled weight standardisation, its hand-written
 *                  backward checked by central finite differences (4-point, double), then the
 *                  float op (forward and dW/dgain) against it.
 * wsconv_node_fd   a WS-conv graph node (3x3, stride 2, pad 1, bias, then a linear head) in the
 *                  model executor vs a double composite (refops conv + the WS reference +
 *                  linear) whose gradients are checked by finite differences: dx, dW, dgain,
 *                  dbias and the head's gradients.
 * pool_ceil        ceil-mode 2x2 average pool vs brute force, equal to the built-in pool on even
 *                  sizes (bitwise), backward = adjoint of the forward (double identity).
 * scale_add        y = a*x0 + x1 and its backward (write modes, NaN propagation).
 * nf_structure     nf_resnet18 at 28x28x1 and 32x32x3: parameter table, no BN, init rules
 *                  (N(0, 1/fan_in) weights, gain 1 / 0 on conv2, fc N(0, 0.01^2)), the beta of
 *                  every block (timm's expected_var recursion), 7x7 -> 4x4 downsampling.
 * nf_torch         nf_resnet18_w8 (28x28x1) and nf_resnet18_w4 (32x32x3, normalised) vs a
 *                  float64 PyTorch twin written from timm's rules (tests/torch/ms_ref.py):
 *                  logits, dx and every parameter gradient (skip 77 without torch).
 * nofrost_step     the method's loss equals (1-lam) LSCE(f(x)) + lam LSCE(f(x_adv)) recomputed
 *                  here (x_adv regenerated with the step's seed/stream), and its weight
 *                  gradients equal the backward of the recomputed logit gradients; lam = 0 with
 *                  smoothing 0 reduces to al_xent.
 * cuda_vs_cpu      CUDA twins (WS weight fwd/bwd, pool, scale-add bitwise; a whole
 *                  nf_resnet18_w8 forward/backward) vs CPU (skip 77 without a GPU). */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checkpoint.h"
#include "core/config.h"
#include "core/evaluate.h"
#include "core/methods/method.h"
#include "core/model.h"
#include "core/ops/pool.h"
#include "core/ops/wsconv.h"
#include "harness/check.h"
#include "harness/refops.h"
#include "losses/loss.h"

#define GAMMA ((double)AL_NF_GAMMA_RELU)
#define EPS ((double)AL_NF_STD_CONV_EPS)

/* ---------------------------------------------------------------- double WS reference */

static void ref_ws(int co, int fan, const double *w, const double *gain, double *wh) {
    for (int o = 0; o < co; o++) {
        const double *r = w + (size_t)o * fan;
        double mu = 0, var = 0;
        for (int j = 0; j < fan; j++) mu += r[j];
        mu /= fan;
        for (int j = 0; j < fan; j++) var += (r[j] - mu) * (r[j] - mu);
        var /= fan;
        const double a = gain[o] * GAMMA / sqrt((double)fan) / sqrt(var + EPS);
        for (int j = 0; j < fan; j++) wh[(size_t)o * fan + j] = (r[j] - mu) * a;
    }
}

/* Backward of ref_ws: dw, dgain '=' from g = dL/dW_hat (written independently of the op:
 * differentiating mu and var explicitly). */
static void ref_ws_backward(int co, int fan, const double *w, const double *gain, const double *g,
                            double *dw, double *dgain) {
    for (int o = 0; o < co; o++) {
        const double *r = w + (size_t)o * fan, *go = g + (size_t)o * fan;
        double mu = 0, var = 0;
        for (int j = 0; j < fan; j++) mu += r[j];
        mu /= fan;
        for (int j = 0; j < fan; j++) var += (r[j] - mu) * (r[j] - mu);
        var /= fan;
        const double s = GAMMA / sqrt((double)fan), inv = 1.0 / sqrt(var + EPS);
        /* W_hat_j = gain s (w_j - mu) inv; dL/dgain = sum g_j s (w_j - mu) inv */
        double dg = 0, d_inv = 0, d_mu = 0;
        for (int j = 0; j < fan; j++) {
            dg += go[j] * s * (r[j] - mu) * inv;
            d_inv += go[j] * gain[o] * s * (r[j] - mu);
            d_mu -= go[j] * gain[o] * s * inv;
        }
        dgain[o] = dg;
        /* inv = (var + eps)^-1/2: d var = d_inv * (-1/2) (var+eps)^-3/2; var = mean (w - mu)^2 */
        const double d_var = d_inv * -0.5 * pow(var + EPS, -1.5);
        for (int j = 0; j < fan; j++)
            dw[(size_t)o * fan + j] = go[j] * gain[o] * s * inv + d_var * 2.0 * (r[j] - mu) / fan + d_mu / fan;
        /* (d var / d mu = -2 mean(w - mu) = 0, so mu's effect through var vanishes) */
    }
}

typedef struct ws_user {
    int co, fan;
    const double *r; /* weights of the scalar loss sum r * W_hat */
    double *wh;
} ws_user;

/* x = [w (co*fan) | gain (co)] */
static double ws_loss(const double *x, void *u_) {
    ws_user *u = u_;
    ref_ws(u->co, u->fan, x, x + (size_t)u->co * u->fan, u->wh);
    double s = 0;
    for (size_t i = 0; i < (size_t)u->co * u->fan; i++) s += u->r[i] * u->wh[i];
    return s;
}

static int ws_weight_fd(void) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 0, 0) == AL_OK, "%s", al_errmsg());
    const int shapes[][2] = {{1, 2}, {3, 9}, {5, 27}, {16, 144}};
    for (size_t si = 0; si < AL_ARRAY_LEN(shapes); si++) {
        const int co = shapes[si][0], fan = shapes[si][1];
        const size_t nw = (size_t)co * fan, nx = nw + co;
        double *x = malloc(nx * 8), *r = malloc(nw * 8), *wh = malloc(nw * 8), *g = malloc(nx * 8);
        double *dw = malloc(nx * 8);
        al_test_fill_d(x, nw, 10 + si, -0.3, 0.3);
        al_test_fill_d(x + nw, (size_t)co, 20 + si, 0.5, 1.5);
        al_test_fill_d(r, nw, 30 + si, -1.0, 1.0);
        /* float-representable inputs, so the float op sees the same numbers */
        float *xf = malloc(nx * 4), *rf = malloc(nw * 4), *whf = malloc(nw * 4), *dwf = calloc(nx, 4);
        float mean[16], rstd[16];
        for (size_t i = 0; i < nx; i++) xf[i] = (float)x[i], x[i] = xf[i];
        for (size_t i = 0; i < nw; i++) rf[i] = (float)r[i], r[i] = rf[i];
        ws_user u = {co, fan, r, wh};
        /* h: the loss is smooth (var >= ~0.01 for these draws, eps 1e-5); 4-point error
         * O(h^4 f''''') ~ 1e-12 at h = 1e-3 */
        al_fd_grad(ws_loss, &u, x, nx, 1e-3, g);
        ref_ws_backward(co, fan, x, x + nw, r, dw, dw + nw);
        if (al_check_close_d("WS reference backward vs FD", dw, g, nx, 1e-8, 1e-7)) return 1;
        /* the float op against the double reference: one rounding of W_hat (|W_hat| ~ gamma
         * gain / sqrt(fan) * 3) and of each gradient element */
        ref_ws(co, fan, x, x + nw, wh);
        AL_EXPECT(al_ws_weight_forward(&ctx, co, fan, (float)GAMMA, (float)EPS, xf, xf + nw, whf, mean, rstd) == AL_OK, "%s", al_errmsg());
        if (al_check_close_fd("WS forward vs double", whf, wh, nw, 0, 4 * AL_F32_EPS)) return 1;
        /* dW_hat := r (float); accumulate twice ('+=') from zero */
        AL_EXPECT(al_ws_weight_backward(&ctx, co, fan, (float)GAMMA, (float)EPS, xf, xf + nw, rf, dwf, dwf + nw) == AL_OK, "%s", al_errmsg());
        AL_EXPECT(al_ws_weight_backward(&ctx, co, fan, (float)GAMMA, (float)EPS, xf, xf + nw, rf, dwf, dwf + nw) == AL_OK, "%s", al_errmsg());
        for (size_t i = 0; i < nx; i++) g[i] = 2 * dw[i];
        /* the op evaluates the same double expression from the same float inputs and rounds
         * once; the hand-derived reference groups the terms differently, and the bracket
         * cancels (to ~eps/var of its terms for the 2-element row), so allow a few ulp of the
         * largest term */
        const double tol = al_tol_f32((double)fan);
        double gmax = 0;
        for (size_t i = 0; i < nx; i++) gmax = fmax(gmax, fabs(g[i]));
        if (al_check_close_fd("WS backward (+= twice) vs double", dwf, g, nx, tol * gmax, tol)) return 1;
        free(x), free(r), free(wh), free(g), free(dw), free(xf), free(rf), free(whf), free(dwf);
    }
    al_ctx_fini(&ctx);
    return 0;
}

/* ---------------------------------------------------------------- WS conv node vs double */

typedef struct comp {
    int n, ci, h, w, co, k, s, p, K;
    int ho, wo;
    /* parameter layout of x (double): [input | W | gain | bias | fcW | fcb] */
    size_t o_x, o_w, o_g, o_b, o_fw, o_fb, total;
    const double *dl; /* (n, K) */
} comp;

static void comp_init(comp *c) {
    c->ho = al_ref_out_size(c->h, c->k, c->s, c->p);
    c->wo = al_ref_out_size(c->w, c->k, c->s, c->p);
    const size_t nx = (size_t)c->n * c->ci * c->h * c->w, nw = (size_t)c->co * c->ci * c->k * c->k;
    const size_t nf = (size_t)c->co * c->ho * c->wo;
    c->o_x = 0;
    c->o_w = nx;
    c->o_g = c->o_w + nw;
    c->o_b = c->o_g + c->co;
    c->o_fw = c->o_b + c->co;
    c->o_fb = c->o_fw + (size_t)c->K * nf;
    c->total = c->o_fb + c->K;
}

static double comp_loss(const double *v, void *u_) {
    const comp *c = u_;
    const size_t nw = (size_t)c->co * c->ci * c->k * c->k, nf = (size_t)c->co * c->ho * c->wo;
    double *wh = malloc(nw * 8), *y = malloc((size_t)c->n * nf * 8), *z = malloc((size_t)c->n * c->K * 8);
    ref_ws(c->co, c->ci * c->k * c->k, v + c->o_w, v + c->o_g, wh);
    al_ref_conv2d_forward(c->n, c->ci, c->h, c->w, c->co, c->k, c->s, c->p, v + c->o_x, wh, v + c->o_b, y);
    al_ref_linear_forward(c->n, (int)nf, c->K, y, v + c->o_fw, v + c->o_fb, z);
    double s = 0;
    for (size_t i = 0; i < (size_t)c->n * c->K; i++) s += z[i] * c->dl[i];
    free(wh), free(y), free(z);
    return s;
}

static int wsconv_node_fd(void) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 0, 0) == AL_OK, "%s", al_errmsg());
    comp c = {.n = 2, .ci = 3, .h = 5, .w = 5, .co = 4, .k = 3, .s = 2, .p = 1, .K = 3};
    comp_init(&c);
    /* the model: input (3x5x5) -> WS conv "c" -> linear "fc" (the logits) */
    al_model *m = al_model_new("ws_tiny", c.K, c.ci, c.h, c.w);
    int y = al_model_wsconv(m, "c", al_model_input(m), c.co, c.k, c.s, c.p, 1, (float)GAMMA, (float)EPS, 0);
    int z = al_model_linear(m, "fc", y, c.K, 1);
    al_model_set_output(m, z, y);
    AL_EXPECT(al_model_setup(&ctx, m, c.n, 1) == AL_OK, "%s", al_errmsg());
    double *v = malloc(c.total * 8), *g = malloc(c.total * 8), *dl = malloc((size_t)c.n * c.K * 8);
    al_test_fill_d(v, c.total, 61, -0.5, 0.5);
    for (int o = 0; o < c.co; o++) v[c.o_g + o] = 0.6 + 0.2 * o; /* gains away from 0 */
    al_test_fill_d(dl, (size_t)c.n * c.K, 62, -1.0, 1.0);
    float *vf = malloc(c.total * 4), *dlf = malloc((size_t)c.n * c.K * 4);
    for (size_t i = 0; i < c.total; i++) vf[i] = (float)v[i], v[i] = vf[i];
    for (size_t i = 0; i < (size_t)c.n * c.K; i++) dlf[i] = (float)dl[i], dl[i] = dlf[i];
    c.dl = dl;
    al_fd_grad(comp_loss, &c, v, c.total, 1e-3, g);
    /* load the float parameters into the model */
    const char *pn[5] = {"c.weight", "c.gain", "c.bias", "fc.weight", "fc.bias"};
    const size_t po[5] = {c.o_w, c.o_g, c.o_b, c.o_fw, c.o_fb};
    for (int i = 0; i < 5; i++) {
        const int idx = al_model_find_param(m, pn[i]);
        AL_EXPECT(idx >= 0, "no parameter %s", pn[i]);
        memcpy(al_param_data(m, idx), vf + po[i], m->params[idx].n_elems * 4);
    }
    const size_t nx = (size_t)c.n * c.ci * c.h * c.w;
    float *dx = malloc(nx * 4);
    al_fwd_opts o = {0, 1, 1, 0, 0, NULL};
    AL_EXPECT(al_model_forward(&ctx, m, vf, c.n, &o) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_model_zero_grad(&ctx, m) == AL_OK, "zero");
    AL_EXPECT(al_model_backward(&ctx, m, 0, dlf, NULL, AL_BWD_WEIGHTS | AL_BWD_INPUT, dx) == AL_OK, "%s", al_errmsg());
    /* path reduction: conv fan-in 27, linear 36, WS row statistics 27: K ~ 100 */
    const double tol = al_tol_f32(100.0);
    double gm = 0;
    for (size_t i = 0; i < c.total; i++) gm = fmax(gm, fabs(g[i]));
    if (al_check_close_fd("dx", dx, g + c.o_x, nx, tol * gm, tol)) return 1;
    for (int i = 0; i < 5; i++) {
        const int idx = al_model_find_param(m, pn[i]);
        char what[64];
        snprintf(what, sizeof what, "d%s", pn[i]);
        if (al_check_close_fd(what, al_param_grad(m, idx), g + po[i], m->params[idx].n_elems, tol * gm, tol)) return 1;
    }
    free(v), free(g), free(dl), free(vf), free(dlf), free(dx);
    al_model_destroy(&ctx, m);
    al_ctx_fini(&ctx);
    return 0;
}

/* ---------------------------------------------------------------- pool / scale-add */

static int pool_ceil(void) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 0, 0) == AL_OK, "%s", al_errmsg());
    const int shapes[][4] = {{1, 1, 1, 1}, {2, 3, 7, 7}, {1, 2, 8, 5}, {3, 1, 2, 3}, {2, 33, 14, 14}};
    for (size_t si = 0; si < AL_ARRAY_LEN(shapes); si++) {
        const int n = shapes[si][0], c = shapes[si][1], h = shapes[si][2], w = shapes[si][3];
        const int ho = (h + 1) / 2, wo = (w + 1) / 2;
        const size_t ni = (size_t)n * c * h * w, no = (size_t)n * c * ho * wo;
        float *x = malloc(ni * 4), *y = malloc(no * 4), *dy = malloc(no * 4), *dx = malloc(ni * 4);
        double *ry = malloc(no * 8);
        al_test_fill(x, ni, 80 + si, -1.0f, 1.0f);
        al_test_fill(dy, no, 90 + si, -1.0f, 1.0f);
        for (int p = 0; p < n * c; p++)
            for (int i = 0; i < ho; i++)
                for (int j = 0; j < wo; j++) {
                    double s = 0;
                    int cnt = 0;
                    for (int a = 2 * i; a < 2 * i + 2; a++)
                        for (int b = 2 * j; b < 2 * j + 2; b++)
                            if (a < h && b < w) s += x[((size_t)p * h + a) * w + b], cnt++;
                    ry[((size_t)p * ho + i) * wo + j] = s / cnt;
                }
        AL_EXPECT(al_avgpool2_ceil_forward(&ctx, n, c, h, w, x, y) == AL_OK, "%s", al_errmsg());
        if (al_check_close_fd("ceil pool vs brute force", y, ry, no, 0, 2 * AL_F32_EPS)) return 1;
        if (h % 2 == 0 && w % 2 == 0) {
            float *yb = malloc(no * 4);
            al_pool_desc d;
            al_pool_desc_init(&d, n, c, h, w, 2, 2);
            AL_EXPECT(al_avgpool_forward(&ctx, &d, x, yb) == AL_OK, "%s", al_errmsg());
            AL_EXPECT(!memcmp(y, yb, no * 4), "even size: differs from the built-in avg pool");
            free(yb);
        }
        /* adjoint: <dy, P x> = <P^T dy, x> */
        AL_EXPECT(al_avgpool2_ceil_backward(&ctx, n, c, h, w, dy, dx, 0) == AL_OK, "%s", al_errmsg());
        double l = 0, r = 0, sc = 0;
        for (size_t i = 0; i < no; i++) l += (double)dy[i] * ry[i];
        for (size_t i = 0; i < ni; i++) r += (double)dx[i] * x[i], sc += fabs((double)dx[i] * x[i]);
        AL_EXPECT(fabs(l - r) <= 4 * AL_F32_EPS * sc + 1e-12, "adjoint: %.17g vs %.17g", l, r);
        float *dx2 = malloc(ni * 4);
        memcpy(dx2, dx, ni * 4);
        AL_EXPECT(al_avgpool2_ceil_backward(&ctx, n, c, h, w, dy, dx2, 1) == AL_OK, "%s", al_errmsg());
        for (size_t i = 0; i < ni; i++) AL_EXPECT(dx2[i] == dx[i] + dx[i], "accumulate");
        free(x), free(y), free(dy), free(dx), free(ry), free(dx2);
    }
    al_ctx_fini(&ctx);
    return 0;
}

static int scale_add(void) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 0, 0) == AL_OK, "%s", al_errmsg());
    float x0[5] = {1, -2, NAN, 4, 0.5f}, x1[5] = {0.25f, 1, 2, INFINITY, -1}, y[5], dy[5] = {1, 2, 3, 4, NAN};
    float d0[5], d1[5];
    const float a = 0.2f;
    AL_EXPECT(al_scale_add_forward(&ctx, 5, a, x0, x1, y) == AL_OK, "%s", al_errmsg());
    for (int i = 0; i < 5; i++) {
        const float t = a * x0[i], e = t + x1[i];
        AL_EXPECT((isnan(e) && isnan(y[i])) || y[i] == e, "y[%d]", i);
    }
    AL_EXPECT(al_scale_add_forward(&ctx, 5, a, x0, NULL, y) == AL_OK, "%s", al_errmsg());
    for (int i = 0; i < 5; i++) AL_EXPECT((isnan(x0[i]) && isnan(y[i])) || y[i] == a * x0[i], "y[%d] (no x1)", i);
    AL_EXPECT(al_scale_add_backward(&ctx, 5, a, dy, d0, 0, d1, 0) == AL_OK, "%s", al_errmsg());
    for (int i = 0; i < 4; i++) AL_EXPECT(d0[i] == a * dy[i] && d1[i] == dy[i], "backward [%d]", i);
    AL_EXPECT(isnan(d0[4]) && isnan(d1[4]), "NaN dy propagates");
    AL_EXPECT(al_scale_add_backward(&ctx, 5, a, dy, d0, 1, NULL, 0) == AL_OK, "%s", al_errmsg());
    for (int i = 0; i < 4; i++) AL_EXPECT(d0[i] == a * dy[i] + a * dy[i], "accumulate [%d]", i);
    al_ctx_fini(&ctx);
    return 0;
}

/* ---------------------------------------------------------------- nf_resnet18 */

static int nf_structure(void) {
    const int cfgs[2][2] = {{1, 28}, {3, 32}};
    for (int ci = 0; ci < 2; ci++) {
        al_model *m;
        AL_EXPECT(al_model_create("nf_resnet18", 10, cfgs[ci][0], cfgs[ci][1], &m) == AL_OK, "%s", al_errmsg());
        int n_ws = 0, n_bn = 0, n_scale = 0;
        for (int i = 0; i < m->n_nodes; i++) {
            const al_node *nd = &m->nodes[i];
            n_bn += nd->kind == AL_NODE_BN;
            AL_EXPECT(nd->kind != AL_NODE_CONV, "a plain conv in an NF net");
            if (nd->kind == AL_NODE_CUSTOM && nd->ops == &al_wsconv_node_ops) n_ws++;
            if (nd->kind == AL_NODE_CUSTOM && nd->ops == &al_scale_add_node_ops && nd->in1 < 0) {
                /* block betas in order: stages.0.1, 1.0, 1.1, 2.0, 2.1, 3.0, 3.1 (stages.0.0: 1) */
                static const double want[7] = {1.04, 1.08, 1.04, 1.08, 1.04, 1.08, 1.04};
                AL_EXPECT(n_scale < 7, "too many beta nodes");
                const double b = 1.0 / sqrt(want[n_scale]);
                AL_EXPECT(fabs(nd->fparam[0] - b) <= AL_F32_EPS * b, "beta %d = %.9g, expected 1/sqrt(%g)",
                          n_scale, (double)nd->fparam[0], want[n_scale]);
                n_scale++;
            }
        }
        AL_EXPECT(n_bn == 0, "BN nodes in nf_resnet18");
        AL_EXPECT(n_ws == 1 + 16 + 3, "WS convs: stem + 2 per block + 3 downsample (got %d)", n_ws);
        AL_EXPECT(n_scale == 7, "beta nodes %d", n_scale);
        /* 20 convs x {weight, bias, gain} + fc {weight, bias} */
        AL_EXPECT(m->n_params == 62, "parameters %d", m->n_params);
        const char *names[] = {"stem.conv.weight", "stem.conv.gain", "stages.0.0.conv1.bias",
                               "stages.3.1.conv2.gain", "stages.1.0.downsample.conv.weight", "head.fc.bias"};
        for (size_t i = 0; i < AL_ARRAY_LEN(names); i++)
            AL_EXPECT(al_model_find_param(m, names[i]) >= 0, "no %s", names[i]);
        AL_EXPECT(al_model_find_param(m, "stages.0.0.downsample.conv.weight") < 0, "stage 0 keeps the identity");
        int ig = al_model_find_param(m, "stages.2.1.conv2.gain");
        AL_EXPECT(m->params[ig].init == AL_INIT_ZERO && m->params[ig].trainable && m->params[ig].shape[1] == 1, "conv2 gain 0");
        ig = al_model_find_param(m, "stages.2.1.conv1.gain");
        AL_EXPECT(m->params[ig].init == AL_INIT_ONE, "conv1 gain 1");
        /* the downsampled map of stage 3 is 4x4 for 28 and 32 */
        AL_EXPECT(m->bufs[m->feat_buf].c == 512, "feature width");
        int last_ws = -1;
        for (int i = 0; i < m->n_nodes; i++)
            if (m->nodes[i].kind == AL_NODE_CUSTOM && m->nodes[i].ops == &al_wsconv_node_ops) last_ws = i;
        AL_EXPECT(m->bufs[m->nodes[last_ws].out].h == 4, "stage 3 map %d", m->bufs[m->nodes[last_ws].out].h);
        /* init statistics: one draw */
        al_ctx ctx;
        AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 0, 0) == AL_OK, "%s", al_errmsg());
        AL_EXPECT(al_model_setup(&ctx, m, 1, 1) == AL_OK && al_model_init_params(&ctx, m, 0) == AL_OK, "%s", al_errmsg());
        const int iw = al_model_find_param(m, "stages.1.1.conv1.weight"), ifc = al_model_find_param(m, "head.fc.weight");
        double s2 = 0;
        for (size_t j = 0; j < m->params[iw].n_elems; j++) s2 += (double)al_param_data(m, iw)[j] * al_param_data(m, iw)[j];
        const double sd = sqrt(s2 / m->params[iw].n_elems), want_sd = 1.0 / sqrt(128.0 * 9.0);
        AL_EXPECT(fabs(sd / want_sd - 1) < 0.01, "conv weight std %g, want %g", sd, want_sd); /* 147k draws */
        s2 = 0;
        for (size_t j = 0; j < m->params[ifc].n_elems; j++) s2 += (double)al_param_data(m, ifc)[j] * al_param_data(m, ifc)[j];
        AL_EXPECT(fabs(sqrt(s2 / m->params[ifc].n_elems) / 0.01 - 1) < 0.05, "fc std"); /* 5120 draws */
        /* forward at init: the residual branches are off (gain 0), logits finite */
        float *x = malloc((size_t)cfgs[ci][0] * cfgs[ci][1] * cfgs[ci][1] * 4);
        al_test_fill(x, (size_t)cfgs[ci][0] * cfgs[ci][1] * cfgs[ci][1], 3, 0.0f, 1.0f);
        AL_EXPECT(al_model_forward_eval(&ctx, m, x, 1, 0) == AL_OK, "%s", al_errmsg());
        for (int j = 0; j < 10; j++) AL_EXPECT(isfinite(al_model_logits(m, 0)[j]), "logit %d", j);
        free(x);
        al_model_destroy(&ctx, m);
        al_ctx_fini(&ctx);
    }
    al_model *m = NULL;
    AL_EXPECT(al_model_create("nf_resnet18_w0", 10, 1, 28, &m) == AL_ERR_VALUE, "width 0 accepted");
    AL_EXPECT(al_model_create("nf_resnet18", 10, 1, 24, &m) == AL_ERR_VALUE, "image 24 accepted");
    al_clear_error();
    return 0;
}

static int h5w(hid_t f, const char *name, const float *x, int ndim, const hsize_t *d) {
    hid_t sp = H5Screate_simple(ndim, d, NULL);
    hid_t ds = H5Dcreate2(f, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = ds < 0 ? -1 : H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(sp);
    return rc < 0;
}
static double *h5rd(hid_t f, const char *name, size_t n) {
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) return NULL;
    hid_t sp = H5Dget_space(ds);
    const hssize_t np = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    double *v = (size_t)np == n ? malloc(n * 8) : NULL;
    if (v && H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) free(v), v = NULL;
    H5Dclose(ds);
    return v;
}

static int nf_torch_case(const char *arch, int width, int c, int s) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 0, 0) == AL_OK, "%s", al_errmsg());
    const int n = 2, k = 10;
    al_model *m;
    AL_EXPECT(al_model_create(arch, k, c, s, &m) == AL_OK, "%s", al_errmsg());
    if (c == 3) {
        const float mean[3] = {0.4914f, 0.4822f, 0.4465f}, sd[3] = {0.2471f, 0.2435f, 0.2616f};
        al_model_set_normalization(m, mean, sd);
    }
    AL_EXPECT(al_model_setup(&ctx, m, n, 1) == AL_OK && al_model_init_params(&ctx, m, 4) == AL_OK, "%s", al_errmsg());
    /* gains away from their init (conv2's 0 would switch the residual branches off) */
    for (int i = 0; i < m->n_params; i++)
        if (strstr(m->params[i].name, ".gain")) al_test_fill(al_param_data(m, i), m->params[i].n_elems, 200 + i, 0.5f, 1.5f);
        else if (strstr(m->params[i].name, ".bias")) al_test_fill(al_param_data(m, i), m->params[i].n_elems, 400 + i, -0.1f, 0.1f);
    char ck[1024], io[1024], rf[1024], cmd[4096];
    snprintf(ck, sizeof ck, "%s/nf_%s_ckpt.h5", al_test_tmpdir(), arch);
    snprintf(io, sizeof io, "%s/nf_%s_io.h5", al_test_tmpdir(), arch);
    snprintf(rf, sizeof rf, "%s/nf_%s_ref.h5", al_test_tmpdir(), arch);
    AL_EXPECT(al_checkpoint_save(&ctx, m, NULL, ck) == AL_OK, "%s", al_errmsg());
    const size_t d = (size_t)c * s * s;
    float *x = malloc(n * d * 4), *dl = malloc((size_t)n * k * 4), *dx = malloc(n * d * 4);
    al_test_fill(x, n * d, 5, 0.0f, 1.0f);
    al_test_fill(dl, (size_t)n * k, 6, -1.0f, 1.0f);
    hid_t f = H5Fcreate(io, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const hsize_t dx4[4] = {(hsize_t)n, (hsize_t)c, (hsize_t)s, (hsize_t)s}, dk[2] = {(hsize_t)n, (hsize_t)k};
    AL_EXPECT(!h5w(f, "x", x, 4, dx4) && !h5w(f, "dlogits", dl, 2, dk), "write %s", io);
    H5Fclose(f);
    snprintf(cmd, sizeof cmd, "%s %s/tests/torch/ms_ref.py nfresnet %s %s %s %d", al_test_python(),
             al_test_source_dir(), ck, io, rf, width);
    AL_EXPECT(system(cmd) == 0, "reference failed: %s", cmd);
    al_fwd_opts o = {0, 1, 0, 0, 0, NULL};
    AL_EXPECT(al_model_forward(&ctx, m, x, n, &o) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_model_zero_grad(&ctx, m) == AL_OK, "zero");
    AL_EXPECT(al_model_backward(&ctx, m, 0, dl, NULL, AL_BWD_WEIGHTS | AL_BWD_INPUT, dx) == AL_OK, "%s", al_errmsg());
    f = H5Fopen(rf, H5F_ACC_RDONLY, H5P_DEFAULT);
    AL_EXPECT(f >= 0, "open %s", rf);
    /* Tolerance (style rule 22): the path sums the fan-ins of the 10 convs a signal crosses
     * (stem 9c, 8 block convs 9*W..9*8W, head 8W) plus the WS row statistics; in an NF net the
     * activations stay O(1) (that is the design), so eps*sqrt(sum K) relative to each
     * tensor's own scale, x8 headroom (al_tol_f32). Gradients add the backward fan-outs and
     * the batch-spatial weight-gradient sums (n * 28 * 28). */
    double kf = 9.0 * c + 8.0 * width;
    for (int st = 0; st < 4; st++) kf += 2 * 9.0 * (width << st);
    const double kb = 2 * kf + (double)n * s * s;
    int bad = 0;
    double *r = h5rd(f, "logits", (size_t)n * k);
    double sc = 0;
    for (int i = 0; r && i < n * k; i++) sc = fmax(sc, fabs(r[i]));
    bad |= !r || al_check_close_fd("logits vs torch f64", al_model_logits(m, 0), r, (size_t)n * k, al_tol_f32(kf) * sc, al_tol_f32(kf));
    free(r);
    r = h5rd(f, "dx", n * d);
    sc = 0;
    for (size_t i = 0; r && i < n * d; i++) sc = fmax(sc, fabs(r[i]));
    bad |= !r || al_check_close_fd("dx vs torch f64", dx, r, n * d, al_tol_f32(kb) * sc, al_tol_f32(kb));
    free(r);
    for (int i = 0; i < m->n_params && !bad; i++) {
        char nm[AL_NAME_LEN + 8];
        snprintf(nm, sizeof nm, "grad/%s", m->params[i].name);
        r = h5rd(f, nm, m->params[i].n_elems);
        sc = 0;
        for (size_t j = 0; r && j < m->params[i].n_elems; j++) sc = fmax(sc, fabs(r[j]));
        bad |= !r || al_check_close_fd(nm, al_param_grad(m, i), r, m->params[i].n_elems, al_tol_f32(kb) * sc,
                                       al_tol_f32(kb));
        free(r);
    }
    H5Fclose(f);
    AL_EXPECT(!bad, "%s differs from the PyTorch twin", arch);
    remove(ck), remove(io), remove(rf);
    free(x), free(dl), free(dx);
    al_model_destroy(&ctx, m);
    al_ctx_fini(&ctx);
    return 0;
}

static int nf_torch(void) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s -c 'import torch, h5py' >/dev/null 2>&1", al_test_python());
    if (system(cmd) != 0) {
        printf("skipped: %s has no torch/h5py\n", al_test_python());
        return AL_SKIP_CODE;
    }
    if (nf_torch_case("nf_resnet18_w8", 8, 1, 28)) return 1;
    return nf_torch_case("nf_resnet18_w4", 4, 3, 32);
}

/* ---------------------------------------------------------------- the method step */

static double lsce_ref(const float *z, const int32_t *y, int n, int k, double sm, double w, float *g) {
    double sum = 0;
    for (int i = 0; i < n; i++) {
        const float *zi = z + (size_t)i * k;
        double mx = zi[0];
        for (int j = 1; j < k; j++) mx = fmax(mx, zi[j]);
        double se = 0;
        for (int j = 0; j < k; j++) se += exp(zi[j] - mx);
        const double lse = mx + log(se);
        double nll = lse - zi[y[i]], smooth = 0;
        for (int j = 0; j < k; j++) smooth += (lse - zi[j]) / k; /* -mean_j log p_j */
        sum += (1 - sm) * nll + sm * smooth;
        for (int j = 0; j < k; j++)
            g[(size_t)i * k + j] = (float)(w / n * (exp(zi[j] - lse) - ((j == y[i]) ? 1 - sm : 0) - sm / k));
    }
    return w * sum / n;
}

static int nofrost_step(void) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 0, 7) == AL_OK, "%s", al_errmsg());
    const al_method_def *def;
    AL_EXPECT(al_method_lookup(AL_METHOD_NOFROST, &def) == AL_OK && def->n_slots == 2, "nofrost registered");
    const int n = 4, k = 10, c = 1, s = 28;
    const size_t d = (size_t)c * s * s;
    const double lams[3] = {0.5, 0.0, 0.0}, sms[3] = {0.1, 0.1, 0.0};
    for (int t = 0; t < 3; t++) {
        al_config cfg;
        al_config_defaults(&cfg);
        cfg.train.method = AL_METHOD_NOFROST;
        cfg.nofrost.lam = lams[t];
        cfg.nofrost.label_smoothing = sms[t];
        cfg.attack.eps = 0.1f;
        cfg.attack.alpha = 0.03f;
        cfg.attack.steps = 3;
        AL_EXPECT(al_config_validate(&cfg) == AL_OK, "%s", al_errmsg());
        AL_EXPECT(cfg.train.bn_mode_attack == AL_BN_ATTACK_EVAL && cfg.attack.random_init == AL_RINIT_UNIFORM,
                  "nofrost auto: eval-mode attack with a uniform start");
        al_model *m;
        AL_EXPECT(al_model_create("nf_resnet18_w4", k, c, s, &m) == AL_OK, "%s", al_errmsg());
        AL_EXPECT(al_model_setup(&ctx, m, n, 2) == AL_OK && al_model_init_params(&ctx, m, 1) == AL_OK, "%s", al_errmsg());
        for (int i = 0; i < m->n_params; i++)
            if (strstr(m->params[i].name, ".gain")) al_test_fill(al_param_data(m, i), m->params[i].n_elems, 300 + i, 0.5f, 1.5f);
        al_step_io io;
        memset(&io, 0, sizeof io);
        al_attack_ws ws;
        memset(&ws, 0, sizeof ws);
        AL_EXPECT(al_attack_ws_init(&ctx, &ws, m, n) == AL_OK, "%s", al_errmsg());
        float *x = malloc(n * d * 4), *xadv = malloc(n * d * 4), *xadv2 = malloc(n * d * 4);
        float *dl0 = malloc((size_t)n * k * 4), *dl1 = malloc((size_t)n * k * 4);
        float *g0 = malloc((size_t)n * k * 4), *g1 = malloc((size_t)n * k * 4);
        int32_t y[4] = {3, 0, 9, 3};
        al_test_fill(x, n * d, 50, 0.0f, 1.0f);
        io.ctx = &ctx, io.m = m, io.cfg = &cfg, io.ws = &ws, io.x = x, io.y = y, io.n = n, io.k = k, io.d = d;
        io.xadv = xadv, io.dl[0] = dl0, io.dl[1] = dl1, io.step = 5, io.seed = 7;
        AL_EXPECT(al_train_spec_from_config(&cfg, &io.spec, &io.no_attack) == AL_OK && !io.no_attack, "%s", al_errmsg());
        AL_EXPECT(def->setup(&io) == AL_OK, "%s", al_errmsg());
        double loss = 0;
        int n_correct = -1;
        AL_EXPECT(def->step(&io, &loss, &n_correct) == AL_OK, "%s", al_errmsg());
        float *grads = malloc(m->n_param_floats * 4);
        memcpy(grads, m->grads, m->n_param_floats * 4);
        /* recompute: clean forward slot 0, the attack with the step's seed/stream in slot 1,
         * adversarial forward slot 1 */
        al_fwd_opts o0 = al_step_train_opts(&io, 0, 0), o1 = al_step_train_opts(&io, 1, 1);
        AL_EXPECT(al_model_forward(&ctx, m, x, n, &o0) == AL_OK, "%s", al_errmsg());
        double want = lsce_ref(al_model_logits(m, 0), y, n, k, sms[t], 1 - lams[t], g0);
        if (t == 2) {
            double xe;
            AL_EXPECT(al_xent(&ctx, n, k, al_model_logits(m, 0), y, 1.0f, &xe, NULL, NULL) == AL_OK, "%s", al_errmsg());
            AL_EXPECT(fabs(xe - want) <= 1e-6 * fabs(xe), "smoothing 0, lam 0: %.9g vs al_xent %.9g", want, xe);
        }
        if (lams[t] > 0) {
            al_attack_spec sp = io.spec;
            sp.fwd.slot = 1;
            sp.fwd.step = (uint64_t)io.step * 4 + 3;
            AL_EXPECT(al_attack_run(&ctx, m, &sp, &ws, x, y, n, io.seed, al_stream(AL_STREAM_ATTACK, (uint64_t)io.step),
                                    xadv2, NULL, NULL) == AL_OK, "%s", al_errmsg());
            AL_EXPECT(!memcmp(xadv, xadv2, n * d * 4), "x_adv reproducible from the step's seed/stream");
            double dmax = 0;
            for (size_t i = 0; i < n * d; i++) dmax = fmax(dmax, fabs((double)xadv2[i] - x[i]));
            AL_EXPECT(dmax <= 0.1 + 1e-6 && dmax > 0.05, "x_adv in the eps-ball and moved (%g)", dmax);
            AL_EXPECT(al_model_forward(&ctx, m, xadv2, n, &o1) == AL_OK, "%s", al_errmsg());
            want += lsce_ref(al_model_logits(m, 1), y, n, k, sms[t], lams[t], g1);
        }
        /* the method sums the same double expressions in another order: 1e-12 relative */
        AL_EXPECT(fabs(loss - want) <= 1e-12 * fabs(want), "loss %.17g, recomputed %.17g", loss, want);
        AL_EXPECT(al_model_zero_grad(&ctx, m) == AL_OK, "zero");
        if (lams[t] > 0) AL_EXPECT(al_model_backward(&ctx, m, 1, g1, NULL, AL_BWD_WEIGHTS, NULL) == AL_OK, "%s", al_errmsg());
        AL_EXPECT(al_model_backward(&ctx, m, 0, g0, NULL, AL_BWD_WEIGHTS, NULL) == AL_OK, "%s", al_errmsg());
        /* the logit gradients are the same double expressions rounded once: bitwise */
        AL_EXPECT(!memcmp(grads, m->grads, m->n_param_floats * 4), "weight gradients differ (case %d)", t);
        def->teardown(&io);
        al_attack_ws_fini(&ctx, &ws);
        free(x), free(xadv), free(xadv2), free(dl0), free(dl1), free(g0), free(g1), free(grads);
        al_model_destroy(&ctx, m);
    }
    al_ctx_fini(&ctx);
    return 0;
}

/* ---------------------------------------------------------------- CUDA twins */

static int cuda_vs_cpu(void) {
#ifndef AL_HAVE_CUDA
    printf("skipped: no GPU (built without CUDA)\n");
    return AL_SKIP_CODE;
#else
    if (al_test_no_gpu()) return AL_SKIP_CODE;
    al_ctx cpu, gpu;
    AL_EXPECT(al_ctx_init(&cpu, AL_DEV_CPU, 0, 0, 0) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_ctx_init(&gpu, AL_DEV_CUDA, 0, 0, 0) == AL_OK, "%s", al_errmsg());
    const uint32_t sent = 0x7FC0DEADu;
    const size_t G = 64;
    /* WS weight: rows of 1 .. 4608 (512 * 3 * 3) */
    const int shapes[][2] = {{1, 1}, {3, 9}, {7, 27}, {64, 576}, {5, 4608}};
    for (size_t si = 0; si < AL_ARRAY_LEN(shapes); si++) {
        const int co = shapes[si][0], fan = shapes[si][1];
        const size_t nw = (size_t)co * fan;
        float *w = malloc(nw * 4), *gain = malloc(co * 4), *g = malloc(nw * 4);
        float *wh = malloc(nw * 4), *mean = malloc(co * 4), *rstd = malloc(co * 4), *dw = malloc(nw * 4), *dg = malloc(co * 4);
        float *hw_ = malloc((nw + 2 * G) * 4), *hm = malloc(co * 4), *hr = malloc(co * 4), *hdw = malloc(nw * 4), *hdg = malloc(co * 4);
        al_test_fill(w, nw, 700 + si, -0.2f, 0.3f);
        al_test_fill(gain, co, 710 + si, 0.5f, 1.5f);
        al_test_fill(g, nw, 720 + si, -1.0f, 1.0f);
        for (size_t i = 0; i < nw; i++) dw[i] = 0.5f;
        for (int i = 0; i < co; i++) dg[i] = -0.25f;
        float *d_w, *d_gain, *d_g, *d_wh, *d_m, *d_r, *d_dw, *d_dg;
        AL_EXPECT(al_dev_alloc(&gpu, (void **)&d_w, nw * 4, "w") == AL_OK && al_dev_alloc(&gpu, (void **)&d_gain, co * 4, "g") == AL_OK &&
                      al_dev_alloc(&gpu, (void **)&d_g, nw * 4, "dwh") == AL_OK && al_dev_alloc(&gpu, (void **)&d_wh, (nw + 2 * G) * 4, "wh") == AL_OK &&
                      al_dev_alloc(&gpu, (void **)&d_m, co * 4, "m") == AL_OK && al_dev_alloc(&gpu, (void **)&d_r, co * 4, "r") == AL_OK &&
                      al_dev_alloc(&gpu, (void **)&d_dw, nw * 4, "dw") == AL_OK && al_dev_alloc(&gpu, (void **)&d_dg, co * 4, "dg") == AL_OK,
                  "%s", al_errmsg());
        for (size_t i = 0; i < nw + 2 * G; i++) memcpy(&hw_[i], &sent, 4);
        al_copy_to_dev(&gpu, d_wh, hw_, (nw + 2 * G) * 4);
        al_copy_to_dev(&gpu, d_w, w, nw * 4), al_copy_to_dev(&gpu, d_gain, gain, co * 4), al_copy_to_dev(&gpu, d_g, g, nw * 4);
        al_copy_to_dev(&gpu, d_dw, dw, nw * 4), al_copy_to_dev(&gpu, d_dg, dg, co * 4);
        AL_EXPECT(al_ws_weight_forward(&cpu, co, fan, (float)GAMMA, (float)EPS, w, gain, wh, mean, rstd) == AL_OK, "%s", al_errmsg());
        AL_EXPECT(al_ws_weight_forward(&gpu, co, fan, (float)GAMMA, (float)EPS, d_w, d_gain, d_wh + G, d_m, d_r) == AL_OK, "%s", al_errmsg());
        AL_EXPECT(al_copy_to_host(&gpu, hw_, d_wh, (nw + 2 * G) * 4) == AL_OK, "%s", al_errmsg());
        for (size_t i = 0; i < G; i++)
            AL_EXPECT(!memcmp(&hw_[i], &sent, 4) && !memcmp(&hw_[G + nw + i], &sent, 4), "WS forward wrote outside");
        /* double row sums in another order: the float results differ by at most 1 ulp */
        if (al_check_close("W_hat CUDA vs CPU", hw_ + G, wh, nw, 0, 2 * AL_F32_EPS)) return 1;
        al_copy_to_host(&gpu, hm, d_m, co * 4), al_copy_to_host(&gpu, hr, d_r, co * 4);
        if (al_check_close("row mean", hm, mean, co, 1e-9, 2 * AL_F32_EPS) || al_check_close("row rstd", hr, rstd, co, 0, 2 * AL_F32_EPS)) return 1;
        AL_EXPECT(al_ws_weight_backward(&cpu, co, fan, (float)GAMMA, (float)EPS, w, gain, g, dw, dg) == AL_OK, "%s", al_errmsg());
        AL_EXPECT(al_ws_weight_backward(&gpu, co, fan, (float)GAMMA, (float)EPS, d_w, d_gain, d_g, d_dw, d_dg) == AL_OK, "%s", al_errmsg());
        al_copy_to_host(&gpu, hdw, d_dw, nw * 4), al_copy_to_host(&gpu, hdg, d_dg, co * 4);
        /* double sums in another order, rounded once: a few ulp of the largest term */
        if (al_check_close("dW CUDA vs CPU", hdw, dw, nw, al_tol_f32(fan) * 0.5, al_tol_f32(fan)) ||
            al_check_close("dgain CUDA vs CPU", hdg, dg, co, al_tol_f32(fan), al_tol_f32(fan)))
            return 1;
        al_dev_free(&gpu, d_w), al_dev_free(&gpu, d_gain), al_dev_free(&gpu, d_g), al_dev_free(&gpu, d_wh);
        al_dev_free(&gpu, d_m), al_dev_free(&gpu, d_r), al_dev_free(&gpu, d_dw), al_dev_free(&gpu, d_dg);
        free(w), free(gain), free(g), free(wh), free(mean), free(rstd), free(dw), free(dg), free(hw_), free(hm), free(hr), free(hdw), free(hdg);
    }
    /* pool and scale-add: bitwise */
    {
        const int n = 3, c = 5, h = 7, w = 9, ho = 4, wo = 5;
        const size_t ni = (size_t)n * c * h * w, no = (size_t)n * c * ho * wo;
        float *x = malloc(ni * 4), *y = malloc(no * 4), *hy = malloc(no * 4), *dy = malloc(no * 4), *dx = malloc(ni * 4), *hdx = malloc(ni * 4);
        al_test_fill(x, ni, 801, -1, 1);
        al_test_fill(dy, no, 802, -1, 1);
        float *d_x, *d_y, *d_dy, *d_dx;
        AL_EXPECT(al_dev_alloc(&gpu, (void **)&d_x, ni * 4, "x") == AL_OK && al_dev_alloc(&gpu, (void **)&d_y, no * 4, "y") == AL_OK &&
                      al_dev_alloc(&gpu, (void **)&d_dy, no * 4, "dy") == AL_OK && al_dev_alloc(&gpu, (void **)&d_dx, ni * 4, "dx") == AL_OK,
                  "%s", al_errmsg());
        al_copy_to_dev(&gpu, d_x, x, ni * 4), al_copy_to_dev(&gpu, d_dy, dy, no * 4), al_copy_to_dev(&gpu, d_dx, x, ni * 4);
        memcpy(dx, x, ni * 4);
        AL_EXPECT(al_avgpool2_ceil_forward(&cpu, n, c, h, w, x, y) == AL_OK && al_avgpool2_ceil_forward(&gpu, n, c, h, w, d_x, d_y) == AL_OK, "%s", al_errmsg());
        al_copy_to_host(&gpu, hy, d_y, no * 4);
        AL_EXPECT(!memcmp(hy, y, no * 4), "ceil pool forward CUDA vs CPU");
        AL_EXPECT(al_avgpool2_ceil_backward(&cpu, n, c, h, w, dy, dx, 1) == AL_OK && al_avgpool2_ceil_backward(&gpu, n, c, h, w, d_dy, d_dx, 1) == AL_OK, "%s", al_errmsg());
        al_copy_to_host(&gpu, hdx, d_dx, ni * 4);
        AL_EXPECT(!memcmp(hdx, dx, ni * 4), "ceil pool backward (+=) CUDA vs CPU");
        float *sa = malloc(ni * 4), *hsa = malloc(ni * 4), *d_sa;
        AL_EXPECT(al_dev_alloc(&gpu, (void **)&d_sa, ni * 4, "sa") == AL_OK, "%s", al_errmsg());
        AL_EXPECT(al_scale_add_forward(&cpu, ni, 0.2f, x, dx, sa) == AL_OK && al_scale_add_forward(&gpu, ni, 0.2f, d_x, d_dx, d_sa) == AL_OK, "%s", al_errmsg());
        al_copy_to_host(&gpu, hsa, d_sa, ni * 4);
        AL_EXPECT(!memcmp(hsa, sa, ni * 4), "scale-add forward CUDA vs CPU");
        AL_EXPECT(al_scale_add_backward(&cpu, ni, 0.2f, x, sa, 1, dx, 0) == AL_OK && al_scale_add_backward(&gpu, ni, 0.2f, d_x, d_sa, 1, d_dx, 0) == AL_OK, "%s", al_errmsg());
        al_copy_to_host(&gpu, hsa, d_sa, ni * 4), al_copy_to_host(&gpu, hdx, d_dx, ni * 4);
        AL_EXPECT(!memcmp(hsa, sa, ni * 4) && !memcmp(hdx, dx, ni * 4), "scale-add backward CUDA vs CPU");
        al_dev_free(&gpu, d_x), al_dev_free(&gpu, d_y), al_dev_free(&gpu, d_dy), al_dev_free(&gpu, d_dx), al_dev_free(&gpu, d_sa);
        free(x), free(y), free(hy), free(dy), free(dx), free(hdx), free(sa), free(hsa);
    }
    /* whole model: nf_resnet18_w8 forward/backward */
    {
        const int n = 4, k = 10;
        const size_t d = 28 * 28;
        al_model *mc, *mg;
        AL_EXPECT(al_model_create("nf_resnet18_w8", k, 1, 28, &mc) == AL_OK && al_model_create("nf_resnet18_w8", k, 1, 28, &mg) == AL_OK, "%s", al_errmsg());
        AL_EXPECT(al_model_setup(&cpu, mc, n, 1) == AL_OK && al_model_setup(&gpu, mg, n, 1) == AL_OK, "%s", al_errmsg());
        AL_EXPECT(al_model_init_params(&cpu, mc, 2) == AL_OK, "%s", al_errmsg());
        for (int i = 0; i < mc->n_params; i++)
            if (strstr(mc->params[i].name, ".gain")) al_test_fill(al_param_data(mc, i), mc->params[i].n_elems, 900 + i, 0.5f, 1.5f);
        al_copy_to_dev(&gpu, mg->data, mc->data, mc->n_param_floats * 4);
        float *x = malloc(n * d * 4), *dl = malloc(n * k * 4), *dxc = malloc(n * d * 4), *dxg = malloc(n * d * 4), *hl = malloc(n * k * 4);
        float *gg = malloc(mc->n_param_floats * 4);
        al_test_fill(x, n * d, 11, 0, 1);
        al_test_fill(dl, n * k, 12, -1, 1);
        float *d_x, *d_dl, *d_dx;
        AL_EXPECT(al_dev_alloc(&gpu, (void **)&d_x, n * d * 4, "x") == AL_OK && al_dev_alloc(&gpu, (void **)&d_dl, n * k * 4, "dl") == AL_OK &&
                      al_dev_alloc(&gpu, (void **)&d_dx, n * d * 4, "dx") == AL_OK,
                  "%s", al_errmsg());
        al_copy_to_dev(&gpu, d_x, x, n * d * 4), al_copy_to_dev(&gpu, d_dl, dl, n * k * 4);
        al_fwd_opts o = {0, 1, 0, 0, 0, NULL};
        AL_EXPECT(al_model_forward(&cpu, mc, x, n, &o) == AL_OK && al_model_forward(&gpu, mg, d_x, n, &o) == AL_OK, "%s", al_errmsg());
        AL_EXPECT(al_model_zero_grad(&cpu, mc) == AL_OK && al_model_zero_grad(&gpu, mg) == AL_OK, "zero");
        AL_EXPECT(al_model_backward(&cpu, mc, 0, dl, NULL, AL_BWD_WEIGHTS | AL_BWD_INPUT, dxc) == AL_OK, "%s", al_errmsg());
        AL_EXPECT(al_model_backward(&gpu, mg, 0, d_dl, NULL, AL_BWD_WEIGHTS | AL_BWD_INPUT, d_dx) == AL_OK, "%s", al_errmsg());
        al_copy_to_host(&gpu, hl, al_model_logits(mg, 0), n * k * 4);
        al_copy_to_host(&gpu, dxg, d_dx, n * d * 4);
        al_copy_to_host(&gpu, gg, mg->grads, mc->n_param_floats * 4);
        /* cuDNN vs OpenBLAS convs along the path (sum of fan-ins ~ 2600): al_tol_f32(2600)
         * relative to each tensor's scale, as nf_torch */
        double sc = 0;
        for (int i = 0; i < n * k; i++) sc = fmax(sc, fabs(al_model_logits(mc, 0)[i]));
        const double t = al_tol_f32(2 * 2600.0 + n * 784.0);
        if (al_check_close("logits CUDA vs CPU", hl, al_model_logits(mc, 0), n * k, t * sc, t)) return 1;
        sc = 0;
        for (size_t i = 0; i < n * d; i++) sc = fmax(sc, fabs(dxc[i]));
        if (al_check_close("dx CUDA vs CPU", dxg, dxc, n * d, t * sc, t)) return 1;
        for (int i = 0; i < mc->n_params; i++) {
            const al_param *p = &mc->params[i];
            sc = 0;
            for (size_t j = 0; j < p->n_elems; j++) sc = fmax(sc, fabs(mc->grads[p->offset + j]));
            if (al_check_close(p->name, gg + p->offset, mc->grads + p->offset, p->n_elems, t * sc, t)) return 1;
        }
        al_dev_free(&gpu, d_x), al_dev_free(&gpu, d_dl), al_dev_free(&gpu, d_dx);
        free(x), free(dl), free(dxc), free(dxg), free(hl), free(gg);
        al_model_destroy(&cpu, mc);
        al_model_destroy(&gpu, mg);
    }
    al_ctx_fini(&gpu);
    al_ctx_fini(&cpu);
    return 0;
#endif
}

/* al_xent_smooth (losses/xent_smooth.c) vs 4-point central finite differences of a double
 * implementation written here from timm's LabelSmoothingCrossEntropy (log_softmax, nll of the
 * label, mean of -log p over classes, (1-s) nll + s smooth, batch mean); s = 0 equals al_xent. */
typedef struct lsref {
    int n, k;
    const int32_t *y;
    double s, w;
} lsref;

static double lsce_fdref(const double *z, void *user) {
    const lsref *r = user;
    double tot = 0;
    for (int i = 0; i < r->n; i++) {
        const double *zr = z + (size_t)i * r->k;
        double mx = zr[0], se = 0, mean_lp = 0;
        for (int j = 1; j < r->k; j++) mx = zr[j] > mx ? zr[j] : mx;
        for (int j = 0; j < r->k; j++) se += exp(zr[j] - mx);
        const double lse = mx + log(se);
        for (int j = 0; j < r->k; j++) mean_lp += (zr[j] - lse) / r->k;
        tot += (1 - r->s) * (lse - zr[r->y[i]]) + r->s * (-mean_lp);
    }
    return r->w * tot / r->n;
}

static int xent_smooth_fd(void) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 1) == AL_OK, "%s", al_errmsg());
    int bad = 0;
    static const struct { int n, k; double s; float scale; } cs[] = {
        {1, 2, 0.1, 3}, {5, 10, 0.1, 5}, {3, 100, 0.3, 20}, {4, 7, 1.0, 2}, {6, 10, 0.0, 8}};
    for (size_t c = 0; c < AL_ARRAY_LEN(cs); c++) {
        const int n = cs[c].n, k = cs[c].k;
        const size_t nk = (size_t)n * k;
        float *z = malloc(nk * 4), *g = malloc(nk * 4), *gx = malloc(nk * 4);
        double *zd = malloc(nk * sizeof(double)), *fd = malloc(nk * sizeof(double));
        int32_t *y = malloc((size_t)n * 4);
        al_test_fill(z, nk, 300 + c, -cs[c].scale, cs[c].scale);
        for (int i = 0; i < n; i++) y[i] = (int32_t)((c + 7 * (size_t)i) % (size_t)k);
        for (size_t e = 0; e < nk; e++) zd[e] = z[e];
        lsref r = {n, k, y, cs[c].s, 1.7};
        double loss = 0;
        AL_EXPECT(al_xent_smooth(&ctx, n, k, z, y, cs[c].s, 1.7, &loss, g) == AL_OK, "%s",
                  al_errmsg());
        const double ref = lsce_fdref(zd, &r);
        al_fd_grad(lsce_fdref, &r, zd, nk, 1e-3 * cs[c].scale, fd);
        char what[96];
        const double vt = al_tol_f32((double)k);
        snprintf(what, sizeof what, "lsce loss n=%d k=%d s=%g", n, k, cs[c].s);
        bad |= al_check_close_d(what, &loss, &ref, 1, vt, vt);
        snprintf(what, sizeof what, "lsce dz vs FD n=%d k=%d s=%g", n, k, cs[c].s);
        bad |= al_check_close_fd(what, g, fd, nk, vt * 1.7 / n, vt);
        if (cs[c].s == 0.0) { /* s = 0: the plain CE of al_xent (weight 1.7) */
            double lx = 0;
            AL_EXPECT(al_xent(&ctx, n, k, z, y, 1.7f, &lx, NULL, gx) == AL_OK, "%s", al_errmsg());
            bad |= al_check_close_d("lsce s=0 vs al_xent loss", &loss, &lx, 1, 1e-6, 1e-6);
            bad |= al_check_close("lsce s=0 vs al_xent dz", g, gx, nk, 1e-7, 1e-5);
        }
        free(z), free(g), free(gx), free(zd), free(fd), free(y);
    }
    double l;
    int32_t yb[2] = {0, 10};
    float zb[20] = {0};
    AL_EXPECT(al_xent_smooth(&ctx, 2, 10, zb, yb, 0.1, 1, &l, NULL) == AL_ERR_VALUE &&
                  strstr(al_errmsg(), "index 1"), "bad label: %s", al_errmsg());
    al_clear_error();
    AL_EXPECT(al_xent_smooth(&ctx, 1, 10, zb, yb, 1.5, 1, &l, NULL) == AL_ERR_VALUE,
              "smoothing 1.5 accepted");
    al_clear_error();
    al_ctx_fini(&ctx);
    return bad;
}

int main(int argc, char **argv) {
    static const al_case cases[] = {
        {"xent_smooth_fd", xent_smooth_fd},
        {"ws_weight_fd", ws_weight_fd},
        {"wsconv_node_fd", wsconv_node_fd},
        {"pool_ceil", pool_ceil},
        {"scale_add", scale_add},
        {"nf_structure", nf_structure},
        {"nf_torch", nf_torch},
        {"nofrost_step", nofrost_step},
        {"cuda_vs_cpu", cuda_vs_cpu},
    };
    return al_run_cases(cases, (int)AL_ARRAY_LEN(cases), argc, argv);
}
