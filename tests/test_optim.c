/* test_optim.c: core/optim: SGD vs torch.optim.SGD on the same tensors, LR/momentum
 * schedules vs their formulas and vs torch.optim.lr_scheduler, EMA formula, gradient-norm
 * clipping, exact resume through the checkpoint hooks.
 * The torch side (tests/torch/optim_ref.py, run by /usr/bin/python3) reads the inputs this
 * test writes to <tmp>/optim/ and writes its results there; one python run serves every
 * case. Without torch the torch cases skip (77); the formula cases still run. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "core/optim.h"
#include "harness/check.h"

/* ---- a parameter table without a graph: the optimiser only sees table + buffers ---- */
enum { N_W = 37, N_B = 5, N_BUF = 3, N_ALL = N_W + N_B + N_BUF };

typedef struct fake_model {
    al_model m;
    al_param p[3];
    float data[N_ALL], grads[N_ALL];
} fake_model;

/* w: trainable with decay; b: trainable, no decay (a torch group with weight_decay 0);
 * running_mean: a BN buffer (not trainable). Sizes are odd on purpose. */
static void fake_init(fake_model *f, uint64_t id) {
    memset(f, 0, sizeof *f);
    static const struct {
        const char *name;
        int n, trainable, decay;
        al_param_kind kind;
    } t[3] = {{"fc.weight", N_W, 1, 1, AL_P_WEIGHT},
              {"fc.bias", N_B, 1, 0, AL_P_BIAS},
              {"bn.running_mean", N_BUF, 0, 0, AL_P_BN_MEAN}};
    size_t off = 0;
    for (int i = 0; i < 3; i++) {
        snprintf(f->p[i].name, sizeof f->p[i].name, "%s", t[i].name);
        f->p[i].ndim = 1;
        f->p[i].shape[0] = t[i].n;
        f->p[i].offset = off;
        f->p[i].n_elems = (size_t)t[i].n;
        f->p[i].kind = t[i].kind;
        f->p[i].trainable = t[i].trainable;
        f->p[i].decay = t[i].decay;
        off += (size_t)t[i].n;
    }
    f->m.params = f->p;
    f->m.n_params = 3;
    f->m.n_param_floats = N_ALL;
    f->m.data = f->data;
    f->m.grads = f->grads;
    f->m.setup_done = 1;
    al_test_fill(f->data, N_ALL, id, -1.0f, 1.0f);
}

/* Gradient of step s of run `id`. */
static void fill_grads(fake_model *f, uint64_t id, int64_t s) {
    al_test_fill(f->grads, N_ALL, 1000 * id + 17 + (uint64_t)s, -1.0f, 1.0f);
}

static al_ctx g_ctx;

/* ---- torch reference plumbing ---- */
static char g_dir[512];
static int g_torch_rc = -1; /* exit status of optim_ref.py: 0 ok, 77 no torch */

static int write_f32(const char *name, const float *x, size_t n) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return 1;
    size_t w = fwrite(x, sizeof(float), n, f);
    return (fclose(f) != 0) | (w != n);
}

static int read_bin(const char *name, void *x, size_t n_bytes) {
    char path[700];
    snprintf(path, sizeof path, "%s/%s", g_dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "  cannot read %s\n", path);
        return 1;
    }
    size_t r = fread(x, 1, n_bytes, f);
    fclose(f);
    if (r != n_bytes) fprintf(stderr, "  %s: %zu of %zu bytes\n", path, r, n_bytes);
    return r != n_bytes;
}

/* SGD jobs: our result alongside the inputs handed to torch. */
enum { MAX_STEPS = 8 };
typedef struct sgd_job {
    const char *name;
    int steps, nesterov;
    double wd, lr[MAX_STEPS], mom[MAX_STEPS];
    float out[N_ALL], buf[N_ALL]; /* ours: final params, momentum buffer */
} sgd_job;
static sgd_job g_jobs[4];
static int g_n_jobs;

