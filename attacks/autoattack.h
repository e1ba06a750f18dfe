/* autoattack.h: the AutoAttack evaluation protocol (Croce & Hein 2020; fra31/auto-attack
 * autoattack.py, checks.py, state.py read for the protocol; not copied). See
 * the design notes (evaluation.md A.3/A.4) for the exact settings.
 * Implementation: attacks/autoattack.c (host driver over attacks/apgd.h, fab.h, square.h;
 * resumable state in core/aa_state.h).
 *
 *   versions  standard  [apgd-ce, apgd-t, fab-t, square]: APGD 100 it, 1 restart; APGD-T 9
 *                       targets x 100 it x 1 restart; FAB-T 9 targets x 100 it; Square 5000
 *                       queries, p_init 0.8 (Linf and L2)
 *             plus      [apgd-ce, apgd-dlr, fab, square, apgd-t, fab-t], APGD and FAB 5 restarts
 *             rand      [apgd-ce, apgd-dlr], 1 restart, EOT over 20 passes
 *             custom    any list; settings as the reference's constructor (APGD and FAB 5
 *                       restarts, APGD-T 1 restart x 9 targets, Square 5000)
 * Each attack runs only on the points still robust (in batches of spec.batch, in index order);
 * a point is non-robust once any attack succeeds, verified by a fresh forward pass on the
 * returned image; x_adv keeps that image, and the clean input for every other point. After each
 * attack: "robust accuracy after APGD-CE: 47.12% (total time 12.3 s)". At the end: the
 * gradient-masking flags and the validity check of x_adv (max perturbation, non-finite values,
 * [0,1]).
 * Inputs and outputs are HOST arrays over all n points; each batch is staged to ctx's device.
 * The model must be set up for at least min(spec.batch, n) points; slot spec.fwd.slot is used. */
#ifndef AL_AUTOATTACK_H
#define AL_AUTOATTACK_H

#include "attacks/apgd.h"
#include "attacks/fab.h"
#include "attacks/square.h"
#include "core/aa_state.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum al_aa_attack {
    AL_AA_APGD_CE = 0,
    AL_AA_APGD_DLR,
    AL_AA_APGD_T,
    AL_AA_FAB,
    AL_AA_FAB_T,
    AL_AA_SQUARE,
    AL_AA_N_KINDS
} al_aa_attack;

typedef enum al_aa_version { AL_AA_STANDARD = 0, AL_AA_PLUS, AL_AA_RAND, AL_AA_CUSTOM } al_aa_version;

const char *al_aa_attack_name(al_aa_attack a);   /* "apgd-ce", ..., "square" */
const char *al_aa_attack_upper(al_aa_attack a);  /* "APGD-CE", ... (log lines) */
const char *al_aa_version_name(al_aa_version v); /* "standard", "plus", "rand", "custom" */
/* Parse one name (case-insensitive) / a comma-separated list (no repeats, at most
 * AL_AA_STATE_MAX_ATTACKS). AL_ERR_VALUE names the bad entry and the valid words. */
al_status al_aa_attack_parse(const char *s, al_aa_attack *out);
al_status al_aa_attack_list_parse(const char *s, al_aa_attack *out, int *n_out);
al_status al_aa_version_parse(const char *s, al_aa_version *out);

typedef struct al_aa_spec {
    al_norm norm;
    float eps;
    al_aa_version version;
    int n_attacks;
    al_aa_attack attacks[AL_AA_STATE_MAX_ATTACKS];
    /* per-attack settings, filled by al_aa_spec_make for the version (callers may override) */
    al_apgd_spec apgd;     /* apgd-ce and apgd-dlr (the loss is set per attack) */
    al_apgd_spec apgd_t;   /* apgd-t */
    al_fab_spec fab;       /* 'fab' runs it untargeted; 'fab-t' targeted with 1 restart */
    al_square_spec square;
    int batch;             /* points per attack call (AA default 250) */
    uint64_t seed;         /* Philox key of every random start / proposal */
    al_fwd_opts fwd;       /* forward options of every pass (eval mode, slot 0) */
    /* resumable state (core/aa_state.h) */
    const char *state_path; /* NULL: no state */
    int resume;             /* 1: continue from state_path when the file exists */
    double state_every_s;   /* at most one save per this many seconds inside an attack (60);
                             * always after the clean pass, each attack and at the end */
    const char *key;        /* identity stored in the state, checked on resume ("" = none) */
    /* stopping between batches: the state is saved, AL_ERR_INTERRUPTED returned */
    const volatile int *stop; /* e.g. set by a SIGTERM handler; NULL = never */
    int max_batches;          /* > 0: stop after this many attack batches in this call (tests) */
} al_aa_spec;

