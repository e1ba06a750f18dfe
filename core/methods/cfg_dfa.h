/* [dfa] keys: Dynamic Feature Aggregation (methods.md §1; official defaults). Owned by
 * core/methods/dfa.c. Row format: see config.h. */
#define AL_CFG_DFA(X, S)                                                                       \
    X(S, alpha, DOUBLE, NONE, "1.0", 1e-6, 1e6, "Beta(alpha, alpha) of the mixing weight lam")  \
    X(S, noise, DOUBLE, NONE, "0.05", 0, 10,                                                   \
      "std of the Gaussian noise added to the (detached) pivot target")                        \
    X(S, reset_momentum, BOOL, NONE, "1", 0, 0,                                                \
      "official quirk: the optimiser is rebuilt every epoch, so momentum restarts at 0")
