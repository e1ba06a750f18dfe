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
static __global__ void bn_eval_fwd_kernel(size_t n_elems, int c_total, int hw, int nhwc, float eps,
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
        const int c = nhwc ? (int)(i % (size_t)c_total) : (int)((i / (size_t)hw) % (size_t)c_total);
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
    const double invstd = save_invstd ? (double)save_invstd[c] : 1.0;
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

/* ---------------------------------------------------------------- channels last (d->nhwc)
 * x is an (M = N*HW, C) row-major matrix. One block per channel would read with a stride of C
 * elements, so the reductions are split: a partial pass over (C/32 channel groups) x S row
 * slices, whose blocks of 32 channels x 16 rows read whole 32-channel rows (coalesced) and
 * keep double partials, reduced over the 16 rows in a fixed order into part[slice][c]; then
 * one thread per channel sums the S slices in order. The formulas are those of the NCHW
 * kernels above (same shift k = the channel's first value, same double statistics), so the
 * results agree with them up to the summation order and are bitwise reproducible. The
 * per-channel constants go to ctx scratch (al_bn_scratch_bytes_cuda, reserved at setup). */
#define NH_CH 32
#define NH_ROWS 16
#define NH_BLOCKS 1024 /* partial-pass blocks aimed at (several per SM on a 132-SM H100) */

enum { NH_STATS = 0, NH_GRAD = 1, NH_SUM = 2 };

static int nh_slices(size_t m, int c) {
    const int groups = (int)AL_CEIL_DIV(c, NH_CH);
    const size_t by_rows = AL_CEIL_DIV(m, (size_t)NH_ROWS);
    int s = NH_BLOCKS / groups;
    if (s < 1) s = 1;
    if ((size_t)s > by_rows) s = (int)by_rows;
    return s;
}

static size_t nh_bytes(size_t m, int c) {
    const size_t part = (size_t)nh_slices(m, c) * c * 2 * sizeof(double);
    return part + 64 + 4 * (size_t)c * sizeof(float) + 64; /* + the constants, aligned */
}

extern "C" size_t al_bn_scratch_bytes_cuda(const al_bn_desc *d) {
    return d->nhwc ? nh_bytes((size_t)d->n * d->hw, d->c) : 0;
}

/* part[(slice*C + c)*2 + {0,1}] = this slice's sums for channel c:
 *   NH_STATS: x - k, (x - k)^2 (k = x[0, c]);  NH_GRAD: dy, dy*(x - mean[c]);  NH_SUM: dy, 0. */
template <typename T, int MODE>
static __global__ void nh_partial_kernel(size_t m, int c_total, const T *__restrict__ x,
                                         const T *__restrict__ dy, const float *__restrict__ mean,
                                         double *__restrict__ part) {
    __shared__ double sa[NH_ROWS][NH_CH], sb[NH_ROWS][NH_CH];
    const int c = blockIdx.x * NH_CH + threadIdx.x;
    double a = 0.0, b = 0.0;
    if (c < c_total) {
        const double k = MODE == NH_STATS ? (double)al_ld(x, (size_t)c)
                         : MODE == NH_GRAD ? (double)mean[c]
                                           : 0.0;
        for (size_t r = (size_t)blockIdx.y * NH_ROWS + threadIdx.y; r < m;
             r += (size_t)gridDim.y * NH_ROWS) {
            const size_t o = r * (size_t)c_total + (size_t)c;
            if (MODE == NH_STATS) {
                const double v = (double)al_ld(x, o) - k;
                a += v;
                b += v * v;
            } else if (MODE == NH_GRAD) {
                const double g = al_ld(dy, o);
                a += g;
                b += g * ((double)al_ld(x, o) - k);
            } else {
                a += (double)al_ld(dy, o);
            }
        }
    }
    sa[threadIdx.y][threadIdx.x] = a;
    sb[threadIdx.y][threadIdx.x] = b;
    __syncthreads();
    if (threadIdx.y == 0 && c < c_total) {
        double ta = 0.0, tb = 0.0;
        for (int j = 0; j < NH_ROWS; j++) {
            ta += sa[j][threadIdx.x];
            tb += sb[j][threadIdx.x];
        }
        part[((size_t)blockIdx.y * c_total + c) * 2] = ta;
        part[((size_t)blockIdx.y * c_total + c) * 2 + 1] = tb;
    }
}

template <typename T, int MODE>
static void nh_partial(al_ctx *ctx, size_t m, int c, int slices, const T *x, const T *dy,
                       const float *mean, double *part) {
    const dim3 grid((unsigned)AL_CEIL_DIV(c, NH_CH), (unsigned)slices);
    nh_partial_kernel<T, MODE><<<grid, dim3(NH_CH, NH_ROWS), 0, al_stream_of(ctx)>>>(m, c, x, dy,
                                                                                    mean, part);
}

/* Sum of the S slices of channel c, in slice order. */
static __device__ void nh_total(const double *part, int slices, int c_total, int c, double *a,
                                double *b) {
    double ta = 0.0, tb = 0.0;
    for (int s = 0; s < slices; s++) {
        ta += part[((size_t)s * c_total + c) * 2];
        tb += part[((size_t)s * c_total + c) * 2 + 1];
    }
    *a = ta;
    *b = tb;
}

/* Train forward statistics: k_c, the moments -> mean/invstd (saved), running update, and
 * coef = {mean, scale, shift} as the NCHW kernel forms them. One thread per channel. */
static __global__ void nh_stats_final_kernel(size_t m, int c_total, int slices, float eps,
                                             float momentum, int update, const double *part,
                                             const float *__restrict__ kx,
                                             const float *__restrict__ gamma,
                                             const float *__restrict__ beta,
                                             float *__restrict__ running_mean,
                                             float *__restrict__ running_var,
                                             float *__restrict__ save_mean,
                                             float *__restrict__ save_invstd,
                                             float *__restrict__ coef) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= c_total) return;
    double s1, s2;
    nh_total(part, slices, c_total, c, &s1, &s2);
    const double dm = s1 / (double)m, mean = (double)kx[c] + dm;
    double var = s2 / (double)m - dm * dm;
    if (var < 0.0) var = 0.0;
    const double invstd = 1.0 / sqrt(var + (double)eps);
    if (update) {
        const double unbiased = var * (double)m / (double)(m - 1);
        running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mean);
        running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
    }
    if (save_mean) save_mean[c] = (float)mean;
    if (save_invstd) save_invstd[c] = (float)invstd;
    coef[c] = (float)mean;
    coef[c_total + c] = (float)((gamma ? (double)gamma[c] : 1.0) * invstd);
    coef[2 * c_total + c] = beta ? beta[c] : 0.0f;
}

