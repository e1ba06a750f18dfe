/* config.h: experiment configuration = INI file (inih) + `--set section.key=value` overrides.
 *
 * ONE schema table (AL_CFG_SECTIONS below) is the single source of truth: it generates the typed
 * struct `al_config` (cfg.train.lr, cfg.attack.eps, ...), the parser, range checks, the
 * resolved INI/JSON text and the --help listing. Adding a key = adding one row.
 *
 * Value syntax (file and --set alike):
 *   int, int64   decimal integer (strtoll, whole string consumed), range-checked
 *   float,double decimal number (strtod, whole string consumed, finite) or a fraction "a/b"
 *                such as eps = 8/255 (computed in double, then stored); range-checked
 *   bool         0/1, true/false, yes/no, on/off (case-insensitive); written back as 0/1
 *   enum         one of the listed words (case-insensitive); written back in canonical case
 *   string       the text after '=' with surrounding blanks removed (inih), <= 255 bytes,
 *                no control characters and no " ;" (which INI reads as a comment)
 *   ilist/flist  comma-separated numbers ("100,150", "0.4914,0.4822,0.4465"); empty = no
 *                elements; every element range-checked; at most AL_CFG_LIST_MAX elements
 * Comments: lines starting with ';' or '#', and inline after " ;".
 *
 * Errors are one line naming WHERE (file:line or --set), the key, the value and the problem:
 *   "exp.ini:12: train.lr = -0.1: must be in [0, 10]"
 *   "--set: train.methd = pgd: unknown key train.methd (did you mean train.method?)"
 * Unknown section/key, a key given twice in one file, and syntax errors are AL_ERR_CONFIG;
 * malformed or out-of-range values AL_ERR_VALUE; an unreadable file AL_ERR_IO. */
#ifndef AL_CONFIG_H
#define AL_CONFIG_H

#include <stdio.h>

#include "core/base.h"
#include "core/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

#define AL_CFG_STR_LEN 256 /* bytes incl. NUL */
#define AL_CFG_LIST_MAX 16

typedef char al_cfg_str[AL_CFG_STR_LEN];
typedef struct al_cfg_ilist {
    int n;
    int v[AL_CFG_LIST_MAX];
} al_cfg_ilist;
typedef struct al_cfg_flist {
    int n;
    float v[AL_CFG_LIST_MAX];
} al_cfg_flist;

/* ---- enum value lists: V(C constant, "config word"); order = C value order ---- */
#define AL_CFG_E_DEVICE(V) V(AL_DEV_CPU, "cpu") V(AL_DEV_CUDA, "cuda")
#define AL_CFG_E_PRECISION(V) V(AL_FP32, "fp32") V(AL_TF32, "tf32") V(AL_BF16, "bf16")
#define AL_CFG_E_LAYOUT(V) V(AL_NCHW, "nchw") V(AL_NHWC, "nhwc")
#define AL_CFG_E_AUGMENT(V) V(AL_AUG_NONE, "none") V(AL_AUG_CROP_FLIP, "crop_flip")
#define AL_CFG_E_METHOD(V) AL_CFG_E_METHOD_BASE_(V) AL_CFG_E_METHOD_SEED_(V)
#define AL_CFG_E_METHOD_SEED_(V)                                                                   \
    V(AL_METHOD_ADVPROP, "advprop") V(AL_METHOD_MDPROP, "mdprop") V(AL_METHOD_MULTIBN, "multibn") \
    V(AL_METHOD_IAT, "iat") V(AL_METHOD_DFA, "dfa") V(AL_METHOD_ANCRA, "ancra")                     \
    V(AL_METHOD_NOFROST, "nofrost")
#define AL_CFG_E_METHOD_BASE_(V)                                                                   \
    V(AL_METHOD_STANDARD, "standard") V(AL_METHOD_PGD_AT, "pgd_at")                                \
    V(AL_METHOD_FAST_AT, "fast_at") V(AL_METHOD_TRADES, "trades") V(AL_METHOD_MART, "mart")
