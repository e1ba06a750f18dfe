/* cmd_convert.c: `advlab convert` -- Fashion-MNIST/MNIST IDX or CIFAR-10/100 binaries to an
 * advlab dataset file (formats.md §1). Usage errors return 2 with a usage line; conversion
 * failures return 1 with the error recorded (main prints it). The output is written
 * atomically, so a failed conversion leaves an existing output file untouched. */
#include <stdio.h>
#include <string.h>

#include "core/base.h"
#include "datasets/h5data.h"
#include "tools/cli.h"

#define FMNIST_DIR "/usr/share/datasets/fashion-mnist"

static const char *const k_usage =
    "usage: advlab convert --format fashion-mnist|mnist|cifar10|cifar100 [--input DIR] --out FILE.h5\n";

/* One table: flag, help. All flags take a value. */
static const struct {
    const char *flag, *help;
} k_flags[] = {
    {"--format", "fashion-mnist | mnist (IDX files) | cifar10 | cifar100 (binary version)"},
    {"--input", "directory with the source files (default for fashion-mnist: " FMNIST_DIR ")"},
    {"--out", "output dataset file (.h5), written atomically"},
};

static void help(FILE *f) {
    fputs(k_usage, f);
    fputs("\nConvert a dataset to advlab HDF5 (train + test splits, uint8 NCHW images, int32 labels).\n\n", f);
    for (size_t i = 0; i < sizeof k_flags / sizeof k_flags[0]; i++)
        fprintf(f, "  %-10s %s\n", k_flags[i].flag, k_flags[i].help);
    fputs("  --help     this text\n"
          "\nIDX: {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]. CIFAR-10: data_batch_1..5.bin,\n"
          "test_batch.bin (+ batches.meta.txt). CIFAR-100: train.bin, test.bin (+ fine_label_names.txt).\n",
          f);
}

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "advlab convert: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", k_usage);
    return 2;
}

int al_cmd_convert(int argc, char **argv) {
    const char *val[3] = {NULL, NULL, NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            help(stdout);
            return 0;
        }
        int k = -1;
        const char *v = NULL;
        for (int j = 0; j < 3; j++) {
            size_t n = strlen(k_flags[j].flag);
            if (!strncmp(a, k_flags[j].flag, n) && (a[n] == 0 || a[n] == '=')) {
                k = j;
                v = a[n] == '=' ? a + n + 1 : NULL;
            }
        }
        if (k < 0) return usage_error(a[0] == '-' ? "unknown flag '%s'" : "unexpected argument '%s'", a);
        if (!v) {
            if (i + 1 >= argc) return usage_error("%s needs a value", k_flags[k].flag);
            v = argv[++i];
        }
        if (!v[0]) return usage_error("%s needs a non-empty value", k_flags[k].flag);
        val[k] = v;
    }
    const char *format = val[0], *input = val[1], *out = val[2];
    if (!format) return usage_error("%s is required", "--format");
    if (!out) return usage_error("%s is required", "--out");
    int is_idx = !strcmp(format, "fashion-mnist") || !strcmp(format, "mnist");
    int cifar = !strcmp(format, "cifar10") ? 10 : !strcmp(format, "cifar100") ? 100 : 0;
    if (!is_idx && !cifar)
        return usage_error("unknown --format '%s' (expected fashion-mnist, mnist, cifar10, cifar100)", format);
    if (!input) {
        if (strcmp(format, "fashion-mnist") != 0)
            return usage_error("--input DIR is required for --format %s", format);
        input = FMNIST_DIR;
    }
    double t0 = al_now();
    al_status st = is_idx ? al_convert_idx(input, format, out) : al_convert_cifar(input, cifar, out);
    if (st != AL_OK) return 1;
    al_dataset_summary s;
    if (al_dataset_summary_read(out, &s) != AL_OK) return 1;
    printf("wrote %s: %s, %d classes", out, s.name, s.num_classes);
    for (int i = 0; i < s.n_splits; i++)
        printf(", %s %lld x %dx%dx%d", s.split[i], (long long)s.n[i], s.c[i], s.h[i], s.w[i]);
    printf(" (%.1f s)\n", al_now() - t0);
    al_dataset_summary_free(&s);
    return 0;
}
