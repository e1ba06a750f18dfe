/* test_models_torch.c: the arch builders (core/models/) against their PyTorch twins
 * (tools/torch/models.py), with tests/torch/models_ref.py as the reference side.
 *
 * struct      parameter tables (names, shapes, order), trainable counts and init rules equal
 *             PyTorch's, for every arch incl. wrn-28-10 and wrn-34-10.
 * grad_<a>    init with a seed, save a checkpoint, train-mode forward (BN running stats
 *             updated) + backward (weights and input), eval-mode forward + backward (input
 *             only, plus a feature gradient); PyTorch loads the checkpoint and repeats it in
 *             float64 and float32. Logits, features, dx, every weight gradient and every BN
 *             running stat are compared with al_check_close against float64.
 * roundtrip_<a> a random torch model -> torch.save -> convert_pt.py to-advlab -> advlab load
 *             -> eval logits vs PyTorch -> al_checkpoint_save -> from-advlab -> bit-identical
 *             state_dict; the converter must also reject a wrong arch with one error line.
 * CPU backend only (LABELS cpu). Needs /usr/bin/python3 with torch + h5py (else skip, 77). */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checkpoint.h"
#include "core/model.h"
#include "harness/check.h"

#define MAX_PATH 1024

/* ---------------------------------------------------------------- helpers */

static int have_torch(void) {
    static int cached = -1;
    if (cached < 0) {
        char cmd[MAX_PATH];
        snprintf(cmd, sizeof cmd, "%s -c 'import torch, h5py' >/dev/null 2>&1", al_test_python());
        cached = system(cmd) == 0;
        if (!cached) printf("skipped: %s has no torch/h5py\n", al_test_python());
    }
    return cached;
}

/* Run tests/torch/models_ref.py with the given argument string; 0 on success. */
static int run_ref(const char *args) {
    char cmd[6 * MAX_PATH];
    snprintf(cmd, sizeof cmd, "%s %s/tests/torch/models_ref.py %s", al_test_python(),
             al_test_source_dir(), args);
    int rc = system(cmd);
    if (rc != 0) fprintf(stderr, "  command failed (status %d): %s\n", rc, cmd);
    return rc;
}

static void tmp_path(char *buf, size_t len, const char *tag, const char *arch, const char *file) {
    snprintf(buf, len, "%s/models_%s_%s_%s", al_test_tmpdir(), tag, arch, file);
}

static int h5_write_f32(hid_t f, const char *name, const float *x, int ndim, const int *dims) {
    hsize_t d[4];
    for (int i = 0; i < ndim; i++) d[i] = (hsize_t)dims[i];
    hid_t sp = H5Screate_simple(ndim, d, NULL);
    hid_t ds = H5Dcreate2(f, name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = ds < 0 ? -1 : H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x);
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(sp);
    return rc < 0;
}

/* Read dataset `name` as doubles; it must hold exactly n values. Returns malloc'd or NULL. */
static double *h5_read_d(hid_t f, const char *name, size_t n) {
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0) {
        fprintf(stderr, "  reference has no %s\n", name);
        return NULL;
    }
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    hid_t sp = H5Dget_space(ds);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    double *v = NULL;
    if ((size_t)np != n) {
        fprintf(stderr, "  %s: %lld values, expected %zu\n", name, (long long)np, n);
    } else {
        v = malloc((n ? n : 1) * sizeof *v);
        if (v && H5Dread(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0) {
            free(v);
            v = NULL;
        }
    }
    H5Dclose(ds);
    return v;
}

static double max_abs_d(const double *r, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(r[i]));
    return m;
}
static double max_diff_fd(const float *g, const double *r, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs((double)g[i] - r[i]));
    return m;
}
static double max_diff_dd(const double *g, const double *r, size_t n) {
    double m = 0;
    for (size_t i = 0; i < n; i++) m = fmax(m, fabs(g[i] - r[i]));
    return m;
}

