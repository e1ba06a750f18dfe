#!/usr/bin/env bash
# gpu_bench.sh: advlab vs PyTorch on the lent H100/H200 -- one PGD-10 adversarial-training
# epoch of PreActResNet-18 on CIFAR-shaped random data (50,000 images, batch 512), then the
# ratio, plus the fused-PGD-step bandwidth microbenchmark (bench_gpu_pgd_step).
#   1. synthetic CIFAR-10 binaries (gpu_synth_cifar.py, stdlib only) -> `advlab convert
#      --format cifar10` -> an advlab dataset file (formats.md section 1), made once in $WORK;
#   2. PyTorch: gpu_pgd_at_torch.py (eager, channels_last, bf16 autocast; also tf32, the
#      precision advlab computes in: cuDNN/cuBLAS TF32 tensor cores);
#   3. advlab: `advlab train` with method pgd_at, attack steps 10, batch 512, 1 epoch,
#      device cuda, precision $ADVLAB_PRECISION (bf16); img/s from metrics.jsonl's "epoch" record, and a
#      steady-state img/s without the first 10 steps (cuDNN plan search, first-touch), from the
#      time stamps of the "step" records (log_every = 10);
#   4. one JSON line {"bench":"pgd_at_ratio", ...}: advlab img/s / torch img/s (> 1: advlab
#      faster), for the whole epoch and steady state.
# Usage (on the GPU machine, after a CUDA build): BUILD=/tmp/advlab-gpu-build OUT=$OUT \
#   bash tools/bench/gpu_bench.sh        (tools/gpu/run.sh calls it with AL_GPU_BENCH=1)
# Env: BUILD (advlab build dir), ADVLAB (binary; default $BUILD/advlab), OUT (logs: $OUT/bench),
#      WORK (scratch: data, runs; default /tmp/advlab-gpu-bench), PYTHON, N_TRAIN (50000),
#      BATCH (512), STEPS (10), PRECISION (bf16), AUGMENT (crop_flip|none), DETERMINISTIC (0:
#      cuDNN may pick non-deterministic algorithms, as torch's cudnn.benchmark does),
#      ADVLAB_TIMEOUT (seconds for the advlab run, default 480), TORCH_TF32 (1: also tf32),
#      CUDA_GRAPHS (1: advlab replays each PGD iteration from a CUDA graph; 0: eager),
#      LAYOUT (nchw | nhwc: advlab's run.layout; PyTorch runs channels_last either way).
# Files (few: the device tool returns at most 8 from $OUT): $OUT/bench/gpu_bench.log (all
# output, advlab's metrics records), $OUT/bench/gpu_bench.jsonl (torch runs, the ratio line),
# $OUT/bench/bench_gpu.jsonl (PGD step bandwidth).
# Exit: 0 when both runs produced numbers, 1 otherwise (each failure is logged).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
BUILD=${BUILD:-/tmp/advlab-gpu-build}
ADVLAB=${ADVLAB:-$BUILD/advlab}
OUT=${OUT:-$root/gpu-out}
WORK=${WORK:-/tmp/advlab-gpu-bench}
PYTHON=${PYTHON:-python3}
N_TRAIN=${N_TRAIN:-50000}
BATCH=${BATCH:-512}
STEPS=${STEPS:-10}
PRECISION=${PRECISION:-bf16}
# advlab's side: bf16 activations with fp32 master weights (core/ops/bf16.h), the setting that
# matches PyTorch's bf16 autocast; ADVLAB_PRECISION=tf32 for the fp32-storage run
ADVLAB_PRECISION=${ADVLAB_PRECISION:-bf16}
AUGMENT=${AUGMENT:-crop_flip}
DETERMINISTIC=${DETERMINISTIC:-0}
ADVLAB_TIMEOUT=${ADVLAB_TIMEOUT:-480}
TORCH_TF32=${TORCH_TF32:-1}
out=$OUT/bench
mkdir -p "$out" "$WORK"
jsonl=$out/gpu_bench.jsonl
log() { echo "gpu_bench: $*" | tee -a "$out/gpu_bench.log"; }
rc=0

# ---- 1. data (once)
data=$WORK/synth_c10.h5
if [ ! -s "$data" ]; then
    "$PYTHON" "$here/gpu_synth_cifar.py" "$WORK/cifar" --train 50000 --test 10000 \
        >>"$out/gpu_bench.log" 2>&1 &&
        "$ADVLAB" convert --format cifar10 --input "$WORK/cifar" --out "$data" \
            >>"$out/gpu_bench.log" 2>&1 || { log "making $data failed"; exit 1; }
    rm -rf "$WORK/cifar"
fi

# ---- 2. PyTorch reference
torch_json=$WORK/torch_$PRECISION.json
log "torch: PGD-$STEPS epoch, $N_TRAIN images, batch $BATCH, $PRECISION"
"$PYTHON" "$here/gpu_pgd_at_torch.py" --n-train "$N_TRAIN" --batch "$BATCH" --steps "$STEPS" \
    --precision "$PRECISION" --augment "$AUGMENT" >"$torch_json" 2>>"$out/gpu_bench.log" ||
    { log "torch run failed (gpu_bench.log)"; rc=1; }
