/* test_badinput.c: the bad-input catalogue. Every case feeds one broken input to the library
 * or to the `advlab` binary and asserts
 *   (a) a non-OK status / non-zero exit (2 for usage errors),
 *   (b) ONE error line that names the file (and object) and the problem (substring checks),
 *   (c) nothing previously written is damaged: an existing output/checkpoint stays
 *       byte-identical and loadable, no <path>.tmp is left, a failed load leaves the model.
 * Inputs: good files written here with advlab, then broken one rule at a time by
 * tests/badinput/make_bad.py (h5py), plus IDX/CIFAR/text fixtures written below.
 * Extension points: k_fixtures[] (text files, e.g. INI configs) and k_cli_cases[] (a command
 * line, exit status and message substrings) -- config-key checks go there.
 * Usage: test_badinput [--advlab=PATH] [case]. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include "core/checkpoint.h"
#include "datasets/h5data.h"
#include "harness/check.h"

static char g_advlab[1024];
static char g_dir[1024];
static char g_p[8][1200]; /* rotating path buffers for P() */

/* P("name") -> "<dir>/name" (8 live results at a time) */
static const char *P(const char *name) {
    static int k;
    char *b = g_p[k++ & 7];
    snprintf(b, sizeof g_p[0], "%s/%s", g_dir, name);
    return b;
}

/* ---------------------------------------------------------------- assertions */

/* (a) + (b): status is a failure and the recorded message is one non-empty line holding every
 * substring. Prints the message so the catalogue reads as documentation in the test log. */
static int check_fail_(al_status st, const char *file, int line, const char *const *subs) {
    const char *msg = al_errmsg();
    fprintf(stderr, "  -> [%s] %s\n", al_status_str(st), msg);
    if (st == AL_OK) {
        fprintf(stderr, "  FAIL %s:%d: expected a failure, got AL_OK\n", file, line);
        return 1;
    }
    if (!msg[0] || strchr(msg, '\n')) {
        fprintf(stderr, "  FAIL %s:%d: message is not one non-empty line\n", file, line);
        return 1;
    }
    for (int i = 0; subs[i]; i++)
        if (!strstr(msg, subs[i])) {
            fprintf(stderr, "  FAIL %s:%d: message lacks \"%s\"\n", file, line, subs[i]);
            return 1;
        }
    return 0;
}
/* EXPECT_FAIL(call, substrings...): clears the error line, makes the call, checks. */
#define EXPECT_FAIL(call, ...)                                                                \
    do {                                                                                      \
        al_clear_error();                                                                     \
        al_status st_ = (call);                                                               \
        if (check_fail_(st_, __FILE__, __LINE__, (const char *const[]){__VA_ARGS__, NULL})) \
            return 1;                                                                         \
    } while (0)
/* EXPECT_FAILED(st, substrings...): for a status computed earlier (clear the error before). */
#define EXPECT_FAILED(st, ...)                                                                \
    do {                                                                                      \
        if (check_fail_((st), __FILE__, __LINE__, (const char *const[]){__VA_ARGS__, NULL})) \
            return 1;                                                                         \
    } while (0)

typedef struct digest {
    long long size;
    unsigned long crc;
    int ok;
} digest;

static digest file_digest(const char *path) {
    digest d = {0, 0, 0};
    FILE *f = fopen(path, "rb");
    if (!f) return d;
    unsigned char buf[65536];
    size_t n;
    d.crc = crc32(0L, Z_NULL, 0);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        d.crc = crc32(d.crc, buf, (unsigned)n);
        d.size += (long long)n;
    }
    fclose(f);
    d.ok = 1;
    return d;
}

/* (c): the file is byte-identical to `before` and no <path>.tmp is left over. */
static int check_intact_(const char *path, digest before, const char *file, int line) {
    digest now = file_digest(path);
    if (!before.ok || !now.ok || now.size != before.size || now.crc != before.crc) {
        fprintf(stderr, "  FAIL %s:%d: %s was damaged (size %lld -> %lld)\n", file, line, path, before.size,
                now.size);
        return 1;
    }
    char tmp[1300];
    struct stat sb;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    if (stat(tmp, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "  FAIL %s:%d: %s left behind\n", file, line, tmp);
        return 1;
    }
    return 0;
}
#define EXPECT_INTACT(path, before)                                       \
    do {                                                                  \
        if (check_intact_((path), (before), __FILE__, __LINE__)) return 1; \
    } while (0)

/* ---------------------------------------------------------------- fixtures */

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return 1;
    fputs(text, f);
    fclose(f);
    return 0;
}

/* Text fixtures written at setup. Extension point: add INI configs here for config-key
 * cases, e.g. {"cfg_unknown_key.ini", "[train]\nbogus_key = 1\n"}. */
static const struct {
    const char *name, *text;
} k_fixtures[] = {
    {"notes.txt", "these are notes, not an HDF5 file\n"},
};

static int copy_prefix(const char *src, const char *dst, double frac) {
    FILE *a = fopen(src, "rb"), *b = fopen(dst, "wb");
    if (!a || !b) return 1;
    fseek(a, 0, SEEK_END);
    long n = (long)(ftell(a) * frac);
    fseek(a, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, a);
    fwrite(buf, 1, got, b);
    free(buf);
    fclose(a);
    fclose(b);
    return 0;
}

