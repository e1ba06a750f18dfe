/* model.c: graph construction, parameter table, setup and forward/backward execution.
 * Device-agnostic: every op goes through its dispatcher, which picks the CPU reference or the
 * CUDA twin by ctx->device, so the same graph runs on both backends. */
#include "core/model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cuda_api.h"
#include "core/ops/bf16.h"
#include "core/ops/elementwise.h"
#include "core/ops/linear.h"
#include "core/rng.h"

/* ---------------------------------------------------------------- construction */

static int new_buf(al_model *m, int c, int h, int w);
static al_node *new_node(al_model *m, al_node_kind kind, const char *name, int in0, int in1);

al_model *al_model_new(const char *arch, int num_classes, int in_c, int in_h, int in_w) {
    al_model *m = calloc(1, sizeof *m);
    AL_ASSERT(m, "out of memory");
    snprintf(m->arch, sizeof m->arch, "%s", arch);
    m->num_classes = num_classes;
    m->in_c = in_c;
    m->in_h = in_h;
    m->in_w = in_w;
    m->n_branches = 1;
    for (int c = 0; c < 4; c++) {
        m->mean[c] = 0.0f;
        m->std[c] = 1.0f;
    }
    m->out_buf = m->feat_buf = -1;
    for (int a = 0; a < 4; a++) m->aux_buf[a] = -1;
    /* buffer 0: the input */
    m->cap_bufs = 64;
    m->bufs = calloc((size_t)m->cap_bufs, sizeof *m->bufs);
    AL_ASSERT(m->bufs, "out of memory");
    m->bufs[0] = (al_buf){in_c, in_h, in_w, (size_t)in_c * in_h * in_w, 0};
    m->n_bufs = 1;
    /* node 0: input normalisation (identity until mean/std are set), buffer 1 */
    int nb = new_buf(m, in_c, in_h, in_w);
    new_node(m, AL_NODE_NORMALIZE, NULL, 0, -1)->out = nb;
    return m;
}

int al_model_input(const al_model *m) { (void)m; return 1; }

void al_model_set_normalization(al_model *m, const float *mean, const float *std) {
    AL_ASSERT(m->in_c <= 4, "normalisation supports at most 4 channels");
    for (int c = 0; c < m->in_c; c++) {
        AL_ASSERT(std[c] > 0, "std[%d] must be > 0", c);
        m->mean[c] = mean[c];
        m->std[c] = std[c];
    }
}

void al_model_set_branches(al_model *m, int n_branches) {
    AL_ASSERT(n_branches >= 1 && n_branches <= AL_MAX_BN_BRANCHES, "n_branches %d", n_branches);
    for (int i = 0; i < m->n_nodes; i++)
        AL_ASSERT(m->nodes[i].kind != AL_NODE_BN, "set branches before adding BN nodes");
    m->n_branches = n_branches;
}

static int new_buf(al_model *m, int c, int h, int w) {
    if (m->n_bufs == m->cap_bufs) {
        m->cap_bufs *= 2;
        m->bufs = realloc(m->bufs, (size_t)m->cap_bufs * sizeof *m->bufs);
        AL_ASSERT(m->bufs, "out of memory");
    }
    AL_ASSERT(c > 0 && h > 0 && w > 0, "empty buffer %dx%dx%d", c, h, w);
    m->bufs[m->n_bufs] = (al_buf){c, h, w, (size_t)c * h * w, 0};
    return m->n_bufs++;
}

static al_node *new_node(al_model *m, al_node_kind kind, const char *name, int in0, int in1) {
    if (m->n_nodes == m->cap_nodes) {
        m->cap_nodes = m->cap_nodes ? 2 * m->cap_nodes : 64;
        m->nodes = realloc(m->nodes, (size_t)m->cap_nodes * sizeof *m->nodes);
        AL_ASSERT(m->nodes, "out of memory");
    }
    AL_ASSERT(in0 >= 0 && in0 < m->n_bufs, "bad input buffer %d", in0);
    AL_ASSERT(in1 < m->n_bufs, "bad input buffer %d", in1);
    al_node *nd = &m->nodes[m->n_nodes++];
    memset(nd, 0, sizeof *nd);
    nd->kind = kind;
    snprintf(nd->name, sizeof nd->name, "%s", name ? name : "");
    nd->in0 = in0;
    nd->in1 = in1;
    for (int b = 0; b < AL_MAX_BN_BRANCHES; b++)
        for (int j = 0; j < 4; j++) nd->param[b][j] = -1;
    return nd;
}

int al_model_add_param(al_model *m, const char *name, int ndim, const int *shape,
                       al_param_kind kind, al_init_kind init, int fan_in, int fan_out,
                       int trainable) {
    if (m->n_params == m->cap_params) {
        m->cap_params = m->cap_params ? 2 * m->cap_params : 64;
        m->params = realloc(m->params, (size_t)m->cap_params * sizeof *m->params);
        AL_ASSERT(m->params, "out of memory");
    }
    AL_ASSERT(al_model_find_param(m, name) < 0, "duplicate parameter %s", name);
    al_param *p = &m->params[m->n_params];
    memset(p, 0, sizeof *p);
    AL_ASSERT(strlen(name) < AL_NAME_LEN, "parameter name too long: %s", name);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    p->n_elems = 1;
    for (int d = 0; d < ndim; d++) {
        p->shape[d] = shape[d];
        p->n_elems *= (size_t)shape[d];
    }
    p->offset = m->n_param_floats;
    /* keep every parameter 16-float (64-byte) aligned for vector loads */
    m->n_param_floats += (p->n_elems + 15) & ~(size_t)15;
    p->kind = kind;
    p->init = init;
    p->fan_in = fan_in;
    p->fan_out = fan_out;
    p->trainable = trainable;
    p->decay = trainable;
    return m->n_params++;
}

void al_model_param_freeze(al_model *m, const char *name) {
    int i = al_model_find_param(m, name);
    AL_ASSERT(i >= 0, "no parameter %s", name);
    m->params[i].trainable = 0;
    m->params[i].decay = 0;
}

int al_model_add_aux_output(al_model *m, int buf) {
    AL_ASSERT(m->n_aux < 4, "at most 4 auxiliary outputs");
    AL_ASSERT(buf > 0 && buf < m->n_bufs, "bad buffer %d", buf);
    m->aux_buf[m->n_aux] = buf;
    return m->n_aux++;
}

int al_model_custom(al_model *m, const char *name, const al_node_ops *ops, int in0, int in1, int c,
                    int h, int w, size_t save_per_sample, size_t save_fixed) {
    int out = new_buf(m, c, h, w);
    al_node *nd = new_node(m, AL_NODE_CUSTOM, name, in0, in1);
    nd->out = out;
    nd->ops = ops;
    nd->save_per_sample = save_per_sample;
    nd->save_fixed = save_fixed;
    return out;
}

int al_model_insert_after(al_model *m, int after, const char *name, const al_node_ops *ops,
                          size_t save_per_sample, size_t save_fixed) {
    AL_ASSERT(!m->setup_done, "graph rewrite after setup");
    AL_ASSERT(after >= 0 && after < m->n_nodes, "node %d of %d", after, m->n_nodes);
    int src = m->nodes[after].out;
    al_buf sb = m->bufs[src];
    int out = new_buf(m, sb.c, sb.h, sb.w);
    /* append, then rotate into position after+1 */
    al_node *nd = new_node(m, AL_NODE_CUSTOM, name, src, -1);
    nd->out = out;
    nd->ops = ops;
    nd->save_per_sample = save_per_sample;
    nd->save_fixed = save_fixed;
    al_node tmp = *nd;
    int pos = after + 1;
    memmove(&m->nodes[pos + 1], &m->nodes[pos], (size_t)(m->n_nodes - 1 - pos) * sizeof(al_node));
    m->nodes[pos] = tmp;
    for (int i = pos + 1; i < m->n_nodes; i++) {
        if (m->nodes[i].in0 == src) m->nodes[i].in0 = out;
        if (m->nodes[i].in1 == src) m->nodes[i].in1 = out;
    }
    if (m->out_buf == src) m->out_buf = out;
    if (m->feat_buf == src) m->feat_buf = out;
    for (int a = 0; a < m->n_aux; a++)
        if (m->aux_buf[a] == src) m->aux_buf[a] = out;
    return pos;
}

