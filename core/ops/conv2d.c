/* conv2d.c: 2-D convolution, CPU reference + dispatcher. Twin: cuda/op_conv2d.cu (cuDNN).
 * NCHW activations, OIHW weights, groups = 1, everything as OpenBLAS SGEMMs, in one of three
 * layouts chosen per shape by make_plan (K = Ci*kh*kw):
 *   standard  im2col, G images per GEMM on small planes: Y_g (Co, G*HWo) = W (Co, K) col_g,
 *             dW += dY_g col_g^T, dcol = W^T dY_g then col2im;
 *   wide      stride 1: the same on the padded width, so each im2col row is one long copy;
 *   taps      stride 1, C_in >= 8: k*k shifted GEMMs straight on the padded input, no im2col.
 * OpenMP splits images (groups) statically over threads; OpenBLAS is single-threaded inside
 * (al_ctx_init). Per-thread dW accumulators are summed in thread order, so dW is deterministic
 * for a fixed thread count; db is a per-channel double sum, independent of threads.
 * Write modes: dw +=, db +=, dx = (+= when dx_accum); NULL skips a gradient. No allocation:
 * buffers come from ctx->scratch, sized by al_conv2d_scratch_bytes. */
#include "core/ops/conv2d.h"

#include <cblas.h>
#include <omp.h>
#include <string.h>

/* An SGEMM with fewer output columns than this runs well below the kernel's peak (OpenBLAS
 * SkylakeX sgemm tiles are 16x4..32x6; packing overheads dominate below a few hundred
 * columns), so small planes (8x8, 4x4) are batched several images per GEMM. */
#define CONV_TARGET_COLS 256

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
    d->nhwc = 0;
    AL_ASSERT(h_in + 2 * pad >= k && w_in + 2 * pad >= k && d->h_out >= 1 && d->w_out >= 1,
              "conv2d kernel %d larger than padded input %dx%d (pad %d)", k, h_in, w_in, pad);
}

/* ------------------------------------------------------------------ planning */

/* Two column layouts (cpi = GEMM columns per image):
 *  - standard: cpi = Ho*Wo, classic im2col (short rows of Wo floats);
 *  - wide (stride 1, k > 1): the output is computed on the padded input's full width Wp,
 *    cpi = Ho*Wp, so the row of tap (c, ki, kj) is ONE contiguous run of the (padded) input
 *    plane starting at ki*Wp + kj: im2col becomes K long copies and col2im K long adds. The
 *    Wp - Wo extra columns per output row wrap around into the next row; forward drops them,
 *    backward feeds zeros there (dY is expanded with zero columns), so they contribute nothing.
 *    Costs (k-1)/Wo extra GEMM work, so it is used only while that is <= 1/WIDE_MAX_EXTRA. */
#define WIDE_MAX_EXTRA 4
/* With the wide layout and Ci >= TAPS_MIN_CIN the column matrix is not built at all: tap
 * (ki, kj) of the column matrix IS a strided view of the padded input (rows c at stride
 * Hp*Wp, starting at ki*Wp + kj), so the convolution is k*k accumulating GEMMs with K = Ci
 * ("shifted GEMMs") on weights repacked tap-major (k*k, Co, Ci). OpenBLAS runs K = 32..512
 * GEMMs as fast as the single K = 9*Ci one (measured), and im2col/col2im disappear. With
 * few input channels the per-tap GEMMs are too thin (K = 1 for grayscale input). One image
 * per GEMM: when its run of columns is short AND the GEMM is past OpenBLAS's unpacked
 * small-matrix regime (~1M multiply-adds), re-packing the (Co, Ci) tap weights for every
 * image dominates (8x8 planes, 256 channels: 85 vs 110 GFLOP/s single-thread for the
 * standard im2col path with 4 images per GEMM), so those shapes keep the standard path. */
#define TAPS_MIN_CIN 8
#define TAPS_MIN_RUN 128
#define TAPS_SMALL_GEMM (1 << 20)

