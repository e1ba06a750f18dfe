/* cmd_train.c: advlab train CONFIG.ini [--set section.key=value ...] [--resume CKPT.h5] */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/base.h"
#include "core/config.h"
#include "core/log.h"
#include "core/train.h"
#include "tools/cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: advlab train CONFIG.ini [--set section.key=value ...] [--resume CKPT.h5]\n"
            "                    [--print-config]\n"
            "  Trains per the experiment config; outputs <run.out_dir>/<run.name>/checkpoint.h5\n"
            "  and metrics.jsonl. SIGTERM/SIGINT write a checkpoint and stop (exit 3);\n"
            "  --resume continues it (bit-identical on the CPU). --print-config validates the\n"
            "  config and prints it fully resolved (no training). Config keys:\n\n");
    al_config_print_help(f);
}

int al_cmd_train(int argc, char **argv) {
    const char *path = NULL, *resume = NULL;
    int print_only = 0;
    const char *sets[256] = {0};
    int n_sets = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--set") || !strcmp(argv[i], "--resume")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "advlab train: error: %s needs a value\n", argv[i]);
                return 2;
            }
            if (argv[i][2] == 's') {
                if (n_sets == (int)(sizeof sets / sizeof sets[0])) {
                    fprintf(stderr, "advlab train: error: too many --set\n");
                    return 2;
                }
                sets[n_sets++] = argv[++i];
            } else {
                resume = argv[++i];
            }
        } else if (!strcmp(argv[i], "--print-config")) {
            print_only = 1;
        } else if (!strncmp(argv[i], "--set=", 6)) {
            sets[n_sets++] = argv[i] + 6;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "advlab train: error: unknown option '%s' (see advlab train --help)\n", argv[i]);
            return 2;
        } else if (!path) {
            path = argv[i];
        } else {
            fprintf(stderr, "advlab train: error: unexpected argument '%s' (one config file)\n", argv[i]);
            return 2;
        }
    }
    al_config cfg;
    if (al_config_from_args(&cfg, path, sets, n_sets) != AL_OK) return 1;
    if (print_only) {
        char *ini = NULL;
        if (al_config_to_ini(&cfg, &ini) != AL_OK) return 1;
        fputs(ini, stdout);
        al_free(ini);
        return 0;
    }
    al_log_init(0, 1);
    al_train_install_signals();
    al_train_result res;
    al_status st = al_train(&cfg, resume, &res);
    if (st == AL_ERR_INTERRUPTED) {
        fprintf(stderr, "advlab: %s\n", al_errmsg());
        al_clear_error();
        return 3;
    }
    if (st != AL_OK) return 1;
    char robust[48];
    if (isnan(res.test_robust_acc)) /* eval.attack = none */
        snprintf(robust, sizeof robust, "not evaluated (eval.attack = none)");
    else
        snprintf(robust, sizeof robust, "%.2f%%", 100 * res.test_robust_acc);
    printf("trained %s: %d epochs, %lld steps; test clean accuracy %.2f%%, robust accuracy %s\n"
           "checkpoint: %s\n",
           cfg.run.name, res.epochs_done, (long long)res.steps, 100 * res.test_clean_acc, robust,
           res.checkpoint);
    return 0;
}