/* ---------------------------------------------------------------- tolerances
 *
 * Rounding model (style rule 22): a float32 value computed as a sum of K products carries an
 * error of about eps * sqrt(K) relative to the magnitude of its terms (random-walk
 * accumulation; al_tol_f32(K) = 8 eps sqrt(K) leaves a factor 8 of headroom). In these nets
 * every conv is followed by batch norm (or a bounded head), so activations stay O(1) and the
 * relative errors of successive reductions add in quadrature: the error of a tensor is
 * ~ eps * sqrt(sum of the reduction lengths on its path), measured against the tensor's own
 * scale (its max |value| in float64). Reduction lengths:
 *   forward:  conv C_in*k*k, linear In, avg pool k*k, train-mode BN statistics N*H*W
 *   backward: conv dx C_out*k*k, linear dx Out, BN (train) N*H*W; weight gradients add the
 *             batch-spatial sum N*Ho*Wo of their layer (the largest one bounds it).
 * So logits/features use K_fwd, gradients K_fwd + K_bwd + K_w. ReLU kinks and max-pool ties
 * whose argument sits within rounding of the switch are included implicitly: they move a
 * single path's contribution, which this per-tensor scale covers; the float32 PyTorch run is
 * checked against the same tolerance as a calibration of the model. */
typedef struct path_k {
    double fwd, bwd, wgrad;
} path_k;

static path_k reduction_lengths(const al_model *m, int n, int train) {
    path_k k = {0, 0, 0};
    for (int i = 0; i < m->n_nodes; i++) {
        const al_node *nd = &m->nodes[i];
        const al_buf *ib = &m->bufs[nd->in0], *ob = &m->bufs[nd->out];
        switch (nd->kind) {
        case AL_NODE_CONV:
            k.fwd += (double)ib->c * nd->k * nd->k;
            k.bwd += (double)ob->c * nd->k * nd->k;
            k.wgrad = fmax(k.wgrad, (double)n * ob->h * ob->w);
            break;
        case AL_NODE_LINEAR:
            k.fwd += (double)ib->per_sample;
            k.bwd += (double)ob->per_sample;
            k.wgrad = fmax(k.wgrad, (double)n);
            break;
        case AL_NODE_AVGPOOL: k.fwd += (double)nd->k * nd->k; break;
        case AL_NODE_BN:
            if (train) {
                k.fwd += (double)n * ib->h * ib->w;
                k.bwd += (double)n * ib->h * ib->w;
            }
            k.wgrad = fmax(k.wgrad, (double)n * ib->h * ib->w);
            break;
        default: break;
        }
    }
    return k;
}

/* Compare an advlab float32 tensor with the float64 reference /f64/<name> (and report the
 * float32 PyTorch run /f32/<name> against the same tolerance). Returns 0 when within tol. */
static int compare(hid_t ref, const char *name, const float *got, size_t n, double tol,
                   double *worst_abs) {
    char p64[512], p32[512];
    snprintf(p64, sizeof p64, "f64/%s", name);
    snprintf(p32, sizeof p32, "f32/%s", name);
    double *r64 = h5_read_d(ref, p64, n), *r32 = h5_read_d(ref, p32, n);
    int bad = 1;
    if (r64 && r32) {
        double scale = max_abs_d(r64, n);
        double atol = tol * (scale > 0 ? scale : 1.0);
        double d_adv = max_diff_fd(got, r64, n), d_t32 = max_diff_dd(r32, r64, n);
        bad = al_check_close_fd(name, got, r64, n, atol, tol);
        if (d_t32 > atol)
            fprintf(stderr, "  note: torch float32 misses the tolerance on %s: %.3g > %.3g\n", name,
                    d_t32, atol);
        if (bad)
            fprintf(stderr, "  %s: scale %.3g, advlab err %.3g, torch-f32 err %.3g\n", name, scale,
                    d_adv, d_t32);
        if (worst_abs && d_adv > *worst_abs) *worst_abs = d_adv;
    }
    free(r64);
    free(r32);
    return bad;
}

/* ---------------------------------------------------------------- struct / counts / init */

static const char *const k_struct_archs[] = {"smallcnn", "preact_resnet18", "resnet18",
                                             "wrn-16-2", "wrn-28-10", "wrn-34-10"};

static int geometry(const char *arch, int *in_c, int *size) {
    int small = strcmp(arch, "smallcnn") == 0;
    *in_c = small ? 1 : 3;
    *size = small ? 28 : 32;
    return 0;
}

