/* batchnorm.c: 2-D batch norm, CPU reference + dispatcher. Twin: cuda/op_batchnorm.cu.
 * x, y (N, C, HW); statistics per channel over M = N*HW values. PyTorch semantics: the biased
 * variance normalises, the unbiased one (M/(M-1)) updates running_var, momentum weights the new
 * statistic. Reductions accumulate in double, one channel per OpenMP iteration (static), so the
 * result does not depend on the thread count. Backward (xhat = (x - mean) * invstd):
 *   dbeta += sum dy, dgamma += sum dy*xhat,
 *   train: dx = gamma*invstd/M * (M*dy - sum dy - xhat * sum dy*xhat);  eval: dx = gamma*invstd*dy
 * dx = (+= when dx_accum); NULL dx/dgamma/dbeta skips that output. gamma/beta NULL act as 1/0. */
#include "core/ops/batchnorm.h"

#include <math.h>
#include <omp.h>

/* Eight independent double accumulators: the compiler can vectorise them without reassociating
 * (no -ffast-math, style rule 2), and the combination order below is fixed. */
#define LANES 8

/* Shifted sums over one channel: s1 = sum (x - k), s2 = sum (x - k)^2 with k = the channel's
 * first value; shifting by a sample keeps the one-pass variance free of cancellation when
 * |mean| >> std. */
static void channel_moments(const al_bn_desc *d, const float *x, int c, double k, double *s1,
                            double *s2) {
    double a1[LANES] = {0}, a2[LANES] = {0};
    double t1 = 0.0, t2 = 0.0;
    for (int i = 0; i < d->n; i++) {
        const float *r = x + ((size_t)i * d->c + c) * d->hw;
        int q = 0;
        for (; q + LANES <= d->hw; q += LANES)
            for (int l = 0; l < LANES; l++) {
                double v = (double)r[q + l] - k;
                a1[l] += v;
                a2[l] += v * v;
            }
        for (; q < d->hw; q++) {
            double v = (double)r[q] - k;
            t1 += v;
            t2 += v * v;
        }
    }
    for (int l = 0; l < LANES; l++) {
        t1 += a1[l];
        t2 += a2[l];
    }
    *s1 = t1;
    *s2 = t2;
}

al_status al_bn_forward_cpu(al_ctx *ctx, const al_bn_desc *d, const float *x, const float *gamma,
                            const float *beta, float *running_mean, float *running_var, float *y,
                            float *save_mean, float *save_invstd) {
    AL_ASSERT(!d->nhwc, "al_bn_forward_cpu: channels-last tensors are CUDA only");
    (void)ctx;
    AL_ASSERT(d->n >= 1 && d->c >= 1 && d->hw >= 1 && x && y, "bn forward n=%d c=%d hw=%d", d->n,
              d->c, d->hw);
    const size_t m = (size_t)d->n * d->hw;
    if (d->use_batch_stats && m < 2)
        return AL_FAIL(AL_ERR_VALUE,
                       "al_bn_forward_cpu: batch statistics need more than 1 value per channel "
                       "(N*HW = %zu; PyTorch refuses this too)",
                       m);
    if (!d->use_batch_stats) AL_ASSERT(running_mean && running_var, "bn eval needs running stats");
    if (d->update_running) AL_ASSERT(running_mean && running_var, "bn update needs running stats");
#pragma omp parallel for schedule(static)
    for (int c = 0; c < d->c; c++) {
        double mean, var;
        if (d->use_batch_stats) {
            double k = x[(size_t)c * d->hw], s1, s2;
            channel_moments(d, x, c, k, &s1, &s2);
            double dm = s1 / (double)m;
            mean = k + dm;
            var = s2 / (double)m - dm * dm;
            if (var < 0.0) var = 0.0;
            if (d->update_running) {
                double unbiased = var * (double)m / (double)(m - 1);
                running_mean[c] = (float)((1.0 - d->momentum) * running_mean[c] + d->momentum * mean);
                running_var[c] = (float)((1.0 - d->momentum) * running_var[c] + d->momentum * unbiased);
            }
        } else {
            mean = running_mean[c];
            var = running_var[c];
        }
        const double invstd = 1.0 / sqrt(var + (double)d->eps);
        if (save_mean) save_mean[c] = (float)mean;
        if (save_invstd) save_invstd[c] = (float)invstd;
        /* y = (x - mean) * scale + beta: centring first avoids the cancellation of the folded
         * form x*scale + (beta - mean*scale) when |mean| >> std */
        const float mean_f = (float)mean;
        const float scale = (float)((gamma ? gamma[c] : 1.0) * invstd);
        const float shift = beta ? beta[c] : 0.0f;
        for (int i = 0; i < d->n; i++) {
            const size_t off = ((size_t)i * d->c + c) * d->hw;
            const float *xr = x + off;
            float *yr = y + off;
            for (int q = 0; q < d->hw; q++) yr[q] = (xr[q] - mean_f) * scale + shift;
        }
    }
    return AL_OK;
}