int al_model_find_param(const al_model *m, const char *name) {
    for (int i = 0; i < m->n_params; i++)
        if (strcmp(m->params[i].name, name) == 0) return i;
    return -1;
}

void al_model_param_init(al_model *m, const char *name, al_init_kind init) {
    int i = al_model_find_param(m, name);
    AL_ASSERT(i >= 0, "no parameter %s", name);
    m->params[i].init = init;
}

int al_model_conv(al_model *m, const char *name, int in, int c_out, int k, int stride, int pad,
                  int bias) {
    al_buf ib = m->bufs[in];
    int ho = (ib.h + 2 * pad - k) / stride + 1, wo = (ib.w + 2 * pad - k) / stride + 1;
    int out = new_buf(m, c_out, ho, wo);
    al_node *nd = new_node(m, AL_NODE_CONV, name, in, -1);
    nd->out = out;
    nd->k = k;
    nd->stride = stride;
    nd->pad = pad;
    char pn[AL_NAME_LEN + 16];
    int wshape[4] = {c_out, ib.c, k, k};
    int fan_in = ib.c * k * k, fan_out = c_out * k * k;
    snprintf(pn, sizeof pn, "%s.weight", name);
    nd = &m->nodes[m->n_nodes - 1];
    nd->param[0][0] = al_model_add_param(m, pn, 4, wshape, AL_P_WEIGHT, AL_INIT_TORCH_DEFAULT_W, fan_in,
                                fan_out, 1);
    if (bias) {
        snprintf(pn, sizeof pn, "%s.bias", name);
        nd = &m->nodes[m->n_nodes - 1];
        nd->param[0][1] =
            al_model_add_param(m, pn, 1, &c_out, AL_P_BIAS, AL_INIT_TORCH_DEFAULT_B, fan_in, fan_out, 1);
    }
    return out;
}

int al_model_bn(al_model *m, const char *name, int in) {
    al_buf ib = m->bufs[in];
    int out = new_buf(m, ib.c, ib.h, ib.w);
    al_node *nd = new_node(m, AL_NODE_BN, name, in, -1);
    nd->out = out;
    nd->eps = 1e-5f;
    nd->momentum = 0.1f;
    nd->save_fixed = 2 * (size_t)ib.c;
    int node_i = m->n_nodes - 1;
    static const char *suffix[4] = {"weight", "bias", "running_mean", "running_var"};
    static const al_param_kind kinds[4] = {AL_P_BN_WEIGHT, AL_P_BN_BIAS, AL_P_BN_MEAN, AL_P_BN_VAR};
    static const al_init_kind inits[4] = {AL_INIT_ONE, AL_INIT_ZERO, AL_INIT_ZERO, AL_INIT_ONE};
    for (int b = 0; b < m->n_branches; b++) {
        for (int j = 0; j < 4; j++) {
            char pn[AL_NAME_LEN + 32];
            if (b == 0)
                snprintf(pn, sizeof pn, "%s.%s", name, suffix[j]);
            else
                snprintf(pn, sizeof pn, "%s.branch%d.%s", name, b, suffix[j]);
            int pi = al_model_add_param(m, pn, 1, &ib.c, kinds[j], inits[j], 0, 0, j < 2);
            m->nodes[node_i].param[b][j] = pi;
        }
    }
    return out;
}

int al_model_relu(al_model *m, int in) {
    al_buf ib = m->bufs[in];
    int out = new_buf(m, ib.c, ib.h, ib.w);
    new_node(m, AL_NODE_RELU, NULL, in, -1)->out = out;
    return out;
}

static int pool(al_model *m, al_node_kind kind, int in, int k, int stride) {
    al_buf ib = m->bufs[in];
    int out = new_buf(m, ib.c, (ib.h - k) / stride + 1, (ib.w - k) / stride + 1);
    al_node *nd = new_node(m, kind, NULL, in, -1);
    nd->out = out;
    nd->k = k;
    nd->stride = stride;
    /* max pool keeps an int32 argmax per output element (same size as a float) */
    if (kind == AL_NODE_MAXPOOL) nd->save_per_sample = m->bufs[out].per_sample;
    return out;
}
int al_model_maxpool(al_model *m, int in, int k, int stride) {
    return pool(m, AL_NODE_MAXPOOL, in, k, stride);
}
int al_model_avgpool(al_model *m, int in, int k, int stride) {
    return pool(m, AL_NODE_AVGPOOL, in, k, stride);
}

int al_model_linear(al_model *m, const char *name, int in, int out_features, int bias) {
    int in_features = (int)m->bufs[in].per_sample;
    int out = new_buf(m, out_features, 1, 1);
    al_node *nd = new_node(m, AL_NODE_LINEAR, name, in, -1);
    nd->out = out;
    int node_i = m->n_nodes - 1;
    char pn[AL_NAME_LEN + 16];
    int wshape[2] = {out_features, in_features};
    snprintf(pn, sizeof pn, "%s.weight", name);
    m->nodes[node_i].param[0][0] = al_model_add_param(m, pn, 2, wshape, AL_P_WEIGHT,
                                             AL_INIT_TORCH_DEFAULT_W, in_features, out_features, 1);
    if (bias) {
        snprintf(pn, sizeof pn, "%s.bias", name);
        m->nodes[node_i].param[0][1] = al_model_add_param(m, pn, 1, &out_features, AL_P_BIAS,
                                                 AL_INIT_TORCH_DEFAULT_B, in_features, out_features, 1);
    }
    return out;
}

int al_model_add(al_model *m, int a, int b) {
    al_buf ab = m->bufs[a], bb = m->bufs[b];
    AL_ASSERT(ab.c == bb.c && ab.h == bb.h && ab.w == bb.w, "add of mismatched shapes %dx%dx%d + %dx%dx%d",
              ab.c, ab.h, ab.w, bb.c, bb.h, bb.w);
    int out = new_buf(m, ab.c, ab.h, ab.w);
    new_node(m, AL_NODE_ADD, NULL, a, b)->out = out;
    return out;
}

int al_model_dropout(al_model *m, int in, float p) {
    al_buf ib = m->bufs[in];
    int out = new_buf(m, ib.c, ib.h, ib.w);
    al_node *nd = new_node(m, AL_NODE_DROPOUT, NULL, in, -1);
    nd->out = out;
    nd->p = p;
    nd->save_per_sample = ib.per_sample;
    return out;
}

void al_model_set_output(al_model *m, int logits_buf, int feature_buf) {
    AL_ASSERT((int)m->bufs[logits_buf].per_sample == m->num_classes,
              "logits buffer has %zu values per sample, expected %d classes",
              m->bufs[logits_buf].per_sample, m->num_classes);
    m->out_buf = logits_buf;
    m->feat_buf = feature_buf;
}

int al_model_feature_dim(const al_model *m) { return (int)m->bufs[m->feat_buf].per_sample; }

size_t al_model_n_trainable(const al_model *m) {
    size_t n = 0;
    for (int i = 0; i < m->n_params; i++)
        if (m->params[i].trainable) n += m->params[i].n_elems;
    return n;
}

al_flops al_model_flops(const al_model *m, int n) {
    al_flops f = {0, 0, 0};
    for (int i = 0; i < m->n_nodes; i++) {
        const al_node *nd = &m->nodes[i];
        const al_buf ib = m->bufs[nd->in0], ob = m->bufs[nd->out];
        double macs = 0;
        if (nd->kind == AL_NODE_CONV)
            macs = (double)n * ob.c * ob.h * ob.w * (double)ib.c * nd->k * nd->k;
        else if (nd->kind == AL_NODE_LINEAR)
            macs = (double)n * (double)ib.per_sample * (double)ob.per_sample;
        f.fwd += 2 * macs;
        f.bwd_weights += 2 * macs;
        /* the first layer's input gradient is only needed for the model input (attacks) */
        f.bwd_input += 2 * macs;
    }
    return f;
}

