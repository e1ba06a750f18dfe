#!/usr/bin/env bash
# e2e: config and CLI errors are one line naming the key/file and the problem, exit 1 (2 for
# usage), and never start a run. Every verb answers --help with exit 0.
source "$(dirname "$0")/lib.sh"
CFG="$SRC/experiments/quickstart/fmnist_smallcnn_pgdat.ini"
expect() { # expected-exit expected-substring -- command...
  local want=$1 msg=$2; shift 3
  local rc=0
  "$@" > out.txt 2> err.txt || rc=$?
  [ $rc = "$want" ] || fail "exit $rc (want $want): $*: $(cat err.txt)"
  grep -qF -- "$msg" err.txt || fail "message lacks '$msg': $(cat err.txt)"
  [ "$want" != 1 ] || [ "$(grep -c 'advlab: error' err.txt)" = 1 ] || fail "not one error line: $(cat err.txt)"
}
expect 1 "--set: unknown key train.lrr (did you mean train.lr?)" -- "$ADVLAB" train "$CFG" --set train.lrr=0.1
expect 1 "train.lr = -1: must be in [0, 10]" -- "$ADVLAB" train "$CFG" --set train.lr=-1
expect 1 "train.method = pgd: must be one of" -- "$ADVLAB" train "$CFG" --set train.method=pgd
expect 1 "attack.eps = 0.1x" -- "$ADVLAB" train "$CFG" --set attack.eps=0.1x
expect 1 "unknown section [optimizer]" -- "$ADVLAB" train "$CFG" --set optimizer.lr=1
printf '[train]\nepochs = 0\n' > bad.ini
expect 1 "bad.ini:2: train.epochs = 0: must be in" -- "$ADVLAB" train bad.ini
printf '[train]\nlr = 0.1\n[bogus]\n' > bad2.ini
expect 1 "bad2.ini:3: unknown section [bogus]" -- "$ADVLAB" train bad2.ini
expect 1 "no_such.ini" -- "$ADVLAB" train no_such.ini
expect 1 "data.dataset is required" -- "$ADVLAB" train "$CFG" --set data.dataset= --set run.out_dir="$WORK/runs"
expect 1 "unknown arch 'resnet9'" -- "$ADVLAB" train "$CFG" --set data.dataset="$DATA" --set model.arch=resnet9 --set run.out_dir="$WORK/runs"
expect 1 "model.num_classes = 5 but" -- "$ADVLAB" train "$CFG" --set data.dataset="$DATA" --set model.num_classes=5 --set run.out_dir="$WORK/runs"
expect 1 "model.mean / model.std have 3 / 3 values, the dataset has 1 channels" -- "$ADVLAB" train "$CFG" --set data.dataset="$DATA" --set model.mean=0.5,0.5,0.5 --set model.std=1,1,1 --set run.out_dir="$WORK/runs"
expect 2 "unknown option '--bogus'" -- "$ADVLAB" train "$CFG" --bogus
expect 2 "--ckpt CKPT.h5 is required" -- "$ADVLAB" attack --data "$DATA" --attack pgd
expect 1 "eval.eps = -1" -- "$ADVLAB" attack --ckpt x.h5 --data "$DATA" --attack pgd --eps -1
expect 1 "x.h5: cannot open" -- "$ADVLAB" attack --ckpt x.h5 --data "$DATA" --attack pgd
expect 2 "unknown verb 'trian'" -- "$ADVLAB" trian
[ ! -e runs ] || [ -z "$(ls runs 2>/dev/null)" ] || fail "a failed command left a run directory"
for v in train attack eval convert bench info ood; do
  "$ADVLAB" $v --help > /dev/null || fail "advlab $v --help exited non-zero"
done
echo "e2e cli_errors: ok"
