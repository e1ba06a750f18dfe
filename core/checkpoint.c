/* checkpoint.c: advlab checkpoint files (formats.md §2) over serial HDF5, and the small HDF5
 * helpers (al_h5_*) that datasets/ and tools/ share: a quiet error stack, strict attribute
 * readers, variable-length UTF-8 string attributes, and the atomic write protocol
 * (<path>.tmp, H5Fflush, close, fsync, rename, fsync of the directory).
 * Parameters travel device -> host -> file on save and file -> host -> device on load; a load
 * validates everything before it touches the model, so a failed load leaves the model as it
 * was. No GPU twin: this is host I/O. */
#include "core/checkpoint.h"
#include "core/ops/meansparse.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/ops/bn_gate.h"

_Static_assert(sizeof(hid_t) == sizeof(int64_t), "hid_t is carried as int64_t in headers");
_Static_assert(sizeof(hsize_t) == sizeof(unsigned long long), "hsize_t in al_h5_shape_str");

#define CKPT_FORMAT "advlab-checkpoint"

/* ================================================================ HDF5 helpers */

void al_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

/* Innermost HDF5 error description of the current stack (the most specific one), or "". */
static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
    char *buf = data;
    if (n == 0 && e->desc) snprintf(buf, 160, "%s", e->desc);
    return 0;
}
static const char *h5_detail(char *buf) {
    buf[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, buf);
    return buf;
}

const char *al_h5_type_str(int64_t type, char *buf, size_t len) {
    size_t sz = H5Tget_size(type);
    switch (H5Tget_class(type)) {
    case H5T_INTEGER:
        snprintf(buf, len, "integer (%zu byte%s, %s)", sz, sz == 1 ? "" : "s",
                 H5Tget_sign(type) == H5T_SGN_NONE ? "unsigned" : "signed");
        break;
    case H5T_FLOAT: snprintf(buf, len, "float (%zu bytes)", sz); break;
    case H5T_STRING: snprintf(buf, len, "string"); break;
    case H5T_COMPOUND: snprintf(buf, len, "compound"); break;
    case H5T_ENUM: snprintf(buf, len, "enum"); break;
    case H5T_ARRAY: snprintf(buf, len, "array"); break;
    case H5T_VLEN: snprintf(buf, len, "variable-length sequence"); break;
    default: snprintf(buf, len, "type class %d", (int)H5Tget_class(type)); break;
    }
    return buf;
}

const char *al_h5_shape_str(int rank, const unsigned long long *dims, char *buf, size_t len) {
    size_t o = 0;
    o += (size_t)snprintf(buf + o, len - o, "[");
    for (int d = 0; d < rank && o < len; d++)
        o += (size_t)snprintf(buf + o, len - o, "%s%llu", d ? ", " : "", dims[d]);
    if (o < len) snprintf(buf + o, len - o, "]");
    return buf;
}

int al_h5_has(int64_t loc, const char *name) {
    /* H5Lexists fails (< 0) when an intermediate group is missing: treat as absent. */
    return H5Lexists(loc, name, H5P_DEFAULT) > 0;
}
int al_h5_has_attr(int64_t loc, const char *attr) { return H5Aexists(loc, attr) > 0; }