void al_model_print(const al_model *m, void *file) {
    FILE *f = file;
    fprintf(f, "arch %s: %d classes, input %dx%dx%d, %d params (%zu trainable floats)\n", m->arch,
            m->num_classes, m->in_c, m->in_h, m->in_w, m->n_params, al_model_n_trainable(m));
    for (int i = 0; i < m->n_params; i++) {
        const al_param *p = &m->params[i];
        fprintf(f, "  %-48s [", p->name);
        for (int d = 0; d < p->ndim; d++) fprintf(f, "%s%d", d ? ", " : "", p->shape[d]);
        fprintf(f, "]%s\n", p->trainable ? "" : " (buffer)");
    }
}

/* ---------------------------------------------------------------- setup */

static void model_free_device(al_ctx *ctx, al_model *m) {
    al_dev_free(ctx, m->data);
    al_dev_free(ctx, m->grads);
    al_dev_free(ctx, m->d_mean);
    al_dev_free(ctx, m->d_std);
    al_dev_free(ctx, m->gbuf);
    al_dev_free(ctx, m->wbf);
    al_dev_free(ctx, m->cast);
    m->wbf = m->cast = NULL;
    if (m->slots) {
        for (int s = 0; s < m->n_slots; s++) {
            al_dev_free(ctx, m->slots[s].act);
            al_dev_free(ctx, m->slots[s].save);
        }
        free(m->slots);
    }
    m->data = m->grads = m->d_mean = m->d_std = m->gbuf = NULL;
    m->slots = NULL;
    m->setup_done = 0;
}

/* Backward write modes: walking nodes in reverse, the first consumer to reach a buffer writes
 * '=' and later ones '+=', so no activation gradient needs zeroing. */
static void plan_backward(al_model *m) {
    free(m->has_consumer);
    m->has_consumer = calloc((size_t)m->n_bufs, 1);
    AL_ASSERT(m->has_consumer, "out of memory");
    for (int i = 0; i < m->n_nodes; i++) {
        m->has_consumer[m->nodes[i].in0] = 1;
        if (m->nodes[i].in1 >= 0) m->has_consumer[m->nodes[i].in1] = 1;
    }
    char *seen = calloc((size_t)m->n_bufs, 1);
    AL_ASSERT(seen, "out of memory");
    for (int i = m->n_nodes - 1; i >= 0; i--) {
        al_node *nd = &m->nodes[i];
        nd->dx_accum[0] = seen[nd->in0];
        seen[nd->in0] = 1;
        if (nd->in1 >= 0) {
            nd->dx_accum[1] = seen[nd->in1];
            seen[nd->in1] = 1;
        }
    }
    free(seen);
}

/* ---------------------------------------------------------------- storage formats
 * The built-in conv, BN, ReLU, add and pooling nodes ("fast" nodes) can compute on bf16
 * buffers (run.precision = bf16; CUDA, or its CPU twin below) and on channels-last buffers
 * (run.layout = nhwc; CUDA only: cuDNN's tensor-core convolutions want NHWC and would otherwise
 * transpose internally). Everything else (normalisation, linear, dropout, custom nodes) stays
 * fp32 NCHW. A buffer takes the fast format when its producer and every consumer are fast
 * nodes and it is not the input, logits, features or an auxiliary output (which losses,
 * attacks and methods read as fp32 NCHW). A node reading or writing a buffer of another
 * format goes through al_convert into the model's `cast` area: in a plain CNN that is the
 * first conv's input, the pooled features and the classifier, a few small tensors per step.
 * Conv weights stay fp32 OIHW (checkpoints, optimiser); the fast convs read a per-forward
 * shadow in their format (bf16 and/or OHWI) and their weight gradients are converted back. */
static int node_fast(const al_node *nd) {
    switch (nd->kind) {
    case AL_NODE_CONV:
    case AL_NODE_BN:
    case AL_NODE_RELU:
    case AL_NODE_ADD:
    case AL_NODE_MAXPOOL:
    case AL_NODE_AVGPOOL: return 1;
    default: return 0;
    }
}
static int model_fmt(const al_model *m) {
    return (m->bf16 ? AL_FMT_BF16 : 0) | (m->nhwc ? AL_FMT_NHWC : 0);
}
/* The format a node computes in, and the one a buffer is stored in (AL_FMT_* bits). */
static int node_fmt(const al_model *m, const al_node *nd) { return node_fast(nd) ? model_fmt(m) : 0; }
static int buf_fmt(const al_model *m, int b) {
    return (m->bufs[b].bf16 ? AL_FMT_BF16 : 0) | (m->bufs[b].nhwc ? AL_FMT_NHWC : 0);
}

static al_status plan_formats(const al_ctx *ctx, al_model *m) {
    if (ctx->layout == AL_NHWC && ctx->device != AL_DEV_CUDA)
        return AL_FAIL(AL_ERR_VALUE, "model %s: run.layout = nhwc needs run.device = cuda (the CPU "
                                     "reference ops are NCHW)", m->arch);
    m->bf16 = ctx->precision == AL_BF16;
    m->nhwc = ctx->layout == AL_NHWC;
    char *fast = malloc((size_t)m->n_bufs);
    if (!fast) return AL_FAIL(AL_ERR_OOM, "out of memory planning %s", m->arch);
    for (int b = 0; b < m->n_bufs; b++) fast[b] = b > 0;
    fast[m->out_buf] = fast[m->feat_buf] = 0;
    for (int a = 0; a < m->n_aux; a++) fast[m->aux_buf[a]] = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        const al_node *nd = &m->nodes[i];
        if (node_fast(nd)) continue;
        fast[nd->in0] = fast[nd->out] = 0;
        if (nd->in1 >= 0) fast[nd->in1] = 0;
    }
    for (int b = 0; b < m->n_bufs; b++) {
        m->bufs[b].bf16 = m->bf16 && fast[b];
        m->bufs[b].nhwc = m->nhwc && fast[b];
    }
    free(fast);
    return AL_OK;
}

/* Bytes of one cast view of buffer b at max_batch (fp32-sized, 256-aligned). */
static size_t cast_slot_bytes(const al_model *m, int b) {
    return (m->bufs[b].per_sample * (size_t)m->max_batch * sizeof(float) + 255) & ~(size_t)255;
}

static size_t conv_scratch_fmt(al_ctx *ctx, const al_conv2d_desc *d, int fmt) {
#ifdef AL_HAVE_CUDA
    if (ctx->device == AL_DEV_CUDA && (fmt & AL_FMT_BF16))
        return al_conv2d_scratch_bytes_bf16_cuda(ctx, d);
#endif
    (void)fmt;
    return al_conv2d_scratch_bytes(ctx, d); /* the CPU bf16 twin runs the fp32 conv */
}

