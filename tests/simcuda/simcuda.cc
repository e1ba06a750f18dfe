/* simcuda.cc: the CUDA runtime subset of include/cuda_runtime.h, on the CPU (see that header
 * for what is and is not emulated). Three parts:
 *   device memory  one reserved arena, PROT_NONE to the host except while the stream's queue
 *                  runs; each allocation is followed by a canary red zone checked after every
 *                  queue run (a kernel writing past its buffer is named);
 *   the stream     a FIFO of closures (launches, copies, memsets, library calls) run in order
 *                  at the next host wait;
 *   a launch       blocks one after another; a block's threads are fibers with their own
 *                  stacks, switched by a hand-written x86-64 context switch (push the 6
 *                  callee-saved registers, swap rsp, pop, ret); the scheduler
 *                  runs every ready thread until it finishes or waits at __syncthreads() / a
 *                  shuffle, then resolves the warps' shuffles and the block barrier. */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <map>
#include <vector>

#include "cuda_runtime.h"

uint3 threadIdx, blockIdx;
dim3 blockDim, gridDim;

#if !defined(__x86_64__)
#error "simcuda's fiber switch is written for x86-64"
#endif

namespace simcuda {

/* ------------------------------------------------------------------ errors */

static cudaError_t g_last = cudaSuccess;
static const char *g_op = NULL;       /* queued op running now (NULL: host code) */
static const Cfg *g_cfg = NULL;       /* launch running now */

void die(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (g_cfg)
        fprintf(stderr, "simcuda: %s (kernel %s launched at %s:%d, block (%u,%u,%u) thread (%u,%u,%u))\n",
                msg, g_cfg->kernel, g_cfg->file, g_cfg->line, blockIdx.x, blockIdx.y, blockIdx.z,
                threadIdx.x, threadIdx.y, threadIdx.z);
    else
        fprintf(stderr, "simcuda: %s\n", msg);
    fflush(stderr);
    abort();
}

/* ------------------------------------------------------------------ device memory */

static const size_t ARENA_BYTES = (size_t)64 << 30; /* reserved, not committed */
static const size_t ALIGN = 256, REDZONE = 256;
static const unsigned char CANARY = 0xA5, FRESH = 0xFF;
static char *g_base = NULL, *g_top = NULL; /* arena; g_top: end of the used part */
static size_t g_live_bytes = 0;
static int g_protect = 1;
struct Block {
    size_t size, cap; /* requested, usable (multiple of ALIGN, before the red zone) */
};
static std::map<char *, Block> g_live;                 /* start -> block */
static std::multimap<size_t, char *> g_free;           /* cap -> start */
static std::map<char *, size_t> g_pinned;              /* cudaMallocHost blocks */

static void segv_handler(int sig, siginfo_t *si, void *uc) {
    (void)uc;
    char *a = (char *)si->si_addr;
    char buf[512];
    int n;
    if (g_base && a >= g_base && a < g_base + ARENA_BYTES) {
        if (g_op)
            n = snprintf(buf, sizeof buf,
                         "simcuda: %s touched %p, outside every live device allocation (kernel "
                         "%s at %s:%d)\n",
                         g_op, (void *)a, g_cfg ? g_cfg->kernel : "-", g_cfg ? g_cfg->file : "-",
                         g_cfg ? g_cfg->line : 0);
        else
            n = snprintf(buf, sizeof buf,
                         "simcuda: HOST code dereferenced device memory at %p (a GPU faults "
                         "here too: copy it to the host first)\n",
                         (void *)a);
    } else {
        n = snprintf(buf, sizeof buf, "simcuda: signal %d at %p (%s)\n", sig, (void *)a,
                     g_op ? g_op : "host code");
    }
    if (n > 0) (void)!write(2, buf, (size_t)n);
    signal(SIGABRT, SIG_DFL);
    abort();
}

static void arena_init() {
    if (g_base) return;
    void *p = mmap(NULL, ARENA_BYTES, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) die("cannot reserve the device arena (%s)", strerror(errno));
    g_base = g_top = (char *)p;
    const char *e = getenv("SIMCUDA_NO_PROTECT");
    g_protect = !(e && e[0] == '1');
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = segv_handler;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    /* the handler runs on its own stack: a fault can come from a fiber's small stack */
    static char altstack[1 << 16];
    stack_t ss;
    ss.ss_sp = altstack;
    ss.ss_size = sizeof altstack;
    ss.ss_flags = 0;
    sigaltstack(&ss, NULL);
}

static size_t page_up(size_t n) {
    const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    return (n + pg - 1) / pg * pg;
}
/* [lo, hi) of the arena (widened to pages) readable/writable or not; NONE is skipped with
 * SIMCUDA_NO_PROTECT=1 */
static void set_prot(char *lo, char *hi, bool rw) {
    if (hi <= lo || (!rw && !g_protect)) return;
    const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    char *a = g_base + (size_t)(lo - g_base) / pg * pg;
    if (mprotect(a, page_up((size_t)(hi - a)), rw ? PROT_READ | PROT_WRITE : PROT_NONE) != 0)
        die("mprotect of the device arena failed (%s)", strerror(errno));
}

static bool in_arena(const void *p) {
    return g_base && (const char *)p >= g_base && (const char *)p < g_top;
}
/* the live block holding [p, p + n), or NULL */
static const std::pair<char *const, Block> *live_block(const void *p, size_t n) {
    if (!in_arena(p) || g_live.empty()) return NULL;
    auto it = g_live.upper_bound((char *)p);
    if (it == g_live.begin()) return NULL;
    --it;
    const char *c = (const char *)p;
    if (c >= it->first && c + n <= it->first + it->second.size) return &*it;
    return NULL;
}
bool kernel_may_touch(const void *p) {
    if (in_arena(p)) return true;
    if (g_pinned.empty()) return false;
    auto it = g_pinned.upper_bound((char *)p);
    if (it == g_pinned.begin()) return false;
    --it;
    return (const char *)p < it->first + it->second;
}

static void check_redzones(const char *after) {
    for (auto &kv : g_live) {
        const unsigned char *z = (const unsigned char *)kv.first + kv.second.size;
        const size_t nz = kv.second.cap + REDZONE - kv.second.size;
        for (size_t i = 0; i < nz; i++)
            if (z[i] != CANARY)
                die("a device buffer of %zu bytes at %p was written %zu bytes past its end "
                    "(found after %s)",
                    kv.second.size, (void *)kv.first, i, after);
    }
}

/* ------------------------------------------------------------------ the stream queue */

struct Op {
    const char *what;
    std::function<void()> fn;
};
static std::vector<Op> g_queue;

/* ---- stream capture: while g_cap is set, work queued on g_cap_stream is recorded into it */
} // namespace simcuda
struct simcuda_graph {
    std::vector<simcuda::Op> ops;
};
struct simcuda_graph_exec {
    std::vector<simcuda::Op> ops;
};
namespace simcuda {
static simcuda_graph *g_cap = NULL;
static cudaStream_t g_cap_stream = NULL;
static bool g_cap_bad = false; /* a refused call invalidated the capture */

/* A call a real capture refuses: named on stderr, the capture invalidated. */
static cudaError_t capture_refuse(const char *call, const char *why) {
    fprintf(stderr, "simcuda: %s during stream capture (%s): the capture is invalidated\n", call,
            why);
    g_cap_bad = true;
    return cudaErrorStreamCaptureUnsupported;
}

void enqueue(cudaStream_t s, const char *what, std::function<void()> fn) {
    if (g_cap && s == g_cap_stream) {
        g_cap->ops.push_back(Op{what, std::move(fn)});
        return;
    }
    if (g_cap && !s) { /* the legacy stream waits for the capturing one: refused on a GPU */
        (void)capture_refuse(what, "work on the legacy default stream");
        g_last = cudaErrorStreamCaptureImplicit;
        return;
    }
    /* one in-order queue for all other streams: stricter than needed, never looser */
    g_queue.push_back(Op{what, std::move(fn)});
}

static void flush() {
    if (g_queue.empty()) return;
    std::vector<Op> q;
    q.swap(g_queue);
    set_prot(g_base, g_top, true);
    const char *last = "?";
    for (auto &op : q) {
        g_op = op.what;
        op.fn();
        last = op.what;
    }
    g_op = NULL;
    check_redzones(last);
    set_prot(g_base, g_top, false);
}

/* ------------------------------------------------------------------ fibers */

extern "C" void simcuda_switch(void **save_sp, void *to_sp);
asm(R"(
    .text
    .globl simcuda_switch
    .type simcuda_switch,@function
simcuda_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size simcuda_switch, .-simcuda_switch
    .section .note.GNU-stack,"",@progbits
    .text
)");

enum State { READY, AT_BAR, AT_SHFL, DONE };
struct Shfl {
    unsigned mask;
    uint64_t bits, result;
    int op, arg, width;
};
struct Fiber {
    void *sp;
    char *stack;
    State state;
    Shfl sh;
};
static const size_t STACK_BYTES = 256 << 10;
static std::vector<Fiber> g_fib;
static void *g_sched_sp = NULL;
static int g_cur = -1;
static const std::function<void()> *g_body = NULL;
static std::vector<unsigned char> g_smem;

static void yield_to_sched() { simcuda_switch(&g_fib[(size_t)g_cur].sp, g_sched_sp); }

static void fiber_entry() {
    for (;;) {
        (*g_body)();
        g_fib[(size_t)g_cur].state = DONE;
        yield_to_sched();
    }
}

static void make_fibers(size_t n) {
    const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
    while (g_fib.size() < n) {
        Fiber f;
        memset(&f, 0, sizeof f);
        void *m = mmap(NULL, STACK_BYTES + pg, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) die("cannot map a fiber stack (%s)", strerror(errno));
        mprotect(m, pg, PROT_NONE); /* guard page: a stack overflow faults */
        f.stack = (char *)m;
        uintptr_t top = ((uintptr_t)m + pg + STACK_BYTES) & ~(uintptr_t)15;
        void **sp = (void **)top;
        *--sp = NULL;                      /* fiber_entry's (unused) return address */
        *--sp = (void *)&fiber_entry;      /* where simcuda_switch's ret lands */
        for (int r = 0; r < 6; r++) *--sp = NULL; /* rbp rbx r12-r15 */
        f.sp = sp;
        f.state = DONE;
        g_fib.push_back(f);
    }
}

static void set_thread(size_t t) {
    threadIdx.x = (unsigned)(t % blockDim.x);
    threadIdx.y = (unsigned)(t / blockDim.x % blockDim.y);
    threadIdx.z = (unsigned)(t / ((size_t)blockDim.x * blockDim.y));
}

void syncthreads() {
    if (g_cur < 0) die("__syncthreads() outside a kernel");
    g_fib[(size_t)g_cur].state = AT_BAR;
    yield_to_sched();
}

uint64_t shfl(unsigned mask, uint64_t bits, ShflOp op, int arg, int width) {
    if (g_cur < 0) die("a warp shuffle outside a kernel");
    if (width <= 0 || width > 32 || (width & (width - 1)))
        die("shuffle width %d (a power of two <= 32)", width);
    Fiber &f = g_fib[(size_t)g_cur];
    f.sh = Shfl{mask, bits, 0, (int)op, arg, width};
    f.state = AT_SHFL;
    yield_to_sched();
    return f.sh.result;
}

void *dyn_smem() {
    if (g_cur < 0) die("extern __shared__ outside a kernel");
    if (g_cfg->smem == 0) die("extern __shared__ used by a launch with 0 bytes of dynamic shared memory");
    return g_smem.data();
}

static const char *op_name(int op) {
    static const char *const n[] = {"__shfl_sync", "__shfl_down_sync", "__shfl_xor_sync"};
    return n[op];
}

/* resolve warp w's waiting shuffle; false when it has none */
static bool resolve_warp(size_t w, size_t nt) {
    const size_t lo = w * 32, hi = lo + 32 < nt ? lo + 32 : nt;
    unsigned here = 0;
    int first = -1;
    for (size_t t = lo; t < hi; t++)
        if (g_fib[t].state == AT_SHFL) {
            here |= 1u << (t - lo);
            if (first < 0) first = (int)t;
        }
    if (!here) return false;
    const Shfl &s0 = g_fib[(size_t)first].sh;
    for (size_t t = lo; t < hi; t++) {
        if (!(here >> (t - lo) & 1)) continue;
        const Shfl &s = g_fib[t].sh;
        set_thread(t);
        if (s.op != s0.op || s.width != s0.width)
            die("lanes of warp %zu wait at different shuffles (%s width %d vs %s width %d)", w,
                op_name(s.op), s.width, op_name(s0.op), s0.width);
        if (s.mask & ~here) {
            unsigned miss = s.mask & ~here;
            int l = __builtin_ctz(miss);
            const char *why = lo + (size_t)l >= nt ? "does not exist (block smaller than the warp)"
                              : g_fib[lo + (size_t)l].state == DONE ? "has exited"
                                                                    : "waits at __syncthreads()";
            die("%s with mask 0x%08x: lane %d named in the mask %s", op_name(s.op), s.mask, l, why);
        }
    }
    for (size_t t = lo; t < hi; t++) {
        if (!(here >> (t - lo) & 1)) continue;
        Shfl &s = g_fib[t].sh;
        const int l = (int)(t - lo), base = l - l % s.width;
        int src = l;
        switch (s.op) {
        case SHFL_IDX: src = base + ((s.arg % s.width) + s.width) % s.width; break;
        case SHFL_DOWN: src = l + s.arg >= base + s.width ? l : l + s.arg; break;
        case SHFL_XOR: src = l ^ s.arg; if (src < base || src >= base + s.width) src = l; break;
        }
        if (!(here >> src & 1)) {
            set_thread(t);
            die("%s: lane %d reads lane %d, which is not in the shuffle (undefined on a GPU)",
                op_name(s.op), l, src);
        }
        s.result = g_fib[lo + (size_t)src].sh.bits;
    }
    for (size_t t = lo; t < hi; t++)
        if (here >> (t - lo) & 1) g_fib[t].state = READY;
    return true;
}

static void run_block(size_t nt) {
    for (size_t t = 0; t < nt; t++) g_fib[t].state = READY;
    if (g_cfg->smem) memset(g_smem.data(), FRESH, g_cfg->smem);
    for (;;) {
        for (size_t t = 0; t < nt; t++)
            if (g_fib[t].state == READY) {
                g_cur = (int)t;
                set_thread(t);
                simcuda_switch(&g_sched_sp, g_fib[t].sp);
            }
        g_cur = -1;
        size_t n_done = 0, n_bar = 0;
        for (size_t t = 0; t < nt; t++) {
            n_done += g_fib[t].state == DONE;
            n_bar += g_fib[t].state == AT_BAR;
        }
        if (n_done == nt) return;
        bool moved = false;
        for (size_t w = 0; w * 32 < nt; w++) moved |= resolve_warp(w, nt);
        if (moved) continue;
        if (n_bar + n_done == nt) {
            for (size_t t = 0; t < nt; t++)
                if (g_fib[t].state == AT_BAR) g_fib[t].state = READY;
            continue;
        }
        die("deadlock: %zu threads at __syncthreads(), %zu at shuffles, %zu exited", n_bar,
            nt - n_bar - n_done, n_done);
    }
}

bool check_config(const Cfg &c) {
    const size_t nt = (size_t)c.block.x * c.block.y * c.block.z;
    const char *bad = NULL;
    if (nt == 0 || nt > 1024 || c.block.x > 1024 || c.block.y > 1024 || c.block.z > 64)
        bad = "block size";
    else if (c.grid.x == 0 || c.grid.y == 0 || c.grid.z == 0 || c.grid.x > 2147483647u ||
             c.grid.y > 65535 || c.grid.z > 65535)
        bad = "grid size";
    else if (c.smem > 48 * 1024)
        bad = "dynamic shared memory above 48 KiB";
    if (!bad) return true;
    fprintf(stderr,
            "simcuda: launch of %s at %s:%d refused: %s (grid %u,%u,%u block %u,%u,%u smem %zu)\n",
            c.kernel, c.file, c.line, bad, c.grid.x, c.grid.y, c.grid.z, c.block.x, c.block.y,
            c.block.z, c.smem);
    g_last = cudaErrorInvalidConfiguration;
    return false;
}

void run_grid(const Cfg &c, const std::function<void()> &body) {
    const size_t nt = (size_t)c.block.x * c.block.y * c.block.z;
    make_fibers(nt);
    if (g_smem.size() < c.smem) g_smem.resize(c.smem);
    const Cfg *prev_cfg = g_cfg;
    const std::function<void()> *prev_body = g_body;
    g_cfg = &c;
    g_body = &body;
    blockDim = c.block;
    gridDim = c.grid;
    for (unsigned z = 0; z < c.grid.z; z++)
        for (unsigned y = 0; y < c.grid.y; y++)
            for (unsigned x = 0; x < c.grid.x; x++) {
                blockIdx = uint3{x, y, z};
                run_block(nt);
            }
    g_cfg = prev_cfg;
    g_body = prev_body;
}

} // namespace simcuda

