/* loss_contrastive.cu: ANCRA's contrastive negatives on the device -- the head loss with the
 * asymmetric negative contrast pair term, the negative selection and the row gather.
 * Twin: losses/ancra.c (see losses/ancra.h for the math). Shapes: logits (N, K) row-major,
 * labels/idx (N) int32, pair/valid (N) uint8, rows (N, d). Write modes as the twin: all '='.
 * Kernels:
 *   ancra_rows   one warp per anchor: the three log-sum-exps, KL(P || A), the masked pair
 *                similarity s = 1[argmax P == argmax Q] sqrt(max P max Q), and the three
 *                gradient rows, each entry evaluated in double exactly as the twin's
 *                head_row(); per-row CE/KL/ANC doubles go to a temporary
 *   ancra_final  one block: fixed-tree sums of the three row arrays + the first bad label
 *                (deterministic, style rule 20); one D2H copy + sync returns the scalars
 *   pick         the twin's al_ancra_pick_one (shared AL_HOSTDEV code), one thread per anchor,
 *                after one warp per row computes pred = argmax(logits)
 *   gather       grid-stride row copy dst[i] = src[idx[i]] (+ labels)
 * So the two backends agree up to the order of double sums in the loss and bitwise in the
 * selection. */
#include <math.h>

#include "core/sums.h"
#include "cuda/loss_rows.cuh"
#include "losses/ancra.h"

#define ANCRA_FINAL_BLOCK 1024

static __global__ void ancra_rows_kernel(int n, int k, const float *__restrict__ zn_all,
                                         const float *__restrict__ za_all,
                                         const float *__restrict__ zq_all,
                                         const int32_t *__restrict__ labels,
                                         const uint8_t *__restrict__ pair, double wn, double beta,
                                         double zeta, double alpha, double *__restrict__ rows,
                                         float *__restrict__ dn_all, float *__restrict__ da_all,
                                         float *__restrict__ dq_all) {
    const int lane = threadIdx.x & 31;
    const int i = blockIdx.x * LR_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (i >= n) return; /* whole warps exit together */
    const size_t o = (size_t)i * k;
    const float *zn = zn_all + o, *za = za_all + o, *zq = zq_all + o;
    double *ce_row = rows, *kl_row = rows + n, *anc_row = rows + 2 * (size_t)n;
    const int y = labels[i];
    if (y < 0 || y >= k) { /* reported by the final kernel */
        if (lane == 0) ce_row[i] = kl_row[i] = anc_row[i] = NAN;
        return;
    }
    const double lse_n = lr_row_lse(zn, k, lane), lse_a = lr_row_lse(za, k, lane);
    const double lse_q = lr_row_lse(zq, k, lane);
    double kl = 0.0;
    for (int j = lane; j < k; j += 32) {
        const double lp = (double)zn[j] - lse_n, la = (double)za[j] - lse_a;
        kl += exp(lp) * (lp - la);
    }
    kl = lr_warp_sum(kl);
    const int c = lr_row_argmax_excl(zn, k, -1, lane), cq = lr_row_argmax_excl(zq, k, -1, lane);
    const int pr = pair ? pair[i] : 1;
    double s = 0.0;
    if (pr && c == cq) s = sqrt(exp((double)zn[c] - lse_n) * exp((double)zq[cq] - lse_q));
    if (lane == 0) {
        ce_row[i] = lse_n - (double)zn[y];
        kl_row[i] = kl;
        anc_row[i] = s;
    }
    const double gn = wn * zeta * (1.0 - alpha) * 0.5 * s, gq = wn * zeta * alpha * 0.5 * s;
    float *dn = dn_all ? dn_all + o : NULL, *da = da_all ? da_all + o : NULL;
    float *dq = dq_all ? dq_all + o : NULL;
    for (int j = lane; j < k; j += 32) {
        const double lp = (double)zn[j] - lse_n, la = (double)za[j] - lse_a;
        const double p = exp(lp), a = exp(la);
        if (dn)
            dn[j] = (float)(wn * (p - (j == y ? 1.0 : 0.0)) + wn * beta * p * ((lp - la) - kl) +
                            gn * ((j == c ? 1.0 : 0.0) - p));
        if (da) da[j] = (float)(wn * beta * (a - p));
        if (dq) dq[j] = (float)(gq * ((j == cq ? 1.0 : 0.0) - exp((double)zq[j] - lse_q)));
    }
}

