/* dlr.c: Difference-of-Logits-Ratio loss (untargeted and targeted), CPU reference + dispatcher.
 * Twin: none yet (the dispatcher returns AL_ERR_UNSUPPORTED on AL_DEV_CUDA; TODO(#6)).
 * Shapes: logits (N, K) row-major, labels / targets (N). Write mode: per_sample =, dlogits =.
 * Definitions in losses/loss.h. Gradient of one row (N = numerator, D = denominator, L = -N/D):
 *   dL/dz_y -= 1/D;  dL/dz_o += 1/D  (o = best other class, or the target t)
 *   untargeted: dL/dz_(1) += N/D^2, dL/dz_(3) -= N/D^2
 *   targeted:   dL/dz_(1) += N/D^2, dL/dz_(3) -= N/(2D^2), dL/dz_(4) -= N/(2D^2)
 * with accumulation where indices coincide (y is usually z_(1) itself). Evaluated in double
 * from the float logits and rounded once. */
#include <string.h>

#include "losses/loss.h"
#include "losses/rowops.h"

/* Indices of the `m` largest entries of z in descending order; ties keep the lower index first
 * (strict '>' while scanning in index order). m <= 4 <= k. */
static void top_m(const float *z, int k, int m, int *top) {
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

al_status al_dlr_loss_cpu(al_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                          const int32_t *targets, float weight, double *loss, float *per_sample,
                          float *dlogits) {
    (void)ctx;
    int bad = first_bad_label(labels, n, k);
    if (bad >= 0)
        return AL_FAIL(AL_ERR_VALUE, "al_dlr_loss: label %d at index %d outside [0,%d)",
                       (int)labels[bad], bad, k);
    if (targets) {
        bad = first_bad_label(targets, n, k);
        if (bad >= 0)
            return AL_FAIL(AL_ERR_VALUE, "al_dlr_loss: target %d at index %d outside [0,%d)",
                           (int)targets[bad], bad, k);
    }
    const double scale = (double)weight / n; /* d(weight * mean) / dL_i */
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * k;
        const int y = labels[i];
        int top[4];
        top_m(z, k, targets ? 4 : 3, top);
        /* the other class of the numerator: the target, or the best class other than y */
        const int o = targets ? targets[i] : (top[0] == y ? top[1] : top[0]);
        const double num = (double)z[y] - (double)z[o];
        const double den = targets ? (double)z[top[0]] - 0.5 * ((double)z[top[2]] + z[top[3]]) + 1e-12
                                   : (double)z[top[0]] - (double)z[top[2]] + 1e-12;
        const double l = -num / den;
        sum += l;
        if (per_sample) per_sample[i] = (float)l;
        if (dlogits) {
            double g[4 + 2] = {0};
            int at[4 + 2];
            int cnt = 0;
            const double a = 1.0 / den, b = num / (den * den);
            at[cnt] = y, g[cnt++] = -a;
            at[cnt] = o, g[cnt++] = a;
            at[cnt] = top[0], g[cnt++] = b;
            if (targets) {
                at[cnt] = top[2], g[cnt++] = -0.5 * b;
                at[cnt] = top[3], g[cnt++] = -0.5 * b;
            } else {
                at[cnt] = top[2], g[cnt++] = -b;
            }
            float *dz = dlogits + (size_t)i * k;
            memset(dz, 0, (size_t)k * sizeof *dz);
            /* sum coinciding indices in double first, then round once per entry */
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
    }
    *loss = (double)weight * sum / n;
    return AL_OK;
}

al_status al_dlr_loss(al_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                      const int32_t *targets, float weight, double *loss, float *per_sample,
                      float *dlogits) {
    const int k_min = targets ? 4 : 3;
    if (n < 1 || k < k_min)
        return AL_FAIL(AL_ERR_VALUE,
                       "al_dlr_loss: n=%d k=%d (the %s DLR loss needs n >= 1 and k >= %d classes)",
                       n, k, targets ? "targeted" : "untargeted", k_min);
    switch (ctx->device) {
    case AL_DEV_CPU:
        return al_dlr_loss_cpu(ctx, n, k, logits, labels, targets, weight, loss, per_sample,
                               dlogits);
    case AL_DEV_CUDA:
        return AL_FAIL(AL_ERR_UNSUPPORTED,
                       "al_dlr_loss: no CUDA implementation yet (CPU only; TODO(#6))");
    }
    return AL_FAIL(AL_ERR_VALUE, "al_dlr_loss: unknown device %d", (int)ctx->device);
}
