#!/usr/bin/env bash
# Writes a link stub of the CUDA driver library, DIR/libcuda.so (soname
# libcuda.so.1), as CUDA toolkits ship in lib/stubs: a shared library that
# defines every driver function cudarc declares, each returning
# CUDA_ERROR_NO_DEVICE (100). It lets a `--features cuda` binary link on a
# machine without the NVIDIA driver; on a GPU machine the real libcuda.so.1
# is loaded instead. Run with the stub on LD_LIBRARY_PATH, the binary starts
# and `--device cuda` fails with a clean "no CUDA device" error.
#
#   scripts/cuda/libcuda-stub.sh DIR
set -euo pipefail
out="${1:?usage: libcuda-stub.sh DIR}"
cargo_home="${CARGO_HOME:-$HOME/.cargo}"
# The function list comes from cudarc's own bindings, so the stub follows the
# cudarc version in Cargo.lock.
bindings="$(ls -d "$cargo_home"/registry/src/*/cudarc-*/src/driver/sys/mod.rs 2>/dev/null | sort -V | tail -1)"
if [ -z "$bindings" ]; then
  echo "error: cudarc's sources are not under $cargo_home/registry/src" >&2
  echo "hint: run \`cargo fetch --locked\` first" >&2
  exit 1
fi
mkdir -p "$out"
src="$(mktemp --suffix .c)"
trap 'rm -f "$src"' EXIT
grep -oP '^pub unsafe fn \Kcu\w+(?=\()' "$bindings" | sort -u |
  awk '{ print "int " $1 "(void) { return 100; }" }' > "$src"
count="$(wc -l < "$src")"
[ "$count" -gt 100 ] || { echo "error: found only $count driver functions in $bindings" >&2; exit 1; }
cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$out/libcuda.so.1" "$src"
ln -sf libcuda.so.1 "$out/libcuda.so"
echo "libcuda stub: $count functions from $bindings -> $out/libcuda.so.1"