using namespace simcuda;

/* ------------------------------------------------------------------ runtime API */

const char *cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorIllegalState: return "cudaErrorIllegalState";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
    case cudaErrorGraphExecUpdateFailure: return "cudaErrorGraphExecUpdateFailure";
    }
    return "cudaErrorUnknown";
}
cudaError_t cudaGetLastError(void) {
    cudaError_t e = g_last;
    g_last = cudaSuccess;
    return e;
}
cudaError_t cudaGetDeviceCount(int *n) {
    *n = 1;
    return cudaSuccess;
}
cudaError_t cudaGetDevice(int *d) {
    *d = 0;
    return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
cudaError_t cudaDeviceGetAttribute(int *v, cudaDeviceAttr a, int dev) {
    if (dev != 0) return cudaErrorInvalidDevice;
    if (a == cudaDevAttrComputeCapabilityMajor) { /* an sm_90 device */
        *v = 9;
        return cudaSuccess;
    }
    if (a != cudaDevAttrMultiProcessorCount) return cudaErrorInvalidValue;
    /* few "SMs": al_grid caps grids at 16 blocks per SM, so grid-stride loops really loop */
    *v = 4;
    return cudaSuccess;
}
struct simcuda_stream {
    unsigned flags;
};
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags) {
    *s = new simcuda_stream{flags};
    return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    if (g_cap) return capture_refuse("cudaStreamDestroy", "not allowed while capturing");
    flush();
    delete s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    if (g_cap) return capture_refuse("cudaStreamSynchronize", "a host wait");
    flush();
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t n) {
    if (g_cap) return capture_refuse("cudaMalloc", "an unsafe call in capture mode global or thread-local");
    arena_init();
    const size_t cap = (n + ALIGN - 1) / ALIGN * ALIGN;
    char *b = NULL;
    auto it = g_free.lower_bound(cap);
    if (it != g_free.end() && it->first == cap) {
        b = it->second;
        g_free.erase(it);
    } else {
        if ((size_t)(g_top - g_base) + cap + REDZONE > ARENA_BYTES) return cudaErrorMemoryAllocation;
        b = g_top;
        g_top += cap + REDZONE;
    }
    g_live[b] = Block{n, cap};
    g_live_bytes += n;
    set_prot(b, b + cap + REDZONE, true); /* this block's pages only */
    memset(b, FRESH, n);
    memset(b + n, CANARY, cap + REDZONE - n);
    set_prot(b, b + cap + REDZONE, false);
    *p = b;
    return cudaSuccess;
}
cudaError_t cudaFree(void *p) {
    if (!p) return cudaSuccess;
    if (g_cap) return capture_refuse("cudaFree", "it waits for the device");
    flush(); /* cudaFree waits for the device */
    auto it = g_live.find((char *)p);
    if (it == g_live.end()) die("cudaFree(%p): not a live device allocation", p);
    set_prot(it->first, it->first + it->second.size, true);
    memset(it->first, FRESH, it->second.size); /* a use after free reads NaN */
    set_prot(it->first, it->first + it->second.size, false);
    g_live_bytes -= it->second.size;
    g_free.emplace(it->second.cap, it->first);
    g_live.erase(it);
    return cudaSuccess;
}
cudaError_t cudaMallocHost(void **p, size_t n) {
    if (g_cap) return capture_refuse("cudaMallocHost", "an unsafe call in capture mode global or thread-local");
    arena_init();
    *p = malloc(n ? n : 1);
    if (!*p) return cudaErrorMemoryAllocation;
    g_pinned[(char *)*p] = n;
    return cudaSuccess;
}
cudaError_t cudaFreeHost(void *p) {
    if (!p) return cudaSuccess;
    if (g_cap) return capture_refuse("cudaFreeHost", "it waits for the device");
    flush();
    if (!g_pinned.erase((char *)p)) die("cudaFreeHost(%p): not a pinned allocation", p);
    free(p);
    return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *free_b, size_t *total_b) {
    *total_b = (size_t)80 << 30;
    *free_b = *total_b - g_live_bytes;
    return cudaSuccess;
}

