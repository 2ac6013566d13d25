#!/usr/bin/env bash
# The Python API against the command line on one job: `trace` of N
# synthetic trajectories on `file:` scores, Parquet outputs written.
# Usage: bench/python-api/run.sh [N] (default 100000). Needs a venv with the
# wheel installed (PYTHON, default python3) and the release binary (WHENCE,
# default target/release/whence).
set -euo pipefail
cd "$(dirname "$0")/../.."
n="${1:-100000}"
python="${PYTHON:-python3}"
whence="${WHENCE:-target/release/whence}"
data="${DATA:-/tmp/whence-bench-$n}"
[ -f "$data/records.jsonl" ] || python3 bench/python/make_synthetic.py --trajectories "$n" --seed 1 --out "$data"
mkdir -p /tmp/whence-bench-out
cli=("$whence" -q trace "$data/records.jsonl" --teacher "file:$data/teacher.jsonl" --student "file:$data/student.jsonl"
  --distilled "file:$data/distilled.jsonl" --out /tmp/whence-bench-out/cli)
api=("$python" bench/python-api/trace.py "$data" /tmp/whence-bench-out/api)
"${cli[@]}"; "${api[@]}"
for name in actions trajectories positions; do
  cmp "/tmp/whence-bench-out/cli/$name.parquet" "/tmp/whence-bench-out/api/$name.parquet"
done
echo "outputs identical; timing with /usr/bin/time -v, 3 runs each, alternating"
for i in 1 2 3; do
  for side in cli api; do
    if [ "$side" = cli ]; then cmd=("${cli[@]}"); else cmd=("${api[@]}"); fi
    /usr/bin/time -f "$side wall %e s, user %U s, max RSS %M KB" "${cmd[@]}" > /dev/null
  done
done
