/* cmd_attack.c: advlab attack / advlab eval -- clean and robust accuracy of a checkpoint on N
 * points of a dataset split, optionally writing the attack output file (formats.md §3).
 * Attack settings are the [eval] config keys (one schema table); every key is also a flag:
 * --eps 0.1 == --set eval.eps=0.1 (tried in sections eval, run, data; '-' -> '_').
 * AutoAttack and its attacks (eval.attack = autoattack|apgd-ce|apgd-dlr|apgd-t|fab|fab-t|square)
 * run through attacks/autoattack.h; their settings are [eval] rows too (version, attacks,
 * state_path, state_every, apgd_iter, apgd_restarts, n_target_classes, eot_iter, fab_iter,
 * square_queries), so an INI file, --set eval.version=plus and the flags (--version plus,
 * --attacks, --state = eval.state_path, --apgd-iter, ...) all set the same row; the resolved
 * rows are printed ("settings: eval.version=standard ..."). --resume is a flag only (an action,
 * not a setting). Flag conveniences kept from before the rows existed: --version/--attacks on
 * the command line without an attack there select eval.attack = autoattack; --attacks without
 * --version selects eval.version = custom. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>

#include "attacks/autoattack.h"
#include "core/checkpoint.h"
#include "core/config.h"
#include "core/evaluate.h"
#include "core/log.h"
#include "core/ops/ra.h"
#include "datasets/h5data.h"
#include "datasets/sampler.h"
#include "tools/cli.h"

static void usage(FILE *f, const char *verb) {
    fprintf(f,
            "usage: advlab %s --ckpt CKPT.h5 --data DATA.h5 [--split test] [CONFIG.ini]\n"
            "         [--attack none|fgsm|pgd|cw] [--norm linf|l2] [--eps E] [--alpha A] [--steps K]\n"
            "         [--restarts R] [--random-init uniform|normal_0.001|none] [--loss ce|cw]\n"
            "         [--n N] [--bs B] [--seed S] [--device cpu|cuda] [--threads T]\n"
            "         [--save OUT.h5] [--set section.key=value ...]\n"
            "  Reports clean and robust accuracy on the first N points of the split (N = 0: all).\n"
            "  Numbers accept fractions (--eps 8/255). --save writes the attack output file\n"
            "  (formats.md §3): adversarial images, labels, index, clean/robust flags.\n"
            "  Every [eval], [run] and [data] config key is also a flag (--KEY VALUE); see\n"
            "  advlab train --help for the full key table.\n"
            "\n"
            "AutoAttack (Croce & Hein 2020; --norm, --eps, --n, --bs, --seed, --device apply).\n"
            "Each setting is an [eval] config row; the flag is its alias (INI file, --set\n"
            "eval.KEY=V and --KEY V are the same). The resolved rows are printed as 'settings:'.\n"
            "  --attack autoattack        eval.attack: the protocol, --version standard (default):\n"
            "                             APGD-CE, APGD-T (9 targets), FAB-T (9 targets), Square\n"
            "  --attack apgd-ce|apgd-dlr|apgd-t|fab|fab-t|square   one attack, standard settings\n"
            "  --version standard|plus|rand|custom   eval.version. plus: + APGD-DLR, FAB, 5\n"
            "                             restarts; rand: APGD-CE/DLR with EOT 20 (randomized\n"
            "                             models); without --attack it selects --attack autoattack\n"
            "  --attacks a,b,...          eval.attacks: the custom list (needs eval.version =\n"
            "                             custom, which --attacks alone implies; reference\n"
            "                             constructor settings: APGD/FAB 5 restarts)\n"
            "  --state FILE               eval.state_path: resumable state (saved atomically at\n"
            "                             most every --state-every S seconds (eval.state_every,\n"
            "                             60) and after each attack)\n"
            "  --resume                   continue from the state file (same result as one run);\n"
            "                             a flag only, not a config row\n"
            "  non-standard budgets (the run is then named *-custom):\n"
            "  --apgd-iter N (eval.apgd_iter, 100)  --apgd-restarts R (eval.apgd_restarts, 0 =\n"
            "  per version)  --n-target-classes T (eval.n_target_classes, 9)  --eot-iter E\n"
            "  (eval.eot_iter, 0 = per version)  --fab-iter N (eval.fab_iter, 100)\n"
            "  --square-queries Q (eval.square_queries, 5000)\n"
            "  Gradient-masking flags are printed as warnings; the adversarial images are checked\n"
            "  against the threat model at the end. SIGTERM/SIGINT save the state and exit 3.\n",
            verb);
}

/* Map --flag to a config key: aliases first, then eval.<k>, run.<k>, data.<k>. */
static int flag_to_key(const char *flag, char *key, size_t n) {
    static const char *alias[][2] = {{"n", "eval.n_points"},         {"bs", "data.eval_batch_size"},
                                     {"split", "data.test_split"},   {"data", "data.dataset"},
                                     {"attack", "eval.attack"},      {"state", "eval.state_path"},
                                     {NULL, NULL}};
    for (int i = 0; alias[i][0]; i++)
        if (!strcmp(flag, alias[i][0])) {
            snprintf(key, n, "%s", alias[i][1]);
            return 1;
        }
    char k[128];
    snprintf(k, sizeof k, "%s", flag);
    for (char *p = k; *p; p++)
        if (*p == '-') *p = '_';
    int n_keys = 0;
    const al_cfg_key *keys = al_config_keys(&n_keys);
    static const char *secs[] = {"eval", "run", "data"};
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < n_keys; i++)
            if (!strcmp(keys[i].section, secs[s]) && !strcmp(keys[i].key, k)) {
                snprintf(key, n, "%s.%s", secs[s], k);
                return 1;
            }
    return 0;
}

