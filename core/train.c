/* train.c: the host scheduler (see train.h). One process = one rank; the data path is
 * dataset (RAM, uint8) -> sampler rows -> float [0,1] (+ crop/flip) -> device -> attack ->
 * forward(s) -> loss -> backward (weights) -> SGD/EMA -> metrics -> checkpoint. */
#include "core/train.h"

#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "attacks/attack.h"
#include "core/checkpoint.h"
#include "core/cuda_api.h"
#include "core/evaluate.h"
#include "core/log.h"
#include "core/methods/method.h"
#include "core/optim.h"
#include "core/sums.h"
#include "datasets/h5data.h"
#include "datasets/sampler.h"
#include "losses/loss.h"

static volatile sig_atomic_t g_stop;
static void on_signal(int sig) { g_stop = sig; }

void al_train_install_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
}
void al_train_request_stop(void) { g_stop = SIGTERM; }

enum { H_LOSS, H_ACC, H_LR, H_TEST_CLEAN, H_TEST_ROBUST, H_N };
static const char *const hist_names[H_N] = {"train_loss", "train_acc", "lr", "test_clean_acc",
                                            "test_robust_acc"};

typedef struct trainer {
    const al_config *cfg;
    al_ctx ctx;
    al_model *m;
    al_optim opt;
    al_attack_ws ws;
    al_attack_spec spec;
    int no_attack;
    int n_slots;
    /* data (host, uint8) */
    uint8_t *tr_x, *te_x;
    int32_t *tr_y, *te_y;
    int64_t n_tr, n_te;
    int c, h, w, k;
    size_t d;
    int local_batch;
    int64_t spe; /* steps per epoch */
    int64_t *perm, *rows;
    uint8_t *bx;
    int32_t *by;
    float *h_x;
    /* device */
    float *d_x;
    int32_t *d_y;
    uint8_t *d_tr_x;               /* CUDA: the training split resident on the device (or NULL) */
    int32_t *d_tr_y;
    int64_t *d_rows;
    al_sums *d_sums;               /* the epoch's deferred step scalars (core/sums.h) */
    const al_method_def *def;
    al_step_io io;                 /* what the method's step sees (device buffers inside) */
    /* checkpoint state (host copies) */
    float *h_mom, *h_ema;
    char *config_text;
    double *hist[H_N];
    int n_hist, cap_hist;
    al_jsonl *log;
    char dir[1024], ckpt[1100], jsonl[1100];
} trainer;

static al_status load_split(const char *path, const char *split, int64_t limit, int64_t *n,
                            uint8_t **x, int32_t **y, int *c, int *h, int *w, int *k) {
    al_dataset ds;
    AL_TRY(al_dataset_open(&ds, path, split));
    al_status st = AL_OK;
    *n = limit > 0 && limit < ds.n ? limit : ds.n;
    *c = ds.c;
    *h = ds.h;
    *w = ds.w;
    *k = ds.num_classes;
    size_t d = (size_t)ds.c * ds.h * ds.w;
    *x = al_malloc((size_t)*n * d, "dataset images");
    *y = al_malloc((size_t)*n * sizeof(int32_t), "dataset labels");
    if (!*x || !*y) {
        st = AL_ERR_OOM;
        goto done;
    }
    if (*n == 0) {
        st = AL_FAIL(AL_ERR_FORMAT, "%s:/%s: split is empty", path, split);
        goto done;
    }
    AL_CHECK(al_dataset_read(&ds, 0, *n, *x, *y));
done:
    al_dataset_close(&ds);
    return st;
}

static al_status hist_push(trainer *t, const double *row) {
    if (t->n_hist == t->cap_hist) {
        int cap = t->cap_hist ? 2 * t->cap_hist : 64;
        for (int i = 0; i < H_N; i++) {
            double *p = realloc(t->hist[i], (size_t)cap * sizeof(double));
            if (!p) return AL_FAIL(AL_ERR_OOM, "out of memory for metric history");
            t->hist[i] = p;
        }
        t->cap_hist = cap;
    }
    for (int i = 0; i < H_N; i++) t->hist[i][t->n_hist] = row[i];
    t->n_hist++;
    return AL_OK;
}

