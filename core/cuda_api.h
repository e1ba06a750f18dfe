/* cuda_api.h: the extern "C" entry points cuda/ exports to the host code (only declared when
 * AL_HAVE_CUDA). Kernels live in cuda/<tag>_<name>.cu; each names its CPU twin. */
#ifndef AL_CUDA_API_H
#define AL_CUDA_API_H

#include "attacks/pgd_step.h"
#include "core/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif
/* What a CUDA graph (below) did; also in builds without CUDA, where it stays zero. */
typedef struct al_cuda_graph_info {
    size_t nodes;       /* of the last capture */
    uint64_t captures, instantiations, updates, launches;
} al_cuda_graph_info;
#ifdef AL_HAVE_CUDA
int al_cuda_device_count(void);
al_status al_cuda_ctx_init(al_ctx *ctx);
void al_cuda_ctx_fini(al_ctx *ctx);
al_status al_cuda_malloc(al_ctx *ctx, void **p, size_t n_bytes, const char *what);
void al_cuda_free(al_ctx *ctx, void *p);
/* kind: 1 host->dev, 2 dev->host, 3 dev->dev (stream-ordered on the ctx stream). */
al_status al_cuda_memcpy(al_ctx *ctx, void *dst, const void *src, size_t n_bytes, int kind);
al_status al_cuda_memset(al_ctx *ctx, void *dst, int value, size_t n_bytes);
al_status al_cuda_sync(al_ctx *ctx);
/* Number of device allocations made through al_cuda_malloc on this ctx (tests assert it is
 * unchanged after step 1 of a repeated forward/backward: style rule 15). */
uint64_t al_cuda_alloc_count(const al_ctx *ctx);
/* Number of host waits on this ctx's stream (al_cuda_host_sync: D2H copies, scalar results,
 * al_sync). Tests assert how many an attack loop makes. */
uint64_t al_cuda_sync_count(const al_ctx *ctx);

/* Fused SGD + EMA: the CUDA twin of al_sgd_step_cpu (core/optim.h), same arguments after ctx.
 * One launch over the ONE flat buffer (style rule 17); every element runs the shared
 * AL_HOSTDEV al_sgd_ema_elem (core/optim.h), compiled with --fmad=false, so the result is
 * bitwise the CPU loop's. mask (n) holds the AL_OPT_* bits; momentum / ema may be NULL when
 * hp->momentum == 0 / !hp->ema. All pointers are device memory on ctx; no sync. */
struct al_sgd_hparams;
al_status al_sgd_step_cuda(al_ctx *ctx, size_t n, const uint8_t *mask /* (n) */,
                           float *params /* (n) */, const float *grads /* (n) */,
                           float *momentum /* (n) or NULL */, float *ema /* (n) or NULL */,
                           const struct al_sgd_hparams *hp,
                           const double *dev_scale /* device, or NULL: hp->grad_scale */);

/* Masked sum of squares (cuda/reduce_sumsq.cu), the twin of the CPU loop in
 * al_optim_clip_coef: *h_sum = sum over i with (mask[i] & bits) of (double)x[i]^2 (mask NULL:
 * every element). x (n), mask (n) device; h_sum host. Double accumulation in a fixed order
 * (a fixed chunk count, then one block): bit-reproducible on any GPU. One D2H copy + sync. */
al_status al_masked_sumsq_cuda(al_ctx *ctx, size_t n, const float *x /* (n) */,
                               const uint8_t *mask /* (n) or NULL */, unsigned bits,
                               double *h_sum);
/* Deferred clipping (core/optim.h al_optim_clip_coef_deferred): the same sum, then
 * al_sums_clip_elem(s, sum, max_norm, step) in the final kernel on s (device). No copy, no sync. */
struct al_sums;
al_status al_clip_coef_deferred_cuda(al_ctx *ctx, size_t n, const float *x /* (n) */,
                                     const uint8_t *mask /* (n) or NULL */, unsigned bits,
                                     double max_norm, struct al_sums *s, int64_t step);

/* Attack random start (cuda/attack_start.cu), twins of start_point() in attacks/attack.c, with
 * the AL_HOSTDEV element functions of attacks/attack.h at index al_attack_rng_index(r, n, i,
 * d, j): x_out (n, d) = start of restart r from x (n, d); out of place, no sync.
 *   uniform (Linf): clamp(x + eps U(-1,1), 0, 1), bitwise the CPU's;
 *   normal:         x + init_std N(0,1), equal up to the normals' few-ulp libm difference;
 *   l2:             clamp(x + eps U(0,1) v/||v||, 0, 1), v ~ N(0, I) per example. */