typedef struct plan {
    int k;            /* rows of the column matrix: Ci*kh*kw */
    int hw_in, hw_out;
    int direct;       /* 1x1, stride 1, pad 0: an image is already its column matrix */
    int wide;
    int taps;         /* wide + shifted GEMMs, one image at a time, no column matrix */
    int hp, wp;       /* padded input plane (wide) */
    int cpi;          /* GEMM columns per image */
    int group;        /* images per GEMM */
    int n_groups;
    int n_threads;
    /* per-thread buffers (floats, each 16-aligned): columns (K, G*cpi); dY or output staging
     * (Co, G*cpi); dW accumulator (Co, K); padded input / input gradient plane set (wide) */
    size_t col_floats, dy_floats, dw_floats, pad_floats;
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
    p.hp = d->h_in + 2 * d->pad;
    p.wp = d->w_in + 2 * d->pad;
    const int wide_ok = d->stride == 1 && d->kw > 1 && (d->kw - 1) * WIDE_MAX_EXTRA <= d->w_out;
    /* wide: taps for C_in >= TAPS_MIN_CIN where they pay, wide im2col below that; a wide-able
     * shape that fails the taps test takes the standard path (no extra columns) */
    const double run = (double)(d->h_out - 1) * p.wp + d->w_out;
    p.taps = wide_ok && d->c_in >= TAPS_MIN_CIN &&
             (run >= TAPS_MIN_RUN || (double)d->c_out * d->c_in * run <= TAPS_SMALL_GEMM);
    p.wide = p.taps || (wide_ok && d->c_in < TAPS_MIN_CIN);
    p.cpi = p.wide ? d->h_out * p.wp : p.hw_out;
    p.n_threads = n_threads < 1 ? 1 : n_threads;
    int g = AL_CEIL_DIV(CONV_TARGET_COLS, p.cpi);
    int per_thread = AL_CEIL_DIV(d->n, p.n_threads); /* keep every thread busy */
    p.group = p.taps ? 1 : AL_MAX(1, AL_MIN(g, per_thread));
    p.n_groups = AL_CEIL_DIV(d->n, p.group);
    size_t cols = (size_t)p.group * p.cpi;
    /* a direct single-image group reads x itself (forward and dW); taps need no columns */
    p.col_floats = ((p.direct && p.group == 1) || p.taps) ? 0 : round16((size_t)p.k * cols);
    p.dy_floats = (p.group > 1 || p.wide) ? round16((size_t)d->c_out * cols) : 0;
    p.dw_floats = round16((size_t)d->c_out * p.k);
    p.pad_floats = (p.wide && d->pad > 0) ? round16((size_t)d->c_in * p.hp * p.wp) : 0;
    return p;
}

static size_t per_thread_floats(const plan *p) {
    return p->col_floats + p->dy_floats + p->dw_floats + p->pad_floats;
}

/* Shared (read-only inside the parallel regions): the tap-major weights of the taps path. */
static size_t shared_floats(const al_conv2d_desc *d, const plan *p) {
    return p->taps ? round16((size_t)d->c_out * p->k) : 0;
}