static al_status save_checkpoint(trainer *t, int epochs_done, int64_t step) {
    al_nvtx_push("checkpoint");
    AL_TRY(al_optim_get_state(&t->ctx, &t->opt, t->h_mom, t->h_ema));
    const double *vals[H_N];
    for (int i = 0; i < H_N; i++) vals[i] = t->hist[i];
    al_train_state ts;
    memset(&ts, 0, sizeof ts);
    ts.epoch = epochs_done;
    ts.step = step;
    ts.seed = t->cfg->run.seed;
    ts.config = t->config_text;
    ts.momentum = t->opt.momentum ? t->h_mom : NULL;
    ts.ema = t->opt.ema ? t->h_ema : NULL;
    ts.n_metrics = t->n_hist ? H_N : 0;
    ts.n_epochs = t->n_hist;
    ts.metric_names = hist_names;
    ts.metric_values = vals;
    al_status st = al_checkpoint_save(&t->ctx, t->m, &ts, t->ckpt);
    al_nvtx_pop();
    return st;
}

/* One optimiser step of the configured method on the batch in d_x/d_y (nb rows), its loss
 * and correct count deferred into t->d_sums and folded there (core/sums.h): no host wait. */
static al_status method_step(trainer *t, int nb, int64_t step, int epoch) {
    al_step_io *io = &t->io;
    io->x = t->d_x;
    io->y = t->d_y;
    io->n = nb;
    io->step = step;
    io->epoch = epoch;
    double loss = 0;
    int n_correct = 0;
    al_nvtx_push(t->def->name);
    t->ctx.defer = t->d_sums;
    al_status st = t->def->step(io, &loss, &n_correct);
    t->ctx.defer = NULL;
    al_nvtx_pop();
    AL_TRY(st);
    /* every host value of a deferred step is 0: anything else is host arithmetic on a value
     * that, on the device, does not exist (the contract in core/sums.h) */
    if (loss != 0.0 || n_correct != 0)
        return AL_FAIL(AL_ERR_VALUE, "train.method = %s: the step reported loss %g / %d correct "
                                        "on the host while its scalars were deferred "
                                        "(core/sums.h)",
                       t->def->name, loss, n_correct);
    return al_sums_fold(&t->ctx, t->d_sums, nb, step);
}

/* Read the epoch's sums back (one host read) and fail on what the deferred steps left there:
 * a label outside [0, K) or a non-finite loss (nothing is saved then). */
static al_status read_sums(trainer *t, int epoch, const char *last_good, al_sums *h) {
    AL_TRY(al_sums_read(&t->ctx, t->d_sums, h));
    if (h->bad_index >= 0)
        return AL_FAIL(AL_ERR_VALUE, "train: label %d at batch row %d outside [0,%d) in epoch %d",
                       h->bad_label, h->bad_index, h->bad_k, epoch + 1);
    if (h->bad_step >= 0) {
        al_jsonl_write(t->log, "error", "\"step\":%lld,\"loss\":null", (long long)h->bad_step);
        return AL_FAIL(AL_ERR_NAN,
                       "train: loss is %s at epoch %d step %lld; stopped without saving (last "
                       "good checkpoint: %s)",
                       isnan(h->bad_loss) ? "NaN" : "Inf", epoch + 1, (long long)h->bad_step,
                       last_good);
    }
    if (h->bad_grad_step >= 0)
        return AL_FAIL(AL_ERR_NAN,
                       "train: gradient norm is %g at epoch %d optimiser step %lld (train.grad_clip); "
                       "stopped without saving (last good checkpoint: %s)",
                       h->bad_grad_norm, epoch + 1, (long long)h->bad_grad_step, last_good);
    return AL_OK;
}

