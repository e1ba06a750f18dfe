/* model.h: a model is a static graph of nodes over activation buffers, built once by an arch
 * builder (core/models/) and executed forward/backward by core/model.c on either backend.
 *
 * - Parameters: ONE generated table {name, shape, offset} (PyTorch state_dict names, formats.md)
 *   over ONE float buffer each for params and grads; checkpoints, optimiser, EMA, weight-decay
 *   masks and gradient all-reduce all iterate it. BN running stats live in the params buffer
 *   (trainable = 0) so the state_dict round-trips 1:1.
 * - Activations: per "slot" (an independent forward whose activations are kept for backward:
 *   TRADES keeps f(x) and f(x_adv) alive together, DFA/ANCRA three), sized for max_batch at
 *   setup. Activation gradients are shared across slots (backward runs one slot at a time).
 * - Buffer 0 is the model input: pixels in [0,1], (N, C, H, W). Input normalisation
 *   (mean/std) is the first node, inside the model.
 * - Backward: dW += into model->grads (caller zeroes), input gradient = into a caller buffer.
 *   Weight and input gradients are switched independently (attacks skip weight gradients). */
#ifndef AL_MODEL_H
#define AL_MODEL_H

#include "core/ctx.h"
#include "core/ops/batchnorm.h"
#include "core/ops/conv2d.h"
#include "core/ops/pool.h"

