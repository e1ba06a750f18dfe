/* log.c: logging, progress line, JSONL metrics (see log.h). */
#include "core/log.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/config.h"

/* The commit is stamped at configure time when the build defines it; "unknown" otherwise. */
#ifndef AL_GIT_COMMIT
#define AL_GIT_COMMIT "unknown"
#endif

static struct {
    int rank, world;
    al_log_level level;
    int all_ranks;
    FILE *f;            /* NULL = stderr */
    int tty;            /* -1 = not yet known */
    al_progress *shown; /* progress line currently on screen, if any */
} g_log = {0, 1, AL_LOG_INFO, 0, NULL, -1, NULL};

void al_log_init(int rank, int world) {
    g_log.rank = rank;
    g_log.world = world > 0 ? world : 1;
}
int al_log_rank(void) { return g_log.rank; }
void al_log_set_level(al_log_level level) { g_log.level = level; }
void al_log_set_all_ranks(int on) { g_log.all_ranks = on; }
void al_log_set_stream(FILE *f, int is_tty) {
    g_log.f = f;
    g_log.tty = is_tty;
    g_log.shown = NULL;
}

static FILE *out(void) { return g_log.f ? g_log.f : stderr; }
static int is_tty(void) {
    if (g_log.tty < 0) g_log.tty = isatty(fileno(out())) ? 1 : 0;
    return g_log.tty;
}

static void clear_progress(void) {
    if (g_log.shown && is_tty()) fputs("\r\033[K", out());
    g_log.shown = NULL;
}

static void vlog(al_log_level level, int any_rank, const char *fmt, va_list ap) {
    if (level < g_log.level) return;
    if (!any_rank && !g_log.all_ranks && g_log.rank != 0) return;
    clear_progress();
    char stamp[16];
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    strftime(stamp, sizeof stamp, "%H:%M:%S", &tm);
    FILE *f = out();
    fprintf(f, "[%s] ", stamp);
    if (g_log.world > 1) fprintf(f, "[rank %d] ", g_log.rank);
    if (level == AL_LOG_WARN) fputs("warning: ", f);
    if (level == AL_LOG_ERROR) fputs("error: ", f);
    if (level == AL_LOG_DEBUG) fputs("debug: ", f);
    vfprintf(f, fmt, ap);
    fputc('\n', f);
    fflush(f);
}

void al_log(al_log_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(level, 0, fmt, ap);
    va_end(ap);
}
#define AL_LOG_FN_(name, level)                                                                    \
    void name(const char *fmt, ...) {                                                              \
        va_list ap;                                                                                \
        va_start(ap, fmt);                                                                         \
        vlog(level, 0, fmt, ap);                                                                   \
        va_end(ap);                                                                                \
    }
AL_LOG_FN_(al_log_debug, AL_LOG_DEBUG)
AL_LOG_FN_(al_log_info, AL_LOG_INFO)
AL_LOG_FN_(al_log_warn, AL_LOG_WARN)
AL_LOG_FN_(al_log_error, AL_LOG_ERROR)

void al_log_any(al_log_level level, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(level, 1, fmt, ap);
    va_end(ap);
}

/* ---- progress line ---- */
void al_progress_begin(al_progress *p, const char *label, int64_t total) {
    memset(p, 0, sizeof *p);
    snprintf(p->label, sizeof p->label, "%s", label);
    p->total = total;
    p->t0 = al_now();
    p->t_drawn = -1;
    p->loss = NAN;
    p->acc = NAN;
}

