#!/usr/bin/env bash
# e2e (CUDA): every training method trains through `advlab train` with run.device = cuda, on
# the arch its experiment config names, and matches the same command on the CPU. Each run is
# 2 optimiser steps of 32 Fashion-MNIST images with PGD-2 attacks, logging every step. Asserts
# per method: both runs complete (attacks, forwards, losses, backward, SGD + EMA, evaluation,
# checkpoint on the CUDA backend); every step loss is finite; the CUDA step losses equal the
# CPU's within 5% + 1e-3 (the backends' conv arithmetic differs, and the attack's sign() can
# flip an element whose gradient is near zero, so the losses are close, not bitwise); the host
# reads per training step (metrics.jsonl host_reads_per_step) are exactly the trainer's reads
# of its deferred sums (core/sums.h) -- one per step record (log_every = 1: 2) plus one at the
# epoch's end = 3 over 2 steps = 1.5 -- on both backends and when a third run (CPU) doubles
# attack.steps: no method, attack or loss waits on the device inside a step. The *_bf16 runs
# train with bf16 activations (core/ops/bf16.h): CUDA against the executor's CPU twin.
# In a CUDA build without a usable GPU: "skipped: no GPU", exit 77. Under simcuda this is what
# runs every method's CUDA path in CI.
source "$(dirname "$0")/lib.sh"
Q="$SRC/experiments/quickstart/fmnist_smallcnn_pgdat.ini"
# name | config | extra --set pairs
runs=(
  "standard|$Q|train.method=standard"
  "pgd_at|$Q|train.method=pgd_at"
  "pgd_at_clip|$Q|train.method=pgd_at train.grad_clip=0.5"
  "fast_at|$Q|train.method=fast_at attack.alpha=0.125"
  "trades|$Q|train.method=trades"
  "mart|$Q|train.method=mart"
  "drsl|$SRC/experiments/drsl/fmnist_resnet_small_drsl.ini|"
  "dfa|$SRC/experiments/dfa/fmnist_dfa_smallcnn.ini|"
  "iat|$SRC/experiments/iat/fmnist_smallcnn_iat.ini|"
  "ancra|$SRC/experiments/ancra/fmnist_ancra_small.ini|"
  "advprop|$Q|train.method=advprop model.arch=wrn-10-1 model.bn_branches=2"
  "mdprop|$Q|train.method=mdprop model.arch=wrn-10-1 model.bn_branches=3 multibn.l2_eps=1.5 multibn.l2_alpha=1.5"
  "multibn|$Q|train.method=multibn model.arch=wrn-10-1 model.bn_branches=3 multibn.test_branch=-1"
  "nofrost|$SRC/experiments/nofrost/fmnist_nf_resnet18_w8_nofrost.ini|"
  "pgd_at_bf16|$Q|train.method=pgd_at run.precision=bf16"
  "trades_bf16|$Q|train.method=trades model.arch=wrn-10-1 run.precision=bf16"
)
common=(--set data.dataset="$DATA" --set run.out_dir="$WORK/runs" --set data.n_train=64
        --set data.batch_size=32 --set train.epochs=1 --set data.n_test=32 --set eval.n_points=32
        --set eval.steps=2 --set attack.steps=2 --set run.log_every=1 --set run.threads=2)
first=1
for r in "${runs[@]}"; do
  IFS='|' read -r name cfg extra <<< "$r"
  sets=()
  for kv in $extra; do sets+=(--set "$kv"); done
  for dev in cuda cpu cpu4; do
    more=(--set run.device=${dev%4})
    [ $dev = cpu4 ] && more+=(--set attack.steps=4)
    if ! "$ADVLAB" train "$cfg" "${common[@]}" "${sets[@]}" --set run.name=${name}_$dev \
         "${more[@]}" > ${name}_$dev.log 2>&1; then
      if [ $first = 1 ] && [ $dev = cuda ] && grep -Eq "no CUDA device|GPU" ${name}_$dev.log; then
        echo "skipped: no GPU"; cat ${name}_$dev.log; exit 77
      fi
      cat ${name}_$dev.log; fail "$name: train --device $dev failed"
    fi
    first=0
  done
  "$PY" - runs/${name}_cuda/metrics.jsonl runs/${name}_cpu/metrics.jsonl $name \
    runs/${name}_cpu4/metrics.jsonl <<'PY'
import json, math, sys
def steps(p):
    return [r["loss"] for r in map(json.loads, open(p)) if r["type"] == "step"]
def reads(p):
    return [r["host_reads_per_step"] for r in map(json.loads, open(p)) if r["type"] == "epoch"][-1]
