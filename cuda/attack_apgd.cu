/* attack_apgd.cu: the APGD step (Croce & Hein 2020) on the device. Twin: al_apgd_step_cpu in
 * attacks/apgd.c; shapes and arguments as attacks/apgd.h (x, x_prev, x0, g, tmp (n, d); eta
 * (n) per-point step sizes, on the device).
 *   Linf: one elementwise kernel calling the SAME AL_HOSTDEV al_apgd_linf_elem as the twin
 *         (compiled with --fmad=false): bitwise the CPU's result.
 *   L2:   one block per example, the twin's three passes in the same order: ||g|| over the
 *         finite gradient elements; z = x + eta g / (||g|| + 1e-12) into tmp and ||z - x0||;
 *         v = x + a (P(z) - x) + (1 - a)(x - x_prev) into tmp and ||v - x0||; then x_prev = x
 *         and x = P(v). P(w) = clamp(x0 + (w - x0) s, 0, 1), s = min(eps, r) / (r + 1e-12).
 *         Norms are double sums over a fixed block tree (deterministic); they differ from the
 *         twin's sequential sums only in order (~d 2^-53 relative), so x agrees to a few float
 *         ulps (tests/test_cuda2.c case apgd_step). */
#include <math.h>

#include "attacks/apgd.h"
#include "cuda/cuda_base.cuh"

#define APGD_L2_BLOCK 512

static __global__ void apgd_linf_kernel(size_t n_elems, size_t d, float *__restrict__ x,
                                        float *__restrict__ x_prev, const float *__restrict__ x0,
                                        const float *__restrict__ g, const float *__restrict__ eta,
                                        float a, float eps) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n_elems;
         i += (size_t)gridDim.x * blockDim.x) {
        const float xk = x[i], x0i = x0[i];
        x[i] = al_apgd_linf_elem(xk, x_prev[i], x0i, g[i], eta[i / d], a, eps);
        x_prev[i] = al_pgd_finitef(xk) ? xk : x0i;
    }
}

static __global__ void apgd_l2_kernel(size_t d, float *__restrict__ x, float *__restrict__ x_prev,
                                      const float *__restrict__ x0, const float *__restrict__ g,
                                      const float *__restrict__ eta, float a, float eps,
                                      float *__restrict__ tmp) {
    const size_t o = (size_t)blockIdx.x * d;
    float *xi = x + o, *pi = x_prev + o, *ti = tmp + o;
    const float *x0i = x0 + o, *gi = g + o;
    double gsq = 0.0;
    for (size_t j = threadIdx.x; j < d; j += blockDim.x) {
        const float gj = gi[j];
        if (al_pgd_finitef(gj)) gsq += (double)gj * gj;
    }
    const float ginv = (float)(1.0 / (sqrt(al_block_sum(gsq)) + 1e-12)); /* every thread */
    const float e = eta[blockIdx.x];
    double dsq = 0.0;
    for (size_t j = threadIdx.x; j < d; j += blockDim.x) {
        const float xk = al_pgd_finitef(xi[j]) ? xi[j] : x0i[j];
        const float gj = al_pgd_finitef(gi[j]) ? gi[j] : 0.0f;
        const float z = xk + e * (gj * ginv);
        ti[j] = z;
        const double dz = (double)z - x0i[j];
        dsq += dz * dz;
    }
    double nrm = sqrt(al_block_sum(dsq));
    float s = (float)(fmin((double)eps, nrm) / (nrm + 1e-12));
    dsq = 0.0;
    for (size_t j = threadIdx.x; j < d; j += blockDim.x) {
        const float xk = al_pgd_finitef(xi[j]) ? xi[j] : x0i[j];
        const float xp = al_pgd_finitef(pi[j]) ? pi[j] : x0i[j];
        const float z = al_clampf(x0i[j] + (ti[j] - x0i[j]) * s, 0.0f, 1.0f);
        const float v = xk + (z - xk) * a + (xk - xp) * (1.0f - a);
        ti[j] = v;
        const double dv = (double)v - x0i[j];
        dsq += dv * dv;
    }
    nrm = sqrt(al_block_sum(dsq));
    s = (float)(fmin((double)eps, nrm) / (nrm + 1e-12));
    for (size_t j = threadIdx.x; j < d; j += blockDim.x) {
        pi[j] = al_pgd_finitef(xi[j]) ? xi[j] : x0i[j];
        xi[j] = al_clampf(x0i[j] + (ti[j] - x0i[j]) * s, 0.0f, 1.0f);
    }
}

