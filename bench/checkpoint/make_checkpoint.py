#!/usr/bin/env python3
"""Write a random-weight Qwen2ForCausalLM checkpoint with a real model's shape.

    /tmp/refenv/bin/python bench/checkpoint/make_checkpoint.py --shape qwen2.5-0.5b --out /tmp/whence-ckpt/qwen05
    /tmp/refenv/bin/python bench/checkpoint/make_checkpoint.py --shape qwen2.5-0.5b --dtype bf16 --out /tmp/whence-ckpt/qwen05-bf16
    /tmp/refenv/bin/python bench/checkpoint/make_checkpoint.py --shape narrow-151k  --out /tmp/whence-ckpt/narrow
    /tmp/refenv/bin/python bench/checkpoint/make_checkpoint.py --shape qwen2.5-7b --dtype bf16 --out /tmp/whence-ckpt/qwen7b-bf16

Two ways of writing the weights:

- **model** (the default for qwen2.5-0.5b and narrow-151k): the model is built
  in f32 with a fixed seed (transformers' own initialisation, normal(0,
  initializer_range), zero biases, unit norms), cast to --dtype and saved with
  `save_pretrained`. The bf16 checkpoint of a shape is therefore the f32 one
  of the same seed rounded to bf16.
- **stream** (always for qwen2.5-7b, whose f32 model would need 28 GB of
  RAM; `--stream` for the others): each tensor is drawn on its own in --dtype
  from a `torch.Generator` seeded with (seed, tensor name) and written
  straight into safetensors shards of about --shard-gb GB, with
  `model.safetensors.index.json`; at most one tensor is in memory at a time.
  Same distribution as above (normal(0, 0.02) weights and embeddings, zero
  biases, unit norms), not the same numbers.

config.json has transformers 5's field names (`rope_parameters`, `dtype`).
The tokenizer files of tests/reference/fixtures/tiny-qwen2 are copied in
(their ~1000-token vocabulary is smaller than the model's; the benchmarks feed
ids < 1000 or text of that tokenizer).
"""
import argparse
import hashlib
import json
import shutil
import struct
import time
import zlib
from pathlib import Path

import torch
from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

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
        tie_word_embeddings=True,
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
        tie_word_embeddings=True,
    ),
    # Qwen/Qwen2.5-7B-Instruct's config.json (shape only): untied lm_head.
    "qwen2.5-7b": dict(
        vocab_size=152064,
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        max_position_embeddings=32768,
        tie_word_embeddings=False,
    ),
}
STREAM_ONLY = {"qwen2.5-7b"}
DTYPES = {"f32": torch.float32, "bf16": torch.bfloat16}
ST_DTYPE = {torch.float32: "F32", torch.bfloat16: "BF16"}


def make_config(shape: str, dtype: torch.dtype) -> Qwen2Config:
    s = SHAPES[shape]
    return Qwen2Config(
        **s,
        hidden_act="silu",
        rms_norm_eps=1e-6,
        rope_parameters={"rope_theta": 1000000.0, "rope_type": "default"},
        use_sliding_window=False,
        sliding_window=None,
        max_window_layers=s["num_hidden_layers"],
        attention_dropout=0.0,
        initializer_range=0.02,
        bos_token_id=None,
        eos_token_id=1002,
        architectures=["Qwen2ForCausalLM"],
        dtype=str(dtype).removeprefix("torch."),
    )


def tensor_plan(cfg: Qwen2Config):
    """(name, shape, init) of every stored tensor, in Qwen2ForCausalLM's order."""
    h, i, v = cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size
    hd = h // cfg.num_attention_heads
    kv = cfg.num_key_value_heads * hd
    plan = [("model.embed_tokens.weight", (v, h), "normal")]
    for layer in range(cfg.num_hidden_layers):
        p = f"model.layers.{layer}."
        plan += [
            (p + "input_layernorm.weight", (h,), "ones"),
            (p + "self_attn.q_proj.weight", (h, h), "normal"),
            (p + "self_attn.q_proj.bias", (h,), "zeros"),
            (p + "self_attn.k_proj.weight", (kv, h), "normal"),
            (p + "self_attn.k_proj.bias", (kv,), "zeros"),
            (p + "self_attn.v_proj.weight", (kv, h), "normal"),
            (p + "self_attn.v_proj.bias", (kv,), "zeros"),
            (p + "self_attn.o_proj.weight", (h, h), "normal"),
            (p + "post_attention_layernorm.weight", (h,), "ones"),
            (p + "mlp.gate_proj.weight", (i, h), "normal"),
            (p + "mlp.up_proj.weight", (i, h), "normal"),
            (p + "mlp.down_proj.weight", (h, i), "normal"),
        ]
    plan.append(("model.norm.weight", (h,), "ones"))
    if not cfg.tie_word_embeddings:
        plan.append(("lm_head.weight", (v, h), "normal"))
    return plan


