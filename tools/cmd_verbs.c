/* cmd_verbs.c: the verb table of the advlab CLI (see cli.h). */
#include <stddef.h>

#include "tools/cli.h"

const al_verb al_verbs[] = {
    {"train", "train a model from an experiment config (INI + --set overrides)", al_cmd_train},
    {"attack", "attack a checkpoint on a dataset split; report clean/robust accuracy; --save", al_cmd_attack},
    {"eval", "evaluate clean (and PGD) accuracy of a checkpoint", al_cmd_eval},
    {"convert", "convert Fashion-MNIST/MNIST IDX or CIFAR-10/100 binaries to advlab HDF5", al_cmd_convert},
    {"bench", "time forward/backward and attack steps of a model on this machine", al_cmd_bench},
    {"info", "print a checkpoint's or dataset's contents and the parameter table of an arch", al_cmd_info},
    {"ood", "OOD detection of a checkpoint: in- vs out-of-distribution split (AUROC, FPR95, F1)", al_cmd_ood},
    {"meansparse", "insert MeanSparse into a checkpoint: statistics, alpha (fixed or sweep), exact/BPDA robust accuracy", al_cmd_meansparse},
    {NULL, NULL, NULL},
};
