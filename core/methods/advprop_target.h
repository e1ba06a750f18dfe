/* advprop_target.h: AdvProp's random attack target of one example, shared by the CPU loop in
 * core/methods/multibn.c and its CUDA twin cuda/train_advprop.cu (style rule 5: one code):
 *   t_i = (y_i + r_i) mod K,  r_i = 1 + floor(u * (K - 1) / 2^32),  u = Philox(seed, stream, i)
 * so t_i != y_i and every other class is equally likely (up to the 2^-32 quantisation). */
#ifndef AL_ADVPROP_TARGET_H
#define AL_ADVPROP_TARGET_H

#include "core/rng.h"

AL_HOSTDEV int32_t al_advprop_target(int32_t y, int k, uint64_t seed, uint64_t stream, int i) {
    const uint32_t u = al_rng_u32(seed, stream, (uint64_t)i);
    const int r = 1 + (int)(((uint64_t)u * (uint64_t)(k - 1)) >> 32);
    return (y + r) % k;
}

#endif
