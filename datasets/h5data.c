/* h5data.c: dataset files (formats.md §1): reader (row ranges and arbitrary rows through
 * hyperslabs, never the whole file), strict validation, and the atomic writer the converters
 * use. Host only (no GPU twin): batches go to the device through the sampler.
 * Layout: /<split>/images uint8 (N, C, H, W) chunked 256 rows, gzip + shuffle;
 *         /<split>/labels int32 (N). Any integer type is accepted on read; values that do not
 *         fit uint8 pixels / int32 labels are reported, never silently clipped. */
#include "datasets/h5data.h"

#include <hdf5.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checkpoint.h" /* al_h5_* helpers */

#define DATA_FORMAT "advlab-dataset"
/* 256 rows per chunk: 200 KB (28x28) to 786 KB (3x32x32) raw, so one chunk fits HDF5's
 * default 1 MiB cache and a rank's shard reads whole chunks (formats.md: chunked along N). */
#define CHUNK_ROWS 256
#define LABEL_CHUNK_ROWS 4096
#define GZIP_LEVEL 4
/* Chunk cache per opened images dataset: a few chunks of the largest rows we expect. */
#define CHUNK_CACHE_BYTES (16u << 20)
/* read_rows: consecutive sorted rows closer than this are fetched with one hyperslab read. */
#define ROW_GAP 16

/* ---------------------------------------------------------------- conversion overflow */

/* HDF5 clips out-of-range integers silently by default; this callback turns a pixel > 255
 * or a label beyond int32 into a failed read that we report. */
static H5T_conv_ret_t conv_cb(H5T_conv_except_t e, hid_t src, hid_t dst, void *sb, void *db,
                              void *user) {
    (void)src, (void)dst, (void)sb, (void)db;
    if (e == H5T_CONV_EXCEPT_RANGE_HI || e == H5T_CONV_EXCEPT_RANGE_LOW) {
        *(int *)user = 1;
        return H5T_CONV_ABORT;
    }
    return H5T_CONV_UNHANDLED;
}

static void split_list(hid_t f, char *buf, size_t len);

static int split_name_ok(const char *s) {
    size_t n = strlen(s);
    return n > 0 && n < 32 && !strchr(s, '/') && strcmp(s, ".") != 0;
}

/* ---------------------------------------------------------------- open */

static al_status check_dset(hid_t f, const char *path, const char *obj, const char *what,
                            int rank_want, hsize_t *dims, hid_t dapl, hid_t *out) {
    *out = -1;
    if (!al_h5_has(f, obj))
        return AL_FAIL(AL_ERR_FORMAT, "%s:/%s: missing (expected %s)", path, obj, what);
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    if (o < 0 || H5Iget_type(o) != H5I_DATASET) {
        if (o >= 0) H5Oclose(o);
        return AL_FAIL(AL_ERR_FORMAT, "%s:/%s: is not a dataset (expected %s)", path, obj, what);
    }
    H5Oclose(o);
    hid_t d = H5Dopen2(f, obj, dapl);
    if (d < 0) return AL_FAIL(AL_ERR_FORMAT, "%s:/%s: cannot open dataset", path, obj);
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    int rank = H5Sget_simple_extent_ndims(sp);
    hsize_t dd[H5S_MAX_RANK] = {0};
    if (rank > 0) H5Sget_simple_extent_dims(sp, dd, NULL);
    char tb[64], sb[96];
    al_h5_type_str(t, tb, sizeof tb);
    al_h5_shape_str(rank < 0 ? 0 : rank, dd, sb, sizeof sb);
    H5T_class_t cls = H5Tget_class(t);
    H5Tclose(t);
    H5Sclose(sp);
    if (cls != H5T_INTEGER) {
        H5Dclose(d);
        return AL_FAIL(AL_ERR_FORMAT, "%s:/%s: dtype %s, expected %s", path, obj, tb, what);
    }
    if (rank != rank_want) {
        H5Dclose(d);
        return AL_FAIL(AL_ERR_FORMAT, "%s:/%s: rank %d %s, expected %s", path, obj, rank, sb, what);
    }
    for (int i = 0; i < rank; i++) dims[i] = dd[i];
    *out = d;
    return AL_OK;
}

