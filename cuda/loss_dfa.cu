/* loss_dfa.cu: every DFA kernel (methods.md §1): the pivot-loss aggregation, the paired mixup
 * of a batch (also IAT's), and the head's two graph operators (L2 normalisation, abs).
 * Twins: losses/dfa.c (al_dfa_loss, al_mixup_pairs) and core/ops/dfa_ops.c (al_l2normalize_*,
 * al_abs_*), mirrored expression by expression; with --fmad=false the element-wise results
 * (mixup, abs) are bitwise the CPU's, and the reductions (row norms, W.p, W.m, the MSE) are
 * double sums in a different order, equal to the final float rounding.
 * Shapes: embeddings (N, D), head W (K, D), images (N, D_in), labels (N), all row-major on
 * the device; loss/parts host. Write modes: outputs '=', dx '=' or '+=' (dx_accum).
 *
 * Aggregation (al_dfa_loss_cuda): ONE BLOCK PER ROW (256 threads = 8 warps).
 *   1. warp w computes u_c = W_c . p and v_c = W_c . e_mix for classes c = w, w + 8, ...
 *      (lanes stride over D, double, fixed butterfly) into shared memory; the block sums the
 *      row's squared error (e_mix - p - noise_std n)^2 (al_block_sum, whose barriers also
 *      publish u and v);
 *   2. warp 0 evaluates s_c = |u_c| + |v_c|, the log-sum-exp, the row's mixed CE and the
 *      per-class seeds g_c sgn(u_c), g_c sgn(v_c) (shared);
 *   3. every thread takes features j: dp_j = sum_c W_cj g_c sgn(u_c) (c ascending, as the
 *      twin), dm_j likewise plus the MSE term; de_a = lam dp, de_b = (1 - lam) dp.
 * W reads are coalesced in all phases (j is the fast index). Per-row CE and squared error go
 * to device doubles; one single-block kernel sums them in a fixed tree (deterministic, no
 * atomics) and finds the first bad label of y_a and of y_b; one D2H copy + sync returns them.
 * Napkin: WRN-28-10 (D = 640, K = 10, N = 128): 3 x 128 x 640 x 10 x 2 flops ~ 5 MFLOP and
 * ~1.3 MB of reads: microseconds, noise beside the three WRN forwards. */
#include <math.h>

#include "core/ops/dfa_ops.h"
#include "core/rng.h"
#include "cuda/loss_rows.cuh"
#include "losses/dfa.h"

#define GRID_STRIDE(i, n)                                                                  \
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < (n);                \
         i += (size_t)gridDim.x * blockDim.x)

/* ------------------------------------------------------------------ L2 normalisation */

/* One warp per row (rows are short: D <= a few thousand). Every lane evaluates the same
 * double expressions as the twin; only the order of the norm's sum differs. */
#define L2N_ROWS_PER_BLOCK 8

static __global__ void l2n_fwd_kernel(int n, int d, const float *__restrict__ x,
                                      float *__restrict__ y, float *__restrict__ norm) {
    const int lane = threadIdx.x & 31;
    const int i = blockIdx.x * L2N_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (i >= n) return; /* whole warps exit together */
    const float *xi = x + (size_t)i * d;
    float *yi = y + (size_t)i * d;
    double s = 0.0;
    for (int j = lane; j < d; j += 32) s += (double)xi[j] * xi[j];
    s = lr_warp_sum(s);
    const double r = sqrt(s), den = r > AL_L2N_EPS ? r : AL_L2N_EPS;
    for (int j = lane; j < d; j += 32) yi[j] = (float)((double)xi[j] / den);
    if (lane == 0) norm[i] = (float)r;
}