al_status al_h5_open_read(const char *path, int64_t *file) {
    al_h5_quiet();
    *file = -1;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return AL_FAIL(AL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return AL_FAIL(AL_ERR_IO, "%s: is a directory, expected an HDF5 file", path);
    int fd = open(path, O_RDONLY);
    if (fd < 0) return AL_FAIL(AL_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    close(fd);
    if (H5Fis_hdf5(path) <= 0)
        return AL_FAIL(AL_ERR_FORMAT, "%s: not an HDF5 file (%lld bytes, no HDF5 signature)", path,
                       (long long)sb.st_size);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG); /* closing the file closes everything in it */
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    char d[160];
    if (f < 0) h5_detail(d); /* before the next HDF5 call resets the error stack */
    H5Pclose(fapl);
    if (f < 0) {
        return AL_FAIL(AL_ERR_FORMAT, "%s: cannot open as HDF5, truncated or corrupt file (%lld bytes)%s%s",
                       path, (long long)sb.st_size, d[0] ? ": " : "", d);
    }
    *file = f;
    return AL_OK;
}

/* Open attribute `attr` of loc and check it holds `n` elements of class `cls` (n < 0: any). */
static al_status attr_open(hid_t loc, const char *path, const char *obj, const char *attr,
                           H5T_class_t cls, const char *want, int64_t n, hid_t *a_out,
                           hid_t *t_out, int64_t *n_out) {
    *a_out = *t_out = -1;
    if (H5Aexists(loc, attr) <= 0)
        return AL_FAIL(AL_ERR_FORMAT, "%s:%s: attribute '%s' missing (expected %s)", path, obj, attr, want);
    hid_t a = H5Aopen(loc, attr, H5P_DEFAULT);
    if (a < 0) return AL_FAIL(AL_ERR_FORMAT, "%s:%s: attribute '%s' cannot be opened", path, obj, attr);
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    H5Sclose(sp);
    char tb[64];
    if (H5Tget_class(t) != cls) {
        al_h5_type_str(t, tb, sizeof tb);
        H5Tclose(t);
        H5Aclose(a);
        return AL_FAIL(AL_ERR_FORMAT, "%s:%s: attribute '%s' is %s, expected %s", path, obj, attr, tb, want);
    }
    if (n >= 0 && np != n) {
        H5Tclose(t);
        H5Aclose(a);
        return AL_FAIL(AL_ERR_FORMAT, "%s:%s: attribute '%s' has %lld values, expected %lld", path, obj,
                       attr, (long long)np, (long long)n);
    }
    *a_out = a;
    *t_out = t;
    if (n_out) *n_out = np;
    return AL_OK;
}

/* Read `n` strings (variable or fixed length) of an open string attribute into malloc'd copies. */
static al_status read_strings(hid_t a, hid_t t, const char *path, const char *obj, const char *attr,
                              int64_t n, char **out) {
    al_status st = AL_OK;
    hid_t mem = H5Tcopy(H5T_C_S1);
    H5Tset_cset(mem, H5Tget_cset(t));
    if (H5Tis_variable_str(t) > 0) {
        H5Tset_size(mem, H5T_VARIABLE);
        char **v = calloc((size_t)n, sizeof *v);
        if (!v) {
            H5Tclose(mem);
            return AL_FAIL(AL_ERR_OOM, "%s:%s: out of memory reading attribute '%s'", path, obj, attr);
        }
        if (H5Aread(a, mem, v) < 0) {
            st = AL_FAIL(AL_ERR_FORMAT, "%s:%s: attribute '%s' cannot be read", path, obj, attr);
        } else {
            for (int64_t i = 0; i < n; i++) out[i] = strdup(v[i] ? v[i] : "");
            hsize_t dn = (hsize_t)n;
            hid_t sp = H5Screate_simple(1, &dn, NULL);
            H5Dvlen_reclaim(mem, sp, H5P_DEFAULT, v);
            H5Sclose(sp);
        }
        free(v);
    } else {
        size_t sz = H5Tget_size(t);
        H5Tset_size(mem, sz + 1);
        H5Tset_strpad(mem, H5T_STR_NULLTERM);
        char *buf = calloc((size_t)n, sz + 1);
        if (!buf) {
            H5Tclose(mem);
            return AL_FAIL(AL_ERR_OOM, "%s:%s: out of memory reading attribute '%s'", path, obj, attr);
        }
        if (H5Aread(a, mem, buf) < 0)
            st = AL_FAIL(AL_ERR_FORMAT, "%s:%s: attribute '%s' cannot be read", path, obj, attr);
        else
            for (int64_t i = 0; i < n; i++) out[i] = strdup(buf + (size_t)i * (sz + 1));
        free(buf);
    }
    H5Tclose(mem);
    if (st == AL_OK)
        for (int64_t i = 0; i < n; i++)
            if (!out[i]) st = AL_FAIL(AL_ERR_OOM, "%s:%s: out of memory copying '%s'", path, obj, attr);
    return st;
}

al_status al_h5_attr_string(int64_t loc, const char *path, const char *obj, const char *attr,
                            char **out) {
    *out = NULL;
    hid_t a, t;
    AL_TRY(attr_open(loc, path, obj, attr, H5T_STRING, "a string", 1, &a, &t, NULL));
    al_status st = read_strings(a, t, path, obj, attr, 1, out);
    H5Tclose(t);
    H5Aclose(a);
    return st;
}

al_status al_h5_attr_strings(int64_t loc, const char *path, const char *obj, const char *attr,
                             int n, char ***out) {
    *out = NULL;
    hid_t a, t;
    int64_t np = 0;
    AL_TRY(attr_open(loc, path, obj, attr, H5T_STRING, "strings", -1, &a, &t, &np));
    al_status st = AL_OK;
    if (np != n) {
        st = AL_FAIL(AL_ERR_FORMAT, "%s:%s: attribute '%s' has %lld strings, expected %d", path, obj,
                     attr, (long long)np, n);
    } else {
        char **v = calloc((size_t)n + 1, sizeof *v);
        if (!v) st = AL_FAIL(AL_ERR_OOM, "%s:%s: out of memory reading '%s'", path, obj, attr);
        if (v) st = read_strings(a, t, path, obj, attr, n, v);
        if (st != AL_OK && v) {
            for (int i = 0; i < n; i++) free(v[i]);
            free(v);
            v = NULL;
        }
        *out = v;
    }
    H5Tclose(t);
    H5Aclose(a);
    return st;
}

al_status al_h5_attr_int64(int64_t loc, const char *path, const char *obj, const char *attr,
                           int64_t lo, int64_t hi, int64_t *out) {
    hid_t a, t;
    AL_TRY(attr_open(loc, path, obj, attr, H5T_INTEGER, "an integer", 1, &a, &t, NULL));
    int64_t v = 0;
    /* An unsigned 64-bit value above INT64_MAX saturates in the conversion; the range check
     * below reports it. */
    herr_t rc = H5Aread(a, H5T_NATIVE_INT64, &v);
    H5Tclose(t);
    H5Aclose(a);
    if (rc < 0) return AL_FAIL(AL_ERR_FORMAT, "%s:%s: attribute '%s' cannot be read", path, obj, attr);
    if (v < lo || v > hi)
        return AL_FAIL(AL_ERR_FORMAT, "%s:%s: attribute %s = %lld outside [%lld, %lld]", path, obj, attr,
                       (long long)v, (long long)lo, (long long)hi);
    *out = v;
    return AL_OK;
}

al_status al_h5_attr_floats(int64_t loc, const char *path, const char *obj, const char *attr,
                            float *out, int n) {
    hid_t a, t;
    AL_TRY(attr_open(loc, path, obj, attr, H5T_FLOAT, "float32 values", n, &a, &t, NULL));
    herr_t rc = H5Aread(a, H5T_NATIVE_FLOAT, out);
    H5Tclose(t);
    H5Aclose(a);
    if (rc < 0) return AL_FAIL(AL_ERR_FORMAT, "%s:%s: attribute '%s' cannot be read", path, obj, attr);
    return AL_OK;
}

static al_status write_attr(hid_t loc, const char *path, const char *obj, const char *attr,
                            hid_t ftype, hid_t mtype, int rank, hsize_t n, const void *v) {
    hid_t sp = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL);
    hid_t a = H5Acreate2(loc, attr, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, mtype, v);
    char d[160];
    if (rc < 0) h5_detail(d);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    if (rc < 0) {
        return AL_FAIL(AL_ERR_IO, "%s:%s: cannot write attribute '%s': %s", path, obj, attr, d);
    }
    return AL_OK;
}