cat "$torch_json" | tee -a "$jsonl"
if [ "$TORCH_TF32" = 1 ] && [ "$PRECISION" != tf32 ]; then
    "$PYTHON" "$here/gpu_pgd_at_torch.py" --n-train "$N_TRAIN" --batch "$BATCH" --steps "$STEPS" \
        --precision tf32 --augment "$AUGMENT" 2>>"$out/gpu_bench.log" | tee -a "$jsonl" ||
        log "torch tf32 run failed"
fi

# ---- 3. advlab
cfg=$WORK/pgd_at_bench.ini
cat >"$cfg" <<INI
; written by tools/bench/gpu_bench.sh: PGD-AT speed run on synthetic CIFAR-shaped data
[run]
name = gpu_bench
out_dir = $WORK/runs
seed = 0
device = cuda
precision = $ADVLAB_PRECISION
deterministic = $DETERMINISTIC
cuda_graphs = ${CUDA_GRAPHS:-1}
layout = ${LAYOUT:-nchw}
log_every = 10
eval_every = 0
checkpoint_every = 0

[data]
dataset = $data
n_train = $N_TRAIN
n_test = 512
augment = $AUGMENT
batch_size = $BATCH
eval_batch_size = 512

[model]
arch = preact_resnet18

[train]
method = pgd_at
epochs = 1
lr = 0.1
momentum = 0.9
weight_decay = 5e-4
lr_schedule = constant

[attack]
norm = linf
eps = 8/255
alpha = 2/255
steps = $STEPS
random_init = uniform

[eval]
attack = none
INI
rm -rf "$WORK/runs/gpu_bench"
log "advlab: $ADVLAB train $cfg"
timeout "$ADVLAB_TIMEOUT" "$ADVLAB" train "$cfg" >>"$out/gpu_bench.log" 2>&1
arc=$?
[ $arc -eq 0 ] || { log "advlab train exit $arc (gpu_bench.log; 124 = timeout)"; rc=1; }
metrics=$WORK/runs/gpu_bench/metrics.jsonl
# the run's records (not its long header) into the log: $OUT returns at most 8 files
[ -f "$metrics" ] && grep -v '"type":"header"' "$metrics" | sed 's/^/metrics: /' >>"$out/gpu_bench.log"

# ---- 4. ratio (also from a partial advlab run: the step records carry img/s)
"$PYTHON" - "$torch_json" "$metrics" "$BATCH" "$PRECISION" "$arc" <<'PY' | tee -a "$jsonl"
import json, sys
torch_path, metrics_path, batch, precision, arc = sys.argv[1:6]
batch = int(batch)
res = {"bench": "pgd_at_ratio", "precision": precision, "advlab_exit": int(arc)}
try:
    t = json.loads(open(torch_path).read().strip().splitlines()[-1])
    res["torch_img_per_s"] = t["img_per_s"]
    res["torch_epoch_s"] = t["epoch_s"]
    res["device"] = t.get("device")
except Exception as e:  # noqa: BLE001 (report, do not crash)
    res["torch_error"] = repr(e)
steps, epoch = [], None
try:
    for line in open(metrics_path):
        r = json.loads(line)
        if r.get("type") == "step" and r.get("img_per_s"):
            steps.append(r)
        elif r.get("type") == "epoch":
            epoch = r
except Exception as e:  # noqa: BLE001
    res["advlab_error"] = repr(e)
if epoch:
    res["advlab_img_per_s"] = epoch["img_per_s"]
    res["advlab_epoch_s"] = epoch["seconds"]
if len(steps) >= 2:
    # between the first and the last step record (their "time" stamps; full batches only:
    # a partial last batch is seen by the epoch record alone)
    s0, s1 = steps[0], steps[-1]
    t0, t1 = s0["time"], s1["time"]
    if t1 > t0:
        res["advlab_steady_img_per_s"] = round((s1["step"] - s0["step"]) * batch / (t1 - t0), 1)
        res["advlab_steady_steps"] = [s0["step"], s1["step"]]
    if not epoch:
        res["advlab_partial_img_per_s"] = s1["img_per_s"]
tip = res.get("torch_img_per_s")
for k in ("advlab_img_per_s", "advlab_steady_img_per_s", "advlab_partial_img_per_s"):
    if tip and res.get(k):
        res[k.replace("advlab_", "ratio_").replace("_img_per_s", "")] = round(res[k] / tip, 4)
print(json.dumps(res))
PY

# ---- 5. fused PGD step bandwidth (checks against the CPU twin first); run.sh's bench loop
# already runs every bench_* and sets SKIP_PGD_STEP_BENCH=1
if [ "${SKIP_PGD_STEP_BENCH:-0}" != 1 ] && [ -x "$BUILD/tools/bench/bench_gpu_pgd_step" ]; then
    log "bench_gpu_pgd_step"
    (cd "$out" && "$BUILD/tools/bench/bench_gpu_pgd_step" "$out/bench_gpu.jsonl") \
        >>"$out/gpu_bench.log" 2>&1 || { log "bench_gpu_pgd_step failed: $?"; rc=1; }
    grep '^pgd_step\|^device' "$out/gpu_bench.log" | tail -5
fi
log "done (exit $rc): $jsonl"
exit $rc
