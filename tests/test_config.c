/* test_config.c: core/config (INI + --set, one schema table) and core/log (JSON quoting,
 * JSONL writer, progress line, rank filter).
 * Every error kind must give non-OK status and exactly the documented one-line message;
 * to_ini -> load must reproduce the struct for every key of the table; --set beats the file.
 * JSON output is checked by /usr/bin/python3's json module when it is present. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"
#include "harness/check.h"

/* Status and exact message of the last failure. */
static int expect_error(const char *what, al_status got, al_status want, const char *msg) {
    if (got != want) {
        fprintf(stderr, "  FAIL %s: status %s, expected %s (message: %s)\n", what,
                al_status_str(got), al_status_str(want), al_errmsg());
        return 1;
    }
    if (strcmp(al_errmsg(), msg) != 0) {
        fprintf(stderr, "  FAIL %s: message\n    got:      %s\n    expected: %s\n", what,
                al_errmsg(), msg);
        return 1;
    }
    if (strchr(al_errmsg(), '\n')) {
        fprintf(stderr, "  FAIL %s: message has a newline\n", what);
        return 1;
    }
    return 0;
}

static int case_defaults(void) {
    al_config c;
    al_config_defaults(&c);
    AL_EXPECT(al_config_validate(&c) == AL_OK, "defaults do not validate: %s", al_errmsg());
    AL_EXPECT(c.attack.eps == (float)(8.0 / 255.0), "attack.eps %.9g", c.attack.eps);
    AL_EXPECT(c.eval.alpha == (float)(2.0 / 255.0), "eval.alpha %.9g", c.eval.alpha);
    AL_EXPECT(c.train.method == AL_METHOD_PGD_AT && c.train.lr == 0.1 && c.train.epochs == 200,
              "train defaults");
    AL_EXPECT(c.train.milestones.n == 2 && c.train.milestones.v[0] == 100 &&
                  c.train.milestones.v[1] == 150,
              "milestones");
    AL_EXPECT(c.model.mean.n == 0 && c.model.std.n == 0, "mean/std default empty");
    AL_EXPECT(c.run.device == AL_DEV_CPU && c.run.precision == AL_FP32, "run defaults");
    /* "auto" resolved per method by validate. */
    AL_EXPECT(c.train.bn_mode_attack == AL_BN_ATTACK_TRAIN, "pgd_at bn mode %d",
              (int)c.train.bn_mode_attack);
    AL_EXPECT(c.attack.random_init == AL_RINIT_UNIFORM, "pgd_at random init");

    /* Schema sanity: unique keys, int bounds representable, enums non-empty. */
    int n;
    const al_cfg_key *k = al_config_keys(&n);
    AL_EXPECT(n > 50, "only %d keys", n);
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < i; j++)
            AL_EXPECT(strcmp(k[i].section, k[j].section) || strcmp(k[i].key, k[j].key),
                      "duplicate key %s.%s", k[i].section, k[i].key);
        if (k[i].type == AL_CFG_T_INT || k[i].type == AL_CFG_T_ILIST)
            AL_EXPECT(k[i].min >= INT32_MIN && k[i].max <= INT32_MAX, "%s.%s bounds", k[i].section,
                      k[i].key);
        if (k[i].type == AL_CFG_T_ENUM)
            AL_EXPECT(k[i].n_enum > 0, "%s.%s enum", k[i].section, k[i].key);
        AL_EXPECT(k[i].help && strlen(k[i].help) > 5, "%s.%s has no help", k[i].section, k[i].key);
    }
    return 0;
}

typedef struct err_case {
    const char *text; /* INI text, or "--set ASSIGNMENT" */
    al_status status;
    const char *msg;
} err_case;

