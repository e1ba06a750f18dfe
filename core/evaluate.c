/* evaluate.c: batched clean/adversarial evaluation and the attack output file writer. */
#include "core/evaluate.h"

#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "core/checkpoint.h"
#include "core/cuda_api.h"
#include "datasets/sampler.h"
#include "losses/loss.h"

static al_attack_init init_from_cfg(al_rand_init r) {
    switch (r) {
    case AL_RINIT_UNIFORM: return AL_ATTACK_INIT_UNIFORM;
    case AL_RINIT_NORMAL: return AL_ATTACK_INIT_NORMAL;
    default: return AL_ATTACK_INIT_NONE;
    }
}

al_status al_eval_spec_from_config(const al_config *cfg, al_attack_spec *spec, int *none) {
    const al_cfg_eval *e = &cfg->eval;
    *none = e->attack == AL_EVAL_NONE;
    if (*none) return AL_OK;
    if (e->attack != AL_EVAL_FGSM && e->attack != AL_EVAL_PGD && e->attack != AL_EVAL_CW)
        return AL_FAIL(AL_ERR_UNSUPPORTED,
                       "config: eval.attack = %s is an AutoAttack-family attack: run it with advlab "
                       "attack (training-time evaluation runs fgsm, pgd or cw)",
                       al_config_enum_name("eval.attack", (int)e->attack));
    al_attack_type type = e->attack == AL_EVAL_FGSM ? AL_ATTACK_FGSM : AL_ATTACK_PGD;
    *spec = al_attack_spec_make(type, (al_norm)e->norm, e->eps, e->alpha, e->steps);
    spec->restarts = e->restarts;
    spec->init = type == AL_ATTACK_FGSM && e->random_init == AL_RINIT_UNIFORM && e->alpha <= 0
                     ? AL_ATTACK_INIT_NONE
                     : init_from_cfg(e->random_init);
    spec->loss = (e->attack == AL_EVAL_CW || e->loss == AL_LOSS_CW) ? AL_ATTACK_LOSS_CW
                                                                     : AL_ATTACK_LOSS_CE;
    if (e->targeted)
        return AL_FAIL(AL_ERR_UNSUPPORTED,
                       "config: eval.targeted = 1: targeted evaluation needs target labels; use "
                       "APGD-T/AutoAttack (issue #6) or an untargeted attack");
    spec->keep_clean_if_failed = 1;
    return AL_OK;
}

al_status al_train_spec_from_config(const al_config *cfg, al_attack_spec *spec, int *none) {
    const al_cfg_train *t = &cfg->train;
    const al_cfg_attack *a = &cfg->attack;
    *none = t->method == AL_METHOD_STANDARD || t->method == AL_METHOD_DFA;
    if (*none) return AL_OK;
    al_attack_type type = t->method == AL_METHOD_FAST_AT ? AL_ATTACK_FGSM : AL_ATTACK_PGD;
    *spec = al_attack_spec_make(type, (al_norm)a->norm, a->eps, a->alpha, a->steps);
    spec->restarts = a->restarts;
    spec->init = init_from_cfg(a->random_init);
    spec->init_std = 0.001f;
    spec->loss = t->method == AL_METHOD_TRADES ? AL_ATTACK_LOSS_KL_TRADES : AL_ATTACK_LOSS_CE;
    spec->keep_clean_if_failed = 0;
    spec->fwd.slot = 0;
    switch (t->bn_mode_attack) {
    case AL_BN_ATTACK_TRAIN: spec->fwd.train = 1; spec->fwd.update_bn = 1; break;
    case AL_BN_ATTACK_TRAIN_NO_UPDATE: spec->fwd.train = 1; spec->fwd.update_bn = 0; break;
    default: spec->fwd.train = 0; spec->fwd.update_bn = 0; break;
    }
    return AL_OK;
}

