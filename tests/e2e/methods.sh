#!/usr/bin/env bash
# e2e: every training method runs on real Fashion-MNIST and its epoch loss falls.
source "$(dirname "$0")/lib.sh"
for m in standard pgd_at fast_at trades mart; do
  extra=()
  [ $m = fast_at ] && extra=(--set attack.alpha=0.125)
  "$ADVLAB" train "$SRC/experiments/quickstart/fmnist_smallcnn_pgdat.ini" \
    --set data.dataset="$DATA" --set run.out_dir="$WORK/runs" --set run.name=$m \
    --set train.method=$m --set data.n_train=2048 --set data.batch_size=64 --set data.n_test=200 \
    --set train.epochs=3 --set attack.steps=3 --set attack.alpha=0.04 --set eval.steps=5 \
    --set train.bn_mode_attack=auto --set attack.random_init=auto "${extra[@]}"
  "$PY" - runs/$m/metrics.jsonl $m <<'PY'
import json, sys
ep = [json.loads(l) for l in open(sys.argv[1])]
ep = [r for r in ep if r["type"] == "epoch"]
l = [r["loss"] for r in ep]
print(sys.argv[2], "epoch losses", l)
assert len(l) == 3, "expected 3 epoch records"
assert l[-1] < l[0], "%s: loss did not fall: %s" % (sys.argv[2], l)
PY
done
echo "e2e methods: ok"
