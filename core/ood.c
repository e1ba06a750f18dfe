/* ood.c: OOD scores, detection metrics and the scores file (core/ood.h).
 * Twin: none (host code; the model forward dispatches to ctx's device). The metrics are exact
 * counting on sorted copies: every ratio is (integer count) / (integer count), one rounding,
 * so an independent numpy computation agrees to ~1e-15 relative (tests/ood/metrics_ref.py). */
#include "core/ood.h"

#include <hdf5.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/checkpoint.h"
#include "datasets/sampler.h"

const char *al_ood_score_name(al_ood_score s) {
    switch (s) {
    case AL_OOD_MSP: return "msp";
    case AL_OOD_ENERGY: return "energy";
    default: return "?";
    }
}

al_status al_ood_score_parse(const char *name, al_ood_score *out) {
    for (int s = 0; s < AL_OOD_N_SCORES; s++)
        if (!strcmp(name, al_ood_score_name((al_ood_score)s))) {
            *out = (al_ood_score)s;
            return AL_OK;
        }
    return AL_FAIL(AL_ERR_VALUE, "ood: unknown score '%s' (expected msp|energy)", name);
}

void al_ood_scores(al_ood_score kind, int64_t n, int k, const float *logits, double temperature,
                   double *out) {
    for (int64_t i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * k;
        double m = z[0];
        for (int j = 1; j < k; j++)
            if ((double)z[j] > m || z[j] != z[j]) m = z[j];
        if (!isfinite(m)) { /* NaN or +inf logit: no meaningful score (rejected by metrics) */
            out[i] = NAN;
            continue;
        }
        if (kind == AL_OOD_MSP) {
            double s = 0.0;
            for (int j = 0; j < k; j++) s += exp((double)z[j] - m);
            out[i] = 1.0 / s; /* softmax at the max: exp(0) / sum */
        } else {
            const double t = temperature;
            double s = 0.0;
            for (int j = 0; j < k; j++) s += exp(((double)z[j] - m) / t);
            out[i] = m + t * log(s); /* T logsumexp(z / T) */
        }
    }
}

/* ---------------------------------------------------------------- metrics */

static int dcmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* #{v[i] < t} in ascending v */
static int64_t count_below(const double *v, int64_t n, double t) {
    int64_t lo = 0, hi = n;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo) / 2;
        if (v[mid] < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static al_status check_finite(const double *s, int64_t n, const char *which) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(s[i]))
            return AL_FAIL(AL_ERR_VALUE, "ood: %s score %g at index %lld is not finite", which,
                           s[i], (long long)i);
    return AL_OK;
}

