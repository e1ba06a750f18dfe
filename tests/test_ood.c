/* test_ood.c: core/ood.c -- OOD scores, detection metrics, the scores file.
 * Oracles: hand-computed cases (separation, reversal, all-tied, a small tie table, the exact
 * 95% threshold rank, the open-set F1 confusion counts); the score formulas against closed
 * forms (uniform logits, huge logits, temperature); and an independent numpy computation
 * (tests/ood/metrics_ref.py: brute-force pairs for AUROC, a scan for the threshold) on a scores
 * file holding thousands of heavily tied scores, compared to 1e-9 relative. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "core/ood.h"
#include "core/rng.h"
#include "harness/check.h"

#define NEAR(a, b) (fabs((a) - (b)) <= 1e-15 * (1.0 + fabs(b)))

static int case_hand_metrics(void) {
    al_ood_metrics m;
    /* perfect separation, n_in = 20: threshold = the 19th largest ID score (ceil(0.95 * 20)) */
    double in[20], out[7];
    for (int i = 0; i < 20; i++) in[i] = 10.0 + i;
    for (int i = 0; i < 7; i++) out[i] = -1.0 * i;
    AL_EXPECT(al_ood_metrics_compute(in, 20, out, 7, &m) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(m.auroc == 1.0 && m.fpr95 == 0.0 && m.threshold == 11.0 && m.tpr == 0.95,
              "separated: auroc %g fpr %g thr %g tpr %g", m.auroc, m.fpr95, m.threshold, m.tpr);
    /* TP = 7 OOD rejected, FP = 1 ID rejected (score 10), FN = 0 */
    AL_EXPECT(NEAR(m.f1, 14.0 / 15.0) && NEAR(m.precision, 7.0 / 8.0) && m.recall == 1.0,
              "separated: f1 %.17g p %g r %g", m.f1, m.precision, m.recall);
    AL_EXPECT(m.detection_error == 0.0, "separated: detection error %g", m.detection_error);
    AL_EXPECT(isnan(m.f1_openset), "f1_openset must stay NaN until computed");
    /* reversed: every OOD above every ID */
    AL_EXPECT(al_ood_metrics_compute(out, 7, in, 20, &m) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(m.auroc == 0.0 && m.fpr95 == 1.0 && m.detection_error == 0.5,
              "reversed: auroc %g fpr %g det %g", m.auroc, m.fpr95, m.detection_error);
    /* everything tied: chance; the threshold accepts everything */
    double c5[5] = {0.3, 0.3, 0.3, 0.3, 0.3};
    AL_EXPECT(al_ood_metrics_compute(c5, 5, c5, 3, &m) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(m.auroc == 0.5 && m.tpr == 1.0 && m.fpr95 == 1.0 && m.f1 == 0.0 &&
                  m.precision == 0.0 && m.detection_error == 0.5,
              "tied: auroc %g tpr %g fpr %g f1 %g det %g", m.auroc, m.tpr, m.fpr95, m.f1,
              m.detection_error);
    /* a small tie table: pairs (0.5,0.5) 1/2, (0.5,0.2) 1, (0.7,0.5) 1, (0.7,0.2) 1 -> 3.5 / 4 */
    double a2[2] = {0.7, 0.5}, b2[2] = {0.5, 0.2};
    AL_EXPECT(al_ood_metrics_compute(a2, 2, b2, 2, &m) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(m.auroc == 0.875, "tie table: auroc %.17g", m.auroc);
    /* m = ceil(0.95 * 2) = 2: threshold 0.5, OOD 0.5 accepted (fpr 1/2); TP 1, FP 0, FN 1 */
    AL_EXPECT(m.threshold == 0.5 && m.fpr95 == 0.5 && NEAR(m.f1, 2.0 / 3.0),
              "tie table: thr %g fpr %g f1 %g", m.threshold, m.fpr95, m.f1);
    /* detection error: threshold 0.7 rejects 1/2 ID and accepts 0 OOD -> 1/4; 0.5: 0 + 1/4 */
    AL_EXPECT(m.detection_error == 0.25, "tie table: det %g", m.detection_error);
    /* n_in = 100 (0.95 n exact): the 95th largest = the 6th smallest; n_in = 101: ceil(95.95)
     * = 96th largest = the 6th smallest again */
    double h[101], o1[1] = {0.0};
    for (int i = 0; i < 101; i++) h[i] = (double)((i * 37) % 101); /* a permutation of 0..100 */
    AL_EXPECT(al_ood_metrics_compute(h, 100, o1, 1, &m) == AL_OK, "%s", al_errmsg());
    double sorted_h[100];
    memcpy(sorted_h, h, sizeof sorted_h);
    for (int i = 0; i < 100; i++) /* insertion sort, ascending */
        for (int j = i; j > 0 && sorted_h[j - 1] > sorted_h[j]; j--) {
            double t = sorted_h[j];
            sorted_h[j] = sorted_h[j - 1];
            sorted_h[j - 1] = t;
        }
    AL_EXPECT(m.threshold == sorted_h[5] && m.tpr == 0.95, "n=100: thr %g (want %g) tpr %g",
              m.threshold, sorted_h[5], m.tpr);
    AL_EXPECT(al_ood_metrics_compute(h, 101, o1, 1, &m) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(m.threshold == 5.0 && NEAR(m.tpr, 96.0 / 101.0), "n=101: thr %g tpr %.17g",
              m.threshold, m.tpr);
    /* n_in = 1: the threshold is that score */
    AL_EXPECT(al_ood_metrics_compute(a2, 1, b2, 2, &m) == AL_OK && m.threshold == 0.7 &&
                  m.fpr95 == 0.0,
              "n_in = 1: thr %g fpr %g", m.threshold, m.fpr95);
    /* errors: empty sets, non-finite scores (named) */
    AL_EXPECT(al_ood_metrics_compute(a2, 0, b2, 2, &m) == AL_ERR_VALUE, "n_in = 0 accepted");
    AL_EXPECT(al_ood_metrics_compute(a2, 2, b2, 0, &m) == AL_ERR_VALUE, "n_out = 0 accepted");
    double bad[3] = {0.1, NAN, 0.3};
    AL_EXPECT(al_ood_metrics_compute(a2, 2, bad, 3, &m) == AL_ERR_VALUE &&
                  strstr(al_errmsg(), "index 1") && strstr(al_errmsg(), "out-of-distribution"),
              "NaN score: %s", al_errmsg());
    bad[1] = INFINITY;
    AL_EXPECT(al_ood_metrics_compute(bad, 3, a2, 2, &m) == AL_ERR_VALUE, "Inf score accepted");
    return 0;
}

static int case_scores(void) {
    /* uniform logits: msp = 1/K, energy = z + log K; huge logits stay finite */
    const float z[3 * 4] = {2.0f, 2.0f, 2.0f, 2.0f, 1000.0f, 0.0f, -1000.0f, 0.0f,
                            -3.0f, 1.0f, 0.5f, 1.0f};
    double s[3];
    al_ood_scores(AL_OOD_MSP, 3, 4, z, 1.0, s);
    AL_EXPECT(NEAR(s[0], 0.25) && s[1] == 1.0, "msp %.17g %.17g", s[0], s[1]);
    double e3 = exp(-4.0) + 1.0 + exp(-0.5) + 1.0;
    AL_EXPECT(NEAR(s[2], 1.0 / e3), "msp row 2 %.17g want %.17g", s[2], 1.0 / e3);
    al_ood_scores(AL_OOD_ENERGY, 3, 4, z, 1.0, s);
    AL_EXPECT(NEAR(s[0], 2.0 + log(4.0)) && NEAR(s[1], 1000.0) && NEAR(s[2], 1.0 + log(e3)),
              "energy %.17g %.17g %.17g", s[0], s[1], s[2]);
    /* temperature: T logsumexp(z / T) */
    al_ood_scores(AL_OOD_ENERGY, 1, 4, z + 8, 2.0, s);
    double r = 2.0 * log(exp(-1.5) + exp(0.5) + exp(0.25) + exp(0.5));
    AL_EXPECT(NEAR(s[0], r), "energy T=2: %.17g want %.17g", s[0], r);
    /* non-finite logits give NaN scores (rejected by the metrics) */
    const float zn[2 * 2] = {NAN, 1.0f, INFINITY, 0.0f};
    al_ood_scores(AL_OOD_MSP, 2, 2, zn, 1.0, s);
    AL_EXPECT(isnan(s[0]) && isnan(s[1]), "non-finite logits: %g %g", s[0], s[1]);
    al_ood_score k;
    AL_EXPECT(al_ood_score_parse("energy", &k) == AL_OK && k == AL_OOD_ENERGY, "parse energy");
    AL_EXPECT(al_ood_score_parse("odin", &k) == AL_ERR_VALUE && strstr(al_errmsg(), "odin"),
              "unknown score accepted");
    return 0;
}

static int case_openset_f1(void) {
    /* K = 2. ID: (s, pred, y) = (0.9,0,0) (0.8,1,0) (0.2,1,1); OOD: (0.95,1) (0.1,0); t = 0.5.
     * final preds: ID 0, 1, unknown; OOD 1, unknown. truths: 0, 0, 1, U, U.
     * class 0: TP 1, FP 0, FN 1 -> 2/3; class 1: TP 0, FP 2, FN 1 -> 0;
     * unknown: TP 1, FP 1, FN 1 -> 2/4. macro = (2/3 + 0 + 1/2) / 3 */
    const double si[3] = {0.9, 0.8, 0.2}, so[2] = {0.95, 0.1};
    const int32_t pi[3] = {0, 1, 1}, yi[3] = {0, 0, 1}, po[2] = {1, 0};
    double f1;
    AL_EXPECT(al_ood_openset_f1(si, pi, yi, 3, so, po, 2, 2, 0.5, &f1) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(NEAR(f1, (2.0 / 3.0 + 0.5) / 3.0), "open-set F1 %.17g", f1);
    /* a class never seen (K = 3, class 2 absent everywhere) is not averaged in */
    AL_EXPECT(al_ood_openset_f1(si, pi, yi, 3, so, po, 2, 3, 0.5, &f1) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(NEAR(f1, (2.0 / 3.0 + 0.5) / 3.0), "open-set F1 with an absent class %.17g", f1);
    const int32_t ybad[3] = {0, -1, 1};
    AL_EXPECT(al_ood_openset_f1(si, pi, ybad, 3, so, po, 2, 2, 0.5, &f1) == AL_ERR_VALUE,
              "label -1 accepted for an ID point");
    return 0;
}

/* Thousands of tied scores through the file writer, checked by numpy (tests/ood/metrics_ref.py). */
static int case_numpy_reference(void) {
    enum { NI = 1500, NO = 900, K = 7 };
    float *li = malloc(NI * K * sizeof(float)), *lo = malloc(NO * K * sizeof(float));
    int32_t yi[NI], yo[NO], pi[NI], po[NO];
    /* logits on a coarse grid (multiples of 0.5) so scores tie often; OOD logits flatter */
    for (int i = 0; i < NI * K; i++)
        li[i] = 0.5f * floorf(8.0f * al_rng_uniform(3, al_stream(AL_STREAM_TEST, 900), i));
    for (int i = 0; i < NO * K; i++)
        lo[i] = 0.5f * floorf(5.0f * al_rng_uniform(3, al_stream(AL_STREAM_TEST, 901), i));
    for (int i = 0; i < NI; i++) {
        int a = 0;
        for (int j = 1; j < K; j++)
            if (li[i * K + j] > li[i * K + a]) a = j;
        pi[i] = a;
        /* labels: the prediction for 70%, another class otherwise */
        yi[i] = al_rng_uniform(3, al_stream(AL_STREAM_TEST, 902), i) < 0.7f ? a : (a + 1) % K;
    }
    for (int i = 0; i < NO; i++) {
        int a = 0;
        for (int j = 1; j < K; j++)
            if (lo[i * K + j] > lo[i * K + a]) a = j;
        po[i] = a;
        yo[i] = -1;
    }
    double *si[AL_OOD_N_SCORES], *so[AL_OOD_N_SCORES];
    al_ood_metrics met[AL_OOD_N_SCORES];
    const double temperature = 1.5;
    al_ood_file f;
    memset(&f, 0, sizeof f);
    for (int s = 0; s < AL_OOD_N_SCORES; s++) {
        si[s] = malloc(NI * sizeof(double));
        so[s] = malloc(NO * sizeof(double));
        al_ood_scores((al_ood_score)s, NI, K, li, temperature, si[s]);
        al_ood_scores((al_ood_score)s, NO, K, lo, temperature, so[s]);
        AL_EXPECT(al_ood_metrics_compute(si[s], NI, so[s], NO, &met[s]) == AL_OK, "%s",
                  al_errmsg());
        AL_EXPECT(al_ood_openset_f1(si[s], pi, yi, NI, so[s], po, NO, K, met[s].threshold,
                                    &met[s].f1_openset) == AL_OK,
                  "%s", al_errmsg());
        f.scores_in[s] = si[s];
        f.scores_out[s] = so[s];
        f.metrics[s] = &met[s];
        fprintf(stderr, "  %-6s auroc %.6f fpr95 %.4f f1 %.4f f1-open %.4f det %.4f (tpr %.4f)\n",
                al_ood_score_name((al_ood_score)s), met[s].auroc, met[s].fpr95, met[s].f1,
                met[s].f1_openset, met[s].detection_error, met[s].tpr);
    }
    /* the ties must matter for the test to mean anything: TPR above 0.95 */
    AL_EXPECT(met[AL_OOD_ENERGY].tpr > 0.95, "scores not tied at the threshold (tpr %g)",
              met[AL_OOD_ENERGY].tpr);
    f.checkpoint = "none";
    f.in_dataset = "synthetic-in";
    f.in_split = "test";
    f.out_dataset = "synthetic-out";
    f.out_split = "test";
    f.temperature = temperature;
    f.k = K;
    f.n_in = NI;
    f.n_out = NO;
    f.logits_in = li;
    f.logits_out = lo;
    f.labels_in = yi;
    f.labels_out = yo;
    char path[512], cmd[1536];
    snprintf(path, sizeof path, "%s/ood_scores_ref.h5", al_test_tmpdir());
    AL_EXPECT(al_ood_file_write(path, &f) == AL_OK, "%s", al_errmsg());
    snprintf(cmd, sizeof cmd, "%s %s/tests/ood/metrics_ref.py %s --expect-openset --expect-n-in %d "
             "--expect-n-out %d", al_test_python(), al_test_source_dir(), path, NI, NO);
    int rc = system(cmd);
    /* the writer is atomic: a path in a missing directory fails and leaves nothing */
    al_status bad_path = al_ood_file_write("/nonexistent-dir/x.h5", &f);
    for (int s = 0; s < AL_OOD_N_SCORES; s++) {
        free(si[s]);
        free(so[s]);
    }
    free(li);
    free(lo);
    if (WIFEXITED(rc) && WEXITSTATUS(rc) == 77) return AL_SKIP_CODE; /* no numpy/h5py */
    AL_EXPECT(rc == 0, "numpy reference disagrees (rc %d): %s", rc, cmd);
    AL_EXPECT(bad_path == AL_ERR_IO, "a path in a missing directory: status %d", (int)bad_path);
    return 0;
}

int main(int argc, char **argv) {
    static const al_case cases[] = {
        {"hand_metrics", case_hand_metrics},
        {"scores", case_scores},
        {"openset_f1", case_openset_f1},
        {"numpy_reference", case_numpy_reference},
    };
    return al_run_cases(cases, (int)AL_ARRAY_LEN(cases), argc, argv);
}
