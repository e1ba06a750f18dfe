/* bf16.h: bfloat16 activations (run.precision = bf16, CUDA only).
 *
 * Storage: al_bf16 is the top 16 bits of an IEEE float (1 sign, 8 exponent, 7 mantissa bits),
 * the layout of CUDA's __nv_bfloat16 and torch.bfloat16. Conversions are one AL_HOSTDEV pair
 * used by the host (tests, the CPU side of comparisons) and every kernel, so a value converts
 * bitwise the same everywhere:
 *   to float:  exact (shift left by 16);
 *   from float: round to nearest, ties to even (as __float2bfloat16_rn / torch's .to(bf16));
 *              overflow rounds to +-inf, NaN stays a (quiet) NaN with its sign.
 *
 * What runs in bf16 (core/model.c decides per node and per buffer, see there): conv (cuDNN
 * BFLOAT16 config: bf16 x/w/y, fp32 accumulation), batch norm (bf16 x/y, fp32 statistics in
 * double as the fp32 kernel, fp32 affine parameters), ReLU, residual add, max/avg pooling.
 * Parameters, their gradients, the optimiser, the model input, logits, features and every
 * custom or linear node stay fp32 (the master weights; the conv weights are cast to a bf16
 * shadow once per forward). Weight gradients of a bf16 conv are computed in bf16 and added
 * into the fp32 gradients, as PyTorch's autocast does.
 *
 * The CUDA entry points below are the bf16 twins of the fp32 ops; their CPU reference is the
 * fp32 CPU op on the same (bf16-representable) inputs, with tolerances set by bf16's
 * 2^-8 relative rounding (tests/test_cuda2.c case bf16). */
#ifndef AL_OP_BF16_H
#define AL_OP_BF16_H

#include <string.h>

#include "core/ctx.h"
#include "core/ops/batchnorm.h"
#include "core/ops/conv2d.h"
#include "core/ops/pool.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef uint16_t al_bf16;

AL_HOSTDEV float al_bf16_to_f32(al_bf16 v) {
    const uint32_t u = (uint32_t)v << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

AL_HOSTDEV al_bf16 al_f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (al_bf16)((u >> 16) | 0x0040u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);                                            /* ties to even */
    return (al_bf16)(u >> 16);
}

/* dst (n) = src, or dst += src when accum; each side fp32 or bf16 (src_bf16 / dst_bf16). The
 * sum is formed in fp32 and rounded once when dst is bf16. */
al_status al_cast(al_ctx *ctx, size_t n, const void *src, int src_bf16, void *dst, int dst_bf16,
                  int accum);

/* Storage format of a tensor viewed as (n, c, hw): bit AL_FMT_BF16 = bf16 elements (else fp32),
 * bit AL_FMT_NHWC = channels last, element (i, q, ch) at (i*hw + q)*c + ch (else NCHW,
 * (i*c + ch)*hw + q). run.layout = nhwc stores the conv/BN/ReLU/add/pool buffers NHWC
 * (core/model.c); conv weights (c_out, c_in, kh, kw) are the n = c_out, c = c_in,
 * hw = kh*kw case (OIHW <-> OHWI). */
enum { AL_FMT_BF16 = 1, AL_FMT_NHWC = 2 };

/* dst = src (or dst += src when accum) converting element type and layout. When the layouts
 * agree, or c == 1 or hw == 1 (both layouts are the same bytes), this is al_cast. */
al_status al_convert(al_ctx *ctx, int n, int c, int hw, const void *src, int src_fmt, void *dst,
                     int dst_fmt, int accum);

#ifdef AL_HAVE_CUDA
al_status al_convert_cuda(al_ctx *ctx, int n, int c, int hw, const void *src, int src_fmt,
                          void *dst, int dst_fmt, int accum);
al_status al_cast_cuda(al_ctx *ctx, size_t n, const void *src, int src_bf16, void *dst,
                       int dst_bf16, int accum);
al_status al_relu_forward_bf16_cuda(al_ctx *ctx, size_t n, const al_bf16 *x, al_bf16 *y);
al_status al_relu_backward_bf16_cuda(al_ctx *ctx, size_t n, const al_bf16 *y, const al_bf16 *dy,
                                     al_bf16 *dx, int dx_accum);
al_status al_add_forward_bf16_cuda(al_ctx *ctx, size_t n, const al_bf16 *a, const al_bf16 *b,
                                   al_bf16 *y);
al_status al_maxpool_forward_bf16_cuda(al_ctx *ctx, const al_pool_desc *d, const al_bf16 *x,
                                       al_bf16 *y, int32_t *argmax);
al_status al_maxpool_backward_bf16_cuda(al_ctx *ctx, const al_pool_desc *d,
                                        const int32_t *argmax, const al_bf16 *dy, al_bf16 *dx,
                                        int dx_accum);
al_status al_avgpool_forward_bf16_cuda(al_ctx *ctx, const al_pool_desc *d, const al_bf16 *x,
                                       al_bf16 *y);
al_status al_avgpool_backward_bf16_cuda(al_ctx *ctx, const al_pool_desc *d, const al_bf16 *dy,
                                        al_bf16 *dx, int dx_accum);
/* gamma, beta, running stats and saved mean/invstd fp32, as al_bn_forward. */
al_status al_bn_forward_bf16_cuda(al_ctx *ctx, const al_bn_desc *d, const al_bf16 *x,
                                  const float *gamma, const float *beta, float *running_mean,
                                  float *running_var, al_bf16 *y, float *save_mean,
                                  float *save_invstd);
al_status al_bn_backward_bf16_cuda(al_ctx *ctx, const al_bn_desc *d, const al_bf16 *x,
                                   const float *gamma, const float *save_mean,
                                   const float *save_invstd, const al_bf16 *dy, al_bf16 *dx,
                                   int dx_accum, float *dgamma, float *dbeta);
/* Workspace bytes of the bf16 plan (as al_conv2d_scratch_bytes). */
size_t al_conv2d_scratch_bytes_bf16_cuda(const al_ctx *ctx, const al_conv2d_desc *d);
/* w: the bf16 shadow of the weights; b (fp32) or NULL. dw / db: fp32 gradients, added (+=);
 * cuDNN writes the bf16 weight gradient into ctx scratch (counted by
 * al_conv2d_scratch_bytes_bf16_cuda), from where it is added into dw. */
al_status al_conv2d_forward_bf16_cuda(al_ctx *ctx, const al_conv2d_desc *d, const al_bf16 *x,
                                      const al_bf16 *w, const float *b, al_bf16 *y);
al_status al_conv2d_backward_bf16_cuda(al_ctx *ctx, const al_conv2d_desc *d, const al_bf16 *x,
                                       const al_bf16 *w, const al_bf16 *dy, al_bf16 *dx,
                                       int dx_accum, float *dw, float *db);
#endif

#ifdef __cplusplus
}
#endif
#endif
