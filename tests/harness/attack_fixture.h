/* attack_fixture.h: the seeded smallcnn the attack tests share (test_attacks, test_apgd,
 * test_autoattack), and the eps-ball invariant they all check.
 *
 * smallcnn (10 classes, 1 x 28 x 28) with seeded init; fc3 is zero-initialised by the
 * reference, so it gets seeded U(-1, 1) weights and U(-0.1, 0.1) biases (otherwise every
 * logit is 0). A random network is far from robust: small eps (0.005-0.03 Linf, 0.2 L2)
 * are where attacks succeed on some points but not all. Images: seeded pixels with about a
 * third saturated at exactly 0 or 1 (MNIST-like) so clamping at the boundaries is exercised.
 * Labels y are the clean predictions, except points 3 and 7 (misclassified from the start);
 * targets t are a label other than y. */
#ifndef AL_ATTACK_FIXTURE_H
#define AL_ATTACK_FIXTURE_H

#include <stddef.h>
#include <stdint.h>

#include "attacks/pgd_step.h"
#include "core/ctx.h"
#include "core/model.h"

enum { AL_FIX_NB = 16, AL_FIX_K = 10, AL_FIX_IMG = 28 };
#define AL_FIX_DX ((size_t)AL_FIX_IMG * AL_FIX_IMG)

typedef struct al_attack_fixture {
    al_ctx ctx; /* CPU */
    al_model *m;
    float x[AL_FIX_NB * AL_FIX_IMG * AL_FIX_IMG];
    int32_t y[AL_FIX_NB], t[AL_FIX_NB];
} al_attack_fixture;

/* 0, or 1 with the failure printed */
int al_attack_fixture_init(al_attack_fixture *f, int threads);
void al_attack_fixture_fini(al_attack_fixture *f);

/* Every point of xa (n points of d floats) inside [0, 1], finite, and within eps of x in the
 * norm (Linf: eps + 1e-7; L2: eps (1 + 1e-6)); prints the largest distance. 0 or 1. */
int al_check_ball(const char *what, al_norm norm, float eps, const float *x, const float *xa,
                  int n, size_t d);

#endif
