/* elementwise.c: ReLU, add, accumulate, input normalisation, dropout; CPU reference +
 * dispatcher. Twin: cuda/op_elementwise.cu. Flat loops over n_elems, vectorisable, split over
 * OpenMP threads (static) only when large enough to pay for the fork. Every dx is '=' (or '+='
 * when dx_accum). NaN conventions follow PyTorch: relu(NaN) = NaN, dropout of NaN is NaN where
 * kept (and NaN*0 = NaN where dropped, as x*mask in PyTorch). */
#include "core/ops/elementwise.h"

#include <math.h> /* before rng.h, which uses sqrtf/logf/cosf without including it */
#include <omp.h>

#include "core/ops/bf16.h"
#include "core/rng.h"

/* Fork/join costs a few microseconds; below 64K floats (256 KB, L2-resident) one thread
 * streams the data in about the same time. */
#define EW_PAR_MIN ((size_t)1 << 16)

/* ------------------------------------------------------------------ ReLU */

al_status al_relu_forward_cpu(al_ctx *ctx, size_t n, const float *restrict x, float *restrict y) {
    (void)ctx;
    /* x <= 0 is false for NaN, so NaN propagates; -0.0 maps to +0.0 */
#pragma omp parallel for simd schedule(static) if (n >= EW_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = x[i] <= 0.0f ? 0.0f : x[i];
    return AL_OK;
}

al_status al_relu_backward_cpu(al_ctx *ctx, size_t n, const float *restrict y,
                               const float *restrict dy, float *restrict dx, int dx_accum) {
    (void)ctx;
    /* the gradient at the kink (y == 0) is 0, as PyTorch's threshold_backward */
    if (dx_accum) {
#pragma omp parallel for simd schedule(static) if (n >= EW_PAR_MIN)
        for (size_t i = 0; i < n; i++) dx[i] += y[i] > 0.0f ? dy[i] : 0.0f;
    } else {
#pragma omp parallel for simd schedule(static) if (n >= EW_PAR_MIN)
        for (size_t i = 0; i < n; i++) dx[i] = y[i] > 0.0f ? dy[i] : 0.0f;
    }
    return AL_OK;
}

/* ------------------------------------------------------------------ add / accumulate */

al_status al_add_forward_cpu(al_ctx *ctx, size_t n, const float *a, const float *b, float *y) {
    (void)ctx;
#pragma omp parallel for simd schedule(static) if (n >= EW_PAR_MIN)
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
    return AL_OK;
}

al_status al_accumulate_cpu(al_ctx *ctx, size_t n, const float *restrict src, float *restrict dst,
                            int accum) {
    (void)ctx;
    if (accum) {
#pragma omp parallel for simd schedule(static) if (n >= EW_PAR_MIN)
        for (size_t i = 0; i < n; i++) dst[i] += src[i];
    } else {
#pragma omp parallel for simd schedule(static) if (n >= EW_PAR_MIN)
        for (size_t i = 0; i < n; i++) dst[i] = src[i];
    }
    return AL_OK;
}

/* ------------------------------------------------------------------ normalisation */

al_status al_normalize_forward_cpu(al_ctx *ctx, int n, int c, int hw, const float *x,
                                   const float *mean, const float *std, float *y) {
    (void)ctx;
    const long planes = (long)n * c;
    const int par = (size_t)planes * hw >= EW_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
    for (long pl = 0; pl < planes; pl++) {
        const int ch = (int)(pl % c);
        const float m = mean[ch], s = std[ch];
        const float *xp = x + (size_t)pl * hw;
        float *yp = y + (size_t)pl * hw;
        /* a true division, as torchvision's (x - mean) / std (no reciprocal rounding) */
        for (int q = 0; q < hw; q++) yp[q] = (xp[q] - m) / s;
    }
    return AL_OK;
}

al_status al_normalize_backward_cpu(al_ctx *ctx, int n, int c, int hw, const float *std,
                                    const float *dy, float *dx, int dx_accum) {
    (void)ctx;
    const long planes = (long)n * c;
    const int par = (size_t)planes * hw >= EW_PAR_MIN;
#pragma omp parallel for schedule(static) if (par)
    for (long pl = 0; pl < planes; pl++) {
        const float s = std[pl % c];
        const float *gp = dy + (size_t)pl * hw;
        float *dp = dx + (size_t)pl * hw;
        if (dx_accum)
            for (int q = 0; q < hw; q++) dp[q] += gp[q] / s;
        else
            for (int q = 0; q < hw; q++) dp[q] = gp[q] / s;
    }
    return AL_OK;
}

/* ------------------------------------------------------------------ dropout */

