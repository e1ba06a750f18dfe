/* data_augment.cu: batch assembly from a device-resident uint8 dataset, with crop/flip.
 * Twin: al_batch_to_float in datasets/sampler.c (after train.c's host gather of the rows).
 * images_all (N_all, C, H, W) uint8 on the device (uploaded once at setup); rows (n) int64
 * device indices into it (NULL: rows 0..n-1); out (n, C, H, W) float in [0,1], '='.
 * Output image i is dataset row rows[i], augmented with the draw al_aug_sample(seed, step, i,
 * pad) of its position i in the batch, exactly as the twin (pad <= 0: no augmentation). The
 * per-pixel math is the twin's: the shared AL_HOSTDEV al_aug_sample / al_aug_src of
 * datasets/sampler.h, zero padding, and (float)v * (1.0f / 255.0f): bitwise equal.
 * One block per image: each thread draws the image's Philox block once (one call, no shared
 * memory), then walks the C*H*W outputs with consecutive threads on consecutive x (coalesced
 * stores; the uint8 gathers hit L1/L2). Memory-bound: C*H*W bytes read + 4x written. */
#include "cuda/cuda_base.cuh"
#include "datasets/sampler.h"

#define AUG_BLOCK 256

static __global__ void batch_to_float_kernel(const uint8_t *__restrict__ images_all,
                                             const int64_t *__restrict__ rows, int c, int h,
                                             int w, int pad, uint64_t seed, uint64_t step,
                                             float *__restrict__ out) {
    const int i = blockIdx.x;
    const size_t plane = (size_t)h * w, img = plane * c;
    const int64_t row = rows ? rows[i] : (int64_t)i;
    const uint8_t *__restrict__ s = images_all + (size_t)row * img;
    float *__restrict__ d = out + (size_t)i * img;
    const float scale = 1.0f / 255.0f;
    if (pad <= 0) {
        for (size_t j = threadIdx.x; j < img; j += blockDim.x) d[j] = (float)s[j] * scale;
        return;
    }
    const al_aug_draw a = al_aug_sample(seed, step, (uint64_t)i, pad);
    for (size_t t = threadIdx.x; t < img; t += blockDim.x) {
        const size_t ch = t / plane, q = t - ch * plane;
        const int y = (int)(q / (size_t)w), x = (int)(q - (size_t)y * w);
        const int sp = al_aug_src(a, y, x, h, w);
        d[t] = sp < 0 ? 0.0f : (float)s[ch * plane + (size_t)sp] * scale;
    }
}

static __global__ void gather_labels_kernel(const int32_t *__restrict__ labels_all,
                                            const int64_t *__restrict__ rows, int n,
                                            int32_t *__restrict__ out) {
    for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
        out[i] = labels_all[rows ? rows[i] : (int64_t)i];
}

extern "C" al_status al_batch_to_float_cuda(al_ctx *ctx, const uint8_t *d_images_all,
                                            const int64_t *d_rows, int n, int c, int h, int w,
                                            int pad, uint64_t seed, uint64_t step,
                                            float *d_out) {
    AL_ASSERT(n >= 0 && c >= 1 && h >= 1 && w >= 1 && d_images_all && d_out,
              "al_batch_to_float_cuda: n=%d c=%d h=%d w=%d", n, c, h, w);
    if (n == 0) return AL_OK;
    batch_to_float_kernel<<<n, AUG_BLOCK, 0, al_stream_of(ctx)>>>(d_images_all, d_rows, c, h, w,
                                                                  pad, seed, step, d_out);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_gather_labels_cuda(al_ctx *ctx, const int32_t *d_labels_all,
                                           const int64_t *d_rows, int n, int32_t *d_out) {
    AL_ASSERT(n >= 0 && d_labels_all && d_out, "al_gather_labels_cuda: n=%d", n);
    if (n == 0) return AL_OK;
    gather_labels_kernel<<<al_grid(ctx, (size_t)n, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        d_labels_all, d_rows, n, d_out);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}
