/* ood.h: out-of-distribution detection with a classifier's logits: per-example scores, the
 * standard detection metrics, and the scores file written by `advlab ood --save`.
 * Implementation: core/ood.c (host; the model forward runs on ctx's device).
 *
 * Convention: a score is HIGHER for in-distribution (ID) inputs.
 *   msp    = max_j softmax(z)_j                         (Hendrycks & Gimpel 2017, ODIN's baseline)
 *   energy = T * logsumexp(z / T), T = 1 by default     (the negative free energy, Liu et al. 2020)
 * Metrics of ID scores s_in (n_in) against OOD scores s_out (n_out), all in double:
 *   auroc     P(s_in > s_out) + 1/2 P(s_in == s_out): the area under the ROC curve with ties
 *             scored as sklearn.metrics.roc_auc_score does (trapezoids through tied thresholds);
 *             the same for either class as "positive" when the score is flipped with it.
 *   threshold the largest t with TPR(t) = #{s_in >= t} / n_in >= 0.95, i.e. the m-th largest ID
 *             score with m = ceil(0.95 n_in) (integer arithmetic: 100 m >= 95 n_in). "Accept as
 *             in-distribution iff s >= t" accepts at least 95% of the ID points (ties can make
 *             it more: tpr reports the exact fraction).
 *   fpr95     #{s_out >= t} / n_out: OOD points accepted at that threshold (ODIN / energy-paper
 *             convention, ID positive; zaeemzadeh/OOD's evaluate.py instead takes OOD as positive
 *             and reports the ID fraction flagged when 95% of OOD is flagged).
 *   f1        F1 of the OOD detector "OOD iff s < t" with OOD as the POSITIVE class:
 *             TP = #{s_out < t}, FP = #{s_in < t}, FN = #{s_out >= t}, F1 = 2TP / (2TP + FP + FN).
 *             This is the protocol chosen for the DFA paper's F1 (methods.md §1: how DFA computed
 *             its F1 is unverified; its repo has no OOD code and zaeemzadeh/OOD computes no F1).
 *   f1_openset (only with ID labels and predictions): macro-F1 over the K known classes plus
 *             "unknown" (CROSR / open-set recognition protocol, the other plausible reading of
 *             DFA's F1): predicted class = argmax if s >= t else unknown; true class = label for
 *             ID points, unknown for OOD; per-class F1 = 2TP / (2TP + FP + FN) averaged over the
 *             classes that occur in the truth or the predictions (sklearn f1_score(average=
 *             'macro') with its default label set).
 *   detection_error  min over thresholds of 1/2 P(ID rejected) + 1/2 P(OOD accepted)
 *             (zaeemzadeh/OOD's "Detection Error"; 0.5 = chance). */
#ifndef AL_OOD_H
#define AL_OOD_H

#include "core/model.h"
#include "datasets/h5data.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum al_ood_score { AL_OOD_MSP = 0, AL_OOD_ENERGY = 1, AL_OOD_N_SCORES } al_ood_score;
const char *al_ood_score_name(al_ood_score s); /* "msp" | "energy" */
/* Parse "msp" | "energy" (AL_ERR_VALUE naming the string otherwise). */
al_status al_ood_score_parse(const char *name, al_ood_score *out);

/* Scores of n rows of logits (n, k) host floats, evaluated in double with the row max subtracted
 * (finite for any finite logits). temperature > 0 (energy only). out (n) host doubles. */
void al_ood_scores(al_ood_score kind, int64_t n, int k, const float *logits, double temperature,
                   double *out);

typedef struct al_ood_metrics {
    int64_t n_in, n_out;
    double auroc;
    double threshold;       /* t: ID accepted iff s >= t */
    double tpr;             /* #{s_in >= t} / n_in (>= 0.95) */
    double fpr95;           /* #{s_out >= t} / n_out */
    double f1, precision, recall; /* OOD positive, "OOD iff s < t" */
    double detection_error;
    double f1_openset;      /* NaN unless computed (al_ood_openset_f1) */
} al_ood_metrics;

/* All metrics above except f1_openset (set to NaN). Errors: AL_ERR_VALUE for n_in or n_out < 1
 * and for a non-finite score (naming the set and the index). Host memory; allocates O(n). */
al_status al_ood_metrics_compute(const double *s_in, int64_t n_in, const double *s_out,
                                 int64_t n_out, al_ood_metrics *out);

/* Open-set macro-F1 at threshold t (see above). pred_in (n_in) = argmax classes of the ID
 * points, y_in (n_in) = their labels in [0, k); pred_out (n_out) = argmax classes of the OOD
 * points. Errors: AL_ERR_VALUE for a label or prediction outside [0, k). */
al_status al_ood_openset_f1(const double *s_in, const int32_t *pred_in, const int32_t *y_in,
                            int64_t n_in, const double *s_out, const int32_t *pred_out,
                            int64_t n_out, int k, double threshold, double *f1);

/* Logits of the first n rows of an open dataset split, eval mode, batches of `batch` (<= the
 * model's max_batch), slot 0. logits (n, K) and labels (n) host outputs (labels may be -1 in
 * OOD-only files). The split's image shape must match the model's. */
al_status al_ood_logits(al_ctx *ctx, al_model *m, al_dataset *ds, int64_t n, int batch,
                        float *logits, int32_t *labels);

/* The scores file (`advlab ood --save`), HDF5, written atomically (tmp + fsync + rename):
 *   /                 attrs: format = "advlab-ood-scores", format_version = 1 (int),
 *                            checkpoint, in_dataset, in_split, out_dataset, out_split (string),
 *                            temperature (float64)
 *   /in/logits        float32 [n_in, K]       /out/logits   float32 [n_out, K]
 *   /in/labels        int32   [n_in]          /out/labels   int32   [n_out]  (-1 allowed)
 *   /in/<score>       float64 [n_in]          /out/<score>  float64 [n_out]  (msp, energy)
 *   /metrics/<score>  group, float64 attrs: auroc, threshold, tpr, fpr95, f1, precision,
 *                     recall, detection_error, f1_openset (NaN when not computed) */
typedef struct al_ood_file {
    const char *checkpoint, *in_dataset, *in_split, *out_dataset, *out_split;
    double temperature;
    int k;
    int64_t n_in, n_out;
    const float *logits_in, *logits_out;  /* (n, K) */
    const int32_t *labels_in, *labels_out;
    const double *scores_in[AL_OOD_N_SCORES], *scores_out[AL_OOD_N_SCORES]; /* NULL: skipped */
    const al_ood_metrics *metrics[AL_OOD_N_SCORES];                         /* NULL: skipped */
} al_ood_file;
al_status al_ood_file_write(const char *path, const al_ood_file *f);

#ifdef __cplusplus
}
#endif
#endif