al_status al_dropout_forward_cpu(al_ctx *ctx, size_t n, float p, uint64_t seed, uint64_t stream,
                                 const float *x, float *y, float *mask) {
    (void)ctx;
    if (!(p >= 0.0f && p <= 1.0f))
        return AL_FAIL(AL_ERR_VALUE, "al_dropout_forward_cpu: p = %g outside [0, 1]", (double)p);
    /* p = 1 drops everything (mask 0, as torch.nn.functional.dropout), avoiding 0 * inf */
    const float scale = p < 1.0f ? (float)(1.0 / (1.0 - (double)p)) : 0.0f;
    /* u_i = al_rng_uniform(seed, stream, i): word i & 3 of Philox block i >> 2, so one block
     * serves four consecutive elements */
    const size_t n_blocks = (n + 3) / 4;
#pragma omp parallel for schedule(static) if (n >= EW_PAR_MIN)
    for (size_t blk = 0; blk < n_blocks; blk++) {
        al_u32x4 r = al_rng_block(seed, stream, blk);
        for (int t = 0; t < 4; t++) {
            size_t i = blk * 4 + (size_t)t;
            if (i >= n) break;
            float u = al_u32_to_unit(r.v[t]);
            float mk = u >= p ? scale : 0.0f;
            mask[i] = mk;
            y[i] = x[i] * mk;
        }
    }
    return AL_OK;
}

al_status al_dropout_backward_cpu(al_ctx *ctx, size_t n, const float *restrict mask,
                                  const float *restrict dy, float *restrict dx, int dx_accum) {
    (void)ctx;
    if (dx_accum) {
#pragma omp parallel for simd schedule(static) if (n >= EW_PAR_MIN)
        for (size_t i = 0; i < n; i++) dx[i] += dy[i] * mask[i];
    } else {
#pragma omp parallel for simd schedule(static) if (n >= EW_PAR_MIN)
        for (size_t i = 0; i < n; i++) dx[i] = dy[i] * mask[i];
    }
    return AL_OK;
}

/* ------------------------------------------------------------------ dispatch */

#define DEV_FAIL(name) \
    AL_FAIL(AL_ERR_VALUE, "%s: unknown device %d", name, (int)ctx->device)

al_status al_relu_forward(al_ctx *ctx, size_t n, const float *x, float *y) {
    switch (ctx->device) {
    case AL_DEV_CPU: return al_relu_forward_cpu(ctx, n, x, y);
    case AL_DEV_CUDA: AL_CUDA_OR_FAIL(al_relu_forward_cuda(ctx, n, x, y));
    }
    return DEV_FAIL("al_relu_forward");
}

al_status al_relu_backward(al_ctx *ctx, size_t n, const float *y, const float *dy, float *dx,
                           int dx_accum) {
    switch (ctx->device) {
    case AL_DEV_CPU: return al_relu_backward_cpu(ctx, n, y, dy, dx, dx_accum);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_relu_backward_cuda(ctx, n, y, dy, dx, dx_accum));
    }
    return DEV_FAIL("al_relu_backward");
}

al_status al_add_forward(al_ctx *ctx, size_t n, const float *a, const float *b, float *y) {
    switch (ctx->device) {
    case AL_DEV_CPU: return al_add_forward_cpu(ctx, n, a, b, y);
    case AL_DEV_CUDA: AL_CUDA_OR_FAIL(al_add_forward_cuda(ctx, n, a, b, y));
    }
    return DEV_FAIL("al_add_forward");
}

al_status al_accumulate(al_ctx *ctx, size_t n, const float *src, float *dst, int accum) {
    switch (ctx->device) {
    case AL_DEV_CPU: return al_accumulate_cpu(ctx, n, src, dst, accum);
    case AL_DEV_CUDA: AL_CUDA_OR_FAIL(al_accumulate_cuda(ctx, n, src, dst, accum));
    }
    return DEV_FAIL("al_accumulate");
}

/* CPU twin of al_cast_cuda (core/ops/bf16.h): the same conversions element by element. */
static al_status cast_cpu(size_t n, const void *src, int src_bf16, void *dst, int dst_bf16,
                          int accum) {
    const float *sf = src;
    const al_bf16 *sb = src;
    float *df = dst;
    al_bf16 *db = dst;
#pragma omp parallel for schedule(static) if (n >= EW_PAR_MIN)
    for (size_t i = 0; i < n; i++) {
        const float v = src_bf16 ? al_bf16_to_f32(sb[i]) : sf[i];
        const float o = !accum ? 0.0f : dst_bf16 ? al_bf16_to_f32(db[i]) : df[i];
        if (dst_bf16)
            db[i] = al_f32_to_bf16(accum ? o + v : v);
        else
            df[i] = accum ? o + v : v;
    }
    return AL_OK;
}