/* Run a job through al_optim_step and record inputs for torch. */
static int run_sgd_job(sgd_job *j, FILE *manifest, uint64_t id) {
    fake_model f;
    fake_init(&f, id);
    char fname[128];
    snprintf(fname, sizeof fname, "%s_params.f32", j->name);
    /* torch sees the trainable tensors only: w then b (the first N_W + N_B floats). */
    AL_EXPECT(!write_f32(fname, f.data, N_W + N_B), "write %s", fname);
    double mom_max = 0;
    for (int s = 0; s < j->steps; s++) mom_max = AL_MAX(mom_max, j->mom[s]);
    al_sgd_opts o = {mom_max, j->wd, j->nesterov, 0, 0.0};
    al_optim opt;
    AL_EXPECT(al_optim_init(&g_ctx, &opt, &f.m, &o) == AL_OK, "%s", al_errmsg());
    float *grads = malloc(sizeof(float) * (N_W + N_B) * (size_t)j->steps);
    for (int s = 0; s < j->steps; s++) {
        fill_grads(&f, id, s);
        memcpy(grads + (size_t)s * (N_W + N_B), f.grads, sizeof(float) * (N_W + N_B));
        AL_EXPECT(al_optim_step(&g_ctx, &opt, &f.m, j->lr[s], j->mom[s], 1.0) == AL_OK, "%s",
                  al_errmsg());
    }
    snprintf(fname, sizeof fname, "%s_grads.f32", j->name);
    int bad = write_f32(fname, grads, (size_t)(N_W + N_B) * (size_t)j->steps);
    free(grads);
    AL_EXPECT(!bad, "write %s", fname);
    memcpy(j->out, f.data, sizeof f.data);
    memset(j->buf, 0, sizeof j->buf);
    if (opt.momentum) memcpy(j->buf, opt.momentum, sizeof j->buf);
    AL_EXPECT(opt.step == j->steps, "step count %lld", (long long)opt.step);
    al_optim_fini(&g_ctx, &opt);
    fprintf(manifest, "sgd %s %d %d %d %d %.17g", j->name, N_W, N_B, j->steps, j->nesterov, j->wd);
    for (int s = 0; s < j->steps; s++) fprintf(manifest, " %.17g", j->lr[s]);
    for (int s = 0; s < j->steps; s++) fprintf(manifest, " %.17g", j->mom[s]);
    fprintf(manifest, "\n");
    return 0;
}

/* Schedule jobs: a train section + steps per epoch; torch kind + args. */
typedef struct sched_job {
    const char *name, *sets[8];
    int spe;
    const char *torch_kind;
} sched_job;

static const sched_job k_sched[] = {
    {"multistep",
     {"train.epochs=6", "train.lr=0.1", "train.gamma=0.1", "train.milestones=2,4"},
     5,
     "multistep"},
    {"cosine", {"train.epochs=4", "train.lr=0.05", "train.lr_schedule=cosine"}, 7, "cosine"},
    /* T = 21 (odd): CyclicLR's step sizes are 10.5, as fast_adversarial's lr_steps / 2. */
    {"cyclic",
     {"train.epochs=3", "train.lr_schedule=cyclic", "train.lr_max=0.2", "train.cycle_momentum=1",
      "train.momentum=0.9", "train.momentum_min=0.8"},
     7,
     "cyclic"},
    {"onecycle",
     {"train.epochs=3", "train.lr_schedule=onecycle", "train.lr=0.2", "train.cycle_momentum=1",
      "train.momentum=0.95", "train.momentum_min=0.85", "train.onecycle_pct_start=0.3"},
     10,
     "onecycle"},
    {"warmup",
     {"train.epochs=5", "train.lr=0.1", "train.lr_schedule=constant", "train.warmup_epochs=2.5"},
     4,
     "warmup"},
};

static int sched_config(const sched_job *sj, al_config *c) {
    al_config_defaults(c);
    for (int i = 0; i < 8 && sj->sets[i]; i++)
        if (al_config_set(c, sj->sets[i]) != AL_OK) {
            fprintf(stderr, "  %s\n", al_errmsg());
            return 1;
        }
    if (al_config_validate(c) != AL_OK) {
        fprintf(stderr, "  %s\n", al_errmsg());
        return 1;
    }
    return 0;
}

static void sched_manifest(FILE *m, const sched_job *sj, const al_cfg_train *t) {
    fprintf(m, "sched %s %s %d %d", sj->name, sj->torch_kind, sj->spe, t->epochs);
    if (!strcmp(sj->torch_kind, "multistep")) {
        fprintf(m, " %.17g %.17g ", t->lr, t->gamma);
        for (int i = 0; i < t->milestones.n; i++)
            fprintf(m, "%s%d", i ? "," : "", t->milestones.v[i]);
    } else if (!strcmp(sj->torch_kind, "cosine")) {
        fprintf(m, " %.17g", t->lr);
    } else if (!strcmp(sj->torch_kind, "cyclic")) {
        fprintf(m, " %.17g %.17g %.17g", t->lr_max, t->momentum_min, t->momentum);
    } else if (!strcmp(sj->torch_kind, "onecycle")) {
        fprintf(m, " %.17g %.17g %.17g %.17g %.17g %.17g", t->lr_max > 0 ? t->lr_max : t->lr,
                t->onecycle_pct_start, t->onecycle_div, t->onecycle_final_div, t->momentum_min,
                t->momentum);
    } else if (!strcmp(sj->torch_kind, "warmup")) {
        fprintf(m, " %.17g %lld", t->lr, (long long)llround(t->warmup_epochs * sj->spe));
    }
    fprintf(m, "\n");
}

