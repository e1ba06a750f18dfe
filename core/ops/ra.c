/* ra.c: ANCRA reverse attention, CPU reference + dispatchers + the two graph nodes (see ra.h).
 * Twin: cuda/op_ra.cu. Shapes (N, C, HW) for z/y/dy/dz, W (K, C), p/dp (N, K), sel (N) int32.
 * Write modes: y '=', sel '=', dz '='/'+=' (acc_z), dW '+=', dp '='/'+=' (acc_p).
 * The CPU path is the readable reference: per-example sums in double, rounded once. */
#include "core/ops/ra.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/ops/linear.h"

/* Channels of an RA block the straight-through backward keeps on the stack (WRN-70-16: 1024). */
#define AL_RA_MAX_C 4096

/* torch.argmax order: the first NaN wins, else the largest value, the lowest index on ties. */
static int argmax_row(const float *p, int k) {
    int best = 0;
    for (int j = 1; j < k; j++) {
        const float b = p[best], v = p[j];
        if (b != b) break;
        if (v != v || v > b) best = j;
    }
    return best;
}

al_status al_ra_forward_cpu(al_ctx *ctx, int n, int c, int hw, int k, const float *z,
                            const float *w, const float *p, const int32_t *labels, float *y,
                            int32_t *sel) {
    (void)ctx;
    for (int i = 0; i < n; i++) {
        int kk;
        if (labels) {
            kk = labels[i];
            if (kk < 0 || kk >= k)
                return AL_FAIL(AL_ERR_VALUE, "ra: label %d at index %d outside [0,%d)", kk, i, k);
        } else {
            kk = argmax_row(p + (size_t)i * k, k);
        }
        sel[i] = kk;
    }
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        const float *wr = w + (size_t)sel[i] * c;
        for (int ch = 0; ch < c; ch++) {
            const size_t off = ((size_t)i * c + ch) * hw;
            for (int q = 0; q < hw; q++) y[off + q] = z[off + q] * wr[ch];
        }
    }
    return AL_OK;
}

al_status al_ra_backward_cpu(al_ctx *ctx, int n, int c, int hw, int k, const float *z,
                             const float *w, const float *p, const int32_t *sel, const float *dy,
                             float *dz, int acc_z, float *dw, float *dp, int acc_p,
                             int straight_through) {
    (void)ctx;
    if (dz) {
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++) {
            const float *wr = w + (size_t)sel[i] * c;
            for (int ch = 0; ch < c; ch++) {
                const size_t off = ((size_t)i * c + ch) * hw;
                for (int q = 0; q < hw; q++) {
                    const float g = dy[off + q] * wr[ch];
                    dz[off + q] = acc_z ? dz[off + q] + g : g;
                }
            }
        }
    }
    if (dw) {
        /* one (class, channel) entry per iteration, examples in order: deterministic */
#pragma omp parallel for schedule(static)
        for (int jc = 0; jc < k * c; jc++) {
            const int j = jc / c, ch = jc - j * c;
            double s = 0.0;
            for (int i = 0; i < n; i++) {
                if (sel[i] != j) continue;
                const size_t off = ((size_t)i * c + ch) * hw;
                for (int q = 0; q < hw; q++) s += (double)z[off + q] * dy[off + q];
            }
            if (s != 0.0) dw[jc] += (float)s;
        }
    }
    if (dp) {
        if (!straight_through) {
            if (!acc_p) memset(dp, 0, (size_t)n * k * sizeof(float));
            return AL_OK;
        }
#pragma omp parallel for schedule(static)
        for (int i = 0; i < n; i++) {
            double gc[AL_RA_MAX_C]; /* G[c] = sum_q z dy of this example */
            for (int ch = 0; ch < c; ch++) {
                const size_t off = ((size_t)i * c + ch) * hw;
                double s = 0.0;
                for (int q = 0; q < hw; q++) s += (double)z[off + q] * dy[off + q];
                gc[ch] = s;
            }
            const float *pr = p + (size_t)i * k;
            float *dr = dp + (size_t)i * k;
            /* s = softmax(p) in double, max subtracted */
            double mx = pr[0];
            for (int j = 1; j < k; j++)
                if (pr[j] > mx) mx = pr[j];
            double se = 0.0;
            for (int j = 0; j < k; j++) se += exp((double)pr[j] - mx);
            /* pass 0: sbar = sum_j s_j g_j; pass 1: dp_j = s_j (g_j - sbar) (g_j recomputed:
             * K may be large, nothing per class is stored) */
            double sbar = 0.0;
            for (int pass = 0; pass < 2; pass++) {
                for (int j = 0; j < k; j++) {
                    double g = 0.0;
                    for (int ch = 0; ch < c; ch++) g += (double)w[(size_t)j * c + ch] * gc[ch];
                    const double s = exp((double)pr[j] - mx) / se;
                    if (pass == 0) {
                        sbar += s * g;
                    } else {
                        const float v = (float)(s * (g - sbar));
                        dr[j] = acc_p ? dr[j] + v : v;
                    }
                }
            }
        }
    }
    return AL_OK;
}

