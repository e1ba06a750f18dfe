/* op_linear.cu: fully connected layer through cuBLAS SGEMM. Twin: core/ops/linear.c (OpenBLAS).
 * y (N, Out) = x (N, In) W^T + b, W (Out, In): PyTorch's row-major layout. cuBLAS is
 * column-major, and a row-major (R, C) matrix is the column-major (C, R) matrix with ld = C,
 * i.e. its transpose. So every product is computed transposed:
 *   y^T  (Out, N)  = W (Out, In) x^T (In, N)   -> gemm(T, N, Out, N, In,  W ld In,  x ld In)
 *   dx^T (In, N)  += W^T (In, Out) dy^T        -> gemm(N, N, In, N, Out,  W ld In,  dy ld Out)
 *   dW^T (In, Out) += x^T (In, N) dy (N, Out)  -> gemm(N, T, In, Out, N,  x ld In,  dy ld Out)
 * Write modes as the twin: y = (bias broadcast first, then beta = 1, as the twin does);
 * dx = (beta 0, cuBLAS then never reads dx) or += (beta 1); dw += (beta 1); db += (the
 * deterministic channel-sum kernel). fp32: CUBLAS_DEFAULT_MATH; tf32: TF32 tensor cores. */
#include "core/ops/linear.h"
#include "cuda/cuda_base.cuh"

/* y[r, o] = b[o] over (N, Out). */
static __global__ void bias_broadcast_kernel(size_t n_elems, int out, const float *__restrict__ b,
                                             float *__restrict__ y) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n_elems;
         i += (size_t)gridDim.x * blockDim.x)
        y[i] = b[i % (size_t)out];
}

extern "C" al_status al_linear_forward_cuda(al_ctx *ctx, int n, int in, int out, const float *x,
                                            const float *w, const float *b, float *y) {
    al_cuda_state *s = al_cst(ctx);
    AL_ASSERT(n >= 1 && in >= 1 && out >= 1 && x && w && y, "linear forward n=%d in=%d out=%d",
              n, in, out);
    AL_TRY(al_cuda_set_gemm_math(ctx));
    const float one = 1.0f, zero = 0.0f;
    if (b) {
        const size_t ne = (size_t)n * out;
        bias_broadcast_kernel<<<al_grid(ctx, ne, AL_BLOCK), AL_BLOCK, 0, s->stream>>>(ne, out, b,
                                                                                      y);
        AL_LAUNCH_CHECK(ctx);
    }
    AL_CUBLAS_TRY(cublasSgemm(s->cublas, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, w, in, x, in,
                              b ? &one : &zero, y, out));
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_linear_backward_cuda(al_ctx *ctx, int n, int in, int out, const float *x,
                                             const float *w, const float *dy, float *dx,
                                             int dx_accum, float *dw, float *db) {
    al_cuda_state *s = al_cst(ctx);
    AL_ASSERT(n >= 1 && in >= 1 && out >= 1 && dy, "linear backward n=%d in=%d out=%d", n, in,
              out);
    AL_ASSERT(!dw || x, "linear backward: dw needs x");
    AL_ASSERT(!dx || w, "linear backward: dx needs w");
    AL_TRY(al_cuda_set_gemm_math(ctx));
    const float one = 1.0f, zero = 0.0f;
    if (dx) {
        AL_CUBLAS_TRY(cublasSgemm(s->cublas, CUBLAS_OP_N, CUBLAS_OP_N, in, n, out, &one, w, in, dy,
                                  out, dx_accum ? &one : &zero, dx, in));
        AL_LAUNCH_CHECK(ctx);
    }
    if (dw) {
        AL_CUBLAS_TRY(cublasSgemm(s->cublas, CUBLAS_OP_N, CUBLAS_OP_T, in, out, n, &one, x, in, dy,
                                  out, &one, dw, in));
        AL_LAUNCH_CHECK(ctx);
    }
    if (db) AL_TRY(al_channel_sum_add_cuda(ctx, n, out, 1, 0, dy, db));
    return AL_OK;
}
