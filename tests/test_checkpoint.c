/* test_checkpoint.c: checkpoint files (formats.md §2).
 * - save/load round trip of every arch al_model_create accepts: parameters bit-identical,
 *   BN num_batches_tracked, normalisation restored by al_checkpoint_create_model;
 * - training state round trip (momentum, EMA, epoch/step/seed, config text, RNG bytes,
 *   metric history);
 * - h5py reads what advlab writes (attrs, dtypes, shapes, values vs a raw dump) and advlab
 *   loads a PyTorch-style file written by h5py (float64 params, int32 counters, no mean/std).
 * Usage: test_checkpoint [case]. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "core/checkpoint.h"
#include "harness/check.h"

static char g_dir[1024];

static void tpath(char *buf, size_t len, const char *name) { snprintf(buf, len, "%s/%s", g_dir, name); }

static int run(const char *cmd, char *out, size_t len) {
    char full[8300];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    out[0] = 0;
    size_t n = fread(out, 1, len - 1, p);
    out[n] = 0;
    char sink[512];
    while (fread(sink, 1, sizeof sink, p) > 0) {}
    int rc = pclose(p);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static int run_py(const char *name, const char *code, const char *args, char *out, size_t len) {
    char py[1100], cmd[8192];
    snprintf(py, sizeof py, "%s/%s.py", g_dir, name);
    FILE *f = fopen(py, "w");
    if (!f) return -1;
    fputs(code, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s %s %s", al_test_python(), py, args);
    return run(cmd, out, len);
}

static int h5check(const char *path) {
    char cmd[2600], out[4096];
    snprintf(cmd, sizeof cmd, "%s %s/tools/torch/h5check.py %s --strict-writer", al_test_python(),
             al_test_source_dir(), path);
    int rc = run(cmd, out, sizeof out);
    AL_EXPECT(rc == 0, "h5check rc %d: %s", rc, out);
    return 0;
}

typedef struct arch_spec {
    const char *arch;
    int in_c, image_size;
} arch_spec;

/* Every arch family of formats.md; wrn-16-2 stands for the wrn-D-W builder (same code as
 * wrn-28-10, a fraction of the size). */
static const arch_spec k_archs[] = {
    {"smallcnn", 1, 28}, {"preact_resnet18", 3, 32}, {"resnet18", 3, 32}, {"wrn-16-2", 3, 32},
};

/* A set-up model with distinct parameter values (BN variances positive) and BN counters. */
static al_status make_model(al_ctx *ctx, const arch_spec *a, uint64_t id, al_model **out) {
    AL_TRY(al_model_create(a->arch, 10, a->in_c, a->image_size, out));
    al_model *m = *out;
    if (a->in_c == 3) {
        const float mean[3] = {0.4914f, 0.4822f, 0.4465f}, std[3] = {0.2471f, 0.2435f, 0.2616f};
        al_model_set_normalization(m, mean, std);
    }
    AL_TRY(al_model_setup(ctx, m, 1, 1));
    float *h = calloc(m->n_param_floats, sizeof(float));
    for (int i = 0; i < m->n_params; i++) {
        const al_param *p = &m->params[i];
        al_test_fill(h + p->offset, p->n_elems, id * 1000 + (uint64_t)i, p->kind == AL_P_BN_VAR ? 0.5f : -2.0f, 2.0f);
    }
    al_status st = al_copy_to_dev(ctx, m->data, h, m->n_param_floats * sizeof(float));
    free(h);
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].kind == AL_NODE_BN)
            for (int b = 0; b < m->n_branches; b++) m->nodes[i].bn_tracked[b] = 1000 * (int64_t)i + b + 7;
    return st;
}

static float *host_params(al_ctx *ctx, const al_model *m) {
    float *h = malloc(m->n_param_floats * sizeof(float));
    if (al_copy_to_host(ctx, h, m->data, m->n_param_floats * sizeof(float)) != AL_OK) {
        free(h);
        return NULL;
    }
    return h;
}