static hid_t utf8_vlen(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

al_status al_h5_write_attr_string(int64_t loc, const char *path, const char *obj,
                                  const char *attr, const char *s) {
    hid_t t = utf8_vlen();
    const char *v = s ? s : "";
    al_status st = write_attr(loc, path, obj, attr, t, t, 0, 1, &v);
    H5Tclose(t);
    return st;
}

al_status al_h5_write_attr_strings(int64_t loc, const char *path, const char *obj,
                                   const char *attr, int n, const char *const *s) {
    hid_t t = utf8_vlen();
    al_status st = write_attr(loc, path, obj, attr, t, t, 1, (hsize_t)n, s);
    H5Tclose(t);
    return st;
}

al_status al_h5_write_attr_int(int64_t loc, const char *path, const char *obj, const char *attr,
                               int v) {
    return write_attr(loc, path, obj, attr, H5T_STD_I32LE, H5T_NATIVE_INT, 0, 1, &v);
}
al_status al_h5_write_attr_int64(int64_t loc, const char *path, const char *obj,
                                 const char *attr, int64_t v) {
    return write_attr(loc, path, obj, attr, H5T_STD_I64LE, H5T_NATIVE_INT64, 0, 1, &v);
}
al_status al_h5_write_attr_floats(int64_t loc, const char *path, const char *obj,
                                  const char *attr, const float *v, int n) {
    return write_attr(loc, path, obj, attr, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 1, (hsize_t)n, v);
}

al_status al_h5_check_format(int64_t file, const char *path, const char *format) {
    char *fmt = NULL;
    if (!al_h5_has_attr(file, "format"))
        return AL_FAIL(AL_ERR_FORMAT, "%s:/: attribute 'format' missing (not an %s file)", path, format);
    AL_TRY(al_h5_attr_string(file, path, "/", "format", &fmt));
    int ok = strcmp(fmt, format) == 0;
    if (!ok) al_fail(AL_ERR_FORMAT, "%s:/: format = \"%s\", expected \"%s\"", path, fmt, format);
    free(fmt);
    if (!ok) return AL_ERR_FORMAT;
    int64_t v;
    AL_TRY(al_h5_attr_int64(file, path, "/", "format_version", INT64_MIN, INT64_MAX, &v));
    if (v != 1)
        return AL_FAIL(AL_ERR_FORMAT, "%s:/: format_version = %lld, expected 1 (the version this advlab reads)",
                       path, (long long)v);
    return AL_OK;
}

al_status al_h5_create_tmp(const char *path, char *tmp, size_t tmp_len, int64_t *file) {
    al_h5_quiet();
    *file = -1;
    if ((size_t)snprintf(tmp, tmp_len, "%s.tmp", path) >= tmp_len)
        return AL_FAIL(AL_ERR_VALUE, "%s: output path too long", path);
    /* Create it ourselves first: HDF5 does not report errno, and "Permission denied" or
     * "No such file or directory" is what the user needs to read. */
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) return AL_FAIL(AL_ERR_IO, "%s: cannot create temporary file %s: %s", path, tmp, strerror(errno));
    close(fd);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    char d[160];
    if (f < 0) h5_detail(d);
    H5Pclose(fapl);
    if (f < 0) {
        unlink(tmp);
        return AL_FAIL(AL_ERR_IO, "%s: cannot create HDF5 file %s: %s", path, tmp, d);
    }
    *file = f;
    return AL_OK;
}

void al_h5_discard(int64_t file, const char *tmp) {
    if (file >= 0) H5Fclose(file);
    if (tmp && tmp[0]) unlink(tmp);
}

al_status al_h5_commit(int64_t file, const char *tmp, const char *path) {
    char d[160];
    if (H5Fflush(file, H5F_SCOPE_GLOBAL) < 0) {
        h5_detail(d);
        al_h5_discard(file, tmp);
        return AL_FAIL(AL_ERR_IO, "%s: flushing %s failed (disk full?): %s", path, tmp, d);
    }
    if (H5Fclose(file) < 0) {
        h5_detail(d);
        unlink(tmp);
        return AL_FAIL(AL_ERR_IO, "%s: closing %s failed (disk full?): %s", path, tmp, d);
    }
    /* H5Fflush only hands the data to the OS; fsync makes it durable before the rename. */
    int fd = open(tmp, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
        int e = errno;
        if (fd >= 0) close(fd);
        unlink(tmp);
        return AL_FAIL(AL_ERR_IO, "%s: fsync of %s failed: %s", path, tmp, strerror(e));
    }
    close(fd);
    if (rename(tmp, path) != 0) {
        int e = errno;
        unlink(tmp);
        return AL_FAIL(AL_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp, strerror(e));
    }
    /* Persist the rename itself (directory entry). Best effort: some filesystems refuse
     * fsync on a directory, and the data is already safe. */
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash == dir) dir[1] = 0;
    else if (slash) *slash = 0;
    else snprintf(dir, sizeof dir, ".");
    int dfd = open(dir, O_RDONLY);
    if (dfd >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return AL_OK;
}

/* ================================================================ checkpoint internals */

static al_status open_group(hid_t f, const char *path, const char *name, const char *why, hid_t *g) {
    *g = -1;
    if (!al_h5_has(f, name)) return AL_FAIL(AL_ERR_FORMAT, "%s:/%s: missing (%s)", path, name, why);
    hid_t o = H5Oopen(f, name, H5P_DEFAULT);
    if (o < 0) return AL_FAIL(AL_ERR_FORMAT, "%s:/%s: cannot be opened", path, name);
    if (H5Iget_type(o) != H5I_GROUP) {
        H5Oclose(o);
        return AL_FAIL(AL_ERR_FORMAT, "%s:/%s: is not a group", path, name);
    }
    *g = o;
    return AL_OK;
}

static al_status write_dset(hid_t loc, const char *path, const char *grp, const char *name,
                            hid_t ftype, hid_t mtype, int rank, const hsize_t *dims, const void *data) {
    hid_t sp = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims, NULL);
    hid_t d = H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = d < 0 ? -1 : H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    char e[160];
    if (rc < 0) h5_detail(e);
    if (d >= 0) H5Dclose(d);
    H5Sclose(sp);
    if (rc < 0) {
        return AL_FAIL(AL_ERR_IO, "%s:%s/%s: cannot write: %s", path, grp, name, e);
    }
    return AL_OK;
}

