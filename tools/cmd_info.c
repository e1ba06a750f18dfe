/* cmd_info.c: `advlab info FILE.h5` prints a dataset's splits/shapes/classes, or a
 * checkpoint's attributes and parameter table (and checks that it loads strictly into its
 * arch); `advlab info --arch NAME` prints the parameter table of an arch. Usage errors
 * return 2, failures 1 (error recorded via al_fail; main prints it). */
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checkpoint.h"
#include "core/model.h"
#include "datasets/h5data.h"
#include "tools/cli.h"

static const char *const k_usage =
    "usage: advlab info FILE.h5 | advlab info --arch NAME [--num-classes K] [--in-channels C] "
    "[--image-size S]\n";

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, "advlab info: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, "\n%s", k_usage);
    return 2;
}

static int parse_int(const char *flag, const char *v, int lo, int hi, int *out) {
    char *end;
    long x = strtol(v, &end, 10);
    if (end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "advlab info: %s '%s' is not an integer in [%d, %d]\n%s", flag, v, lo, hi, k_usage);
        return 0;
    }
    *out = (int)x;
    return 1;
}

static int print_dataset(const char *path) {
    al_dataset_summary s;
    if (al_dataset_summary_read(path, &s) != AL_OK) return 1;
    printf("%s: advlab dataset '%s', %d classes\n", path, s.name, s.num_classes);
    for (int i = 0; i < s.n_splits; i++)
        printf("  /%-8s images uint8 [%lld, %d, %d, %d], labels int32 [%lld]\n", s.split[i],
               (long long)s.n[i], s.c[i], s.h[i], s.w[i], (long long)s.n[i]);
    if (s.class_names) {
        printf("  classes:");
        for (int i = 0; i < s.num_classes; i++) printf("%s %d:%s", i ? "," : "", i, s.class_names[i]);
        printf("\n");
    }
    al_dataset_summary_free(&s);
    return 0;
}

static herr_t param_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)info;
    int *count = data;
    hid_t d = H5Oopen(g, name, H5P_DEFAULT);
    if (d < 0) return 0;
    if (H5Iget_type(d) == H5I_DATASET) {
        hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
        int rank = H5Sget_simple_extent_ndims(sp);
        hsize_t dims[H5S_MAX_RANK] = {0};
        if (rank > 0) H5Sget_simple_extent_dims(sp, dims, NULL);
        char tb[64], sb[96];
        printf("  %-52s %-8s %s\n", name,
               H5Tget_class(t) == H5T_FLOAT ? (H5Tget_size(t) == 4 ? "float32" : "float64")
                                            : al_h5_type_str(t, tb, sizeof tb),
               al_h5_shape_str(rank, dims, sb, sizeof sb));
        H5Tclose(t);
        H5Sclose(sp);
        (*count)++;
    }
    H5Oclose(d);
    return 0;
}

static int print_checkpoint(const char *path) {
    al_ckpt_info info;
    if (al_checkpoint_info(path, &info) != AL_OK) return 1;
    printf("%s: advlab checkpoint, arch %s, %d classes, input %dx%dx%d\n", path, info.arch,
           info.num_classes, info.in_channels, info.image_size, info.image_size);
    if (info.has_norm) {
        printf("  normalisation: mean [");
        for (int c = 0; c < info.in_channels; c++) printf("%s%g", c ? ", " : "", (double)info.mean[c]);
        printf("], std [");
        for (int c = 0; c < info.in_channels; c++) printf("%s%g", c ? ", " : "", (double)info.std[c]);
        printf("]\n");
    }
    if (info.has_train)
        printf("  train: epoch %d, step %lld, seed %lld%s%s\n", info.epoch, (long long)info.step,
               (long long)info.seed, info.has_optimizer ? ", optimizer state" : "",
               info.has_ema ? ", EMA weights" : "");
    int64_t f;
    if (al_h5_open_read(path, &f) != AL_OK) return 1;
    hid_t g = H5Gopen2(f, "model", H5P_DEFAULT);
    int count = 0;
    hsize_t idx = 0;
    printf("  /model:\n");
    if (g >= 0) {
        H5Literate(g, H5_INDEX_NAME, H5_ITER_INC, &idx, param_cb, &count);
        H5Gclose(g);
    }
    H5Fclose(f);
    printf("  %d datasets\n", count);

    /* Strict load into the arch it names: the check `train --resume` and `attack` rely on. */
    al_model *m = NULL;
    al_ctx ctx;
    if (al_ctx_init(&ctx, AL_DEV_CPU, 0, 1, 0) != AL_OK) return 1;
    al_status st = al_checkpoint_create_model(path, &m);
    if (st == AL_OK) st = al_model_setup(&ctx, m, 1, 1);
    if (st == AL_OK) st = al_checkpoint_load(&ctx, m, path);
    if (st == AL_OK) printf("  loads strictly into arch %s: ok\n", m->arch);
    al_model_destroy(&ctx, m);
    al_ctx_fini(&ctx);
    return st == AL_OK ? 0 : 1;
}

