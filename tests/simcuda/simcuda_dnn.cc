/* simcuda_dnn.cc: cuDNN's convolution calls and cublasSgemm for simcuda (cudnn.h, cublas_v2.h).
 * Tensors and filters are float or bfloat16 (x, w, y of one type, as cuDNN's FLOAT and
 * BFLOAT16 configs); bf16 values are read exactly and results rounded to nearest even once.
 * Layouts NCHW or NHWC (filters KCRS or KRSC), one layout for x, w and y of a convolution
 * (mixing them is refused, so a forgotten filter format shows up); each image is brought to
 * CHW order in double before the arithmetic, so both layouts compute the same values.
 * Convolutions are im2col + cblas_dgemm, accumulating in double (not the CPU backend's float
 * path); alpha/beta follow cuDNN (beta == 0: the output is not read, so
 * NaN garbage in it cannot leak). Every call checks that its buffers are device memory and
 * that the workspace it was given is as large as the algorithm asked for, then scribbles over
 * that workspace: a workspace aliasing live data shows up as wrong results. */
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>

#include <algorithm>
#include <vector>

#include "core/ops/bf16.h"
#include "cublas_v2.h"
#include "cudnn.h"

struct simcuda_dnn_handle {
    cudaStream_t stream;
};
struct simcuda_tensor_desc {
    int n, c, h, w, set, bf16, nhwc;
};
struct simcuda_filter_desc {
    int k, c, h, w, set, bf16, nhwc;
};
struct simcuda_conv_desc {
    int ph, pw, u, v, dh, dw, set;
    cudnnMathType_t math;
};
struct simcuda_blas_handle {
    cudaStream_t stream;
    cublasMath_t math;
};

