/* op_batchnorm.cu: 2-D batch norm (train/eval, running update, backward). Twin:
 * core/ops/batchnorm.c, whose formulas this file mirrors term by term:
 *   train: shifted moments with k = the channel's first value (x[c*HW] of image 0):
 *          s1 = sum (x-k), s2 = sum (x-k)^2 in double; dm = s1/M, mean = k + dm,
 *          var = max(s2/M - dm^2, 0) (biased, normalises); running_var uses var*M/(M-1).
 *   eval:  mean, var = running stats.   invstd = 1/sqrt(var + eps) in double.
 *   y = (x - (float)mean) * (float)(gamma*invstd) + beta            (float, like the twin)
 *   backward: s0 = sum dy, s1 = sum dy*(x - mean) in double; dbeta += s0, dgamma += s1*invstd;
 *   dx = a*dy + b*(x - mean) + e with a = gamma*invstd and, in train mode,
 *   b = -a*(s1*invstd/M)*invstd, e = -a*s0/M (eval: b = e = 0).  dx = (+= if dx_accum).
 * Layout (N, C, HW); one block per channel walks the channel's M = N*HW values (flat index,
 * so small HW keeps the threads busy), double partials + fixed-order block tree: the result
 * is bitwise reproducible and only the summation order differs from the CPU (no atomics).
 * gamma/beta NULL act as 1/0, as in the twin. */
#include "core/ops/batchnorm.h"
#include "cuda/cuda_base.cuh"

#define BN_BLOCK 512

/* Value q of channel c in the flat (i, hw) order of the channel. */
static __device__ __forceinline__ size_t bn_at(size_t t, int c, int c_total, int hw) {
    const size_t i = t / (size_t)hw, q = t - i * (size_t)hw;
    return (i * (size_t)c_total + (size_t)c) * (size_t)hw + q;
}

/* Train-mode forward: statistics, running update, save, normalise. grid = C. */
template <typename T>
static __global__ void bn_train_fwd_kernel(int n, int c_total, int hw, float eps, float momentum,
                                           int update, const T *__restrict__ x,
                                           const float *__restrict__ gamma,
                                           const float *__restrict__ beta,
                                           float *__restrict__ running_mean,
                                           float *__restrict__ running_var, T *__restrict__ y,
                                           float *__restrict__ save_mean,
                                           float *__restrict__ save_invstd) {
    const int c = blockIdx.x;
    const size_t m = (size_t)n * hw;
    const double k = al_ld(x, (size_t)c * hw);
    double a1 = 0.0, a2 = 0.0;
    for (size_t t = threadIdx.x; t < m; t += blockDim.x) {
        const double v = (double)al_ld(x, bn_at(t, c, c_total, hw)) - k;
        a1 += v;
        a2 += v * v;
    }
    const double s1 = al_block_sum(a1);
    const double s2 = al_block_sum(a2);
    const double dm = s1 / (double)m;
    const double mean = k + dm;
    double var = s2 / (double)m - dm * dm;
    if (var < 0.0) var = 0.0;
    const double invstd = 1.0 / sqrt(var + (double)eps);
    if (threadIdx.x == 0) {
        if (update) {
            const double unbiased = var * (double)m / (double)(m - 1);
            running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mean);
            running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
        }
        if (save_mean) save_mean[c] = (float)mean;
        if (save_invstd) save_invstd[c] = (float)invstd;
    }
    const float mean_f = (float)mean;
    const float scale = (float)((gamma ? (double)gamma[c] : 1.0) * invstd);
    const float shift = beta ? beta[c] : 0.0f;
    for (size_t t = threadIdx.x; t < m; t += blockDim.x) {
        const size_t o = bn_at(t, c, c_total, hw);
        al_st(y, o, (al_ld(x, o) - mean_f) * scale + shift);
    }
}

/* Eval-mode forward: elementwise with the running statistics. Grid-stride over N*C*HW;
 * threads 0..C-1 also write save_mean/save_invstd. */
