/* cmd_devstubs.c: TEMPORARY definitions so the CLI links while verbs are being written.
 * A stub is compiled only while tools/cmd_<verb>.c does not exist. This file is
 * deleted once every verb exists. */
#include "core/base.h"
#include "tools/cli.h"

/* CMake defines AL_HAVE_CMD_<VERB> for each tools/cmd_<verb>.c that exists. */
#define AL_WEAK_VERB(fn, name)                                                           \
    int fn(int argc, char **argv) {                                 \
        (void)argc;                                                                        \
        (void)argv;                                                                        \
        al_fail(AL_ERR_UNSUPPORTED, "verb '%s' is not built yet", name);                  \
        return 1;                                                                          \
    }
#ifndef AL_HAVE_CMD_CONVERT
AL_WEAK_VERB(al_cmd_convert, "convert")
#endif
#ifndef AL_HAVE_CMD_TRAIN
AL_WEAK_VERB(al_cmd_train, "train")
#endif
#ifndef AL_HAVE_CMD_ATTACK
AL_WEAK_VERB(al_cmd_attack, "attack")
#endif
#ifndef AL_HAVE_CMD_EVAL
AL_WEAK_VERB(al_cmd_eval, "eval")
#endif
#ifndef AL_HAVE_CMD_BENCH
AL_WEAK_VERB(al_cmd_bench, "bench")
#endif
#ifndef AL_HAVE_CMD_INFO
AL_WEAK_VERB(al_cmd_info, "info")
#endif
#ifndef AL_HAVE_CMD_MEANSPARSE
AL_WEAK_VERB(al_cmd_meansparse, "meansparse")
#endif
