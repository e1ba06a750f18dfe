/* [ancra] keys: ANCRA, TRADES base (methods.md §3; official argparse defaults). Owned by
 * core/methods/ancra.c. */
#define AL_CFG_ANCRA(X, S)                                                                     \
    X(S, zeta, DOUBLE, NONE, "3", 0, 1000, "weight of the asymmetric negative contrast term")  \
    X(S, cr_beta, DOUBLE, NONE, "2", 0, 1000, "weight of the auxiliary (reverse-attention) heads") \
    X(S, alpha, DOUBLE, NONE, "1.0", 0, 1,                                                     \
      "ANC asymmetry: alpha*ANC0(P_nat.detach, P_neg) + (1-alpha)*ANC0(P_neg.detach, P_nat)")   \
    X(S, strategy, ENUM, ANCRA_STRATEGY, "random_adv", 0, 0,                                   \
      "negative selection (random for epochs <= 10 whatever the strategy); *_adv = targeted "  \
      "PGD towards the anchor's label")                                                        \
    X(S, eval_mask, ENUM, ANCRA_MASK, "predicted", 0, 0,                                       \
      "reverse-attention mask at evaluation: predicted (argmax of the auxiliary head, as "     \
      "published) or fixed (straight-through: the mask's selection is not differentiated, "    \
      "for adaptive attacks)")
