/* autoattack.c: the AutoAttack driver behind attacks/autoattack.h (host code; every attack and
 * forward pass goes through its device-agnostic entry point). Twin: none needed.
 * Shapes: host x, x_adv (n, d) with d = C*H*W; device batches (B, d) with B = min(batch, n).
 *
 * Resumability: the state (core/aa_state.h) records, besides per-point flags and the rows found,
 * the point set the running attack started from (`plan`) and how many of its batches are done.
 * A resumed run therefore re-forms exactly the batches of an uninterrupted run, and every random
 * draw is keyed by (seed, attack, batch index, position in the batch): the final flags and
 * images are bit-identical on a deterministic backend. */
#include "attacks/autoattack.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/cuda_api.h"
#include "core/log.h"
#include "losses/loss.h"

static const char *const k_names[AL_AA_N_KINDS] = {"apgd-ce", "apgd-dlr", "apgd-t",
                                                   "fab",     "fab-t",    "square"};
static const char *const k_upper[AL_AA_N_KINDS] = {"APGD-CE", "APGD-DLR", "APGD-T",
                                                   "FAB",     "FAB-T",    "SQUARE"};
static const char *const k_versions[] = {"standard", "plus", "rand", "custom"};

const char *al_aa_attack_name(al_aa_attack a) {
    return (unsigned)a < AL_AA_N_KINDS ? k_names[a] : "?";
}
const char *al_aa_attack_upper(al_aa_attack a) {
    return (unsigned)a < AL_AA_N_KINDS ? k_upper[a] : "?";
}
const char *al_aa_version_name(al_aa_version v) {
    return (unsigned)v < AL_ARRAY_LEN(k_versions) ? k_versions[v] : "?";
}

al_status al_aa_attack_parse(const char *s, al_aa_attack *out) {
    for (int a = 0; a < AL_AA_N_KINDS; a++)
        if (!strcasecmp(s, k_names[a])) {
            *out = (al_aa_attack)a;
            return AL_OK;
        }
    return AL_FAIL(AL_ERR_VALUE,
                   "autoattack: unknown attack '%s' (apgd-ce, apgd-dlr, apgd-t, fab, fab-t, square)",
                   s);
}

al_status al_aa_attack_list_parse(const char *s, al_aa_attack *out, int *n_out) {
    char buf[256];
    if (strlen(s) >= sizeof buf) return AL_FAIL(AL_ERR_VALUE, "autoattack: attack list too long");
    snprintf(buf, sizeof buf, "%s", s);
    int n = 0;
    for (char *tok = buf, *next; tok; tok = next) {
        next = strchr(tok, ',');
        if (next) *next++ = '\0';
        while (isspace((unsigned char)*tok)) tok++;
        for (char *e = tok + strlen(tok); e > tok && isspace((unsigned char)e[-1]);) *--e = '\0';
        if (!*tok) return AL_FAIL(AL_ERR_VALUE, "autoattack: empty entry in attack list '%s'", s);
        if (n >= AL_AA_STATE_MAX_ATTACKS)
            return AL_FAIL(AL_ERR_VALUE, "autoattack: more than %d attacks in '%s'",
                           AL_AA_STATE_MAX_ATTACKS, s);
        AL_TRY(al_aa_attack_parse(tok, &out[n]));
        for (int j = 0; j < n; j++)
            if (out[j] == out[n])
                return AL_FAIL(AL_ERR_VALUE, "autoattack: attack '%s' listed twice in '%s'", tok,
                               s);
        n++;
    }
    *n_out = n;
    return AL_OK;
}

al_status al_aa_version_parse(const char *s, al_aa_version *out) {
    for (size_t v = 0; v < AL_ARRAY_LEN(k_versions); v++)
        if (!strcasecmp(s, k_versions[v])) {
            *out = (al_aa_version)v;
            return AL_OK;
        }
    return AL_FAIL(AL_ERR_VALUE, "autoattack: unknown version '%s' (standard, plus, rand, custom)",
                   s);
}

