#!/usr/bin/env bash
# e2e: a diverging run (huge lr) stops with a one-line NaN/Inf error and a non-zero exit, and
# the checkpoint a previous run left in the same run directory is untouched.
source "$(dirname "$0")/lib.sh"
CFG="$SRC/experiments/quickstart/fmnist_smallcnn_pgdat.ini"
common=(--set data.dataset="$DATA" --set run.out_dir="$WORK/runs" --set run.name=r
        --set data.n_train=512 --set data.batch_size=64 --set data.n_test=100 --set attack.steps=1
        --set eval.steps=1 --set train.epochs=1)
"$ADVLAB" train "$CFG" "${common[@]}"
sum=$(sha256sum runs/r/checkpoint.h5 | cut -d' ' -f1)
rc=0
"$ADVLAB" train "$CFG" "${common[@]}" --set train.epochs=20 --set train.lr=10 \
  --set train.lr_schedule=constant --set train.method=standard 2> err.txt || rc=$?
cat err.txt
[ $rc = 1 ] || fail "diverging run exit code $rc, expected 1"
grep -Eq "advlab: error: train: loss is (NaN|Inf) at epoch [0-9]+ step [0-9]+" err.txt || fail "no NaN/Inf message"
[ "$(grep -c 'advlab: error' err.txt)" = 1 ] || fail "error is not one line"
[ "$(sha256sum runs/r/checkpoint.h5 | cut -d' ' -f1)" = "$sum" ] || fail "previous checkpoint changed"
echo "e2e nan: ok"
