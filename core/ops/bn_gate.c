/* bn_gate.c: the learned BN-branch selector of bn_gate.h as three custom graph nodes (CPU
 * reference; CUDA twin: cuda/op_bn_gate.cu, dispatched from each node below).
 *   bn_gate.stats   (N, C, H, W) -> (N, 2C): [mean_hw(a_c), sqrt(var_hw(a_c) + 1e-5)]
 *   bn_gate.softmax (N, B) -> (N, B): softmax (soft) or one-hot argmax (hard, no gradient)
 *   gated BN        (x (N, C, H, W), p (N, B)) -> (N, C, H, W)
 * Reductions accumulate in double. Write modes: dx0/dx1 '=' unless the executor asks for '+='
 * (acc0/acc1); parameter gradients '+='. A custom node's backward is not told its slot, so it
 * finds it from its saved-state pointer (host arithmetic, no device access) and reads the mode
 * and branch of that slot's last forward from m->slots[s]. */
#include "core/ops/bn_gate.h"
#include "core/ops/bn_gate_row.h"

#include <math.h>
#include <string.h>

#define GATE_STD_EPS 1e-5 /* variance floor of the std feature (BN's default eps) */

/* ---------------------------------------------------------------- helpers */

static int slot_of(const al_model *m, const al_node *nd, const float *save) {
    for (int s = 0; s < m->n_slots; s++)
        if (m->slots[s].save + nd->save_offset == save) return s;
    AL_ASSERT(0, "node %s: saved state outside every slot", nd->name);
    return -1;
}

/* Branch actually used by a forward (train, branch): see bn_gate.h. *routed = 1 for the
 * per-example mixture. */
static int effective_branch(const al_model *m, int train, int branch, int *routed) {
    *routed = 0;
    if (train || branch != 0) return branch;
    if (m->eval_branch < 0) {
        *routed = 1;
        return 0;
    }
    return m->eval_branch;
}

#ifdef AL_HAVE_CUDA
/* The branches' parameter (and wanted gradient) pointers of a gated BN node, for the CUDA twin. */
static al_gbn_branches gbn_branches(al_model *m, const al_node *nd, int want_w) {
    al_gbn_branches br;
    memset(&br, 0, sizeof br);
    br.n_branches = m->n_branches;
    br.eps = nd->eps;
    for (int q = 0; q < m->n_branches; q++) {
        const int *pp = nd->param[q];
        br.gamma[q] = al_param_data(m, pp[0]);
        br.beta[q] = al_param_data(m, pp[1]);
        br.rmean[q] = al_param_data(m, pp[2]);
        br.rvar[q] = al_param_data(m, pp[3]);
        br.dgamma[q] = want_w && m->params[pp[0]].trainable ? al_param_grad(m, pp[0]) : NULL;
        br.dbeta[q] = want_w && m->params[pp[1]].trainable ? al_param_grad(m, pp[1]) : NULL;
    }
    return br;
}

static al_status gbn_forward_cuda(al_ctx *ctx, al_model *m, const al_node *nd, int n,
                                  const float *x, const float *p, float *y) {
    const al_buf ib = m->bufs[nd->in0];
    const al_gbn_branches br = gbn_branches(m, nd, 0);
    return al_gated_bn_forward_cuda(ctx, n, ib.c, ib.h * ib.w, &br, x, p, y);
}

static al_status gbn_backward_cuda(al_ctx *ctx, al_model *m, const al_node *nd, int n,
                                   int want_w, const float *x, const float *p, const float *dy,
                                   float *dx, int acc0, float *dp, int acc1) {
    const al_buf ib = m->bufs[nd->in0];
    const al_gbn_branches br = gbn_branches(m, nd, want_w);
    return al_gated_bn_backward_cuda(ctx, n, ib.c, ib.h * ib.w, &br, x, p, dy, dx, acc0, dp,
                                     acc1);
}
#endif

/* ---------------------------------------------------------------- bn_gate.stats */