static size_t scratch_bytes_cpu(const al_conv2d_desc *d) {
    plan p = make_plan(d, omp_get_max_threads());
    /* + 64: al_ctx_scratch aligns the start to 64 bytes */
    return ((size_t)p.n_threads * per_thread_floats(&p) + shared_floats(d, &p)) * sizeof(float) +
           64;
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

/* One thread's slice of the scratch. */
typedef struct bufs {
    float *col, *dy, *dw, *pad;
} bufs;
static bufs thread_bufs(const plan *p, float *base, int t) {
    bufs b;
    b.col = base + (size_t)t * per_thread_floats(p);
    b.dy = b.col + p->col_floats;
    b.dw = b.dy + p->dy_floats;
    b.pad = b.dw + p->dw_floats;
    return b;
}

/* ------------------------------------------------------------------ im2col / col2im */

#if defined(__GNUC__) && !defined(__clang__)
/* GCC turns short copy loops back into memcpy/memset calls (loop-distribute-patterns); a call
 * per 24-float row costs more than the copy itself */
#define NO_MEMCPY_IDIOM __attribute__((optimize("no-tree-loop-distribute-patterns")))
#else
#define NO_MEMCPY_IDIOM
#endif

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

/* Standard layout: col (K rows, leading dimension ld) <- patches of one image x (Ci, H, W). */
NO_MEMCPY_IDIOM
static void im2col(const al_conv2d_desc *d, const float *restrict x, float *restrict col,
                   size_t ld) {
    const int H = d->h_in, W = d->w_in, Ho = d->h_out, Wo = d->w_out, s = d->stride,
              pad = d->pad;
    for (int c = 0; c < d->c_in; c++) {
        const float *xc = x + (size_t)c * H * W;
        for (int ki = 0; ki < d->kh; ki++) {
            for (int kj = 0; kj < d->kw; kj++) {
                float *restrict row = col + ((size_t)(c * d->kh + ki) * d->kw + kj) * ld;
                int lo, hi;
                valid_range(W, Wo, s, pad, kj, &lo, &hi);
                for (int oh = 0; oh < Ho; oh++) {
                    float *restrict dst = row + (size_t)oh * Wo;
                    const int ih = oh * s - pad + ki;
                    if (ih < 0 || ih >= H) {
                        for (int ow = 0; ow < Wo; ow++) dst[ow] = 0.0f;
                        continue;
                    }
                    const float *restrict src = xc + (size_t)ih * W - pad + kj;
                    for (int ow = 0; ow < lo; ow++) dst[ow] = 0.0f;
                    if (s == 1) {
                        for (int ow = lo; ow < hi; ow++) dst[ow] = src[ow];
                    } else {
                        for (int ow = lo; ow < hi; ow++) dst[ow] = src[(size_t)ow * s];
                    }
                    for (int ow = hi; ow < Wo; ow++) dst[ow] = 0.0f;
                }
            }
        }
    }
}

/* Standard layout: dx (Ci, H, W) += scatter of dcol (K rows, leading dimension ld).
 * Sequential: overlapping windows (stride < k) add in a fixed order (deterministic). */
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

/* Wide layout: the valid length of a tap's run; the last output row stops at Wo so the run
 * stays inside the padded plane (the k-1 columns after it are zero in col). */
static size_t wide_run(const al_conv2d_desc *d, const plan *p) {
    return (size_t)(d->h_out - 1) * p->wp + d->w_out;
}

/* Wide layout: the padded input plane set (Ci, Hp, Wp) of one image (x itself if pad = 0). */
static const float *padded_input(const al_conv2d_desc *d, const plan *p, const float *xi,
                                 float *pad_buf) {
    if (d->pad == 0) return xi;
    const int H = d->h_in, W = d->w_in, P = d->pad, Wp = p->wp;
    for (int c = 0; c < d->c_in; c++) {
        float *dst = pad_buf + (size_t)c * p->hp * Wp;
        const float *src = xi + (size_t)c * H * W;
        memset(dst, 0, (size_t)P * Wp * sizeof(float));
        for (int ih = 0; ih < H; ih++) {
            float *r = dst + (size_t)(ih + P) * Wp;
            for (int j = 0; j < P; j++) r[j] = r[P + W + j] = 0.0f;
            memcpy(r + P, src + (size_t)ih * W, (size_t)W * sizeof(float));
        }
        memset(dst + (size_t)(P + H) * Wp, 0, (size_t)P * Wp * sizeof(float));
    }
    return pad_buf;
}

/* Column matrix of images [i0, i0+gn) into col (K, gn*cpi). */
static void build_cols(const al_conv2d_desc *d, const plan *p, const float *x, int i0, int gn,
                       float *col, float *pad_buf) {
    const size_t ld = (size_t)gn * p->cpi;
    for (int b = 0; b < gn; b++) {
        const float *xi = x + (size_t)(i0 + b) * d->c_in * p->hw_in;
        float *cb = col + (size_t)b * p->cpi;
        if (p->direct) {
            for (int c = 0; c < d->c_in; c++)
                memcpy(cb + (size_t)c * ld, xi + (size_t)c * p->hw_in,
                       (size_t)p->hw_in * sizeof(float));
        } else if (p->wide) {
            const float *xp = padded_input(d, p, xi, pad_buf);
            const size_t run = wide_run(d, p), plane = (size_t)p->hp * p->wp;
            for (int c = 0; c < d->c_in; c++)
                for (int ki = 0; ki < d->kh; ki++)
                    for (int kj = 0; kj < d->kw; kj++) {
                        float *row = cb + ((size_t)(c * d->kh + ki) * d->kw + kj) * ld;
                        memcpy(row, xp + c * plane + (size_t)ki * p->wp + kj, run * sizeof(float));
                        memset(row + run, 0, (p->cpi - run) * sizeof(float));
                    }
        } else {
            im2col(d, xi, cb, ld);
        }
    }
}

/* dY of images [i0, i0+gn) as a (Co, gn*cpi) matrix: zero columns where the wide layout has
 * wrapped positions. */
static void gather_dy(const al_conv2d_desc *d, const plan *p, const float *dy, int i0, int gn,
                      float *dst) {
    const int Co = d->c_out, Ho = d->h_out, Wo = d->w_out, HWo = p->hw_out;
    const size_t ld = (size_t)gn * p->cpi;
    for (int b = 0; b < gn; b++)
        for (int co = 0; co < Co; co++) {
            const float *src = dy + ((size_t)(i0 + b) * Co + co) * HWo;
            float *r = dst + (size_t)co * ld + (size_t)b * p->cpi;
            if (!p->wide) {
                memcpy(r, src, (size_t)HWo * sizeof(float));
                continue;
            }
            for (int oh = 0; oh < Ho; oh++) {
                memcpy(r + (size_t)oh * p->wp, src + (size_t)oh * Wo, (size_t)Wo * sizeof(float));
                memset(r + (size_t)oh * p->wp + Wo, 0, (size_t)(p->wp - Wo) * sizeof(float));
            }
        }
}

/* Wide layout: dx_i (Ci, H, W) = or += the scatter of one image's dcol block (ld). With pad 0
 * the taps add straight into dx; otherwise into the padded plane set, whose interior is then
 * written (or added) to dx. */
static void wide_col2im(const al_conv2d_desc *d, const plan *p, const float *restrict dcol,
                        size_t ld, float *restrict dxi, int dx_accum, float *pad_buf) {
    const int H = d->h_in, W = d->w_in, P = d->pad, Wp = p->wp;
    const size_t run = wide_run(d, p), plane = (size_t)p->hp * Wp;
    float *acc = P ? pad_buf : dxi;
    if (P || !dx_accum) memset(acc, 0, (size_t)d->c_in * plane * sizeof(float));
    for (int c = 0; c < d->c_in; c++)
        for (int ki = 0; ki < d->kh; ki++)
            for (int kj = 0; kj < d->kw; kj++) {
                const float *restrict row = dcol + ((size_t)(c * d->kh + ki) * d->kw + kj) * ld;
                float *restrict dst = acc + c * plane + (size_t)ki * Wp + kj;
                for (size_t q = 0; q < run; q++) dst[q] += row[q];
            }
    if (!P) return;
    for (int c = 0; c < d->c_in; c++)
        for (int ih = 0; ih < H; ih++) {
            const float *src = pad_buf + c * plane + (size_t)(ih + P) * Wp + P;
            float *dst = dxi + ((size_t)c * H + ih) * W;
            if (dx_accum)
                for (int iw = 0; iw < W; iw++) dst[iw] += src[iw];
            else
                memcpy(dst, src, (size_t)W * sizeof(float));
        }
}

/* ------------------------------------------------------------------ shifted GEMMs (taps) */

/* wt (kh*kw, Co, Ci) <- w (Co, Ci, kh, kw) */
static void repack_taps(const al_conv2d_desc *d, const float *restrict w, float *restrict wt) {
    const int kk = d->kh * d->kw, Ci = d->c_in, Co = d->c_out;
    for (int co = 0; co < Co; co++)
        for (int c = 0; c < Ci; c++)
            for (int t = 0; t < kk; t++)
                wt[((size_t)t * Co + co) * Ci + c] = w[((size_t)co * Ci + c) * kk + t];
}

/* y_i (Co, Ho, Wo) = sum over taps of Wt_tap (Co, Ci) x X_tap (Ci, run) (+ bias), X_tap being
 * the padded input viewed from offset ki*Wp + kj with row stride Hp*Wp. */
static void taps_forward_image(const al_conv2d_desc *d, const plan *p, const float *wt,
                               const float *xi, const float *b, float *yi, const bufs *t) {
    const int Co = d->c_out, Ci = d->c_in, Wp = p->wp, Ho = d->h_out, Wo = d->w_out;
    const size_t plane = (size_t)p->hp * Wp, run = wide_run(d, p), L = (size_t)p->cpi;
    const float *xp = padded_input(d, p, xi, t->pad);
    for (int ki = 0; ki < d->kh; ki++)
        for (int kj = 0; kj < d->kw; kj++) {
            const int tap = ki * d->kw + kj;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Co, (int)run, Ci, 1.0f,
                        wt + (size_t)tap * Co * Ci, Ci, xp + (size_t)ki * Wp + kj, (int)plane,
                        tap ? 1.0f : 0.0f, t->dy, (int)L);
        }
    for (int co = 0; co < Co; co++) {
        const float *src = t->dy + (size_t)co * L;
        float *dst = yi + (size_t)co * Ho * Wo;
        const float bias = b ? b[co] : 0.0f;
        for (int oh = 0; oh < Ho; oh++)
            for (int ow = 0; ow < Wo; ow++) dst[oh * Wo + ow] = src[(size_t)oh * Wp + ow] + bias;
    }
}