/* One arch of the struct file: every parameter in order with its shape; counts; init. */
static int check_struct_arch(const char *arch, const char *file) {
    FILE *f = fopen(file, "r");
    AL_EXPECT(f, "cannot open %s", file);
    int in_c, size;
    geometry(arch, &in_c, &size);
    al_model *m = NULL;
    al_status st = al_model_create(arch, 10, in_c, size, &m);
    AL_EXPECT(st == AL_OK, "al_model_create(%s): %s", arch, al_errmsg());
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 0, 1) == AL_OK, "ctx: %s", al_errmsg());
    AL_EXPECT(al_model_setup(&ctx, m, 1, 1) == AL_OK, "setup: %s", al_errmsg());
    AL_EXPECT(al_model_init_params(&ctx, m, 20240601) == AL_OK, "init: %s", al_errmsg());

    int bad = 0, idx = 0;
    long long n_train_ref = -1, n_state_ref = -1;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        char kind[4], a[64], name[AL_NAME_LEN];
        int ndim, d[4], trainable;
        long long numel;
        double sd, tail, cval;
        if (line[0] == 'C') {
            long long t, s;
            if (sscanf(line, "%3s %63s %lld %lld", kind, a, &t, &s) == 4 && strcmp(a, arch) == 0) {
                n_train_ref = t;
                n_state_ref = s;
            }
            continue;
        }
        if (sscanf(line, "%3s %63s %127s %d %d %d %d %d %lld %d %lf %lf %lf", kind, a, name, &ndim,
                   &d[0], &d[1], &d[2], &d[3], &numel, &trainable, &sd, &tail, &cval) != 13 ||
            strcmp(a, arch) != 0)
            continue;
        if (idx >= m->n_params) {
            fprintf(stderr, "  %s: torch has extra tensor %s\n", arch, name);
            bad++;
            continue;
        }
        const al_param *p = &m->params[idx++];
        int same = strcmp(p->name, name) == 0 && p->ndim == ndim && p->trainable == trainable;
        for (int i = 0; i < ndim && same; i++) same = p->shape[i] == d[i];
        if (!same) {
            fprintf(stderr, "  %s: tensor %d is %s (ndim %d, trainable %d), torch has %s (ndim %d, "
                            "trainable %d) or shapes differ\n",
                    arch, idx - 1, p->name, p->ndim, p->trainable, name, ndim, trainable);
            bad++;
            continue;
        }
        /* init rule: constant tensors must match exactly, random ones in distribution.
         * std: the sample std of n draws has relative sd sqrt((kurtosis - 1) / 4n) <= 1/sqrt(2n)
         * (normal; uniform is smaller), so two independent inits differ by <= 1/sqrt(n) per sd:
         * 4.2 sd + 1% (float rounding of the torch bound). The tail fraction |w - mean| > 1.8
         * sd tells uniform (0: its edge is sqrt(3) sd) from normal (0.072); its sampling sd is
         * sqrt(0.072 * 0.928 / n), 5 of them for the difference of two runs is 0.034 at
         * n = 4096, half the gap. */
        const float *w = al_param_data(m, idx - 1);
        double s1 = 0, s2 = 0;
        for (size_t j = 0; j < p->n_elems; j++) {
            s1 += w[j];
            s2 += (double)w[j] * w[j];
        }
        double nn = (double)p->n_elems, mean = s1 / nn, csd = sqrt(fmax(s2 / nn - mean * mean, 0));
        size_t n_tail = 0;
        for (size_t j = 0; j < p->n_elems; j++) n_tail += fabs(w[j] - mean) > 1.8 * csd;
        double ctail = (double)n_tail / nn;
        if (!isnan(cval)) {
            int ok = 1;
            for (size_t j = 0; j < p->n_elems && ok; j++) ok = w[j] == (float)cval;
            if (!ok) {
                fprintf(stderr, "  %s: %s should init to the constant %g\n", arch, name, cval);
                bad++;
            }
        } else if (nn >= 1000) {
            double tol_sd = 6.0 / sqrt(2.0 * nn) + 0.01;
            double tol_tail = nn >= 4096 ? 5.0 * sqrt(2 * 0.072 * 0.928 / nn) : 1.0;
            if (fabs(csd / sd - 1) > tol_sd || fabs(ctail - tail) > tol_tail) {
                fprintf(stderr, "  %s: %s init sd %.5g tail %.4f, torch sd %.5g tail %.4f\n", arch,
                        name, csd, ctail, sd, tail);
                bad++;
            }
        }
    }
    fclose(f);
    if (idx != m->n_params) {
        fprintf(stderr, "  %s: advlab has %d tensors, torch %d\n", arch, m->n_params, idx);
        bad++;
    }
    size_t n_state = 0;
    for (int i = 0; i < m->n_params; i++) n_state += m->params[i].n_elems;
    fprintf(stderr, "  %-16s %3d tensors, %zu trainable parameters (torch %lld), %zu state floats "
                    "(torch %lld)\n",
            arch, m->n_params, al_model_n_trainable(m), n_train_ref, n_state, n_state_ref);
    if ((long long)al_model_n_trainable(m) != n_train_ref || (long long)n_state != n_state_ref) bad++;
    al_model_destroy(&ctx, m);
    al_ctx_fini(&ctx);
    return bad ? 1 : 0;
}

