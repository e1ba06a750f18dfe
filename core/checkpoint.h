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
    int bn_branches;           /* /model attr bn_branches (1 when absent) */
    int bn_gate;               /* /model attr bn_gate: 0 none, 1 soft, 2 hard (0 when absent) */
    int eval_branch;           /* /model attr eval_branch (0 when absent; -1 = the gate) */
    int has_bn_attrs;          /* the file records bn_branches (older files do not) */
    int has_train, has_optimizer, has_ema;
    int epoch;
    int64_t step, seed;
} al_ckpt_info;
al_status al_checkpoint_info(const char *path, al_ckpt_info *info);

/* Build (al_model_create_opts) and set up nothing: convenience that reads info and creates the
 * model with the stored normalisation, BN branches, BN-branch selector (core/ops/bn_gate.h) and
 * evaluation branch. Caller then al_model_setup + al_checkpoint_load. */
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
    /* per-epoch metric history (/metrics/<name>, float64 [len]); all malloc'd */
    int n_metrics;
    char **metric_names;
    double **metric_values;
    int64_t *metric_lens;
} al_train_state_in;
al_status al_checkpoint_load_train(const char *path, const al_model *m, al_train_state_in *ts);
void al_train_state_in_free(al_train_state_in *ts);

/* ---- HDF5 helpers shared with datasets/ and tools/ (ids are hid_t; all in checkpoint.c) ----
 * Every failure records ONE line naming the file and the object ("f.h5:/model: ...") and
 * returns AL_ERR_IO (missing/unreadable/unwritable) or AL_ERR_FORMAT (violates formats.md).
 * `obj` is the HDF5 path of `loc` used in messages ("/", "/model", "/train/images"). */
void al_h5_quiet(void); /* silence HDF5's own error-stack printing (idempotent) */
/* Open read-only: missing file, non-HDF5 file and truncated/corrupt file are told apart. */
al_status al_h5_open_read(const char *path, int64_t *file);
/* Root attrs format == `format` and format_version == 1. */
al_status al_h5_check_format(int64_t file, const char *path, const char *format);
int al_h5_has(int64_t loc, const char *name);      /* link `name` exists below loc (1/0) */
int al_h5_has_attr(int64_t loc, const char *attr); /* attribute exists (1/0) */
/* Strict attribute readers: missing, wrong class or wrong count is an error. */
al_status al_h5_attr_string(int64_t loc, const char *path, const char *obj, const char *attr,
                            char **out /* malloc'd */);
al_status al_h5_attr_strings(int64_t loc, const char *path, const char *obj, const char *attr,
                             int n, char ***out /* n malloc'd strings + array */);
al_status al_h5_attr_int64(int64_t loc, const char *path, const char *obj, const char *attr,
                           int64_t lo, int64_t hi, int64_t *out);
al_status al_h5_attr_floats(int64_t loc, const char *path, const char *obj, const char *attr,
                            float *out, int n);
/* Attribute writers: strings are variable-length UTF-8; ints int32, int64s int64. */
al_status al_h5_write_attr_string(int64_t loc, const char *path, const char *obj,
                                  const char *attr, const char *s);
al_status al_h5_write_attr_strings(int64_t loc, const char *path, const char *obj,
                                   const char *attr, int n, const char *const *s);
al_status al_h5_write_attr_int(int64_t loc, const char *path, const char *obj, const char *attr,
                               int v);
al_status al_h5_write_attr_int64(int64_t loc, const char *path, const char *obj,
                                 const char *attr, int64_t v);
al_status al_h5_write_attr_floats(int64_t loc, const char *path, const char *obj,
                                  const char *attr, const float *v, int n);
/* Atomic write: create <path>.tmp (into tmp) ... al_h5_commit flushes, closes, fsyncs and
 * renames it over path (then fsyncs the directory); on any failure, or al_h5_discard, the
 * temp file is removed and `path` is untouched. */
al_status al_h5_create_tmp(const char *path, char *tmp, size_t tmp_len, int64_t *file);
al_status al_h5_commit(int64_t file, const char *tmp, const char *path);
void al_h5_discard(int64_t file, const char *tmp);
/* "integer (1 byte, unsigned)", "float (8 bytes)", "string", ... for messages. */
const char *al_h5_type_str(int64_t type, char *buf, size_t len);
/* "[60000, 1, 28, 28]" */
const char *al_h5_shape_str(int rank, const unsigned long long *dims /* hsize_t */, char *buf,
                            size_t len);

#ifdef __cplusplus
}
#endif
#endif