al_status al_evaluate(al_ctx *ctx, al_model *m, const uint8_t *images, const int32_t *labels,
                      int64_t n, int batch, const al_attack_spec *spec, uint64_t seed,
                      const char *label, float *x_adv, uint8_t *clean, uint8_t *robust,
                      al_eval_counts *out) {
    memset(out, 0, sizeof *out);
    al_nvtx_push("evaluation");
    if (batch > m->max_batch) batch = m->max_batch;
    const int c = m->in_c, h = m->in_h, w = m->in_w, k = m->num_classes;
    const size_t d = (size_t)c * h * w;
    const int on_dev = ctx->device != AL_DEV_CPU;
    al_status st = AL_OK;
    float *d_x = NULL, *d_adv = NULL, *h_x = NULL;
    int32_t *d_y = NULL;
    uint8_t *d_flag = NULL, *h_flag = NULL;
    al_attack_ws ws;
    memset(&ws, 0, sizeof ws);
    AL_CHECK(al_dev_alloc(ctx, (void **)&d_x, (size_t)batch * d * sizeof(float), "eval inputs"));
    AL_CHECK(al_dev_alloc(ctx, (void **)&d_adv, (size_t)batch * d * sizeof(float), "eval x_adv"));
    AL_CHECK(al_dev_alloc(ctx, (void **)&d_y, (size_t)batch * sizeof(int32_t), "eval labels"));
    AL_CHECK(al_dev_alloc(ctx, (void **)&d_flag, (size_t)batch, "eval flags"));
    h_x = al_malloc((size_t)batch * d * sizeof(float), "eval staging");
    h_flag = al_malloc((size_t)batch, "eval flags");
    if (!h_x || !h_flag) {
        st = AL_ERR_OOM;
        goto done;
    }
    if (spec) AL_CHECK(al_attack_ws_init(ctx, &ws, m, batch));

    al_progress prog;
    al_progress_begin(&prog, label ? label : "eval", n);
    double t0 = al_now();
    for (int64_t s = 0, b = 0; s < n; s += batch, b++) {
        int nb = (int)AL_MIN((int64_t)batch, n - s);
        al_batch_to_float(images + (size_t)s * d, nb, c, h, w, 0, 0, 0, on_dev ? h_x : d_x);
        if (on_dev) AL_CHECK(al_copy_to_dev(ctx, d_x, h_x, (size_t)nb * d * sizeof(float)));
        AL_CHECK(al_copy_to_dev(ctx, d_y, labels + s, (size_t)nb * sizeof(int32_t)));
        int n_clean = 0, n_rob = 0;
        AL_CHECK(al_model_forward_eval(ctx, m, d_x, nb, 0));
        AL_CHECK(al_count_correct(ctx, nb, k, al_model_logits(m, 0), d_y, &n_clean, d_flag));
        if (clean) AL_CHECK(al_copy_to_host(ctx, clean + s, d_flag, (size_t)nb));
        const float *final_x = d_x;
        if (spec) {
            al_attack_spec sp = *spec;
            sp.fwd.slot = 0;
            AL_CHECK(al_attack_run(ctx, m, &sp, &ws, d_x, d_y, nb, seed,
                                   al_stream(AL_STREAM_ATTACK, (uint64_t)b), d_adv, NULL, NULL));
            final_x = d_adv;
            /* robust flags from a fresh forward pass on the images we report */
            AL_CHECK(al_model_forward_eval(ctx, m, d_adv, nb, 0));
            AL_CHECK(al_count_correct(ctx, nb, k, al_model_logits(m, 0), d_y, &n_rob, d_flag));
        } else {
            n_rob = n_clean;
        }
        if (robust) AL_CHECK(al_copy_to_host(ctx, robust + s, d_flag, (size_t)nb));
        if (x_adv)
            AL_CHECK(al_copy_to_host(ctx, x_adv + (size_t)s * d, final_x, (size_t)nb * d * sizeof(float)));
        out->clean_correct += n_clean;
        out->robust_correct += n_rob;
        out->n += nb;
        al_progress_update(&prog, out->n, NAN, (double)out->robust_correct / (double)out->n);
    }
    al_progress_end(&prog);
    out->seconds = al_now() - t0;
done:
    if (spec) al_attack_ws_fini(ctx, &ws);
    al_dev_free(ctx, d_x);
    al_dev_free(ctx, d_adv);
    al_dev_free(ctx, d_y);
    al_dev_free(ctx, d_flag);
    al_free(h_x);
    al_free(h_flag);
    al_nvtx_pop();
    return st;
}