/* Root attributes: format, version, name, num_classes, class_names (optional). */
static al_status check_root(hid_t f, const char *path, char *name, size_t name_len, int *num_classes,
                            char ***class_names) {
    AL_TRY(al_h5_check_format(f, path, DATA_FORMAT));
    char *s = NULL;
    AL_TRY(al_h5_attr_string(f, path, "/", "name", &s));
    snprintf(name, name_len, "%s", s);
    free(s);
    int64_t k;
    AL_TRY(al_h5_attr_int64(f, path, "/", "num_classes", 1, INT_MAX, &k));
    *num_classes = (int)k;
    if (al_h5_has_attr(f, "class_names")) {
        char **cn = NULL;
        AL_TRY(al_h5_attr_strings(f, path, "/", "class_names", (int)k, &cn));
        if (class_names)
            *class_names = cn;
        else {
            for (int i = 0; i < k; i++) free(cn[i]);
            free(cn);
        }
    }
    return AL_OK;
}

/* Open and validate /<split>/images and /<split>/labels. */
static al_status open_split(hid_t f, const char *path, const char *split, hid_t *images,
                            hid_t *labels, int64_t *n, int *c, int *h, int *w) {
    *images = *labels = -1;
    if (!split_name_ok(split)) return AL_FAIL(AL_ERR_VALUE, "%s: bad split name '%s'", path, split);
    if (!al_h5_has(f, split)) {
        char have[256];
        split_list(f, have, sizeof have);
        return AL_FAIL(AL_ERR_FORMAT, "%s:/%s: no such split (file has: %s)", path, split, have);
    }
    char obj[64];
    hsize_t id[4], ld[1];
    hid_t dapl = H5Pcreate(H5P_DATASET_ACCESS);
    H5Pset_chunk_cache(dapl, 521, CHUNK_CACHE_BYTES, 1.0);
    snprintf(obj, sizeof obj, "%s/images", split);
    al_status st = check_dset(f, path, obj, "uint8 [N, C, H, W]", 4, id, dapl, images);
    H5Pclose(dapl);
    AL_TRY(st);
    for (int d = 1; d < 4; d++)
        if (id[d] < 1 || id[d] > 65536) {
            H5Dclose(*images);
            *images = -1;
            return AL_FAIL(AL_ERR_FORMAT, "%s:/%s: dimension %d is %llu, expected 1..65536", path, obj, d,
                           (unsigned long long)id[d]);
        }
    snprintf(obj, sizeof obj, "%s/labels", split);
    st = check_dset(f, path, obj, "int32 [N]", 1, ld, H5P_DEFAULT, labels);
    if (st == AL_OK && ld[0] != id[0]) {
        H5Dclose(*labels);
        *labels = -1;
        st = AL_FAIL(AL_ERR_FORMAT, "%s:/%s: %llu labels for %llu images, expected one per image", path,
                     obj, (unsigned long long)ld[0], (unsigned long long)id[0]);
    }
    if (st != AL_OK) {
        H5Dclose(*images);
        *images = -1;
        return st;
    }
    *n = (int64_t)id[0];
    *c = (int)id[1];
    *h = (int)id[2];
    *w = (int)id[3];
    return AL_OK;
}

al_status al_dataset_open(al_dataset *ds, const char *path, const char *split) {
    memset(ds, 0, sizeof *ds);
    ds->file = ds->images = ds->labels = -1;
    if (strlen(path) >= sizeof ds->path) return AL_FAIL(AL_ERR_VALUE, "%s: path too long", path);
    snprintf(ds->path, sizeof ds->path, "%s", path);
    snprintf(ds->split, sizeof ds->split, "%s", split);
    hid_t f;
    AL_TRY(al_h5_open_read(path, &f));
    ds->file = f;
    al_status st = AL_OK;
    AL_CHECK(check_root(f, path, ds->name, sizeof ds->name, &ds->num_classes, NULL));
    hid_t im, lb;
    AL_CHECK(open_split(f, path, split, &im, &lb, &ds->n, &ds->c, &ds->h, &ds->w));
    ds->images = im;
    ds->labels = lb;
    /* formats.md: -1 (unlabelled) only in OOD-only files, which hold just a test split. */
    ds->allow_unlabelled = !al_h5_has(f, "train") && !al_h5_has(f, "val");
done:
    if (st != AL_OK) al_dataset_close(ds);
    return st;
}