/* One image's dW (tap-major, into the thread's accumulator) and dx. */
static void taps_backward_image(const al_conv2d_desc *d, const plan *p, const float *wt,
                                const float *xi, const float *dyi, float *dxi, int dx_accum,
                                int want_dw, const bufs *t) {
    const int Co = d->c_out, Ci = d->c_in, Wp = p->wp, P = d->pad, H = d->h_in, W = d->w_in;
    const size_t plane = (size_t)p->hp * Wp, run = wide_run(d, p), L = (size_t)p->cpi;
    gather_dy(d, p, dyi, 0, 1, t->dy); /* (Co, L), zero at wrapped columns */
    if (want_dw) {
        const float *xp = padded_input(d, p, xi, t->pad);
        for (int ki = 0; ki < d->kh; ki++)
            for (int kj = 0; kj < d->kw; kj++) {
                const int tap = ki * d->kw + kj;
                /* dWt_tap (Co, Ci) += dYw (Co, run) x X_tap^T (run, Ci) */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Co, Ci, (int)run, 1.0f,
                            t->dy, (int)L, xp + (size_t)ki * Wp + kj, (int)plane, 1.0f,
                            t->dw + (size_t)tap * Co * Ci, Ci);
            }
    }
    if (!dxi) return;
    /* dX_tap (Ci, run) += Wt_tap^T (Ci, Co) x dYw (Co, run), straight into the (padded)
     * input-gradient planes; wrapped columns add W^T * 0 */
    float *acc = P ? t->pad : dxi;
    if (P || !dx_accum) memset(acc, 0, (size_t)Ci * plane * sizeof(float));
    for (int ki = 0; ki < d->kh; ki++)
        for (int kj = 0; kj < d->kw; kj++) {
            const int tap = ki * d->kw + kj;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Ci, (int)run, Co, 1.0f,
                        wt + (size_t)tap * Co * Ci, Ci, t->dy, (int)L, 1.0f,
                        acc + (size_t)ki * Wp + kj, (int)plane);
        }
    if (!P) return;
    for (int c = 0; c < Ci; c++)
        for (int ih = 0; ih < H; ih++) {
            const float *src = t->pad + c * plane + (size_t)(ih + P) * Wp + P;
            float *dst = dxi + ((size_t)c * H + ih) * W;
            if (dx_accum)
                for (int iw = 0; iw < W; iw++) dst[iw] += src[iw];
            else
                memcpy(dst, src, (size_t)W * sizeof(float));
        }
}

