/* test_drsl.c: the DRSL penalty of losses/drsl.c (methods.md §4), variant drslx (centre = mean
 * of the C-1 non-label logits) and drsl (their sum / C).
 * Oracles: (b) 4-point central finite differences of a double implementation written here
 * the way the authors' code reads (mask the label, centre, square, SUM over batch and
 * classes); (torch) the authors' DRSLX / DRSL modules (karlieswift/Mattack
 * lossfunction_test.py) in PyTorch float64 via tests/torch/drsl_ref.py, on
 * a * CE (al_xent, weight a) + the penalty (weight b); (c) invariants: the '+=' write mode,
 * zero gradient at the label, drslx gradients summing to zero per row, NULL dlogits, errors.
 * Tolerances: c * eps_f32 * sqrt(K) scaled by the penalty's magnitude (the penalty is a sum of
 * squares: values of order b * N * K * scale^2, gradient entries of order b * scale). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/ctx.h"
#include "harness/check.h"
#include "losses/loss.h"

typedef struct dref {
    int n, k, variant;
    const int32_t *y;
    double b;
} dref;

static double pen_ref(const double *z, void *user) {
    const dref *r = user;
    double tot = 0;
    for (int i = 0; i < r->n; i++) {
        const double *zr = z + (size_t)i * r->k;
        double s = 0;
        for (int j = 0; j < r->k; j++)
            if (j != r->y[i]) s += zr[j];
        const double m = s / (r->variant == 0 ? r->k - 1 : r->k);
        for (int j = 0; j < r->k; j++)
            if (j != r->y[i]) tot += (zr[j] - m) * (zr[j] - m);
    }
    return r->b * tot;
}

static int fd_one(al_ctx *ctx, int n, int k, uint64_t id, float scale, int variant, float b) {
    const size_t nk = (size_t)n * k;
    float *z = malloc(nk * 4), *g = malloc(nk * 4);
    double *zd = malloc(nk * sizeof(double)), *fd = malloc(nk * sizeof(double));
    int32_t *y = malloc((size_t)n * 4);
    al_test_fill(z, nk, id, -scale, scale);
    for (int i = 0; i < n; i++) y[i] = (int32_t)((id + 3 * (uint64_t)i) % (uint64_t)k);
    for (size_t e = 0; e < nk; e++) zd[e] = z[e], g[e] = 0.5f; /* '+=' onto 0.5 */
    dref r = {n, k, variant, y, b};
    double pen;
    AL_EXPECT(al_drsl_penalty(ctx, n, k, z, y, b, variant, &pen, g) == AL_OK, "%s", al_errmsg());
    const double ref = pen_ref(zd, &r);
    al_fd_grad(pen_ref, &r, zd, nk, 1e-3 * (scale > 1 ? scale : 1), fd);
    for (size_t e = 0; e < nk; e++) g[e] -= 0.5f;
    char what[128];
    int bad = 0;
    const double vt = al_tol_f32((double)nk);
    snprintf(what, sizeof what, "drsl v%d pen n=%d k=%d s=%g", variant, n, k, scale);
    bad |= al_check_close_d(what, &pen, &ref, 1, vt * (1 + fabs(ref)), vt);
    snprintf(what, sizeof what, "drsl v%d dz (+=) vs FD n=%d k=%d s=%g", variant, n, k, scale);
    /* subtracting the 0.5 prefill costs one float ulp of 0.5 */
    bad |= al_check_close_fd(what, g, fd, nk, al_tol_f32(k) * b * scale * 4 + 1e-7,
                             al_tol_f32(k) * 4);
    for (int i = 0; i < n; i++) {
        AL_EXPECT(g[(size_t)i * k + y[i]] == 0.0f, "label entry of row %d has gradient %g", i,
                  (double)g[(size_t)i * k + y[i]]);
        if (variant == 0) { /* drslx: the deviations from the mean sum to zero */
            double s = 0, a = 0;
            for (int j = 0; j < k; j++) s += g[(size_t)i * k + j], a += fabs(g[(size_t)i * k + j]);
            AL_EXPECT(fabs(s) <= 1e-5 * (a + 1e-30) + 1e-7, "row %d gradient sums to %g", i, s);
        }
    }
    /* NULL dlogits: the value alone */
    double pen2;
    AL_EXPECT(al_drsl_penalty(ctx, n, k, z, y, b, variant, &pen2, NULL) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(pen2 == pen, "value without gradient differs");
    free(z), free(g), free(zd), free(fd), free(y);
    return bad;
}

