/* square_elem.h: the per-point draws and the Linf proposal element of Square (attacks/square.c),
 * shared by its host loop and the CUDA twin cuda/attack_square.cu (style rule 5: one code, so
 * the device proposals are bitwise the host's). Words: Philox(seed, stream, base + j) with
 * base = al_square_word_base(..) of (restart r, phase, point i); phase 0 = init, it + 1 =
 * iteration it; each (r, phase, i) owns 2^24 consecutive words. */
#ifndef AL_SQUARE_ELEM_H
#define AL_SQUARE_ELEM_H

#include <math.h>

#include "core/rng.h"

AL_HOSTDEV uint64_t al_square_word_base(int n_queries, int n, int r, int phase, int i) {
    return ((((uint64_t)r * ((uint64_t)n_queries + 1) + (uint64_t)phase) * (uint64_t)n +
             (uint64_t)i)
            << 24);
}

/* U(j): word j as a uniform in [0,1) (24 bits: the products below are exact in double) */
AL_HOSTDEV float al_square_u(uint64_t seed, uint64_t stream, uint64_t base, uint64_t j) {
    return al_rng_uniform(seed, stream, base + j);
}

/* Top-left corner of an iteration's sq x sq window: words 0 and 1. */
AL_HOSTDEV void al_square_window(uint64_t seed, uint64_t stream, uint64_t base, int h, int w,
                                 int sq, int *vh, int *vw) {
    *vh = (int)(al_square_u(seed, stream, base, 0) * (double)(h - sq));
    *vw = (int)(al_square_u(seed, stream, base, 1) * (double)(w - sq));
}

/* The Linf window value of channel ch: +-2 eps (word 2 + ch). */
AL_HOSTDEV float al_square_linf_value(uint64_t seed, uint64_t stream, uint64_t base, int ch,
                                      float eps) {
    return (float)(2.0 * eps * (al_square_u(seed, stream, base, 2 + (uint64_t)ch) < 0.5f ? -1.0 : 1.0));
}

/* +-1 from word j (the host's SIGN(j)) */
AL_HOSTDEV double al_square_sign(uint64_t seed, uint64_t stream, uint64_t base, uint64_t j) {
    return al_square_u(seed, stream, base, j) < 0.5f ? -1.0 : 1.0;
}

/* The L2 proposal's draws: window 1 (words 0, 1), window 2 (words 2, 3), the eta transpose
 * (word 4); channel ch's sign is al_square_sign(.., 5 + ch). */
AL_HOSTDEV void al_square_l2_draws(uint64_t seed, uint64_t stream, uint64_t base, int h, int w,
                                   int sq, int *vh, int *vw, int *vh2, int *vw2, int *tr) {
    al_square_window(seed, stream, base, h, w, sq, vh, vw);
    *vh2 = (int)(al_square_u(seed, stream, base, 2) * (double)(h - sq));
    *vw2 = (int)(al_square_u(seed, stream, base, 3) * (double)(w - sq));
    *tr = al_square_u(seed, stream, base, 4) > 0.5f;
}

/* clamp(clip(v, x0 - eps, x0 + eps), 0, 1) with the bounds exactly within eps of x0 in double */
AL_HOSTDEV float al_square_clip_linf(float v, float x0, float eps) {
    float hi = x0 + eps, lo = x0 - eps;
    if ((double)hi - (double)x0 > (double)eps) hi = nextafterf(hi, -INFINITY);
    if ((double)x0 - (double)lo > (double)eps) lo = nextafterf(lo, INFINITY);
    v = v < lo ? lo : (v > hi ? hi : v);
    return v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
}

/* m = z_y - max_{j != y} z_j in double (NaN logits give NaN: never accepted) */
AL_HOSTDEV double al_square_margin(const float *z, int k, int y) {
    double o = -INFINITY;
    for (int j = 0; j < k; j++)
        if (j != y && (double)z[j] > o) o = z[j];
    return (double)z[y] - o;
}

#endif
