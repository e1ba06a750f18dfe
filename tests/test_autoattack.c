/* test_autoattack.c: attacks/autoattack.{h,c} and core/aa_state.{h,c}.
 * (a) the version settings against evaluation.md A.3; (b) the driver's invariants: a point is
 * non-robust exactly when a fresh forward pass on its returned image misclassifies it, every
 * other image is the clean input bit-exactly, images stay in the eps-ball and [0,1], robust
 * accuracy never rises from one attack to the next; (c) resume: runs stopped after every two
 * batches (mid-attack and across attack boundaries) and resumed from the state file end
 * bit-identical to an uninterrupted run; a state written for other settings is refused naming
 * the field; (d) the flags: raised and logged with their explanation on a model with
 * probability outputs and zero input gradients, silent on a plain SmallCNN; the Square and
 * class-count checks on their own. The CLI-level kill -9 + --resume test is
 * tests/e2e/autoattack_resume.sh. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attacks/autoattack.h"
#include "core/log.h"
#include "harness/attack_fixture.h"
#include "harness/check.h"
#include "losses/loss.h"

enum { NB = AL_FIX_NB, K = AL_FIX_K, IMG = AL_FIX_IMG };
static const size_t DX = AL_FIX_DX;

/* the shared seeded smallcnn (tests/harness/attack_fixture.h) */
typedef al_attack_fixture fixture;
static int fixture_init(fixture *f) { return al_attack_fixture_init(f, 1); }
static void fixture_fini(fixture *f) { al_attack_fixture_fini(f); }

/* A small, fast custom spec: APGD-CE, APGD-DLR, APGD-T (3 targets), 10 iterations each, 1
 * restart, batches of 6 (so every attack has 2-3 batches). */
static al_aa_spec small_spec(float eps) {
    al_aa_spec s;
    const al_aa_attack list[] = {AL_AA_APGD_CE, AL_AA_APGD_DLR, AL_AA_APGD_T};
    if (al_aa_spec_make(&s, AL_AA_CUSTOM, AL_LINF, eps, list, 3) != AL_OK) abort();
    s.apgd.n_iter = s.apgd_t.n_iter = 10;
    s.apgd.n_restarts = 1;
    s.apgd_t.n_target_classes = 3;
    s.batch = 6;
    s.seed = 11;
    s.state_every_s = 0;
    return s;
}

static char g_path[4][512];
static const char *tmp_path(int i, const char *name) {
    snprintf(g_path[i], sizeof g_path[i], "%s/%s", al_test_tmpdir(), name);
    return g_path[i];
}

/* Capture log output of one call into a buffer (flags are warnings in the log). */
static char g_log[1 << 16];
static FILE *log_begin(void) {
    FILE *f = tmpfile();
    if (f) al_log_set_stream(f, 0);
    return f;
}
static void log_end(FILE *f) {
    al_log_set_stream(NULL, -1);
    if (!f) return;
    rewind(f);
    size_t n = fread(g_log, 1, sizeof g_log - 1, f);
    g_log[n] = '\0';
    fclose(f);
}

/* ---------------------------------------------------------------- settings */