al_status al_model_setup(al_ctx *ctx, al_model *m, int max_batch, int n_slots) {
    AL_ASSERT(m->out_buf > 0 && m->feat_buf > 0, "model %s has no output set", m->arch);
    if (max_batch < 1 || n_slots < 1)
        return AL_FAIL(AL_ERR_VALUE, "model %s: setup needs max_batch >= 1 and slots >= 1 (got %d, %d)",
                       m->arch, max_batch, n_slots);
    if (m->setup_done) model_free_device(ctx, m);
    m->max_batch = max_batch;
    m->n_slots = n_slots;
    plan_backward(m);

    size_t off = 0;
    for (int b = 1; b < m->n_bufs; b++) {
        m->bufs[b].offset = off;
        off += m->bufs[b].per_sample;
    }
    m->act_floats_per_sample = off;
    AL_TRY(plan_formats(ctx, m));
    const int mf = model_fmt(m);
    size_t boff = 0;
    for (int b = 1; b < m->n_bufs; b++) {
        al_buf *bf = &m->bufs[b];
        bf->boff = boff;
        boff += bf->per_sample * (size_t)max_batch * (bf->bf16 ? sizeof(al_bf16) : sizeof(float));
        if (mf) boff = (boff + 255) & ~(size_t)255;
    }
    m->act_bytes = boff;
    m->cast_bytes = 0;
    for (int i = 0; mf && i < m->n_nodes; i++) {
        const al_node *nd = &m->nodes[i];
        const int nf = node_fmt(m, nd);
        const int ids[3] = {nd->in0, nd->in1, nd->out};
        size_t need = 0;
        for (int q = 0; q < 3; q++)
            if (ids[q] >= 0 && buf_fmt(m, ids[q]) != nf) /* a value and a gradient view */
                need += 2 * cast_slot_bytes(m, ids[q]);
        if (need > m->cast_bytes) m->cast_bytes = need;
    }
    size_t save_floats = 0, scratch = 0;
    for (int i = 0; i < m->n_nodes; i++) {
        al_node *nd = &m->nodes[i];
        nd->save_offset = save_floats;
        save_floats += nd->save_per_sample * (size_t)max_batch + nd->save_fixed;
        save_floats = (save_floats + 15) & ~(size_t)15;
        if (nd->kind == AL_NODE_CONV) {
            al_buf ib = m->bufs[nd->in0];
            al_conv2d_desc d;
            al_conv2d_desc_init(&d, max_batch, ib.c, ib.h, ib.w, m->bufs[nd->out].c, nd->k,
                                nd->stride, nd->pad);
            d.nhwc = m->nhwc;
            size_t s = conv_scratch_fmt(ctx, &d, node_fmt(m, nd));
            if (s > scratch) scratch = s;
#ifdef AL_HAVE_CUDA
        } else if (nd->kind == AL_NODE_BN && ctx->device == AL_DEV_CUDA) {
            const al_buf ib = m->bufs[nd->in0];
            const al_bn_desc d = {max_batch, ib.c, ib.h * ib.w, 0, 0, 0, 0, m->nhwc};
            size_t s = al_bn_scratch_bytes_cuda(&d);
            if (s > scratch) scratch = s;
#endif
        } else if (nd->kind == AL_NODE_CUSTOM && nd->ops->scratch_bytes) {
            size_t s = nd->ops->scratch_bytes(ctx, m, nd, max_batch);
            if (s > scratch) scratch = s;
        }
    }
    /* linear backward on CPU may need a (in x out) per-thread scratch: covered by conv sizes
     * for every arch here; reserve a floor as well. */
    m->scratch_bytes = scratch + (1u << 20);

    al_status st = AL_OK;
    size_t pbytes = m->n_param_floats * sizeof(float);
    size_t abytes = m->act_bytes + 16 * sizeof(float);
    AL_CHECK(al_dev_alloc(ctx, (void **)&m->data, pbytes, "model parameters"));
    AL_CHECK(al_dev_alloc(ctx, (void **)&m->grads, pbytes, "model gradients"));
    AL_CHECK(al_memset_dev(ctx, m->data, 0, pbytes));
    AL_CHECK(al_memset_dev(ctx, m->grads, 0, pbytes));
    AL_CHECK(al_dev_alloc(ctx, (void **)&m->d_mean, 4 * sizeof(float), "normalisation mean"));
    AL_CHECK(al_dev_alloc(ctx, (void **)&m->d_std, 4 * sizeof(float), "normalisation std"));
    AL_CHECK(al_copy_to_dev(ctx, m->d_mean, m->mean, 4 * sizeof(float)));
    AL_CHECK(al_copy_to_dev(ctx, m->d_std, m->std, 4 * sizeof(float)));
    AL_CHECK(al_dev_alloc(ctx, (void **)&m->gbuf, abytes, "activation gradients"));
    if (mf) {
        AL_CHECK(al_dev_alloc(ctx, &m->wbf,
                              m->n_param_floats * (m->bf16 ? sizeof(al_bf16) : sizeof(float)) + 64,
                              "conv weight shadow"));
        if (m->cast_bytes)
            AL_CHECK(al_dev_alloc(ctx, &m->cast, m->cast_bytes, "boundary format conversions"));
    }
    m->slots = calloc((size_t)n_slots, sizeof *m->slots);
    if (!m->slots) {
        st = AL_FAIL(AL_ERR_OOM, "out of memory for model slots");
        goto done;
    }
    for (int s = 0; s < n_slots; s++) {
        AL_CHECK(al_dev_alloc(ctx, (void **)&m->slots[s].act, abytes, "activations"));
        AL_CHECK(al_dev_alloc(ctx, (void **)&m->slots[s].save, (save_floats + 16) * sizeof(float),
                              "saved forward state"));
    }
    AL_CHECK(al_ctx_reserve_scratch(ctx, m->scratch_bytes));
    m->setup_done = 1;
done:
    if (st != AL_OK) model_free_device(ctx, m);
    return st;
}

void al_model_destroy(al_ctx *ctx, al_model *m) {
    if (!m) return;
    if (ctx) model_free_device(ctx, m);
    free(m->nodes);
    free(m->bufs);
    free(m->params);
    free(m->has_consumer);
    free(m);
}

static double gauss(uint64_t seed, uint64_t stream, uint64_t i) {
    return (double)al_rng_normal(seed, stream, i);
}

/* Orthonormal rows by modified Gram-Schmidt on Gaussian rows (rows <= cols). */
static void init_orthogonal(float *w, int rows, int cols, uint64_t seed, uint64_t stream) {
    double *a = malloc((size_t)rows * cols * sizeof *a);
    AL_ASSERT(a, "out of memory");
    AL_ASSERT(rows <= cols, "orthogonal init needs rows <= cols");
    for (size_t i = 0; i < (size_t)rows * cols; i++) a[i] = gauss(seed, stream, i);
    for (int r = 0; r < rows; r++) {
        for (int q = 0; q < r; q++) {
            double dot = 0;
            for (int c = 0; c < cols; c++) dot += a[(size_t)r * cols + c] * a[(size_t)q * cols + c];
            for (int c = 0; c < cols; c++) a[(size_t)r * cols + c] -= dot * a[(size_t)q * cols + c];
        }
        double nrm = 0;
        for (int c = 0; c < cols; c++) nrm += a[(size_t)r * cols + c] * a[(size_t)r * cols + c];
        nrm = sqrt(nrm);
        for (int c = 0; c < cols; c++) a[(size_t)r * cols + c] /= nrm;
    }
    for (size_t i = 0; i < (size_t)rows * cols; i++) w[i] = (float)a[i];
    free(a);
}

al_status al_model_init_params(al_ctx *ctx, al_model *m, uint64_t seed) {
    AL_ASSERT(m->setup_done, "init before setup");
    float *h = malloc(m->n_param_floats * sizeof(float));
    if (!h) return AL_FAIL(AL_ERR_OOM, "out of memory initialising %s", m->arch);
    memset(h, 0, m->n_param_floats * sizeof(float));
    for (int i = 0; i < m->n_params; i++) {
        const al_param *p = &m->params[i];
        float *w = h + p->offset;
        uint64_t stream = al_stream(AL_STREAM_INIT, (uint64_t)i);
        double bound = p->fan_in > 0 ? 1.0 / sqrt((double)p->fan_in) : 0.0;
        for (size_t j = 0; j < p->n_elems; j++) {
            switch (p->init) {
            case AL_INIT_ZERO: w[j] = 0.0f; break;
            case AL_INIT_ONE: w[j] = 1.0f; break;
            case AL_INIT_TORCH_DEFAULT_W:
            case AL_INIT_TORCH_DEFAULT_B:
                w[j] = (float)((2.0 * al_rng_uniform(seed, stream, j) - 1.0) * bound);
                break;
            case AL_INIT_KAIMING_NORMAL:
                w[j] = (float)(gauss(seed, stream, j) * sqrt(2.0 / p->fan_in));
                break;
            case AL_INIT_KAIMING_NORMAL_FANOUT:
                w[j] = (float)(gauss(seed, stream, j) * sqrt(2.0 / p->fan_out));
                break;
            case AL_INIT_ORTHOGONAL: break;
            }
        }
        if (p->init == AL_INIT_ORTHOGONAL) init_orthogonal(w, p->shape[0], (int)(p->n_elems / p->shape[0]), seed, stream);
    }
    for (int i = 0; i < m->n_nodes; i++)
        for (int b = 0; b < AL_MAX_BN_BRANCHES; b++) m->nodes[i].bn_tracked[b] = 0;
    al_status st = al_copy_to_dev(ctx, m->data, h, m->n_param_floats * sizeof(float));
    free(h);
    return st;
}

al_status al_model_zero_grad(al_ctx *ctx, al_model *m) {
    return al_memset_dev(ctx, m->grads, 0, m->n_param_floats * sizeof(float));
}

/* ---------------------------------------------------------------- execution */

static float *act(al_model *m, al_slot *s, int b) {
    if (b == 0) return (float *)s->x;
    return (float *)((char *)s->act + m->bufs[b].boff);
}
static float *gact(al_model *m, int b) { return (float *)((char *)m->gbuf + m->bufs[b].boff); }

