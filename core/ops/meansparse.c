/* meansparse.c: MeanSparse (methods.md §2) -- CPU reference + dispatcher of the operator, and
 * the model plumbing: graph node, insertion, statistics pass, checkpoint attributes.
 * Twin: cuda/op_meansparse.cu (forward/backward through the same AL_HOSTDEV element
 * functions of meansparse.h, so both backends agree bitwise; batch statistics in double).
 * Shapes: x, y, dy, dx (N, C, HW); mean, var (C). Write modes: y =, dx = (+= when dx_accum).
 * Read against SPIN-UMass/MeanSparse @52e6c03 utils_sparse.py (class MeanSparse,
 * calculate_statistics, search_fine); nothing copied. */
#include "core/ops/meansparse.h"

#include <hdf5.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checkpoint.h"
#include "core/log.h"
#include "datasets/sampler.h"

/* Below 64K elements one thread streams the data as fast as a fork/join (elementwise.c). */
#define MS_PAR_MIN ((size_t)1 << 16)

/* ================================================================ CPU reference */

al_status al_meansparse_forward_cpu(al_ctx *ctx, int n, int c, int hw, const float *restrict x,
                                    const float *restrict mean, const float *restrict var,
                                    float alpha, float *restrict y) {
    (void)ctx;
    const size_t total = (size_t)n * c * hw;
    if (alpha == 0.0f) {
        /* the reference's `if threshold == 0: output = input`: an exact bypass */
        memcpy(y, x, total * sizeof(float));
        return AL_OK;
    }
    const int planes = n * c;
#pragma omp parallel for schedule(static) if (total >= MS_PAR_MIN)
    for (int p = 0; p < planes; p++) {
        const int ch = p % c;
        const float mu = mean[ch], crop = al_ms_crop(alpha, var[ch]);
        const float *xp = x + (size_t)p * hw;
        float *yp = y + (size_t)p * hw;
        for (int q = 0; q < hw; q++) yp[q] = al_ms_fwd_elem(xp[q], mu, crop);
    }
    return AL_OK;
}

al_status al_meansparse_backward_cpu(al_ctx *ctx, int n, int c, int hw, const float *restrict x,
                                     const float *restrict mean, const float *restrict var,
                                     float alpha, int bpda, const float *restrict dy,
                                     float *restrict dx, int dx_accum) {
    (void)ctx;
    const size_t total = (size_t)n * c * hw;
    if (alpha == 0.0f || bpda) {
        /* straight-through: dx = dy (bitwise the gradient of a model without the node) */
        if (dx_accum) {
#pragma omp parallel for simd schedule(static) if (total >= MS_PAR_MIN)
            for (size_t i = 0; i < total; i++) dx[i] += dy[i];
        } else {
            memcpy(dx, dy, total * sizeof(float));
        }
        return AL_OK;
    }
    const int planes = n * c;
#pragma omp parallel for schedule(static) if (total >= MS_PAR_MIN)
    for (int p = 0; p < planes; p++) {
        const int ch = p % c;
        const float mu = mean[ch], crop = al_ms_crop(alpha, var[ch]);
        const size_t o = (size_t)p * hw;
        for (int q = 0; q < hw; q++) {
            const float g = al_ms_bwd_elem(x[o + q], mu, crop, dy[o + q]);
            dx[o + q] = dx_accum ? dx[o + q] + g : g;
        }
    }
    return AL_OK;
}

al_status al_meansparse_batch_stats_cpu(al_ctx *ctx, int n, int c, int hw, const float *x,
                                        double *h_mean, double *h_var) {
    (void)ctx;
    const double cnt = (double)n * hw;
#pragma omp parallel for schedule(static) if ((size_t)n * c * hw >= MS_PAR_MIN)
    for (int ch = 0; ch < c; ch++) {
        /* two passes in double: mean, then the sum of squared deviations */
        double s = 0.0;
        for (int i = 0; i < n; i++) {
            const float *xp = x + ((size_t)i * c + ch) * hw;
            for (int q = 0; q < hw; q++) s += (double)xp[q];
        }
        const double mu = s / cnt;
        double ss = 0.0;
        for (int i = 0; i < n; i++) {
            const float *xp = x + ((size_t)i * c + ch) * hw;
            for (int q = 0; q < hw; q++) {
                const double d = (double)xp[q] - mu;
                ss += d * d;
            }
        }
        h_mean[ch] = mu;
        /* torch.var default: Bessel's correction; 0/0 = NaN for a single element, as torch */
        h_var[ch] = ss / (cnt - 1.0);
    }
    return AL_OK;
}