al_status al_ood_metrics_compute(const double *s_in, int64_t n_in, const double *s_out,
                                 int64_t n_out, al_ood_metrics *out) {
    memset(out, 0, sizeof *out);
    out->f1_openset = NAN;
    if (n_in < 1 || n_out < 1)
        return AL_FAIL(AL_ERR_VALUE, "ood: need in- and out-of-distribution points (n_in %lld, "
                       "n_out %lld)", (long long)n_in, (long long)n_out);
    AL_TRY(check_finite(s_in, n_in, "in-distribution"));
    AL_TRY(check_finite(s_out, n_out, "out-of-distribution"));
    double *a = al_malloc((size_t)n_in * sizeof(double), "ood sorted in-scores");
    double *b = al_malloc((size_t)n_out * sizeof(double), "ood sorted out-scores");
    if (!a || !b) {
        al_free(a);
        al_free(b);
        return AL_ERR_OOM;
    }
    memcpy(a, s_in, (size_t)n_in * sizeof(double));
    memcpy(b, s_out, (size_t)n_out * sizeof(double));
    qsort(a, (size_t)n_in, sizeof(double), dcmp);
    qsort(b, (size_t)n_out, sizeof(double), dcmp);
    out->n_in = n_in;
    out->n_out = n_out;

    /* AUROC = (2 #{in > out} + #{in == out}) / (2 n_in n_out): two pointers over both sorts */
    int64_t below = 0, equal = 0, lo = 0, hi = 0;
    for (int64_t i = 0; i < n_in; i++) {
        while (lo < n_out && b[lo] < a[i]) lo++;
        if (hi < lo) hi = lo;
        while (hi < n_out && b[hi] <= a[i]) hi++;
        below += lo;
        equal += hi - lo;
    }
    out->auroc = (double)(2 * below + equal) / (2.0 * (double)n_in * (double)n_out);

    /* the 95%-TPR threshold: the m-th largest ID score, m = ceil(0.95 n_in) */
    const int64_t m = (95 * n_in + 99) / 100;
    const double t = a[n_in - m];
    const int64_t in_below = count_below(a, n_in, t), out_below = count_below(b, n_out, t);
    out->threshold = t;
    out->tpr = (double)(n_in - in_below) / (double)n_in;
    out->fpr95 = (double)(n_out - out_below) / (double)n_out;
    const int64_t tp = out_below, fp = in_below, fn = n_out - out_below;
    out->f1 = (double)(2 * tp) / (double)(2 * tp + fp + fn);
    out->precision = tp + fp > 0 ? (double)tp / (double)(tp + fp) : 0.0;
    out->recall = (double)tp / (double)n_out;

    /* detection error over every distinct threshold (and +inf: reject everything) */
    double best = 0.5;
    for (int64_t i = 0, j = 0; i < n_in || j < n_out;) {
        double v = j >= n_out || (i < n_in && a[i] <= b[j]) ? a[i] : b[j];
        /* threshold v: ID rejected = #{a < v} = i, OOD accepted = n_out - #{b < v} = n_out - j */
        double e = 0.5 * (double)i / (double)n_in + 0.5 * (double)(n_out - j) / (double)n_out;
        if (e < best) best = e;
        while (i < n_in && a[i] == v) i++;
        while (j < n_out && b[j] == v) j++;
    }
    out->detection_error = best;
    al_free(a);
    al_free(b);
    return AL_OK;
}

al_status al_ood_openset_f1(const double *s_in, const int32_t *pred_in, const int32_t *y_in,
                            int64_t n_in, const double *s_out, const int32_t *pred_out,
                            int64_t n_out, int k, double threshold, double *f1) {
    int64_t *cnt = al_calloc((size_t)(k + 1) * 3, sizeof(int64_t), "ood open-set counts");
    uint8_t *seen = al_calloc((size_t)k + 1, 1, "ood open-set classes");
    al_status st = AL_OK;
    if (!cnt || !seen) {
        st = AL_ERR_OOM;
        goto done;
    }
    int64_t *tp = cnt, *fp = cnt + k + 1, *fn = cnt + 2 * (k + 1);
    for (int64_t i = 0; i < n_in + n_out; i++) {
        const int is_in = i < n_in;
        const int64_t r = is_in ? i : i - n_in;
        const int32_t p = is_in ? pred_in[r] : pred_out[r];
        const int32_t y = is_in ? y_in[r] : k;
        if (p < 0 || p >= k || y < 0 || y > k) {
            st = AL_FAIL(AL_ERR_VALUE, "ood: open-set F1: %s point %lld has label %d, prediction "
                         "%d (expected [0,%d))", is_in ? "in-distribution" : "OOD", (long long)r,
                         (int)y, (int)p, k);
            goto done;
        }
        const int32_t q = (is_in ? s_in[r] : s_out[r]) >= threshold ? p : k;
        seen[q] = seen[y] = 1;
        if (q == y) {
            tp[y]++;
        } else {
            fp[q]++;
            fn[y]++;
        }
    }
    double sum = 0.0;
    int n_cls = 0;
    for (int c = 0; c <= k; c++) {
        if (!seen[c]) continue;
        n_cls++;
        const int64_t den = 2 * tp[c] + fp[c] + fn[c];
        sum += den > 0 ? (double)(2 * tp[c]) / (double)den : 0.0;
    }
    *f1 = n_cls > 0 ? sum / n_cls : 0.0;
done:
    al_free(cnt);
    al_free(seen);
    return st;
}

