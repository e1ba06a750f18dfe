#!/usr/bin/env bash
# e2e: NoFrost (nf_resnet18_w8, no BN) on a real Fashion-MNIST subset: the loss falls, and PGD-20
# robust accuracy beats standard training of the same arch with the same budget (steps, batch,
# lr, schedule). Config: experiments/nofrost/fmnist_nf_resnet18_w8_nofrost.ini. Prints the
# numbers experiments/nofrost/NOTES.md quotes.
source "$(dirname "$0")/lib.sh"
export OMP_WAIT_POLICY=${OMP_WAIT_POLICY:-passive} # spinning OpenMP waits cost 10x on loaded cores
CFG="$SRC/experiments/nofrost/fmnist_nf_resnet18_w8_nofrost.ini"
N_EVAL=${AL_E2E_N_EVAL:-300}
for m in nofrost standard; do
  "$ADVLAB" train "$CFG" --set data.dataset="$DATA" --set run.out_dir="$WORK/runs" \
    --set run.name=$m --set train.method=$m --set eval.attack=none > train_$m.log 2>&1 \
    || { cat train_$m.log; fail "training $m"; }
  "$ADVLAB" attack --ckpt runs/$m/checkpoint.h5 --data "$DATA" --attack pgd --eps 0.1 \
    --alpha 0.01 --steps 20 --n $N_EVAL --seed 1 | tee attack_$m.log
done
acc() { sed -n "s/^$2 accuracy: *\([0-9.]*\)%.*/\1/p" "$1"; }
"$PY" - runs/nofrost/metrics.jsonl "$(acc attack_nofrost.log clean)" "$(acc attack_nofrost.log robust)" \
  "$(acc attack_standard.log clean)" "$(acc attack_standard.log robust)" <<'PYEOF' || fail "NoFrost checks"
import json, sys
losses = [r["loss"] for r in map(json.loads, open(sys.argv[1])) if r.get("type") == "step"]
nf_clean, nf_rob, st_clean, st_rob = map(float, sys.argv[2:6])
first, last = losses[0], sum(losses[-3:]) / 3
print("nofrost loss: first record %.4f, mean of the last 3 records %.4f (%d records)" % (first, last, len(losses)))
print("RESULT nofrost clean %.2f robust %.2f | standard clean %.2f robust %.2f (PGD-20, eps 0.1)"
      % (nf_clean, nf_rob, st_clean, st_rob))
ok = True
if not last < first - 0.3:
    print("FAIL: the NoFrost loss did not fall by 0.3"); ok = False
if not nf_clean >= 40.0:
    print("FAIL: NoFrost clean accuracy below 40%"); ok = False
if not nf_rob >= st_rob + 10.0:
    print("FAIL: NoFrost robust accuracy does not beat standard training by 10 points"); ok = False
sys.exit(0 if ok else 1)
PYEOF
echo "e2e nofrost: ok"