/* ---------------------------------------------------------------- AutoAttack settings */

/* The [eval] rows that only the AutoAttack attacks read, with their flags (for messages). */
static const char *const k_aa_rows[][2] = {
    {"eval.version", "--version"},         {"eval.attacks", "--attacks"},
    {"eval.state_path", "--state"},        {"eval.state_every", "--state-every"},
    {"eval.apgd_iter", "--apgd-iter"},     {"eval.apgd_restarts", "--apgd-restarts"},
    {"eval.n_target_classes", "--n-target-classes"}, {"eval.eot_iter", "--eot-iter"},
    {"eval.fab_iter", "--fab-iter"},       {"eval.square_queries", "--square-queries"}};

/* What the command line (flags and --set, not the INI file) set: the flag conveniences and the
 * "applies to AutoAttack only" check need it. */
typedef struct cmdline_keys {
    int attack, version, attacks;
    int aa_row; /* index + 1 into k_aa_rows of the first AutoAttack-only row given */
} cmdline_keys;

static void note_key(cmdline_keys *k, const char *assignment) {
    char key[160];
    const char *eq = strchr(assignment, '=');
    size_t n = eq ? (size_t)(eq - assignment) : strlen(assignment);
    while (n && (assignment[n - 1] == ' ' || assignment[n - 1] == '\t')) n--;
    while (n && (*assignment == ' ' || *assignment == '\t')) assignment++, n--;
    if (n >= sizeof key) return;
    memcpy(key, assignment, n);
    key[n] = 0;
    if (!strcmp(key, "eval.attack")) k->attack = 1;
    if (!strcmp(key, "eval.version")) k->version = 1;
    if (!strcmp(key, "eval.attacks")) k->attacks = 1;
    for (size_t i = 0; i < AL_ARRAY_LEN(k_aa_rows); i++)
        if (!k->aa_row && !strcmp(key, k_aa_rows[i][0])) k->aa_row = (int)i + 1;
}

/* The AutoAttack run the resolved [eval] rows describe. */
typedef struct aa_plan {
    int on;           /* eval.attack is an AutoAttack attack */
    int single;       /* one attack (eval.attack = apgd-ce, ...) rather than the protocol */
    al_aa_attack one;
    al_aa_version ver;
    int overridden;   /* a budget differs from the version's: the run is named *-custom */
    al_aa_spec spec;  /* attacks and per-attack settings (batch, seed, state: set by the caller) */
} aa_plan;