al_status al_attack_start_uniform_cuda(al_ctx *ctx, int n, size_t d, const float *x,
                                       float *x_out, float eps, int r, uint64_t seed,
                                       uint64_t stream);
al_status al_attack_start_normal_cuda(al_ctx *ctx, int n, size_t d, const float *x,
                                      float *x_out, float init_std, int r, uint64_t seed,
                                      uint64_t stream);
al_status al_attack_start_l2_cuda(al_ctx *ctx, int n, size_t d, const float *x, float *x_out,
                                  float eps, int r, uint64_t seed, uint64_t stream);
/* Early stop: g (n, d) row i = 0 where (flag[i] != 0) == success_value (flag (n) device: the
 * al_count_correct flags; success_value = 1 targeted, 0 untargeted). */
al_status al_attack_zero_rows_cuda(al_ctx *ctx, int n, size_t d, float *g /* (n, d) */,
                                   const uint8_t *flag /* (n) */, int success_value);

/* Device-resident dataset batches (cuda/data_augment.cu), the twin of al_batch_to_float
 * (datasets/sampler.c) applied to the rows train.c gathers: d_out (n, c, h, w) float =
 * d_images_all[d_rows[i]] (uint8 (N_all, c, h, w), device) / 255, with the crop/flip draw
 * al_aug_sample(seed, step, i, pad) of batch position i (pad <= 0: none). Bitwise equal to the
 * CPU path. d_rows (n) int64 device, each in [0, N_all) (unchecked), or NULL for rows 0..n-1. */
al_status al_batch_to_float_cuda(al_ctx *ctx, const uint8_t *d_images_all,
                                 const int64_t *d_rows /* (n) or NULL */, int n, int c, int h,
                                 int w, int pad, uint64_t seed, uint64_t step,
                                 float *d_out /* (n, c, h, w) */);
/* d_out[i] = d_labels_all[d_rows[i]] (device; d_rows NULL: rows 0..n-1). */
al_status al_gather_labels_cuda(al_ctx *ctx, const int32_t *d_labels_all,
                                const int64_t *d_rows /* (n) or NULL */, int n,
                                int32_t *d_out /* (n) */);

/* Deferred step scalars (cuda/train_sums.cu): the fold of core/sums.h (al_sums_fold_elem) as
 * one single-thread launch on s (device). No sync. */
struct al_sums;
al_status al_sums_fold_cuda(al_ctx *ctx, struct al_sums *s, int n, int64_t step);

/* AdvProp's attack targets (cuda/train_advprop.cu): t (n) = al_advprop_target(y[i], k, seed,
 * stream, i) (core/methods/advprop_target.h), bitwise the CPU's. y, t device; no sync. */
al_status al_advprop_targets_cuda(al_ctx *ctx, int n, int k, const int32_t *y, uint64_t seed,
                                  uint64_t stream, int32_t *t);

/* Square Attack's Linf iteration (cuda/attack_square.cu), twins of the host loop in
 * attacks/square.c through attacks/square_elem.h (bitwise for the same logits). Rows: a =
 * active (act[a] = original index), f = queried (fool[f] = a). All pointers device.
 *   fool:    fool = [a in [0, na) : mmin[a] > 0] in order; *n_fool its length (host: 1 sync);
 *   propose: xn (nf, c*h*w) = step_linf of row fool[f] (window side sq, iteration it, restart r,
 *            n points, n_queries: the word layout), x0 (n, d) the clean inputs, xb (na, d);
 *   accept:  margin of logits row f; if < mmin[a] or <= 0: mmin[a] = it, xb[a] = xn[f]. */
al_status al_square_fool_cuda(al_ctx *ctx, int na, const double *mmin, int *fool, int *n_fool);
al_status al_square_linf_propose_cuda(al_ctx *ctx, int nf, int c, int h, int w, int sq, float eps,
                                      int n, int n_queries, int r, int it, uint64_t seed,
                                      uint64_t stream, const int *fool, const int *act,
                                      const float *x0, const float *xb, float *xn);
