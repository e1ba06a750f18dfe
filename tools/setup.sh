#!/usr/bin/env bash
# tools/setup.sh: install the Debian 12 packages advlab builds, tests and runs with.
# Idempotent: installs only what is missing. Needs root (or sudo) the first time.
#   libhdf5-dev        datasets, checkpoints, attack outputs (formats.md)
#   libopenblas-dev    CPU SGEMM behind conv/linear
#   libinih-dev        INI experiment configs
#   zlib1g-dev         reading the .gz IDX files of (Fashion-)MNIST
#   cmake ninja-build pkg-config gcc   the build
#   python3-torch python3-h5py python3-numpy python3-scipy python3-venv
#                      the correctness references used by the tests (Debian's torch 1.13)
#   dataset-fashion-mnist   the real data of the quick start and the end-to-end tests
set -euo pipefail
PKGS=(cmake ninja-build pkg-config gcc g++ make libhdf5-dev libopenblas-dev libinih-dev zlib1g-dev
      python3 python3-torch python3-h5py python3-numpy python3-scipy python3-venv
      dataset-fashion-mnist)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: all ${#PKGS[@]} packages present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
