/* conv2d.c: 2-D convolution, CPU reference + dispatcher. Twin: cuda/op_conv2d.cu (cuDNN).
 * NCHW activations, OIHW weights, groups = 1. Per group of G images (G > 1 only when the
 * output plane is small, so every SGEMM gets enough columns):
 *   forward   Y_g (Co, G*HWo) = W (Co, K) x col_g (K, G*HWo),     K = Ci*kh*kw
 *   dweight   dW_t (Co, K)   += dY_g (Co, G*HWo) x col_g^T         (per-thread accumulator)
 *   dinput    dcol_g (K, G*HWo) = W^T x dY_g, then col2im
 * OpenMP splits the groups statically over threads; OpenBLAS is single-threaded inside (see
 * al_ctx_init). Per-thread dW accumulators are summed in thread order, so dW is deterministic
 * for a fixed thread count; db is a per-channel double sum, independent of threads.
 * Write modes: dw +=, db +=, dx = (+= when dx_accum). No allocation: buffers come from
 * ctx->scratch, sized by al_conv2d_scratch_bytes. */
#include "core/ops/conv2d.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

/* An SGEMM with fewer output columns than this runs well below the kernel's peak (OpenBLAS
 * SkylakeX sgemm tiles are 16x4..32x6; packing overheads dominate below a few hundred
 * columns), so small planes (8x8, 4x4) are batched several images per GEMM. */
#define CONV_TARGET_COLS 256

#ifdef AL_HAVE_CUDA
#define CUDA_OR_FAIL(call, name) return (call)
#else
#define CUDA_OR_FAIL(call, name)                                                             \
    return AL_FAIL(AL_ERR_NO_GPU,                                                          \
                   "%s: ctx device is CUDA but advlab was built without CUDA "             \
                   "(configure with -DADVLAB_CUDA=ON)",                                    \
                   name)
#endif

void al_conv2d_desc_init(al_conv2d_desc *d, int n, int c_in, int h_in, int w_in, int c_out, int k,
                         int stride, int pad) {
    AL_ASSERT(n >= 1 && c_in >= 1 && h_in >= 1 && w_in >= 1 && c_out >= 1,
              "conv2d shape n=%d c_in=%d h=%d w=%d c_out=%d", n, c_in, h_in, w_in, c_out);
    AL_ASSERT(k >= 1 && stride >= 1 && pad >= 0, "conv2d k=%d stride=%d pad=%d", k, stride, pad);
    d->n = n;
    d->c_in = c_in;
    d->h_in = h_in;
    d->w_in = w_in;
    d->c_out = c_out;
    d->kh = d->kw = k;
    d->stride = stride;
    d->pad = pad;
    d->h_out = (h_in + 2 * pad - k) / stride + 1;
    d->w_out = (w_in + 2 * pad - k) / stride + 1;
    AL_ASSERT(h_in + 2 * pad >= k && w_in + 2 * pad >= k && d->h_out >= 1 && d->w_out >= 1,
              "conv2d kernel %d larger than padded input %dx%d (pad %d)", k, h_in, w_in, pad);
}

/* ------------------------------------------------------------------ planning */

typedef struct plan {
    int k;            /* rows of the column matrix: Ci*kh*kw */
    int hw_in, hw_out;
    int direct;       /* 1x1, stride 1, pad 0: an image is already its column matrix */
    int group;        /* images per GEMM */
    int n_groups;
    int n_threads;
    size_t col_floats, dy_floats, dw_floats; /* per-thread buffers, each 16-float aligned */
} plan;

static size_t round16(size_t n) { return (n + 15) & ~(size_t)15; }

/* The plan depends only on the shape and the thread count, so the scratch size computed at
 * setup (for max_batch) bounds every later call with n <= max_batch: group is monotone in n. */
static plan make_plan(const al_conv2d_desc *d, int n_threads) {
    plan p;
    p.k = d->c_in * d->kh * d->kw;
    p.hw_in = d->h_in * d->w_in;
    p.hw_out = d->h_out * d->w_out;
    p.direct = d->kh == 1 && d->kw == 1 && d->stride == 1 && d->pad == 0;
    p.n_threads = n_threads < 1 ? 1 : n_threads;
    int g = AL_CEIL_DIV(CONV_TARGET_COLS, p.hw_out);
    int per_thread = AL_CEIL_DIV(d->n, p.n_threads); /* keep every thread busy */
    p.group = AL_MAX(1, AL_MIN(g, per_thread));
    p.n_groups = AL_CEIL_DIV(d->n, p.group);
    size_t cols = (size_t)p.group * p.hw_out;
    /* a direct single-image group uses x itself, but dx of a direct group still needs dcol
     * when grouped; keep the column buffer whenever it can be used */
    p.col_floats = (p.direct && p.group == 1) ? 0 : round16((size_t)p.k * cols);
    p.dy_floats = p.group > 1 ? round16((size_t)d->c_out * cols) : 0;
    p.dw_floats = round16((size_t)d->c_out * p.k);
    return p;
}

