/* attack_square.cu: Square Attack's iterations on the device. Twin: the host loop of
 * square_once() in attacks/square.c (step_linf / step_l2 and the acceptance), through the
 * shared element functions of attacks/square_elem.h. Linf: the proposals, margins and
 * accepted points are bitwise the host path's for the same logits. L2 (<= 16 channels): the
 * same draws and expressions, with the host's sequential double sums as block sums, so the
 * proposals agree to a few ulps (a place_l2 retry at the eps boundary may differ).
 * Per iteration: the query list (one block, order-preserving compaction of the rows whose
 * margin is still > 0, its length read back: the iteration's one host wait, it sizes the
 * forward), the proposals (Linf: one thread per element; L2: one block per row), the
 * caller's forward, then the acceptance (one block per queried row: thread 0 takes the
 * margin, the block copies an accepted row). Rows: a = active row (compact, act[a] = original
 * index i), f = queried row (fool[f] = a). */
#include "attacks/square_elem.h"
#include "cuda/cuda_base.cuh"

#define SQ_FOOL_BLOCK 1024
#define SQ_ACCEPT_BLOCK 128
#define SQ_L2_BLOCK 256
#define SQ_L2_MAX_C 16 /* channels the L2 kernel keeps per-channel factors for */

/* fool = [a : mmin[a] > 0] in increasing a (the host loop's order); *nf its length. Each
 * thread counts a contiguous chunk, thread 0 scans the counts, each thread writes its chunk. */
static __global__ void sq_fool_kernel(int na, const double *__restrict__ mmin,
                                      int *__restrict__ fool, int *__restrict__ nf) {
    __shared__ int off[SQ_FOOL_BLOCK + 1];
    const int per = (na + SQ_FOOL_BLOCK - 1) / SQ_FOOL_BLOCK;
    const int lo = threadIdx.x * per, hi = min(na, lo + per);
    int c = 0;
    for (int a = lo; a < hi; a++) c += mmin[a] > 0.0;
    off[threadIdx.x + 1] = c;
    __syncthreads();
    if (threadIdx.x == 0) {
        off[0] = 0;
        for (int t = 1; t <= SQ_FOOL_BLOCK; t++) off[t] += off[t - 1];
        *nf = off[SQ_FOOL_BLOCK];
    }
    __syncthreads();
    int o = off[threadIdx.x];
    for (int a = lo; a < hi; a++)
        if (mmin[a] > 0.0) fool[o++] = a;
}

/* xn[f] = x_best[fool[f]] with the sq x sq window of (r, it, point act[fool[f]]) moved to
 * +-2 eps per channel and clipped to the ball around x0 and to [0, 1] (step_linf). */
static __global__ void sq_propose_kernel(size_t total, int d, int c, int h, int w, int sq,
                                         float eps, int n, int n_queries, int r, int it,
                                         uint64_t seed, uint64_t stream,
                                         const int *__restrict__ fool,
                                         const int *__restrict__ act,
                                         const float *__restrict__ x0,
                                         const float *__restrict__ xb, float *__restrict__ xn) {
    for (size_t e = blockIdx.x * (size_t)blockDim.x + threadIdx.x; e < total;
         e += (size_t)gridDim.x * blockDim.x) {
        const int f = (int)(e / (size_t)d), j = (int)(e % (size_t)d);
        const int a = fool[f], i = act[a];
        const float b = xb[(size_t)a * d + j];
        const int ch = j / (h * w), u = (j / w) % h, q = j % w;
        const uint64_t base = al_square_word_base(n_queries, n, r, it + 1, i);
        int vh, vw;
        al_square_window(seed, stream, base, h, w, sq, &vh, &vw);
        float v = b;
        if (u >= vh && u < vh + sq && q >= vw && q < vw + sq)
            v = al_square_clip_linf(b + al_square_linf_value(seed, stream, base, ch, eps),
                                    x0[(size_t)i * d + j], eps);
        xn[e] = v;
    }
}

/* Final delta element j of an L2 proposal (step_l2): window 1 gets the rescaled pattern, the
 * rest of window 2 is emptied, other elements keep x_best - x0. */
struct sq_l2_row {
    int vh, vw, vh2, vw2, tr, sq, h, w;
    const double *eta;
    double w1[SQ_L2_MAX_C], scale[SQ_L2_MAX_C], sg[SQ_L2_MAX_C];
};

