/* [multibn] keys: AdvProp / MDProp / MultiBN (methods.md §5.1-5.2). Owned by
 * core/methods/multibn.c. Branch 0 is the main (clean) BN; MDProp/MultiBN: branch 1 = Linf
 * ([attack] eps/alpha/steps), branch 2 = L2 (l2_eps/l2_alpha, [attack] steps). */
#define AL_CFG_MULTIBN(X, S)                                                                   \
    X(S, test_branch, INT, NONE, "0", -1, 3,                                                   \
      "BN branch used at evaluation; -1 = the learned selector (multibn)")                     \
    X(S, random_target, BOOL, NONE, "1", 0, 0,                                                 \
      "advprop: attack towards a random target label t = (y + U{1..K-1}) mod K (Xie et al.; "  \
      "never the true label); 0 = untargeted")                                                 \
    X(S, l2_eps, FLOAT, NONE, "0.5", 0, 1000, "mdprop/multibn: L2 radius of the L2 branch")    \
    X(S, l2_alpha, FLOAT, NONE, "0.125", 0, 1000, "mdprop/multibn: L2 step size")              \
    X(S, gate_weight, DOUBLE, NONE, "1", 0, 1000,                                              \
      "multibn: weight of the selector's cross-entropy on the perturbation-type labels")       \
    X(S, gate_hard, BOOL, NONE, "0", 0, 0,                                                     \
      "multibn selector: 0 = soft routing (softmax-weighted BN branches, differentiable), "    \
      "1 = hard (argmax branch per example)")