static size_t per_thread_floats(const plan *p) { return p->col_floats + p->dy_floats + p->dw_floats; }

static size_t scratch_bytes_cpu(const al_conv2d_desc *d) {
    plan p = make_plan(d, omp_get_max_threads());
    /* + 64: al_ctx_scratch aligns the start to 64 bytes */
    return (size_t)p.n_threads * per_thread_floats(&p) * sizeof(float) + 64;
}

size_t al_conv2d_scratch_bytes(const al_ctx *ctx, const al_conv2d_desc *d) {
    switch (ctx->device) {
    case AL_DEV_CPU: return scratch_bytes_cpu(d);
    case AL_DEV_CUDA:
#ifdef AL_HAVE_CUDA
        return al_conv2d_scratch_bytes_cuda(ctx, d);
#else
        return 0;
#endif
    }
    return 0;
}

/* ------------------------------------------------------------------ im2col / col2im */

/* Output columns [lo, hi) whose input column ow*s - pad + kj lies inside [0, w). */
static void valid_range(int w_in, int w_out, int s, int pad, int kj, int *lo, int *hi) {
    int a = pad - kj; /* need ow*s >= a */
    int l = a > 0 ? (a + s - 1) / s : 0;
    int b = w_in - 1 + pad - kj; /* need ow*s <= b */
    int h = b < 0 ? 0 : b / s + 1;
    if (h > w_out) h = w_out;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

/* col (K rows, leading dimension ld) <- patches of one image x (Ci, H, W). */
static void im2col(const al_conv2d_desc *d, const float *restrict x, float *restrict col,
                   size_t ld) {
    const int H = d->h_in, W = d->w_in, Ho = d->h_out, Wo = d->w_out, s = d->stride,
              pad = d->pad;
    for (int c = 0; c < d->c_in; c++) {
        const float *xc = x + (size_t)c * H * W;
        for (int ki = 0; ki < d->kh; ki++) {
            for (int kj = 0; kj < d->kw; kj++) {
                float *row = col + ((size_t)(c * d->kh + ki) * d->kw + kj) * ld;
                int lo, hi;
                valid_range(W, Wo, s, pad, kj, &lo, &hi);
                for (int oh = 0; oh < Ho; oh++) {
                    float *dst = row + (size_t)oh * Wo;
                    int ih = oh * s - pad + ki;
                    if (ih < 0 || ih >= H) {
                        memset(dst, 0, (size_t)Wo * sizeof(float));
                        continue;
                    }
                    const float *src = xc + (size_t)ih * W - pad + kj;
                    for (int ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
                    if (s == 1) {
                        memcpy(dst + lo, src + lo, (size_t)(hi - lo) * sizeof(float));
                    } else {
                        for (int ow = lo; ow < hi; ow++) dst[ow] = src[(size_t)ow * s];
                    }
                    for (int ow = hi; ow < Wo; ow++) dst[ow] = 0.0f;
                }
            }
        }
    }
}

/* dx (Ci, H, W) += scatter of dcol (K rows, leading dimension ld). Sequential: overlapping
 * windows (stride < k) add in a fixed order, so the result is deterministic. */
static void col2im(const al_conv2d_desc *d, const float *restrict dcol, size_t ld,
                   float *restrict dx) {
    const int H = d->h_in, W = d->w_in, Ho = d->h_out, Wo = d->w_out, s = d->stride,
              pad = d->pad;
    for (int c = 0; c < d->c_in; c++) {
        float *dxc = dx + (size_t)c * H * W;
        for (int ki = 0; ki < d->kh; ki++) {
            for (int kj = 0; kj < d->kw; kj++) {
                const float *row = dcol + ((size_t)(c * d->kh + ki) * d->kw + kj) * ld;
                int lo, hi;
                valid_range(W, Wo, s, pad, kj, &lo, &hi);
                for (int oh = 0; oh < Ho; oh++) {
                    int ih = oh * s - pad + ki;
                    if (ih < 0 || ih >= H) continue;
                    const float *src = row + (size_t)oh * Wo;
                    float *dst = dxc + (size_t)ih * W - pad + kj;
                    if (s == 1) {
                        for (int ow = lo; ow < hi; ow++) dst[ow] += src[ow];
                    } else {
                        for (int ow = lo; ow < hi; ow++) dst[(size_t)ow * s] += src[ow];
                    }
                }
            }
        }
    }
}

/* Column matrix of images [i0, i0+gn) into col (K, gn*HWo). */
static void build_cols(const al_conv2d_desc *d, const plan *p, const float *x, int i0, int gn,
                       float *col) {
    const size_t ld = (size_t)gn * p->hw_out;
    for (int b = 0; b < gn; b++) {
        const float *xi = x + (size_t)(i0 + b) * d->c_in * p->hw_in;
        if (p->direct) {
            for (int c = 0; c < d->c_in; c++)
                memcpy(col + (size_t)c * ld + (size_t)b * p->hw_out, xi + (size_t)c * p->hw_in,
                       (size_t)p->hw_in * sizeof(float));
        } else {
            im2col(d, xi, col + (size_t)b * p->hw_out, ld);
        }
    }
}

/* ------------------------------------------------------------------ forward */

al_status al_conv2d_forward_cpu(al_ctx *ctx, const al_conv2d_desc *d, const float *x,
                                const float *w, const float *b, float *y) {
    AL_ASSERT(x && w && y, "conv2d forward: NULL x/w/y");
    const plan p = make_plan(d, omp_get_max_threads());
    const size_t mark = al_ctx_scratch_mark(ctx);
    const size_t per_thread = per_thread_floats(&p);
    float *base = al_ctx_scratch(ctx, (size_t)p.n_threads * per_thread * sizeof(float));
    const int Co = d->c_out, K = p.k, HWo = p.hw_out;

#pragma omp parallel for schedule(static) num_threads(p.n_threads)
    for (int g = 0; g < p.n_groups; g++) {
        float *col = base + (size_t)omp_get_thread_num() * per_thread;
        float *tmp = col + p.col_floats; /* (Co, gn*HWo) output staging for gn > 1 */
        const int i0 = g * p.group, gn = AL_MIN(p.group, d->n - i0);
        const size_t cols = (size_t)gn * HWo;
        const float *a;
        if (p.direct && gn == 1) {
            a = x + (size_t)i0 * d->c_in * p.hw_in;
        } else {
            build_cols(d, &p, x, i0, gn, col);
            a = col;
        }
        if (gn == 1) {
            float *yi = y + (size_t)i0 * Co * HWo;
            if (b) {
                for (int co = 0; co < Co; co++)
                    for (int q = 0; q < HWo; q++) yi[(size_t)co * HWo + q] = b[co];
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Co, HWo, K, 1.0f, w, K, a, HWo,
                        b ? 1.0f : 0.0f, yi, HWo);
        } else {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Co, (int)cols, K, 1.0f, w, K, a,
                        (int)cols, 0.0f, tmp, (int)cols);
            for (int bi = 0; bi < gn; bi++) {
                float *yi = y + (size_t)(i0 + bi) * Co * HWo;
                for (int co = 0; co < Co; co++) {
                    const float *src = tmp + (size_t)co * cols + (size_t)bi * HWo;
                    float *dst = yi + (size_t)co * HWo;
                    const float bias = b ? b[co] : 0.0f;
                    for (int q = 0; q < HWo; q++) dst[q] = src[q] + bias;
                }
            }
        }
    }
    al_ctx_scratch_release(ctx, mark);
    return AL_OK;
}

/* ------------------------------------------------------------------ backward */

al_status al_conv2d_backward_cpu(al_ctx *ctx, const al_conv2d_desc *d, const float *x,
                                 const float *w, const float *dy, float *dx, int dx_accum,
                                 float *dw, float *db) {
    AL_ASSERT(dy, "conv2d backward: NULL dy");
    AL_ASSERT(!dw || x, "conv2d backward: dw needs x");
    AL_ASSERT(!dx || w, "conv2d backward: dx needs w");
    const plan p = make_plan(d, omp_get_max_threads());
    const int Co = d->c_out, K = p.k, HWo = p.hw_out, T = p.n_threads;

    /* db[co] += sum over images and pixels, in double, one channel per iteration: the order
     * is fixed whatever the thread count. */
    if (db) {
#pragma omp parallel for schedule(static) num_threads(T)
        for (int co = 0; co < Co; co++) {
            double s = 0.0;
            for (int i = 0; i < d->n; i++) {
                const float *r = dy + ((size_t)i * Co + co) * HWo;
                double si = 0.0;
                for (int q = 0; q < HWo; q++) si += r[q];
                s += si;
            }
            db[co] += (float)s;
        }
    }
    if (!dx && !dw) return AL_OK;

    const size_t mark = al_ctx_scratch_mark(ctx);
    const size_t per_thread = per_thread_floats(&p);
    float *base = al_ctx_scratch(ctx, (size_t)T * per_thread * sizeof(float));

#pragma omp parallel num_threads(T)
    {
        float *col = base + (size_t)omp_get_thread_num() * per_thread;
        float *dyg = col + p.col_floats;   /* (Co, gn*HWo) gathered dY for gn > 1 */
        float *dwt = dyg + p.dy_floats;    /* (Co, K) this thread's dW */
        /* zero every accumulator, even those of threads the runtime did not start */
        if (dw) {
#pragma omp for schedule(static)
            for (int t = 0; t < T; t++)
                memset(base + (size_t)t * per_thread + p.col_floats + p.dy_floats, 0,
                       (size_t)Co * K * sizeof(float));
        }
#pragma omp for schedule(static)
        for (int g = 0; g < p.n_groups; g++) {
            const int i0 = g * p.group, gn = AL_MIN(p.group, d->n - i0);
            const size_t cols = (size_t)gn * HWo;
            const float *dyp;
            if (gn == 1) {
                dyp = dy + (size_t)i0 * Co * HWo;
            } else {
                for (int bi = 0; bi < gn; bi++)
                    for (int co = 0; co < Co; co++)
                        memcpy(dyg + (size_t)co * cols + (size_t)bi * HWo,
                               dy + ((size_t)(i0 + bi) * Co + co) * HWo,
                               (size_t)HWo * sizeof(float));
                dyp = dyg;
            }
            if (dw) {
                const float *a;
                if (p.direct && gn == 1) {
                    a = x + (size_t)i0 * d->c_in * p.hw_in;
                } else {
                    build_cols(d, &p, x, i0, gn, col);
                    a = col;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Co, K, (int)cols, 1.0f, dyp,
                            (int)cols, a, (int)cols, 1.0f, dwt, K);
            }
            if (dx) {
                float *dxi = dx + (size_t)i0 * d->c_in * p.hw_in;
                if (p.direct && gn == 1) {
                    /* dx_i (Ci, HW) = W^T dY_i, written (or added) in place */
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, HWo, Co, 1.0f, w, K,
                                dyp, HWo, dx_accum ? 1.0f : 0.0f, dxi, HWo);
                    continue;
                }
                /* dcol (K, gn*HWo) = W^T dY_g, reusing the column buffer */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, (int)cols, Co, 1.0f, w, K,
                            dyp, (int)cols, 0.0f, col, (int)cols);
                for (int bi = 0; bi < gn; bi++) {
                    float *dxb = dxi + (size_t)bi * d->c_in * p.hw_in;
                    const float *dcb = col + (size_t)bi * HWo;
                    if (p.direct) {
                        for (int c = 0; c < d->c_in; c++) {
                            const float *src = dcb + (size_t)c * cols;
                            float *dst = dxb + (size_t)c * p.hw_in;
                            if (dx_accum)
                                for (int q = 0; q < HWo; q++) dst[q] += src[q];
                            else
                                memcpy(dst, src, (size_t)HWo * sizeof(float));
                        }
                    } else {
                        if (!dx_accum) memset(dxb, 0, (size_t)d->c_in * p.hw_in * sizeof(float));
                        col2im(d, dcb, cols, dxb);
                    }
                }
            }
        }
    }

    /* dw += sum of the per-thread accumulators, in thread order (deterministic for a fixed
     * thread count). The sum is formed first so dw sees exactly one rounding, as "+=". */
    if (dw) {
        const size_t nw = (size_t)Co * K;
#pragma omp parallel for schedule(static) num_threads(T)
        for (size_t j = 0; j < nw; j++) {
            float s = base[p.col_floats + p.dy_floats + j];
            for (int t = 1; t < T; t++) s += base[(size_t)t * per_thread + p.col_floats + p.dy_floats + j];
            dw[j] += s;
        }
    }
    al_ctx_scratch_release(ctx, mark);
    return AL_OK;
}

