/* blas.h: OpenBLAS kernel selection. Debian's OpenBLAS 0.3.21 (DYNAMIC_ARCH) picks its kernels
 * from the CPUID model in a library constructor; on CPUs it does not know (Sapphire Rapids in
 * a VM, for one) it falls back to the SSE3 "Prescott" kernels, 5x slower than the AVX-512 ones
 * (measured here: 29 vs 147 GFLOP/s per core on a 1024^3 SGEMM; docs/BENCHMARKS.md). The
 * kernels can only be chosen through OPENBLAS_CORETYPE before the library loads, so a main()
 * calls al_blas_select_kernels(argv) first: when the detected core lacks an ISA the CPU has
 * (AVX-512 -> SkylakeX, AVX2+FMA -> Haswell) and OPENBLAS_CORETYPE is unset, it sets it and
 * re-executes the program once (ADVLAB_BLAS_NO_REEXEC=1 disables this). Library code never
 * calls it. */
#ifndef AL_BLAS_H
#define AL_BLAS_H

/* May not return (execv). Returns normally when nothing needs changing or exec fails. */
void al_blas_select_kernels(char **argv);
/* The OpenBLAS core in use ("SkylakeX", "Haswell", "Prescott", ...). */
const char *al_blas_core(void);

#endif