float *al_model_logits(al_model *m, int slot) { return act(m, &m->slots[slot], m->out_buf); }

void al_model_get_tracked(const al_model *m, int64_t *t) {
    for (int i = 0; i < m->n_nodes; i++)
        memcpy(t + (size_t)i * AL_MAX_BN_BRANCHES, m->nodes[i].bn_tracked,
               sizeof m->nodes[i].bn_tracked);
}
void al_model_add_tracked(al_model *m, const int64_t *d, int sign) {
    for (int i = 0; i < m->n_nodes; i++)
        for (int b = 0; b < AL_MAX_BN_BRANCHES; b++)
            m->nodes[i].bn_tracked[b] += sign * d[(size_t)i * AL_MAX_BN_BRANCHES + b];
}
float *al_model_buffer(al_model *m, int slot, int buf) {
    AL_ASSERT(!m->bufs[buf].bf16 && !m->bufs[buf].nhwc,
              "model %s: buffer %d is stored in bf16 or channels last", m->arch, buf);
    return act(m, &m->slots[slot], buf);
}
float *al_model_features(al_model *m, int slot) { return act(m, &m->slots[slot], m->feat_buf); }

/* Cast views (bf16 mode): `cu` bytes of m->cast are in use by the current node. */
static void *cast_take(al_model *m, int b, size_t *cu) {
    const size_t need = cast_slot_bytes(m, b);
    AL_ASSERT(*cu + need <= m->cast_bytes, "model %s: cast area %zu bytes, node needs %zu", m->arch,
              m->cast_bytes, *cu + need);
    void *p = (char *)m->cast + *cu;
    *cu += need;
    return p;
}
/* Buffer b's tensor `p` (n images) from format `from` into format `to`, '=' or '+=' (acc). */
static al_status convert_buf(al_ctx *ctx, const al_model *m, int b, int n, const void *p, int from,
                             void *q, int to, int acc) {
    const al_buf *bf = &m->bufs[b];
    return al_convert(ctx, n, bf->c, bf->h * bf->w, p, from, q, to, acc);
}
/* Buffer b's value `p` (stored in buf_fmt) in the node's format nf: p itself, or a conversion. */
static al_status view_as(al_ctx *ctx, al_model *m, int b, const void *p, int n, int nf,
                         size_t *cu, const void **out) {
    if (buf_fmt(m, b) == nf) {
        *out = p;
        return AL_OK;
    }
    void *v = cast_take(m, b, cu);
    AL_TRY(convert_buf(ctx, m, b, n, p, buf_fmt(m, b), v, nf, 0));
    *out = v;
    return AL_OK;
}

/* One node's fp32 forward on either backend (every kind but CUSTOM). w: the conv / linear
 * weight (the fp32 master, or the bf16 CPU twin's widened shadow). */
static al_status node_forward_f32(al_ctx *ctx, al_model *m, const al_node *nd, int i, int n,
                                  int branch, const al_fwd_opts *o, const float *xin,
                                  const float *xin1, float *y, float *save, const float *w) {
    const al_buf ib = m->bufs[nd->in0], ob = m->bufs[nd->out];
    const int *pp = nd->param[nd->kind == AL_NODE_BN ? branch : 0];
    const size_t nx = (size_t)n * ib.per_sample;
    switch (nd->kind) {
    case AL_NODE_NORMALIZE:
        return al_normalize_forward(ctx, n, ib.c, ib.h * ib.w, xin, m->d_mean, m->d_std, y);
    case AL_NODE_CONV: {
        al_conv2d_desc d;
        al_conv2d_desc_init(&d, n, ib.c, ib.h, ib.w, ob.c, nd->k, nd->stride, nd->pad);
        return al_conv2d_forward(ctx, &d, xin, w, pp[1] >= 0 ? al_param_data(m, pp[1]) : NULL, y);
    }
    case AL_NODE_BN: {
        al_bn_desc d = {n, ib.c, ib.h * ib.w, nd->eps, nd->momentum, o->train,
                        o->train && o->update_bn};
        return al_bn_forward(ctx, &d, xin, al_param_data(m, pp[0]), al_param_data(m, pp[1]),
                             al_param_data(m, pp[2]), al_param_data(m, pp[3]), y, save, save + ib.c);
    }
    case AL_NODE_RELU: return al_relu_forward(ctx, nx, xin, y);
    case AL_NODE_MAXPOOL:
    case AL_NODE_AVGPOOL: {
        al_pool_desc d;
        al_pool_desc_init(&d, n, ib.c, ib.h, ib.w, nd->k, nd->stride);
        return nd->kind == AL_NODE_MAXPOOL ? al_maxpool_forward(ctx, &d, xin, y, (int32_t *)save)
                                           : al_avgpool_forward(ctx, &d, xin, y);
    }
    case AL_NODE_LINEAR:
        return al_linear_forward(ctx, n, (int)ib.per_sample, (int)ob.per_sample, xin, w,
                                 pp[1] >= 0 ? al_param_data(m, pp[1]) : NULL, y);
    case AL_NODE_ADD: return al_add_forward(ctx, nx, xin, xin1, y);
    case AL_NODE_DROPOUT: {
        const float p = o->train ? nd->p : 0.0f;
        const uint64_t stream = al_stream(AL_STREAM_DROPOUT, o->step * 4096 + (uint64_t)i);
        return al_dropout_forward(ctx, nx, p, ctx->seed, stream, xin, y, save);
    }
    default: AL_ASSERT(0, "node kind %d has no built-in forward", nd->kind);
    }
    return AL_OK;
}

/* One node's fp32 backward (every kind but ADD and CUSTOM, which the sweep handles): din = or
 * += (acc0), dw / db += (NULL: skipped); w as for node_forward_f32. */
static al_status node_backward_f32(al_ctx *ctx, al_model *m, const al_node *nd, const al_slot *s,
                                   const float *xin, const float *y, const float *dy, float *din,
                                   int acc0, const float *w, float *dw, float *db,
                                   const float *save) {
    const int n = s->n;
    const al_buf ib = m->bufs[nd->in0], ob = m->bufs[nd->out];
    const int *pp = nd->param[nd->kind == AL_NODE_BN ? s->branch : 0];
    const size_t nx = (size_t)n * ib.per_sample;
    switch (nd->kind) {
    case AL_NODE_NORMALIZE:
        return din ? al_normalize_backward(ctx, n, ib.c, ib.h * ib.w, m->d_std, dy, din, acc0) : AL_OK;
    case AL_NODE_CONV: {
        if (!din && !dw && !db) return AL_OK;
        al_conv2d_desc d;
        al_conv2d_desc_init(&d, n, ib.c, ib.h, ib.w, ob.c, nd->k, nd->stride, nd->pad);
        return al_conv2d_backward(ctx, &d, xin, w, dy, din, acc0, dw, db);
    }
    case AL_NODE_BN: {
        al_bn_desc d = {n, ib.c, ib.h * ib.w, nd->eps, nd->momentum, s->train, 0};
        return al_bn_backward(ctx, &d, xin, al_param_data(m, pp[0]), save, save + ib.c, dy, din,
                              acc0, dw, db);
    }
    case AL_NODE_RELU: return din ? al_relu_backward(ctx, nx, y, dy, din, acc0) : AL_OK;
    case AL_NODE_MAXPOOL:
    case AL_NODE_AVGPOOL: {
        if (!din) return AL_OK;
        al_pool_desc d;
        al_pool_desc_init(&d, n, ib.c, ib.h, ib.w, nd->k, nd->stride);
        return nd->kind == AL_NODE_MAXPOOL
                   ? al_maxpool_backward(ctx, &d, (const int32_t *)save, dy, din, acc0)
                   : al_avgpool_backward(ctx, &d, dy, din, acc0);
    }
    case AL_NODE_LINEAR:
        return al_linear_backward(ctx, n, (int)ib.per_sample, (int)ob.per_sample, xin, w, dy, din,
                                  acc0, dw, db);
    case AL_NODE_DROPOUT: return din ? al_dropout_backward(ctx, nx, save, dy, din, acc0) : AL_OK;
    default: AL_ASSERT(0, "node kind %d has no built-in backward", nd->kind);
    }
    return AL_OK;
}

