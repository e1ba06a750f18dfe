/* blas.c: OpenBLAS kernel selection by re-exec (see blas.h). */
#define _GNU_SOURCE 1
#include "core/blas.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

extern char *openblas_get_corename(void);

const char *al_blas_core(void) { return openblas_get_corename(); }

static int in_list(const char *core, const char *const *list) {
    for (int i = 0; list[i]; i++)
        if (strcasecmp(core, list[i]) == 0) return 1;
    return 0;
}

void al_blas_select_kernels(char **argv) {
    if (!argv || getenv("OPENBLAS_CORETYPE") || getenv("ADVLAB_BLAS_NO_REEXEC")) return;
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
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the detected kernels */
}