static hid_t new_group(hid_t f, const char *name) {
    return H5Gcreate2(f, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
}

/* Name of BN node nd's num_batches_tracked for branch b (formats.md: dotted naming). */
static void nbt_name(const al_node *nd, int b, char *buf, size_t len) {
    if (b == 0)
        snprintf(buf, len, "%s.num_batches_tracked", nd->name);
    else
        snprintf(buf, len, "%s.branch%d.num_batches_tracked", nd->name, b);
}

static int nbt_lookup(const al_model *m, const char *name, int *node, int *branch) {
    char buf[AL_NAME_LEN + 48];
    for (int i = 0; i < m->n_nodes; i++) {
        if (!al_bn_gate_is_bn_node(&m->nodes[i])) continue;
        for (int b = 0; b < m->n_branches; b++) {
            nbt_name(&m->nodes[i], b, buf, sizeof buf);
            if (strcmp(buf, name) == 0) {
                *node = i;
                *branch = b;
                return 1;
            }
        }
    }
    return 0;
}

/* Write every parameter (or only trainable ones) as <grp>/<name><suffix>, float32. */
static al_status write_params(hid_t f, const char *path, const char *grp, const al_model *m,
                              const char *suffix, int trainable_only, const float *h) {
    hid_t g = new_group(f, grp + 1);
    if (g < 0) return AL_FAIL(AL_ERR_IO, "%s:%s: cannot create group", path, grp);
    al_status st = AL_OK;
    for (int i = 0; i < m->n_params && st == AL_OK; i++) {
        const al_param *p = &m->params[i];
        if (trainable_only && !p->trainable) continue;
        char name[AL_NAME_LEN + 32];
        snprintf(name, sizeof name, "%s%s", p->name, suffix);
        hsize_t dims[4];
        for (int d = 0; d < p->ndim; d++) dims[d] = (hsize_t)p->shape[d];
        st = write_dset(g, path, grp, name, H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, p->ndim, dims,
                        h + p->offset);
    }
    H5Gclose(g);
    return st;
}

/* Read one float parameter strictly: present, a dataset, float class, exact shape. */
static al_status read_param(hid_t g, const char *path, const char *grp, const char *name,
                            const al_param *p, float *dst) {
    char want[96], got[96], tb[64];
    hsize_t wd[4];
    for (int d = 0; d < p->ndim; d++) wd[d] = (hsize_t)p->shape[d];
    al_h5_shape_str(p->ndim, wd, want, sizeof want);
    if (!al_h5_has(g, name))
        return AL_FAIL(AL_ERR_FORMAT, "%s:%s/%s: missing (expected float32 %s)", path, grp, name, want);
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0 || H5Iget_type(o) != H5I_DATASET) {
        if (o >= 0) H5Oclose(o);
        return AL_FAIL(AL_ERR_FORMAT, "%s:%s/%s: is not a dataset (expected float32 %s)", path, grp, name, want);
    }
    hid_t t = H5Dget_type(o), sp = H5Dget_space(o);
    int rank = H5Sget_simple_extent_ndims(sp);
    hsize_t dims[H5S_MAX_RANK];
    H5Sget_simple_extent_dims(sp, dims, NULL);
    al_status st = AL_OK;
    if (H5Tget_class(t) != H5T_FLOAT) {
        st = AL_FAIL(AL_ERR_FORMAT, "%s:%s/%s: dtype %s, expected float32", path, grp, name,
                     al_h5_type_str(t, tb, sizeof tb));
    } else {
        int same = rank == p->ndim;
        for (int d = 0; same && d < rank; d++) same = dims[d] == wd[d];
        if (!same) {
            st = AL_FAIL(AL_ERR_FORMAT, "%s:%s/%s: shape %s, expected %s", path, grp, name,
                         al_h5_shape_str(rank, dims, got, sizeof got), want);
        } else if (H5Dread(o, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, dst) < 0) {
            char e[160];
            st = AL_FAIL(AL_ERR_FORMAT, "%s:%s/%s: read failed (truncated file?): %s", path, grp, name,
                         h5_detail(e));
        }
    }
    H5Tclose(t);
    H5Sclose(sp);
    H5Oclose(o);
    return st;
}

/* Read an int64 scalar dataset (num_batches_tracked): integer class, one element. */
static al_status read_i64_scalar(hid_t g, const char *path, const char *grp, const char *name,
                                 int64_t *v) {
    hid_t o = H5Oopen(g, name, H5P_DEFAULT);
    if (o < 0 || H5Iget_type(o) != H5I_DATASET) {
        if (o >= 0) H5Oclose(o);
        return AL_FAIL(AL_ERR_FORMAT, "%s:%s/%s: is not a dataset (expected int64 scalar)", path, grp, name);
    }
    hid_t t = H5Dget_type(o), sp = H5Dget_space(o);
    hssize_t np = H5Sget_simple_extent_npoints(sp);
    char tb[64];
    al_status st = AL_OK;
    if (H5Tget_class(t) != H5T_INTEGER)
        st = AL_FAIL(AL_ERR_FORMAT, "%s:%s/%s: dtype %s, expected int64", path, grp, name,
                     al_h5_type_str(t, tb, sizeof tb));
    else if (np != 1)
        st = AL_FAIL(AL_ERR_FORMAT, "%s:%s/%s: %lld values, expected an int64 scalar", path, grp, name,
                     (long long)np);
    else if (H5Dread(o, H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, v) < 0)
        st = AL_FAIL(AL_ERR_FORMAT, "%s:%s/%s: read failed", path, grp, name);
    else if (*v < 0)
        st = AL_FAIL(AL_ERR_FORMAT, "%s:%s/%s: value %lld, expected >= 0", path, grp, name, (long long)*v);
    H5Tclose(t);
    H5Sclose(sp);
    H5Oclose(o);
    return st;
}

/* Every link in a parameter group must name something the model expects. */
typedef struct extra_ctx {
    const al_model *m;
    const char *path, *grp, *suffix;
    int trainable_only, allow_nbt;
    al_status st;
} extra_ctx;