/* Resolve eval.attack/version/attacks and the budgets into p (norm and eps from [eval]).
 * Usage errors are AL_ERR_VALUE naming the rows and their flags. Writes the resolved values
 * back into cfg: eval.apgd_restarts and eval.eot_iter (0 = per version) become the numbers
 * used, so the printed rows are the ones that ran. */
static al_status aa_plan_make(al_config *cfg, aa_plan *p) {
    memset(p, 0, sizeof *p);
    al_cfg_eval *e = &cfg->eval;
    const char *attack = al_config_enum_name("eval.attack", (int)e->attack);
    if (e->attack == AL_EVAL_AUTOATTACK) {
        p->on = 1;
    } else if (al_aa_attack_parse(attack, &p->one) == AL_OK) {
        p->on = p->single = 1;
    } else {
        al_clear_error();
        return AL_OK; /* none, fgsm, pgd, cw */
    }
    AL_TRY(al_aa_version_parse(al_config_enum_name("eval.version", (int)e->version), &p->ver));
    const char *vname = al_aa_version_name(p->ver);
    al_aa_attack list[AL_AA_STATE_MAX_ATTACKS];
    int n_list = 0;
    if (e->attacks[0]) {
        AL_TRY(al_aa_attack_list_parse(e->attacks, list, &n_list));
        if (p->ver != AL_AA_CUSTOM)
            return AL_FAIL(AL_ERR_VALUE,
                           "eval.attacks = %s (--attacks) is the custom list: it needs "
                           "eval.version = custom (--version custom), got %s",
                           e->attacks, vname);
    } else if (p->ver == AL_AA_CUSTOM) {
        return AL_FAIL(AL_ERR_VALUE, "eval.version = custom (--version custom) needs eval.attacks "
                                     "= a,b,... (--attacks)");
    }
    if (p->single && (p->ver != AL_AA_STANDARD || n_list))
        return AL_FAIL(AL_ERR_VALUE,
                       "eval.attack = %s runs one attack; eval.version/eval.attacks (--version/"
                       "--attacks) apply to eval.attack = autoattack",
                       attack);
    al_aa_spec base;
    const al_norm norm = e->norm == AL_NORM_L2 ? AL_L2 : AL_LINF;
    AL_TRY(al_aa_spec_make(&base, p->ver, norm, e->eps, list, n_list));
    al_aa_spec s = base;
    if (p->single) {
        s.n_attacks = 1;
        s.attacks[0] = p->one;
    }
    s.apgd.n_iter = s.apgd_t.n_iter = e->apgd_iter;
    if (e->apgd_restarts > 0) s.apgd.n_restarts = e->apgd_restarts;
    s.apgd_t.n_target_classes = s.fab.n_target_classes = e->n_target_classes;
    if (e->eot_iter > 0) s.apgd.eot_iter = e->eot_iter;
    s.fab.n_iter = e->fab_iter;
    s.square.n_queries = e->square_queries;
    p->overridden = s.apgd.n_iter != base.apgd.n_iter || s.apgd_t.n_iter != base.apgd_t.n_iter ||
                    s.apgd.n_restarts != base.apgd.n_restarts ||
                    s.apgd_t.n_target_classes != base.apgd_t.n_target_classes ||
                    s.fab.n_target_classes != base.fab.n_target_classes ||
                    s.apgd.eot_iter != base.apgd.eot_iter || s.fab.n_iter != base.fab.n_iter ||
                    s.square.n_queries != base.square.n_queries;
    e->apgd_restarts = s.apgd.n_restarts;
    e->eot_iter = s.apgd.eot_iter;
    p->spec = s;
    return AL_OK;
}

