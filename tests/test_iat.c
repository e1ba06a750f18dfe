/* test_iat.c: Interpolated Adversarial Training (methods.md §5.4, core/methods/iat.c).
 * Oracles:
 *   value:    the step's loss equals an independent recomputation here (the same training
 *             attack, the same Philox draws, fresh train-mode forwards, the mixed CE of each
 *             half written out in double via softmax probabilities, averaged);
 *   gradient: with eps = 0 the attack returns x, so the objective is a function of the
 *             parameters alone: its central difference along v = g/|g| must equal |g|;
 *   draws:    the clean and adversarial halves use independent lam and permutations, both
 *             reproducible from (seed, step);
 *   config:   auto resolution gives IAT the PGD-AT recipe (train-mode BN, uniform start). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attacks/attack.h"
#include "core/config.h"
#include "core/ctx.h"
#include "core/evaluate.h"
#include "core/methods/method.h"
#include "core/model.h"
#include "core/rng.h"
#include "harness/check.h"
#include "losses/dfa.h"

#define OK(call) AL_TEST_OK(call)

static al_ctx cpu;

static float *falloc(size_t n) {
    float *p = calloc(n ? n : 1, sizeof(float));
    AL_ASSERT(p, "out of memory");
    return p;
}

typedef struct fixture {
    al_config cfg;
    al_model *m;
    al_attack_ws ws;
    al_step_io io;
    const al_method_def *def;
    float *x;
    int32_t y[16];
} fixture;

/* smallcnn (dropout 0.5: its masks come from the step's dropout streams, so every forward
 * here is reproducible), batch n, config `eps`; the buffers core/train.c gives a step. */
static al_status fixture_init(fixture *f, int n, float eps) {
    memset(f, 0, sizeof *f);
    al_config_defaults(&f->cfg);
    f->cfg.train.method = AL_METHOD_IAT;
    f->cfg.attack.eps = eps;
    f->cfg.attack.alpha = 0.025f;
    f->cfg.attack.steps = 3;
    AL_TRY(al_config_validate(&f->cfg));
    AL_TRY(al_model_create("smallcnn", 10, 1, 28, &f->m));
    AL_TRY(al_model_setup(&cpu, f->m, n, 2));
    AL_TRY(al_model_init_params(&cpu, f->m, 31));
    /* the reference zero-initialises fc3 (all logits 0, every CE = log 10): give it weights so
     * the losses depend on the inputs, the labels and lam */
    const int w3 = al_model_find_param(f->m, "classifier.fc3.weight");
    al_test_fill(al_param_data(f->m, w3), f->m->params[w3].n_elems, 802, -0.2f, 0.2f);
    AL_TRY(al_attack_ws_init(&cpu, &f->ws, f->m, n));
    f->x = falloc((size_t)n * 784);
    al_test_fill(f->x, (size_t)n * 784, 800, 0, 1);
    for (int i = 0; i < n; i++) f->y[i] = (int32_t)(al_rng_u32(3, 4, (uint64_t)i) % 10u);
    al_step_io *io = &f->io;
    io->ctx = &cpu;
    io->m = f->m;
    io->cfg = &f->cfg;
    io->ws = &f->ws;
    AL_TRY(al_train_spec_from_config(&f->cfg, &io->spec, &io->no_attack));
    io->x = f->x;
    io->y = f->y;
    io->n = n;
    io->k = 10;
    io->d = 784;
    io->seed = 2024;
    const size_t B = (size_t)n;
    AL_TRY(al_dev_alloc(&cpu, (void **)&io->xadv, B * 784 * sizeof(float), "xadv"));
    for (int i = 0; i < 2; i++) {
        AL_TRY(al_dev_alloc(&cpu, (void **)&io->xaux[i], B * 784 * sizeof(float), "xaux"));
        AL_TRY(al_dev_alloc(&cpu, (void **)&io->yaux[i], B * sizeof(int32_t), "yaux"));
    }
    for (int s = 0; s < AL_STEP_MAX_SLOTS; s++) {
        AL_TRY(al_dev_alloc(&cpu, (void **)&io->dl[s], B * 10 * sizeof(float), "dl"));
        AL_TRY(al_dev_alloc(&cpu, (void **)&io->dfeat[s], B * 200 * sizeof(float), "dfeat"));
    }
    for (int i = 0; i < 4; i++)
        AL_TRY(al_dev_alloc(&cpu, (void **)&io->fbuf[i], B * 200 * sizeof(float), "fbuf"));
    AL_TRY(al_method_lookup(AL_METHOD_IAT, &f->def));
    return f->def->setup(io);
}