static herr_t extra_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)g;
    (void)info;
    extra_ctx *x = data;
    size_t ln = strlen(name), ls = strlen(x->suffix);
    if (ln > ls && strcmp(name + ln - ls, x->suffix) == 0) {
        char base[AL_NAME_LEN + 32];
        snprintf(base, sizeof base, "%.*s", (int)(ln - ls), name);
        int i = al_model_find_param(x->m, base);
        if (i >= 0 && (!x->trainable_only || x->m->params[i].trainable)) return 0;
    }
    int node, branch;
    if (x->allow_nbt && nbt_lookup(x->m, name, &node, &branch)) return 0;
    x->st = AL_FAIL(AL_ERR_FORMAT, "%s:%s/%s: unexpected entry (not a%s parameter of arch %s)", x->path,
                    x->grp, name, x->trainable_only ? " trainable" : "", x->m->arch);
    return 1; /* stop */
}

static al_status check_extras(hid_t g, const char *path, const char *grp, const al_model *m,
                              const char *suffix, int trainable_only, int allow_nbt) {
    extra_ctx x = {m, path, grp, suffix, trainable_only, allow_nbt, AL_OK};
    hsize_t idx = 0;
    herr_t rc = H5Literate(g, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, extra_cb, &x);
    if (x.st != AL_OK) return x.st;
    if (rc < 0) return AL_FAIL(AL_ERR_FORMAT, "%s:%s: cannot list entries", path, grp);
    return AL_OK;
}

/* Read a whole parameter group (<grp>/<name><suffix>) strictly into host buffer h. */
static al_status read_params(hid_t f, const char *path, const char *grp, const al_model *m,
                             const char *suffix, int trainable_only, int allow_nbt, float *h) {
    hid_t g;
    AL_TRY(open_group(f, path, grp + 1, "expected by the checkpoint format", &g));
    al_status st = AL_OK;
    for (int i = 0; i < m->n_params && st == AL_OK; i++) {
        const al_param *p = &m->params[i];
        if (trainable_only && !p->trainable) continue;
        char name[AL_NAME_LEN + 32];
        snprintf(name, sizeof name, "%s%s", p->name, suffix);
        st = read_param(g, path, grp, name, p, h + p->offset);
    }
    if (st == AL_OK) st = check_extras(g, path, grp, m, suffix, trainable_only, allow_nbt);
    H5Oclose(g);
    return st;
}

/* ================================================================ save */

al_status al_checkpoint_save(al_ctx *ctx, const al_model *m, const al_train_state *ts,
                             const char *path) {
    AL_ASSERT(m->setup_done, "checkpoint save of model %s before al_model_setup", m->arch);
    AL_ASSERT(m->in_c <= 4, "in_channels %d", m->in_c);
    al_status st = AL_OK;
    hid_t f = -1, g = -1;
    char tmp[1100] = "";
    size_t bytes = m->n_param_floats * sizeof(float);
    float *h = al_malloc(bytes, "checkpoint parameters");
    if (!h) return AL_ERR_OOM;
    AL_CHECK(al_copy_to_host(ctx, h, m->data, bytes));
    AL_CHECK(al_h5_create_tmp(path, tmp, sizeof tmp, &f));

    AL_CHECK(al_h5_write_attr_string(f, path, "/", "format", CKPT_FORMAT));
    AL_CHECK(al_h5_write_attr_int(f, path, "/", "format_version", 1));

    AL_CHECK(write_params(f, path, "/model", m, "", 0, h));
    g = H5Gopen2(f, "model", H5P_DEFAULT);
    AL_CHECK(al_h5_write_attr_string(g, path, "/model", "arch", m->arch));
    AL_CHECK(al_h5_write_attr_int(g, path, "/model", "num_classes", m->num_classes));
    AL_CHECK(al_h5_write_attr_int(g, path, "/model", "in_channels", m->in_c));
    AL_CHECK(al_h5_write_attr_int(g, path, "/model", "image_size", m->in_h));
    AL_CHECK(al_h5_write_attr_floats(g, path, "/model", "mean", m->mean, m->in_c));
    AL_CHECK(al_h5_write_attr_floats(g, path, "/model", "std", m->std, m->in_c));
    AL_CHECK(al_h5_write_attr_int(g, path, "/model", "bn_branches", m->n_branches));
    AL_CHECK(al_h5_write_attr_int(g, path, "/model", "bn_gate", al_bn_gate_mode(m)));
    AL_CHECK(al_h5_write_attr_int(g, path, "/model", "eval_branch", m->eval_branch));
    for (int i = 0; i < m->n_nodes; i++) {
        const al_node *nd = &m->nodes[i];
        if (!al_bn_gate_is_bn_node(nd)) continue;
        for (int b = 0; b < m->n_branches; b++) {
            char name[AL_NAME_LEN + 48];
            nbt_name(nd, b, name, sizeof name);
            AL_CHECK(write_dset(g, path, "/model", name, H5T_STD_I64LE, H5T_NATIVE_INT64, 0, NULL,
                                &nd->bn_tracked[b]));
        }
    }
    H5Gclose(g);
    g = -1;

    if (ts) {
        if (ts->momentum) {
            AL_CHECK(write_params(f, path, "/optimizer", m, ".momentum_buffer", 1, ts->momentum));
            g = H5Gopen2(f, "optimizer", H5P_DEFAULT);
            AL_CHECK(al_h5_write_attr_int64(g, path, "/optimizer", "step", ts->step));
            H5Gclose(g);
            g = -1;
        }
        if (ts->ema) AL_CHECK(write_params(f, path, "/ema", m, "", 0, ts->ema));
        g = new_group(f, "train");
        if (g < 0) AL_CHECK(AL_FAIL(AL_ERR_IO, "%s:/train: cannot create group", path));
        AL_CHECK(al_h5_write_attr_int(g, path, "/train", "epoch", ts->epoch));
        AL_CHECK(al_h5_write_attr_int64(g, path, "/train", "step", ts->step));
        AL_CHECK(al_h5_write_attr_int64(g, path, "/train", "seed", ts->seed));
        AL_CHECK(al_h5_write_attr_string(g, path, "/train", "config", ts->config ? ts->config : ""));
        if (ts->rng_state && ts->rng_state_bytes > 0) {
            hsize_t n = ts->rng_state_bytes;
            AL_CHECK(write_dset(g, path, "/train", "rng_state", H5T_STD_U8LE, H5T_NATIVE_UINT8, 1, &n,
                                ts->rng_state));
        }
        H5Gclose(g);
        g = -1;
        if (ts->n_metrics > 0) {
            g = new_group(f, "metrics");
            if (g < 0) AL_CHECK(AL_FAIL(AL_ERR_IO, "%s:/metrics: cannot create group", path));
            for (int i = 0; i < ts->n_metrics; i++) {
                hsize_t n = (hsize_t)ts->n_epochs;
                AL_CHECK(write_dset(g, path, "/metrics", ts->metric_names[i], H5T_IEEE_F64LE,
                                    H5T_NATIVE_DOUBLE, 1, &n, ts->metric_values[i]));
            }
            H5Gclose(g);
            g = -1;
        }
    }
    st = al_h5_commit(f, tmp, path);
    f = -1;
done:
    if (g >= 0) H5Gclose(g);
    if (f >= 0) al_h5_discard(f, tmp);
    al_free(h);
    return st;
}