/* IDX (gzip'd): magic, dims, bytes. */
static int write_idx(const char *path, uint32_t magic, int ndim, const uint32_t *dims, const uint8_t *data,
                     size_t n_bytes) {
    gzFile g = gzopen(path, "wb");
    if (!g) return 1;
    uint8_t hdr[16];
    uint32_t w[4] = {magic, dims[0], ndim > 1 ? dims[1] : 0, ndim > 2 ? dims[2] : 0};
    for (int i = 0; i <= ndim; i++)
        for (int b = 0; b < 4; b++) hdr[4 * i + b] = (uint8_t)(w[i] >> (24 - 8 * b));
    gzwrite(g, hdr, (unsigned)(4 + 4 * ndim));
    if (n_bytes) gzwrite(g, data, (unsigned)n_bytes);
    return gzclose(g) != Z_OK;
}

/* A good IDX set (train 6, test 4 images of 5x5) in dir; `label0` is train label 0. */
static int write_idx_set(const char *dir, int label0) {
    mkdir(dir, 0755);
    uint8_t im[6 * 25], lb[6];
    for (int i = 0; i < 6 * 25; i++) im[i] = (uint8_t)(i * 37 + 11);
    for (int i = 0; i < 6; i++) lb[i] = (uint8_t)(i % 10);
    lb[0] = (uint8_t)label0;
    char p[1200];
    const uint32_t d6[3] = {6, 5, 5}, d4[3] = {4, 5, 5}, l6[1] = {6}, l4[1] = {4};
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir);
    if (write_idx(p, 0x803, 3, d6, im, sizeof im)) return 1;
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte.gz", dir);
    if (write_idx(p, 0x801, 1, l6, lb, 6)) return 1;
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte.gz", dir);
    if (write_idx(p, 0x803, 3, d4, im, 4 * 25)) return 1;
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte.gz", dir);
    return write_idx(p, 0x801, 1, l4, lb, 4);
}

/* CIFAR-10 binaries with n records per file; file `bad_file` (1..6, 0 = none) gets `extra`
 * stray bytes; file `skip` (1..6, 0 = none) is not written. */
static int write_cifar10(const char *dir, int n, int bad_file, int extra, int skip) {
    mkdir(dir, 0755);
    for (int b = 1; b <= 6; b++) {
        if (b == skip) continue;
        char p[1200];
        if (b <= 5)
            snprintf(p, sizeof p, "%s/data_batch_%d.bin", dir, b);
        else
            snprintf(p, sizeof p, "%s/test_batch.bin", dir);
        FILE *f = fopen(p, "wb");
        if (!f) return 1;
        for (int i = 0; i < n; i++) {
            uint8_t rec[3073];
            rec[0] = (uint8_t)((i + b) % 10);
            for (int j = 0; j < 3072; j++) rec[1 + j] = (uint8_t)(i + j);
            fwrite(rec, 1, sizeof rec, f);
        }
        for (int e = 0; b == bad_file && e < extra; e++) fputc(e, f);
        fclose(f);
    }
    return 0;
}

static digest g_good_ds, g_good_ck;

static al_status save_smallcnn(al_ctx *ctx, uint64_t id, const char *path, al_model **out) {
    AL_TRY(al_model_create("smallcnn", 10, 1, 28, out));
    AL_TRY(al_model_setup(ctx, *out, 1, 1));
    AL_TRY(al_model_init_params(ctx, *out, id));
    return path ? al_checkpoint_save(ctx, *out, NULL, path) : AL_OK;
}

static int setup(void) {
    snprintf(g_dir, sizeof g_dir, "%s/io_badinput", al_test_tmpdir());
    mkdir(g_dir, 0755);
    for (size_t i = 0; i < AL_ARRAY_LEN(k_fixtures); i++)
        AL_EXPECT(write_text(P(k_fixtures[i].name), k_fixtures[i].text) == 0, "fixture %s", k_fixtures[i].name);
    /* good dataset: train 40 x 1x4x4, test 10, 10 classes */
    uint8_t im[40 * 16];
    int32_t lb[40];
    for (int i = 0; i < 40 * 16; i++) im[i] = (uint8_t)(i * 13);
    for (int i = 0; i < 40; i++) lb[i] = i % 10;
    al_dataset_writer w;
    AL_EXPECT(al_dataset_writer_open(&w, P("good.h5"), "good", 10, NULL) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_dataset_writer_add_split(&w, "train", 40, 1, 4, 4, im, lb) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_dataset_writer_add_split(&w, "test", 10, 1, 4, 4, im, lb) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_dataset_writer_close(&w) == AL_OK, "%s", al_errmsg());
    /* good checkpoint */
    al_ctx ctx;
    al_model *m = NULL;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 0) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(save_smallcnn(&ctx, 1, P("good_ckpt.h5"), &m) == AL_OK, "%s", al_errmsg());
    al_model_destroy(&ctx, m);
    al_ctx_fini(&ctx);
    /* truncated copies */
    AL_EXPECT(copy_prefix(P("good.h5"), P("ds_truncated.h5"), 0.5) == 0, "truncate");
    AL_EXPECT(copy_prefix(P("good_ckpt.h5"), P("ck_truncated.h5"), 0.6) == 0, "truncate");
    /* h5py-derived bad files */
    char cmd[3000], out[4096];
    snprintf(cmd, sizeof cmd, "%s %s/tests/badinput/make_bad.py %s 2>&1", al_test_python(), al_test_source_dir(),
             g_dir);
    FILE *p = popen(cmd, "r");
    AL_EXPECT(p, "popen");
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    int rc = pclose(p);
    AL_EXPECT(WIFEXITED(rc) && WEXITSTATUS(rc) == 0 && strstr(out, "OK"), "make_bad.py failed: %s", out);
    /* converter inputs */
    AL_EXPECT(write_idx_set(P("idx_good"), 3) == 0, "idx fixtures");
    AL_EXPECT(write_cifar10(P("cifar_good"), 2, 0, 0, 0) == 0, "cifar fixtures");
    AL_EXPECT(write_cifar10(P("cifar_badsize"), 2, 3, 5, 0) == 0, "cifar fixtures");
    AL_EXPECT(write_cifar10(P("cifar_missing"), 2, 0, 0, 4) == 0, "cifar fixtures");
    g_good_ds = file_digest(P("good.h5"));
    g_good_ck = file_digest(P("good_ckpt.h5"));
    return 0;
}

