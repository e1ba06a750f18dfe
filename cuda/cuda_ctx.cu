/* cuda_ctx.cu: CUDA context lifecycle and memory for core/ctx.c (its twin on the host side).
 * One non-blocking stream per ctx; cuBLAS and cuDNN handles are bound to it, so every op,
 * copy and library call of a ctx is stream-ordered and the hot path never syncs (except the
 * explicit dev->host copy and al_cuda_sync). Device allocations are counted per ctx so tests
 * can assert that nothing allocates after step 1 (style rule 15).
 * Also here: the one-line error recorder, the shared temporaries helper, CUDA graphs (capture,
 * instantiate or update, launch) and NVTX ranges. */
#include <nvtx3/nvToolsExt.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_base.cuh"

/* ---------------------------------------------------------------- errors */

/* "a/b/cuda/op_conv2d.cu" -> "cuda/op_conv2d.cu" (the last two components). */
static const char *short_path(const char *f) {
    const char *last = strrchr(f, '/');
    if (!last) return f;
    const char *p = last;
    while (p > f && p[-1] != '/') p--;
    return p > f ? p : f;
}

/* The launcher's rank, if any (only read when recording an error). */
static int env_rank(void) {
    static const char *vars[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID", "RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *v = getenv(vars[i]);
        if (v && *v) return atoi(v);
    }
    return -1;
}

al_status al_cuda_fail(al_status st, const char *file, int line, const char *func,
                       const char *call, const char *status_name) {
    /* the call's name only: "cudnnConvolutionForward(..)" (arguments are in the source line) */
    char name[96];
    size_t k = 0;
    while (call[k] && call[k] != '(' && k + 1 < sizeof name) {
        name[k] = call[k];
        k++;
    }
    name[k] = '\0';
    int dev = -1;
    if (cudaGetDevice(&dev) != cudaSuccess) dev = -1;
    char where[48];
    int rank = env_rank();
    if (rank >= 0)
        snprintf(where, sizeof where, "[rank %d gpu %d] ", rank, dev);
    else
        snprintf(where, sizeof where, "[gpu %d] ", dev);
    return al_fail(st, "%s%s:%d %s: %s(..) = %s", where, short_path(file), line, func, name,
                   status_name ? status_name : "?");
}

const char *al_cublas_status_name(cublasStatus_t s) { return cublasGetStatusName(s); }

/* ---------------------------------------------------------------- devices, lifecycle */

extern "C" int al_cuda_device_count(void) {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess) {
        (void)cudaGetLastError(); /* no driver / no device: not sticky, clear it */
        return 0;
    }
    return n;
}

extern "C" al_status al_cuda_ctx_init(al_ctx *ctx) {
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n == 0) {
        (void)cudaGetLastError();
        return AL_FAIL(AL_ERR_NO_GPU, "device = cuda requested but no CUDA device is usable "
                                      "(cudaGetDeviceCount = %s, %d devices)",
                       cudaGetErrorName(e), n);
    }
    if (ctx->device_id < 0 || ctx->device_id >= n)
        return AL_FAIL(AL_ERR_NO_GPU, "cuda device %d requested, devices are 0..%d",
                       ctx->device_id, n - 1);
    al_status st = AL_OK;
    al_cuda_state *s = (al_cuda_state *)calloc(1, sizeof *s);
    if (!s) return AL_FAIL(AL_ERR_OOM, "out of host memory for the CUDA context state");
    ctx->cuda = s;
    s->device = ctx->device_id;
    s->cublas_math = -1;
    const char *sc = getenv("ADVLAB_SYNC_CHECK");
    s->sync_check = sc && strcmp(sc, "0") != 0 && *sc;
    AL_CUDA_CHECK(cudaSetDevice(s->device));
    AL_CUDA_CHECK(cudaDeviceGetAttribute(&s->sm_count, cudaDevAttrMultiProcessorCount, s->device));
    AL_CUDA_CHECK(cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking));
    AL_CUBLAS_CHECK(cublasCreate(&s->cublas));
    AL_CUBLAS_CHECK(cublasSetStream(s->cublas, s->stream));
    AL_CUDNN_CHECK(cudnnCreate(&s->cudnn));
    AL_CUDNN_CHECK(cudnnSetStream(s->cudnn, s->stream));
    AL_CHECK(al_cuda_set_gemm_math(ctx));
    /* cuBLAS gets its own workspace, so that a GEMM inside a graph capture never allocates
     * (cuBLAS's recommendation: 32 MiB on Hopper and newer, 4 MiB before). cublasSetStream
     * would reset it: the stream is set once, above. */
    {
        int major = 0;
        AL_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, s->device));
        s->cublas_ws_bytes = (size_t)(major >= 9 ? 32 : 4) << 20;
        AL_CHECK(al_cuda_malloc(ctx, &s->cublas_ws, s->cublas_ws_bytes, "cuBLAS workspace"));
        AL_CUBLAS_CHECK(cublasSetWorkspace(s->cublas, s->cublas_ws, s->cublas_ws_bytes));
    }
    AL_CHECK(al_cuda_malloc(ctx, &s->aux, AL_CUDA_AUX_BYTES, "CUDA aux buffer"));
    AL_CUDA_CHECK(cudaMallocHost(&s->h_aux, AL_CUDA_AUX_BYTES));
    s->n_allocs++;
