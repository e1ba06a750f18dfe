/* base.h: status codes, error recording, assertions, and portability macros.
 * Every failure a user or the environment can cause returns an al_status and records ONE line
 * (WHERE + WHAT + expected/actual) retrievable with al_errmsg(). The library never exits;
 * broken invariants (programming errors) abort through AL_ASSERT, which is always on. */
#ifndef AL_BASE_H
#define AL_BASE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __CUDACC__
#define AL_HOSTDEV __host__ __device__ __forceinline__
#else
#define AL_HOSTDEV static inline
#endif

#ifdef __cplusplus
extern "C" {
#endif

typedef enum al_status {
    AL_OK = 0,
    AL_ERR_IO,       /* file missing, unreadable, write/fsync/rename failed */
    AL_ERR_FORMAT,   /* file exists but violates formats.md (class, shape, attribute) */
    AL_ERR_VALUE,    /* argument/config value out of range or malformed */
    AL_ERR_CONFIG,   /* unknown section/key, bad config file */
    AL_ERR_OOM,      /* host or device allocation failed */
    AL_ERR_NO_GPU,   /* CUDA requested but not built or no device */
    AL_ERR_CUDA,     /* CUDA / cuBLAS / cuDNN / NCCL call failed */
    AL_ERR_NAN,      /* non-finite loss or gradient */
    AL_ERR_INTERRUPTED, /* stopped by a signal (checkpoint written) */
    AL_ERR_UNSUPPORTED,
} al_status;

/* Record an error line (printf-style); returns `st` so callers can `return AL_FAIL(...)`. */
al_status al_fail(al_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The last recorded error line of this thread ("" if none). */
const char *al_errmsg(void);
void al_clear_error(void);
const char *al_status_str(al_status st);

/* Abort with file:line, function, condition and message (always on; never <assert.h>). */
void al_assert_fail(const char *file, int line, const char *func, const char *cond,
                    const char *fmt, ...) __attribute__((noreturn, format(printf, 5, 6)));

#define AL_ASSERT(cond, ...)                                                         \
    do {                                                                             \
        if (!(cond)) al_assert_fail(__FILE__, __LINE__, __func__, #cond, __VA_ARGS__); \
    } while (0)

#define AL_FAIL(st, ...) al_fail((st), __VA_ARGS__)

/* Propagate a failure: AL_TRY(expr) returns the status; AL_CHECK jumps to `done` with `st` set. */
#define AL_TRY(expr)                     \
    do {                                 \
        al_status al_try_st_ = (expr);   \
        if (al_try_st_ != AL_OK) return al_try_st_; \
    } while (0)
#define AL_CHECK(expr)                   \
    do {                                 \
        st = (expr);                     \
        if (st != AL_OK) goto done;      \
    } while (0)

#define AL_MIN(a, b) ((a) < (b) ? (a) : (b))
#define AL_MAX(a, b) ((a) > (b) ? (a) : (b))
#define AL_CEIL_DIV(a, b) (((a) + (b) - 1) / (b))
#define AL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Checked host allocation helpers (return NULL + record AL_ERR_OOM on failure). */
void *al_malloc(size_t n_bytes, const char *what);
void *al_calloc(size_t n, size_t size, const char *what);
void al_free(void *p);
/* Count of al_malloc/al_calloc calls since start: hot-path tests assert it stays constant. */
uint64_t al_alloc_count(void);

/* Wall clock in seconds (monotonic). */
double al_now(void);

#define AL_VERSION "0.1.0"

#ifdef __cplusplus
}
#endif
#endif
