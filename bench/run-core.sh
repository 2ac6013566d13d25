#!/usr/bin/env bash
# Segment + align + classify throughput, whence vs the Python baseline, on the
# same synthetic input. Usage: bash bench/run-core.sh [TRAJECTORIES] [DIR]
# Results are printed as JSON lines; bench/README.md holds the table.
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-100000}
dir=${2:-/tmp/whence-bench-$n}
if [ ! -f "$dir/records.jsonl" ]; then
  python3 bench/python/make_synthetic.py --trajectories "$n" --seed 1 --out "$dir"
fi
cargo build --release --locked -p whence-cli
echo "# machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load: $(cut -d' ' -f1-3 /proc/loadavg)"

echo "# core only (loading untimed), whence, best of 5:"
cargo bench -q --locked -p whence-pipeline --bench core_throughput -- "$dir" --repeat 5

echo "# core only (loading untimed), Python baseline, one run:"
python3 bench/python/baseline.py "$dir"

echo "# end to end (read, segment, align, classify, write actions), wall seconds and peak RSS:"
out=$(mktemp -d)
/usr/bin/time -f "whence trace: %e s, %M KB" target/release/whence -q trace "$dir/records.jsonl" \
  --teacher "file:$dir/teacher.jsonl" --student "file:$dir/student.jsonl" --distilled "file:$dir/distilled.jsonl" \
  --beta 0.1 --format jsonl --out "$out/whence"
/usr/bin/time -f "python baseline: %e s, %M KB" python3 bench/python/baseline.py "$dir" --out "$out/python.jsonl" >/dev/null
rm -rf "$out"