al_status al_cast(al_ctx *ctx, size_t n, const void *src, int src_bf16, void *dst, int dst_bf16,
                  int accum) {
    if (!src_bf16 && !dst_bf16) return al_accumulate(ctx, n, src, dst, accum);
    switch (ctx->device) {
    case AL_DEV_CPU: return cast_cpu(n, src, src_bf16, dst, dst_bf16, accum);
    case AL_DEV_CUDA: AL_CUDA_OR_FAIL(al_cast_cuda(ctx, n, src, src_bf16, dst, dst_bf16, accum));
    }
    return DEV_FAIL("al_cast");
}

/* CPU twin of al_convert_cuda: an element-by-element transposition with al_cast's rounding. */
static al_status convert_cpu(int n, int c, int hw, const void *src, int sf, void *dst, int df,
                             int accum) {
    const int sb = sf & AL_FMT_BF16, db = df & AL_FMT_BF16;
#pragma omp parallel for schedule(static) if ((size_t)n * c * hw >= EW_PAR_MIN)
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++)
            for (int q = 0; q < hw; q++) {
                const size_t nchw = ((size_t)i * c + ch) * hw + q, nhwc = ((size_t)i * hw + q) * c + ch;
                const size_t is = sf & AL_FMT_NHWC ? nhwc : nchw, id = df & AL_FMT_NHWC ? nhwc : nchw;
                const float v = sb ? al_bf16_to_f32(((const al_bf16 *)src)[is]) : ((const float *)src)[is];
                const float o = !accum ? 0.0f
                                : db   ? al_bf16_to_f32(((const al_bf16 *)dst)[id])
                                       : ((const float *)dst)[id];
                if (db)
                    ((al_bf16 *)dst)[id] = al_f32_to_bf16(accum ? o + v : v);
                else
                    ((float *)dst)[id] = accum ? o + v : v;
            }
    return AL_OK;
}

al_status al_convert(al_ctx *ctx, int n, int c, int hw, const void *src, int src_fmt, void *dst,
                     int dst_fmt, int accum) {
    AL_ASSERT(n >= 0 && c >= 1 && hw >= 1, "convert n=%d c=%d hw=%d", n, c, hw);
    if (((src_fmt ^ dst_fmt) & AL_FMT_NHWC) == 0 || c == 1 || hw == 1)
        return al_cast(ctx, (size_t)n * c * hw, src, src_fmt & AL_FMT_BF16, dst,
                       dst_fmt & AL_FMT_BF16, accum);
    AL_ASSERT(src != dst, "al_convert: a transposition cannot run in place");
    switch (ctx->device) {
    case AL_DEV_CPU: return convert_cpu(n, c, hw, src, src_fmt, dst, dst_fmt, accum);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_convert_cuda(ctx, n, c, hw, src, src_fmt, dst, dst_fmt, accum));
    }
    return DEV_FAIL("al_convert");
}

al_status al_normalize_forward(al_ctx *ctx, int n, int c, int hw, const float *x,
                               const float *mean, const float *std, float *y) {
    switch (ctx->device) {
    case AL_DEV_CPU: return al_normalize_forward_cpu(ctx, n, c, hw, x, mean, std, y);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_normalize_forward_cuda(ctx, n, c, hw, x, mean, std, y));
    }
    return DEV_FAIL("al_normalize_forward");
}

al_status al_normalize_backward(al_ctx *ctx, int n, int c, int hw, const float *std,
                                const float *dy, float *dx, int dx_accum) {
    switch (ctx->device) {
    case AL_DEV_CPU: return al_normalize_backward_cpu(ctx, n, c, hw, std, dy, dx, dx_accum);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_normalize_backward_cuda(ctx, n, c, hw, std, dy, dx, dx_accum));
    }
    return DEV_FAIL("al_normalize_backward");
}

al_status al_dropout_forward(al_ctx *ctx, size_t n, float p, uint64_t seed, uint64_t stream,
                             const float *x, float *y, float *mask) {
    switch (ctx->device) {
    case AL_DEV_CPU: return al_dropout_forward_cpu(ctx, n, p, seed, stream, x, y, mask);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_dropout_forward_cuda(ctx, n, p, seed, stream, x, y, mask));
    }
    return DEV_FAIL("al_dropout_forward");
}

al_status al_dropout_backward(al_ctx *ctx, size_t n, const float *mask, const float *dy,
                              float *dx, int dx_accum) {
    switch (ctx->device) {
    case AL_DEV_CPU: return al_dropout_backward_cpu(ctx, n, mask, dy, dx, dx_accum);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_dropout_backward_cuda(ctx, n, mask, dy, dx, dx_accum));
    }
    return DEV_FAIL("al_dropout_backward");
}
