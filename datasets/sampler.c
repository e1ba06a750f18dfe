/* sampler.c: shuffling sampler, rank sharding, uint8 -> float conversion with augmentation.
 * CUDA twin of al_batch_to_float: cuda/data_augment.cu (same al_aug_sample draws). */
#include "datasets/sampler.h"

void al_sampler_perm(uint64_t seed, int epoch, int64_t n, int shuffle, int64_t *perm) {
    for (int64_t i = 0; i < n; i++) perm[i] = i;
    if (!shuffle) return;
    uint64_t stream = al_stream(AL_STREAM_SHUFFLE, (uint64_t)epoch);
    for (int64_t i = n - 1; i > 0; i--) {
        uint32_t u = al_rng_u32(seed, stream, (uint64_t)i);
        int64_t j = (int64_t)(((uint64_t)u * (uint64_t)(i + 1)) >> 32);
        int64_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}

int64_t al_sampler_n_batches(int64_t n, int global_batch, int drop_last) {
    return drop_last ? n / global_batch : (n + global_batch - 1) / global_batch;
}

int al_sampler_batch(const int64_t *perm, int64_t n, int64_t b, int global_batch, int drop_last,
                     int rank, int world, int64_t *rows) {
    int64_t start = b * global_batch;
    int64_t end = start + global_batch;
    if (end > n) end = drop_last ? start : n;
    int64_t len = end > start ? end - start : 0;
    int64_t lo = start + len * rank / world, hi = start + len * (rank + 1) / world;
    for (int64_t i = lo; i < hi; i++) rows[i - lo] = perm[i];
    return (int)(hi - lo);
}

void al_batch_to_float(const uint8_t *src, int n, int c, int h, int w, int pad, uint64_t seed,
                       uint64_t step, float *dst) {
    const size_t plane = (size_t)h * w, img = plane * c;
    const float scale = 1.0f / 255.0f;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const uint8_t *s = src + (size_t)i * img;
        float *d = dst + (size_t)i * img;
        if (pad <= 0) {
            for (size_t j = 0; j < img; j++) d[j] = (float)s[j] * scale;
            continue;
        }
        al_aug_draw a = al_aug_sample(seed, step, (uint64_t)i, pad);
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                int sp = al_aug_src(a, y, x, h, w);
                for (int ch = 0; ch < c; ch++)
                    d[ch * plane + (size_t)y * w + x] = sp < 0 ? 0.0f : (float)s[ch * plane + sp] * scale;
            }
    }
}
