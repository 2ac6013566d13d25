#!/usr/bin/env bash
# Runs whence's main jobs on the built-in example: 48 synthetic reasoning
# traces with precomputed token log-probabilities under a teacher, a student
# and a distilled model (examples/synthetic, made by
# bench/python/make_synthetic.py --trajectories 48 --seed 7).
# Outputs go to out/example/.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --locked -p whence-cli
whence=target/release/whence
data=examples/synthetic
out=out/example
mkdir -p "$out"

"$whence" trace "$data/records.jsonl" \
  --teacher "file:$data/teacher.jsonl" \
  --student "file:$data/student.jsonl" \
  --distilled "file:$data/distilled.jsonl" \
  --format jsonl --out "$out/trace"

# Before training: keep, per question, the response richest in teacher-only sentences.
"$whence" select "$data/records.jsonl" \
  --teacher "file:$data/teacher.jsonl" \
  --student "file:$data/student.jsonl" \
  --out "$out/selected.jsonl"

"$whence" report "$out/trace" --quiet

echo
echo "summary of the trace ($out/trace/summary.json):"
python3 - "$out/trace/summary.json" <<'PY' 2>/dev/null || cat "$out/trace/summary.json"
import json, sys
s = json.load(open(sys.argv[1]))
print(f"  {s['trajectories']} trajectories, {s['actions']} actions, beta = {s['beta']} ({s['beta_mode']})")
for label, n in s["label_counts"].items():
    if n:
        print(f"  {label:9} {n:6}  {100 * n / s['actions']:5.1f}%")
PY
echo
echo "report: $out/trace/report/index.html (figures in $out/trace/report/figures/)"