static __device__ double sq_l2_delta(const sq_l2_row *r, int j, double dj) {
    const int hw = r->h * r->w, ch = j / hw, u = (j / r->w) % r->h, q = j % r->w;
    if (u >= r->vh && u < r->vh + r->sq && q >= r->vw && q < r->vw + r->sq) {
        const int a = u - r->vh, b = q - r->vw;
        const double e = r->tr ? r->eta[b * r->sq + a] : r->eta[a * r->sq + b];
        return (e * r->sg[ch] + dj / (1e-12 + r->w1[ch])) * r->scale[ch];
    }
    if (u >= r->vh2 && u < r->vh2 + r->sq && q >= r->vw2 && q < r->vw2 + r->sq) return 0.0;
    return dj;
}

/* step_l2 of queried row f, one block per row: the mass of windows 1 and 2 moves into window
 * 1 as the eta pattern (signed per channel) plus window 1's old content, each channel's new
 * window scaled to its old share of the norm plus an equal share of the unused budget; the
 * whole perturbation rescaled to eps and placed in [0, 1] with place_l2's shrink-and-retry.
 * The host's sequential double sums are block sums here (ulp-level differences). */
static __global__ void sq_l2_propose_kernel(int c, int h, int w, int sq, double eps, int n,
                                            int n_queries, int r, int it, uint64_t seed,
                                            uint64_t stream, const double *__restrict__ eta,
                                            const int *__restrict__ fool,
                                            const int *__restrict__ act,
                                            const float *__restrict__ x0_all,
                                            const float *__restrict__ xb_all,
                                            float *__restrict__ xn_all) {
    __shared__ sq_l2_row R;
    const int f = blockIdx.x, a = fool[f], i = act[a], d = c * h * w, hw = h * w;
    const float *x0 = x0_all + (size_t)i * d, *xb = xb_all + (size_t)a * d;
    float *xn = xn_all + (size_t)f * d;
    const uint64_t base = al_square_word_base(n_queries, n, r, it + 1, i);
    if (threadIdx.x == 0) {
        al_square_l2_draws(seed, stream, base, h, w, sq, &R.vh, &R.vw, &R.vh2, &R.vw2, &R.tr);
        R.sq = sq;
        R.h = h;
        R.w = w;
        R.eta = eta;
    }
    __syncthreads();
    double img2 = 0.0;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        const double dj = (double)xb[j] - (double)x0[j];
        img2 += dj * dj;
    }
    img2 = al_block_sum(img2);
    for (int ch = 0; ch < c; ch++) {
        double w1 = 0.0, wu = 0.0;
        for (int e = threadIdx.x; e < hw; e += blockDim.x) {
            const int u = e / w, q = e % w, j = ch * hw + e;
            const bool in1 = u >= R.vh && u < R.vh + sq && q >= R.vw && q < R.vw + sq;
            const bool in2 = u >= R.vh2 && u < R.vh2 + sq && q >= R.vw2 && q < R.vw2 + sq;
            const double dj = (double)xb[j] - (double)x0[j];
            if (in1) w1 += dj * dj;
            if (in1 || in2) wu += dj * dj;
        }
        w1 = sqrt(al_block_sum(w1));
        wu = al_block_sum(wu);
        const double sg = al_square_sign(seed, stream, base, 5 + (uint64_t)ch);
        double nn = 0.0;
        for (int e = threadIdx.x; e < sq * sq; e += blockDim.x) {
            const int u = e / sq, q = e % sq;
            const double et = R.tr ? eta[q * sq + u] : eta[u * sq + q];
            const int j = (ch * h + R.vh + u) * w + R.vw + q;
            const double v = et * sg + ((double)xb[j] - (double)x0[j]) / (1e-12 + w1);
            nn += v * v;
        }
        nn = al_block_sum(nn);
        if (threadIdx.x == 0) {
            R.w1[ch] = w1;
            R.sg[ch] = sg;
            R.scale[ch] = sqrt(fmax(eps * eps - img2, 0.0) / c + wu) / (1e-12 + sqrt(nn));
        }
        __syncthreads();
    }
    double n2 = 0.0;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        const double v = sq_l2_delta(&R, j, (double)xb[j] - (double)x0[j]);
        n2 += v * v;
    }
    double scale = eps / (sqrt(al_block_sum(n2)) + 1e-12);
    for (int tries = 0; tries < 8; tries++) { /* place_l2 */
        double s2 = 0.0;
        for (int j = threadIdx.x; j < d; j += blockDim.x) {
            const double v = (double)x0[j] + scale * sq_l2_delta(&R, j, (double)xb[j] - (double)x0[j]);
            const float o = (float)(v < 0.0 ? 0.0 : (v > 1.0 ? 1.0 : v));
            xn[j] = o;
            const double e = (double)o - (double)x0[j];
            s2 += e * e;
        }
        const double nrm = sqrt(al_block_sum(s2));
        if (nrm <= eps) return; /* the whole block: nrm is the same in every thread */
        scale *= eps / nrm * (1.0 - 1e-6);
    }
    for (int j = threadIdx.x; j < d; j += blockDim.x) xn[j] = x0[j];
}

