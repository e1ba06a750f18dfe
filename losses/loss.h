/* loss.h: losses as pure functions of their inputs: value (mean over the batch unless stated)
 * and gradient w.r.t. logits (and features where the loss uses them). Write mode: every
 * gradient output is '=' (callers combine). CPU reference here; CUDA twins in cuda/loss_*.cu.
 * Gradients are of the RETURNED value (so they include the 1/N of a mean). */
#ifndef AL_LOSS_H
#define AL_LOSS_H

#include "core/ctx.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Softmax cross-entropy, mean over n: loss = -1/n sum_i log softmax(z_i)[y_i].
 * per_sample (n) optional; dlogits (n,k) optional, = d loss / d z. Labels must be in [0,k).
 * `weight` scales the returned value and gradient. */
al_status al_xent(al_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                  float weight, double *loss, float *per_sample, float *dlogits);

/* Number of correct argmax predictions (ties: lowest index wins, like torch.argmax). */
al_status al_count_correct(al_ctx *ctx, int n, int k, const float *logits, const int32_t *labels,
                           int *n_correct, uint8_t *correct /* (n) or NULL */);

#ifdef __cplusplus
}
#endif
#endif
