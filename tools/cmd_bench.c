/* cmd_bench.c: advlab bench -- time the phases the issues measure, on this machine:
 *   fwdbwd       train-mode forward + CE + backward (weight gradients), as loss.backward()
 *   attack_step  eval-mode forward + CE + backward to the INPUT only (one PGD step's model work)
 *   pgd_at_step  one PGD-K adversarial-training step: K attack steps (eval-mode BN, input
 *                gradients only, fused PGD update) + train forward/backward + SGD
 *   pgd_eval     PGD-K evaluation of a batch: K attack steps + the final forward
 * Each phase: warm-up, then repeats until min-time, reporting the median, p10 and p90 of the
 * per-iteration time, images/s and achieved GFLOP/s (conv/linear FLOPs from the graph:
 * al_model_flops). Results are JSON lines on stdout (tools/bench/run_cpu.sh pairs them with
 * PyTorch's). Random weights and inputs (Philox): timing does not depend on their values. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attacks/attack.h"
#include "core/blas.h"
#include "core/config.h"
#include "core/model.h"
#include "core/optim.h"
#include "core/rng.h"
#include "losses/loss.h"
#include "tools/cli.h"

static void usage(FILE *f) {
    fprintf(f, "usage: advlab bench [--arch smallcnn] [--batch 128] [--phases fwdbwd,attack_step,"
               "pgd_at_step,pgd_eval]\n"
               "                    [--steps-train 10] [--steps-eval 20] [--min-time 2] [--warmup 2]\n"
               "                    [--threads T] [--device cpu|cuda] [--precision fp32|tf32|bf16]\n"
               "                    [--layout nchw|nhwc] [--graphs 1|0] [--deterministic 1|0]\n"
               "                    (cuda: activation layout; PGD iterations replayed as a CUDA graph;\n"
               "                    deterministic cuDNN algorithms only, as run.deterministic)\n"
               "  Prints one JSON line per phase: median/p10/p90 ms per iteration, img/s, GFLOP/s.\n");
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct bench {
    al_ctx ctx;
    al_model *m;
    al_optim opt;
    al_attack_ws ws;
    float *x, *xadv, *dl;
    int32_t *y;
    int n, k;
} bench;

static al_status phase_once(bench *b, const char *phase, int steps_train, int steps_eval, int64_t it) {
    al_ctx *ctx = &b->ctx;
    al_model *m = b->m;
    double loss;
    if (!strcmp(phase, "fwdbwd")) {
        al_fwd_opts o = {0, 1, 1, 0, (uint64_t)it};
        AL_TRY(al_model_forward(ctx, m, b->x, b->n, &o));
        AL_TRY(al_xent(ctx, b->n, b->k, al_model_logits(m, 0), b->y, 1.0f, &loss, NULL, b->dl));
        AL_TRY(al_model_zero_grad(ctx, m));
        return al_model_backward(ctx, m, 0, b->dl, NULL, AL_BWD_WEIGHTS, NULL);
    }
    if (!strcmp(phase, "attack_step")) {
        AL_TRY(al_model_forward_eval(ctx, m, b->x, b->n, 0));
        AL_TRY(al_xent(ctx, b->n, b->k, al_model_logits(m, 0), b->y, 1.0f, &loss, NULL, b->dl));
        return al_model_backward(ctx, m, 0, b->dl, NULL, AL_BWD_INPUT, b->xadv);
    }
    int train = !strcmp(phase, "pgd_at_step");
    al_attack_spec sp = al_attack_spec_make(AL_ATTACK_PGD, AL_LINF, 8.0f / 255, 2.0f / 255,
                                            train ? steps_train : steps_eval);
    sp.keep_clean_if_failed = 0;
    AL_TRY(al_attack_run(ctx, m, &sp, &b->ws, b->x, b->y, b->n, 1, (uint64_t)it, b->xadv, NULL, NULL));
    if (!train) return al_model_forward_eval(ctx, m, b->xadv, b->n, 0);
    al_fwd_opts o = {0, 1, 1, 0, (uint64_t)it};
    AL_TRY(al_model_forward(ctx, m, b->xadv, b->n, &o));
    AL_TRY(al_xent(ctx, b->n, b->k, al_model_logits(m, 0), b->y, 1.0f, &loss, NULL, b->dl));
    AL_TRY(al_model_zero_grad(ctx, m));
    AL_TRY(al_model_backward(ctx, m, 0, b->dl, NULL, AL_BWD_WEIGHTS, NULL));
    return al_optim_step(ctx, &b->opt, m, 0.01, 0.9, 1.0);
}

int al_cmd_bench(int argc, char **argv) {
    const char *arch = "smallcnn", *phases = "fwdbwd,attack_step,pgd_at_step,pgd_eval";
    int batch = 128, threads = 0, steps_train = 10, steps_eval = 20;
    al_config run; /* --device, --precision, --layout, --graphs, --deterministic: the run.* keys,
                    * parsed and defaulted as the config's */
    al_config_defaults(&run);
    double min_time = 2.0, warmup = 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "advlab bench: error: %s needs a value\n", a);
            return 2;
        }
        const char *v = argv[++i];
        char *end = NULL;
        if (!strcmp(a, "--arch")) arch = v;
        else if (!strcmp(a, "--phases")) phases = v;
        else if (!strcmp(a, "--batch")) batch = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--threads")) threads = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--steps-train")) steps_train = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--steps-eval")) steps_eval = (int)strtol(v, &end, 10);
        else if (!strcmp(a, "--min-time")) min_time = strtod(v, &end);
        else if (!strcmp(a, "--warmup")) warmup = strtod(v, &end);
        else if (!strcmp(a, "--device") || !strcmp(a, "--precision") || !strcmp(a, "--layout") ||
                 !strcmp(a, "--graphs") || !strcmp(a, "--deterministic")) {
            char kv[128];
            snprintf(kv, sizeof kv, "run.%s=%s", !strcmp(a, "--graphs") ? "cuda_graphs" : a + 2, v);
            if (al_config_set(&run, kv) != AL_OK) {
                fprintf(stderr, "advlab bench: error: %s: %s\n", a, al_errmsg());
                return 2;
            }
        } else {
            fprintf(stderr, "advlab bench: error: unknown option '%s'\n", a);
            usage(stderr);
            return 2;
        }
        if (end && *end) {
            fprintf(stderr, "advlab bench: error: %s = '%s' is not a number\n", a, v);
            return 2;
        }
        end = NULL;
    }
    if (batch < 1 || batch > 65536 || steps_train < 1 || steps_eval < 1 || min_time <= 0) {
        fprintf(stderr, "advlab bench: error: batch/steps/min-time out of range\n");
        return 2;
    }
    bench B;
    memset(&B, 0, sizeof B);
    al_status st = AL_OK;
    int in_c = !strcmp(arch, "smallcnn") ? 1 : 3, size = in_c == 1 ? 28 : 32;
    const int cuda = run.run.device == AL_DEV_CUDA;
    AL_CHECK(al_ctx_init(&B.ctx, run.run.device, 0, threads, 1));
    al_config_apply_ctx(&run, &B.ctx); /* before setup: storage formats are planned there */
    AL_CHECK(al_model_create(arch, 10, in_c, size, &B.m));
    AL_CHECK(al_model_setup(&B.ctx, B.m, batch, 1));
    AL_CHECK(al_model_init_params(&B.ctx, B.m, 1));
    al_sgd_opts so = {0.9, 5e-4, 0, 0, 0.999};
    AL_CHECK(al_optim_init(&B.ctx, &B.opt, B.m, &so));
    AL_CHECK(al_attack_ws_init(&B.ctx, &B.ws, B.m, batch));
    B.n = batch;
    B.k = 10;
    size_t d = (size_t)in_c * size * size;
    float *hx = malloc((size_t)batch * d * sizeof(float));
    int32_t *hy = malloc((size_t)batch * sizeof(int32_t));
    for (size_t i = 0; i < (size_t)batch * d; i++) hx[i] = al_rng_uniform(7, 1, i);
    for (int i = 0; i < batch; i++) hy[i] = (int32_t)(al_rng_u32(7, 2, (uint64_t)i) % 10);
    AL_CHECK(al_dev_alloc(&B.ctx, (void **)&B.x, (size_t)batch * d * sizeof(float), "bench x"));
    AL_CHECK(al_dev_alloc(&B.ctx, (void **)&B.xadv, (size_t)batch * d * sizeof(float), "bench xadv"));
    AL_CHECK(al_dev_alloc(&B.ctx, (void **)&B.dl, (size_t)batch * 10 * sizeof(float), "bench dl"));
    AL_CHECK(al_dev_alloc(&B.ctx, (void **)&B.y, (size_t)batch * sizeof(int32_t), "bench y"));
    AL_CHECK(al_copy_to_dev(&B.ctx, B.x, hx, (size_t)batch * d * sizeof(float)));
    AL_CHECK(al_copy_to_dev(&B.ctx, B.y, hy, (size_t)batch * sizeof(int32_t)));
    free(hx);
    free(hy);
    al_flops fl = al_model_flops(B.m, batch);

    char list[256];
    snprintf(list, sizeof list, "%s", phases);
    for (char *save = NULL, *ph = strtok_r(list, ",", &save); ph; ph = strtok_r(NULL, ",", &save)) {
        double flops;
        if (!strcmp(ph, "fwdbwd")) flops = fl.fwd + fl.bwd_input + fl.bwd_weights;
        else if (!strcmp(ph, "attack_step")) flops = fl.fwd + fl.bwd_input;
        else if (!strcmp(ph, "pgd_at_step"))
            flops = steps_train * (fl.fwd + fl.bwd_input) + fl.fwd + fl.bwd_input + fl.bwd_weights;
        else if (!strcmp(ph, "pgd_eval")) flops = steps_eval * (fl.fwd + fl.bwd_input) + fl.fwd;
        else {
            st = AL_FAIL(AL_ERR_VALUE, "bench: unknown phase '%s'", ph);
            goto done;
        }
        int64_t it = 0;
        for (double t0 = al_now(); al_now() - t0 < warmup || it < 2; it++)
            AL_CHECK(phase_once(&B, ph, steps_train, steps_eval, it));
        double times[4096];
        int nt = 0;
        for (double t0 = al_now(); (al_now() - t0 < min_time || nt < 5) && nt < 4096; nt++, it++) {
            double t1 = al_now();
            AL_CHECK(phase_once(&B, ph, steps_train, steps_eval, it));
            AL_CHECK(al_sync(&B.ctx));
            times[nt] = al_now() - t1;
        }
        qsort(times, (size_t)nt, sizeof(double), cmp_d);
        double med = times[nt / 2];
        printf("{\"bench\":\"%s\",\"impl\":\"advlab\",\"arch\":\"%s\",\"batch\":%d,\"threads\":%d,"
               "\"device\":\"%s\",\"precision\":\"%s\",\"layout\":\"%s\",\"graphs\":%d,"
               "\"deterministic\":%d,\"blas\":\"%s\",\"median_ms\":%.4f,\"p10_ms\":%.4f,"
               "\"p90_ms\":%.4f,\"repeats\":%d,"
               "\"img_per_s\":%.2f,\"gflops\":%.2f}\n",
               ph, arch, batch, B.ctx.n_threads, cuda ? "cuda" : "cpu",
               al_config_enum_name("run.precision", run.run.precision),
               al_config_enum_name("run.layout", run.run.layout), cuda && run.run.cuda_graphs,
               cuda ? run.run.deterministic : 1 /* the CPU always is */, al_blas_core(), 1e3 * med,
               1e3 * times[nt / 10], 1e3 * times[(nt * 9) / 10], nt, batch / med, flops / med * 1e-9);
        fflush(stdout);
    }
done:
    al_attack_ws_fini(&B.ctx, &B.ws);
    al_optim_fini(&B.ctx, &B.opt);
    al_dev_free(&B.ctx, B.x);
    al_dev_free(&B.ctx, B.xadv);
    al_dev_free(&B.ctx, B.dl);
    al_dev_free(&B.ctx, B.y);
    al_model_destroy(&B.ctx, B.m);
    al_ctx_fini(&B.ctx);
    return st == AL_OK ? 0 : 1;
}
