#!/usr/bin/env bash
# e2e: PGD-AT SmallCNN on a real Fashion-MNIST subset must reach accuracy thresholds, and the
# --save file of a PGD-20 evaluation must pass the independent invariants (check_advfile.py).
source "$(dirname "$0")/lib.sh"
N_TRAIN=${AL_E2E_N_TRAIN:-16000}
"$ADVLAB" train "$SRC/experiments/quickstart/fmnist_smallcnn_pgdat.ini" \
  --set data.dataset="$DATA" --set run.out_dir="$WORK/runs" --set run.name=pgdat \
  --set data.n_train=$N_TRAIN --set data.batch_size=64 --set data.n_test=1000 --set train.epochs=2 \
  --set run.eval_every=1
"$ADVLAB" attack --ckpt runs/pgdat/checkpoint.h5 --data "$DATA" --attack pgd --eps 0.1 \
  --alpha 0.01 --steps 20 --n 1000 --save adv.h5 | tee attack.log
# thresholds for this CI-sized run (the full quick start is held to 75% / 55%)
"$PY" "$SRC/tests/e2e/check_advfile.py" adv.h5 runs/pgdat/checkpoint.h5 "$DATA" \
  --min-clean ${AL_E2E_MIN_CLEAN:-0.70} --min-robust ${AL_E2E_MIN_ROBUST:-0.50}
# the JSONL has a header with the resolved config, step, epoch and eval records
grep -q '"type":"header"' runs/pgdat/metrics.jsonl || fail "no JSONL header"
[ "$(jfield runs/pgdat/metrics.jsonl epoch epoch)" = 2 ] || fail "no epoch 2 record"
grep -q '"type":"eval"' runs/pgdat/metrics.jsonl || fail "no eval record"
echo "e2e train_pgdat: ok"
