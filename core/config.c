/* config.c: INI + --set experiment configuration (see config.h). Everything below iterates the
 * one generated key table; nothing here names an individual key except al_config_validate.
 * inih splits lines into section/key/value; our line reader in front of it counts lines (the
 * distro's libinih is built without INI_HANDLER_LINENO), strips indentation (inih would take
 * an indented line as a continuation of the previous value), and reports unknown sections,
 * malformed lines and over-long lines itself with the file:line and the offending text. */
#include "core/config.h"

#include <ctype.h>
#include <errno.h>
#include <ini.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"

/* ---- tables generated from the schema ---- */
#define ENUM_WORD_(c, s) s,
#define ENUM_VAL_(c, s) (int)(c),
#define ENUM_ARRAYS_(E)                                                                            \
    static const char *const enum_names_##E[] = {AL_CFG_E_##E(ENUM_WORD_)};                        \
    static const int enum_vals_##E[] = {AL_CFG_E_##E(ENUM_VAL_)};                                  \
    _Static_assert(sizeof(AL_CFG_ETYPE_##E) == sizeof(int), "enum field must be int-sized");
AL_CFG_ENUMS(ENUM_ARRAYS_)
static const char *const enum_names_NONE[] = {NULL};
static const int enum_vals_NONE[] = {0};

#define KEY_ROW_(S, k, T, E, def, lo, hi, help)                                                    \
    {#S,                                                                                           \
     #k,                                                                                           \
     AL_CFG_T_##T,                                                                                 \
     enum_names_##E,                                                                               \
     enum_vals_##E,                                                                                \
     AL_CFG_T_##T == AL_CFG_T_ENUM ? (int)AL_ARRAY_LEN(enum_vals_##E) : 0,                         \
     def,                                                                                          \
     lo,                                                                                           \
     hi,                                                                                           \
     help,                                                                                         \
     offsetof(al_config, S.k)},
#define KEY_SECTION_(sec, LIST) LIST(KEY_ROW_, sec)
static const al_cfg_key g_keys[] = {AL_CFG_SECTIONS(KEY_SECTION_)};
#define N_KEYS ((int)AL_ARRAY_LEN(g_keys))

#define SECTION_NAME_(sec, LIST) #sec,
static const char *const g_sections[] = {AL_CFG_SECTIONS(SECTION_NAME_)};
#define N_SECTIONS ((int)AL_ARRAY_LEN(g_sections))

const al_cfg_key *al_config_keys(int *n_keys) {
    if (n_keys) *n_keys = N_KEYS;
    return g_keys;
}

const char *al_cfg_type_name(al_cfg_type t) {
    switch (t) {
    case AL_CFG_T_INT: return "int";
    case AL_CFG_T_INT64: return "int64";
    case AL_CFG_T_FLOAT: return "float";
    case AL_CFG_T_DOUBLE: return "double";
    case AL_CFG_T_STR: return "string";
    case AL_CFG_T_BOOL: return "bool";
    case AL_CFG_T_ENUM: return "enum";
    case AL_CFG_T_ILIST: return "int list";
    case AL_CFG_T_FLIST: return "float list";
    }
    return "?";
}

static void *field_ptr(al_config *cfg, const al_cfg_key *k) { return (char *)cfg + k->offset; }
static const void *field_cptr(const al_config *cfg, const al_cfg_key *k) {
    return (const char *)cfg + k->offset;
}

/* ---- small string helpers ---- */
static int ieq(const char *a, const char *b) {
    for (; *a && *b; a++, b++)
        if (tolower((unsigned char)*a) != tolower((unsigned char)*b)) return 0;
    return *a == *b;
}

/* Copy s[0..len) into dst (cap bytes) with surrounding blanks removed. */
static void trim_copy(char *dst, size_t cap, const char *s, size_t len) {
    while (len && isspace((unsigned char)*s)) s++, len--;
    while (len && isspace((unsigned char)s[len - 1])) len--;
    if (len >= cap) len = cap - 1;
    memcpy(dst, s, len);
    dst[len] = 0;
}

/* Levenshtein distance (short identifiers only; longer strings count as far apart). */
static int edit_distance(const char *a, const char *b) {
    size_t na = strlen(a), nb = strlen(b);
    if (na > 63 || nb > 63) return 99;
    int prev[64], cur[64];
    for (size_t j = 0; j <= nb; j++) prev[j] = (int)j;
    for (size_t i = 1; i <= na; i++) {
        cur[0] = (int)i;
        for (size_t j = 1; j <= nb; j++) {
            int sub = prev[j - 1] +
                      (tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]));
            int del = prev[j] + 1, ins = cur[j - 1] + 1;
            cur[j] = AL_MIN(sub, AL_MIN(del, ins));
        }
        memcpy(prev, cur, sizeof(int) * (nb + 1));
    }
    return prev[nb];
}

static int find_section(const char *name) {
    for (int i = 0; i < N_SECTIONS; i++)
        if (strcmp(g_sections[i], name) == 0) return i;
    return -1;
}

static const al_cfg_key *find_key(const char *section, const char *key) {
    for (int i = 0; i < N_KEYS; i++)
        if (strcmp(g_keys[i].section, section) == 0 && strcmp(g_keys[i].key, key) == 0)
            return &g_keys[i];
    return NULL;
}

