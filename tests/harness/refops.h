/* refops.h: naive reference implementations of every op in DOUBLE precision, written
 * independently of core/ops (plain loops, no im2col/GEMM). Their backward passes are checked
 * against central finite differences in double; the float32 ops are then checked against
 * these references with tolerances derived from eps_f32 and the reduction length.
 *
 * Conventions: NCHW activations, OIHW conv weights, (Out, In) linear weights, as core/ops.
 * Every backward here WRITES its outputs ('=', never '+='); any gradient pointer may be NULL
 * to skip it. Shapes in comments; Ho = (H + 2*pad - k)/stride + 1 (floor), pools unpadded. */
#ifndef AL_REFOPS_H
#define AL_REFOPS_H
#include <stddef.h>
#include <stdint.h>

/* Output size of a convolution / pooling window along one dimension (floor mode). */
int al_ref_out_size(int in, int k, int stride, int pad);

/* y (N,Co,Ho,Wo) = conv(x (N,Ci,H,W), w (Co,Ci,k,k)) + b (Co, or NULL). */
void al_ref_conv2d_forward(int n, int ci, int h, int w, int co, int k, int stride, int pad,
                           const double *x, const double *wt, const double *b, double *y);
void al_ref_conv2d_backward(int n, int ci, int h, int w, int co, int k, int stride, int pad,
                            const double *x, const double *wt, const double *dy,
                            double *dx /* (N,Ci,H,W) */, double *dw /* (Co,Ci,k,k) */,
                            double *db /* (Co) */);

/* y (N,Out) = x (N,In) w^T (w: (Out,In)) + b (Out, or NULL). */
void al_ref_linear_forward(int n, int in, int out, const double *x, const double *w,
                           const double *b, double *y);
void al_ref_linear_backward(int n, int in, int out, const double *x, const double *w,
                            const double *dy, double *dx, double *dw, double *db);

/* Batch norm over (N, HW) per channel of x (N,C,HW). train: batch mean and BIASED variance
 * normalise; if running_mean/var are non-NULL they are updated with momentum and the UNBIASED
 * variance. eval (train = 0): running stats normalise. mean/invstd (C) receive the statistics
 * used (either may be NULL). gamma/beta NULL act as 1/0. */
void al_ref_bn_forward(int n, int c, int hw, double eps, double momentum, int train,
                       const double *x, const double *gamma, const double *beta,
                       double *running_mean, double *running_var, double *y, double *mean,
                       double *invstd);
/* Backward given the statistics the forward used. train: through the batch statistics;
 * eval: statistics are constants. */
void al_ref_bn_backward(int n, int c, int hw, int train, const double *x, const double *gamma,
                        const double *mean, const double *invstd, const double *dy, double *dx,
                        double *dgamma, double *dbeta);

/* y = max(x, 0); backward dx = dy * (x > 0). */
void al_ref_relu_forward(size_t n, const double *x, double *y);
void al_ref_relu_backward(size_t n, const double *x, const double *dy, double *dx);

/* Pools over x (N,C,H,W), window k, stride s, no padding. Max: argmax (N,C,Ho,Wo) is the flat
 * index ih*W + iw in the plane, first maximum in row-major window order. */
void al_ref_maxpool_forward(int n, int c, int h, int w, int k, int s, const double *x, double *y,
                            int32_t *argmax);
void al_ref_maxpool_backward(int n, int c, int h, int w, int k, int s, const int32_t *argmax,
                             const double *dy, double *dx);
void al_ref_avgpool_forward(int n, int c, int h, int w, int k, int s, const double *x, double *y);
void al_ref_avgpool_backward(int n, int c, int h, int w, int k, int s, const double *dy,
                             double *dx);

/* y = a + b; backward da = dy, db = dy. */
void al_ref_add_forward(size_t n, const double *a, const double *b, double *y);
void al_ref_add_backward(size_t n, const double *dy, double *da, double *db);

/* y = (x - mean[c]) / std[c] over (N, C, HW); dx = dy / std[c]. */
void al_ref_normalize_forward(int n, int c, int hw, const double *x, const double *mean,
                              const double *std, double *y);
void al_ref_normalize_backward(int n, int c, int hw, const double *std, const double *dy,
                               double *dx);

/* Inverted-dropout mask of elementwise.h: mask_i = (u_i >= p) / (1 - p) (0 when p = 1),
 * u_i = al_rng_uniform(seed, stream, i). Forward y = x * mask, backward dx = dy * mask. */
void al_ref_dropout_mask(size_t n, double p, uint64_t seed, uint64_t stream, double *mask);
void al_ref_dropout_forward(size_t n, const double *x, const double *mask, double *y);
void al_ref_dropout_backward(size_t n, const double *mask, const double *dy, double *dx);

/* Softmax cross-entropy, mean over the batch: logits (N,K), labels (N) in [0,K).
 * Backward: dlogits = (softmax - onehot) / N. */
double al_ref_xent_forward(int n, int k, const double *logits, const int32_t *labels);
void al_ref_xent_backward(int n, int k, const double *logits, const int32_t *labels,
                          double *dlogits);

#endif
