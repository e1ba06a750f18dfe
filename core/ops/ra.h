/* ra.h: ANCRA reverse attention (methods.md §3.1; changzhang777/ANCRA @b3ebc8e
 * TRADES-ANCRA/models/resnet.py RA_Block). CPU reference + dispatchers: core/ops/ra.c;
 * CUDA twin: cuda/op_ra.cu.
 *
 * An RA block ends with two custom graph nodes that SHARE the network's final classifier fc
 * (weight W (K, C), bias b (K)):
 *   ra.head  pooled z (N, C, 1, 1) -> p = pooled W^T + b (N, K)      the auxiliary logits "p"
 *   ra       z (N, C, H, W), p (N, K) -> z' = z * W[k_n, :] per channel (N, C, H, W)
 * with k_n = labels[n] in a train-mode forward that carries labels (al_fwd_opts.labels: the
 * true label; ANCRA's negatives pass their own label) and k_n = argmax_j p[n, j] otherwise
 * (evaluation / attacks; ties: lowest index, a NaN counts as the maximum, as torch.argmax).
 *
 * Backward of ra (k is piecewise constant in p):
 *   dz[n,c,q] (=/+=) dy[n,c,q] W[k_n, c]
 *   dW[j,c]   +=     sum_{n: k_n = j} sum_q z[n,c,q] dy[n,c,q]       (the mask is fc.weight)
 *   dp        =      0                                                (PyTorch autograd)
 * except in the straight-through mode (AL_RA_MASK_FIXED on an eval-mode forward): the forward
 * is unchanged (the deployed model, so every accuracy counted is the published model's), and
 * the backward replaces d onehot(argmax p)/dp by d softmax(p)/dp (Bengio et al. 2013):
 *   G[n,c] = sum_q z dy,  g_j = sum_c W[j,c] G[n,c],  s = softmax(p[n]),
 *   dp[n,j] = s_j (g_j - sum_i s_i g_i)
 * so an attacker also sees how moving the auxiliary head would switch the mask.
 * Shapes: z, y, dy, dz (N, C, HW); W (K, C); p, dp (N, K); labels, sel (N) int32; device
 * memory of ctx. Reductions accumulate in double. */
#ifndef AL_OP_RA_H
#define AL_OP_RA_H

#include "core/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Mask modes of evaluation forwards (values = config.h al_ancra_mask). */
enum { AL_RA_MASK_PREDICTED = 0, AL_RA_MASK_FIXED = 1 };

/* y = z * W[sel, :]; sel (N) out = the class used per example (labels when non-NULL, else the
 * argmax of p). A label outside [0, K) is AL_ERR_VALUE naming it (CPU); the CUDA twin writes
 * NaN rows for it (no host round trip) and sel = -1. */
al_status al_ra_forward(al_ctx *ctx, int n, int c, int hw, int k, const float *z, const float *w,
                        const float *p, const int32_t *labels, float *y, int32_t *sel);
/* Backward as above. dz (acc_z: '+=' else '='), dw ('+=', K x C), dp (acc_p: '+=' else '=';
 * zeros unless straight_through) may each be NULL. */
al_status al_ra_backward(al_ctx *ctx, int n, int c, int hw, int k, const float *z, const float *w,
                         const float *p, const int32_t *sel, const float *dy, float *dz, int acc_z,
                         float *dw, float *dp, int acc_p, int straight_through);

al_status al_ra_forward_cpu(al_ctx *ctx, int n, int c, int hw, int k, const float *z,
                            const float *w, const float *p, const int32_t *labels, float *y,
                            int32_t *sel);
al_status al_ra_backward_cpu(al_ctx *ctx, int n, int c, int hw, int k, const float *z,
                             const float *w, const float *p, const int32_t *sel, const float *dy,
                             float *dz, int acc_z, float *dw, float *dp, int acc_p,
                             int straight_through);
#ifdef AL_HAVE_CUDA
al_status al_ra_forward_cuda(al_ctx *ctx, int n, int c, int hw, int k, const float *z,
                             const float *w, const float *p, const int32_t *labels, float *y,
                             int32_t *sel);
al_status al_ra_backward_cuda(al_ctx *ctx, int n, int c, int hw, int k, const float *z,
                              const float *w, const float *p, const int32_t *sel, const float *dy,
                              float *dz, int acc_z, float *dw, float *dp, int acc_p,
                              int straight_through);
#endif

/* ---- graph nodes (builders: core/models/ancra_models.c) ---- */
extern const al_node_ops al_ra_head_ops; /* "ra_head": p = fc(pooled), shared fc */
extern const al_node_ops al_ra_ops;      /* "ra": z' = z * W[k] */

/* Append the RA tail to block output z (N, C, H, W), H == W: pooled = avgpool(z) over the
 * whole map, p = ra.head(pooled) (declared an auxiliary output), z' = ra(z, p). `name` is the
 * block's module name (nodes "<name>.ra_head", "<name>.ra"). Returns z'; *aux = p's buffer.
 * The fc is bound afterwards with al_ra_bind_fc (the final Linear comes last in the
 * state_dict, as in the reference). */
int al_ra_attach(al_model *m, const char *name, int z, int *aux);
/* Point every ra / ra.head node at the shared classifier parameters (indices into m->params:
 * weight (K, C), bias (K)). Asserts the shapes. */
void al_ra_bind_fc(al_model *m, int w_param, int b_param);
/* Number of ra nodes in m (0: not an RA arch). */
int al_ra_count(const al_model *m);
/* Mask mode of evaluation forwards for every ra node (AL_RA_MASK_*): the model-level flag set
 * from [ancra] eval_mask. Train-mode forwards with labels always use the labels. */
void al_ra_set_eval_mask(al_model *m, int mode);
int al_ra_eval_mask(const al_model *m); /* the current mode (PREDICTED when no ra node) */

#ifdef __cplusplus
}
#endif
#endif