/* ------------------------------------------------------------------ dispatch */

al_status al_conv2d_forward(al_ctx *ctx, const al_conv2d_desc *d, const float *x, const float *w,
                            const float *b, float *y) {
    switch (ctx->device) {
    case AL_DEV_CPU: return al_conv2d_forward_cpu(ctx, d, x, w, b, y);
    case AL_DEV_CUDA: CUDA_OR_FAIL(al_conv2d_forward_cuda(ctx, d, x, w, b, y), "al_conv2d_forward");
    }
    return AL_FAIL(AL_ERR_VALUE, "al_conv2d_forward: unknown device %d", (int)ctx->device);
}

al_status al_conv2d_backward(al_ctx *ctx, const al_conv2d_desc *d, const float *x, const float *w,
                             const float *dy, float *dx, int dx_accum, float *dw, float *db) {
    switch (ctx->device) {
    case AL_DEV_CPU: return al_conv2d_backward_cpu(ctx, d, x, w, dy, dx, dx_accum, dw, db);
    case AL_DEV_CUDA:
        CUDA_OR_FAIL(al_conv2d_backward_cuda(ctx, d, x, w, dy, dx, dx_accum, dw, db),
                     "al_conv2d_backward");
    }
    return AL_FAIL(AL_ERR_VALUE, "al_conv2d_backward: unknown device %d", (int)ctx->device);
}
