#!/usr/bin/env python3
"""bf16 parity on the benchmark's own model and sequence: max and mean
|Δ log-prob| of whence bf16 (and transformers bf16) against the f32
reference, per token, on the Qwen2.5-0.5B-shape checkpoint.

    /tmp/refenv/bin/python bench/checkpoint/parity.py                       # 2048 ids of run.py's seed
    /tmp/refenv/bin/python bench/checkpoint/parity.py --length 512 --out parity.json

The f32 reference is transformers in f32 on the f32 checkpoint (run.py's
--speed-model); bf16 runs use its bf16 rounding (--speed-model-bf16), as the
tiny fixtures of tests/reference do. whence f32 runs on the f32 checkpoint as
a check of the reference (it matches transformers to ~1e-5). whence runs are
the benchmark driver (driver/, WHENCE_BENCH_LOGPROBS), so the kernels are
those of the speed table; transformers' are sdpa, logits cast to f32 before
the log-softmax. 2 threads each. Prints a markdown table; --out keeps the
figures as JSON.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR_BENCH", "/tmp/target-benchckpt"))


def ids_file(workdir, length, seed):
    """The ids run.py scores (same file name, same generator)."""
    import random

    path = workdir / f"ids-{length}-seed{seed}.txt"
    if not path.exists():
        rng = random.Random(seed)
        workdir.mkdir(parents=True, exist_ok=True)
        path.write_text(" ".join(str(rng.randrange(1000)) for _ in range(length)) + "\n")
    return path


def whence(driver, model, ids, dtype):
    with tempfile.NamedTemporaryFile("r", suffix=".txt") as out:
        env = dict(os.environ, WHENCE_BENCH_LOGPROBS=out.name, RAYON_NUM_THREADS="2")
        subprocess.run([str(driver), "--dtype", dtype, str(model), str(ids), "1", "0"], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        return [float(line) for line in Path(out.name).read_text().split()]


def transformers(model, ids, dtype):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(2)
    tokens = [int(x) for x in Path(ids).read_text().split()]
    torch_dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype]
    m = AutoModelForCausalLM.from_pretrained(model, dtype=torch_dtype, attn_implementation="sdpa").eval()
    input_ids = torch.tensor([tokens], dtype=torch.long)
    with torch.inference_mode():
        logits = m(input_ids=input_ids).logits[0, :-1].float()
        logprobs = torch.log_softmax(logits, dim=-1).gather(1, input_ids[0, 1:].unsqueeze(1)).squeeze(1)
    return logprobs.tolist()


def compare(a, b):
    assert len(a) == len(b), (len(a), len(b))
    d = [abs(x - y) for x, y in zip(a, b)]
    return {"max": max(d), "mean": sum(d) / len(d), "positions": len(d)}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, default=Path("/tmp/whence-ckpt/qwen05"))
    p.add_argument("--model-bf16", type=Path, default=Path("/tmp/whence-ckpt/qwen05-bf16"))
    p.add_argument("--length", type=int, default=2048)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workdir", type=Path, default=Path("/tmp/whence-bench-ckpt"))
    p.add_argument("--driver", type=Path, default=TARGET / "release" / "whence-bench-checkpoint")
    p.add_argument("--out", type=Path)
    args = p.parse_args()
    if not args.driver.exists():
        sys.exit(f"no driver at {args.driver}\nhint: (cd {HERE / 'driver'} && CARGO_TARGET_DIR={TARGET} cargo build --release)")
    ids = ids_file(args.workdir, args.length, args.seed)
    reference = transformers(args.model, ids, "f32")
    runs = {
        "whence f32": whence(args.driver, args.model, ids, "f32"),
        "whence bf16": whence(args.driver, args.model_bf16, ids, "bf16"),
        "transformers bf16 (sdpa)": transformers(args.model_bf16, ids, "bf16"),
    }
    results = {name: compare(values, reference) for name, values in runs.items()}
    results["whence bf16 vs transformers bf16"] = compare(runs["whence bf16"], runs["transformers bf16 (sdpa)"])
    print(f"Qwen2.5-0.5B shape, {args.length} ids (seed {args.seed}), against transformers f32 on the f32 checkpoint:")
    print("| scorer | max \\|Δ log-prob\\| | mean \\|Δ log-prob\\| |")
    print("|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['max']:.4g} | {r['mean']:.4g} |")
    if args.out:
        args.out.write_text(json.dumps({"length": args.length, "seed": args.seed, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
