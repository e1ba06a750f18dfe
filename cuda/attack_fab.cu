/* attack_fab.cu: FAB's iteration on the device. Twin: the host loop of fab_run_once() in
 * attacks/fab.c (linearise: a fixed target, or the closest of the K - 1 classes; fab_step;
 * the acceptance and the backward step), with the element math of attacks/fab_elem.h.
 * The projection (al_fab_project on the host) finds lambda where h(lambda) = sum_j
 * min(lambda rate_j, cap_j) reaches c'. The host sorts the breakpoints; here one block per row
 * brackets lambda by bisection on h (a block reduction per probe), then solves the same
 * linear segment exactly as the host does: lambda = (c' - sum_{saturated} cap) / sum_{rest}
 * rate. So the two agree up to the order of the double sums (~D ulps), not bitwise, and the
 * moves d_j are recomputed from lambda where needed instead of being stored.
 * Rows: a = active row (act[a] = original point), one block per row. */
#include "attacks/fab_elem.h"
#include "cuda/cuda_base.cuh"
#include "losses/rowops.h"

#define FAB_BLOCK 128
#define FAB_BISECT 200 /* probes at most; stops when the bracket has no double inside */

/* lambda of the projection of t (d elements) onto the hyperplane of weights sg * w and offset
 * c (see al_fab_project); every thread of the block calls it and gets the same value. */
static __device__ double fab_lambda(al_norm norm, int d, const float *__restrict__ t,
                                    const float *__restrict__ w, double c, double sg) {
    const double cc = sg * c;
    if (!(cc > 0.0)) return 0.0; /* on the hyperplane already (or c NaN: do not move) */
    double cap = 0.0, lmax = 0.0;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        const double wj = sg * (double)w[j];
        if (!al_fab_active(norm, wj)) continue;
        double l, cp, r;
        al_fab_breakpoint(norm, wj, t[j], &l, &cp, &r);
        cap += cp;
        lmax = fmax(lmax, l);
    }
    cap = al_block_sum(cap);
    lmax = al_block_max(lmax);
    /* unreachable (this includes no active element: cap = 0 < cc): every element to its face */
    if (cap < cc) return INFINITY;
    double lo = 0.0, hi = lmax;
    for (int it = 0; it < FAB_BISECT; it++) {
        const double mid = 0.5 * (lo + hi);
        if (!(mid > lo && mid < hi)) break;
        double h = 0.0;
        for (int j = threadIdx.x; j < d; j += blockDim.x) {
            const double wj = sg * (double)w[j];
            if (!al_fab_active(norm, wj)) continue;
            double l, cp, r;
            al_fab_breakpoint(norm, wj, t[j], &l, &cp, &r);
            h += fmin(mid * r, cp);
        }
        h = al_block_sum(h);
        if (h >= cc)
            hi = mid;
        else
            lo = mid;
    }
    /* the segment containing hi: elements saturating below it give their caps */
    double sat = 0.0, suf = 0.0;
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        const double wj = sg * (double)w[j];
        if (!al_fab_active(norm, wj)) continue;
        double l, cp, r;
        al_fab_breakpoint(norm, wj, t[j], &l, &cp, &r);
        if (l < hi)
            sat += cp;
        else
            suf += r;
    }
    sat = al_block_sum(sat);
    suf = al_block_sum(suf);
    return suf > 0.0 ? (cc - sat) / suf : hi;
}

/* A thread's part of a vector norm: max |v| (Linf) or sum v^2 (L2); fab_norm_done combines the
 * block's parts into the norm (every thread gets it). */
static __device__ double fab_norm_acc(al_norm norm, double s, double v) {
    return norm == AL_LINF ? fmax(s, fabs(v)) : s + v * v;
}
static __device__ double fab_norm_done(al_norm norm, double s) {
    return norm == AL_LINF ? al_block_max(s) : sqrt(al_block_sum(s));
}

/* The norm of the move at lambda. */
static __device__ double fab_move_norm(al_norm norm, int d, const float *__restrict__ t,
                                       const float *__restrict__ w, double sg, double lam) {
    double s = 0.0;
    for (int j = threadIdx.x; j < d; j += blockDim.x)
        s = fab_norm_acc(norm, s, al_fab_move(norm, sg * (double)w[j], t[j], lam));
    return fab_norm_done(norm, s);
}

