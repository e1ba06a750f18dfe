/* attack_square.cu: Square Attack's Linf iteration on the device. Twin: the host loop of
 * square_once() in attacks/square.c (step_linf and the acceptance), through the shared
 * element functions of attacks/square_elem.h, so the proposals, margins and accepted points
 * are bitwise the host path's for the same logits. Per iteration: the query list (one block,
 * order-preserving compaction of the rows whose margin is still > 0, its length read back:
 * the iteration's one host wait, it sizes the forward), the proposals (one thread per
 * element), the caller's forward, then the acceptance (one block per queried row: thread 0
 * takes the margin, the block copies an accepted row). Rows: a = active row (compact, act[a]
 * = original index i), f = queried row (fool[f] = a). */
#include "attacks/square_elem.h"
#include "cuda/cuda_base.cuh"

#define SQ_FOOL_BLOCK 1024
#define SQ_ACCEPT_BLOCK 128

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

extern "C" al_status al_square_accept_cuda(al_ctx *ctx, int nf, int k, int d, const int *fool,
                                           const int *act, const int32_t *y, const float *logits,
                                           double *mmin, const float *xn, float *xb) {
    AL_ASSERT(nf >= 1 && k >= 2 && d >= 1, "al_square_accept_cuda nf=%d k=%d", nf, k);
    sq_accept_kernel<<<nf, SQ_ACCEPT_BLOCK, 0, al_stream_of(ctx)>>>(k, d, fool, act, y, logits,
                                                                   mmin, xn, xb);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}
