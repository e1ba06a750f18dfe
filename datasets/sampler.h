/* sampler.h: seeded shuffling sampler and crop/flip augmentation.
 * Every random choice is a pure function of (seed, epoch or global step, image index) through
 * Philox (core/rng.h), so a resumed run draws exactly what an uninterrupted one would, and a
 * rank draws its shard of the same global permutation. The per-image augmentation draw is
 * AL_HOSTDEV: the CUDA augmentation kernel (twin) uses the same functions. */
#ifndef AL_SAMPLER_H
#define AL_SAMPLER_H

#include "core/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Permutation of [0, n) for `epoch` (Fisher-Yates with Lemire's unbiased-enough bounded draw;
 * bias < n / 2^32). shuffle = 0 gives the identity. perm has n entries. */
void al_sampler_perm(uint64_t seed, int epoch, int64_t n, int shuffle, int64_t *perm);

/* Number of global batches in an epoch of n rows (drop_last: only full batches). */
int64_t al_sampler_n_batches(int64_t n, int global_batch, int drop_last);

/* Rows of rank `rank` in global batch `b`: the global batch perm[b*B, (b+1)*B) is split into
 * `world` contiguous slices (sizes differ by at most one). Returns the count written. */
int al_sampler_batch(const int64_t *perm, int64_t n, int64_t b, int global_batch, int drop_last,
                     int rank, int world, int64_t *rows);

/* Augmentation draw for image `i` of global step `step`: crop offsets dy, dx in
 * [-pad, pad] and a horizontal flip bit (PyTorch RandomCrop(pad) + RandomHorizontalFlip). */
typedef struct al_aug_draw {
    int dy, dx, flip;
} al_aug_draw;
AL_HOSTDEV al_aug_draw al_aug_sample(uint64_t seed, uint64_t step, uint64_t i, int pad) {
    al_u32x4 r = al_rng_block(seed, al_stream(AL_STREAM_AUGMENT, step), i);
    al_aug_draw d;
    uint32_t span = (uint32_t)(2 * pad + 1);
    d.dy = (int)(((uint64_t)r.v[0] * span) >> 32) - pad;
    d.dx = (int)(((uint64_t)r.v[1] * span) >> 32) - pad;
    d.flip = (int)(r.v[2] >> 31);
    return d;
}
/* Output pixel (y, x) of an augmented h x w image: source pixel or -1 for zero padding. */
AL_HOSTDEV int al_aug_src(al_aug_draw d, int y, int x, int h, int w) {
    int sx = d.flip ? (w - 1 - x) : x;
    int yy = y + d.dy, xx = sx + d.dx;
    if (yy < 0 || yy >= h || xx < 0 || xx >= w) return -1;
    return yy * w + xx;
}

/* uint8 (n, C, H, W) -> float [0,1] (x/255), optionally augmented (pad > 0) with the draws of
 * `step` for images first_index .. first_index+n-1. CPU; OpenMP over images. */
void al_batch_to_float(const uint8_t *src, int n, int c, int h, int w, int pad, uint64_t seed,
                       uint64_t step, float *dst);

#ifdef __cplusplus
}
#endif
#endif