#define AL_CFG_E_SCHEDULE(V)                                                                       \
    V(AL_LR_CONSTANT, "constant") V(AL_LR_MULTISTEP, "multistep") V(AL_LR_COSINE, "cosine")        \
    V(AL_LR_CYCLIC, "cyclic") V(AL_LR_ONECYCLE, "onecycle")
#define AL_CFG_E_BN_MODE(V)                                                                        \
    V(AL_BN_ATTACK_AUTO, "auto") V(AL_BN_ATTACK_EVAL, "eval") V(AL_BN_ATTACK_TRAIN, "train")       \
    V(AL_BN_ATTACK_TRAIN_NO_UPDATE, "train_no_update")
/* Values equal attacks/pgd_step.h al_norm (AL_LINF = 0, AL_L2 = 1). */
#define AL_CFG_E_NORM(V) V(AL_NORM_LINF, "linf") V(AL_NORM_L2, "l2")
#define AL_CFG_E_RINIT(V)                                                                          \
    V(AL_RINIT_AUTO, "auto") V(AL_RINIT_UNIFORM, "uniform") V(AL_RINIT_NORMAL, "normal_0.001")     \
    V(AL_RINIT_NONE, "none")
#define AL_CFG_E_RINIT_EVAL(V)                                                                     \
    V(AL_RINIT_UNIFORM, "uniform") V(AL_RINIT_NORMAL, "normal_0.001") V(AL_RINIT_NONE, "none")
#define AL_CFG_E_EVAL_ATTACK(V)                                                                    \
    V(AL_EVAL_NONE, "none") V(AL_EVAL_FGSM, "fgsm") V(AL_EVAL_PGD, "pgd") V(AL_EVAL_CW, "cw")      \
    V(AL_EVAL_APGD_CE, "apgd-ce") V(AL_EVAL_APGD_DLR, "apgd-dlr") V(AL_EVAL_APGD_T, "apgd-t")     \
    V(AL_EVAL_FAB, "fab") V(AL_EVAL_FAB_T, "fab-t") V(AL_EVAL_SQUARE, "square")                    \
    V(AL_EVAL_AUTOATTACK, "autoattack")
#define AL_CFG_E_AA_VERSION(V)                                                                     \
    V(AL_AAV_STANDARD, "standard") V(AL_AAV_PLUS, "plus") V(AL_AAV_RAND, "rand")                  \
    V(AL_AAV_CUSTOM, "custom")
#define AL_CFG_E_ANCRA_STRATEGY(V)                                                                 \
    V(AL_ANCRA_RANDOM, "random") V(AL_ANCRA_RANDOM_ADV, "random_adv") V(AL_ANCRA_HARD, "hard")     \
    V(AL_ANCRA_HARD_ADV, "hard_adv") V(AL_ANCRA_SOFT, "soft") V(AL_ANCRA_SOFT_ADV, "soft_adv")     \
    V(AL_ANCRA_EASY, "easy") V(AL_ANCRA_EASY_ADV, "easy_adv")
#define AL_CFG_E_ANCRA_MASK(V) V(AL_ANCRA_MASK_PREDICTED, "predicted") V(AL_ANCRA_MASK_FIXED, "fixed")
#define AL_CFG_E_DRSL_VARIANT(V) V(AL_DRSL_X, "drslx") V(AL_DRSL_C, "drsl")
#define AL_CFG_E_MS_BACKWARD(V) V(AL_MS_EXACT, "exact") V(AL_MS_BPDA, "bpda")
#define AL_CFG_E_LOSS(V) V(AL_LOSS_CE, "ce") V(AL_LOSS_CW, "cw")