/* ---------------------------------------------------------------- model pass */

al_status al_ood_logits(al_ctx *ctx, al_model *m, al_dataset *ds, int64_t n, int batch,
                        float *logits, int32_t *labels) {
    if (ds->c != m->in_c || ds->h != m->in_h || ds->w != m->in_w)
        return AL_FAIL(AL_ERR_FORMAT, "%s:/%s/images: images are %dx%dx%d, the model expects "
                       "%dx%dx%d", ds->path, ds->split, ds->c, ds->h, ds->w, m->in_c, m->in_h,
                       m->in_w);
    if (n < 1 || n > ds->n)
        return AL_FAIL(AL_ERR_VALUE, "ood: %lld rows requested from %s:/%s, which has %lld",
                       (long long)n, ds->path, ds->split, (long long)ds->n);
    if (batch > m->max_batch) batch = m->max_batch;
    if (batch < 1) return AL_FAIL(AL_ERR_VALUE, "ood: batch %d < 1", batch);
    const int k = m->num_classes;
    const size_t d = (size_t)ds->c * ds->h * ds->w;
    const int on_dev = ctx->device != AL_DEV_CPU;
    al_status st = AL_OK;
    uint8_t *u8 = al_malloc((size_t)batch * d, "ood image batch");
    float *hx = al_malloc((size_t)batch * d * sizeof(float), "ood float batch");
    float *dx = NULL;
    if (!u8 || !hx) {
        st = AL_ERR_OOM;
        goto done;
    }
    if (on_dev) AL_CHECK(al_dev_alloc(ctx, (void **)&dx, (size_t)batch * d * sizeof(float), "ood batch"));
    for (int64_t s = 0; s < n; s += batch) {
        const int nb = (int)AL_MIN((int64_t)batch, n - s);
        AL_CHECK(al_dataset_read(ds, s, nb, u8, labels + s));
        al_batch_to_float(u8, nb, ds->c, ds->h, ds->w, 0, 0, 0, hx);
        const float *xin = hx;
        if (on_dev) {
            AL_CHECK(al_copy_to_dev(ctx, dx, hx, (size_t)nb * d * sizeof(float)));
            xin = dx;
        }
        AL_CHECK(al_model_forward_eval(ctx, m, xin, nb, 0));
        AL_CHECK(al_copy_to_host(ctx, logits + (size_t)s * k, al_model_logits(m, 0),
                                 (size_t)nb * k * sizeof(float)));
    }
done:
    al_free(u8);
    al_free(hx);
    if (dx) al_dev_free(ctx, dx);
    return st;
}

/* ---------------------------------------------------------------- scores file */

static al_status write_ds(int64_t loc, const char *path, const char *grp, const char *name,
                          hid_t mem_type, hid_t file_type, int rank, const hsize_t *dims,
                          const void *data) {
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t ds = H5Dcreate2((hid_t)loc, name, file_type, space, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = ds < 0 ? -1 : H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(space);
    if (e < 0) return AL_FAIL(AL_ERR_IO, "%s:/%s/%s: cannot write dataset", path, grp, name);
    return AL_OK;
}

static al_status write_attr_f64(int64_t loc, const char *path, const char *obj, const char *name,
                                double v) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2((hid_t)loc, name, H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_DOUBLE, &v);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    if (e < 0) return AL_FAIL(AL_ERR_IO, "%s:%s: cannot write attribute %s", path, obj, name);
    return AL_OK;
}