static void fixture_fini(fixture *f) {
    al_step_io *io = &f->io;
    if (f->def) f->def->teardown(io);
    al_dev_free(&cpu, io->xadv);
    for (int i = 0; i < 2; i++) {
        al_dev_free(&cpu, io->xaux[i]);
        al_dev_free(&cpu, io->yaux[i]);
    }
    for (int s = 0; s < AL_STEP_MAX_SLOTS; s++) {
        al_dev_free(&cpu, io->dl[s]);
        al_dev_free(&cpu, io->dfeat[s]);
    }
    for (int i = 0; i < 4; i++) al_dev_free(&cpu, io->fbuf[i]);
    al_attack_ws_fini(&cpu, &f->ws);
    al_model_destroy(&cpu, f->m);
    free(f->x);
}

/* lam CE(z, y) + (1 - lam) CE(z, y_b), mean over the batch, via probabilities (double). */
static double mixed_ce_ref(const float *z, const int32_t *y, const int32_t *yb, double lam, int n,
                           int k) {
    double tot = 0, p[16];
    for (int i = 0; i < n; i++) {
        double mx = z[i * k], s = 0;
        for (int c = 1; c < k; c++) mx = z[i * k + c] > mx ? z[i * k + c] : mx;
        for (int c = 0; c < k; c++) s += (p[c] = exp(z[i * k + c] - mx));
        tot += -lam * log(p[y[i]] / s) - (1 - lam) * log(p[yb[i]] / s);
    }
    return tot / n;
}

/* The IAT objective recomputed from scratch: attack (the step's stream), draws, forwards. */
static double objective(fixture *f, float *lam_out) {
    al_step_io *io = &f->io;
    const int n = io->n;
    AL_ASSERT(al_step_attack(io, &io->spec, io->x, io->y, io->xadv) == AL_OK, "attack: %s",
              al_errmsg());
    const uint64_t stream = al_stream(AL_STREAM_METHOD, (uint64_t)io->step);
    const double alpha = f->cfg.iat.mixup_alpha;
    const float lam_c = (float)al_beta_sample(io->seed, stream, AL_MIX_WORDS(0), alpha);
    const float lam_v = (float)al_beta_sample(io->seed, stream, AL_MIX_WORDS(2), alpha);
    int32_t ic[16], iv[16], ybc[16], ybv[16];
    al_philox_perm(io->seed, stream, AL_MIX_WORDS(1), n, ic);
    al_philox_perm(io->seed, stream, AL_MIX_WORDS(3), n, iv);
    float *xc = falloc((size_t)n * 784), *xv = falloc((size_t)n * 784);
    for (int i = 0; i < n; i++) {
        ybc[i] = io->y[ic[i]];
        ybv[i] = io->y[iv[i]];
        for (int j = 0; j < 784; j++) {
            xc[i * 784 + j] = lam_c * io->x[i * 784 + j] + (1.0f - lam_c) * io->x[ic[i] * 784 + j];
            xv[i * 784 + j] = lam_v * io->xadv[i * 784 + j] + (1.0f - lam_v) * io->xadv[iv[i] * 784 + j];
        }
    }
    al_fwd_opts o0 = al_step_train_opts(io, 0, 0), o1 = al_step_train_opts(io, 1, 1);
    AL_ASSERT(al_model_forward(&cpu, f->m, xc, n, &o0) == AL_OK, "forward");
    AL_ASSERT(al_model_forward(&cpu, f->m, xv, n, &o1) == AL_OK, "forward");
    const double L = 0.5 * mixed_ce_ref(al_model_logits(f->m, 0), io->y, ybc, lam_c, n, 10) +
                     0.5 * mixed_ce_ref(al_model_logits(f->m, 1), io->y, ybv, lam_v, n, 10);
    if (lam_out) {
        lam_out[0] = lam_c;
        lam_out[1] = lam_v;
    }
    free(xc), free(xv);
    return L;
}

