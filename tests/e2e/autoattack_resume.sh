#!/usr/bin/env bash
# e2e: a resumable AutoAttack run killed mid-attack (kill -9, and SIGTERM) and continued with
# --resume ends bit-identical to an uninterrupted run: same adversarial images, same
# clean/robust flags (compared dataset by dataset in the --save files). $4 = aa_model dir.
source "$(dirname "$0")/lib.sh"
M=$4
run=(attack --ckpt "$M/std.h5" --data "$DATA" --threads 1 --n 60 --bs 6 --eps 0.1
     --attack autoattack --attacks apgd-ce,apgd-t --apgd-iter 30 --n-target-classes 4)
"$ADVLAB" "${run[@]}" --save full.h5 > full.log 2>&1 || { cat full.log; fail "uninterrupted run"; }

same() { # a.h5 b.h5
  "$PY" - "$1" "$2" <<'PY'
import sys, h5py, numpy as np
a, b = h5py.File(sys.argv[1]), h5py.File(sys.argv[2])
for k in ("images", "labels", "index", "clean_correct", "robust_correct"):
    if not np.array_equal(a[k][()], b[k][()]):
        sys.exit("%s differs between %s and %s" % (k, sys.argv[1], sys.argv[2]))
print("identical:", sys.argv[1], sys.argv[2], "robust", int(a["robust_correct"][()].sum()))
PY
}
# wait until the log shows `pattern`, then send `sig` (the run must still be going)
kill_at() { # log pattern sig pid
  for i in $(seq 1 3000); do
    grep -q "$2" "$1" 2>/dev/null && break
    kill -0 $4 2>/dev/null || fail "run ended before '$2' appeared"
    sleep 0.02
  done
  kill -$3 $4 || fail "run already finished: cannot test the kill"
  rc=0; wait $4 || rc=$?
  echo "killed with $3 at '$2': exit code $rc"
  [ $rc -ne 0 ] || fail "the run finished before the kill at '$2' landed"
}

# kill -9 in the middle of APGD-CE, then in the middle of APGD-T
"$ADVLAB" "${run[@]}" --state st.h5 --state-every 0 > k1.log 2>&1 &
kill_at k1.log "apgd-ce - 2/" KILL $!
[ -f st.h5 ] || fail "no state file after the kill"
"$ADVLAB" "${run[@]}" --state st.h5 --state-every 0 --resume > k2.log 2>&1 &
# after APGD-T's first batch: with 12 points left it has two, so the second is still running
kill_at k2.log "apgd-t - 1/" KILL $!
grep -q "restored state from st.h5" k2.log || fail "second run did not restore the state"
"$ADVLAB" "${run[@]}" --state st.h5 --state-every 0 --resume --save resumed.h5 > k3.log 2>&1 \
  || { cat k3.log; fail "resumed run failed"; }
cat k3.log
grep -q "1 of 2 attacks done" k3.log || fail "third run did not resume inside APGD-T"
same full.h5 resumed.h5
grep "robust accuracy: " full.log | tail -1 > a.txt
grep "robust accuracy: " k3.log | tail -1 > b.txt
cmp -s <(sed 's/(.*//' a.txt) <(sed 's/(.*//' b.txt) || fail "robust accuracy lines differ"

# SIGTERM: the state is saved, exit code 3, and --resume finishes the same evaluation
rm -f st2.h5
"$ADVLAB" "${run[@]}" --state st2.h5 > t1.log 2>&1 &
pid=$!
for i in $(seq 1 3000); do grep -q "apgd-ce - 3/" t1.log && break; sleep 0.02; done
kill -TERM $pid
rc=0; wait $pid || rc=$?
cat t1.log
[ $rc = 3 ] || fail "SIGTERM: exit code $rc, expected 3"
grep -q "state saved to st2.h5" t1.log || fail "SIGTERM: no 'state saved' message"
"$ADVLAB" "${run[@]}" --state st2.h5 --resume --save resumed2.h5 > t2.log 2>&1 \
  || { cat t2.log; fail "resume after SIGTERM failed"; }
same full.h5 resumed2.h5
# a state written for another evaluation is refused, naming the field
if "$ADVLAB" "${run[@]/0.1/0.2}" --state st2.h5 --resume > bad.log 2>&1; then
  fail "resume with another eps accepted"
fi
grep -q "eps" bad.log || fail "mismatch message does not name eps: $(cat bad.log)"
echo "e2e autoattack_resume: ok"
