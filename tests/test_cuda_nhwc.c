/* test_cuda_nhwc.c: channels-last activations (run.layout = nhwc, core/model.c "storage
 * formats") against the NCHW path on the same GPU.
 *   convert: al_convert_cuda (the tiled transpose + cast) equals its CPU twin byte for byte for
 *            every pair of formats (fp32/bf16 x NCHW/NHWC), '=' and '+=', on shapes that cross
 *            the 32 x 32 tile edges and the c == 1 / hw == 1 shortcuts;
 *   model:   twin models, one planned NCHW and one NHWC, same weights and inputs: train-mode
 *            forward (BN batch statistics, running-stat update), backward to the input and to
 *            every parameter, then an eval-mode forward. Logits, input gradient, parameter
 *            gradients and the BN running statistics agree (fp32: to the summation-order level,
 *            since the NHWC batch norm and bias sums reduce in another order; bf16: to a few
 *            bf16 ulps, norm-wise) for a conv-bias + max-pool net (smallcnn), a BN + avg-pool
 *            residual net with 16-channel layers (wrn-10-1, narrower than one 32-channel
 *            reduction group) and a net whose weight-standardised convolutions are custom NCHW
 *            nodes between NHWC ReLU/add nodes (nf_resnet18_w8: conversions at every boundary);
 *            the NHWC twin does store buffers channels last and the logits/features stay NCHW;
 *   attack:  a training-mode PGD-5 on an NHWC model replayed from a CUDA graph (the layout
 *            conversions are captured too) equals the eager loop bitwise.
 * Without a GPU: exit 77. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attacks/attack.h"
#include "core/ctx.h"
#include "core/model.h"
#include "core/ops/bf16.h"
#include "harness/check.h"
#include "harness/devbuf.h"

static al_ctx gpu, cpu;

#define OK(call) AL_TEST_OK(call)

/* Test memory: tests/harness/devbuf.h (guarded device buffers, tracked host buffers). */

/* ---------------------------------------------------------------- convert */

static size_t esize(int fmt) { return fmt & AL_FMT_BF16 ? sizeof(al_bf16) : sizeof(float); }

/* n values of format fmt from the fill stream id (bf16: the rounded fill). */
static void *host_fill(int fmt, size_t n, uint64_t id) {
    float *f = hrand(n, id, -2, 2);
    void *h = hnew(n * esize(fmt));
    for (size_t i = 0; i < n; i++) {
        if (fmt & AL_FMT_BF16)
            ((al_bf16 *)h)[i] = al_f32_to_bf16(f[i]);
        else
            ((float *)h)[i] = f[i];
    }
    return h;
}

static int case_convert(void) {
    static const int shapes[][3] = {{3, 37, 45}, {2, 64, 9}, {2, 1, 50}, {2, 5, 1}, {1, 33, 33}};
    int bad = 0, checked = 0;
    for (size_t sh = 0; sh < AL_ARRAY_LEN(shapes); sh++) {
        const int n = shapes[sh][0], c = shapes[sh][1], hw = shapes[sh][2];
        const size_t ne = (size_t)n * c * hw;
        for (int sf = 0; sf < 4; sf++)
            for (int df = 0; df < 4; df++)
                for (int acc = 0; acc < 2; acc++) {
                    void *hs = host_fill(sf, ne, 1 + sh), *hd = host_fill(df, ne, 100 + sh);
                    void *ds = dnew(ne * esize(sf), hs), *dd = dnew(ne * esize(df), hd);
                    OK(al_convert(&gpu, n, c, hw, ds, sf, dd, df, acc));
                    OK(al_convert(&cpu, n, c, hw, hs, sf, hd, df, acc));
                    char lab[128];
                    snprintf(lab, sizeof lab, "convert %dx%dx%d fmt %d -> %d%s", n, c, hw, sf, df,
                             acc ? " (+=)" : "");
                    bad |= dcheck_bytes(lab, dd, hd, ne * esize(df));
                    checked++;
                    devbuf_release(); /* 160 conversions: more buffers than one case tracks */
                }
    }
    /* the layout really changes: NCHW -> NHWC of a (1, 2, 3) ramp is 0 3 1 4 2 5 */
    const float ramp[6] = {0, 1, 2, 3, 4, 5}, want[6] = {0, 3, 1, 4, 2, 5};
    float *dr = dnew(sizeof ramp, ramp), *dn = dnew(sizeof ramp, NULL);
    OK(al_convert(&gpu, 1, 2, 3, dr, 0, dn, AL_FMT_NHWC, 0));
    bad |= dcheck_bytes("NCHW -> NHWC of a ramp", dn, want, sizeof want);
    fprintf(stderr, "  %d conversions checked against the CPU twin\n", checked);
    return bad;
}