static int roundtrip_arch(al_ctx *ctx, const arch_spec *a) {
    char path[1100];
    snprintf(path, sizeof path, "%s/rt_%s.h5", g_dir, a->arch);
    al_model *m = NULL, *m2 = NULL;
    al_status st = make_model(ctx, a, 1, &m);
    AL_EXPECT(st == AL_OK, "%s: %s", a->arch, al_errmsg());
    AL_EXPECT(al_checkpoint_save(ctx, m, NULL, path) == AL_OK, "save: %s", al_errmsg());

    al_ckpt_info info;
    AL_EXPECT(al_checkpoint_info(path, &info) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(strcmp(info.arch, a->arch) == 0 && info.num_classes == 10 && info.in_channels == a->in_c &&
                  info.image_size == a->image_size && info.has_norm && !info.has_train,
              "info of %s", a->arch);
    AL_EXPECT(al_checkpoint_create_model(path, &m2) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(strcmp(m2->arch, a->arch) == 0 && m2->n_params == m->n_params, "created model differs");
    AL_EXPECT(memcmp(m2->mean, m->mean, sizeof m->mean) == 0 && memcmp(m2->std, m->std, sizeof m->std) == 0,
              "normalisation not restored");
    AL_EXPECT(al_model_setup(ctx, m2, 1, 1) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_checkpoint_load(ctx, m2, path) == AL_OK, "load: %s", al_errmsg());
    float *h1 = host_params(ctx, m), *h2 = host_params(ctx, m2);
    AL_EXPECT(h1 && h2, "copy to host");
    for (int i = 0; i < m->n_params; i++) {
        const al_param *p = &m->params[i];
        AL_EXPECT(memcmp(h1 + p->offset, h2 + p->offset, p->n_elems * sizeof(float)) == 0,
                  "%s: parameter %s not bit-identical", a->arch, p->name);
    }
    int n_bn = 0;
    for (int i = 0; i < m->n_nodes; i++)
        for (int b = 0; m->nodes[i].kind == AL_NODE_BN && b < m->n_branches; b++) {
            AL_EXPECT(m2->nodes[i].bn_tracked[b] == m->nodes[i].bn_tracked[b], "%s: node %s bn_tracked",
                      a->arch, m->nodes[i].name);
            n_bn++;
        }
    printf("  %s: %d params (%zu floats), %d BN counters: bit-identical\n", a->arch, m->n_params,
           m->n_param_floats, n_bn);
    free(h1);
    free(h2);
    al_model_destroy(ctx, m);
    al_model_destroy(ctx, m2);
    return h5check(path);
}

static int case_roundtrip_archs(void) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 0) == AL_OK, "%s", al_errmsg());
    int tested = 0;
    for (size_t i = 0; i < AL_ARRAY_LEN(k_archs); i++) {
        int rc = roundtrip_arch(&ctx, &k_archs[i]);
        if (rc) {
            al_ctx_fini(&ctx);
            return rc;
        }
        tested++;
    }
    al_ctx_fini(&ctx);
    AL_EXPECT(tested == (int)AL_ARRAY_LEN(k_archs), "tested %d archs", tested);
    return 0;
}