/* ---------------------------------------------------------------- dataset cases */

/* Open `split` of `file` and read every row (labels are range-checked on read). */
static al_status ds_read_all(const char *file, const char *split) {
    al_dataset ds;
    AL_TRY(al_dataset_open(&ds, P(file), split));
    uint8_t *im = malloc((size_t)ds.n * ds.c * ds.h * ds.w + 1);
    int32_t *lb = malloc((size_t)ds.n * 4 + 4);
    al_status st = al_dataset_read(&ds, 0, ds.n, im, lb);
    free(im);
    free(lb);
    al_dataset_close(&ds);
    return st;
}

static int case_ds_missing_file(void) {
    EXPECT_FAIL(ds_read_all("no_such_file.h5", "train"), "no_such_file.h5: cannot open", "No such file or directory");
    return 0;
}
static int case_ds_not_hdf5(void) {
    EXPECT_FAIL(ds_read_all("notes.txt", "train"), "notes.txt: not an HDF5 file");
    return 0;
}
static int case_ds_truncated(void) {
    EXPECT_FAIL(ds_read_all("ds_truncated.h5", "train"), "ds_truncated.h5", "truncated or corrupt");
    return 0;
}
static int case_ds_directory(void) {
    EXPECT_FAIL(ds_read_all("idx_good", "train"), "idx_good: is a directory");
    return 0;
}
static int case_ds_wrong_format(void) {
    EXPECT_FAIL(ds_read_all("ds_wrong_format.h5", "train"),
                "ds_wrong_format.h5:/: format = \"advlab-checkpoint\", expected \"advlab-dataset\"");
    return 0;
}
static int case_ds_wrong_version(void) {
    EXPECT_FAIL(ds_read_all("ds_version2.h5", "train"), "ds_version2.h5:/: format_version = 2, expected 1");
    return 0;
}
static int case_ds_missing_split(void) {
    EXPECT_FAIL(ds_read_all("good.h5", "val"), "good.h5:/val: no such split (file has: test, train)");
    return 0;
}
static int case_ds_missing_num_classes(void) {
    EXPECT_FAIL(ds_read_all("ds_no_num_classes.h5", "train"), "ds_no_num_classes.h5:/: attribute 'num_classes' missing");
    return 0;
}
static int case_ds_num_classes_string(void) {
    EXPECT_FAIL(ds_read_all("ds_num_classes_str.h5", "train"),
                "ds_num_classes_str.h5:/: attribute 'num_classes' is string, expected an integer");
    return 0;
}
static int case_ds_class_names_count(void) {
    EXPECT_FAIL(ds_read_all("ds_class_names3.h5", "train"),
                "ds_class_names3.h5:/: attribute 'class_names' has 3 strings, expected 10");
    return 0;
}
static int case_ds_images_rank3(void) {
    EXPECT_FAIL(ds_read_all("ds_images_rank3.h5", "train"), "ds_images_rank3.h5:/train/images: rank 3 [40, 4, 4]",
                "expected uint8 [N, C, H, W]");
    return 0;
}
static int case_ds_images_float(void) {
    EXPECT_FAIL(ds_read_all("ds_images_float.h5", "train"),
                "ds_images_float.h5:/train/images: dtype float (4 bytes), expected uint8");
    return 0;
}
static int case_ds_labels_length(void) {
    EXPECT_FAIL(ds_read_all("ds_labels_short.h5", "train"),
                "ds_labels_short.h5:/train/labels: 39 labels for 40 images");
    return 0;
}
static int case_ds_labels_missing(void) {
    EXPECT_FAIL(ds_read_all("ds_no_labels.h5", "train"), "ds_no_labels.h5:/train/labels: missing");
    return 0;
}
static int case_ds_labels_float(void) {
    EXPECT_FAIL(ds_read_all("ds_labels_float.h5", "train"),
                "ds_labels_float.h5:/train/labels: dtype float (8 bytes), expected int32");
    return 0;
}
static int case_ds_label_out_of_range(void) {
    /* the exact style of style.md rule 13, via both read paths */
    EXPECT_FAIL(ds_read_all("ds_label10.h5", "train"), "ds_label10.h5:/train/labels: label 10 at index 7 outside [0,10)");
    al_dataset ds;
    AL_EXPECT(al_dataset_open(&ds, P("ds_label10.h5"), "train") == AL_OK, "%s", al_errmsg());
    uint8_t im[3 * 16];
    int32_t lb[3];
    int64_t ok_rows[3] = {9, 0, 6}, bad_rows[3] = {9, 7, 0};
    AL_EXPECT(al_dataset_read_rows(&ds, ok_rows, 3, im, lb) == AL_OK, "rows without index 7: %s", al_errmsg());
    EXPECT_FAIL(al_dataset_read_rows(&ds, bad_rows, 3, im, lb), "ds_label10.h5:/train/labels: label 10 at index 7 outside [0,10)");
    al_dataset_close(&ds);
    return 0;
}
static int case_ds_label_minus1(void) {
    EXPECT_FAIL(ds_read_all("ds_label_minus1.h5", "train"),
                "ds_label_minus1.h5:/train/labels: label -1 at index 3 outside [0,10)", "OOD");
    return 0;
}
static int case_ds_label_huge(void) {
    EXPECT_FAIL(ds_read_all("ds_label_huge.h5", "train"), "ds_label_huge.h5:/train/labels: label outside the int32 range");
    return 0;
}
static int case_ds_pixel_overflow(void) {
    EXPECT_FAIL(ds_read_all("ds_pixel300.h5", "train"), "ds_pixel300.h5:/train/images: pixel value outside [0, 255]");
    return 0;
}

