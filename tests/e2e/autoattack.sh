#!/usr/bin/env bash
# e2e: advlab attack with the AutoAttack attacks on the trained SmallCNN of the aa_model fixture
# ($4 = its directory):
#  1. APGD-CE is at least as strong as PGD with the same gradient budget (20 iterations);
#  2. AutoAttack 'standard' (budgets reduced for CI) logs robust accuracy after each attack,
#     raises no gradient-masking flag on the normally trained model, and its --save file
#     passes the independent check (check_advfile.py: fresh PyTorch forward, eps-ball, [0,1]);
#  3. the flags fire on the masking variants (softmax-output + zero-gradient; square-stronger);
#  4. a batch that does not fit in memory fails with a message naming --bs and the bytes.
source "$(dirname "$0")/lib.sh"
M=$4
common=(--data "$DATA" --threads 1 --n 100 --bs 100 --eps 0.05)
robust() { sed -n 's/^robust accuracy: \([0-9.]*\)%.*/\1/p' "$1"; }

# 1. same budget: PGD-20 (step eps/4, the usual choice) vs APGD-CE with 20 iterations
"$ADVLAB" attack --ckpt "$M/std.h5" "${common[@]}" --attack pgd --alpha 0.0125 --steps 20 \
  | tee pgd.log
"$ADVLAB" attack --ckpt "$M/std.h5" "${common[@]}" --attack apgd-ce --apgd-iter 20 | tee apgd.log
p=$(robust pgd.log); a=$(robust apgd.log)
echo "robust accuracy: PGD-20 $p%, APGD-CE-20 $a%"
"$PY" -c "import sys; sys.exit(0 if float('$a') <= float('$p') else 1)" \
  || fail "APGD-CE ($a%) weaker than PGD ($p%) with the same budget"

# 2. the standard protocol (reduced budgets), flags quiet, independent check of --save
"$ADVLAB" attack --ckpt "$M/std.h5" --data "$DATA" --threads 1 --n 40 --bs 40 --eps 0.1 \
  --attack autoattack --apgd-iter 25 --n-target-classes 3 --fab-iter 25 --square-queries 300 \
  --save aa.h5 > aa.log 2>&1 || { cat aa.log; fail "autoattack run failed"; }
cat aa.log
for a in APGD-CE APGD-T FAB-T SQUARE; do
  grep -Eq "robust accuracy after $a: [0-9.]+% \(total time [0-9.]+ s\)" aa.log \
    || fail "no 'robust accuracy after $a' line"
done
grep -q "max Linf perturbation: " aa.log || fail "no validity check line"
grep -q "^flags: none" aa.log || fail "flags raised on a normally trained SmallCNN"
grep -q "warning" aa.log && fail "warnings on a normally trained SmallCNN"
"$PY" "$SRC/tests/e2e/check_advfile.py" aa.h5 "$M/std.h5" "$DATA"
"$PY" -c "import h5py,sys; a=h5py.File('aa.h5').attrs['attack']; a=a.decode() if isinstance(a,bytes) else a; sys.exit(0 if a=='autoattack-custom' else 'attack attr %r'%a)"

# 3. masking models fire the flags, each with its explanation
"$ADVLAB" attack --ckpt "$M/prob.h5" --data "$DATA" --threads 1 --n 30 --eps 0.1 \
  --attack autoattack --attacks apgd-ce,apgd-t --apgd-iter 5 > prob.log 2>&1 \
  || { cat prob.log; fail "run on the prob model failed"; }
cat prob.log
grep -q "^flags: softmax-output zero-gradient" prob.log || fail "prob model: flags not raised"
grep -q "look like probabilities" prob.log || fail "no softmax explanation"
grep -q "all-zero input gradient at the APGD-T start point" prob.log || fail "no zero-grad text"
"$ADVLAB" attack --ckpt "$M/scale.h5" --data "$DATA" --threads 1 --n 30 --eps 0.1 \
  --attack autoattack --attacks apgd-ce,square --apgd-iter 20 --square-queries 300 > scale.log 2>&1 \
  || { cat scale.log; fail "run on the scaled model failed"; }
cat scale.log
grep -q "^flags: square-stronger" scale.log || fail "scaled-logit model: Square flag not raised"
grep -q "likely masks gradients" scale.log || fail "no Square explanation"

# 4. too large a batch: a clear error, exit 1, no crash (virtual memory capped at 4 GiB; the
#    batch of 10000 needs ~9 GiB)
rc=0
( ulimit -v 4000000; export OPENBLAS_NUM_THREADS=1; exec "$ADVLAB" attack --ckpt "$M/std.h5" --data "$DATA" --threads 1 \
    --n 10000 --bs 10000 --eps 0.1 --attack apgd-ce ) > oom.log 2>&1 || rc=$?
cat oom.log
[ $rc = 1 ] || fail "too-large batch: exit code $rc, expected 1"
grep -q "advlab: error: --bs 10000: .* bytes" oom.log || fail "OOM message lacks --bs / bytes"
echo "e2e autoattack: ok"
