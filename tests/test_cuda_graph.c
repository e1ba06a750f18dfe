/* test_cuda_graph.c: CUDA graphs (core/cuda_api.h, cuda/cuda_ctx.cu) and the attack loop that
 * replays its iteration from one (attacks/attack.c).
 *   api:      a capture runs nothing; its replays read device memory when they run (an
 *             in-place PGD step replayed 3 times equals 3 eager steps, bitwise); a second
 *             capture into the same graph updates it in place, one with another node sequence
 *             instantiates it again; a host read or an allocation inside a capture is refused,
 *             the error names the call, and the stream works eagerly afterwards;
 *   attack:   al_attack_run with ctx.cuda_graphs 1 against 0 on twin models (same weights):
 *             x_adv, success flags, BN running statistics (a training-mode attack updates
 *             them at every iteration) and the host num_batches_tracked counters all equal,
 *             bitwise, for PGD Linf / L2 with restarts, early stopping, targeted CE, TRADES KL,
 *             bf16 activations and a residual net; the replays happened (launch counts); a
 *             second call updates the graph instead of instantiating it; the graph path makes
 *             the eager path's one stream sync and no device allocation;
 *   fallback: a model whose forward waits on the host (a test operator calling al_sync)
 *             cannot be captured: the attack says so once, runs eagerly, and gives the eager
 *             result.
 * Runs without ADVLAB_SYNC_CHECK (which turns graphs off). Without a GPU: exit 77. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attacks/attack.h"
#include "core/ctx.h"
#include "core/cuda_api.h"
#include "core/model.h"
#include "core/ops/elementwise.h"
#include "harness/check.h"

static al_ctx gpu;

#define OK(call) AL_TEST_OK(call)

static float *dev_from(const float *h, size_t n) {
    float *d = NULL;
    al_status st = al_dev_alloc(&gpu, (void **)&d, n * sizeof(float), "test buffer");
    AL_ASSERT(st == AL_OK, "device alloc: %s", al_errmsg());
    if (h) st = al_copy_to_dev(&gpu, d, h, n * sizeof(float));
    AL_ASSERT(st == AL_OK, "copy: %s", al_errmsg());
    st = al_sync(&gpu);
    AL_ASSERT(st == AL_OK, "sync: %s", al_errmsg());
    return d;
}

/* ---------------------------------------------------------------- api */

/* The body captured below: one in-place PGD step of x towards g around x0. */
static al_status body(float *x, const float *x0, const float *g, int n, size_t d, float alpha) {
    return al_pgd_step(&gpu, AL_LINF, n, d, x, x0, g, alpha, 0.3f);
}