struct ancra_result {
    double sum[3];
    int bad_index, bad_label;
};

static __global__ void ancra_final_kernel(int n, int k, const int32_t *__restrict__ labels,
                                          const double *__restrict__ rows,
                                          ancra_result *__restrict__ out,
                                          al_sums *__restrict__ sink, double wn, double beta,
                                          double zeta) {
    __shared__ int sh_bad[32];
    double s0 = 0.0, s1 = 0.0, s2 = 0.0;
    int bad = n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
        s0 += rows[i];
        s1 += rows[n + i];
        s2 += rows[2 * (size_t)n + i];
        const int y = labels[i];
        if ((y < 0 || y >= k) && i < bad) bad = i;
    }
    s0 = al_block_sum(s0);
    s1 = al_block_sum(s1);
    s2 = al_block_sum(s2);
    for (int o = 16; o > 0; o >>= 1) bad = min(bad, __shfl_xor_sync(0xffffffffu, bad, o));
    if ((threadIdx.x & 31) == 0) sh_bad[threadIdx.x >> 5] = bad;
    __syncthreads();
    if (threadIdx.x == 0) {
        for (int w = 1; w < (int)(blockDim.x >> 5); w++) bad = min(bad, sh_bad[w]);
        out->sum[0] = s0;
        out->sum[1] = s1;
        out->sum[2] = s2;
        out->bad_index = bad < n ? bad : -1;
        out->bad_label = bad < n ? labels[bad] : 0;
        if (sink) /* deferred (core/sums.h): the host's expression, added on the device */
            al_sums_add_elem(sink, AL_SUM_LOSS, wn * (s0 + beta * s1 + zeta * s2),
                             bad < n ? bad : -1, bad < n ? labels[bad] : 0, k);
    }
}

extern "C" al_status al_ancra_head_loss_cuda(al_ctx *ctx, int n, int k, const float *z_nat,
                                             const float *z_adv, const float *z_neg,
                                             const int32_t *labels, const uint8_t *pair,
                                             float weight, float beta, float zeta, float alpha,
                                             double *loss, double *parts, float *d_nat,
                                             float *d_adv, float *d_neg) {
    al_cuda_state *cs = al_cst(ctx);
    void *tmp;
    size_t mark;
    AL_TRY(al_cuda_tmp(ctx, 64 + 3 * (size_t)n * sizeof(double), &tmp, &mark));
    al_status st = AL_OK;
    ancra_result *d_out = (ancra_result *)tmp, *h;
    double *rows = (double *)((char *)tmp + 64);
    const double wn = (double)weight / n;
    ancra_rows_kernel<<<lr_grid(n), LR_ROWS_PER_BLOCK * 32, 0, cs->stream>>>(
        n, k, z_nat, z_adv, z_neg, labels, pair, wn, beta, zeta, alpha, rows, d_nat, d_adv, d_neg);
    AL_CUDA_CHECK(cudaGetLastError());
    ancra_final_kernel<<<1, ANCRA_FINAL_BLOCK, 0, cs->stream>>>(n, k, labels, rows, d_out,
                                                                ctx->defer, wn, beta, zeta);
    AL_CUDA_CHECK(cudaGetLastError());
    if (ctx->defer) { /* the value stays on the device; parts were refused by the dispatcher */
        *loss = 0.0;
        goto done;
    }
    h = (ancra_result *)cs->h_aux;
    AL_CUDA_CHECK(cudaMemcpyAsync(h, d_out, sizeof *h, cudaMemcpyDeviceToHost, cs->stream));
    AL_CHECK(al_cuda_host_sync(ctx));
    if (h->bad_index >= 0) {
        st = AL_FAIL(AL_ERR_VALUE, "al_ancra_head_loss: label %d at index %d outside [0,%d)",
                     h->bad_label, h->bad_index, k);
        goto done;
    }
    *loss = wn * (h->sum[0] + (double)beta * h->sum[1] + (double)zeta * h->sum[2]);
    if (parts) {
        parts[0] = h->sum[0] / n;
        parts[1] = h->sum[1] / n;
        parts[2] = h->sum[2] / n;
    }
done:
    al_ctx_scratch_release(ctx, mark);
    return st;
}

