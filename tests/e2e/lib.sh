# tests/e2e/lib.sh: shared setup for the end-to-end tests (sourced).
#   $1 = advlab binary, $2 = work dir (build/testdata/<test>), $3 = dataset file (fixture)
set -euo pipefail
ADVLAB=$1
WORK=$2
DATA=$3
SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PY=${AL_PYTHON:-/usr/bin/python3}
rm -rf "$WORK"
mkdir -p "$WORK"
cd "$WORK"
fail() { echo "FAIL: $*"; exit 1; }
# jq-free JSONL field extraction: last record of a type, one numeric field
jfield() { # file type field
  "$PY" -c "import json,sys
v=None
for l in open(sys.argv[1]):
    r=json.loads(l)
    if r.get('type')==sys.argv[2] and sys.argv[3] in r: v=r[sys.argv[3]]
print(v)" "$1" "$2" "$3"
}
