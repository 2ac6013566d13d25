#!/usr/bin/env bash
# Runs one fuzz target the way the recorded runs were made:
#   fuzz/run.sh TARGET [SECONDS] [cargo fuzz options, e.g. --features serve]
# New inputs go to $CARGO_TARGET_DIR/fuzz-corpus/TARGET (not committed); the
# committed seeds are read from fuzz/seeds/TARGET; the logs are in
# $CARGO_TARGET_DIR/fuzz-logs/TARGET-TIME/ (run.log; with -jobs=1 libFuzzer's own
# output goes to fuzz-0.log in the working directory, here that folder);
# crashes land in fuzz/artifacts/TARGET/.
set -euo pipefail
target="$1"
seconds="${2:-600}"
shift $(( $# < 2 ? $# : 2 ))
cd "$(dirname "$0")/.."
out="${CARGO_TARGET_DIR:-fuzz/target}"
mkdir -p "$out/fuzz-corpus/$target" "$out/fuzz-logs"
mkdir -p "fuzz/artifacts/$target"
root="$(pwd)"
out="$(realpath "$out")"
logs="$out/fuzz-logs/$target-$(date -u +%Y%m%dT%H%M%S)"
mkdir -p "$logs"
cd "$logs"
cargo +nightly fuzz run --fuzz-dir "$root/fuzz" "$@" -a --target-dir "$out" "$target" "$out/fuzz-corpus/$target" "$root/fuzz/seeds/$target" -- \
  -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -jobs=1 -workers=1 -print_final_stats=1 \
  -artifact_prefix="$root/fuzz/artifacts/$target/" >run.log 2>&1 || status=$?
mkdir -p "$root/fuzz/artifacts/$target"
tail -n 30 fuzz-0.log 2>/dev/null || tail -n 30 run.log
exit "${status:-0}"