/* Test entry's kernel: one row's projection, d (n) = the moves, *nrm their norm. */
static __global__ void fab_project_kernel(al_norm norm, int n, const float *__restrict__ t,
                                          const float *__restrict__ w, double c,
                                          double *__restrict__ d, double *__restrict__ nrm) {
    const double sg = c >= 0.0 ? 1.0 : -1.0;
    const double lam = fab_lambda(norm, n, t, w, c, sg);
    for (int j = threadIdx.x; j < n; j += blockDim.x)
        d[j] = al_fab_move(norm, sg * (double)w[j], t[j], lam);
    const double s = fab_move_norm(norm, n, t, w, sg, lam);
    if (threadIdx.x == 0) *nrm = s;
}

/* dl row a = e_c - e_y for the class c = tgt[a] (tgt NULL: the class c for every row; a zero
 * row where c = y); with df, df[a] = z[a][c] - z[a][y] in double. */
static __global__ void fab_dlogits_kernel(int na, int k, int c, const int *__restrict__ tgt,
                                          const int *__restrict__ ya, const float *__restrict__ z,
                                          double *__restrict__ df, float *__restrict__ dl) {
    const int a = blockIdx.x * blockDim.x + threadIdx.x;
    if (a >= na) return;
    const int cl = tgt ? tgt[a] : c, y = ya[a];
    float *r = dl + (size_t)a * k;
    for (int j = 0; j < k; j++) r[j] = 0.0f;
    if (cl == y) return;
    r[cl] = 1.0f;
    r[y] = -1.0f;
    if (df) df[a] = (double)z[(size_t)a * k + cl] - (double)z[(size_t)a * k + y];
}

/* Untargeted linearisation, class c != y of row a with gradient gc: its linearised distance
 * |f_c| / ||gc||_dual (L1 for Linf, L2 for L2); the first class scanned or a closer one
 * becomes the row's (df, g) (linearise() on the host). One block per row. */
static __global__ void fab_pick_kernel(al_norm norm, int d, int k, int c,
                                       const int *__restrict__ ya, const float *__restrict__ z,
                                       const float *__restrict__ gc, double *__restrict__ df,
                                       float *__restrict__ g, double *__restrict__ dist,
                                       uint8_t *__restrict__ chosen) {
    const int a = blockIdx.x;
    if (ya[a] == c) return; /* the whole block */
    const float *ga = gc + (size_t)a * d;
    double q = 0.0;
    for (int j = threadIdx.x; j < d; j += blockDim.x)
        q = norm == AL_LINF ? q + fabs((double)ga[j]) : q + (double)ga[j] * ga[j];
    q = al_block_sum(q);
    if (norm == AL_L2) q = sqrt(q);
    const double dfc = (double)z[(size_t)a * k + c] - (double)z[(size_t)a * k + ya[a]];
    const double dd = fabs(dfc) / (1e-12 + q);
    const int take = !chosen[a] || dd < dist[a];
    __syncthreads(); /* every thread has read chosen / dist before thread 0 writes them */
    if (!take) return;
    for (int j = threadIdx.x; j < d; j += blockDim.x) g[(size_t)a * d + j] = ga[j];
    if (threadIdx.x == 0) {
        chosen[a] = 1;
        dist[a] = dd;
        df[a] = dfc;
    }
}

/* fab_step of row a: project x1 and x0 onto the linearised boundary, extrapolate, clamp. */
static __global__ void fab_step_kernel(al_norm norm, int d, float alpha_max, float eta,
                                       const int *__restrict__ act, const float *__restrict__ x0,
                                       float *__restrict__ x1, const float *__restrict__ g,
                                       const double *__restrict__ df) {
    const int a = blockIdx.x;
    const float *t0 = x0 + (size_t)act[a] * d, *ga = g + (size_t)a * d;
    float *t1 = x1 + (size_t)a * d;
    double gx = 0.0;
    for (int j = threadIdx.x; j < d; j += blockDim.x)
        gx += (double)ga[j] * ((double)t0[j] - (double)t1[j]);
    gx = al_block_sum(gx);
    const double c1 = df[a], c2 = df[a] + gx;
    const double sg1 = c1 >= 0.0 ? 1.0 : -1.0, sg2 = c2 >= 0.0 ? 1.0 : -1.0;
    const double l1 = fab_lambda(norm, d, t1, ga, c1, sg1);
    const double l2 = fab_lambda(norm, d, t0, ga, c2, sg2);
    const double a1 = fmax(fab_move_norm(norm, d, t1, ga, sg1, l1), 1e-8);
    const double a2 = fmax(fab_move_norm(norm, d, t0, ga, sg2, l2), 1e-8);
    const double alpha = fmin(fmax(a1 / (a1 + a2), 0.0), (double)alpha_max);
    for (int j = threadIdx.x; j < d; j += blockDim.x) {
        const double d1 = al_fab_move(norm, sg1 * (double)ga[j], t1[j], l1);
        const double d2 = al_fab_move(norm, sg2 * (double)ga[j], t0[j], l2);
        const double u = ((double)t1[j] + eta * d1) * (1.0 - alpha) + ((double)t0[j] + eta * d2) * alpha;
        t1[j] = (float)(u < 0.0 ? 0.0 : (u > 1.0 ? 1.0 : u));
    }
}

