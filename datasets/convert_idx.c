/* convert_idx.c: Fashion-MNIST / MNIST IDX files (optionally gzip'd) -> advlab dataset file
 * (formats.md §1): train and test splits, uint8 (N, 1, 28, 28), int32 labels.
 * IDX layout (big-endian): magic 0x0000 08 D (type 0x08 = unsigned byte, D dimensions), then D
 * uint32 sizes, then the bytes. Images are D = 3 (N, rows, cols), labels D = 1 (N).
 * Everything is read and validated before the output is opened; the write is atomic. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "datasets/h5data.h"

static const char *const k_fmnist_classes[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                                 "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
static const char *const k_mnist_classes[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};

typedef struct idx_array {
    char path[1024];
    int64_t n;
    int rows, cols;   /* 1 for labels */
    uint8_t *data;
} idx_array;

/* gzerror's text starts with the file name, which our message already leads with. */
static const char *zmsg_tail(const char *zmsg, const char *path) {
    size_t n = strlen(path);
    if (!strncmp(zmsg, path, n) && !strncmp(zmsg + n, ": ", 2)) return zmsg + n + 2;
    return zmsg;
}

/* gzread in pieces (its length argument is an unsigned int). Returns bytes read, -1 on error. */
static int64_t gz_read_all(gzFile g, uint8_t *dst, int64_t n) {
    int64_t got = 0;
    while (got < n) {
        unsigned piece = (unsigned)((n - got) > (1 << 30) ? (1 << 30) : (n - got));
        int r = gzread(g, dst + got, piece);
        if (r < 0) return -1;
        if (r == 0) break;
        got += r;
    }
    return got;
}

/* Read <dir>/<base>.gz (or the uncompressed <dir>/<base>) with `ndim` dimensions. */
static al_status read_idx(const char *dir, const char *base, int ndim, idx_array *a) {
    memset(a, 0, sizeof *a);
    struct stat sb;
    snprintf(a->path, sizeof a->path, "%s/%s.gz", dir, base);
    if (stat(a->path, &sb) != 0) {
        char plain[1024];
        snprintf(plain, sizeof plain, "%s/%s", dir, base);
        if (stat(plain, &sb) != 0)
            return AL_FAIL(AL_ERR_IO, "%s: cannot open: %s", a->path, strerror(errno));
        snprintf(a->path, sizeof a->path, "%s", plain);
    }
    gzFile g = gzopen(a->path, "rb"); /* reads uncompressed files transparently too */
    if (!g) return AL_FAIL(AL_ERR_IO, "%s: cannot open: %s", a->path, strerror(errno));
    al_status st = AL_OK;
    uint8_t hdr[16];
    int64_t hdr_bytes = 4 + 4 * (int64_t)ndim;
    int64_t got = gz_read_all(g, hdr, hdr_bytes);
    int zerr = 0;
    if (got != hdr_bytes) {
        const char *zmsg = gzerror(g, &zerr);
        st = AL_FAIL(AL_ERR_FORMAT, "%s: truncated IDX header (%lld of %lld bytes)%s%s", a->path,
                     (long long)(got < 0 ? 0 : got), (long long)hdr_bytes, zerr ? ": zlib: " : "",
                     zerr ? zmsg_tail(zmsg, a->path) : "");
        goto done;
    }
    uint32_t magic = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    uint32_t want = 0x00000800u | (uint32_t)ndim;
    if (magic != want) {
        st = AL_FAIL(AL_ERR_FORMAT, "%s: bad IDX magic 0x%08x, expected 0x%08x (unsigned bytes, %d dimension%s)",
                     a->path, magic, want, ndim, ndim == 1 ? "" : "s");
        goto done;
    }
    uint32_t dims[3] = {1, 1, 1};
    for (int d = 0; d < ndim; d++)
        dims[d] = (uint32_t)hdr[4 + 4 * d] << 24 | (uint32_t)hdr[5 + 4 * d] << 16 |
                  (uint32_t)hdr[6 + 4 * d] << 8 | hdr[7 + 4 * d];
    /* Bounds: MNIST-like sets are well below these; they stop a corrupt header from asking
     * for terabytes. */
    if (dims[0] < 1 || dims[0] > 10000000u || dims[1] < 1 || dims[1] > 4096 || dims[2] < 1 || dims[2] > 4096) {
        st = AL_FAIL(AL_ERR_FORMAT, "%s: implausible IDX sizes [%u, %u, %u]", a->path, dims[0],
                     ndim > 1 ? dims[1] : 1u, ndim > 2 ? dims[2] : 1u);
        goto done;
    }
    a->n = dims[0];
    a->rows = (int)dims[1];
    a->cols = (int)dims[2];
    int64_t n_bytes = a->n * a->rows * a->cols;
    a->data = al_malloc((size_t)n_bytes, a->path);
    if (!a->data) {
        st = AL_ERR_OOM;
        goto done;
    }
    got = gz_read_all(g, a->data, n_bytes);
    if (got != n_bytes) {
        const char *zmsg = gzerror(g, &zerr);
        st = AL_FAIL(AL_ERR_FORMAT, "%s: truncated: %lld of %lld data bytes%s%s", a->path,
                     (long long)(got < 0 ? 0 : got), (long long)n_bytes, zerr ? "; zlib: " : "",
                     zerr ? zmsg_tail(zmsg, a->path) : "");
        goto done;
    }
    uint8_t extra;
    int r = gzread(g, &extra, 1);
    if (r != 0) {
        const char *zmsg = gzerror(g, &zerr);
        st = r > 0 ? AL_FAIL(AL_ERR_FORMAT, "%s: unexpected bytes after the %lld x %d x %d data", a->path,
                             (long long)a->n, a->rows, a->cols)
                   : AL_FAIL(AL_ERR_FORMAT, "%s: corrupt gzip stream: %s", a->path, zmsg_tail(zmsg, a->path));
        goto done;
    }
done:
    {
        /* gzclose reports Z_BUF_ERROR for a gzip stream cut short even after a clean read */
        int rc = gzclose(g);
        if (st == AL_OK && rc != Z_OK)
            st = AL_FAIL(AL_ERR_FORMAT, "%s: truncated or corrupt gzip stream (zlib error %d)", a->path, rc);
    }
    if (st != AL_OK) {
        al_free(a->data);
        a->data = NULL;
    }
    return st;
}

