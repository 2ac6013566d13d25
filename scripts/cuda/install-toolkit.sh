#!/usr/bin/env bash
# Installs what `cargo build --features cuda` needs on a machine with no GPU
# and no system CUDA: nvcc, the CUDA headers and the CUDA libraries, all from
# NVIDIA's PyPI wheels, plus a link stub for the driver library (libcuda).
#
#   scripts/cuda/install-toolkit.sh [--compile-only] [DIR]   (DIR: target/cuda-toolkit)
#   . DIR/env.sh
#   cargo build --release -p whence-cli --features cuda
#
# --compile-only installs only nvcc and the headers: enough for `cargo check
# --features cuda` (which compiles candle's kernels but links nothing). That
# is what .ci/run does.
#
# The toolkit is pinned to CUDA 13.0 (cuda-toolkit 13.0.3 on PyPI): cudarc
# 0.19 (candle 0.11) refuses newer nvcc releases, and a GPU machine with
# driver 580 cannot load code built by a newer toolkit. CUDA_COMPUTE_CAP
# (default 90, an H100/H200) picks the GPU generation the kernels are built
# for, since there is no GPU here to ask; set it before sourcing env.sh.
#
# env.sh sets PATH, CUDA_ROOT/CUDA_PATH and CUDA_COMPUTE_CAP only: it does
# not touch LD_LIBRARY_PATH, because the libcuda here is a stub (every call
# answers "no CUDA device"). On the GPU machine the real driver and the CUDA
# libraries of its torch install are found through LD_LIBRARY_PATH (see
# bench/gpu/README.md).
set -euo pipefail

compile_only=0
if [ "${1:-}" = "--compile-only" ]; then
  compile_only=1
  shift
fi
dir="${1:-target/cuda-toolkit}"
version="13.0.3"
extras="nvcc,cccl"
[ "$compile_only" = 1 ] || extras="$extras,cudart,nvrtc,curand,cublas"

mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
python="${PYTHON:-python3}"
"$python" -m pip install --quiet --no-cache-dir --disable-pip-version-check --root-user-action=ignore \
  --target "$dir/site" "cuda-toolkit[$extras]==$version"

root="$dir/site/nvidia/cu13"
[ -x "$root/bin/nvcc" ] || { echo "error: no nvcc at $root/bin/nvcc after installing cuda-toolkit[$extras]==$version" >&2; exit 1; }

# The wheels ship versioned sonames only (libcublas.so.13); the linker's
# `-lcublas` wants the unversioned name.
for lib in "$root"/lib/lib*.so.*; do
  [ -e "$lib" ] || continue
  base="$(basename "$lib")"
  plain="${base%%.so.*}.so"
  [ -e "$root/lib/$plain" ] || ln -s "$base" "$root/lib/$plain"
done

if [ "$compile_only" = 0 ]; then
  # cudarc's build script searches $CUDA_ROOT/lib/stubs, as for a system toolkit.
  bash "$(dirname "$0")/libcuda-stub.sh" "$root/lib/stubs"
fi

cat > "$dir/env.sh" <<ENV
# Made by scripts/cuda/install-toolkit.sh: source it before building with --features cuda.
export PATH="$root/bin:\$PATH"
export CUDA_ROOT="$root"
export CUDA_PATH="$root"
export CUDA_COMPUTE_CAP="\${CUDA_COMPUTE_CAP:-90}"
ENV
"$root/bin/nvcc" --version | tail -2
echo "CUDA $version toolkit in $dir ($(du -sh "$dir" | cut -f1)); now: . $dir/env.sh"