/* Write every input, run optim_ref.py once. Called by the first torch case. */
static int prepare_torch(void) {
    if (g_torch_rc >= 0) return 0;
    snprintf(g_dir, sizeof g_dir, "%s/optim", al_test_tmpdir());
    mkdir(g_dir, 0755);
    char path[700];
    snprintf(path, sizeof path, "%s/manifest.txt", g_dir);
    FILE *m = fopen(path, "w");
    AL_EXPECT(m, "cannot write %s", path);
    /* SGD jobs: constant lr with momentum; nesterov with a decaying lr; plain SGD; and the
     * cyclic schedule's lr and momentum (momentum changing every step). */
    sgd_job *j = g_jobs;
    g_n_jobs = 0;
    j[0] = (sgd_job){.name = "momentum", .steps = 6, .nesterov = 0, .wd = 5e-4};
    j[1] = (sgd_job){.name = "nesterov", .steps = 7, .nesterov = 1, .wd = 1e-2};
    j[2] = (sgd_job){.name = "plain", .steps = 5, .nesterov = 0, .wd = 1e-2};
    j[3] = (sgd_job){.name = "cycled", .steps = 8, .nesterov = 0, .wd = 5e-4};
    al_config c;
    AL_EXPECT(!sched_config(&k_sched[2], &c), "cyclic config");
    for (int s = 0; s < MAX_STEPS; s++) {
        j[0].lr[s] = 0.1, j[0].mom[s] = 0.9;
        j[1].lr[s] = 0.2 / (1 + s), j[1].mom[s] = 0.9;
        j[2].lr[s] = 0.3, j[2].mom[s] = 0.0;
        /* the first 8 steps of the T = 21 cycle: lr rising from 0, momentum falling from 0.9 */
        j[3].lr[s] = al_lr_at(&c.train, s, k_sched[2].spe);
        j[3].mom[s] = al_momentum_at(&c.train, s, k_sched[2].spe);
    }
    for (int i = 0; i < 4; i++) {
        if (run_sgd_job(&j[i], m, (uint64_t)(i + 1))) {
            fclose(m);
            return 1;
        }
        g_n_jobs++;
    }
    for (size_t i = 0; i < AL_ARRAY_LEN(k_sched); i++) {
        AL_EXPECT(!sched_config(&k_sched[i], &c), "%s config", k_sched[i].name);
        sched_manifest(m, &k_sched[i], &c.train);
    }
    fclose(m);
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s/tests/torch/optim_ref.py %s", al_test_python(),
             al_test_source_dir(), g_dir);
    int rc = system(cmd);
    g_torch_rc = rc == -1 ? 1 : WEXITSTATUS(rc);
    AL_EXPECT(g_torch_rc == 0 || g_torch_rc == AL_SKIP_CODE, "%s failed (exit %d)", cmd,
              g_torch_rc);
    return 0;
}

/* Worst-case float32 disagreement between two correct implementations of S SGD steps. torch
 * evaluates a + alpha*b as one FMA (vec::fmadd) where we round the product first, so three
 * operations per step may differ: g + wd*p, g + m*buf (nesterov) and p - lr*g, each by at
 * most eps * (|a| + |alpha*b|). The buffer update (mul_ then add_) rounds identically. With
 * G >= |g + wd p|, B = G (1 - m^S) / (1 - m) >= |buf| and P >= |p|, one step adds at most
 * 3 eps (P + lr (G + m B)) directly, and a buffer difference made at step k (<= 3 eps
 * (G + m B)) reaches p through lr (1 + m) in every later step: S (S + 1) / 2 such terms. */
static double sgd_tol(int steps, double lr_max, double m, double wd) {
    double g = 1.0 + wd * 2.0; /* |grad| <= 1, |p| <= 2 (checked below by the bound on P) */
    double b = g * (1.0 - pow(m, steps)) / (1.0 - AL_MIN(m, 0.999));
    double p = 1.0 + lr_max * steps * (g + m * b);
    double s = steps;
    return 3.0 * AL_F32_EPS *
           (s * (p + lr_max * (g + m * b)) + lr_max * (1.0 + m) * s * (s + 1) / 2 * (g + m * b));
}

