/* log.h: rank-aware logging, the TTY progress line, and the JSONL metrics writer.
 *
 * - Messages go to stderr as "[hh:mm:ss] text" ("[hh:mm:ss] warning: text"); with world > 1
 *   they carry "[rank r]". Only rank 0 prints unless al_log_set_all_ranks(1); al_log_any()
 *   prints from whichever rank calls it (a rank-local problem such as a NaN on rank 3).
 * - The progress line is drawn only on a TTY (isatty(stderr)), only on rank 0, rewritten in
 *   place with '\r' at most every 0.1 s:
 *     epoch 3/10 [  512/60000] 1234 img/s ETA 01:23 loss 1.234 acc 56.7%
 *   A log message while it is shown clears it first; the next update redraws it.
 * - JSONL: one JSON object per line, flushed per record, written by rank 0 only. The first
 *   record of every open is the header {"type":"header","version":..,"date":..,"git":..,
 *   "world":..,"config":{..resolved..}}; then al_jsonl_write records
 *   {"type":"<type>","time":<s since open>,<fields>}.
 * Process-wide state (rank, level, stream) is set once at start-up; it is not a working
 * function's context, so it is not in al_ctx. */
#ifndef AL_LOG_H
#define AL_LOG_H

#include <stdio.h>

#include "core/base.h"

#ifdef __cplusplus
extern "C" {
#endif

struct al_config;

typedef enum al_log_level { AL_LOG_DEBUG = 0, AL_LOG_INFO, AL_LOG_WARN, AL_LOG_ERROR } al_log_level;

/* Rank of this process and world size (default 0 / 1). */
void al_log_init(int rank, int world);
int al_log_rank(void);
/* Messages below `level` are dropped (default AL_LOG_INFO). */
void al_log_set_level(al_log_level level);
/* 1: every rank prints al_log_info/warn/... (default 0: rank 0 only). */
void al_log_set_all_ranks(int on);
/* Redirect output (tests). is_tty: 1/0, or -1 to ask isatty(fileno(f)). NULL = stderr. */
void al_log_set_stream(FILE *f, int is_tty);

void al_log(al_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void al_log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void al_log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void al_log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void al_log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Printed by whichever rank calls it, with the rank prefix when world > 1. */
void al_log_any(al_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- progress line ---- */
typedef struct al_progress {
    char label[64]; /* "epoch 3/10", "eval", "attack pgd-20" */
    int64_t total;  /* items (images) in the phase */
    int64_t done;
    double t0, t_drawn; /* al_now() at begin / at the last draw */
    double loss, acc;   /* last shown values (NaN = not shown); acc is a fraction */
} al_progress;

void al_progress_begin(al_progress *p, const char *label, int64_t total);
/* done items so far; loss / acc (fraction in [0,1]) may be NaN to omit them. Draws on a TTY
 * on rank 0 at most every 0.1 s (and always when done == total). */
void al_progress_update(al_progress *p, int64_t done, double loss, double acc);
/* Would an update to `done` draw now? (The trainer reads its device-side loss only then.) */
int al_progress_due(const al_progress *p, int64_t done);
/* Final draw and newline (TTY only). */
void al_progress_end(al_progress *p);
/* The line's text for elapsed time `elapsed_s` (no '\r'); returns buf. */
const char *al_progress_format(const al_progress *p, double elapsed_s, char *buf, size_t n);

/* ---- JSON text helpers ---- */
/* Write s as a quoted JSON string into buf (always terminated and always valid JSON: a
 * string too long for buf is cut at a UTF-8 character boundary). Returns buf. */
char *al_json_quote(char *buf, size_t n, const char *s);

/* ---- JSONL metrics ---- */
typedef struct al_jsonl al_jsonl;
/* Open (append = 0: truncate; 1: append, e.g. on resume) and write the header record with
 * the resolved config (cfg may be NULL). On ranks != 0 returns a writer that discards. */
al_status al_jsonl_open(al_jsonl **out, const char *path, const struct al_config *cfg, int append);
/* One record {"type":"<type>","time":t,<fields>}; `fmt` formats the fields (printf style,
 * without braces, e.g. "\"step\":%lld,\"loss\":%.6g"; may be NULL or ""). Non-finite
 * numbers printed by %g ("nan", "-inf") become null so every line stays valid JSON.
 * Strings must be passed through al_json_quote. Flushed; no allocation per record. */
al_status al_jsonl_write(al_jsonl *j, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Close (NULL-safe). */
al_status al_jsonl_close(al_jsonl *j);

#ifdef __cplusplus
}
#endif
#endif
