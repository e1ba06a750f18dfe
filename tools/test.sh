#!/usr/bin/env bash
# tools/test.sh: set up, build (CUDA compiled when nvcc exists; forced ON in CI) and run every
# test. This is the README's test command and exactly what CI runs (.ci/run).
#   1. tools/setup.sh                  Debian packages
#   2. build/         Release build, -Werror, CUDA ON when nvcc is present -> ctest (all labels)
#   3. build-asan/    host code under ASan + UBSan, CUDA OFF -> ctest -L asan
#   4. build-sim/     the CUDA backend on the simcuda emulator (tests/simcuda) -> ctest -L cuda:
#                     every CUDA twin test runs here, where there is no GPU
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
JOBS=$(nproc)
CUDA=OFF
if command -v nvcc >/dev/null 2>&1 || [ -x /usr/local/cuda/bin/nvcc ]; then
  CUDA=ON
  export PATH="$PATH:/usr/local/cuda/bin"
fi
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DADVLAB_WERROR=ON -DADVLAB_CUDA=$CUDA
ninja -C build -j"$JOBS"
ctest --test-dir build --output-on-failure -j"$JOBS" --timeout 900
cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DADVLAB_SANITIZE=ON \
      -DADVLAB_CUDA=OFF -DADVLAB_WERROR=ON
ninja -C build-asan -j"$JOBS"
ASAN_OPTIONS=detect_leaks=1 ctest --test-dir build-asan --output-on-failure -j"$JOBS" -L asan --timeout 900
cmake -S . -B build-sim -G Ninja -DCMAKE_BUILD_TYPE=Release -DADVLAB_SIMCUDA=ON -DADVLAB_CUDA=OFF \
      -DADVLAB_WERROR=ON
ninja -C build-sim -j"$JOBS"
ctest --test-dir build-sim --output-on-failure -j"$JOBS" -L cuda --timeout 900