g, c, name = steps(sys.argv[1]), steps(sys.argv[2]), sys.argv[3]
rg, rc, r4 = reads(sys.argv[1]), reads(sys.argv[2]), reads(sys.argv[4])
print("%-9s host reads per step: cuda %g, cpu %g, cpu with attack.steps=4: %g" % (name, rg, rc, r4))
assert rg == rc == r4 == 1.5, \
    "%s: host reads per step cuda %g / cpu %g / cpu (4 attack steps) %g, want 1.5" % (
    name, rg, rc, r4)
print("%-9s step losses cuda %s cpu %s" % (name, ["%.5f" % v for v in g], ["%.5f" % v for v in c]))
assert len(g) == len(c) == 2, "%s: expected 2 step records, got %d / %d" % (name, len(g), len(c))
# the epoch's loss is the device-side fold of the two (equal-size) steps: their mean
for p, st in ((sys.argv[1], g), (sys.argv[2], c)):
    ep = [r["loss"] for r in map(json.loads, open(p)) if r["type"] == "epoch"][-1]
    assert abs(ep - (st[0] + st[1]) / 2) <= 1e-5 * abs(ep) + 1e-6, \
        "%s: epoch loss %.6g, mean of its steps %.6g (%s)" % (name, ep, (st[0] + st[1]) / 2, p)
for a, b in zip(g, c):
    assert math.isfinite(a) and math.isfinite(b), "%s: non-finite loss" % name
    assert abs(a - b) <= 0.05 * abs(b) + 1e-3, "%s: CUDA loss %.6f vs CPU %.6f" % (name, a, b)
PY
done
# CUDA graphs (attacks/attack.c): with 4 attack and 4 evaluation iterations the loop replays
# its iteration from a graph (3 launches per attack). For methods whose attacks differ in kind
# (CE on a BN net, TRADES KL, MART, NoFrost's weight-standardised convs in slot 1, MultiBN's
# branches and alternating Linf/L2 attacks), the run with run.cuda_graphs = 1 equals the one
# with 0 exactly: every step loss and evaluation record as printed and every checkpoint
# dataset (weights, BN running statistics and num_batches_tracked, optimiser state) bit for
# bit; the graph run replayed 3 iterations per attack and instantiated each graph once.
graph_runs=(
  "pgd_at|$Q|train.method=pgd_at model.arch=wrn-10-1"
  "trades|$Q|train.method=trades model.arch=wrn-10-1"
  "mart|$Q|train.method=mart"
  "nofrost|$SRC/experiments/nofrost/fmnist_nf_resnet18_w8_nofrost.ini|"
  "multibn|$Q|train.method=multibn model.arch=wrn-10-1 model.bn_branches=3 multibn.test_branch=-1"
)
for r in "${graph_runs[@]}"; do
  IFS='|' read -r name cfg extra <<< "$r"
  sets=()
  for kv in $extra; do sets+=(--set "$kv"); done
  for gr in 0 1; do
    "$ADVLAB" train "$cfg" "${common[@]}" "${sets[@]}" --set run.device=cuda \
      --set attack.steps=4 --set eval.steps=4 --set run.cuda_graphs=$gr \
      --set run.name=${name}_graph$gr > ${name}_graph$gr.log 2>&1 ||
      { cat ${name}_graph$gr.log; fail "$name: train with run.cuda_graphs=$gr failed"; }
  done
  # per training attack (1 per step; MultiBN's 2, of two shapes) 4 iterations - 1 eager = 3
  # replays; each shape's graph is instantiated once, then updated in place
  line=$(grep -o "CUDA graphs: [0-9]* training-attack iterations replayed.*" ${name}_graph1.log)
  "$PY" - "$line" $name <<'PY' || { cat ${name}_graph1.log; fail "$name: CUDA graph replays"; }
import re, sys
m = re.search(r"(\d+) training-attack iterations replayed \(largest graph (\d+) nodes; (\d+) "
              r"captures, (\d+) instantiations, (\d+) in-place updates\)", sys.argv[1])
assert m, "no CUDA graph summary in the log: %r" % sys.argv[1]
launches, nodes, cap, inst, upd = map(int, m.groups())
assert cap >= 2 and launches == 3 * cap and nodes > 0, (launches, cap, nodes)
assert inst == cap // 2 and upd == cap - inst, "%s: %d captures, %d instantiations, %d updates" % (
    sys.argv[2], cap, inst, upd)
PY
  grep -q "CUDA graphs: off (run.cuda_graphs = 0)" ${name}_graph0.log ||
    { cat ${name}_graph0.log; fail "$name: run.cuda_graphs = 0 did not turn graphs off"; }
  "$PY" - runs/${name}_graph0 runs/${name}_graph1 $name <<'PY'
import json, sys
import h5py
import numpy as np
a, b, name = sys.argv[1:4]
def recs(d):
    out = []
    for r in map(json.loads, open(d + "/metrics.jsonl")):
        if r["type"] in ("step", "eval"):
            out.append({k: v for k, v in r.items() if k not in ("time", "seconds", "img_per_s")})
    return out
