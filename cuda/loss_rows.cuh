/* loss_rows.cuh: per-row helpers and the shared launcher tail of the loss kernels (loss_cw,
 * loss_dfa, loss_dlr, loss_drsl, loss_mart, loss_trades, loss_xent_smooth .cu). Twin:
 * losses/rowops.h (row_lse, row_argmax_excl, first_bad_label).
 * A row is one example's logits z (K floats); ONE WARP handles a row (lanes stride over K), so
 * every helper here must be called by all 32 lanes of the warp and returns the same value in
 * every lane. Values are evaluated in double from the float inputs, exactly the twin's
 * expressions, so the two backends differ only by the order of double sums (~K * 2^-53
 * relative, far below the final rounding to float).
 * The batch reduction is a second single-block kernel over per-row doubles (fixed tree, no
 * atomics: deterministic, style rule 20) that also finds the first label outside [0, K) of up
 * to two label arrays; its result reaches the host in one D2H copy + stream sync (the scalar
 * loss is a host output). lr_finish is that tail for every launcher. */
#ifndef AL_CUDA_LOSS_ROWS_CUH
#define AL_CUDA_LOSS_ROWS_CUH

#include <math.h>

#include "core/sums.h"
#include "cuda/cuda_base.cuh"

#define LR_ROWS_PER_BLOCK 8 /* warps per block: 256 threads */
#define LR_FINAL_BLOCK 1024

/* Max of a warp's values, broadcast to every lane (order-free: max is exact). */
static __device__ __forceinline__ float lr_warp_fmax(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum over the warp (fixed butterfly of al_warp_sum), broadcast to every lane. */
static __device__ __forceinline__ double lr_warp_sum(double v) {
    v = al_warp_sum(v);
    return __shfl_sync(0xffffffffu, v, 0);
}

/* The twin's row_lse: m = z_0, then m = z_j where z_j > m (a NaN is skipped unless it is z_0);
 * lse = m when m is +-inf, else m + log(sum_j exp(z_j - m)). fmaxf skips NaN exactly as the
 * `z[j] > m` scan does, and z_0 = NaN keeps m = NaN as there. */
static __device__ __forceinline__ double lr_row_lse(const float *__restrict__ z, int k, int lane) {
    float mx = -INFINITY;
    for (int j = lane; j < k; j += 32) mx = fmaxf(mx, z[j]);
    mx = lr_warp_fmax(mx);
    const float z0 = z[0];
    const double m = isnan(z0) ? (double)z0 : (double)mx;
    if (isinf(m)) return m;
    double s = 0.0;
    for (int j = lane; j < k; j += 32) s += exp((double)z[j] - m);
    return m + log(lr_warp_sum(s));
}

/* Total order of the twin's row_argmax_excl: the first NaN wins, else the largest value, the
 * lowest index on ties; bj < 0 is "no candidate yet". Associative and commutative, so any
 * combination tree gives the sequential scan's answer. */
static __device__ __forceinline__ bool lr_arg_better(float v, int j, float bv, int bj) {
    if (j < 0) return false;
    if (bj < 0) return true;
    const bool vn = isnan(v), bn = isnan(bv);
    if (vn || bn) return vn && (!bn || j < bj);
    return v > bv || (v == bv && j < bj);
}

/* Index of the largest z_j over j != excl (excl = -1: none), the twin's row_argmax_excl. */
static __device__ __forceinline__ int lr_row_argmax_excl(const float *__restrict__ z, int k,
                                                         int excl, int lane) {
    float bv = 0.0f;
    int bj = -1;
    for (int j = lane; j < k; j += 32)
        if (j != excl && lr_arg_better(z[j], j, bv, bj)) {
            bv = z[j];
            bj = j;
        }
    for (int o = 16; o > 0; o >>= 1) {
        const float ov = __shfl_xor_sync(0xffffffffu, bv, o);
        const int oj = __shfl_xor_sync(0xffffffffu, bj, o);
        if (lr_arg_better(ov, oj, bv, bj)) {
            bv = ov;
            bj = oj;
        }
    }
    return bj;
}

/* Row of the calling warp in the one-warp-per-row kernels (LR_ROWS_PER_BLOCK warps a block). */
static __device__ __forceinline__ int lr_row_index(void) {
    return (int)(blockIdx.x * LR_ROWS_PER_BLOCK + (threadIdx.x >> 5));
}

/* Label of row i when it is inside [0, K). Otherwise lane 0 marks the row's per-row sums NaN
 * (b may be NULL), the final kernel reports the label, and -1 is returned: the warp must then
 * return without reading z[y]. */
static __device__ __forceinline__ int lr_row_label(const int32_t *__restrict__ labels, int i,
                                                   int k, int lane, double *a, double *b) {
    const int y = labels[i];
    if (y >= 0 && y < k) return y;
    if (lane == 0) {
        a[i] = NAN;
        if (b) b[i] = NAN;
    }
    return -1;
}

/* Host-visible result of the final kernel (fits lr_tmp's 64-byte result slot). */
struct lr_result {
    double sum[2];    /* sum_i a[i], sum_i b[i] */
    int bad_index[2]; /* first row whose y0 / y1 entry is outside [0, K), or -1 (or no array) */
    int bad_label[2];
};

/* Block min of an int, valid in thread 0 (integers: order-free). */
static __device__ int lr_block_min_int(int x, int *sh) {
    for (int o = 16; o > 0; o >>= 1) x = min(x, __shfl_xor_sync(0xffffffffu, x, o));
    if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = x;
    __syncthreads();
    if (threadIdx.x == 0)
        for (int w = 1; w < (int)(blockDim.x >> 5); w++) x = min(x, sh[w]);
    __syncthreads();
    return x;
}

/* One block: out->sum = fixed-tree double sums of a (and b, when non-NULL); the first entry
 * outside [0, K) of each label array y0, y1 that is non-NULL. Deterministic for a fixed
 * blockDim (LR_FINAL_BLOCK). */
static __global__ void lr_final_kernel(int n, int k, const int32_t *__restrict__ y0,
                                       const int32_t *__restrict__ y1,
                                       const double *__restrict__ a, const double *__restrict__ b,
                                       lr_result *__restrict__ out, al_sums *__restrict__ sink,
                                       int slot, double c0, double c1) {
    __shared__ int sh_bad[32];
    double sa = 0.0, sb = 0.0;
    int bad0 = n, bad1 = n; /* n = none */
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        sa += a[i];
        if (b) sb += b[i];
        if (y0 && (y0[i] < 0 || y0[i] >= k) && i < bad0) bad0 = i;
        if (y1 && (y1[i] < 0 || y1[i] >= k) && i < bad1) bad1 = i;
    }
    sa = al_block_sum(sa);
    sb = al_block_sum(sb);
    bad0 = lr_block_min_int(bad0, sh_bad);
    bad1 = lr_block_min_int(bad1, sh_bad);
    if (threadIdx.x == 0) {
        out->sum[0] = sa;
        out->sum[1] = sb;
        out->bad_index[0] = bad0 < n ? bad0 : -1;
        out->bad_label[0] = bad0 < n ? y0[bad0] : 0;
        out->bad_index[1] = bad1 < n ? bad1 : -1;
        out->bad_label[1] = bad1 < n ? y1[bad1] : 0;
        if (sink) /* deferred (core/sums.h): the value and the first bad label stay here */
            al_sums_add_elem(sink, slot, c0 * sa + c1 * sb, bad0 < n ? bad0 : bad1 < n ? bad1 : -1,
                             bad0 < n ? y0[bad0] : bad1 < n ? y1[bad1] : 0, k);
    }
}