namespace {

cudnnStatus_t bad(const char *fn, const char *why) {
    fprintf(stderr, "simcuda: %s: %s\n", fn, why);
    return CUDNN_STATUS_BAD_PARAM;
}

bool dev(const void *p) { return p && simcuda::kernel_may_touch(p); }

struct Geo {
    int n, c, h, w, k, kh, kw, oh, ow, ph, pw, u, v, dh, dw;
};
bool geo(const simcuda_tensor_desc *x, const simcuda_filter_desc *f, const simcuda_conv_desc *cv,
         const simcuda_tensor_desc *y, Geo *g) {
    if (!x || !f || !cv || !y || !x->set || !f->set || !cv->set || !y->set) return false;
    if (x->c != f->c) return false;
    /* cuDNN's FLOAT and BFLOAT16 configs: x, w and y of one type (no mixed config) */
    if (x->bf16 != f->bf16 || x->bf16 != y->bf16) {
        fprintf(stderr, "simcuda: convolution with mixed float / bfloat16 descriptors\n");
        return false;
    }
    if (x->nhwc != f->nhwc || x->nhwc != y->nhwc) {
        fprintf(stderr, "simcuda: convolution with mixed NCHW / NHWC descriptors\n");
        return false;
    }
    *g = Geo{x->n, x->c, x->h, x->w, f->k, f->h, f->w, 0, 0, cv->ph, cv->pw, cv->u, cv->v, cv->dh, cv->dw};
    g->oh = (x->h + 2 * cv->ph - cv->dh * (f->h - 1) - 1) / cv->u + 1;
    g->ow = (x->w + 2 * cv->pw - cv->dw * (f->w - 1) - 1) / cv->v + 1;
    return y->n == x->n && y->c == f->k && y->h == g->oh && y->w == g->ow && g->oh > 0 && g->ow > 0;
}

/* workspace each simulated algorithm asks for (bytes), distinct per algorithm */
size_t ws_need(const Geo &g, int family, int algo) {
    const size_t col = (size_t)g.c * g.kh * g.kw * g.oh * g.ow * sizeof(float);
    switch (family * 16 + algo) {
    case 0 * 16 + CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM: return 0;
    case 0 * 16 + CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM: return (size_t)g.kh * g.kw * 64 + 256;
    case 0 * 16 + CUDNN_CONVOLUTION_FWD_ALGO_GEMM: return col * (size_t)g.n;
    case 0 * 16 + CUDNN_CONVOLUTION_FWD_ALGO_FFT:
    case 1 * 16 + CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT:
    case 2 * 16 + CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT: return (size_t)256 << 20;
    case 0 * 16 + CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED:
    case 1 * 16 + CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED:
    case 2 * 16 + CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED: return col + 4096;
    case 1 * 16 + CUDNN_CONVOLUTION_BWD_DATA_ALGO_0: return 0;
    case 1 * 16 + CUDNN_CONVOLUTION_BWD_DATA_ALGO_1: return (size_t)g.c * g.kh * g.kw * 16 + 128;
    case 2 * 16 + CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0: return 0;
    case 2 * 16 + CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1: return (size_t)g.k * g.c * g.kh * g.kw * 4 + 512;
    case 2 * 16 + CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3: return col;
    }
    return (size_t)-1;
}

template <class P, class A>
int fill_perf(P *perf, int req, const Geo &g, int family, const A *algos, const int *det,
              const cudnnMathType_t *math, int na) {
    int m = na < req ? na : req;
    for (int i = 0; i < m; i++) {
        perf[i].algo = algos[i];
        perf[i].status = CUDNN_STATUS_SUCCESS;
        perf[i].time = (float)(i + 1);
        perf[i].memory = ws_need(g, family, (int)algos[i]);
        perf[i].determinism = det[i] ? CUDNN_DETERMINISTIC : CUDNN_NON_DETERMINISTIC;
        perf[i].mathType = math[i];
    }
    return m;
}

bool ws_ok(const char *fn, const Geo &g, int family, int algo, void *ws, size_t ws_bytes) {
    size_t need = ws_need(g, family, algo);
    if (need == (size_t)-1) {
        fprintf(stderr, "simcuda: %s: algorithm %d not supported\n", fn, algo);
        return false;
    }
    if (ws_bytes < need) {
        fprintf(stderr, "simcuda: %s: workspace %zu bytes, algorithm %d needs %zu\n", fn,
                ws_bytes, algo, need);
        return false;
    }
    if (ws_bytes && !dev(ws)) {
        fprintf(stderr, "simcuda: %s: workspace %p is not device memory\n", fn, ws);
        return false;
    }
    return true;
}

void scribble(void *ws, size_t n) {
    if (ws && n) memset(ws, 0x7F, n); /* 0x7F7F7F7F: 3.4e38 as float */
}

size_t xi(const Geo &g, int n, int c, int h, int w) { return (((size_t)n * g.c + c) * g.h + h) * g.w + w; }

/* cols (C*KH*KW, OH*OW) of image X (C, H, W), in double; col2im adds cols back into acc */
void im2col(const Geo &g, const double *X, double *cols) {
    const int ohw = g.oh * g.ow;
    for (int c = 0; c < g.c; c++)
        for (int r = 0; r < g.kh; r++)
            for (int q = 0; q < g.kw; q++) {
                double *row = cols + ((size_t)(c * g.kh + r) * g.kw + q) * ohw;
                for (int oh = 0; oh < g.oh; oh++) {
                    const int ih = oh * g.u - g.ph + r * g.dh;
                    for (int ow = 0; ow < g.ow; ow++) {
                        const int iw = ow * g.v - g.pw + q * g.dw;
                        row[oh * g.ow + ow] = ih < 0 || ih >= g.h || iw < 0 || iw >= g.w
                                                  ? 0.0
                                                  : X[xi(g, 0, c, ih, iw)];
                    }
                }
            }
}
void col2im(const Geo &g, const double *cols, double *acc) {
    const int ohw = g.oh * g.ow;
    for (int c = 0; c < g.c; c++)
        for (int r = 0; r < g.kh; r++)
            for (int q = 0; q < g.kw; q++) {
                const double *row = cols + ((size_t)(c * g.kh + r) * g.kw + q) * ohw;
                for (int oh = 0; oh < g.oh; oh++) {
                    const int ih = oh * g.u - g.ph + r * g.dh;
                    if (ih < 0 || ih >= g.h) continue;
                    for (int ow = 0; ow < g.ow; ow++) {
                        const int iw = ow * g.v - g.pw + q * g.dw;
                        if (iw >= 0 && iw < g.w) acc[((size_t)c * g.h + ih) * g.w + iw] += row[oh * g.ow + ow];
                    }
                }
            }
}
/* n values of p from element `off`: float, or bfloat16 when bf */
std::vector<double> to_double(const void *p, bool bf, size_t off, size_t n) {
    std::vector<double> v(n);
    for (size_t i = 0; i < n; i++)
        v[i] = bf ? (double)al_bf16_to_f32(((const al_bf16 *)p)[off + i])
                  : (double)((const float *)p)[off + i];
    return v;
}

/* Image (or filter) `i` of c channels x hw positions from p in CHW order (permuted from HWC
 * when nhwc), and the element offset of (ch, q) of that image in the stored layout. */
std::vector<double> chw(const void *p, bool bf, bool nhwc, size_t i, int c, int hw) {
    std::vector<double> v = to_double(p, bf, i * (size_t)c * hw, (size_t)c * hw);
    if (!nhwc) return v;
    std::vector<double> t(v.size());
    for (int ch = 0; ch < c; ch++)
        for (int q = 0; q < hw; q++) t[(size_t)ch * hw + q] = v[(size_t)q * c + ch];
    return t;
}
size_t at(bool nhwc, size_t i, int c, int hw, int ch, int q) {
    return i * (size_t)c * hw + (nhwc ? (size_t)q * c + ch : (size_t)ch * hw + q);
}
/* all K filters in KCRS order */
std::vector<double> filters(const void *w, bool bf, bool nhwc, const Geo &g) {
    std::vector<double> all;
    all.reserve((size_t)g.k * g.c * g.kh * g.kw);
    for (int k = 0; k < g.k; k++) {
        std::vector<double> f = chw(w, bf, nhwc, (size_t)k, g.c, g.kh * g.kw);
        all.insert(all.end(), f.begin(), f.end());
    }
    return all;
}

/* cuDNN's output rule: alpha * v + beta * old, and `old` is not read when beta == 0; bf16
 * outputs are formed in fp32 and rounded to nearest even once */
void blend(float al, float be, double v, void *out, bool bf, size_t i) {
    if (bf) {
        al_bf16 *o = (al_bf16 *)out;
        const float r = be == 0.0f ? (float)(al * v)
                                   : (float)(al * v + (double)be * al_bf16_to_f32(o[i]));
        o[i] = al_f32_to_bf16(r);
        return;
    }
    float *o = (float *)out;
    o[i] = be == 0.0f ? (float)(al * v) : (float)(al * v + (double)be * o[i]);
}

/* handles and descriptors: zero-initialised structs ("not set" until a Set call) */
template <class T>
cudnnStatus_t make(T **p) {
    *p = new T{};
    return CUDNN_STATUS_SUCCESS;
}
template <class T>
cudnnStatus_t drop(T *p) {
    delete p;
    return CUDNN_STATUS_SUCCESS;
}

} // namespace