/* ---------------------------------------------------------------- dispatchers */

al_status al_ra_forward(al_ctx *ctx, int n, int c, int hw, int k, const float *z, const float *w,
                        const float *p, const int32_t *labels, float *y, int32_t *sel) {
    AL_ASSERT(n >= 1 && c >= 1 && hw >= 1 && k >= 1 && z && w && y && sel && (labels || p),
              "al_ra_forward n=%d c=%d hw=%d k=%d", n, c, hw, k);
    switch (ctx->device) {
    case AL_DEV_CPU: return al_ra_forward_cpu(ctx, n, c, hw, k, z, w, p, labels, y, sel);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_ra_forward_cuda(ctx, n, c, hw, k, z, w, p, labels, y, sel));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_ra_forward: device %d", (int)ctx->device);
}

al_status al_ra_backward(al_ctx *ctx, int n, int c, int hw, int k, const float *z, const float *w,
                         const float *p, const int32_t *sel, const float *dy, float *dz, int acc_z,
                         float *dw, float *dp, int acc_p, int straight_through) {
    AL_ASSERT(n >= 1 && c >= 1 && hw >= 1 && k >= 1 && z && w && sel && dy,
              "al_ra_backward n=%d c=%d hw=%d k=%d", n, c, hw, k);
    AL_ASSERT(!(dp && straight_through) || p, "al_ra_backward: straight-through needs p");
    switch (ctx->device) {
    case AL_DEV_CPU:
        return al_ra_backward_cpu(ctx, n, c, hw, k, z, w, p, sel, dy, dz, acc_z, dw, dp, acc_p,
                                  straight_through);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_ra_backward_cuda(ctx, n, c, hw, k, z, w, p, sel, dy, dz, acc_z, dw, dp,
                                            acc_p, straight_through));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_ra_backward: device %d", (int)ctx->device);
}

/* ---------------------------------------------------------------- graph nodes */

/* Shared-fc parameters of a node; asserts they were bound (al_ra_bind_fc). */
static void fc_params(const al_model *m, const al_node *nd, int *wi, int *bi) {
    *wi = nd->param[0][0];
    *bi = nd->param[0][1];
    AL_ASSERT(*wi >= 0, "node %s: shared fc not bound (al_ra_bind_fc)", nd->name);
    (void)m;
}

static al_status head_forward(al_ctx *ctx, al_model *m, al_node *nd, const al_fwd_opts *o, int n,
                              const float *x, const float *x1, float *y, float *save) {
    (void)o, (void)x1, (void)save;
    int wi, bi;
    fc_params(m, nd, &wi, &bi);
    const int c = (int)m->bufs[nd->in0].per_sample, k = (int)m->bufs[nd->out].per_sample;
    return al_linear_forward(ctx, n, c, k, x, al_param_data(m, wi),
                             bi >= 0 ? al_param_data(m, bi) : NULL, y);
}

static al_status head_backward(al_ctx *ctx, al_model *m, al_node *nd, int n, int train,
                               const float *x, const float *x1, const float *y, const float *dy,
                               float *dx, int acc0, float *dx1, int acc1, int want_w,
                               const float *save, const int32_t *labels) {
    (void)train, (void)x1, (void)y, (void)dx1, (void)acc1, (void)save, (void)labels;
    int wi, bi;
    fc_params(m, nd, &wi, &bi);
    const int c = (int)m->bufs[nd->in0].per_sample, k = (int)m->bufs[nd->out].per_sample;
    float *dw = want_w && m->params[wi].trainable ? al_param_grad(m, wi) : NULL;
    float *db = want_w && bi >= 0 && m->params[bi].trainable ? al_param_grad(m, bi) : NULL;
    if (!dx && !dw && !db) return AL_OK;
    return al_linear_backward(ctx, n, c, k, x, al_param_data(m, wi), dy, dx, acc0, dw, db);
}

static al_status ra_node_forward(al_ctx *ctx, al_model *m, al_node *nd, const al_fwd_opts *o,
                                 int n, const float *z, const float *p, float *y, float *save) {
    int wi, bi;
    fc_params(m, nd, &wi, &bi);
    const al_buf zb = m->bufs[nd->in0];
    const int k = (int)m->bufs[nd->in1].per_sample;
    /* training uses the given label (true label; a negative's own label); evaluation the
     * auxiliary head's argmax (RA_Block.forward) */
    const int32_t *labels = o->train ? o->labels : NULL;
    return al_ra_forward(ctx, n, zb.c, zb.h * zb.w, k, z, al_param_data(m, wi), p, labels, y,
                         (int32_t *)save);
}