static int case_fd(void) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 1) == AL_OK, "%s", al_errmsg());
    int bad = 0;
    for (int v = 0; v < 2; v++) {
        bad |= fd_one(&ctx, 1, 10, 10 + v, 4.0f, v, 1e-3f); /* batch 1, the authors' b */
        bad |= fd_one(&ctx, 8, 10, 20 + v, 4.0f, v, 0.5f);
        bad |= fd_one(&ctx, 5, 7, 30 + v, 2.0f, v, 1.0f);  /* K not a power of two */
        bad |= fd_one(&ctx, 3, 2, 40 + v, 3.0f, v, 1.0f);  /* binary: one non-label logit */
        bad |= fd_one(&ctx, 4, 100, 50 + v, 80.0f, v, 1e-3f); /* wide, extreme logits */
    }
    al_ctx_fini(&ctx);
    return bad;
}

static int case_invariants(void) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 1) == AL_OK, "%s", al_errmsg());
    float z[6] = {1, 2, 3, 4, 5, 6}, g[6] = {0};
    int32_t y[2] = {0, 2};
    double pen;
    /* K = 2: one non-label logit equals its own mean in drslx (0), not in drsl (z - z/2) */
    AL_EXPECT(al_drsl_penalty(&ctx, 3, 2, z, (int32_t[]){0, 1, 0}, 1.0f, 0, &pen, g) == AL_OK, "k2");
    AL_EXPECT(pen == 0.0, "drslx K=2 penalty %g", pen);
    AL_EXPECT(al_drsl_penalty(&ctx, 3, 2, z, (int32_t[]){0, 1, 0}, 1.0f, 1, &pen, NULL) == AL_OK, "k2");
    AL_EXPECT(fabs(pen - (1.0 + 2.25 + 9.0)) < 1e-12, "drsl K=2 penalty %g", pen);
    /* a constant row has no spread: zero penalty, zero gradient (drslx) */
    float c[3] = {7, 7, 7};
    memset(g, 0, sizeof g);
    AL_EXPECT(al_drsl_penalty(&ctx, 1, 3, c, y, 2.0f, 0, &pen, g) == AL_OK, "const");
    AL_EXPECT(pen == 0.0 && g[0] == 0 && g[1] == 0 && g[2] == 0, "constant row");
    /* weight 0: exactly nothing */
    memset(g, 0, sizeof g);
    AL_EXPECT(al_drsl_penalty(&ctx, 2, 3, z, y, 0.0f, 0, &pen, g) == AL_OK, "w0");
    AL_EXPECT(pen == 0.0 && g[1] == 0.0f, "weight 0");
    /* errors: a bad label names its index; K < 2 */
    AL_EXPECT(al_drsl_penalty(&ctx, 2, 3, z, (int32_t[]){1, 3}, 1, 0, &pen, g) == AL_ERR_VALUE, "label");
    AL_EXPECT(strstr(al_errmsg(), "index 1") != NULL, "message: %s", al_errmsg());
    al_clear_error();
    AL_EXPECT(al_drsl_penalty(&ctx, 2, 1, z, (int32_t[]){0, 0}, 1, 0, &pen, g) == AL_ERR_VALUE, "k1");
    al_clear_error();
    al_ctx_fini(&ctx);
    return 0;
}