/* k_c (the channel's first value) as float: the stats kernel's shift, read once per channel. */
template <typename T>
static __global__ void nh_first_kernel(int c_total, const T *__restrict__ x, float *__restrict__ kx) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c < c_total) kx[c] = al_ld(x, (size_t)c);
}

template <typename T>
static __global__ void nh_norm_kernel(size_t n_elems, int c_total, const T *__restrict__ x,
                                      const float *__restrict__ coef, T *__restrict__ y) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n_elems;
         i += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)(i % (size_t)c_total);
        al_st(y, i, (al_ld(x, i) - coef[c]) * coef[c_total + c] + coef[2 * c_total + c]);
    }
}

/* Backward: dgamma/dbeta += and coef = {a, b, e} of dx = a*dy + b*(x - mean) + e (coef NULL:
 * only the sums; save_invstd NULL: 1, a plain channel sum). */
static __global__ void nh_grad_final_kernel(size_t m, int c_total, int slices, int have_sums,
                                            int train, const double *part,
                                            const float *__restrict__ gamma,
                                            const float *__restrict__ save_invstd,
                                            float *__restrict__ dgamma, float *__restrict__ dbeta,
                                            float *__restrict__ coef) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= c_total) return;
    const double invstd = save_invstd ? (double)save_invstd[c] : 1.0;
    double sum_dy = 0.0, sum_dy_xhat = 0.0;
    if (have_sums) {
        double s1;
        nh_total(part, slices, c_total, c, &sum_dy, &s1);
        sum_dy_xhat = s1 * invstd;
        if (dbeta) dbeta[c] += (float)sum_dy;
        if (dgamma) dgamma[c] += (float)sum_dy_xhat;
    }
    if (!coef) return;
    const double g = gamma ? (double)gamma[c] : 1.0, k = g * invstd;
    coef[c] = (float)k;
    coef[c_total + c] = train ? (float)(-k * (sum_dy_xhat / (double)m) * invstd) : 0.0f;
    coef[2 * c_total + c] = train ? (float)(-k * (sum_dy / (double)m)) : 0.0f;
}

