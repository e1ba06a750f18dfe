#!/usr/bin/env bash
# tools/bench/aa_bench.sh: AutoAttack 'standard' speed, advlab vs torchattacks, in ONE run at the
# same thread count: advlab attack --attack autoattack --version standard, then
# tools/bench/aa_torchattacks.py (torchattacks' APGD/APGD-T/FAB/Square configured to the
# standard settings and run as the same cascade) on the same points of the same checkpoint.
# Prints both sides' per-stage robust accuracy and time, the wall times, the ratio
# (torchattacks time / advlab time; target >= 2x) and one JSON line (ADVLAB_BENCH_OUT).
#   usage: tools/bench/aa_bench.sh [ADVLAB_BINARY] [THREADS]
#
# CPU (default): the model of the conformance test (tests/conformance/autoattack_ta.sh: PGD-AT
#   SmallCNN, quick-start recipe, 6000 Fashion-MNIST training images, 2 epochs, CPU training is
#   deterministic, so the same recipe gives the same weights), trained into $WORK when CKPT is
#   not given; N = 1000 test points, Linf eps 0.1. The reference runs on PyTorch 2.x from PyPI
#   (.venv-bench, tools/bench/make_venv.sh); torchattacks==3.5.1 is added there with --no-deps
#   (plus scipy, which torchattacks imports, and h5py, which reads advlab files) when missing.
#   Run it on an otherwise idle machine; the script prints the load average before and after
#   and each side's CPU share (user+sys over wall) so a loaded run can be recognised.
#
# GPU variant (DEVICE=cuda; for a lent H100/H200, NOT run on the dev box, which has no GPU):
#   WRN-28-10 on 1000 CIFAR-shaped points, advlab --device cuda vs torchattacks on the same GPU.
#   The lent machine has no network and no h5py: stage here, then carry .whl and the build:
#     pip download --no-deps --only-binary=:all: --python-version 3.X \
#         --platform manylinux2014_x86_64 -d .whl torchattacks==3.5.1 h5py scipy
#     (3.X = that machine's python3; tools/gpu/run.sh logs it), build advlab with CUDA there
#     (tools/gpu/run.sh, AL_GPU_SKIP_TESTS=1), then
#     DEVICE=cuda WHEELS=.whl BUILD=/tmp/advlab-gpu-build bash tools/bench/aa_bench.sh \
#         /tmp/advlab-gpu-build/advlab
#   Data: synthetic CIFAR-shaped images whose label is a learnable function of the pixels
#   (class k = a brighter 8x8 patch at position k, plus noise; written in the CIFAR-10 binary
#   layout by the inline generator below and converted with advlab convert), so that a
#   WRN-28-10 trained by advlab (PGD-AT, GPU_EPOCHS epochs at eps 8/255) is accurate and
#   partly robust, and every AutoAttack stage has points to work on. Give CKPT/DATA to bench a
#   real model instead (e.g. a RobustBench WRN-28-10 converted with tools/torch/convert_pt.py
#   and CIFAR-10 converted with advlab convert --format cifar10; eps 8/255).
#
# Env: N (1000), EPS (0.1; GPU 8/255), BS (250, AutoAttack's default batch), SQUARE_QUERIES
#   (5000; lower only for a quick look, both sides get the same), CKPT, DATA, WORK
#   (build/bench_aa), DEVICE (cpu|cuda), PYTHON (reference interpreter; CPU: .venv-bench),
#   WHEELS (GPU: directory of wheels to pip install --no-index from), GPU_EPOCHS (2),
#   ADVLAB_BENCH_OUT (JSON line; default $WORK/aa_bench.jsonl).
set -euo pipefail
cd "$(dirname "$0")/../.."
ADVLAB=${1:-build/advlab}
T=${2:-$(nproc)}
DEVICE=${DEVICE:-cpu}
N=${N:-1000}
BS=${BS:-250}
SQUARE_QUERIES=${SQUARE_QUERIES:-5000}
WORK=${WORK:-build/bench_aa}
TA_VERSION=3.5.1
mkdir -p "$WORK"
OUT=${ADVLAB_BENCH_OUT:-$WORK/aa_bench.jsonl}
log() { echo "aa_bench: $*"; }

