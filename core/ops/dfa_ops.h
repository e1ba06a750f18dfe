/* dfa_ops.h: the two parameter-free operators of DFA's orthogonal classifier (methods.md §1.1)
 * as graph nodes: per-sample L2 normalisation (F.normalize(x, p=2, dim=1, eps=1e-12)) and the
 * element-wise absolute value (torch.abs). With a frozen bias-free linear between them they
 * form the head logits = |W z|, z = x / max(||x||, 1e-12).
 * CPU references + dispatchers: core/ops/dfa_ops.c. CUDA twins: cuda/loss_dfa.cu (beside the
 * DFA aggregation kernel, so every DFA kernel lives in one file).
 * Shapes: x, y, dx, dy (N, D) row-major (a buffer viewed as (N, C*H*W)); norm (N).
 * Write modes: y =; dx = (dx_accum 0) or += (dx_accum 1). */
#ifndef AL_OP_DFA_OPS_H
#define AL_OP_DFA_OPS_H

#include "core/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* F.normalize's eps: the norm is clamped from below before dividing. */
#define AL_L2N_EPS 1e-12

/* y_i = x_i / max(||x_i||_2, eps) per row; norm_i = ||x_i||_2 (unclamped, saved for backward).
 * The norm is accumulated in double on both backends. */
al_status al_l2normalize_forward(al_ctx *ctx, int n, int d, const float *x, float *y,
                                 float *norm /* (N) */);
/* Backward from the output y and the saved norm r:
 *   r >  eps: dx = (dy - y (y . dy)) / r      (the Jacobian of x / ||x||)
 *   r <= eps: dx = dy / eps                   (clamp_min passes no gradient below eps) */
al_status al_l2normalize_backward(al_ctx *ctx, int n, int d, const float *y, const float *norm,
                                  const float *dy, float *dx, int dx_accum);
/* y = |x|. Backward dx = dy * sign(x) with sign(0) = 0 (torch.abs' subgradient). */
al_status al_abs_forward(al_ctx *ctx, size_t n_elems, const float *x, float *y);
al_status al_abs_backward(al_ctx *ctx, size_t n_elems, const float *x, const float *dy, float *dx,
                          int dx_accum);

al_status al_l2normalize_forward_cpu(al_ctx *, int, int, const float *, float *, float *);
al_status al_l2normalize_backward_cpu(al_ctx *, int, int, const float *, const float *,
                                      const float *, float *, int);
al_status al_abs_forward_cpu(al_ctx *, size_t, const float *, float *);
al_status al_abs_backward_cpu(al_ctx *, size_t, const float *, const float *, float *, int);
#ifdef AL_HAVE_CUDA
al_status al_l2normalize_forward_cuda(al_ctx *, int, int, const float *, float *, float *);
al_status al_l2normalize_backward_cuda(al_ctx *, int, int, const float *, const float *,
                                       const float *, float *, int);
al_status al_abs_forward_cuda(al_ctx *, size_t, const float *, float *);
al_status al_abs_backward_cuda(al_ctx *, size_t, const float *, const float *, float *, int);
#endif

/* ---- graph nodes (al_node_ops; no parameters) ---- */
extern const al_node_ops al_node_l2normalize; /* kind "l2normalize", saves the row norm */
extern const al_node_ops al_node_abs;         /* kind "abs" */
/* Append the node reading buffer `in`; returns the output buffer (same shape as `in`). */
int al_model_l2normalize(al_model *m, const char *name, int in);
int al_model_abs(al_model *m, const char *name, int in);

/* DFA head: append z = l2normalize(feat), w = linear(z) (num_classes x D, no bias, frozen,
 * orthogonal rows; parameter `name`.weight), logits = |w|; sets the model's outputs to
 * (logits, z). Returns the logits buffer. */
int al_model_dfa_head(al_model *m, const char *name, int feat);
/* Index of the DFA head's weight (K, D) when the model ends in exactly that head (feature
 * buffer = an l2normalize output, read by a frozen bias-free linear whose output goes
 * through abs into the logits); -1 otherwise. */
int al_model_dfa_head_param(const al_model *m);

#ifdef __cplusplus
}
#endif
#endif