static int case_struct(void) {
    if (!have_torch()) return AL_SKIP_CODE;
    char file[MAX_PATH], args[4 * MAX_PATH];
    tmp_path(file, sizeof file, "struct", "all", "tables.txt");
    int len = snprintf(args, sizeof args, "struct %s", file);
    for (size_t i = 0; i < AL_ARRAY_LEN(k_struct_archs); i++)
        len += snprintf(args + len, sizeof args - (size_t)len, " %s", k_struct_archs[i]);
    AL_EXPECT(run_ref(args) == 0, "models_ref.py struct failed");
    int bad = 0;
    for (size_t i = 0; i < AL_ARRAY_LEN(k_struct_archs); i++)
        bad += check_struct_arch(k_struct_archs[i], file);
    return bad ? 1 : 0;
}

/* ---------------------------------------------------------------- forward/backward vs torch */

static const float k_mean3[3] = {0.4914f, 0.4822f, 0.4465f}, k_std3[3] = {0.2471f, 0.2435f, 0.2616f};
static const float k_mean1[1] = {0.1307f}, k_std1[1] = {0.3081f};

typedef struct grad_result {
    double logits, dx, dw; /* max abs advlab - float64 torch over the case */
} grad_result;

static int grad_case(const char *arch, int n, uint64_t seed) {
    if (!have_torch()) return AL_SKIP_CODE;
    char ckpt[MAX_PATH], io[MAX_PATH], ref[MAX_PATH], args[4 * MAX_PATH];
    tmp_path(ckpt, sizeof ckpt, "grad", arch, "ckpt.h5");
    tmp_path(io, sizeof io, "grad", arch, "io.h5");
    tmp_path(ref, sizeof ref, "grad", arch, "ref.h5");
    int in_c, size, bad = 0;
    geometry(arch, &in_c, &size);
    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 0, seed) == AL_OK, "ctx: %s", al_errmsg());
    al_model *m = NULL;
    AL_EXPECT(al_model_create(arch, 10, in_c, size, &m) == AL_OK, "create: %s", al_errmsg());
    /* non-trivial normalisation: exercises the normalise node and the checkpoint attrs */
    al_model_set_normalization(m, in_c == 3 ? k_mean3 : k_mean1, in_c == 3 ? k_std3 : k_std1);
    AL_EXPECT(al_model_setup(&ctx, m, n, 1) == AL_OK, "setup: %s", al_errmsg());
    AL_EXPECT(al_model_init_params(&ctx, m, seed) == AL_OK, "init: %s", al_errmsg());
    if (strcmp(arch, "smallcnn") == 0) {
        /* fc3 inits to zero (TRADES): logits would be constant and every gradient below fc3
         * zero. Give it a random draw so the comparison sees the whole network. */
        int wi = al_model_find_param(m, "classifier.fc3.weight");
        float *w = al_param_data(m, wi);
        al_test_fill(w, m->params[wi].n_elems, 900, -0.07f, 0.07f);
    }
    AL_EXPECT(al_checkpoint_save(&ctx, m, NULL, ckpt) == AL_OK, "save: %s", al_errmsg());

    const int k = m->num_classes, d = al_model_feature_dim(m);
    const size_t nx = (size_t)n * in_c * size * size;
    float *x = malloc(nx * sizeof *x), *dx = malloc(nx * sizeof *dx);
    float *dl = malloc((size_t)n * k * sizeof *dl), *df = malloc((size_t)n * d * sizeof *df);
    float *logits = malloc((size_t)n * k * sizeof *logits), *feat = malloc((size_t)n * d * sizeof *feat);
    float *grads0 = malloc(m->n_param_floats * sizeof *grads0);
    AL_EXPECT(x && dx && dl && df && logits && feat && grads0, "out of memory");
    al_test_fill(x, nx, 1, 0.0f, 1.0f);
    al_test_fill(dl, (size_t)n * k, 2, -1.0f, 1.0f);
    al_test_fill(df, (size_t)n * d, 3, -0.1f, 0.1f);

    /* train step: BN batch statistics, running stats updated, dropout on */
    al_fwd_opts o = {0, 1, 1, 0, 0};
    AL_EXPECT(al_model_forward(&ctx, m, x, n, &o) == AL_OK, "forward: %s", al_errmsg());
    AL_EXPECT(al_model_zero_grad(&ctx, m) == AL_OK, "zero_grad");
    AL_EXPECT(al_model_backward(&ctx, m, 0, dl, NULL, AL_BWD_WEIGHTS | AL_BWD_INPUT, dx) == AL_OK,
              "backward: %s", al_errmsg());

    hid_t f = H5Fcreate(io, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    AL_EXPECT(f >= 0, "cannot create %s", io);
    int xdims[4] = {n, in_c, size, size}, ldims[2] = {n, k}, fdims[2] = {n, d};
    bad |= h5_write_f32(f, "x", x, 4, xdims);
    bad |= h5_write_f32(f, "dlogits", dl, 2, ldims);
    bad |= h5_write_f32(f, "dfeat", df, 2, fdims);
    for (int i = 0; i < m->n_nodes; i++) {
        const al_node *nd = &m->nodes[i];
        if (nd->kind != AL_NODE_DROPOUT) continue;
        /* the mask advlab drew (save area of the dropout node), for PyTorch to reuse */
        int mdims[2] = {n, (int)m->bufs[nd->in0].per_sample};
        bad |= h5_write_f32(f, "dropout_mask", m->slots[0].save + nd->save_offset, 2, mdims);
    }
    H5Fclose(f);
    AL_EXPECT(!bad, "writing %s failed", io);
    snprintf(args, sizeof args, "grad %s %s %s", ckpt, io, ref);
    AL_EXPECT(run_ref(args) == 0, "models_ref.py grad failed for %s", arch);

    hid_t r = H5Fopen(ref, H5F_ACC_RDONLY, H5P_DEFAULT);
    AL_EXPECT(r >= 0, "cannot open %s", ref);
    path_k kt = reduction_lengths(m, n, 1), ke = reduction_lengths(m, n, 0);
    double tol_fwd = al_tol_f32(kt.fwd), tol_bwd = al_tol_f32(kt.fwd + kt.bwd + kt.wgrad);
    double tol_efwd = al_tol_f32(ke.fwd + kt.fwd), tol_ebwd = al_tol_f32(ke.fwd + ke.bwd + kt.fwd);
    fprintf(stderr, "  %s: N=%d, reduction lengths fwd %.0f bwd %.0f wgrad %.0f -> tol fwd %.3g, "
                    "grad %.3g (x max |ref|)\n",
            arch, n, kt.fwd, kt.bwd, kt.wgrad, tol_fwd, tol_bwd);
    grad_result res = {0, 0, 0};
    memcpy(logits, al_model_logits(m, 0), (size_t)n * k * sizeof *logits);
    memcpy(feat, al_model_features(m, 0), (size_t)n * d * sizeof *feat);
    bad += compare(r, "train/logits", logits, (size_t)n * k, tol_fwd, &res.logits);
    bad += compare(r, "train/feat", feat, (size_t)n * d, tol_fwd, NULL);
    bad += compare(r, "train/dx", dx, nx, tol_bwd, &res.dx);
    memcpy(grads0, m->grads, m->n_param_floats * sizeof *grads0);
    for (int i = 0; i < m->n_params; i++) {
        const al_param *p = &m->params[i];
        char name[AL_NAME_LEN + 32];
        if (p->trainable) {
            snprintf(name, sizeof name, "train/grad/%s", p->name);
            bad += compare(r, name, al_param_grad(m, i), p->n_elems, tol_bwd, &res.dw);
        } else {
            /* running stats after one update: running_mean = 0.1 * batch mean (a forward
             * reduction), running_var = 0.9 + 0.1 * unbiased batch variance */
            snprintf(name, sizeof name, "train/state/%s", p->name);
            bad += compare(r, name, al_param_data(m, i), p->n_elems, tol_fwd, NULL);
        }
    }
    /* num_batches_tracked: one update per BN node */
    for (int i = 0; i < m->n_nodes; i++) {
        const al_node *nd = &m->nodes[i];
        if (nd->kind != AL_NODE_BN) continue;
        char name[AL_NAME_LEN + 64];
        snprintf(name, sizeof name, "f64/train/state/%s.num_batches_tracked", nd->name);
        double *t = h5_read_d(r, name, 1);
        if (!t || (double)nd->bn_tracked[0] != t[0]) {
            fprintf(stderr, "  %s: num_batches_tracked %lld, torch %g\n", nd->name,
                    (long long)nd->bn_tracked[0], t ? t[0] : -1.0);
            bad++;
        }
        free(t);
    }

    /* eval mode, input gradient only (the attack path; weight grads must stay untouched),
     * with a feature gradient as the feature losses (DFA, ANCRA) pass it */
    al_fwd_opts oe = {0, 0, 0, 0, 0};
    AL_EXPECT(al_model_forward(&ctx, m, x, n, &oe) == AL_OK, "forward: %s", al_errmsg());
    AL_EXPECT(al_model_backward(&ctx, m, 0, dl, df, AL_BWD_INPUT, dx) == AL_OK, "backward: %s",
              al_errmsg());
    bad += compare(r, "eval/logits", al_model_logits(m, 0), (size_t)n * k, tol_efwd, &res.logits);
    bad += compare(r, "eval/feat", al_model_features(m, 0), (size_t)n * d, tol_efwd, NULL);
    bad += compare(r, "eval/dx", dx, nx, tol_ebwd, &res.dx);
    if (memcmp(grads0, m->grads, m->n_param_floats * sizeof *grads0) != 0) {
        fprintf(stderr, "  backward without AL_BWD_WEIGHTS changed the weight gradients\n");
        bad++;
    }
    H5Fclose(r);
    printf("%s: max |advlab - torch f64|: logits %.3g, input grad %.3g, weight grad %.3g\n", arch,
           res.logits, res.dx, res.dw);
    free(x);
    free(dx);
    free(dl);
    free(df);
    free(logits);
    free(feat);
    free(grads0);
    al_model_destroy(&ctx, m);
    al_ctx_fini(&ctx);
    return bad ? 1 : 0;
}

