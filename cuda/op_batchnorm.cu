/* op_batchnorm.cu: 2-D batch norm (train/eval, running update, backward), NCHW or channels
 * last (d->nhwc). Twin: core/ops/batchnorm.c, whose formulas this file mirrors term by term:
 *   train: shifted moments with k = the channel's first value (x of image 0, position 0):
 *          s1 = sum (x-k), s2 = sum (x-k)^2 in double; dm = s1/M, mean = k + dm,
 *          var = max(s2/M - dm^2, 0) (biased, normalises); running_var uses var*M/(M-1).
 *   eval:  mean, var = running stats.   invstd = 1/sqrt(var + eps) in double.
 *   y = (x - (float)mean) * (float)(gamma*invstd) + beta            (float, like the twin)
 *   backward: s0 = sum dy, s1 = sum dy*(x - mean) in double; dbeta += s0, dgamma += s1*invstd;
 *   dx = a*dy + b*(x - mean) + e with a = gamma*invstd and, in train mode,
 *   b = -a*(s1*invstd/M)*invstd, e = -a*s0/M (eval: b = e = 0).  dx = (+= if dx_accum).
 * The per-channel sums over M = N*HW values are split so that the whole GPU works on them
 * (one block per channel would leave most SMs idle for the large early layers: 64 blocks for
 * PreActResNet-18's first stage): a partial pass of about RED_BLOCKS blocks, each summing a
 * fixed slice of the channel's values into double partials with a fixed-order block tree,
 * then one thread per channel adds its slices in slice order into per-channel constants,
 * then an elementwise pass normalises (or forms dx). Eval mode forms the same constants from
 * the running statistics, so both modes share that pass (no per-element square root). NCHW: block (c, slice) walks the contiguous HW runs of a range
 * of images. Channels last: blocks of 32 channels x 16 rows read whole 32-channel rows
 * (coalesced) of a range of rows. Either way the result is bitwise reproducible (no atomics)
 * and differs from the CPU only in summation order. The same split sums give the conv and
 * linear bias gradients (al_channel_sum_add_cuda). The partials and per-channel constants
 * take ctx scratch (al_bn_scratch_bytes_cuda, reserved by model setup; else the ctx's aux
 * buffer, which always holds them). gamma/beta NULL act as 1/0, as in the twin. */
#include "core/ops/batchnorm.h"
#include "cuda/cuda_base.cuh"

/* ---------------------------------------------------------------- split reductions */
#define RED_BLOCKS 1024 /* partial-pass blocks aimed at (several per SM on a 132-SM H100) */
#define NC_BLOCK 256    /* NCHW partial block */
#define NH_CH 32        /* channels-last partial block: 32 channels x NH_ROWS rows */
#define NH_ROWS 16

enum { RED_STATS = 0, RED_GRAD = 1, RED_SUM = 2 };

/* How the M values of each channel are sliced: NCHW by images (`per` images a slice),
 * channels last by rows (row slices interleaved with stride slices * NH_ROWS). With HW = 1
 * (a linear layer's (N, Out) gradient) both layouts are the same bytes: rows, coalesced. */
typedef struct red_plan {
    int rows, slices, per;
} red_plan;

static red_plan red_plan_of(int n, int c, int hw, int nhwc) {
    red_plan r;
    r.rows = nhwc || hw == 1;
    if (r.rows) {
        const int groups = (int)AL_CEIL_DIV(c, NH_CH);
        const size_t by_rows = AL_CEIL_DIV((size_t)n * hw, (size_t)NH_ROWS);
        r.slices = AL_MAX(1, RED_BLOCKS / groups);
        if ((size_t)r.slices > by_rows) r.slices = (int)by_rows;
        r.per = 0;
    } else {
        const int want = AL_MIN(n, AL_MAX(1, RED_BLOCKS / c));
        r.per = (int)AL_CEIL_DIV(n, want);
        r.slices = (int)AL_CEIL_DIV(n, r.per);
    }
    return r;
}

static size_t red_bytes(int n, int c, int hw, int nhwc) {
    const red_plan r = red_plan_of(n, c, hw, nhwc);
    return (size_t)r.slices * c * 2 * sizeof(double) + 64 + 3 * (size_t)c * sizeof(float) + 64;
}

extern "C" size_t al_bn_scratch_bytes_cuda(const al_bn_desc *d) {
    return red_bytes(d->n, d->c, d->hw, d->nhwc);
}

/* part[(slice*C + c)*2 + {0,1}] = the slice's sums for channel c:
 *   RED_STATS: x - k, (x - k)^2 (k = x[c * c_stride], the channel's first value);
 *   RED_GRAD: dy, dy*(x - mean[c]);  RED_SUM: dy, 0. */