static int case_sgd_torch(void) {
    if (prepare_torch()) return 1;
    if (g_torch_rc == AL_SKIP_CODE) return AL_SKIP_CODE;
    int bad = 0;
    for (int i = 0; i < g_n_jobs; i++) {
        const sgd_job *j = &g_jobs[i];
        float ref[2 * (N_W + N_B)];
        char fname[128];
        snprintf(fname, sizeof fname, "%s_out.f32", j->name);
        AL_EXPECT(!read_bin(fname, ref, sizeof ref), "torch output %s", fname);
        double lr_max = 0, m = 0;
        for (int s = 0; s < j->steps; s++)
            lr_max = AL_MAX(lr_max, j->lr[s]), m = AL_MAX(m, j->mom[s]);
        double tol = sgd_tol(j->steps, lr_max, m, j->wd);
        for (int k = 0; k < N_W + N_B; k++)
            AL_EXPECT(fabsf(ref[k]) <= 2.0f, "torch param %d = %g outside the bound's |p| <= 2", k,
                      ref[k]);
        char what[96];
        snprintf(what, sizeof what, "sgd %s: params vs torch", j->name);
        bad += al_check_close(what, j->out, ref, N_W + N_B, tol, 0);
        snprintf(what, sizeof what, "sgd %s: momentum buffer vs torch", j->name);
        bad += al_check_close(what, j->buf, ref + N_W + N_B, N_W + N_B, tol, 0);
        /* The BN buffer is never touched by SGD. */
        fake_model f;
        fake_init(&f, (uint64_t)(i + 1));
        AL_EXPECT(!memcmp(j->out + N_W + N_B, f.data + N_W + N_B, N_BUF * sizeof(float)),
                  "%s: non-trainable floats changed", j->name);
    }
    return bad != 0;
}

static int case_sched_torch(void) {
    if (prepare_torch()) return 1;
    if (g_torch_rc == AL_SKIP_CODE) return AL_SKIP_CODE;
    int bad = 0;
    for (size_t i = 0; i < AL_ARRAY_LEN(k_sched); i++) {
        const sched_job *sj = &k_sched[i];
        al_config c;
        AL_EXPECT(!sched_config(sj, &c), "config");
        int total = c.train.epochs * sj->spe;
        double *ref = malloc(sizeof(double) * 2 * (size_t)total);
        double *got = malloc(sizeof(double) * 2 * (size_t)total);
        char fname[128];
        snprintf(fname, sizeof fname, "%s_sched.f64", sj->name);
        int rd = read_bin(fname, ref, sizeof(double) * 2 * (size_t)total);
        for (int s = 0; s < total; s++) {
            got[s] = al_lr_at(&c.train, s, sj->spe);
            got[total + s] = al_momentum_at(&c.train, s, sj->spe);
        }
        /* torch's closed-form schedulers (MultiStepLR, CyclicLR, OneCycleLR) evaluate the same
         * double expressions: a few ulps. CosineAnnealingLR and LinearLR are recursive (each
         * step multiplies the previous lr by a ratio), so their rounding grows with the step
         * count: 8 eps per step relative, and the same times lr absolute near lr = 0. */
        double peak = c.train.lr_max > 0 ? c.train.lr_max : c.train.lr;
        double rtol = 8 * DBL_EPSILON * total, atol = rtol * peak;
        char what[96];
        snprintf(what, sizeof what, "%s: lr vs torch", sj->name);
        if (!rd) bad += al_check_close_d(what, got, ref, (size_t)total, atol, rtol);
        if (!rd && c.train.cycle_momentum) {
            snprintf(what, sizeof what, "%s: momentum vs torch", sj->name);
            bad += al_check_close_d(what, got + total, ref + total, (size_t)total, atol, rtol);
        }
        free(ref);
        free(got);
        bad += rd;
    }
    return bad != 0;
}