static al_status evaluate_now(trainer *t, int epoch, double *clean_acc, double *robust_acc) {
    const al_config *cfg = t->cfg;
    int use_ema = t->opt.ema != NULL;
    if (use_ema) AL_TRY(al_optim_swap_ema(&t->opt, t->m));
    al_eval_counts cc, rc;
    al_status st = AL_OK;
    AL_CHECK(al_evaluate(&t->ctx, t->m, t->te_x, t->te_y, t->n_te, cfg->data.eval_batch_size, NULL,
                         0, "eval clean", NULL, NULL, NULL, &cc));
    *clean_acc = (double)cc.clean_correct / (double)cc.n;
    *robust_acc = NAN;
    if (!t->no_attack || cfg->eval.attack != AL_EVAL_NONE) {
        al_attack_spec es;
        int none = 0;
        AL_CHECK(al_eval_spec_from_config(cfg, &es, &none));
        if (!none) {
            int64_t np = cfg->eval.n_points > 0 && cfg->eval.n_points < t->n_te ? cfg->eval.n_points
                                                                                 : t->n_te;
            AL_CHECK(al_evaluate(&t->ctx, t->m, t->te_x, t->te_y, np, cfg->data.eval_batch_size, &es,
                                 cfg->run.seed ^ 0x5eedull, "eval attack", NULL, NULL, NULL, &rc));
            *robust_acc = (double)rc.robust_correct / (double)rc.n;
            al_jsonl_write(t->log, "eval",
                           "\"epoch\":%d,\"weights\":\"%s\",\"n_clean\":%lld,\"clean_acc\":%.6f,"
                           "\"n_robust\":%lld,\"robust_acc\":%.6f,\"seconds\":%.3f",
                           epoch, use_ema ? "ema" : "model", (long long)cc.n, *clean_acc,
                           (long long)rc.n, *robust_acc, cc.seconds + rc.seconds);
        }
    }
    if (isnan(*robust_acc))
        al_jsonl_write(t->log, "eval", "\"epoch\":%d,\"weights\":\"%s\",\"n_clean\":%lld,\"clean_acc\":%.6f",
                       epoch, use_ema ? "ema" : "model", (long long)cc.n, *clean_acc);
done:
    if (use_ema) {
        al_status s2 = al_optim_swap_ema(&t->opt, t->m);
        if (st == AL_OK) st = s2;
    }
    return st;
}

/* Keys a resumed run may change: cadence, length and evaluation, not the training math. */
static void copy_resumable(al_config *dst, const al_config *src) {
    dst->run.threads = src->run.threads;
    dst->run.log_every = src->run.log_every;
    dst->run.checkpoint_every = src->run.checkpoint_every;
    dst->run.eval_every = src->run.eval_every;
    dst->train.max_steps = src->train.max_steps;
    dst->data.eval_batch_size = src->data.eval_batch_size;
    dst->data.n_test = src->data.n_test;
    memcpy(&dst->eval, &src->eval, sizeof dst->eval);
    memcpy(dst->run.out_dir, src->run.out_dir, sizeof dst->run.out_dir);
    memcpy(dst->run.name, src->run.name, sizeof dst->run.name);
    memcpy(dst->data.dataset, src->data.dataset, sizeof dst->data.dataset);
}