template <typename T, int MODE>
static __device__ __forceinline__ void red_acc(const T *x, const T *dy, size_t o, double k,
                                               double *a, double *b) {
    if (MODE == RED_STATS) {
        const double v = (double)al_ld(x, o) - k;
        *a += v;
        *b += v * v;
    } else if (MODE == RED_GRAD) {
        const double g = al_ld(dy, o);
        *a += g;
        *b += g * ((double)al_ld(x, o) - k);
    } else {
        *a += (double)al_ld(dy, o);
    }
}

template <typename T, int MODE>
static __device__ __forceinline__ double red_shift(const T *x, size_t c_stride, const float *mean,
                                                   int c) {
    return MODE == RED_STATS ? (double)al_ld(x, (size_t)c * c_stride)
           : MODE == RED_GRAD ? (double)mean[c]
                              : 0.0;
}

/* NCHW: block (c, slice) over images [slice*per, +per), the HW run of each. */
template <typename T, int MODE>
static __global__ void nc_partial_kernel(int n, int c_total, int hw, int per,
                                         const T *__restrict__ x, const T *__restrict__ dy,
                                         const float *__restrict__ mean, double *__restrict__ part) {
    const int c = blockIdx.x, s = blockIdx.y;
    const int i0 = s * per, i1 = AL_MIN(n, i0 + per);
    const size_t cnt = (size_t)(i1 - i0) * hw;
    const double k = red_shift<T, MODE>(x, (size_t)hw, mean, c);
    double a = 0.0, b = 0.0;
    for (size_t t = threadIdx.x; t < cnt; t += blockDim.x) {
        const size_t i = (size_t)i0 + t / (size_t)hw, q = t % (size_t)hw;
        red_acc<T, MODE>(x, dy, (i * (size_t)c_total + (size_t)c) * (size_t)hw + q, k, &a, &b);
    }
    a = al_block_sum(a);
    b = al_block_sum(b);
    if (threadIdx.x == 0) {
        part[((size_t)s * c_total + c) * 2] = a;
        part[((size_t)s * c_total + c) * 2 + 1] = b;
    }
}

/* Channels last: x is (M, C) row-major; block (group, slice) sums rows slice*16 + ty,
 * stepping slices*16, for channels group*32 + tx, then the 16 rows in order. */
template <typename T, int MODE>
static __global__ void nh_partial_kernel(size_t m, int c_total, const T *__restrict__ x,
                                         const T *__restrict__ dy, const float *__restrict__ mean,
                                         double *__restrict__ part) {
    __shared__ double sa[NH_ROWS][NH_CH], sb[NH_ROWS][NH_CH];
    const int c = blockIdx.x * NH_CH + threadIdx.x;
    double a = 0.0, b = 0.0;
    if (c < c_total) {
        const double k = red_shift<T, MODE>(x, 1, mean, c);
        for (size_t r = (size_t)blockIdx.y * NH_ROWS + threadIdx.y; r < m;
             r += (size_t)gridDim.y * NH_ROWS)
            red_acc<T, MODE>(x, dy, r * (size_t)c_total + (size_t)c, k, &a, &b);
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
static void red_partial(al_ctx *ctx, int n, int c, int hw, const red_plan &r, const T *x,
                        const T *dy, const float *mean, double *part) {
    cudaStream_t st = al_stream_of(ctx);
    if (r.rows)
        nh_partial_kernel<T, MODE>
            <<<dim3((unsigned)AL_CEIL_DIV(c, NH_CH), (unsigned)r.slices), dim3(NH_CH, NH_ROWS), 0,
               st>>>((size_t)n * hw, c, x, dy, mean, part);
    else
        nc_partial_kernel<T, MODE><<<dim3((unsigned)c, (unsigned)r.slices), NC_BLOCK, 0, st>>>(
            n, c, hw, r.per, x, dy, mean, part);
}

/* Sum of the slices of channel c, in slice order. */
static __device__ void red_total(const double *part, int slices, int c_total, int c, double *a,
                                 double *b) {
    double ta = 0.0, tb = 0.0;
    for (int s = 0; s < slices; s++) {
        ta += part[((size_t)s * c_total + c) * 2];
        tb += part[((size_t)s * c_total + c) * 2 + 1];
    }
    *a = ta;
    *b = tb;
}

/* Train forward statistics: the moments -> mean/invstd (saved), running update, and
 * coef = {mean, scale, shift} as the twin forms them. One thread per channel. */
template <typename T>
static __global__ void stats_final_kernel(size_t m, int c_total, size_t c_stride, int slices,
                                          float eps, float momentum, int update,
                                          const double *part, const T *__restrict__ x,
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
    red_total(part, slices, c_total, c, &s1, &s2);
    const double dm = s1 / (double)m;
    const double mean = red_shift<T, RED_STATS>(x, c_stride, (const float *)NULL, c) + dm;
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

/* Eval forward: the same coef from the running statistics (and the saved statistics). */
static __global__ void eval_coef_kernel(int c_total, float eps, const float *__restrict__ gamma,
                                        const float *__restrict__ beta,
                                        const float *__restrict__ running_mean,
                                        const float *__restrict__ running_var,
                                        float *__restrict__ save_mean,
                                        float *__restrict__ save_invstd, float *__restrict__ coef) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= c_total) return;
    const double invstd = 1.0 / sqrt((double)running_var[c] + (double)eps);
    if (save_mean) save_mean[c] = running_mean[c];
    if (save_invstd) save_invstd[c] = (float)invstd;
    coef[c] = running_mean[c];
    coef[c_total + c] = (float)((gamma ? (double)gamma[c] : 1.0) * invstd);
    coef[2 * c_total + c] = beta ? beta[c] : 0.0f;
}

/* y = (x - coef[0][c]) * coef[1][c] + coef[2][c], either mode */
template <typename T>
static __global__ void norm_kernel(size_t n_elems, int c_total, int hw, int nhwc,
                                   const T *__restrict__ x, const float *__restrict__ coef,
                                   T *__restrict__ y) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n_elems;
         i += (size_t)gridDim.x * blockDim.x) {
        const int c = al_chan_index(i, c_total, hw, nhwc);
        al_st(y, i, (al_ld(x, i) - coef[c]) * coef[c_total + c] + coef[2 * c_total + c]);
    }
}

