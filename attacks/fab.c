/* fab.c: FAB-T (see attacks/fab.h). Placeholder until the implementation lands. */
#include "attacks/fab.h"

al_fab_spec al_fab_spec_default(al_norm norm, float eps) {
    al_fab_spec s = {norm, eps, 100, 1, 9, 1, 0.1f, 1.05f, 0.9f};
    return s;
}

al_status al_fab_run(al_ctx *ctx, al_model *m, const al_fab_spec *s, const float *x,
                     const int32_t *y, int n, uint64_t seed, uint64_t stream, float *x_adv,
                     uint8_t *success) {
    return AL_FAIL(AL_ERR_UNSUPPORTED, "al_fab_run: not implemented yet (issue #6)");
}