/* ---------------------------------------------------------------- checkpoint cases */

/* Build a smallcnn with known parameters, try to load `file`, and check the failure left the
 * model's parameters untouched. */
static int ck_load_fails(const char *file, const char *const *subs, const char *src, int line) {
    al_ctx ctx;
    al_model *m = NULL;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 0) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(save_smallcnn(&ctx, 9, NULL, &m) == AL_OK, "%s", al_errmsg());
    size_t nb = m->n_param_floats * sizeof(float);
    float *before = malloc(nb), *after = malloc(nb);
    AL_EXPECT(al_copy_to_host(&ctx, before, m->data, nb) == AL_OK, "copy");
    al_clear_error();
    al_status st = al_checkpoint_load(&ctx, m, P(file));
    int rc = check_fail_(st, src, line, subs);
    AL_EXPECT(al_copy_to_host(&ctx, after, m->data, nb) == AL_OK, "copy");
    if (!rc && memcmp(before, after, nb) != 0) {
        fprintf(stderr, "  FAIL %s:%d: failed load modified the model\n", src, line);
        rc = 1;
    }
    free(before);
    free(after);
    al_model_destroy(&ctx, m);
    al_ctx_fini(&ctx);
    return rc;
}
#define EXPECT_LOAD_FAIL(file, ...)                                                                  \
    do {                                                                                             \
        if (ck_load_fails((file), (const char *const[]){__VA_ARGS__, NULL}, __FILE__, __LINE__)) return 1; \
    } while (0)

static int case_ck_missing_file(void) {
    EXPECT_LOAD_FAIL("no_such_ckpt.h5", "no_such_ckpt.h5: cannot open", "No such file or directory");
    return 0;
}
static int case_ck_truncated(void) {
    EXPECT_LOAD_FAIL("ck_truncated.h5", "ck_truncated.h5", "truncated");
    return 0;
}
static int case_ck_wrong_format(void) {
    EXPECT_LOAD_FAIL("ck_wrong_format.h5", "ck_wrong_format.h5:/: format = \"advlab-dataset\", expected \"advlab-checkpoint\"");
    EXPECT_FAIL(ds_read_all("good_ckpt.h5", "train"), "good_ckpt.h5:/: format = \"advlab-checkpoint\", expected \"advlab-dataset\"");
    return 0;
}
static int case_ck_unknown_arch(void) {
    al_model *m = NULL;
    EXPECT_FAIL(al_checkpoint_create_model(P("ck_unknown_arch.h5"), &m), "ck_unknown_arch.h5:/model: unknown arch 'resnet9000'");
    AL_EXPECT(m == NULL, "model returned on failure");
    EXPECT_LOAD_FAIL("ck_unknown_arch.h5", "ck_unknown_arch.h5:/model: arch 'resnet9000', but the model is 'smallcnn'");
    return 0;
}
static int case_ck_arch_mismatch(void) {
    al_model *m = NULL;
    EXPECT_FAIL(al_checkpoint_create_model(P("ck_arch_resnet18.h5"), &m), "ck_arch_resnet18.h5:/model: arch resnet18: image_size 20");
    EXPECT_LOAD_FAIL("ck_arch_resnet18.h5", "ck_arch_resnet18.h5:/model: arch 'resnet18', but the model is 'smallcnn'");
    return 0;
}
static int case_ck_missing_param(void) {
    EXPECT_LOAD_FAIL("ck_missing_param.h5", "ck_missing_param.h5:/model/classifier.fc3.bias: missing (expected float32 [10])");
    return 0;
}
static int case_ck_misshaped_param(void) {
    EXPECT_LOAD_FAIL("ck_misshaped.h5", "ck_misshaped.h5:/model/classifier.fc3.weight: shape [10, 100], expected [10, 200]");
    return 0;
}
static int case_ck_extra_param(void) {
    EXPECT_LOAD_FAIL("ck_extra_param.h5", "ck_extra_param.h5:/model/classifier.fc4.weight: unexpected entry",
                     "arch smallcnn");
    return 0;
}
static int case_ck_int_param(void) {
    EXPECT_LOAD_FAIL("ck_int_param.h5", "ck_int_param.h5:/model/feature_extractor.conv1.bias: dtype integer (4 bytes, signed), expected float32");
    return 0;
}
static int case_ck_mean_without_std(void) {
    EXPECT_LOAD_FAIL("ck_mean_no_std.h5", "ck_mean_no_std.h5:/model: attribute 'mean' present but 'std' missing");
    al_ckpt_info info;
    EXPECT_FAIL(al_checkpoint_info(P("ck_std_zero.h5"), &info), "ck_std_zero.h5:/model: std[0] = 0, expected a finite value > 0");
    EXPECT_FAIL(al_checkpoint_info(P("ck_no_model_attr.h5"), &info), "ck_no_model_attr.h5:/model: attribute 'num_classes' missing");
    return 0;
}
static int case_ck_load_train_without_state(void) {
    al_ctx ctx;
    al_model *m = NULL;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 0) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(save_smallcnn(&ctx, 2, NULL, &m) == AL_OK, "%s", al_errmsg());
    al_train_state_in ts = {0};
    al_clear_error();
    al_status st = al_checkpoint_load_train(P("good_ckpt.h5"), m, &ts);
    al_model_destroy(&ctx, m);
    al_ctx_fini(&ctx);
    EXPECT_FAILED(st, "good_ckpt.h5:/train: missing");
    return 0;
}

