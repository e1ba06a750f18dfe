/* aa_state.h: the resumable state of an AutoAttack evaluation (attacks/autoattack.h), one HDF5
 * file written atomically (temp file, fsync, rename: a kill at any moment leaves the previous
 * state or the new one, never a torn file). Modelled on fra31/auto-attack PR #98
 * (EvaluationState: per-point robust flags + attacks already run, saved at most every 60 s),
 * extended so a resumed run ends bit-identical to an uninterrupted one: it also keeps the
 * adversarial rows found so far and the position inside the running attack (the point set the
 * attack started from and how many of its batches are done), so no batch is re-formed.
 *
 * File layout (format "advlab-aa-state", format_version 1):
 *   attrs   attacks (string, "apgd-ce,apgd-t,fab-t,square"), version, norm, key (caller's
 *           identity: checkpoint, dataset, split, settings), eps (float32), seed, n, d, batch,
 *           next_attack, batches_done, zero_grad_total, zero_grad_attack (int64)
 *   /clean           uint8 [n]   clean prediction correct
 *   /robust          uint8 [n]   still robust (clean and no attack has succeeded)
 *   /plan            uint8 [n]   robust flags when attacks[next_attack] started
 *   /adv_index       int64 [m]   points broken by an attack (clean && !robust)
 *   /adv_images      float32 [m, d]   their adversarial rows
 *   /robust_after    int64 [next_attack]   robust count after each finished attack
 *   /seconds_after   float64 [next_attack] attack time (cumulative) after each finished attack
 * Twin: none (host only). */
#ifndef AL_AA_STATE_H
#define AL_AA_STATE_H

#include "core/base.h"

#ifdef __cplusplus
extern "C" {
#endif

#define AL_AA_STATE_MAX_ATTACKS 8

typedef struct al_aa_state {
    /* identity: must match on resume */
    char attacks[256];
    char version[32];
    char norm[8];
    char key[1024];
    float eps;
    int64_t seed, n, d;
    int batch;
    /* progress */
    int next_attack;   /* index of the first unfinished attack */
    int batches_done;  /* finished batches of attacks[next_attack] */
    int64_t zero_grad_total, zero_grad_attack;
    int64_t robust_after[AL_AA_STATE_MAX_ATTACKS];
    double seconds_after[AL_AA_STATE_MAX_ATTACKS];
    double seconds;    /* attack time so far (the running attack included) */
    /* per point (n), owned by the caller */
    uint8_t *clean, *robust, *plan;
} al_aa_state;

/* Write the state and the rows of x_adv (host (n, d)) of points with clean && !robust. */
al_status al_aa_state_save(const char *path, const al_aa_state *s, const float *x_adv);

/* Read a state into s. The identity fields of s (attacks, version, norm, key, eps, seed, n, d,
 * batch) must be set by the caller: any difference is AL_ERR_VALUE naming the field, the value
 * in the file and the expected one. Fills progress, clean/robust/plan (caller-allocated, n) and
 * overwrites the stored rows of x_adv (host (n, d), pre-filled with the clean inputs). */
al_status al_aa_state_load(const char *path, al_aa_state *s, float *x_adv);

#ifdef __cplusplus
}
#endif
#endif