/* "settings: eval.attack=autoattack eval.version=standard ...": the resolved rows of the run. */
static void print_aa_settings(const al_config *cfg) {
    static const char *const keys[] = {"eval.attack",      "eval.version",
                                       "eval.attacks",     "eval.apgd_iter",
                                       "eval.apgd_restarts", "eval.n_target_classes",
                                       "eval.eot_iter",    "eval.fab_iter",
                                       "eval.square_queries", "eval.state_path",
                                       "eval.state_every", "run.seed"};
    printf("settings:");
    for (size_t i = 0; i < AL_ARRAY_LEN(keys); i++) {
        char v[AL_CFG_STR_LEN + 8];
        if (al_config_get(cfg, keys[i], v, sizeof v) != AL_OK) {
            al_clear_error();
            snprintf(v, sizeof v, "?");
        }
        printf(" %s=%s", keys[i], v);
    }
    printf("\n");
}

static volatile int g_stop;
static void on_signal(int sig) { g_stop = sig; }

/* Host memory this process may still use: MemAvailable, capped by RLIMIT_AS minus the current
 * virtual size. 0 = unknown. */
static size_t host_bytes_available(void) {
    size_t avail = 0;
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        unsigned long long kb;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1) avail = (size_t)kb * 1024;
        fclose(f);
    }
    struct rlimit rl;
    if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
        size_t used = 0;
        FILE *s = fopen("/proc/self/statm", "r");
        unsigned long long pages;
        if (s && fscanf(s, "%llu", &pages) == 1) used = (size_t)pages * 4096;
        if (s) fclose(s);
        size_t lim = (size_t)rl.rlim_cur > used ? (size_t)rl.rlim_cur - used : 0;
        if (!avail || lim < avail) avail = lim;
    }
    return avail;
}

/* Refuse a batch whose memory plan exceeds what the host has, with the numbers. */
static al_status plan_memory(const al_ctx *ctx, const al_model *m, int bs, size_t attack_bytes,
                             size_t data_bytes) {
    const size_t model = al_aa_model_bytes(m, bs);
    const size_t need = model + attack_bytes + data_bytes;
    if (ctx->device != AL_DEV_CPU) return AL_OK; /* device allocations report their own OOM */
    const size_t avail = host_bytes_available();
    if (avail && need > avail)
        return AL_FAIL(AL_ERR_OOM,
                       "--bs %d: the evaluation needs ~%zu bytes (%.2f GiB: model activations for "
                       "batch %d %zu, attack buffers %zu, images %zu) but only %zu bytes (%.2f "
                       "GiB) of host memory are available; lower --bs",
                       bs, need, need / 1073741824.0, bs, model, attack_bytes, data_bytes, avail,
                       avail / 1073741824.0);
    return AL_OK;
}

static al_status setup_model(al_ctx *ctx, al_model *m, int bs) {
    al_status st = al_model_setup(ctx, m, bs, 1);
    if (st == AL_ERR_OOM) {
        char prev[600];
        snprintf(prev, sizeof prev, "%s", al_errmsg());
        return AL_FAIL(AL_ERR_OOM,
                       "--bs %d: model %s activations for the batch (~%zu bytes) do not fit: %s; "
                       "lower --bs",
                       bs, m->arch, al_aa_model_bytes(m, bs), prev);
    }
    return st;
}

