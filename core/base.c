/* base.c: error line buffer (thread-local), assertions, checked allocation, clock. */
#include "core/base.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static _Thread_local char g_err[1024];
static uint64_t g_alloc_count;

al_status al_fail(al_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_err, sizeof g_err, fmt, ap);
    va_end(ap);
    /* One line: fold any newline a caller slipped in. */
    for (char *p = g_err; *p; p++)
        if (*p == '\n') *p = ' ';
    return st;
}

const char *al_errmsg(void) { return g_err; }
void al_clear_error(void) { g_err[0] = 0; }

const char *al_status_str(al_status st) {
    switch (st) {
    case AL_OK: return "ok";
    case AL_ERR_IO: return "I/O error";
    case AL_ERR_FORMAT: return "format error";
    case AL_ERR_VALUE: return "bad value";
    case AL_ERR_CONFIG: return "config error";
    case AL_ERR_OOM: return "out of memory";
    case AL_ERR_NO_GPU: return "no GPU";
    case AL_ERR_CUDA: return "CUDA error";
    case AL_ERR_NAN: return "non-finite value";
    case AL_ERR_INTERRUPTED: return "interrupted";
    case AL_ERR_UNSUPPORTED: return "unsupported";
    }
    return "unknown status";
}

void al_assert_fail(const char *file, int line, const char *func, const char *cond,
                    const char *fmt, ...) {
    fprintf(stderr, "advlab: assertion failed: %s:%d %s: (%s) ", file, line, func, cond);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}

void *al_malloc(size_t n_bytes, const char *what) {
    void *p = malloc(n_bytes ? n_bytes : 1);
    __atomic_add_fetch(&g_alloc_count, 1, __ATOMIC_RELAXED);
    if (!p) al_fail(AL_ERR_OOM, "out of host memory allocating %zu bytes for %s", n_bytes, what);
    return p;
}

void *al_calloc(size_t n, size_t size, const char *what) {
    void *p = calloc(n ? n : 1, size ? size : 1);
    __atomic_add_fetch(&g_alloc_count, 1, __ATOMIC_RELAXED);
    if (!p) al_fail(AL_ERR_OOM, "out of host memory allocating %zu x %zu bytes for %s", n, size, what);
    return p;
}

void al_free(void *p) { free(p); }

uint64_t al_alloc_count(void) { return __atomic_load_n(&g_alloc_count, __ATOMIC_RELAXED); }

double al_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
