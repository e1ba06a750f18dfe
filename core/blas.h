/* blas.h: OpenBLAS kernel selection. Debian's OpenBLAS 0.3.21 (DYNAMIC_ARCH) picks its kernels
 * from the CPUID model when it loads; on CPUs it does not know (Sapphire Rapids in a VM, for
 * one) it falls back to the SSE3 "Prescott" kernels, 5x slower than the AVX-512 ones (measured
 * here: 29 vs 147 GFLOP/s per core on a 1024^3 SGEMM; docs/BENCHMARKS.md).
 * al_blas_select_kernels() (called by al_ctx_init, idempotent) re-runs OpenBLAS's dynamic
 * kernel selection with OPENBLAS_CORETYPE set to what the CPU supports (AVX-512 -> SkylakeX,
 * AVX2+FMA -> Haswell) when the detected core lacks that ISA. A user's OPENBLAS_CORETYPE is
 * respected; ADVLAB_BLAS_KEEP=1 disables the switch. Must run before any BLAS call is in
 * flight (it is: contexts are created before any op). */
#ifndef AL_BLAS_H
#define AL_BLAS_H

void al_blas_select_kernels(void);
/* The OpenBLAS core in use ("SkylakeX", "Haswell", "Prescott", ...). */
const char *al_blas_core(void);

#endif