/* AutoAttack path of run(): data already read (x uint8, y), model set up, checkpoint loaded. */
static al_status run_autoattack(al_ctx *ctx, al_model *m, const al_config *cfg, const aa_plan *p,
                                int resume, const char *ckpt, const char *save, const char *verb,
                                const uint8_t *x8, const int32_t *y, const int64_t *index,
                                int64_t n, int bs, int c, int h, int w) {
    const size_t d = (size_t)c * h * w;
    const al_norm norm = cfg->eval.norm == AL_NORM_L2 ? AL_L2 : AL_LINF;
    const char *norm_name = norm == AL_L2 ? "L2" : "Linf";
    al_aa_spec s = p->spec;
    s.batch = bs;
    s.seed = (uint64_t)cfg->run.seed;
    s.state_path = cfg->eval.state_path[0] ? cfg->eval.state_path : NULL;
    s.resume = resume;
    s.state_every_s = cfg->eval.state_every;
    s.stop = &g_stop;
    char key[1024];
    snprintf(key, sizeof key,
             "ckpt=%s;data=%s:%s;apgd=%dx%d,eot%d;apgd-t=%dx%dx%d;fab=%dx%dx%d;square=%d,%.3g",
             ckpt, cfg->data.dataset, cfg->data.test_split, s.apgd.n_iter, s.apgd.n_restarts,
             s.apgd.eot_iter, s.apgd_t.n_iter, s.apgd_t.n_restarts, s.apgd_t.n_target_classes,
             s.fab.n_iter, s.fab.n_restarts, s.fab.n_target_classes, s.square.n_queries,
             (double)s.square.p_init);
    s.key = key;

    char name[96];
    if (p->single)
        snprintf(name, sizeof name, "%s%s", al_aa_attack_name(p->one),
                 p->overridden ? "-custom" : "");
    else
        snprintf(name, sizeof name, "autoattack-%s",
                 p->overridden ? "custom" : al_aa_version_name(p->ver));
    printf("%s: %s on %lld points of %s:/%s (%s, eps %.6g, batch %d)\n", verb, name, (long long)n,
           cfg->data.dataset, cfg->data.test_split, norm_name, (double)cfg->eval.eps, bs);
    print_aa_settings(cfg);
    fflush(stdout);

    al_status st = AL_OK;
    float *x = al_malloc((size_t)n * d * sizeof(float), "images (float)");
    float *adv = al_malloc((size_t)n * d * sizeof(float), "adversarial images");
    uint8_t *clean = al_malloc((size_t)n, "clean flags");
    uint8_t *robust = al_malloc((size_t)n, "robust flags");
    if (!x || !adv || !clean || !robust) {
        st = AL_ERR_OOM;
        goto done;
    }
    for (int64_t s0 = 0; s0 < n; s0 += 4096) {
        const int nb = (int)AL_MIN((int64_t)4096, n - s0);
        al_batch_to_float(x8 + (size_t)s0 * d, nb, c, h, w, 0, 0, 0, x + (size_t)s0 * d);
    }
    struct sigaction sa, old_term, old_int;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGINT, &sa, &old_int);
    al_aa_result r;
    st = al_autoattack_run(ctx, m, &s, x, y, n, adv, clean, robust, &r);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGINT, &old_int, NULL);
    if (st != AL_OK) goto done;
    printf("clean accuracy:  %.2f%% (%lld/%lld)\n", 100.0 * (double)r.n_clean / (double)n,
           (long long)r.n_clean, (long long)n);
    for (int a = 0; a < r.n_done; a++)
        printf("  after %-9s %.2f%% (total time %.1f s)\n", al_aa_attack_name(s.attacks[a]),
               100.0 * (double)r.robust_after[a] / (double)n, r.seconds_after[a]);
    printf("robust accuracy: %.2f%% (%lld/%lld) under %s, %s eps %.6g (%.1f s)\n",
           100.0 * (double)r.n_robust / (double)n, (long long)r.n_robust, (long long)n, name,
           norm_name, (double)cfg->eval.eps, r.seconds);
    /* one line that scripts can grep: "flags: none" or the raised flags */
    printf("flags:%s%s%s%s%s%s\n",
           r.flag_randomized || r.flag_softmax || r.flag_n_classes || r.flag_square ||
                   r.n_zero_grad > 0
               ? ""
               : " none",
           r.flag_randomized ? " randomized" : "", r.flag_softmax ? " softmax-output" : "",
           r.n_zero_grad > 0 ? " zero-gradient" : "", r.flag_square ? " square-stronger" : "",
           r.flag_n_classes ? " n-classes" : "");
    if (save) {
        al_advfile f = {name, norm_name, cfg->eval.eps, ckpt, cfg->data.dataset,
                        cfg->data.test_split, n, c, h, w, adv, y, index, clean, robust};
        AL_CHECK(al_advfile_write(save, &f));
        printf("saved %s\n", save);
    }
    if (!r.valid)
        st = AL_FAIL(AL_ERR_VALUE,
                     "autoattack: adversarial images violate the threat model (max %s "
                     "perturbation %.9g, eps %.9g, %lld non-finite values, range [%g, %g])",
                     norm_name, r.max_pert, (double)cfg->eval.eps, (long long)r.n_nonfinite,
                     (double)r.x_min, (double)r.x_max);
