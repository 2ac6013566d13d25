#!/usr/bin/env bash
# Scoring throughput through 1, 2 and 4 `whence serve` endpoints, against
# in-process scoring of the same checkpoint: `whence score` over the same
# records, no cache, wall time and tokens/s. Servers get the machine's cores
# split between them (--threads), so on one machine more endpoints share the
# same cores; on a cluster each endpoint is its own node.
#
#   bash bench/server/run.sh WHENCE CHECKPOINT RECORDS.jsonl [ENDPOINTS...]
#
# e.g. bash bench/server/run.sh target/release/whence /tmp/whence-ckpt/narrow examples/synthetic/records.jsonl 1 2 4
set -euo pipefail
whence=$1 checkpoint=$2 records=$3
shift 3
counts=("$@")
[ $# -eq 0 ] && counts=(1 2 4)
cores=$(nproc)
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT

calc() { python3 -c "print($1)"; }
tokens() { python3 -c "import json,sys; print(sum(len(json.loads(l)['logprobs']) for l in open(sys.argv[1])))" "$1"; }

echo "machine: $cores cores, load $(cut -d' ' -f1-3 /proc/loadavg); checkpoint $checkpoint; $(wc -l < "$records") records"
start=$(date +%s.%N)
"$whence" -q score --model "$checkpoint" --input "$records" --out "$work/inproc.jsonl" --no-cache
end=$(date +%s.%N)
n=$(tokens "$work/inproc.jsonl")
printf "| in-process | %.2f s | %.0f tokens/s |\n" "$(calc "$end - $start")" "$(calc "$n / ($end - $start)")"

for count in "${counts[@]}"; do
  threads=$(( cores / count )); [ "$threads" -lt 1 ] && threads=1
  urls=()
  pids=()
  for i in $(seq "$count"); do
    "$whence" serve "$checkpoint" --port 0 --threads "$threads" 2> "$work/serve$i.log" &
    pids+=($!)
  done
  for i in $(seq "$count"); do
    until grep -q "listening on" "$work/serve$i.log"; do sleep 0.1; done
    urls+=("$(grep -o 'http://[0-9.:]*/v1' "$work/serve$i.log")")
  done
  spec="vllm+$(IFS=,; echo "${urls[*]}")"
  start=$(date +%s.%N)
  "$whence" -q score --model "$spec" --tokenizer "$checkpoint" --input "$records" --out "$work/served$count.jsonl" \
    --no-cache --max-in-flight $((2 * count))
  end=$(date +%s.%N)
  cmp -s "$work/inproc.jsonl" "$work/served$count.jsonl" && same="identical to in-process" || same="DIFFERENT from in-process"
  printf "| %d endpoint(s) × %d thread(s) | %.2f s | %.0f tokens/s | %s |\n" "$count" "$threads" \
    "$(calc "$end - $start")" "$(calc "$n / ($end - $start)")" "$same"
  kill "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
done