done:
    if (st != AL_OK) al_cuda_ctx_fini(ctx);
    return st;
}

extern "C" void al_cuda_ctx_fini(al_ctx *ctx) {
    if (!ctx || !ctx->cuda) return;
    al_cuda_state *s = (al_cuda_state *)ctx->cuda;
    /* teardown: errors here have nowhere useful to go, the process state is what it is */
    if (s->stream) (void)cudaStreamSynchronize(s->stream);
    al_conv_plans_destroy(s);
    if (s->cudnn) (void)cudnnDestroy(s->cudnn);
    if (s->cublas) (void)cublasDestroy(s->cublas);
    if (s->aux) (void)cudaFree(s->aux);
    if (s->cublas_ws) (void)cudaFree(s->cublas_ws);
    if (s->h_aux) (void)cudaFreeHost(s->h_aux);
    if (s->stream) (void)cudaStreamDestroy(s->stream);
    (void)cudaGetLastError();
    free(s);
    ctx->cuda = NULL;
}

al_status al_cuda_set_gemm_math(al_ctx *ctx) {
    al_cuda_state *s = al_cst(ctx);
    /* CUBLAS_DEFAULT_MATH keeps FP32 GEMMs in FP32 (TF32 only when asked for) */
    const int want = ctx->precision == AL_FP32 ? (int)CUBLAS_DEFAULT_MATH
                                               : (int)CUBLAS_TF32_TENSOR_OP_MATH;
    if (s->cublas_math != want) {
        AL_CUBLAS_TRY(cublasSetMathMode(s->cublas, (cublasMath_t)want));
        s->cublas_math = want;
    }
    return AL_OK;
}

/* ---------------------------------------------------------------- memory */

extern "C" al_status al_cuda_malloc(al_ctx *ctx, void **p, size_t n_bytes, const char *what) {
    al_cuda_state *s = al_cst(ctx);
    *p = NULL;
    /* never 0 bytes: callers get a distinct, valid pointer as on the CPU path */
    cudaError_t e = cudaMalloc(p, n_bytes ? n_bytes : 256);
    if (e != cudaSuccess) {
        *p = NULL;
        (void)cudaGetLastError(); /* OOM is not sticky */
        size_t free_b = 0, total_b = 0;
        (void)cudaMemGetInfo(&free_b, &total_b);
        if (e == cudaErrorMemoryAllocation)
            return AL_FAIL(AL_ERR_OOM,
                           "out of GPU memory: %zu bytes for %s on gpu %d (%zu of %zu MiB free)",
                           n_bytes, what, s->device, free_b >> 20, total_b >> 20);
        return al_cuda_fail(AL_ERR_CUDA, __FILE__, __LINE__, __func__, "cudaMalloc()",
                            cudaGetErrorName(e));
    }
    s->n_allocs++;
    s->n_alloc_bytes += n_bytes;
    return AL_OK;
}

extern "C" void al_cuda_free(al_ctx *ctx, void *p) {
    (void)ctx;
    if (p) (void)cudaFree(p); /* cudaFree syncs the device: teardown only */
}

extern "C" uint64_t al_cuda_alloc_count(const al_ctx *ctx) {
    return ctx && ctx->cuda ? ((const al_cuda_state *)ctx->cuda)->n_allocs : 0;
}

/* H2D from pageable memory returns once the source is staged (reusable); from pinned memory
 * the copy is truly asynchronous and the caller keeps the source alive until a sync. D2H
 * syncs the stream so the host sees the data on return. */
extern "C" al_status al_cuda_memcpy(al_ctx *ctx, void *dst, const void *src, size_t n_bytes,
                                    int kind) {
    cudaStream_t st = al_stream_of(ctx);
    if (n_bytes == 0) return AL_OK;
    switch (kind) {
    case 1: AL_CUDA_TRY(cudaMemcpyAsync(dst, src, n_bytes, cudaMemcpyHostToDevice, st)); break;
    case 2:
        AL_CUDA_TRY(cudaMemcpyAsync(dst, src, n_bytes, cudaMemcpyDeviceToHost, st));
        AL_TRY(al_cuda_host_sync(ctx));
        break;
    case 3:
        if (dst != src)
            AL_CUDA_TRY(cudaMemcpyAsync(dst, src, n_bytes, cudaMemcpyDeviceToDevice, st));
        break;
    default: AL_ASSERT(0, "al_cuda_memcpy: kind %d (1 h2d, 2 d2h, 3 d2d)", kind);
    }
    if (al_cst(ctx)->sync_check) AL_CUDA_TRY(cudaStreamSynchronize(st));
    return AL_OK;
}

extern "C" al_status al_cuda_memset(al_ctx *ctx, void *dst, int value, size_t n_bytes) {
    if (n_bytes == 0) return AL_OK;
    AL_CUDA_TRY(cudaMemsetAsync(dst, value, n_bytes, al_stream_of(ctx)));
    AL_LAUNCH_CHECK(ctx);
    return AL_OK;
}