/* ---------------------------------------------------------------- model */

/* ||a - b|| / ||b|| over n floats, and the count of non-finite values in a. */
static double rel_err(const float *a, const float *b, size_t n, size_t *nonfinite) {
    double d = 0, r = 0;
    *nonfinite = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(a[i])) (*nonfinite)++;
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        r += (double)b[i] * b[i];
    }
    return r > 0 ? sqrt(d / r) : sqrt(d);
}

static int close_rel(const char *what, const float *got, const float *ref, size_t n, double tol) {
    size_t nf = 0;
    const double e = rel_err(got, ref, n, &nf);
    double rn = 0;
    for (size_t i = 0; i < n; i++) rn += (double)ref[i] * ref[i];
    fprintf(stderr, "  %-52s rel err %.3g (tol %.3g), |ref| %.3g\n", what, e, tol, sqrt(rn));
    if (!(rn > 0)) {
        fprintf(stderr, "FAIL %s: the reference is all zero (nothing compared)\n", what);
        return 1;
    }
    if (nf || !(e <= tol)) {
        fprintf(stderr, "FAIL %s: relative error %.3g > %.3g (%zu non-finite)\n", what, e, tol, nf);
        return 1;
    }
    return 0;
}

/* a copy of device memory the model owns (test buffers go through dget, which checks guards) */
static float *to_host(const float *d, size_t n) {
    float *h = hf(n);
    AL_ASSERT(al_copy_to_host(&gpu, h, d, n * sizeof(float)) == AL_OK, "copy: %s", al_errmsg());
    return h;
}

