/* attack_start.cu: the attack's random start on the device, and the early-stop row zeroing.
 * Twin: start_point() and the early-stop loop of attacks/attack.c. Every element runs the SAME
 * AL_HOSTDEV functions of attacks/attack.h / core/rng.h (style rule 5), compiled with
 * --fmad=false, at the same Philox index al_attack_rng_index(r, n, i, d, j), so:
 *   Linf uniform: x_out = clamp(x + eps (2u - 1), 0, 1)      bitwise the CPU's (u is exact)
 *   normal:       x_out = x + std * N(0,1)                    equal up to the few-ulp libm vs
 *                                                             CUDA difference of the normal
 *   L2 (radius uniform): one block per example sums g_j^2 in double (fixed tree), radius =
 *                 eps * U(word AL_ATTACK_RADIUS_WORD + r n + i), scale = (float)(radius /
 *                 sqrt(sum)) (0 for a zero sum), x_out = clamp(x + scale g, 0, 1); equal to
 *                 the CPU's up to the normals' ulps and the double summation order.
 * Shapes: x, x_out (N, d) device, out of place (x_out must not alias x). No sync, no alloc. */
#include "attacks/attack.h"
#include "cuda/cuda_base.cuh"

#define START_L2_BLOCK 256

static __global__ void start_uniform_kernel(int n, size_t d, const float *__restrict__ x,
                                            float *__restrict__ x_out, float eps, int r,
                                            uint64_t seed, uint64_t stream) {
    const size_t ne = (size_t)n * d;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < ne;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t e = i / d, j = i - e * d;
        x_out[i] = al_attack_start_uniform_elem(x[i], eps, seed, stream,
                                                al_attack_rng_index(r, n, (int)e, d, j));
    }
}

static __global__ void start_normal_kernel(int n, size_t d, const float *__restrict__ x,
                                           float *__restrict__ x_out, float init_std, int r,
                                           uint64_t seed, uint64_t stream) {
    const size_t ne = (size_t)n * d;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < ne;
         i += (size_t)gridDim.x * blockDim.x) {
        const size_t e = i / d, j = i - e * d;
        x_out[i] = al_attack_start_normal_elem(x[i], init_std, seed, stream,
                                               al_attack_rng_index(r, n, (int)e, d, j));
    }
}

/* One block per example (blockIdx.x): the normals are drawn twice (sum, then update), which
 * costs two Philox blocks per element and saves a (N, d) temporary. */
static __global__ void start_l2_kernel(int n, size_t d, const float *__restrict__ x,
                                       float *__restrict__ x_out, float eps, int r, uint64_t seed,
                                       uint64_t stream) {
    const int e = blockIdx.x;
    const size_t base = (size_t)e * d;
    double sq = 0.0;
    for (size_t j = threadIdx.x; j < d; j += blockDim.x) {
        const double g = al_rng_normal(seed, stream, al_attack_rng_index(r, n, e, d, j));
        sq += g * g;
    }
    sq = al_block_sum(sq); /* the same value in every thread */
    const uint64_t rw = AL_ATTACK_RADIUS_WORD + (uint64_t)r * n + (uint64_t)e;
    const double radius = (double)eps * al_rng_uniform(seed, stream, rw);
    const float scale = sq > 0.0 ? (float)(radius / sqrt(sq)) : 0.0f;
    for (size_t j = threadIdx.x; j < d; j += blockDim.x) {
        const float g = al_rng_normal(seed, stream, al_attack_rng_index(r, n, e, d, j));
        x_out[base + j] = al_clampf(x[base + j] + scale * g, 0.0f, 1.0f);
    }
}

/* g row i = 0 where row i is a success: (flag[i] != 0) == success_value. */
static __global__ void zero_rows_kernel(int n, size_t d, float *__restrict__ g,
                                        const uint8_t *__restrict__ flag, int success_value) {
    const size_t ne = (size_t)n * d;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < ne;
         i += (size_t)gridDim.x * blockDim.x)
        if ((flag[i / d] != 0) == (success_value != 0)) g[i] = 0.0f;
}

static void check_args(const char *fn, int n, size_t d, int r, const float *x,
                       const float *x_out) {
    AL_ASSERT(n >= 1 && d >= 1 && r >= 0 && x && x_out, "%s: n=%d d=%zu r=%d", fn, n, d, r);
    AL_ASSERT(x != x_out, "%s: x_out must not alias x", fn);
}

extern "C" al_status al_attack_start_uniform_cuda(al_ctx *ctx, int n, size_t d, const float *x,
                                                  float *x_out, float eps, int r, uint64_t seed,
                                                  uint64_t stream) {
    check_args(__func__, n, d, r, x, x_out);
    const size_t ne = (size_t)n * d;
    start_uniform_kernel<<<al_grid(ctx, ne, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        n, d, x, x_out, eps, r, seed, stream);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_attack_start_normal_cuda(al_ctx *ctx, int n, size_t d, const float *x,
                                                 float *x_out, float init_std, int r, uint64_t seed,
                                                 uint64_t stream) {
    check_args(__func__, n, d, r, x, x_out);
    const size_t ne = (size_t)n * d;
    start_normal_kernel<<<al_grid(ctx, ne, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        n, d, x, x_out, init_std, r, seed, stream);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_attack_start_l2_cuda(al_ctx *ctx, int n, size_t d, const float *x,
                                             float *x_out, float eps, int r, uint64_t seed,
                                             uint64_t stream) {
    check_args(__func__, n, d, r, x, x_out);
    start_l2_kernel<<<n, START_L2_BLOCK, 0, al_stream_of(ctx)>>>(n, d, x, x_out, eps, r, seed,
                                                                 stream);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_attack_zero_rows_cuda(al_ctx *ctx, int n, size_t d, float *g,
                                              const uint8_t *flag, int success_value) {
    AL_ASSERT(n >= 1 && d >= 1 && g && flag, "al_attack_zero_rows_cuda: n=%d d=%zu", n, d);
    const size_t ne = (size_t)n * d;
    zero_rows_kernel<<<al_grid(ctx, ne, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        n, d, g, flag, success_value);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}