/* Schedules against their closed forms (no torch). */
static int case_sched_formula(void) {
    al_config c;
    al_config_defaults(&c);
    al_cfg_train *t = &c.train;
    const int spe = 10;
    /* constant */
    t->lr_schedule = AL_LR_CONSTANT;
    t->lr = 0.05;
    for (int s = 0; s < 50; s++) AL_EXPECT(al_lr_at(t, s, spe) == 0.05, "constant");
    /* multistep: x0.1 at the start of epochs 100 and 150 (the default recipe) */
    t->lr_schedule = AL_LR_MULTISTEP;
    t->lr = 0.1;
    AL_EXPECT(al_lr_at(t, 100 * spe - 1, spe) == 0.1, "before milestone");
    AL_EXPECT(al_lr_at(t, 100 * spe, spe) == 0.1 * 0.1, "at milestone 1");
    AL_EXPECT(al_lr_at(t, 150 * spe, spe) == 0.1 * 0.1 * 0.1, "at milestone 2");
    AL_EXPECT(al_lr_at(t, 200 * spe + 5, spe) == 0.1 * 0.1 * 0.1, "past the end");
    /* cosine to 0 */
    t->lr_schedule = AL_LR_COSINE;
    t->epochs = 3;
    int total = 3 * spe;
    for (int s = 0; s <= total; s++) {
        double want = 0.1 * 0.5 * (1 + cos(3.14159265358979323846 * s / total));
        AL_EXPECT(fabs(al_lr_at(t, s, spe) - want) <= 4 * DBL_EPSILON * 0.1, "cosine step %d", s);
    }
    AL_EXPECT(fabs(al_lr_at(t, total, spe)) < 1e-17, "cosine end");
    /* cyclic: triangle 0 -> peak (at T/2) -> 0 */
    t->lr_schedule = AL_LR_CYCLIC;
    t->lr_max = 0.2;
    for (int s = 0; s < total; s++) {
        double x = (double)s / total, want = 0.2 * (1 - fabs(2 * x - 1));
        AL_EXPECT(fabs(al_lr_at(t, s, spe) - want) <= 4 * DBL_EPSILON * 0.2, "cyclic %d", s);
    }
    AL_EXPECT(al_lr_at(t, 0, spe) == 0 && al_lr_at(t, total / 2, spe) == 0.2, "cyclic ends/peak");
    t->cycle_momentum = 1;
    t->momentum = 0.9;
    t->momentum_min = 0.8;
    AL_EXPECT(al_momentum_at(t, 0, spe) == 0.9 &&
                  fabs(al_momentum_at(t, total / 2, spe) - 0.8) < 1e-15,
              "cyclic momentum");
    /* onecycle: initial = peak/div, peak at pct*T - 1, final = initial/final_div */
    t->lr_schedule = AL_LR_ONECYCLE;
    t->onecycle_div = 25;
    t->onecycle_final_div = 1e4;
    t->onecycle_pct_start = 0.3;
    AL_EXPECT(fabs(al_lr_at(t, 0, spe) - 0.2 / 25) < 1e-17, "onecycle start");
    AL_EXPECT(fabs(al_lr_at(t, 8, spe) - 0.2) < 1e-17, "onecycle peak (step 0.3*30-1)");
    AL_EXPECT(fabs(al_lr_at(t, total - 1, spe) - 0.2 / 25 / 1e4) < 1e-18, "onecycle end");
    AL_EXPECT(fabs(al_momentum_at(t, 8, spe) - 0.8) < 1e-15 && al_momentum_at(t, 0, spe) == 0.9,
              "onecycle momentum");
    for (int s = 1; s <= 8; s++)
        AL_EXPECT(al_lr_at(t, s, spe) > al_lr_at(t, s - 1, spe), "onecycle rising at %d", s);
    for (int s = 9; s < total; s++)
        AL_EXPECT(al_lr_at(t, s, spe) < al_lr_at(t, s - 1, spe), "onecycle falling at %d", s);
    /* linear warm-up over round(0.25 * 10) = 3 steps on multistep */
    t->lr_schedule = AL_LR_MULTISTEP;
    t->cycle_momentum = 0;
    t->warmup_epochs = 0.25;
    t->lr = 0.3;
    AL_EXPECT(al_lr_at(t, 0, spe) == 0.3 * 1 / 3.0 && al_lr_at(t, 1, spe) == 0.3 * 2 / 3.0 &&
                  al_lr_at(t, 2, spe) == 0.3 && al_lr_at(t, 3, spe) == 0.3,
              "warm-up");
    AL_EXPECT(al_momentum_at(t, 5, spe) == 0.9, "momentum without cycling");
    return 0;
}