al_status al_aa_spec_make(al_aa_spec *s, al_aa_version version, al_norm norm, float eps,
                          const al_aa_attack *list, int n_list) {
    memset(s, 0, sizeof *s);
    s->norm = norm;
    s->eps = eps;
    s->version = version;
    s->batch = 250;
    s->state_every_s = 60.0;
    s->key = "";
    /* the reference's constructor defaults (what 'custom' runs with) */
    s->apgd = al_apgd_spec_default(AL_APGD_CE, norm, eps);
    s->apgd.n_restarts = 5;
    s->apgd_t = al_apgd_spec_default(AL_APGD_T, norm, eps);
    s->fab = al_fab_spec_default(norm, eps);
    s->fab.n_restarts = 5;
    s->square = al_square_spec_default(norm, eps);
    static const al_aa_attack standard[] = {AL_AA_APGD_CE, AL_AA_APGD_T, AL_AA_FAB_T, AL_AA_SQUARE};
    static const al_aa_attack plus[] = {AL_AA_APGD_CE, AL_AA_APGD_DLR, AL_AA_FAB,
                                        AL_AA_SQUARE,  AL_AA_APGD_T,   AL_AA_FAB_T};
    static const al_aa_attack rand[] = {AL_AA_APGD_CE, AL_AA_APGD_DLR};
    const al_aa_attack *src = list;
    int cnt = n_list;
    switch (version) {
    case AL_AA_STANDARD:
        src = standard, cnt = (int)AL_ARRAY_LEN(standard);
        s->apgd.n_restarts = 1;
        s->fab.n_restarts = 1;
        break;
    case AL_AA_PLUS:
        src = plus, cnt = (int)AL_ARRAY_LEN(plus);
        break; /* APGD and FAB keep 5 restarts; APGD-T 1 restart x 9 targets */
    case AL_AA_RAND:
        src = rand, cnt = (int)AL_ARRAY_LEN(rand);
        s->apgd.n_restarts = 1;
        s->apgd.eot_iter = 20;
        break;
    case AL_AA_CUSTOM:
        if (!list || n_list < 1 || n_list > AL_AA_STATE_MAX_ATTACKS)
            return AL_FAIL(AL_ERR_VALUE, "autoattack: version custom needs 1..%d attacks (got %d)",
                           AL_AA_STATE_MAX_ATTACKS, n_list);
        break;
    default: return AL_FAIL(AL_ERR_VALUE, "autoattack: version %d", (int)version);
    }
    s->n_attacks = cnt;
    for (int i = 0; i < cnt; i++) s->attacks[i] = src[i];
    return AL_OK;
}

/* ---------------------------------------------------------------- memory planning */

size_t al_aa_model_bytes(const al_model *m, int batch) {
    size_t act = 0, save = 0;
    for (int b = 1; b < m->n_bufs; b++) act += m->bufs[b].per_sample;
    for (int i = 0; i < m->n_nodes; i++)
        save += m->nodes[i].save_per_sample * (size_t)batch + m->nodes[i].save_fixed;
    /* one slot's activations + the shared activation gradients + saved state + params/grads */
    return (2 * act * (size_t)batch + save + 2 * m->n_param_floats) * sizeof(float);
}

static int uses_apgd(const al_aa_spec *s, int *n_iter_cap) {
    int any = 0;
    *n_iter_cap = 1;
    for (int i = 0; i < s->n_attacks; i++) {
        if (s->attacks[i] == AL_AA_APGD_CE || s->attacks[i] == AL_AA_APGD_DLR) {
            any = 1;
            *n_iter_cap = AL_MAX(*n_iter_cap, s->apgd.n_iter);
        }
        if (s->attacks[i] == AL_AA_APGD_T) {
            any = 1;
            *n_iter_cap = AL_MAX(*n_iter_cap, s->apgd_t.n_iter);
        }
    }
    return any;
}

size_t al_aa_workspace_bytes(const al_model *m, const al_aa_spec *s, int batch) {
    const size_t b = (size_t)batch, d = (size_t)m->in_c * m->in_h * m->in_w;
    int cap;
    size_t bytes = 3 * b * d * sizeof(float) + b * (sizeof(int32_t) + 2); /* d_x, d_adv, staging */
    if (uses_apgd(s, &cap)) bytes += al_apgd_ws_bytes(m, batch, cap);
    return bytes;
}

/* ---------------------------------------------------------------- checks */