void al_dataset_close(al_dataset *ds) {
    if (!ds) return;
    if (ds->images >= 0) H5Dclose(ds->images);
    if (ds->labels >= 0) H5Dclose(ds->labels);
    if (ds->file >= 0) H5Fclose(ds->file);
    ds->file = ds->images = ds->labels = -1;
}

/* ---------------------------------------------------------------- read */

static al_status check_label(const al_dataset *ds, int32_t v, int64_t row) {
    if (v >= 0 && v < ds->num_classes) return AL_OK;
    if (v == -1 && ds->allow_unlabelled) return AL_OK;
    return AL_FAIL(AL_ERR_FORMAT, "%s:/%s/labels: label %d at index %lld outside [0,%d)%s", ds->path,
                   ds->split, v, (long long)row, ds->num_classes,
                   v == -1 ? " (-1 = unlabelled is allowed only in OOD files holding just a test split)"
                           : "");
}

/* Rows [start, start+count) into images/labels (either may be NULL); labels not checked. */
static al_status read_range(al_dataset *ds, int64_t start, int64_t count, uint8_t *images,
                            int32_t *labels) {
    al_status st = AL_OK;
    int overflow = 0;
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    H5Pset_type_conv_cb(dxpl, conv_cb, &overflow);
    hid_t fs = -1, ms = -1;
    if (images) {
        hsize_t off[4] = {(hsize_t)start, 0, 0, 0};
        hsize_t cnt[4] = {(hsize_t)count, (hsize_t)ds->c, (hsize_t)ds->h, (hsize_t)ds->w};
        fs = H5Dget_space(ds->images);
        ms = H5Screate_simple(4, cnt, NULL);
        herr_t rc = H5Sselect_hyperslab(fs, H5S_SELECT_SET, off, NULL, cnt, NULL);
        if (rc >= 0) rc = H5Dread(ds->images, H5T_NATIVE_UINT8, ms, fs, dxpl, images);
        H5Sclose(fs);
        H5Sclose(ms);
        if (rc < 0) {
            st = overflow ? AL_FAIL(AL_ERR_FORMAT, "%s:/%s/images: pixel value outside [0, 255] in rows [%lld, %lld)",
                                    ds->path, ds->split, (long long)start, (long long)(start + count))
                          : AL_FAIL(AL_ERR_FORMAT, "%s:/%s/images: read of rows [%lld, %lld) failed (truncated or corrupt file?)",
                                    ds->path, ds->split, (long long)start, (long long)(start + count));
            goto done;
        }
    }
    if (labels) {
        hsize_t off = (hsize_t)start, cnt = (hsize_t)count;
        fs = H5Dget_space(ds->labels);
        ms = H5Screate_simple(1, &cnt, NULL);
        herr_t rc = H5Sselect_hyperslab(fs, H5S_SELECT_SET, &off, NULL, &cnt, NULL);
        if (rc >= 0) rc = H5Dread(ds->labels, H5T_NATIVE_INT32, ms, fs, dxpl, labels);
        H5Sclose(fs);
        H5Sclose(ms);
        if (rc < 0)
            st = overflow ? AL_FAIL(AL_ERR_FORMAT, "%s:/%s/labels: label outside the int32 range in rows [%lld, %lld)",
                                    ds->path, ds->split, (long long)start, (long long)(start + count))
                          : AL_FAIL(AL_ERR_FORMAT, "%s:/%s/labels: read of rows [%lld, %lld) failed (truncated or corrupt file?)",
                                    ds->path, ds->split, (long long)start, (long long)(start + count));
    }
done:
    H5Pclose(dxpl);
    return st;
}

