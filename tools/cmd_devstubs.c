/* cmd_devstubs.c: TEMPORARY weak definitions so the CLI links while verbs are being written.
 * Each verb's real definition in tools/cmd_<verb>.c overrides its weak stub. This file is
 * deleted once every verb exists. */
#include "core/base.h"
#include "tools/cli.h"

#define AL_WEAK_VERB(fn, name)                                                           \
    __attribute__((weak)) int fn(int argc, char **argv) {                                 \
        (void)argc;                                                                        \
        (void)argv;                                                                        \
        al_fail(AL_ERR_UNSUPPORTED, "verb '%s' is not built yet", name);                  \
        return 1;                                                                          \
    }
AL_WEAK_VERB(al_cmd_convert, "convert")
AL_WEAK_VERB(al_cmd_train, "train")
AL_WEAK_VERB(al_cmd_attack, "attack")
AL_WEAK_VERB(al_cmd_eval, "eval")
AL_WEAK_VERB(al_cmd_bench, "bench")
AL_WEAK_VERB(al_cmd_info, "info")
