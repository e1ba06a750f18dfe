/* evaluate.h: clean and adversarial evaluation of a model on in-memory data, and the attack
 * output file (formats.md §3). Used by `advlab attack|eval` and by the trainer's evaluation
 * cadence, so the numbers a run logs are computed by exactly the code users run. */
#ifndef AL_EVALUATE_H
#define AL_EVALUATE_H

#include "attacks/attack.h"
#include "core/config.h"
#include "core/log.h"
#include "core/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The evaluation attack of cfg->eval as an attack spec (NULL-free; type none -> *none = 1). */
al_status al_eval_spec_from_config(const al_config *cfg, al_attack_spec *spec, int *none);
/* The training-time attack of cfg->train/attack (method-specific recipe; see attack.h). */
al_status al_train_spec_from_config(const al_config *cfg, al_attack_spec *spec, int *none);

typedef struct al_eval_counts {
    int64_t n;              /* points evaluated */
    int64_t clean_correct;
    int64_t robust_correct; /* = clean_correct when no attack */
    double seconds;
} al_eval_counts;

/* Evaluate n points (host uint8 images (n, C, H, W), labels (n)) in batches of `batch` (<=
 * model max_batch), eval mode. spec NULL = clean only. Optional host outputs: x_adv (n, C*H*W)
 * floats, clean (n), robust (n) flags; robust flags come from a FRESH forward pass on the
 * final adversarial images. Random starts draw Philox(seed, AL_STREAM_ATTACK, batch index). */
al_status al_evaluate(al_ctx *ctx, al_model *m, const uint8_t *images, const int32_t *labels,
                      int64_t n, int batch, const al_attack_spec *spec, uint64_t seed,
                      const char *label, float *x_adv, uint8_t *clean, uint8_t *robust,
                      al_eval_counts *out);

/* Write the attack output file (formats.md §3) atomically. index (n) are rows in the split. */
typedef struct al_advfile {
    const char *attack;     /* "pgd-20", "fgsm", ... */
    const char *norm;       /* "Linf" | "L2" */
    double eps;
    const char *checkpoint, *dataset, *split;
    int64_t n;
    int c, h, w;
    const float *images;    /* (n, C, H, W) */
    const int32_t *labels;
    const int64_t *index;
    const uint8_t *clean_correct, *robust_correct;
} al_advfile;
al_status al_advfile_write(const char *path, const al_advfile *f);

#ifdef __cplusplus
}
#endif
#endif
