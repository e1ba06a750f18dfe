/* attack_fixture.c: the attack tests' seeded smallcnn and eps-ball check (attack_fixture.h). */
#include "harness/attack_fixture.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "harness/check.h"

int al_attack_fixture_init(al_attack_fixture *f, int threads) {
    enum { NB = AL_FIX_NB, K = AL_FIX_K };
    memset(f, 0, sizeof *f);
    AL_EXPECT(al_ctx_init(&f->ctx, AL_DEV_CPU, 0, threads, 7) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_model_create("smallcnn", K, 1, AL_FIX_IMG, &f->m) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_model_setup(&f->ctx, f->m, NB, 1) == AL_OK, "%s", al_errmsg());
    AL_EXPECT(al_model_init_params(&f->ctx, f->m, 1234) == AL_OK, "%s", al_errmsg());
    const int w = al_model_find_param(f->m, "classifier.fc3.weight");
    const int b = al_model_find_param(f->m, "classifier.fc3.bias");
    AL_EXPECT(w >= 0 && b >= 0, "smallcnn has no classifier.fc3");
    al_test_fill(al_param_data(f->m, w), f->m->params[w].n_elems, 50, -1.0f, 1.0f);
    al_test_fill(al_param_data(f->m, b), f->m->params[b].n_elems, 51, -0.1f, 0.1f);
    al_test_fill(f->x, NB * AL_FIX_DX, 52, 0.0f, 1.0f);
    for (size_t i = 0; i < NB * AL_FIX_DX; i++) {
        if (f->x[i] < 0.2f)
            f->x[i] = 0.0f;
        else if (f->x[i] > 0.85f)
            f->x[i] = 1.0f;
    }
    AL_EXPECT(al_model_forward_eval(&f->ctx, f->m, f->x, NB, 0) == AL_OK, "%s", al_errmsg());
    const float *z = al_model_logits(f->m, 0);
    for (int i = 0; i < NB; i++) {
        int a = 0;
        for (int j = 1; j < K; j++)
            if (z[i * K + j] > z[i * K + a]) a = j;
        f->y[i] = (i == 3 || i == 7) ? (a + 1) % K : a;
        f->t[i] = (f->y[i] + 1 + i % (K - 1)) % K;
    }
    return 0;
}

void al_attack_fixture_fini(al_attack_fixture *f) {
    al_model_destroy(&f->ctx, f->m);
    al_ctx_fini(&f->ctx);
}

int al_check_ball(const char *what, al_norm norm, float eps, const float *x, const float *xa,
                  int n, size_t d) {
    double worst = 0;
    for (int i = 0; i < n; i++) {
        const float *a = xa + (size_t)i * d, *c = x + (size_t)i * d;
        double dist = 0;
        for (size_t j = 0; j < d; j++) {
            AL_EXPECT(a[j] >= 0.0f && a[j] <= 1.0f, "%s: point %d elem %zu = %g outside [0,1]",
                      what, i, j, a[j]);
            const double dj = fabs((double)a[j] - c[j]);
            dist = norm == AL_LINF ? (dj > dist ? dj : dist) : dist + dj * dj;
        }
        if (norm == AL_L2) dist = sqrt(dist);
        if (dist > worst) worst = dist;
        if (norm == AL_LINF)
            AL_EXPECT(dist <= eps + 1e-7, "%s: point %d Linf %.9g > eps %g", what, i, dist,
                      (double)eps);
        else
            AL_EXPECT(dist <= eps * (1 + 1e-6), "%s: point %d L2 %.9g > eps %g", what, i, dist,
                      (double)eps);
    }
    fprintf(stderr, "  %-34s max dist %.6g (eps %g)\n", what, worst, (double)eps);
    return 0;
}
