/* check.c: closeness checker, finite differences, test registry (see check.h). */
#include "harness/check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/ctx.h"
#include "core/rng.h"

double al_tol_f32(double k) { return 8.0 * AL_F32_EPS * sqrt(k < 1 ? 1 : k); }

static int check_impl(const char *what, size_t n, double atol, double rtol,
                      double (*g)(const void *, size_t), const void *got,
                      double (*r)(const void *, size_t), const void *ref) {
    size_t n_bad = 0, worst = 0;
    double max_abs = 0, max_rel = 0, worst_excess = -1;
    for (size_t i = 0; i < n; i++) {
        double gv = g(got, i), rv = r(ref, i);
        int bad;
        if (isnan(rv) || isinf(rv) || isnan(gv) || isinf(gv)) {
            bad = !((isnan(rv) && isnan(gv)) || (isinf(rv) && isinf(gv) && (rv > 0) == (gv > 0)));
        } else {
            double d = fabs(gv - rv);
            bad = !(d <= atol + rtol * fabs(rv));
            if (d > max_abs) max_abs = d;
            double rel = d / (fabs(rv) > 1e-30 ? fabs(rv) : 1e-30);
            if (rel > max_rel && fabs(rv) > atol) max_rel = rel;
            double excess = d - (atol + rtol * fabs(rv));
            if (excess > worst_excess) {
                worst_excess = excess;
                worst = i;
            }
        }
        if (bad) {
            if (n_bad < 5)
                fprintf(stderr, "  %s: mismatch at %zu: got %.9g ref %.9g\n", what, i, gv, rv);
            n_bad++;
        }
    }
    fprintf(stderr, "  %-40s n=%-8zu max_abs=%.3g max_rel=%.3g worst@%zu (atol %.3g rtol %.3g) %s\n",
            what, n, max_abs, max_rel, worst, atol, rtol, n_bad ? "FAIL" : "ok");
    if (n_bad) fprintf(stderr, "  %s: %zu of %zu values out of tolerance\n", what, n_bad, n);
    return n_bad ? 1 : 0;
}
static double getf(const void *p, size_t i) { return ((const float *)p)[i]; }
static double getd(const void *p, size_t i) { return ((const double *)p)[i]; }

int al_check_close(const char *what, const float *got, const float *ref, size_t n, double atol,
                   double rtol) {
    return check_impl(what, n, atol, rtol, getf, got, getf, ref);
}
int al_check_close_d(const char *what, const double *got, const double *ref, size_t n, double atol,
                     double rtol) {
    return check_impl(what, n, atol, rtol, getd, got, getd, ref);
}
int al_check_close_fd(const char *what, const float *got, const double *ref, size_t n, double atol,
                      double rtol) {
    return check_impl(what, n, atol, rtol, getf, got, getd, ref);
}

void al_fd_grad(al_fd_fn f, void *user, double *x, size_t n, double h, double *grad) {
    for (size_t i = 0; i < n; i++) {
        double x0 = x[i];
        x[i] = x0 + 2 * h;
        double f2p = f(x, user);
        x[i] = x0 + h;
        double f1p = f(x, user);
        x[i] = x0 - h;
        double f1m = f(x, user);
        x[i] = x0 - 2 * h;
        double f2m = f(x, user);
        x[i] = x0;
        grad[i] = (-f2p + 8 * f1p - 8 * f1m + f2m) / (12 * h);
    }
}

void al_test_fill(float *x, size_t n, uint64_t id, float lo, float hi) {
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * al_rng_uniform(12345, al_stream(AL_STREAM_TEST, id), i);
}
void al_test_fill_d(double *x, size_t n, uint64_t id, double lo, double hi) {
    for (size_t i = 0; i < n; i++)
        x[i] = lo + (hi - lo) * al_rng_uniform(12345, al_stream(AL_STREAM_TEST, id), i);
}

int al_run_cases(const al_case *cases, int n_cases, int argc, char **argv) {
    int passed = 0, failed = 0, skipped = 0;
    for (int i = 0; i < n_cases; i++) {
        if (argc > 1 && strcmp(argv[1], cases[i].name) != 0) continue;
        fprintf(stderr, "[ RUN  ] %s\n", cases[i].name);
        double t0 = al_now();
        int rc = cases[i].fn();
        double dt = al_now() - t0;
        if (rc == 0) {
            passed++;
            fprintf(stderr, "[  OK  ] %s (%.2fs)\n", cases[i].name, dt);
        } else if (rc == AL_SKIP_CODE) {
            skipped++;
            fprintf(stderr, "[ SKIP ] %s\n", cases[i].name);
        } else {
            failed++;
            fprintf(stderr, "[ FAIL ] %s (%.2fs)\n", cases[i].name, dt);
        }
    }
    printf("%d passed, %d failed, %d skipped\n", passed, failed, skipped);
    if (failed) return 1;
    if (passed == 0 && skipped > 0) return AL_SKIP_CODE;
    if (passed == 0) {
        fprintf(stderr, "no test case matched\n");
        return 1;
    }
    return 0;
}

int al_test_no_gpu(void) {
    if (!al_cuda_available()) {
        printf("skipped: no GPU\n");
        return 1;
    }
    return 0;
}

const char *al_test_tmpdir(void) {
    const char *d = getenv("AL_TEST_TMP");
    if (!d) d = "testdata";
    mkdir(d, 0755);
    return d;
}
const char *al_test_python(void) {
    const char *p = getenv("AL_PYTHON");
    return p ? p : "/usr/bin/python3";
}
const char *al_test_source_dir(void) { return AL_SOURCE_DIR; }

int al_check_bytes(const char *what, const void *got, const void *ref, size_t n_bytes) {
    const unsigned char *g = got, *r = ref;
    if (memcmp(g, r, n_bytes) != 0) {
        size_t i = 0;
        while (g[i] == r[i]) i++;
        fprintf(stderr, "  %-40s FAIL: first differing byte %zu of %zu\n", what, i, n_bytes);
        return 1;
    }
    fprintf(stderr, "  %-40s %zu bytes identical\n", what, n_bytes);
    return 0;
}
