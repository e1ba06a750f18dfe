#!/usr/bin/env bash
# Fixture: convert Debian's Fashion-MNIST once for all e2e tests.
set -euo pipefail
ADVLAB=$1 OUT=$2
[ -f "$OUT" ] || "$ADVLAB" convert --format fashion-mnist --input /usr/share/datasets/fashion-mnist --out "$OUT"
"$ADVLAB" info "$OUT"