static al_status setup(trainer *t, const char *resume, int64_t *step) {
    const al_config *cfg = t->cfg;
    al_status st;
    AL_TRY(al_ctx_init(&t->ctx, cfg->run.device, 0, cfg->run.threads, (uint64_t)cfg->run.seed));
    al_config_apply_ctx(cfg, &t->ctx);
    if (!cfg->data.dataset[0])
        return AL_FAIL(AL_ERR_CONFIG, "config: data.dataset is required (path to a dataset .h5)");
    int c2, h2, w2, k2;
    AL_TRY(load_split(cfg->data.dataset, cfg->data.train_split, cfg->data.n_train, &t->n_tr, &t->tr_x,
                      &t->tr_y, &t->c, &t->h, &t->w, &t->k));
    AL_TRY(load_split(cfg->data.dataset, cfg->data.test_split, cfg->data.n_test, &t->n_te, &t->te_x,
                      &t->te_y, &c2, &h2, &w2, &k2));
    if (c2 != t->c || h2 != t->h || w2 != t->w)
        return AL_FAIL(AL_ERR_FORMAT, "%s: splits %s and %s have different image shapes",
                       cfg->data.dataset, cfg->data.train_split, cfg->data.test_split);
    if (t->h != t->w)
        return AL_FAIL(AL_ERR_FORMAT, "%s: images are %dx%d; advlab models take square images",
                       cfg->data.dataset, t->h, t->w);
    if (cfg->model.num_classes > 0) {
        if (cfg->model.num_classes < t->k)
            return AL_FAIL(AL_ERR_VALUE, "config: model.num_classes = %d but %s has %d classes",
                           cfg->model.num_classes, cfg->data.dataset, t->k);
        t->k = cfg->model.num_classes;
    }
    t->d = (size_t)t->c * t->h * t->w;
    AL_TRY(al_method_lookup(cfg->train.method, &t->def));
    al_model_opts mo = {cfg->model.bn_branches};
    AL_TRY(al_model_create_opts(cfg->model.arch, t->k, t->c, t->h, &mo, &t->m));
    if (cfg->model.mean.n || cfg->model.std.n) {
        if (cfg->model.mean.n != t->c || cfg->model.std.n != t->c)
            return AL_FAIL(AL_ERR_VALUE,
                           "config: model.mean / model.std have %d / %d values, the dataset has %d "
                           "channels",
                           cfg->model.mean.n, cfg->model.std.n, t->c);
        al_model_set_normalization(t->m, cfg->model.mean.v, cfg->model.std.v);
    }
    if (t->def->build) AL_TRY(t->def->build(t->m, cfg));
    t->n_slots = t->def->n_slots;
    t->local_batch = AL_CEIL_DIV(cfg->data.batch_size, t->ctx.world);
    int max_batch = AL_MAX(t->local_batch, cfg->data.eval_batch_size);
    AL_TRY(al_model_setup(&t->ctx, t->m, max_batch, t->n_slots));
    AL_TRY(al_model_init_params(&t->ctx, t->m, (uint64_t)cfg->run.seed));
    al_sgd_opts so = al_sgd_opts_from_config(cfg);
    AL_TRY(al_optim_init(&t->ctx, &t->opt, t->m, &so));
    AL_TRY(al_train_spec_from_config(cfg, &t->spec, &t->no_attack));
    AL_TRY(al_attack_ws_init(&t->ctx, &t->ws, t->m, t->local_batch));

    t->spe = al_sampler_n_batches(t->n_tr, cfg->data.batch_size, cfg->data.drop_last);
    if (t->spe < 1)
        return AL_FAIL(AL_ERR_VALUE, "config: data.batch_size = %d with drop_last leaves no batch of "
                                     "the %lld training rows",
                       cfg->data.batch_size, (long long)t->n_tr);
    t->perm = al_malloc((size_t)t->n_tr * sizeof(int64_t), "permutation");
    t->rows = al_malloc((size_t)t->local_batch * sizeof(int64_t), "batch rows");
    t->bx = al_malloc((size_t)t->local_batch * t->d, "batch images");
    t->by = al_malloc((size_t)t->local_batch * sizeof(int32_t), "batch labels");
    t->h_x = al_malloc((size_t)t->local_batch * t->d * sizeof(float), "batch staging");
    t->h_mom = al_malloc(t->m->n_param_floats * sizeof(float), "momentum host copy");
    t->h_ema = al_malloc(t->m->n_param_floats * sizeof(float), "EMA host copy");
    if (!t->perm || !t->rows || !t->bx || !t->by || !t->h_x || !t->h_mom || !t->h_ema) return AL_ERR_OOM;
    size_t xb = (size_t)t->local_batch * t->d * sizeof(float);
    const size_t B = (size_t)t->local_batch;
    const size_t fdim = (size_t)al_model_feature_dim(t->m), wide = AL_MAX(fdim, (size_t)t->k);
    al_step_io *io = &t->io;
    AL_TRY(al_dev_alloc(&t->ctx, (void **)&t->d_x, xb, "batch inputs"));
    AL_TRY(al_dev_alloc(&t->ctx, (void **)&t->d_y, B * sizeof(int32_t), "labels"));
    AL_TRY(al_dev_alloc(&t->ctx, (void **)&t->d_sums, sizeof(al_sums), "step sums"));
    AL_TRY(al_dev_alloc(&t->ctx, (void **)&io->xadv, xb, "adversarial batch"));
    for (int i = 0; i < 2; i++) {
        AL_TRY(al_dev_alloc(&t->ctx, (void **)&io->xaux[i], xb, "method inputs"));
        AL_TRY(al_dev_alloc(&t->ctx, (void **)&io->yaux[i], B * sizeof(int32_t), "method labels"));
    }
    for (int s = 0; s < AL_STEP_MAX_SLOTS; s++) {
        AL_TRY(al_dev_alloc(&t->ctx, (void **)&io->dl[s], B * t->k * sizeof(float), "logit gradients"));
        AL_TRY(al_dev_alloc(&t->ctx, (void **)&io->dfeat[s], B * fdim * sizeof(float), "feature gradients"));
    }
    for (int i = 0; i < 4; i++)
        AL_TRY(al_dev_alloc(&t->ctx, (void **)&io->fbuf[i], B * wide * sizeof(float), "method scratch"));
    io->ctx = &t->ctx;
    io->m = t->m;
    io->cfg = cfg;
    io->ws = &t->ws;
    io->spec = t->spec;
    io->no_attack = t->no_attack;
    io->k = t->k;
    io->d = t->d;
    io->seed = (uint64_t)cfg->run.seed;
    if (t->def->setup) AL_TRY(t->def->setup(io));
    AL_TRY(al_config_to_ini(cfg, &t->config_text));
#ifdef AL_HAVE_CUDA
    if (t->ctx.device == AL_DEV_CUDA) {
        /* the whole uint8 training split on the device (CIFAR-10: 150 MB); each step then
         * copies only row indices and gathers + augments on the device */
        al_status a = al_dev_alloc(&t->ctx, (void **)&t->d_tr_x, (size_t)t->n_tr * t->d, "device training images");
        if (a == AL_OK) a = al_dev_alloc(&t->ctx, (void **)&t->d_tr_y, (size_t)t->n_tr * sizeof(int32_t), "device labels");
        if (a == AL_OK) a = al_dev_alloc(&t->ctx, (void **)&t->d_rows, B * sizeof(int64_t), "device batch rows");
        if (a == AL_ERR_OOM) {
            al_clear_error();
            al_dev_free(&t->ctx, t->d_tr_x);
            al_dev_free(&t->ctx, t->d_tr_y);
            al_dev_free(&t->ctx, t->d_rows);
            t->d_tr_x = NULL;
            t->d_tr_y = NULL;
            t->d_rows = NULL;
            al_log_warn("training split does not fit on the GPU: batches staged through the host");
        } else {
            AL_TRY(a);
            AL_TRY(al_copy_to_dev(&t->ctx, t->d_tr_x, t->tr_x, (size_t)t->n_tr * t->d));
            AL_TRY(al_copy_to_dev(&t->ctx, t->d_tr_y, t->tr_y, (size_t)t->n_tr * sizeof(int32_t)));
            AL_TRY(al_sync(&t->ctx));
        }
    }
#endif

    /* run directory */
    snprintf(t->dir, sizeof t->dir, "%s/%s", cfg->run.out_dir, cfg->run.name);
    mkdir(cfg->run.out_dir, 0755);
    if (mkdir(t->dir, 0755) != 0 && errno != EEXIST)
        return AL_FAIL(AL_ERR_IO, "%s: cannot create run directory: %s", t->dir, strerror(errno));
    snprintf(t->ckpt, sizeof t->ckpt, "%.1000s/checkpoint.h5", t->dir);
    snprintf(t->jsonl, sizeof t->jsonl, "%.1000s/metrics.jsonl", t->dir);

    *step = 0;
    if (resume) {
        al_ckpt_info info;
        AL_TRY(al_checkpoint_info(resume, &info));
        if (strcmp(info.arch, t->m->arch) != 0)
            return AL_FAIL(AL_ERR_VALUE, "%s: checkpoint arch %s, config model.arch %s", resume,
                           info.arch, t->m->arch);
        AL_TRY(al_checkpoint_load(&t->ctx, t->m, resume));
        al_train_state_in tsi;
        memset(&tsi, 0, sizeof tsi);
        tsi.momentum = t->h_mom;
        tsi.ema = t->h_ema;
        AL_TRY(al_checkpoint_load_train(resume, t->m, &tsi));
        st = AL_OK;
        if (!tsi.config) {
            st = AL_FAIL(AL_ERR_FORMAT, "%s:/train: no config stored; cannot resume", resume);
        } else {
            al_config stored;
            al_config_defaults(&stored);
            st = al_config_load_string(&stored, tsi.config, resume);
            if (st == AL_OK) st = al_config_validate(&stored);
            if (st == AL_OK) {
                copy_resumable(&stored, cfg);
                char diff[512];
                if (!al_config_equal(&stored, cfg, diff, sizeof diff))
                    st = AL_FAIL(AL_ERR_CONFIG,
                                 "--resume %s: config differs from the checkpoint's at %s (only "
                                 "cadence, length and [eval] keys may change)",
                                 resume, diff);
            }
        }
        if (st == AL_OK)
            st = al_optim_set_state(&t->ctx, &t->opt, t->m, tsi.step, tsi.has_momentum ? t->h_mom : NULL,
                                    tsi.has_ema ? t->h_ema : NULL);
        /* metric history continues */
        for (int e = 0; st == AL_OK && tsi.n_metrics > 0 && e < (int)tsi.metric_lens[0]; e++) {
            double row[H_N];
            for (int i = 0; i < H_N; i++) {
                row[i] = NAN;
                for (int j = 0; j < tsi.n_metrics; j++)
                    if (!strcmp(tsi.metric_names[j], hist_names[i]) && e < tsi.metric_lens[j])
                        row[i] = tsi.metric_values[j][e];
            }
            st = hist_push(t, row);
        }
        *step = tsi.step;
        al_train_state_in_free(&tsi);
        AL_TRY(st);
        al_log_info("resumed from %s at step %lld (epoch %lld of %d)", resume, (long long)*step,
                    (long long)(*step / t->spe), cfg->train.epochs);
    }
    AL_TRY(al_jsonl_open(&t->log, t->jsonl, cfg, resume != NULL));
    return AL_OK;
}

