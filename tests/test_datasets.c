/* test_datasets.c: dataset files (formats.md §1) and converters.
 * - write/read round trips: row ranges across chunk boundaries, arbitrary rows (any order,
 *   duplicates), against a closed-form pixel/label pattern;
 * - h5py (Debian python3) reads what advlab writes (attrs, dtypes, chunks, values) and advlab
 *   reads what h5py writes (int64 labels, int16 pixels, fixed-length strings, no chunking);
 * - real Fashion-MNIST conversion compared with an independent gzip + numpy decode of the same
 *   IDX files; synthetic CIFAR-10/100 binaries; the `advlab convert` / `advlab info` CLI.
 * Usage: test_datasets [--advlab=PATH] [case]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <zlib.h>

#include "datasets/h5data.h"
#include "harness/check.h"

static char g_advlab[1024];
static char g_dir[1024];

/* ---------------------------------------------------------------- helpers */

static void tpath(char *buf, size_t len, const char *name) { snprintf(buf, len, "%s/%s", g_dir, name); }

/* Run a shell command; capture stdout+stderr into out; return the exit status (-1 if it died). */
static int run(const char *cmd, char *out, size_t len) {
    char full[8300];
    snprintf(full, sizeof full, "%s 2>&1", cmd);
    FILE *p = popen(full, "r");
    if (!p) return -1;
    size_t n = 0;
    if (out && len) {
        out[0] = 0;
        n = fread(out, 1, len - 1, p);
        out[n] = 0;
    }
    char sink[512];
    while (fread(sink, 1, sizeof sink, p) > 0) {}
    int rc = pclose(p);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

/* Write `code` to <dir>/<name>.py and run it with python3 and args. */
static int run_py(const char *name, const char *code, const char *args, char *out, size_t len) {
    char py[1100], cmd[8192];
    tpath(py, sizeof py, name);
    strcat(py, ".py");
    FILE *f = fopen(py, "w");
    if (!f) return -1;
    fputs(code, f);
    fclose(f);
    snprintf(cmd, sizeof cmd, "%s %s %s", al_test_python(), py, args);
    return run(cmd, out, len);
}

static uint8_t px(int64_t row, size_t j, int salt) {
    return (uint8_t)((row * 31 + (int64_t)j * 7 + salt * 101) & 255);
}
static int32_t lab(int64_t row, int salt, int k) { return (int32_t)((row * 7 + 3 + salt) % k); }

typedef struct split_data {
    int64_t n;
    int c, h, w;
    uint8_t *im;
    int32_t *lb;
} split_data;

static split_data make_split(int64_t n, int c, int h, int w, int salt, int k) {
    split_data s = {n, c, h, w, malloc((size_t)n * c * h * w), malloc((size_t)n * sizeof(int32_t))};
    size_t rb = (size_t)c * h * w;
    for (int64_t r = 0; r < n; r++) {
        for (size_t j = 0; j < rb; j++) s.im[(size_t)r * rb + j] = px(r, j, salt);
        s.lb[r] = lab(r, salt, k);
    }
    return s;
}

static const char *const k_names[10] = {"zero", "one", "two", "three", "four", "five", "six", "seven",
                                        "eight", "nine \xc3\xa9"}; /* one non-ASCII UTF-8 name */

/* The reference file: train 1000 x 3x5x7 (not a multiple of the 256-row chunk), test 37. */
static int write_reference(const char *path, split_data *tr, split_data *te) {
    *tr = make_split(1000, 3, 5, 7, 0, 10);
    *te = make_split(37, 3, 5, 7, 1, 10);
    al_dataset_writer w;
    AL_EXPECT(al_dataset_writer_open(&w, path, "pattern", 10, k_names) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_dataset_writer_add_split(&w, "train", tr->n, 3, 5, 7, tr->im, tr->lb) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_dataset_writer_add_split(&w, "test", te->n, 3, 5, 7, te->im, te->lb) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_dataset_writer_close(&w) == AL_OK, "%s", al_errmsg());
    return 0;
}

static void free_split(split_data *s) {
    free(s->im);
    free(s->lb);
}

/* ---------------------------------------------------------------- cases */

static int case_roundtrip_ranges(void) {
    char path[1100];
    tpath(path, sizeof path, "pattern.h5");
    split_data tr, te;
    if (write_reference(path, &tr, &te)) return 1;
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    struct stat sb;
    AL_EXPECT(stat(tmp, &sb) != 0, "temporary file %s left behind", tmp);

    al_dataset ds;
    AL_EXPECT(al_dataset_open(&ds, path, "train") == AL_OK, "%s", al_errmsg());
    AL_EXPECT(ds.n == 1000 && ds.c == 3 && ds.h == 5 && ds.w == 7 && ds.num_classes == 10,
              "shape %lld x %dx%dx%d, %d classes", (long long)ds.n, ds.c, ds.h, ds.w, ds.num_classes);
    AL_EXPECT(strcmp(ds.name, "pattern") == 0 && !ds.allow_unlabelled, "name '%s'", ds.name);
    const size_t rb = 3 * 5 * 7;
    uint8_t *im = malloc(1000 * rb);
    int32_t lb[1000];
    /* ranges: whole, single first/last rows, across chunk boundaries, tail, empty */
    const int64_t ranges[][2] = {{0, 1000}, {0, 1}, {999, 1}, {255, 2}, {250, 300}, {511, 258}, {700, 300}, {5, 0}};
    for (size_t r = 0; r < AL_ARRAY_LEN(ranges); r++) {
        int64_t s = ranges[r][0], n = ranges[r][1];
        memset(im, 0xAB, 1000 * rb);
        AL_EXPECT(al_dataset_read(&ds, s, n, im, lb) == AL_OK, "%s", al_errmsg());
        AL_EXPECT(memcmp(im, tr.im + s * rb, (size_t)n * rb) == 0, "images of rows [%lld, %lld) differ",
                  (long long)s, (long long)(s + n));
        AL_EXPECT(n == 0 || memcmp(lb, tr.lb + s, (size_t)n * 4) == 0, "labels of [%lld, %lld) differ",
                  (long long)s, (long long)(s + n));
        /* nothing written past the range */
        AL_EXPECT(n == 1000 || im[(size_t)n * rb] == 0xAB, "read wrote past %lld rows", (long long)n);
    }
    /* labels only / images only */
    AL_EXPECT(al_dataset_read(&ds, 10, 20, NULL, lb) == AL_OK && memcmp(lb, tr.lb + 10, 80) == 0, "labels-only read");
    AL_EXPECT(al_dataset_read(&ds, 10, 20, im, NULL) == AL_OK && memcmp(im, tr.im + 10 * rb, 20 * rb) == 0,
              "images-only read");
    /* out of range is an error naming the file and split */
    AL_EXPECT(al_dataset_read(&ds, 990, 11, im, lb) == AL_ERR_VALUE, "range past the end accepted");
    AL_EXPECT(strstr(al_errmsg(), "pattern.h5:/train: rows [990, 1001) outside [0, 1000)"), "msg: %s", al_errmsg());
    AL_EXPECT(al_dataset_read(&ds, -1, 1, im, lb) == AL_ERR_VALUE, "negative start accepted");
    al_dataset_close(&ds);

    AL_EXPECT(al_dataset_open(&ds, path, "test") == AL_OK, "%s", al_errmsg());
    AL_EXPECT(ds.n == 37, "test n %lld", (long long)ds.n);
    AL_EXPECT(al_dataset_read(&ds, 0, 37, im, lb) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(memcmp(im, te.im, 37 * rb) == 0 && memcmp(lb, te.lb, 37 * 4) == 0, "test split differs");
    al_dataset_close(&ds);

    al_dataset_summary s;
    AL_EXPECT(al_dataset_summary_read(path, &s) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(s.n_splits == 2 && s.class_names && strcmp(s.class_names[9], k_names[9]) == 0,
              "summary: %d splits", s.n_splits);
    al_dataset_summary_free(&s);
    free(im);
    free_split(&tr);
    free_split(&te);
    return 0;
}

static int case_read_rows(void) {
    char path[1100];
    tpath(path, sizeof path, "pattern_rows.h5");
    split_data tr, te;
    if (write_reference(path, &tr, &te)) return 1;
    al_dataset ds;
    AL_EXPECT(al_dataset_open(&ds, path, "train") == AL_OK, "%s", al_errmsg());
    const size_t rb = 3 * 5 * 7;
    enum { N = 700 };
    int64_t rows[N];
    /* a permutation-like scramble plus duplicates, descending runs and both ends */
    for (int i = 0; i < N; i++) rows[i] = ((int64_t)i * 389 + 17) % 1000;
    rows[0] = 999;
    rows[1] = 0;
    rows[2] = 999;
    rows[3] = 256;
    rows[4] = 255;
    rows[5] = 255;
    uint8_t *im = malloc(N * rb);
    int32_t lb[N];
    AL_EXPECT(al_dataset_read_rows(&ds, rows, N, im, lb) == AL_OK, "%s", al_errmsg());
    for (int i = 0; i < N; i++) {
        AL_EXPECT(memcmp(im + i * rb, tr.im + rows[i] * rb, rb) == 0, "image at position %d (row %lld) differs",
                  i, (long long)rows[i]);
        AL_EXPECT(lb[i] == tr.lb[rows[i]], "label at position %d", i);
    }
    /* labels only */
    int32_t lb2[N];
    AL_EXPECT(al_dataset_read_rows(&ds, rows, N, NULL, lb2) == AL_OK && memcmp(lb, lb2, sizeof lb) == 0,
              "labels-only rows");
    int64_t bad[2] = {3, 1000};
    AL_EXPECT(al_dataset_read_rows(&ds, bad, 2, im, lb) == AL_ERR_VALUE, "row 1000 accepted");
    AL_EXPECT(strstr(al_errmsg(), ":/train: row 1000 (position 1) outside [0, 1000)"), "msg: %s", al_errmsg());
    al_dataset_close(&ds);
    free(im);
    free_split(&tr);
    free_split(&te);
    return 0;
}

static const char *k_py_check_ours =
    "import sys, h5py, numpy as np\n"
    "f = h5py.File(sys.argv[1], 'r')\n"
    "def fail(m):\n"
    "    print('MISMATCH', m); sys.exit(1)\n"
    "a = f.attrs\n"
    "if a['format'] != 'advlab-dataset' or int(a['format_version']) != 1: fail('format attrs')\n"
    "if a['name'] != 'pattern' or int(a['num_classes']) != 10: fail('name/num_classes')\n"
    "if a['format_version'].dtype != np.int32 or a['num_classes'].dtype != np.int32: fail('attr int dtypes')\n"
    "names = [n if isinstance(n, str) else n.decode() for n in a['class_names']]\n"
    "if names[0] != 'zero' or names[9] != 'nine \\u00e9' or len(names) != 10: fail('class_names %r' % names)\n"
    "for split, n, salt in (('train', 1000, 0), ('test', 37, 1)):\n"
    "    im, lb = f[split]['images'], f[split]['labels']\n"
    "    if im.dtype != np.uint8 or lb.dtype != np.int32: fail('dtypes %s %s' % (im.dtype, lb.dtype))\n"
    "    if im.shape != (n, 3, 5, 7) or lb.shape != (n,): fail('shapes')\n"
    "    if im.chunks != (min(n, 256), 3, 5, 7): fail('chunks %r' % (im.chunks,))\n"
    "    if im.compression != 'gzip' or not im.shuffle: fail('filters')\n"
    "    r = np.arange(n, dtype=np.int64)[:, None]; j = np.arange(105, dtype=np.int64)[None, :]\n"
    "    ref = ((r * 31 + j * 7 + salt * 101) & 255).astype(np.uint8).reshape(n, 3, 5, 7)\n"
    "    if not np.array_equal(im[...], ref): fail(split + ' images')\n"
    "    if not np.array_equal(lb[...], (np.arange(n) * 7 + 3 + salt) % 10): fail(split + ' labels')\n"
    "print('OK')\n";

static int case_h5py_reads_advlab(void) {
    char path[1100], out[8192], args[2400];
    tpath(path, sizeof path, "pattern_py.h5");
    split_data tr, te;
    if (write_reference(path, &tr, &te)) return 1;
    free_split(&tr);
    free_split(&te);
    int rc = run_py("check_ours", k_py_check_ours, path, out, sizeof out);
    AL_EXPECT(rc == 0 && strstr(out, "OK"), "h5py check rc %d: %s", rc, out);
    /* the independent contract checker agrees, including the writer's promises */
    snprintf(args, sizeof args, "%s/tools/torch/h5check.py %s --strict-writer", al_test_source_dir(), path);
    char cmd[2600];
    snprintf(cmd, sizeof cmd, "%s %s", al_test_python(), args);
    rc = run(cmd, out, sizeof out);
    AL_EXPECT(rc == 0, "h5check rc %d: %s", rc, out);
    return 0;
}

/* h5py writes: int64 labels, int16 pixels (values 0..255), fixed-length byte-string attrs,
 * int64 attrs, contiguous (unchunked) images; and an OOD file (test only, labels -1). */
static const char *k_py_write =
    "import sys, h5py, numpy as np\n"
    "d = sys.argv[1]\n"
    "n = 300\n"
    "r = np.arange(n, dtype=np.int64)[:, None]; j = np.arange(2 * 4 * 3, dtype=np.int64)[None, :]\n"
    "im = ((r * 31 + j * 7 + 2 * 101) & 255).reshape(n, 2, 4, 3)\n"
    "lb = (np.arange(n) * 7 + 3 + 2) % 7\n"
    "with h5py.File(d + '/from_h5py.h5', 'w') as f:\n"
    "    f.attrs['format'] = np.bytes_(b'advlab-dataset')\n"
    "    f.attrs['format_version'] = np.int64(1)\n"
    "    f.attrs['name'] = 'py'\n"
    "    f.attrs['num_classes'] = np.uint8(7)\n"
    "    f.attrs['class_names'] = [s.encode() for s in 'abcdefg']\n"
    "    f.create_dataset('train/images', data=im.astype(np.int16))\n"
    "    f.create_dataset('train/labels', data=lb.astype(np.int64), chunks=(64,), compression='gzip')\n"
    "with h5py.File(d + '/ood.h5', 'w') as f:\n"
    "    f.attrs['format'] = 'advlab-dataset'; f.attrs['format_version'] = 1\n"
    "    f.attrs['name'] = 'ood'; f.attrs['num_classes'] = 10\n"
    "    f.create_dataset('test/images', data=np.zeros((5, 1, 2, 2), np.uint8))\n"
    "    f.create_dataset('test/labels', data=np.array([-1, 0, 9, -1, 3], np.int32))\n"
    "print('OK')\n";

static int case_advlab_reads_h5py(void) {
    char out[4096], path[1100];
    int rc = run_py("write_py", k_py_write, g_dir, out, sizeof out);
    AL_EXPECT(rc == 0, "python writer rc %d: %s", rc, out);
    tpath(path, sizeof path, "from_h5py.h5");
    al_dataset ds;
    AL_EXPECT(al_dataset_open(&ds, path, "train") == AL_OK, "%s", al_errmsg());
    AL_EXPECT(ds.n == 300 && ds.c == 2 && ds.h == 4 && ds.w == 3 && ds.num_classes == 7, "shape");
    AL_EXPECT(strcmp(ds.name, "py") == 0, "name '%s'", ds.name);
    split_data ref = make_split(300, 2, 4, 3, 2, 7);
    uint8_t *im = malloc(300 * 24);
    int32_t lb[300];
    AL_EXPECT(al_dataset_read(&ds, 0, 300, im, lb) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(memcmp(im, ref.im, 300 * 24) == 0, "int16 pixels converted wrongly");
    AL_EXPECT(memcmp(lb, ref.lb, 300 * 4) == 0, "int64 labels converted wrongly");
    int64_t rows[3] = {299, 0, 150};
    AL_EXPECT(al_dataset_read_rows(&ds, rows, 3, im, lb) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(memcmp(im, ref.im + 299 * 24, 24) == 0 && lb[2] == ref.lb[150], "rows from h5py file");
    al_dataset_close(&ds);
    al_dataset_summary s;
    AL_EXPECT(al_dataset_summary_read(path, &s) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(s.class_names && strcmp(s.class_names[6], "g") == 0, "fixed-length class names");
    al_dataset_summary_free(&s);
    free_split(&ref);

    /* OOD file: only a test split, so -1 (unlabelled) is allowed */
    tpath(path, sizeof path, "ood.h5");
    AL_EXPECT(al_dataset_open(&ds, path, "test") == AL_OK, "%s", al_errmsg());
    AL_EXPECT(ds.allow_unlabelled, "OOD file not recognised");
    AL_EXPECT(al_dataset_read(&ds, 0, 5, im, lb) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(lb[0] == -1 && lb[2] == 9 && lb[3] == -1, "OOD labels");
    al_dataset_close(&ds);
    free(im);
    return 0;
}

static int case_writer_abort_keeps_old(void) {
    char path[1100], tmp[1200];
    tpath(path, sizeof path, "keep.h5");
    split_data tr, te;
    if (write_reference(path, &tr, &te)) return 1;
    struct stat before, after;
    AL_EXPECT(stat(path, &before) == 0, "no file");
    al_dataset_writer w;
    AL_EXPECT(al_dataset_writer_open(&w, path, "other", 3, NULL) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_dataset_writer_add_split(&w, "train", 10, 3, 5, 7, tr.im, tr.lb) == AL_ERR_VALUE,
              "label 9 >= 3 accepted by the writer");
    AL_EXPECT(strstr(al_errmsg(), "keep.h5:/train/labels: label 3 at index 0 outside [0,3)"), "msg: %s", al_errmsg());
    al_dataset_writer_abort(&w);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    AL_EXPECT(stat(tmp, &after) != 0, "abort left %s", tmp);
    AL_EXPECT(stat(path, &after) == 0 && after.st_size == before.st_size && after.st_mtime == before.st_mtime,
              "abort touched the old file");
    al_dataset ds;
    AL_EXPECT(al_dataset_open(&ds, path, "train") == AL_OK && strcmp(ds.name, "pattern") == 0, "old file unreadable");
    al_dataset_close(&ds);
    free_split(&tr);
    free_split(&te);
    return 0;
}

/* Independent decode of the IDX files with gzip + numpy, compared with the converted file. */
static const char *k_py_fmnist =
    "import sys, gzip, zlib, h5py, numpy as np\n"
    "src, out = sys.argv[1], sys.argv[2]\n"
    "def idx(p, off):\n"
    "    with gzip.open(p, 'rb') as f: return np.frombuffer(f.read(), np.uint8, offset=off)\n"
    "f = h5py.File(out, 'r')\n"
    "for pre, split, n in (('train', 'train', 60000), ('t10k', 'test', 10000)):\n"
    "    im = idx(f'{src}/{pre}-images-idx3-ubyte.gz', 16).reshape(n, 1, 28, 28)\n"
    "    lb = idx(f'{src}/{pre}-labels-idx1-ubyte.gz', 8).astype(np.int32)\n"
    "    if not np.array_equal(f[split]['images'][...], im): print('MISMATCH images', split); sys.exit(1)\n"
    "    if not np.array_equal(f[split]['labels'][...], lb): print('MISMATCH labels', split); sys.exit(1)\n"
    "    print(split, 'crc0', zlib.crc32(im[0].tobytes()), 'crclast', zlib.crc32(im[-1].tobytes()),\n"
    "          'hist', ','.join(str(c) for c in np.bincount(lb, minlength=10)))\n"
    "if f.attrs['class_names'][0] != 'T-shirt/top': print('MISMATCH class names'); sys.exit(1)\n"
    "print('OK')\n";

static int case_convert_fashion_mnist(void) {
    const char *src = "/usr/share/datasets/fashion-mnist";
    char probe[1100];
    snprintf(probe, sizeof probe, "%s/train-images-idx3-ubyte.gz", src);
    struct stat sb;
    if (stat(probe, &sb) != 0) {
        printf("skipped: %s not installed (apt-get install dataset-fashion-mnist)\n", probe);
        return AL_SKIP_CODE;
    }
    char path[1100], args[2400], out[4096];
    tpath(path, sizeof path, "fmnist.h5");
    double t0 = al_now();
    AL_EXPECT(al_convert_idx(src, "fashion-mnist", path) == AL_OK, "%s", al_errmsg());
    printf("  converted in %.2f s\n", al_now() - t0);
    snprintf(args, sizeof args, "%s %s", src, path);
    int rc = run_py("check_fmnist", k_py_fmnist, args, out, sizeof out);
    AL_EXPECT(rc == 0 && strstr(out, "OK"), "python decode rc %d: %s", rc, out);

    static const char *split[2] = {"train", "test"};
    for (int s = 0; s < 2; s++) {
        al_dataset ds;
        AL_EXPECT(al_dataset_open(&ds, path, split[s]) == AL_OK, "%s", al_errmsg());
        int64_t want_n = s == 0 ? 60000 : 10000;
        AL_EXPECT(ds.n == want_n && ds.c == 1 && ds.h == 28 && ds.w == 28 && ds.num_classes == 10,
                  "%s: %lld x %dx%dx%d", split[s], (long long)ds.n, ds.c, ds.h, ds.w);
        /* our reader's view of the first/last image and label histogram vs python's decode */
        uint8_t im[784];
        int32_t *lb = malloc((size_t)ds.n * 4);
        AL_EXPECT(al_dataset_read(&ds, 0, ds.n, NULL, lb) == AL_OK, "%s", al_errmsg()); /* range-checks all */
        int64_t hist[10] = {0};
        for (int64_t i = 0; i < ds.n; i++) hist[lb[i]]++;
        free(lb);
        AL_EXPECT(al_dataset_read(&ds, 0, 1, im, NULL) == AL_OK, "%s", al_errmsg());
        unsigned long crc0 = crc32(0L, im, 784);
        AL_EXPECT(al_dataset_read(&ds, ds.n - 1, 1, im, NULL) == AL_OK, "%s", al_errmsg());
        unsigned long crcl = crc32(0L, im, 784);
        char want[256];
        int o = snprintf(want, sizeof want, "%s crc0 %lu crclast %lu hist ", split[s], crc0, crcl);
        for (int k = 0; k < 10; k++) o += snprintf(want + o, sizeof want - (size_t)o, "%s%lld", k ? "," : "", (long long)hist[k]);
        AL_EXPECT(strstr(out, want), "reader disagrees with python decode:\n  ours:   %s\n  python: %s", want, out);
        al_dataset_close(&ds);
    }
    return 0;
}

/* Synthetic CIFAR binaries: record i of file b has label (i*3+b) % K and pixels px(i, j, b). */
static int write_cifar(const char *dir, int k, int n_per_file) {
    mkdir(dir, 0755);
    const int lbytes = k == 10 ? 1 : 2;
    const char *files10[6] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                              "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
    const char *files100[2] = {"train.bin", "test.bin"};
    int nf = k == 10 ? 6 : 2;
    for (int b = 0; b < nf; b++) {
        char p[1200];
        snprintf(p, sizeof p, "%s/%s", dir, k == 10 ? files10[b] : files100[b]);
        FILE *f = fopen(p, "wb");
        AL_EXPECT(f, "cannot write %s", p);
        for (int i = 0; i < n_per_file; i++) {
            uint8_t rec[3074];
            if (k == 100) rec[0] = (uint8_t)(19 - i % 20); /* coarse label: must be ignored */
            rec[lbytes - 1] = (uint8_t)((i * 3 + b) % k);
            for (int j = 0; j < 3072; j++) rec[lbytes + j] = px(i, (size_t)j, b);
            fwrite(rec, 1, (size_t)(lbytes + 3072), f);
        }
        fclose(f);
    }
    char p[1200];
    snprintf(p, sizeof p, "%s/%s", dir, k == 10 ? "batches.meta.txt" : "fine_label_names.txt");
    FILE *f = fopen(p, "w");
    for (int c = 0; c < k; c++) fprintf(f, "class_%d\n", c);
    fputs("\n\n", f); /* the real batches.meta.txt ends with blank lines */
    fclose(f);
    return 0;
}

static int check_cifar(int k) {
    char dir[1100], path[1100];
    snprintf(dir, sizeof dir, "%s/cifar%d_src", g_dir, k);
    const int per = 7, nf_train = k == 10 ? 5 : 1;
    if (write_cifar(dir, k, per)) return 1;
    snprintf(path, sizeof path, "%s/cifar%d.h5", g_dir, k);
    AL_EXPECT(al_convert_cifar(dir, k, path) == AL_OK, "%s", al_errmsg());
    al_dataset ds;
    AL_EXPECT(al_dataset_open(&ds, path, "train") == AL_OK, "%s", al_errmsg());
    AL_EXPECT(ds.n == per * nf_train && ds.c == 3 && ds.h == 32 && ds.w == 32 && ds.num_classes == k,
              "cifar%d train %lld x %dx%dx%d", k, (long long)ds.n, ds.c, ds.h, ds.w);
    uint8_t *im = malloc((size_t)ds.n * 3072);
    int32_t lb[64];
    AL_EXPECT(al_dataset_read(&ds, 0, ds.n, im, lb) == AL_OK, "%s", al_errmsg());
    for (int64_t r = 0; r < ds.n; r++) {
        int b = (int)(r / per), i = (int)(r % per);
        AL_EXPECT(lb[r] == (i * 3 + b) % k, "cifar%d row %lld label %d", k, (long long)r, lb[r]);
        for (int j = 0; j < 3072; j++)
            AL_EXPECT(im[r * 3072 + j] == px(i, (size_t)j, b), "cifar%d row %lld pixel %d", k, (long long)r, j);
    }
    al_dataset_close(&ds);
    AL_EXPECT(al_dataset_open(&ds, path, "test") == AL_OK && ds.n == per, "test split");
    AL_EXPECT(al_dataset_read(&ds, 0, per, im, lb) == AL_OK, "%s", al_errmsg());
    int tb = k == 10 ? 5 : 1;
    AL_EXPECT(lb[1] == (3 + tb) % k && im[3071] == px(0, 3071, tb), "test split content");
    al_dataset_close(&ds);
    al_dataset_summary s;
    AL_EXPECT(al_dataset_summary_read(path, &s) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(s.class_names && strcmp(s.class_names[k - 1], k == 10 ? "class_9" : "class_99") == 0,
              "class names");
    AL_EXPECT(strcmp(s.name, k == 10 ? "cifar10" : "cifar100") == 0, "name %s", s.name);
    al_dataset_summary_free(&s);
    free(im);
    return 0;
}
static int case_convert_cifar10(void) { return check_cifar(10); }
static int case_convert_cifar100(void) { return check_cifar(100); }

static int case_cli_convert_info(void) {
    if (!g_advlab[0]) {
        printf("skipped: no --advlab=PATH given\n");
        return AL_SKIP_CODE;
    }
    char dir[1100], path[1100], cmd[4096], out[16384];
    snprintf(dir, sizeof dir, "%s/cifar10_cli", g_dir);
    if (write_cifar(dir, 10, 3)) return 1;
    snprintf(path, sizeof path, "%s/cli_c10.h5", g_dir);
    snprintf(cmd, sizeof cmd, "'%s' convert --format=cifar10 --input '%s' --out '%s'", g_advlab, dir, path);
    int rc = run(cmd, out, sizeof out);
    AL_EXPECT(rc == 0 && strstr(out, "train 15 x 3x32x32") && strstr(out, "test 3 x 3x32x32"),
              "convert rc %d: %s", rc, out);
    snprintf(cmd, sizeof cmd, "'%s' info '%s'", g_advlab, path);
    rc = run(cmd, out, sizeof out);
    AL_EXPECT(rc == 0 && strstr(out, "dataset 'cifar10', 10 classes") && strstr(out, "[15, 3, 32, 32]") &&
                  strstr(out, "9:class_9"),
              "info rc %d: %s", rc, out);
    snprintf(cmd, sizeof cmd, "'%s' info --arch smallcnn", g_advlab);
    rc = run(cmd, out, sizeof out);
    AL_EXPECT(rc == 0 && strstr(out, "feature_extractor.conv1.weight") && strstr(out, "[32, 1, 3, 3]") &&
                  strstr(out, "classifier.fc3.bias"),
              "info --arch rc %d: %s", rc, out);
    snprintf(cmd, sizeof cmd, "'%s' convert --help", g_advlab);
    rc = run(cmd, out, sizeof out);
    AL_EXPECT(rc == 0 && strstr(out, "usage: advlab convert"), "convert --help rc %d: %s", rc, out);
    return 0;
}

int main(int argc, char **argv) {
    /* --advlab=PATH (the CLI binary) is ours; the rest goes to the case runner */
    int n = 0;
    for (int i = 0; i < argc; i++) {
        if (i > 0 && !strncmp(argv[i], "--advlab=", 9))
            snprintf(g_advlab, sizeof g_advlab, "%s", argv[i] + 9);
        else
            argv[n++] = argv[i];
    }
    snprintf(g_dir, sizeof g_dir, "%s/io_datasets", al_test_tmpdir());
    mkdir(g_dir, 0755);
    static const al_case cases[] = {
        {"roundtrip_ranges", case_roundtrip_ranges},
        {"read_rows", case_read_rows},
        {"h5py_reads_advlab", case_h5py_reads_advlab},
        {"advlab_reads_h5py", case_advlab_reads_h5py},
        {"writer_abort_keeps_old", case_writer_abort_keeps_old},
        {"convert_fashion_mnist", case_convert_fashion_mnist},
        {"convert_cifar10", case_convert_cifar10},
        {"convert_cifar100", case_convert_cifar100},
        {"cli_convert_info", case_cli_convert_info},
    };
    return al_run_cases(cases, (int)AL_ARRAY_LEN(cases), n, argv);
}
