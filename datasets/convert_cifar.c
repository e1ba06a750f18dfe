/* convert_cifar.c: CIFAR-10/100 "binary version" -> advlab dataset file (formats.md §1).
 * CIFAR-10: data_batch_1..5.bin (train), test_batch.bin; records of 1 label byte + 3072 pixels.
 * CIFAR-100: train.bin, test.bin; records of coarse label, fine label, 3072 pixels (we keep
 * the fine label, 100 classes). Pixels are stored 1024 R, 1024 G, 1024 B, rows of 32: that is
 * already (C, H, W), so rows are copied as they are. The directory may be the archive's
 * top level (cifar-10-batches-bin/ or cifar-100-binary/ inside it) or that folder itself.
 * Class names come from batches.meta.txt / fine_label_names.txt when present. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "datasets/h5data.h"

#define PIXELS 3072

typedef struct cifar_split {
    int64_t n;
    uint8_t *images;   /* (n, 3, 32, 32) */
    int32_t *labels;   /* (n) */
} cifar_split;

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Append all records of one file to s. */
static al_status read_batch(const char *path, int n_classes, cifar_split *s) {
    const int label_bytes = n_classes == 10 ? 1 : 2;
    const int64_t rec = label_bytes + PIXELS;
    FILE *f = fopen(path, "rb");
    if (!f) return AL_FAIL(AL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    al_status st = AL_OK;
    uint8_t *buf = NULL;
    if (fstat(fileno(f), &sb) != 0) {
        st = AL_FAIL(AL_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
        goto done;
    }
    int64_t size = sb.st_size;
    if (size == 0 || size % rec != 0) {
        st = AL_FAIL(AL_ERR_FORMAT,
                     "%s: size %lld bytes is not a positive multiple of the %lld-byte CIFAR-%d record "
                     "(%d label byte%s + 3072 pixels): truncated or not a CIFAR-%d binary file",
                     path, (long long)size, (long long)rec, n_classes, label_bytes,
                     label_bytes == 1 ? "" : "s", n_classes);
        goto done;
    }
    int64_t n = size / rec;
    buf = al_malloc((size_t)size, path);
    uint8_t *im = realloc(s->images, (size_t)(s->n + n) * PIXELS);
    if (im) s->images = im;
    int32_t *lb = realloc(s->labels, (size_t)(s->n + n) * sizeof *lb);
    if (lb) s->labels = lb;
    if (!buf || !im || !lb) {
        st = AL_FAIL(AL_ERR_OOM, "%s: out of memory for %lld records", path, (long long)n);
        goto done;
    }
    if (fread(buf, 1, (size_t)size, f) != (size_t)size) {
        st = AL_FAIL(AL_ERR_IO, "%s: read failed: %s", path, ferror(f) ? strerror(errno) : "short read");
        goto done;
    }
    for (int64_t i = 0; i < n; i++) {
        const uint8_t *r = buf + i * rec;
        if (n_classes == 100 && r[0] >= 20) {
            st = AL_FAIL(AL_ERR_FORMAT, "%s: coarse label %d in record %lld outside [0,20)", path, r[0], (long long)i);
            goto done;
        }
        int label = r[label_bytes - 1];
        if (label >= n_classes) {
            st = AL_FAIL(AL_ERR_FORMAT, "%s: label %d in record %lld outside [0,%d)", path, label,
                         (long long)i, n_classes);
            goto done;
        }
        s->labels[s->n + i] = label;
        memcpy(s->images + (size_t)(s->n + i) * PIXELS, r + label_bytes, PIXELS);
    }
    s->n += n;
done:
    al_free(buf);
    fclose(f);
    return st;
}

/* Class names, one per line (blank lines ignored); exactly n_classes or an error. */
static al_status read_names(const char *path, int n_classes, char ***out) {
    *out = NULL;
    FILE *f = fopen(path, "r");
    if (!f) return AL_FAIL(AL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    char **names = calloc((size_t)n_classes, sizeof *names);
    if (!names) {
        fclose(f);
        return AL_FAIL(AL_ERR_OOM, "%s: out of memory", path);
    }
    char line[256];
    int n = 0;
    al_status st = AL_OK;
    while (fgets(line, sizeof line, f)) {
        size_t len = strlen(line);
        while (len && (line[len - 1] == '\n' || line[len - 1] == '\r' || line[len - 1] == ' ')) line[--len] = 0;
        if (!len) continue;
        if (n == n_classes) {
            st = AL_FAIL(AL_ERR_FORMAT, "%s: more than %d class names", path, n_classes);
            break;
        }
        names[n] = strdup(line);
        if (!names[n++]) {
            st = AL_FAIL(AL_ERR_OOM, "%s: out of memory", path);
            break;
        }
    }
    fclose(f);
    if (st == AL_OK && n != n_classes) st = AL_FAIL(AL_ERR_FORMAT, "%s: %d class names, expected %d", path, n, n_classes);
    if (st != AL_OK) {
        for (int i = 0; i < n_classes; i++) free(names[i]);
        free(names);
        return st;
    }
    *out = names;
    return AL_OK;
}

al_status al_convert_cifar(const char *dir_in, int n_classes, const char *out_path) {
    if (n_classes != 10 && n_classes != 100)
        return AL_FAIL(AL_ERR_VALUE, "convert: CIFAR has 10 or 100 classes, not %d", n_classes);
    const char *first = n_classes == 10 ? "data_batch_1.bin" : "train.bin";
    const char *sub = n_classes == 10 ? "cifar-10-batches-bin" : "cifar-100-binary";
    char dir[900], p[1024];
    snprintf(dir, sizeof dir, "%s", dir_in);
    snprintf(p, sizeof p, "%s/%s", dir, first);
    if (!exists(p)) {
        char alt[1024];
        snprintf(alt, sizeof alt, "%s/%s/%s", dir_in, sub, first);
        if (exists(alt)) snprintf(dir, sizeof dir, "%s/%s", dir_in, sub);
    }
    cifar_split s[2];
    memset(s, 0, sizeof s);
    char **names = NULL;
    al_status st = AL_OK;
    if (n_classes == 10) {
        for (int b = 1; b <= 5; b++) {
            snprintf(p, sizeof p, "%s/data_batch_%d.bin", dir, b);
            AL_CHECK(read_batch(p, 10, &s[0]));
        }
        snprintf(p, sizeof p, "%s/test_batch.bin", dir);
        AL_CHECK(read_batch(p, 10, &s[1]));
    } else {
        snprintf(p, sizeof p, "%s/train.bin", dir);
        AL_CHECK(read_batch(p, 100, &s[0]));
        snprintf(p, sizeof p, "%s/test.bin", dir);
        AL_CHECK(read_batch(p, 100, &s[1]));
    }
    snprintf(p, sizeof p, "%s/%s", dir, n_classes == 10 ? "batches.meta.txt" : "fine_label_names.txt");
    if (exists(p)) AL_CHECK(read_names(p, n_classes, &names));

    al_dataset_writer w;
    AL_CHECK(al_dataset_writer_open(&w, out_path, n_classes == 10 ? "cifar10" : "cifar100", n_classes,
                                    (const char *const *)names));
    st = al_dataset_writer_add_split(&w, "train", s[0].n, 3, 32, 32, s[0].images, s[0].labels);
    if (st == AL_OK) st = al_dataset_writer_add_split(&w, "test", s[1].n, 3, 32, 32, s[1].images, s[1].labels);
    if (st != AL_OK)
        al_dataset_writer_abort(&w);
    else
        st = al_dataset_writer_close(&w);
done:
    for (int i = 0; i < 2; i++) {
        free(s[i].images);
        free(s[i].labels);
    }
    if (names)
        for (int i = 0; i < n_classes; i++) free(names[i]);
    free(names);
    return st;
}