/* ================================================================ info / load */

static al_status read_info(hid_t f, const char *path, al_ckpt_info *info) {
    memset(info, 0, sizeof *info);
    AL_TRY(al_h5_check_format(f, path, CKPT_FORMAT));
    hid_t g;
    AL_TRY(open_group(f, path, "model", "no model parameters", &g));
    al_status st = AL_OK;
    char *arch = NULL;
    int64_t v;
    AL_CHECK(al_h5_attr_string(g, path, "/model", "arch", &arch));
    if (strlen(arch) == 0 || strlen(arch) >= sizeof info->arch)
        AL_CHECK(AL_FAIL(AL_ERR_FORMAT, "%s:/model: attribute arch \"%s\" is empty or too long", path, arch));
    snprintf(info->arch, sizeof info->arch, "%s", arch);
    AL_CHECK(al_h5_attr_int64(g, path, "/model", "num_classes", 1, INT_MAX, &v));
    info->num_classes = (int)v;
    AL_CHECK(al_h5_attr_int64(g, path, "/model", "in_channels", 1, 4, &v));
    info->in_channels = (int)v;
    AL_CHECK(al_h5_attr_int64(g, path, "/model", "image_size", 1, 1 << 16, &v));
    info->image_size = (int)v;
    for (int c = 0; c < 4; c++) {
        info->mean[c] = 0.0f;
        info->std[c] = 1.0f;
    }
    int has_mean = al_h5_has_attr(g, "mean"), has_std = al_h5_has_attr(g, "std");
    if (has_mean != has_std)
        AL_CHECK(AL_FAIL(AL_ERR_FORMAT, "%s:/model: attribute '%s' present but '%s' missing", path,
                         has_mean ? "mean" : "std", has_mean ? "std" : "mean"));
    if (has_mean) {
        AL_CHECK(al_h5_attr_floats(g, path, "/model", "mean", info->mean, info->in_channels));
        AL_CHECK(al_h5_attr_floats(g, path, "/model", "std", info->std, info->in_channels));
        for (int c = 0; c < info->in_channels; c++) {
            if (!isfinite(info->mean[c]))
                AL_CHECK(AL_FAIL(AL_ERR_FORMAT, "%s:/model: mean[%d] = %g is not finite", path, c,
                                 (double)info->mean[c]));
            if (!(info->std[c] > 0.0f) || !isfinite(info->std[c]))
                AL_CHECK(AL_FAIL(AL_ERR_FORMAT, "%s:/model: std[%d] = %g, expected a finite value > 0",
                                 path, c, (double)info->std[c]));
        }
        info->has_norm = 1;
    }
    /* optional (older files: one branch, no gate, branch 0) */
    info->bn_branches = 1;
    info->has_bn_attrs = al_h5_has_attr(g, "bn_branches");
    if (info->has_bn_attrs) {
        AL_CHECK(al_h5_attr_int64(g, path, "/model", "bn_branches", 1, AL_MAX_BN_BRANCHES, &v));
        info->bn_branches = (int)v;
    }
    if (al_h5_has_attr(g, "bn_gate")) {
        AL_CHECK(al_h5_attr_int64(g, path, "/model", "bn_gate", 0, 2, &v));
        info->bn_gate = (int)v;
    }
    if (al_h5_has_attr(g, "eval_branch")) {
        AL_CHECK(al_h5_attr_int64(g, path, "/model", "eval_branch", -1, info->bn_branches - 1, &v));
        info->eval_branch = (int)v;
    }
    if (info->eval_branch < 0 && !info->bn_gate)
        AL_CHECK(AL_FAIL(AL_ERR_FORMAT, "%s:/model: eval_branch -1 (the learned selector) without bn_gate",
                         path));
    info->has_optimizer = al_h5_has(f, "optimizer");
    info->has_ema = al_h5_has(f, "ema");
    info->has_train = al_h5_has(f, "train");
    if (info->has_train) {
        H5Oclose(g);
        g = -1;
        AL_CHECK(open_group(f, path, "train", "", &g));
        AL_CHECK(al_h5_attr_int64(g, path, "/train", "epoch", 0, INT_MAX, &v));
        info->epoch = (int)v;
        AL_CHECK(al_h5_attr_int64(g, path, "/train", "step", 0, INT64_MAX, &info->step));
        AL_CHECK(al_h5_attr_int64(g, path, "/train", "seed", INT64_MIN, INT64_MAX, &info->seed));
    }
done:
    free(arch);
    if (g >= 0) H5Oclose(g);
    return st;
}

