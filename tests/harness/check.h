/* check.h: the one closeness checker (style rule 22), finite-difference driver, test-case
 * registry and skip convention shared by every test executable.
 *
 * al_check_close fails on !(|g-r| <= atol + rtol*|r|) so NaN fails, and NaN/Inf positions
 * must match. It prints max abs/rel error, the worst index and the first 5 mismatches.
 * Tolerances come from dtype eps and reduction length (al_tol_f32(K) ~ c*eps*sqrt(K)). */
#ifndef AL_CHECK_H
#define AL_CHECK_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define AL_SKIP_CODE 77
#define AL_F32_EPS 1.1920929e-07

/* float32 tolerance for a value that is a sum of K products: c * eps * sqrt(K) (c = 8). */
double al_tol_f32(double k);

int al_check_close(const char *what, const float *got, const float *ref, size_t n, double atol,
                   double rtol);
int al_check_close_d(const char *what, const double *got, const double *ref, size_t n, double atol,
                     double rtol);
/* got and ref byte for byte (n_bytes): prints the first differing byte, or "identical". */
int al_check_bytes(const char *what, const void *got, const void *ref, size_t n_bytes);
/* got (float) vs ref (double) */
int al_check_close_fd(const char *what, const float *got, const double *ref, size_t n, double atol,
                      double rtol);

/* Central finite differences of a scalar function f(x) (double), 4-point (O(h^4)) stencil:
 * g_i = (-f(x+2h) + 8f(x+h) - 8f(x-h) + f(x-2h)) / 12h. Writes grad (n). */
typedef double (*al_fd_fn)(const double *x, void *user);
void al_fd_grad(al_fd_fn f, void *user, double *x, size_t n, double h, double *grad);

/* Deterministic test inputs: uniform in [lo, hi) from Philox(stream AL_STREAM_TEST, id). */
void al_test_fill(float *x, size_t n, uint64_t id, float lo, float hi);
void al_test_fill_d(double *x, size_t n, uint64_t id, double lo, double hi);

/* Test-case registry: a test executable lists cases and runs all (or the one named argv[1]). */
typedef int (*al_case_fn)(void);
typedef struct al_case {
    const char *name;
    al_case_fn fn;
} al_case;
/* Runs the cases; a case returns 0 pass, nonzero fail, AL_SKIP_CODE skip. Exit code: 0 all
 * pass, 1 any failure, 77 if every case skipped. Prints "N passed, N failed, N skipped". */
int al_run_cases(const al_case *cases, int n_cases, int argc, char **argv);

/* CUDA tests: returns 1 (and prints "skipped: no GPU") when no GPU is usable. */
int al_test_no_gpu(void);

/* Inside a test case (a function returning int): run `call`; on failure print the place, the
 * call, its status and the recorded error, and return 1 from the case. */
#define AL_TEST_OK(call)                                                                   \
    do {                                                                                   \
        al_status st_ = (call);                                                            \
        if (st_ != AL_OK) {                                                                \
            fprintf(stderr, "  FAIL %s:%d: %s = %s: %s\n", __FILE__, __LINE__, #call,      \
                    al_status_str(st_), al_errmsg());                                      \
            return 1;                                                                      \
        }                                                                                  \
    } while (0)

#define AL_EXPECT(cond, ...)                                                   \
    do {                                                                       \
        if (!(cond)) {                                                         \
            fprintf(stderr, "  FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);  \
            fprintf(stderr, __VA_ARGS__);                                      \
            fputc('\n', stderr);                                               \
            return 1;                                                          \
        }                                                                      \
    } while (0)

/* Path helpers: build dir test data, the python3 with Debian torch, Fashion-MNIST dir. */
const char *al_test_tmpdir(void);   /* $AL_TEST_TMP or ./testdata */
const char *al_test_python(void);   /* $AL_PYTHON or /usr/bin/python3 */
const char *al_test_source_dir(void); /* repository root (compile-time) */

#endif
