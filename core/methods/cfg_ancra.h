/* [ancra] keys: ANCRA, TRADES base (methods.md §3; official argparse defaults of
 * changzhang777/ANCRA train_CIFAR10_ResNet.py). Owned by core/methods/ancra.c. The training
 * attack (u_pgd) and the negatives' targeted PGD (t_pgd) take eps/alpha/steps from [attack]
 * (official: 8/255, 0.007, 10) and beta from train.beta (6). */
#define AL_CFG_ANCRA(X, S)                                                                     \
    X(S, zeta, DOUBLE, NONE, "3", 0, 1000, "weight of the asymmetric negative contrast term")  \
    X(S, cr_beta, DOUBLE, NONE, "2", 0, 1000,                                                  \
      "weight of the auxiliary (reverse-attention) heads: each of the n_aux heads enters the " \
      "loss and the attacks with cr_beta / n_aux")                                             \
    X(S, alpha, DOUBLE, NONE, "1.0", 0, 1,                                                     \
      "ANC asymmetry: alpha*ANC0(P_nat.detach, P_neg) + (1-alpha)*ANC0(P_neg.detach, P_nat)")   \
    X(S, strategy, ENUM, ANCRA_STRATEGY, "random_adv", 0, 0,                                   \
      "negative selection (random during the first random_epochs epochs whatever the "         \
      "strategy); *_adv = targeted PGD of the negative towards the anchor's label")            \
    X(S, random_epochs, INT, NONE, "10", 0, 1000000,                                           \
      "epochs of forced random negative selection (official: epoch <= 10, hard-coded)")        \
    X(S, eval_mask, ENUM, ANCRA_MASK, "predicted", 0, 0,                                       \
      "reverse-attention gradient at evaluation/attack time. predicted: as published (mask = " \
      "fc row of the auxiliary head's argmax; its selection gets no gradient, as autograd). "  \
      "fixed: the same forward (the deployed model is what is scored) with a straight-"        \
      "through backward that differentiates the selection through softmax(aux logits), for "   \
      "adaptive attacks. Training attacks always use predicted")