static al_status write_ds(int64_t file, const char *path, const char *name, hid_t mem_type,
                          hid_t file_type, int rank, const hsize_t *dims, const void *data) {
    hid_t space = H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (rank == 4 && dims[0] > 0) {
        hsize_t chunk[4] = {dims[0] < 256 ? dims[0] : 256, dims[1], dims[2], dims[3]};
        H5Pset_chunk(dcpl, 4, chunk);
        H5Pset_shuffle(dcpl);
        H5Pset_deflate(dcpl, 4);
    }
    hid_t ds = H5Dcreate2((hid_t)file, name, file_type, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    herr_t e = ds < 0 ? -1 : H5Dwrite(ds, mem_type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data);
    if (ds >= 0) H5Dclose(ds);
    H5Pclose(dcpl);
    H5Sclose(space);
    if (e < 0) return AL_FAIL(AL_ERR_IO, "%s:/%s: cannot write dataset", path, name);
    return AL_OK;
}

al_status al_advfile_write(const char *path, const al_advfile *f) {
    char tmp[1024];
    int64_t file = -1;
    al_h5_quiet();
    AL_TRY(al_h5_create_tmp(path, tmp, sizeof tmp, &file));
    al_status st = AL_OK;
    AL_CHECK(al_h5_write_attr_string(file, path, "/", "format", "advlab-adversarial"));
    AL_CHECK(al_h5_write_attr_int(file, path, "/", "format_version", 1));
    AL_CHECK(al_h5_write_attr_string(file, path, "/", "attack", f->attack));
    AL_CHECK(al_h5_write_attr_string(file, path, "/", "norm", f->norm));
    {
        hid_t sp = H5Screate(H5S_SCALAR);
        hid_t a = H5Acreate2((hid_t)file, "eps", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
        herr_t e = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_DOUBLE, &f->eps);
        if (a >= 0) H5Aclose(a);
        H5Sclose(sp);
        if (e < 0) {
            st = AL_FAIL(AL_ERR_IO, "%s:/: cannot write attribute eps", path);
            goto done;
        }
    }
    AL_CHECK(al_h5_write_attr_string(file, path, "/", "checkpoint", f->checkpoint));
    AL_CHECK(al_h5_write_attr_string(file, path, "/", "dataset", f->dataset));
    AL_CHECK(al_h5_write_attr_string(file, path, "/", "split", f->split));
    hsize_t d4[4] = {(hsize_t)f->n, (hsize_t)f->c, (hsize_t)f->h, (hsize_t)f->w};
    hsize_t d1[1] = {(hsize_t)f->n};
    AL_CHECK(write_ds(file, path, "images", H5T_NATIVE_FLOAT, H5T_IEEE_F32LE, 4, d4, f->images));
    AL_CHECK(write_ds(file, path, "labels", H5T_NATIVE_INT32, H5T_STD_I32LE, 1, d1, f->labels));
    AL_CHECK(write_ds(file, path, "index", H5T_NATIVE_INT64, H5T_STD_I64LE, 1, d1, f->index));
    AL_CHECK(write_ds(file, path, "clean_correct", H5T_NATIVE_UINT8, H5T_STD_U8LE, 1, d1,
                      f->clean_correct));
    AL_CHECK(write_ds(file, path, "robust_correct", H5T_NATIVE_UINT8, H5T_STD_U8LE, 1, d1,
                      f->robust_correct));
    return al_h5_commit(file, tmp, path);
done:
    al_h5_discard(file, tmp);
    return st;
}
