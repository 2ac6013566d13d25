#!/usr/bin/env python3
"""Checks that `transformers` loads the checkpoints `whence demo` trained and
gives the token log-probabilities whence's in-process scorer gives.

Run by hand (like make_reference.py), with the venv of tests/reference/README.md:

    whence demo --out whence-demo                      # trains (or finds) the models
    /tmp/refenv/bin/python tests/reference/check_demo.py --demo whence-demo --whence target/release/whence

For every model of the demo (teacher, student, spurious, distilled: read from
DEMO/samples/*.summary.json) it takes the first N held-out responses of the
distilled model, scores them with `whence score` and with
`AutoModelForCausalLM` (f32, eager attention) on the chat template's
rendering via `AutoTokenizer.apply_chat_template`, checks that the token ids
agree, and prints max |Δ log-prob| per model. Exit 1 if any exceeds --tolerance.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer


def models_of(demo: Path) -> dict:
    models = {}
    for summary in sorted((demo / "samples").glob("*.summary.json")):
        role = summary.name.split("-")[0]
        models[role] = Path(json.loads(summary.read_text())["model"]["source"])
    return models


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", type=Path, default=Path("whence-demo"))
    parser.add_argument("--whence", type=Path, default=Path("target/release/whence"))
    parser.add_argument("--records", type=int, default=16)
    parser.add_argument("--tolerance", type=float, default=1e-4)
    args = parser.parse_args()
    torch.set_num_threads(1)

    lines = (args.demo / "samples" / "distilled-heldout.jsonl").read_text().splitlines()[: args.records]
    records = [json.loads(line) for line in lines]
    worst_all = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        inputs = Path(tmp) / "records.jsonl"
        inputs.write_text("".join(json.dumps(r) + "\n" for r in records))
        for role, checkpoint in models_of(args.demo).items():
            out = Path(tmp) / f"{role}.jsonl"
            subprocess.run(
                [str(args.whence), "score", "--model", str(checkpoint), "--input", str(inputs), "--out", str(out), "--no-cache", "--skip-invalid", "-q"],
                check=True,
            )
            scored = {json.loads(l)["id"]: json.loads(l) for l in out.read_text().splitlines()}
            tokenizer = AutoTokenizer.from_pretrained(checkpoint)
            model = AutoModelForCausalLM.from_pretrained(checkpoint, torch_dtype=torch.float32, attn_implementation="eager")
            model.eval()
            worst, tokens = 0.0, 0
            for r in records:
                if r["id"] not in scored:
                    continue  # whence could not score it (an empty response)
                prompt = tokenizer.apply_chat_template([{"role": "user", "content": r["prompt"]}], tokenize=False, add_generation_prompt=True)
                prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
                ids = tokenizer(prompt + r["response"], add_special_tokens=False)["input_ids"]
                if ids[: len(prompt_ids)] != prompt_ids:
                    print(f"{role} {r['id']}: the prompt's tokens change when the response follows; skipped")
                    continue
                with torch.no_grad():
                    logits = model(torch.tensor([ids])).logits[0].double()
                logprobs = torch.log_softmax(logits, dim=-1)
                ours = scored[r["id"]]["logprobs"]
                theirs = [logprobs[i - 1, ids[i]].item() for i in range(len(prompt_ids), len(ids))]
                if len(ours) != len(theirs):
                    print(f"{role} {r['id']}: whence scored {len(ours)} tokens, transformers {len(theirs)}")
                    return 1
                worst = max([worst] + [abs(a - b) for a, b in zip(ours, theirs)])
                tokens += len(theirs)
            print(f"{role:10} {checkpoint.name:28} {tokens:6} tokens  max |Δ log-prob| = {worst:.2e}")
            worst_all = max(worst_all, worst)
    print(f"max over models: {worst_all:.2e} (tolerance {args.tolerance:g})")
    return 0 if worst_all <= args.tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