static int case_api(void) {
    const int n = 5;
    const size_t d = 333, nd = (size_t)n * d;
    float *h0 = malloc(nd * sizeof(float)), *hg = malloc(nd * sizeof(float));
    float *ha = malloc(nd * sizeof(float)), *hb = malloc(nd * sizeof(float));
    al_test_fill(h0, nd, 1, 0, 1);
    al_test_fill(hg, nd, 2, -1, 1);
    float *x0 = dev_from(h0, nd), *g = dev_from(hg, nd);
    float *xe = dev_from(h0, nd), *xg = dev_from(h0, nd), *xu = dev_from(h0, nd);
    int bad = 0;
    AL_EXPECT(al_cuda_graphs_usable(&gpu), "graphs not usable on a fresh CUDA context");
    /* eager: 3 steps */
    for (int i = 0; i < 3; i++) OK(body(xe, x0, g, n, d, 0.05f));
    /* capture: nothing runs */
    al_cuda_graph *gr = NULL;
    OK(al_cuda_graph_begin(&gpu));
    OK(al_cuda_graph_end(&gpu, &gr, body(xg, x0, g, n, d, 0.05f)));
    OK(al_copy_to_host(&gpu, ha, xg, nd * sizeof(float)));
    bad |= al_check_bytes("capture ran nothing", ha, h0, nd * sizeof(float));
    for (int i = 0; i < 3; i++) OK(al_cuda_graph_launch(&gpu, gr));
    OK(al_copy_to_host(&gpu, ha, xg, nd * sizeof(float)));
    OK(al_copy_to_host(&gpu, hb, xe, nd * sizeof(float)));
    bad |= al_check_bytes("3 replays == 3 eager steps", ha, hb, nd * sizeof(float));
    AL_EXPECT(memcmp(ha, h0, nd * sizeof(float)) != 0, "the replays changed nothing");
    al_cuda_graph_info in = al_cuda_graph_get_info(gr);
    fprintf(stderr, "  graph: %zu nodes, %llu captures, %llu instantiations, %llu launches\n",
            in.nodes, (unsigned long long)in.captures, (unsigned long long)in.instantiations,
            (unsigned long long)in.launches);
    AL_EXPECT(in.nodes >= 1 && in.captures == 1 && in.instantiations == 1 && in.updates == 0 &&
                  in.launches == 3,
              "graph info after one capture and 3 launches");
    /* same nodes, other buffer and step: updated in place; the old buffer is left alone */
    OK(al_cuda_graph_begin(&gpu));
    OK(al_cuda_graph_end(&gpu, &gr, body(xu, x0, g, n, d, 0.02f)));
    for (int i = 0; i < 2; i++) OK(al_cuda_graph_launch(&gpu, gr));
    float *xe2 = dev_from(h0, nd);
    for (int i = 0; i < 2; i++) OK(body(xe2, x0, g, n, d, 0.02f));
    OK(al_copy_to_host(&gpu, ha, xu, nd * sizeof(float)));
    OK(al_copy_to_host(&gpu, hb, xe2, nd * sizeof(float)));
    bad |= al_check_bytes("updated graph: 2 replays == 2 eager", ha, hb, nd * sizeof(float));
    OK(al_copy_to_host(&gpu, ha, xg, nd * sizeof(float)));
    OK(al_copy_to_host(&gpu, hb, xe, nd * sizeof(float)));
    bad |= al_check_bytes("first buffer untouched by the update", ha, hb, nd * sizeof(float));
    in = al_cuda_graph_get_info(gr);
    AL_EXPECT(in.captures == 2 && in.instantiations == 1 && in.updates == 1,
              "second capture: %llu instantiations, %llu updates (want 1, 1)",
              (unsigned long long)in.instantiations, (unsigned long long)in.updates);
    /* another node sequence (a copy first): instantiated again */
    OK(al_cuda_graph_begin(&gpu));
    al_status st = al_copy_dev(&gpu, xu, x0, nd * sizeof(float));
    if (st == AL_OK) st = body(xu, x0, g, n, d, 0.02f);
    OK(al_cuda_graph_end(&gpu, &gr, st));
    OK(al_cuda_graph_launch(&gpu, gr));
    OK(al_copy_to_host(&gpu, ha, xu, nd * sizeof(float)));
    float *xe3 = dev_from(h0, nd);
    OK(body(xe3, x0, g, n, d, 0.02f));
    OK(al_copy_to_host(&gpu, hb, xe3, nd * sizeof(float)));
    bad |= al_check_bytes("re-instantiated graph == eager", ha, hb, nd * sizeof(float));
    in = al_cuda_graph_get_info(gr);
    AL_EXPECT(in.instantiations == 2 && in.updates == 1,
              "changed topology: %llu instantiations, %llu updates (want 2, 1)",
              (unsigned long long)in.instantiations, (unsigned long long)in.updates);
    /* refused: a host read (stream wait) inside the capture */
    al_cuda_graph *g2 = NULL;
    OK(al_cuda_graph_begin(&gpu));
    st = al_copy_to_host(&gpu, ha, xg, nd * sizeof(float));
    AL_EXPECT(st != AL_OK, "a host read inside a capture succeeded");
    st = al_cuda_graph_end(&gpu, &g2, st);
    fprintf(stderr, "  host read in capture: %s\n", al_errmsg());
    AL_EXPECT(st != AL_OK && strstr(al_errmsg(), "StreamCapture"),
              "host read in capture: status %s, message '%s'", al_status_str(st), al_errmsg());
    AL_EXPECT(g2 == NULL, "a refused capture produced a graph");
    al_clear_error();
    /* refused: a device allocation inside the capture */
    OK(al_cuda_graph_begin(&gpu));
    void *p = NULL;
    st = al_dev_alloc(&gpu, &p, 4096, "allocation in a capture");
    AL_EXPECT(st != AL_OK && p == NULL, "an allocation inside a capture succeeded");
    st = al_cuda_graph_end(&gpu, &g2, st);
    fprintf(stderr, "  allocation in capture: %s\n", al_errmsg());
    AL_EXPECT(st != AL_OK && strstr(al_errmsg(), "cudaMalloc"), "allocation in capture: '%s'",
              al_errmsg());
    al_clear_error();
    /* the stream is out of capture mode: eager work and host reads work */
    OK(body(xe3, x0, g, n, d, 0.02f));
    OK(al_copy_to_host(&gpu, ha, xe3, nd * sizeof(float)));
    OK(al_sync(&gpu));
    gpu.cuda_graphs = 0;
    AL_EXPECT(!al_cuda_graphs_usable(&gpu), "graphs usable with ctx.cuda_graphs = 0");
    gpu.cuda_graphs = 1;
    al_cuda_graph_free(gr);
    al_dev_free(&gpu, x0);
    al_dev_free(&gpu, g);
    al_dev_free(&gpu, xe);
    al_dev_free(&gpu, xg);
    al_dev_free(&gpu, xu);
    al_dev_free(&gpu, xe2);
    al_dev_free(&gpu, xe3);
    free(h0);
    free(hg);
    free(ha);
    free(hb);
    return bad;
}

