/* refops.h: naive reference implementations of every op in DOUBLE precision, written
 * independently of core/ops (plain loops, no im2col/GEMM). Their backward passes are checked
 * against central finite differences in double; the float32 ops are then checked against
 * these references with tolerances derived from eps_f32 and the reduction length. */
#ifndef AL_REFOPS_H
#define AL_REFOPS_H
#include <stddef.h>
#include <stdint.h>
#endif