static al_status stats_forward(al_ctx *ctx, al_model *m, al_node *nd, const al_fwd_opts *o,
                               int n, const float *x, const float *x1, float *y, float *save) {
    (void)o, (void)x1, (void)save;
    const al_buf ib = m->bufs[nd->in0];
    const int c_n = ib.c, hw = ib.h * ib.w;
    if (ctx->device == AL_DEV_CUDA)
        AL_CUDA_OR_FAIL(al_bn_gate_stats_forward_cuda(ctx, n, c_n, hw, x, y));
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        for (int c = 0; c < c_n; c++) {
            const float *xr = x + ((size_t)i * c_n + c) * hw;
            double s = 0.0;
            for (int q = 0; q < hw; q++) s += xr[q];
            const double mean = s / hw;
            double v = 0.0;
            for (int q = 0; q < hw; q++) v += (xr[q] - mean) * (xr[q] - mean);
            y[(size_t)i * 2 * c_n + c] = (float)mean;
            y[(size_t)i * 2 * c_n + c_n + c] = (float)sqrt(v / hw + GATE_STD_EPS);
        }
    }
    return AL_OK;
}

/* d mean / dx = 1/HW; d std / dx = (x - mean) / (HW std), mean and std read back from y. */
static al_status stats_backward(al_ctx *ctx, al_model *m, al_node *nd, int n, int train,
                                const float *x, const float *x1, const float *y, const float *dy,
                                float *dx, int acc0, float *dx1, int acc1, int want_w,
                                const float *save, const int32_t *labels) {
    (void)train, (void)x1, (void)dx1, (void)acc1, (void)want_w, (void)save, (void)labels;
    if (!dx) return AL_OK;
    const al_buf ib = m->bufs[nd->in0];
    const int c_n = ib.c, hw = ib.h * ib.w;
    if (ctx->device == AL_DEV_CUDA)
        AL_CUDA_OR_FAIL(al_bn_gate_stats_backward_cuda(ctx, n, c_n, hw, x, y, dy, dx, acc0));
#pragma omp parallel for schedule(static)
    for (int i = 0; i < n; i++) {
        for (int c = 0; c < c_n; c++) {
            const size_t off = ((size_t)i * c_n + c) * hw;
            const double mean = y[(size_t)i * 2 * c_n + c], sd = y[(size_t)i * 2 * c_n + c_n + c];
            const double gm = dy[(size_t)i * 2 * c_n + c] / hw;
            const double gs = dy[(size_t)i * 2 * c_n + c_n + c] / (hw * sd);
            for (int q = 0; q < hw; q++) {
                float g = (float)(gm + gs * (x[off + q] - mean));
                dx[off + q] = acc0 ? dx[off + q] + g : g;
            }
        }
    }
    return AL_OK;
}

static const al_node_ops g_stats_ops = {"bn_gate_stats", stats_forward, stats_backward, 0};

/* ---------------------------------------------------------------- bn_gate.softmax */

static al_status softmax_forward(al_ctx *ctx, al_model *m, al_node *nd, const al_fwd_opts *o,
                                 int n, const float *z, const float *x1, float *p, float *save) {
    (void)o, (void)x1, (void)save;
    const int b_n = (int)m->bufs[nd->in0].per_sample;
    const int hard = nd->iparam[0];
    if (ctx->device == AL_DEV_CUDA)
        AL_CUDA_OR_FAIL(al_bn_gate_softmax_forward_cuda(ctx, n, b_n, hard, z, p));
    for (int i = 0; i < n; i++)
        al_gate_softmax_row(z + (size_t)i * b_n, b_n, hard, p + (size_t)i * b_n);
    return AL_OK;
}