static int print_arch(const char *arch, int num_classes, int in_c, int image_size) {
    int small = strcmp(arch, "smallcnn") == 0;
    if (in_c <= 0) in_c = small ? 1 : 3;
    if (image_size <= 0) image_size = small ? 28 : 32;
    al_model *m = NULL;
    if (al_model_create(arch, num_classes, in_c, image_size, &m) != AL_OK) return 1;
    al_model_print(m, stdout);
    al_model_destroy(NULL, m);
    return 0;
}

int al_cmd_info(int argc, char **argv) {
    const char *file = NULL, *arch = NULL;
    int num_classes = 10, in_c = 0, image_size = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            fputs(k_usage, stdout);
            printf("\nFILE.h5: a dataset (splits, shapes, classes) or a checkpoint (attributes,\n"
                   "parameter table, strict-load check). --arch: parameter table of an arch\n"
                   "(known: %s; defaults: 10 classes, smallcnn 1x28x28, others 3x32x32).\n",
                   al_model_arch_list());
            return 0;
        }
        if (a[0] == '-' && a[1]) {
            static const char *const flags[4] = {"--arch", "--num-classes", "--in-channels", "--image-size"};
            int k = -1;
            const char *v = NULL;
            for (int j = 0; j < 4; j++) {
                size_t n = strlen(flags[j]);
                if (!strncmp(a, flags[j], n) && (a[n] == 0 || a[n] == '=')) {
                    k = j;
                    v = a[n] == '=' ? a + n + 1 : NULL;
                }
            }
            if (k < 0) return usage_error("unknown flag '%s'", a);
            if (!v) {
                if (i + 1 >= argc) return usage_error("%s needs a value", flags[k]);
                v = argv[++i];
            }
            if (k == 0) arch = v;
            if (k == 1 && !parse_int(flags[k], v, 2, 100000, &num_classes)) return 2;
            if (k == 2 && !parse_int(flags[k], v, 1, 4, &in_c)) return 2;
            if (k == 3 && !parse_int(flags[k], v, 1, 65536, &image_size)) return 2;
            continue;
        }
        if (file) return usage_error("unexpected extra argument '%s'", a);
        file = a;
    }
    if (arch && file) return usage_error("give either FILE.h5 or --arch, not both (%s)", file);
    if (arch) return print_arch(arch, num_classes, in_c, image_size);
    if (!file) return usage_error("%s", "a FILE.h5 or --arch NAME is required");

    int64_t f;
    if (al_h5_open_read(file, &f) != AL_OK) return 1;
    char *fmt = NULL;
    al_status st = al_h5_attr_string(f, file, "/", "format", &fmt);
    H5Fclose(f);
    if (st != AL_OK) return 1;
    int rc;
    if (!strcmp(fmt, "advlab-dataset"))
        rc = print_dataset(file);
    else if (!strcmp(fmt, "advlab-checkpoint"))
        rc = print_checkpoint(file);
    else {
        al_fail(AL_ERR_FORMAT, "%s:/: format = \"%s\", expected \"advlab-dataset\" or \"advlab-checkpoint\"",
                file, fmt);
        rc = 1;
    }
    free(fmt);
    return rc;
}