static bool dev_range(const void *p, size_t n, const char *what, const char *call) {
    if (n == 0) return true;
    if (live_block(p, n)) return true;
    fprintf(stderr, "simcuda: %s: %s %p (+%zu bytes) is not inside one live device allocation\n",
            call, what, p, n);
    return false;
}
static bool host_range(const void *p, size_t n, const char *what, const char *call) {
    if (n == 0 || !in_arena(p)) return true;
    fprintf(stderr, "simcuda: %s: %s %p is device memory, the copy kind says host\n", call, what, p);
    return false;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t n, cudaMemcpyKind kind,
                            cudaStream_t s) {
    const char *call = "cudaMemcpyAsync";
    switch (kind) {
    case cudaMemcpyHostToDevice: {
        if (!host_range(src, n, "source", call) || !dev_range(dst, n, "destination", call))
            return cudaErrorInvalidValue;
        if (g_cap && s == g_cap_stream && !kernel_may_touch(src))
            return capture_refuse(call, "the host source is pageable memory");
        if (kernel_may_touch(src)) { /* pinned: read when the copy runs */
            enqueue(s, "cudaMemcpyAsync(HostToDevice)", [=]() { memcpy(dst, src, n); });
        } else { /* pageable: staged now, as the runtime does */
            std::vector<char> stage((const char *)src, (const char *)src + n);
            enqueue(s, "cudaMemcpyAsync(HostToDevice)",
                    [=]() { memcpy(dst, stage.data(), n); });
        }
        return cudaSuccess;
    }
    case cudaMemcpyDeviceToHost:
        if (!dev_range(src, n, "source", call) || !host_range(dst, n, "destination", call))
            return cudaErrorInvalidValue;
        if (g_cap && s == g_cap_stream && !kernel_may_touch(dst))
            return capture_refuse(call, "the host destination is pageable memory");
        enqueue(s, "cudaMemcpyAsync(DeviceToHost)", [=]() { memcpy(dst, src, n); });
        return cudaSuccess;
    case cudaMemcpyDeviceToDevice:
        if (!dev_range(src, n, "source", call) || !dev_range(dst, n, "destination", call))
            return cudaErrorInvalidValue;
        enqueue(s, "cudaMemcpyAsync(DeviceToDevice)", [=]() { memmove(dst, src, n); });
        return cudaSuccess;
    default: return cudaErrorInvalidMemcpyDirection;
    }
}
cudaError_t cudaMemsetAsync(void *dst, int value, size_t n, cudaStream_t s) {
    if (!dev_range(dst, n, "destination", "cudaMemsetAsync")) return cudaErrorInvalidValue;
    enqueue(s, "cudaMemsetAsync", [=]() { memset(dst, value, n); });
    return cudaSuccess;
}