/* ================================================================ dispatchers */

static al_status check_shape(const char *fn, int n, int c, int hw, float alpha) {
    if (n < 1 || c < 1 || hw < 1)
        return AL_FAIL(AL_ERR_VALUE, "%s: shape n=%d c=%d hw=%d, every size must be >= 1", fn, n, c,
                       hw);
    if (!(alpha >= 0.0f) || isinf(alpha))
        return AL_FAIL(AL_ERR_VALUE, "%s: alpha = %g, expected a finite value >= 0", fn,
                       (double)alpha);
    return AL_OK;
}

al_status al_meansparse_forward(al_ctx *ctx, int n, int c, int hw, const float *x,
                                const float *mean, const float *var, float alpha, float *y) {
    AL_TRY(check_shape("al_meansparse_forward", n, c, hw, alpha));
    if (ctx->device == AL_DEV_CUDA)
        AL_CUDA_OR_FAIL(al_meansparse_forward_cuda(ctx, n, c, hw, x, mean, var, alpha, y));
    return al_meansparse_forward_cpu(ctx, n, c, hw, x, mean, var, alpha, y);
}

al_status al_meansparse_backward(al_ctx *ctx, int n, int c, int hw, const float *x,
                                 const float *mean, const float *var, float alpha, int bpda,
                                 const float *dy, float *dx, int dx_accum) {
    AL_TRY(check_shape("al_meansparse_backward", n, c, hw, alpha));
    if (ctx->device == AL_DEV_CUDA)
        AL_CUDA_OR_FAIL(al_meansparse_backward_cuda(ctx, n, c, hw, x, mean, var, alpha, bpda, dy, dx,
                                                 dx_accum));
    return al_meansparse_backward_cpu(ctx, n, c, hw, x, mean, var, alpha, bpda, dy, dx, dx_accum);
}

al_status al_meansparse_batch_stats(al_ctx *ctx, int n, int c, int hw, const float *x,
                                    double *h_mean, double *h_var) {
    AL_TRY(check_shape("al_meansparse_batch_stats", n, c, hw, 0.0f));
    al_note_host_read(ctx, h_mean);
    if (ctx->device == AL_DEV_CUDA)
        AL_CUDA_OR_FAIL(al_meansparse_batch_stats_cuda(ctx, n, c, hw, x, h_mean, h_var));
    return al_meansparse_batch_stats_cpu(ctx, n, c, hw, x, h_mean, h_var);
}

/* ================================================================ graph node */

static al_status node_forward(al_ctx *ctx, al_model *m, al_node *nd, const al_fwd_opts *o, int n,
                              const float *x0, const float *x1, float *y, float *save) {
    (void)o;
    (void)x1;
    (void)save;
    const al_buf b = m->bufs[nd->in0];
    return al_meansparse_forward(ctx, n, b.c, b.h * b.w, x0, al_param_data(m, nd->param[0][0]),
                                 al_param_data(m, nd->param[0][1]), nd->fparam[0], y);
}

static al_status node_backward(al_ctx *ctx, al_model *m, al_node *nd, int n, int train,
                               const float *x0, const float *x1, const float *y, const float *dy,
                               float *dx0, int acc0, float *dx1, int acc1, int want_w,
                               const float *save, const int32_t *labels) {
    (void)train, (void)x1, (void)y, (void)dx1, (void)acc1, (void)want_w, (void)save, (void)labels;
    if (!dx0) return AL_OK;
    const al_buf b = m->bufs[nd->in0];
    return al_meansparse_backward(ctx, n, b.c, b.h * b.w, x0, al_param_data(m, nd->param[0][0]),
                                  al_param_data(m, nd->param[0][1]), nd->fparam[0],
                                  nd->iparam[0], dy, dx0, acc0);
}