static int case_train_state(void) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 0) == AL_OK, "%s", al_errmsg());
    al_model *m = NULL;
    AL_EXPECT(make_model(&ctx, &k_archs[0], 2, &m) == AL_OK, "%s", al_errmsg());
    const size_t nf = m->n_param_floats;
    float *mom = calloc(nf, 4), *ema = calloc(nf, 4);
    al_test_fill(mom, nf, 77, -1, 1);
    al_test_fill(ema, nf, 78, -1, 1);
    const char *config = "[train]\nepochs = 100\nname = r\xc3\xa9sum\xc3\xa9 \"quoted\"\n";
    uint8_t rng[37];
    for (int i = 0; i < 37; i++) rng[i] = (uint8_t)(i * 53 + 1);
    const char *names[2] = {"train_loss", "robust_acc"};
    double v0[5] = {2.3, 1.1, 0.7, 0.5, 0.25}, v1[5] = {0.1, 0.2, 0.3, 0.4, 1.0 / 3.0};
    const double *vals[2] = {v0, v1};
    al_train_state ts = {.epoch = 5,
                         .step = 1234567890123LL,
                         .seed = -42,
                         .config = config,
                         .momentum = mom,
                         .ema = ema,
                         .n_metrics = 2,
                         .n_epochs = 5,
                         .metric_names = names,
                         .metric_values = vals,
                         .rng_state = rng,
                         .rng_state_bytes = sizeof rng};
    char path[1100];
    tpath(path, sizeof path, "train_state.h5");
    AL_EXPECT(al_checkpoint_save(&ctx, m, &ts, path) == AL_OK, "%s", al_errmsg());
    al_ckpt_info info;
    AL_EXPECT(al_checkpoint_info(path, &info) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(info.has_train && info.has_optimizer && info.has_ema && info.epoch == 5 &&
                  info.step == 1234567890123LL && info.seed == -42,
              "info train fields");

    float *mom2 = malloc(nf * 4), *ema2 = malloc(nf * 4);
    al_train_state_in in = {.momentum = mom2, .ema = ema2};
    AL_EXPECT(al_checkpoint_load_train(path, m, &in) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(in.epoch == 5 && in.step == 1234567890123LL && in.seed == -42, "epoch/step/seed");
    AL_EXPECT(in.config && strcmp(in.config, config) == 0, "config text: '%s'", in.config ? in.config : "(null)");
    AL_EXPECT(in.rng_state_bytes == sizeof rng && memcmp(in.rng_state, rng, sizeof rng) == 0, "rng state");
    AL_EXPECT(in.has_momentum && in.has_ema, "flags");
    for (int i = 0; i < m->n_params; i++) {
        const al_param *p = &m->params[i];
        /* momentum exists for trainable parameters only (PyTorch SGD); others load as 0 */
        for (size_t j = 0; j < p->n_elems; j++) {
            float want = p->trainable ? mom[p->offset + j] : 0.0f;
            AL_EXPECT(memcmp(&mom2[p->offset + j], &want, 4) == 0, "momentum %s[%zu]", p->name, j);
        }
        AL_EXPECT(memcmp(ema2 + p->offset, ema + p->offset, p->n_elems * 4) == 0, "ema %s", p->name);
    }
    AL_EXPECT(in.n_metrics == 2, "%d metrics", in.n_metrics);
    for (int k = 0; k < 2; k++) {
        int found = 0;
        for (int j = 0; j < in.n_metrics; j++)
            if (!strcmp(in.metric_names[j], names[k])) {
                found = 1;
                AL_EXPECT(in.metric_lens[j] == 5 && memcmp(in.metric_values[j], vals[k], 5 * sizeof(double)) == 0,
                          "metric %s", names[k]);
            }
        AL_EXPECT(found, "metric %s missing", names[k]);
    }
    al_train_state_in_free(&in);
    AL_EXPECT(h5check(path) == 0, "h5check");

    /* parameters-only save: no training state to resume */
    tpath(path, sizeof path, "params_only.h5");
    al_train_state ts2 = {.epoch = 1, .step = 10, .seed = 3};
    AL_EXPECT(al_checkpoint_save(&ctx, m, &ts2, path) == AL_OK, "%s", al_errmsg());
    al_train_state_in in2 = {.momentum = mom2, .ema = ema2};
    AL_EXPECT(al_checkpoint_load_train(path, m, &in2) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(!in2.has_momentum && !in2.has_ema && in2.rng_state == NULL && in2.n_metrics == 0 &&
                  in2.config && in2.config[0] == 0 && in2.step == 10,
              "optional parts appeared");
    al_train_state_in_free(&in2);
    AL_EXPECT(al_checkpoint_save(&ctx, m, NULL, path) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_checkpoint_load_train(path, m, &in2) == AL_ERR_FORMAT && strstr(al_errmsg(), "params_only.h5:/train: missing"),
              "load_train without /train: %s", al_errmsg());
    free(mom);
    free(ema);
    free(mom2);
    free(ema2);
    al_model_destroy(&ctx, m);
    al_ctx_fini(&ctx);
    return 0;
}

/* h5py checks values against a raw little-endian float32 dump in table order. */
static const char *k_py_values =
    "import sys, h5py, numpy as np\n"
    "ck, raw, names = sys.argv[1], sys.argv[2], sys.argv[3]\n"
    "flat = np.fromfile(raw, dtype='<f4')\n"
    "f = h5py.File(ck, 'r')\n"
    "def fail(m):\n"
    "    print('MISMATCH', m); sys.exit(1)\n"
    "if f.attrs['format'] != 'advlab-checkpoint' or f.attrs['format_version'] != 1: fail('root attrs')\n"
    "m = f['model']\n"
    "if m.attrs['arch'] != 'resnet18' or m.attrs['num_classes'] != 10 or m.attrs['in_channels'] != 3: fail('model attrs')\n"
    "if m.attrs['image_size'] != 32 or m.attrs['mean'].dtype != np.float32: fail('image_size/mean')\n"
    "if not np.allclose(m.attrs['std'], [0.2471, 0.2435, 0.2616]): fail('std')\n"
    "off = 0\n"
    "for line in open(names):\n"
    "    name, shape = line.split()[0], tuple(int(s) for s in line.split()[1:])\n"
    "    d = m[name]\n"
    "    if d.dtype != np.float32 or d.shape != shape: fail('%s %s %s' % (name, d.dtype, d.shape))\n"
    "    n = int(np.prod(shape))\n"
    "    if not np.array_equal(d[...].ravel(), flat[off:off + n]): fail(name + ' values')\n"
    "    off += n\n"
    "if off != flat.size: fail('dump size')\n"
    "t = m['bn1.num_batches_tracked']\n"
    "if t.dtype != np.int64 or t.shape != () or t[()] < 7: fail('num_batches_tracked %s %s' % (t.dtype, t.shape))\n"
    "print('OK', len([k for k in m if not k.endswith('num_batches_tracked')]))\n";

/* Rewrite our checkpoint the way a PyTorch exporter might: float64 params, int32 counters,
 * no mean/std attrs (smallcnn: identity normalisation), counters of one BN layer absent. */
static const char *k_py_torchstyle =
    "import sys, h5py, numpy as np\n"
    "src, dst = sys.argv[1], sys.argv[2]\n"
    "with h5py.File(src, 'r') as s, h5py.File(dst, 'w') as d:\n"
    "    d.attrs['format'] = 'advlab-checkpoint'; d.attrs['format_version'] = np.int64(1)\n"
    "    g = d.create_group('model')\n"
    "    for a in ('arch', 'num_classes', 'in_channels', 'image_size'):\n"
    "        g.attrs[a] = s['model'].attrs[a]\n"
    "    for k, v in s['model'].items():\n"
    "        if k.endswith('num_batches_tracked'):\n"
    "            if k != 'bn1.num_batches_tracked': g[k] = np.int32(v[()])\n"
    "        else:\n"
    "            g[k] = v[...].astype(np.float64)\n"
    "print('OK')\n";

static int case_h5py_interop(void) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 0) == AL_OK, "%s", al_errmsg());
    al_model *m = NULL;
    AL_EXPECT(make_model(&ctx, &k_archs[2], 3, &m) == AL_OK, "%s", al_errmsg()); /* resnet18 */
    char path[1100], raw[1100], names[1100], args[4000], out[8192];
    tpath(path, sizeof path, "interop_resnet18.h5");
    tpath(raw, sizeof raw, "interop_resnet18.f32");
    tpath(names, sizeof names, "interop_resnet18.txt");
    AL_EXPECT(al_checkpoint_save(&ctx, m, NULL, path) == AL_OK, "%s", al_errmsg());
    float *h = host_params(&ctx, m);
    FILE *fr = fopen(raw, "wb"), *fn = fopen(names, "w");
    AL_EXPECT(h && fr && fn, "dump files");
    for (int i = 0; i < m->n_params; i++) {
        const al_param *p = &m->params[i];
        fwrite(h + p->offset, sizeof(float), p->n_elems, fr);
        fprintf(fn, "%s", p->name);
        for (int d = 0; d < p->ndim; d++) fprintf(fn, " %d", p->shape[d]);
        fprintf(fn, "\n");
    }
    fclose(fr);
    fclose(fn);
    snprintf(args, sizeof args, "%s %s %s", path, raw, names);
    int rc = run_py("check_ckpt_values", k_py_values, args, out, sizeof out);
    AL_EXPECT(rc == 0 && strstr(out, "OK"), "h5py value check rc %d: %s", rc, out);
    char want[32];
    snprintf(want, sizeof want, "OK %d", m->n_params);
    AL_EXPECT(strstr(out, want), "h5py saw a different parameter count: %s (want %s)", out, want);

    /* the PyTorch-style file written by h5py loads strictly (resnet18 needs mean/std: use
     * a smallcnn for the no-normalisation variant) */
    al_model *s = NULL, *s2 = NULL;
    AL_EXPECT(make_model(&ctx, &k_archs[0], 4, &s) == AL_OK, "%s", al_errmsg());
    char src[1100], dst[1100];
    tpath(src, sizeof src, "torchstyle_src.h5");
    tpath(dst, sizeof dst, "torchstyle.h5");
    AL_EXPECT(al_checkpoint_save(&ctx, s, NULL, src) == AL_OK, "%s", al_errmsg());
    snprintf(args, sizeof args, "%s %s", src, dst);
    rc = run_py("torchstyle", k_py_torchstyle, args, out, sizeof out);
    AL_EXPECT(rc == 0, "python rewrite rc %d: %s", rc, out);
    AL_EXPECT(al_checkpoint_create_model(dst, &s2) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_model_setup(&ctx, s2, 1, 1) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_checkpoint_load(&ctx, s2, dst) == AL_OK, "load of h5py file: %s", al_errmsg());
    float *a = host_params(&ctx, s), *b = host_params(&ctx, s2);
    for (int i = 0; i < s->n_params; i++) {
        const al_param *p = &s->params[i];
        AL_EXPECT(memcmp(a + p->offset, b + p->offset, p->n_elems * 4) == 0, "%s changed via float64", p->name);
    }
    free(a);
    free(b);
    free(h);
    al_model_destroy(&ctx, m);
    al_model_destroy(&ctx, s);
    al_model_destroy(&ctx, s2);
    al_ctx_fini(&ctx);
    return 0;
}