static int case_value(void) {
    fixture f;
    OK(fixture_init(&f, 8, 0.1f));
    /* auto resolution: IAT attacks like PGD-AT (Madry: train-mode BN, uniform start) */
    AL_EXPECT(f.cfg.train.bn_mode_attack == AL_BN_ATTACK_TRAIN &&
                  f.cfg.attack.random_init == AL_RINIT_UNIFORM && !f.io.no_attack &&
                  f.io.spec.type == AL_ATTACK_PGD && f.io.spec.steps == 3,
              "IAT attack recipe");
    f.io.step = 9;
    double loss = 0;
    int nc = 0;
    OK(f.def->step(&f.io, &loss, &nc));
    /* the attack moved the inputs inside the ball */
    double maxd = 0;
    for (size_t e = 0; e < (size_t)8 * 784; e++) maxd = fmax(maxd, fabs(f.io.xadv[e] - f.x[e]));
    float lam[2];
    const double L = objective(&f, lam);
    fprintf(stderr, "  loss %.9g recomputed %.9g, lam_c %.4f lam_v %.4f, max |x_adv - x| %.4f\n",
            loss, L, (double)lam[0], (double)lam[1], maxd);
    /* the step passes the CE weights as float (0.5 lam, 0.5 (1 - lam) rounded once each);
     * the reference weighs in double: 2 eps_f32 relative */
    int bad = al_check_close_d("iat loss vs recomputed", &loss, &L, 1, 0, 2 * AL_F32_EPS);
    AL_EXPECT(maxd > 0.05 && maxd <= 0.1 + 1e-6, "x_adv moved %.4g (eps 0.1)", maxd);
    AL_EXPECT(lam[0] != lam[1], "the two halves drew the same lam");
    int32_t ic[8], iv[8];
    const uint64_t stream = al_stream(AL_STREAM_METHOD, 9);
    al_philox_perm(2024, stream, AL_MIX_WORDS(1), 8, ic);
    al_philox_perm(2024, stream, AL_MIX_WORDS(3), 8, iv);
    AL_EXPECT(memcmp(ic, iv, sizeof ic) != 0, "the two halves drew the same permutation");
    /* reproducible */
    double loss2 = 0;
    OK(f.def->step(&f.io, &loss2, &nc));
    AL_EXPECT(loss2 == loss, "not reproducible: %.17g vs %.17g", loss2, loss);
    fixture_fini(&f);
    return bad;
}

static int case_gradient(void) {
    fixture f;
    OK(fixture_init(&f, 8, 0.0f));
    f.io.step = 4;
    double loss = 0;
    int nc = 0;
    OK(f.def->step(&f.io, &loss, &nc));
    for (size_t e = 0; e < (size_t)8 * 784; e++)
        AL_EXPECT(f.io.xadv[e] == f.x[e], "eps 0: x_adv != x at %zu", e);
    al_model *m = f.m;
    const size_t P = m->n_param_floats;
    float *g = falloc(P), *theta = falloc(P);
    memcpy(g, m->grads, P * sizeof(float));
    memcpy(theta, m->data, P * sizeof(float));
    double gn = 0;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].trainable)
            for (size_t j = 0; j < m->params[i].n_elems; j++)
                gn += (double)g[m->params[i].offset + j] * g[m->params[i].offset + j];
    gn = sqrt(gn);
    /* central differences at h and h/2 along the unit gradient, Richardson-combined (the O(h^2)
     * terms cancel); float forwards leave ~1e-6 relative noise in the objective: / h = 1e-4 */
    const double hs[2] = {1e-2, 5e-3};
    double fd[2];
    for (int r = 0; r < 2; r++) {
        double fv[2];
        for (int s = 0; s < 2; s++) {
            const double h = s ? -hs[r] : hs[r];
            for (int i = 0; i < m->n_params; i++) {
                const al_param *p = &m->params[i];
                if (!p->trainable) continue;
                for (size_t j = 0; j < p->n_elems; j++)
                    m->data[p->offset + j] = (float)(theta[p->offset + j] + h * g[p->offset + j] / gn);
            }
            fv[s] = objective(&f, NULL);
        }
        fd[r] = (fv[0] - fv[1]) / (2 * hs[r]);
    }
    memcpy(m->data, theta, P * sizeof(float));
    const double fd_r = (4 * fd[1] - fd[0]) / 3;
    fprintf(stderr, "  |g| = %.6g, FD along g/|g|: %.6g, %.6g, Richardson %.6g\n", gn, fd[0], fd[1],
            fd_r);
    int bad = 0;
    if (!(fabs(fd_r - gn) <= 0.02 * gn)) {
        fprintf(stderr, "  FAIL: directional derivative %.6g vs |g| %.6g\n", fd_r, gn);
        bad = 1;
    }
    free(g), free(theta);
    fixture_fini(&f);
    return bad;
}

int main(int argc, char **argv) {
    if (al_ctx_init(&cpu, AL_DEV_CPU, 0, 0, 42) != AL_OK) {
        fprintf(stderr, "ctx: %s\n", al_errmsg());
        return 1;
    }
    static const al_case cases[] = {{"value", case_value}, {"gradient", case_gradient}};
    int rc = al_run_cases(cases, (int)AL_ARRAY_LEN(cases), argc, argv);
    al_ctx_fini(&cpu);
    return rc;
}
