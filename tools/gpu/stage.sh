#!/usr/bin/env bash
# stage.sh: run HERE (a Debian bookworm box with apt), not on the GPU machine.
# The lent GPU machine has nvcc, CMake, ninja and PyTorch (cuDNN/cuBLAS/NCCL wheels) but no
# package registry and no HDF5/OpenBLAS/inih headers. This downloads the .deb files listed in
# tools/gpu/deps.list plus their run-time dependency closure into .gpu-deps/debs/ (compressed:
# ~20 MiB, well under the 64 MiB the device tool carries), makes git ignore .gpu-deps/ through
# .git/info/exclude, and checks the result: unpack into a scratch prefix, then pkg-config
# must resolve every module from that prefix in a clean environment.
# Usage: tools/gpu/stage.sh            (then: device run with carry [".gpu-deps"], command
#                                       "bash tools/gpu/run.sh")
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(git -C "$here" rev-parse --show-toplevel)
deps=$root/.gpu-deps
cd "$root"

# ignore the staged folder locally (.gitignore belongs to the lead)
exclude=$(git rev-parse --git-path info/exclude)
mkdir -p "$(dirname "$exclude")"
grep -qxF '/.gpu-deps/' "$exclude" 2>/dev/null || echo '/.gpu-deps/' >>"$exclude"

mapfile -t roots < <(grep -v '^\s*#' "$here/deps.list" | grep -v '^\s*$')
# C/C++ runtime and base packages come from the machine itself: a second glibc or libstdc++
# in LD_LIBRARY_PATH would break every program.
skip='^(libc6|libc6-dev|libgcc-s1|libstdc\+\+6|gcc-12-base|debconf|perl-base|dpkg|tar|libcrypt1|libselinux1|libpcre2-8-0|libzstd1|liblzma5|libbz2-1.0|libmd0|libssl3|libc-dev-bin|linux-libc-dev|libcrypt-dev|libnsl-dev|libtirpc-dev|rpcsvc-proto)$'
mapfile -t closure < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
    --no-breaks --no-replaces --no-enhances "${roots[@]}" 2>/dev/null |
    grep -v '^ ' | grep -v '^<' | sort -u | grep -Ev "$skip")
# keep only the -dev packages we named (their -dev dependencies pull in half the archive)
pkgs=()
for p in "${closure[@]}"; do
    case " ${roots[*]} " in *" $p "*) pkgs+=("$p"); continue ;; esac
    case "$p" in *-dev) continue ;; esac
    pkgs+=("$p")
done

rm -rf "$deps/debs"
mkdir -p "$deps/debs"
(cd "$deps/debs" && apt-get download "${pkgs[@]}" 2>&1 | grep -v '^W: Download is performed unsandboxed' || true)
n=$(ls "$deps/debs"/*.deb | wc -l)
[ "$n" -eq "${#pkgs[@]}" ] || { echo "stage.sh: got $n of ${#pkgs[@]} packages" >&2; exit 1; }
echo "stage.sh: ${#pkgs[@]} packages, $(du -sh "$deps" | cut -f1) in $deps"

# verify: unpack as run.sh will, then resolve every module in a clean environment
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
bash "$here/unpack.sh" "$deps/debs" "$scratch/p" >/dev/null
env -i PATH=/usr/bin:/bin HOME="$HOME" bash -euo pipefail -c "
    . '$scratch/p/env.sh'
    for m in hdf5-serial openblas inih zlib; do
        printf '%-12s %-10s ' \$m \$(pkg-config --modversion \$m)
        flags=\$(pkg-config --cflags --libs \$m)
        echo \"\$flags\"
        for f in \$flags; do case \$f in -I*|-L*) d=\${f:2}
            case \$d in '$scratch'/*) [ -d \"\$d\" ] || { echo \"missing dir \$d\"; exit 1; } ;;
                        *) echo \"\$m: \$f is outside the staged prefix\"; exit 1 ;; esac ;; esac; done
    done
    test -e \"\$(pkg-config --variable=libdir openblas)/libopenblas.so\"
    echo 'stage.sh: pkg-config resolves every module from the staged prefix'
"
