#!/usr/bin/env bash
# Every experiment config in the repository parses and validates (advlab train --print-config),
# and the resolved text reloads to the same resolved text.
source "$(dirname "$0")/lib.sh"
n=0
while IFS= read -r f; do
  "$ADVLAB" train "$f" --print-config > resolved.ini || fail "$f does not validate"
  "$ADVLAB" train resolved.ini --print-config > again.ini || fail "$f: resolved text does not reload"
  cmp -s resolved.ini again.ini || fail "$f: resolved config is not a fixed point"
  n=$((n + 1))
done < <(find "$SRC/experiments" -name '*.ini' | sort)
[ $n -gt 0 ] || fail "no experiment configs found"
echo "e2e configs: ok ($n configs)"
