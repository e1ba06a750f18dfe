#!/usr/bin/env bash
# e2e (CLI): AdvProp and MDProp train wrn-10-1 on real Fashion-MNIST through `advlab train`
# (model.bn_branches builds the BN branches), the epoch loss falls, the checkpoint holds every
# branch's BN parameters and counters; `advlab attack` rebuilds the branched models; MultiBN's
# learned selector trains through the CLI (the trainer calls the method's build hook).
source "$(dirname "$0")/lib.sh"
CFG="$SRC/experiments/quickstart/fmnist_smallcnn_pgdat.ini"
common=(--set data.dataset="$DATA" --set run.out_dir="$WORK/runs" --set model.arch=wrn-10-1
        --set data.n_train=256 --set data.batch_size=32 --set data.n_test=100 --set train.epochs=3
        --set attack.steps=1 --set attack.alpha=0.1 --set eval.steps=2 --set run.threads=1
        --set train.lr=0.05)
for m in advprop mdprop; do
  nb=2; [ $m = mdprop ] && nb=3
  "$ADVLAB" train "$CFG" "${common[@]}" --set run.name=$m --set train.method=$m \
    --set model.bn_branches=$nb --set multibn.l2_eps=1.5 --set multibn.l2_alpha=1.5
  "$PY" - runs/$m/metrics.jsonl runs/$m/checkpoint.h5 $m $nb <<'PY'
import json, sys
import h5py
ep = [json.loads(l) for l in open(sys.argv[1])]
l = [r["loss"] for r in ep if r["type"] == "epoch"]
print(sys.argv[3], "epoch losses", l)
assert len(l) == 3 and l[-1] < l[0], "%s: loss did not fall: %s" % (sys.argv[3], l)
nb = int(sys.argv[4])
with h5py.File(sys.argv[2], "r") as f:
    g = f["model"]
    for b in range(1, nb):
        for s in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"):
            k = "block1.layer.0.bn1.branch%d.%s" % (b, s)
            assert k in g, "missing " + k
    # every branch was trained: running stats moved away from the (0, 1) init, counters > 0
    for b in range(nb):
        pre = "bn1." if b == 0 else "bn1.branch%d." % b
        assert abs(g[pre + "running_mean"][()]).max() > 0, pre
        assert int(g[pre + "num_batches_tracked"][()]) > 0, pre
print(sys.argv[3], "checkpoint branches ok")
PY
done
# `advlab attack` rebuilds a branched checkpoint (bn_branches, gate, eval_branch attrs) and
# evaluates its test branch: for AdvProp the main BN, i.e. the trainer's final clean accuracy
"$ADVLAB" attack --ckpt runs/advprop/checkpoint.h5 --data "$DATA" --attack none --n 100 | tee atk.log
"$PY" - runs/advprop/metrics.jsonl atk.log <<'PY'
import json, re, sys
ev = [json.loads(l) for l in open(sys.argv[1]) if '"type":"eval"' in l][-1]
m = re.search(r"clean accuracy:\s+([0-9.]+)%", open(sys.argv[2]).read())
assert m, "no clean accuracy in advlab attack output"
assert abs(float(m.group(1)) / 100 - ev["clean_acc"]) < 1e-9, (m.group(1), ev["clean_acc"])
print("advlab attack reproduces the trainer's clean accuracy on the main BN")
PY
# MultiBN with the learned selector through the CLI (the trainer calls the method's build hook),
# then `advlab attack` on the gate-routed checkpoint
"$ADVLAB" train "$CFG" "${common[@]}" --set run.name=multibn --set train.method=multibn \
  --set model.bn_branches=3 --set multibn.test_branch=-1 --set train.epochs=1
"$ADVLAB" attack --ckpt runs/multibn/checkpoint.h5 --data "$DATA" --attack pgd --eps 0.1 \
  --alpha 0.05 --steps 2 --n 50
echo "e2e multibn cli: ok"
