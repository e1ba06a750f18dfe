/* simcuda cuda_runtime.h: the subset of the CUDA runtime that cuda/ uses, executed on the CPU.
 *
 * simcuda runs advlab's own kernels (the .cu files of cuda/, rewritten by tests/simcuda/cu2cc.py: only the
 * `k<<<g, b, s, st>>>(..)` launch syntax and `extern __shared__` change) as C++ on the host, so
 * that every CUDA twin test can execute in CI, where there is no GPU. It is an emulator of the
 * programming model, not of the hardware:
 *   - a block's threads are fibers (one stack each) on one OS thread; __syncthreads() and the
 *     warp shuffles are real barriers (a thread waits until its block / warp reaches them), so
 *     a barrier in divergent code, a shuffle that reads an exited or inactive lane, or a
 *     deadlock stops the program with the kernel's name;
 *   - the stream is asynchronous in the strictest way: launches, copies, memsets and library
 *     calls are queued and run only when the host waits (cudaStreamSynchronize, cudaFree, ...),
 *     so a host read without a sync sees stale data;
 *   - device memory is a separate arena that the host cannot touch: it is mapped PROT_NONE
 *     except while the queue runs, so host code dereferencing a device pointer faults (as on a
 *     GPU), and a kernel argument that is a host pointer is rejected at launch;
 *   - cudaMalloc memory starts as 0xFF bytes (float NaN, int -1), not zero;
 *   - launch configurations are validated as on sm_90 (block <= 1024 threads, grid.y/z <=
 *     65535, dynamic shared memory <= 48 KiB);
 *   - stream capture (cudaStreamBeginCapture .. cudaStreamEndCapture) records the queued
 *     closures, with their arguments as captured, instead of running them; a graph launch
 *     queues copies of them. The calls a real capture refuses (a stream sync, cudaMalloc /
 *     cudaFree / cudaMallocHost / cudaFreeHost, a copy from or to pageable host memory, work on
 *     the legacy stream) return cudaErrorStreamCaptureUnsupported, name themselves on stderr
 *     and invalidate the capture, so cudaStreamEndCapture returns
 *     cudaErrorStreamCaptureInvalidated, as on a GPU. A replay reads device memory when it
 *     runs, and host values as they were at capture: exactly what a real graph does.
 * What it cannot tell: data races between threads (fibers run one at a time, in order),
 * the device's math library (the host's libm is used), timing, and cuDNN/cuBLAS themselves
 * (their simcuda versions are plain reference loops / the host BLAS; see cudnn.h). */
#ifndef SIMCUDA_CUDA_RUNTIME_H
#define SIMCUDA_CUDA_RUNTIME_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <tuple>
#include <type_traits>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
struct uint3 {
    unsigned x, y, z;
};
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;

typedef enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorInvalidDevice = 101,
    cudaErrorIllegalState = 401,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorStreamCaptureImplicit = 906,
    cudaErrorGraphExecUpdateFailure = 910,
} cudaError_t;

typedef struct simcuda_stream *cudaStream_t;
#define cudaStreamNonBlocking 0x01

enum cudaMemcpyKind {
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
};
enum cudaDeviceAttr {
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrComputeCapabilityMajor = 75,
};

/* graphs: stream capture, instantiate, update, launch */
typedef struct simcuda_graph *cudaGraph_t;
typedef struct simcuda_graph_exec *cudaGraphExec_t;
typedef struct simcuda_graph_node *cudaGraphNode_t;
enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2,
};
enum cudaStreamCaptureStatus {
    cudaStreamCaptureStatusNone = 0,
    cudaStreamCaptureStatusActive = 1,
    cudaStreamCaptureStatusInvalidated = 2,
};
enum cudaGraphExecUpdateResult {
    cudaGraphExecUpdateSuccess = 0,
    cudaGraphExecUpdateError = 1,
    cudaGraphExecUpdateErrorTopologyChanged = 2,
};
struct cudaGraphExecUpdateResultInfo {
    cudaGraphExecUpdateResult result;
    cudaGraphNode_t errorNode, errorFromNode;
};

const char *cudaGetErrorName(cudaError_t e);
cudaError_t cudaGetLastError(void);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaGetDevice(int *d);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int dev);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaMalloc(void **p, size_t n);
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t n);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind,
                            cudaStream_t s = 0);