/* soft: dz = p * (dp - <p, dp>); hard: dz = 0 (piecewise constant). */
static al_status softmax_backward(al_ctx *ctx, al_model *m, al_node *nd, int n, int train,
                                  const float *z, const float *x1, const float *p, const float *dp,
                                  float *dz, int acc0, float *dx1, int acc1, int want_w,
                                  const float *save, const int32_t *labels) {
    (void)train, (void)z, (void)x1, (void)dx1, (void)acc1, (void)want_w, (void)save, (void)labels;
    if (!dz) return AL_OK;
    const int b_n = (int)m->bufs[nd->in0].per_sample;
    const int hard = nd->iparam[0];
    if (ctx->device == AL_DEV_CUDA)
        AL_CUDA_OR_FAIL(al_bn_gate_softmax_backward_cuda(ctx, n, b_n, hard, p, dp, dz, acc0));
    for (int i = 0; i < n; i++)
        al_gate_softmax_bwd_row(p + (size_t)i * b_n, dp + (size_t)i * b_n, b_n, hard, acc0,
                                dz + (size_t)i * b_n);
    return AL_OK;
}

static const al_node_ops g_softmax_ops = {"bn_gate_softmax", softmax_forward, softmax_backward, 0};

/* ---------------------------------------------------------------- gated BN */

static al_status gbn_forward(al_ctx *ctx, al_model *m, al_node *nd, const al_fwd_opts *o, int n,
                             const float *x, const float *p, float *y, float *save) {
    const al_buf ib = m->bufs[nd->in0];
    const int c_n = ib.c, hw = ib.h * ib.w, b_n = m->n_branches;
    if (m->eval_branch >= b_n || m->eval_branch < -1)
        return AL_FAIL(AL_ERR_VALUE, "model %s: eval_branch %d outside [-1, %d)", m->arch,
                       m->eval_branch, b_n);
    int routed;
    const int b = effective_branch(m, o->train, o->bn_branch, &routed);
    if (!routed) {
        /* exactly the built-in BN node of core/model.c on branch b */
        const int *pp = nd->param[b];
        al_bn_desc d = {n, c_n, hw, nd->eps, nd->momentum, o->train, o->train && o->update_bn};
        AL_TRY(al_bn_forward(ctx, &d, x, al_param_data(m, pp[0]), al_param_data(m, pp[1]),
                             al_param_data(m, pp[2]), al_param_data(m, pp[3]), y, save, save + c_n));
        if (d.update_running) nd->bn_tracked[b]++;
        return AL_OK;
    }
    if (ctx->device == AL_DEV_CUDA) AL_CUDA_OR_FAIL(gbn_forward_cuda(ctx, m, nd, n, x, p, y));
    /* per branch: the eval-mode affine map of al_bn_forward_cpu, (x - mean_f) * scale + shift,
     * with the same float rounding, so a one-hot p reproduces the plain branch bit for bit */
    float mean_f[AL_MAX_BN_BRANCHES], scale[AL_MAX_BN_BRANCHES], shift[AL_MAX_BN_BRANCHES];
#pragma omp parallel for schedule(static) private(mean_f, scale, shift)
    for (int c = 0; c < c_n; c++) {
        for (int q = 0; q < b_n; q++) {
            const int *pp = nd->param[q];
            const double rv = al_param_data(m, pp[3])[c];
            const double invstd = 1.0 / sqrt(rv + (double)nd->eps);
            mean_f[q] = al_param_data(m, pp[2])[c];
            scale[q] = (float)(al_param_data(m, pp[0])[c] * invstd);
            shift[q] = al_param_data(m, pp[1])[c];
        }
        for (int i = 0; i < n; i++) {
            const size_t off = ((size_t)i * c_n + c) * hw;
            const float *pr = p + (size_t)i * b_n;
            for (int k = 0; k < hw; k++) {
                float acc = 0.0f;
                for (int q = 0; q < b_n; q++)
                    if (pr[q] != 0.0f) acc += pr[q] * ((x[off + k] - mean_f[q]) * scale[q] + shift[q]);
                y[off + k] = acc;
            }
        }
    }
    return AL_OK;
}