static al_status ra_node_backward(al_ctx *ctx, al_model *m, al_node *nd, int n, int train,
                                  const float *z, const float *p, const float *y, const float *dy,
                                  float *dz, int acc0, float *dp, int acc1, int want_w,
                                  const float *save, const int32_t *labels) {
    (void)y, (void)labels;
    int wi, bi;
    fc_params(m, nd, &wi, &bi);
    const al_buf zb = m->bufs[nd->in0];
    const int k = (int)m->bufs[nd->in1].per_sample;
    float *dw = want_w && m->params[wi].trainable ? al_param_grad(m, wi) : NULL;
    const int st = !train && nd->iparam[0] == AL_RA_MASK_FIXED;
    if (!dz && !dw && !dp) return AL_OK;
    return al_ra_backward(ctx, n, zb.c, zb.h * zb.w, k, z, al_param_data(m, wi), p,
                          (const int32_t *)save, dy, dz, acc0, dw, dp, acc1, st);
}

const al_node_ops al_ra_head_ops = {"ra_head", head_forward, head_backward, 1};
const al_node_ops al_ra_ops = {"ra", ra_node_forward, ra_node_backward, 1};

int al_ra_attach(al_model *m, const char *name, int z, int *aux) {
    const al_buf zb = m->bufs[z];
    AL_ASSERT(zb.h == zb.w, "ra: block output %dx%d is not square", zb.h, zb.w);
    AL_ASSERT(zb.c <= AL_RA_MAX_C, "ra: %d channels, at most %d", zb.c, AL_RA_MAX_C);
    const int pooled = al_model_avgpool(m, z, zb.h, zb.h);
    char nm[AL_NAME_LEN + 16];
    snprintf(nm, sizeof nm, "%s.ra_head", name);
    const int p = al_model_custom(m, nm, &al_ra_head_ops, pooled, -1, m->num_classes, 1, 1, 0, 0);
    al_model_add_aux_output(m, p);
    snprintf(nm, sizeof nm, "%s.ra", name);
    /* saved state: the selected class per example (int32 in a float slot) */
    const int zp = al_model_custom(m, nm, &al_ra_ops, z, p, zb.c, zb.h, zb.w, 1, 0);
    m->nodes[m->n_nodes - 1].iparam[0] = AL_RA_MASK_PREDICTED;
    *aux = p;
    return zp;
}

void al_ra_bind_fc(al_model *m, int w_param, int b_param) {
    AL_ASSERT(w_param >= 0 && w_param < m->n_params, "ra: fc weight index %d", w_param);
    const al_param *w = &m->params[w_param];
    AL_ASSERT(w->ndim == 2 && w->shape[0] == m->num_classes, "ra: fc weight %s is not (K, C)",
              w->name);
    if (b_param >= 0)
        AL_ASSERT(m->params[b_param].n_elems == (size_t)m->num_classes, "ra: fc bias %s size",
                  m->params[b_param].name);
    for (int i = 0; i < m->n_nodes; i++) {
        al_node *nd = &m->nodes[i];
        if (nd->kind != AL_NODE_CUSTOM || (nd->ops != &al_ra_ops && nd->ops != &al_ra_head_ops))
            continue;
        const int c = (int)m->bufs[nd->in0].c;
        AL_ASSERT(w->shape[1] == c, "ra: node %s has %d channels, fc weight %s has %d", nd->name,
                  c, w->name, w->shape[1]);
        nd->param[0][0] = w_param;
        nd->param[0][1] = b_param;
    }
}

int al_ra_count(const al_model *m) {
    int c = 0;
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].kind == AL_NODE_CUSTOM && m->nodes[i].ops == &al_ra_ops) c++;
    return c;
}

void al_ra_set_eval_mask(al_model *m, int mode) {
    AL_ASSERT(mode == AL_RA_MASK_PREDICTED || mode == AL_RA_MASK_FIXED, "ra: mask mode %d", mode);
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].kind == AL_NODE_CUSTOM && m->nodes[i].ops == &al_ra_ops)
            m->nodes[i].iparam[0] = mode;
}

int al_ra_eval_mask(const al_model *m) {
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].kind == AL_NODE_CUSTOM && m->nodes[i].ops == &al_ra_ops)
            return m->nodes[i].iparam[0];
    return AL_RA_MASK_PREDICTED;
}
