/* bn_gate.h: learned per-example BN-branch selector (MultiBN, issue #7; design after Gated BN,
 * Liu et al., arXiv 2012.01654, which soft-routes one BN branch per perturbation type).
 * CPU reference: core/ops/bn_gate.c. CUDA twin: none yet (TODO(#7)): on a CUDA context the
 * gate nodes return AL_ERR_UNSUPPORTED; models without the gate never reach this code.
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

#ifdef __cplusplus
}
#endif
#endif
