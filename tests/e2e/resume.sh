#!/usr/bin/env bash
# e2e: (1) stop at max_steps + --resume, (2) SIGTERM mid-epoch (checkpoint written, exit 3)
# + --resume: both end bit-identical to an uninterrupted run (CPU), params, momentum and EMA.
source "$(dirname "$0")/lib.sh"
common=(--set data.dataset="$DATA" --set run.out_dir="$WORK/runs" --set data.n_train=768
        --set data.batch_size=64 --set data.n_test=100 --set train.epochs=3 --set attack.steps=2
        --set eval.steps=2 --set run.log_every=1 --set train.ema=1 --set data.augment=crop_flip
        --set data.crop_pad=2 --set run.threads=2)
CFG="$SRC/experiments/quickstart/fmnist_smallcnn_pgdat.ini"
"$ADVLAB" train "$CFG" "${common[@]}" --set run.name=full
"$ADVLAB" train "$CFG" "${common[@]}" --set run.name=split --set train.max_steps=17
[ "$(jfield runs/split/metrics.jsonl stop step)" = 17 ] || fail "max_steps stop not at 17"
"$ADVLAB" train "$CFG" "${common[@]}" --set run.name=split --resume runs/split/checkpoint.h5
"$PY" "$SRC/tests/e2e/compare_ckpt.py" runs/full/checkpoint.h5 runs/split/checkpoint.h5

# SIGTERM: start, wait for a few step records, signal, expect exit 3 and a checkpoint
"$ADVLAB" train "$CFG" "${common[@]}" --set run.name=term --set train.epochs=30 &
pid=$!
for i in $(seq 1 600); do
  n=$(grep -c '"type":"step"' runs/term/metrics.jsonl 2>/dev/null || true)
  [ "${n:-0}" -ge 5 ] && break
  sleep 0.1
done
kill -TERM $pid
rc=0; wait $pid || rc=$?
[ $rc = 3 ] || fail "SIGTERM: exit code $rc, expected 3"
[ -f runs/term/checkpoint.h5 ] || fail "SIGTERM: no checkpoint written"
s=$(jfield runs/term/metrics.jsonl stop step)
echo "stopped by SIGTERM at step $s"
# resume with the original length (epochs is part of the schedule: cosine over 30 epochs)
"$ADVLAB" train "$CFG" "${common[@]}" --set run.name=term --set train.epochs=30 \
  --set train.max_steps=40 --resume runs/term/checkpoint.h5
"$ADVLAB" train "$CFG" "${common[@]}" --set run.name=term_ref --set train.epochs=30 --set train.max_steps=40
"$PY" "$SRC/tests/e2e/compare_ckpt.py" runs/term_ref/checkpoint.h5 runs/term/checkpoint.h5
# a resume whose training math differs is refused, naming the key
if "$ADVLAB" train "$CFG" "${common[@]}" --set run.name=term --set train.epochs=30 \
   --set train.lr=0.2 --resume runs/term/checkpoint.h5 2> err.txt; then fail "changed lr accepted"; fi
grep -q "train.lr" err.txt || fail "resume mismatch message does not name train.lr: $(cat err.txt)"
echo "e2e resume: ok"
