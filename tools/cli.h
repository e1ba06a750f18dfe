/* cli.h: the verb table of the advlab CLI. Each verb lives in tools/cmd_<verb>.c and returns
 * 0 on success, 1 on failure (error recorded via al_fail; main prints it), 2 on usage error
 * (the verb prints its own usage message). */
#ifndef AL_CLI_H
#define AL_CLI_H

typedef struct al_verb {
    const char *name;
    const char *help;
    int (*run)(int argc, char **argv); /* argv[0] is the verb */
} al_verb;

extern const al_verb al_verbs[]; /* terminated by {NULL} (tools/cmd_verbs.c) */

int al_cmd_convert(int argc, char **argv);
int al_cmd_train(int argc, char **argv);
int al_cmd_attack(int argc, char **argv);
int al_cmd_eval(int argc, char **argv);
int al_cmd_bench(int argc, char **argv);
int al_cmd_info(int argc, char **argv);
int al_cmd_ood(int argc, char **argv);
int al_cmd_meansparse(int argc, char **argv);

#endif
