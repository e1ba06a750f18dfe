/* advlab.c: the CLI entry point (the only main() outside tests and benches).
 * advlab <verb> [config.ini] [--set section.key=value ...] [flags]; verbs are dispatched from
 * one table. Only this file exits: errors print "advlab: error: <one line>" and exit 1
 * (usage errors 2). */
#include <stdio.h>
#include <string.h>

#include "core/base.h"
#include "tools/cli.h"

static const al_verb *find_verb(const char *name) {
    for (int i = 0; al_verbs[i].name; i++)
        if (strcmp(al_verbs[i].name, name) == 0) return &al_verbs[i];
    return NULL;
}

static void usage(FILE *f) {
    fprintf(f, "usage: advlab <verb> [args] (advlab <verb> --help for details)\n\nverbs:\n");
    for (int i = 0; al_verbs[i].name; i++) fprintf(f, "  %-10s %s\n", al_verbs[i].name, al_verbs[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("advlab %s\n", AL_VERSION);
        return 0;
    }
    const al_verb *v = find_verb(argv[1]);
    if (!v) {
        fprintf(stderr, "advlab: error: unknown verb '%s'\n", argv[1]);
        usage(stderr);
        return 2;
    }
    int rc = v->run(argc - 1, argv + 1);
    if (rc != 0 && rc != 2 && al_errmsg()[0]) fprintf(stderr, "advlab: error: %s\n", al_errmsg());
    return rc;
}
