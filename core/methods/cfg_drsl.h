/* [drsl] keys: the distribution-restrained softmax loss term (methods.md §4), added to the CE
 * of standard/pgd_at/fast_at or to TRADES' CE. Owned by losses/drsl.c. */
#define AL_CFG_DRSL(X, S)                                                                      \
    X(S, weight, DOUBLE, NONE, "0", 0, 1e6,                                                    \
      "b: weight of the non-label logit variance penalty (authors' default 1e-3); 0 = off")    \
    X(S, ce_weight, DOUBLE, NONE, "1", 0, 1e6, "a: weight of the CE term when DRSL is on")      \
    X(S, variant, ENUM, DRSL_VARIANT, "drslx", 0, 0,                                           \
      "drslx: centre = mean of the C-1 non-label logits; drsl: sum of them / C")
