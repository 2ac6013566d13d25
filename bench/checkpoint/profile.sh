#!/usr/bin/env bash
# Profiles the whence driver scoring one sequence (default: 2048 tokens of the
# qwen2.5-0.5b-shaped checkpoint) with perf, two ways:
#  1. perf record -e cpu-clock -g, 2 threads (as benchmarked): flat top symbols;
#  2. perf record --call-graph dwarf, 1 thread: samples attributed to the
#     innermost line of decoder.rs (candle ops, which run on the calling
#     thread) or of the whence-checkpoint kernel that ran them (linear.rs,
#     attention.rs, kernels.rs: rayon tasks) by profile_breakdown.py.
# Usage: bash bench/checkpoint/profile.sh [TOKENS] [MODEL_DIR] [OUT_DIR]
set -euo pipefail
cd "$(dirname "$0")"
tokens=${1:-2048}
model=${2:-/tmp/whence-ckpt/qwen05}
out=${3:-/tmp/whence-bench-ckpt/profile-$tokens}
target=${CARGO_TARGET_DIR_BENCH:-/tmp/target-benchckpt}
driver=$target/release/whence-bench-checkpoint
mkdir -p "$out"
(cd driver && CARGO_TARGET_DIR=$target cargo build --release -q)
# the decoder source the binary was built from, for the line attribution
cp ../../crates/whence-checkpoint/src/decoder.rs "$out/decoder.rs"
ids=/tmp/whence-bench-ckpt/ids-$tokens-seed1.txt
[ -f "$ids" ] || /tmp/refenv/bin/python -c "import random,sys; r=random.Random(1); print(' '.join(str(r.randrange(1000)) for _ in range($tokens)))" > "$ids"
echo "# load: $(cut -d' ' -f1-3 /proc/loadavg)"

RAYON_NUM_THREADS=2 perf record -q -e cpu-clock -g -o "$out/perf-flat.data" -- "$driver" "$model" "$ids" 1 0
perf report -i "$out/perf-flat.data" --no-children --sort symbol --stdio -g none --percent-limit 0.5 2>/dev/null \
  | grep '%' | grep -v '^#' | sed -E 's/ +- +- +$//' > "$out/top-symbols.txt"
perf report -i "$out/perf-flat.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep '%' | grep -v '^#' > "$out/dso.txt"
echo "## top symbols, 2 threads (self time)"; head -25 "$out/top-symbols.txt"
echo "## by DSO"; cat "$out/dso.txt"

RAYON_NUM_THREADS=1 perf record -q -e cpu-clock -F 99 --call-graph dwarf,32768 -o "$out/perf-dwarf.data" -- "$driver" "$model" "$ids" 1 0
perf script -i "$out/perf-dwarf.data" -F tid,ip,sym --no-inline 2>/dev/null > "$out/script.txt"
/tmp/refenv/bin/python profile_breakdown.py "$out/script.txt" "$driver" --source "$out/decoder.rs" | tee "$out/breakdown.txt"
echo "# load: $(cut -d' ' -f1-3 /proc/loadavg)"
