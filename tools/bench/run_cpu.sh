#!/usr/bin/env bash
# tools/bench/run_cpu.sh: advlab vs PyTorch 2.x (PyPI, MKL + oneDNN, .venv-bench) on this CPU,
# same thread count, same phases, in ONE run (interleaved: advlab, torch, advlab, torch, ...),
# medians of repeats. Prints a markdown table with the ratio and the fraction of FP32 peak.
#   usage: tools/bench/run_cpu.sh [ADVLAB_BINARY] [THREADS]
# Peak FP32 = cores x base clock x FLOP/cycle/core (AVX-512 with two FMA units: 64; AVX2: 32);
# a 1024^3 SGEMM reaching exactly 2.3 GHz x 64 per core here confirms the base-clock figure.
# Run it on an otherwise idle machine: OpenMP barriers make timings collapse under load.
set -euo pipefail
cd "$(dirname "$0")/../.."
ADVLAB=${1:-build/advlab}
T=${2:-$(nproc)}
bash tools/bench/make_venv.sh
PY=.venv-bench/bin/python
OUT=${ADVLAB_BENCH_OUT:-build/bench_cpu.jsonl}
: > "$OUT"
mhz=$(awk -F: '/cpu MHz/ {print $2; exit}' /proc/cpuinfo)
if grep -q avx512f /proc/cpuinfo; then fpc=64; else fpc=32; fi
peak=$(awk -v m="$mhz" -v f="$fpc" -v t="$T" 'BEGIN {printf "%.1f", m * 1e-3 * f * t}')
commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
ROUNDS=${ADVLAB_BENCH_ROUNDS:-2}
run_pair() { # arch batch phases steps_train steps_eval
  for r in $(seq 1 "$ROUNDS"); do
    OMP_NUM_THREADS=$T "$ADVLAB" bench --arch "$1" --batch "$2" --phases "$3" --threads "$T" \
      --steps-train "$4" --steps-eval "$5" --min-time 3 --warmup 1 | sed "s/}$/,\"round\":$r}/" >> "$OUT"
    OMP_NUM_THREADS=$T MKL_NUM_THREADS=$T "$PY" tools/bench/torch_cpu.py --arch "$1" --batch "$2" \
      --phases "$3" --threads "$T" --steps-train "$4" --steps-eval "$5" --min-time 3 --warmup 1 \
      | sed "s/}$/, \"round\": $r}/" >> "$OUT"
  done
}
PHASES=${ADVLAB_BENCH_PHASES:-fwdbwd,attack_step,pgd_at_step,pgd_eval}
run_pair smallcnn 128 "$PHASES" 10 20
run_pair preact_resnet18 128 "$PHASES" 10 20
"$PY" - "$OUT" "$peak" "$T" "$commit" <<'PY'
import json, sys, statistics, platform, datetime
rows = [json.loads(l) for l in open(sys.argv[1])]
peak, T, commit = float(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
print("CPU: %s, %d threads, FP32 peak %.1f GFLOP/s; commit %s; %s" % (cpu, T, peak, commit,
      datetime.datetime.utcnow().strftime("%Y-%m-%d %H:%M UTC")))
torchv = next((r["impl"] for r in rows if r["impl"].startswith("torch")), "torch")
print()
print("| model | phase | advlab ms | %s ms | speed-up | advlab GFLOP/s (%% of peak) | torch GFLOP/s |" % torchv)
print("|---|---|---|---|---|---|---|")
key = lambda r: (r["arch"], r["bench"])
for arch in ("smallcnn", "preact_resnet18"):
    for ph in ("fwdbwd", "attack_step", "pgd_at_step", "pgd_eval"):
        a = [r for r in rows if r["arch"] == arch and r["bench"] == ph and r["impl"] == "advlab"]
        t = [r for r in rows if r["arch"] == arch and r["bench"] == ph and r["impl"] != "advlab"]
        if not a or not t:
            continue
        am = statistics.median(r["median_ms"] for r in a)
        tm = statistics.median(r["median_ms"] for r in t)
        ag = statistics.median(r["gflops"] for r in a)
        tg = statistics.median(r["gflops"] for r in t)
        print("| %s | %s | %.1f | %.1f | %.2fx | %.0f (%.0f%%) | %.0f |" % (arch, ph, am, tm, tm / am, ag, 100 * ag / peak, tg))
PY