/* EMA: e_0 = p_0; e_k = d e_{k-1} + (1-d) p_k for trainable floats; buffers copied. */
static int case_ema(void) {
    fake_model f;
    fake_init(&f, 7);
    al_sgd_opts o = {0.9, 5e-4, 1, 1, 0.9};
    al_optim opt;
    AL_EXPECT(al_optim_init(&g_ctx, &opt, &f.m, &o) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(!memcmp(opt.ema, f.data, sizeof f.data), "EMA starts at the params");
    double ref[N_ALL];
    for (int i = 0; i < N_ALL; i++) ref[i] = f.data[i];
    const float d = (float)o.ema_decay, omd = (float)(1.0 - o.ema_decay);
    const int steps = 12;
    for (int s = 0; s < steps; s++) {
        fill_grads(&f, 7, s);
        /* Let the BN buffer drift, as a train-mode forward would. */
        for (int i = N_W + N_B; i < N_ALL; i++) f.data[i] += 0.25f;
        AL_EXPECT(al_optim_step(&g_ctx, &opt, &f.m, 0.1, 0.9, 1.0) == AL_OK, "%s", al_errmsg());
        for (int i = 0; i < N_ALL; i++)
            ref[i] = i < N_W + N_B ? (double)d * ref[i] + (double)omd * f.data[i] : f.data[i];
    }
    /* Per step 3 roundings (d*e, (1-d)*p, sum) of magnitude <= M = max(|e|, |p|) <= 2; older
     * errors shrink by d. Bound: 3 eps M / (1 - d), capped by 3 eps M steps. */
    double tol = 3 * AL_F32_EPS * 2.0 * AL_MIN(1.0 / (1.0 - o.ema_decay), (double)steps);
    int bad = al_check_close_fd("ema vs formula", opt.ema, ref, N_ALL, tol, 0);
    AL_EXPECT(!memcmp(opt.ema + N_W + N_B, f.data + N_W + N_B, N_BUF * sizeof(float)),
              "BN buffers must be copied into the EMA");
    /* swap: the model now computes with the EMA weights; swapping back restores. */
    float *params = f.m.data, *ema = opt.ema;
    AL_EXPECT(al_optim_swap_ema(&opt, &f.m) == AL_OK && f.m.data == ema && opt.ema == params,
              "swap");
    AL_EXPECT(al_optim_swap_ema(&opt, &f.m) == AL_OK && f.m.data == params, "swap back");
    al_optim_fini(&g_ctx, &opt);
    al_sgd_opts no_ema = {0.9, 0, 0, 0, 0};
    AL_EXPECT(al_optim_init(&g_ctx, &opt, &f.m, &no_ema) == AL_OK && !opt.ema, "no EMA");
    AL_EXPECT(al_optim_swap_ema(&opt, &f.m) == AL_ERR_VALUE, "swap without EMA must fail");
    al_optim_fini(&g_ctx, &opt);
    return bad;
}

/* Gradient-norm clipping coefficient (torch.nn.utils.clip_grad_norm_). */
static int case_clip(void) {
    fake_model f;
    fake_init(&f, 9);
    fill_grads(&f, 9, 0);
    for (int i = N_W + N_B; i < N_ALL; i++) f.grads[i] = 100.0f; /* ignored: not trainable */
    al_sgd_opts o = {0.9, 0, 0, 0, 0};
    al_optim opt;
    AL_EXPECT(al_optim_init(&g_ctx, &opt, &f.m, &o) == AL_OK, "%s", al_errmsg());
    double ss = 0;
    for (int i = 0; i < N_W + N_B; i++) ss += (double)f.grads[i] * f.grads[i];
    double norm, coef;
    AL_EXPECT(al_optim_clip_coef(&g_ctx, &opt, &f.m, 1.0, &norm, &coef) == AL_OK, "%s",
              al_errmsg());
    AL_EXPECT(fabs(norm - sqrt(ss)) <= 1e-12 * sqrt(ss), "norm %.17g vs %.17g", norm, sqrt(ss));
    AL_EXPECT(fabs(coef - 1.0 / (sqrt(ss) + 1e-6)) <= 1e-12 * coef, "coef %.17g", coef);
    AL_EXPECT(al_optim_clip_coef(&g_ctx, &opt, &f.m, 1e3, &norm, &coef) == AL_OK && coef == 1.0,
              "no clipping below max_norm");
    AL_EXPECT(al_optim_clip_coef(&g_ctx, &opt, &f.m, 0, &norm, &coef) == AL_OK && coef == 1.0,
              "max_norm 0 = off");
    /* A scaled step equals a step on scaled gradients. */
    fake_model g = f;
    g.m.params = g.p;
    g.m.data = g.data;
    g.m.grads = g.grads;
    for (int i = 0; i < N_ALL; i++) g.grads[i] = f.grads[i] * 0.5f;
    al_optim opt2;
    AL_EXPECT(al_optim_init(&g_ctx, &opt2, &g.m, &o) == AL_OK, "init");
    AL_EXPECT(al_optim_step(&g_ctx, &opt, &f.m, 0.1, 0.9, 0.5) == AL_OK, "step");
    AL_EXPECT(al_optim_step(&g_ctx, &opt2, &g.m, 0.1, 0.9, 1.0) == AL_OK, "step");
    AL_EXPECT(!memcmp(f.data, g.data, sizeof f.data), "grad_scale step != scaled-gradient step");
    al_optim_fini(&g_ctx, &opt);
    al_optim_fini(&g_ctx, &opt2);
    return 0;
}

/* Save after k steps, restore into a fresh optimiser, continue: bit-identical to a run that
 * never stopped (schedules are pure functions of the step; state round-trips exactly). */
static int case_resume(void) {
    al_config c;
    al_config_defaults(&c);
    const char *sets[] = {"train.epochs=2",         "train.lr_schedule=onecycle", "train.lr=0.2",
                          "train.cycle_momentum=1", "train.nesterov=1",           "train.ema=1",
                          "train.ema_decay=0.8"};
    for (size_t i = 0; i < AL_ARRAY_LEN(sets); i++)
        AL_EXPECT(al_config_set(&c, sets[i]) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_config_validate(&c) == AL_OK, "%s", al_errmsg());
    const int spe = 5, total = 10, cut = 4;
    al_sgd_opts o = al_sgd_opts_from_config(&c);
    fake_model a, b;
    fake_init(&a, 11);
    fake_init(&b, 11);
    al_optim oa, ob;
    AL_EXPECT(al_optim_init(&g_ctx, &oa, &a.m, &o) == AL_OK, "%s", al_errmsg());
    for (int s = 0; s < total; s++) {
        fill_grads(&a, 11, s);
        AL_EXPECT(al_optim_step_sched(&g_ctx, &oa, &a.m, &c.train, spe, 1.0) == AL_OK, "%s",
                  al_errmsg());
    }
    AL_EXPECT(al_optim_init(&g_ctx, &ob, &b.m, &o) == AL_OK, "%s", al_errmsg());
    for (int s = 0; s < cut; s++) {
        fill_grads(&b, 11, s);
        AL_EXPECT(al_optim_step_sched(&g_ctx, &ob, &b.m, &c.train, spe, 1.0) == AL_OK, "step");
    }
    float h_mom[N_ALL], h_ema[N_ALL];
    AL_EXPECT(al_optim_get_state(&g_ctx, &ob, h_mom, h_ema) == AL_OK, "%s", al_errmsg());
    int64_t step = ob.step;
    al_optim_fini(&g_ctx, &ob);
    /* "Process restart": a fresh optimiser (its EMA starts from the params) gets the state. */
    AL_EXPECT(al_optim_init(&g_ctx, &ob, &b.m, &o) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_optim_set_state(&g_ctx, &ob, &b.m, step, h_mom, h_ema) == AL_OK, "%s",
              al_errmsg());
    for (int s = cut; s < total; s++) {
        fill_grads(&b, 11, s);
        AL_EXPECT(al_optim_step_sched(&g_ctx, &ob, &b.m, &c.train, spe, 1.0) == AL_OK, "step");
    }
    AL_EXPECT(ob.step == total, "step %lld", (long long)ob.step);
    AL_EXPECT(!memcmp(a.data, b.data, sizeof a.data), "params differ after resume");
    AL_EXPECT(!memcmp(oa.momentum, ob.momentum, sizeof a.data), "momentum differs after resume");
    AL_EXPECT(!memcmp(oa.ema, ob.ema, sizeof a.data), "EMA differs after resume");
    /* Resuming past step 0 without the momentum buffer is refused. */
    AL_EXPECT(al_optim_set_state(&g_ctx, &ob, &b.m, 3, NULL, h_ema) == AL_ERR_VALUE,
              "missing momentum must fail");
    AL_EXPECT(strstr(al_errmsg(), "needs the momentum buffer"), "%s", al_errmsg());
    al_optim_fini(&g_ctx, &oa);
    al_optim_fini(&g_ctx, &ob);
    /* Options torch.optim.SGD refuses are refused here too. */
    al_sgd_opts bad = {0.0, 0, 1, 0, 0};
    AL_EXPECT(al_optim_init(&g_ctx, &ob, &a.m, &bad) == AL_ERR_VALUE, "nesterov without momentum");
    return 0;
}

/* PyTorch's first momentum step is buf = g (not m*0 + g with dampening): check the
 * first-step rule directly, and that non-decay floats ignore weight decay. */
static int case_first_step(void) {
    fake_model f;
    fake_init(&f, 13);
    fill_grads(&f, 13, 0);
    float p0[N_ALL];
    memcpy(p0, f.data, sizeof p0);
    al_sgd_opts o = {0.5, 0.1, 0, 0, 0};
    al_optim opt;
    AL_EXPECT(al_optim_init(&g_ctx, &opt, &f.m, &o) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_optim_step(&g_ctx, &opt, &f.m, 0.25, 0.5, 1.0) == AL_OK, "%s", al_errmsg());
    for (int i = 0; i < N_ALL; i++) {
        float g = f.grads[i];
        if (i < N_W) g = g + 0.1f * p0[i];
        float want_p = i < N_W + N_B ? p0[i] - 0.25f * g : p0[i];
        float want_b = i < N_W + N_B ? g : 0.0f;
        AL_EXPECT(f.data[i] == want_p && opt.momentum[i] == want_b,
                  "element %d: p %.9g (want %.9g) buf %.9g (want %.9g)", i, f.data[i], want_p,
                  opt.momentum[i], want_b);
    }
    al_optim_fini(&g_ctx, &opt);
    return 0;
}

/* The whole optimiser on a CUDA context (device mask/momentum/EMA, state hooks) against the CPU
 * run: both evaluate al_sgd_ema_elem without contraction, so the results are bitwise equal. */
static int case_cuda(void) {
    if (al_test_no_gpu()) return AL_SKIP_CODE;
    al_ctx gpu;
    AL_EXPECT(al_ctx_init(&gpu, AL_DEV_CUDA, 0, 0, 0) == AL_OK, "%s", al_errmsg());
    fake_model h, d;
    fake_init(&h, 21);
    fake_init(&d, 21);
    const size_t bytes = sizeof h.data;
    AL_EXPECT(al_dev_alloc(&gpu, (void **)&d.m.data, bytes, "params") == AL_OK &&
                  al_dev_alloc(&gpu, (void **)&d.m.grads, bytes, "grads") == AL_OK,
              "%s", al_errmsg());
    AL_EXPECT(al_copy_to_dev(&gpu, d.m.data, h.data, bytes) == AL_OK, "%s", al_errmsg());
    al_sgd_opts o = {0.9, 5e-4, 1, 1, 0.99};
    al_optim oh, od;
    AL_EXPECT(al_optim_init(&g_ctx, &oh, &h.m, &o) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_optim_init(&gpu, &od, &d.m, &o) == AL_OK, "%s", al_errmsg());
    for (int s = 0; s < 5; s++) {
        fill_grads(&h, 21, s);
        AL_EXPECT(al_copy_to_dev(&gpu, d.m.grads, h.grads, bytes) == AL_OK, "%s", al_errmsg());
        double lr = 0.1 / (s + 1), mom = 0.9 - 0.01 * s, scale = s == 3 ? 0.5 : 1.0;
        AL_EXPECT(al_optim_step(&g_ctx, &oh, &h.m, lr, mom, scale) == AL_OK, "%s", al_errmsg());
        AL_EXPECT(al_optim_step(&gpu, &od, &d.m, lr, mom, scale) == AL_OK, "%s", al_errmsg());
    }
    float p[N_ALL], mb[N_ALL], e[N_ALL];
    AL_EXPECT(al_copy_to_host(&gpu, p, d.m.data, bytes) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_optim_get_state(&gpu, &od, mb, e) == AL_OK, "%s", al_errmsg());
    int bad = al_check_close("cuda params vs cpu", p, h.data, N_ALL, 0, 0);
    bad |= al_check_close("cuda momentum vs cpu", mb, oh.momentum, N_ALL, 0, 0);
    bad |= al_check_close("cuda ema vs cpu", e, oh.ema, N_ALL, 0, 0);
    /* set_state on the device, then one more step on both. */
    AL_EXPECT(al_optim_set_state(&gpu, &od, &d.m, od.step, mb, e) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_optim_step(&g_ctx, &oh, &h.m, 0.01, 0.9, 1.0) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_optim_step(&gpu, &od, &d.m, 0.01, 0.9, 1.0) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_copy_to_host(&gpu, p, d.m.data, bytes) == AL_OK && al_sync(&gpu) == AL_OK, "copy");
    bad |= al_check_close("cuda params after set_state", p, h.data, N_ALL, 0, 0);
    al_optim_fini(&g_ctx, &oh);
    al_optim_fini(&gpu, &od);
    al_dev_free(&gpu, d.m.data);
    al_dev_free(&gpu, d.m.grads);
    al_ctx_fini(&gpu);
    return bad;
}

int main(int argc, char **argv) {
    if (al_ctx_init(&g_ctx, AL_DEV_CPU, 0, 0, 0) != AL_OK) {
        fprintf(stderr, "%s\n", al_errmsg());
        return 1;
    }
    static const al_case cases[] = {
        {"first_step", case_first_step},
        {"sched_formula", case_sched_formula},
        {"ema", case_ema},
        {"clip", case_clip},
        {"resume", case_resume},
        {"sgd_torch", case_sgd_torch},
        {"sched_torch", case_sched_torch},
        {"cuda", case_cuda},
    };
    int rc = al_run_cases(cases, (int)AL_ARRAY_LEN(cases), argc, argv);
    al_ctx_fini(&g_ctx);
    return rc;
}