template <typename T>
static __global__ void bn_eval_fwd_kernel(size_t n_elems, int c_total, int hw, float eps,
                                          const T *__restrict__ x,
                                          const float *__restrict__ gamma,
                                          const float *__restrict__ beta,
                                          const float *__restrict__ running_mean,
                                          const float *__restrict__ running_var,
                                          T *__restrict__ y, float *__restrict__ save_mean,
                                          float *__restrict__ save_invstd) {
    const size_t tid = blockIdx.x * (size_t)blockDim.x + threadIdx.x;
    if (tid < (size_t)c_total) {
        const int c = (int)tid;
        if (save_mean) save_mean[c] = running_mean[c];
        if (save_invstd) save_invstd[c] = (float)(1.0 / sqrt((double)running_var[c] + (double)eps));
    }
    for (size_t i = tid; i < n_elems; i += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)((i / (size_t)hw) % (size_t)c_total);
        const double invstd = 1.0 / sqrt((double)running_var[c] + (double)eps);
        const float scale = (float)((gamma ? (double)gamma[c] : 1.0) * invstd);
        const float shift = beta ? beta[c] : 0.0f;
        al_st(y, i, (al_ld(x, i) - running_mean[c]) * scale + shift);
    }
}

/* Backward, one block per channel: reductions (if any output needs them), then dx. */
template <typename T>
static __global__ void bn_bwd_kernel(int n, int c_total, int hw, int train, int dx_accum,
                                     const T *__restrict__ x, const float *__restrict__ gamma,
                                     const float *__restrict__ save_mean,
                                     const float *__restrict__ save_invstd,
                                     const T *__restrict__ dy, T *__restrict__ dx,
                                     float *__restrict__ dgamma, float *__restrict__ dbeta) {
    const int c = blockIdx.x;
    const size_t m = (size_t)n * hw;
    const float mean = save_mean[c];
    const double invstd = save_invstd[c];
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    if (dgamma || dbeta || (dx && train)) {
        double a0 = 0.0, a1 = 0.0;
        for (size_t t = threadIdx.x; t < m; t += blockDim.x) {
            const size_t o = bn_at(t, c, c_total, hw);
            const double g = al_ld(dy, o);
            a0 += g;
            a1 += g * ((double)al_ld(x, o) - mean);
        }
        sum_dy = al_block_sum(a0);
        sum_dy_xhat = al_block_sum(a1) * invstd;
        if (threadIdx.x == 0) {
            if (dbeta) dbeta[c] += (float)sum_dy;
            if (dgamma) dgamma[c] += (float)sum_dy_xhat;
        }
    }
    if (!dx) return;
    const double g = gamma ? (double)gamma[c] : 1.0;
    float a, b, e;
    if (train) {
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
    for (size_t t = threadIdx.x; t < m; t += blockDim.x) {
        const size_t o = bn_at(t, c, c_total, hw);
        const float v = a * al_ld(dy, o) + b * (al_ld(x, o) - mean) + e;
        al_st(dx, o, dx_accum ? al_ld(dx, o) + v : v);
    }
}

template <typename T>
static al_status bn_fwd(al_ctx *ctx, const al_bn_desc *d, const T *x, const float *gamma,
                        const float *beta, float *running_mean, float *running_var, T *y,
                        float *save_mean, float *save_invstd) {
    AL_ASSERT(d->n >= 1 && d->c >= 1 && d->hw >= 1 && x && y, "bn forward n=%d c=%d hw=%d", d->n,
              d->c, d->hw);
    const size_t m = (size_t)d->n * d->hw;
    cudaStream_t st = al_stream_of(ctx);
    if (d->use_batch_stats) {
        if (m < 2)
            return AL_FAIL(AL_ERR_VALUE,
                           "al_bn_forward_cuda: batch statistics need more than 1 value per "
                           "channel (N*HW = %zu; PyTorch refuses this too)",
                           m);
        if (d->update_running)
            AL_ASSERT(running_mean && running_var, "bn update needs running stats");
        bn_train_fwd_kernel<T><<<d->c, BN_BLOCK, 0, st>>>(
            d->n, d->c, d->hw, d->eps, d->momentum, d->update_running ? 1 : 0, x, gamma, beta,
            running_mean, running_var, y, save_mean, save_invstd);
    } else {
        AL_ASSERT(running_mean && running_var, "bn eval needs running stats");
        const size_t ne = m * (size_t)d->c;
        unsigned grid = al_grid(ctx, ne, AL_BLOCK);
        const unsigned need_c = (unsigned)AL_CEIL_DIV((size_t)d->c, (size_t)AL_BLOCK);
        if (grid < need_c) grid = need_c; /* threads 0..C-1 write the saved statistics */
        bn_eval_fwd_kernel<T><<<grid, AL_BLOCK, 0, st>>>(ne, d->c, d->hw, d->eps, x, gamma,
                                                         beta, running_mean, running_var, y,
                                                         save_mean, save_invstd);
    }
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

template <typename T>
static al_status bn_bwd(al_ctx *ctx, const al_bn_desc *d, const T *x, const float *gamma,
                        const float *save_mean, const float *save_invstd, const T *dy, T *dx,
                        int dx_accum, float *dgamma, float *dbeta) {
    AL_ASSERT(d->n >= 1 && d->c >= 1 && d->hw >= 1 && x && dy && save_mean && save_invstd,
              "bn backward n=%d c=%d hw=%d", d->n, d->c, d->hw);
    if (!dx && !dgamma && !dbeta) return AL_OK;
    bn_bwd_kernel<T><<<d->c, BN_BLOCK, 0, al_stream_of(ctx)>>>(
        d->n, d->c, d->hw, d->use_batch_stats ? 1 : 0, dx_accum ? 1 : 0, x, gamma, save_mean,
        save_invstd, dy, dx, dgamma, dbeta);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_bn_forward_cuda(al_ctx *ctx, const al_bn_desc *d, const float *x,
                                        const float *gamma, const float *beta,
                                        float *running_mean, float *running_var, float *y,
                                        float *save_mean, float *save_invstd) {
    return bn_fwd(ctx, d, x, gamma, beta, running_mean, running_var, y, save_mean, save_invstd);
}

extern "C" al_status al_bn_backward_cuda(al_ctx *ctx, const al_bn_desc *d, const float *x,
                                         const float *gamma, const float *save_mean,
                                         const float *save_invstd, const float *dy, float *dx,
                                         int dx_accum, float *dgamma, float *dbeta) {
    return bn_bwd(ctx, d, x, gamma, save_mean, save_invstd, dy, dx, dx_accum, dgamma, dbeta);
}

/* bf16 twins (core/ops/bf16.h): bf16 x / y / dy / dx, the statistics as above */
extern "C" al_status al_bn_forward_bf16_cuda(al_ctx *ctx, const al_bn_desc *d, const al_bf16 *x,
                                             const float *gamma, const float *beta,
                                             float *running_mean, float *running_var, al_bf16 *y,
                                             float *save_mean, float *save_invstd) {
    return bn_fwd(ctx, d, x, gamma, beta, running_mean, running_var, y, save_mean, save_invstd);
}

extern "C" al_status al_bn_backward_bf16_cuda(al_ctx *ctx, const al_bn_desc *d, const al_bf16 *x,
                                              const float *gamma, const float *save_mean,
                                              const float *save_invstd, const al_bf16 *dy,
                                              al_bf16 *dx, int dx_accum, float *dgamma,
                                              float *dbeta) {
    return bn_bwd(ctx, d, x, gamma, save_mean, save_invstd, dy, dx, dx_accum, dgamma, dbeta);
}