al_status al_aa_check_randomized(al_ctx *ctx, al_model *m, const al_fwd_opts *fwd, const float *x,
                                 const int32_t *y, int n, int *raised, double *max_diff) {
    enum { PASSES = 5 };
    const int k = m->num_classes;
    *raised = 0;
    float *z = al_malloc((size_t)PASSES * n * k * sizeof(float), "randomized-check logits");
    if (!z) return AL_ERR_OOM;
    al_status st = AL_OK;
    int correct[PASSES];
    uint8_t *flag = NULL;
    AL_CHECK(al_dev_alloc(ctx, (void **)&flag, (size_t)n, "randomized-check flags"));
    for (int p = 0; p < PASSES; p++) {
        al_fwd_opts o = *fwd;
        o.update_bn = 0;
        o.step = fwd->step + (uint64_t)p;
        AL_CHECK(al_model_forward(ctx, m, x, n, &o));
        const float *lg = al_model_logits(m, o.slot);
        AL_CHECK(al_count_correct(ctx, n, k, lg, y, &correct[p], flag));
        AL_CHECK(al_copy_to_host(ctx, z + (size_t)p * n * k, lg, (size_t)n * k * sizeof(float)));
    }
    /* rows normalised to unit L2 norm (+1e-10), then the max pairwise row distance */
    for (int p = 0; p < PASSES; p++)
        for (int i = 0; i < n; i++) {
            float *r = z + ((size_t)p * n + i) * k;
            double sq = 0;
            for (int j = 0; j < k; j++) sq += (double)r[j] * r[j];
            const double inv = 1.0 / (sqrt(sq) + 1e-10);
            for (int j = 0; j < k; j++) r[j] = (float)(r[j] * inv);
        }
    double worst = 0;
    for (int p = 0; p < PASSES; p++)
        for (int q = p + 1; q < PASSES; q++)
            for (int i = 0; i < n; i++) {
                const float *a = z + ((size_t)p * n + i) * k, *b = z + ((size_t)q * n + i) * k;
                double sq = 0;
                for (int j = 0; j < k; j++) sq += ((double)a[j] - b[j]) * ((double)a[j] - b[j]);
                if (!(sqrt(sq) <= worst)) worst = sqrt(sq); /* NaN propagates as "differs" */
            }
    int counts_differ = 0;
    for (int p = 1; p < PASSES; p++) counts_differ |= correct[p] != correct[0];
    *raised = counts_differ || !(worst <= 1e-4);
    if (max_diff) *max_diff = worst;
done:
    al_dev_free(ctx, flag);
    al_free(z);
    return st;
}

al_status al_aa_check_softmax(al_ctx *ctx, al_model *m, const al_fwd_opts *fwd, const float *x,
                              int n, int *raised) {
    const int k = m->num_classes;
    *raised = 0;
    float *z = al_malloc((size_t)n * k * sizeof(float), "softmax-check logits");
    if (!z) return AL_ERR_OOM;
    al_status st = AL_OK;
    al_fwd_opts o = *fwd;
    o.update_bn = 0;
    AL_CHECK(al_model_forward(ctx, m, x, n, &o));
    AL_CHECK(al_copy_to_host(ctx, z, al_model_logits(m, o.slot), (size_t)n * k * sizeof(float)));
    {
        const double tol = 1e-5;
        int all = 1;
        for (int i = 0; i < n && all; i++) {
            double sum = 0;
            for (int j = 0; j < k; j++) {
                const double v = z[(size_t)i * k + j];
                all &= v < 1.0 + tol && v > -tol;
                sum += v;
            }
            all &= fabs(sum - 1.0) < tol;
        }
        *raised = all;
    }
done:
    al_free(z);
    return st;
}

int al_aa_check_square(const char *const *names, const double *acc, int n_entries, double *drop) {
    int sq = -1;
    double best = INFINITY;
    for (int i = 0; i < n_entries; i++) {
        if (!strcmp(names[i], "square"))
            sq = i;
        else if (acc[i] < best)
            best = acc[i];
    }
    if (drop) *drop = sq >= 0 && n_entries > 2 ? best - acc[sq] : 0.0;
    return sq >= 0 && n_entries > 2 && acc[sq] < best - 0.002;
}

int al_aa_check_n_classes(int n_classes, const al_aa_spec *s, char *msg, size_t msg_len) {
    int dlr = 0, apgd_t = 0, fab_t = 0;
    for (int i = 0; i < s->n_attacks; i++) {
        dlr |= s->attacks[i] == AL_AA_APGD_DLR || s->attacks[i] == AL_AA_APGD_T;
        apgd_t |= s->attacks[i] == AL_AA_APGD_T;
        fab_t |= s->attacks[i] == AL_AA_FAB_T;
    }
    msg[0] = '\0';
    size_t o = 0;
    if (dlr && n_classes <= 2)
        o += (size_t)snprintf(msg, msg_len, "with %d classes the DLR loss is undefined (needs 3)",
                              n_classes);
    else if (dlr && apgd_t && n_classes == 3)
        o += (size_t)snprintf(msg, msg_len,
                              "with 3 classes the targeted DLR loss of APGD-T is undefined "
                              "(needs 4)");
    else if (apgd_t && s->apgd_t.n_target_classes + 1 > n_classes)
        o += (size_t)snprintf(msg, msg_len,
                              "APGD-T asks for %d target classes but only %d exist (runs %d)",
                              s->apgd_t.n_target_classes, n_classes - 1, n_classes - 1);
    if (fab_t && s->fab.n_target_classes + 1 > n_classes && o < msg_len)
        snprintf(msg + o, msg_len - o, "%sFAB-T asks for %d target classes but only %d exist",
                 o ? "; " : "", s->fab.n_target_classes, n_classes - 1);
    return msg[0] != '\0';
}