/* One arch at one precision: NCHW twin [0] vs NHWC twin [1]. */
static int model_pair(const char *arch, int in_c, int size, int n, al_precision prec) {
    const int k = 10;
    const size_t d = (size_t)in_c * size * size, nd = (size_t)n * d;
    const double tol = prec == AL_BF16 ? 3e-2 : 1e-4; /* a GPU picks other cuDNN algorithms per layout */
    char lab[160];
    al_model *m[2];
    float *x, *dlog, *dx[2];
    float *hx = hrand(nd, 7, 0, 1), *hd = hrand((size_t)n * k, 8, -1, 1);
    x = dnewf(nd, hx);
    dlog = dnewf((size_t)n * k, hd);
    gpu.precision = prec;
    for (int j = 0; j < 2; j++) {
        gpu.layout = j ? AL_NHWC : AL_NCHW;
        OK(al_model_create(arch, k, in_c, size, &m[j]));
        OK(al_model_setup(&gpu, m[j], n, 1));
        OK(al_model_init_params(&gpu, m[j], 5));
        dx[j] = dnewf(nd, NULL);
    }
    gpu.layout = AL_NCHW;
    gpu.precision = AL_FP32;
    /* zero-initialised weights (the TRADES SmallCNN's last layer) would make the logits and
     * the input gradient 0 in both twins: give them values, the same in both */
    {
        const size_t np = m[0]->n_param_floats;
        float *hp = to_host(m[0]->data, np);
        for (int i = 0; i < m[0]->n_params; i++) {
            const al_param *p = &m[0]->params[i];
            int zero = p->kind == AL_P_WEIGHT;
            for (size_t e = 0; zero && e < p->n_elems; e++) zero = hp[p->offset + e] == 0.0f;
            if (zero) al_test_fill(hp + p->offset, p->n_elems, 50 + (uint64_t)i, -0.2f, 0.2f);
        }
        for (int j = 0; j < 2; j++) OK(al_copy_to_dev(&gpu, m[j]->data, hp, np * sizeof(float)));
    }
    int bad = 0, n_nhwc = 0;
    for (int b = 0; b < m[1]->n_bufs; b++) {
        n_nhwc += m[1]->bufs[b].nhwc;
        AL_EXPECT(!m[0]->bufs[b].nhwc, "%s: the NCHW twin stores buffer %d channels last", arch, b);
    }
    AL_EXPECT(n_nhwc > 0 && !m[1]->bufs[0].nhwc && !m[1]->bufs[m[1]->out_buf].nhwc &&
                  !m[1]->bufs[m[1]->feat_buf].nhwc,
              "%s: NHWC plan: %d channels-last buffers; input/logits/features must stay NCHW", arch,
              n_nhwc);
    const char *pn = prec == AL_BF16 ? "bf16" : "fp32";
    fprintf(stderr, "  %s %s: %d of %d buffers channels last\n", arch, pn, n_nhwc, m[1]->n_bufs);
    float *h[2][4];
    const size_t np = m[0]->n_param_floats;
    for (int j = 0; j < 2; j++) {
        al_fwd_opts o = {0};
        o.train = 1;
        o.update_bn = 1;
        OK(al_model_zero_grad(&gpu, m[j]));
        OK(al_model_forward(&gpu, m[j], x, n, &o));
        h[j][0] = to_host(al_model_logits(m[j], 0), (size_t)n * k);
        OK(al_model_backward(&gpu, m[j], 0, dlog, NULL, AL_BWD_WEIGHTS | AL_BWD_INPUT, dx[j]));
        h[j][1] = hf(nd);
        bad |= dget("input gradient", dx[j], h[j][1], nd * sizeof(float));
        h[j][2] = to_host(m[j]->grads, np);
        OK(al_model_forward_eval(&gpu, m[j], x, n, 0));
        h[j][3] = to_host(al_model_logits(m[j], 0), (size_t)n * k);
    }
    static const char *what[4] = {"train logits", "input gradient", "parameter gradients",
                                  "eval logits (updated running stats)"};
    const size_t cnt[4] = {(size_t)n * k, nd, np, (size_t)n * k};
    for (int q = 0; q < 4; q++) {
        snprintf(lab, sizeof lab, "%s %s %s", arch, pn, what[q]);
        bad |= close_rel(lab, h[1][q], h[0][q], cnt[q], tol);
    }
    /* each parameter tensor on its own (a small one drowned in the total would hide) */
    float *p0 = to_host(m[0]->data, np), *p1 = to_host(m[1]->data, np);
    for (int i = 0; i < m[0]->n_params; i++) {
        const al_param *p = &m[0]->params[i];
        size_t nf = 0;
        const float *g0 = h[0][2] + p->offset, *g1 = h[1][2] + p->offset;
        const double eg = p->trainable ? rel_err(g1, g0, p->n_elems, &nf) : 0;
        const double ed = rel_err(p1 + p->offset, p0 + p->offset, p->n_elems, &nf);
        /* bf16 gradients of a tensor: a few ulps norm-wise; fp32: summation order */
        if (nf || !(eg <= 4 * tol) || !(ed <= tol)) {
            fprintf(stderr, "FAIL %s %s %s: gradient rel err %.3g, value rel err %.3g (%zu non-finite)\n",
                    arch, pn, p->name, eg, ed, nf);
            bad = 1;
        }
    }
    for (int j = 0; j < 2; j++) al_model_destroy(&gpu, m[j]);
    devbuf_release();
    return bad;
}