extern "C" al_status al_apgd_step_cuda(al_ctx *ctx, al_norm norm, int n, size_t d, float *x,
                                       float *x_prev, const float *x0, const float *g,
                                       const float *eta, float a, float eps, float *tmp) {
    AL_ASSERT(n >= 1 && d >= 1 && x && x_prev && x0 && g && eta, "apgd step n=%d d=%zu", n, d);
    cudaStream_t stream = al_stream_of(ctx);
    if (norm == AL_LINF) {
        const size_t ne = (size_t)n * d;
        apgd_linf_kernel<<<al_grid(ctx, ne, AL_BLOCK), AL_BLOCK, 0, stream>>>(ne, d, x, x_prev, x0,
                                                                            g, eta, a, eps);
        AL_LAUNCH_CHECK(ctx);
        return AL_OK;
    }
    AL_ASSERT(tmp, "apgd L2 step needs tmp");
    apgd_l2_kernel<<<n, APGD_L2_BLOCK, 0, stream>>>(d, x, x_prev, x0, g, eta, a, eps, tmp);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

/* al_apgd_rows (attacks/apgd.h): per-row bookkeeping copies in one elementwise pass. Twin:
 * al_apgd_rows_cpu (memcpy per row); bitwise copies either way. */
static __global__ void apgd_rows_kernel(size_t n_elems, size_t d, const uint8_t *__restrict__ ops,
                                        float *__restrict__ xa, float *__restrict__ grad,
                                        float *__restrict__ xbadv, float *__restrict__ xbest,
                                        float *__restrict__ gbest) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n_elems;
         i += (size_t)gridDim.x * blockDim.x) {
        const unsigned op = ops[i / d];
        if (!op) continue;
        if (op & AL_APGD_ROW_BADV) xbadv[i] = xa[i];
        if (op & AL_APGD_ROW_BEST) {
            xbest[i] = xa[i];
            gbest[i] = grad[i];
        }
        if (op & AL_APGD_ROW_RESTORE) {
            xa[i] = xbest[i];
            grad[i] = gbest[i];
        }
    }
}

extern "C" al_status al_apgd_rows_cuda(al_ctx *ctx, const uint8_t *ops, int n, size_t d,
                                       float *xa, float *grad, float *xbadv, float *xbest,
                                       float *gbest) {
    AL_ASSERT(n >= 1 && d >= 1 && ops && xa && grad && xbadv && xbest && gbest,
              "apgd rows n=%d d=%zu", n, d);
    const size_t ne = (size_t)n * d;
    apgd_rows_kernel<<<al_grid(ctx, ne, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        ne, d, ops, xa, grad, xbadv, xbest, gbest);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

/* ---- the per-iteration bookkeeping of single_run() (see apgd.h) ---- */

static __global__ void apgd_track_kernel(int n, int n_iter, int i, uint8_t *__restrict__ ops,
                                         const float *__restrict__ loss,
                                         uint8_t *__restrict__ acc_run, float *__restrict__ hist,
                                         float *__restrict__ best) {
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= n) return;
    uint8_t op = 0;
    if (!ops[p]) { /* misclassified: the latest such iterate is kept */
        acc_run[p] = 0;
        op |= AL_APGD_ROW_BADV;
    }
    const float l = loss[p];
    hist[(size_t)p * n_iter + i] = l;
    if (l > best[p]) {
        op |= AL_APGD_ROW_BEST;
        best[p] = l;
    }
    ops[p] = op;
}

static __global__ void apgd_check_kernel(int n, int n_iter, int i, int h, float rho,
                                         const float *__restrict__ hist,
                                         uint8_t *__restrict__ reduced,
                                         float *__restrict__ best_last,
                                         const float *__restrict__ best, float *__restrict__ eta,
                                         uint8_t *__restrict__ ops, int *__restrict__ halved) {
    const int p = blockIdx.x * blockDim.x + threadIdx.x;
    if (p >= n) return;
    const int osc = al_apgd_oscillation(hist + (size_t)p * n_iter, n_iter, i, h, rho);
    const int no_impr = !reduced[p] && best_last[p] >= best[p];
    const int fl = osc || no_impr;
    reduced[p] = (uint8_t)fl;
    best_last[p] = best[p];
    ops[p] = fl ? AL_APGD_ROW_RESTORE : 0;
    if (fl) {
        eta[p] /= 2.0f;
        atomicAdd(halved, 1); /* a count: order-free */
    }
}

extern "C" al_status al_apgd_track_cuda(al_ctx *ctx, int n, int n_iter, int i, uint8_t *ops,
                                        const float *loss, uint8_t *acc_run, float *hist,
                                        float *best) {
    AL_ASSERT(n >= 1 && i >= 0 && i < n_iter, "al_apgd_track_cuda n=%d i=%d", n, i);
    apgd_track_kernel<<<AL_CEIL_DIV(n, 128), 128, 0, al_stream_of(ctx)>>>(n, n_iter, i, ops, loss,
                                                                         acc_run, hist, best);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_apgd_check_cuda(al_ctx *ctx, int n, int n_iter, int i, int h, float rho,
                                        const float *hist, uint8_t *reduced, float *best_last,
                                        const float *best, float *eta, uint8_t *ops, int *halved) {
    AL_ASSERT(n >= 1 && h >= 1, "al_apgd_check_cuda n=%d h=%d", n, h);
    apgd_check_kernel<<<AL_CEIL_DIV(n, 128), 128, 0, al_stream_of(ctx)>>>(
        n, n_iter, i, h, rho, hist, reduced, best_last, best, eta, ops, halved);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}
