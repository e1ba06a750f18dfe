/* rowops.h: per-row helpers for the CPU loss references (the losses/ sources; the attacks use
 * row_argmax_excl too, which is AL_HOSTDEV so that their CUDA kernels share it).
 * A row is one example's logits z (K). Everything is evaluated in double from the float inputs:
 * the CPU path is the reference the CUDA twins (float) are checked against, so it should carry
 * no more error than the final rounding to float. Log-sum-exp subtracts the row max, so logits
 * of any finite magnitude (tests use +-80 and beyond) neither overflow nor lose the tail. */
#ifndef AL_LOSS_ROWOPS_H
#define AL_LOSS_ROWOPS_H

#include <math.h>
#include <stdint.h>

#include "core/base.h"

/* log(sum_j exp(z_j)), with the max subtracted first. */
static inline double row_lse(const float *z, int k) {
    double m = z[0];
    for (int j = 1; j < k; j++)
        if (z[j] > m) m = z[j];
    if (isinf(m)) return m; /* +inf row (or all -inf): let the value propagate */
    double s = 0.0;
    for (int j = 0; j < k; j++) s += exp((double)z[j] - m);
    return m + log(s);
}

/* Index of the largest z_j over j != excl (excl = -1: no exclusion); ties -> lowest index.
 * NaN counts as the maximum (torch.argmax semantics), the first NaN wins. */
AL_HOSTDEV int row_argmax_excl(const float *z, int k, int excl) {
    int best = -1;
    for (int j = 0; j < k; j++) {
        if (j == excl) continue;
        if (best < 0) {
            best = j;
            continue;
        }
        float b = z[best], v = z[j];
        if (b != b) break; /* first NaN already holds */
        if (v != v || v > b) best = j;
    }
    return best;
}

/* First label outside [0, k), or -1 when all are valid. */
static inline int first_bad_label(const int32_t *labels, int n, int k) {
    for (int i = 0; i < n; i++)
        if (labels[i] < 0 || labels[i] >= k) return i;
    return -1;
}

#endif
