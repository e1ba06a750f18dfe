#!/usr/bin/env bash
# tools/quickstart.sh: the README's main command. On a fresh Debian 12 machine: install
# packages, build advlab, convert Debian's Fashion-MNIST to HDF5, train SmallCNN with PGD-AT
# (Linf eps 0.1) and evaluate PGD-20 (eps 0.1, step 0.01, random start) on the 10k test split.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
BUILD=${ADVLAB_BUILD:-build-quick}
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DADVLAB_CUDA=OFF >/dev/null
ninja -C "$BUILD" advlab
ADVLAB="$BUILD/advlab"
mkdir -p data runs
[ -f data/fashion-mnist.h5 ] || "$ADVLAB" convert --format fashion-mnist \
    --input /usr/share/datasets/fashion-mnist --out data/fashion-mnist.h5
"$ADVLAB" train experiments/quickstart/fmnist_smallcnn_pgdat.ini "$@"
"$ADVLAB" attack --ckpt runs/quickstart/checkpoint.h5 --data data/fashion-mnist.h5 --split test \
    --attack pgd --norm linf --eps 0.1 --alpha 0.01 --steps 20 --random-init uniform --n 0 \
    --save runs/quickstart/pgd20.h5
