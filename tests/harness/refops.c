/* refops.c: naive double-precision reference ops (see refops.h). Written to be read: direct
 * transcriptions of the defining sums, one output (or one gradient term) at a time, no
 * im2col, no GEMM, no shared code with core/ops. Speed is irrelevant; shapes in tests are tiny. */
#include "harness/refops.h"

#include <math.h>
#include <string.h>

#include "core/base.h"
#include "core/rng.h"

int al_ref_out_size(int in, int k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }

/* ------------------------------------------------------------------ conv2d */

void al_ref_conv2d_forward(int n, int ci, int h, int w, int co, int k, int stride, int pad,
                           const double *x, const double *wt, const double *b, double *y) {
    const int ho = al_ref_out_size(h, k, stride, pad), wo = al_ref_out_size(w, k, stride, pad);
    for (int i = 0; i < n; i++)
        for (int o = 0; o < co; o++)
            for (int oh = 0; oh < ho; oh++)
                for (int ow = 0; ow < wo; ow++) {
                    double s = b ? b[o] : 0.0;
                    for (int c = 0; c < ci; c++)
                        for (int ki = 0; ki < k; ki++) {
                            int ih = oh * stride - pad + ki;
                            if (ih < 0 || ih >= h) continue; /* zero padding */
                            for (int kj = 0; kj < k; kj++) {
                                int iw = ow * stride - pad + kj;
                                if (iw < 0 || iw >= w) continue;
                                s += x[(((size_t)i * ci + c) * h + ih) * w + iw] *
                                     wt[(((size_t)o * ci + c) * k + ki) * k + kj];
                            }
                        }
                    y[(((size_t)i * co + o) * ho + oh) * wo + ow] = s;
                }
}

void al_ref_conv2d_backward(int n, int ci, int h, int w, int co, int k, int stride, int pad,
                            const double *x, const double *wt, const double *dy, double *dx,
                            double *dw, double *db) {
    const int ho = al_ref_out_size(h, k, stride, pad), wo = al_ref_out_size(w, k, stride, pad);
    if (dx) memset(dx, 0, (size_t)n * ci * h * w * sizeof *dx);
    if (dw) memset(dw, 0, (size_t)co * ci * k * k * sizeof *dw);
    if (db) memset(db, 0, (size_t)co * sizeof *db);
    /* y[i,o,oh,ow] depends on x[i,c,ih,iw] and w[o,c,ki,kj] through one product each:
     * scatter dy along exactly the terms of the forward sum */
    for (int i = 0; i < n; i++)
        for (int o = 0; o < co; o++)
            for (int oh = 0; oh < ho; oh++)
                for (int ow = 0; ow < wo; ow++) {
                    const double g = dy[(((size_t)i * co + o) * ho + oh) * wo + ow];
                    if (db) db[o] += g;
                    for (int c = 0; c < ci; c++)
                        for (int ki = 0; ki < k; ki++) {
                            int ih = oh * stride - pad + ki;
                            if (ih < 0 || ih >= h) continue;
                            for (int kj = 0; kj < k; kj++) {
                                int iw = ow * stride - pad + kj;
                                if (iw < 0 || iw >= w) continue;
                                size_t xi = (((size_t)i * ci + c) * h + ih) * w + iw;
                                size_t wi = (((size_t)o * ci + c) * k + ki) * k + kj;
                                if (dx) dx[xi] += g * wt[wi];
                                if (dw) dw[wi] += g * x[xi];
                            }
                        }
                }
}

/* ------------------------------------------------------------------ linear */

void al_ref_linear_forward(int n, int in, int out, const double *x, const double *w,
                           const double *b, double *y) {
    for (int r = 0; r < n; r++)
        for (int o = 0; o < out; o++) {
            double s = b ? b[o] : 0.0;
            for (int i = 0; i < in; i++) s += x[(size_t)r * in + i] * w[(size_t)o * in + i];
            y[(size_t)r * out + o] = s;
        }
}

void al_ref_linear_backward(int n, int in, int out, const double *x, const double *w,
                            const double *dy, double *dx, double *dw, double *db) {
    if (dx)
        for (int r = 0; r < n; r++)
            for (int i = 0; i < in; i++) {
                double s = 0.0;
                for (int o = 0; o < out; o++) s += dy[(size_t)r * out + o] * w[(size_t)o * in + i];
                dx[(size_t)r * in + i] = s;
            }
    if (dw)
        for (int o = 0; o < out; o++)
            for (int i = 0; i < in; i++) {
                double s = 0.0;
                for (int r = 0; r < n; r++) s += dy[(size_t)r * out + o] * x[(size_t)r * in + i];
                dw[(size_t)o * in + i] = s;
            }
    if (db)
        for (int o = 0; o < out; o++) {
            double s = 0.0;
            for (int r = 0; r < n; r++) s += dy[(size_t)r * out + o];
            db[o] = s;
        }
}

