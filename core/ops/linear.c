/* linear.c: fully connected layer, CPU reference + dispatcher. Twin: cuda/op_linear.cu.
 * y (N, Out) = x (N, In) W^T + b, W (Out, In) PyTorch layout. One OpenBLAS SGEMM per thread on
 * a static slice: rows of y / dx split over images, rows of dW split over output features, so
 * every element is produced by exactly one single-threaded GEMM (deterministic, no reduction
 * across threads). Backward: dw +=, db +=, dx = (+= when dx_accum); NULL skips a gradient. */
#include "core/ops/linear.h"

#include <cblas.h>
#include <omp.h>

/* Below ~256K multiply-adds a GEMM takes a few tens of microseconds: splitting it over
 * threads costs more in fork/join and packing than it saves. */
#define LINEAR_SPLIT_MACS (1 << 18)

static int n_parts(double macs, int rows) {
    int t = omp_get_max_threads();
    if (macs < LINEAR_SPLIT_MACS || t < 2) return 1;
    return AL_MIN(t, rows);
}

al_status al_linear_forward_cpu(al_ctx *ctx, int n, int in, int out, const float *x,
                                const float *w, const float *b, float *y) {
    (void)ctx;
    AL_ASSERT(n >= 1 && in >= 1 && out >= 1 && x && w && y, "linear forward n=%d in=%d out=%d",
              n, in, out);
    const int parts = n_parts((double)n * in * out, n);
#pragma omp parallel for schedule(static) num_threads(parts)
    for (int t = 0; t < parts; t++) {
        const int r0 = (int)((long)n * t / parts), r1 = (int)((long)n * (t + 1) / parts);
        if (r1 <= r0) continue;
        float *yt = y + (size_t)r0 * out;
        if (b)
            for (int r = r0; r < r1; r++)
                for (int o = 0; o < out; o++) y[(size_t)r * out + o] = b[o];
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, r1 - r0, out, in, 1.0f,
                    x + (size_t)r0 * in, in, w, in, b ? 1.0f : 0.0f, yt, out);
    }
    return AL_OK;
}

al_status al_linear_backward_cpu(al_ctx *ctx, int n, int in, int out, const float *x,
                                 const float *w, const float *dy, float *dx, int dx_accum,
                                 float *dw, float *db) {
    (void)ctx;
    AL_ASSERT(n >= 1 && in >= 1 && out >= 1 && dy, "linear backward n=%d in=%d out=%d", n, in,
              out);
    AL_ASSERT(!dw || x, "linear backward: dw needs x");
    AL_ASSERT(!dx || w, "linear backward: dx needs w");
    const double macs = (double)n * in * out;
    if (dx) {
        /* dx (N, In) = dY (N, Out) W (Out, In) */
        const int parts = n_parts(macs, n);
#pragma omp parallel for schedule(static) num_threads(parts)
        for (int t = 0; t < parts; t++) {
            const int r0 = (int)((long)n * t / parts), r1 = (int)((long)n * (t + 1) / parts);
            if (r1 <= r0) continue;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, r1 - r0, in, out, 1.0f,
                        dy + (size_t)r0 * out, out, w, in, dx_accum ? 1.0f : 0.0f,
                        dx + (size_t)r0 * in, in);
        }
    }
    if (dw) {
        /* dW (Out, In) += dY^T (Out, N) x (N, In), rows of dW split over threads */
        const int parts = n_parts(macs, out);
#pragma omp parallel for schedule(static) num_threads(parts)
        for (int t = 0; t < parts; t++) {
            const int o0 = (int)((long)out * t / parts), o1 = (int)((long)out * (t + 1) / parts);
            if (o1 <= o0) continue;
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, o1 - o0, in, n, 1.0f, dy + o0,
                        out, x, in, 1.0f, dw + (size_t)o0 * in, in);
        }
    }
    if (db) {
        /* db[o] += sum over the batch, in double; fixed order whatever the thread count */
        for (int o = 0; o < out; o++) {
            double s = 0.0;
            for (int r = 0; r < n; r++) s += dy[(size_t)r * out + o];
            db[o] += (float)s;
        }
    }
    return AL_OK;
}

al_status al_linear_forward(al_ctx *ctx, int n, int in, int out, const float *x, const float *w,
                            const float *b, float *y) {
    switch (ctx->device) {
    case AL_DEV_CPU: return al_linear_forward_cpu(ctx, n, in, out, x, w, b, y);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_linear_forward_cuda(ctx, n, in, out, x, w, b, y));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_linear_forward: unknown device %d", (int)ctx->device);
}

al_status al_linear_backward(al_ctx *ctx, int n, int in, int out, const float *x, const float *w,
                             const float *dy, float *dx, int dx_accum, float *dw, float *db) {
    switch (ctx->device) {
    case AL_DEV_CPU:
        return al_linear_backward_cpu(ctx, n, in, out, x, w, dy, dx, dx_accum, dw, db);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_linear_backward_cuda(ctx, n, in, out, x, w, dy, dx, dx_accum, dw, db));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_linear_backward: unknown device %d", (int)ctx->device);
}