/* "unknown section [trian] (did you mean [train]?)" / "(sections: run, data, ...)". */
static void describe_unknown_section(const char *name, char *buf, size_t n) {
    int best = -1, best_d = 3;
    for (int i = 0; i < N_SECTIONS; i++) {
        int d = edit_distance(name, g_sections[i]);
        if (d < best_d) best_d = d, best = i;
    }
    if (best >= 0) {
        snprintf(buf, n, "unknown section [%s] (did you mean [%s]?)", name, g_sections[best]);
        return;
    }
    size_t len = (size_t)snprintf(buf, n, "unknown section [%s] (sections:", name);
    for (int i = 0; i < N_SECTIONS && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s %s", i ? "," : "", g_sections[i]);
    if (len < n) snprintf(buf + len, n - len, ")");
}

/* "unknown key train.lrr (did you mean train.lr?)"; a key of another section is named. */
static void describe_unknown_key(const char *section, const char *key, char *buf, size_t n) {
    /* The exact key in another section first (train.eps -> attack.eps), then a near miss in
     * the same section (train.lrr -> train.lr). */
    const al_cfg_key *best = NULL;
    for (int i = 0; i < N_KEYS && !best; i++)
        if (strcmp(g_keys[i].key, key) == 0) best = &g_keys[i];
    int best_d = 3;
    for (int i = 0; i < N_KEYS && !best; i++) {
        if (strcmp(g_keys[i].section, section) != 0) continue;
        int d = edit_distance(key, g_keys[i].key);
        if (d < best_d) best_d = d, best = &g_keys[i];
    }
    if (best)
        snprintf(buf, n, "unknown key %s.%s (did you mean %s.%s?)", section, key, best->section,
                 best->key);
    else
        snprintf(buf, n, "unknown key %s.%s (advlab <verb> --help lists the keys)", section, key);
}

/* ---- value parsing ---- */
/* Record "<where>: <sec>.<key> = <val>: <problem>". */
static al_status value_error(al_status st, const char *where, const al_cfg_key *k, const char *val,
                             const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static al_status value_error(al_status st, const char *where, const al_cfg_key *k, const char *val,
                             const char *fmt, ...) {
    char why[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    return al_fail(st, "%s: %s.%s = %s: %s", where, k->section, k->key, val, why);
}

/* Why the text after a number is not accepted. */
static void trailing_why(const char *end, char *why, size_t n) {
    const char *c = end;
    while (isspace((unsigned char)*c)) c++;
    if (*c == '#')
        snprintf(why, n,
                 "trailing characters '%s' after the number (inline comments start "
                 "with ' ;')",
                 end);
    else
        snprintf(why, n, "trailing characters '%s' after the number", end);
}

/* Plain decimal: strtod over the whole (trimmed) string, finite. 0 on success. */
static int parse_plain_double(const char *s, double *out, char *why, size_t n) {
    char buf[128];
    trim_copy(buf, sizeof buf, s, strlen(s));
    if (!buf[0]) {
        snprintf(why, n, "empty, expected a number");
        return 1;
    }
    char *end;
    errno = 0;
    double v = strtod(buf, &end);
    if (end == buf) {
        snprintf(why, n, "'%s' is not a number", buf);
        return 1;
    }
    if (*end) {
        trailing_why(end, why, n);
        return 1;
    }
    if (!isfinite(v)) {
        snprintf(why, n, "'%s' is not a finite number", buf);
        return 1;
    }
    /* ERANGE also flags underflow to (sub)normals; only overflow is an error. */
    if (errno == ERANGE && fabs(v) > 1.0) {
        snprintf(why, n, "'%s' overflows a double", buf);
        return 1;
    }
    *out = v;
    return 0;
}

/* Number or fraction "a/b" (eps = 8/255). */
static int parse_number(const char *s, double *out, char *why, size_t n) {
    const char *slash = strchr(s, '/');
    if (!slash) return parse_plain_double(s, out, why, n);
    char num[128];
    trim_copy(num, sizeof num, s, (size_t)(slash - s));
    double a, b;
    if (parse_plain_double(num, &a, why, n)) return 1;
    if (strchr(slash + 1, '/')) {
        snprintf(why, n, "a fraction has one '/'");
        return 1;
    }
    if (parse_plain_double(slash + 1, &b, why, n)) return 1;
    if (b == 0.0) {
        snprintf(why, n, "division by zero");
        return 1;
    }
    *out = a / b;
    if (!isfinite(*out)) {
        snprintf(why, n, "the fraction overflows a double");
        return 1;
    }
    return 0;
}

static int parse_integer(const char *s, long long *out, char *why, size_t n) {
    char buf[128];
    trim_copy(buf, sizeof buf, s, strlen(s));
    if (!buf[0]) {
        snprintf(why, n, "empty, expected an integer");
        return 1;
    }
    char *end;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (end == buf) {
        snprintf(why, n, "'%s' is not an integer", buf);
        return 1;
    }
    if (*end == '.' || *end == 'e' || *end == 'E' || *end == '/') {
        snprintf(why, n, "'%s' is not an integer", buf);
        return 1;
    }
    if (*end) {
        trailing_why(end, why, n);
        return 1;
    }
    if (errno == ERANGE) {
        snprintf(why, n, "'%s' overflows a 64-bit integer", buf);
        return 1;
    }
    *out = v;
    return 0;
}

static int in_range(const al_cfg_key *k, double v) { return v >= k->min && v <= k->max; }
static int is_integer_type(al_cfg_type t) {
    return t == AL_CFG_T_INT || t == AL_CFG_T_INT64 || t == AL_CFG_T_ILIST;
}
static void range_why(const al_cfg_key *k, char *why, size_t n) {
    if (is_integer_type(k->type))
        snprintf(why, n, "must be in [%.0f, %.0f]", k->min, k->max);
    else
        snprintf(why, n, "must be in [%g, %g]", k->min, k->max);
}

/* Parse one scalar element of k's numeric type into *d (double) / *ll (integer). */
static int parse_element(const al_cfg_key *k, const char *s, double *d, long long *ll, char *why,
                         size_t n) {
    if (is_integer_type(k->type)) {
        if (parse_integer(s, ll, why, n)) return 1;
        *d = (double)*ll;
    } else if (parse_number(s, d, why, n)) {
        return 1;
    }
    if (!in_range(k, *d)) {
        range_why(k, why, n);
        return 1;
    }
    return 0;
}

static al_status parse_list(const al_cfg_key *k, const char *val, void *field, const char *where) {
    char why[256];
    al_cfg_ilist il = {0};
    al_cfg_flist fl = {0};
    int count = 0;
    const char *p = val;
    char elem[128];
    int empty = 1;
    for (const char *q = val; *q; q++)
        if (!isspace((unsigned char)*q)) empty = 0;
    while (!empty) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (count == AL_CFG_LIST_MAX)
            return value_error(AL_ERR_VALUE, where, k, val, "more than %d elements",
                               AL_CFG_LIST_MAX);
        trim_copy(elem, sizeof elem, p, len);
        double d;
        long long ll = 0;
        if (parse_element(k, elem, &d, &ll, why, sizeof why))
            return value_error(AL_ERR_VALUE, where, k, val, "element %d ('%s'): %s", count + 1,
                               elem, why);
        if (k->type == AL_CFG_T_ILIST) {
            if (count > 0 && ll <= il.v[count - 1])
                return value_error(AL_ERR_VALUE, where, k, val,
                                   "must be strictly increasing (element %d: %lld after %d)",
                                   count + 1, ll, il.v[count - 1]);
            il.v[count] = (int)ll;
        } else {
            fl.v[count] = (float)d;
        }
        count++;
        if (!comma) break;
        p = comma + 1;
    }
    if (k->type == AL_CFG_T_ILIST) {
        il.n = count;
        *(al_cfg_ilist *)field = il;
    } else {
        fl.n = count;
        *(al_cfg_flist *)field = fl;
    }
    return AL_OK;
}

/* Parse `val` (already trimmed) for key k into its field. `where` is "file:line" or "--set". */
static al_status parse_value(const al_cfg_key *k, const char *val, void *field, const char *where) {
    char why[256];
    double d;
    long long ll;
    switch (k->type) {
    case AL_CFG_T_INT:
    case AL_CFG_T_INT64:
        if (parse_element(k, val, &d, &ll, why, sizeof why))
            return value_error(AL_ERR_VALUE, where, k, val, "%s", why);
        if (k->type == AL_CFG_T_INT)
            *(int *)field = (int)ll;
        else
            *(int64_t *)field = (int64_t)ll;
        return AL_OK;
    case AL_CFG_T_FLOAT:
    case AL_CFG_T_DOUBLE:
        if (parse_element(k, val, &d, &ll, why, sizeof why))
            return value_error(AL_ERR_VALUE, where, k, val, "%s", why);
        if (k->type == AL_CFG_T_FLOAT)
            *(float *)field = (float)d;
        else
            *(double *)field = d;
        return AL_OK;
    case AL_CFG_T_BOOL: {
        static const char *const yes[] = {"1", "true", "yes", "on"};
        static const char *const no[] = {"0", "false", "no", "off"};
        for (size_t i = 0; i < AL_ARRAY_LEN(yes); i++) {
            if (ieq(val, yes[i])) {
                *(int *)field = 1;
                return AL_OK;
            }
            if (ieq(val, no[i])) {
                *(int *)field = 0;
                return AL_OK;
            }
        }
        return value_error(AL_ERR_VALUE, where, k, val, "must be 0 or 1 (or true/false)");
    }
    case AL_CFG_T_ENUM: {
        for (int i = 0; i < k->n_enum; i++)
            if (ieq(val, k->enum_names[i])) {
                *(int *)field = k->enum_vals[i];
                return AL_OK;
            }
        char list[256];
        size_t len = 0;
        list[0] = 0;
        for (int i = 0; i < k->n_enum && len < sizeof list; i++)
            len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", i ? "|" : "",
                                    k->enum_names[i]);
        return value_error(AL_ERR_VALUE, where, k, val, "must be one of %s", list);
    }
    case AL_CFG_T_STR: {
        size_t len = strlen(val);
        if (len >= AL_CFG_STR_LEN)
            return value_error(AL_ERR_VALUE, where, k, val, "longer than %d bytes",
                               AL_CFG_STR_LEN - 1);
        for (size_t i = 0; i < len; i++) {
            unsigned char c = (unsigned char)val[i];
            if (c < 0x20 || c == 0x7f)
                return value_error(AL_ERR_VALUE, where, k, val,
                                   "control character 0x%02x at byte %zu", c, i);
            if (c == ';' && i > 0 && isspace((unsigned char)val[i - 1]))
                return value_error(AL_ERR_VALUE, where, k, val,
                                   "contains ' ;', which an INI file reads as a comment");
        }
        memcpy(field, val, len + 1);
        return AL_OK;
    }
    case AL_CFG_T_ILIST:
    case AL_CFG_T_FLIST: return parse_list(k, val, field, where);
    }
    AL_ASSERT(0, "bad config type %d", (int)k->type);
    return AL_ERR_VALUE;
}

void al_config_defaults(al_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    for (int i = 0; i < N_KEYS; i++) {
        al_status st =
            parse_value(&g_keys[i], g_keys[i].def, field_ptr(cfg, &g_keys[i]), "default");
        AL_ASSERT(st == AL_OK, "schema default does not parse: %s", al_errmsg());
    }
}

/* ---- INI loading ---- */
typedef struct load_state {
    al_config *cfg;
    const char *name; /* file name for messages */
    FILE *f;          /* file source, or ... */
    const char *text; /* ... string source (advanced as lines are read) */
    char *line;       /* getline buffer */
    size_t line_cap;
    int lineno; /* line last handed to inih (= the line being handled) */
    al_status st;
    int err_line;
    int set_line[128]; /* per key: line where this file set it (0 = not yet) */
} load_state;

/* Next raw line (without the newline) into ls->line; returns its length or -1 at the end. */
static long next_line(load_state *ls) {
    if (ls->f) {
        ssize_t len = getline(&ls->line, &ls->line_cap, ls->f);
        if (len < 0) return -1;
        while (len > 0 && (ls->line[len - 1] == '\n' || ls->line[len - 1] == '\r')) len--;
        ls->line[len] = 0;
        return (long)len;
    }
    if (!*ls->text) return -1;
    const char *nl = strchr(ls->text, '\n');
    size_t len = nl ? (size_t)(nl - ls->text) : strlen(ls->text);
    if (len + 1 > ls->line_cap) {
        char *p = realloc(ls->line, len + 1);
        if (!p) return -1;
        ls->line = p;
        ls->line_cap = len + 1;
    }
    memcpy(ls->line, ls->text, len);
    ls->line[len] = 0;
    ls->text += nl ? len + 1 : len;
    while (len > 0 && ls->line[len - 1] == '\r') ls->line[--len] = 0;
    return (long)len;
}

static void load_fail(load_state *ls, al_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void load_fail(load_state *ls, al_status st, const char *fmt, ...) {
    if (ls->st != AL_OK) return; /* keep the first error */
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    ls->st = al_fail(st, "%s:%d: %s", ls->name, ls->lineno, msg);
    ls->err_line = ls->lineno;
}

/* inih's fgets-style reader: one line per call (so inih's line count is ours), indentation
 * removed, and structural errors reported here where the raw text is at hand. */
static char *line_reader(char *str, int num, void *stream) {
    load_state *ls = stream;
    long len = next_line(ls);
    if (len < 0) return NULL;
    ls->lineno++;
    char *s = ls->line;
    if (ls->lineno == 1 && (unsigned char)s[0] == 0xEF && (unsigned char)s[1] == 0xBB &&
        (unsigned char)s[2] == 0xBF)
        s += 3; /* UTF-8 byte order mark */
    while (isspace((unsigned char)*s)) s++;
    size_t n = strlen(s);
    str[0] = '\n';
    str[1] = 0;
    if (ls->st != AL_OK) return str;
    /* inih needs room for "\r\n\0" beyond the text. */
    if (n + 3 > (size_t)num) {
        load_fail(ls, AL_ERR_CONFIG, "line longer than %d characters", num - 3);
        return str;
    }
    if (*s && *s != ';' && *s != '#') {
        if (*s == '[') {
            const char *close = strchr(s, ']');
            if (!close) {
                load_fail(ls, AL_ERR_CONFIG, "syntax error: '%s' has no closing ']'", s);
                return str;
            }
            char sec[128];
            trim_copy(sec, sizeof sec, s + 1, (size_t)(close - s - 1));
            if (find_section(sec) < 0) {
                char why[512];
                describe_unknown_section(sec, why, sizeof why);
                load_fail(ls, AL_ERR_CONFIG, "%s", why);
                return str;
            }
        } else if (!strchr(s, '=') && !strchr(s, ':')) {
            load_fail(ls, AL_ERR_CONFIG,
                      "syntax error: expected '[section]' or 'key = value', got '%s'", s);
            return str;
        }
    }
    memcpy(str, s, n);
    str[n] = '\n';
    str[n + 1] = 0;
    return str;
}

static int key_handler(void *user, const char *section, const char *name, const char *value) {
    load_state *ls = user;
    if (ls->st != AL_OK) return 1;
    char where[512];
    snprintf(where, sizeof where, "%s:%d", ls->name, ls->lineno);
    if (!section[0]) {
        load_fail(ls, AL_ERR_CONFIG, "key '%s' is outside a section (start with e.g. [train])",
                  name);
        return 0;
    }
    if (!name[0]) {
        load_fail(ls, AL_ERR_CONFIG, "empty key name in [%s]", section);
        return 0;
    }
    if (find_section(section) < 0) { /* normally caught by the reader */
        char why[512];
        describe_unknown_section(section, why, sizeof why);
        load_fail(ls, AL_ERR_CONFIG, "%s", why);
        return 0;
    }
    const al_cfg_key *k = find_key(section, name);
    if (!k) {
        char why[512];
        describe_unknown_key(section, name, why, sizeof why);
        load_fail(ls, AL_ERR_CONFIG, "%s", why);
        return 0;
    }
    int idx = (int)(k - g_keys);
    if (ls->set_line[idx]) {
        load_fail(ls, AL_ERR_CONFIG, "%s.%s given twice (first on line %d)", section, name,
                  ls->set_line[idx]);
        return 0;
    }
    ls->set_line[idx] = ls->lineno;
    al_status st = parse_value(k, value, field_ptr(ls->cfg, k), where);
    if (st != AL_OK) {
        ls->st = st;
        ls->err_line = ls->lineno;
        return 0;
    }
    return 1;
}

_Static_assert(N_KEYS <= 128, "load_state.set_line too small");

static al_status load_stream(load_state *ls) {
    int rc = ini_parse_stream(line_reader, ls, key_handler, ls);
    free(ls->line);
    ls->line = NULL;
    if (ls->st != AL_OK) return ls->st;
    if (rc == -2) return AL_FAIL(AL_ERR_OOM, "%s: out of memory parsing", ls->name);
    if (rc != 0) return AL_FAIL(AL_ERR_CONFIG, "%s:%d: syntax error (inih)", ls->name, rc);
    return AL_OK;
}

al_status al_config_load_file(al_config *cfg, const char *path) {
    load_state *ls = calloc(1, sizeof *ls);
    if (!ls) return AL_FAIL(AL_ERR_OOM, "%s: out of memory", path);
    ls->cfg = cfg;
    ls->name = path;
    ls->f = fopen(path, "r");
    if (!ls->f) {
        al_status st = AL_FAIL(AL_ERR_IO, "%s: cannot open config: %s", path, strerror(errno));
        free(ls);
        return st;
    }
    al_status st = load_stream(ls);
    if (st == AL_OK && ferror(ls->f)) st = AL_FAIL(AL_ERR_IO, "%s: read error", path);
    fclose(ls->f);
    free(ls);
    return st;
}

al_status al_config_load_string(al_config *cfg, const char *text, const char *name) {
    load_state *ls = calloc(1, sizeof *ls);
    if (!ls) return AL_FAIL(AL_ERR_OOM, "%s: out of memory", name);
    ls->cfg = cfg;
    ls->name = name;
    ls->text = text;
    al_status st = load_stream(ls);
    free(ls);
    return st;
}

al_status al_config_set(al_config *cfg, const char *assignment) {
    const char *eq = strchr(assignment, '=');
    char lhs[256], val[1024];
    if (!eq) return AL_FAIL(AL_ERR_CONFIG, "--set '%s': expected section.key=value", assignment);
    trim_copy(lhs, sizeof lhs, assignment, (size_t)(eq - assignment));
    trim_copy(val, sizeof val, eq + 1, strlen(eq + 1));
    char *dot = strchr(lhs, '.');
    if (!dot || dot == lhs || !dot[1])
        return AL_FAIL(AL_ERR_CONFIG, "--set '%s': expected section.key=value", assignment);
    *dot = 0;
    const char *section = lhs, *key = dot + 1;
    char why[512];
    if (find_section(section) < 0) {
        describe_unknown_section(section, why, sizeof why);
        return AL_FAIL(AL_ERR_CONFIG, "--set: %s", why);
    }
    const al_cfg_key *k = find_key(section, key);
    if (!k) {
        describe_unknown_key(section, key, why, sizeof why);
        return AL_FAIL(AL_ERR_CONFIG, "--set: %s", why);
    }
    return parse_value(k, val, field_ptr(cfg, k), "--set");
}

/* ---- cross-field checks and "auto" resolution ---- */
static al_bn_attack method_bn_mode(al_method m) {
    switch (m) {
    /* Rice et al. train_cifar.py and fast_adversarial train_fgsm.py generate the attack with
     * the model in train mode (batch stats, running stats updated by each attack forward). */
    case AL_METHOD_PGD_AT:
    case AL_METHOD_FAST_AT: return AL_BN_ATTACK_TRAIN;
    /* TRADES and MART switch to model.eval() for the attack (methods.md §6.2-6.3). */
    case AL_METHOD_TRADES:
    case AL_METHOD_MART:
    case AL_METHOD_STANDARD: return AL_BN_ATTACK_EVAL;
    /* AdvProp/MDProp attack in eval mode on their auxiliary BN branch; ANCRA's u_pgd and
     * NoFrost's ctx_noparamgrad_and_eval are eval mode; IAT follows PGD-AT (Madry/Rice: train
     * mode) ; DFA has no attack. */
    case AL_METHOD_ADVPROP:
    case AL_METHOD_MDPROP:
    case AL_METHOD_MULTIBN:
    case AL_METHOD_ANCRA:
    case AL_METHOD_NOFROST:
    case AL_METHOD_DFA: return AL_BN_ATTACK_EVAL;
    case AL_METHOD_IAT: return AL_BN_ATTACK_TRAIN;
    }
    return AL_BN_ATTACK_EVAL;
}

static al_rand_init method_rand_init(al_method m) {
    switch (m) {
    case AL_METHOD_PGD_AT:
    case AL_METHOD_FAST_AT: return AL_RINIT_UNIFORM; /* U(-eps, eps) (Madry, Wong et al.) */
    case AL_METHOD_TRADES:
    case AL_METHOD_MART:
    case AL_METHOD_ANCRA: return AL_RINIT_NORMAL; /* x + 0.001 N(0, 1) */
    case AL_METHOD_STANDARD:
    case AL_METHOD_DFA: return AL_RINIT_NONE;
    /* AdvProp: random start (the reference draws it with probability 0.8; we always do);
     * NoFrost: advertorch rand_init; IAT: Madry's uniform start */
    case AL_METHOD_ADVPROP:
    case AL_METHOD_MDPROP:
    case AL_METHOD_MULTIBN:
    case AL_METHOD_NOFROST:
    case AL_METHOD_IAT: return AL_RINIT_UNIFORM;
    }
    return AL_RINIT_NONE;
}

void al_config_apply_ctx(const al_config *cfg, al_ctx *ctx) {
    ctx->deterministic = cfg->run.deterministic;
    ctx->precision = cfg->run.precision;
    ctx->layout = cfg->run.layout;
    ctx->cuda_graphs = cfg->run.cuda_graphs;
}

al_status al_config_validate(al_config *cfg) {
    if (!cfg->run.name[0] || strchr(cfg->run.name, '/'))
        return AL_FAIL(AL_ERR_VALUE, "config: run.name = '%s': must be non-empty without '/'",
                       cfg->run.name);
    if (cfg->run.layout == AL_NHWC && cfg->run.device != AL_DEV_CUDA)
        return AL_FAIL(AL_ERR_VALUE,
                       "config: run.layout = nhwc needs run.device = cuda (the CPU reference ops "
                       "are NCHW)");
    const al_cfg_flist *mean = &cfg->model.mean, *std = &cfg->model.std;
    if ((mean->n || std->n) && mean->n != std->n)
        return AL_FAIL(AL_ERR_VALUE,
                       "config: model.mean has %d values but model.std has %d (one per input "
                       "channel, or both empty)",
                       mean->n, std->n);
    if (mean->n > 4)
        return AL_FAIL(AL_ERR_VALUE, "config: model.mean/std: %d channels, at most 4", mean->n);
    al_cfg_train *t = &cfg->train;
    if (t->nesterov && t->momentum <= 0)
        return AL_FAIL(AL_ERR_VALUE,
                       "config: train.nesterov = 1 requires train.momentum > 0 (momentum = %g)",
                       t->momentum);
    if (t->cycle_momentum) {
        if (t->lr_schedule != AL_LR_CYCLIC && t->lr_schedule != AL_LR_ONECYCLE)
            return AL_FAIL(AL_ERR_VALUE,
                           "config: train.cycle_momentum = 1 requires train.lr_schedule = cyclic "
                           "or onecycle (lr_schedule = %s)",
                           al_config_enum_name("train.lr_schedule", (int)t->lr_schedule));
        if (t->momentum_min > t->momentum)
            return AL_FAIL(AL_ERR_VALUE,
                           "config: train.momentum_min = %g must be <= train.momentum = %g",
                           t->momentum_min, t->momentum);
    }
    if (t->warmup_epochs > t->epochs)
        return AL_FAIL(AL_ERR_VALUE, "config: train.warmup_epochs = %g exceeds train.epochs = %d",
                       t->warmup_epochs, t->epochs);
    if ((t->lr_schedule == AL_LR_CYCLIC || t->lr_schedule == AL_LR_ONECYCLE) &&
        (t->lr_max > 0 ? t->lr_max : t->lr) <= 0)
        return AL_FAIL(AL_ERR_VALUE,
                       "config: train.lr_schedule = %s needs a peak lr > 0 "
                       "(train.lr_max, or train.lr when lr_max = 0)",
                       al_config_enum_name("train.lr_schedule", (int)t->lr_schedule));
    /* DRSL is added where core/methods/baselines.c applies it; elsewhere it would be ignored */
    if (cfg->drsl.weight > 0) {
        const int m = (int)t->method;
        if (m != AL_METHOD_STANDARD && m != AL_METHOD_PGD_AT && m != AL_METHOD_FAST_AT &&
            m != AL_METHOD_TRADES)
            return AL_FAIL(AL_ERR_VALUE,
                           "config: drsl.weight = %g is not applied by train.method = %s (only "
                           "standard, pgd_at, fast_at, trades)",
                           cfg->drsl.weight, al_config_enum_name("train.method", m));
        if (m == AL_METHOD_TRADES && cfg->drsl.ce_weight != 1.0)
            return AL_FAIL(AL_ERR_VALUE,
                           "config: drsl.ce_weight = %g is not applied by train.method = trades "
                           "(TRADES keeps its own CE + beta KL; leave ce_weight = 1)",
                           cfg->drsl.ce_weight);
    }
    if (t->bn_mode_attack == AL_BN_ATTACK_AUTO) t->bn_mode_attack = method_bn_mode(t->method);
    if (cfg->attack.random_init == AL_RINIT_AUTO)
        cfg->attack.random_init = method_rand_init(t->method);
    if (cfg->eval.attack == AL_EVAL_CW) cfg->eval.loss = AL_LOSS_CW;
    return AL_OK;
}

al_status al_config_from_args(al_config *cfg, const char *path, const char *const *sets,
                              int n_sets) {
    al_config_defaults(cfg);
    if (path) AL_TRY(al_config_load_file(cfg, path));
    for (int i = 0; i < n_sets; i++) AL_TRY(al_config_set(cfg, sets[i]));
    return al_config_validate(cfg);
}

/* ---- output ---- */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(sbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (b->len + (size_t)n + 1 > b->cap) {
        size_t cap = AL_MAX(b->cap * 2, b->len + (size_t)n + 1024);
        char *p = realloc(b->p, cap);
        if (!p) {
            b->oom = 1;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

static al_status sb_finish(sbuf *b, char **out, const char *what) {
    if (b->oom || !b->p) {
        free(b->p);
        *out = NULL;
        return AL_FAIL(AL_ERR_OOM, "out of host memory writing the %s", what);
    }
    *out = b->p;
    return AL_OK;
}

/* Shortest "%.Ng" that reads back (strtod, then the stored precision) as the same value. */
static void fmt_double(char *buf, size_t n, double v, int is_float) {
    for (int prec = is_float ? 6 : 15; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        double back = strtod(buf, NULL);
        if (is_float ? (float)back == (float)v : back == v) return;
    }
}

/* One value in INI syntax (json = 0) or as a JSON value (json = 1). */
static void fmt_value(sbuf *b, const al_cfg_key *k, const void *field, int json) {
    char num[64];
    switch (k->type) {
    case AL_CFG_T_INT: sb_printf(b, "%d", *(const int *)field); return;
    case AL_CFG_T_INT64: sb_printf(b, "%lld", (long long)*(const int64_t *)field); return;
    case AL_CFG_T_FLOAT:
        fmt_double(num, sizeof num, *(const float *)field, 1);
        sb_printf(b, "%s", num);
        return;
    case AL_CFG_T_DOUBLE:
        fmt_double(num, sizeof num, *(const double *)field, 0);
        sb_printf(b, "%s", num);
        return;
    case AL_CFG_T_BOOL:
        if (json)
            sb_printf(b, "%s", *(const int *)field ? "true" : "false");
        else
            sb_printf(b, "%d", *(const int *)field ? 1 : 0);
        return;
    case AL_CFG_T_ENUM: {
        int v = *(const int *)field;
        const char *w = "?";
        for (int i = 0; i < k->n_enum; i++)
            if (k->enum_vals[i] == v) w = k->enum_names[i];
        sb_printf(b, json ? "\"%s\"" : "%s", w);
        return;
    }
    case AL_CFG_T_STR:
        if (json) {
            char esc[AL_CFG_STR_LEN * 6 + 3];
            al_json_quote(esc, sizeof esc, (const char *)field);
            sb_printf(b, "%s", esc);
        } else {
            sb_printf(b, "%s", (const char *)field);
        }
        return;
    case AL_CFG_T_ILIST: {
        const al_cfg_ilist *l = field;
        if (json) sb_printf(b, "[");
        for (int i = 0; i < l->n; i++) sb_printf(b, "%s%d", i ? "," : "", l->v[i]);
        if (json) sb_printf(b, "]");
        return;
    }
    case AL_CFG_T_FLIST: {
        const al_cfg_flist *l = field;
        if (json) sb_printf(b, "[");
        for (int i = 0; i < l->n; i++) {
            fmt_double(num, sizeof num, l->v[i], 1);
            sb_printf(b, "%s%s", i ? "," : "", num);
        }
        if (json) sb_printf(b, "]");
        return;
    }
    }
}

al_status al_config_to_ini(const al_config *cfg, char **out) {
    sbuf b = {0};
    sb_printf(&b, "; advlab %s resolved config\n", AL_VERSION);
    const char *sec = "";
    for (int i = 0; i < N_KEYS; i++) {
        const al_cfg_key *k = &g_keys[i];
        if (strcmp(sec, k->section) != 0) {
            sb_printf(&b, "%s[%s]\n", i ? "\n" : "", k->section);
            sec = k->section;
        }
        sb_printf(&b, "%s = ", k->key);
        size_t at = b.len;
        fmt_value(&b, k, field_cptr(cfg, k), 0);
        if (!b.oom && b.len == at) b.p[--b.len] = 0; /* empty value: "key =" */
        sb_printf(&b, "\n");
    }
    return sb_finish(&b, out, "config INI text");
}

al_status al_config_to_json(const al_config *cfg, char **out) {
    sbuf b = {0};
    sb_printf(&b, "{");
    const char *sec = "";
    for (int i = 0; i < N_KEYS; i++) {
        const al_cfg_key *k = &g_keys[i];
        if (strcmp(sec, k->section) != 0) {
            sb_printf(&b, "%s\"%s\":{", i ? "}," : "", k->section);
            sec = k->section;
        } else {
            sb_printf(&b, ",");
        }
        sb_printf(&b, "\"%s\":", k->key);
        fmt_value(&b, k, field_cptr(cfg, k), 1);
    }
    sb_printf(&b, "}}");
    return sb_finish(&b, out, "config JSON");
}

static const al_cfg_key *lookup_dotted(const char *section_dot_key) {
    const char *dot = strchr(section_dot_key, '.');
    if (!dot) return NULL;
    char sec[64];
    trim_copy(sec, sizeof sec, section_dot_key, (size_t)(dot - section_dot_key));
    return find_key(sec, dot + 1);
}

al_status al_config_get(const al_config *cfg, const char *section_dot_key, char *buf, size_t n) {
    const al_cfg_key *k = lookup_dotted(section_dot_key);
    if (!k) return AL_FAIL(AL_ERR_CONFIG, "unknown config key %s", section_dot_key);
    sbuf b = {0};
    fmt_value(&b, k, field_cptr(cfg, k), 0);
    char *s;
    AL_TRY(sb_finish(&b, &s, "config value"));
    snprintf(buf, n, "%s", s ? s : "");
    free(s);
    return AL_OK;
}

static int field_equal(const al_cfg_key *k, const void *a, const void *b) {
    switch (k->type) {
    case AL_CFG_T_INT:
    case AL_CFG_T_BOOL:
    case AL_CFG_T_ENUM: return *(const int *)a == *(const int *)b;
    case AL_CFG_T_INT64: return *(const int64_t *)a == *(const int64_t *)b;
    case AL_CFG_T_FLOAT: return *(const float *)a == *(const float *)b;
    case AL_CFG_T_DOUBLE: return *(const double *)a == *(const double *)b;
    case AL_CFG_T_STR: return strcmp(a, b) == 0;
    case AL_CFG_T_ILIST: {
        const al_cfg_ilist *x = a, *y = b;
        if (x->n != y->n) return 0;
        for (int i = 0; i < x->n; i++)
            if (x->v[i] != y->v[i]) return 0;
        return 1;
    }
    case AL_CFG_T_FLIST: {
        const al_cfg_flist *x = a, *y = b;
        if (x->n != y->n) return 0;
        for (int i = 0; i < x->n; i++)
            if (x->v[i] != y->v[i]) return 0;
        return 1;
    }
    }
    return 0;
}

int al_config_equal(const al_config *a, const al_config *b, char *diff, size_t diff_len) {
    for (int i = 0; i < N_KEYS; i++) {
        const al_cfg_key *k = &g_keys[i];
        if (field_equal(k, field_cptr(a, k), field_cptr(b, k))) continue;
        if (diff && diff_len) {
            sbuf s = {0};
            sb_printf(&s, "%s.%s: ", k->section, k->key);
            fmt_value(&s, k, field_cptr(a, k), 0);
            sb_printf(&s, " vs ");
            fmt_value(&s, k, field_cptr(b, k), 0);
            snprintf(diff, diff_len, "%s", s.p && !s.oom ? s.p : "(out of memory)");
            free(s.p);
        }
        return 0;
    }
    if (diff && diff_len) diff[0] = 0;
    return 1;
}

void al_config_print_help(FILE *f) {
    fprintf(f, "config keys (INI [section] key = value, or --set section.key=value):\n");
    const char *sec = "";
    for (int i = 0; i < N_KEYS; i++) {
        const al_cfg_key *k = &g_keys[i];
        if (strcmp(sec, k->section) != 0) {
            fprintf(f, "\n[%s]\n", k->section);
            sec = k->section;
        }
        char dom[256];
        switch (k->type) {
        case AL_CFG_T_ENUM: {
            size_t len = 0;
            for (int j = 0; j < k->n_enum && len < sizeof dom; j++)
                len += (size_t)snprintf(dom + len, sizeof dom - len, "%s%s", j ? "|" : "",
                                        k->enum_names[j]);
            break;
        }
        case AL_CFG_T_INT:
        case AL_CFG_T_INT64:
        case AL_CFG_T_ILIST:
            snprintf(dom, sizeof dom, "%s in [%.0f, %.0f]", al_cfg_type_name(k->type), k->min,
                     k->max);
            break;
        case AL_CFG_T_FLOAT:
        case AL_CFG_T_DOUBLE:
        case AL_CFG_T_FLIST:
            snprintf(dom, sizeof dom, "%s in [%g, %g]", al_cfg_type_name(k->type), k->min, k->max);
            break;
        case AL_CFG_T_STR:
        case AL_CFG_T_BOOL: snprintf(dom, sizeof dom, "%s", al_cfg_type_name(k->type)); break;
        }
        char def[128];
        snprintf(def, sizeof def, "%s = %s", k->key, k->def[0] ? k->def : "\"\"");
        fprintf(f, "  %-30s %s\n      %s\n", def, dom, k->help);
    }
    fprintf(f, "\nnumbers: decimal or a fraction a/b (eps = 8/255); bools: 0/1; lists: "
               "comma-separated\n");
}

const char *al_config_enum_name(const char *section_dot_key, int value) {
    const al_cfg_key *k = lookup_dotted(section_dot_key);
    if (!k || k->type != AL_CFG_T_ENUM) return "?";
    for (int i = 0; i < k->n_enum; i++)
        if (k->enum_vals[i] == value) return k->enum_names[i];
    return "?";
}
