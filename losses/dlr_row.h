/* dlr_row.h: the DLR loss of ONE row (definitions in losses/loss.h), shared by the CPU
 * reference (losses/dlr.c) and its CUDA twin (cuda/loss_dlr.cu, one thread per row): AL_HOSTDEV,
 * so both backends evaluate the same expressions in the same order and agree bitwise (the
 * device code is compiled with --fmad=false).
 * z (k) logits, y label, t target (-1: untargeted), scale = d(batch loss)/dL_i. Returns L_i;
 * when dz != NULL writes the whole row of dL/dz * scale ('=': zeros elsewhere). Gradient (N =
 * numerator, D = denominator, L = -N/D):
 *   dL/dz_y -= 1/D;  dL/dz_o += 1/D  (o = best other class, or the target t)
 *   untargeted: dL/dz_(1) += N/D^2, dL/dz_(3) -= N/D^2
 *   targeted:   dL/dz_(1) += N/D^2, dL/dz_(3) -= N/(2D^2), dL/dz_(4) -= N/(2D^2)
 * with accumulation where indices coincide (y is usually z_(1) itself), summed in double and
 * rounded once per entry. */
#ifndef AL_LOSS_DLR_ROW_H
#define AL_LOSS_DLR_ROW_H

#include "core/base.h"

/* Indices of the `m` largest entries of z in descending order; ties keep the lower index first
 * (strict '>' while scanning in index order). m <= 4 <= k. */
AL_HOSTDEV void al_dlr_top_m(const float *z, int k, int m, int *top) {
    int cnt = 0;
    for (int j = 0; j < k; j++) {
        int pos = cnt;
        while (pos > 0 && z[j] > z[top[pos - 1]]) pos--;
        if (pos >= m) continue;
        int last = cnt < m ? cnt : m - 1;
        for (int q = last; q > pos; q--) top[q] = top[q - 1];
        top[pos] = j;
        if (cnt < m) cnt++;
    }
}

AL_HOSTDEV double al_dlr_row(const float *z, int k, int y, int t, double scale, float *dz) {
    const int targeted = t >= 0;
    int top[4] = {0, 0, 0, 0};
    al_dlr_top_m(z, k, targeted ? 4 : 3, top);
    /* the other class of the numerator: the target, or the best class other than y */
    const int o = targeted ? t : (top[0] == y ? top[1] : top[0]);
    const double num = (double)z[y] - (double)z[o];
    const double den = targeted ? (double)z[top[0]] - 0.5 * ((double)z[top[2]] + z[top[3]]) + 1e-12
                                : (double)z[top[0]] - (double)z[top[2]] + 1e-12;
    const double l = -num / den;
    if (dz) {
        double g[4 + 2] = {0, 0, 0, 0, 0, 0};
        int at[4 + 2];
        int cnt = 0;
        const double a = 1.0 / den, b = num / (den * den);
        at[cnt] = y, g[cnt++] = -a;
        at[cnt] = o, g[cnt++] = a;
        at[cnt] = top[0], g[cnt++] = b;
        if (targeted) {
            at[cnt] = top[2], g[cnt++] = -0.5 * b;
            at[cnt] = top[3], g[cnt++] = -0.5 * b;
        } else {
            at[cnt] = top[2], g[cnt++] = -b;
        }
        for (int j = 0; j < k; j++) dz[j] = 0.0f;
        for (int p = 0; p < cnt; p++) {
            if (at[p] < 0) continue;
            double acc = g[p];
            for (int q = p + 1; q < cnt; q++)
                if (at[q] == at[p]) {
                    acc += g[q];
                    at[q] = -1;
                }
            dz[at[p]] = (float)(scale * acc);
        }
    }
    return l;
}

#endif
