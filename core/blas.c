/* blas.c: OpenBLAS kernel selection (see blas.h). */
#include "core/blas.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

extern char *openblas_get_corename(void);
/* OpenBLAS DYNAMIC_ARCH internals (exported by Debian's libopenblas0): tear down and redo the
 * kernel table selection, which reads OPENBLAS_CORETYPE. */
extern void gotoblas_dynamic_init(void);
extern void gotoblas_dynamic_quit(void);

const char *al_blas_core(void) { return openblas_get_corename(); }

static int in_list(const char *core, const char *const *list) {
    for (int i = 0; list[i]; i++)
        if (strcasecmp(core, list[i]) == 0) return 1;
    return 0;
}

void al_blas_select_kernels(void) {
    static int done;
    if (done) return;
    done = 1;
    if (getenv("OPENBLAS_CORETYPE") || getenv("ADVLAB_BLAS_KEEP")) return;
    static const char *const avx512[] = {"SkylakeX", "Cooperlake", "SapphireRapids", NULL};
    static const char *const avx2[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake", "SapphireRapids",
                                       NULL};
    const char *core = openblas_get_corename();
    const char *want = NULL;
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq")) {
        if (!in_list(core, avx512)) want = "SkylakeX";
    } else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        if (!in_list(core, avx2)) want = "Haswell";
    }
    if (!want) return;
    setenv("OPENBLAS_CORETYPE", want, 1);
    gotoblas_dynamic_quit();
    gotoblas_dynamic_init();
}