def draw(name: str, shape, init: str, dtype: torch.dtype, seed: int, std: float) -> torch.Tensor:
    if init == "ones":
        return torch.ones(shape, dtype=dtype)
    if init == "zeros":
        return torch.zeros(shape, dtype=dtype)
    g = torch.Generator().manual_seed((seed << 32) | zlib.crc32(name.encode()))
    return torch.empty(shape, dtype=dtype).normal_(0.0, std, generator=g)


def write_streamed(cfg: Qwen2Config, out: Path, dtype: torch.dtype, seed: int, shard_bytes: int) -> tuple[int, list[Path]]:
    """Safetensors shards of about shard_bytes each, one tensor in memory at a time."""
    itemsize = torch.tensor([], dtype=dtype).element_size()
    plan = tensor_plan(cfg)
    shards, current, size = [], [], 0
    for name, shape, init in plan:
        nbytes = itemsize * int(torch.Size(shape).numel())
        if current and size + nbytes > shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append((name, shape, init, nbytes))
        size += nbytes
    shards.append(current)
    n = len(shards)
    files, weight_map, total, params = [], {}, 0, 0
    for k, shard in enumerate(shards, 1):
        path = out / (f"model-{k:05d}-of-{n:05d}.safetensors" if n > 1 else "model.safetensors")
        header, offset = {"__metadata__": {"format": "pt"}}, 0
        for name, shape, _, nbytes in shard:
            header[name] = {"dtype": ST_DTYPE[dtype], "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # the data starts 8-byte aligned
        start = time.perf_counter()
        with open(path, "wb") as f:
            f.write(struct.pack("<Q", len(raw)))
            f.write(raw)
            for name, shape, init, nbytes in shard:
                t = draw(name, shape, init, dtype, seed, cfg.initializer_range).contiguous()
                data = t.view(torch.uint8).numpy() if dtype == torch.bfloat16 else t.numpy()
                assert data.nbytes == nbytes
                f.write(memoryview(data).cast("B"))
                weight_map[name] = path.name
                params += t.numel()
                del t, data
        total += offset
        files.append(path)
        print(f"  {path.name}: {len(shard)} tensors, {offset / 1e9:.2f} GB, {time.perf_counter() - start:.1f} s", flush=True)
    if n > 1:
        (out / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}, indent=2) + "\n"
        )
    cfg.save_pretrained(out)
    GenerationConfig.from_model_config(cfg).save_pretrained(out)
    return params, files


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="f32", help="dtype of the stored weights (default f32)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stream", action="store_true",
                        help="write tensor by tensor (always on for qwen2.5-7b); without it the model is built in f32 first")
    parser.add_argument("--shard-gb", type=float, default=5.0, help="--stream: largest shard, GB (1e9 bytes)")
    parser.add_argument("--no-hash", dest="hash", action="store_false",
                        help="skip the sha256 of the weight files (reading 15 GB back for the 7B shape)")
    args = parser.parse_args()
    dtype = DTYPES[args.dtype]
    stream = args.stream or args.shape in STREAM_ONLY

    config = make_config(args.shape, dtype)
    args.out.mkdir(parents=True, exist_ok=True)
    for old in list(args.out.glob("*.safetensors")) + list(args.out.glob("model.safetensors.index.json")):
        old.unlink()  # no stale shards of an earlier layout
    start = time.perf_counter()
    if stream:
        params, files = write_streamed(config, args.out, dtype, args.seed, int(args.shard_gb * 1e9))
        how = "streamed"
    else:
        torch.manual_seed(args.seed)
        config.dtype = torch.float32
        model = Qwen2ForCausalLM(config).to(torch.float32).eval()
        params = sum(p.numel() for p in model.parameters())
        model = model.to(dtype)
        model.save_pretrained(args.out, safe_serialization=True)
        del model
        files = sorted(args.out.glob("*.safetensors"))
        how = "built in f32, cast"
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(TOKENIZER_FIXTURE / name, args.out / name)
    elapsed = time.perf_counter() - start
    sha = "not computed"
    if args.hash:
        digest = hashlib.sha256()
        for path in files:
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 24), b""):
                    digest.update(chunk)
        sha = digest.hexdigest()[:16]
    size = sum(p.stat().st_size for p in files)
    print(
        f"{args.shape}: {params:,} parameters, {args.dtype} ({how}), seed {args.seed} -> {args.out}: "
        f"{len(files)} file(s), {size / 1e9:.2f} GB, {elapsed:.1f} s; safetensors sha256 {sha}"
    )


if __name__ == "__main__":
    main()
