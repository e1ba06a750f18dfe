#!/usr/bin/env bash
# run.sh: build advlab with CUDA on the lent H100/H200 machine and run the CUDA tests and the
# benchmarks there, logs to $OUT. Needs .gpu-deps/ from tools/gpu/stage.sh (run that HERE
# first), carried along:  device run  carry [".gpu-deps"]  command "bash tools/gpu/run.sh"
# The machine has nvcc, CMake, ninja and PyTorch whose wheels carry cuDNN/NCCL under
# site-packages/nvidia/*; HDF5/OpenBLAS/inih come from the staged Debian packages.
# Env: OUT (log dir, default ./gpu-out), BUILD (default /tmp/advlab-gpu-build), JOBS,
#      AL_GPU_SANITIZE=1 (also run test_cuda under compute-sanitizer memcheck),
#      AL_GPU_CASES="conv2d pool" (only these test_cuda cases, e.g. to iterate quickly),
#      AL_GPU_CASES2="trades batch" (only these test_cuda2 cases; with AL_GPU_CASES unset,
#      only test_cuda2 then runs), AL_GPU_SKIP_TESTS=1 (build + benchmarks only),
#      AL_GPU_BENCH=1 (also tools/bench/gpu_bench.sh: advlab vs PyTorch PGD-AT epoch; several
#      minutes, so on a warm machine run it as a second call with AL_GPU_SKIP_TESTS=1, where
#      the build is a no-op; its own env: N_TRAIN, PRECISION, ADVLAB_TIMEOUT, ...).
# Exit status: that of the CUDA tests (0 = all passed; skips count as passes), else of
# gpu_bench.sh when the tests were skipped.
set -uo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${OUT:-$root/gpu-out}
BUILD=${BUILD:-/tmp/advlab-gpu-build}
JOBS=${JOBS:-$(nproc)}
mkdir -p "$OUT"
log() { echo "run.sh: $*" | tee -a "$OUT/run.log"; }
cd "$root"

# At most 8 files come back from $OUT: run.log (machine facts, summary), build.log
# (configure + build), ctest_cuda.log, test_cuda.log (test_cuda, then test_cuda2),
# sanitizer.log, bench/ (bench.log, bench_gpu.jsonl; with AL_GPU_BENCH=1 gpu_bench.log and
# gpu_bench.jsonl: 8 in all, so AL_GPU_SANITIZE=1 and AL_GPU_BENCH=1 do not go together).
: >"$OUT/run.log"
# nvcc off the PATH is common in containers: CMake's check_language(CUDA) needs it
if ! command -v nvcc >/dev/null; then
    for d in /usr/local/cuda/bin /usr/local/cuda-*/bin; do
        [ -x "$d/nvcc" ] && { export PATH=$PATH:$d; break; }
    done
fi
# ---- machine facts first: what a failed run needs to be read
{ nvidia-smi || true; nvcc --version || true; cmake --version | head -1; ninja --version
  python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda)' || true
  uname -a; ldd --version | head -1; } >>"$OUT/run.log" 2>&1

# ---- HDF5 / OpenBLAS / inih / zlib / pkgconf from the staged .debs
[ -d .gpu-deps/debs ] || { log "no .gpu-deps/debs: run tools/gpu/stage.sh here and carry .gpu-deps"; exit 2; }
deps=/tmp/advlab-deps
bash tools/gpu/unpack.sh .gpu-deps/debs "$deps" >>"$OUT/run.log" 2>&1 || { log "unpack failed"; exit 2; }
. "$deps/env.sh"

# ---- cuDNN and NCCL from the PyTorch wheels (site-packages/nvidia/*); the toolkit's otherwise
sp=$(python3 -c 'import site; print(" ".join(site.getsitepackages()))' 2>/dev/null || true)
find_in_sp() { for d in $sp; do [ -d "$d/nvidia" ] && find -L "$d/nvidia" -name "$1" 2>/dev/null; done | sort | head -1; }
cudnn_h=$(find_in_sp cudnn.h); cudnn_so=$(find_in_sp 'libcudnn.so.9*')
nccl_h=$(find_in_sp nccl.h); nccl_so=$(find_in_sp 'libnccl.so.2*')
extra=()
if [ -n "$cudnn_h" ] && [ -n "$cudnn_so" ]; then
    extra+=(-DAL_CUDNN_INCLUDE="$(dirname "$cudnn_h")" -DAL_CUDNN_LIB="$cudnn_so")
    export LD_LIBRARY_PATH=$(dirname "$cudnn_so"):$LD_LIBRARY_PATH
    log "cuDNN from the wheel: $cudnn_so"
fi
if [ -n "$nccl_h" ] && [ -n "$nccl_so" ]; then
    extra+=(-DAL_NCCL_INCLUDE="$(dirname "$nccl_h")" -DAL_NCCL_LIB="$nccl_so")
    export LD_LIBRARY_PATH=$(dirname "$nccl_so"):$LD_LIBRARY_PATH
    log "NCCL from the wheel: $nccl_so"
fi
# cuBLAS: the toolkit's (it matches nvcc); the wheel's only if the toolkit lacks it
if ! ls "$(dirname "$(command -v nvcc)")"/../lib64/libcublas.so* >/dev/null 2>&1; then
    cublas_so=$(find_in_sp 'libcublas.so.*')
    [ -n "$cublas_so" ] && export LD_LIBRARY_PATH=$(dirname "$cublas_so"):$LD_LIBRARY_PATH
fi

# ---- configure + build (everything: the CUDA tests link the whole library)
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DADVLAB_CUDA=ON \
    -DCMAKE_CUDA_ARCHITECTURES=90 "${extra[@]}" >"$OUT/build.log" 2>&1 ||
    { log "configure failed (build.log)"; tail -30 "$OUT/build.log"; exit 3; }