/* ---------------------------------------------------------------- attack */

/* A model twin pair on gpu: same arch, same weights. */
typedef struct {
    al_model *m[2];  /* [0] eager, [1] graphs */
    al_attack_ws ws[2];
    int n, k;
    size_t d;
    float *x, *xa[2];
    int32_t *y, *t;
    uint8_t *succ[2];
} pair;

static al_status pair_make(pair *p, const char *arch, int in_c, int size, int n,
                           const al_node_ops *extra) {
    memset(p, 0, sizeof *p);
    p->n = n;
    p->k = 10;
    p->d = (size_t)in_c * size * size;
    const size_t nd = (size_t)n * p->d;
    for (int j = 0; j < 2; j++) {
        AL_TRY(al_model_create(arch, p->k, in_c, size, &p->m[j]));
        if (extra) (void)al_model_insert_after(p->m[j], 1, "sync_op", extra, 0, 0);
        AL_TRY(al_model_setup(&gpu, p->m[j], n, 1));
        AL_TRY(al_model_init_params(&gpu, p->m[j], 11));
        AL_TRY(al_attack_ws_init(&gpu, &p->ws[j], p->m[j], n));
        AL_TRY(al_dev_alloc(&gpu, (void **)&p->xa[j], nd * sizeof(float), "x_adv"));
        AL_TRY(al_dev_alloc(&gpu, (void **)&p->succ[j], (size_t)n, "success"));
    }
    float *hx = malloc(nd * sizeof(float));
    int32_t *hy = malloc((size_t)n * 2 * sizeof(int32_t));
    AL_ASSERT(hx && hy, "out of host memory");
    al_test_fill(hx, nd, 31, 0, 1);
    for (int i = 0; i < n; i++) {
        hy[i] = (int32_t)((i * 7 + 3) % p->k);
        hy[n + i] = (int32_t)((hy[i] + 1 + i % 4) % p->k); /* targets != labels */
    }
    AL_TRY(al_dev_alloc(&gpu, (void **)&p->x, nd * sizeof(float), "x"));
    AL_TRY(al_dev_alloc(&gpu, (void **)&p->y, 2 * (size_t)n * sizeof(int32_t), "labels"));
    AL_TRY(al_copy_to_dev(&gpu, p->x, hx, nd * sizeof(float)));
    AL_TRY(al_copy_to_dev(&gpu, p->y, hy, 2 * (size_t)n * sizeof(int32_t)));
    p->t = p->y + n;
    AL_TRY(al_sync(&gpu));
    free(hx);
    free(hy);
    return AL_OK;
}

static void pair_free(pair *p) {
    for (int j = 0; j < 2; j++) {
        al_attack_ws_fini(&gpu, &p->ws[j]);
        al_dev_free(&gpu, p->xa[j]);
        al_dev_free(&gpu, p->succ[j]);
        al_model_destroy(&gpu, p->m[j]);
    }
    al_dev_free(&gpu, p->x);
    al_dev_free(&gpu, p->y);
}

/* Run spec on both twins (graphs off / on) and compare everything the attack leaves. Returns
 * the graph side's launches in this call through *launches. */