/* Overwriting a checkpoint fails (its .tmp is blocked by a directory): the old file stays
 * byte-identical and loadable. */
static int case_ck_overwrite_failure_keeps_old(void) {
    al_ctx ctx;
    al_model *m = NULL, *m2 = NULL;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 0) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(save_smallcnn(&ctx, 3, P("keep_ckpt.h5"), &m) == AL_OK, "%s", al_errmsg());
    digest before = file_digest(P("keep_ckpt.h5"));
    AL_EXPECT(save_smallcnn(&ctx, 4, NULL, &m2) == AL_OK, "%s", al_errmsg());
    char tmpdir[1300];
    snprintf(tmpdir, sizeof tmpdir, "%s.tmp", P("keep_ckpt.h5"));
    mkdir(tmpdir, 0755);
    EXPECT_FAIL(al_checkpoint_save(&ctx, m2, NULL, P("keep_ckpt.h5")), "keep_ckpt.h5: cannot create temporary file",
                "Is a directory");
    rmdir(tmpdir);
    EXPECT_INTACT(P("keep_ckpt.h5"), before);
    AL_EXPECT(al_checkpoint_load(&ctx, m2, P("keep_ckpt.h5")) == AL_OK, "old checkpoint unloadable: %s", al_errmsg());
    float *a = malloc(m->n_param_floats * 4), *b = malloc(m->n_param_floats * 4);
    al_copy_to_host(&ctx, a, m->data, m->n_param_floats * 4);
    al_copy_to_host(&ctx, b, m2->data, m->n_param_floats * 4);
    AL_EXPECT(memcmp(a, b, m->n_param_floats * 4) == 0, "old checkpoint holds other values");
    free(a);
    free(b);
    al_model_destroy(&ctx, m);
    al_model_destroy(&ctx, m2);
    al_ctx_fini(&ctx);
    return 0;
}

/* Unwritable output directory: a path below a regular file (fails even as root), and a
 * read-only directory when not running as root. */
static int case_ck_unwritable_dir(void) {
    al_ctx ctx;
    al_model *m = NULL;
    AL_EXPECT(al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 0) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(save_smallcnn(&ctx, 5, NULL, &m) == AL_OK, "%s", al_errmsg());
    EXPECT_FAIL(al_checkpoint_save(&ctx, m, NULL, P("notes.txt/ck.h5")), "notes.txt/ck.h5: cannot create temporary file",
                "Not a directory");
    const char *ro = P("readonly_dir");
    mkdir(ro, 0755);
    char path[1300];
    snprintf(path, sizeof path, "%s/ck.h5", ro);
    AL_EXPECT(al_checkpoint_save(&ctx, m, NULL, path) == AL_OK, "%s", al_errmsg());
    digest before = file_digest(path);
    if (geteuid() != 0) {
        chmod(ro, 0555);
        al_clear_error();
        al_status st = al_checkpoint_save(&ctx, m, NULL, path);
        chmod(ro, 0755);
        EXPECT_FAILED(st, "readonly_dir/ck.h5: cannot create temporary file", "Permission denied");
        EXPECT_INTACT(path, before);
    } else {
        printf("  (running as root: read-only directory variant skipped)\n");
    }
    al_model_destroy(&ctx, m);
    al_ctx_fini(&ctx);
    return 0;
}

/* ---------------------------------------------------------------- converter cases */

/* Convert good input to `out` first, then the bad one must fail and leave `out` intact. */
static int convert_keeps_old(al_status bad_st, const char *out, digest before, const char *const *subs,
                             const char *src, int line) {
    if (check_fail_(bad_st, src, line, subs)) return 1;
    return check_intact_(out, before, src, line);
}

static digest good_idx_output(const char *out) {
    if (al_convert_idx(P("idx_good"), "mnist", out) != AL_OK) {
        fprintf(stderr, "  good IDX conversion failed: %s\n", al_errmsg());
        return (digest){0, 0, 0};
    }
    return file_digest(out);
}

#define EXPECT_CONVERT_FAIL(call, out, before, ...)                                                          \
    do {                                                                                                     \
        al_clear_error();                                                                                    \
        al_status cst_ = (call);                                                                             \
        if (convert_keeps_old(cst_, (out), (before), (const char *const[]){__VA_ARGS__, NULL}, __FILE__, __LINE__)) \
            return 1;                                                                                        \
    } while (0)