/* Overwriting an existing checkpoint replaces it whole (atomic rename, no .tmp left). */
static int case_overwrite(void) {
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 0) == AL_OK, "%s", al_errmsg());
    al_model *m = NULL, *m2 = NULL;
    AL_EXPECT(make_model(&ctx, &k_archs[0], 5, &m) == AL_OK, "%s", al_errmsg());
    char path[1100], tmp[1200];
    tpath(path, sizeof path, "overwrite.h5");
    AL_EXPECT(al_checkpoint_save(&ctx, m, NULL, path) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(make_model(&ctx, &k_archs[0], 6, &m2) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_checkpoint_save(&ctx, m2, NULL, path) == AL_OK, "%s", al_errmsg());
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    struct stat sb;
    AL_EXPECT(stat(tmp, &sb) != 0, "%s left behind", tmp);
    AL_EXPECT(al_checkpoint_load(&ctx, m, path) == AL_OK, "%s", al_errmsg());
    float *a = host_params(&ctx, m), *b = host_params(&ctx, m2);
    AL_EXPECT(memcmp(a, b, m->n_param_floats * 4) == 0, "second save did not replace the first");
    free(a);
    free(b);
    al_model_destroy(&ctx, m);
    al_model_destroy(&ctx, m2);
    al_ctx_fini(&ctx);
    return 0;
}