al_status al_dataset_read(al_dataset *ds, int64_t start, int64_t count, uint8_t *images,
                          int32_t *labels) {
    AL_ASSERT(ds->file >= 0, "read from a closed dataset");
    if (start < 0 || count < 0 || start > ds->n || count > ds->n - start)
        return AL_FAIL(AL_ERR_VALUE, "%s:/%s: rows [%lld, %lld) outside [0, %lld)", ds->path, ds->split,
                       (long long)start, (long long)(start + count), (long long)ds->n);
    if (count == 0) return AL_OK;
    AL_TRY(read_range(ds, start, count, images, labels));
    if (labels)
        for (int64_t i = 0; i < count; i++) AL_TRY(check_label(ds, labels[i], start + i));
    return AL_OK;
}

typedef struct row_pos {
    int64_t row, pos;
} row_pos;

static int cmp_row(const void *a, const void *b) {
    const row_pos *x = a, *y = b;
    if (x->row != y->row) return x->row < y->row ? -1 : 1;
    return x->pos < y->pos ? -1 : x->pos > y->pos;
}

al_status al_dataset_read_rows(al_dataset *ds, const int64_t *rows, int64_t count,
                               uint8_t *images, int32_t *labels) {
    AL_ASSERT(ds->file >= 0, "read from a closed dataset");
    if (count < 0) return AL_FAIL(AL_ERR_VALUE, "%s:/%s: negative row count %lld", ds->path, ds->split, (long long)count);
    for (int64_t i = 0; i < count; i++)
        if (rows[i] < 0 || rows[i] >= ds->n)
            return AL_FAIL(AL_ERR_VALUE, "%s:/%s: row %lld (position %lld) outside [0, %lld)", ds->path,
                           ds->split, (long long)rows[i], (long long)i, (long long)ds->n);
    if (count == 0) return AL_OK;
    /* Sort (row, destination) so each run of nearby rows is one hyperslab read, through a
     * bounce buffer of at most CHUNK_ROWS rows (one chunk: decompressed once, cached). */
    const size_t row_bytes = (size_t)ds->c * ds->h * ds->w;
    al_status st = AL_OK;
    row_pos *rp = al_malloc((size_t)count * sizeof *rp, "row index");
    uint8_t *bi = images ? al_malloc(CHUNK_ROWS * row_bytes, "row buffer") : NULL;
    int32_t *bl = al_malloc(CHUNK_ROWS * sizeof *bl, "label buffer");
    if (!rp || (images && !bi) || !bl) {
        st = AL_ERR_OOM;
        goto done;
    }
    for (int64_t i = 0; i < count; i++) rp[i] = (row_pos){rows[i], i};
    qsort(rp, (size_t)count, sizeof *rp, cmp_row);
    for (int64_t i = 0; i < count;) {
        int64_t first = rp[i].row, j = i;
        while (j + 1 < count && rp[j + 1].row - rp[j].row <= ROW_GAP &&
               rp[j + 1].row - first < CHUNK_ROWS)
            j++;
        int64_t span = rp[j].row - first + 1;
        AL_CHECK(read_range(ds, first, span, bi, bl));
        for (int64_t k = i; k <= j; k++) {
            int64_t r = rp[k].row - first;
            AL_CHECK(check_label(ds, bl[r], rp[k].row));
            if (labels) labels[rp[k].pos] = bl[r];
            if (images) memcpy(images + (size_t)rp[k].pos * row_bytes, bi + (size_t)r * row_bytes, row_bytes);
        }
        i = j + 1;
    }
done:
    al_free(rp);
    al_free(bi);
    al_free(bl);
    return st;
}

/* ---------------------------------------------------------------- summary */

static herr_t split_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)info;
    char **p = data; /* p[0] = buffer, p[1] = end */
    H5O_type_t type = H5O_TYPE_UNKNOWN;
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o >= 0) {
        if (H5Iget_type(o) == H5I_GROUP) type = H5O_TYPE_GROUP;
        H5Oclose(o);
    }
    if (type != H5O_TYPE_GROUP) return 0;
    size_t used = strlen(p[0]), room = (size_t)(p[1] - p[0]);
    if (used + 1 < room) snprintf(p[0] + used, room - used, "%s%s", used ? ", " : "", name);
    return 0;
}