const al_node_ops al_meansparse_node_ops = {"meansparse", node_forward, node_backward, 0};

static int is_ms(const al_node *nd) {
    return nd->kind == AL_NODE_CUSTOM && nd->ops == &al_meansparse_node_ops;
}

const char *al_ms_placement_name(al_ms_placement p) { return p == AL_MS_PLACE_ACT ? "act" : "bn"; }

/* Index of the node producing buffer b, or -1 (the input buffer 0). */
static int producer_of(const al_model *m, int b) {
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].out == b) return i;
    return -1;
}

static int name_taken(const al_model *m, char (*names)[AL_NAME_LEN], int n_names, const char *s) {
    char pn[AL_NAME_LEN + 32];
    snprintf(pn, sizeof pn, "%s.running_mean", s);
    if (al_model_find_param(m, pn) >= 0) return 1;
    for (int i = 0; i < n_names; i++)
        if (strcmp(names[i], s) == 0) return 1;
    return 0;
}

int al_meansparse_insert(al_model *m, al_ms_placement placement) {
    AL_ASSERT(!m->setup_done, "MeanSparse insertion after setup");
    AL_ASSERT(al_meansparse_count(m) == 0, "model %s already has MeanSparse nodes", m->arch);
    /* 1. insertion points on the original graph, in graph order: producers of ReLU inputs */
    int *after = malloc((size_t)m->n_nodes * sizeof *after);
    char (*names)[AL_NAME_LEN] = malloc((size_t)m->n_nodes * sizeof *names);
    AL_ASSERT(after && names, "out of memory");
    int n_ins = 0;
    for (int r = 0; r < m->n_nodes; r++) {
        if (m->nodes[r].kind != AL_NODE_RELU) continue;
        const int p = producer_of(m, m->nodes[r].in0);
        if (p < 0) continue;
        const al_node *pn = &m->nodes[p];
        if (placement == AL_MS_PLACE_BN && pn->kind != AL_NODE_BN) continue;
        int dup = 0;
        for (int j = 0; j < n_ins; j++) dup |= after[j] == p;
        if (dup) continue; /* one node per buffer, however many ReLUs read it */
        char base[AL_NAME_LEN];
        if (pn->name[0]) {
            snprintf(base, sizeof base, "%.100s.meansparse", pn->name);
        } else {
            /* an unnamed producer (residual addition): name it after its block */
            const int q = producer_of(m, pn->in0);
            char blk[AL_NAME_LEN] = "";
            if (q >= 0 && m->nodes[q].name[0]) {
                snprintf(blk, sizeof blk, "%s", m->nodes[q].name);
                char *dot = strrchr(blk, '.');
                if (dot)
                    *dot = 0;
                else
                    blk[0] = 0; /* a top-level producer: the block is the whole model */
            }
            if (blk[0])
                snprintf(base, sizeof base, "%.100s.meansparse_sum", blk);
            else
                snprintf(base, sizeof base, "meansparse_sum");
        }
        /* unique: a second sum in the same block gets _1, _2, ... */
        snprintf(names[n_ins], AL_NAME_LEN, "%s", base);
        for (int k = 1; name_taken(m, names, n_ins, names[n_ins]); k++)
            snprintf(names[n_ins], AL_NAME_LEN, "%.100s_%d", base, k);
        after[n_ins++] = p;
    }
    /* 2. parameters in graph order (appended: existing offsets are unchanged) */
    int *pidx = malloc(2 * (size_t)(n_ins ? n_ins : 1) * sizeof *pidx);
    AL_ASSERT(pidx, "out of memory");
    for (int j = 0; j < n_ins; j++) {
        const int c = m->bufs[m->nodes[after[j]].out].c;
        char pn[AL_NAME_LEN + 32];
        snprintf(pn, sizeof pn, "%s.running_mean", names[j]);
        pidx[2 * j] = al_model_add_param(m, pn, 1, &c, AL_P_OTHER, AL_INIT_ZERO, 0, 0, 0);
        snprintf(pn, sizeof pn, "%s.running_var", names[j]);
        pidx[2 * j + 1] = al_model_add_param(m, pn, 1, &c, AL_P_OTHER, AL_INIT_ONE, 0, 0, 0);
    }
    /* 3. nodes, last first, so earlier insertion points keep their indices */
    for (int j = n_ins - 1; j >= 0; j--) {
        const int pos = al_model_insert_after(m, after[j], names[j], &al_meansparse_node_ops, 0, 0);
        al_node *nd = &m->nodes[pos];
        nd->param[0][0] = pidx[2 * j];
        nd->param[0][1] = pidx[2 * j + 1];
        nd->fparam[0] = 0.0f;
        nd->iparam[0] = 0;
    }
    free(after);
    free(names);
    free(pidx);
    return n_ins;
}