done:
    al_free(x);
    al_free(adv);
    al_free(clean);
    al_free(robust);
    return st;
}

static int run(int argc, char **argv, int is_eval) {
    const char *verb = is_eval ? "eval" : "attack";
    const char *ckpt = NULL, *cfg_path = NULL, *save = NULL;
    static char setbuf[256][320];
    const char *sets[256];
    int n_sets = 0, resume = 0;
    cmdline_keys given;
    memset(&given, 0, sizeof given);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout, verb);
            return 0;
        }
        if (!strcmp(a, "--resume")) { /* the one flag without a value (an action, not a row) */
            resume = 1;
            continue;
        }
        if (a[0] != '-' || a[1] != '-') {
            if (a[0] == '-' || cfg_path) {
                fprintf(stderr, "advlab %s: error: unexpected argument '%s'\n", verb, a);
                usage(stderr, verb);
                return 2;
            }
            cfg_path = a;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "advlab %s: error: %s needs a value\n", verb, a);
            return 2;
        }
        const char *v = argv[++i];
        if (n_sets >= 253) { /* room for the two implied rows below */
            fprintf(stderr, "advlab %s: error: too many options\n", verb);
            return 2;
        }
        char key[160];
        if (!strcmp(a, "--ckpt")) {
            ckpt = v;
        } else if (!strcmp(a, "--save")) {
            save = v;
        } else if (!strcmp(a, "--set")) {
            sets[n_sets++] = v;
            note_key(&given, v);
        } else if (flag_to_key(a + 2, key, sizeof key)) {
            snprintf(setbuf[n_sets], sizeof setbuf[n_sets], "%s=%s", key, v);
            sets[n_sets] = setbuf[n_sets];
            note_key(&given, sets[n_sets]);
            n_sets++;
        } else {
            fprintf(stderr, "advlab %s: error: unknown option '%s' (see advlab %s --help)\n", verb, a,
                    verb);
            return 2;
        }
    }
    if (!ckpt) {
        fprintf(stderr, "advlab %s: error: --ckpt CKPT.h5 is required\n", verb);
        usage(stderr, verb);
        return 2;
    }
    /* flag conveniences: --version/--attacks alone select AutoAttack; --attacks alone the custom
     * version (applied after the file, before the other --set rows are re-applied: --set wins) */
    if ((given.version || given.attacks) && !given.attack) {
        snprintf(setbuf[n_sets], sizeof setbuf[n_sets], "eval.attack=autoattack");
        sets[n_sets] = setbuf[n_sets];
        n_sets++;
        given.attack = 1;
    }
    if (given.attacks && !given.version) {
        snprintf(setbuf[n_sets], sizeof setbuf[n_sets], "eval.version=custom");
        sets[n_sets] = setbuf[n_sets];
        n_sets++;
    }
    if (!is_eval && !given.attack && !cfg_path) {
        fprintf(stderr, "advlab attack: error: --attack is required (fgsm, pgd, cw, autoattack, "
                        "apgd-ce, apgd-t, ...; none = clean)\n");
        return 2;
    }
    al_config cfg;
    if (al_config_from_args(&cfg, cfg_path, sets, n_sets) != AL_OK) return 1;
    if (!cfg.data.dataset[0]) {
        fprintf(stderr, "advlab %s: error: --data DATA.h5 is required\n", verb);
        return 2;
    }
    aa_plan plan;
    if (aa_plan_make(&cfg, &plan) != AL_OK) {
        fprintf(stderr, "advlab %s: error: %s\n", verb, al_errmsg());
        return 2;
    }
    if (!plan.on && (resume || given.aa_row)) {
        char what[96];
        if (given.aa_row)
            snprintf(what, sizeof what, "%s (%s)", k_aa_rows[given.aa_row - 1][0],
                     k_aa_rows[given.aa_row - 1][1]);
        else
            snprintf(what, sizeof what, "--resume");
        fprintf(stderr,
                "advlab %s: error: %s applies to the AutoAttack attacks only (eval.attack = "
                "autoattack|apgd-ce|apgd-dlr|apgd-t|fab|fab-t|square; here %s)\n",
                verb, what, al_config_enum_name("eval.attack", (int)cfg.eval.attack));
        return 2;
    }
    if (resume && !cfg.eval.state_path[0]) {
        fprintf(stderr, "advlab %s: error: --resume needs a state file (--state FILE, "
                        "eval.state_path)\n", verb);
        return 2;
    }
    al_log_init(0, 1);

    al_status st = AL_OK;
    int interrupted = 0;
    al_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    al_model *m = NULL;
    al_dataset ds;
    memset(&ds, 0, sizeof ds);
    uint8_t *x = NULL, *clean = NULL, *robust = NULL;
    int32_t *y = NULL;
    int64_t *index = NULL;
    float *adv = NULL;
    int ds_open = 0;
    AL_CHECK(al_ctx_init(&ctx, cfg.run.device, 0, cfg.run.threads, (uint64_t)cfg.run.seed));
    al_config_apply_ctx(&cfg, &ctx);
    AL_CHECK(al_checkpoint_create_model(ckpt, &m));
    AL_CHECK(al_dataset_open(&ds, cfg.data.dataset, cfg.data.test_split));
    ds_open = 1;
    if (ds.c != m->in_c || ds.h != m->in_h || ds.w != m->in_w) {
        st = AL_FAIL(AL_ERR_FORMAT, "%s:/%s/images: images are %dx%dx%d, checkpoint %s expects %dx%dx%d",
                     cfg.data.dataset, cfg.data.test_split, ds.c, ds.h, ds.w, ckpt, m->in_c, m->in_h,
                     m->in_w);
        goto done;
    }
    if (ds.num_classes > m->num_classes) {
        st = AL_FAIL(AL_ERR_FORMAT, "%s: %d classes, checkpoint %s has %d outputs", cfg.data.dataset,
                     ds.num_classes, ckpt, m->num_classes);
        goto done;
    }
    int64_t n = ds.n;
    if (cfg.data.n_test > 0 && cfg.data.n_test < n) n = cfg.data.n_test;
    if (cfg.eval.n_points > 0 && cfg.eval.n_points < n) n = cfg.eval.n_points;
    int bs = cfg.data.eval_batch_size;
    const int bs_eff = (int)AL_MIN((int64_t)bs, n);
    size_t d = (size_t)ds.c * ds.h * ds.w;
    {
        /* memory plan of the batch before allocating it */
        size_t attack_bytes, data_bytes;
        if (plan.on) {
            attack_bytes = al_aa_workspace_bytes(m, &plan.spec, bs_eff);
            data_bytes = (size_t)n * d * (1 + 2 * sizeof(float));
        } else {
            attack_bytes = (size_t)bs_eff * d * sizeof(float) * 5; /* PGD workspace + staging */
            data_bytes = (size_t)n * d * (1 + (save ? sizeof(float) : 0));
        }
        AL_CHECK(plan_memory(&ctx, m, bs_eff, attack_bytes, data_bytes));
    }
    AL_CHECK(setup_model(&ctx, m, bs_eff));
    AL_CHECK(al_checkpoint_load(&ctx, m, ckpt));
    if (al_ra_count(m) > 0) { /* [ancra] eval_mask: which backward the attack differentiates */
        al_ra_set_eval_mask(m, (int)cfg.ancra.eval_mask);
        printf("%s: reverse attention: eval mask %s\n", verb,
               (int)cfg.ancra.eval_mask == AL_RA_MASK_FIXED ? "fixed (straight-through backward)"
                                                      : "predicted (as published)");
    }
    x = al_malloc((size_t)n * d, "images");
    y = al_malloc((size_t)n * sizeof(int32_t), "labels");
    clean = al_malloc((size_t)n, "flags");
    robust = al_malloc((size_t)n, "flags");
    index = al_malloc((size_t)n * sizeof(int64_t), "index");
    if (save && !plan.on) adv = al_malloc((size_t)n * d * sizeof(float), "adversarial images");
    if (!x || !y || !clean || !robust || !index || (save && !plan.on && !adv)) {
        st = AL_ERR_OOM;
        goto done;
    }
    AL_CHECK(al_dataset_read(&ds, 0, n, x, y));
    for (int64_t i = 0; i < n; i++) index[i] = i;

    if (plan.on) {
        st = run_autoattack(&ctx, m, &cfg, &plan, resume, ckpt, save, verb, x, y, index, n, bs_eff, ds.c,
                            ds.h, ds.w);
        interrupted = st == AL_ERR_INTERRUPTED;
        goto done;
    }

    al_attack_spec spec;
    int none = 0;
    AL_CHECK(al_eval_spec_from_config(&cfg, &spec, &none));
    char name[96];
    if (none)
        snprintf(name, sizeof name, "none");
    else if (cfg.eval.attack == AL_EVAL_FGSM)
        snprintf(name, sizeof name, "fgsm");
    else
        snprintf(name, sizeof name, "%s-%d%s", cfg.eval.attack == AL_EVAL_CW || spec.loss == AL_ATTACK_LOSS_CW ? "pgd-cw" : "pgd",
                 cfg.eval.steps, cfg.eval.restarts > 1 ? "-restarts" : "");
    const char *norm = cfg.eval.norm == AL_NORM_L2 ? "L2" : "Linf";
    printf("%s: %s on %lld points of %s:/%s (%s, eps %.6g, alpha %.6g, %d steps, %d restarts)\n",
           verb, name, (long long)n, cfg.data.dataset, cfg.data.test_split, norm, cfg.eval.eps,
           cfg.eval.alpha, cfg.eval.steps, cfg.eval.restarts);
    al_eval_counts c;
    AL_CHECK(al_evaluate(&ctx, m, x, y, n, bs, none ? NULL : &spec, (uint64_t)cfg.run.seed, name, adv,
                         clean, robust, &c));
    double ca = 100.0 * (double)c.clean_correct / (double)c.n;
    double ra = 100.0 * (double)c.robust_correct / (double)c.n;
    printf("clean accuracy:  %.2f%% (%lld/%lld)\n", ca, (long long)c.clean_correct, (long long)c.n);
    if (!none)
        printf("robust accuracy: %.2f%% (%lld/%lld) under %s, eps %.6g (%.1f s, %.1f img/s)\n", ra,
               (long long)c.robust_correct, (long long)c.n, name, cfg.eval.eps, c.seconds,
               (double)c.n / c.seconds);
    if (save) {
        al_advfile f = {name, norm, cfg.eval.eps, ckpt, cfg.data.dataset, cfg.data.test_split, n,
                        ds.c, ds.h, ds.w, adv, y, index, clean, robust};
        if (none) {
            /* clean only: the images are the clean inputs */
            for (size_t i = 0; i < (size_t)n * d; i++) adv[i] = (float)x[i] / 255.0f;
        }
        AL_CHECK(al_advfile_write(save, &f));
        printf("saved %s\n", save);
    }
done:
    if (ds_open) al_dataset_close(&ds);
    al_model_destroy(&ctx, m);
    al_ctx_fini(&ctx);
    al_free(x);
    al_free(y);
    al_free(clean);
    al_free(robust);
    al_free(index);
    al_free(adv);
    if (interrupted) return 3; /* state saved; main prints the message */
    return st == AL_OK ? 0 : 1;
}

int al_cmd_attack(int argc, char **argv) { return run(argc, argv, 0); }
int al_cmd_eval(int argc, char **argv) { return run(argc, argv, 1); }