grep 'advlab:' "$OUT/build.log" | tee -a "$OUT/run.log"
ninja -C "$BUILD" -j"$JOBS" >>"$OUT/build.log" 2>&1 ||
    { log "build failed (build.log)"; grep -E 'error|FAILED' "$OUT/build.log" | head -40; exit 4; }
log "build ok; warnings:"
grep -E 'warning' "$OUT/build.log" | sort -u | tee -a "$OUT/run.log"

# ---- CUDA tests (ADVLAB_SYNC_CHECK=1 is set by the test's CTest properties)
rc=0
if [ "${AL_GPU_SKIP_TESTS:-0}" = 1 ]; then
    log "CUDA tests skipped (AL_GPU_SKIP_TESTS=1)"
elif [ -n "${AL_GPU_CASES:-}${AL_GPU_CASES2:-}" ]; then
    for c in ${AL_GPU_CASES:-}; do
        ADVLAB_SYNC_CHECK=1 "$BUILD/tests/test_cuda" "$c" 2>&1 | tee -a "$OUT/test_cuda.log"
        [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
    done
    for c in ${AL_GPU_CASES2:-}; do
        ADVLAB_SYNC_CHECK=1 "$BUILD/tests/test_cuda2" "$c" 2>&1 | tee -a "$OUT/test_cuda.log"
        [ "${PIPESTATUS[0]}" -eq 0 ] || rc=1
    done
    log "CUDA tests: exit $rc"
else
    ctest --test-dir "$BUILD" -L cuda --output-on-failure --timeout 600 2>&1 | tee "$OUT/ctest_cuda.log"
    rc=${PIPESTATUS[0]}
    # full per-case detail, normal launches (no per-launch sync)
    "$BUILD/tests/test_cuda" >"$OUT/test_cuda.log" 2>&1
    echo "==== test_cuda2" >>"$OUT/test_cuda.log"
    "$BUILD/tests/test_cuda2" >>"$OUT/test_cuda.log" 2>&1
    log "CUDA tests: exit $rc"
fi

if [ "${AL_GPU_SANITIZE:-0}" = 1 ] && command -v compute-sanitizer >/dev/null; then
    compute-sanitizer --tool memcheck --leak-check full --error-exitcode 9 \
        "$BUILD/tests/test_cuda" ${AL_GPU_CASES:-} >"$OUT/sanitizer.log" 2>&1
    log "compute-sanitizer memcheck: exit $? (sanitizer.log)"
fi

# ---- benchmarks: every tools/bench executable (they check against the CPU first and append
# JSONL into their working directory, $OUT/bench), then whatever `ctest -L bench` registers
mkdir -p "$OUT/bench"
: >"$OUT/bench/bench.log"
for b in "$BUILD"/tools/bench/bench_*; do
    [ -x "$b" ] || continue
    log "bench $(basename "$b")"
    (cd "$OUT/bench" && timeout 300 "$b") >>"$OUT/bench/bench.log" 2>&1 ||
        log "bench $(basename "$b") failed: $?"
done
ctest --test-dir "$BUILD" -L bench --output-on-failure >>"$OUT/bench/bench.log" 2>&1 || true
# CUDA graphs off / on, side by side (attacks/attack.c replays the PGD iteration): `advlab
# bench` PGD-20 evaluation and PGD-10 training steps, a large and a launch-bound shape; JSON
# lines (fields "graphs", "precision", "layout") into bench_gpu.jsonl ($OUT returns at most 8
# files). Then NCHW vs NHWC (run.layout) with graphs on: which layout cuDNN is faster in.
# bench_cuda ARCH BATCH PRECISION OPTIONS...: one `advlab bench` run, JSON lines appended
bench_cuda() {
    local arch=$1 batch=$2 prec=$3
    shift 3
    log "bench $arch batch $batch $prec $*"
    timeout 150 "$BUILD/advlab" bench --device cuda --arch "$arch" --batch "$batch" \
        --precision "$prec" --min-time 3 "$@" \
        >>"$OUT/bench/bench_gpu.jsonl" 2>>"$OUT/bench/bench.log" ||
        log "advlab bench ($arch $batch $prec $*) failed: $?"
}
for shape in "preact_resnet18 512 bf16" "preact_resnet18 512 tf32" "preact_resnet18 32 tf32" \
             "smallcnn 128 fp32"; do
    for g in 0 1; do bench_cuda $shape --graphs $g --phases pgd_eval,pgd_at_step; done
done
for shape in "preact_resnet18 512 bf16" "preact_resnet18 512 tf32" "wrn-34-10 128 bf16"; do
    for lay in nchw nhwc; do bench_cuda $shape --layout $lay --phases fwdbwd,pgd_at_step; done
done

# ---- advlab vs PyTorch: one PGD-10 adversarial-training epoch (tools/bench/gpu_bench.sh);
# the loop above already ran bench_gpu_pgd_step
if [ "${AL_GPU_BENCH:-0}" = 1 ]; then
    log "gpu_bench.sh (advlab vs PyTorch PGD-AT epoch)"
    BUILD="$BUILD" OUT="$OUT" SKIP_PGD_STEP_BENCH=1 bash tools/bench/gpu_bench.sh 2>&1 | tee -a "$OUT/run.log"
    brc=${PIPESTATUS[0]}
    log "gpu_bench.sh: exit $brc"
    [ "${AL_GPU_SKIP_TESTS:-0}" = 1 ] && rc=$brc
fi
log "done; logs in $OUT"
exit "$rc"
