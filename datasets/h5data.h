/* h5data.h: dataset files (formats.md §1): /<split>/images uint8 (N,C,H,W), /<split>/labels
 * int32 (N), root attrs format="advlab-dataset", format_version=1, name, num_classes.
 * Reads a row range without loading the whole file (chunked along N). Validation is strict and
 * errors name file + object: "data/c10.h5:/train/labels: label 10 at index 4711 outside [0,10)". */
#ifndef AL_H5DATA_H
#define AL_H5DATA_H

#include "core/base.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct al_dataset {
    char path[512];
    char split[32];
    char name[64];
    int64_t n;                 /* rows in the split */
    int c, h, w;
    int num_classes;
    int allow_unlabelled;      /* OOD-only files: label -1 allowed */
    int64_t file;              /* hid_t of the open file */
    int64_t images, labels;    /* hid_t datasets */
} al_dataset;

/* Open `split` of a dataset file and validate attributes, classes and shapes (labels are
 * range-checked on read). */
al_status al_dataset_open(al_dataset *ds, const char *path, const char *split);
void al_dataset_close(al_dataset *ds);

/* Read rows [start, start+count) as uint8 (count, C, H, W) and labels (count). Labels are
 * checked against [0, num_classes) (or -1 when allow_unlabelled). */
al_status al_dataset_read(al_dataset *ds, int64_t start, int64_t count, uint8_t *images,
                          int32_t *labels);
/* Read arbitrary rows (index array, any order) -- used by the shuffling sampler in RAM mode. */
al_status al_dataset_read_rows(al_dataset *ds, const int64_t *rows, int64_t count,
                               uint8_t *images, int32_t *labels);

/* Writer used by the converters: images (N,C,H,W) uint8, labels (N) int32, chunked 256 rows,
 * gzip + shuffle. create=1 writes the root attributes (new file, atomic via .tmp + rename
 * on al_dataset_writer_close). */
typedef struct al_dataset_writer {
    char path[512], tmp[528];
    int64_t file;
    int num_classes;
    int has_unlabelled;        /* some split holds label -1 ... */
    int has_train_or_val;      /* ... which formats.md allows only in test-only (OOD) files */
} al_dataset_writer;
al_status al_dataset_writer_open(al_dataset_writer *w, const char *path, const char *name,
                                 int num_classes, const char *const *class_names);
al_status al_dataset_writer_add_split(al_dataset_writer *w, const char *split, int64_t n, int c,
                                      int h, int wd, const uint8_t *images, const int32_t *labels);
/* Flush, fsync, rename into place. On error the target is untouched. */
al_status al_dataset_writer_close(al_dataset_writer *w);
void al_dataset_writer_abort(al_dataset_writer *w);

/* Whole-file summary for `advlab info`: attributes and every split's shape (validated like
 * al_dataset_open; labels are not scanned). */
#define AL_MAX_SPLITS 8
typedef struct al_dataset_summary {
    char name[64];
    int num_classes;
    char **class_names;        /* num_classes malloc'd strings, or NULL when absent */
    int n_splits;
    char split[AL_MAX_SPLITS][32];
    int64_t n[AL_MAX_SPLITS];
    int c[AL_MAX_SPLITS], h[AL_MAX_SPLITS], w[AL_MAX_SPLITS];
} al_dataset_summary;
al_status al_dataset_summary_read(const char *path, al_dataset_summary *s);
void al_dataset_summary_free(al_dataset_summary *s);

/* Converters (datasets/convert_idx.c, convert_cifar.c). name: "fashion-mnist" | "mnist".
 * All input is read and validated before the output is opened; the write is atomic. */
al_status al_convert_idx(const char *dir, const char *name, const char *out_path);
al_status al_convert_cifar(const char *dir, int n_classes /* 10 or 100 */, const char *out_path);

#ifdef __cplusplus
}
#endif
#endif