ra, rb = recs(a), recs(b)
assert len(ra) >= 3 and ra == rb, "%s: metrics differ with CUDA graphs:\n%s\n%s" % (name, ra, rb)
n = 0
with h5py.File(a + "/checkpoint.h5", "r") as fa, h5py.File(b + "/checkpoint.h5", "r") as fb:
    names = []
    fa.visititems(lambda k, o: names.append(k) if isinstance(o, h5py.Dataset) else None)
    for k in names:
        if k.startswith("metrics/") and "time" in k:
            continue
        x, y = fa[k][()], fb[k][()]
        x, y = np.asarray(x), np.asarray(y)  # bytes as stored: -0.0 != 0.0, NaN == NaN
        assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), \
            "%s: checkpoint dataset %s differs with CUDA graphs" % (name, k)
        n += 1
print("%-9s CUDA graphs on/off: %d metric records and %d checkpoint datasets identical"
      % (name, len(ra), n))
PY
done
# Channels last (run.layout = nhwc, core/model.c "storage formats"): PGD-AT on wrn-10-1 as in
# pgd_at_graph1 but NHWC trains the same way: every step and evaluation record within 1%
# relative (in simcuda exactly equal; on a GPU cuDNN's per-layout algorithms change the
# summation order). Its checkpoint stays OIHW, so `advlab attack` evaluates it in NCHW to the
# run's own clean accuracy on the same 32 points; and the CPU refuses the layout with the
# config error.
"$ADVLAB" train "$Q" "${common[@]}" --set train.method=pgd_at --set model.arch=wrn-10-1 \
  --set run.device=cuda --set attack.steps=4 --set eval.steps=4 --set run.layout=nhwc \
  --set run.name=pgd_at_nhwc > pgd_at_nhwc.log 2>&1 ||
  { cat pgd_at_nhwc.log; fail "pgd_at: train with run.layout=nhwc failed"; }
"$ADVLAB" attack --ckpt runs/pgd_at_nhwc/checkpoint.h5 --data "$DATA" --device cuda \
  --attack pgd --eps 0.1 --alpha 0.025 --steps 4 --n 32 --bs 32 > pgd_at_nhwc_attack.log 2>&1 ||
  { cat pgd_at_nhwc_attack.log; fail "attack on the NHWC-trained checkpoint failed"; }
"$PY" - runs/pgd_at_graph1 runs/pgd_at_nhwc pgd_at_nhwc_attack.log <<'PY'
import json, math, re, sys
a, b, atk = sys.argv[1:4]
def recs(d):
    return [{k: v for k, v in r.items() if k not in ("time", "seconds", "img_per_s")}
            for r in map(json.loads, open(d + "/metrics.jsonl")) if r["type"] in ("step", "eval")]
ra, rb = recs(a), recs(b)
assert len(ra) >= 3 and len(ra) == len(rb), (len(ra), len(rb))
worst = 0.0
for x, y in zip(ra, rb):
    assert x.keys() == y.keys(), (x, y)
    for k in x:
        if isinstance(x[k], float):
            d = abs(x[k] - y[k]) / max(abs(x[k]), 1e-3)
            worst = max(worst, d)
            assert d <= 1e-2, "NHWC %s record %s: %s = %r vs %r (NCHW)" % (x["type"], x.get("step"), k, y[k], x[k])
        else:
            assert x[k] == y[k], "NHWC record differs in %s: %r vs %r" % (k, y[k], x[k])
ev = [r for r in rb if r["type"] == "eval"][-1]
txt = open(atk).read()
clean = re.search(r"clean accuracy:\s+[0-9.]+% \((\d+)/(\d+)\)", txt)
rob = re.search(r"robust accuracy:\s+[0-9.]+% \((\d+)/(\d+)\)", txt)
assert clean and rob, "no accuracy lines in:\n" + txt
assert int(clean[2]) == ev["n_clean"] and int(clean[1]) == round(ev["clean_acc"] * ev["n_clean"]), \
    "the NHWC-trained checkpoint evaluated in NCHW: clean %s/%s, the run's eval %r" % (clean[1], clean[2], ev)
print("pgd_at NHWC: %d records within %.2g of NCHW; NCHW eval of its checkpoint: clean %s/%s "
      "robust %s/%s; run's eval: %s" % (len(ra), worst, clean[1], clean[2], rob[1], rob[2], ev))
PY
if "$ADVLAB" train "$Q" "${common[@]}" --set run.layout=nhwc --set run.name=nhwc_cpu \
     > nhwc_cpu.log 2>&1; then
  fail "run.layout=nhwc on the CPU was accepted"
fi
grep -q "run.layout = nhwc needs run.device = cuda" nhwc_cpu.log ||
  { cat nhwc_cpu.log; fail "run.layout=nhwc on the CPU: not the config error"; }
echo "e2e methods_cuda: ok"