static int run_compare(pair *p, const char *what, al_attack_spec s, int want_success,
                       uint64_t *launches) {
    const size_t nd = (size_t)p->n * p->d;
    int ns[2] = {-1, -1};
    uint64_t l0 = al_attack_ws_graph_info(&p->ws[1]).launches;
    for (int j = 0; j < 2; j++) {
        gpu.cuda_graphs = j;
        OK(al_attack_run(&gpu, p->m[j], &s, &p->ws[j], p->x, p->y, p->n, 5, 9, p->xa[j],
                         want_success ? p->succ[j] : NULL, want_success ? &ns[j] : NULL));
    }
    gpu.cuda_graphs = 1;
    *launches = al_attack_ws_graph_info(&p->ws[1]).launches - l0;
    fprintf(stderr, "  %s: %llu graph launches\n", what, (unsigned long long)*launches);
    float *a = malloc(nd * sizeof(float)), *b = malloc(nd * sizeof(float));
    const size_t nf = p->m[0]->n_param_floats;
    float *pa = malloc(nf * sizeof(float)), *pb = malloc(nf * sizeof(float));
    AL_ASSERT(a && b && pa && pb, "out of host memory");
    int bad = 0;
    char lab[96];
    OK(al_copy_to_host(&gpu, a, p->xa[0], nd * sizeof(float)));
    OK(al_copy_to_host(&gpu, b, p->xa[1], nd * sizeof(float)));
    snprintf(lab, sizeof lab, "%s x_adv", what);
    bad |= al_check_bytes(lab, a, b, nd * sizeof(float));
    OK(al_copy_to_host(&gpu, pa, p->m[0]->data, nf * sizeof(float)));
    OK(al_copy_to_host(&gpu, pb, p->m[1]->data, nf * sizeof(float)));
    snprintf(lab, sizeof lab, "%s parameters + BN stats", what);
    bad |= al_check_bytes(lab, pa, pb, nf * sizeof(float));
    for (int i = 0; i < p->m[0]->n_nodes; i++)
        for (int br = 0; br < AL_MAX_BN_BRANCHES; br++)
            AL_EXPECT(p->m[0]->nodes[i].bn_tracked[br] == p->m[1]->nodes[i].bn_tracked[br],
                      "%s: node %d num_batches_tracked %lld (eager) vs %lld (graph)", what, i,
                      (long long)p->m[0]->nodes[i].bn_tracked[br],
                      (long long)p->m[1]->nodes[i].bn_tracked[br]);
    if (want_success) {
        uint8_t fa[64], fb[64];
        OK(al_copy_to_host(&gpu, fa, p->succ[0], (size_t)p->n));
        OK(al_copy_to_host(&gpu, fb, p->succ[1], (size_t)p->n));
        snprintf(lab, sizeof lab, "%s success flags", what);
        bad |= al_check_bytes(lab, fa, fb, (size_t)p->n);
        AL_EXPECT(ns[0] == ns[1], "%s: %d vs %d successes", what, ns[0], ns[1]);
    }
    free(a);
    free(b);
    free(pa);
    free(pb);
    return bad;
}

/* A training attack: Linf eps 0.1, step 0.025, BN in train mode updating its running stats
 * at every iteration, the last iterate returned. */
static al_attack_spec train_spec(int steps) {
    al_attack_spec s = al_attack_spec_make(AL_ATTACK_PGD, AL_LINF, 0.1f, 0.025f, steps);
    s.keep_clean_if_failed = 0;
    s.fwd.train = 1;
    s.fwd.update_bn = 1;
    return s;
}

/* A fresh twin pair of arch (1 x 28 x 28 inputs, batch n), one training attack of `steps`
 * iterations: equal with and without graphs, and steps - 1 of them launched from the graph. */
static int fresh_train_pair(const char *arch, int n, int steps, const char *what) {
    pair p;
    OK(pair_make(&p, arch, 1, 28, n, NULL));
    uint64_t nl = 0;
    const int bad = run_compare(&p, what, train_spec(steps), 0, &nl);
    pair_free(&p);
    AL_EXPECT(nl == (uint64_t)steps - 1, "%s: %llu launches (want %d)", what,
              (unsigned long long)nl, steps - 1);
    return bad;
}

