#!/usr/bin/env python3
"""Write a random-weight Qwen2ForCausalLM checkpoint with a real model's shape.

    /tmp/refenv/bin/python bench/checkpoint/make_checkpoint.py --shape qwen2.5-0.5b --out /tmp/whence-ckpt/qwen05
    /tmp/refenv/bin/python bench/checkpoint/make_checkpoint.py --shape narrow-151k  --out /tmp/whence-ckpt/narrow

The weights are drawn with a fixed seed (transformers' own initialisation,
normal(0, initializer_range)), saved with `save_pretrained` as f32
safetensors. The tokenizer files of tests/reference/fixtures/tiny-qwen2 are
copied in (their ~1000-token vocabulary is smaller than the model's; the
benchmark feeds token ids directly, all < 1000).
"""
import argparse
import hashlib
import shutil
import time
from pathlib import Path

import torch
from transformers import Qwen2Config, Qwen2ForCausalLM

REPO = Path(__file__).resolve().parents[2]
TOKENIZER_FIXTURE = REPO / "tests" / "reference" / "fixtures" / "tiny-qwen2"

SHAPES = {
    # Qwen/Qwen2.5-0.5B's config.json (shape only).
    "qwen2.5-0.5b": dict(
        vocab_size=151936,
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        max_position_embeddings=32768,
    ),
    # Qwen2.5's vocabulary on a tiny trunk: for the long-sequence memory test,
    # where the [T, vocab] logits dominate.
    "narrow-151k": dict(
        vocab_size=151936,
        hidden_size=128,
        intermediate_size=256,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=40000,
    ),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    config = Qwen2Config(
        **SHAPES[args.shape],
        hidden_act="silu",
        rms_norm_eps=1e-6,
        rope_parameters={"rope_theta": 1000000.0, "rope_type": "default"},
        tie_word_embeddings=True,
        use_sliding_window=False,
        sliding_window=None,
        max_window_layers=SHAPES[args.shape]["num_hidden_layers"],
        attention_dropout=0.0,
        initializer_range=0.02,
        bos_token_id=None,
        eos_token_id=1002,
        architectures=["Qwen2ForCausalLM"],
    )
    torch.manual_seed(args.seed)
    start = time.perf_counter()
    model = Qwen2ForCausalLM(config).to(torch.float32).eval()
    params = sum(p.numel() for p in model.parameters())
    args.out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(args.out, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(TOKENIZER_FIXTURE / name, args.out / name)
    digest = hashlib.sha256()
    with open(args.out / "model.safetensors", "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    print(
        f"{args.shape}: {params:,} parameters, f32, seed {args.seed} -> {args.out} "
        f"({time.perf_counter() - start:.1f} s; model.safetensors sha256 {digest.hexdigest()[:16]})"
    )


if __name__ == "__main__":
    main()