al_status al_checkpoint_info(const char *path, al_ckpt_info *info) {
    hid_t f;
    AL_TRY(al_h5_open_read(path, &f));
    al_status st = read_info(f, path, info);
    H5Fclose(f);
    return st;
}

al_status al_checkpoint_create_model(const char *path, al_model **out) {
    *out = NULL;
    al_ckpt_info info;
    AL_TRY(al_checkpoint_info(path, &info));
    al_model_opts mo = {info.bn_branches};
    al_status st = al_model_create_opts(info.arch, info.num_classes, info.in_channels, info.image_size,
                                        &mo, out);
    if (st == AL_OK && info.bn_gate) st = al_bn_gate_attach(*out, info.bn_gate == 2);
    if (st != AL_OK) {
        char why[1024];
        snprintf(why, sizeof why, "%s", al_errmsg()); /* al_fail must not read its own buffer */
        al_model_destroy(NULL, *out);
        *out = NULL;
        return AL_FAIL(st, "%s:/model: %s", path, why);
    }
    if (info.has_norm) al_model_set_normalization(*out, info.mean, info.std);
    (*out)->eval_branch = info.eval_branch;
    /* post-processing recorded in the checkpoint (MeanSparse nodes + statistics) */
    st = al_meansparse_apply_checkpoint(path, *out, NULL);
    if (st != AL_OK) {
        al_model_destroy(NULL, *out);
        *out = NULL;
    }
    return st;
}

al_status al_checkpoint_load(al_ctx *ctx, al_model *m, const char *path) {
    AL_ASSERT(m->setup_done, "checkpoint load into model %s before al_model_setup", m->arch);
    hid_t f = -1, g = -1;
    al_status st = AL_OK;
    float *h = NULL;
    int64_t *tracked = NULL;
    AL_TRY(al_h5_open_read(path, &f));
    al_ckpt_info info;
    AL_CHECK(read_info(f, path, &info));
    if (strcmp(info.arch, m->arch) != 0)
        AL_CHECK(AL_FAIL(AL_ERR_FORMAT, "%s:/model: arch '%s', but the model is '%s'", path, info.arch, m->arch));
    if (info.num_classes != m->num_classes || info.in_channels != m->in_c || info.image_size != m->in_h)
        AL_CHECK(AL_FAIL(AL_ERR_FORMAT,
                         "%s:/model: num_classes %d, in_channels %d, image_size %d; the model has %d, %d, %d",
                         path, info.num_classes, info.in_channels, info.image_size, m->num_classes,
                         m->in_c, m->in_h));
    for (int c = 0; c < m->in_c; c++)
        if (info.mean[c] != m->mean[c] || info.std[c] != m->std[c])
            AL_CHECK(AL_FAIL(AL_ERR_FORMAT,
                             "%s:/model: normalisation mean[%d]/std[%d] = %g/%g, the model has %g/%g "
                             "(build it with al_checkpoint_create_model)",
                             path, c, c, (double)info.mean[c], (double)info.std[c], (double)m->mean[c],
                             (double)m->std[c]));

    h = al_calloc(m->n_param_floats, sizeof(float), "checkpoint parameters");
    tracked = al_calloc((size_t)m->n_nodes * AL_MAX_BN_BRANCHES, sizeof(int64_t), "BN counters");
    if (!h || !tracked) AL_CHECK(AL_ERR_OOM);
    AL_CHECK(read_params(f, path, "/model", m, "", 0, 1, h));
    g = H5Gopen2(f, "model", H5P_DEFAULT);
    if (info.has_bn_attrs && (info.bn_branches != m->n_branches || info.bn_gate != al_bn_gate_mode(m)))
        AL_CHECK(AL_FAIL(AL_ERR_FORMAT,
                         "%s:/model: %d BN branches, BN gate mode %d; the model has %d, %d (build it with "
                         "al_checkpoint_create_model)",
                         path, info.bn_branches, info.bn_gate, m->n_branches, al_bn_gate_mode(m)));
    for (int i = 0; i < m->n_nodes; i++) {
        if (!al_bn_gate_is_bn_node(&m->nodes[i])) continue;
        for (int b = 0; b < m->n_branches; b++) {
            char name[AL_NAME_LEN + 48];
            nbt_name(&m->nodes[i], b, name, sizeof name);
            if (al_h5_has(g, name)) /* optional (formats.md) */
                AL_CHECK(read_i64_scalar(g, path, "/model", name, &tracked[i * AL_MAX_BN_BRANCHES + b]));
        }
    }
    /* Everything validated: only now touch the model. */
    AL_CHECK(al_copy_to_dev(ctx, m->data, h, m->n_param_floats * sizeof(float)));
    for (int i = 0; i < m->n_nodes; i++)
        for (int b = 0; b < AL_MAX_BN_BRANCHES; b++)
            m->nodes[i].bn_tracked[b] = tracked[i * AL_MAX_BN_BRANCHES + b];
done:
    if (g >= 0) H5Gclose(g);
    if (f >= 0) H5Fclose(f);
    al_free(h);
    al_free(tracked);
    return st;
}

/* /metrics: every entry a float-class rank-1 dataset. */
static herr_t list_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)g;
    (void)info;
    al_train_state_in *ts = data;
    char **nn = realloc(ts->metric_names, (size_t)(ts->n_metrics + 1) * sizeof *nn);
    if (!nn) return -1;
    ts->metric_names = nn;
    nn[ts->n_metrics] = strdup(name);
    if (!nn[ts->n_metrics]) return -1;
    ts->n_metrics++;
    return 0;
}