if [ "$DEVICE" = cpu ]; then
  EPS=${EPS:-0.1}
  bash tools/bench/make_venv.sh
  PY=${PYTHON:-.venv-bench/bin/python}
  if ! "$PY" -c "import torchattacks, scipy, h5py, sys; sys.exit(torchattacks.__version__ != '$TA_VERSION')" 2>/dev/null; then
    log "adding torchattacks==$TA_VERSION (--no-deps), scipy, h5py to $(dirname "$(dirname "$PY")")"
    "$PY" -m pip install -q scipy h5py
    "$PY" -m pip install -q --no-deps "torchattacks==$TA_VERSION"
  fi
  DATA=${DATA:-build/testdata/fmnist.h5}
  if [ ! -s "$DATA" ]; then
    mkdir -p "$(dirname "$DATA")"
    "$ADVLAB" convert --format fashion-mnist --input /usr/share/datasets/fashion-mnist --out "$DATA"
  fi
  if [ -z "${CKPT:-}" ]; then
    CKPT=$WORK/runs/pgdat/checkpoint.h5
    if [ ! -s "$CKPT" ]; then
      log "training the conformance-test model (PGD-AT SmallCNN, Fashion-MNIST) into $WORK/runs"
      # the recipe of tests/conformance/autoattack_ta.sh (keep the two in step)
      "$ADVLAB" train experiments/quickstart/fmnist_smallcnn_pgdat.ini \
        --set data.dataset="$DATA" --set run.out_dir="$WORK/runs" --set run.name=pgdat \
        --set data.n_train=6000 --set data.n_test=200 --set train.epochs=2 \
        --set data.batch_size=32 --set train.lr=0.02 --set attack.steps=3 \
        --set attack.alpha=0.04 --set run.threads=1 | tail -2
    fi
  fi
else
  # ---- GPU variant (see the header; unverified on the dev box, which has no GPU)
  EPS=${EPS:-8/255}
  PY=${PYTHON:-python3}
  if [ -n "${WHEELS:-}" ]; then
    "$PY" -m pip install -q --no-index --find-links "$WHEELS" --no-deps \
      "torchattacks==$TA_VERSION" h5py scipy || log "pip install from $WHEELS failed"
  fi
  "$PY" -c "import torchattacks, h5py, torch; assert torch.cuda.is_available()" \
    || { log "needs torch with CUDA, torchattacks, scipy and h5py in $PY (see WHEELS)"; exit 1; }
  DATA=${DATA:-$WORK/synth_c10_learnable.h5}
  if [ ! -s "$DATA" ]; then
    "$PY" - "$WORK/cifar" <<'PY'