const char *cudnnGetErrorString(cudnnStatus_t s) {
    switch (s) {
    case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
    case CUDNN_STATUS_NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
    case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
    case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
    case CUDNN_STATUS_EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
    }
    return "CUDNN_STATUS_UNKNOWN";
}
cudnnStatus_t cudnnCreate(cudnnHandle_t *h) { return make(h); }
cudnnStatus_t cudnnDestroy(cudnnHandle_t h) { return drop(h); }
cudnnStatus_t cudnnSetStream(cudnnHandle_t h, cudaStream_t s) {
    h->stream = s;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *d) { return make(d); }
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d) { return drop(d); }
cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t f,
                                         cudnnDataType_t t, int n, int c, int h, int w) {
    if ((f != CUDNN_TENSOR_NCHW && f != CUDNN_TENSOR_NHWC) ||
        (t != CUDNN_DATA_FLOAT && t != CUDNN_DATA_BFLOAT16))
        return bad(__func__, "only NCHW / NHWC float or bfloat16");
    if (n <= 0 || c <= 0 || h <= 0 || w <= 0) return bad(__func__, "non-positive dimension");
    *d = simcuda_tensor_desc{n, c, h, w, 1, t == CUDNN_DATA_BFLOAT16, f == CUDNN_TENSOR_NHWC};
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *d) { return make(d); }
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d) { return drop(d); }
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t t,
                                         cudnnTensorFormat_t f, int k, int c, int h, int w) {
    if ((f != CUDNN_TENSOR_NCHW && f != CUDNN_TENSOR_NHWC) ||
        (t != CUDNN_DATA_FLOAT && t != CUDNN_DATA_BFLOAT16))
        return bad(__func__, "only NCHW / NHWC (KCRS / KRSC) float or bfloat16");
    if (k <= 0 || c <= 0 || h <= 0 || w <= 0) return bad(__func__, "non-positive dimension");
    *d = simcuda_filter_desc{k, c, h, w, 1, t == CUDNN_DATA_BFLOAT16, f == CUDNN_TENSOR_NHWC};
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *d) { return make(d); }
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d) { return drop(d); }
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int pad_h, int pad_w,
                                              int u, int v, int dil_h, int dil_w,
                                              cudnnConvolutionMode_t mode, cudnnDataType_t t) {
    if (mode != CUDNN_CROSS_CORRELATION || t != CUDNN_DATA_FLOAT)
        return bad(__func__, "only float cross-correlation is simulated");
    if (pad_h < 0 || pad_w < 0 || u <= 0 || v <= 0 || dil_h <= 0 || dil_w <= 0)
        return bad(__func__, "bad pad/stride/dilation");
    *d = simcuda_conv_desc{pad_h, pad_w, u, v, dil_h, dil_w, 1, CUDNN_DEFAULT_MATH};
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t m) {
    if (m < CUDNN_DEFAULT_MATH || m > CUDNN_FMA_MATH) return bad(__func__, "math type");
    d->math = m;
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t d,
                                                    const cudnnTensorDescriptor_t x,
                                                    const cudnnFilterDescriptor_t w, int *n,
                                                    int *c, int *h, int *wo) {
    if (!d->set || !x->set || !w->set || x->c != w->c) return bad(__func__, "descriptors");
    *n = x->n;
    *c = w->k;
    *h = (x->h + 2 * d->ph - d->dh * (w->h - 1) - 1) / d->u + 1;
    *wo = (x->w + 2 * d->pw - d->dw * (w->w - 1) - 1) / d->v + 1;
    return CUDNN_STATUS_SUCCESS;
}

