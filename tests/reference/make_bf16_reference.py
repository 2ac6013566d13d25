#!/usr/bin/env python3
"""bf16 reference log-probabilities of the tiny checkpoints, from Hugging Face
`transformers`, next to the f32 reference of `expected/<name>.json`.

    python tests/reference/make_bf16_reference.py                 # write fixtures/expected-bf16/*.json
    python tests/reference/make_bf16_reference.py --check         # recompute and compare, write nothing

For each checkpoint in fixtures/ (tiny-qwen2, tiny-qwen3, tiny-llama3,
tiny-mistral) and each case of `expected/<name>.json` (the same input_ids,
batch 1, no attention mask), the model is loaded with
`from_pretrained(dir, dtype=torch.bfloat16, attn_implementation=...)` once
with "sdpa" and once with "eager"; the logits (bf16) are cast to float32
before `log_softmax` over all `config.vocab_size` logits, and
`logprobs[k] = log_softmax(logits[k])[input_ids[k+1]]` as in the f32 files.

Stored per case: the sdpa values (`logprobs`), the eager values
(`eager_logprobs`), and max / mean |difference| of each against the f32
reference and of eager against sdpa. Floats are the shortest decimal that
round-trips to the same float32 (numpy's float32 repr), so the files stay
small; parsed as f32 they give back the computed values exactly.

The run is deterministic (torch.set_num_threads(1), deterministic
algorithms, seeded); `--check` recomputes everything and fails on any
difference larger than --tol (default 0: bit-identical, as on the machine that
made the files; another CPU's bf16 kernels may differ in the last bits).
See README.md ("bf16 reference") for the figures.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)
torch.manual_seed(0)

import safetensors  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

FORMAT_VERSION = 1
HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
CHECKPOINTS = ["tiny-qwen2", "tiny-qwen3", "tiny-llama3", "tiny-mistral"]
ATTNS = ("sdpa", "eager")


def f32_repr(v: float) -> float:
    """The shortest decimal that round-trips to the same float32, as a Python float."""
    return float(repr(np.float32(v)).removeprefix("np.float32(").removesuffix(")"))


def token_logprobs(model, ids: list[int]) -> list[float]:
    """logprobs[k] = log_softmax(f32(logits[k]))[ids[k+1]], k = 0..n-2."""
    x = torch.tensor([ids], dtype=torch.long)
    with torch.inference_mode():
        logits = model(input_ids=x).logits[0].float()
    lp = torch.log_softmax(logits, dim=-1)
    vals = lp[:-1].gather(1, x[0, 1:, None])[:, 0]
    assert vals.dtype == torch.float32
    return [f32_repr(v) for v in vals.tolist()]


def load(ckdir: Path, attn: str):
    model = AutoModelForCausalLM.from_pretrained(ckdir, dtype=torch.bfloat16, attn_implementation=attn)
    model.eval()
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    return model


def diff(a: list[float], b: list[float]) -> tuple[float, float]:
    """max and mean |a - b| (float64 over the float32 values), rounded for the files."""
    d = np.abs(np.asarray(a, dtype=np.float32).astype(np.float64) - np.asarray(b, dtype=np.float32).astype(np.float64))
    return float(d.max()), float(d.mean())


def r(x: float) -> float:
    """A figure for the summary: 4 significant digits."""
    return float(f"{x:.4g}")


def versions() -> dict:
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
        "numpy": np.__version__,
    }


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def compute(name: str) -> dict:
    ckdir = FIXTURES / name
    ref_path = FIXTURES / "expected" / f"{name}.json"
    ref = json.loads(ref_path.read_text(encoding="utf-8"))
    values = {}
    for attn in ATTNS:
        model = load(ckdir, attn)
        values[attn] = [token_logprobs(model, c["input_ids"]) for c in ref["cases"]]
        del model
    cases = []
    all_sdpa, all_eager, all_ref = [], [], []
    for i, c in enumerate(ref["cases"]):
        sdpa, eager, f32 = values["sdpa"][i], values["eager"][i], c["logprobs"]
        assert len(sdpa) == len(f32) == c["num_tokens"] - 1
        all_sdpa += sdpa
        all_eager += eager
        all_ref += f32
        s_max, s_mean = diff(sdpa, f32)
        e_max, e_mean = diff(eager, f32)
        es_max, es_mean = diff(eager, sdpa)
        lo = c["first_response_token"] - 1
        cases.append(
            {
                "name": c["name"],
                "num_tokens": c["num_tokens"],
                "input_ids_sha256": hashlib.sha256(json.dumps(c["input_ids"]).encode()).hexdigest()[:16],
                "vs_f32": {"max_abs": r(s_max), "mean_abs": r(s_mean)},
                "eager_vs_f32": {"max_abs": r(e_max), "mean_abs": r(e_mean)},
                "eager_vs_sdpa": {"max_abs": r(es_max), "mean_abs": r(es_mean)},
                "response_logprob_sum": {
                    "bf16_sdpa": r(float(np.sum(np.asarray(sdpa[lo:], dtype=np.float64)))),
                    "f32": r(c["response_logprob_sum"]),
                },
                "logprobs": sdpa,
                "eager_logprobs": eager,
            }
        )
    s_max, s_mean = diff(all_sdpa, all_ref)
    e_max, e_mean = diff(all_eager, all_ref)
    es_max, es_mean = diff(all_eager, all_sdpa)
    return {
        "format_version": FORMAT_VERSION,
        "checkpoint": name,
        "generator": {
            "script": "tests/reference/make_bf16_reference.py",
            "versions": versions(),
            "f32_reference": f"expected/{name}.json",
            "f32_reference_sha256": sha256_file(ref_path),
        },
        "disk_dtype": ref["disk_dtype"],
        "compute": (
            "transformers from_pretrained(dtype=torch.bfloat16) (weights rounded to bf16 from the disk dtype), "
            "attn_implementation 'sdpa' (logprobs) and 'eager' (eager_logprobs), CPU, 1 thread, batch 1, "
            "no attention mask; logits cast to float32 before log_softmax over all config.vocab_size logits"
        ),
        "rules": {
            "logprobs": "logprobs[k] = log_softmax(float32(logits[k]))[input_ids[k+1]], k = 0..num_tokens-2; input_ids from the f32 reference's case of the same name",
            "floats": "shortest decimal that round-trips to the float32 value",
            "diffs": "max / mean |a - b| over the case's num_tokens-1 positions, float64, rounded to 4 significant digits",
        },
        "summary": {
            "positions": len(all_ref),
            "vs_f32": {"max_abs": r(s_max), "mean_abs": r(s_mean)},
            "eager_vs_f32": {"max_abs": r(e_max), "mean_abs": r(e_mean)},
            "eager_vs_sdpa": {"max_abs": r(es_max), "mean_abs": r(es_mean)},
        },
        "cases": cases,
    }


# Compact JSON: objects indented, lists of scalars on one line (as make_reference.py).
def dumps(obj, level: int = 0) -> str:
    pad, pad1 = "  " * level, "  " * (level + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{pad1}{json.dumps(k, ensure_ascii=False)}: {dumps(v, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and any(isinstance(x, (dict, list)) for x in obj):
        return "[\n" + ",\n".join(pad1 + dumps(v, level + 1) for v in obj) + "\n" + pad + "]"
    if isinstance(obj, float):
        assert math.isfinite(obj)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def summary_table(results: list[dict]) -> str:
    lines = [
        "| checkpoint | disk dtype | positions | bf16 sdpa vs f32: max / mean |Δ| | bf16 eager vs f32: max / mean |Δ| | bf16 eager vs sdpa: max / mean |Δ| |",
        "|---|---|---|---|---|---|",
    ]
    for d in results:
        s = d["summary"]
        lines.append(
            f"| {d['checkpoint']} | {d['disk_dtype']} | {s['positions']} | "
            f"{s['vs_f32']['max_abs']:.3g} / {s['vs_f32']['mean_abs']:.3g} | "
            f"{s['eager_vs_f32']['max_abs']:.3g} / {s['eager_vs_f32']['mean_abs']:.3g} | "
            f"{s['eager_vs_sdpa']['max_abs']:.3g} / {s['eager_vs_sdpa']['mean_abs']:.3g} |"
        )
    return "\n".join(lines)


def check(new: dict, path: Path, tol: float) -> int:
    """Compares a recomputed result with the stored file. Returns the number of failures."""
    if not path.exists():
        print(f"   FAIL: {path} is missing")
        return 1
    old = json.loads(path.read_text(encoding="utf-8"))
    failures = 0
    if old["generator"]["f32_reference_sha256"] != new["generator"]["f32_reference_sha256"]:
        print(f"   FAIL: expected/{new['checkpoint']}.json changed since the bf16 file was made (sha256 differs)")
        failures += 1
    if old["generator"]["versions"] != new["generator"]["versions"]:
        print(f"   note: versions differ: stored {old['generator']['versions']}, now {new['generator']['versions']}")
    for oc, nc in zip(old["cases"], new["cases"], strict=True):
        for key in ("logprobs", "eager_logprobs"):
            a = np.asarray(oc[key], dtype=np.float32)
            b = np.asarray(nc[key], dtype=np.float32)
            if a.shape != b.shape:
                print(f"   FAIL {nc['name']}.{key}: {a.shape} values stored, {b.shape} recomputed")
                failures += 1
                continue
            d = float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())
            same = bool(np.array_equal(a, b))
            print(f"   {nc['name']:24s} {key:15s} {'identical' if same else f'max |stored - now| {d:.3g}'}")
            if d > tol or (tol == 0 and not same):
                print(f"   FAIL {nc['name']}.{key}: differs from the stored values by {d:.3g} (tolerance {tol})")
                failures += 1
    if old["summary"] != new["summary"] and tol == 0:
        print("   FAIL: summary differs")
        failures += 1
    return failures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="recompute and compare with the stored files; write nothing")
    ap.add_argument("--tol", type=float, default=0.0, help="--check: largest accepted |stored - recomputed| (default 0: bit-identical)")
    ap.add_argument("--out", type=Path, default=FIXTURES / "expected-bf16", help="folder of the bf16 files")
    ap.add_argument("--only", nargs="*", choices=CHECKPOINTS, help="these checkpoints only")
    args = ap.parse_args()

    results, failures = [], 0
    for name in args.only or CHECKPOINTS:
        print(f"== {name}", flush=True)
        d = compute(name)
        results.append(d)
        path = args.out / f"{name}.json"
        if args.check:
            failures += check(d, path, args.tol)
        else:
            args.out.mkdir(parents=True, exist_ok=True)
            path.write_text(dumps(d) + "\n", encoding="utf-8")
            print(f"   wrote {path} ({path.stat().st_size} bytes)")
        for c in d["cases"]:
            print(
                f"   {c['name']:24s} n={c['num_tokens']:3d}  sdpa vs f32 max {c['vs_f32']['max_abs']:.3g} mean {c['vs_f32']['mean_abs']:.3g}"
                f"  eager vs f32 max {c['eager_vs_f32']['max_abs']:.3g}  eager vs sdpa max {c['eager_vs_sdpa']['max_abs']:.3g}"
            )
    print()
    print(summary_table(results))
    if failures:
        sys.exit(f"{failures} check(s) failed")
    if args.check:
        print("\nall checks passed")


if __name__ == "__main__":
    main()