#define AL_CFG_ENUM_CONST_(c, s) c,
typedef enum al_augment { AL_CFG_E_AUGMENT(AL_CFG_ENUM_CONST_) } al_augment;
typedef enum al_method { AL_CFG_E_METHOD(AL_CFG_ENUM_CONST_) } al_method;
typedef enum al_lr_schedule { AL_CFG_E_SCHEDULE(AL_CFG_ENUM_CONST_) } al_lr_schedule;
/* BN mode of the forwards inside training-time attack generation (methods.md §7.1):
 * eval = running stats; train = batch stats AND running stats updated by every attack
 * forward; train_no_update = batch stats, running stats untouched. */
typedef enum al_bn_attack { AL_CFG_E_BN_MODE(AL_CFG_ENUM_CONST_) } al_bn_attack;
typedef enum al_cfg_norm { AL_CFG_E_NORM(AL_CFG_ENUM_CONST_) } al_cfg_norm;
/* Attack random start: uniform = U(-eps, eps) (Linf; L2: uniform direction, radius
 * U(0, eps)); normal_0.001 = 0.001 * N(0, 1) (TRADES/MART); none = start at x. */
typedef enum al_rand_init { AL_CFG_E_RINIT(AL_CFG_ENUM_CONST_) } al_rand_init;
/* cw = PGD on the CW margin loss (same as pgd with eval.loss = cw). */
typedef enum al_eval_attack { AL_CFG_E_EVAL_ATTACK(AL_CFG_ENUM_CONST_) } al_eval_attack;
typedef enum al_aa_version_cfg { AL_CFG_E_AA_VERSION(AL_CFG_ENUM_CONST_) } al_aa_version_cfg;
typedef enum al_attack_loss { AL_CFG_E_LOSS(AL_CFG_ENUM_CONST_) } al_attack_loss;
typedef enum al_ancra_strategy { AL_CFG_E_ANCRA_STRATEGY(AL_CFG_ENUM_CONST_) } al_ancra_strategy;
typedef enum al_ancra_mask { AL_CFG_E_ANCRA_MASK(AL_CFG_ENUM_CONST_) } al_ancra_mask;
typedef enum al_drsl_variant { AL_CFG_E_DRSL_VARIANT(AL_CFG_ENUM_CONST_) } al_drsl_variant;
typedef enum al_ms_backward { AL_CFG_E_MS_BACKWARD(AL_CFG_ENUM_CONST_) } al_ms_backward;

/* C type of an enum field, by list name. */
#define AL_CFG_ETYPE_DEVICE al_device
#define AL_CFG_ETYPE_PRECISION al_precision
#define AL_CFG_ETYPE_LAYOUT al_layout
#define AL_CFG_ETYPE_AUGMENT al_augment
#define AL_CFG_ETYPE_METHOD al_method
#define AL_CFG_ETYPE_SCHEDULE al_lr_schedule
#define AL_CFG_ETYPE_BN_MODE al_bn_attack
#define AL_CFG_ETYPE_NORM al_cfg_norm
#define AL_CFG_ETYPE_RINIT al_rand_init
#define AL_CFG_ETYPE_RINIT_EVAL al_rand_init
#define AL_CFG_ETYPE_EVAL_ATTACK al_eval_attack
#define AL_CFG_ETYPE_AA_VERSION al_aa_version_cfg
#define AL_CFG_ETYPE_LOSS al_attack_loss
#define AL_CFG_ETYPE_ANCRA_STRATEGY al_ancra_strategy
#define AL_CFG_ETYPE_ANCRA_MASK al_ancra_mask
#define AL_CFG_ETYPE_DRSL_VARIANT al_drsl_variant
#define AL_CFG_ETYPE_MS_BACKWARD al_ms_backward
/* Every enum list, for config.c's string tables. */
#define AL_CFG_ENUMS(L)                                                                            \
    L(DEVICE) L(PRECISION) L(LAYOUT) L(AUGMENT) L(METHOD) L(SCHEDULE) L(BN_MODE) L(NORM)          \
    L(RINIT) L(RINIT_EVAL) L(EVAL_ATTACK) L(LOSS) L(ANCRA_STRATEGY) L(ANCRA_MASK) L(DRSL_VARIANT) L(MS_BACKWARD) L(AA_VERSION)