/* ------------------------------------------------------------------ batch norm */

#define BN_AT(x, i, ch, q) (x)[((size_t)(i) * c + (ch)) * hw + (q)]

void al_ref_bn_forward(int n, int c, int hw, double eps, double momentum, int train,
                       const double *x, const double *gamma, const double *beta,
                       double *running_mean, double *running_var, double *y, double *mean,
                       double *invstd) {
    const double m = (double)n * hw;
    for (int ch = 0; ch < c; ch++) {
        double mu, var;
        if (train) {
            /* two-pass mean and biased variance */
            double s = 0.0;
            for (int i = 0; i < n; i++)
                for (int q = 0; q < hw; q++) s += BN_AT(x, i, ch, q);
            mu = s / m;
            double ss = 0.0;
            for (int i = 0; i < n; i++)
                for (int q = 0; q < hw; q++) {
                    double dv = BN_AT(x, i, ch, q) - mu;
                    ss += dv * dv;
                }
            var = ss / m;
            if (running_mean) running_mean[ch] = (1 - momentum) * running_mean[ch] + momentum * mu;
            if (running_var)
                running_var[ch] = (1 - momentum) * running_var[ch] + momentum * ss / (m - 1);
        } else {
            mu = running_mean[ch];
            var = running_var[ch];
        }
        const double is = 1.0 / sqrt(var + eps);
        if (mean) mean[ch] = mu;
        if (invstd) invstd[ch] = is;
        const double g = gamma ? gamma[ch] : 1.0, bt = beta ? beta[ch] : 0.0;
        for (int i = 0; i < n; i++)
            for (int q = 0; q < hw; q++) BN_AT(y, i, ch, q) = g * (BN_AT(x, i, ch, q) - mu) * is + bt;
    }
}

void al_ref_bn_backward(int n, int c, int hw, int train, const double *x, const double *gamma,
                        const double *mean, const double *invstd, const double *dy, double *dx,
                        double *dgamma, double *dbeta) {
    const double m = (double)n * hw;
    for (int ch = 0; ch < c; ch++) {
        const double mu = mean[ch], is = invstd[ch], g = gamma ? gamma[ch] : 1.0;
        double sdy = 0.0, sdyxh = 0.0;
        for (int i = 0; i < n; i++)
            for (int q = 0; q < hw; q++) {
                sdy += BN_AT(dy, i, ch, q);
                sdyxh += BN_AT(dy, i, ch, q) * (BN_AT(x, i, ch, q) - mu) * is;
            }
        if (dbeta) dbeta[ch] = sdy;
        if (dgamma) dgamma[ch] = sdyxh;
        if (!dx) continue;
        for (int i = 0; i < n; i++)
            for (int q = 0; q < hw; q++) {
                double xh = (BN_AT(x, i, ch, q) - mu) * is;
                double gy = BN_AT(dy, i, ch, q);
                /* train: xhat depends on every x of the channel through mu and sigma:
                 * dL/dx = g*is*(dy - mean(dy) - xhat*mean(dy*xhat)) */
                BN_AT(dx, i, ch, q) = train ? g * is * (gy - sdy / m - xh * sdyxh / m) : g * is * gy;
            }
    }
}

/* ------------------------------------------------------------------ elementwise */

void al_ref_relu_forward(size_t n, const double *x, double *y) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] > 0 ? x[i] : 0.0;
}
void al_ref_relu_backward(size_t n, const double *x, const double *dy, double *dx) {
    for (size_t i = 0; i < n; i++) dx[i] = x[i] > 0 ? dy[i] : 0.0;
}

void al_ref_add_forward(size_t n, const double *a, const double *b, double *y) {
    for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i];
}
void al_ref_add_backward(size_t n, const double *dy, double *da, double *db) {
    for (size_t i = 0; i < n; i++) {
        if (da) da[i] = dy[i];
        if (db) db[i] = dy[i];
    }
}

void al_ref_normalize_forward(int n, int c, int hw, const double *x, const double *mean,
                              const double *std, double *y) {
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++)
            for (int q = 0; q < hw; q++) BN_AT(y, i, ch, q) = (BN_AT(x, i, ch, q) - mean[ch]) / std[ch];
}
void al_ref_normalize_backward(int n, int c, int hw, const double *std, const double *dy,
                               double *dx) {
    for (int i = 0; i < n; i++)
        for (int ch = 0; ch < c; ch++)
            for (int q = 0; q < hw; q++) BN_AT(dx, i, ch, q) = BN_AT(dy, i, ch, q) / std[ch];
}

