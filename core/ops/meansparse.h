/* meansparse.h: MeanSparse (Amini et al. 2024, arXiv 2406.05927; methods.md §2), the
 * mean-centred sparsification operator, per channel c of x (N, C, HW):
 *     y = mu_c   if |x - mu_c| <  alpha * sqrt(var_c)        (strict '<', as the reference)
 *     y = x      otherwise                                   (NaN x: the test is false -> NaN)
 * with per-channel statistics mu, var and ONE global threshold alpha; alpha == 0 is an exact
 * bypass (y = x bitwise, dx = dy bitwise). Backward: exact (dx = 0 inside the band, dy
 * elsewhere: autograd through the reference's torch.where) or BPDA (dx = dy everywhere:
 * RobustBench's straight-through MeanSparseFunction2D, for adaptive evaluation).
 * CPU reference + dispatcher: core/ops/meansparse.c. CUDA twin: cuda/op_meansparse.cu (the
 * same AL_HOSTDEV element expressions, so forward/backward are bitwise the CPU's).
 * Write modes: y =; dx = (or += when dx_accum). mu/var are buffers: no gradient.
 *
 * The second half of this header is the model-level plumbing: the custom graph node, its
 * insertion between every BN and its activation, the statistics pass (methods.md §2.4), and
 * the checkpoint attributes that let `advlab attack/eval` rebuild a MeanSparse model. */
#ifndef AL_OP_MEANSPARSE_H
#define AL_OP_MEANSPARSE_H

#include <math.h>

#include "core/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------- element math (shared) */

/* Half-width of the band of a channel: alpha * sqrt(var), in float as the reference's
 * `threshold * torch.sqrt(running_var)` (sqrtf is correctly rounded on both backends). */
AL_HOSTDEV float al_ms_crop(float alpha, float var) { return alpha * sqrtf(var); }
/* 1 when x lies strictly inside the band around mu (NaN x or NaN crop: 0). */
AL_HOSTDEV int al_ms_inside(float x, float mu, float crop) { return fabsf(x - mu) < crop; }
AL_HOSTDEV float al_ms_fwd_elem(float x, float mu, float crop) {
    return al_ms_inside(x, mu, crop) ? mu : x;
}
/* Exact backward: the gradient of torch.where(inside, mu, x) w.r.t. x. */
AL_HOSTDEV float al_ms_bwd_elem(float x, float mu, float crop, float dy) {
    return al_ms_inside(x, mu, crop) ? 0.0f : dy;
}

/* ---------------------------------------------------------------- the op */

/* y (N,C,HW) = MeanSparse(x); mean/var (C) on ctx's device. alpha >= 0 (0: y = x copy). */
al_status al_meansparse_forward(al_ctx *ctx, int n, int c, int hw, const float *x,
                                const float *mean, const float *var, float alpha, float *y);
/* dx (N,C,HW) = (or +=) gradient. bpda = 1 or alpha == 0: dx = dy; else the exact mask. */
al_status al_meansparse_backward(al_ctx *ctx, int n, int c, int hw, const float *x,
                                 const float *mean, const float *var, float alpha, int bpda,
                                 const float *dy, float *dx, int dx_accum);
/* Per-channel batch statistics of x (N,C,HW) on ctx's device, as the reference's
 * torch.mean(x, dim=(0,2,3)) and torch.var(x, dim=(0,2,3)) (UNBIASED, divisor N*HW - 1;
 * N*HW == 1 gives NaN as torch does). Accumulated in double (two passes); HOST outputs
 * h_mean, h_var (C). CPU: no allocation; CUDA: one D2H copy + sync. */
al_status al_meansparse_batch_stats(al_ctx *ctx, int n, int c, int hw, const float *x,
                                    double *h_mean, double *h_var);

al_status al_meansparse_forward_cpu(al_ctx *, int, int, int, const float *, const float *,
                                    const float *, float, float *);
al_status al_meansparse_backward_cpu(al_ctx *, int, int, int, const float *, const float *,
                                     const float *, float, int, const float *, float *, int);
al_status al_meansparse_batch_stats_cpu(al_ctx *, int, int, int, const float *, double *,
                                        double *);
#ifdef AL_HAVE_CUDA
al_status al_meansparse_forward_cuda(al_ctx *, int, int, int, const float *, const float *,
                                     const float *, float, float *);
al_status al_meansparse_backward_cuda(al_ctx *, int, int, int, const float *, const float *,
                                      const float *, float, int, const float *, float *, int);