static int case_attack(void) {
    pair p;
    OK(pair_make(&p, "smallcnn", 1, 28, 6, NULL));
    int bad = 0;
    uint64_t nl = 0;
    /* training attack: BN in train mode, running stats updated every iteration */
    al_attack_spec s = train_spec(10);
    bad |= run_compare(&p, "smallcnn PGD-10 linf train-mode", s, 0, &nl);
    AL_EXPECT(nl == 9, "PGD-10: %llu launches (want 9: the first iteration runs eagerly)",
              (unsigned long long)nl);
    /* a second call: the same nodes, so the graph is updated, not instantiated; and the hot
     * path: one stream sync (the label check), no device allocation */
    OK(al_sync(&gpu));
    const uint64_t s0 = al_cuda_sync_count(&gpu), a0 = al_cuda_alloc_count(&gpu);
    OK(al_attack_run(&gpu, p.m[1], &s, &p.ws[1], p.x, p.y, p.n, 5, 9, p.xa[1], NULL, NULL));
    const uint64_t ds = al_cuda_sync_count(&gpu) - s0, da = al_cuda_alloc_count(&gpu) - a0;
    al_cuda_graph_info in = al_attack_ws_graph_info(&p.ws[1]);
    fprintf(stderr, "  second call: %llu syncs, %llu allocations; graph %zu nodes, %llu "
                    "instantiations, %llu updates\n",
            (unsigned long long)ds, (unsigned long long)da, in.nodes,
            (unsigned long long)in.instantiations, (unsigned long long)in.updates);
    AL_EXPECT(ds == 1 && da == 0, "graph PGD-10: %llu syncs, %llu allocations (want 1, 0)",
              (unsigned long long)ds, (unsigned long long)da);
    AL_EXPECT(in.instantiations == 1 && in.updates == 1, "second call: %llu instantiations, "
              "%llu updates (want 1, 1)", (unsigned long long)in.instantiations,
              (unsigned long long)in.updates);
    /* bring the twins back together (the extra call above moved the graph twin's BN stats) */
    OK(al_copy_dev(&gpu, p.m[0]->data, p.m[1]->data, p.m[0]->n_param_floats * sizeof(float)));
    for (int i = 0; i < p.m[0]->n_nodes; i++)
        memcpy(p.m[0]->nodes[i].bn_tracked, p.m[1]->nodes[i].bn_tracked,
               sizeof p.m[0]->nodes[i].bn_tracked);
    /* evaluation: L2, 2 restarts, success re-verified, clean kept where failed */
    s = al_attack_spec_make(AL_ATTACK_PGD, AL_L2, 1.0f, 0.3f, 5);
    s.restarts = 2;
    bad |= run_compare(&p, "PGD-5 l2 x2 restarts", s, 1, &nl);
    AL_EXPECT(nl >= 4, "L2 restarts: %llu launches", (unsigned long long)nl);
    /* early stopping, targeted CE */
    s = al_attack_spec_make(AL_ATTACK_PGD, AL_LINF, 0.2f, 0.05f, 7);
    s.early_stop = 1;
    s.targeted = 1;
    s.targets = p.t;
    bad |= run_compare(&p, "PGD-7 targeted early-stop", s, 1, &nl);
    AL_EXPECT(nl == 6, "targeted: %llu launches (want 6)", (unsigned long long)nl);
    /* TRADES KL from a normal start */
    s = al_attack_spec_make(AL_ATTACK_PGD, AL_LINF, 0.1f, 0.02f, 4);
    s.loss = AL_ATTACK_LOSS_KL_TRADES;
    s.init = AL_ATTACK_INIT_NORMAL;
    s.keep_clean_if_failed = 0;
    bad |= run_compare(&p, "PGD-4 TRADES KL", s, 0, &nl);
    AL_EXPECT(nl == 3, "TRADES: %llu launches (want 3)", (unsigned long long)nl);
    /* two alternating attack shapes on one workspace (MultiBN's Linf and L2): one graph each,
     * instantiated once, then updated in place */
    {
        al_attack_ws alt;
        OK(al_attack_ws_init(&gpu, &alt, p.m[1], p.n));
        al_attack_spec sl = al_attack_spec_make(AL_ATTACK_PGD, AL_LINF, 0.1f, 0.025f, 3);
        al_attack_spec s2 = al_attack_spec_make(AL_ATTACK_PGD, AL_L2, 1.0f, 0.3f, 3);
        sl.keep_clean_if_failed = s2.keep_clean_if_failed = 0;
        for (int i = 0; i < 4; i++)
            OK(al_attack_run(&gpu, p.m[1], i % 2 ? &s2 : &sl, &alt, p.x, p.y, p.n, 5, 9, p.xa[1],
                             NULL, NULL));
        in = al_attack_ws_graph_info(&alt);
        fprintf(stderr, "  alternating Linf/L2 x4: %llu captures, %llu instantiations, %llu "
                        "updates, %llu launches\n",
                (unsigned long long)in.captures, (unsigned long long)in.instantiations,
                (unsigned long long)in.updates, (unsigned long long)in.launches);
        AL_EXPECT(in.captures == 4 && in.instantiations == 2 && in.updates == 2 &&
                      in.launches == 8,
                  "alternating shapes: want 4 captures, 2 instantiations, 2 updates, 8 launches");
        al_attack_ws_fini(&gpu, &alt);
    }
    /* FGSM and PGD-2: too short to capture */
    s = al_attack_spec_make(AL_ATTACK_PGD, AL_LINF, 0.1f, 0.05f, 2);
    s.keep_clean_if_failed = 0;
    bad |= run_compare(&p, "PGD-2 (no graph)", s, 0, &nl);
    AL_EXPECT(nl == 0, "PGD-2 launched a graph %llu times", (unsigned long long)nl);
    pair_free(&p);

    /* bf16 activations (casts at the fp32 boundaries inside the graph) */
    gpu.precision = AL_BF16;
    bad |= fresh_train_pair("smallcnn", 4, 5, "bf16 smallcnn PGD-5 train-mode");
    gpu.precision = AL_FP32;
    /* a residual net (adds, more BN) */
    bad |= fresh_train_pair("preact_resnet18", 2, 3, "preact_resnet18 PGD-3 train-mode BN");
    return bad;
}