void al_ref_dropout_mask(size_t n, double p, uint64_t seed, uint64_t stream, double *mask) {
    for (size_t i = 0; i < n; i++) {
        double u = al_rng_uniform(seed, stream, i);
        mask[i] = (p < 1.0 && u >= p) ? 1.0 / (1.0 - p) : 0.0;
    }
}
void al_ref_dropout_forward(size_t n, const double *x, const double *mask, double *y) {
    for (size_t i = 0; i < n; i++) y[i] = x[i] * mask[i];
}
void al_ref_dropout_backward(size_t n, const double *mask, const double *dy, double *dx) {
    for (size_t i = 0; i < n; i++) dx[i] = dy[i] * mask[i];
}

/* ------------------------------------------------------------------ pooling */

void al_ref_maxpool_forward(int n, int c, int h, int w, int k, int s, const double *x, double *y,
                            int32_t *argmax) {
    const int ho = al_ref_out_size(h, k, s, 0), wo = al_ref_out_size(w, k, s, 0);
    for (int p = 0; p < n * c; p++)
        for (int oh = 0; oh < ho; oh++)
            for (int ow = 0; ow < wo; ow++) {
                int best = (oh * s) * w + ow * s;
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++) {
                        int idx = (oh * s + i) * w + ow * s + j;
                        if (x[(size_t)p * h * w + idx] > x[(size_t)p * h * w + best]) best = idx;
                    }
                y[((size_t)p * ho + oh) * wo + ow] = x[(size_t)p * h * w + best];
                argmax[((size_t)p * ho + oh) * wo + ow] = best;
            }
}

void al_ref_maxpool_backward(int n, int c, int h, int w, int k, int s, const int32_t *argmax,
                             const double *dy, double *dx) {
    const int ho = al_ref_out_size(h, k, s, 0), wo = al_ref_out_size(w, k, s, 0);
    memset(dx, 0, (size_t)n * c * h * w * sizeof *dx);
    for (int p = 0; p < n * c; p++)
        for (int q = 0; q < ho * wo; q++)
            dx[(size_t)p * h * w + argmax[(size_t)p * ho * wo + q]] += dy[(size_t)p * ho * wo + q];
}

void al_ref_avgpool_forward(int n, int c, int h, int w, int k, int s, const double *x, double *y) {
    const int ho = al_ref_out_size(h, k, s, 0), wo = al_ref_out_size(w, k, s, 0);
    for (int p = 0; p < n * c; p++)
        for (int oh = 0; oh < ho; oh++)
            for (int ow = 0; ow < wo; ow++) {
                double acc = 0.0;
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++) acc += x[(size_t)p * h * w + (oh * s + i) * w + ow * s + j];
                y[((size_t)p * ho + oh) * wo + ow] = acc / (k * k);
            }
}

void al_ref_avgpool_backward(int n, int c, int h, int w, int k, int s, const double *dy,
                             double *dx) {
    const int ho = al_ref_out_size(h, k, s, 0), wo = al_ref_out_size(w, k, s, 0);
    memset(dx, 0, (size_t)n * c * h * w * sizeof *dx);
    for (int p = 0; p < n * c; p++)
        for (int oh = 0; oh < ho; oh++)
            for (int ow = 0; ow < wo; ow++) {
                double g = dy[((size_t)p * ho + oh) * wo + ow] / (k * k);
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++) dx[(size_t)p * h * w + (oh * s + i) * w + ow * s + j] += g;
            }
}

/* ------------------------------------------------------------------ softmax cross-entropy */

double al_ref_xent_forward(int n, int k, const double *logits, const int32_t *labels) {
    double total = 0.0;
    for (int r = 0; r < n; r++) {
        const double *z = logits + (size_t)r * k;
        double mx = z[0];
        for (int j = 1; j < k; j++) mx = z[j] > mx ? z[j] : mx;
        double se = 0.0;
        for (int j = 0; j < k; j++) se += exp(z[j] - mx);
        /* -log softmax[label] = logsumexp(z) - z[label] */
        total += mx + log(se) - z[labels[r]];
    }
    return total / n;
}

void al_ref_xent_backward(int n, int k, const double *logits, const int32_t *labels,
                          double *dlogits) {
    for (int r = 0; r < n; r++) {
        const double *z = logits + (size_t)r * k;
        double mx = z[0];
        for (int j = 1; j < k; j++) mx = z[j] > mx ? z[j] : mx;
        double se = 0.0;
        for (int j = 0; j < k; j++) se += exp(z[j] - mx);
        for (int j = 0; j < k; j++)
            dlogits[(size_t)r * k + j] = (exp(z[j] - mx) / se - (j == labels[r] ? 1.0 : 0.0)) / n;
    }
}
