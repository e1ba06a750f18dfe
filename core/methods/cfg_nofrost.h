/* [nofrost] keys: NoFrost (methods.md §5.3). Owned by core/methods/nofrost.c. */
#define AL_CFG_NOFROST(X, S)                                                                   \
    X(S, lam, DOUBLE, NONE, "0.5", 0, 1, "loss = (1-lam) LSCE(clean) + lam LSCE(adversarial)")  \
    X(S, label_smoothing, DOUBLE, NONE, "0.1", 0, 1, "label smoothing of both CE terms")