/* Spec for `version` (custom: the given list; other versions ignore list/n_list), norm, eps:
 * settings as in the header comment, batch 250, seed 0, state every 60 s. */
al_status al_aa_spec_make(al_aa_spec *s, al_aa_version version, al_norm norm, float eps,
                          const al_aa_attack *list, int n_list);

typedef struct al_aa_result {
    int64_t n, n_clean, n_robust;
    int n_done;                                   /* attacks finished */
    int64_t robust_after[AL_AA_STATE_MAX_ATTACKS]; /* robust count after each attack */
    double seconds_after[AL_AA_STATE_MAX_ATTACKS]; /* cumulative attack time after each */
    double seconds;
    int resumed;                                  /* state restored from spec.state_path */
    /* gradient-masking flags (1 = raised; a warning with its explanation was logged) */
    int flag_randomized, flag_softmax, flag_n_classes, flag_square;
    int64_t n_zero_grad;                          /* DLR start points with zero gradient */
    /* validity of x_adv (AutoAttack's final check) */
    double max_pert;        /* max over points of ||x_adv - x|| in spec.norm */
    int64_t n_nonfinite;
    float x_min, x_max;
    int valid;              /* max_pert within eps (+ float rounding), all finite, in [0,1] */
} al_aa_result;

/* Run the protocol on n points: x (n, C, H, W) host floats in [0,1], y (n) host labels.
 * Out (host): x_adv (n, C, H, W); clean (n) optional; robust (n) optional (1 = correctly
 * classified after every attack); res required. Errors: AL_ERR_VALUE (spec), AL_ERR_OOM (naming
 * the batch size and bytes), AL_ERR_UNSUPPORTED (an attack not available on this backend),
 * AL_ERR_INTERRUPTED (stop requested; state saved), state file errors, model errors. */
al_status al_autoattack_run(al_ctx *ctx, al_model *m, const al_aa_spec *s, const float *x,
                            const int32_t *y, int64_t n, float *x_adv, uint8_t *clean,
                            uint8_t *robust, al_aa_result *res);

/* Device + host bytes the driver allocates for attack batches of `batch` points (APGD
 * workspace + staging), excluding the model's own activations (al_aa_model_bytes). */
size_t al_aa_workspace_bytes(const al_model *m, const al_aa_spec *s, int batch);
/* Estimate of the bytes al_model_setup(ctx, m, batch, 1) allocates (activations, their
 * gradients, saved state, parameters and gradients), computable before setup. */
size_t al_aa_model_bytes(const al_model *m, int batch);

/* ---- the gradient-masking checks, usable on their own (x, y device, n points) ----
 * Randomized outputs: 5 forward passes (fwd.step = 0..4, so dropout in train mode differs);
 * raised when the correct counts differ or two passes' L2-normalised logits differ by more
 * than 1e-4 (L2 per row). *max_diff optional. */
al_status al_aa_check_randomized(al_ctx *ctx, al_model *m, const al_fwd_opts *fwd, const float *x,
                                 const int32_t *y, int n, int *raised, double *max_diff);
/* Probability outputs: raised when every output is in (-1e-5, 1 + 1e-5) and every row sums to
 * 1 within 1e-5. */
al_status al_aa_check_softmax(al_ctx *ctx, al_model *m, const al_fwd_opts *fwd, const float *x,
                              int n, int *raised);
/* Square vs white-box: acc[i] is the robust accuracy after attack names[i] ("clean" first, as
 * the reference's dictionary); raised when square is present, there are more than two entries,
 * and square's accuracy is below the smallest of the others by more than 0.002. *drop optional:
 * that difference. */
int al_aa_check_square(const char *const *names, const double *acc, int n_entries, double *drop);
/* Class count vs attacks: 0 or a message in msg (the attack cannot use its loss/targets). */
int al_aa_check_n_classes(int n_classes, const al_aa_spec *s, char *msg, size_t msg_len);

#ifdef __cplusplus
}
#endif
#endif