static void teardown(trainer *t) {
    al_ctx *ctx = &t->ctx;
    if (t->log) al_jsonl_close(t->log);
    al_attack_ws_fini(ctx, &t->ws);
    al_optim_fini(ctx, &t->opt);
    al_step_io *io = &t->io;
    if (t->def && t->def->teardown && io->ctx) t->def->teardown(io);
    al_dev_free(ctx, t->d_x);
    al_dev_free(ctx, t->d_y);
    al_dev_free(ctx, t->d_tr_x);
    al_dev_free(ctx, t->d_tr_y);
    al_dev_free(ctx, t->d_rows);
    al_dev_free(ctx, t->d_sums);
    al_dev_free(ctx, io->xadv);
    for (int i = 0; i < 2; i++) {
        al_dev_free(ctx, io->xaux[i]);
        al_dev_free(ctx, io->yaux[i]);
    }
    for (int s = 0; s < AL_STEP_MAX_SLOTS; s++) {
        al_dev_free(ctx, io->dl[s]);
        al_dev_free(ctx, io->dfeat[s]);
    }
    for (int i = 0; i < 4; i++) al_dev_free(ctx, io->fbuf[i]);
    al_model_destroy(ctx, t->m);
    al_ctx_fini(ctx);
    al_free(t->tr_x);
    al_free(t->tr_y);
    al_free(t->te_x);
    al_free(t->te_y);
    al_free(t->perm);
    al_free(t->rows);
    al_free(t->bx);
    al_free(t->by);
    al_free(t->h_x);
    al_free(t->h_mom);
    al_free(t->h_ema);
    al_free(t->config_text);
    for (int i = 0; i < H_N; i++) free(t->hist[i]);
}