/* ---------------------------------------------------------------- driver */

typedef struct aa_bufs {
    float *d_x, *d_adv, *h_stage;
    int32_t *d_y, *h_y;
    uint8_t *d_flag, *h_flag;
    uint8_t *clean, *robust, *plan; /* (n) host */
    int64_t *idx;                   /* (n) host: points of the running attack */
    al_apgd_ws apgd;
    int have_apgd;
} aa_bufs;

static void bufs_fini(al_ctx *ctx, aa_bufs *b) {
    al_dev_free(ctx, b->d_x);
    al_dev_free(ctx, b->d_adv);
    al_dev_free(ctx, b->d_y);
    al_dev_free(ctx, b->d_flag);
    al_free(b->h_stage);
    al_free(b->h_y);
    al_free(b->h_flag);
    al_free(b->clean);
    al_free(b->robust);
    al_free(b->plan);
    al_free(b->idx);
    if (b->have_apgd) al_apgd_ws_fini(ctx, &b->apgd);
    memset(b, 0, sizeof *b);
}

static al_status bufs_init(al_ctx *ctx, const al_model *m, const al_aa_spec *s, int bsz, int64_t n,
                           aa_bufs *b) {
    memset(b, 0, sizeof *b);
    const size_t d = (size_t)m->in_c * m->in_h * m->in_w, bd = (size_t)bsz * d * sizeof(float);
    al_status st = AL_OK;
    AL_CHECK(al_dev_alloc(ctx, (void **)&b->d_x, bd, "AutoAttack batch inputs"));
    AL_CHECK(al_dev_alloc(ctx, (void **)&b->d_adv, bd, "AutoAttack batch outputs"));
    AL_CHECK(al_dev_alloc(ctx, (void **)&b->d_y, (size_t)bsz * sizeof(int32_t), "AA labels"));
    AL_CHECK(al_dev_alloc(ctx, (void **)&b->d_flag, (size_t)bsz, "AutoAttack flags"));
    b->h_stage = al_malloc(bd, "AutoAttack host staging");
    b->h_y = al_malloc((size_t)bsz * sizeof(int32_t), "AutoAttack host labels");
    b->h_flag = al_malloc((size_t)bsz, "AutoAttack host flags");
    b->clean = al_malloc((size_t)n, "AutoAttack clean flags");
    b->robust = al_malloc((size_t)n, "AutoAttack robust flags");
    b->plan = al_malloc((size_t)n, "AutoAttack attack plan");
    b->idx = al_malloc((size_t)n * sizeof(int64_t), "AutoAttack point index");
    if (!b->h_stage || !b->h_y || !b->h_flag || !b->clean || !b->robust || !b->plan || !b->idx) {
        st = AL_ERR_OOM;
        goto done;
    }
    int cap;
    if (uses_apgd(s, &cap)) {
        AL_CHECK(al_apgd_ws_init(ctx, &b->apgd, m, bsz, cap));
        b->have_apgd = 1;
    }
done:
    if (st != AL_OK) {
        bufs_fini(ctx, b);
        if (st == AL_ERR_OOM) {
            char prev[600];
            snprintf(prev, sizeof prev, "%s", al_errmsg());
            st = AL_FAIL(AL_ERR_OOM,
                         "AutoAttack batch %d: allocating ~%zu bytes of attack buffers failed (%s); "
                         "lower the attack batch (--bs)",
                         bsz, al_aa_workspace_bytes(m, s, bsz), prev);
        }
    }
    return st;
}

/* Stage points idx[0..nb) into the device batch (x rows and labels). */
static al_status stage(al_ctx *ctx, aa_bufs *b, const float *x, const int32_t *y,
                       const int64_t *idx, int nb, size_t d) {
    for (int p = 0; p < nb; p++) {
        memcpy(b->h_stage + (size_t)p * d, x + (size_t)idx[p] * d, d * sizeof(float));
        b->h_y[p] = y[idx[p]];
    }
    AL_TRY(al_copy_to_dev(ctx, b->d_x, b->h_stage, (size_t)nb * d * sizeof(float)));
    AL_TRY(al_copy_to_dev(ctx, b->d_y, b->h_y, (size_t)nb * sizeof(int32_t)));
    return AL_OK;
}