int al_meansparse_count(const al_model *m) {
    int k = 0;
    for (int i = 0; i < m->n_nodes; i++) k += is_ms(&m->nodes[i]);
    return k;
}

void al_meansparse_set_alpha(al_model *m, float alpha) {
    AL_ASSERT(alpha >= 0.0f && !isinf(alpha), "MeanSparse alpha %g", (double)alpha);
    for (int i = 0; i < m->n_nodes; i++)
        if (is_ms(&m->nodes[i])) m->nodes[i].fparam[0] = alpha;
}

float al_meansparse_alpha(const al_model *m) {
    for (int i = 0; i < m->n_nodes; i++)
        if (is_ms(&m->nodes[i])) return m->nodes[i].fparam[0];
    return 0.0f;
}

void al_meansparse_set_bpda(al_model *m, int bpda) {
    for (int i = 0; i < m->n_nodes; i++)
        if (is_ms(&m->nodes[i])) m->nodes[i].iparam[0] = bpda ? 1 : 0;
}

/* ================================================================ statistics pass */

al_status al_meansparse_collect(al_ctx *ctx, al_model *m, const uint8_t *images, int64_t n,
                                int batch, const char *label) {
    AL_ASSERT(m->setup_done, "statistics pass before setup");
    if (n < 1) return AL_FAIL(AL_ERR_VALUE, "MeanSparse statistics: no images");
    if (batch < 1 || batch > m->max_batch)
        return AL_FAIL(AL_ERR_VALUE, "MeanSparse statistics: batch %d outside [1, %d] (model setup)",
                       batch, m->max_batch);
    const int n_ms = al_meansparse_count(m);
    if (n_ms == 0) return AL_FAIL(AL_ERR_VALUE, "model %s has no MeanSparse nodes", m->arch);
    const int c = m->in_c, h = m->in_h, w = m->in_w;
    const size_t d = (size_t)c * h * w;
    const int on_dev = ctx->device != AL_DEV_CPU;
    const float alpha = al_meansparse_alpha(m);
    al_status st = AL_OK;
    size_t tot_c = 0, max_c = 0;
    for (int i = 0; i < m->n_nodes; i++)
        if (is_ms(&m->nodes[i])) {
            const size_t cc = (size_t)m->bufs[m->nodes[i].in0].c;
            tot_c += cc;
            if (cc > max_c) max_c = cc;
        }
    double *sum_mean = al_calloc(tot_c, sizeof(double), "MeanSparse mean sums");
    double *sum_var = al_calloc(tot_c, sizeof(double), "MeanSparse variance sums");
    double *bm = al_malloc(max_c * sizeof(double), "batch means");
    double *bv = al_malloc(max_c * sizeof(double), "batch variances");
    float *hf = al_malloc(max_c * sizeof(float), "statistics staging");
    float *h_x = al_malloc((size_t)batch * d * sizeof(float), "statistics images");
    float *d_x = NULL;
    if (!sum_mean || !sum_var || !bm || !bv || !hf || !h_x) {
        st = AL_ERR_OOM;
        goto done;
    }
    if (on_dev) AL_CHECK(al_dev_alloc(ctx, (void **)&d_x, (size_t)batch * d * sizeof(float), "statistics inputs"));
    /* the reference collects with threshold 0 everywhere, so no node alters what a later
     * node sees */
    al_meansparse_set_alpha(m, 0.0f);
    const int64_t n_batches = (n + batch - 1) / batch;
    al_progress prog;
    al_progress_begin(&prog, label ? label : "meansparse statistics", n);
    for (int64_t s = 0; s < n; s += batch) {
        const int nb = (int)AL_MIN((int64_t)batch, n - s);
        al_batch_to_float(images + (size_t)s * d, nb, c, h, w, 0, 0, 0, h_x);
        const float *x = h_x;
        if (on_dev) {
            AL_CHECK(al_copy_to_dev(ctx, d_x, h_x, (size_t)nb * d * sizeof(float)));
            x = d_x;
        }
        AL_CHECK(al_model_forward_eval(ctx, m, x, nb, 0));
        size_t off = 0;
        for (int i = 0; i < m->n_nodes; i++) {
            const al_node *nd = &m->nodes[i];
            if (!is_ms(nd)) continue;
            const al_buf b = m->bufs[nd->in0];
            AL_CHECK(al_meansparse_batch_stats(ctx, nb, b.c, b.h * b.w, al_model_buffer(m, 0, nd->in0),
                                               bm, bv));
            for (int ch = 0; ch < b.c; ch++) {
                sum_mean[off + ch] += bm[ch];
                sum_var[off + ch] += bv[ch];
            }
            off += (size_t)b.c;
        }
        al_progress_update(&prog, s + nb, NAN, NAN);
    }
    al_progress_end(&prog);
    /* running_* = (1/B) sum over batches, rounded once to float */
    {
        size_t off = 0;
        for (int i = 0; i < m->n_nodes; i++) {
            const al_node *nd = &m->nodes[i];
            if (!is_ms(nd)) continue;
            const int cc = m->bufs[nd->in0].c;
            for (int ch = 0; ch < cc; ch++) hf[ch] = (float)(sum_mean[off + ch] / (double)n_batches);
            AL_CHECK(al_copy_to_dev(ctx, al_param_data(m, nd->param[0][0]), hf, (size_t)cc * sizeof(float)));
            for (int ch = 0; ch < cc; ch++) hf[ch] = (float)(sum_var[off + ch] / (double)n_batches);
            AL_CHECK(al_copy_to_dev(ctx, al_param_data(m, nd->param[0][1]), hf, (size_t)cc * sizeof(float)));
            off += (size_t)cc;
        }
    }
    AL_CHECK(al_sync(ctx));
done:
    al_meansparse_set_alpha(m, alpha);
    al_dev_free(ctx, d_x);
    al_free(sum_mean);
    al_free(sum_var);
    al_free(bm);
    al_free(bv);
    al_free(hf);
    al_free(h_x);
    return st;
}

