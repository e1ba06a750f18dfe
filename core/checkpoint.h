/* checkpoint.h: advlab checkpoint files (formats.md §2), HDF5.
 * Write is atomic: <path>.tmp, flush + fsync, rename over <path>; a crash or error mid-write
 * leaves the previous file intact. Read is strict: every parameter of the model's table must
 * be present with its exact shape and float class; extra /model datasets are an error too
 * (they signal an arch mismatch), except num_batches_tracked. Errors name file and object:
 * "run/ckpt.h5:/model/conv1.weight: shape [64, 3, 3, 3], expected [64, 3, 3, 4]". */
#ifndef AL_CHECKPOINT_H
#define AL_CHECKPOINT_H

#include "core/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Training state that rides along (all optional: NULL / 0 pointers are skipped). */
typedef struct al_train_state {
    int epoch;                 /* epochs completed */
    int64_t step;              /* global optimiser steps */
    int64_t seed;
    const char *config;        /* fully resolved config text (INI) */
    const float *momentum;     /* (n_param_floats) host copy, or NULL */
    const float *ema;          /* (n_param_floats) host copy, or NULL */
    /* per-epoch metrics: names[i] -> values[i][0..n_epochs) */
    int n_metrics, n_epochs;
    const char *const *metric_names;
    const double *const *metric_values;
    /* opaque RNG / sampler state needed to resume bit-exactly */
    const uint8_t *rng_state;
    size_t rng_state_bytes;
} al_train_state;

/* Save model parameters (read back from the device) plus the optional training state. */
al_status al_checkpoint_save(al_ctx *ctx, const al_model *m, const al_train_state *ts,
                             const char *path);

/* Read /model attrs only (arch, num_classes, in_channels, image_size, mean, std) so the
 * caller can build the right model before loading. */
typedef struct al_ckpt_info {
    char arch[64];
    int num_classes, in_channels, image_size;
    float mean[4], std[4];
    int has_norm;
    int has_train, has_optimizer, has_ema;
    int epoch;
    int64_t step, seed;
} al_ckpt_info;
al_status al_checkpoint_info(const char *path, al_ckpt_info *info);

/* Build (al_model_create) and set up nothing: convenience that reads info and creates the
 * model with the stored normalisation. Caller then al_model_setup + al_checkpoint_load. */
al_status al_checkpoint_create_model(const char *path, al_model **out);

/* Load parameters into a set-up model (strict). */
al_status al_checkpoint_load(al_ctx *ctx, al_model *m, const char *path);

/* Load training state for --resume: momentum / ema (host buffers of n_param_floats, may be
 * NULL to skip), epoch, step, config text (malloc'd, caller frees), RNG state (malloc'd). */
typedef struct al_train_state_in {
    int epoch;
    int64_t step, seed;
    char *config;
    float *momentum;           /* caller-provided (n_param_floats) or NULL */
    float *ema;                /* caller-provided or NULL */
    int has_momentum, has_ema;
    uint8_t *rng_state;
    size_t rng_state_bytes;
} al_train_state_in;
al_status al_checkpoint_load_train(const char *path, const al_model *m, al_train_state_in *ts);
void al_train_state_in_free(al_train_state_in *ts);

#ifdef __cplusplus
}
#endif
#endif
