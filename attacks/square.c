/* square.c: Square Attack (see attacks/square.h). Placeholder until the implementation lands. */
#include "attacks/square.h"

al_square_spec al_square_spec_default(al_norm norm, float eps) {
    al_square_spec s = {norm, eps, 5000, 0.8f, 1};
    return s;
}

al_status al_square_run(al_ctx *ctx, al_model *m, const al_square_spec *s, const float *x,
                        const int32_t *y, int n, uint64_t seed, uint64_t stream, float *x_adv,
                        uint8_t *success) {
    return AL_FAIL(AL_ERR_UNSUPPORTED, "al_square_run: not implemented yet (issue #6)");
}