/* Comma-separated groups under the root (the splits), or "no splits". */
static void split_list(hid_t f, char *buf, size_t len) {
    buf[0] = 0;
    char *p[2] = {buf, buf + len};
    hsize_t idx = 0;
    H5Literate(f, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, split_cb, p);
    if (!buf[0]) snprintf(buf, len, "no splits");
}

al_status al_dataset_summary_read(const char *path, al_dataset_summary *s) {
    memset(s, 0, sizeof *s);
    hid_t f;
    AL_TRY(al_h5_open_read(path, &f));
    al_status st = AL_OK;
    AL_CHECK(check_root(f, path, s->name, sizeof s->name, &s->num_classes, &s->class_names));
    char list[512];
    split_list(f, list, sizeof list);
    if (strcmp(list, "no splits") == 0)
        AL_CHECK(AL_FAIL(AL_ERR_FORMAT, "%s:/: no splits (expected /train, /test, ...)", path));
    /* train, val, test first (in that order), then any other split in name order */
    char *names[AL_MAX_SPLITS + 3];
    int n_names = 0;
    static const char *const k_known[3] = {"train", "val", "test"};
    for (int k = 0; k < 3; k++)
        if (al_h5_has(f, k_known[k])) names[n_names++] = (char *)k_known[k];
    for (char *tok = strtok(list, ", "); tok && n_names < AL_MAX_SPLITS; tok = strtok(NULL, ", "))
        if (strcmp(tok, "train") && strcmp(tok, "val") && strcmp(tok, "test")) names[n_names++] = tok;
    for (int k = 0; k < n_names && k < AL_MAX_SPLITS; k++) {
        const char *tok = names[k];
        int i = s->n_splits;
        hid_t im, lb;
        AL_CHECK(open_split(f, path, tok, &im, &lb, &s->n[i], &s->c[i], &s->h[i], &s->w[i]));
        H5Dclose(im);
        H5Dclose(lb);
        snprintf(s->split[i], sizeof s->split[i], "%s", tok);
        s->n_splits++;
    }
done:
    H5Fclose(f);
    if (st != AL_OK) al_dataset_summary_free(s);
    return st;
}

void al_dataset_summary_free(al_dataset_summary *s) {
    if (!s) return;
    if (s->class_names)
        for (int i = 0; i < s->num_classes; i++) free(s->class_names[i]);
    free(s->class_names);
    s->class_names = NULL;
}

/* ---------------------------------------------------------------- writer */

al_status al_dataset_writer_open(al_dataset_writer *w, const char *path, const char *name,
                                 int num_classes, const char *const *class_names) {
    memset(w, 0, sizeof *w);
    w->file = -1;
    if (strlen(path) >= sizeof w->path) return AL_FAIL(AL_ERR_VALUE, "%s: output path too long", path);
    snprintf(w->path, sizeof w->path, "%s", path);
    if (num_classes < 1) return AL_FAIL(AL_ERR_VALUE, "%s: num_classes %d, expected >= 1", path, num_classes);
    w->num_classes = num_classes;
    if (!H5Zfilter_avail(H5Z_FILTER_DEFLATE) || !H5Zfilter_avail(H5Z_FILTER_SHUFFLE))
        return AL_FAIL(AL_ERR_UNSUPPORTED, "%s: this HDF5 library lacks the gzip/shuffle filters", path);
    hid_t f;
    AL_TRY(al_h5_create_tmp(path, w->tmp, sizeof w->tmp, &f));
    w->file = f;
    al_status st = AL_OK;
    AL_CHECK(al_h5_write_attr_string(f, path, "/", "format", DATA_FORMAT));
    AL_CHECK(al_h5_write_attr_int(f, path, "/", "format_version", 1));
    AL_CHECK(al_h5_write_attr_string(f, path, "/", "name", name ? name : ""));
    AL_CHECK(al_h5_write_attr_int(f, path, "/", "num_classes", num_classes));
    if (class_names) AL_CHECK(al_h5_write_attr_strings(f, path, "/", "class_names", num_classes, class_names));
done:
    if (st != AL_OK) al_dataset_writer_abort(w);
    return st;
}

