/* pgd_step.c: CPU reference of the fused PGD step + its dispatcher.
 * Twin: cuda/attack_pgd_step.cu (al_pgd_step_cuda); both call the AL_HOSTDEV element functions
 * of pgd_step.h, so the backends differ only in the L2 norm reductions (double here).
 * Shapes: x, x0, g (n, d) row-major, one example per row. Write mode: x updated in place.
 * L2 is two passes per example: ||g|| over finite elements -> ascend into x; ||x - x0|| ->
 * project + clamp. Examples are independent, so OpenMP splits rows with a static schedule and
 * every reduction stays inside one thread (deterministic for any thread count). */
#include "attacks/pgd_step.h"

static void linf_rows(int n, size_t d, float *restrict x, const float *restrict x0,
                      const float *restrict g, float alpha, float eps) {
    const size_t total = (size_t)n * d;
#pragma omp parallel for schedule(static) if (total > 65536)
    for (size_t i = 0; i < total; i++) x[i] = al_pgd_linf_elem(x[i], x0[i], g[i], alpha, eps);
}

static void l2_rows(int n, size_t d, float *restrict x, const float *restrict x0,
                    const float *restrict g, float alpha, float eps) {
#pragma omp parallel for schedule(static) if ((size_t)n * d > 65536)
    for (int i = 0; i < n; i++) {
        float *xi = x + (size_t)i * d;
        const float *x0i = x0 + (size_t)i * d, *gi = g + (size_t)i * d;
        double gsq = 0.0;
        for (size_t j = 0; j < d; j++)
            if (al_pgd_finitef(gi[j])) gsq += (double)gi[j] * gi[j];
        const float inv_gnorm = al_pgd_l2_inv_gnorm(gsq);
        double dsq = 0.0;
        for (size_t j = 0; j < d; j++) {
            float v = al_pgd_l2_ascend_elem(xi[j], x0i[j], gi[j], alpha, inv_gnorm);
            xi[j] = v;
            double dv = (double)v - x0i[j];
            dsq += dv * dv;
        }
        const float scale = al_pgd_l2_scale(dsq, eps);
        for (size_t j = 0; j < d; j++) xi[j] = al_pgd_l2_project_elem(xi[j], x0i[j], scale);
    }
}

al_status al_pgd_step_cpu(al_ctx *ctx, al_norm norm, int n, size_t d, float *x, const float *x0,
                          const float *g, float alpha, float eps) {
    (void)ctx;
    if (norm == AL_LINF)
        linf_rows(n, d, x, x0, g, alpha, eps);
    else
        l2_rows(n, d, x, x0, g, alpha, eps);
    return AL_OK;
}

al_status al_pgd_step(al_ctx *ctx, al_norm norm, int n, size_t d, float *x, const float *x0,
                      const float *g, float alpha, float eps) {
    if (n < 0 || (norm != AL_LINF && norm != AL_L2))
        return AL_FAIL(AL_ERR_VALUE, "al_pgd_step: n=%d norm=%d (need n >= 0, norm Linf|L2)", n,
                       (int)norm);
    if (!(eps >= 0.0f) || !(alpha >= 0.0f) || !al_pgd_finitef(eps) || !al_pgd_finitef(alpha))
        return AL_FAIL(AL_ERR_VALUE, "al_pgd_step: eps=%g alpha=%g (need finite, >= 0)",
                       (double)eps, (double)alpha);
    if (n == 0 || d == 0) return AL_OK;
    switch (ctx->device) {
    case AL_DEV_CPU: return al_pgd_step_cpu(ctx, norm, n, d, x, x0, g, alpha, eps);
    case AL_DEV_CUDA:
        AL_CUDA_OR_FAIL(al_pgd_step_cuda(ctx, norm, n, d, x, x0, g, alpha, eps));
    }
    return AL_FAIL(AL_ERR_VALUE, "al_pgd_step: unknown device %d", (int)ctx->device);
}