/* ------------------------------------------------------------------ forward */

al_status al_conv2d_forward_cpu(al_ctx *ctx, const al_conv2d_desc *d, const float *x,
                                const float *w, const float *b, float *y) {
    AL_ASSERT(!d->nhwc, "al_conv2d_forward_cpu: channels-last tensors are CUDA only");
    AL_ASSERT(x && w && y, "conv2d forward: NULL x/w/y");
    const plan p = make_plan(d, omp_get_max_threads());
    const size_t mark = al_ctx_scratch_mark(ctx);
    float *base = al_ctx_scratch(ctx, (size_t)p.n_threads * per_thread_floats(&p) * sizeof(float));
    float *wt = p.taps ? al_ctx_scratch(ctx, shared_floats(d, &p) * sizeof(float)) : NULL;
    const int Co = d->c_out, K = p.k, HWo = p.hw_out, Wo = d->w_out;
    if (p.taps) repack_taps(d, w, wt);

#pragma omp parallel for schedule(static) num_threads(p.n_threads)
    for (int g = 0; g < p.n_groups; g++) {
        const bufs t = thread_bufs(&p, base, omp_get_thread_num());
        const int i0 = g * p.group, gn = AL_MIN(p.group, d->n - i0);
        if (p.taps) {
            taps_forward_image(d, &p, wt, x + (size_t)i0 * d->c_in * p.hw_in, b,
                               y + (size_t)i0 * Co * HWo, &t);
            continue;
        }
        const size_t cols = (size_t)gn * p.cpi;
        const float *a;
        if (p.direct && gn == 1) {
            a = x + (size_t)i0 * d->c_in * p.hw_in;
        } else {
            build_cols(d, &p, x, i0, gn, t.col, t.pad);
            a = t.col;
        }
        if (gn == 1 && !p.wide) {
            /* straight into y: bias pre-filled, GEMM accumulates onto it */
            float *yi = y + (size_t)i0 * Co * HWo;
            if (b)
                for (int co = 0; co < Co; co++)
                    for (int q = 0; q < HWo; q++) yi[(size_t)co * HWo + q] = b[co];
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Co, HWo, K, 1.0f, w, K, a, HWo,
                        b ? 1.0f : 0.0f, yi, HWo);
            continue;
        }
        /* staged: (Co, gn*cpi), then each image's valid columns + bias go to y */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Co, (int)cols, K, 1.0f, w, K, a,
                    (int)cols, 0.0f, t.dy, (int)cols);
        for (int bi = 0; bi < gn; bi++) {
            float *yi = y + (size_t)(i0 + bi) * Co * HWo;
            for (int co = 0; co < Co; co++) {
                const float *src = t.dy + (size_t)co * cols + (size_t)bi * p.cpi;
                float *dst = yi + (size_t)co * HWo;
                const float bias = b ? b[co] : 0.0f;
                if (p.wide) {
                    for (int oh = 0; oh < d->h_out; oh++)
                        for (int ow = 0; ow < Wo; ow++)
                            dst[oh * Wo + ow] = src[(size_t)oh * p.wp + ow] + bias;
                } else {
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
    AL_ASSERT(!d->nhwc, "al_conv2d_backward_cpu: channels-last tensors are CUDA only");
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
            /* eight independent double lanes: vectorisable without reassociation */
            double lane[8] = {0}, s = 0.0;
            for (int i = 0; i < d->n; i++) {
                const float *r = dy + ((size_t)i * Co + co) * HWo;
                int q = 0;
                for (; q + 8 <= HWo; q += 8)
                    for (int l = 0; l < 8; l++) lane[l] += r[q + l];
                for (; q < HWo; q++) s += r[q];
            }
            for (int l = 0; l < 8; l++) s += lane[l];
            db[co] += (float)s;
        }
    }
    if (!dx && !dw) return AL_OK;

    const size_t mark = al_ctx_scratch_mark(ctx);
    float *base = al_ctx_scratch(ctx, (size_t)T * per_thread_floats(&p) * sizeof(float));
    float *wt = p.taps ? al_ctx_scratch(ctx, shared_floats(d, &p) * sizeof(float)) : NULL;
    if (p.taps && dx) repack_taps(d, w, wt); /* the weights only serve dx */

#pragma omp parallel num_threads(T)
    {
        const bufs t = thread_bufs(&p, base, omp_get_thread_num());
        /* zero every dW accumulator, even those of threads the runtime did not start */
        if (dw) {
#pragma omp for schedule(static)
            for (int u = 0; u < T; u++)
                memset(thread_bufs(&p, base, u).dw, 0, (size_t)Co * K * sizeof(float));
        }
#pragma omp for schedule(static)
        for (int g = 0; g < p.n_groups; g++) {
            const int i0 = g * p.group, gn = AL_MIN(p.group, d->n - i0);
            const size_t cols = (size_t)gn * p.cpi;
            if (p.taps) {
                taps_backward_image(d, &p, wt, x ? x + (size_t)i0 * d->c_in * p.hw_in : NULL,
                                    dy + (size_t)i0 * Co * HWo,
                                    dx ? dx + (size_t)i0 * d->c_in * p.hw_in : NULL, dx_accum,
                                    dw != NULL, &t);
                continue;
            }
            const float *dyp;
            if (gn == 1 && !p.wide) {
                dyp = dy + (size_t)i0 * Co * HWo;
            } else {
                gather_dy(d, &p, dy, i0, gn, t.dy);
                dyp = t.dy;
            }
            if (dw) {
                const float *a;
                if (p.direct && gn == 1) {
                    a = x + (size_t)i0 * d->c_in * p.hw_in;
                } else {
                    build_cols(d, &p, x, i0, gn, t.col, t.pad);
                    a = t.col;
                }
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Co, K, (int)cols, 1.0f, dyp,
                            (int)cols, a, (int)cols, 1.0f, t.dw, K);
            }
            if (!dx) continue;
            float *dxi = dx + (size_t)i0 * d->c_in * p.hw_in;
            if (p.direct && gn == 1) {
                /* dx_i (Ci, HW) = W^T dY_i, written (or added) in place */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, HWo, Co, 1.0f, w, K, dyp,
                            HWo, dx_accum ? 1.0f : 0.0f, dxi, HWo);
                continue;
            }
            /* dcol (K, gn*cpi) = W^T dY_g, reusing the column buffer */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, (int)cols, Co, 1.0f, w, K, dyp,
                        (int)cols, 0.0f, t.col, (int)cols);
            for (int bi = 0; bi < gn; bi++) {
                float *dxb = dxi + (size_t)bi * d->c_in * p.hw_in;
                const float *dcb = t.col + (size_t)bi * p.cpi;
                if (p.wide) {
                    wide_col2im(d, &p, dcb, cols, dxb, dx_accum, t.pad);
                } else if (p.direct) {
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

    /* dw += sum of the per-thread accumulators, in thread order (deterministic for a fixed
     * thread count). The sum is formed first so dw sees exactly one rounding, as "+=". */
    if (dw) {
        const size_t nw = (size_t)Co * K;
#pragma omp parallel for schedule(static) num_threads(T)
        for (size_t j = 0; j < nw; j++) {
            /* taps accumulate tap-major (kh*kw, Co, Ci): j = (co*Ci + c)*kk + tap reads
             * (tap*Co + co)*Ci + c */
            size_t src = j;
            if (p.taps) {
                const size_t kk = (size_t)d->kh * d->kw, tap = j % kk, cc = j / kk;
                src = tap * (size_t)Co * d->c_in + cc;
            }
            float s = thread_bufs(&p, base, 0).dw[src];
            for (int u = 1; u < T; u++) s += thread_bufs(&p, base, u).dw[src];
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
    case AL_DEV_CUDA: AL_CUDA_OR_FAIL(al_conv2d_forward_cuda(ctx, d, x, w, b, y));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_conv2d_forward: unknown device %d", (int)ctx->device);
}

al_status al_conv2d_backward(al_ctx *ctx, const al_conv2d_desc *d, const float *x, const float *w,
                             const float *dy, float *dx, int dx_accum, float *dw, float *db) {
    switch (ctx->device) {
    case AL_DEV_CPU: return al_conv2d_backward_cpu(ctx, d, x, w, dy, dx, dx_accum, dw, db);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_conv2d_backward_cuda(ctx, d, x, w, dy, dx, dx_accum, dw, db));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_conv2d_backward: unknown device %d", (int)ctx->device);
}
