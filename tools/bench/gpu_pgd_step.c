/* gpu_pgd_step.c (executable bench_gpu_pgd_step): memory bandwidth of the fused PGD step,
 * cuda/attack_pgd_step.cu (twin attacks/pgd_step.c), Linf and L2, on the lent H100/H200.
 * Per (norm, shape): first the check against the CPU twin (Linf bitwise; L2 within
 * al_tol_f32(d), as tests/test_cuda.c), then warm-up, then >= `seconds` of timed groups of
 * GROUP back-to-back steps between two stream syncs (the per-step time includes the launch,
 * as the attack loop sees it); median / p10 / p90 over the groups.
 * Napkin math: a step must read x, x0, g and write x: 16 B per element at least ("useful
 * bytes"; the L2 step makes two passes, ~32 B actual). 512 x 3072 (a CIFAR training batch) is
 * 25 MB of useful traffic and sits in the 50 MB L2 ("l2hot"); 8192 x 3072 (403 MB) streams
 * from HBM ("dram"): at H100 SXM's 3.35 TB/s peak that is >= 120 us per step.
 * Peak = 2 x memory clock x bus width (cudaDevAttrMemoryClockRate / GlobalMemoryBusWidth).
 * Output: one line per case on stdout and JSONL {bench, variant, shape, device, commit, date,
 * ...} appended to ./bench_gpu.jsonl (or argv[1]). Exit 77 without a GPU, 1 on a failed check. */
#include <cuda_runtime.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "attacks/pgd_step.h"
#include "core/ctx.h"
#include "core/cuda_api.h"
#include "core/rng.h"

#ifndef AL_BENCH_COMMIT
#define AL_BENCH_COMMIT "unknown"
#endif
#define GROUP 50
#define MAX_GROUPS 4096

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Uniform [lo, hi) from a 64-bit xorshift* (cheap: 100M values for the large shape). */
static void fill(float *p, size_t n, uint64_t id, float lo, float hi) {
    uint64_t s = 0x9E3779B97F4A7C15ull * (id + 1);
    for (size_t i = 0; i < n; i++) {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        p[i] = lo + (hi - lo) * al_u32_to_unit((uint32_t)((s * 0x2545F4914F6CDD1Dull) >> 32));
    }
}

