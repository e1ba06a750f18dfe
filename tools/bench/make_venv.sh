#!/usr/bin/env bash
# tools/bench/make_venv.sh: the CPU speed anchor for the benchmarks -- PyTorch 2.x from PyPI
# (MKL + oneDNN) in a virtualenv at .venv-bench/. Several GB; made on demand by the
# benchmark scripts, never by CI. Debian's python3-torch 1.13 links a slow reference BLAS
# and is only the correctness reference in tests.
set -euo pipefail
cd "$(dirname "$0")/../.."
VENV=${ADVLAB_BENCH_VENV:-.venv-bench}
if [ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c "import torch, numpy" 2>/dev/null; then
  exit 0
fi
/usr/bin/python3 -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q torch numpy
"$VENV/bin/python" -c "import torch; print('bench venv: torch', torch.__version__, 'threads', torch.get_num_threads())"