static int case_grad_smallcnn(void) { return grad_case("smallcnn", 3, 101); }
static int case_grad_preact(void) { return grad_case("preact_resnet18", 2, 102); }
static int case_grad_resnet18(void) { return grad_case("resnet18", 2, 103); }
static int case_grad_wrn(void) { return grad_case("wrn-16-2", 2, 104); }

/* ---------------------------------------------------------------- converter round trip */

static int roundtrip_case(const char *arch) {
    if (!have_torch()) return AL_SKIP_CODE;
    char dir[MAX_PATH], path[MAX_PATH + 32], args[4 * MAX_PATH];
    snprintf(dir, sizeof dir, "%s/models_rt_%s", al_test_tmpdir(), arch);
    snprintf(args, sizeof args, "mkdir -p %s", dir);
    AL_EXPECT(system(args) == 0, "cannot create %s", dir);
    snprintf(args, sizeof args, "rt-make %s %s", arch, dir);
    AL_EXPECT(run_ref(args) == 0, "models_ref.py rt-make failed for %s", arch);

    al_ctx ctx;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 0, 1) == AL_OK, "ctx: %s", al_errmsg());
    al_model *m = NULL;
    snprintf(path, sizeof path, "%s/conv.h5", dir);
    AL_EXPECT(al_checkpoint_create_model(path, &m) == AL_OK, "create_model: %s", al_errmsg());
    AL_EXPECT(strcmp(m->arch, arch) == 0, "arch %s, expected %s", m->arch, arch);
    const int n = 4, k = m->num_classes; /* RT_N in models_ref.py */
    AL_EXPECT(al_model_setup(&ctx, m, n, 1) == AL_OK, "setup: %s", al_errmsg());
    AL_EXPECT(al_checkpoint_load(&ctx, m, path) == AL_OK, "load: %s", al_errmsg());

    snprintf(path, sizeof path, "%s/rt_io.h5", dir);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    AL_EXPECT(f >= 0, "cannot open %s", path);
    const size_t nx = (size_t)n * m->in_c * m->in_h * m->in_w;
    double *xd = h5_read_d(f, "x", nx), *l64 = h5_read_d(f, "logits_f64", (size_t)n * k);
    double *l32 = h5_read_d(f, "logits_f32", (size_t)n * k);
    H5Fclose(f);
    AL_EXPECT(xd && l64 && l32, "reading %s failed", path);
    float *x = malloc(nx * sizeof *x);
    AL_EXPECT(x, "out of memory");
    for (size_t i = 0; i < nx; i++) x[i] = (float)xd[i];

    AL_EXPECT(al_model_forward_eval(&ctx, m, x, n, 0) == AL_OK, "forward: %s", al_errmsg());
    const float *logits = al_model_logits(m, 0);
    path_k kp = reduction_lengths(m, n, 0);
    double tol = al_tol_f32(kp.fwd), scale = max_abs_d(l64, (size_t)n * k);
    int bad = al_check_close_fd("roundtrip eval logits", logits, l64, (size_t)n * k, tol * scale, tol);
    double d32 = 0;
    for (size_t i = 0; i < (size_t)n * k; i++) d32 = fmax(d32, fabs((double)logits[i] - l32[i]));
    printf("%s: converted checkpoint, eval logits max |advlab - torch| = %.3g (float32 torch), "
           "%.3g (float64 torch), logit scale %.3g\n",
           arch, d32, max_diff_fd(logits, l64, (size_t)n * k), scale);

    /* advlab writes it back; both files must give the original state_dict bit for bit */
    snprintf(path, sizeof path, "%s/resaved.h5", dir);
    AL_EXPECT(al_checkpoint_save(&ctx, m, NULL, path) == AL_OK, "save: %s", al_errmsg());
    snprintf(args, sizeof args, "rt-check %s", dir);
    if (run_ref(args) != 0) bad++;
    free(x);
    free(xd);
    free(l64);
    free(l32);
    al_model_destroy(&ctx, m);
    al_ctx_fini(&ctx);
    return bad ? 1 : 0;
}

static int case_rt_smallcnn(void) { return roundtrip_case("smallcnn"); }
static int case_rt_preact(void) { return roundtrip_case("preact_resnet18"); }
static int case_rt_resnet18(void) { return roundtrip_case("resnet18"); }
static int case_rt_wrn(void) { return roundtrip_case("wrn-16-2"); }

int main(int argc, char **argv) {
    static const al_case cases[] = {
        {"struct", case_struct},
        {"grad_smallcnn", case_grad_smallcnn},
        {"grad_preact_resnet18", case_grad_preact},
        {"grad_resnet18", case_grad_resnet18},
        {"grad_wrn", case_grad_wrn},
        {"roundtrip_smallcnn", case_rt_smallcnn},
        {"roundtrip_preact_resnet18", case_rt_preact},
        {"roundtrip_resnet18", case_rt_resnet18},
        {"roundtrip_wrn", case_rt_wrn},
    };
    return al_run_cases(cases, (int)AL_ARRAY_LEN(cases), argc, argv);
}
