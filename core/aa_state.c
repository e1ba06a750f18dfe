/* aa_state.c: AutoAttack resumable state file (see core/aa_state.h), HDF5, atomic write. */
#include "core/aa_state.h"

#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/checkpoint.h"

#define STATE_FORMAT "advlab-aa-state"

static al_status write_ds(hid_t f, const char *path, const char *name, hid_t mem, hid_t file_t,
                          int rank, const hsize_t *dims, const void *data) {
    hid_t sp = H5Screate_simple(rank, dims, NULL);
    hid_t ds = H5Dcreate2(f, name, file_t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = ds < 0 ? -1 : 0;
    /* a zero-size dataset has nothing to write (and data may be NULL) */
    if (ds >= 0 && dims[0] > 0) e = H5Dwrite(ds, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(sp);
    if (e < 0) return AL_FAIL(AL_ERR_IO, "%s:/%s: cannot write dataset", path, name);
    return AL_OK;
}

/* Read dataset `name` of exactly `rank` dims equal to `dims` (class H5T_INTEGER/H5T_FLOAT). */
static al_status read_ds(hid_t f, const char *path, const char *name, hid_t mem, int rank,
                         const hsize_t *dims, void *data) {
    if (!al_h5_has(f, name))
        return AL_FAIL(AL_ERR_FORMAT, "%s:/%s: missing dataset (not an AutoAttack state file?)",
                       path, name);
    hid_t ds = H5Dopen2(f, name, H5P_DEFAULT);
    if (ds < 0) return AL_FAIL(AL_ERR_FORMAT, "%s:/%s: cannot open dataset", path, name);
    hid_t sp = H5Dget_space(ds);
    hsize_t got[2] = {0, 0};
    int r = H5Sget_simple_extent_ndims(sp);
    al_status st = AL_OK;
    if (r != rank) {
        st = AL_FAIL(AL_ERR_FORMAT, "%s:/%s: rank %d, expected %d", path, name, r, rank);
    } else {
        H5Sget_simple_extent_dims(sp, got, NULL);
        for (int i = 0; i < rank; i++)
            if (got[i] != dims[i]) {
                st = AL_FAIL(AL_ERR_FORMAT, "%s:/%s: dimension %d is %llu, expected %llu", path,
                             name, i, (unsigned long long)got[i], (unsigned long long)dims[i]);
                break;
            }
        if (st == AL_OK && dims[0] > 0 &&
            H5Dread(ds, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
            st = AL_FAIL(AL_ERR_FORMAT, "%s:/%s: cannot read dataset", path, name);
    }
    H5Sclose(sp);
    H5Dclose(ds);
    return st;
}

static al_status write_f64_attr(hid_t f, const char *path, const char *attr, double v) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(f, attr, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_DOUBLE, &v);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    if (e < 0) return AL_FAIL(AL_ERR_IO, "%s:/: cannot write attribute %s", path, attr);
    return AL_OK;
}

static al_status read_f64_attr(hid_t f, const char *path, const char *attr, double *v) {
    if (!al_h5_has_attr(f, attr))
        return AL_FAIL(AL_ERR_FORMAT, "%s:/: missing attribute %s", path, attr);
    hid_t a = H5Aopen(f, attr, H5P_DEFAULT);
    herr_t e = a < 0 ? -1 : H5Aread(a, H5T_NATIVE_DOUBLE, v);
    if (a >= 0) H5Aclose(a);
    if (e < 0) return AL_FAIL(AL_ERR_FORMAT, "%s:/: cannot read attribute %s", path, attr);
    return AL_OK;
}

al_status al_aa_state_save(const char *path, const al_aa_state *s, const float *x_adv) {
    const int64_t n = s->n;
    const size_t d = (size_t)s->d;
    int64_t m = 0;
    for (int64_t i = 0; i < n; i++) m += s->clean[i] && !s->robust[i];
    int64_t *idx = al_malloc((size_t)(m ? m : 1) * sizeof *idx, "state adversarial index");
    float *rows = al_malloc((size_t)(m ? m : 1) * d * sizeof *rows, "state adversarial rows");
    if (!idx || !rows) {
        al_free(idx);
        al_free(rows);
        return AL_ERR_OOM;
    }
    for (int64_t i = 0, j = 0; i < n; i++)
        if (s->clean[i] && !s->robust[i]) {
            idx[j] = i;
            memcpy(rows + (size_t)j * d, x_adv + (size_t)i * d, d * sizeof *rows);
            j++;
        }
    char tmp[1200];
    int64_t file = -1;
    al_h5_quiet();
    al_status st = al_h5_create_tmp(path, tmp, sizeof tmp, &file);
    if (st != AL_OK) {
        al_free(idx);
        al_free(rows);
        return st;
    }
    const hid_t f = (hid_t)file;
    AL_CHECK(al_h5_write_attr_string(file, path, "/", "format", STATE_FORMAT));
    AL_CHECK(al_h5_write_attr_int(file, path, "/", "format_version", 1));
    AL_CHECK(al_h5_write_attr_string(file, path, "/", "attacks", s->attacks));
    AL_CHECK(al_h5_write_attr_string(file, path, "/", "version", s->version));
    AL_CHECK(al_h5_write_attr_string(file, path, "/", "norm", s->norm));
    AL_CHECK(al_h5_write_attr_string(file, path, "/", "key", s->key));
    AL_CHECK(al_h5_write_attr_floats(file, path, "/", "eps", &s->eps, 1));
    AL_CHECK(al_h5_write_attr_int64(file, path, "/", "seed", s->seed));
    AL_CHECK(al_h5_write_attr_int64(file, path, "/", "n", s->n));
    AL_CHECK(al_h5_write_attr_int64(file, path, "/", "d", s->d));
    AL_CHECK(al_h5_write_attr_int64(file, path, "/", "batch", s->batch));
    AL_CHECK(al_h5_write_attr_int64(file, path, "/", "next_attack", s->next_attack));
    AL_CHECK(al_h5_write_attr_int64(file, path, "/", "batches_done", s->batches_done));
    AL_CHECK(al_h5_write_attr_int64(file, path, "/", "zero_grad_total", s->zero_grad_total));
    AL_CHECK(al_h5_write_attr_int64(file, path, "/", "zero_grad_attack", s->zero_grad_attack));
    AL_CHECK(write_f64_attr(f, path, "seconds", s->seconds));
    {
        hsize_t d1[1] = {(hsize_t)n};
        AL_CHECK(write_ds(f, path, "clean", H5T_NATIVE_UINT8, H5T_STD_U8LE, 1, d1, s->clean));
        AL_CHECK(write_ds(f, path, "robust", H5T_NATIVE_UINT8, H5T_STD_U8LE, 1, d1, s->robust));
        AL_CHECK(write_ds(f, path, "plan", H5T_NATIVE_UINT8, H5T_STD_U8LE, 1, d1, s->plan));
        hsize_t dm[1] = {(hsize_t)m}, dr[2] = {(hsize_t)m, (hsize_t)d};
        AL_CHECK(write_ds(f, path, "adv_index", H5T_NATIVE_INT64, H5T_STD_I64LE, 1, dm, idx));
        AL_CHECK(write_ds(f, path, "adv_images", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 2, dr, rows));
        hsize_t da[1] = {(hsize_t)s->next_attack};
        AL_CHECK(write_ds(f, path, "robust_after", H5T_NATIVE_INT64, H5T_STD_I64LE, 1, da,
                          s->robust_after));
        AL_CHECK(write_ds(f, path, "seconds_after", H5T_NATIVE_DOUBLE, H5T_IEEE_F64LE, 1, da,
                          s->seconds_after));
    }
    al_free(idx);
    al_free(rows);
    return al_h5_commit(file, tmp, path);
done:
    al_free(idx);
    al_free(rows);
    al_h5_discard(file, tmp);
    return st;
}

/* Identity check of one string attribute. */
static al_status check_str(int64_t file, const char *path, const char *attr, const char *want) {
    char *got = NULL;
    AL_TRY(al_h5_attr_string(file, path, "/", attr, &got));
    al_status st = AL_OK;
    if (strcmp(got, want) != 0)
        st = AL_FAIL(AL_ERR_VALUE,
                     "%s: state was written for %s = '%s', this run has '%s' (a different "
                     "evaluation: remove the state file or use the original settings)",
                     path, attr, got, want);
    free(got);
    return st;
}

static al_status check_i64(int64_t file, const char *path, const char *attr, int64_t want) {
    int64_t got;
    AL_TRY(al_h5_attr_int64(file, path, "/", attr, INT64_MIN, INT64_MAX, &got));
    if (got != want)
        return AL_FAIL(AL_ERR_VALUE,
                       "%s: state was written for %s = %lld, this run has %lld (a different "
                       "evaluation: remove the state file or use the original settings)",
                       path, attr, (long long)got, (long long)want);
    return AL_OK;
}

al_status al_aa_state_load(const char *path, al_aa_state *s, float *x_adv) {
    int64_t file = -1;
    al_h5_quiet();
    AL_TRY(al_h5_open_read(path, &file));
    const hid_t f = (hid_t)file;
    al_status st = AL_OK;
    int64_t *idx = NULL;
    float *rows = NULL;
    AL_CHECK(al_h5_check_format(file, path, STATE_FORMAT));
    AL_CHECK(check_str(file, path, "attacks", s->attacks));
    AL_CHECK(check_str(file, path, "version", s->version));
    AL_CHECK(check_str(file, path, "norm", s->norm));
    AL_CHECK(check_str(file, path, "key", s->key));
    {
        float eps;
        AL_CHECK(al_h5_attr_floats(file, path, "/", "eps", &eps, 1));
        if (memcmp(&eps, &s->eps, sizeof eps) != 0) {
            st = AL_FAIL(AL_ERR_VALUE, "%s: state was written for eps = %.9g, this run has %.9g",
                         path, (double)eps, (double)s->eps);
            goto done;
        }
    }
    AL_CHECK(check_i64(file, path, "seed", s->seed));
    AL_CHECK(check_i64(file, path, "n", s->n));
    AL_CHECK(check_i64(file, path, "d", s->d));
    AL_CHECK(check_i64(file, path, "batch", s->batch));
    int64_t na = 0, nb = 0;
    int n_attacks = 1;
    for (const char *p = s->attacks; *p; p++) n_attacks += *p == ',';
    AL_CHECK(al_h5_attr_int64(file, path, "/", "next_attack", 0, n_attacks, &na));
    AL_CHECK(al_h5_attr_int64(file, path, "/", "batches_done", 0, INT32_MAX, &nb));
    AL_CHECK(al_h5_attr_int64(file, path, "/", "zero_grad_total", 0, INT64_MAX, &s->zero_grad_total));
    AL_CHECK(al_h5_attr_int64(file, path, "/", "zero_grad_attack", 0, INT64_MAX,
                              &s->zero_grad_attack));
    AL_CHECK(read_f64_attr(f, path, "seconds", &s->seconds));
    s->next_attack = (int)na;
    s->batches_done = (int)nb;
    {
        const hsize_t d1[1] = {(hsize_t)s->n};
        AL_CHECK(read_ds(f, path, "clean", H5T_NATIVE_UINT8, 1, d1, s->clean));
        AL_CHECK(read_ds(f, path, "robust", H5T_NATIVE_UINT8, 1, d1, s->robust));
        AL_CHECK(read_ds(f, path, "plan", H5T_NATIVE_UINT8, 1, d1, s->plan));
        const hsize_t da[1] = {(hsize_t)na};
        AL_CHECK(read_ds(f, path, "robust_after", H5T_NATIVE_INT64, 1, da, s->robust_after));
        AL_CHECK(read_ds(f, path, "seconds_after", H5T_NATIVE_DOUBLE, 1, da, s->seconds_after));
    }
    int64_t m = 0;
    for (int64_t i = 0; i < s->n; i++) {
        if (s->robust[i] && !s->clean[i]) {
            st = AL_FAIL(AL_ERR_FORMAT, "%s:/robust: point %lld robust but not clean", path,
                         (long long)i);
            goto done;
        }
        m += s->clean[i] && !s->robust[i];
    }
    idx = al_malloc((size_t)(m ? m : 1) * sizeof *idx, "state adversarial index");
    rows = al_malloc((size_t)(m ? m : 1) * (size_t)s->d * sizeof *rows, "state adversarial rows");
    if (!idx || !rows) {
        st = AL_ERR_OOM;
        goto done;
    }
    {
        const hsize_t dm[1] = {(hsize_t)m}, dr[2] = {(hsize_t)m, (hsize_t)s->d};
        AL_CHECK(read_ds(f, path, "adv_index", H5T_NATIVE_INT64, 1, dm, idx));
        AL_CHECK(read_ds(f, path, "adv_images", H5T_NATIVE_FLOAT, 2, dr, rows));
    }
    for (int64_t j = 0; j < m; j++) {
        if (idx[j] < 0 || idx[j] >= s->n || !s->clean[idx[j]] || s->robust[idx[j]]) {
            st = AL_FAIL(AL_ERR_FORMAT, "%s:/adv_index: entry %lld = %lld is not a broken point",
                         path, (long long)j, (long long)idx[j]);
            goto done;
        }
        memcpy(x_adv + (size_t)idx[j] * (size_t)s->d, rows + (size_t)j * (size_t)s->d,
               (size_t)s->d * sizeof *rows);
    }
done:
    al_free(idx);
    al_free(rows);
    H5Fclose(f);
    return st;
}
