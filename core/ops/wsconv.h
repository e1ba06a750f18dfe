/* wsconv.h: the ops of normalizer-free ResNets (Brock et al. 2021, "Characterizing signal
 * propagation to close the performance gap in unnormalized ResNets"; timm nfnet.py and
 * layers/std_conv.py ScaledStdConv2d, read, not copied), used by NoFrost (methods.md §5.3):
 *
 * 1. Scaled weight standardisation of a conv weight W (Co, fan_in = Ci*kh*kw), per row o:
 *        W_hat[o, j] = gain[o] * gamma / sqrt(fan_in) * (W[o, j] - mu_o) / sqrt(var_o + eps)
 *    mu_o, var_o = mean and BIASED variance of row o (timm computes them with
 *    F.batch_norm(training=True) over the flattened row). The conv then runs on W_hat
 *    (core/ops/conv2d.h); the node below ties the two together.
 *    Backward (dw +=, dgain +=) from g = dL/dW_hat, with a = gain*gamma/sqrt(fan_in),
 *    z = (W - mu) * rstd, rstd = 1/sqrt(var + eps) (mu, rstd recomputed from W in double: the
 *    bracket below cancels to ~eps/var of its terms for short rows, so float-rounded saved
 *    statistics would cost digits):
 *        dgain[o] += sum_j g_j z_j gamma/sqrt(fan_in)
 *        dW[o, j] += rstd * (a g_j - mean_j(a g) - z_j mean_j(a g z))
 *    (batch-norm backward over the row with the biased variance).
 * 2. 2x2 average pooling, stride 2, ceil_mode = True, count_include_pad = False (timm
 *    DownsampleAvg's nn.AvgPool2d): Ho = (H + 1) / 2; a window cut by the edge averages the
 *    elements it holds (a 7x7 map pools to 4x4, so 28x28 inputs work).
 * 3. y = a * x0 (+ x1): the NF block's `act(x) * beta` and `out * alpha + shortcut` (two
 *    roundings, a*x0 then + x1, as PyTorch's `out * alpha + shortcut`).
 * CPU reference + dispatchers: core/ops/wsconv.c (row statistics in double). CUDA twin:
 * cuda/op_wsconv.cu. Shapes: activations NCHW, weights OIHW. Write modes as stated per op. */
#ifndef AL_OP_WSCONV_H
#define AL_OP_WSCONV_H

#include "core/model.h"

#ifdef __cplusplus
extern "C" {
#endif

/* timm _nonlin_gamma['relu'] (DeepMind nfnets): 1 / sqrt of the second moment of relu(N(0,1))
 * scaled to unit variance, so relu -> WS conv preserves the signal variance. */
#define AL_NF_GAMMA_RELU 1.7139588594436646
#define AL_NF_STD_CONV_EPS 1e-5f /* NfCfg.std_conv_eps */

/* ---- 1. weight standardisation (co rows of fan_in) ----
 * w_hat (Co, fan_in) =; mean, rstd (Co) = the row statistics used (either may be NULL). */
al_status al_ws_weight_forward(al_ctx *ctx, int co, int fan_in, float gamma, float eps,
                               const float *w, const float *gain, float *w_hat, float *mean,
                               float *rstd);
/* dw (Co, fan_in) +=, dgain (Co) +=; either may be NULL. dw_hat (Co, fan_in) = dL/dW_hat. */
al_status al_ws_weight_backward(al_ctx *ctx, int co, int fan_in, float gamma, float eps,
                                const float *w, const float *gain, const float *dw_hat, float *dw,
                                float *dgain);

/* ---- 2. ceil-mode 2x2/2 average pool over x (N, C, H, W) -> y (N, C, (H+1)/2, (W+1)/2) ----
 * backward: dx (N, C, H, W) = (+= when dx_accum) dy / (elements of the window). */
al_status al_avgpool2_ceil_forward(al_ctx *ctx, int n, int c, int h, int w, const float *x,
                                   float *y);
al_status al_avgpool2_ceil_backward(al_ctx *ctx, int n, int c, int h, int w, const float *dy,
                                    float *dx, int dx_accum);

/* ---- 3. y = a * x0 + x1 (x1 NULL: y = a * x0) over n_elems ----
 * backward: dx0 = (+=) a * dy, dx1 = (+=) dy; either may be NULL. */
al_status al_scale_add_forward(al_ctx *ctx, size_t n_elems, float a, const float *x0,
                               const float *x1, float *y);
al_status al_scale_add_backward(al_ctx *ctx, size_t n_elems, float a, const float *dy, float *dx0,
                                int acc0, float *dx1, int acc1);

al_status al_ws_weight_forward_cpu(al_ctx *, int, int, float, float, const float *, const float *,
                                   float *, float *, float *);
al_status al_ws_weight_backward_cpu(al_ctx *, int, int, float, float, const float *, const float *,
                                    const float *, float *, float *);
al_status al_avgpool2_ceil_forward_cpu(al_ctx *, int, int, int, int, const float *, float *);
al_status al_avgpool2_ceil_backward_cpu(al_ctx *, int, int, int, int, const float *, float *, int);
al_status al_scale_add_forward_cpu(al_ctx *, size_t, float, const float *, const float *, float *);
al_status al_scale_add_backward_cpu(al_ctx *, size_t, float, const float *, float *, int, float *,
                                    int);
#ifdef AL_HAVE_CUDA
al_status al_ws_weight_forward_cuda(al_ctx *, int, int, float, float, const float *,
                                    const float *, float *, float *, float *);
al_status al_ws_weight_backward_cuda(al_ctx *, int, int, float, float, const float *,
                                     const float *, const float *, float *, float *);
al_status al_avgpool2_ceil_forward_cuda(al_ctx *, int, int, int, int, const float *, float *);
al_status al_avgpool2_ceil_backward_cuda(al_ctx *, int, int, int, int, const float *, float *, int);
al_status al_scale_add_forward_cuda(al_ctx *, size_t, float, const float *, const float *, float *);
al_status al_scale_add_backward_cuda(al_ctx *, size_t, float, const float *, float *, int, float *,
                                     int);
#endif

/* ---- graph nodes (builders call these before al_model_setup) ----
 * WS conv: parameters <name>.weight (Co, Ci, k, k), <name>.bias (Co) when bias, and
 * <name>.gain (Co, 1, 1, 1) (trainable, AL_P_OTHER, init 1, or 0 when gain_zero: the last
 * conv of an NF residual branch, timm gain_init = 0 without skipinit). Weight init
 * kaiming_normal_(fan_in, 'linear') = N(0, 1/fan_in) as timm NormFreeNet; bias 0.
 * Per slot the node keeps W_hat and a dW_hat scratch (2*Co*fan_in floats). Conv scratch: see the note in wsconv.c. Returns the output buffer. */
int al_model_wsconv(al_model *m, const char *name, int in, int c_out, int k, int stride, int pad,
                    int bias, float gamma, float eps, int gain_zero);
int al_model_avgpool2_ceil(al_model *m, int in);
/* y = a * x0 + x1 (x1 < 0: y = a * x0). */
int al_model_scale_add(al_model *m, float a, int x0, int x1);
extern const al_node_ops al_wsconv_node_ops, al_avgpool2_ceil_node_ops, al_scale_add_node_ops;

#ifdef __cplusplus
}
#endif
#endif
