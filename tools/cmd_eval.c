/* cmd_eval.c: advlab eval is implemented with advlab attack in cmd_attack.c (same code path;
 * eval defaults to the [eval] attack of the config instead of requiring --attack). */