static int case_idx_truncated_gz(void) {
    const char *dir = P("idx_trunc");
    AL_EXPECT(write_idx_set(dir, 3) == 0, "fixture");
    char f[1300];
    snprintf(f, sizeof f, "%s/train-images-idx3-ubyte.gz", dir);
    struct stat sb;
    stat(f, &sb);
    AL_EXPECT(truncate(f, sb.st_size * 6 / 10) == 0, "truncate: %s", strerror(errno));
    const char *out = P("idx_out.h5");
    digest before = good_idx_output(out);
    EXPECT_CONVERT_FAIL(al_convert_idx(dir, "mnist", out), out, before, "idx_trunc/train-images-idx3-ubyte.gz: truncated");
    return 0;
}
static int case_idx_wrong_magic(void) {
    const char *dir = P("idx_magic");
    AL_EXPECT(write_idx_set(dir, 3) == 0, "fixture");
    char f[1300];
    snprintf(f, sizeof f, "%s/t10k-labels-idx1-ubyte.gz", dir);
    const uint32_t d[1] = {4};
    const uint8_t lb[4] = {1, 2, 3, 4};
    AL_EXPECT(write_idx(f, 0x803, 1, d, lb, 4) == 0, "fixture"); /* image magic on a label file */
    const char *out = P("idx_out2.h5");
    digest before = good_idx_output(out);
    EXPECT_CONVERT_FAIL(al_convert_idx(dir, "mnist", out), out, before,
                        "idx_magic/t10k-labels-idx1-ubyte.gz: bad IDX magic 0x00000803, expected 0x00000801");
    return 0;
}
static int case_idx_missing_file(void) {
    const char *dir = P("idx_missing");
    AL_EXPECT(write_idx_set(dir, 3) == 0, "fixture");
    char f[1300];
    snprintf(f, sizeof f, "%s/t10k-images-idx3-ubyte.gz", dir);
    unlink(f);
    EXPECT_FAIL(al_convert_idx(dir, "fashion-mnist", P("idx_out3.h5")),
                "idx_missing/t10k-images-idx3-ubyte.gz: cannot open", "No such file or directory");
    return 0;
}
static int case_idx_label_out_of_range(void) {
    const char *dir = P("idx_label");
    AL_EXPECT(write_idx_set(dir, 12) == 0, "fixture");
    EXPECT_FAIL(al_convert_idx(dir, "mnist", P("idx_out4.h5")),
                "idx_label/train-labels-idx1-ubyte.gz: label 12 at index 0 outside [0,10)");
    return 0;
}
static int case_idx_count_mismatch(void) {
    const char *dir = P("idx_count");
    AL_EXPECT(write_idx_set(dir, 3) == 0, "fixture");
    char f[1300];
    snprintf(f, sizeof f, "%s/train-labels-idx1-ubyte.gz", dir);
    const uint32_t d[1] = {5};
    const uint8_t lb[5] = {1, 2, 3, 4, 5};
    AL_EXPECT(write_idx(f, 0x801, 1, d, lb, 5) == 0, "fixture");
    EXPECT_FAIL(al_convert_idx(dir, "mnist", P("idx_out5.h5")), "idx_count/train-labels-idx1-ubyte.gz: 5 labels, but",
                "has 6 images");
    return 0;
}
static int case_cifar_wrong_size(void) {
    const char *out = P("cifar_out.h5");
    AL_EXPECT(al_convert_cifar(P("cifar_good"), 10, out) == AL_OK, "%s", al_errmsg());
    digest before = file_digest(out);
    EXPECT_CONVERT_FAIL(al_convert_cifar(P("cifar_badsize"), 10, out), out, before,
                        "cifar_badsize/data_batch_3.bin: size 6151 bytes is not a positive multiple of the 3073-byte CIFAR-10 record");
    /* a CIFAR-10 batch fed to the CIFAR-100 reader is the wrong record size too */
    const char *d100 = P("cifar100_wrong");
    mkdir(d100, 0755);
    char f[1300];
    snprintf(f, sizeof f, "%s/train.bin", d100);
    FILE *fp = fopen(f, "wb");
    for (int i = 0; i < 3073 * 3; i++) fputc(i & 7, fp);
    fclose(fp);
    EXPECT_CONVERT_FAIL(al_convert_cifar(d100, 100, out), out, before,
                        "cifar100_wrong/train.bin: size 9219 bytes is not a positive multiple of the 3074-byte CIFAR-100 record");
    return 0;
}
static int case_cifar_missing_batch(void) {
    EXPECT_FAIL(al_convert_cifar(P("cifar_missing"), 10, P("cifar_out2.h5")),
                "cifar_missing/data_batch_4.bin: cannot open", "No such file or directory");
    return 0;
}
static int case_convert_unwritable_dir(void) {
    EXPECT_FAIL(al_convert_cifar(P("cifar_good"), 10, P("no/such/dir/out.h5")),
                "no/such/dir/out.h5: cannot create temporary file", "No such file or directory");
    /* an existing output whose .tmp cannot be created stays intact */
    const char *out = P("cifar_keep.h5");
    AL_EXPECT(al_convert_cifar(P("cifar_good"), 10, out) == AL_OK, "%s", al_errmsg());
    digest before = file_digest(out);
    char tmp[1300];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    mkdir(tmp, 0755);
    al_clear_error();
    al_status st = al_convert_cifar(P("cifar_good"), 10, out);
    rmdir(tmp);
    EXPECT_FAILED(st, "cifar_keep.h5: cannot create temporary file", "Is a directory");
    EXPECT_INTACT(out, before);
    return 0;
}

/* ---------------------------------------------------------------- CLI cases */

