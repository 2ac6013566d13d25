#!/usr/bin/env bash
# whence (built with --features cuda) vs transformers on one GPU: parity of the
# log-probabilities (f32 and bf16) and bf16 scoring speed / peak GPU memory.
# For a machine with torch + transformers, no Rust toolchain, no network.
# See bench/gpu/README.md.
#
#   bench/gpu/run.sh [WHENCE_BINARY]          # or WHENCE=... bench/gpu/run.sh
#
# Environment (all optional):
#   WHENCE     the whence binary (default: the first argument, else target/release/whence)
#   DEVICE     cuda (default), cuda:N, or cpu (the dry run)
#   PARTS      "parity speed" (default), or one of them
#   SHAPES     "qwen2.5-0.5b qwen2.5-7b" (default)
#   LENGTHS    "2048 8192 32768" (default)
#   REPS       K of the speed part (default 3; K-1 at 32768)
#   DTYPE      dtype of the speed part (default bf16)
#   CKPT_ROOT  where the random checkpoints are made / found (default /tmp/whence-ckpt)
#   RESULTS    output folder (default /tmp/whence-gpu-bench/<date-time>)
#   PYTHON     python with torch + transformers (default python3)
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
WHENCE="${1:-${WHENCE:-$REPO/target/release/whence}}"
DEVICE="${DEVICE:-cuda}"
PARTS="${PARTS:-parity speed}"
SHAPES="${SHAPES:-qwen2.5-0.5b qwen2.5-7b}"
LENGTHS="${LENGTHS:-2048 8192 32768}"
REPS="${REPS:-3}"
DTYPE="${DTYPE:-bf16}"
CKPT_ROOT="${CKPT_ROOT:-/tmp/whence-ckpt}"
RESULTS="${RESULTS:-/tmp/whence-gpu-bench/$(date +%Y%m%d-%H%M%S)}"
PYTHON="${PYTHON:-python3}"

die() { echo "run.sh: $*" >&2; exit 2; }

[ -x "$WHENCE" ] || die "no executable whence at '$WHENCE' (give its path as the first argument or in \$WHENCE)"
WHENCE="$(cd "$(dirname "$WHENCE")" && pwd)/$(basename "$WHENCE")"
"$PYTHON" -c 'import torch, transformers, tokenizers, safetensors, numpy' 2>/dev/null \
  || die "$PYTHON lacks torch / transformers / tokenizers / safetensors / numpy"
mkdir -p "$RESULTS" "$CKPT_ROOT" || die "cannot create $RESULTS or $CKPT_ROOT"

# candle's CUDA backend (cudarc) loads libcuda, cublas, cublasLt, curand and
# nvrtc at run time. Where no CUDA toolkit is installed, the wheels that torch
# brings (site-packages/nvidia/*/lib) have them: put those on the search path.
if [[ "$DEVICE" == cuda* ]]; then
  NV_LIBS="$("$PYTHON" - <<'EOF'
import glob, os
try:
    import nvidia
    roots = list(nvidia.__path__)
except ImportError:
    roots = []
dirs = sorted({os.path.dirname(p) for r in roots for p in glob.glob(os.path.join(r, "**", "lib*.so*"), recursive=True)})
print(":".join(dirs))
EOF
)"
  if [ -n "$NV_LIBS" ]; then
    export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$NV_LIBS"
  fi
  command -v nvidia-smi >/dev/null || echo "run.sh: no nvidia-smi: GPU memory will not be measured" >&2
fi

# What ran where, for the record.
{
  echo "date: $(date -Is)"
  echo "host: $(uname -a)"
  echo "whence: $WHENCE ($("$WHENCE" --version 2>&1 | head -1)), sha256 $(sha256sum "$WHENCE" | cut -c1-16)"
  echo "repo: $(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'no git')"
  echo "device: $DEVICE; parts: $PARTS; shapes: $SHAPES; lengths: $LENGTHS; reps: $REPS; dtype: $DTYPE"
  "$PYTHON" -c 'import sys, torch, transformers; print("python", sys.version.split()[0], "| torch", torch.__version__, "| transformers", transformers.__version__, "| cuda available", torch.cuda.is_available(), "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'
  if command -v nvidia-smi >/dev/null; then nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader; fi
  echo "cpu: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2-)"
  echo "LD_LIBRARY_PATH: ${LD_LIBRARY_PATH:-}"
} | tee "$RESULTS/env.txt"

# Preflight: torch sees the device, and this whence can score on it (a build
# without --features cuda says so here).
if [[ "$DEVICE" == cuda* ]]; then
  "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' || die "torch sees no CUDA device"
fi
printf '{"id":"preflight","prompt":"Hello","response":" world"}\n' > "$RESULTS/preflight.jsonl"
if ! "$WHENCE" score --model "$REPO/tests/reference/fixtures/tiny-qwen2" --device "$DEVICE" --dtype bf16 --template raw \
     --no-cache --out "$RESULTS/preflight.scores.jsonl" "$RESULTS/preflight.jsonl" 2> "$RESULTS/preflight.err"; then
  cat "$RESULTS/preflight.err" >&2
  die "whence cannot score on $DEVICE in bf16 (see above)"
fi

# The 7B checkpoint is about 15.2 GB; make sure it fits before writing it.
if [[ " $PARTS " == *" speed "* && " $SHAPES " == *"qwen2.5-7b"* && ! -e "$CKPT_ROOT/qwen7b-bf16/config.json" ]]; then
  free_kb=$(df -Pk "$CKPT_ROOT" | awk 'NR==2 {print $4}')
  [ "$free_kb" -gt $((17 * 1024 * 1024)) ] || die "$CKPT_ROOT has $((free_kb / 1024 / 1024)) GiB free; the 7B checkpoint needs about 15 GiB"
fi

status=0
for part in $PARTS; do
  case "$part" in
    parity)
      echo "== parity ($DEVICE)" >&2
      "$PYTHON" "$HERE/gpu_bench.py" parity --whence "$WHENCE" --device "$DEVICE" --results "$RESULTS" \
        > "$RESULTS/parity.log" 2> >(tee "$RESULTS/parity.err" >&2) || status=1
      ;;
    speed)
      echo "== speed ($DEVICE, $DTYPE: $SHAPES at $LENGTHS)" >&2
      # shellcheck disable=SC2086  # word lists on purpose
      "$PYTHON" "$HERE/gpu_bench.py" speed --whence "$WHENCE" --device "$DEVICE" --results "$RESULTS" \
        --shapes $SHAPES --lengths $LENGTHS --reps "$REPS" --dtype "$DTYPE" --ckpt-root "$CKPT_ROOT" \
        > "$RESULTS/speed.log" 2> >(tee "$RESULTS/speed.err" >&2) || status=1
      ;;
    *) die "unknown part '$part' (parity, speed)" ;;
  esac
done

"$PYTHON" "$HERE/gpu_bench.py" table --results "$RESULTS" > /dev/null
echo
cat "$RESULTS/results.md"
echo
echo "results: $RESULTS (results.md, results.jsonl, env.txt, *.log, *.err)"
[ "$status" -eq 0 ] || echo "run.sh: some checks failed or a run broke; see $RESULTS/*.err" >&2
exit "$status"