/* Backward: dgamma/dbeta += and coef = {a, b, e} of dx = a*dy + b*(x - mean) + e (coef NULL:
 * only the sums; save_invstd NULL: 1, a plain channel sum). */
static __global__ void grad_final_kernel(size_t m, int c_total, int slices, int have_sums,
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
        red_total(part, slices, c_total, c, &sum_dy, &s1);
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
static __global__ void dx_kernel(size_t n_elems, int c_total, int hw, int nhwc, int dx_accum,
                                 const T *__restrict__ x, const float *__restrict__ save_mean,
                                 const T *__restrict__ dy, const float *__restrict__ coef,
                                 T *__restrict__ dx) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n_elems;
         i += (size_t)gridDim.x * blockDim.x) {
        const int c = al_chan_index(i, c_total, hw, nhwc);
        const float v = coef[c] * al_ld(dy, i) + coef[c_total + c] * (al_ld(x, i) - save_mean[c]) +
                        coef[2 * c_total + c];
        al_st(dx, i, dx_accum ? al_ld(dx, i) + v : v);
    }
}

/* Device temporaries of one call: the partials and 3C per-channel constants. */
typedef struct red_ws {
    red_plan r;
    double *part;
    float *coef;
    size_t mark;
} red_ws;

static al_status red_take(al_ctx *ctx, int n, int c, int hw, int nhwc, red_ws *w) {
    w->r = red_plan_of(n, c, hw, nhwc);
    void *p = NULL;
    AL_TRY(al_cuda_tmp(ctx, red_bytes(n, c, hw, nhwc), &p, &w->mark));
    w->part = (double *)p;
    w->coef = (float *)(((uintptr_t)(w->part + (size_t)w->r.slices * c * 2) + 63) & ~(uintptr_t)63);
    return AL_OK;
}