#ifdef __cplusplus
extern "C" {
#endif

#define AL_MAX_BN_BRANCHES 4
#define AL_NAME_LEN 128

typedef enum al_param_kind {
    AL_P_WEIGHT = 0, /* conv / linear weight */
    AL_P_BIAS,       /* conv / linear bias */
    AL_P_BN_WEIGHT,
    AL_P_BN_BIAS,
    AL_P_BN_MEAN,    /* running_mean (buffer, not trainable) */
    AL_P_BN_VAR,     /* running_var (buffer, not trainable) */
    AL_P_OTHER,      /* project-specific buffer (not trainable unless marked) */
} al_param_kind;

typedef enum al_init_kind {
    AL_INIT_ZERO = 0,
    AL_INIT_ONE,
    AL_INIT_TORCH_DEFAULT_W,  /* kaiming_uniform(a=sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
    AL_INIT_TORCH_DEFAULT_B,  /* U(-1/sqrt(fan_in), 1/sqrt(fan_in)) */
    AL_INIT_KAIMING_NORMAL,   /* N(0, 2/fan_in)  (kaiming_normal_, fan_in, relu) */
    AL_INIT_KAIMING_NORMAL_FANOUT, /* N(0, 2/fan_out), fan_out = O*kh*kw (RobustBench WRN) */
    AL_INIT_ORTHOGONAL,       /* rows orthonormal (DFA frozen classifier) */
} al_init_kind;

typedef struct al_param {
    char name[AL_NAME_LEN];   /* PyTorch state_dict name, e.g. "layer1.0.bn1.weight" */
    int ndim;
    int shape[4];
    size_t offset;            /* in floats, into params/grads/momentum/ema buffers */
    size_t n_elems;
    al_param_kind kind;
    al_init_kind init;
    int fan_in, fan_out;
    int trainable;            /* receives gradients and optimiser updates */
    int decay;                /* weight decay applies (PyTorch SGD: every trainable param) */
} al_param;

typedef enum al_node_kind {
    AL_NODE_NORMALIZE = 0, /* (x - mean) / std, constants from the model */
    AL_NODE_CONV,
    AL_NODE_BN,
    AL_NODE_RELU,
    AL_NODE_MAXPOOL,
    AL_NODE_AVGPOOL,
    AL_NODE_LINEAR,        /* input buffer viewed as (N, C*H*W) (flatten is free in NCHW) */
    AL_NODE_ADD,
    AL_NODE_DROPOUT,
    AL_NODE_CUSTOM,        /* ops from an al_node_ops table (method-specific operators) */
    AL_NODE_N_KINDS
} al_node_kind;

struct al_node;
struct al_slot;
struct al_model;
struct al_fwd_opts;
/* A pluggable operator (darknet-style layer table): methods add operators (MeanSparse, L2
 * normalisation, reverse attention, weight-standardised conv, ...) in their own files without
 * touching the executor. `save` is the node's per-slot saved state (save_per_sample * max_batch
 * + save_fixed floats). Backward write modes as for built-in ops: dx0/dx1 '=' or '+=' per
 * acc0/acc1, parameter gradients '+=' into m->grads (only when want_w), any dx NULL to skip. */
typedef struct al_node_ops {
    const char *kind;
    al_status (*forward)(al_ctx *ctx, struct al_model *m, struct al_node *nd,
                         const struct al_fwd_opts *o, int n, const float *x0, const float *x1,
                         float *y, float *save);
    al_status (*backward)(al_ctx *ctx, struct al_model *m, struct al_node *nd, int n, int train,
                          const float *x0, const float *x1, const float *y, const float *dy,
                          float *dx0, int acc0, float *dx1, int acc1, int want_w,
                          const float *save, const int32_t *labels);
    int has_weights;          /* 1: the node's parameters (param[0][*]) receive gradients */
    /* optional: ctx scratch bytes the node needs at batch max_batch (reserved by setup) */
    size_t (*scratch_bytes)(const al_ctx *ctx, const struct al_model *m,
                            const struct al_node *nd, int max_batch);
} al_node_ops;

typedef struct al_buf {
    int c, h, w;
    size_t per_sample;        /* c*h*w elements */
    size_t offset;            /* floats per sample before this buffer in the fp32 layout */
    /* at setup: */
    int bf16;                 /* stored as bf16 (run.precision = bf16 on CUDA, see model.c) */
    int nhwc;                 /* stored channels last (run.layout = nhwc, CUDA; model.c) */
    size_t boff;              /* bytes into a slot's act / the gbuf (any layout) */
} al_buf;

typedef struct al_node {
    al_node_kind kind;
    char name[AL_NAME_LEN];   /* module name ("layer1.0.conv1"); "" for parameter-free nodes */
    int in0, in1, out;        /* buffer ids (in1 = -1 unless ADD) */
    int k, stride, pad;       /* conv / pool */
    float p;                  /* dropout probability */
    float eps, momentum;      /* BN */
    int param[AL_MAX_BN_BRANCHES][4]; /* conv/linear: [0][0]=w [0][1]=b; BN: w, b, mean, var */
    int64_t bn_tracked[AL_MAX_BN_BRANCHES]; /* num_batches_tracked per branch */
    size_t save_per_sample;   /* saved floats per sample in a slot (argmax / dropout mask) */
    size_t save_fixed;        /* saved floats independent of batch (BN mean/invstd: 2C) */
    size_t save_offset;       /* filled at setup (floats into a slot's save area) */
    int dx_accum[2];          /* backward write mode into in0/in1: 0 '=', 1 '+=' */
    const al_node_ops *ops;   /* AL_NODE_CUSTOM */
    float fparam[4];          /* custom node constants (e.g. MeanSparse alpha) */
    int iparam[4];
} al_node;

typedef struct al_slot {
    const float *x;           /* model input of the last forward (caller-owned) */
    float *act;               /* all buffers but 0 */
    float *save;              /* per-node saved state */
    int n;                    /* batch of the last forward */
    int train;                /* mode of the last forward */
    int branch;
    const int32_t *labels;    /* labels of the last forward (device, may be NULL) */
} al_slot;

typedef struct al_model {
    char arch[64];
    int num_classes, in_c, in_h, in_w;
    float mean[4], std[4];    /* input normalisation (C <= 4); 0/1 when absent */
    int n_branches;           /* BN branches (1 = plain) */
    /* BN branch of evaluation forwards (al_model_forward_eval): 0 = main (default), b > 0 a
     * fixed branch ([multibn] test_branch), -1 = the learned per-example selector of
     * core/ops/bn_gate.h (only on a model with the gate attached). Attacks that build their own
     * al_fwd_opts must pass the same branch (spec.fwd.bn_branch); set it before a forward and
     * keep it unchanged until that forward's backward. */
    int eval_branch;

    al_node *nodes;
    int n_nodes, cap_nodes;
    al_buf *bufs;
    int n_bufs, cap_bufs;
    al_param *params;
    int n_params, cap_params;
    size_t n_param_floats;
    int out_buf, feat_buf;    /* logits (N, K) and penultimate feature (N, D) */
    int aux_buf[4];           /* auxiliary outputs (e.g. ANCRA's per-block logits), -1 = none */
    int n_aux;
    char *has_consumer;       /* (n_bufs) at setup: some node reads the buffer */

    /* --- after al_model_setup --- */
    int max_batch, n_slots;
    size_t act_floats_per_sample;
    float *data;              /* (n_param_floats) parameters + BN buffers, on ctx device */
    float *grads;             /* (n_param_floats) */
    float *d_mean, *d_std;    /* normalisation constants on the device */
    al_slot *slots;
    float *gbuf;              /* activation gradients, shared across slots */
    size_t scratch_bytes;     /* max per-op scratch, reserved in ctx */
    /* storage formats (core/ops/bf16.h AL_FMT_*; model.c "storage formats"): bf16 activations
     * (run.precision = bf16) and/or channels last (run.layout = nhwc) in the fast nodes */
    int bf16;                 /* some buffers are bf16 (set at setup) */
    int nhwc;                 /* some buffers are channels last (set at setup) */
    size_t act_bytes;         /* bytes of one slot's activations (= of the gbuf) */
    void *wbf;                /* (n_param_floats) conv weight shadow in the fast nodes' format
                               * (bf16 and/or OHWI), converted from `data` per forward */
    void *cast;               /* boundary conversions between formats */
    size_t cast_bytes;
    int setup_done;
} al_model;

typedef struct al_fwd_opts {
    int slot;                 /* activation slot (0 .. n_slots-1) */
    int train;                /* BN batch stats and dropout on */
    int update_bn;            /* update BN running stats (train only) */
    int bn_branch;            /* BN parameter branch (0 = main) */
    uint64_t step;            /* dropout stream (global step) */
    const int32_t *labels;    /* (N) device, optional: label-dependent operators (ANCRA's
                               * reverse attention uses the true label in training) */
} al_fwd_opts;

enum { AL_BWD_WEIGHTS = 1, AL_BWD_INPUT = 2 };

/* ---- construction (host only; shape errors are programming errors: AL_ASSERT) ---- */
al_model *al_model_new(const char *arch, int num_classes, int in_c, int in_h, int in_w);
/* Buffer id of the normalised input (the first node's output): builders start here. */
int al_model_input(const al_model *m);
void al_model_set_normalization(al_model *m, const float *mean, const float *std);
void al_model_set_branches(al_model *m, int n_branches); /* before adding BN nodes */
int al_model_conv(al_model *m, const char *name, int in, int c_out, int k, int stride, int pad,
                  int bias);
int al_model_bn(al_model *m, const char *name, int in);
int al_model_relu(al_model *m, int in);
int al_model_maxpool(al_model *m, int in, int k, int stride);
int al_model_avgpool(al_model *m, int in, int k, int stride);
int al_model_linear(al_model *m, const char *name, int in, int out_features, int bias);
int al_model_add(al_model *m, int a, int b);
int al_model_dropout(al_model *m, int in, float p);
void al_model_set_output(al_model *m, int logits_buf, int feature_buf);
/* Override the init rule of the most recently added parameter named `name`. */
void al_model_param_init(al_model *m, const char *name, al_init_kind init);
int al_model_find_param(const al_model *m, const char *name);

/* Build a model by arch name (registry in core/models/registry.c): "smallcnn",
 * "preact_resnet18", "resnet18", "wrn-D-W". Unknown arch -> AL_ERR_VALUE naming it. */
al_status al_model_create(const char *arch, int num_classes, int in_c, int image_size,
                          al_model **out);
/* Build options beyond the reference definition. */
typedef struct al_model_opts {
    int n_branches;           /* BN parameter branches (AdvProp/MDProp/MultiBN); 0 or 1 = plain */
} al_model_opts;
al_status al_model_create_opts(const char *arch, int num_classes, int in_c, int image_size,
                               const al_model_opts *opts, al_model **out);

/* Custom node (see al_node_ops). out shape (c, h, w) per sample. Returns the output buffer;
 * the node is m->nodes[m->n_nodes - 1] right after the call (set fparam/iparam/param there). */
int al_model_custom(al_model *m, const char *name, const al_node_ops *ops, int in0, int in1, int c,
                    int h, int w, size_t save_per_sample, size_t save_fixed);
/* Add a parameter to the table (custom nodes): returns its index. kind AL_P_OTHER with
 * trainable 0 is a buffer (statistics); trainable 1 gets gradients and optimiser updates. */
int al_model_add_param(al_model *m, const char *name, int ndim, const int *shape,
                       al_param_kind kind, al_init_kind init, int fan_in, int fan_out,
                       int trainable);
/* Freeze a parameter (no gradient, no update, no weight decay): e.g. DFA's orthogonal rows. */
void al_model_param_freeze(al_model *m, const char *name);
/* Declare an auxiliary output buffer (returns its index in aux_buf). */
int al_model_add_aux_output(al_model *m, int buf);
/* Insert a custom node right after node `after` reading that node's output; every later
 * consumer of that output now reads the new node's output (graph rewrite before setup, e.g.
 * MeanSparse between BN and activation). Returns the new node's index. */
int al_model_insert_after(al_model *m, int after, const char *name, const al_node_ops *ops,
                          size_t save_per_sample, size_t save_fixed);
/* Comma-separated list of known archs, for help text. */
const char *al_model_arch_list(void);

/* ---- execution ---- */
/* Allocate params/grads/activations on ctx's device for up to max_batch x n_slots and reserve
 * op scratch. Parameters are zero until al_model_init_params or a checkpoint load. */
al_status al_model_setup(al_ctx *ctx, al_model *m, int max_batch, int n_slots);
void al_model_destroy(al_ctx *ctx, al_model *m);
/* Initialise parameters per their init rule from Philox(seed, AL_STREAM_INIT, param index). */
al_status al_model_init_params(al_ctx *ctx, al_model *m, uint64_t seed);
al_status al_model_zero_grad(al_ctx *ctx, al_model *m);

/* Forward n <= max_batch images x (N,C,H,W) in [0,1] (device memory, kept referenced until
 * the slot's backward). Logits via al_model_logits. */
al_status al_model_forward(al_ctx *ctx, al_model *m, const float *x, int n, const al_fwd_opts *o);
float *al_model_logits(al_model *m, int slot);   /* (N, K) */
/* The host state a forward changes: each BN node's num_batches_tracked, as n_nodes *
 * AL_MAX_BN_BRANCHES counters (get), and sign * d added to them (add). A forward captured into
 * a CUDA graph runs its host code once, at the capture, and none at the replays:
 * attacks/attack.c takes back what the capture added and adds it at every replay, so the
 * counters end as if every forward had run. */
void al_model_get_tracked(const al_model *m, int64_t *t);
void al_model_add_tracked(al_model *m, const int64_t *d, int sign);
float *al_model_buffer(al_model *m, int slot, int buf); /* activation of any fp32 buffer */
float *al_model_features(al_model *m, int slot); /* (N, D) */
int al_model_feature_dim(const al_model *m);

/* Backward of the slot's last forward. dlogits (N,K) required; dfeat (N,D) optional (added to
 * the feature gradient). flags: AL_BWD_WEIGHTS adds dW into m->grads; AL_BWD_INPUT writes dx
 * (N,C,H,W) (= mode). */
al_status al_model_backward(al_ctx *ctx, al_model *m, int slot, const float *dlogits,
                            const float *dfeat, int flags, float *dx);
/* General form: gradients seeded at any buffers (logits, features, auxiliary outputs), each
 * (N, per_sample of that buffer). A buffer without consumers is seeded '='; one with
 * consumers gets the seed added once its consumers' gradients are in. */
typedef struct al_bwd_seed {
    int buf;
    const float *grad;
} al_bwd_seed;
al_status al_model_backward_seeds(al_ctx *ctx, al_model *m, int slot, const al_bwd_seed *seeds,
                                  int n_seeds, int flags, float *dx);

/* Convenience for attacks (attacks see a model only through these two). Eval/train mode per
 * opts; returns logits pointer in *logits. */
static inline al_status al_model_forward_eval(al_ctx *ctx, al_model *m, const float *x, int n,
                                              int slot) {
    /* eval_branch -1 (the gate) runs as branch 0: gated BN nodes then route per example */
    al_fwd_opts o = {slot, 0, 0, m->eval_branch > 0 ? m->eval_branch : 0, 0, NULL};
    return al_model_forward(ctx, m, x, n, &o);
}

/* Parameter views. */
static inline float *al_param_data(al_model *m, int i) { return m->data + m->params[i].offset; }
static inline float *al_param_grad(al_model *m, int i) { return m->grads + m->params[i].offset; }
size_t al_model_n_trainable(const al_model *m);  /* count of trainable floats */
/* Multiply-add FLOPs (2 per MAC) of conv and linear nodes for a batch of n: forward, the
 * input-gradient pass (dx of every node but the first conv's input) and the weight-gradient
 * pass. Elementwise/BN/pool work is not counted (it is memory-bound and small). */
typedef struct al_flops {
    double fwd, bwd_input, bwd_weights;
} al_flops;
al_flops al_model_flops(const al_model *m, int n);
/* Print the parameter table (name, shape, trainable) for --help / docs. */
void al_model_print(const al_model *m, void *file /* FILE* */);

#ifdef __cplusplus
}
#endif
#endif