template <typename T>
static __global__ void nh_dx_kernel(size_t n_elems, int c_total, int dx_accum,
                                    const T *__restrict__ x, const float *__restrict__ save_mean,
                                    const T *__restrict__ dy, const float *__restrict__ coef,
                                    T *__restrict__ dx) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n_elems;
         i += (size_t)gridDim.x * blockDim.x) {
        const int c = (int)(i % (size_t)c_total);
        const float v = coef[c] * al_ld(dy, i) + coef[c_total + c] * (al_ld(x, i) - save_mean[c]) +
                        coef[2 * c_total + c];
        al_st(dx, i, dx_accum ? al_ld(dx, i) + v : v);
    }
}

/* Scratch of a channels-last call: the partials, 3C per-channel constants, C shifts k_c. */
typedef struct nh_ws {
    double *part;
    float *coef, *kx;
    int slices;
} nh_ws;

static nh_ws nh_take(al_ctx *ctx, size_t m, int c) {
    nh_ws w;
    w.slices = nh_slices(m, c);
    w.part = (double *)al_ctx_scratch(ctx, (size_t)w.slices * c * 2 * sizeof(double));
    w.coef = (float *)al_ctx_scratch(ctx, 4 * (size_t)c * sizeof(float));
    w.kx = w.coef + 3 * (size_t)c;
    return w;
}

