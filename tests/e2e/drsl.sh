#!/usr/bin/env bash
# e2e: DRSL (CE + the non-label logit variance penalty, DRSLX, b = 1e-3) on real Fashion-MNIST
# against plain standard training, same network (resnet-small) and budget (300 steps of 64).
# Asserts: the DRSL run's loss falls; its PGD-20 robust accuracy at Linf eps 0.05 (step eps/8)
# beats the standard model's, under CE and under CW-margin PGD (the penalty reshapes the
# logits, so a second loss guards against a CE-only artefact). At the usual Fashion-MNIST
# eps 0.1 both models are near zero without adversarial training: printed, not asserted.
# A short-budget claim: after 2 full epochs the CW gap is at noise level
# (experiments/drsl/NOTES.md).
source "$(dirname "$0")/lib.sh"
export OMP_WAIT_POLICY=passive
common=(--set data.dataset="$DATA" --set run.out_dir="$WORK/runs" --set data.n_train=6400
        --set data.batch_size=64 --set train.epochs=3 --set data.n_test=500
        --set eval.attack=none --set run.log_every=25)
"$ADVLAB" train "$SRC/experiments/drsl/fmnist_resnet_small_drsl.ini" --set run.name=drsl "${common[@]}"
"$ADVLAB" train "$SRC/experiments/ancra/fmnist_resnet_small_standard.ini" --set run.name=standard \
  "${common[@]}"
for m in drsl standard; do
  for loss in ce cw; do
    "$ADVLAB" attack --ckpt runs/$m/checkpoint.h5 --data "$DATA" --attack pgd --loss $loss \
      --eps 0.05 --alpha 0.00625 --steps 20 --n 1000 --bs 500 | tee ${m}_${loss}_005.txt
  done
  "$ADVLAB" attack --ckpt runs/$m/checkpoint.h5 --data "$DATA" --attack pgd --eps 0.1 \
    --alpha 0.01 --steps 20 --n 500 --bs 500 | tee ${m}_ce_01.txt
done
"$PY" - <<'PY'
import json, re
ep = [json.loads(l) for l in open("runs/drsl/metrics.jsonl")]
ep = [r["loss"] for r in ep if r["type"] == "epoch"]
print("drsl epoch losses", ep)
assert len(ep) == 3 and ep[-1] < ep[0], "DRSL loss did not fall: %s" % ep
def acc(path, what):
    m = re.search(what + r" accuracy: *([0-9.]+)%", open(path).read())
    assert m, "no %s accuracy in %s" % (what, path)
    return float(m.group(1)) / 100
for loss in ("ce", "cw"):
    d, s = acc("drsl_%s_005.txt" % loss, "robust"), acc("standard_%s_005.txt" % loss, "robust")
    print("PGD-20 (%s) eps 0.05 robust accuracy: drsl %.3f, standard %.3f" % (loss, d, s))
    assert d > s + 0.05, "DRSL does not beat standard training under %s PGD-20 at eps 0.05" % loss
print("PGD-20 eps 0.1 robust accuracy (not asserted): drsl %.3f, standard %.3f; clean: drsl %.3f, "
      "standard %.3f" % (acc("drsl_ce_01.txt", "robust"), acc("standard_ce_01.txt", "robust"),
                         acc("drsl_ce_01.txt", "clean"), acc("standard_ce_01.txt", "clean")))
PY
echo "e2e drsl: ok"