/* Per-row temporaries of a loss call: [result (64 B)][a: n doubles][b: n doubles]. */
typedef struct lr_tmp {
    lr_result *d_out;
    double *a, *b;
    size_t mark;
} lr_tmp;

static inline al_status lr_tmp_get(al_ctx *ctx, int n, lr_tmp *t) {
    void *p;
    static_assert(sizeof(lr_result) <= 64, "lr_result must fit the 64-byte result slot");
    AL_TRY(al_cuda_tmp(ctx, 64 + 2 * (size_t)n * sizeof(double), &p, &t->mark));
    t->d_out = (lr_result *)p;
    t->a = (double *)((char *)p + 64);
    t->b = t->a + n;
    return AL_OK;
}

/* The tail every row-loss launcher shares, called right after its row kernel was launched:
 * check that launch, sum t->a (and t->b when nsums == 2) in the final kernel, bring the result
 * to the host (pinned aux, one sync) and report the first entry of y0 (then y1) outside
 * [0, K) exactly as the CPU twins word it: "<fn>: <name> <v> at index <i> outside [0,K)".
 * y0 / y1 may be NULL (nothing to check). r == NULL: the caller wants no host result (an
 * attack iteration): only the launch is checked; no final kernel, no copy, no sync, and the
 * labels are NOT checked (a bad row is NaN / its gradient unspecified). Deferred step
 * (ctx->defer, core/sums.h): the final kernel adds c0 * sum_a + c1 * sum_b (the caller's
 * host value) to defer->v[slot] and records the first bad label there; *r is zeroed (so the
 * caller's host value is 0) and nothing waits. Does not release t: the caller does, on every
 * path. */
static inline al_status lr_finish(al_ctx *ctx, const char *fn, int n, int k, const lr_tmp *t,
                                  int nsums, const int32_t *y0, const char *name0,
                                  const int32_t *y1, const char *name1, lr_result *r, int slot,
                                  double c0, double c1) {
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        return al_cuda_fail(AL_ERR_CUDA, __FILE__, __LINE__, fn, "row kernel launch",
                            cudaGetErrorName(e));
    al_cuda_state *s = al_cst(ctx);
    if (!r) {
        if (s->sync_check) AL_CUDA_TRY(cudaStreamSynchronize(s->stream));
        return AL_OK;
    }
    lr_final_kernel<<<1, LR_FINAL_BLOCK, 0, s->stream>>>(
        n, k, y0, y1, t->a, nsums == 2 ? t->b : NULL, t->d_out, ctx->defer, slot, c0, c1);
    AL_LAUNCH_CHECK(ctx);
    if (ctx->defer) {
        *r = lr_result{};
        r->bad_index[0] = r->bad_index[1] = -1;
        return AL_OK;
    }
    lr_result *h = (lr_result *)s->h_aux;
    AL_CUDA_TRY(cudaMemcpyAsync(h, t->d_out, sizeof *h, cudaMemcpyDeviceToHost, s->stream));
    AL_TRY(al_cuda_host_sync(ctx));
    *r = *h;
    for (int u = 0; u < 2; u++) {
        const char *name = u == 0 ? name0 : name1;
        if (r->bad_index[u] >= 0)
            return AL_FAIL(AL_ERR_VALUE, "%s: %s %d at index %d outside [0,%d)", fn,
                           name ? name : "label", r->bad_label[u], r->bad_index[u], k);
    }
    return AL_OK;
}

/* Grid of the one-warp-per-row kernels. */
static inline unsigned lr_grid(int n) { return (unsigned)AL_CEIL_DIV(n, LR_ROWS_PER_BLOCK); }

#endif