/* ---------------------------------------------------------------- fallback */

/* An identity operator that waits on the host in its forward: a capture must refuse it. */
static al_status sync_fwd(al_ctx *ctx, al_model *m, al_node *nd, const al_fwd_opts *o, int n,
                          const float *x0, const float *x1, float *y, float *save) {
    (void)o, (void)x1, (void)save;
    AL_TRY(al_accumulate(ctx, (size_t)n * m->bufs[nd->in0].per_sample, x0, y, 0));
    return al_sync(ctx);
}
static al_status sync_bwd(al_ctx *ctx, al_model *m, al_node *nd, int n, int train,
                          const float *x0, const float *x1, const float *y, const float *dy,
                          float *dx0, int acc0, float *dx1, int acc1, int want_w,
                          const float *save, const int32_t *labels) {
    (void)train, (void)x0, (void)x1, (void)y, (void)dx1, (void)acc1, (void)want_w, (void)save,
        (void)labels;
    if (!dx0) return AL_OK;
    return al_accumulate(ctx, (size_t)n * m->bufs[nd->in0].per_sample, dy, dx0, acc0);
}
static const al_node_ops g_sync_ops = {"test_sync", sync_fwd, sync_bwd, 0, NULL};

static int case_fallback(void) {
    pair p;
    OK(pair_make(&p, "smallcnn", 1, 28, 3, &g_sync_ops));
    al_attack_spec s = al_attack_spec_make(AL_ATTACK_PGD, AL_LINF, 0.1f, 0.025f, 5);
    uint64_t nl = 0;
    int bad = run_compare(&p, "PGD-5 through a syncing operator", s, 1, &nl);
    AL_EXPECT(nl == 0 && p.ws[1].graph_off == 1,
              "refused capture: %llu launches, graph_off %d (want 0, 1)", (unsigned long long)nl,
              p.ws[1].graph_off);
    /* and from then on the workspace stays eager, with no second warning */
    bad |= run_compare(&p, "again (eager)", s, 1, &nl);
    AL_EXPECT(nl == 0, "second call launched %llu times", (unsigned long long)nl);
    pair_free(&p);
    return bad;
}

int main(int argc, char **argv) {
    if (al_test_no_gpu()) return AL_SKIP_CODE;
    if (al_ctx_init(&gpu, AL_DEV_CUDA, 0, 0, 42) != AL_OK) {
        fprintf(stderr, "context init failed: %s\n", al_errmsg());
        return 1;
    }
    gpu.deterministic = 1;
    static const al_case cases[] = {
        {"api", case_api},
        {"attack", case_attack},
        {"fallback", case_fallback},
    };
    int rc = al_run_cases(cases, (int)AL_ARRAY_LEN(cases), argc, argv);
    al_ctx_fini(&gpu);
    return rc;
}