typedef struct cli_case {
    const char *name;
    const char *args;     /* after the binary; @D@ expands to the test directory */
    int rc;               /* expected exit status: 1 failure, 2 usage */
    const char *must[4];  /* substrings of stderr's first line */
    const char *keep;     /* file in @D@ that must be byte-identical afterwards, or NULL */
} cli_case;

/* Extension point: config-key checks (unknown section/key, out-of-range value, ...) add rows
 * here, with their INI files in k_fixtures[]. */
static const cli_case k_cli_cases[] = {
    {"cli_unknown_flag", "convert --format mnist --bogus 1 --out @D@/x.h5", 2, {"advlab convert: unknown flag '--bogus'"}, NULL},
    {"cli_missing_value", "convert --format", 2, {"advlab convert: --format needs a value"}, NULL},
    {"cli_unknown_format", "convert --format svhn --input @D@ --out @D@/x.h5", 2,
     {"advlab convert: unknown --format 'svhn'", "fashion-mnist, mnist, cifar10, cifar100"}, NULL},
    {"cli_missing_out", "convert --format fashion-mnist", 2, {"advlab convert: --out is required"}, NULL},
    {"cli_missing_input", "convert --format cifar10 --out @D@/x.h5", 2, {"--input DIR is required for --format cifar10"}, NULL},
    {"cli_stray_argument", "convert stray --format mnist", 2, {"unexpected argument 'stray'"}, NULL},
    {"cli_unknown_verb", "frobnicate", 2, {"advlab: error: unknown verb 'frobnicate'"}, NULL},
    {"cli_convert_bad_cifar", "convert --format cifar10 --input @D@/cifar_badsize --out @D@/cli_keep.h5", 1,
     {"advlab: error: ", "cifar_badsize/data_batch_3.bin: size 6151 bytes"}, "cli_keep.h5"},
    {"cli_convert_unwritable", "convert --format cifar10 --input @D@/cifar_good --out @D@/notes.txt/x.h5", 1,
     {"advlab: error: ", "notes.txt/x.h5: cannot create temporary file", "Not a directory"}, "notes.txt"},
    {"cli_info_not_hdf5", "info @D@/notes.txt", 1, {"advlab: error: ", "notes.txt: not an HDF5 file"}, "notes.txt"},
    {"cli_info_bad_checkpoint", "info @D@/ck_missing_param.h5", 1,
     {"advlab: error: ", "ck_missing_param.h5:/model/classifier.fc3.bias: missing"}, NULL},
    {"cli_info_bad_dataset", "info @D@/ds_images_float.h5", 1,
     {"advlab: error: ", "ds_images_float.h5:/train/images: dtype float"}, NULL},
    {"cli_info_unknown_flag", "info --bogus", 2, {"advlab info: unknown flag '--bogus'"}, NULL},
    {"cli_info_bad_number", "info --arch smallcnn --num-classes ten", 2, {"--num-classes 'ten' is not an integer"}, NULL},
    {"cli_info_unknown_arch", "info --arch resnet9000", 1, {"advlab: error: unknown arch 'resnet9000'"}, NULL},
};

static const char *g_cli_name;

static int run_cli_case(const cli_case *c) {
    if (!g_advlab[0]) {
        printf("skipped: no --advlab=PATH given\n");
        return AL_SKIP_CODE;
    }
    /* expand @D@ */
    char args[2048] = "", cmd[8192];
    for (const char *s = c->args; *s;) {
        if (!strncmp(s, "@D@", 3)) {
            strncat(args, g_dir, sizeof args - strlen(args) - 1);
            s += 3;
        } else {
            size_t l = strlen(args);
            if (l + 1 < sizeof args) {
                args[l] = *s;
                args[l + 1] = 0;
            }
            s++;
        }
    }
    char keep_path[1300] = "";
    digest before = {0, 0, 0};
    if (c->keep) {
        snprintf(keep_path, sizeof keep_path, "%s/%s", g_dir, c->keep);
        if (access(keep_path, F_OK) != 0 && !strcmp(c->keep, "cli_keep.h5"))
            AL_EXPECT(al_convert_cifar(P("cifar_good"), 10, keep_path) == AL_OK, "%s", al_errmsg());
        before = file_digest(keep_path);
    }
    char err[1300];
    snprintf(err, sizeof err, "%s/%s.stderr", g_dir, c->name);
    snprintf(cmd, sizeof cmd, "'%s' %s > /dev/null 2> '%s'", g_advlab, args, err);
    int st = system(cmd);
    int rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    char out[8192] = "";
    FILE *f = fopen(err, "r");
    if (f) {
        size_t n = fread(out, 1, sizeof out - 1, f);
        out[n] = 0;
        fclose(f);
    }
    char *nl = strchr(out, '\n');
    int lines = 0;
    for (char *p = out; *p; p++) lines += *p == '\n';
    fprintf(stderr, "  $ advlab %s\n  -> exit %d: %.*s\n", c->args, rc, nl ? (int)(nl - out) : (int)strlen(out), out);
    AL_EXPECT(rc == c->rc, "exit status %d, expected %d; stderr: %s", rc, c->rc, out);
    AL_EXPECT(nl && out[0], "no error line on stderr");
    /* failures: exactly one line; usage errors: the message line, then the usage text */
    AL_EXPECT(c->rc != 1 || lines == 1, "%d lines on stderr, expected one: %s", lines, out);
    AL_EXPECT(c->rc != 2 || strstr(nl, "usage: advlab"), "usage error without a usage line: %s", out);
    *nl = 0;
    for (int i = 0; i < 4 && c->must[i]; i++)
        AL_EXPECT(strstr(out, c->must[i]), "error line lacks \"%s\": %s", c->must[i], out);
    if (c->keep) EXPECT_INTACT(keep_path, before);
    return 0;
}