/* ---------------------------------------------------------------- negatives */

static __global__ void ancra_pred_kernel(int n, int k, const float *__restrict__ logits,
                                         int32_t *__restrict__ pred) {
    const int lane = threadIdx.x & 31;
    const int i = blockIdx.x * LR_ROWS_PER_BLOCK + (threadIdx.x >> 5);
    if (i >= n) return;
    const int c = lr_row_argmax_excl(logits + (size_t)i * k, k, -1, lane);
    if (lane == 0) pred[i] = c;
}

static __global__ void ancra_pick_kernel(int n, int k, const int32_t *__restrict__ labels,
                                         const int32_t *__restrict__ pred,
                                         const float *__restrict__ logits, int kind,
                                         uint64_t seed, uint64_t stream, int32_t *__restrict__ idx,
                                         uint8_t *__restrict__ valid) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x) {
        int v;
        idx[i] = al_ancra_pick_one(i, n, k, labels, pred, logits, kind, seed, stream, &v);
        valid[i] = (uint8_t)v;
    }
}

extern "C" al_status al_ancra_pick_neg_cuda(al_ctx *ctx, int n, int k, const int32_t *labels,
                                            const float *logits, int kind, uint64_t seed,
                                            uint64_t stream, int32_t *idx, uint8_t *valid) {
    cudaStream_t s = al_stream_of(ctx);
    void *tmp = NULL;
    size_t mark = al_ctx_scratch_mark(ctx);
    int32_t *pred = NULL;
    if (kind != AL_ANCRA_PICK_RANDOM) {
        AL_TRY(al_cuda_tmp(ctx, (size_t)n * sizeof(int32_t), &tmp, &mark));
        pred = (int32_t *)tmp;
        ancra_pred_kernel<<<lr_grid(n), LR_ROWS_PER_BLOCK * 32, 0, s>>>(n, k, logits, pred);
        AL_LAUNCH_CHECK(ctx);
    }
    ancra_pick_kernel<<<al_grid(ctx, (size_t)n, 128), 128, 0, s>>>(n, k, labels, pred, logits,
                                                                   kind, seed, stream, idx, valid);
    AL_LAUNCH_CHECK(ctx);
    al_ctx_scratch_release(ctx, mark);
    return AL_OK;
}

static __global__ void ancra_gather_kernel(int n, size_t d, const float *__restrict__ src,
                                           const int32_t *__restrict__ idx,
                                           float *__restrict__ dst,
                                           const int32_t *__restrict__ labels,
                                           int32_t *__restrict__ dst_labels) {
    const size_t ne = (size_t)n * d;
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < ne;
         e += (size_t)gridDim.x * blockDim.x) {
        const size_t i = e / d, t = e - i * d;
        dst[e] = src[(size_t)idx[i] * d + t];
        if (t == 0 && labels && dst_labels) dst_labels[i] = labels[idx[i]];
    }
}

extern "C" al_status al_ancra_gather_cuda(al_ctx *ctx, int n, size_t d, const float *src,
                                          const int32_t *idx, float *dst, const int32_t *labels,
                                          int32_t *dst_labels) {
    const size_t ne = (size_t)n * d;
    ancra_gather_kernel<<<al_grid(ctx, ne, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        n, d, src, idx, dst, labels, dst_labels);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}