al_status al_train(const al_config *cfg, const char *resume, al_train_result *res) {
    trainer T;
    memset(&T, 0, sizeof T);
    trainer *t = &T;
    t->cfg = cfg;
    memset(res, 0, sizeof *res);
    res->test_clean_acc = res->test_robust_acc = NAN;
    g_stop = 0;
    int64_t step = 0;
    al_status st = setup(t, resume, &step);
    if (st != AL_OK) goto done;
    snprintf(res->checkpoint, sizeof res->checkpoint, "%.1000s", t->ckpt);

    const int epochs = cfg->train.epochs;
    const int pad = cfg->data.augment == AL_AUG_CROP_FLIP ? cfg->data.crop_pad : 0;
    const int on_dev = t->ctx.device != AL_DEV_CPU;
    al_log_info("train %s: %s on %s (%lld train / %lld test rows, %d classes), %s, %d epochs x %lld "
                "steps, batch %d, device %s, %d threads",
                cfg->run.name, t->m->arch, cfg->data.dataset, (long long)t->n_tr, (long long)t->n_te,
                t->k, al_config_enum_name("train.method", cfg->train.method), epochs,
                (long long)t->spe, cfg->data.batch_size, al_config_enum_name("run.device", cfg->run.device),
                t->ctx.n_threads);
    al_jsonl_write(t->log, "start",
                   "\"arch\":\"%s\",\"n_train\":%lld,\"n_test\":%lld,\"steps_per_epoch\":%lld,"
                   "\"start_step\":%lld,\"threads\":%d",
                   t->m->arch, (long long)t->n_tr, (long long)t->n_te, (long long)t->spe,
                   (long long)step, t->ctx.n_threads);

    for (int epoch = (int)(step / t->spe); epoch < epochs; epoch++) {
        al_sampler_perm((uint64_t)cfg->run.seed, epoch, t->n_tr, cfg->data.shuffle, t->perm);
        /* DFA's official code rebuilds its optimiser every epoch (methods.md §1.3) */
        if (cfg->train.method == AL_METHOD_DFA && cfg->dfa.reset_momentum) t->opt.have_buf = 0;
        char label[64];
        snprintf(label, sizeof label, "epoch %d/%d", epoch + 1, epochs);
        al_progress prog;
        int64_t first_b = step - (int64_t)epoch * t->spe;
        al_progress_begin(&prog, label, t->n_tr);
        double ep_seen = 0, t_ep = al_now();
        const uint64_t reads0 = t->ctx.n_host_reads; /* host reads of the epoch's steps */
        int64_t ep_steps = 0;
        /* the steps' loss / correct sums stay on the device; hs is their last read */
        const char *last_good = res->epochs_done > 0 || resume ? t->ckpt : "none";
        al_sums hs;
        memset(&hs, 0, sizeof hs);
        AL_CHECK(al_sums_reset(&t->ctx, t->d_sums));
        for (int64_t b = first_b; b < t->spe; b++) {
            int nb = al_sampler_batch(t->perm, t->n_tr, b, cfg->data.batch_size, cfg->data.drop_last,
                                      t->ctx.rank, t->ctx.world, t->rows);
            if (nb == 0) continue;
            al_nvtx_push("data");
            if (t->d_tr_x) {
#ifdef AL_HAVE_CUDA
                AL_CHECK(al_copy_to_dev(&t->ctx, t->d_rows, t->rows, (size_t)nb * sizeof(int64_t)));
                AL_CHECK(al_batch_to_float_cuda(&t->ctx, t->d_tr_x, t->d_rows, nb, t->c, t->h, t->w, pad,
                                                (uint64_t)cfg->run.seed, (uint64_t)step, t->d_x));
                AL_CHECK(al_gather_labels_cuda(&t->ctx, t->d_tr_y, t->d_rows, nb, t->d_y));
#endif
            } else {
                for (int i = 0; i < nb; i++) {
                    memcpy(t->bx + (size_t)i * t->d, t->tr_x + (size_t)t->rows[i] * t->d, t->d);
                    t->by[i] = t->tr_y[t->rows[i]];
                }
                al_batch_to_float(t->bx, nb, t->c, t->h, t->w, pad, (uint64_t)cfg->run.seed,
                                  (uint64_t)step, on_dev ? t->h_x : t->d_x);
                if (on_dev)
                    AL_CHECK(al_copy_to_dev(&t->ctx, t->d_x, t->h_x, (size_t)nb * t->d * sizeof(float)));
                AL_CHECK(al_copy_to_dev(&t->ctx, t->d_y, t->by, (size_t)nb * sizeof(int32_t)));
            }
            al_nvtx_pop();

            AL_CHECK(method_step(t, nb, step, epoch));
            double lr = al_lr_at(&cfg->train, step, t->spe);
            al_nvtx_push("optimizer");
            if (cfg->train.grad_clip > 0) { /* norm and coefficient stay on the device */
                AL_CHECK(al_optim_clip_coef_deferred(&t->ctx, &t->opt, t->m, cfg->train.grad_clip,
                                                     t->d_sums));
                AL_CHECK(al_optim_step_sched_dev(&t->ctx, &t->opt, t->m, &cfg->train, t->spe,
                                                 &t->d_sums->clip_coef));
            } else {
                AL_CHECK(al_optim_step_sched(&t->ctx, &t->opt, t->m, &cfg->train, t->spe, 1.0));
            }
            al_nvtx_pop();
            step++;
            ep_steps++;
            ep_seen += nb;
            const int64_t shown = (int64_t)ep_seen + first_b * cfg->data.batch_size;
            const int log_now = step % cfg->run.log_every == 0;
            const int stop_now = g_stop || (cfg->train.max_steps > 0 && step >= cfg->train.max_steps);
            /* the only host waits of the loop: step records, progress redraws, stops */
            if (log_now || stop_now || al_progress_due(&prog, shown)) {
                AL_CHECK(read_sums(t, epoch, last_good, &hs));
                res->last_loss = hs.last[0];
            }
            al_progress_update(&prog, shown, hs.n > 0 ? hs.total[0] / hs.n : NAN,
                               hs.n > 0 ? hs.total[1] / hs.n : NAN);
            if (log_now)
                al_jsonl_write(t->log, "step",
                               "\"step\":%lld,\"epoch\":%d,\"lr\":%.8g,\"loss\":%.6g,\"acc\":%.6f,"
                               "\"img_per_s\":%.1f",
                               (long long)step, epoch + 1, lr, hs.last[0], hs.last[1] / nb,
                               ep_seen / (al_now() - t_ep));
            if (stop_now) {
                al_progress_end(&prog);
                AL_CHECK(save_checkpoint(t, epoch, step));
                res->steps = step;
                res->epochs_done = epoch;
                al_jsonl_write(t->log, "stop", "\"step\":%lld,\"reason\":\"%s\",\"checkpoint\":\"%s\"",
                               (long long)step, g_stop ? "signal" : "max_steps", t->ckpt);
                if (g_stop) {
                    res->interrupted = 1;
                    st = AL_FAIL(AL_ERR_INTERRUPTED, "train: stopped by signal %d at step %lld; "
                                                     "checkpoint saved to %s (continue with --resume)",
                                 (int)g_stop, (long long)step, t->ckpt);
                }
                goto done;
            }
        }
        AL_CHECK(read_sums(t, epoch, last_good, &hs));
        res->last_loss = hs.last[0];
        al_progress_update(&prog, (int64_t)ep_seen + first_b * cfg->data.batch_size,
                           hs.total[0] / hs.n, hs.total[1] / hs.n);
        al_progress_end(&prog);
        double sec = al_now() - t_ep;
        /* values the host read back per optimiser step: the trainer's reads of its sums (step
         * records, progress, the epoch's end) plus any wait a method or attack adds inside a
         * step -- a hot-path figure that e2e_methods_cuda pins */
        const double reads_per_step =
            ep_steps ? (double)(t->ctx.n_host_reads - reads0) / (double)ep_steps : 0.0;
        double row[H_N] = {hs.total[0] / hs.n, hs.total[1] / hs.n,
                           al_lr_at(&cfg->train, step - 1, t->spe), NAN, NAN};
        al_log_info("epoch %d/%d: loss %.4f, train %s acc %.2f%%, %.1f img/s", epoch + 1, epochs,
                    row[H_LOSS], t->no_attack ? "clean" : "adv", 100 * row[H_ACC], ep_seen / sec);
        int last = epoch + 1 == epochs;
        if (last || (cfg->run.eval_every > 0 && (epoch + 1) % cfg->run.eval_every == 0)) {
            AL_CHECK(evaluate_now(t, epoch + 1, &row[H_TEST_CLEAN], &row[H_TEST_ROBUST]));
            res->test_clean_acc = row[H_TEST_CLEAN];
            res->test_robust_acc = row[H_TEST_ROBUST];
            al_log_info("epoch %d/%d: test clean %.2f%%, robust %.2f%%", epoch + 1, epochs,
                        100 * row[H_TEST_CLEAN], 100 * row[H_TEST_ROBUST]);
        }
        AL_CHECK(hist_push(t, row));
        al_jsonl_write(t->log, "epoch",
                       "\"epoch\":%d,\"step\":%lld,\"loss\":%.6g,\"acc\":%.6f,\"lr\":%.8g,"
                       "\"img_per_s\":%.1f,\"seconds\":%.3f,\"host_reads_per_step\":%.3f",
                       epoch + 1, (long long)step, row[H_LOSS], row[H_ACC], row[H_LR], ep_seen / sec, sec,
                       reads_per_step);
        res->epochs_done = epoch + 1;
        res->steps = step;
        if (last || (cfg->run.checkpoint_every > 0 && (epoch + 1) % cfg->run.checkpoint_every == 0))
            AL_CHECK(save_checkpoint(t, epoch + 1, step));
    }
#ifdef AL_HAVE_CUDA
    if (t->ctx.device == AL_DEV_CUDA) { /* what the training attacks' CUDA graph did */
        const al_cuda_graph_info gi = al_attack_ws_graph_info(&t->ws);
        if (!t->ctx.cuda_graphs || t->ws.graph_off)
            al_log_info("CUDA graphs: off (%s)", t->ws.graph_off ? "the capture was refused"
                                                                  : "run.cuda_graphs = 0");
        else
            al_log_info("CUDA graphs: %llu training-attack iterations replayed (largest graph %zu nodes; %llu "
                        "captures, %llu instantiations, %llu in-place updates)",
                        (unsigned long long)gi.launches, gi.nodes,
                        (unsigned long long)gi.captures, (unsigned long long)gi.instantiations,
                        (unsigned long long)gi.updates);
    }
#endif
done:
    teardown(t);
    return st;
}