/* ======================================================================================
 * THE SCHEMA. Row: X(S, key, TYPE, ENUM-LIST|NONE, "default (config syntax)", min, max, help)
 * min/max bound numbers (list elements too); ignored for bool/enum/string.
 * Defaults follow the canonical PreActResNet-18 PGD-AT recipe (Rice et al., methods.md §6.1);
 * experiments/<paper>/<row>.ini override per method (TRADES eps 0.031/alpha 0.007, ...).
 * ====================================================================================== */
#define AL_CFG_RUN(X, S)                                                                           \
    X(S, name, STR, NONE, "run", 0, 0,                                                             \
      "run name; outputs go to <out_dir>/<name>/ (non-empty, no '/')")                             \
    X(S, out_dir, STR, NONE, "runs", 0, 0, "directory holding run directories")                    \
    X(S, seed, INT64, NONE, "0", 0, 9007199254740992.0,                                            \
      "Philox key of the run: init, shuffling, augmentation, attack starts (<= 2^53: exact in "    \
      "JSON)")                                                                                     \
    X(S, device, ENUM, DEVICE, "cpu", 0, 0, "backend: cpu (reference) or cuda")                    \
    X(S, threads, INT, NONE, "0", 0, 4096, "CPU OpenMP threads; 0 = OpenMP default")               \
    X(S, deterministic, BOOL, NONE, "1", 0, 0,                                                     \
      "deterministic algorithms only (cuDNN); CPU is always deterministic")                        \
    X(S, precision, ENUM, PRECISION, "fp32", 0, 0,                                                 \
      "fp32; tf32 (GPU: TF32 tensor cores, fp32 storage); bf16 activations, fp32 weights (CPU: a slow reference)") \
    X(S, layout, ENUM, LAYOUT, "nchw", 0, 0,                                                       \
      "cuda: activation layout of conv/BN/ReLU/add/pool: nchw, or nhwc (channels last, cuDNN's "   \
      "tensor-core layout; weights stay OIHW in checkpoints)")                                     \
    X(S, cuda_graphs, BOOL, NONE, "1", 0, 0,                                                       \
      "cuda: replay the FGSM/PGD iteration as a CUDA graph (fewer launches, same results)")      \
    X(S, log_every, INT, NONE, "50", 1, 1000000000, "optimiser steps between step records")        \
    X(S, checkpoint_every, INT, NONE, "10", 0, 1000000,                                            \
      "epochs between checkpoints; 0 = only the final one")                                        \
    X(S, eval_every, INT, NONE, "1", 0, 1000000,                                                   \
      "epochs between test-set evaluations ([eval]); 0 = only after the last epoch")

#define AL_CFG_DATA(X, S)                                                                          \
    X(S, dataset, STR, NONE, "", 0, 0, "dataset file (.h5, see formats.md); required to train")    \
    X(S, train_split, STR, NONE, "train", 0, 0, "split trained on")                                \
    X(S, test_split, STR, NONE, "test", 0, 0, "split evaluated on")                                \
    X(S, n_train, INT64, NONE, "0", 0, 1e12, "use the first n training rows; 0 = all")             \
    X(S, n_test, INT64, NONE, "0", 0, 1e12, "use the first n test rows; 0 = all")                  \
    X(S, augment, ENUM, AUGMENT, "crop_flip", 0, 0,                                                \
      "training augmentation: none, or random crop (zero padding crop_pad) + horizontal flip")     \
    X(S, crop_pad, INT, NONE, "4", 0, 64, "zero padding of the random crop, pixels")               \
    X(S, batch_size, INT, NONE, "128", 1, 1048576, "GLOBAL training batch (split over ranks)")     \
    X(S, eval_batch_size, INT, NONE, "256", 1, 1048576, "global evaluation/attack batch")          \
    X(S, shuffle, BOOL, NONE, "1", 0, 0, "reshuffle the training set every epoch")                 \
    X(S, drop_last, BOOL, NONE, "0", 0, 0,                                                         \
      "drop the last incomplete training batch (PyTorch DataLoader default: 0)")