/* ================================================================ checkpoints */

al_status al_meansparse_save(al_ctx *ctx, const al_model *m, al_ms_placement placement,
                             const char *path) {
    const int n_ms = al_meansparse_count(m);
    if (n_ms == 0) return AL_FAIL(AL_ERR_VALUE, "%s: model %s has no MeanSparse nodes to save", path, m->arch);
    char mid[1100];
    if ((size_t)snprintf(mid, sizeof mid, "%s.ms.tmp", path) >= sizeof mid)
        return AL_FAIL(AL_ERR_VALUE, "%s: output path too long", path);
    /* 1. an ordinary checkpoint (every parameter, statistics included) at the side path */
    AL_TRY(al_checkpoint_save(ctx, m, NULL, mid));
    /* 2. the MeanSparse attributes, then flush + fsync + rename over `path` */
    al_h5_quiet();
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    hid_t f = H5Fopen(mid, H5F_ACC_RDWR, fapl);
    H5Pclose(fapl);
    if (f < 0) {
        remove(mid);
        return AL_FAIL(AL_ERR_IO, "%s: cannot reopen %s to add the MeanSparse attributes", path, mid);
    }
    hid_t g = H5Gopen2(f, "model", H5P_DEFAULT);
    al_status st = AL_OK;
    const float alpha = al_meansparse_alpha(m);
    int bpda = 0;
    for (int i = 0; i < m->n_nodes; i++)
        if (is_ms(&m->nodes[i])) bpda = m->nodes[i].iparam[0];
    if (g < 0) {
        st = AL_FAIL(AL_ERR_IO, "%s:/model: cannot open the group written a moment ago", mid);
        goto done;
    }
    AL_CHECK(al_h5_write_attr_int(g, path, "/model", "meansparse", 1));
    AL_CHECK(al_h5_write_attr_floats(g, path, "/model", "meansparse_alpha", &alpha, 1));
    AL_CHECK(al_h5_write_attr_string(g, path, "/model", "meansparse_placement",
                                     al_ms_placement_name(placement)));
    AL_CHECK(al_h5_write_attr_string(g, path, "/model", "meansparse_backward", bpda ? "bpda" : "exact"));
    H5Gclose(g);
    g = -1;
    return al_h5_commit(f, mid, path);
done:
    if (g >= 0) H5Gclose(g);
    al_h5_discard(f, mid);
    return st;
}