/* h_flag[p] = 1 where a fresh forward on `xs` classifies point p correctly. */
static al_status correct_flags(al_ctx *ctx, al_model *m, const al_aa_spec *s, aa_bufs *b,
                               const float *xs, int nb, int *n_correct) {
    al_fwd_opts o = s->fwd;
    o.update_bn = 0;
    AL_TRY(al_model_forward(ctx, m, xs, nb, &o));
    AL_TRY(al_count_correct(ctx, nb, m->num_classes, al_model_logits(m, o.slot), b->d_y, n_correct,
                            b->d_flag));
    AL_TRY(al_copy_to_host(ctx, b->h_flag, b->d_flag, (size_t)nb));
    return AL_OK;
}

static uint64_t attack_stream(al_aa_attack a, int64_t batch) {
    return al_stream(AL_STREAM_ATTACK, ((uint64_t)(a + 1) << 40) | (uint64_t)batch);
}

/* One attack on the device batch (b->d_x, b->d_y, nb points) into b->d_adv. */
static al_status run_attack(al_ctx *ctx, al_model *m, const al_aa_spec *s, aa_bufs *b,
                            al_aa_attack a, int nb, uint64_t stream, int64_t *zero_grad) {
    switch (a) {
    case AL_AA_APGD_CE:
    case AL_AA_APGD_DLR:
    case AL_AA_APGD_T: {
        al_apgd_spec sp = a == AL_AA_APGD_T ? s->apgd_t : s->apgd;
        sp.loss = a == AL_AA_APGD_CE ? AL_APGD_CE : a == AL_AA_APGD_DLR ? AL_APGD_DLR : AL_APGD_T;
        sp.norm = s->norm;
        sp.eps = s->eps;
        sp.fwd = s->fwd;
        al_apgd_stats stats;
        AL_TRY(al_apgd_run(ctx, m, &sp, &b->apgd, b->d_x, b->d_y, nb, s->seed, stream, b->d_adv,
                           NULL, NULL, &stats));
        *zero_grad += stats.n_zero_grad;
        return AL_OK;
    }
    case AL_AA_FAB:
    case AL_AA_FAB_T: {
        al_fab_spec sp = s->fab;
        sp.norm = s->norm;
        sp.eps = s->eps;
        sp.targeted = a == AL_AA_FAB_T;
        if (a == AL_AA_FAB_T) sp.n_restarts = 1; /* as the reference sets before FAB-T */
        return al_fab_run(ctx, m, &sp, b->d_x, b->d_y, nb, s->seed, stream, b->d_adv, b->d_flag);
    }
    case AL_AA_SQUARE: {
        al_square_spec sp = s->square;
        sp.norm = s->norm;
        sp.eps = s->eps;
        return al_square_run(ctx, m, &sp, b->d_x, b->d_y, nb, s->seed, stream, b->d_adv,
                             b->d_flag);
    }
    default: break;
    }
    return AL_FAIL(AL_ERR_VALUE, "autoattack: attack %d", (int)a);
}

static al_status validate(const al_model *m, const al_aa_spec *s, int64_t n) {
    const char *fn = "autoattack";
    if (!m->setup_done) return AL_FAIL(AL_ERR_VALUE, "%s: model %s is not set up", fn, m->arch);
    if (n < 1) return AL_FAIL(AL_ERR_VALUE, "%s: n=%lld points (need >= 1)", fn, (long long)n);
    if (s->norm != AL_LINF && s->norm != AL_L2)
        return AL_FAIL(AL_ERR_VALUE, "%s: norm %d is not linf|l2", fn, (int)s->norm);
    if (!(s->eps > 0.0f) || !isfinite(s->eps))
        return AL_FAIL(AL_ERR_VALUE, "%s: eps %g must be finite and > 0", fn, (double)s->eps);
    if (s->n_attacks < 1 || s->n_attacks > AL_AA_STATE_MAX_ATTACKS)
        return AL_FAIL(AL_ERR_VALUE, "%s: %d attacks (need 1..%d)", fn, s->n_attacks,
                       AL_AA_STATE_MAX_ATTACKS);
    for (int i = 0; i < s->n_attacks; i++)
        if ((unsigned)s->attacks[i] >= AL_AA_N_KINDS)
            return AL_FAIL(AL_ERR_VALUE, "%s: attack %d of the list is %d", fn, i,
                           (int)s->attacks[i]);
    if (s->batch < 1) return AL_FAIL(AL_ERR_VALUE, "%s: batch %d < 1", fn, s->batch);
    const int bsz = (int)AL_MIN((int64_t)s->batch, n);
    if (bsz > m->max_batch)
        return AL_FAIL(AL_ERR_VALUE, "%s: batch %d exceeds the model's max_batch %d (set it up "
                                     "for the attack batch)", fn, bsz, m->max_batch);
    if (s->resume && !s->state_path)
        return AL_FAIL(AL_ERR_VALUE, "%s: resume needs a state file (--state FILE)", fn);
    return AL_OK;
}