static int case_model(void) {
    int bad = 0;
    for (int prec = 0; prec < 2; prec++) {
        const al_precision p = prec ? AL_BF16 : AL_FP32;
        bad |= model_pair("smallcnn", 1, 28, 4, p);
        bad |= model_pair("wrn-10-1", 3, 28, 3, p);
        bad |= model_pair("nf_resnet18_w8", 3, 28, 2, p);
    }
    return bad;
}

/* ---------------------------------------------------------------- attack */

static int case_attack(void) {
    const int n = 4, k = 10;
    const size_t d = 3 * 28 * 28, nd = (size_t)n * d;
    al_model *m[2];
    al_attack_ws ws[2];
    float *xa[2];
    float *hx = hrand(nd, 9, 0, 1);
    const int32_t hy[4] = {1, 4, 7, 9};
    float *x = dnewf(nd, hx);
    int32_t *y = dnew(sizeof hy, hy);
    gpu.layout = AL_NHWC;
    for (int j = 0; j < 2; j++) {
        OK(al_model_create("wrn-10-1", k, 3, 28, &m[j]));
        OK(al_model_setup(&gpu, m[j], n, 1));
        OK(al_model_init_params(&gpu, m[j], 3));
        OK(al_attack_ws_init(&gpu, &ws[j], m[j], n));
        xa[j] = dnewf(nd, NULL);
    }
    gpu.layout = AL_NCHW;
    al_attack_spec s = al_attack_spec_make(AL_ATTACK_PGD, AL_LINF, 0.1f, 0.025f, 5);
    s.keep_clean_if_failed = 0;
    s.fwd.train = 1;
    s.fwd.update_bn = 1;
    for (int j = 0; j < 2; j++) {
        gpu.cuda_graphs = j;
        OK(al_attack_run(&gpu, m[j], &s, &ws[j], x, y, n, 5, 9, xa[j], NULL, NULL));
    }
    gpu.cuda_graphs = 1;
    const uint64_t launches = al_attack_ws_graph_info(&ws[1]).launches;
    int bad = 0;
    AL_EXPECT(launches == 4, "NHWC PGD-5: %llu graph launches (want 4)", (unsigned long long)launches);
    float *a = hf(nd), *b = hf(nd);
    bad |= dget("x_adv eager", xa[0], a, nd * sizeof(float));
    bad |= dget("x_adv graph", xa[1], b, nd * sizeof(float));
    bad |= al_check_bytes("NHWC PGD-5 x_adv, eager vs graph", b, a, nd * sizeof(float));
    AL_EXPECT(memcmp(a, hx, nd * sizeof(float)) != 0, "the attack moved nothing");
    const size_t np = m[0]->n_param_floats;
    float *p0 = to_host(m[0]->data, np), *p1 = to_host(m[1]->data, np);
    bad |= al_check_bytes("NHWC PGD-5 BN running stats, eager vs graph", p1, p0, np * sizeof(float));
    for (int j = 0; j < 2; j++) {
        al_attack_ws_fini(&gpu, &ws[j]);
        al_model_destroy(&gpu, m[j]);
    }
    devbuf_release();
    return bad;
}

int main(int argc, char **argv) {
    if (al_test_no_gpu()) return AL_SKIP_CODE;
    if (al_ctx_init(&gpu, AL_DEV_CUDA, 0, 0, 42) != AL_OK ||
        al_ctx_init(&cpu, AL_DEV_CPU, 0, 1, 42) != AL_OK) {
        fprintf(stderr, "context init failed: %s\n", al_errmsg());
        return 1;
    }
    devbuf_use(&gpu);
    gpu.deterministic = 1;
    static const al_case cases[] = {
        {"convert", case_convert},
        {"model", case_model},
        {"attack", case_attack},
    };
    int rc = al_run_cases(cases, (int)AL_ARRAY_LEN(cases), argc, argv);
    al_ctx_fini(&gpu);
    al_ctx_fini(&cpu);
    return rc;
}