static int case_versions(void) {
    al_aa_spec s;
    AL_EXPECT(al_aa_spec_make(&s, AL_AA_STANDARD, AL_LINF, 8.0f / 255, NULL, 0) == AL_OK, "%s",
              al_errmsg());
    const al_aa_attack std_list[] = {AL_AA_APGD_CE, AL_AA_APGD_T, AL_AA_FAB_T, AL_AA_SQUARE};
    AL_EXPECT(s.n_attacks == 4 && !memcmp(s.attacks, std_list, sizeof std_list), "standard list");
    AL_EXPECT(s.apgd.n_iter == 100 && s.apgd.n_restarts == 1 && s.apgd.eot_iter == 1 &&
                  s.apgd.rho == 0.75f,
              "standard APGD settings");
    AL_EXPECT(s.apgd_t.n_iter == 100 && s.apgd_t.n_restarts == 1 && s.apgd_t.n_target_classes == 9,
              "standard APGD-T settings");
    AL_EXPECT(s.fab.n_iter == 100 && s.fab.n_restarts == 1 && s.fab.n_target_classes == 9 &&
                  s.fab.alpha_max == 0.1f && s.fab.eta == 1.05f && s.fab.beta == 0.9f,
              "standard FAB settings");
    AL_EXPECT(s.square.n_queries == 5000 && s.square.p_init == 0.8f && s.square.n_restarts == 1,
              "standard Square settings");
    AL_EXPECT(s.batch == 250 && s.state_every_s == 60.0, "AA defaults: bs 250, state every 60 s");
    AL_EXPECT(al_aa_spec_make(&s, AL_AA_PLUS, AL_L2, 0.5f, NULL, 0) == AL_OK, "%s", al_errmsg());
    const al_aa_attack plus_list[] = {AL_AA_APGD_CE, AL_AA_APGD_DLR, AL_AA_FAB,
                                      AL_AA_SQUARE,  AL_AA_APGD_T,   AL_AA_FAB_T};
    AL_EXPECT(s.n_attacks == 6 && !memcmp(s.attacks, plus_list, sizeof plus_list), "plus list");
    AL_EXPECT(s.apgd.n_restarts == 5 && s.fab.n_restarts == 5 && s.apgd_t.n_restarts == 1 &&
                  s.apgd_t.n_target_classes == 9 && s.norm == AL_L2,
              "plus settings");
    AL_EXPECT(al_aa_spec_make(&s, AL_AA_RAND, AL_LINF, 0.03f, NULL, 0) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(s.n_attacks == 2 && s.attacks[0] == AL_AA_APGD_CE && s.attacks[1] == AL_AA_APGD_DLR &&
                  s.apgd.eot_iter == 20 && s.apgd.n_restarts == 1,
              "rand settings");
    AL_EXPECT(al_aa_spec_make(&s, AL_AA_CUSTOM, AL_LINF, 0.03f, NULL, 0) == AL_ERR_VALUE,
              "custom without a list");
    al_aa_attack l[8];
    int n;
    AL_EXPECT(al_aa_attack_list_parse("APGD-CE, square,fab-t", l, &n) == AL_OK && n == 3 &&
                  l[0] == AL_AA_APGD_CE && l[1] == AL_AA_SQUARE && l[2] == AL_AA_FAB_T,
              "list parse: %s", al_errmsg());
    AL_EXPECT(al_aa_attack_list_parse("apgd-ce,pgd", l, &n) == AL_ERR_VALUE &&
                  strstr(al_errmsg(), "'pgd'"),
              "unknown attack: %s", al_errmsg());
    AL_EXPECT(al_aa_attack_list_parse("apgd-ce,apgd-ce", l, &n) == AL_ERR_VALUE &&
                  strstr(al_errmsg(), "twice"),
              "repeat: %s", al_errmsg());
    AL_EXPECT(al_aa_attack_list_parse("apgd-ce,,square", l, &n) == AL_ERR_VALUE, "empty entry");
    al_aa_version v;
    AL_EXPECT(al_aa_version_parse("Plus", &v) == AL_OK && v == AL_AA_PLUS, "version parse");
    AL_EXPECT(al_aa_version_parse("fast", &v) == AL_ERR_VALUE, "bad version");
    return 0;
}

static int case_checks(void) {
    /* Square: flagged only when it beats the best other entry by more than 0.2% */
    const char *names[] = {"clean", "apgd-ce", "apgd-t", "fab-t", "square"};
    double acc[] = {0.90, 0.50, 0.48, 0.48, 0.47};
    double drop;
    AL_EXPECT(al_aa_check_square(names, acc, 5, &drop) && fabs(drop - 0.01) < 1e-12,
              "square 1%% below white-box not flagged");
    acc[4] = 0.479;
    AL_EXPECT(!al_aa_check_square(names, acc, 5, &drop), "0.1%% drop flagged");
    const char *two[] = {"clean", "square"};
    double acc2[] = {0.9, 0.1};
    AL_EXPECT(!al_aa_check_square(two, acc2, 2, NULL), "square alone flagged (needs > 2 entries)");
    /* class counts */
    al_aa_spec s;
    char msg[300];
    al_aa_spec_make(&s, AL_AA_STANDARD, AL_LINF, 0.03f, NULL, 0);
    AL_EXPECT(!al_aa_check_n_classes(10, &s, msg, sizeof msg), "10 classes flagged: %s", msg);
    AL_EXPECT(al_aa_check_n_classes(5, &s, msg, sizeof msg) && strstr(msg, "APGD-T") &&
                  strstr(msg, "FAB-T"),
              "5 classes: '%s'", msg);
    AL_EXPECT(al_aa_check_n_classes(2, &s, msg, sizeof msg) && strstr(msg, "DLR"), "2 classes: '%s'",
              msg);
    return 0;
}

/* ---------------------------------------------------------------- driver */

static float g_adv[NB * IMG * IMG], g_adv2[NB * IMG * IMG];
static uint8_t g_clean[NB], g_rob[NB], g_clean2[NB], g_rob2[NB];

static int check_result(fixture *f, const al_aa_spec *s, const float *adv, const uint8_t *clean,
                        const uint8_t *rob, const al_aa_result *r) {
    AL_EXPECT(al_model_forward_eval(&f->ctx, f->m, adv, NB, 0) == AL_OK, "%s", al_errmsg());
    const float *z = al_model_logits(f->m, 0);
    int n_rob = 0, n_clean = 0;
    for (int i = 0; i < NB; i++) {
        int a = 0;
        for (int j = 1; j < K; j++)
            if (z[i * K + j] > z[i * K + a]) a = j;
        AL_EXPECT(rob[i] == (a == f->y[i]), "point %d: robust %d but a fresh forward says %d", i,
                  rob[i], a == f->y[i]);
        const int same = !memcmp(adv + i * DX, f->x + i * DX, DX * sizeof(float));
        if (rob[i] || !clean[i]) AL_EXPECT(same, "point %d: image is not the clean input", i);
        if (clean[i] && !rob[i]) AL_EXPECT(!same, "point %d broken with the clean input", i);
        double dmax = 0;
        for (size_t j = 0; j < DX; j++) {
            const float v = adv[i * DX + j];
            AL_EXPECT(v >= 0.0f && v <= 1.0f, "point %d outside [0,1]", i);
            dmax = fmax(dmax, fabs((double)v - f->x[i * DX + j]));
        }
        AL_EXPECT(dmax <= s->eps + 1e-7, "point %d: Linf %.9g > eps", i, dmax);
        n_rob += rob[i];
        n_clean += clean[i];
    }
    AL_EXPECT(n_clean == 14 && r->n_clean == 14, "clean count %d / %lld (points 3, 7 wrong)",
              n_clean, (long long)r->n_clean);
    AL_EXPECT(r->n_robust == n_rob, "n_robust %lld vs %d", (long long)r->n_robust, n_rob);
    AL_EXPECT(r->n_done == s->n_attacks, "%d attacks done", r->n_done);
    int64_t prev = r->n_clean;
    for (int a = 0; a < r->n_done; a++) {
        AL_EXPECT(r->robust_after[a] <= prev, "robust count rose after attack %d", a);
        prev = r->robust_after[a];
    }
    AL_EXPECT(prev == n_rob, "last robust_after %lld vs %d", (long long)prev, n_rob);
    AL_EXPECT(r->valid && r->n_nonfinite == 0 && r->max_pert <= s->eps + 1e-7, "validity check");
    return 0;
}

static int case_driver(void) {
    fixture f;
    if (fixture_init(&f)) return 1;
    al_aa_spec s = small_spec(0.003f);
    al_aa_result r;
    FILE *lf = log_begin();
    al_status st = al_autoattack_run(&f.ctx, f.m, &s, f.x, f.y, NB, g_adv, g_clean, g_rob, &r);
    log_end(lf);
    fputs(g_log, stderr);
    AL_EXPECT(st == AL_OK, "%s", al_errmsg());
    if (check_result(&f, &s, g_adv, g_clean, g_rob, &r)) return 1;
    AL_EXPECT(r.robust_after[0] < 14 && r.n_robust > 0, "want some broken, some robust: %lld, %lld",
              (long long)r.robust_after[0], (long long)r.n_robust);
    AL_EXPECT(strstr(g_log, "robust accuracy after APGD-CE: ") &&
                  strstr(g_log, "robust accuracy after APGD-T: ") && strstr(g_log, "total time") &&
                  strstr(g_log, "max Linf perturbation:") && strstr(g_log, "initial accuracy: 87.50%"),
              "log lines missing");
    AL_EXPECT(!strstr(g_log, "flag:"), "flags raised on a plain SmallCNN");
    AL_EXPECT(!r.flag_randomized && !r.flag_softmax && !r.flag_square && !r.flag_n_classes &&
                  r.n_zero_grad == 0,
              "flags raised on a plain SmallCNN");
    /* deterministic: a second run is bit-identical */
    AL_EXPECT(al_autoattack_run(&f.ctx, f.m, &s, f.x, f.y, NB, g_adv2, g_clean2, g_rob2, &r) ==
                  AL_OK,
              "%s", al_errmsg());
    AL_EXPECT(!memcmp(g_adv, g_adv2, sizeof g_adv) && !memcmp(g_rob, g_rob2, NB),
              "not deterministic");
    /* batch size larger than the model's is refused, naming both */
    s.batch = NB + 10;
    AL_EXPECT(al_autoattack_run(&f.ctx, f.m, &s, f.x, f.y, NB + 5, g_adv2, NULL, NULL, &r) ==
                  AL_ERR_VALUE &&
                  strstr(al_errmsg(), "max_batch"),
              "batch > max_batch: %s", al_errmsg());
    fixture_fini(&f);
    return 0;
}

static int case_resume(void) {
    fixture f;
    if (fixture_init(&f)) return 1;
    al_aa_spec s = small_spec(0.003f);
    al_aa_result r0, r;
    /* uninterrupted, with a state file */
    const char *pa = tmp_path(0, "aa_state_full.h5"), *pb = tmp_path(1, "aa_state_split.h5");
    remove(pa);
    remove(pb);
    s.state_path = pa;
    AL_EXPECT(al_autoattack_run(&f.ctx, f.m, &s, f.x, f.y, NB, g_adv, g_clean, g_rob, &r0) == AL_OK,
              "%s", al_errmsg());
    /* stopped every 2 batches, resumed until done */
    s.state_path = pb;
    s.resume = 1;
    s.max_batches = 2;
    int stops = 0;
    al_status st;
    while ((st = al_autoattack_run(&f.ctx, f.m, &s, f.x, f.y, NB, g_adv2, g_clean2, g_rob2, &r)) ==
           AL_ERR_INTERRUPTED) {
        AL_EXPECT(strstr(al_errmsg(), "--resume") && strstr(al_errmsg(), pb), "stop message: %s",
                  al_errmsg());
        AL_EXPECT(++stops < 20, "never finishes");
    }
    AL_EXPECT(st == AL_OK, "%s", al_errmsg());
    fprintf(stderr, "  resumed %d times; robust %lld/%d\n", stops, (long long)r.n_robust, NB);
    AL_EXPECT(stops >= 3, "only %d stops (want mid-attack and at attack boundaries)", stops);
    AL_EXPECT(r.resumed, "last run did not report a resume");
    AL_EXPECT(!memcmp(g_adv, g_adv2, sizeof g_adv), "resumed images differ from one run");
    AL_EXPECT(!memcmp(g_rob, g_rob2, NB) && !memcmp(g_clean, g_clean2, NB), "flags differ");
    AL_EXPECT(r.n_done == r0.n_done, "attacks done %d vs %d", r.n_done, r0.n_done);
    for (int a = 0; a < r0.n_done; a++)
        AL_EXPECT(r.robust_after[a] == r0.robust_after[a], "robust after attack %d: %lld vs %lld",
                  a, (long long)r.robust_after[a], (long long)r0.robust_after[a]);
    if (check_result(&f, &s, g_adv2, g_clean2, g_rob2, &r)) return 1;
    /* resuming a finished state runs nothing and returns the same result */
    s.max_batches = 1;
    memset(g_adv2, 0, sizeof g_adv2);
    AL_EXPECT(al_autoattack_run(&f.ctx, f.m, &s, f.x, f.y, NB, g_adv2, g_clean2, g_rob2, &r) ==
                  AL_OK,
              "finished state: %s", al_errmsg());
    AL_EXPECT(!memcmp(g_adv, g_adv2, sizeof g_adv) && !memcmp(g_rob, g_rob2, NB),
              "finished state gives another result");
    /* the stop flag: nothing attacked, state written after the clean pass */
    remove(pb);
    volatile int stop = 1;
    s.stop = &stop;
    s.max_batches = 0;
    AL_EXPECT(al_autoattack_run(&f.ctx, f.m, &s, f.x, f.y, NB, g_adv2, NULL, NULL, &r) ==
                  AL_ERR_INTERRUPTED,
              "stop flag ignored");
    FILE *sf = fopen(pb, "rb");
    AL_EXPECT(sf, "no state file after a stop");
    fclose(sf);
    stop = 0;
    AL_EXPECT(al_autoattack_run(&f.ctx, f.m, &s, f.x, f.y, NB, g_adv2, g_clean2, g_rob2, &r) ==
                  AL_OK,
              "%s", al_errmsg());
    AL_EXPECT(!memcmp(g_adv, g_adv2, sizeof g_adv), "resume after a stop before any batch differs");
    s.stop = NULL;
    /* a state written for other settings is refused, naming the field */
    al_aa_spec o = s;
    o.eps = 0.004f;
    AL_EXPECT(al_autoattack_run(&f.ctx, f.m, &o, f.x, f.y, NB, g_adv2, NULL, NULL, &r) ==
                      AL_ERR_VALUE &&
                  strstr(al_errmsg(), "eps"),
              "other eps: %s", al_errmsg());
    o = s;
    o.key = "ckpt=other.h5";
    AL_EXPECT(al_autoattack_run(&f.ctx, f.m, &o, f.x, f.y, NB, g_adv2, NULL, NULL, &r) ==
                      AL_ERR_VALUE &&
                  strstr(al_errmsg(), "key"),
              "other key: %s", al_errmsg());
    o = s;
    o.n_attacks = 2;
    AL_EXPECT(al_autoattack_run(&f.ctx, f.m, &o, f.x, f.y, NB, g_adv2, NULL, NULL, &r) ==
                      AL_ERR_VALUE &&
                  strstr(al_errmsg(), "attacks"),
              "other list: %s", al_errmsg());
    o = s;
    o.batch = 5;
    AL_EXPECT(al_autoattack_run(&f.ctx, f.m, &o, f.x, f.y, NB, g_adv2, NULL, NULL, &r) ==
                      AL_ERR_VALUE &&
                  strstr(al_errmsg(), "batch"),
              "other batch: %s", al_errmsg());
    /* not an HDF5 file / missing */
    FILE *junk = fopen(pb, "wb");
    fputs("not a state", junk);
    fclose(junk);
    AL_EXPECT(al_autoattack_run(&f.ctx, f.m, &s, f.x, f.y, NB, g_adv2, NULL, NULL, &r) != AL_OK,
              "junk state accepted");
    remove(pb);
    o = s;
    o.state_path = NULL;
    AL_EXPECT(al_autoattack_run(&f.ctx, f.m, &o, f.x, f.y, NB, g_adv2, NULL, NULL, &r) ==
                  AL_ERR_VALUE,
              "resume without a state path accepted");
    remove(pa);
    fixture_fini(&f);
    return 0;
}

/* A model whose outputs are a constant probability vector (linear layer, weight 0, bias 0.1):
 * the softmax flag and the zero-gradient flag must fire, with their explanations. */
static int case_flags(void) {
    fixture f;
    if (fixture_init(&f)) return 1;
    al_model *pm = al_model_new("prob", K, 1, IMG, IMG);
    int in = al_model_input(pm);
    int out = al_model_linear(pm, "fc", in, K, 1);
    al_model_set_output(pm, out, in);
    AL_EXPECT(al_model_setup(&f.ctx, pm, NB, 1) == AL_OK, "%s", al_errmsg());
    int w = al_model_find_param(pm, "fc.weight"), b = al_model_find_param(pm, "fc.bias");
    memset(al_param_data(pm, w), 0, pm->params[w].n_elems * sizeof(float));
    for (size_t j = 0; j < pm->params[b].n_elems; j++) al_param_data(pm, b)[j] = 0.1f;
    int32_t y0[NB];
    for (int i = 0; i < NB; i++) y0[i] = i % 2 ? 0 : 4; /* argmax of a constant row is 0 */
    al_aa_spec s;
    const al_aa_attack list[] = {AL_AA_APGD_CE, AL_AA_APGD_T};
    AL_EXPECT(al_aa_spec_make(&s, AL_AA_CUSTOM, AL_LINF, 0.05f, list, 2) == AL_OK, "%s",
              al_errmsg());
    s.apgd.n_iter = s.apgd_t.n_iter = 5;
    s.apgd.n_restarts = 1;
    s.apgd_t.n_target_classes = 2;
    s.batch = 8;
    al_aa_result r;
    FILE *lf = log_begin();
    al_status st = al_autoattack_run(&f.ctx, pm, &s, f.x, y0, NB, g_adv, NULL, g_rob, &r);
    log_end(lf);
    fputs(g_log, stderr);
    AL_EXPECT(st == AL_OK, "%s", al_errmsg());
    AL_EXPECT(r.flag_softmax && strstr(g_log, "flag: the model's outputs look like probabilities"),
              "softmax flag");
    AL_EXPECT(r.n_zero_grad == 8 && strstr(g_log, "8 points had an all-zero input gradient at the "
                                                  "APGD-T start point"),
              "zero-gradient flag: %lld", (long long)r.n_zero_grad);
    AL_EXPECT(strstr(g_log, "BPDA") && strstr(g_log, "pre-softmax logits"), "explanations");
    AL_EXPECT(!r.flag_randomized && r.n_robust == 8, "randomized %d, robust %lld",
              r.flag_randomized, (long long)r.n_robust);
    al_model_destroy(&f.ctx, pm);
    fixture_fini(&f);
    return 0;
}

/* The full 'standard' version end to end (tiny budgets), once FAB and Square are available. */
static int case_standard(void) {
    fixture f;
    if (fixture_init(&f)) return 1;
    al_aa_spec s;
    AL_EXPECT(al_aa_spec_make(&s, AL_AA_STANDARD, AL_LINF, 0.003f, NULL, 0) == AL_OK, "%s",
              al_errmsg());
    s.apgd.n_iter = s.apgd_t.n_iter = 10;
    s.fab.n_iter = 10;
    s.apgd_t.n_target_classes = s.fab.n_target_classes = 3;
    s.square.n_queries = 50;
    s.batch = 8;
    al_aa_result r;
    al_status st = al_autoattack_run(&f.ctx, f.m, &s, f.x, f.y, NB, g_adv, g_clean, g_rob, &r);
    if (st == AL_ERR_UNSUPPORTED) {
        fprintf(stderr, "  skipped: %s\n", al_errmsg());
        fixture_fini(&f);
        return AL_SKIP_CODE;
    }
    AL_EXPECT(st == AL_OK, "%s", al_errmsg());
    if (check_result(&f, &s, g_adv, g_clean, g_rob, &r)) return 1;
    fixture_fini(&f);
    return 0;
}

int main(int argc, char **argv) {
    static const al_case cases[] = {
        {"versions", case_versions}, {"checks", case_checks},     {"driver", case_driver},
        {"resume", case_resume},     {"flags", case_flags},       {"standard", case_standard},
    };
    return al_run_cases(cases, (int)AL_ARRAY_LEN(cases), argc, argv);
}