#define AL_CFG_MODEL(X, S)                                                                         \
    X(S, arch, STR, NONE, "preact_resnet18", 0, 0,                                                 \
      "architecture: smallcnn, preact_resnet18, resnet18, wrn-D-W (e.g. wrn-34-10)")               \
    X(S, num_classes, INT, NONE, "0", 0, 1000000, "classes; 0 = the dataset's num_classes")        \
    X(S, mean, FLIST, NONE, "", -10, 10,                                                           \
      "per-channel input mean, inside the model: (x - mean) / std; empty = 0")                     \
    X(S, std, FLIST, NONE, "", 1e-6, 1e6, "per-channel input std; empty = 1")                      \
    X(S, bn_branches, INT, NONE, "1", 1, 4,                                                        \
      "BN parameter branches per BN layer (AdvProp/MultiBN); 1 = plain BN")

#define AL_CFG_TRAIN(X, S)                                                                         \
    X(S, method, ENUM, METHOD, "pgd_at", 0, 0,                                                     \
      "training objective: standard (clean CE), pgd_at (Madry), fast_at (FGSM + random init, "     \
      "Wong et al.), trades, mart")                                                                \
    X(S, epochs, INT, NONE, "200", 1, 1000000, "training epochs")                                  \
    X(S, lr, DOUBLE, NONE, "0.1", 0, 10,                                                           \
      "base learning rate (constant/multistep start, cosine start; cyclic/onecycle peak when "     \
      "lr_max = 0)")                                                                               \
    X(S, momentum, DOUBLE, NONE, "0.9", 0, 1,                                                      \
      "SGD momentum (dampening 0); with cycle_momentum the maximum")                               \
    X(S, nesterov, BOOL, NONE, "0", 0, 0, "Nesterov momentum (PyTorch formulation)")               \
    X(S, weight_decay, DOUBLE, NONE, "5e-4", 0, 1,                                                 \
      "L2 penalty added to the gradient (PyTorch SGD) of every trainable parameter")               \
    X(S, lr_schedule, ENUM, SCHEDULE, "multistep", 0, 0,                                           \
      "constant | multistep (x gamma at each milestone epoch) | cosine (lr -> 0 over all "         \
      "steps) | cyclic (0 -> peak at half -> 0, per step) | onecycle (PyTorch OneCycleLR)")        \
    X(S, milestones, ILIST, NONE, "100,150", 1, 1000000,                                           \
      "multistep: epochs (strictly increasing) at whose start lr is multiplied by gamma")          \
    X(S, gamma, DOUBLE, NONE, "0.1", 0, 1, "multistep decay factor")                               \
    X(S, warmup_epochs, DOUBLE, NONE, "0", 0, 1000000,                                             \
      "linear warm-up (may be fractional): the schedule is scaled by (step+1)/W for the first "    \
      "W = round(warmup_epochs * steps_per_epoch) steps")                                          \
    X(S, lr_max, DOUBLE, NONE, "0", 0, 10, "cyclic/onecycle peak lr; 0 = train.lr")                \
    X(S, onecycle_pct_start, DOUBLE, NONE, "0.3", 0.01, 0.99,                                      \
      "onecycle: fraction of the steps spent increasing lr")                                       \
    X(S, onecycle_div, DOUBLE, NONE, "25", 1, 1e6, "onecycle: initial lr = peak / onecycle_div")   \
    X(S, onecycle_final_div, DOUBLE, NONE, "1e4", 1, 1e9,                                          \
      "onecycle: final lr = initial lr / onecycle_final_div")                                      \
    X(S, cycle_momentum, BOOL, NONE, "0", 0, 0,                                                    \
      "cyclic/onecycle: momentum moves opposite to lr between momentum_min and momentum, as "      \
      "PyTorch CyclicLR/OneCycleLR do by default (fast_adversarial: 0.9 -> 0.8 -> 0.9)")           \
    X(S, momentum_min, DOUBLE, NONE, "0.85", 0, 1,                                                 \
      "cycle_momentum: momentum at peak lr (OneCycleLR default 0.85, CyclicLR 0.8)")               \
    X(S, ema, BOOL, NONE, "0", 0, 0,                                                               \
      "keep an exponential moving average of the weights (BN buffers copied, not averaged)")       \
    X(S, ema_decay, DOUBLE, NONE, "0.999", 0, 1, "EMA: e = d * e + (1 - d) * w every step")        \
    X(S, beta, DOUBLE, NONE, "6", 0, 1000, "TRADES/MART weight of the KL term")                    \
    X(S, bn_mode_attack, ENUM, BN_MODE, "auto", 0, 0,                                              \
      "BN mode while generating training attacks; auto = per method: pgd_at, fast_at -> "          \
      "train; trades, mart, standard -> eval")                                                     \
    X(S, grad_clip, DOUBLE, NONE, "0", 0, 1e9,                                                     \
      "clip the global L2 norm of the gradient to this value; 0 = off")                            \
    X(S, max_steps, INT64, NONE, "0", 0, 1e15,                                                     \
      "stop after this many optimiser steps (tests); 0 = all; the schedule is unchanged")