static const err_case k_errors[] = {
    /* structure */
    {"[trian]\nlr = 0.1\n", AL_ERR_CONFIG,
     "exp.ini:1: unknown section [trian] (did you mean [train]?)"},
    {"[run]\n[optimizer_settings]\n", AL_ERR_CONFIG,
     "exp.ini:2: unknown section [optimizer_settings] (sections: run, data, model, train, attack, "
     "eval, dfa, ancra, drsl, iat, multibn, nofrost, meansparse)"},
    {"[train]\nlrr = 0.1\n", AL_ERR_CONFIG,
     "exp.ini:2: unknown key train.lrr (did you mean train.lr?)"},
    {"[train]\neps = 0.1\n", AL_ERR_CONFIG,
     "exp.ini:2: unknown key train.eps (did you mean attack.eps?)"},
    {"[data]\nfoo_bar_quux = 1\n", AL_ERR_CONFIG,
     "exp.ini:2: unknown key data.foo_bar_quux (advlab <verb> --help lists the keys)"},
    {"lr = 0.1\n", AL_ERR_CONFIG,
     "exp.ini:1: key 'lr' is outside a section (start with e.g. [train])"},
    {"[train]\nlr 0.1\n", AL_ERR_CONFIG,
     "exp.ini:2: syntax error: expected '[section]' or 'key = value', got 'lr 0.1'"},
    {"[train\nlr = 1\n", AL_ERR_CONFIG, "exp.ini:1: syntax error: '[train' has no closing ']'"},
    {"[train]\nlr = 0.1\nmomentum = 0.5\nlr = 0.2\n", AL_ERR_CONFIG,
     "exp.ini:4: train.lr given twice (first on line 2)"},
    /* line numbers count comments, blanks and indented lines (inih alone would read an
     * indented line as a continuation of the previous value) */
    {"; comment\n\n[train]\n# another\n  lr = 0.1\n\tmomentum = 2\n", AL_ERR_VALUE,
     "exp.ini:6: train.momentum = 2: must be in [0, 1]"},
    /* numbers */
    {"[data]\nbatch_size = abc\n", AL_ERR_VALUE,
     "exp.ini:2: data.batch_size = abc: 'abc' is not an integer"},
    {"[data]\nbatch_size = 12.5\n", AL_ERR_VALUE,
     "exp.ini:2: data.batch_size = 12.5: '12.5' is not an integer"},
    {"[data]\nbatch_size = 128x\n", AL_ERR_VALUE,
     "exp.ini:2: data.batch_size = 128x: trailing characters 'x' after the number"},
    {"[data]\nbatch_size =\n", AL_ERR_VALUE,
     "exp.ini:2: data.batch_size = : empty, expected an integer"},
    {"[train]\nlr = 0.1 # decayed later\n", AL_ERR_VALUE,
     "exp.ini:2: train.lr = 0.1 # decayed later: trailing characters ' # decayed later' after the "
     "number (inline comments start with ' ;')"},
    {"[train]\nlr = 0.1.2\n", AL_ERR_VALUE,
     "exp.ini:2: train.lr = 0.1.2: trailing characters '.2' after the number"},
    {"[train]\nlr = -0.1\n", AL_ERR_VALUE, "exp.ini:2: train.lr = -0.1: must be in [0, 10]"},
    {"[train]\nlr = nan\n", AL_ERR_VALUE,
     "exp.ini:2: train.lr = nan: 'nan' is not a finite number"},
    {"[train]\nlr = 1e999\n", AL_ERR_VALUE,
     "exp.ini:2: train.lr = 1e999: '1e999' is not a finite number"},
    {"[data]\nbatch_size = 0\n", AL_ERR_VALUE,
     "exp.ini:2: data.batch_size = 0: must be in [1, 1048576]"},
    {"[run]\nseed = 99999999999999999999\n", AL_ERR_VALUE,
     "exp.ini:2: run.seed = 99999999999999999999: '99999999999999999999' overflows a 64-bit "
     "integer"},
    {"[run]\nseed = -1\n", AL_ERR_VALUE,
     "exp.ini:2: run.seed = -1: must be in [0, 9007199254740992]"},
    /* fractions */
    {"[attack]\neps = 8/0\n", AL_ERR_VALUE, "exp.ini:2: attack.eps = 8/0: division by zero"},
    {"[attack]\neps = 8/\n", AL_ERR_VALUE, "exp.ini:2: attack.eps = 8/: empty, expected a number"},
    {"[attack]\neps = a/255\n", AL_ERR_VALUE, "exp.ini:2: attack.eps = a/255: 'a' is not a number"},
    {"[attack]\neps = 1/2/3\n", AL_ERR_VALUE,
     "exp.ini:2: attack.eps = 1/2/3: a fraction has one '/'"},
    {"[attack]\neps = -8/255\n", AL_ERR_VALUE,
     "exp.ini:2: attack.eps = -8/255: must be in [0, 1000]"},
    /* enums, bools, lists, strings */
    {"[train]\nmethod = pgd\n", AL_ERR_VALUE,
     "exp.ini:2: train.method = pgd: must be one of standard|pgd_at|fast_at|trades|mart|advprop|mdprop|multibn|iat|dfa|ancra|nofrost"},
    {"[train]\nnesterov = maybe\n", AL_ERR_VALUE,
     "exp.ini:2: train.nesterov = maybe: must be 0 or 1 (or true/false)"},
    {"[train]\nmilestones = 100,abc\n", AL_ERR_VALUE,
     "exp.ini:2: train.milestones = 100,abc: element 2 ('abc'): 'abc' is not an integer"},
    {"[train]\nmilestones = 150,100\n", AL_ERR_VALUE,
     "exp.ini:2: train.milestones = 150,100: must be strictly increasing (element 2: 100 after "
     "150)"},
    {"[train]\nmilestones = 100,\n", AL_ERR_VALUE,
     "exp.ini:2: train.milestones = 100,: element 2 (''): empty, expected an integer"},
    {"[model]\nstd = 0.5,0\n", AL_ERR_VALUE,
     "exp.ini:2: model.std = 0.5,0: element 2 ('0'): must be in [1e-06, 1e+06]"},
    /* --set */
    {"--set train.lr=-0.1", AL_ERR_VALUE, "--set: train.lr = -0.1: must be in [0, 10]"},
    {"--set train.lr", AL_ERR_CONFIG, "--set 'train.lr': expected section.key=value"},
    {"--set lr=0.1", AL_ERR_CONFIG, "--set 'lr=0.1': expected section.key=value"},
    {"--set trian.lr=1", AL_ERR_CONFIG, "--set: unknown section [trian] (did you mean [train]?)"},
    {"--set train.methd=pgd_at", AL_ERR_CONFIG,
     "--set: unknown key train.methd (did you mean train.method?)"},
    {"--set eval.attack=apgd", AL_ERR_VALUE,
     "--set: eval.attack = apgd: must be one of none|fgsm|pgd|cw|apgd-ce|apgd-dlr|apgd-t|fab|fab-t|square|autoattack"},
    {"--set run.name=a ;b", AL_ERR_VALUE,
     "--set: run.name = a ;b: contains ' ;', which an INI file reads as a comment"},
    {"--set data.batch_size= 64 x", AL_ERR_VALUE,
     "--set: data.batch_size = 64 x: trailing characters ' x' after the number"},
};

