/* loss_cw.cu: Carlini-Wagner margin (ascent form). Twin: losses/cw.c (+ rowops.h).
 * logits (N, K) row-major, labels (N) int32 (true classes, or targets when targeted), on the
 * device; loss is a host scalar. Write modes as the twin: per_sample =, dlogits = (optional).
 * One warp per row: o = argmax_{j != y} z_j (first NaN, else lowest index of the max: the
 * twin's row_argmax_excl order), m_i = sgn ((double)z_o - (double)z_y) with sgn = +1
 * untargeted / -1 targeted; dlogits row = 0 except dz_o = sgn/n, dz_y = -sgn/n (float, as the
 * twin). per_sample and dlogits are therefore bitwise the twin's; the mean is a fixed-tree
 * double sum of the per-row m_i (deterministic), one D2H copy + sync for the host scalar. */
#include "cuda/loss_rows.cuh"
#include "losses/loss.h"

static __global__ void cw_rows_kernel(int n, int k, const float *__restrict__ logits,
                                      const int32_t *__restrict__ labels, float sgn, float g,
                                      double *__restrict__ m_row, float *__restrict__ per_sample,
                                      float *__restrict__ dlogits) {
    const int lane = threadIdx.x & 31, i = lr_row_index();
    if (i >= n) return; /* whole warps exit together */
    const int y = lr_row_label(labels, i, k, lane, m_row, NULL);
    if (y < 0) return;
    const size_t off = (size_t)i * k;
    const float *z = logits + off;
    const int o = lr_row_argmax_excl(z, k, y, lane); /* k >= 2: o >= 0 and o != y */
    if (lane == 0) {
        const double m = (double)sgn * ((double)z[o] - (double)z[y]);
        m_row[i] = m;
        if (per_sample) per_sample[i] = (float)m;
    }
    if (dlogits) {
        float *dz = dlogits + off;
        /* the twin's memset + two stores, in one pass: each element written once */
        for (int j = lane; j < k; j += 32) dz[j] = j == o ? sgn * g : j == y ? -sgn * g : 0.0f;
    }
}

extern "C" al_status al_cw_margin_cuda(al_ctx *ctx, int n, int k, const float *logits,
                                       const int32_t *labels, int targeted, double *loss,
                                       float *per_sample, float *dlogits) {
    AL_ASSERT(n >= 1 && k >= 2 && logits && labels, "al_cw_margin_cuda n=%d k=%d", n, k);
    const float sgn = targeted ? -1.0f : 1.0f;
    const float g = 1.0f / (float)n;
    lr_tmp t;
    AL_TRY(lr_tmp_get(ctx, n, &t));
    lr_result r = {};
    cw_rows_kernel<<<lr_grid(n), LR_ROWS_PER_BLOCK * 32, 0, al_stream_of(ctx)>>>(
        n, k, logits, labels, sgn, g, t.a, per_sample, dlogits);
    const al_status st =
        lr_finish(ctx, "al_cw_margin", n, k, &t, 1, labels, "label", NULL, NULL,
                  loss ? &r : NULL, AL_SUM_LOSS, 1.0 / n, 0.0);
    if (st == AL_OK && loss) *loss = r.sum[0] / n;
    al_ctx_scratch_release(ctx, t.mark);
    return st;
}