al_status al_meansparse_batch_stats_cuda(al_ctx *, int, int, int, const float *, double *,
                                         double *);
#endif

/* ---------------------------------------------------------------- model plumbing */

/* Where MeanSparse nodes go (methods.md §2.3):
 *   BN   after every BN whose output feeds a ReLU (between BN and its activation: the
 *        official WRN/RaWRN modules' meansparse_0/1/end). Named "<bn>.meansparse".
 *   ACT  before EVERY ReLU (the official generic add_custom_layer, which wraps every
 *        activation): also after residual additions (the official meansparse_2) and after
 *        conv/linear outputs that feed a ReLU directly. Named "<producer>.meansparse", or for
 *        an addition "<block>.meansparse_sum" (<block> = the first input's producer name
 *        without its last component, e.g. layer1.0.bn2 -> layer1.0). */
typedef enum al_ms_placement { AL_MS_PLACE_BN = 0, AL_MS_PLACE_ACT = 1 } al_ms_placement;
const char *al_ms_placement_name(al_ms_placement p); /* "bn" | "act" */

/* The custom node's operator table (kind "meansparse"). Node fields: in0 = the producer's
 * output; param[0][0] = running_mean index, param[0][1] = running_var index; fparam[0] =
 * alpha; iparam[0] = bpda (0 exact, 1 straight-through). */
extern const al_node_ops al_meansparse_node_ops;

/* Insert MeanSparse nodes (before al_model_setup) per placement. Each node adds two buffers
 * to the parameter table, kind AL_P_OTHER, trainable 0 (so optimiser, EMA and weight decay
 * skip them), appended AFTER every existing parameter (existing offsets are unchanged):
 *     <name>.running_mean  [C]  (init 0)       <name>.running_var  [C]  (init 1)
 * alpha starts at 0 (bypass), backward exact. Returns the number of nodes inserted (0 when
 * nothing matches, e.g. a BN-free arch with placement BN). */
int al_meansparse_insert(al_model *m, al_ms_placement placement);
int al_meansparse_count(const al_model *m);
void al_meansparse_set_alpha(al_model *m, float alpha);
float al_meansparse_alpha(const al_model *m); /* of the first node (all equal); 0 if none */
void al_meansparse_set_bpda(al_model *m, int bpda);

/* Statistics pass (methods.md §2.4, the reference's calculate_statistics): every MeanSparse
 * node's alpha is 0 during the pass (restored after), the model runs in eval mode over
 * n images (host uint8 (n, C, H, W), pixels / 255, no augmentation) in batches of `batch`
 * (<= m->max_batch; the last batch may be short), and each node's buffers become
 *     running_mean = (1/B) sum_b mean_b(x),   running_var = (1/B) sum_b var_b(x)
 * over the B = ceil(n / batch) batches, with var_b the UNBIASED per-batch variance over
 * (N, H, W) (so NOT the global variance; the short last batch weighs 1/B too). The sums run
 * in double (the reference adds float32 increments; the difference is ~1e-7 relative). */
al_status al_meansparse_collect(al_ctx *ctx, al_model *m, const uint8_t *images, int64_t n,
                                int batch, const char *label);

/* ---- checkpoints ----
 * A MeanSparse checkpoint is an ordinary advlab checkpoint (formats.md §2) whose /model
 * table also holds every node's running_mean/running_var, plus /model attributes
 *     meansparse = 1 (int32), meansparse_alpha (float32 [1]),
 *     meansparse_placement = "bn" | "act", meansparse_backward = "exact" | "bpda".
 * al_meansparse_save writes it atomically (al_checkpoint_save to <path>.ms.tmp, attributes
 * added, then flush + fsync + rename over path). */
al_status al_meansparse_save(al_ctx *ctx, const al_model *m, al_ms_placement placement,
                             const char *path);
/* The hook for core/checkpoint.c al_checkpoint_create_model (after the model is built and its
 * normalisation set, before setup): when /model carries meansparse = 1, insert the nodes per
 * the stored placement and set alpha and the backward mode, so al_checkpoint_load then finds
 * every statistics buffer in the model's table. A checkpoint without the attribute is left
 * untouched (*applied = 0). Errors name the file and attribute. applied may be NULL. */
al_status al_meansparse_apply_checkpoint(const char *path, al_model *m, int *applied);

#ifdef __cplusplus
}
#endif
#endif