extern "C" al_status al_cuda_sync(al_ctx *ctx) { return al_cuda_host_sync(ctx); }

extern "C" uint64_t al_cuda_sync_count(const al_ctx *ctx) {
    return ctx && ctx->cuda ? ((const al_cuda_state *)ctx->cuda)->n_syncs : 0;
}

al_status al_cuda_tmp(al_ctx *ctx, size_t n_bytes, void **p, size_t *mark) {
    al_cuda_state *s = al_cst(ctx);
    *mark = al_ctx_scratch_mark(ctx);
    if (n_bytes <= al_scratch_avail(ctx)) {
        *p = al_ctx_scratch(ctx, n_bytes);
        return AL_OK;
    }
    if (n_bytes <= AL_CUDA_AUX_BYTES) {
        *p = s->aux;
        return AL_OK;
    }
    *p = NULL;
    return AL_FAIL(AL_ERR_VALUE,
                   "CUDA op needs %zu bytes of device scratch, ctx has %zu free: reserve it at "
                   "setup with al_ctx_reserve_scratch",
                   n_bytes, al_scratch_avail(ctx));
}

/* ---------------------------------------------------------------- graphs */

struct al_cuda_graph {
    cudaGraphExec_t exec;
    al_cuda_graph_info info;
};

extern "C" int al_cuda_graphs_usable(const al_ctx *ctx) {
    /* ADVLAB_SYNC_CHECK syncs after every launch, which no capture allows */
    return ctx && ctx->device == AL_DEV_CUDA && ctx->cuda && ctx->cuda_graphs &&
           !((const al_cuda_state *)ctx->cuda)->sync_check;
}

extern "C" al_status al_cuda_graph_begin(al_ctx *ctx) {
    /* thread-local: only this thread's unsafe calls (cudaMalloc, a sync) break the capture;
     * another host thread of the process may allocate meanwhile */
    AL_CUDA_TRY(cudaStreamBeginCapture(al_stream_of(ctx), cudaStreamCaptureModeThreadLocal));
    return AL_OK;
}

extern "C" al_status al_cuda_graph_end(al_ctx *ctx, al_cuda_graph **gp, al_status body) {
    cudaGraph_t graph = NULL;
    const cudaError_t e = cudaStreamEndCapture(al_stream_of(ctx), &graph);
    (void)cudaGetLastError(); /* a refused call left its error sticky: not a device fault */
    if (body != AL_OK) { /* the body's own message (often the refused call) stays recorded */
        if (graph) (void)cudaGraphDestroy(graph);
        return body;
    }
    if (e != cudaSuccess)
        return al_cuda_fail(AL_ERR_CUDA, __FILE__, __LINE__, __func__, "cudaStreamEndCapture()",
                            cudaGetErrorName(e));
    al_status st = AL_OK;
    al_cuda_graph *g = *gp;
    size_t nodes = 0;
    if (!g) {
        g = (al_cuda_graph *)calloc(1, sizeof *g);
        if (!g) {
            (void)cudaGraphDestroy(graph);
            return AL_FAIL(AL_ERR_OOM, "out of host memory for a CUDA graph");
        }
        *gp = g;
    }
    AL_CUDA_CHECK(cudaGraphGetNodes(graph, NULL, &nodes));
    g->info.captures++;
    if (g->exec) {
        /* same nodes, new arguments (pointers, sizes, scalars): update the executable graph in
         * place, much cheaper than instantiating it again */
        cudaGraphExecUpdateResultInfo ui;
        if (cudaGraphExecUpdate(g->exec, graph, &ui) == cudaSuccess) {
            g->info.updates++;
            g->info.nodes = nodes;
            goto done;
        }
        (void)cudaGetLastError();
        (void)cudaGraphExecDestroy(g->exec);
        g->exec = NULL;
    }
    AL_CUDA_CHECK(cudaGraphInstantiate(&g->exec, graph, 0));
    g->info.instantiations++;
    g->info.nodes = nodes;
done:
    (void)cudaGraphDestroy(graph);
    return st;
}

extern "C" al_status al_cuda_graph_launch(al_ctx *ctx, al_cuda_graph *g) {
    AL_ASSERT(g && g->exec, "al_cuda_graph_launch: no instantiated graph");
    AL_CUDA_TRY(cudaGraphLaunch(g->exec, al_stream_of(ctx)));
    g->info.launches++;
    return AL_OK;
}

extern "C" void al_cuda_graph_free(al_cuda_graph *g) {
    if (!g) return;
    if (g->exec) (void)cudaGraphExecDestroy(g->exec);
    free(g);
}

extern "C" al_cuda_graph_info al_cuda_graph_get_info(const al_cuda_graph *g) {
    al_cuda_graph_info z;
    memset(&z, 0, sizeof z);
    return g ? g->info : z;
}

/* ---------------------------------------------------------------- NVTX */

extern "C" void al_nvtx_push(const char *name) { nvtxRangePushA(name); }
extern "C" void al_nvtx_pop(void) { nvtxRangePop(); }