static al_status gbn_backward(al_ctx *ctx, al_model *m, al_node *nd, int n, int train,
                              const float *x, const float *p, const float *y, const float *dy,
                              float *dx, int acc0, float *dp, int acc1, int want_w,
                              const float *save, const int32_t *labels) {
    (void)y, (void)labels;
    const al_buf ib = m->bufs[nd->in0];
    const int c_n = ib.c, hw = ib.h * ib.w, b_n = m->n_branches;
    const al_slot *s = &m->slots[slot_of(m, nd, save)];
    AL_ASSERT(s->train == train, "node %s: slot mode changed", nd->name);
    int routed;
    const int b = effective_branch(m, train, s->branch, &routed);
    if (!routed) {
        const int *pp = nd->param[b];
        al_bn_desc d = {n, c_n, hw, nd->eps, nd->momentum, train, 0};
        float *dw = want_w && m->params[pp[0]].trainable ? al_param_grad(m, pp[0]) : NULL;
        float *db = want_w && m->params[pp[1]].trainable ? al_param_grad(m, pp[1]) : NULL;
        if (dx || dw || db)
            AL_TRY(al_bn_backward(ctx, &d, x, al_param_data(m, pp[0]), save, save + c_n, dy, dx,
                                  acc0, dw, db));
        /* the gate does not act on this forward: its gradient is zero ('=' only; '+=' adds 0) */
        if (dp && !acc1) AL_TRY(al_memset_dev(ctx, dp, 0, (size_t)n * b_n * sizeof(float)));
        return AL_OK;
    }
    if (ctx->device == AL_DEV_CUDA)
        AL_CUDA_OR_FAIL(gbn_backward_cuda(ctx, m, nd, n, want_w, x, p, dy, dx, acc0, dp, acc1));
    /* Per (i, c): S0 = sum_hw dy, S1 = sum_hw x dy. With xhat_q = (x - rm_q) invstd_q:
     *   dx        = (sum_q p_q gamma_q invstd_q) dy
     *   dgamma_q += sum_i p_iq invstd_q (S1 - rm_q S0),  dbeta_q += sum_i p_iq S0
     *   dp[i, q]  = sum_c gamma_q invstd_q (S1 - rm_q S0) + beta_q S0
     * Sequential over i for the parameter and gate sums (deterministic). */
    double invstd[AL_MAX_BN_BRANCHES];
    for (int i = 0; i < n; i++) {
        const float *pr = p + (size_t)i * b_n;
        double gp[AL_MAX_BN_BRANCHES] = {0};
        for (int c = 0; c < c_n; c++) {
            const size_t off = ((size_t)i * c_n + c) * hw;
            double s0 = 0.0, s1 = 0.0, a = 0.0;
            for (int k = 0; k < hw; k++) {
                s0 += dy[off + k];
                s1 += (double)x[off + k] * dy[off + k];
            }
            for (int q = 0; q < b_n; q++) {
                const int *pp = nd->param[q];
                const double g = al_param_data(m, pp[0])[c], be = al_param_data(m, pp[1])[c];
                const double rm = al_param_data(m, pp[2])[c];
                invstd[q] = 1.0 / sqrt((double)al_param_data(m, pp[3])[c] + (double)nd->eps);
                const double t = invstd[q] * (s1 - rm * s0); /* sum_hw dy * xhat_q */
                a += (double)pr[q] * g * invstd[q];
                gp[q] += g * t + be * s0;
                if (want_w && pr[q] != 0.0f) {
                    if (m->params[pp[0]].trainable) al_param_grad(m, pp[0])[c] += (float)(pr[q] * t);
                    if (m->params[pp[1]].trainable) al_param_grad(m, pp[1])[c] += (float)(pr[q] * s0);
                }
            }
            if (dx)
                for (int k = 0; k < hw; k++) {
                    float g = (float)(a * dy[off + k]);
                    dx[off + k] = acc0 ? dx[off + k] + g : g;
                }
        }
        if (dp)
            for (int q = 0; q < b_n; q++)
                dp[(size_t)i * b_n + q] = acc1 ? dp[(size_t)i * b_n + q] + (float)gp[q] : (float)gp[q];
    }
    return AL_OK;
}

/* CUDA only: the forward's per-(c, branch) coefficients (3 C B floats), the backward's
 * per-(i, c) sums S0, S1 (2 N C doubles); nothing on the CPU. */
