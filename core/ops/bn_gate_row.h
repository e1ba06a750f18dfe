/* bn_gate_row.h: the gate softmax of ONE row (bn_gate.h), shared by the CPU node
 * (core/ops/bn_gate.c) and its CUDA twin (cuda/op_bn_gate.cu, one thread per row): AL_HOSTDEV,
 * so both backends run the same expressions in the same order (--fmad=false on the device).
 * b_n <= AL_MAX_BN_BRANCHES. */
#ifndef AL_OP_BN_GATE_ROW_H
#define AL_OP_BN_GATE_ROW_H

#include <math.h>

#include "core/base.h"

/* p = softmax(z), or one-hot argmax (ties: lowest index, torch.argmax) when hard; a NaN in z
 * makes the whole row NaN (visible downstream). */
AL_HOSTDEV void al_gate_softmax_row(const float *zr, int b_n, int hard, float *pr) {
    int arg = 0, nan = 0;
    for (int b = 0; b < b_n; b++) {
        if (isnan(zr[b])) nan = 1;
        if (zr[b] > zr[arg]) arg = b;
    }
    if (nan) {
        for (int b = 0; b < b_n; b++) pr[b] = NAN;
        return;
    }
    if (hard) {
        for (int b = 0; b < b_n; b++) pr[b] = b == arg ? 1.0f : 0.0f;
        return;
    }
    double s = 0.0;
    for (int b = 0; b < b_n; b++) s += exp((double)zr[b] - zr[arg]);
    for (int b = 0; b < b_n; b++) pr[b] = (float)(exp((double)zr[b] - zr[arg]) / s);
}

/* soft: dz = p * (dp - <p, dp>); hard: dz = 0 (piecewise constant). '=' or '+=' (acc). */
AL_HOSTDEV void al_gate_softmax_bwd_row(const float *pr, const float *gr, int b_n, int hard,
                                        int acc, float *dr) {
    double dot = 0.0;
    for (int b = 0; b < b_n; b++) dot += (double)pr[b] * gr[b];
    for (int b = 0; b < b_n; b++) {
        const float g = hard ? 0.0f : (float)(pr[b] * (gr[b] - dot));
        dr[b] = acc ? dr[b] + g : g;
    }
}

#endif