static al_status write_chunked(hid_t g, const char *path, const char *split, const char *name,
                               hid_t ftype, hid_t mtype, int rank, const hsize_t *dims,
                               hsize_t chunk_rows, const void *data) {
    hsize_t chunk[4];
    for (int d = 0; d < rank; d++) chunk[d] = dims[d];
    chunk[0] = dims[0] < chunk_rows ? dims[0] : chunk_rows;
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, rank, chunk);
    H5Pset_shuffle(dcpl);
    H5Pset_deflate(dcpl, GZIP_LEVEL);
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(g, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    herr_t rc = d < 0 ? -1 : H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (d >= 0) H5Dclose(d);
    H5Sclose(sp);
    H5Pclose(dcpl);
    if (rc < 0) return AL_FAIL(AL_ERR_IO, "%s:/%s/%s: write failed (disk full?)", path, split, name);
    return AL_OK;
}

al_status al_dataset_writer_add_split(al_dataset_writer *w, const char *split, int64_t n, int c,
                                      int h, int wd, const uint8_t *images, const int32_t *labels) {
    AL_ASSERT(w->file >= 0, "add_split on a closed writer");
    if (!split_name_ok(split)) return AL_FAIL(AL_ERR_VALUE, "%s: bad split name '%s'", w->path, split);
    if (n < 1 || c < 1 || h < 1 || wd < 1)
        return AL_FAIL(AL_ERR_VALUE, "%s:/%s: empty shape [%lld, %d, %d, %d]", w->path, split, (long long)n, c, h, wd);
    if (al_h5_has(w->file, split)) return AL_FAIL(AL_ERR_VALUE, "%s:/%s: split written twice", w->path, split);
    for (int64_t i = 0; i < n; i++) {
        if (labels[i] == -1) {
            w->has_unlabelled = 1;
        } else if (labels[i] < 0 || labels[i] >= w->num_classes) {
            return AL_FAIL(AL_ERR_VALUE, "%s:/%s/labels: label %d at index %lld outside [0,%d)", w->path,
                           split, labels[i], (long long)i, w->num_classes);
        }
    }
    if (strcmp(split, "train") == 0 || strcmp(split, "val") == 0) w->has_train_or_val = 1;
    hid_t g = H5Gcreate2(w->file, split, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return AL_FAIL(AL_ERR_IO, "%s:/%s: cannot create group", w->path, split);
    hsize_t idims[4] = {(hsize_t)n, (hsize_t)c, (hsize_t)h, (hsize_t)wd}, ldims = (hsize_t)n;
    al_status st = write_chunked(g, w->path, split, "images", H5T_STD_U8LE, H5T_NATIVE_UINT8, 4, idims,
                                 CHUNK_ROWS, images);
    if (st == AL_OK)
        st = write_chunked(g, w->path, split, "labels", H5T_STD_I32LE, H5T_NATIVE_INT32, 1, &ldims,
                           LABEL_CHUNK_ROWS, labels);
    H5Gclose(g);
    return st;
}

al_status al_dataset_writer_close(al_dataset_writer *w) {
    AL_ASSERT(w->file >= 0, "close of a closed writer");
    if (w->has_unlabelled && w->has_train_or_val) {
        al_dataset_writer_abort(w);
        return AL_FAIL(AL_ERR_VALUE, "%s: label -1 (unlabelled) in a file with a train/val split; "
                                     "only OOD files (test split only) may hold it", w->path);
    }
    al_status st = al_h5_commit(w->file, w->tmp, w->path);
    w->file = -1;
    return st;
}

void al_dataset_writer_abort(al_dataset_writer *w) {
    if (!w) return;
    if (w->file >= 0) al_h5_discard(w->file, w->tmp);
    w->file = -1;
}