#define AL_CFG_ATTACK(X, S)                                                                        \
    X(S, norm, ENUM, NORM, "linf", 0, 0, "training attack threat model")                           \
    X(S, eps, FLOAT, NONE, "8/255", 0, 1000, "training attack radius (pixels in [0, 1])")          \
    X(S, alpha, FLOAT, NONE, "2/255", 0, 1000, "training attack step size")                        \
    X(S, steps, INT, NONE, "10", 1, 100000,                                                        \
      "training attack steps (fast_at: 1 step of alpha, e.g. 10/255)")                             \
    X(S, random_init, ENUM, RINIT, "auto", 0, 0,                                                   \
      "random start; auto = per method: pgd_at, fast_at -> uniform; trades, mart -> "              \
      "normal_0.001; standard -> none")                                                            \
    X(S, restarts, INT, NONE, "1", 1, 1000, "training attack restarts (max-loss kept)")

#define AL_CFG_EVAL(X, S)                                                                          \
    X(S, attack, ENUM, EVAL_ATTACK, "pgd", 0, 0,                                                   \
      "evaluation attack: none (clean only), fgsm, pgd, cw (PGD on the CW margin loss)")           \
    X(S, norm, ENUM, NORM, "linf", 0, 0, "evaluation threat model")                                \
    X(S, eps, FLOAT, NONE, "8/255", 0, 1000, "evaluation radius (pixels in [0, 1])")               \
    X(S, alpha, FLOAT, NONE, "2/255", 0, 1000, "evaluation step size")                             \
    X(S, steps, INT, NONE, "20", 1, 100000, "evaluation attack steps (fgsm: ignored)")             \
    X(S, restarts, INT, NONE, "1", 1, 1000, "random restarts (a point counts robust only if "      \
      "it survives all)")                                                                          \
    X(S, random_init, ENUM, RINIT_EVAL, "uniform", 0, 0, "evaluation random start")                \
    X(S, n_points, INT64, NONE, "0", 0, 1e12,                                                      \
      "attack the first n test points (after data.n_test); 0 = all")                               \
    X(S, loss, ENUM, LOSS, "ce", 0, 0, "loss ascended: ce or cw (margin); attack = cw => cw")      \
    X(S, targeted, BOOL, NONE, "0", 0, 0, "targeted attack (descend towards a target class)") \
    X(S, version, ENUM, AA_VERSION, "standard", 0, 0,                                          \
      "AutoAttack version: standard (apgd-ce, apgd-t, fab-t, square), plus, rand (EOT 20), "   \
      "custom (eval.attacks)")                                                                 \
    X(S, attacks, STR, NONE, "", 0, 0,                                                         \
      "AutoAttack custom list: apgd-ce, apgd-dlr, apgd-t, fab, fab-t, square (comma-separated)") \
    X(S, state_path, STR, NONE, "", 0, 0, "AutoAttack resumable state file; empty = none")     \
    X(S, state_every, DOUBLE, NONE, "60", 0, 1e9, "seconds between state saves inside an attack") \
    X(S, apgd_iter, INT, NONE, "100", 1, 1000000, "APGD iterations per run")                   \
    X(S, apgd_restarts, INT, NONE, "0", 0, 1000,                                               \
      "APGD-CE/DLR restarts; 0 = per version (standard 1, plus 5)")                            \
    X(S, n_target_classes, INT, NONE, "9", 1, 100000, "APGD-T / FAB-T target classes")         \
    X(S, eot_iter, INT, NONE, "0", 0, 100000, "EOT passes; 0 = per version (rand 20, else 1)") \
    X(S, fab_iter, INT, NONE, "100", 1, 1000000, "FAB iterations")                             \
    X(S, square_queries, INT, NONE, "5000", 1, 100000000, "Square queries")