cudaError_t cudaMemsetAsync(void *dst, int value, size_t n, cudaStream_t s = 0);
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g);
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status);
cudaError_t cudaGraphGetNodes(cudaGraph_t g, cudaGraphNode_t *nodes, size_t *n);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long flags = 0);
cudaError_t cudaGraphExecUpdate(cudaGraphExec_t e, cudaGraph_t g,
                                cudaGraphExecUpdateResultInfo *info);
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s);
cudaError_t cudaGraphDestroy(cudaGraph_t g);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e);

/* device intrinsics with host meaning (no contraction: the build uses -ffp-contract=off) */
/* Atomics: a block's fibers run one at a time and switch only at barriers and shuffles, and
 * blocks run one after another, so a plain read-modify-write is atomic here. */
inline int atomicAdd(int *p, int v) {
    const int o = *p;
    *p = o + v;
    return o;
}
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fadd_rn(float a, float b) { return a + b; }

/* CUDA's global min/max overloads */
#define SIMCUDA_MINMAX(T)                                                                    \
    inline T min(T a, T b) { return a < b ? a : b; }                                         \
    inline T max(T a, T b) { return a > b ? a : b; }
SIMCUDA_MINMAX(int)
SIMCUDA_MINMAX(unsigned)
SIMCUDA_MINMAX(long long)
SIMCUDA_MINMAX(unsigned long long)
SIMCUDA_MINMAX(long)
SIMCUDA_MINMAX(unsigned long)
#undef SIMCUDA_MINMAX
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }

namespace simcuda {

/* ---- the emulator's entry points (tests/simcuda/simcuda.cc) */
void syncthreads();
enum ShflOp { SHFL_IDX, SHFL_DOWN, SHFL_XOR };
uint64_t shfl(unsigned mask, uint64_t bits, ShflOp op, int arg, int width);
void *dyn_smem();
/* queue work on the stream (runs at the next host wait) */
void enqueue(cudaStream_t s, const char *what, std::function<void()> fn);
/* 1 when p is inside device memory or pinned host memory (what a kernel may dereference) */
bool kernel_may_touch(const void *p);
[[noreturn]] void die(const char *fmt, ...);

struct Cfg {
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    const char *file, *kernel;
    int line;
};
/* validate (sets the sticky launch error like the runtime); 1 = launch may be queued */
bool check_config(const Cfg &c);
/* run the whole grid of `body` (one call per thread) now; called from the queue */
void run_grid(const Cfg &c, const std::function<void()> &body);

template <class T>
inline void check_arg(const Cfg &c, int i, const T &v) {
    if constexpr (std::is_pointer<T>::value) {
        if (v != nullptr && !kernel_may_touch((const void *)v))
            die("%s:%d: kernel %s argument %d (from 1) is the host pointer %p (not device memory)", c.file,
                c.line, c.kernel, i, (const void *)v);
    }
}

template <class... P>
struct Bound {
    Cfg c;
    void (*k)(P...);
    template <class... A>
    void operator()(A &&...a) const {
        static_assert(sizeof...(A) == sizeof...(P), "kernel argument count");
        if (!check_config(c)) return;
        std::tuple<std::decay_t<P>...> args(std::forward<A>(a)...);
        int i = 0;
        std::apply([&](const auto &...v) { (check_arg(c, ++i, v), ...); }, args);
        Cfg cc = c;
        auto kf = k;
        enqueue(c.stream, c.kernel, [cc, kf, args]() {
            run_grid(cc, [&]() { std::apply(kf, args); });
        });
    }
};

struct Launch {
    Cfg c;
    template <class... P>
    Bound<P...> bind(void (*k)(P...), const char *name) const {
        Bound<P...> b{c, k};
        b.c.kernel = name;
        return b;
    }
};
inline Launch cfg(const char *file, int line, dim3 g, dim3 b, size_t smem = 0,
                  cudaStream_t s = 0) {
    return Launch{Cfg{g, b, smem, s, file, "?", line}};
}

template <class T>
inline T shfl_t(unsigned mask, T v, ShflOp op, int arg, int width) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle type");
    uint64_t bits = 0;
    memcpy(&bits, &v, sizeof v);
    bits = shfl(mask, bits, op, arg, width);
    T r;
    memcpy(&r, &bits, sizeof r);
    return r;
}

} // namespace simcuda

inline void __syncthreads() { simcuda::syncthreads(); }
template <class T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    return simcuda::shfl_t(mask, v, simcuda::SHFL_IDX, src, width);
}
template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned d, int width = 32) {
    return simcuda::shfl_t(mask, v, simcuda::SHFL_DOWN, (int)d, width);
}
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lm, int width = 32) {
    return simcuda::shfl_t(mask, v, simcuda::SHFL_XOR, lm, width);
}

#endif
