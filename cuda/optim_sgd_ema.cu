/* optim_sgd_ema.cu: fused SGD (torch.optim.SGD semantics) + EMA, one pass over the ONE flat
 * parameter buffer (style rule 17). Twin: al_sgd_step_cpu in core/optim.c. Both run the
 * shared per-element function al_sgd_ema_elem of core/optim.h (style rule 5):
 *   g = grad*grad_scale (+ wd*p where AL_OPT_DECAY); b = first ? g : mom*b + g;
 *   g = nesterov ? g + mom*b : b; p -= lr*g (AL_OPT_TRAIN elements);
 *   ema = d*ema + (1-d)*p for trainable elements, ema = p for the others.
 * Compiled with --fmad=false (cuda/CMakeLists.txt), so the result is bitwise the CPU's.
 * Memory-bound: ~17 bytes read + 12 written per element, one launch for the whole model
 * instead of several per parameter tensor. */
#include "core/optim.h"
#include "cuda/cuda_base.cuh"

static __global__ void sgd_ema_kernel(size_t n, const uint8_t *__restrict__ mask,
                                      float *__restrict__ params, const float *__restrict__ grads,
                                      float *__restrict__ momentum, float *__restrict__ ema,
                                      al_sgd_hparams hp, const double *__restrict__ dev_scale) {
    if (dev_scale) hp.grad_scale = (float)*dev_scale; /* the host twin's rounding */
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n;
         i += (size_t)gridDim.x * blockDim.x) {
        float unused_b = 0.0f, unused_e = 0.0f; /* stand-ins for absent buffers, as the twin */
        al_sgd_ema_elem(mask[i], &params[i], grads[i], momentum ? &momentum[i] : &unused_b,
                        ema ? &ema[i] : &unused_e, &hp);
    }
}

extern "C" al_status al_sgd_step_cuda(al_ctx *ctx, size_t n, const uint8_t *mask, float *params,
                                      const float *grads, float *momentum, float *ema,
                                      const struct al_sgd_hparams *hp,
                                      const double *dev_scale) {
    AL_ASSERT(hp && mask && params && grads, "al_sgd_step_cuda: NULL hp/mask/params/grads");
    AL_ASSERT(hp->momentum == 0.0f || momentum, "al_sgd_step_cuda: momentum %g needs a buffer",
              (double)hp->momentum);
    AL_ASSERT(!hp->ema || ema, "al_sgd_step_cuda: EMA on but no EMA buffer");
    if (n == 0) return AL_OK;
    sgd_ema_kernel<<<al_grid(ctx, n, AL_BLOCK), AL_BLOCK, 0, al_stream_of(ctx)>>>(
        n, mask, params, grads, momentum, ema, *hp, dev_scale);
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}