static int case_errors(void) {
    int bad = 0;
    for (size_t i = 0; i < AL_ARRAY_LEN(k_errors); i++) {
        const err_case *e = &k_errors[i];
        al_config c;
        al_config_defaults(&c);
        al_clear_error();
        al_status st = strncmp(e->text, "--set ", 6) == 0
                           ? al_config_set(&c, e->text + 6)
                           : al_config_load_string(&c, e->text, "exp.ini");
        char what[64];
        snprintf(what, sizeof what, "error case %zu", i);
        bad += expect_error(what, st, e->status, e->msg);
    }
    fprintf(stderr, "  %zu error cases, %d wrong\n", AL_ARRAY_LEN(k_errors), bad);
    return bad != 0;
}

static int case_file_errors(void) {
    al_config c;
    al_config_defaults(&c);
    al_status st = al_config_load_file(&c, "/nonexistent/advlab/exp.ini");
    if (expect_error("missing file", st, AL_ERR_IO,
                     "/nonexistent/advlab/exp.ini: cannot open config: No such file or directory"))
        return 1;
    /* Over-long line (inih's line buffer is 200 bytes). */
    char path[512];
    snprintf(path, sizeof path, "%s/cfg_long.ini", al_test_tmpdir());
    FILE *f = fopen(path, "w");
    AL_EXPECT(f, "cannot write %s", path);
    fprintf(f, "[run]\nname = x\nout_dir = ");
    for (int i = 0; i < 300; i++) fputc('d', f);
    fputc('\n', f);
    fclose(f);
    st = al_config_load_file(&c, path);
    char want[600];
    snprintf(want, sizeof want, "%s:3: line longer than 197 characters", path);
    return expect_error("long line", st, AL_ERR_CONFIG, want);
}