/* ------------------------------------------------------------------ graphs */

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode) {
    if (!s || (mode != cudaStreamCaptureModeGlobal && mode != cudaStreamCaptureModeThreadLocal &&
               mode != cudaStreamCaptureModeRelaxed))
        return cudaErrorInvalidValue; /* the legacy stream cannot be captured */
    if (g_cap) return cudaErrorIllegalState; /* one capture at a time here */
    g_cap = new simcuda_graph;
    g_cap_stream = s;
    g_cap_bad = false;
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *g) {
    if (!g_cap || s != g_cap_stream) return cudaErrorIllegalState;
    simcuda_graph *cap = g_cap;
    const bool bad = g_cap_bad;
    g_cap = NULL;
    g_cap_stream = NULL;
    g_cap_bad = false;
    if (bad) {
        delete cap;
        *g = NULL;
        return cudaErrorStreamCaptureInvalidated;
    }
    *g = cap;
    return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status) {
    *status = g_cap && s == g_cap_stream
                  ? (g_cap_bad ? cudaStreamCaptureStatusInvalidated : cudaStreamCaptureStatusActive)
                  : cudaStreamCaptureStatusNone;
    return cudaSuccess;
}
cudaError_t cudaGraphGetNodes(cudaGraph_t g, cudaGraphNode_t *nodes, size_t *n) {
    if (!g || !n) return cudaErrorInvalidValue;
    if (nodes) return cudaErrorInvalidValue; /* only the count is emulated */
    *n = g->ops.size();
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *e, cudaGraph_t g, unsigned long long flags) {
    if (!e || !g || flags) return cudaErrorInvalidValue;
    *e = new simcuda_graph_exec{g->ops};
    return cudaSuccess;
}
/* The node sequence (what each op is) must be unchanged; the arguments may differ. */
cudaError_t cudaGraphExecUpdate(cudaGraphExec_t e, cudaGraph_t g,
                                cudaGraphExecUpdateResultInfo *info) {
    if (!e || !g) return cudaErrorInvalidValue;
    bool same = e->ops.size() == g->ops.size();
    for (size_t i = 0; same && i < g->ops.size(); i++)
        same = strcmp(e->ops[i].what, g->ops[i].what) == 0;
    if (info) {
        info->result = same ? cudaGraphExecUpdateSuccess : cudaGraphExecUpdateErrorTopologyChanged;
        info->errorNode = info->errorFromNode = NULL;
    }
    if (!same) return cudaErrorGraphExecUpdateFailure;
    e->ops = g->ops;
    return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t e, cudaStream_t s) {
    if (!e) return cudaErrorInvalidValue;
    if (g_cap) return capture_refuse("cudaGraphLaunch", "nested graphs are not emulated");
    for (const Op &op : e->ops) enqueue(s, op.what, op.fn);
    return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t g) {
    delete g;
    return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t e) {
    delete e; /* a replay still queued runs copies of the closures */
    return cudaSuccess;
}