# CIFAR-10 binary layout (1 label byte + 3072 pixel bytes); class k = brighter 8x8 patch at the
# k-th of 10 positions on a 4x4 grid, on uniform noise: learnable, speed-benchmark data only.
import os, random, sys
out = sys.argv[1]; os.makedirs(out, exist_ok=True)
rng = random.Random(0)
def rec(k):
    px = bytearray(rng.randrange(0, 160) for _ in range(3072))
    r0, c0 = 8 * (k // 4), 8 * (k % 4)
    for ch in range(3):
        for r in range(r0, r0 + 8):
            for c in range(c0, c0 + 8):
                px[ch * 1024 + r * 32 + c] = min(255, px[ch * 1024 + r * 32 + c] + 96)
    return bytes([k]) + bytes(px)
def write(path, n):
    with open(path, "wb") as f:
        for i in range(n):
            f.write(rec(rng.randrange(10)))
for b in range(1, 6):
    write(os.path.join(out, "data_batch_%d.bin" % b), 2000)
write(os.path.join(out, "test_batch.bin"), 2000)
with open(os.path.join(out, "batches.meta.txt"), "w") as f:
    f.write("\n".join("c%d" % k for k in range(10)) + "\n")
PY
    "$ADVLAB" convert --format cifar10 --input "$WORK/cifar" --out "$DATA"
  fi
  if [ -z "${CKPT:-}" ]; then
    CKPT=$WORK/runs/wrn/checkpoint.h5
    if [ ! -s "$CKPT" ]; then
      "$ADVLAB" train --set data.dataset="$DATA" --set run.out_dir="$WORK/runs" \
        --set run.name=wrn --set model.arch=wrn-28-10 --set train.method=pgd_at \
        --set train.epochs=${GPU_EPOCHS:-2} --set train.lr_schedule=cosine \
        --set data.batch_size=128 --set run.device=cuda --set run.eval_every=0 \
        --set eval.n_points=500 | tail -2
    fi
  fi
fi

load() { awk '{print $1, $2, $3}' /proc/loadavg; }
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
TIMEFORMAT="%R %U %S"
log "$N points, $DEVICE, $T threads, bs $BS, eps $EPS, Square $SQUARE_QUERIES queries; load average before: $(load)"
export OMP_NUM_THREADS=$T MKL_NUM_THREADS=$T OPENBLAS_NUM_THREADS=$T
{ time "$ADVLAB" attack --ckpt "$CKPT" --data "$DATA" --device "$DEVICE" --threads "$T" \
    --n "$N" --bs "$BS" --eps "$EPS" --attack autoattack --version standard \
    --square-queries "$SQUARE_QUERIES" > "$WORK/advlab.log" 2>&1 ; } 2> "$WORK/advlab.time" \
  || { cat "$WORK/advlab.log"; log "advlab failed"; exit 1; }
log "advlab done; load average: $(load)"
{ time "$PY" tools/bench/aa_torchattacks.py --ckpt "$CKPT" --data "$DATA" --device "$DEVICE" \
    --threads "$T" --n "$N" --bs "$BS" --eps "$(awk "BEGIN {printf \"%.10g\", $EPS}")" \
    --square-queries "$SQUARE_QUERIES" --json "$WORK/ta.json" > "$WORK/ta.log" 2>&1 ; } \
  2> "$WORK/ta.time" || { cat "$WORK/ta.log"; log "torchattacks failed"; exit 1; }
log "torchattacks done; load average after: $(load)"
grep -E "^(clean|  after|robust accuracy)" "$WORK/advlab.log" | sed 's/^/  advlab       | /'
grep -E "^(torchattacks|clean|  after|robust accuracy)" "$WORK/ta.log" | sed 's/^/  torchattacks | /'
"$PY" - "$WORK" "$T" "$DEVICE" "$commit" "$OUT" <<'PY'
import json, re, sys, datetime
work, T, dev, commit, out = sys.argv[1:6]
text = open(work + "/advlab.log").read()
ta = json.load(open(work + "/ta.json"))
n = ta["n"]
a_stage = {m.group(1): (float(m.group(2)), float(m.group(3))) for m in
           re.finditer(r"^  after (\S+)\s+([0-9.]+)% \(total time ([0-9.]+) s\)", text, re.M)}
m = re.search(r"^robust accuracy: ([0-9.]+)% .*\(([0-9.]+) s\)$", text, re.M)
a_final, a_attack = float(m.group(1)), float(m.group(2))
a_clean = float(re.search(r"^clean accuracy:\s+([0-9.]+)%", text, re.M).group(1))
aw, au, asys = (float(v) for v in open(work + "/advlab.time").read().split()[-3:])
tw, tu, tsys = (float(v) for v in open(work + "/ta.time").read().split()[-3:])
t_final = 100.0 * ta["robust_flags"].count("1") / n
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print("AutoAttack standard, %d points, %s, %s threads (%s); commit %s; %s" % (
    n, dev, T, cpu, commit, datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")))
print("| stage | advlab robust %% | torchattacks %s robust %% | advlab s (cum.) | torchattacks s (cum.) |" % ta["torchattacks"])
print("|---|---|---|---|---|")
print("| clean | %.2f | %.2f | | |" % (a_clean, 100.0 * ta["clean"] / n))
for st in ("apgd-ce", "apgd-t", "fab-t", "square"):
    if st in a_stage:
        print("| %s | %.2f | %.2f | %.1f | %.1f |" % (st, a_stage[st][0], 100.0 * ta["robust_after"][st] / n,
                                                    a_stage[st][1], ta["seconds_after"][st]))
print("| final | %.2f | %.2f | %.1f | %.1f |" % (a_final, t_final, a_attack, ta["seconds"]))
ratio = ta["seconds"] / a_attack
wratio = tw / aw
print("attack time: advlab %.1f s, torchattacks (torch %s) %.1f s -> %.2fx (target >= 2x)%s"
      % (a_attack, ta["torch"], ta["seconds"], ratio, "" if ratio >= 2 else "  BELOW TARGET"))
print("process wall: advlab %.1f s (CPU share %.0f%% of %s threads), torchattacks %.1f s (CPU share %.0f%%) -> %.2fx"
      % (aw, 100 * (au + asys) / aw / max(1, int(T)), T, tw, 100 * (tu + tsys) / tw / max(1, int(T)), wratio))
rec = {"bench": "autoattack_standard", "n": n, "device": dev, "threads": int(T), "commit": commit,
       "advlab_s": a_attack, "torchattacks_s": ta["seconds"], "ratio": ratio,
       "advlab_wall_s": aw, "torchattacks_wall_s": tw, "advlab_cpu_s": au + asys,
       "torchattacks_cpu_s": tu + tsys, "torch": ta["torch"], "torchattacks": ta["torchattacks"],
       "advlab_robust": a_final, "torchattacks_robust": t_final,
       "square_queries": ta["square_queries"]}
with open(out, "a") as f:
    f.write(json.dumps(rec) + "\n")
print(json.dumps(rec))
PY