/* Row a after the step's forward: misclassified -> keep x1 if closest so far (best, res), then
 * pull it back towards x0 by beta. */
static __global__ void fab_accept_kernel(al_norm norm, int d, int k, float beta,
                                         const int *__restrict__ act, const int *__restrict__ ya,
                                         const float *__restrict__ z, const float *__restrict__ x0,
                                         float *__restrict__ x1, float *__restrict__ best,
                                         double *__restrict__ res) {
    const int a = blockIdx.x;
    if (row_argmax_excl(z + (size_t)a * k, k, -1) == ya[a]) return; /* the whole block returns */
    const float *t0 = x0 + (size_t)act[a] * d;
    float *t1 = x1 + (size_t)a * d;
    double s = 0.0;
    for (int j = threadIdx.x; j < d; j += blockDim.x)
        s = fab_norm_acc(norm, s, (double)t1[j] - (double)t0[j]);
    const double dist = fab_norm_done(norm, s);
    const int take = dist < res[a];
    if (take)
        for (int j = threadIdx.x; j < d; j += blockDim.x) best[(size_t)a * d + j] = t1[j];
    __syncthreads(); /* every thread has read its res[a] before thread 0 writes it */
    if (take && threadIdx.x == 0) res[a] = dist;
    for (int j = threadIdx.x; j < d; j += blockDim.x)
        t1[j] = (float)((double)t0[j] + ((double)t1[j] - (double)t0[j]) * (double)beta);
}

extern "C" al_status al_fab_project_cuda(al_ctx *ctx, al_norm norm, int n, const float *t,
                                         const float *w, double c, double *d, double *nrm) {
    AL_ASSERT(n >= 1 && t && w && d && nrm, "al_fab_project_cuda n=%d", n);
    fab_project_kernel<<<1, FAB_BLOCK, 0, al_stream_of(ctx)>>>(norm, n, t, w, c, d, nrm);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_fab_dlogits_cuda(al_ctx *ctx, int na, int k, int c, const int *tgt,
                                         const int *ya, const float *z, double *df, float *dl) {
    AL_ASSERT(na >= 1 && k >= 2 && (tgt || (c >= 0 && c < k)), "al_fab_dlogits_cuda na=%d c=%d",
              na, c);
    fab_dlogits_kernel<<<AL_CEIL_DIV(na, 128), 128, 0, al_stream_of(ctx)>>>(na, k, c, tgt, ya, z,
                                                                            df, dl);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_fab_pick_cuda(al_ctx *ctx, al_norm norm, int na, int d, int k, int c,
                                      const int *ya, const float *z, const float *gc, double *df,
                                      float *g, double *dist, uint8_t *chosen) {
    AL_ASSERT(na >= 1 && d >= 1 && k >= 2, "al_fab_pick_cuda na=%d", na);
    fab_pick_kernel<<<na, FAB_BLOCK, 0, al_stream_of(ctx)>>>(norm, d, k, c, ya, z, gc, df, g, dist,
                                                             chosen);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_fab_step_cuda(al_ctx *ctx, al_norm norm, int na, int d, float alpha_max,
                                      float eta, const int *act, const float *x0, float *x1,
                                      const float *g, const double *df) {
    AL_ASSERT(na >= 1 && d >= 1, "al_fab_step_cuda na=%d d=%d", na, d);
    fab_step_kernel<<<na, FAB_BLOCK, 0, al_stream_of(ctx)>>>(norm, d, alpha_max, eta, act, x0, x1,
                                                             g, df);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_fab_accept_cuda(al_ctx *ctx, al_norm norm, int na, int d, int k,
                                        float beta, const int *act, const int *ya, const float *z,
                                        const float *x0, float *x1, float *best, double *res) {
    AL_ASSERT(na >= 1 && d >= 1 && k >= 2, "al_fab_accept_cuda na=%d", na);
    fab_accept_kernel<<<na, FAB_BLOCK, 0, al_stream_of(ctx)>>>(norm, d, k, beta, act, ya, z, x0,
                                                               x1, best, res);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}
