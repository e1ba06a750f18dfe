/* cmd_ood.c: advlab ood -- OOD detection metrics of a checkpoint: in-distribution split vs an
 * out-of-distribution split (an OOD file may hold only `test` with labels -1). Scores, metrics
 * and the --save file are core/ood.h's (their definitions and conventions are documented
 * there). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checkpoint.h"
#include "core/ood.h"
#include "datasets/h5data.h"
#include "tools/cli.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: advlab ood --ckpt CKPT.h5 --in DATA_IN.h5 [--in-split test]\n"
            "         --out DATA_OOD.h5 [--out-split test] [--n N] [--score msp|energy]\n"
            "         [--temperature T] [--bs B] [--device cpu|cuda] [--threads T] [--save SCORES.h5]\n"
            "  Scores the first N points (N = 0: all) of each split with the model and reports, per\n"
            "  score (default: msp and energy; higher = in-distribution):\n"
            "    AUROC     area under the ROC curve, ties counted 1/2 (as sklearn roc_auc_score)\n"
            "    FPR95     fraction of OOD points accepted at the threshold that accepts 95%% of the\n"
            "              in-distribution points\n"
            "    F1        F1 of 'OOD iff score < that threshold', OOD as the positive class\n"
            "    F1-open   macro-F1 over the K classes + unknown at that threshold (needs labels)\n"
            "    DetErr    min over thresholds of (P(in rejected) + P(OOD accepted)) / 2\n"
            "  energy = T * logsumexp(logits / T) (T = --temperature, default 1); msp = max softmax.\n"
            "  --save writes scores, logits, labels and metrics (format in core/ood.h).\n");
}

static int parse_i64(const char *flag, const char *v, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "advlab ood: error: %s '%s': expected an integer in [%lld, %lld]\n", flag,
                v, (long long)lo, (long long)hi);
        return 0;
    }
    *out = x;
    return 1;
}

int al_cmd_ood(int argc, char **argv) {
    const char *ckpt = NULL, *in_path = NULL, *out_path = NULL, *save = NULL;
    const char *in_split = "test", *out_split = "test", *device = "cpu";
    int64_t n_max = 0, bs = 500, threads = 0;
    double temperature = 1.0;
    int want[AL_OOD_N_SCORES] = {1, 1};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (strncmp(a, "--", 2) != 0 || i + 1 >= argc) {
            fprintf(stderr, "advlab ood: error: %s '%s'\n",
                    strncmp(a, "--", 2) ? "unexpected argument" : "missing value for", a);
            usage(stderr);
            return 2;
        }
        const char *v = argv[++i];
        if (!strcmp(a, "--ckpt")) {
            ckpt = v;
        } else if (!strcmp(a, "--in")) {
            in_path = v;
        } else if (!strcmp(a, "--in-split")) {
            in_split = v;
        } else if (!strcmp(a, "--out")) {
            out_path = v;
        } else if (!strcmp(a, "--out-split")) {
            out_split = v;
        } else if (!strcmp(a, "--save")) {
            save = v;
        } else if (!strcmp(a, "--device")) {
            device = v;
        } else if (!strcmp(a, "--n")) {
            if (!parse_i64(a, v, 0, INT64_MAX, &n_max)) return 2;
        } else if (!strcmp(a, "--bs")) {
            if (!parse_i64(a, v, 1, 1 << 20, &bs)) return 2;
        } else if (!strcmp(a, "--threads")) {
            if (!parse_i64(a, v, 0, 4096, &threads)) return 2;
        } else if (!strcmp(a, "--temperature")) {
            char *end;
            errno = 0;
            temperature = strtod(v, &end);
            if (errno || end == v || *end || !(temperature > 0.0) || !isfinite(temperature)) {
                fprintf(stderr, "advlab ood: error: --temperature '%s': expected a number > 0\n", v);
                return 2;
            }
        } else if (!strcmp(a, "--score")) {
            al_ood_score s;
            if (al_ood_score_parse(v, &s) != AL_OK) {
                fprintf(stderr, "advlab ood: error: --score '%s': expected msp or energy\n", v);
                return 2;
            }
            for (int k = 0; k < AL_OOD_N_SCORES; k++) want[k] = k == (int)s;
        } else {
            fprintf(stderr, "advlab ood: error: unknown option '%s' (see advlab ood --help)\n", a);
            return 2;
        }
    }
    if (!ckpt || !in_path || !out_path) {
        fprintf(stderr, "advlab ood: error: --ckpt, --in and --out are required\n");
        usage(stderr);
        return 2;
    }
    al_device dev;
    if (!strcmp(device, "cpu")) {
        dev = AL_DEV_CPU;
    } else if (!strcmp(device, "cuda")) {
        dev = AL_DEV_CUDA;
    } else {
        fprintf(stderr, "advlab ood: error: --device '%s': expected cpu or cuda\n", device);
        return 2;
    }

    al_status st = AL_OK;
    al_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    al_model *m = NULL;
    al_dataset din, dout;
    memset(&din, 0, sizeof din);
    memset(&dout, 0, sizeof dout);
    int in_open = 0, out_open = 0, ctx_ok = 0;
    float *lin = NULL, *lout = NULL;
    int32_t *yin = NULL, *yout = NULL, *pin = NULL, *pout = NULL;
    double *sin_[AL_OOD_N_SCORES] = {NULL}, *sout[AL_OOD_N_SCORES] = {NULL};
    al_ood_metrics met[AL_OOD_N_SCORES];

    AL_CHECK(al_ctx_init(&ctx, dev, 0, (int)threads, 0));
    ctx_ok = 1;
    AL_CHECK(al_checkpoint_create_model(ckpt, &m));
    AL_CHECK(al_dataset_open(&din, in_path, in_split));
    in_open = 1;
    AL_CHECK(al_dataset_open(&dout, out_path, out_split));
    out_open = 1;
    const int k = m->num_classes;
    const int64_t n_in = n_max > 0 ? AL_MIN(n_max, din.n) : din.n;
    const int64_t n_out = n_max > 0 ? AL_MIN(n_max, dout.n) : dout.n;
    if (n_in < 1 || n_out < 1) {
        st = AL_FAIL(AL_ERR_VALUE, "ood: %s:/%s has %lld rows, %s:/%s has %lld", in_path, in_split,
                     (long long)din.n, out_path, out_split, (long long)dout.n);
        goto done;
    }
    AL_CHECK(al_model_setup(&ctx, m, (int)AL_MIN(bs, AL_MAX(n_in, n_out)), 1));
    AL_CHECK(al_checkpoint_load(&ctx, m, ckpt));
    lin = al_malloc((size_t)n_in * k * sizeof(float), "ood in-distribution logits");
    lout = al_malloc((size_t)n_out * k * sizeof(float), "ood OOD logits");
    yin = al_malloc((size_t)n_in * sizeof(int32_t), "ood labels");
    yout = al_malloc((size_t)n_out * sizeof(int32_t), "ood labels");
    pin = al_malloc((size_t)n_in * sizeof(int32_t), "ood predictions");
    pout = al_malloc((size_t)n_out * sizeof(int32_t), "ood predictions");
    if (!lin || !lout || !yin || !yout || !pin || !pout) {
        st = AL_ERR_OOM;
        goto done;
    }
    AL_CHECK(al_ood_logits(&ctx, m, &din, n_in, (int)bs, lin, yin));
    AL_CHECK(al_ood_logits(&ctx, m, &dout, n_out, (int)bs, lout, yout));

    /* predictions (argmax, lowest index on ties) and the in-distribution accuracy */
    int64_t n_lab = 0, n_corr = 0;
    for (int64_t side = 0; side < 2; side++) {
        const float *l = side ? lout : lin;
        int32_t *p = side ? pout : pin;
        for (int64_t i = 0, n = side ? n_out : n_in; i < n; i++) {
            const float *z = l + (size_t)i * k;
            int a = 0;
            for (int j = 1; j < k; j++)
                if (z[j] > z[a]) a = j;
            p[i] = a;
        }
    }
    for (int64_t i = 0; i < n_in; i++)
        if (yin[i] >= 0 && yin[i] < k) {
            n_lab++;
            n_corr += pin[i] == yin[i];
        }
    const int labelled = n_lab == n_in;

    printf("ood: %s (%s, %d classes)\n", ckpt, m->arch, k);
    printf("  in-distribution:     %s:/%s, %lld points", in_path, in_split, (long long)n_in);
    if (labelled)
        printf(", clean accuracy %.2f%%\n", 100.0 * (double)n_corr / (double)n_in);
    else
        printf(" (unlabelled: no accuracy, no open-set F1)\n");
    printf("  out-of-distribution: %s:/%s, %lld points\n", out_path, out_split, (long long)n_out);
    printf("%-8s %8s %8s %8s %8s %8s %12s %7s\n", "score", "AUROC", "FPR95", "F1", "F1-open",
           "DetErr", "threshold", "TPR");
    for (int s = 0; s < AL_OOD_N_SCORES; s++) {
        if (!want[s]) continue;
        sin_[s] = al_malloc((size_t)n_in * sizeof(double), "ood scores");
        sout[s] = al_malloc((size_t)n_out * sizeof(double), "ood scores");
        if (!sin_[s] || !sout[s]) {
            st = AL_ERR_OOM;
            goto done;
        }
        al_ood_scores((al_ood_score)s, n_in, k, lin, temperature, sin_[s]);
        al_ood_scores((al_ood_score)s, n_out, k, lout, temperature, sout[s]);
        AL_CHECK(al_ood_metrics_compute(sin_[s], n_in, sout[s], n_out, &met[s]));
        if (labelled)
            AL_CHECK(al_ood_openset_f1(sin_[s], pin, yin, n_in, sout[s], pout, n_out, k,
                                       met[s].threshold, &met[s].f1_openset));
        printf("%-8s %8.4f %8.4f %8.4f %8.4f %8.4f %12.6g %6.2f%%\n",
               al_ood_score_name((al_ood_score)s), met[s].auroc, met[s].fpr95, met[s].f1,
               met[s].f1_openset, met[s].detection_error, met[s].threshold, 100.0 * met[s].tpr);
    }
    printf("  threshold: accepts >= 95%% of the in-distribution points; F1: OOD positive\n");
    if (save) {
        al_ood_file f;
        memset(&f, 0, sizeof f);
        f.checkpoint = ckpt;
        f.in_dataset = in_path;
        f.in_split = in_split;
        f.out_dataset = out_path;
        f.out_split = out_split;
        f.temperature = temperature;
        f.k = k;
        f.n_in = n_in;
        f.n_out = n_out;
        f.logits_in = lin;
        f.logits_out = lout;
        f.labels_in = yin;
        f.labels_out = yout;
        for (int s = 0; s < AL_OOD_N_SCORES; s++) {
            f.scores_in[s] = sin_[s];
            f.scores_out[s] = sout[s];
            f.metrics[s] = want[s] ? &met[s] : NULL;
        }
        AL_CHECK(al_ood_file_write(save, &f));
        printf("saved %s\n", save);
    }
done:
    if (in_open) al_dataset_close(&din);
    if (out_open) al_dataset_close(&dout);
    if (ctx_ok) {
        al_model_destroy(&ctx, m);
        al_ctx_fini(&ctx);
    }
    al_free(lin);
    al_free(lout);
    al_free(yin);
    al_free(yout);
    al_free(pin);
    al_free(pout);
    for (int s = 0; s < AL_OOD_N_SCORES; s++) {
        al_free(sin_[s]);
        al_free(sout[s]);
    }
    return st == AL_OK ? 0 : 1;
}