/* Algorithm lists: fastest-looking first, including ones op_conv2d.cu must skip (not
 * deterministic; FFT/Winograd in strict fp32; too much workspace). */
cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t, cudnnTensorDescriptor_t x,
                                                     cudnnFilterDescriptor_t w,
                                                     cudnnConvolutionDescriptor_t conv,
                                                     cudnnTensorDescriptor_t y, int req, int *got,
                                                     cudnnConvolutionFwdAlgoPerf_t *perf) {
    Geo g;
    if (!geo(x, w, conv, y, &g)) return bad(__func__, "descriptors disagree");
    static const cudnnConvolutionFwdAlgo_t a[] = {
        CUDNN_CONVOLUTION_FWD_ALGO_FFT, CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED,
        CUDNN_CONVOLUTION_FWD_ALGO_GEMM, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM,
        CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM};
    static const int det[] = {1, 1, 1, 1, 1};
    static const cudnnMathType_t m[] = {CUDNN_DEFAULT_MATH, CUDNN_TENSOR_OP_MATH, CUDNN_DEFAULT_MATH,
                                        CUDNN_TENSOR_OP_MATH, CUDNN_DEFAULT_MATH};
    *got = fill_perf(perf, req, g, 0, a, det, m, 5);
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(
    cudnnHandle_t, cudnnFilterDescriptor_t w, cudnnTensorDescriptor_t dy,
    cudnnConvolutionDescriptor_t conv, cudnnTensorDescriptor_t dx, int req, int *got,
    cudnnConvolutionBwdDataAlgoPerf_t *perf) {
    Geo g;
    if (!geo(dx, w, conv, dy, &g)) return bad(__func__, "descriptors disagree");
    static const cudnnConvolutionBwdDataAlgo_t a[] = {
        CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT,
        CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1};
    static const int det[] = {0, 1, 1, 1};
    static const cudnnMathType_t m[] = {CUDNN_TENSOR_OP_MATH, CUDNN_DEFAULT_MATH,
                                        CUDNN_DEFAULT_MATH, CUDNN_TENSOR_OP_MATH};
    *got = fill_perf(perf, req, g, 1, a, det, m, 4);
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(
    cudnnHandle_t, cudnnTensorDescriptor_t x, cudnnTensorDescriptor_t dy,
    cudnnConvolutionDescriptor_t conv, cudnnFilterDescriptor_t dw, int req, int *got,
    cudnnConvolutionBwdFilterAlgoPerf_t *perf) {
    Geo g;
    if (!geo(x, dw, conv, dy, &g)) return bad(__func__, "descriptors disagree");
    static const cudnnConvolutionBwdFilterAlgo_t a[] = {
        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3,
        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT,
        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1};
    static const int det[] = {0, 0, 1, 1, 1};
    static const cudnnMathType_t m[] = {CUDNN_TENSOR_OP_MATH, CUDNN_DEFAULT_MATH, CUDNN_DEFAULT_MATH,
                                        CUDNN_DEFAULT_MATH, CUDNN_TENSOR_OP_MATH};
    *got = fill_perf(perf, req, g, 2, a, det, m, 5);
    return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(cudnnHandle_t, cudnnTensorDescriptor_t x,
                                                      cudnnFilterDescriptor_t w,
                                                      cudnnConvolutionDescriptor_t conv,
                                                      cudnnTensorDescriptor_t y,
                                                      cudnnConvolutionFwdAlgo_t a, size_t *ws) {
    Geo g;
    if (!geo(x, w, conv, y, &g)) return bad(__func__, "descriptors disagree");
    *ws = ws_need(g, 0, a);
    return *ws == (size_t)-1 ? CUDNN_STATUS_NOT_SUPPORTED : CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(
    cudnnHandle_t, cudnnFilterDescriptor_t w, cudnnTensorDescriptor_t dy,
    cudnnConvolutionDescriptor_t conv, cudnnTensorDescriptor_t dx, cudnnConvolutionBwdDataAlgo_t a,
    size_t *ws) {
    Geo g;
    if (!geo(dx, w, conv, dy, &g)) return bad(__func__, "descriptors disagree");
    *ws = ws_need(g, 1, a);
    return *ws == (size_t)-1 ? CUDNN_STATUS_NOT_SUPPORTED : CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(
    cudnnHandle_t, cudnnTensorDescriptor_t x, cudnnTensorDescriptor_t dy,
    cudnnConvolutionDescriptor_t conv, cudnnFilterDescriptor_t dw,
    cudnnConvolutionBwdFilterAlgo_t a, size_t *ws) {
    Geo g;
    if (!geo(x, dw, conv, dy, &g)) return bad(__func__, "descriptors disagree");
    *ws = ws_need(g, 2, a);
    return *ws == (size_t)-1 ? CUDNN_STATUS_NOT_SUPPORTED : CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void *alpha,
                                      cudnnTensorDescriptor_t xd, const void *x,
                                      cudnnFilterDescriptor_t wd, const void *w,
                                      cudnnConvolutionDescriptor_t conv,
                                      cudnnConvolutionFwdAlgo_t a, void *ws, size_t ws_bytes,
                                      const void *beta, cudnnTensorDescriptor_t yd, void *y) {
    Geo g;
    if (!geo(xd, wd, conv, yd, &g)) return bad(__func__, "descriptors disagree");
    if (!dev(x) || !dev(w) || !dev(y)) return bad(__func__, "x, w or y is not device memory");
    if (!ws_ok(__func__, g, 0, a, ws, ws_bytes)) return CUDNN_STATUS_BAD_PARAM;
    const float al = *(const float *)alpha, be = *(const float *)beta;
    const bool bf = xd->bf16, nh = xd->nhwc;
    simcuda::enqueue(h->stream, "cudnnConvolutionForward", [=]() {
        scribble(ws, ws_bytes);
        const int ckk = g.c * g.kh * g.kw, ohw = g.oh * g.ow;
        std::vector<double> Wd = filters(w, bf, nh, g), cols((size_t)ckk * ohw),
                            out((size_t)g.k * ohw);
        for (int n = 0; n < g.n; n++) {
            im2col(g, chw(x, bf, nh, (size_t)n, g.c, g.h * g.w).data(), cols.data());
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g.k, ohw, ckk, 1.0, Wd.data(),
                        ckk, cols.data(), ohw, 0.0, out.data(), ohw);
            for (int k = 0; k < g.k; k++)
                for (int q = 0; q < ohw; q++)
                    blend(al, be, out[(size_t)k * ohw + q], y, bf, at(nh, (size_t)n, g.k, ohw, k, q));
        }
    });
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t h, const void *alpha,
                                           cudnnFilterDescriptor_t wd, const void *w,
                                           cudnnTensorDescriptor_t dyd, const void *dy,
                                           cudnnConvolutionDescriptor_t conv,
                                           cudnnConvolutionBwdDataAlgo_t a, void *ws,
                                           size_t ws_bytes, const void *beta,
                                           cudnnTensorDescriptor_t dxd, void *dx) {
    Geo g;
    if (!geo(dxd, wd, conv, dyd, &g)) return bad(__func__, "descriptors disagree");
    if (!dev(w) || !dev(dy) || !dev(dx)) return bad(__func__, "w, dy or dx is not device memory");
    if (!ws_ok(__func__, g, 1, a, ws, ws_bytes)) return CUDNN_STATUS_BAD_PARAM;
    const float al = *(const float *)alpha, be = *(const float *)beta;
    const bool bf = dxd->bf16, nh = dxd->nhwc;
    simcuda::enqueue(h->stream, "cudnnConvolutionBackwardData", [=]() {
        scribble(ws, ws_bytes);
        const int ckk = g.c * g.kh * g.kw, ohw = g.oh * g.ow, hw = g.h * g.w;
        const size_t chw_n = (size_t)g.c * hw;
        std::vector<double> Wd = filters(w, bf, nh, g), cols((size_t)ckk * ohw), acc(chw_n);
        for (int n = 0; n < g.n; n++) {
            std::vector<double> d = chw(dy, bf, nh, (size_t)n, g.k, ohw);
            cblas_dgemm(CblasRowMajor, CblasTrans, CblasNoTrans, ckk, ohw, g.k, 1.0, Wd.data(), ckk,
                        d.data(), ohw, 0.0, cols.data(), ohw);
            std::fill(acc.begin(), acc.end(), 0.0);
            col2im(g, cols.data(), acc.data());
            for (int c = 0; c < g.c; c++)
                for (int q = 0; q < hw; q++)
                    blend(al, be, acc[(size_t)c * hw + q], dx, bf, at(nh, (size_t)n, g.c, hw, c, q));
        }
    });
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t h, const void *alpha,
                                             cudnnTensorDescriptor_t xd, const void *x,
                                             cudnnTensorDescriptor_t dyd, const void *dy,
                                             cudnnConvolutionDescriptor_t conv,
                                             cudnnConvolutionBwdFilterAlgo_t a, void *ws,
                                             size_t ws_bytes, const void *beta,
                                             cudnnFilterDescriptor_t dwd, void *dw) {
    Geo g;
    if (!geo(xd, dwd, conv, dyd, &g)) return bad(__func__, "descriptors disagree");
    if (!dev(x) || !dev(dy) || !dev(dw)) return bad(__func__, "x, dy or dw is not device memory");
    if (!ws_ok(__func__, g, 2, a, ws, ws_bytes)) return CUDNN_STATUS_BAD_PARAM;
    const float al = *(const float *)alpha, be = *(const float *)beta;
    const bool bf = xd->bf16, nh = xd->nhwc;
    simcuda::enqueue(h->stream, "cudnnConvolutionBackwardFilter", [=]() {
        scribble(ws, ws_bytes);
        const int ckk = g.c * g.kh * g.kw, ohw = g.oh * g.ow, kk = g.kh * g.kw;
        std::vector<double> cols((size_t)ckk * ohw), acc((size_t)g.k * ckk, 0.0);
        for (int n = 0; n < g.n; n++) {
            im2col(g, chw(x, bf, nh, (size_t)n, g.c, g.h * g.w).data(), cols.data());
            std::vector<double> d = chw(dy, bf, nh, (size_t)n, g.k, ohw);
            cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, g.k, ckk, ohw, 1.0, d.data(), ohw,
                        cols.data(), ohw, 1.0, acc.data(), ckk);
        }
        for (int k = 0; k < g.k; k++)
            for (int c = 0; c < g.c; c++)
                for (int q = 0; q < kk; q++)
                    blend(al, be, acc[((size_t)k * g.c + c) * kk + q], dw, bf,
                          at(nh, (size_t)k, g.c, kk, c, q));
    });
    return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnAddTensor(cudnnHandle_t h, const void *alpha, cudnnTensorDescriptor_t ad,
                             const void *a, const void *beta, cudnnTensorDescriptor_t cd, void *c) {
    if (!ad->set || !cd->set) return bad(__func__, "descriptors");
    if (ad->bf16 || cd->bf16) return bad(__func__, "only float tensors are simulated");
    if (ad->nhwc || cd->nhwc) return bad(__func__, "only NCHW tensors are simulated");
    const simcuda_tensor_desc A = *ad, C = *cd;
    if ((A.n != 1 && A.n != C.n) || (A.c != 1 && A.c != C.c) || (A.h != 1 && A.h != C.h) ||
        (A.w != 1 && A.w != C.w))
        return bad(__func__, "A does not broadcast to C");
    if (!dev(a) || !dev(c)) return bad(__func__, "a or c is not device memory");
    const float al = *(const float *)alpha, be = *(const float *)beta;
    const float *AP = (const float *)a;
    float *CP = (float *)c;
    simcuda::enqueue(h->stream, "cudnnAddTensor", [=]() {
        for (int n = 0; n < C.n; n++)
            for (int ch = 0; ch < C.c; ch++)
                for (int y = 0; y < C.h; y++)
                    for (int x = 0; x < C.w; x++) {
                        const size_t ia = (((size_t)(A.n == 1 ? 0 : n) * A.c + (A.c == 1 ? 0 : ch)) * A.h +
                                           (A.h == 1 ? 0 : y)) * A.w + (A.w == 1 ? 0 : x);
                        float &o = CP[(((size_t)n * C.c + ch) * C.h + y) * C.w + x];
                        o = be == 0.0f ? al * AP[ia] : al * AP[ia] + be * o;
                    }
    });
    return CUDNN_STATUS_SUCCESS;
}

/* ------------------------------------------------------------------ cuBLAS */

const char *cublasGetStatusName(cublasStatus_t s) {
    switch (s) {
    case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
    case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
    case CUBLAS_STATUS_EXECUTION_FAILED: return "CUBLAS_STATUS_EXECUTION_FAILED";
    }
    return "CUBLAS_STATUS_UNKNOWN";
}
cublasStatus_t cublasCreate(cublasHandle_t *h) {
    *h = new simcuda_blas_handle{NULL, CUBLAS_DEFAULT_MATH};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasDestroy(cublasHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetStream(cublasHandle_t h, cudaStream_t s) {
    h->stream = s;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetWorkspace(cublasHandle_t h, void *ws, size_t bytes) {
    if (!h || (bytes && !dev(ws))) {
        fprintf(stderr, "simcuda: cublasSetWorkspace: the workspace is not device memory\n");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSetMathMode(cublasHandle_t h, cublasMath_t m) {
    h->math = m;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSgemm(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m,
                           int n, int k, const float *alpha, const float *a, int lda,
                           const float *b, int ldb, const float *beta, float *c, int ldc) {
    const int ra = ta == CUBLAS_OP_N ? m : k, rb = tb == CUBLAS_OP_N ? k : n;
    if (m < 0 || n < 0 || k < 0 || lda < (ra > 1 ? ra : 1) || ldb < (rb > 1 ? rb : 1) ||
        ldc < (m > 1 ? m : 1)) {
        fprintf(stderr, "simcuda: cublasSgemm: bad sizes m %d n %d k %d lda %d ldb %d ldc %d\n", m,
                n, k, lda, ldb, ldc);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (!dev(a) || !dev(b) || !dev(c)) {
        fprintf(stderr, "simcuda: cublasSgemm: A, B or C is not device memory\n");
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    const float al = *alpha, be = *beta;
    simcuda::enqueue(h->stream, "cublasSgemm", [=]() {
        if (be == 0.0f) /* cuBLAS does not read C when beta == 0 */
            for (int j = 0; j < n; j++) memset(c + (size_t)j * ldc, 0, (size_t)m * sizeof(float));
        if (m && n)
            cblas_sgemm(CblasColMajor, ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                        tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, al, a, lda, b, ldb,
                        be, c, ldc);
    });
    return CUBLAS_STATUS_SUCCESS;
}
