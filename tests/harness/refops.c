/* refops.c: naive double-precision reference ops (independent of core/ops), filled in by the ops tests. */
#include "harness/refops.h"