static void fmt_hms(char *buf, size_t n, double s) {
    if (!(s >= 0) || s > 359999999) {
        snprintf(buf, n, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else
        snprintf(buf, n, "%02ld:%02ld", t / 60, t % 60);
}

const char *al_progress_format(const al_progress *p, double elapsed_s, char *buf, size_t n) {
    char total[32], eta[32];
    int width = snprintf(total, sizeof total, "%lld", (long long)p->total);
    double rate = (elapsed_s > 0 && p->done > 0) ? (double)p->done / elapsed_s : 0;
    fmt_hms(eta, sizeof eta, rate > 0 ? (double)(p->total - p->done) / rate : -1);
    size_t len =
        (size_t)snprintf(buf, n, "%s [%*lld/%s] ", p->label, width, (long long)p->done, total);
    if (len < n) {
        if (rate > 0)
            len += (size_t)snprintf(buf + len, n - len, "%.0f img/s ETA %s", rate, eta);
        else
            len += (size_t)snprintf(buf + len, n - len, "- img/s ETA %s", eta);
    }
    if (len < n && isfinite(p->loss))
        len += (size_t)snprintf(buf + len, n - len, " loss %.3f", p->loss);
    if (len < n && isfinite(p->acc)) snprintf(buf + len, n - len, " acc %.1f%%", 100.0 * p->acc);
    return buf;
}

static void draw(al_progress *p, double now) {
    char line[256];
    al_progress_format(p, now - p->t0, line, sizeof line);
    FILE *f = out();
    fprintf(f, "\r%s\033[K", line);
    fflush(f);
    p->t_drawn = now;
    g_log.shown = p;
}

/* 10 redraws per second are smooth enough and cost nothing next to a training step. */
static int due(const al_progress *p, int64_t done, double now) {
    if (g_log.rank != 0 || !is_tty()) return 0;
    return !(g_log.shown == p && done < p->total && now - p->t_drawn < 0.1);
}

int al_progress_due(const al_progress *p, int64_t done) { return due(p, done, al_now()); }

void al_progress_update(al_progress *p, int64_t done, double loss, double acc) {
    p->done = done;
    p->loss = loss;
    p->acc = acc;
    double now = al_now();
    if (due(p, done, now)) draw(p, now);
}

void al_progress_end(al_progress *p) {
    if (g_log.rank != 0 || !is_tty()) return;
    draw(p, al_now());
    fputc('\n', out());
    fflush(out());
    g_log.shown = NULL;
}

/* ---- JSON ---- */
char *al_json_quote(char *buf, size_t n, const char *s) {
    AL_ASSERT(n >= 3, "JSON quote buffer of %zu bytes", n);
    size_t len = 0;
    buf[len++] = '"';
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        char esc[8];
        size_t m;
        switch (*c) {
        case '"': m = (size_t)snprintf(esc, sizeof esc, "\\\""); break;
        case '\\': m = (size_t)snprintf(esc, sizeof esc, "\\\\"); break;
        case '\n': m = (size_t)snprintf(esc, sizeof esc, "\\n"); break;
        case '\r': m = (size_t)snprintf(esc, sizeof esc, "\\r"); break;
        case '\t': m = (size_t)snprintf(esc, sizeof esc, "\\t"); break;
        case '\b': m = (size_t)snprintf(esc, sizeof esc, "\\b"); break;
        case '\f': m = (size_t)snprintf(esc, sizeof esc, "\\f"); break;
        default:
            if (*c < 0x20) {
                m = (size_t)snprintf(esc, sizeof esc, "\\u%04x", *c);
            } else {
                /* Copy a whole UTF-8 sequence at once so a cut never splits a character. */
                m = 1;
                if (*c >= 0xC0) {
                    while (m < 4 && (c[m] & 0xC0) == 0x80) m++;
                }
                if (len + m + 2 > n) goto out;
                memcpy(buf + len, c, m);
                len += m;
                c += m - 1;
                continue;
            }
        }
        if (len + m + 2 > n) goto out;
        memcpy(buf + len, esc, m);
        len += m;
    }
out:
    buf[len++] = '"';
    buf[len] = 0;
    return buf;
}

/* Copy a JSON record from `in` to `out`, replacing bare nan/inf tokens that printf's %g
 * produces (outside strings) by null. A token is at least 3 bytes and null 4, so out needs
 * at most 4/3 of strlen(in) + 1 bytes. */
static void json_null_nonfinite(const char *in, char *out) {
    static const char *const bad[] = {"-nan", "+nan", "nan", "-inf", "+inf", "inf"};
    int in_str = 0;
    char prev = ',';
    while (*in) {
        if (in_str) {
            if (*in == '\\' && in[1]) {
                *out++ = *in++;
            } else if (*in == '"') {
                in_str = 0;
            }
            prev = *in;
            *out++ = *in++;
            continue;
        }
        if (*in == '"') in_str = 1;
        size_t m = 0;
        if (strchr(",:[{ ", prev))
            for (size_t i = 0; i < AL_ARRAY_LEN(bad) && !m; i++) {
                size_t k = strlen(bad[i]);
                if (strncmp(in, bad[i], k) == 0 && (in[k] == 0 || strchr(",}] ", in[k]))) m = k;
            }
        if (m) {
            memcpy(out, "null", 4);
            out += 4;
            in += m;
            prev = 'l';
            continue;
        }
        prev = *in;
        *out++ = *in++;
    }
    *out = 0;
}

struct al_jsonl {
    FILE *f;
    char path[512];
    double t0;
    char *buf, *clean; /* record buffers (cap, 4/3 cap + 1), allocated at open: writes never
                        * allocate */
    size_t cap;
};

#define JSONL_RECORD_BYTES (64 * 1024)

al_status al_jsonl_open(al_jsonl **outp, const char *path, const al_config *cfg, int append) {
    *outp = NULL;
    al_jsonl *j = calloc(1, sizeof *j);
    if (!j) return AL_FAIL(AL_ERR_OOM, "%s: out of memory opening metrics", path);
    snprintf(j->path, sizeof j->path, "%s", path);
    j->t0 = al_now();
    if (g_log.rank != 0) {
        *outp = j; /* discarding writer */
        return AL_OK;
    }
    j->cap = JSONL_RECORD_BYTES;
    j->buf = malloc(j->cap);
    j->clean = malloc(j->cap / 3 * 4 + 8);
    char *cfg_json = NULL;
    al_status st = AL_OK;
    if (!j->buf || !j->clean) {
        st = AL_FAIL(AL_ERR_OOM, "%s: out of memory opening metrics", path);
        goto done;
    }
    if (cfg) AL_CHECK(al_config_to_json(cfg, &cfg_json));
    j->f = fopen(path, append ? "a" : "w");
    if (!j->f) {
        st = AL_FAIL(AL_ERR_IO, "%s: cannot open metrics file for writing: %s", path,
                     strerror(errno));
        goto done;
    }
    char date[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tm);
    char git[128];
    al_json_quote(git, sizeof git, AL_GIT_COMMIT);
    fprintf(j->f,
            "{\"type\":\"header\",\"version\":\"%s\",\"date\":\"%s\",\"git\":%s,"
            "\"world\":%d,\"resumed\":%s,\"config\":%s}\n",
            AL_VERSION, date, git, g_log.world, append ? "true" : "false",
            cfg_json ? cfg_json : "null");
    if (fflush(j->f) != 0 || ferror(j->f))
        st = AL_FAIL(AL_ERR_IO, "%s: write failed: %s", path, strerror(errno));
done:
    free(cfg_json);
    if (st != AL_OK) {
        al_jsonl_close(j);
        return st;
    }
    *outp = j;
    return AL_OK;
}

al_status al_jsonl_write(al_jsonl *j, const char *type, const char *fmt, ...) {
    if (!j || !j->f) return AL_OK;
    size_t room = j->cap;
    int len = snprintf(j->buf, room, "{\"type\":\"%s\",\"time\":%.3f", type, al_now() - j->t0);
    if (fmt && fmt[0] && len >= 0 && (size_t)len + 1 < room) {
        j->buf[len++] = ',';
        va_list ap;
        va_start(ap, fmt);
        int m = vsnprintf(j->buf + len, room - (size_t)len, fmt, ap);
        va_end(ap);
        len = m < 0 ? -1 : len + m;
    }
    if (len < 0 || (size_t)len + 2 >= room)
        return AL_FAIL(AL_ERR_VALUE, "%s: %s record longer than %zu bytes", j->path, type, room);
    j->buf[len++] = '}';
    j->buf[len] = 0;
    json_null_nonfinite(j->buf, j->clean);
    if (fputs(j->clean, j->f) < 0 || fputc('\n', j->f) == EOF || fflush(j->f) != 0)
        return AL_FAIL(AL_ERR_IO, "%s: write failed: %s", j->path, strerror(errno));
    return AL_OK;
}

al_status al_jsonl_close(al_jsonl *j) {
    if (!j) return AL_OK;
    al_status st = AL_OK;
    if (j->f && fclose(j->f) != 0)
        st = AL_FAIL(AL_ERR_IO, "%s: close failed: %s", j->path, strerror(errno));
    free(j->buf);
    free(j->clean);
    free(j);
    return st;
}