static __global__ void l2n_bwd_kernel(int n, int d, int accum, const float *__restrict__ y,
                                      const float *__restrict__ norm,
                                      const float *__restrict__ dy, float *__restrict__ dx) {
    const int lane = threadIdx.x & 31;
    const int i = blockIdx.x * L2N_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (i >= n) return;
    const float *yi = y + (size_t)i * d, *gi = dy + (size_t)i * d;
    float *xi = dx + (size_t)i * d;
    const double r = norm[i];
    const bool clamped = r <= AL_L2N_EPS; /* y = x / eps below eps (NaN r: not clamped) */
    double dot = 0.0;
    if (!clamped) {
        for (int j = lane; j < d; j += 32) dot += (double)yi[j] * gi[j];
        dot = lr_warp_sum(dot);
    }
    for (int j = lane; j < d; j += 32) {
        const double g = clamped ? (double)gi[j] / AL_L2N_EPS : ((double)gi[j] - (double)yi[j] * dot) / r;
        xi[j] = accum ? (float)((double)xi[j] + g) : (float)g;
    }
}

extern "C" al_status al_l2normalize_forward_cuda(al_ctx *ctx, int n, int d, const float *x,
                                                 float *y, float *norm) {
    if (n == 0) return AL_OK;
    l2n_fwd_kernel<<<AL_CEIL_DIV(n, L2N_ROWS_PER_BLOCK), L2N_ROWS_PER_BLOCK * 32, 0,
                     al_stream_of(ctx)>>>(n, d, x, y, norm);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_l2normalize_backward_cuda(al_ctx *ctx, int n, int d, const float *y,
                                                  const float *norm, const float *dy, float *dx,
                                                  int dx_accum) {
    if (n == 0) return AL_OK;
    l2n_bwd_kernel<<<AL_CEIL_DIV(n, L2N_ROWS_PER_BLOCK), L2N_ROWS_PER_BLOCK * 32, 0,
                     al_stream_of(ctx)>>>(n, d, dx_accum, y, norm, dy, dx);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

/* ------------------------------------------------------------------ abs */

static __global__ void abs_fwd_kernel(size_t n, const float *__restrict__ x,
                                      float *__restrict__ y) {
    GRID_STRIDE(i, n) { y[i] = fabsf(x[i]); }
}

/* dy * sign(x), sign(0) = 0, NaN x propagates (the twin's sgn_times). */
static __global__ void abs_bwd_kernel(size_t n, int accum, const float *__restrict__ x,
                                      const float *__restrict__ dy, float *__restrict__ dx) {
    GRID_STRIDE(i, n) {
        const float xv = x[i], g = dy[i];
        const float v = xv > 0.0f ? g : (xv < 0.0f ? -g : (xv == 0.0f ? 0.0f : xv));
        dx[i] = accum ? dx[i] + v : v;
    }
}

extern "C" al_status al_abs_forward_cuda(al_ctx *ctx, size_t n, const float *x, float *y) {
    if (n == 0) return AL_OK;
    abs_fwd_kernel<<<al_grid(ctx, n, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(n, x, y);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_abs_backward_cuda(al_ctx *ctx, size_t n, const float *x, const float *dy,
                                          float *dx, int dx_accum) {
    if (n == 0) return AL_OK;
    abs_bwd_kernel<<<al_grid(ctx, n, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(n, dx_accum, x,
                                                                                   dy, dx);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

/* ------------------------------------------------------------------ paired mixup */

/* Element e = i * d_in + j of the batch; row i pairs with idx[i]. x_b / x_mix never alias x. */
static __global__ void mixup_pairs_kernel(int n, size_t d_in, float lam, const float *__restrict__ x,
                                          const int32_t *__restrict__ y,
                                          const int32_t *__restrict__ idx, float *__restrict__ x_b,
                                          float *__restrict__ x_mix, int32_t *__restrict__ y_b) {
    const size_t total = (size_t)n * d_in;
    GRID_STRIDE(e, total) {
        const size_t i = e / d_in, j = e - i * d_in;
        const float xb = x[(size_t)idx[i] * d_in + j];
        if (x_b) x_b[e] = xb;
        if (x_mix) x_mix[e] = al_mix_elem(lam, x[e], xb);
        if (y_b && e < (size_t)n) y_b[e] = y[idx[e]];
    }
}

extern "C" al_status al_mixup_pairs_cuda(al_ctx *ctx, int n, size_t d_in, float lam,
                                         const float *x, const int32_t *y, const int32_t *idx,
                                         float *x_b, float *x_mix, int32_t *y_b) {
    const size_t total = (size_t)n * d_in;
    mixup_pairs_kernel<<<al_grid(ctx, total, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        n, d_in, lam, x, y, idx, x_b, x_mix, y_b);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

/* ------------------------------------------------------------------ DFA aggregation */

#define DFA_THREADS 256
/* 4 K doubles of shared memory per block (u, v, and the two seed vectors): K <= 1024 keeps
 * it at 32 KB, inside the 48 KB every architecture grants without opting in. */
#define DFA_MAX_K 1024

static __device__ __forceinline__ double dsgn(double v) {
    return v > 0.0 ? 1.0 : (v < 0.0 ? -1.0 : 0.0);
}

/* Max over the warp, broadcast (order-free). */
static __device__ __forceinline__ double warp_dmax(double v) {
    for (int o = 16; o > 0; o >>= 1) v = fmax(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* The detached target t_j = p_j + noise_std n_ij (the twin's expression). */
static __device__ __forceinline__ double dfa_target(double p, float noise_std, uint64_t seed,
                                                    uint64_t stream, size_t e) {
    const double nz = noise_std != 0.0f
                          ? (double)noise_std * al_rng_normal(seed, stream, AL_DFA_NOISE_BASE + e)
                          : 0.0;
    return p + nz;
}

static __global__ void __launch_bounds__(DFA_THREADS)
    dfa_rows_kernel(int n, int d, int k, const float *__restrict__ e_mix,
                    const float *__restrict__ e_a, const float *__restrict__ e_b,
                    const float *__restrict__ w, float lam, const int32_t *__restrict__ y_a,
                    const int32_t *__restrict__ y_b, float noise_std, uint64_t seed,
                    uint64_t stream, double *__restrict__ cls_row, double *__restrict__ mse_row,
                    float *__restrict__ logits, float *__restrict__ de_mix,
                    float *__restrict__ de_a, float *__restrict__ de_b) {
    extern __shared__ double sh[];
    double *u = sh, *v = sh + k, *su = v + k, *sv = su + k;
    const int i = blockIdx.x;
    const int ya = y_a[i], yb = y_b[i];
    if (ya < 0 || ya >= k || yb < 0 || yb >= k) { /* block-uniform; reported by the final kernel */
        if (threadIdx.x == 0) cls_row[i] = mse_row[i] = NAN;
        return;
    }
    const size_t off = (size_t)i * d;
    const float *m = e_mix + off, *a = e_a + off, *b = e_b + off;
    const double l = lam, l1 = 1.0 - l;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;

    /* 1. class projections of the pivot and of e_mix, one warp per class */
    for (int c = warp; c < k; c += nw) {
        const float *wc = w + (size_t)c * d;
        double pu = 0.0, pv = 0.0;
        for (int j = lane; j < d; j += 32) {
            const double pj = l * a[j] + l1 * b[j];
            pu += (double)wc[j] * pj;
            pv += (double)wc[j] * m[j];
        }
        pu = al_warp_sum(pu);
        pv = al_warp_sum(pv);
        if (lane == 0) {
            u[c] = pu;
            v[c] = pv;
        }
    }
    /* the row's squared error against the noisy pivot; the block sum's barriers also make
     * u and v visible to every warp */
    double mse = 0.0;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        const double pj = l * a[j] + l1 * b[j];
        const double e = (double)m[j] - dfa_target(pj, noise_std, seed, stream, off + j);
        mse += e * e;
    }
    mse = al_block_sum(mse);

    /* 2. logits, log-sum-exp, mixed CE and the per-class seeds (warp 0) */
    if (warp == 0) {
        double mx = -INFINITY;
        for (int c = lane; c < k; c += 32) mx = fmax(mx, fabs(u[c]) + fabs(v[c]));
        mx = warp_dmax(mx);
        double se = 0.0;
        for (int c = lane; c < k; c += 32) se += exp(fabs(u[c]) + fabs(v[c]) - mx);
        const double lse = mx + log(lr_warp_sum(se));
        const double inv_n = 1.0 / n;
        for (int c = lane; c < k; c += 32) {
            const double s = fabs(u[c]) + fabs(v[c]);
            if (logits) logits[(size_t)i * k + c] = (float)s;
            const double g = (exp(s - lse) - (c == ya ? l : 0.0) - (c == yb ? l1 : 0.0)) * inv_n;
            su[c] = g * dsgn(u[c]);
            sv[c] = g * dsgn(v[c]);
        }
        if (lane == 0) {
            const double sa = fabs(u[ya]) + fabs(v[ya]), sb = fabs(u[yb]) + fabs(v[yb]);
            cls_row[i] = l * (lse - sa) + l1 * (lse - sb);
            mse_row[i] = mse;
        }
    }
    if (!de_mix && !de_a && !de_b) return; /* uniform: no barrier below is skipped by some */
    __syncthreads();

    /* 3. feature gradients: W^T seeds (c ascending, as the twin) + the MSE term */
    const double c_mse = 2.0 / ((double)n * d);
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        double dp = 0.0, dm = 0.0;
        for (int c = 0; c < k; c++) {
            const double wcj = w[(size_t)c * d + j];
            dp += wcj * su[c];
            dm += wcj * sv[c];
        }
        const double pj = l * a[j] + l1 * b[j];
        dm += c_mse * ((double)m[j] - dfa_target(pj, noise_std, seed, stream, off + j));
        if (de_mix) de_mix[off + j] = (float)dm;
        if (de_a) de_a[off + j] = (float)(l * dp);
        if (de_b) de_b[off + j] = (float)(l1 * dp);
    }
}

extern "C" al_status al_dfa_loss_cuda(al_ctx *ctx, int n, int d, int k, const float *e_mix,
                                      const float *e_a, const float *e_b, const float *w,
                                      float lam, const int32_t *y_a, const int32_t *y_b,
                                      float noise_std, uint64_t seed, uint64_t stream,
                                      double *loss, double *parts, float *logits, float *de_mix,
                                      float *de_a, float *de_b) {
    AL_ASSERT(n >= 1 && d >= 1 && k >= 2 && e_mix && e_a && e_b && w && y_a && y_b && loss,
              "al_dfa_loss_cuda n=%d d=%d k=%d", n, d, k);
    if (k > DFA_MAX_K)
        return AL_FAIL(AL_ERR_VALUE, "al_dfa_loss: %d classes, the CUDA kernel supports <= %d", k,
                       DFA_MAX_K);
    lr_tmp t;
    AL_TRY(lr_tmp_get(ctx, n, &t));
    lr_result r = {};
    dfa_rows_kernel<<<n, DFA_THREADS, 4 * (size_t)k * sizeof(double), al_stream_of(ctx)>>>(
        n, d, k, e_mix, e_a, e_b, w, lam, y_a, y_b, noise_std, seed, stream, t.a, t.b, logits,
        de_mix, de_a, de_b);
    const al_status st =
        lr_finish(ctx, "al_dfa_loss", n, k, &t, 2, y_a, "y_a label", y_b, "y_b label", &r,
                  AL_SUM_LOSS, 1.0 / n, 1.0 / ((double)n * d));
    if (st == AL_OK) {
        /* the twin's expressions: sum_cls / N + sum_mse / (N D) */
        const double cls = r.sum[0] * (1.0 / n), lmix = r.sum[1] / ((double)n * d);
        *loss = cls + lmix;
        if (parts) {
            parts[0] = cls;
            parts[1] = lmix;
        }
    }
    al_ctx_scratch_release(ctx, t.mark);
    return st;
}