static int case_cli(void) {
    for (size_t i = 0; i < AL_ARRAY_LEN(k_cli_cases); i++)
        if (!strcmp(k_cli_cases[i].name, g_cli_name)) return run_cli_case(&k_cli_cases[i]);
    return 1;
}

/* Last: none of the cases above changed the good inputs they were derived from. */
static int case_good_inputs_intact(void) {
    EXPECT_INTACT(P("good.h5"), g_good_ds);
    EXPECT_INTACT(P("good_ckpt.h5"), g_good_ck);
    AL_EXPECT(ds_read_all("good.h5", "train") == AL_OK, "%s", al_errmsg());
    return 0;
}

/* ---------------------------------------------------------------- main */

static const al_case k_cases[] = {
    {"ds_missing_file", case_ds_missing_file},
    {"ds_not_hdf5", case_ds_not_hdf5},
    {"ds_truncated", case_ds_truncated},
    {"ds_directory", case_ds_directory},
    {"ds_wrong_format", case_ds_wrong_format},
    {"ds_wrong_version", case_ds_wrong_version},
    {"ds_missing_split", case_ds_missing_split},
    {"ds_missing_num_classes", case_ds_missing_num_classes},
    {"ds_num_classes_string", case_ds_num_classes_string},
    {"ds_class_names_count", case_ds_class_names_count},
    {"ds_images_rank3", case_ds_images_rank3},
    {"ds_images_float", case_ds_images_float},
    {"ds_labels_length", case_ds_labels_length},
    {"ds_labels_missing", case_ds_labels_missing},
    {"ds_labels_float", case_ds_labels_float},
    {"ds_label_out_of_range", case_ds_label_out_of_range},
    {"ds_label_minus1", case_ds_label_minus1},
    {"ds_label_huge", case_ds_label_huge},
    {"ds_pixel_overflow", case_ds_pixel_overflow},
    {"ck_missing_file", case_ck_missing_file},
    {"ck_truncated", case_ck_truncated},
    {"ck_wrong_format", case_ck_wrong_format},
    {"ck_unknown_arch", case_ck_unknown_arch},
    {"ck_arch_mismatch", case_ck_arch_mismatch},
    {"ck_missing_param", case_ck_missing_param},
    {"ck_misshaped_param", case_ck_misshaped_param},
    {"ck_extra_param", case_ck_extra_param},
    {"ck_int_param", case_ck_int_param},
    {"ck_mean_without_std", case_ck_mean_without_std},
    {"ck_load_train_without_state", case_ck_load_train_without_state},
    {"ck_overwrite_failure_keeps_old", case_ck_overwrite_failure_keeps_old},
    {"ck_unwritable_dir", case_ck_unwritable_dir},
    {"idx_truncated_gz", case_idx_truncated_gz},
    {"idx_wrong_magic", case_idx_wrong_magic},
    {"idx_missing_file", case_idx_missing_file},
    {"idx_label_out_of_range", case_idx_label_out_of_range},
    {"idx_count_mismatch", case_idx_count_mismatch},
    {"cifar_wrong_size", case_cifar_wrong_size},
    {"cifar_missing_batch", case_cifar_missing_batch},
    {"convert_unwritable_dir", case_convert_unwritable_dir},
};

int main(int argc, char **argv) {
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if (i > 0 && !strncmp(argv[i], "--advlab=", 9))
            snprintf(g_advlab, sizeof g_advlab, "%s", argv[i] + 9);
        else
            argv[n++] = argv[i];
    }
    const char *only = n > 1 ? argv[1] : NULL;
    if (setup()) {
        fprintf(stderr, "setup of the bad-input fixtures failed\n");
        return 1;
    }
    /* Library cases, then one case per CLI row, then the final integrity check. The CLI rows
     * share case_cli (it looks its row up by name), so this loop replaces al_run_cases. */
    enum { N_LIB = (int)AL_ARRAY_LEN(k_cases), N_CLI = (int)AL_ARRAY_LEN(k_cli_cases) };
    int failed = 0, passed = 0, skipped = 0;
    for (int i = 0; i < N_LIB + N_CLI + 1; i++) {
        al_case c;
        if (i < N_LIB)
            c = k_cases[i];
        else if (i < N_LIB + N_CLI)
            c = (al_case){k_cli_cases[i - N_LIB].name, case_cli};
        else
            c = (al_case){"good_inputs_intact", case_good_inputs_intact};
        if (only && strcmp(only, c.name) != 0) continue;
        g_cli_name = c.name;
        fprintf(stderr, "[ RUN  ] %s\n", c.name);
        int rc = c.fn();
        fprintf(stderr, "[ %s ] %s\n", rc == 0 ? " OK " : rc == AL_SKIP_CODE ? "SKIP" : "FAIL", c.name);
        if (rc == 0)
            passed++;
        else if (rc == AL_SKIP_CODE)
            skipped++;
        else
            failed++;
    }
    printf("bad-input catalogue: %d passed, %d failed, %d skipped\n", passed, failed, skipped);
    if (failed) return 1;
    if (passed == 0 && skipped == 0) {
        fprintf(stderr, "no case named %s\n", only ? only : "(none)");
        return 1;
    }
    return passed == 0 ? AL_SKIP_CODE : 0;
}