static al_status read_metrics(hid_t f, const char *path, al_train_state_in *ts) {
    hid_t g;
    AL_TRY(open_group(f, path, "metrics", "", &g));
    al_status st = AL_OK;
    hsize_t idx = 0;
    if (H5Literate(g, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, list_cb, ts) < 0)
        AL_CHECK(AL_FAIL(AL_ERR_FORMAT, "%s:/metrics: cannot list entries", path));
    ts->metric_values = calloc((size_t)ts->n_metrics + 1, sizeof *ts->metric_values);
    ts->metric_lens = calloc((size_t)ts->n_metrics + 1, sizeof *ts->metric_lens);
    if (!ts->metric_values || !ts->metric_lens) AL_CHECK(AL_FAIL(AL_ERR_OOM, "%s:/metrics: out of memory", path));
    for (int i = 0; i < ts->n_metrics; i++) {
        const char *name = ts->metric_names[i];
        hid_t d = H5Oopen(g, name, H5P_DEFAULT);
        if (d < 0 || H5Iget_type(d) != H5I_DATASET) {
            if (d >= 0) H5Oclose(d);
            AL_CHECK(AL_FAIL(AL_ERR_FORMAT, "%s:/metrics/%s: is not a dataset", path, name));
        }
        hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
        int rank = H5Sget_simple_extent_ndims(sp);
        hsize_t n = 0;
        if (rank == 1) H5Sget_simple_extent_dims(sp, &n, NULL);
        H5T_class_t cls = H5Tget_class(t);
        char tb[64];
        al_h5_type_str(t, tb, sizeof tb);
        H5Tclose(t);
        H5Sclose(sp);
        if (cls != H5T_FLOAT || rank != 1) {
            H5Oclose(d);
            AL_CHECK(AL_FAIL(AL_ERR_FORMAT, "%s:/metrics/%s: %s rank %d, expected float [epochs]", path,
                             name, tb, rank));
        }
        ts->metric_lens[i] = (int64_t)n;
        ts->metric_values[i] = malloc((n ? n : 1) * sizeof(double));
        if (!ts->metric_values[i] ||
            (n && H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, ts->metric_values[i]) < 0)) {
            H5Oclose(d);
            AL_CHECK(AL_FAIL(AL_ERR_FORMAT, "%s:/metrics/%s: read failed", path, name));
        }
        H5Oclose(d);
    }
done:
    H5Oclose(g);
    return st;
}

al_status al_checkpoint_load_train(const char *path, const al_model *m, al_train_state_in *ts) {
    float *mom = ts->momentum, *ema = ts->ema;
    memset(ts, 0, sizeof *ts);
    ts->momentum = mom;
    ts->ema = ema;
    hid_t f = -1, g = -1;
    al_status st = AL_OK;
    char *config = NULL;
    AL_TRY(al_h5_open_read(path, &f));
    al_ckpt_info info;
    AL_CHECK(read_info(f, path, &info));
    if (strcmp(info.arch, m->arch) != 0)
        AL_CHECK(AL_FAIL(AL_ERR_FORMAT, "%s:/model: arch '%s', but the model is '%s'", path, info.arch, m->arch));
    if (!info.has_train)
        AL_CHECK(AL_FAIL(AL_ERR_FORMAT, "%s:/train: missing (the checkpoint holds no training state to resume)", path));
    ts->epoch = info.epoch;
    ts->step = info.step;
    ts->seed = info.seed;
    AL_CHECK(open_group(f, path, "train", "", &g));
    AL_CHECK(al_h5_attr_string(g, path, "/train", "config", &config));
    ts->config = config;
    config = NULL;
    if (al_h5_has(g, "rng_state")) {
        hid_t d = H5Oopen(g, "rng_state", H5P_DEFAULT);
        if (d < 0 || H5Iget_type(d) != H5I_DATASET) {
            if (d >= 0) H5Oclose(d);
            AL_CHECK(AL_FAIL(AL_ERR_FORMAT, "%s:/train/rng_state: is not a dataset", path));
        }
        hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
        int rank = H5Sget_simple_extent_ndims(sp);
        hssize_t n = H5Sget_simple_extent_npoints(sp);
        int ok = H5Tget_class(t) == H5T_INTEGER && H5Tget_size(t) == 1 && rank == 1;
        char tb[64];
        al_h5_type_str(t, tb, sizeof tb);
        H5Tclose(t);
        H5Sclose(sp);
        if (!ok) {
            H5Oclose(d);
            AL_CHECK(AL_FAIL(AL_ERR_FORMAT, "%s:/train/rng_state: %s rank %d, expected uint8 [bytes]", path,
                             tb, rank));
        }
        ts->rng_state = malloc((size_t)(n ? n : 1));
        ts->rng_state_bytes = (size_t)n;
        if (!ts->rng_state ||
            (n && H5Dread(d, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, ts->rng_state) < 0)) {
            H5Oclose(d);
            AL_CHECK(AL_FAIL(AL_ERR_FORMAT, "%s:/train/rng_state: read failed", path));
        }
        H5Oclose(d);
    }
    H5Oclose(g);
    g = -1;
    if (mom && info.has_optimizer) {
        memset(mom, 0, m->n_param_floats * sizeof(float));
        AL_CHECK(read_params(f, path, "/optimizer", m, ".momentum_buffer", 1, 0, mom));
        ts->has_momentum = 1;
    }
    if (ema && info.has_ema) {
        memset(ema, 0, m->n_param_floats * sizeof(float));
        AL_CHECK(read_params(f, path, "/ema", m, "", 0, 0, ema));
        ts->has_ema = 1;
    }
    if (al_h5_has(f, "metrics")) AL_CHECK(read_metrics(f, path, ts));
done:
    free(config);
    if (g >= 0) H5Oclose(g);
    if (f >= 0) H5Fclose(f);
    if (st != AL_OK) {
        al_train_state_in_free(ts);
        ts->has_momentum = ts->has_ema = 0;
    }
    return st;
}

void al_train_state_in_free(al_train_state_in *ts) {
    if (!ts) return;
    free(ts->config);
    free(ts->rng_state);
    for (int i = 0; i < ts->n_metrics; i++) {
        if (ts->metric_names) free(ts->metric_names[i]);
        if (ts->metric_values) free(ts->metric_values[i]);
    }
    free(ts->metric_names);
    free(ts->metric_values);
    free(ts->metric_lens);
    ts->config = NULL;
    ts->rng_state = NULL;
    ts->rng_state_bytes = 0;
    ts->metric_names = NULL;
    ts->metric_values = NULL;
    ts->metric_lens = NULL;
    ts->n_metrics = 0;
}