static al_status read_split(const char *dir, const char *prefix, idx_array *im, idx_array *lb,
                            int32_t **labels) {
    char base[64];
    snprintf(base, sizeof base, "%s-images-idx3-ubyte", prefix);
    AL_TRY(read_idx(dir, base, 3, im));
    snprintf(base, sizeof base, "%s-labels-idx1-ubyte", prefix);
    AL_TRY(read_idx(dir, base, 1, lb));
    if (lb->n != im->n)
        return AL_FAIL(AL_ERR_FORMAT, "%s: %lld labels, but %s has %lld images", lb->path, (long long)lb->n,
                       im->path, (long long)im->n);
    *labels = al_malloc((size_t)lb->n * sizeof **labels, "labels");
    if (!*labels) return AL_ERR_OOM;
    for (int64_t i = 0; i < lb->n; i++) {
        if (lb->data[i] >= 10)
            return AL_FAIL(AL_ERR_FORMAT, "%s: label %d at index %lld outside [0,10)", lb->path, lb->data[i],
                           (long long)i);
        (*labels)[i] = lb->data[i];
    }
    return AL_OK;
}

al_status al_convert_idx(const char *dir, const char *name, const char *out_path) {
    const char *const *classes;
    if (strcmp(name, "fashion-mnist") == 0)
        classes = k_fmnist_classes;
    else if (strcmp(name, "mnist") == 0)
        classes = k_mnist_classes;
    else
        return AL_FAIL(AL_ERR_VALUE, "convert: unknown IDX dataset '%s' (expected fashion-mnist or mnist)", name);
    idx_array im[2], lb[2];
    memset(im, 0, sizeof im);
    memset(lb, 0, sizeof lb);
    int32_t *labels[2] = {NULL, NULL};
    static const char *prefix[2] = {"train", "t10k"}, *split[2] = {"train", "test"};
    al_status st = AL_OK;
    for (int s = 0; s < 2; s++) AL_CHECK(read_split(dir, prefix[s], &im[s], &lb[s], &labels[s]));
    if (im[0].rows != im[1].rows || im[0].cols != im[1].cols)
        AL_CHECK(AL_FAIL(AL_ERR_FORMAT, "%s: images are %dx%d, but %s has %dx%d", im[1].path, im[1].rows,
                         im[1].cols, im[0].path, im[0].rows, im[0].cols));
    al_dataset_writer w;
    AL_CHECK(al_dataset_writer_open(&w, out_path, name, 10, classes));
    for (int s = 0; s < 2 && st == AL_OK; s++)
        st = al_dataset_writer_add_split(&w, split[s], im[s].n, 1, im[s].rows, im[s].cols, im[s].data,
                                         labels[s]);
    if (st != AL_OK)
        al_dataset_writer_abort(&w);
    else
        st = al_dataset_writer_close(&w);
done:
    for (int s = 0; s < 2; s++) {
        al_free(im[s].data);
        al_free(lb[s].data);
        al_free(labels[s]);
    }
    return st;
}