al_status al_bn_backward_cpu(al_ctx *ctx, const al_bn_desc *d, const float *x, const float *gamma,
                             const float *save_mean, const float *save_invstd, const float *dy,
                             float *dx, int dx_accum, float *dgamma, float *dbeta) {
    AL_ASSERT(!d->nhwc, "al_bn_backward_cpu: channels-last tensors are CUDA only");
    (void)ctx;
    AL_ASSERT(d->n >= 1 && d->c >= 1 && d->hw >= 1 && x && dy && save_mean && save_invstd,
              "bn backward n=%d c=%d hw=%d", d->n, d->c, d->hw);
    const size_t m = (size_t)d->n * d->hw;
#pragma omp parallel for schedule(static)
    for (int c = 0; c < d->c; c++) {
        const float mean = save_mean[c];
        const double invstd = save_invstd[c];
        /* sum dy and sum dy*(x - mean) in double lanes */
        double a0[LANES] = {0}, a1[LANES] = {0}, s0 = 0.0, s1 = 0.0;
        for (int i = 0; i < d->n; i++) {
            const size_t off = ((size_t)i * d->c + c) * d->hw;
            const float *xr = x + off, *gr = dy + off;
            int q = 0;
            for (; q + LANES <= d->hw; q += LANES)
                for (int l = 0; l < LANES; l++) {
                    double g = gr[q + l];
                    a0[l] += g;
                    a1[l] += g * ((double)xr[q + l] - mean);
                }
            for (; q < d->hw; q++) {
                double g = gr[q];
                s0 += g;
                s1 += g * ((double)xr[q] - mean);
            }
        }
        for (int l = 0; l < LANES; l++) {
            s0 += a0[l];
            s1 += a1[l];
        }
        const double sum_dy = s0, sum_dy_xhat = s1 * invstd;
        if (dbeta) dbeta[c] += (float)sum_dy;
        if (dgamma) dgamma[c] += (float)sum_dy_xhat;
        if (!dx) continue;
        const double g = gamma ? gamma[c] : 1.0;
        /* dx = a*dy + b*(x - mean) + e, the mean terms folded into per-channel constants */
        float a, b, e;
        if (d->use_batch_stats) {
            const double k = g * invstd;
            const double mean_dy = sum_dy / (double)m, mean_dy_xhat = sum_dy_xhat / (double)m;
            a = (float)k;
            b = (float)(-k * mean_dy_xhat * invstd);
            e = (float)(-k * mean_dy);
        } else {
            a = (float)(g * invstd);
            b = 0.0f;
            e = 0.0f;
        }
        for (int i = 0; i < d->n; i++) {
            const size_t off = ((size_t)i * d->c + c) * d->hw;
            const float *xr = x + off, *gr = dy + off;
            float *dr = dx + off;
            if (dx_accum)
                for (int q = 0; q < d->hw; q++) dr[q] += a * gr[q] + b * (xr[q] - mean) + e;
            else
                for (int q = 0; q < d->hw; q++) dr[q] = a * gr[q] + b * (xr[q] - mean) + e;
        }
    }
    return AL_OK;
}

al_status al_bn_forward(al_ctx *ctx, const al_bn_desc *d, const float *x, const float *gamma,
                        const float *beta, float *running_mean, float *running_var, float *y,
                        float *save_mean, float *save_invstd) {
    switch (ctx->device) {
    case AL_DEV_CPU:
        return al_bn_forward_cpu(ctx, d, x, gamma, beta, running_mean, running_var, y, save_mean,
                                 save_invstd);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_bn_forward_cuda(ctx, d, x, gamma, beta, running_mean, running_var, y,
                                        save_mean, save_invstd));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_bn_forward: unknown device %d", (int)ctx->device);
}

al_status al_bn_backward(al_ctx *ctx, const al_bn_desc *d, const float *x, const float *gamma,
                         const float *save_mean, const float *save_invstd, const float *dy,
                         float *dx, int dx_accum, float *dgamma, float *dbeta) {
    switch (ctx->device) {
    case AL_DEV_CPU:
        return al_bn_backward_cpu(ctx, d, x, gamma, save_mean, save_invstd, dy, dx, dx_accum,
                                  dgamma, dbeta);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_bn_backward_cuda(ctx, d, x, gamma, save_mean, save_invstd, dy, dx,
                                         dx_accum, dgamma, dbeta));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_bn_backward: unknown device %d", (int)ctx->device);
}