#define TRY(call)                                                                          \
    do {                                                                                   \
        if ((call) != AL_OK) {                                                             \
            fprintf(stderr, "bench_gpu_pgd_step: %s: %s\n", #call, al_errmsg());           \
            rc = 1;                                                                        \
            goto done;                                                                     \
        }                                                                                  \
    } while (0)

/* One (norm, shape) case; returns 0 ok, 1 failure. */
static int run_case(al_ctx *ctx, FILE *jl, const char *dev_name, double peak_gbps, al_norm norm,
                    int n, size_t d, const char *variant, double seconds) {
    const size_t ne = (size_t)n * d, nb = ne * sizeof(float);
    const float alpha = norm == AL_LINF ? 2.0f / 255 : 0.1f, eps = norm == AL_LINF ? 8.0f / 255 : 0.5f;
    float *h_x = malloc(nb), *h_x0 = malloc(nb), *h_g = malloc(nb), *h_out = malloc(nb);
    float *d_x = NULL, *d_x0 = NULL, *d_g = NULL;
    double *t = malloc(MAX_GROUPS * sizeof(double));
    int rc = 0, n_groups = 0;
    if (!h_x || !h_x0 || !h_g || !h_out || !t) {
        fprintf(stderr, "bench_gpu_pgd_step: out of host memory\n");
        rc = 1;
        goto done;
    }
    fill(h_x0, ne, 1, 0, 1);
    fill(h_g, ne, 2, -1, 1);
    fill(h_x, ne, 3, -0.5f * eps, 0.5f * eps);
    for (size_t i = 0; i < ne; i++) h_x[i] += h_x0[i]; /* inside the ball, as an iterate */
    TRY(al_dev_alloc(ctx, (void **)&d_x, nb, "bench x"));
    TRY(al_dev_alloc(ctx, (void **)&d_x0, nb, "bench x0"));
    TRY(al_dev_alloc(ctx, (void **)&d_g, nb, "bench g"));
    TRY(al_copy_to_dev(ctx, d_x, h_x, nb));
    TRY(al_copy_to_dev(ctx, d_x0, h_x0, nb));
    TRY(al_copy_to_dev(ctx, d_g, h_g, nb));
    /* check against the CPU twin first (style rule 25) */
    TRY(al_pgd_step_cuda(ctx, norm, n, d, d_x, d_x0, d_g, alpha, eps));
    TRY(al_copy_to_host(ctx, h_out, d_x, nb));
    {
        al_ctx cpu;
        TRY(al_ctx_init(&cpu, AL_DEV_CPU, 0, 0, 1));
        al_status st = al_pgd_step_cpu(&cpu, norm, n, d, h_x, h_x0, h_g, alpha, eps);
        al_ctx_fini(&cpu);
        TRY(st);
    }
    const double tol = norm == AL_LINF ? 0.0 : 8 * 1.1920929e-07 * sqrt((double)d);
    double max_err = 0;
    for (size_t i = 0; i < ne; i++) {
        const double e = fabs((double)h_out[i] - h_x[i]);
        if (!(e <= tol)) {
            fprintf(stderr, "bench_gpu_pgd_step: %s check failed at %zu: cuda %.9g cpu %.9g\n",
                    variant, i, (double)h_out[i], (double)h_x[i]);
            rc = 1;
            goto done;
        }
        if (e > max_err) max_err = e;
    }
    /* warm-up, then timed groups */
    for (int i = 0; i < 20; i++) TRY(al_pgd_step_cuda(ctx, norm, n, d, d_x, d_x0, d_g, alpha, eps));
    TRY(al_sync(ctx));
    const double t_begin = al_now();
    while (n_groups < MAX_GROUPS && (al_now() - t_begin < seconds || n_groups < 10)) {
        const double t0 = al_now();
        for (int i = 0; i < GROUP; i++)
            TRY(al_pgd_step_cuda(ctx, norm, n, d, d_x, d_x0, d_g, alpha, eps));
        TRY(al_sync(ctx));
        t[n_groups++] = (al_now() - t0) / GROUP;
    }
    qsort(t, (size_t)n_groups, sizeof *t, cmp_double);
    {
        const double med = t[n_groups / 2], p10 = t[n_groups / 10], p90 = t[(n_groups * 9) / 10];
        const double gbps = 16.0 * (double)ne / med / 1e9;
        char date[32];
        const time_t now = time(NULL);
        strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", gmtime(&now));
        printf("pgd_step %-4s %-6s %6dx%-5zu median %8.1f us (p10 %8.1f, p90 %8.1f)  %7.1f GB/s "
               "useful  %5.1f%% of %.0f GB/s peak  check max err %.3g\n",
               norm == AL_LINF ? "linf" : "l2", variant, n, d, med * 1e6, p10 * 1e6, p90 * 1e6,
               gbps, 100 * gbps / peak_gbps, peak_gbps, max_err);
        if (jl)
            fprintf(jl,
                    "{\"bench\":\"pgd_step\",\"variant\":\"%s_%s\",\"shape\":\"%dx%zu\","
                    "\"device\":\"%s\",\"commit\":\"%s\",\"date\":\"%s\",\"median_us\":%.3f,"
                    "\"p10_us\":%.3f,\"p90_us\":%.3f,\"groups\":%d,\"steps_per_group\":%d,"
                    "\"useful_bytes_per_elem\":16,\"gbps\":%.1f,\"peak_gbps\":%.1f,"
                    "\"frac_peak\":%.4f,\"check_max_err\":%.3g}\n",
                    norm == AL_LINF ? "linf" : "l2", variant, n, d, dev_name, AL_BENCH_COMMIT,
                    date, med * 1e6, p10 * 1e6, p90 * 1e6, n_groups, GROUP, gbps, peak_gbps,
                    gbps / peak_gbps, max_err);
    }
done:
    al_dev_free(ctx, d_x);
    al_dev_free(ctx, d_x0);
    al_dev_free(ctx, d_g);
    free(h_x);
    free(h_x0);
    free(h_g);
    free(h_out);
    free(t);
    return rc;
}

int main(int argc, char **argv) {
    if (!al_cuda_available()) {
        printf("skipped: no GPU\n");
        return 77;
    }
    const char *out = argc > 1 ? argv[1] : "bench_gpu.jsonl";
    const char *s_env = getenv("AL_BENCH_SECONDS");
    const double seconds = s_env ? atof(s_env) : 1.0;
    al_ctx ctx;
    if (al_ctx_init(&ctx, AL_DEV_CUDA, 0, 0, 1) != AL_OK) {
        fprintf(stderr, "bench_gpu_pgd_step: %s\n", al_errmsg());
        return 1;
    }
    struct cudaDeviceProp prop;
    int clk_khz = 0, bus_bits = 0;
    if (cudaGetDeviceProperties(&prop, 0) != cudaSuccess ||
        cudaDeviceGetAttribute(&clk_khz, cudaDevAttrMemoryClockRate, 0) != cudaSuccess ||
        cudaDeviceGetAttribute(&bus_bits, cudaDevAttrGlobalMemoryBusWidth, 0) != cudaSuccess) {
        fprintf(stderr, "bench_gpu_pgd_step: cannot read the device properties\n");
        al_ctx_fini(&ctx);
        return 1;
    }
    /* double data rate: 2 transfers per clock */
    const double peak_gbps = 2.0 * clk_khz * 1e3 * (bus_bits / 8.0) / 1e9;
    printf("device %s: %d SMs, L2 %d MB, memory %d kHz x %d bit = %.0f GB/s peak\n", prop.name,
           prop.multiProcessorCount, prop.l2CacheSize >> 20, clk_khz, bus_bits, peak_gbps);
    FILE *jl = fopen(out, "a");
    if (!jl) fprintf(stderr, "bench_gpu_pgd_step: cannot append to %s (stdout only)\n", out);
    int rc = 0;
    static const struct {
        int n;
        size_t d;
        const char *variant;
    } shapes[] = {{512, 3072, "l2hot"}, {8192, 3072, "dram"}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int norm = 0; norm <= 1; norm++)
            rc |= run_case(&ctx, jl, prop.name, peak_gbps, norm ? AL_L2 : AL_LINF, shapes[s].n,
                           shapes[s].d, shapes[s].variant, seconds);
    if (jl) fclose(jl);
    al_ctx_fini(&ctx);
    return rc;
}