static int case_values(void) {
    al_config c;
    al_config_defaults(&c);
    const char *ini = "\xEF\xBB\xBF; BOM, CRLF and comments\r\n"
                      "[attack]\r\n"
                      "eps = 8/255 ; inline comment\r\n"
                      "alpha = 2 / 255\n"
                      "[train]\n"
                      "lr = 1/10\n"
                      "nesterov = TRUE\n"
                      "method = TRADES\n"
                      "milestones = 75, 90 ,100\n"
                      "weight_decay = 2e-4\n"
                      "[model]\n"
                      "mean = 0.4914, 0.4822, 1/3\n"
                      "std = 0.2471,0.2435,0.2616\n"
                      "[run]\n"
                      "name = my run: v2\n"
                      "seed = 9007199254740992\n";
    AL_EXPECT(al_config_load_string(&c, ini, "vals.ini") == AL_OK, "%s", al_errmsg());
    AL_EXPECT(c.attack.eps == (float)(8.0 / 255.0), "eps %.9g", c.attack.eps);
    AL_EXPECT(c.attack.alpha == (float)(2.0 / 255.0), "alpha %.9g", c.attack.alpha);
    AL_EXPECT(c.train.lr == 1.0 / 10.0, "lr %.17g", c.train.lr);
    AL_EXPECT(c.train.nesterov == 1 && c.train.method == AL_METHOD_TRADES, "bool/enum");
    AL_EXPECT(c.train.milestones.n == 3 && c.train.milestones.v[2] == 100, "milestones");
    AL_EXPECT(c.train.weight_decay == 2e-4, "wd");
    AL_EXPECT(c.model.mean.n == 3 && c.model.mean.v[2] == (float)(1.0 / 3.0), "mean");
    AL_EXPECT(!strcmp(c.run.name, "my run: v2"), "name '%s'", c.run.name);
    AL_EXPECT(c.run.seed == 9007199254740992LL, "seed");
    char buf[64];
    AL_EXPECT(al_config_get(&c, "attack.eps", buf, sizeof buf) == AL_OK, "get");
    AL_EXPECT(!strcmp(buf, "0.03137255"), "eps text %s", buf);
    AL_EXPECT(al_config_get(&c, "train.lr", buf, sizeof buf) == AL_OK && !strcmp(buf, "0.1"),
              "lr text %s", buf);
    AL_EXPECT(!strcmp(al_config_enum_name("train.method", AL_METHOD_MART), "mart"), "enum name");
    /* TRADES resolves its "auto" fields to eval-mode BN and the 0.001 N(0,1) start. */
    AL_EXPECT(al_config_validate(&c) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(c.train.bn_mode_attack == AL_BN_ATTACK_EVAL &&
                  c.attack.random_init == AL_RINIT_NORMAL,
              "trades auto");
    /* Explicit values are not overridden by the method. */
    al_config_defaults(&c);
    AL_EXPECT(al_config_set(&c, "train.method=fast_at") == AL_OK, "set");
    AL_EXPECT(al_config_set(&c, "attack.random_init = none") == AL_OK, "set");
    AL_EXPECT(al_config_set(&c, "eval.attack=cw") == AL_OK, "set");
    AL_EXPECT(al_config_validate(&c) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(c.train.bn_mode_attack == AL_BN_ATTACK_TRAIN && c.attack.random_init == AL_RINIT_NONE,
              "fast_at auto");
    AL_EXPECT(c.eval.loss == AL_LOSS_CW, "cw attack implies cw loss");
    return 0;
}

static int case_validate(void) {
    static const struct {
        const char *sets[3];
        const char *msg;
    } cases[] = {
        {{"train.nesterov=1", "train.momentum=0"},
         "config: train.nesterov = 1 requires train.momentum > 0 (momentum = 0)"},
        {{"model.mean=0.5,0.5,0.5", "model.std=0.25"},
         "config: model.mean has 3 values but model.std has 1 (one per input channel, or both "
         "empty)"},
        {{"train.cycle_momentum=1"},
         "config: train.cycle_momentum = 1 requires train.lr_schedule = cyclic or onecycle "
         "(lr_schedule = multistep)"},
        {{"train.cycle_momentum=1", "train.lr_schedule=cyclic", "train.momentum_min=0.95"},
         "config: train.momentum_min = 0.95 must be <= train.momentum = 0.9"},
        {{"train.epochs=5", "train.warmup_epochs=6"},
         "config: train.warmup_epochs = 6 exceeds train.epochs = 5"},
        {{"run.name=a/b"}, "config: run.name = 'a/b': must be non-empty without '/'"},
        {{"train.lr_schedule=onecycle", "train.lr=0"},
         "config: train.lr_schedule = onecycle needs a peak lr > 0 (train.lr_max, or train.lr when "
         "lr_max = 0)"},
        {{"train.method=mart", "drsl.weight=0.001"},
         "config: drsl.weight = 0.001 is not applied by train.method = mart (only standard, "
         "pgd_at, fast_at, trades)"},
        {{"train.method=trades", "drsl.weight=0.001", "drsl.ce_weight=0.5"},
         "config: drsl.ce_weight = 0.5 is not applied by train.method = trades (TRADES keeps its "
         "own CE + beta KL; leave ce_weight = 1)"},
        {{"run.layout=nhwc"},
         "config: run.layout = nhwc needs run.device = cuda (the CPU reference ops are NCHW)"},
    };
    int bad = 0;
    for (size_t i = 0; i < AL_ARRAY_LEN(cases); i++) {
        al_config c;
        al_config_defaults(&c);
        for (int j = 0; j < 3 && cases[i].sets[j]; j++)
            AL_EXPECT(al_config_set(&c, cases[i].sets[j]) == AL_OK, "%s", al_errmsg());
        char what[64];
        snprintf(what, sizeof what, "validate case %zu", i);
        bad += expect_error(what, al_config_validate(&c), AL_ERR_VALUE, cases[i].msg);
    }
    return bad != 0;
}

static int write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    fputs(text, f);
    return fclose(f) != 0;
}

static int case_precedence(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/cfg_prec.ini", al_test_tmpdir());
    AL_EXPECT(!write_file(path, "[train]\nlr = 0.05\nepochs = 7\n[data]\nbatch_size = 64\n"),
              "write %s", path);
    const char *sets[] = {"train.lr=0.2", "data.batch_size=32", "data.batch_size=16"};
    al_config c;
    AL_EXPECT(al_config_from_args(&c, path, sets, 3) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(c.train.lr == 0.2, "--set must win over the file: lr %g", c.train.lr);
    AL_EXPECT(c.train.epochs == 7, "file value kept: epochs %d", c.train.epochs);
    AL_EXPECT(c.data.batch_size == 16, "the last --set wins: %d", c.data.batch_size);
    /* A bad --set is reported as such even with a file. */
    const char *bad[] = {"train.lr=11"};
    return expect_error("bad --set with file", al_config_from_args(&c, path, bad, 1), AL_ERR_VALUE,
                        "--set: train.lr = 11: must be in [0, 10]");
}

/* A non-default value of key k in config syntax (exercises every type's printer/parser). */
static void other_value(const al_cfg_key *k, int i, char *buf, size_t n) {
    double f = 0.137 + 0.011 * i; /* fraction of the range, different per key */
    switch (k->type) {
    case AL_CFG_T_INT:
    case AL_CFG_T_INT64: {
        double hi = AL_MIN(k->max, 1e6);
        long long v = (long long)(k->min + (f - (long)f) * (hi - k->min));
        if (v == atoll(k->def)) v = v + 1 <= (long long)hi ? v + 1 : v - 1;
        snprintf(buf, n, "%lld", v);
        break;
    }
    case AL_CFG_T_FLOAT:
    case AL_CFG_T_DOUBLE:
        snprintf(buf, n, "%.17g", k->min + f * (AL_MIN(k->max, 1.0) - k->min) / 7.0);
        break;
    case AL_CFG_T_BOOL: snprintf(buf, n, "%s", atoi(k->def) ? "no" : "yes"); break;
    case AL_CFG_T_ENUM: /* the last word that is not the default */
        for (int e = k->n_enum - 1; e >= 0; e--)
            if (strcmp(k->enum_names[e], k->def) != 0) {
                snprintf(buf, n, "%s", k->enum_names[e]);
                break;
            }
        break;
    case AL_CFG_T_STR: snprintf(buf, n, "value %d of %s: a/b=c; \"q\" \\ é", i, k->key); break;
    case AL_CFG_T_ILIST: snprintf(buf, n, "%d,%d", (int)k->min + 3, (int)k->min + 40 + i); break;
    case AL_CFG_T_FLIST: snprintf(buf, n, "0.3,1/7,%.9g", 0.0001 * (i + 1)); break;
    }
}

static int case_roundtrip(void) {
    al_config a, b;
    al_config_defaults(&a);
    int n;
    const al_cfg_key *k = al_config_keys(&n);
    /* The struct must differ from the defaults in EVERY key, so the round trip tests each. */
    for (int i = 0; i < n; i++) {
        char val[256], assign[400];
        other_value(&k[i], i, val, sizeof val);
        snprintf(assign, sizeof assign, "%s.%s=%s", k[i].section, k[i].key, val);
        AL_EXPECT(al_config_set(&a, assign) == AL_OK, "%s: %s", assign, al_errmsg());
    }
    al_config d;
    al_config_defaults(&d);
    char tmp[64];
    AL_EXPECT(al_config_get(&a, "train", tmp, sizeof tmp) == AL_ERR_CONFIG, "get of 'train'");
    for (int i = 0; i < n; i++) {
        al_config one = d;
        char val[256];
        char key[128];
        snprintf(key, sizeof key, "%s.%s", k[i].section, k[i].key);
        AL_EXPECT(al_config_get(&a, key, val, sizeof val) == AL_OK, "get %s", key);
        char assign[400];
        snprintf(assign, sizeof assign, "%s=%s", key, val);
        AL_EXPECT(al_config_set(&one, assign) == AL_OK, "%s", al_errmsg());
        AL_EXPECT(!al_config_equal(&one, &d, NULL, 0), "%s = %s equals its default", key, val);
    }
    char *ini = NULL;
    AL_EXPECT(al_config_to_ini(&a, &ini) == AL_OK, "to_ini");
    al_config_defaults(&b);
    al_status st = al_config_load_string(&b, ini, "resolved.ini");
    if (st != AL_OK) fprintf(stderr, "%s\n", ini);
    AL_EXPECT(st == AL_OK, "reload: %s", al_errmsg());
    char diff[512];
    int eq = al_config_equal(&a, &b, diff, sizeof diff);
    AL_EXPECT(eq, "round trip differs: %s", diff);
    /* Text is a fixed point too. */
    char *ini2 = NULL;
    AL_EXPECT(al_config_to_ini(&b, &ini2) == AL_OK && !strcmp(ini, ini2), "to_ini not stable");
    /* Every key appears once as "key = ". */
    for (int i = 0; i < n; i++) {
        char pat[128];
        snprintf(pat, sizeof pat, "\n%s =", k[i].key);
        AL_EXPECT(strstr(ini, pat), "to_ini lacks %s", k[i].key);
    }
    /* The defaults round-trip as well (empty lists and strings). */
    al_config_defaults(&a);
    al_config_validate(&a);
    free(ini);
    AL_EXPECT(al_config_to_ini(&a, &ini) == AL_OK, "to_ini");
    al_config_defaults(&b);
    AL_EXPECT(al_config_load_string(&b, ini, "defaults.ini") == AL_OK, "%s", al_errmsg());
    al_config_validate(&b);
    AL_EXPECT(al_config_equal(&a, &b, diff, sizeof diff), "defaults round trip: %s", diff);
    AL_EXPECT(strstr(ini, "\ndataset =\n") && !strstr(ini, " \n"), "trailing blanks in:\n%s", ini);
    AL_EXPECT(!al_config_equal(&a, &d, diff, sizeof diff) &&
                  !strcmp(diff, "train.bn_mode_attack: train vs auto"),
              "equal() diff text: %s", diff);
    free(ini);
    free(ini2);
    return 0;
}

static int have_python(void) { return access(al_test_python(), X_OK) == 0; }

/* Run python3 -c on a file; returns its exit status. */
static int py_check(const char *code, const char *path) {
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s -c '%s' '%s'", al_test_python(), code, path);
    int rc = system(cmd);
    return rc == -1 ? -1 : WEXITSTATUS(rc);
}

static int case_json(void) {
    char q[64];
    AL_EXPECT(!strcmp(al_json_quote(q, sizeof q, "a\"b\\c\n\t\x01\xc3\xa9"),
                      "\"a\\\"b\\\\c\\n\\t\\u0001\xc3\xa9\""),
              "quote: %s", q);
    /* Truncation keeps valid JSON: whole escapes / UTF-8 characters only. */
    AL_EXPECT(!strcmp(al_json_quote(q, 7, "ab\xc3\xa9zz"), "\"ab\xc3\xa9\""), "cut: %s", q);
    AL_EXPECT(!strcmp(al_json_quote(q, 6, "ab\xc3\xa9zz"), "\"ab\""), "cut utf8: %s", q);
    AL_EXPECT(!strcmp(al_json_quote(q, 5, "a\"b"), "\"a\""), "cut escape: %s", q);

    al_config c;
    al_config_defaults(&c);
    AL_EXPECT(al_config_set(&c, "run.name=quote\" back\\slash") == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_config_set(&c, "model.mean=0.5,0.25") == AL_OK &&
                  al_config_set(&c, "model.std=1,2") == AL_OK,
              "set");
    AL_EXPECT(al_config_validate(&c) == AL_OK, "%s", al_errmsg());
    char path[512];
    snprintf(path, sizeof path, "%s/cfg_metrics.jsonl", al_test_tmpdir());
    al_jsonl *j = NULL;
    AL_EXPECT(al_jsonl_open(&j, path, &c, 0) == AL_OK, "%s", al_errmsg());
    char name[64];
    AL_EXPECT(al_jsonl_write(j, "step", "\"step\":%d,\"loss\":%.6g,\"acc\":%g,\"note\":%s", 1, NAN,
                             -INFINITY, al_json_quote(name, sizeof name, "nan, inf")) == AL_OK,
              "write");
    AL_EXPECT(al_jsonl_write(j, "epoch", "\"epoch\":%d,\"lr\":%.17g,\"v\":[inf,1]", 3, 0.1) ==
                  AL_OK,
              "write");
    AL_EXPECT(al_jsonl_write(j, "empty", NULL) == AL_OK, "write");
    /* Flushed per record: readable before close. */
    FILE *f = fopen(path, "r");
    AL_EXPECT(f, "open %s", path);
    char line[8192];
    int n_lines = 0;
    char step_line[8192] = "";
    while (fgets(line, sizeof line, f)) {
        if (n_lines == 1) snprintf(step_line, sizeof step_line, "%s", line);
        n_lines++;
    }
    fclose(f);
    AL_EXPECT(n_lines == 4, "%d lines before close", n_lines);
    /* "time" varies: compare what follows it. */
    const char *rest = strstr(step_line, ",\"step\"");
    AL_EXPECT(rest &&
                  !strcmp(rest, ",\"step\":1,\"loss\":null,\"acc\":null,\"note\":\"nan, inf\"}\n"),
              "step record: %s", step_line);
    AL_EXPECT(!strncmp(step_line, "{\"type\":\"step\",\"time\":", 22), "record head: %s",
              step_line);
    AL_EXPECT(al_jsonl_close(j) == AL_OK, "close");
    if (!have_python()) {
        fprintf(stderr, "  no %s: JSON syntax not checked\n", al_test_python());
        return 0;
    }
    static const char *const code =
        "import json,sys\n"
        "L=[json.loads(x) for x in open(sys.argv[1])]\n"
        "h=L[0]; c=h[\"config\"]\n"
        "assert h[\"type\"]==\"header\" and h[\"version\"] and h[\"date\"].endswith(\"Z\"), h\n"
        "assert c[\"run\"][\"name\"]==\"quote\\\" back\\\\slash\", c[\"run\"][\"name\"]\n"
        "assert c[\"train\"][\"lr\"]==0.1 and c[\"train\"][\"milestones\"]==[100,150]\n"
        "assert c[\"model\"][\"std\"]==[1,2] and c[\"train\"][\"nesterov\"] is False\n"
        "assert c[\"attack\"][\"eps\"]==0.03137255 and c[\"train\"][\"method\"]==\"pgd_at\"\n"
        "assert L[1][\"loss\"] is None and L[2][\"v\"]==[None,1] and L[3][\"type\"]==\"empty\"\n";
    AL_EXPECT(py_check(code, path) == 0, "python json check of %s failed", path);
    return 0;
}

static int case_log(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    AL_EXPECT(mem, "open_memstream");
    al_log_set_stream(mem, 0);
    al_log_init(1, 4);
    al_log_info("hidden on rank 1");
    al_log_any(AL_LOG_WARN, "nan on rank %d", 1);
    al_log_set_all_ranks(1);
    al_log_info("shown with all_ranks");
    al_log_set_all_ranks(0);
    al_log_init(0, 1);
    al_log_set_level(AL_LOG_WARN);
    al_log_info("below level");
    al_log_set_level(AL_LOG_INFO);
    al_log_info("rank 0 %s", "ok");
    fflush(mem);
    al_log_set_stream(NULL, -1);
    fclose(mem);
    int ok = !strstr(buf, "hidden") && strstr(buf, "] [rank 1] warning: nan on rank 1\n") &&
             strstr(buf, "] [rank 1] shown with all_ranks\n") && !strstr(buf, "below level") &&
             strstr(buf, "] rank 0 ok\n") && buf[0] == '[';
    if (!ok) fprintf(stderr, "  log output:\n%s", buf);
    free(buf);
    AL_EXPECT(ok, "log filtering/format");

    al_progress p;
    al_progress_begin(&p, "epoch 3/10", 60000);
    p.done = 512;
    p.loss = 1.2344;
    p.acc = 0.567;
    char line[256];
    al_progress_format(&p, 512.0 / 1234.0, line, sizeof line);
    AL_EXPECT(!strcmp(line, "epoch 3/10 [  512/60000] 1234 img/s ETA 00:48 loss 1.234 acc 56.7%"),
              "progress: '%s'", line);
    p.done = 0;
    p.loss = NAN;
    p.acc = NAN;
    al_progress_format(&p, 0.0, line, sizeof line);
    AL_EXPECT(!strcmp(line, "epoch 3/10 [    0/60000] - img/s ETA --:--"), "progress: '%s'", line);
    p.done = 1;
    al_progress_format(&p, 1.0, line, sizeof line);
    AL_EXPECT(!strcmp(line, "epoch 3/10 [    1/60000] 1 img/s ETA 16:39:59"), "progress: '%s'",
              line);

    /* On a "TTY" the line is drawn with \r and cleared before a log message. */
    buf = NULL;
    mem = open_memstream(&buf, &len);
    al_log_set_stream(mem, 1);
    al_progress_begin(&p, "eval", 100);
    al_progress_update(&p, 50, NAN, 0.5);
    al_log_info("message");
    al_progress_update(&p, 100, NAN, 0.5);
    al_progress_end(&p);
    fflush(mem);
    al_log_set_stream(NULL, -1);
    fclose(mem);
    ok = !strncmp(buf, "\reval [ 50/100] ", 16) && strstr(buf, "acc 50.0%\033[K\r\033[K[") &&
         strstr(buf, "] message\n\reval [100/100] ") && buf[strlen(buf) - 1] == '\n';
    if (!ok) fprintf(stderr, "  tty output: %s\n", buf);
    free(buf);
    AL_EXPECT(ok, "tty progress");
    return 0;
}

static int case_help(void) {
    char *buf = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&buf, &len);
    AL_EXPECT(mem, "open_memstream");
    al_config_print_help(mem);
    fclose(mem);
    int n;
    const al_cfg_key *k = al_config_keys(&n);
    int ok = 1;
    for (int i = 0; i < n && ok; i++) {
        char pat[128];
        snprintf(pat, sizeof pat, "  %s = %s", k[i].key, k[i].def[0] ? k[i].def : "\"\"");
        if (!strstr(buf, pat) || !strstr(buf, k[i].help)) {
            fprintf(stderr, "  help lacks '%s' or its text\n", pat);
            ok = 0;
        }
    }
    ok = ok && strstr(buf, "standard|pgd_at|fast_at|trades|mart") &&
         strstr(buf, "double in [0, 10]") && strstr(buf, "[attack]");
    free(buf);
    AL_EXPECT(ok, "help text");
    return 0;
}

int main(int argc, char **argv) {
    static const al_case cases[] = {
        {"defaults", case_defaults},
        {"errors", case_errors},
        {"file_errors", case_file_errors},
        {"values", case_values},
        {"validate", case_validate},
        {"precedence", case_precedence},
        {"roundtrip", case_roundtrip},
        {"json", case_json},
        {"log", case_log},
        {"help", case_help},
    };
    return al_run_cases(cases, (int)AL_ARRAY_LEN(cases), argc, argv);
}