al_status al_meansparse_apply_checkpoint(const char *path, al_model *m, int *applied) {
    if (applied) *applied = 0;
    int64_t f = -1;
    AL_TRY(al_h5_open_read(path, &f));
    al_status st = AL_OK;
    hid_t g = -1;
    char *place = NULL, *bwd = NULL;
    if (!al_h5_has(f, "model")) goto done; /* read_info reports a missing /model */
    g = H5Gopen2(f, "model", H5P_DEFAULT);
    if (g < 0 || !al_h5_has_attr(g, "meansparse")) goto done;
    int64_t on = 0;
    AL_CHECK(al_h5_attr_int64(g, path, "/model", "meansparse", 0, 1, &on));
    if (!on) goto done;
    float alpha = 0.0f;
    AL_CHECK(al_h5_attr_floats(g, path, "/model", "meansparse_alpha", &alpha, 1));
    if (!(alpha >= 0.0f) || isinf(alpha))
        AL_CHECK(AL_FAIL(AL_ERR_FORMAT, "%s:/model: meansparse_alpha = %g, expected a finite value >= 0",
                         path, (double)alpha));
    AL_CHECK(al_h5_attr_string(g, path, "/model", "meansparse_placement", &place));
    AL_CHECK(al_h5_attr_string(g, path, "/model", "meansparse_backward", &bwd));
    al_ms_placement pl = AL_MS_PLACE_BN;
    if (!strcmp(place, "bn")) pl = AL_MS_PLACE_BN;
    else if (!strcmp(place, "act")) pl = AL_MS_PLACE_ACT;
    else AL_CHECK(AL_FAIL(AL_ERR_FORMAT, "%s:/model: meansparse_placement = \"%s\", expected \"bn\" or \"act\"", path, place));
    int bpda = 0;
    if (!strcmp(bwd, "exact")) bpda = 0;
    else if (!strcmp(bwd, "bpda")) bpda = 1;
    else AL_CHECK(AL_FAIL(AL_ERR_FORMAT, "%s:/model: meansparse_backward = \"%s\", expected \"exact\" or \"bpda\"", path, bwd));
    if (al_meansparse_count(m) > 0)
        AL_CHECK(AL_FAIL(AL_ERR_VALUE, "%s: model %s already has MeanSparse nodes", path, m->arch));
    if (al_meansparse_insert(m, pl) == 0)
        AL_CHECK(AL_FAIL(AL_ERR_FORMAT, "%s:/model: meansparse = 1 but arch %s has no insertion point for placement %s",
                         path, m->arch, place));
    al_meansparse_set_alpha(m, alpha);
    al_meansparse_set_bpda(m, bpda);
    if (applied) *applied = 1;
done:
    free(place);
    free(bwd);
    if (g >= 0) H5Gclose(g);
    H5Fclose(f);
    return st;
}