static size_t gbn_scratch_bytes(const al_ctx *ctx, const al_model *m, const al_node *nd,
                                int max_batch) {
    if (ctx->device != AL_DEV_CUDA) return 0;
    const size_t c = (size_t)m->bufs[nd->in0].c;
    const size_t fwd = 3 * c * (size_t)m->n_branches * sizeof(float);
    const size_t bwd = 2 * (size_t)max_batch * c * sizeof(double);
    return (fwd > bwd ? fwd : bwd) + 64;
}

static const al_node_ops g_gbn_ops = {"gated_bn", gbn_forward, gbn_backward, 1,
                                      gbn_scratch_bytes};

/* ---------------------------------------------------------------- graph rewrite */

static int gate_softmax_node(const al_model *m) {
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].kind == AL_NODE_CUSTOM && m->nodes[i].ops == &g_softmax_ops) return i;
    return -1;
}

int al_bn_gate_present(const al_model *m) { return gate_softmax_node(m) >= 0; }

int al_bn_gate_logits_buf(const al_model *m) {
    int i = gate_softmax_node(m);
    return i < 0 ? -1 : m->nodes[i].in0;
}

int al_bn_gate_mode(const al_model *m) {
    int i = gate_softmax_node(m);
    return i < 0 ? 0 : 1 + (m->nodes[i].iparam[0] != 0);
}

int al_bn_gate_is_bn_node(const al_node *nd) {
    return nd->kind == AL_NODE_BN || (nd->kind == AL_NODE_CUSTOM && nd->ops == &g_gbn_ops);
}

void al_bn_gate_set_hard(al_model *m, int hard) {
    int i = gate_softmax_node(m);
    AL_ASSERT(i >= 0, "model %s has no BN gate", m->arch);
    m->nodes[i].iparam[0] = hard != 0;
}

al_status al_bn_gate_attach(al_model *m, int hard) {
    AL_ASSERT(!m->setup_done, "al_bn_gate_attach on model %s after al_model_setup", m->arch);
    if (m->n_branches < 2)
        return AL_FAIL(AL_ERR_VALUE, "model %s: the BN gate needs >= 2 BN branches (has %d)", m->arch,
                       m->n_branches);
    if (al_bn_gate_present(m))
        return AL_FAIL(AL_ERR_VALUE, "model %s: BN gate already attached", m->arch);
    int first = -1;
    for (int i = 0; i < m->n_nodes && first < 0; i++)
        if (m->nodes[i].kind == AL_NODE_BN) first = i;
    if (first < 0) return AL_FAIL(AL_ERR_VALUE, "model %s has no BN node to gate", m->arch);
    const int a = m->nodes[first].in0, c = m->bufs[a].c;
    /* append stats -> fc -> softmax, then rotate the three nodes in front of the first BN (they
     * read only `a`, produced before it); node indices are not referenced before setup */
    const int n0 = m->n_nodes;
    int f = al_model_custom(m, "bn_gate.stats", &g_stats_ops, a, -1, 2 * c, 1, 1, 0, 0);
    int z = al_model_linear(m, "bn_gate.fc", f, m->n_branches, 1);
    int p = al_model_custom(m, "bn_gate.softmax", &g_softmax_ops, z, -1, m->n_branches, 1, 1, 0, 0);
    m->nodes[m->n_nodes - 1].iparam[0] = hard != 0;
    al_model_add_aux_output(m, z);
    AL_ASSERT(m->n_nodes == n0 + 3, "gate: expected 3 new nodes");
    al_node tmp[3];
    memcpy(tmp, &m->nodes[n0], sizeof tmp);
    memmove(&m->nodes[first + 3], &m->nodes[first], (size_t)(n0 - first) * sizeof(al_node));
    memcpy(&m->nodes[first], tmp, sizeof tmp);
    for (int i = first + 3; i < m->n_nodes; i++) {
        al_node *nd = &m->nodes[i];
        if (nd->kind != AL_NODE_BN) continue;
        nd->kind = AL_NODE_CUSTOM;
        nd->ops = &g_gbn_ops;
        nd->in1 = p;
    }
    return AL_OK;
}