/* Row f: margin of its logits; taken when lower than mmin[a] or <= 0 (then x_best[a] = xn[f]). */
static __global__ void sq_accept_kernel(int k, int d, const int *__restrict__ fool,
                                        const int *__restrict__ act, const int32_t *__restrict__ y,
                                        const float *__restrict__ logits,
                                        double *__restrict__ mmin, const float *__restrict__ xn,
                                        float *__restrict__ xb) {
    __shared__ int take;
    const int f = blockIdx.x, a = fool[f];
    if (threadIdx.x == 0) {
        const double mg = al_square_margin(logits + (size_t)f * k, k, y[act[a]]);
        take = mg < mmin[a] || mg <= 0.0;
        if (take) mmin[a] = mg;
    }
    __syncthreads();
    if (!take) return;
    for (int j = threadIdx.x; j < d; j += blockDim.x)
        xb[(size_t)a * d + j] = xn[(size_t)f * d + j];
}

extern "C" al_status al_square_fool_cuda(al_ctx *ctx, int na, const double *mmin, int *fool,
                                         int *n_fool) {
    AL_ASSERT(na >= 1 && mmin && fool && n_fool, "al_square_fool_cuda na=%d", na);
    al_cuda_state *s = al_cst(ctx);
    void *tmp;
    size_t mark;
    AL_TRY(al_cuda_tmp(ctx, 64, &tmp, &mark));
    al_status st = AL_OK;
    int *h = (int *)s->h_aux;
    sq_fool_kernel<<<1, SQ_FOOL_BLOCK, 0, s->stream>>>(na, mmin, fool, (int *)tmp);
    AL_CUDA_CHECK(cudaGetLastError());
    AL_CUDA_CHECK(cudaMemcpyAsync(h, tmp, sizeof *h, cudaMemcpyDeviceToHost, s->stream));
    AL_CHECK(al_cuda_host_sync(ctx));
    *n_fool = *h;
done:
    al_ctx_scratch_release(ctx, mark);
    return st;
}

extern "C" al_status al_square_linf_propose_cuda(al_ctx *ctx, int nf, int c, int h, int w,
                                                 int sq, float eps, int n, int n_queries, int r,
                                                 int it, uint64_t seed, uint64_t stream,
                                                 const int *fool, const int *act,
                                                 const float *x0, const float *xb, float *xn) {
    AL_ASSERT(nf >= 1 && sq >= 1 && sq <= h && sq <= w, "al_square_linf_propose_cuda nf=%d sq=%d",
              nf, sq);
    const int d = c * h * w;
    const size_t total = (size_t)nf * d;
    sq_propose_kernel<<<al_grid(ctx, total, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        total, d, c, h, w, sq, eps, n, n_queries, r, it, seed, stream, fool, act, x0, xb, xn);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_square_l2_propose_cuda(al_ctx *ctx, int nf, int c, int h, int w,
                                               int sq, float eps, int n, int n_queries, int r,
                                               int it, uint64_t seed, uint64_t stream,
                                               const double *eta, const int *fool,
                                               const int *act, const float *x0, const float *xb,
                                               float *xn) {
    AL_ASSERT(nf >= 1 && c >= 1 && c <= SQ_L2_MAX_C && sq >= 1 && sq <= h && sq <= w && eta,
              "al_square_l2_propose_cuda nf=%d c=%d sq=%d", nf, c, sq);
    sq_l2_propose_kernel<<<nf, SQ_L2_BLOCK, 0, al_stream_of(ctx)>>>(
        c, h, w, sq, (double)eps, n, n_queries, r, it, seed, stream, eta, fool, act, x0, xb, xn);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_square_accept_cuda(al_ctx *ctx, int nf, int k, int d, const int *fool,
                                           const int *act, const int32_t *y, const float *logits,
                                           double *mmin, const float *xn, float *xb) {
    AL_ASSERT(nf >= 1 && k >= 2 && d >= 1, "al_square_accept_cuda nf=%d k=%d", nf, k);
    sq_accept_kernel<<<nf, SQ_ACCEPT_BLOCK, 0, al_stream_of(ctx)>>>(k, d, fool, act, y, logits,
                                                                   mmin, xn, xb);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}
