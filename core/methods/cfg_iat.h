/* [iat] keys: Interpolated Adversarial Training (methods.md §5.4). Owned by core/methods/iat.c. */
#define AL_CFG_IAT(X, S)                                                                       \
    X(S, mixup_alpha, DOUBLE, NONE, "1.0", 1e-6, 1e6,                                          \
      "Beta(alpha, alpha) of the mixup weight, drawn separately for the clean and the "        \
      "adversarial half")