/* CPU twin of the bf16 nodes: the bf16 arguments (and the conv weight shadow) widened into
 * fp32 temporaries, node_*_f32, outputs rounded back to bf16 -- the CUDA kernels' arithmetic
 * (fp32 on bf16 values, one rounding per store), so a CPU run with precision bf16 is the
 * reference of a CUDA one. A conv weight gradient is rounded to bf16 before it is added into
 * the fp32 gradient, as on CUDA. Host allocations per call: a reference path, not a fast one. */
static float *widen(const al_bf16 *p, size_t n) {
    float *f = calloc(n ? n : 1, sizeof(float));
    AL_ASSERT(f, "out of memory (%zu floats)", n);
    for (size_t i = 0; p && i < n; i++) f[i] = al_bf16_to_f32(p[i]);
    return f;
}
static void narrow(const float *f, al_bf16 *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = al_f32_to_bf16(f[i]);
}
static float *widen_weight(al_model *m, const al_node *nd) {
    const int pw = nd->param[0][0];
    return nd->kind == AL_NODE_CONV ? widen((const al_bf16 *)m->wbf + m->params[pw].offset,
                                            m->params[pw].n_elems)
                                    : NULL;
}

static al_status forward_bf16_cpu(al_ctx *ctx, al_model *m, const al_node *nd, int n, int branch,
                                  const al_fwd_opts *o, const al_bf16 *x0, const al_bf16 *x1,
                                  al_bf16 *y, float *save) {
    const size_t nx = (size_t)n * m->bufs[nd->in0].per_sample;
    const size_t ny = (size_t)n * m->bufs[nd->out].per_sample;
    float *fx0 = widen(x0, nx), *fx1 = x1 ? widen(x1, nx) : NULL, *fy = widen(NULL, ny);
    float *fw = widen_weight(m, nd);
    al_status st = node_forward_f32(ctx, m, nd, -1, n, branch, o, fx0, fx1, fy, save, fw);
    if (st == AL_OK) narrow(fy, y, ny);
    free(fx0), free(fx1), free(fy), free(fw);
    return st;
}

static al_status backward_bf16_cpu(al_ctx *ctx, al_model *m, const al_node *nd, const al_slot *s,
                                   const al_bf16 *x0, const al_bf16 *y, const al_bf16 *dy,
                                   al_bf16 *dx0, int acc0, float *dw, float *db,
                                   const float *save) {
    const size_t nx = (size_t)s->n * m->bufs[nd->in0].per_sample;
    const size_t ny = (size_t)s->n * m->bufs[nd->out].per_sample;
    const size_t nw = dw ? m->params[nd->param[0][0]].n_elems : 0;
    float *fx0 = x0 ? widen(x0, nx) : NULL, *fy = y ? widen(y, ny) : NULL, *fdy = widen(dy, ny);
    float *fdx = dx0 ? widen(acc0 ? dx0 : NULL, nx) : NULL, *fw = widen_weight(m, nd);
    /* BN's dgamma / dbeta are fp32 sums (as on CUDA); only a conv's dw goes through bf16 */
    float *fdw = dw && nd->kind == AL_NODE_CONV ? widen(NULL, nw) : dw;
    al_status st = node_backward_f32(ctx, m, nd, s, fx0, fy, fdy, fdx, acc0, fw, fdw, db, save);
    for (size_t i = 0; st == AL_OK && fdw != dw && i < nw; i++)
        dw[i] += al_bf16_to_f32(al_f32_to_bf16(fdw[i]));
    if (st == AL_OK && fdx) narrow(fdx, dx0, nx);
    free(fx0), free(fy), free(fdy), free(fdx), free(fw);
    if (fdw != dw) free(fdw);
    return st;
}

/* The conv weight shadow's element for parameter p (format: the fast nodes'). */
static const void *wshadow(const al_model *m, int p) {
    return m->bf16 ? (const void *)((const al_bf16 *)m->wbf + m->params[p].offset)
                   : (const void *)((const float *)m->wbf + m->params[p].offset);
}

#ifdef AL_HAVE_CUDA
/* The forward of a fast node in format nf != 0 (x0, x1, y: views in that format). */
static al_status forward_fast(al_ctx *ctx, al_model *m, const al_node *nd, int n, int branch,
                              const al_fwd_opts *o, int nf, const void *x0, const void *x1,
                              void *y, float *save) {
    if (ctx->device == AL_DEV_CPU) return forward_bf16_cpu(ctx, m, nd, n, branch, o, x0, x1, y, save);
    const al_buf ib = m->bufs[nd->in0], ob = m->bufs[nd->out];
    const int *pp = nd->param[nd->kind == AL_NODE_BN ? branch : 0];
    const int bf = (nf & AL_FMT_BF16) != 0, nh = (nf & AL_FMT_NHWC) != 0;
    const size_t ne = (size_t)n * ib.per_sample;
    switch (nd->kind) {
    case AL_NODE_CONV: {
        al_conv2d_desc d;
        al_conv2d_desc_init(&d, n, ib.c, ib.h, ib.w, ob.c, nd->k, nd->stride, nd->pad);
        d.nhwc = nh;
        const float *b = pp[1] >= 0 ? al_param_data(m, pp[1]) : NULL;
        return bf ? al_conv2d_forward_bf16_cuda(ctx, &d, x0, wshadow(m, pp[0]), b, y)
                  : al_conv2d_forward_cuda(ctx, &d, x0, wshadow(m, pp[0]), b, y);
    }
    case AL_NODE_BN: {
        al_bn_desc d = {n, ib.c, ib.h * ib.w, nd->eps, nd->momentum, o->train,
                        o->train && o->update_bn, nh};
        float *g = al_param_data(m, pp[0]), *be = al_param_data(m, pp[1]);
        float *rm = al_param_data(m, pp[2]), *rv = al_param_data(m, pp[3]);
        return bf ? al_bn_forward_bf16_cuda(ctx, &d, x0, g, be, rm, rv, y, save, save + ib.c)
                  : al_bn_forward_cuda(ctx, &d, x0, g, be, rm, rv, y, save, save + ib.c);
    }
    case AL_NODE_RELU:
        return bf ? al_relu_forward_bf16_cuda(ctx, ne, x0, y) : al_relu_forward_cuda(ctx, ne, x0, y);
    case AL_NODE_ADD:
        return bf ? al_add_forward_bf16_cuda(ctx, ne, x0, x1, y)
                  : al_add_forward_cuda(ctx, ne, x0, x1, y);
    case AL_NODE_MAXPOOL:
    case AL_NODE_AVGPOOL: {
        al_pool_desc d;
        al_pool_desc_init(&d, n, ib.c, ib.h, ib.w, nd->k, nd->stride);
        d.nhwc = nh;
        if (nd->kind == AL_NODE_MAXPOOL)
            return bf ? al_maxpool_forward_bf16_cuda(ctx, &d, x0, y, (int32_t *)save)
                      : al_maxpool_forward_cuda(ctx, &d, x0, y, (int32_t *)save);
        return bf ? al_avgpool_forward_bf16_cuda(ctx, &d, x0, y) : al_avgpool_forward_cuda(ctx, &d, x0, y);
    }
    default: AL_ASSERT(0, "node kind %d has no fast forward", nd->kind);
    }
    return AL_OK;
}

/* The backward of a fast node in format nf (x0, y, dy: views; dx0: a view or NULL; dw/db:
 * fp32 OIHW grads or NULL). */