static void join_names(const al_aa_spec *s, char *buf, size_t len) {
    size_t o = 0;
    buf[0] = '\0';
    for (int i = 0; i < s->n_attacks && o < len; i++)
        o += (size_t)snprintf(buf + o, len - o, "%s%s", i ? "," : "", al_aa_attack_name(s->attacks[i]));
}

static void warn_zero_grad(al_aa_attack a, int64_t cnt) {
    al_log_warn("flag: %lld points had an all-zero input gradient at the %s start point. "
                "Gradient attacks cannot move from there (gradient masking: input quantisation, "
                "saturated thresholds or dead units), so robust accuracy may be overestimated; "
                "try BPDA or a black-box attack such as Square (evaluation.md A.4)",
                (long long)cnt, al_aa_attack_upper(a));
}

al_status al_autoattack_run(al_ctx *ctx, al_model *m, const al_aa_spec *s, const float *x,
                            const int32_t *y, int64_t n, float *x_adv, uint8_t *clean,
                            uint8_t *robust, al_aa_result *res) {
    memset(res, 0, sizeof *res);
    AL_TRY(validate(m, s, n));
    const int bsz = (int)AL_MIN((int64_t)s->batch, n);
    const size_t d = (size_t)m->in_c * m->in_h * m->in_w;
    const int k = m->num_classes;
    const char *norm_name = s->norm == AL_LINF ? "Linf" : "L2";
    aa_bufs b;
    AL_TRY(bufs_init(ctx, m, s, bsz, n, &b));
    al_status st = AL_OK;
    al_nvtx_push("evaluation (AutoAttack)");

    al_aa_state state;
    memset(&state, 0, sizeof state);
    join_names(s, state.attacks, sizeof state.attacks);
    snprintf(state.version, sizeof state.version, "%s", al_aa_version_name(s->version));
    snprintf(state.norm, sizeof state.norm, "%s", norm_name);
    snprintf(state.key, sizeof state.key, "%s", s->key ? s->key : "");
    state.eps = s->eps;
    state.seed = (int64_t)s->seed;
    state.n = n;
    state.d = (int64_t)d;
    state.batch = bsz;
    state.clean = b.clean;
    state.robust = b.robust;
    state.plan = b.plan;
    memcpy(x_adv, x, (size_t)n * d * sizeof(float));
    res->n = n;

    if (s->state_path && s->resume) {
        FILE *f = fopen(s->state_path, "rb");
        if (f) {
            fclose(f);
            AL_CHECK(al_aa_state_load(s->state_path, &state, x_adv));
            res->resumed = 1;
        }
    }
    al_log_info("autoattack: version %s, %s eps %.6g, attacks %s, %lld points, batch %d%s",
                al_aa_version_name(s->version), norm_name, (double)s->eps, state.attacks,
                (long long)n, bsz, res->resumed ? " (resumed)" : "");

    /* ---- checks on the first batch (the reference's x_orig[:bs]) ---- */
    {
        for (int p = 0; p < bsz; p++) b.idx[p] = p;
        AL_CHECK(stage(ctx, &b, x, y, b.idx, bsz, d));
        if (s->version != AL_AA_RAND) {
            double diff = 0;
            AL_CHECK(al_aa_check_randomized(ctx, m, &s->fwd, b.d_x, b.d_y, bsz,
                                            &res->flag_randomized, &diff));
            if (res->flag_randomized)
                al_log_warn("flag: the model's outputs change across identical forward passes "
                            "(max normalised logit difference %.3g): it looks randomized. Single "
                            "gradients and single success checks are then noisy estimates; "
                            "evaluate with --version rand (APGD with EOT over 20 passes) and "
                            "report the worst case over repeated evaluations (evaluation.md A.4)",
                            diff);
        }
        AL_CHECK(al_aa_check_softmax(ctx, m, &s->fwd, b.d_x, bsz, &res->flag_softmax));
        if (res->flag_softmax)
            al_log_warn("flag: the model's outputs look like probabilities (all in [0,1], every "
                        "row sums to 1). Attacks expect logits: a softmax output saturates, its "
                        "gradients vanish and the evaluation can overestimate robustness; return "
                        "the pre-softmax logits (evaluation.md A.4)");
        char msg[400];
        res->flag_n_classes = al_aa_check_n_classes(k, s, msg, sizeof msg);
        if (res->flag_n_classes) al_log_warn("flag: %s", msg);
    }

    /* ---- clean accuracy (skipped when the state was restored) ---- */
    if (!res->resumed) {
        for (int64_t s0 = 0; s0 < n; s0 += bsz) {
            const int nb = (int)AL_MIN((int64_t)bsz, n - s0);
            for (int p = 0; p < nb; p++) b.idx[p] = s0 + p;
            AL_CHECK(stage(ctx, &b, x, y, b.idx, nb, d));
            int nc;
            AL_CHECK(correct_flags(ctx, m, s, &b, b.d_x, nb, &nc));
            memcpy(b.clean + s0, b.h_flag, (size_t)nb);
        }
        memcpy(b.robust, b.clean, (size_t)n);
        memcpy(b.plan, b.clean, (size_t)n);
        if (s->state_path) AL_CHECK(al_aa_state_save(s->state_path, &state, x_adv));
    }
    int64_t n_clean = 0, n_rob = 0;
    for (int64_t i = 0; i < n; i++) n_clean += b.clean[i], n_rob += b.robust[i];
    if (!res->resumed) {
        al_log_info("initial accuracy: %.2f%%", 100.0 * (double)n_clean / (double)n);
    } else {
        al_log_info("restored state from %s: %d of %d attacks done, clean accuracy %.2f%%, "
                    "robust accuracy at the time of restoring %.2f%%",
                    s->state_path, state.next_attack, s->n_attacks,
                    100.0 * (double)n_clean / (double)n, 100.0 * (double)n_rob / (double)n);
        for (int a = 0; a < state.next_attack; a++)
            al_log_info("robust accuracy after %s: %.2f%% (total time %.1f s)",
                        al_aa_attack_upper(s->attacks[a]),
                        100.0 * (double)state.robust_after[a] / (double)n, state.seconds_after[a]);
    }

    /* ---- the attacks ---- */
    const double t0 = al_now(), base_seconds = state.seconds;
    double last_save = t0;
    int batches_run = 0;
    for (int ai = state.next_attack; ai < s->n_attacks; ai++) {
        const al_aa_attack a = s->attacks[ai];
        if (state.batches_done == 0) {
            memcpy(b.plan, b.robust, (size_t)n);
            state.zero_grad_attack = 0;
        }
        int64_t cnt = 0;
        for (int64_t i = 0; i < n; i++)
            if (b.plan[i]) b.idx[cnt++] = i;
        const int64_t n_batches = (cnt + bsz - 1) / bsz;
        for (int64_t bi = state.batches_done; bi < n_batches; bi++) {
            if ((s->stop && *s->stop) || (s->max_batches > 0 && batches_run >= s->max_batches)) {
                state.seconds = base_seconds + (al_now() - t0);
                if (s->state_path) AL_CHECK(al_aa_state_save(s->state_path, &state, x_adv));
                st = AL_FAIL(AL_ERR_INTERRUPTED,
                             "autoattack: stopped before %s batch %lld/%lld%s%s%s",
                             al_aa_attack_upper(a), (long long)bi + 1, (long long)n_batches,
                             s->state_path ? "; state saved to " : " (no state file)",
                             s->state_path ? s->state_path : "",
                             s->state_path ? " (continue with --resume)" : "");
                goto done;
            }
            const int64_t *idx = b.idx + bi * bsz;
            const int nb = (int)AL_MIN((int64_t)bsz, cnt - bi * bsz);
            AL_CHECK(stage(ctx, &b, x, y, idx, nb, d));
            AL_CHECK(run_attack(ctx, m, s, &b, a, nb, attack_stream(a, bi), &state.zero_grad_attack));
            /* success = a fresh forward pass on the returned images misclassifies */
            int nc;
            AL_CHECK(correct_flags(ctx, m, s, &b, b.d_adv, nb, &nc));
            AL_CHECK(al_copy_to_host(ctx, b.h_stage, b.d_adv, (size_t)nb * d * sizeof(float)));
            for (int p = 0; p < nb; p++)
                if (!b.h_flag[p]) {
                    b.robust[idx[p]] = 0;
                    memcpy(x_adv + (size_t)idx[p] * d, b.h_stage + (size_t)p * d,
                           d * sizeof(float));
                }
            al_log_info("%s - %lld/%lld - %d out of %d successfully perturbed", al_aa_attack_name(a),
                        (long long)bi + 1, (long long)n_batches, nb - nc, nb);
            state.batches_done = (int)(bi + 1);
            batches_run++;
            const double now = al_now();
            state.seconds = base_seconds + (now - t0);
            if (s->state_path && now - last_save >= s->state_every_s && bi + 1 < n_batches) {
                AL_CHECK(al_aa_state_save(s->state_path, &state, x_adv));
                last_save = al_now();
            }
        }
        n_rob = 0;
        for (int64_t i = 0; i < n; i++) n_rob += b.robust[i];
        state.seconds = base_seconds + (al_now() - t0);
        state.robust_after[ai] = n_rob;
        state.seconds_after[ai] = state.seconds;
        state.next_attack = ai + 1;
        state.batches_done = 0;
        state.zero_grad_total += state.zero_grad_attack;
        al_log_info("robust accuracy after %s: %.2f%% (total time %.1f s)", al_aa_attack_upper(a),
                    100.0 * (double)n_rob / (double)n, state.seconds);
        if (state.zero_grad_attack > 0) warn_zero_grad(a, state.zero_grad_attack);
        if (s->state_path) {
            AL_CHECK(al_aa_state_save(s->state_path, &state, x_adv));
            last_save = al_now();
        }
    }

    /* ---- Square vs the white-box attacks ---- */
    {
        const char *names[AL_AA_STATE_MAX_ATTACKS + 1];
        double acc[AL_AA_STATE_MAX_ATTACKS + 1];
        names[0] = "clean";
        acc[0] = (double)n_clean / (double)n;
        for (int a = 0; a < s->n_attacks; a++) {
            names[a + 1] = al_aa_attack_name(s->attacks[a]);
            acc[a + 1] = (double)state.robust_after[a] / (double)n;
        }
        double drop = 0;
        res->flag_square = al_aa_check_square(names, acc, s->n_attacks + 1, &drop);
        if (res->flag_square)
            al_log_warn("flag: Square, a black-box attack that uses no gradients, lowered robust "
                        "accuracy by %.2f%% below the best white-box attack. Gradient attacks "
                        "should be at least as strong, so the model likely masks gradients and "
                        "the evaluation is unreliable; run Square with more queries and restarts "
                        "or an adaptive attack (evaluation.md A.4)",
                        100.0 * drop);
    }

    /* ---- validity of x_adv ---- */
    {
        double worst = 0;
        int64_t bad = 0;
        float lo = INFINITY, hi = -INFINITY;
        for (int64_t i = 0; i < n; i++) {
            const float *a = x_adv + (size_t)i * d, *c = x + (size_t)i * d;
            double dist = 0;
            for (size_t j = 0; j < d; j++) {
                if (!isfinite(a[j])) {
                    bad++;
                    continue;
                }
                lo = fminf(lo, a[j]);
                hi = fmaxf(hi, a[j]);
                const double dj = fabs((double)a[j] - c[j]);
                dist = s->norm == AL_LINF ? fmax(dist, dj) : dist + dj * dj;
            }
            if (s->norm == AL_L2) dist = sqrt(dist);
            worst = fmax(worst, dist);
        }
        res->max_pert = worst;
        res->n_nonfinite = bad;
        res->x_min = lo;
        res->x_max = hi;
        /* float rounding of x + eps (Linf) and of the projected delta (L2), as check_advfile */
        const double tol = s->norm == AL_LINF ? s->eps + 1e-6 : s->eps * (1 + 1e-5) + 1e-6;
        res->valid = worst <= tol && bad == 0 && lo >= 0.0f && hi <= 1.0f;
        al_log_info("max %s perturbation: %.5f, nan in tensor: %lld, max: %.5f, min: %.5f",
                    norm_name, worst, (long long)bad, (double)hi, (double)lo);
        if (!res->valid)
            al_log_error("autoattack: the adversarial images violate the threat model (max %s "
                         "perturbation %.9g vs eps %.9g, %lld non-finite, range [%g, %g])",
                         norm_name, worst, (double)s->eps, (long long)bad, (double)lo, (double)hi);
    }
    n_rob = 0;
    for (int64_t i = 0; i < n; i++) n_rob += b.robust[i];
    al_log_info("robust accuracy: %.2f%%", 100.0 * (double)n_rob / (double)n);
    if (s->state_path) AL_CHECK(al_aa_state_save(s->state_path, &state, x_adv));

    res->n_clean = n_clean;
    res->n_robust = n_rob;
    res->n_done = state.next_attack;
    for (int a = 0; a < state.next_attack; a++) {
        res->robust_after[a] = state.robust_after[a];
        res->seconds_after[a] = state.seconds_after[a];
    }
    res->seconds = state.seconds;
    res->n_zero_grad = state.zero_grad_total;
    if (clean) memcpy(clean, b.clean, (size_t)n);
    if (robust) memcpy(robust, b.robust, (size_t)n);
done:
    bufs_fini(ctx, &b);
    al_nvtx_pop();
    return st;
}