template <typename T>
static al_status bn_fwd_nhwc_train(al_ctx *ctx, const al_bn_desc *d, const T *x, const float *gamma,
                                   const float *beta, float *running_mean, float *running_var,
                                   T *y, float *save_mean, float *save_invstd) {
    const size_t m = (size_t)d->n * d->hw, ne = m * (size_t)d->c;
    const size_t mark = al_ctx_scratch_mark(ctx);
    const nh_ws w = nh_take(ctx, m, d->c);
    cudaStream_t st = al_stream_of(ctx);
    const unsigned cb = (unsigned)AL_CEIL_DIV(d->c, AL_BLOCK);
    nh_first_kernel<T><<<cb, AL_BLOCK, 0, st>>>(d->c, x, w.kx);
    nh_partial<T, NH_STATS>(ctx, m, d->c, w.slices, x, (const T *)NULL, (const float *)NULL, w.part);
    nh_stats_final_kernel<<<cb, AL_BLOCK, 0, st>>>(m, d->c, w.slices, d->eps, d->momentum,
                                                   d->update_running ? 1 : 0, w.part, w.kx, gamma,
                                                   beta, running_mean, running_var, save_mean,
                                                   save_invstd, w.coef);
    nh_norm_kernel<T><<<al_grid(ctx, ne, AL_BLOCK), AL_BLOCK, 0, st>>>(ne, d->c, x, w.coef, y);
    al_ctx_scratch_release(ctx, mark);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

template <typename T>
static al_status bn_bwd_nhwc(al_ctx *ctx, const al_bn_desc *d, const T *x, const float *gamma,
                             const float *save_mean, const float *save_invstd, const T *dy, T *dx,
                             int dx_accum, float *dgamma, float *dbeta) {
    const size_t m = (size_t)d->n * d->hw, ne = m * (size_t)d->c;
    const int have_sums = dgamma || dbeta || (dx && d->use_batch_stats);
    const size_t mark = al_ctx_scratch_mark(ctx);
    const nh_ws w = nh_take(ctx, m, d->c);
    cudaStream_t st = al_stream_of(ctx);
    if (have_sums) nh_partial<T, NH_GRAD>(ctx, m, d->c, w.slices, x, dy, save_mean, w.part);
    nh_grad_final_kernel<<<(unsigned)AL_CEIL_DIV(d->c, AL_BLOCK), AL_BLOCK, 0, st>>>(
        m, d->c, w.slices, have_sums, d->use_batch_stats ? 1 : 0, w.part, gamma, save_invstd,
        dgamma, dbeta, w.coef);
    if (dx)
        nh_dx_kernel<T><<<al_grid(ctx, ne, AL_BLOCK), AL_BLOCK, 0, st>>>(
            ne, d->c, dx_accum ? 1 : 0, x, save_mean, dy, w.coef, dx);
    al_ctx_scratch_release(ctx, mark);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

/* db[c] += sum over the (M, C) channels-last dy (a conv's bias gradient, op_conv2d.cu). */
template <typename T>
static al_status channel_sum_nhwc(al_ctx *ctx, size_t m, int c, const T *dy, float *db) {
    const size_t mark = al_ctx_scratch_mark(ctx);
    const nh_ws w = nh_take(ctx, m, c);
    nh_partial<T, NH_SUM>(ctx, m, c, w.slices, (const T *)NULL, dy, (const float *)NULL, w.part);
    nh_grad_final_kernel<<<(unsigned)AL_CEIL_DIV(c, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        m, c, w.slices, 1, 0, w.part, (const float *)NULL, (const float *)NULL, (float *)NULL, db,
        (float *)NULL);
    al_ctx_scratch_release(ctx, mark);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

al_status al_channel_sum_add_nhwc_cuda(al_ctx *ctx, int n, int c, int hw,
                                                  const float *dy, float *db) {
    return channel_sum_nhwc(ctx, (size_t)n * hw, c, dy, db);
}
al_status al_channel_sum_add_nhwc_bf16_cuda(al_ctx *ctx, int n, int c, int hw,
                                                       const al_bf16 *dy, float *db) {
    return channel_sum_nhwc(ctx, (size_t)n * hw, c, dy, db);
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
        if (d->nhwc)
            return bn_fwd_nhwc_train(ctx, d, x, gamma, beta, running_mean, running_var, y,
                                     save_mean, save_invstd);
        bn_train_fwd_kernel<T><<<d->c, BN_BLOCK, 0, st>>>(
            d->n, d->c, d->hw, d->eps, d->momentum, d->update_running ? 1 : 0, x, gamma, beta,
            running_mean, running_var, y, save_mean, save_invstd);
    } else {
        AL_ASSERT(running_mean && running_var, "bn eval needs running stats");
        const size_t ne = m * (size_t)d->c;
        unsigned grid = al_grid(ctx, ne, AL_BLOCK);
        const unsigned need_c = (unsigned)AL_CEIL_DIV((size_t)d->c, (size_t)AL_BLOCK);
        if (grid < need_c) grid = need_c; /* threads 0..C-1 write the saved statistics */
        bn_eval_fwd_kernel<T><<<grid, AL_BLOCK, 0, st>>>(ne, d->c, d->hw, d->nhwc, d->eps, x, gamma,
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
    if (d->nhwc)
        return bn_bwd_nhwc(ctx, d, x, gamma, save_mean, save_invstd, dy, dx, dx_accum, dgamma,
                           dbeta);
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