static al_status backward_fast(al_ctx *ctx, al_model *m, const al_node *nd, const al_slot *s,
                               int nf, const void *x0, const void *y, const void *dy, void *dx0,
                               int acc0, float *dw, float *db, const float *save) {
    if (ctx->device == AL_DEV_CPU)
        return backward_bf16_cpu(ctx, m, nd, s, x0, y, dy, dx0, acc0, dw, db, save);
    const int n = s->n;
    const al_buf ib = m->bufs[nd->in0], ob = m->bufs[nd->out];
    const int *pp = nd->param[nd->kind == AL_NODE_BN ? s->branch : 0];
    const int bf = (nf & AL_FMT_BF16) != 0, nh = (nf & AL_FMT_NHWC) != 0;
    const size_t ne = (size_t)n * ib.per_sample;
    switch (nd->kind) {
    case AL_NODE_CONV: {
        if (!dx0 && !dw && !db) return AL_OK;
        al_conv2d_desc d;
        al_conv2d_desc_init(&d, n, ib.c, ib.h, ib.w, ob.c, nd->k, nd->stride, nd->pad);
        d.nhwc = nh;
        return bf ? al_conv2d_backward_bf16_cuda(ctx, &d, x0, wshadow(m, pp[0]), dy, dx0, acc0, dw, db)
                  : al_conv2d_backward_cuda(ctx, &d, x0, wshadow(m, pp[0]), dy, dx0, acc0, dw, db);
    }
    case AL_NODE_BN: {
        al_bn_desc d = {n, ib.c, ib.h * ib.w, nd->eps, nd->momentum, s->train, 0, nh};
        const float *g = al_param_data(m, pp[0]);
        return bf ? al_bn_backward_bf16_cuda(ctx, &d, x0, g, save, save + ib.c, dy, dx0, acc0, dw, db)
                  : al_bn_backward_cuda(ctx, &d, x0, g, save, save + ib.c, dy, dx0, acc0, dw, db);
    }
    case AL_NODE_RELU:
        if (!dx0) return AL_OK;
        return bf ? al_relu_backward_bf16_cuda(ctx, ne, y, dy, dx0, acc0)
                  : al_relu_backward_cuda(ctx, ne, y, dy, dx0, acc0);
    case AL_NODE_MAXPOOL:
    case AL_NODE_AVGPOOL: {
        if (!dx0) return AL_OK;
        al_pool_desc d;
        al_pool_desc_init(&d, n, ib.c, ib.h, ib.w, nd->k, nd->stride);
        d.nhwc = nh;
        if (nd->kind == AL_NODE_MAXPOOL)
            return bf ? al_maxpool_backward_bf16_cuda(ctx, &d, (const int32_t *)save, dy, dx0, acc0)
                      : al_maxpool_backward_cuda(ctx, &d, (const int32_t *)save, dy, dx0, acc0);
        return bf ? al_avgpool_backward_bf16_cuda(ctx, &d, dy, dx0, acc0)
                  : al_avgpool_backward_cuda(ctx, &d, dy, dx0, acc0);
    }
    default: AL_ASSERT(0, "node kind %d has no fast backward", nd->kind);
    }
    return AL_OK;
}
#else
static al_status forward_fast(al_ctx *ctx, al_model *m, const al_node *nd, int n, int branch,
                              const al_fwd_opts *o, int nf, const void *x0, const void *x1,
                              void *y, float *save) {
    AL_ASSERT(nf == AL_FMT_BF16, "format %d without CUDA", nf);
    return forward_bf16_cpu(ctx, m, nd, n, branch, o, x0, x1, y, save);
}
static al_status backward_fast(al_ctx *ctx, al_model *m, const al_node *nd, const al_slot *s,
                               int nf, const void *x0, const void *y, const void *dy, void *dx0,
                               int acc0, float *dw, float *db, const float *save) {
    AL_ASSERT(nf == AL_FMT_BF16, "format %d without CUDA", nf);
    return backward_bf16_cpu(ctx, m, nd, s, x0, y, dy, dx0, acc0, dw, db, save);
}
#endif

static al_status convert_weights(al_ctx *ctx, al_model *m) {
    if (m->bf16 && !m->nhwc) return al_cast(ctx, m->n_param_floats, m->data, 0, m->wbf, 1, 0);
    if (!m->nhwc) return AL_OK;
    for (int i = 0; i < m->n_nodes; i++) {
        const al_node *nd = &m->nodes[i];
        if (nd->kind != AL_NODE_CONV) continue;
        const al_param *p = &m->params[nd->param[0][0]];
        AL_TRY(al_convert(ctx, p->shape[0], p->shape[1], p->shape[2] * p->shape[3],
                          m->data + p->offset, 0, (void *)wshadow(m, nd->param[0][0]),
                          model_fmt(m), 0));
    }
    return AL_OK;
}

static al_status model_forward(al_ctx *ctx, al_model *m, const float *x, int n,
                               const al_fwd_opts *o) {
    AL_ASSERT(m->setup_done, "forward before setup");
    AL_ASSERT(o->slot >= 0 && o->slot < m->n_slots, "slot %d of %d", o->slot, m->n_slots);
    if (n < 1 || n > m->max_batch)
        return AL_FAIL(AL_ERR_VALUE, "model %s: batch %d outside [1, %d] set at setup", m->arch, n,
                       m->max_batch);
    if (o->bn_branch < 0 || o->bn_branch >= m->n_branches)
        return AL_FAIL(AL_ERR_VALUE, "model %s: BN branch %d outside [0, %d)", m->arch, o->bn_branch,
                       m->n_branches);
    if (m->eval_branch < -1 || m->eval_branch >= m->n_branches)
        return AL_FAIL(AL_ERR_VALUE, "model %s: eval_branch %d outside [-1, %d)", m->arch,
                       m->eval_branch, m->n_branches);
    /* an eval-mode forward on branch 0 runs the model's evaluation branch ([multibn]
     * test_branch), so every attack, whatever fwd opts it builds, differentiates the branch the
     * clean accuracy is measured on; -1 (the learned selector) is handled by the gated BN
     * nodes (core/ops/bn_gate.c) */
    const int branch = (!o->train && o->bn_branch == 0 && m->eval_branch > 0) ? m->eval_branch
                                                                               : o->bn_branch;
    al_slot *s = &m->slots[o->slot];
    s->x = x;
    s->n = n;
    s->train = o->train;
    s->branch = branch;
    s->labels = o->labels;
    /* the conv weights' shadow in the fast format from the fp32 OIHW master weights (backward
     * uses the same shadow, and nothing changes the weights between the two): bf16 NCHW is one
     * cast of the whole buffer, channels last one OIHW -> OHWI conversion per conv */
    AL_TRY(convert_weights(ctx, m));
    for (int i = 0; i < m->n_nodes; i++) {
        al_node *nd = &m->nodes[i];
        const int nf = node_fmt(m, nd), of = buf_fmt(m, nd->out);
        size_t cu = 0;
        const void *x0v = NULL, *x1v = NULL;
        AL_TRY(view_as(ctx, m, nd->in0, act(m, s, nd->in0), n, nf, &cu, &x0v));
        if (nd->in1 >= 0) AL_TRY(view_as(ctx, m, nd->in1, act(m, s, nd->in1), n, nf, &cu, &x1v));
        void *yv = of == nf ? (void *)act(m, s, nd->out) : cast_take(m, nd->out, &cu);
        float *save = s->save + nd->save_offset;
        if (nf)
            AL_TRY(forward_fast(ctx, m, nd, n, branch, o, nf, x0v, x1v, yv, save));
        else if (nd->kind == AL_NODE_CUSTOM)
            AL_TRY(nd->ops->forward(ctx, m, nd, o, n, x0v, x1v, yv, save));
        else
            AL_TRY(node_forward_f32(ctx, m, nd, i, n, branch, o, x0v, x1v, yv, save,
                                    nd->param[0][0] >= 0 ? al_param_data(m, nd->param[0][0]) : NULL));
        if (nd->kind == AL_NODE_BN && o->train && o->update_bn) nd->bn_tracked[branch]++;
        if (yv != (void *)act(m, s, nd->out))
            AL_TRY(convert_buf(ctx, m, nd->out, n, yv, nf, act(m, s, nd->out), of, 0));
    }
    return AL_OK;
}

/* model_forward inside the NVTX range "forward" (Nsight Systems) */
al_status al_model_forward(al_ctx *ctx, al_model *m, const float *x, int n, const al_fwd_opts *o) {
    al_nvtx_push("forward");
    const al_status st = model_forward(ctx, m, x, n, o);
    al_nvtx_pop();
    return st;
}

al_status al_model_backward(al_ctx *ctx, al_model *m, int slot, const float *dlogits,
                            const float *dfeat, int flags, float *dx) {
    al_bwd_seed seeds[2] = {{m->out_buf, dlogits}, {m->feat_buf, dfeat}};
    return al_model_backward_seeds(ctx, m, slot, seeds, dfeat ? 2 : 1, flags, dx);
}