/* Device copies: a model living on the GPU saves the same file a CPU model loads, and back.
 * Skipped (77) without a usable GPU. */
static int case_roundtrip_cuda(void) {
    if (al_test_no_gpu()) return AL_SKIP_CODE;
    al_ctx cpu, gpu;
    AL_EXPECT(al_ctx_init(&cpu, AL_DEV_CPU, 0, 1, 0) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_ctx_init(&gpu, AL_DEV_CUDA, 0, 1, 0) == AL_OK, "%s", al_errmsg());
    const arch_spec *a = &k_archs[2]; /* resnet18: BN counters and normalisation too */
    al_model *mg = NULL, *mc = NULL, *mg2 = NULL;
    AL_EXPECT(make_model(&gpu, a, 11, &mg) == AL_OK, "%s", al_errmsg());
    char p1[1100], p2[1100];
    tpath(p1, sizeof p1, "from_gpu.h5");
    tpath(p2, sizeof p2, "from_cpu.h5");
    AL_EXPECT(al_checkpoint_save(&gpu, mg, NULL, p1) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_checkpoint_create_model(p1, &mc) == AL_OK && al_model_setup(&cpu, mc, 1, 1) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_checkpoint_load(&cpu, mc, p1) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_checkpoint_save(&cpu, mc, NULL, p2) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_checkpoint_create_model(p2, &mg2) == AL_OK && al_model_setup(&gpu, mg2, 1, 1) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_checkpoint_load(&gpu, mg2, p2) == AL_OK, "%s", al_errmsg());
    float *h1 = host_params(&gpu, mg), *h2 = host_params(&cpu, mc), *h3 = host_params(&gpu, mg2);
    AL_EXPECT(h1 && h2 && h3, "copies");
    for (int i = 0; i < mg->n_params; i++) {
        const al_param *p = &mg->params[i];
        AL_EXPECT(memcmp(h1 + p->offset, h2 + p->offset, p->n_elems * 4) == 0, "gpu->cpu %s", p->name);
        AL_EXPECT(memcmp(h1 + p->offset, h3 + p->offset, p->n_elems * 4) == 0, "cpu->gpu %s", p->name);
    }
    free(h1);
    free(h2);
    free(h3);
    al_model_destroy(&gpu, mg);
    al_model_destroy(&gpu, mg2);
    al_model_destroy(&cpu, mc);
    al_ctx_fini(&gpu);
    al_ctx_fini(&cpu);
    return 0;
}

int main(int argc, char **argv) {
    snprintf(g_dir, sizeof g_dir, "%s/io_checkpoint", al_test_tmpdir());
    mkdir(g_dir, 0755);
    static const al_case cases[] = {
        {"roundtrip_archs", case_roundtrip_archs},
        {"train_state", case_train_state},
        {"h5py_interop", case_h5py_interop},
        {"overwrite", case_overwrite},
        {"roundtrip_cuda", case_roundtrip_cuda},
    };
    return al_run_cases(cases, (int)AL_ARRAY_LEN(cases), argc, argv);
}
