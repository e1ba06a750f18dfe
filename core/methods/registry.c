/* registry.c: train.method -> method definition. Seed methods are compiled in when their file
 * exists (CMake defines AL_HAVE_METHOD_<NAME>); a configured method without its file is an
 * error naming it, never a silent substitute. */
#include <stddef.h>

#include "core/methods/method.h"

extern const al_method_def al_method_standard, al_method_pgd_at, al_method_fast_at,
    al_method_trades, al_method_mart;
#ifdef AL_HAVE_METHOD_MULTIBN
extern const al_method_def al_method_advprop, al_method_mdprop, al_method_multibn;
#endif
#ifdef AL_HAVE_METHOD_IAT
extern const al_method_def al_method_iat;
#endif
#ifdef AL_HAVE_METHOD_DFA
extern const al_method_def al_method_dfa;
#endif
#ifdef AL_HAVE_METHOD_ANCRA
extern const al_method_def al_method_ancra;
#endif
#ifdef AL_HAVE_METHOD_NOFROST
extern const al_method_def al_method_nofrost;
#endif

static const al_method_def *const g_methods[] = {
    &al_method_standard, &al_method_pgd_at, &al_method_fast_at, &al_method_trades, &al_method_mart,
#ifdef AL_HAVE_METHOD_MULTIBN
    &al_method_advprop, &al_method_mdprop, &al_method_multibn,
#endif
#ifdef AL_HAVE_METHOD_IAT
    &al_method_iat,
#endif
#ifdef AL_HAVE_METHOD_DFA
    &al_method_dfa,
#endif
#ifdef AL_HAVE_METHOD_ANCRA
    &al_method_ancra,
#endif
#ifdef AL_HAVE_METHOD_NOFROST
    &al_method_nofrost,
#endif
};

al_status al_method_lookup(al_method method, const al_method_def **def) {
    for (size_t i = 0; i < sizeof g_methods / sizeof g_methods[0]; i++)
        if (g_methods[i]->method == method) {
            *def = g_methods[i];
            return AL_OK;
        }
    *def = NULL;
    return AL_FAIL(AL_ERR_UNSUPPORTED, "config: train.method = %s is not part of this build",
                   al_config_enum_name("train.method", (int)method));
}