static int case_torch(void) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 1) == AL_OK, "%s", al_errmsg());
    int bad = 0;
    static const struct { int n, k; float scale, a, b; } cs[] = {
        {1, 10, 3.0f, 1.0f, 1e-3f}, {16, 10, 5.0f, 1.0f, 1e-3f}, {7, 13, 2.0f, 0.5f, 0.2f},
        {4, 100, 20.0f, 1.0f, 1e-5f}};
    for (size_t t = 0; t < sizeof cs / sizeof cs[0]; t++) {
        const int n = cs[t].n, k = cs[t].k;
        const size_t nk = (size_t)n * k;
        float *z = malloc(nk * 4), *g = malloc(nk * 4);
        int32_t *y = malloc((size_t)n * 4);
        al_test_fill(z, nk, 700 + t, -cs[t].scale, cs[t].scale);
        for (int i = 0; i < n; i++) y[i] = (int32_t)((5 * i + t) % k);
        char pin[512], pout[512], cmd[2048];
        snprintf(pin, sizeof pin, "%s/drsl_in_%zu.bin", al_test_tmpdir(), t);
        snprintf(pout, sizeof pout, "%s/drsl_out_%zu.bin", al_test_tmpdir(), t);
        FILE *f = fopen(pin, "wb");
        AL_EXPECT(f, "cannot write %s", pin);
        fwrite(z, 4, nk, f);
        fwrite(y, 4, (size_t)n, f);
        fclose(f);
        snprintf(cmd, sizeof cmd, "%s %s/tests/torch/drsl_ref.py %s %s %d %d %.9g %.9g",
                 al_test_python(), al_test_source_dir(), pin, pout, n, k, (double)cs[t].a,
                 (double)cs[t].b);
        if (system(cmd) != 0) {
            fprintf(stderr, "  python reference failed: %s\n", cmd);
            free(z), free(g), free(y);
            al_ctx_fini(&ctx);
            return AL_SKIP_CODE; /* no torch: an environment problem, skip loudly */
        }
        double *r = malloc((2 + 2 * nk + 1) * sizeof(double));
        f = fopen(pout, "rb");
        AL_EXPECT(f, "cannot read %s", pout);
        size_t got = fread(r, sizeof(double), 2 + 2 * nk + 1, f);
        fclose(f);
        AL_EXPECT(got == 2 + 2 * nk, "reference has %zu values", got);
        for (int v = 0; v < 2; v++) {
            const double *rv = r + v * (1 + nk);
            double ce, pen;
            AL_EXPECT(al_xent(&ctx, n, k, z, y, cs[t].a, &ce, NULL, g) == AL_OK, "%s", al_errmsg());
            AL_EXPECT(al_drsl_penalty(&ctx, n, k, z, y, cs[t].b, v, &pen, g) == AL_OK, "%s", al_errmsg());
            const double loss = ce + pen;
            char what[128];
            const double vt = al_tol_f32((double)nk);
            snprintf(what, sizeof what, "torch %s loss n=%d k=%d", v ? "DRSL" : "DRSLX", n, k);
            bad |= al_check_close_d(what, &loss, rv, 1, vt * (1 + fabs(rv[0])), vt);
            snprintf(what, sizeof what, "torch %s dlogits n=%d k=%d", v ? "DRSL" : "DRSLX", n, k);
            const double gs = cs[t].a / n + cs[t].b * cs[t].scale * 4;
            bad |= al_check_close_fd(what, g, rv + 1, nk, al_tol_f32(k) * gs, al_tol_f32(k));
        }
        free(r), free(z), free(g), free(y);
    }
    al_ctx_fini(&ctx);
    return bad;
}

int main(int argc, char **argv) {
    static const al_case cases[] = {{"fd", case_fd},
                                    {"invariants", case_invariants},
                                    {"torch", case_torch}};
    /* CPU vs CUDA (cuda/loss_drsl.cu): tests/test_cuda2.c case "drsl" */
    return al_run_cases(cases, (int)(sizeof cases / sizeof cases[0]), argc, argv);
}