template <typename T>
static al_status bn_bwd(al_ctx *ctx, const al_bn_desc *d, const T *x, const float *gamma,
                        const float *save_mean, const float *save_invstd, const T *dy, T *dx,
                        int dx_accum, float *dgamma, float *dbeta) {
    AL_ASSERT(d->n >= 1 && d->c >= 1 && d->hw >= 1 && x && dy && save_mean && save_invstd,
              "bn backward n=%d c=%d hw=%d", d->n, d->c, d->hw);
    if (!dx && !dgamma && !dbeta) return AL_OK;
    const size_t m = (size_t)d->n * d->hw, ne = m * (size_t)d->c;
    const int have_sums = dgamma || dbeta || (dx && d->use_batch_stats);
    red_ws w;
    AL_TRY(red_take(ctx, d->n, d->c, d->hw, d->nhwc, &w));
    cudaStream_t st = al_stream_of(ctx);
    if (have_sums)
        red_partial<T, RED_GRAD>(ctx, d->n, d->c, d->hw, w.r, x, dy, save_mean, w.part);
    grad_final_kernel<<<(unsigned)AL_CEIL_DIV(d->c, AL_BLOCK), AL_BLOCK, 0, st>>>(
        m, d->c, w.r.slices, have_sums, d->use_batch_stats ? 1 : 0, w.part, gamma, save_invstd,
        dgamma, dbeta, dx ? w.coef : (float *)NULL);
    if (dx)
        dx_kernel<T><<<al_grid(ctx, ne, AL_BLOCK), AL_BLOCK, 0, st>>>(
            ne, d->c, d->hw, d->nhwc, dx_accum ? 1 : 0, x, save_mean, dy, w.coef, dx);
    al_ctx_scratch_release(ctx, w.mark);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

/* db[c] += sum of dy over (N, HW), either layout: the bias gradients of conv and linear (HW =
 * 1). Twins: the db loops in core/ops/conv2d.c and core/ops/linear.c. */
template <typename T>
static al_status channel_sum(al_ctx *ctx, int n, int c, int hw, int nhwc, const T *dy, float *db) {
    AL_ASSERT(n >= 1 && c >= 1 && hw >= 1, "channel sum n=%d c=%d hw=%d", n, c, hw);
    red_ws w;
    AL_TRY(red_take(ctx, n, c, hw, nhwc, &w));
    red_partial<T, RED_SUM>(ctx, n, c, hw, w.r, (const T *)NULL, dy, (const float *)NULL, w.part);
    grad_final_kernel<<<(unsigned)AL_CEIL_DIV(c, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        (size_t)n * hw, c, w.r.slices, 1, 0, w.part, (const float *)NULL, (const float *)NULL,
        (float *)NULL, db, (float *)NULL);
    al_ctx_scratch_release(ctx, w.mark);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

al_status al_channel_sum_add_cuda(al_ctx *ctx, int n, int c, int hw, int nhwc, const float *dy,
                                  float *db) {
    return channel_sum(ctx, n, c, hw, nhwc, dy, db);
}
al_status al_channel_sum_add_bf16_cuda(al_ctx *ctx, int n, int c, int hw, int nhwc,
                                       const al_bf16 *dy, float *db) {
    return channel_sum(ctx, n, c, hw, nhwc, dy, db);
}

/* Forward: coef from the batch (train: split sums, then the statistics and running update)
 * or from the running statistics (eval), then one elementwise pass. */
template <typename T>
static al_status bn_fwd(al_ctx *ctx, const al_bn_desc *d, const T *x, const float *gamma,
                        const float *beta, float *running_mean, float *running_var, T *y,
                        float *save_mean, float *save_invstd) {
    AL_ASSERT(d->n >= 1 && d->c >= 1 && d->hw >= 1 && x && y, "bn forward n=%d c=%d hw=%d", d->n,
              d->c, d->hw);
    const size_t m = (size_t)d->n * d->hw, ne = m * (size_t)d->c;
    if (d->use_batch_stats && m < 2)
        return AL_FAIL(AL_ERR_VALUE,
                       "al_bn_forward_cuda: batch statistics need more than 1 value per channel "
                       "(N*HW = %zu; PyTorch refuses this too)",
                       m);
    if (!d->use_batch_stats || d->update_running)
        AL_ASSERT(running_mean && running_var, "bn %s needs running stats",
                  d->use_batch_stats ? "update" : "eval");
    red_ws w;
    AL_TRY(red_take(ctx, d->n, d->c, d->hw, d->nhwc, &w));
    cudaStream_t st = al_stream_of(ctx);
    const unsigned gc = (unsigned)AL_CEIL_DIV(d->c, AL_BLOCK);
    if (d->use_batch_stats) {
        red_partial<T, RED_STATS>(ctx, d->n, d->c, d->hw, w.r, x, (const T *)NULL,
                                  (const float *)NULL, w.part);
        stats_final_kernel<T><<<gc, AL_BLOCK, 0, st>>>(
            m, d->c, d->nhwc ? 1 : (size_t)d->hw, w.r.slices, d->eps, d->momentum,
            d->update_running ? 1 : 0, w.part, x, gamma, beta, running_mean, running_var,
            save_mean, save_invstd, w.coef);
    } else {
        eval_coef_kernel<<<gc, AL_BLOCK, 0, st>>>(d->c, d->eps, gamma, beta, running_mean,
                                                   running_var, save_mean, save_invstd, w.coef);
    }
    norm_kernel<T><<<al_grid(ctx, ne, AL_BLOCK), AL_BLOCK, 0, st>>>(ne, d->c, d->hw, d->nhwc, x,
                                                                     w.coef, y);
    al_ctx_scratch_release(ctx, w.mark);
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