/* Per-method sections, one file each (owned by the method's implementation). */
#include "core/methods/cfg_ancra.h"
#include "core/methods/cfg_dfa.h"
#include "core/methods/cfg_drsl.h"
#include "core/methods/cfg_iat.h"
#include "core/methods/cfg_meansparse.h"
#include "core/methods/cfg_multibn.h"
#include "core/methods/cfg_nofrost.h"

/* Sections in file order: S(name, key-list macro). */
#define AL_CFG_SECTIONS(S)                                                                         \
    S(run, AL_CFG_RUN) S(data, AL_CFG_DATA) S(model, AL_CFG_MODEL) S(train, AL_CFG_TRAIN)          \
    S(attack, AL_CFG_ATTACK) S(eval, AL_CFG_EVAL) \
    S(dfa, AL_CFG_DFA) S(ancra, AL_CFG_ANCRA) S(drsl, AL_CFG_DRSL) S(iat, AL_CFG_IAT)         \
    S(multibn, AL_CFG_MULTIBN) S(nofrost, AL_CFG_NOFROST) S(meansparse, AL_CFG_MEANSPARSE)

/* ---- the generated struct ---- */
#define AL_CFG_CTYPE_INT(E) int
#define AL_CFG_CTYPE_INT64(E) int64_t
#define AL_CFG_CTYPE_FLOAT(E) float
#define AL_CFG_CTYPE_DOUBLE(E) double
#define AL_CFG_CTYPE_STR(E) al_cfg_str
#define AL_CFG_CTYPE_BOOL(E) int
#define AL_CFG_CTYPE_ENUM(E) AL_CFG_ETYPE_##E
#define AL_CFG_CTYPE_ILIST(E) al_cfg_ilist
#define AL_CFG_CTYPE_FLIST(E) al_cfg_flist
#define AL_CFG_FIELD_(S, key, T, E, def, lo, hi, help) AL_CFG_CTYPE_##T(E) key;
#define AL_CFG_SECTION_STRUCT_(sec, LIST)                                                          \
    typedef struct al_cfg_##sec {                                                                  \
        LIST(AL_CFG_FIELD_, sec)                                                                   \
    } al_cfg_##sec;
AL_CFG_SECTIONS(AL_CFG_SECTION_STRUCT_)
#define AL_CFG_SECTION_MEMBER_(sec, LIST) al_cfg_##sec sec;
/* cfg.run, cfg.data, cfg.model, cfg.train, cfg.attack, cfg.eval: one typed field per key. */
typedef struct al_config {
    AL_CFG_SECTIONS(AL_CFG_SECTION_MEMBER_)
} al_config;