static al_status write_side(int64_t file, const char *path, const char *grp, int64_t n, int k,
                            const float *logits, const int32_t *labels,
                            const double *const *scores) {
    hid_t g = H5Gcreate2((hid_t)file, grp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0) return AL_FAIL(AL_ERR_IO, "%s:/%s: cannot create group", path, grp);
    al_status st = AL_OK;
    hsize_t d2[2] = {(hsize_t)n, (hsize_t)k}, d1[1] = {(hsize_t)n};
    AL_CHECK(write_ds(g, path, grp, "logits", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 2, d2, logits));
    AL_CHECK(write_ds(g, path, grp, "labels", H5T_NATIVE_INT32, H5T_STD_I32LE, 1, d1, labels));
    for (int s = 0; s < AL_OOD_N_SCORES; s++)
        if (scores[s])
            AL_CHECK(write_ds(g, path, grp, al_ood_score_name((al_ood_score)s), H5T_NATIVE_DOUBLE,
                              H5T_IEEE_F64LE, 1, d1, scores[s]));
done:
    H5Gclose(g);
    return st;
}

al_status al_ood_file_write(const char *path, const al_ood_file *f) {
    char tmp[1024];
    int64_t file = -1;
    al_h5_quiet();
    AL_TRY(al_h5_create_tmp(path, tmp, sizeof tmp, &file));
    al_status st = AL_OK;
    AL_CHECK(al_h5_write_attr_string(file, path, "/", "format", "advlab-ood-scores"));
    AL_CHECK(al_h5_write_attr_int(file, path, "/", "format_version", 1));
    AL_CHECK(al_h5_write_attr_string(file, path, "/", "checkpoint", f->checkpoint));
    AL_CHECK(al_h5_write_attr_string(file, path, "/", "in_dataset", f->in_dataset));
    AL_CHECK(al_h5_write_attr_string(file, path, "/", "in_split", f->in_split));
    AL_CHECK(al_h5_write_attr_string(file, path, "/", "out_dataset", f->out_dataset));
    AL_CHECK(al_h5_write_attr_string(file, path, "/", "out_split", f->out_split));
    AL_CHECK(write_attr_f64(file, path, "/", "temperature", f->temperature));
    AL_CHECK(write_side(file, path, "in", f->n_in, f->k, f->logits_in, f->labels_in, f->scores_in));
    AL_CHECK(write_side(file, path, "out", f->n_out, f->k, f->logits_out, f->labels_out,
                        f->scores_out));
    {
        hid_t mg = H5Gcreate2((hid_t)file, "metrics", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (mg < 0) {
            st = AL_FAIL(AL_ERR_IO, "%s:/metrics: cannot create group", path);
            goto done;
        }
        for (int s = 0; s < AL_OOD_N_SCORES && st == AL_OK; s++) {
            const al_ood_metrics *m = f->metrics[s];
            if (!m) continue;
            const char *name = al_ood_score_name((al_ood_score)s);
            hid_t g = H5Gcreate2(mg, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            if (g < 0) {
                st = AL_FAIL(AL_ERR_IO, "%s:/metrics/%s: cannot create group", path, name);
                break;
            }
            char obj[64];
            snprintf(obj, sizeof obj, "/metrics/%s", name);
            const char *keys[] = {"auroc", "threshold", "tpr", "fpr95", "f1", "precision",
                                  "recall", "detection_error", "f1_openset"};
            const double vals[] = {m->auroc, m->threshold, m->tpr, m->fpr95, m->f1,
                                   m->precision, m->recall, m->detection_error, m->f1_openset};
            for (size_t i = 0; i < AL_ARRAY_LEN(keys) && st == AL_OK; i++)
                st = write_attr_f64(g, path, obj, keys[i], vals[i]);
            H5Gclose(g);
        }
        H5Gclose(mg);
        if (st != AL_OK) goto done;
    }
    return al_h5_commit(file, tmp, path);
done:
    al_h5_discard(file, tmp);
    return st;
}
