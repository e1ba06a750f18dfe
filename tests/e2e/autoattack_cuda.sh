#!/usr/bin/env bash
# e2e (GPU): AutoAttack 'standard' (budgets reduced) with --device cuda on the trained SmallCNN of
# the aa_model fixture ($4), against the same command on the CPU. APGD (step + DLR kernels), FAB
# and Square then run on the CUDA backend. Asserts: the run completes and logs every stage; the
# validity check passes; the --save file passes the independent check (fresh PyTorch forward,
# eps-ball, [0,1]); robust accuracy within 3 points of the CPU run's (the two backends' conv
# arithmetic differs, so trajectories may part on a few points; same seed and protocol).
# Without a usable GPU: "skipped: no GPU", exit 77.
source "$(dirname "$0")/lib.sh"
M=$4
if ! "$ADVLAB" attack --ckpt "$M/std.h5" --data "$DATA" --attack none --n 4 --device cuda \
     > probe.log 2>&1; then
  if grep -Eq "CUDA|GPU" probe.log; then echo "skipped: no GPU"; cat probe.log; exit 77; fi
  cat probe.log; fail "probe failed"
fi
aa=(--ckpt "$M/std.h5" --data "$DATA" --n 200 --bs 200 --eps 0.1 --attack autoattack
    --apgd-iter 25 --n-target-classes 3 --fab-iter 25 --square-queries 300)
"$ADVLAB" attack "${aa[@]}" --device cuda --save aa_cuda.h5 > cuda.log 2>&1 \
  || { cat cuda.log; fail "autoattack --device cuda failed"; }
"$ADVLAB" attack "${aa[@]}" --threads 2 > cpu.log 2>&1 || { cat cpu.log; fail "CPU run failed"; }
cat cuda.log
for a in APGD-CE APGD-T FAB-T SQUARE; do
  grep -Eq "robust accuracy after $a: [0-9.]+%" cuda.log || fail "no 'robust accuracy after $a' line"
done
grep -q "max Linf perturbation: " cuda.log || fail "no validity check line"
"$PY" "$SRC/tests/e2e/check_advfile.py" aa_cuda.h5 "$M/std.h5" "$DATA"
robust() { sed -n 's/^robust accuracy: \([0-9.]*\)%.*/\1/p' "$1" | tail -1; }
g=$(robust cuda.log); c=$(robust cpu.log)
echo "AutoAttack robust accuracy: cuda $g%, cpu $c%"
"$PY" -c "import sys; sys.exit(0 if abs(float('$g') - float('$c')) <= 3.0 else 1)" \
  || fail "CUDA ($g%) and CPU ($c%) AutoAttack differ by more than 3 points"
echo "e2e autoattack_cuda: ok"