/* ---- the table, for code that iterates keys (CLI flags, docs) ---- */
typedef enum al_cfg_type {
    AL_CFG_T_INT, AL_CFG_T_INT64, AL_CFG_T_FLOAT, AL_CFG_T_DOUBLE, AL_CFG_T_STR,
    AL_CFG_T_BOOL, AL_CFG_T_ENUM, AL_CFG_T_ILIST, AL_CFG_T_FLIST
} al_cfg_type;
typedef struct al_cfg_key {
    const char *section, *key;
    al_cfg_type type;
    const char *const *enum_names; /* ENUM: n_enum words */
    const int *enum_vals;          /* ENUM: the C value of each word */
    int n_enum;
    const char *def;               /* default, config syntax */
    double min, max;
    const char *help;
    size_t offset;                 /* of the field in al_config */
} al_cfg_key;
const al_cfg_key *al_config_keys(int *n_keys);
const char *al_cfg_type_name(al_cfg_type t); /* "int", "double", "enum", ... */

/* ---- functions ---- */
/* Every key to its default. Cannot fail (defaults are checked by the tests). */
void al_config_defaults(al_config *cfg);

/* Apply an INI file on top of cfg (keys not in the file keep their value). Stops at the first
 * error; cfg is then partly updated (callers abort). */
al_status al_config_load_file(al_config *cfg, const char *path);
/* Same, from text in memory; `name` is used in messages in place of a file name. */
al_status al_config_load_string(al_config *cfg, const char *text, const char *name);

/* Apply one override "section.key=value" (blanks around key and value are trimmed). Errors
 * name "--set". */
al_status al_config_set(al_config *cfg, const char *assignment);

/* Cross-field checks, then resolve "auto" values per method (bn_mode_attack, random_init)
 * and eval.attack = cw => eval.loss = cw, so the struct (and to_ini/to_json) is fully
 * resolved. Errors: AL_ERR_VALUE, "config: train.nesterov = 1 requires train.momentum > 0". */
al_status al_config_validate(al_config *cfg);
/* The run's execution settings into an initialised context, before any model setup:
 * run.deterministic, run.precision, run.layout, run.cuda_graphs (the backend, threads and seed
 * go to al_ctx_init). */
void al_config_apply_ctx(const al_config *cfg, al_ctx *ctx);

/* The usual sequence: defaults, then `path` (may be NULL), then each of `sets` in order (so
 * --set always wins over the file, whatever the argv order), then validate. */
al_status al_config_from_args(al_config *cfg, const char *path, const char *const *sets,
                              int n_sets);

/* Fully resolved INI text (every key, one per line; reloading it gives an identical struct).
 * *out is malloc'd (free with al_free). */
al_status al_config_to_ini(const al_config *cfg, char **out);
/* {"run":{"name":"run",...},"data":{...},...}: enums as strings, bools as true/false, lists
 * as arrays. *out malloc'd. */
al_status al_config_to_json(const al_config *cfg, char **out);
/* Value of one key in config syntax (shortest text that parses back to the same value). */
al_status al_config_get(const al_config *cfg, const char *section_dot_key, char *buf, size_t n);

/* 1 when every field is equal; otherwise 0 and, if diff != NULL, the first differing key as
 * "train.lr: 0.1 vs 0.2" (e.g. to compare a resumed run's config with the checkpoint's). */
int al_config_equal(const al_config *a, const al_config *b, char *diff, size_t diff_len);

/* --help: every key with type, default, range or allowed words, and help text. */
void al_config_print_help(FILE *f);

/* Word of an enum value of a given key ("train.method", AL_METHOD_TRADES -> "trades"). */
const char *al_config_enum_name(const char *section_dot_key, int value);

#ifdef __cplusplus
}
#endif
#endif
