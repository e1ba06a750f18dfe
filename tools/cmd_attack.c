/* cmd_attack.c: advlab attack / advlab eval -- clean and robust accuracy of a checkpoint on N
 * points of a dataset split, optionally writing the attack output file (formats.md §3).
 * Attack settings are the [eval] config keys (one schema table); every key is also a flag:
 * --eps 0.1 == --set eval.eps=0.1 (tried in sections eval, run, data; '-' -> '_'). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checkpoint.h"
#include "core/config.h"
#include "core/evaluate.h"
#include "core/log.h"
#include "datasets/h5data.h"
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
            "  advlab train --help for the full key table.\n",
            verb);
}

/* Map --flag to a config key: aliases first, then eval.<k>, run.<k>, data.<k>. */
static int flag_to_key(const char *flag, char *key, size_t n) {
    static const char *alias[][2] = {{"n", "eval.n_points"},         {"bs", "data.eval_batch_size"},
                                     {"split", "data.test_split"},   {"data", "data.dataset"},
                                     {"attack", "eval.attack"},      {NULL, NULL}};
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

static int run(int argc, char **argv, int is_eval) {
    const char *verb = is_eval ? "eval" : "attack";
    const char *ckpt = NULL, *cfg_path = NULL, *save = NULL;
    static char setbuf[256][320];
    const char *sets[256];
    int n_sets = 0, have_attack = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout, verb);
            return 0;
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
        if (n_sets >= 255) {
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
            if (!strncmp(v, "eval.attack", 11)) have_attack = 1;
        } else if (flag_to_key(a + 2, key, sizeof key)) {
            snprintf(setbuf[n_sets], sizeof setbuf[n_sets], "%s=%s", key, v);
            sets[n_sets] = setbuf[n_sets];
            n_sets++;
            if (!strcmp(key, "eval.attack")) have_attack = 1;
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
    if (!is_eval && !have_attack && !cfg_path) {
        fprintf(stderr, "advlab attack: error: --attack is required (fgsm, pgd, cw; none = clean)\n");
        return 2;
    }
    al_config cfg;
    if (al_config_from_args(&cfg, cfg_path, sets, n_sets) != AL_OK) return 1;
    if (!cfg.data.dataset[0]) {
        fprintf(stderr, "advlab %s: error: --data DATA.h5 is required\n", verb);
        return 2;
    }
    al_log_init(0, 1);

    al_status st = AL_OK;
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
    ctx.deterministic = cfg.run.deterministic;
    ctx.precision = cfg.run.precision;
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
    AL_CHECK(al_model_setup(&ctx, m, (int)AL_MIN((int64_t)bs, n), 1));
    AL_CHECK(al_checkpoint_load(&ctx, m, ckpt));
    size_t d = (size_t)ds.c * ds.h * ds.w;
    x = al_malloc((size_t)n * d, "images");
    y = al_malloc((size_t)n * sizeof(int32_t), "labels");
    clean = al_malloc((size_t)n, "flags");
    robust = al_malloc((size_t)n, "flags");
    index = al_malloc((size_t)n * sizeof(int64_t), "index");
    if (save) adv = al_malloc((size_t)n * d * sizeof(float), "adversarial images");
    if (!x || !y || !clean || !robust || !index || (save && !adv)) {
        st = AL_ERR_OOM;
        goto done;
    }
    AL_CHECK(al_dataset_read(&ds, 0, n, x, y));
    for (int64_t i = 0; i < n; i++) index[i] = i;

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
    return st == AL_OK ? 0 : 1;
}

int al_cmd_attack(int argc, char **argv) { return run(argc, argv, 0); }
int al_cmd_eval(int argc, char **argv) { return run(argc, argv, 1); }