static al_status model_backward_seeds(al_ctx *ctx, al_model *m, int slot,
                                      const al_bwd_seed *seeds, int n_seeds, int flags,
                                      float *dx) {
    AL_ASSERT(m->setup_done, "backward before setup");
    AL_ASSERT(slot >= 0 && slot < m->n_slots, "slot %d", slot);
    AL_ASSERT(n_seeds >= 1 && n_seeds <= 8, "%d gradient seeds", n_seeds);
    al_slot *s = &m->slots[slot];
    const int n = s->n;
    const int want_w = (flags & AL_BWD_WEIGHTS) != 0;
    const int want_x = (flags & AL_BWD_INPUT) != 0 && dx != NULL;

    /* need[b]: does anything requested depend on the gradient of buffer b? Forward sweep:
     * the input needs it iff want_x; a node's output needs it iff the node has trainable
     * parameters (and want_w) or one of its inputs needs it. */
    char need_stack[1024];
    char *need = 2 * m->n_bufs <= (int)sizeof need_stack ? need_stack : malloc(2 * (size_t)m->n_bufs);
    AL_ASSERT(need, "out of memory");
    /* written[b]: a gradient has been stored in buffer b during this sweep, so the next
     * contribution accumulates ('+=') and the first one overwrites ('='). Tracked at run time
     * so consumers that receive no gradient (an unseeded auxiliary head) are simply skipped. */
    char *written = need + m->n_bufs;
    memset(need, 0, 2 * (size_t)m->n_bufs);
    need[0] = (char)want_x;
    for (int i = 0; i < m->n_nodes; i++) {
        const al_node *nd = &m->nodes[i];
        int has_w = nd->param[0][0] >= 0 && m->params[nd->param[0][0]].trainable;
        if (nd->kind == AL_NODE_BN) has_w = 1;
        if (nd->kind == AL_NODE_CUSTOM) has_w = nd->ops->has_weights;
        need[nd->out] = (char)((want_w && has_w) || need[nd->in0] || (nd->in1 >= 0 && need[nd->in1]));
    }

    al_status st = AL_OK;
    /* seeds on buffers nothing reads (the logits, auxiliary heads) are written '=' up front;
     * the others are added when the reverse sweep reaches their producer */
    int seeded[8] = {0};
    for (int j = 0; j < n_seeds; j++) {
        AL_ASSERT(seeds[j].buf > 0 && seeds[j].buf < m->n_bufs, "seed buffer %d", seeds[j].buf);
        if (!seeds[j].grad || m->has_consumer[seeds[j].buf]) continue;
        for (int q = 0; q < j; q++)
            AL_ASSERT(seeds[q].buf != seeds[j].buf, "buffer %d seeded twice", seeds[j].buf);
        AL_CHECK(convert_buf(ctx, m, seeds[j].buf, n, seeds[j].grad, 0, gact(m, seeds[j].buf),
                             buf_fmt(m, seeds[j].buf), 0));
        seeded[j] = 1;
        written[seeds[j].buf] = 1;
    }

    for (int i = m->n_nodes - 1; i >= 0; i--) {
        al_node *nd = &m->nodes[i];
        if (!need[nd->out]) continue;
        for (int j = 0; j < n_seeds; j++) {
            if (seeded[j] || !seeds[j].grad || seeds[j].buf != nd->out) continue;
            /* every consumer of this buffer comes later in the graph, so its gradient is
             * complete here: add the caller's seed */
            AL_CHECK(convert_buf(ctx, m, nd->out, n, seeds[j].grad, 0, gact(m, nd->out),
                                 buf_fmt(m, nd->out), written[nd->out]));
            seeded[j] = 1;
            written[nd->out] = 1;
        }
        if (!written[nd->out]) continue; /* no gradient reaches this node */
        const int nf = node_fmt(m, nd), if0 = buf_fmt(m, nd->in0);
        /* views in the node's format (conversions where a buffer is stored in another) */
        size_t cu = 0;
        const int want_xv = nd->kind == AL_NODE_CONV || nd->kind == AL_NODE_BN ||
                            nd->kind == AL_NODE_LINEAR || nd->kind == AL_NODE_CUSTOM;
        const int want_yv = nd->kind == AL_NODE_RELU || nd->kind == AL_NODE_CUSTOM;
        const void *x0v = NULL, *x1v = NULL, *yv = NULL, *dyv = NULL;
        if (want_xv) AL_CHECK(view_as(ctx, m, nd->in0, act(m, s, nd->in0), n, nf, &cu, &x0v));
        if (want_xv && nd->in1 >= 0)
            AL_CHECK(view_as(ctx, m, nd->in1, act(m, s, nd->in1), n, nf, &cu, &x1v));
        if (want_yv) AL_CHECK(view_as(ctx, m, nd->out, act(m, s, nd->out), n, nf, &cu, &yv));
        AL_CHECK(view_as(ctx, m, nd->out, gact(m, nd->out), n, nf, &cu, &dyv));
        /* input gradients: into the buffer's gradient when the formats agree, else into a
         * conversion view written '=' and then added into the buffer's gradient */
        float *gin0 = need[nd->in0] ? (nd->in0 == 0 ? dx : gact(m, nd->in0)) : NULL;
        const int acc0_buf = written[nd->in0];
        float *din = gin0 && if0 != nf && nd->kind != AL_NODE_ADD ? cast_take(m, nd->in0, &cu)
                                                                    : gin0;
        const int acc0 = din == gin0 ? acc0_buf : 0;
        const float *save = s->save + nd->save_offset;
        const int *pp = nd->param[nd->kind == AL_NODE_BN ? s->branch : 0];
        int trainable_w = pp[0] >= 0 && m->params[pp[0]].trainable;
        float *dw = (want_w && trainable_w) ? al_param_grad(m, pp[0]) : NULL;
        float *db = (want_w && pp[1] >= 0 && m->params[pp[1]].trainable) ? al_param_grad(m, pp[1]) : NULL;
        if (nd->kind == AL_NODE_ADD) {
            /* both inputs receive dy, each in its own format */
            if (gin0) AL_CHECK(convert_buf(ctx, m, nd->in0, n, dyv, nf, gin0, if0, acc0_buf));
            if (gin0) written[nd->in0] = 1;
            if (need[nd->in1]) {
                float *din1 = nd->in1 == 0 ? dx : gact(m, nd->in1);
                AL_CHECK(convert_buf(ctx, m, nd->in1, n, dyv, nf, din1, buf_fmt(m, nd->in1),
                                     written[nd->in1]));
                written[nd->in1] = 1;
            }
            continue;
        }
        if (nf) {
            AL_CHECK(backward_fast(ctx, m, nd, s, nf, x0v, yv, dyv, din, acc0, dw, db, save));
        } else if (nd->kind == AL_NODE_CUSTOM) {
            /* a custom node's buffers are all fp32 NCHW (plan_formats): no conversions */
            float *din1 = nd->in1 >= 0 && need[nd->in1] ? (nd->in1 == 0 ? dx : gact(m, nd->in1)) : NULL;
            AL_CHECK(nd->ops->backward(ctx, m, nd, n, s->train, x0v, x1v, yv, dyv, din, acc0, din1,
                                       nd->in1 >= 0 ? written[nd->in1] : 0,
                                       want_w && nd->ops->has_weights, save, s->labels));
            if (din1) written[nd->in1] = 1;
        } else {
            AL_CHECK(node_backward_f32(ctx, m, nd, s, x0v, yv, dyv, din, acc0,
                                       pp[0] >= 0 ? al_param_data(m, pp[0]) : NULL, dw, db, save));
        }
        if (din && din != gin0)
            AL_CHECK(convert_buf(ctx, m, nd->in0, n, din, nf, gin0, if0, acc0_buf));
        if (din) written[nd->in0] = 1;
    }
done:
    if (need != need_stack) free(need);
    return st;
}

/* model_backward_seeds inside the NVTX range "backward" */
al_status al_model_backward_seeds(al_ctx *ctx, al_model *m, int slot, const al_bwd_seed *seeds,
                                  int n_seeds, int flags, float *dx) {
    al_nvtx_push("backward");
    const al_status st = model_backward_seeds(ctx, m, slot, seeds, n_seeds, flags, dx);
    al_nvtx_pop();
    return st;
}
