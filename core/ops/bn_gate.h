/* bn_gate.h: learned per-example BN-branch selector (MultiBN, issue #7; design after Gated BN,
 * Liu et al., arXiv 2012.01654, which soft-routes one BN branch per perturbation type).
 * CPU reference: core/ops/bn_gate.c. CUDA twin: cuda/op_bn_gate.cu (the entry points below).
 *
 * al_bn_gate_attach rewrites a built multi-branch model BEFORE al_model_setup:
 *   a   = input of the first BN node, (N, C, H, W) (the first conv's output in every arch here)
 *   f   = bn_gate.stats(a)            (N, 2C): per-channel spatial mean and sqrt(var + 1e-5)
 *   z   = bn_gate.fc(f)               (N, B) gate logits, B = n_branches (aux output)
 *   p   = bn_gate.softmax(z)          (N, B): softmax, or one-hot argmax in hard mode
 *   every BN node becomes a gated BN node reading (x, p):
 *     train mode, or eval mode on an explicit branch b:  exactly the plain BN of branch b
 *       (same ops, same running-stat updates and num_batches_tracked counters);
 *     eval mode on branch 0 with m->eval_branch == -1 ("routed"):
 *       y[i] = sum_b p[i,b] * (gamma_b (x[i] - rm_b) / sqrt(rv_b + eps) + beta_b)
 *       (hard mode: p one-hot, i.e. each example runs through its argmax branch);
 *     eval mode on branch 0 with m->eval_branch = b > 0: branch b (so attacks that pass
 *       branch 0 evaluate the configured test branch).
 * Backward (routed): dx = sum_b p_b gamma_b invstd_b dy ('=' or '+=' per the executor),
 * dgamma_b/dbeta_b '+=' weighted by p_b, dp[i,b] = <dy_i, BN_b(x_i)> into the gate ('=' or '+='
 * per the executor); the soft gate is differentiable end to end, so gradient attacks see the
 * routing (the hard gate passes no gradient to z). New parameters: bn_gate.fc.weight (B, 2C),
 * bn_gate.fc.bias (B), appended after the trunk's, so the trunk's init is unchanged. */
#ifndef AL_OP_BN_GATE_H
#define AL_OP_BN_GATE_H

#include "core/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Attach the gate (hard = 0 soft routing, 1 argmax routing) to a built, not yet set-up model
 * with n_branches >= 2 and at least one BN node. AL_ERR_VALUE (naming the model) otherwise. */
al_status al_bn_gate_attach(al_model *m, int hard);
/* 1 if the model carries the gate. */
int al_bn_gate_present(const al_model *m);
/* Buffer id of the gate logits (N, n_branches), -1 without a gate. */
int al_bn_gate_logits_buf(const al_model *m);
/* Switch soft/hard routing (between forwards). */
void al_bn_gate_set_hard(al_model *m, int hard);
/* 0 = no gate, 1 = soft routing, 2 = hard routing (what a checkpoint records to rebuild it). */
int al_bn_gate_mode(const al_model *m);
/* 1 for a BN node, built-in or gated (num_batches_tracked per branch, running statistics). */
int al_bn_gate_is_bn_node(const al_node *nd);

/* Method glue (implemented in core/methods/multibn.c): everything the [multibn] config asks of
 * the model before al_model_setup (attach the gate for train.method = multibn with
 * multibn.test_branch = -1) and the evaluation branch (m->eval_branch = test_branch for
 * advprop/mdprop/multibn). A no-op for other methods. Call after building the model with
 * al_model_create_opts(.., {model.bn_branches}) and before al_model_setup, in the trainer and
 * wherever a checkpoint's model is rebuilt from its stored config. */
struct al_config;
al_status al_multibn_build(al_model *m, const struct al_config *cfg);

/* A gated BN node's branch parameters for the CUDA twin (device pointers). */
typedef struct al_gbn_branches {
    int n_branches;
    float eps;
    const float *gamma[AL_MAX_BN_BRANCHES], *beta[AL_MAX_BN_BRANCHES];
    const float *rmean[AL_MAX_BN_BRANCHES], *rvar[AL_MAX_BN_BRANCHES];
    float *dgamma[AL_MAX_BN_BRANCHES], *dbeta[AL_MAX_BN_BRANCHES]; /* NULL: not wanted */
} al_gbn_branches;

#ifdef AL_HAVE_CUDA
/* CUDA twins of the three gate nodes (cuda/op_bn_gate.cu); device pointers, no sync. Shapes
 * and write modes as the CPU nodes in bn_gate.c: x (N, C, HW), stats y (N, 2C), z / p (N, B). */
al_status al_bn_gate_stats_forward_cuda(al_ctx *ctx, int n, int c, int hw, const float *x,
                                        float *y);
al_status al_bn_gate_stats_backward_cuda(al_ctx *ctx, int n, int c, int hw, const float *x,
                                         const float *y, const float *dy, float *dx, int acc);
al_status al_bn_gate_softmax_forward_cuda(al_ctx *ctx, int n, int b, int hard, const float *z,
                                          float *p);
al_status al_bn_gate_softmax_backward_cuda(al_ctx *ctx, int n, int b, int hard, const float *p,
                                           const float *dp, float *dz, int acc);
/* Routed (per-example mixture) gated BN. Scratch: forward 3 C B floats, backward 2 N C doubles. */
al_status al_gated_bn_forward_cuda(al_ctx *ctx, int n, int c, int hw, const al_gbn_branches *br,
                                   const float *x, const float *p, float *y);
al_status al_gated_bn_backward_cuda(al_ctx *ctx, int n, int c, int hw, const al_gbn_branches *br,
                                    const float *x, const float *p, const float *dy, float *dx,
                                    int acc0, float *dp, int acc1);
#endif

#ifdef __cplusplus
}
#endif
#endif