/*   l2 propose: step_l2 of row fool[f] into xn (one block per row), eta (sq * sq) the
 *            iteration's pattern (device), c <= 16; */
al_status al_square_l2_propose_cuda(al_ctx *ctx, int nf, int c, int h, int w, int sq, float eps,
                                    int n, int n_queries, int r, int it, uint64_t seed,
                                    uint64_t stream, const double *eta, const int *fool,
                                    const int *act, const float *x0, const float *xb, float *xn);
al_status al_square_accept_cuda(al_ctx *ctx, int nf, int k, int d, const int *fool, const int *act,
                                const int32_t *y, const float *logits, double *mmin,
                                const float *xn, float *xb);

/* FAB's iteration (cuda/attack_fab.cu), twins of the host loop in attacks/fab.c with the
 * element math of attacks/fab_elem.h (equal up to the order of double sums). Rows a = active
 * (act[a] = original point, x0 (n, d) the clean inputs), one block per row. All device.
 *   project: al_fab_project of one row (d (n) the moves, *nrm their norm; for tests);
 *   dlogits: dl row a = e_c - e_y with c = tgt[a] (tgt NULL: the class c for every row, a zero
 *            row where c = y); df (or NULL): df[a] = z[a][c] - z[a][y];
 *   pick:    (untargeted, after the backward of class c's dlogits into gc) rows whose class c
 *            is the first scanned or linearly closer take (df, g <- gc);
 *   step:    fab_step of every row: x1 (na, d) in place from g (na, d) and df;
 *   accept:  rows misclassified by z: best[a] = x1[a] where closer than res[a], then x1 pulled
 *            back towards x0 by beta. */
al_status al_fab_project_cuda(al_ctx *ctx, al_norm norm, int n, const float *t, const float *w,
                              double c, double *d, double *nrm);
al_status al_fab_dlogits_cuda(al_ctx *ctx, int na, int k, int c, const int *tgt, const int *ya,
                              const float *z, double *df, float *dl);
al_status al_fab_pick_cuda(al_ctx *ctx, al_norm norm, int na, int d, int k, int c, const int *ya,
                           const float *z, const float *gc, double *df, float *g, double *dist,
                           uint8_t *chosen);
al_status al_fab_step_cuda(al_ctx *ctx, al_norm norm, int na, int d, float alpha_max, float eta,
                           const int *act, const float *x0, float *x1, const float *g,
                           const double *df);
al_status al_fab_accept_cuda(al_ctx *ctx, al_norm norm, int na, int d, int k, float beta,
                             const int *act, const int *ya, const float *z, const float *x0,
                             float *x1, float *best, double *res);

/* CUDA graphs (cuda/cuda_ctx.cu). A host function whose launches and arguments are the same
 * every time it runs (an attack iteration) is captured once:
 *     al_cuda_graph_begin(ctx); st = body(); st = al_cuda_graph_end(ctx, &g, st);
 * then al_cuda_graph_launch(ctx, g) replays it: device memory is read when the replay runs,
 * host values (kernel arguments, sizes, alpha/beta) are those of the capture. The body must
 * not wait, allocate or read back (the capture refuses it: al_cuda_graph_end then returns the
 * error, the stream is out of capture mode, and the caller runs the body eagerly). A later
 * capture into the same *g updates the executable graph in place when only arguments changed,
 * and instantiates it again otherwise. */
typedef struct al_cuda_graph al_cuda_graph;
int al_cuda_graphs_usable(const al_ctx *ctx); /* ctx->cuda_graphs, and no ADVLAB_SYNC_CHECK */
al_status al_cuda_graph_begin(al_ctx *ctx);
al_status al_cuda_graph_end(al_ctx *ctx, al_cuda_graph **g, al_status body);
al_status al_cuda_graph_launch(al_ctx *ctx, al_cuda_graph *g);
void al_cuda_graph_free(al_cuda_graph *g);
al_cuda_graph_info al_cuda_graph_get_info(const al_cuda_graph *g);

/* NVTX ranges for Nsight Systems (nested, per host thread). No-ops without CUDA. */
void al_nvtx_push(const char *name);
void al_nvtx_pop(void);
#else
static inline void al_nvtx_push(const char *name) { (void)name; }
static inline void al_nvtx_pop(void) {}
#endif
#ifdef __cplusplus
}
#endif
#endif
