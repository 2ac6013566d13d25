#!/usr/bin/env python3
"""Make tiny random-weight checkpoints and Hugging Face `transformers` reference
log-probabilities for whence's in-process scorer tests.

    python tests/reference/make_reference.py --out tests/reference/fixtures
    python tests/reference/make_reference.py --check tests/reference/fixtures

The first form (re)creates everything under --out (deterministic: rerunning with
the same package versions and the same /work/shared/data gives byte-identical
files).  The second form reloads every checkpoint from disk and recomputes every
stored value, failing loudly on any difference.  See README.md next to this file
for the rules (byte offsets, first response token, BOS handling).
"""

from __future__ import annotations

import argparse
import glob
import hashlib
import json
import math
import os
import shutil
import sys
from pathlib import Path

import torch

# Determinism first: single thread, deterministic kernels.
torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

import safetensors  # noqa: E402
import tokenizers  # noqa: E402
import transformers  # noqa: E402
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers  # noqa: E402
from tokenizers import pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen3Config,
    Qwen3ForCausalLM,
)

transformers.logging.set_verbosity_error()
transformers.utils.logging.disable_progress_bar()

FORMAT_VERSION = 1
DATA_DIR = Path(os.environ.get("WHENCE_SHARED_DATA", "/work/shared/data"))

# --------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------

BPE_VOCAB_SIZE = 1000  # learned vocabulary incl. the 256 byte symbols
CORPUS_BYTES_PER_FILE = 80_000  # ~400 KB total over the 5 files
CORPUS_FIELD_CAP = 3_000  # chars taken from any one field, for variety

# Added tokens, appended after the learned vocabulary (ids 1000..1005), as in
# Qwen / Llama 3 where the special tokens sit at the end of the vocabulary.
# (content, special) -- <think>/</think> are non-special added tokens as in Qwen3.
ADDED_TOKENS = [
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<think>", False),
    ("</think>", False),
    ("<|begin_of_text|>", True),
]

# Qwen2's pre-tokenizer regex (one digit per pre-token) ...
QWEN_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)
# ... and Llama 3's (up to three digits per pre-token).
LLAMA3_REGEX = (
    r"""(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"""
    r"""|\s*[\r\n]+|\s+(?!\S)|\s+"""
)

CHAT_TEMPLATE = (
    "{%- if bos_token %}{{- bos_token }}{%- endif %}"
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def read_corpus() -> str:
    """A few hundred KB of real text, read deterministically."""
    files = sorted(glob.glob(str(DATA_DIR / "trajectories" / "*.jsonl"))) + sorted(
        glob.glob(str(DATA_DIR / "benchmarks" / "*.jsonl"))
    )
    if not files:
        sys.exit(f"no training text found under {DATA_DIR}/{{trajectories,benchmarks}}/*.jsonl")
    parts: list[str] = []
    for path in files:
        used = 0
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                if used >= CORPUS_BYTES_PER_FILE:
                    break
                rec = json.loads(line)
                for field in ("question", "problem", "response", "solution"):
                    val = rec.get(field)
                    if isinstance(val, str) and val:
                        piece = val[:CORPUS_FIELD_CAP]
                        parts.append(piece)
                        used += len(piece.encode("utf-8"))
    return "\n\n".join(parts)


def train_base_tokenizer(corpus: str) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    trainer = trainers.BpeTrainer(
        vocab_size=BPE_VOCAB_SIZE,
        min_frequency=2,
        show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
    )
    # Chunk the corpus into documents so the iterator is deterministic and cheap.
    docs = corpus.split("\n\n")
    tok.train_from_iterator(docs, trainer=trainer, length=len(docs))
    return tok


# The SentencePiece-style tokenizer (Llama 2, Mistral v0.x, TinyLlama): its
# own learned vocabulary after <unk>, <s>, </s> and the 256 byte-fallback
# pieces <0x00>..<0xFF>, as Llama 2's tokenizer.json lays it out.
SP_SPECIALS = ["<unk>", "<s>", "</s>"]
SP_BYTES = [f"<0x{b:02X}>" for b in range(256)]
SP_VOCAB_SIZE = 700  # specials + bytes + ~440 learned pieces


def train_sentencepiece_tokenizer(corpus: str) -> Tokenizer:
    """Llama 2's tokenizer.json layout: normalizer Prepend("▁") + Replace(" ", "▁"),
    no pre-tokenizer, BPE with byte fallback, decoder Replace("▁", " ") +
    ByteFallback + Fuse + Strip(one leading space), post-processor "<s> $A".
    Trained with a Metaspace split (words are "▁word" pieces, so no merge
    crosses a word boundary), then given the no-pre-tokenizer layout."""
    tok = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never")
    trainer = trainers.BpeTrainer(
        vocab_size=SP_VOCAB_SIZE,
        min_frequency=2,
        show_progress=False,
        special_tokens=SP_SPECIALS + SP_BYTES,
        limit_alphabet=120,
    )
    docs = corpus.split("\n\n")
    tok.train_from_iterator(docs, trainer=trainer, length=len(docs))
    spec = json.loads(tok.to_str())
    # The byte pieces are vocabulary entries, not added tokens (as in Llama 2).
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["content"] in SP_SPECIALS]
    spec["pre_tokenizer"] = None
    spec["model"]["byte_fallback"] = True
    spec["model"]["fuse_unk"] = True
    spec["decoder"] = {
        "type": "Sequence",
        "decoders": [
            {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
            {"type": "ByteFallback"},
            {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0},
        ],
    }
    spec["post_processor"] = {
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [
            {"SpecialToken": {"id": "<s>", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
            {"SpecialToken": {"id": "<s>", "type_id": 1}},
            {"Sequence": {"id": "B", "type_id": 1}},
        ],
        "special_tokens": {"<s>": {"id": "<s>", "ids": [SP_SPECIALS.index("<s>")], "tokens": ["<s>"]}},
    }
    out = Tokenizer.from_str(json.dumps(spec, ensure_ascii=False))
    for i, t in enumerate(SP_SPECIALS + SP_BYTES):
        assert out.token_to_id(t) == i, t
    return out


def make_tokenizer_variant(base: Tokenizer, flavour: str) -> Tokenizer:
    """flavour 'qwen': NFC + Qwen regex, no BOS.  'llama3': no normalizer, Llama 3
    regex, post-processor prepends <|begin_of_text|> (as Llama 3's tokenizer.json)."""
    tok = Tokenizer.from_str(base.to_str())
    tok.add_tokens([AddedToken(t, special=s, normalized=False) for t, s in ADDED_TOKENS])
    byte_level_pp = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    if flavour == "qwen":
        tok.post_processor = byte_level_pp
    elif flavour == "llama3":
        tok.normalizer = None
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(Regex(LLAMA3_REGEX), behavior="isolated", invert=False),
                pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
            ]
        )
        bos = "<|begin_of_text|>"
        bos_id = tok.token_to_id(bos)
        tok.post_processor = processors.Sequence(
            [
                byte_level_pp,
                processors.TemplateProcessing(
                    single=f"{bos}:0 $A:0",
                    pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
                    special_tokens=[(bos, bos_id)],
                ),
            ]
        )
    else:
        raise ValueError(flavour)
    return tok


def tokenizer_config(flavour: str) -> dict:
    if flavour == "llama2":
        return {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "bos_token": "<s>",
            "eos_token": "</s>",
            "unk_token": "<unk>",
            "clean_up_tokenization_spaces": False,
            "model_max_length": 512,
            "chat_template": CHAT_TEMPLATE,
        }
    if flavour == "qwen":
        return {
            "tokenizer_class": "Qwen2Tokenizer",
            "bos_token": None,
            "eos_token": "<|im_end|>",
            "pad_token": "<|endoftext|>",
            "unk_token": None,
            "add_prefix_space": False,
            "clean_up_tokenization_spaces": False,
            "errors": "replace",
            "model_max_length": 512,
            "split_special_tokens": False,
            "chat_template": CHAT_TEMPLATE,
        }
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<|begin_of_text|>",
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "clean_up_tokenization_spaces": False,
        "model_max_length": 512,
        "chat_template": CHAT_TEMPLATE,
    }


def write_json(path: Path, obj, indent: int | None = 2) -> None:
    path.write_text(json.dumps(obj, indent=indent, ensure_ascii=False) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------

N_TOKENIZER = BPE_VOCAB_SIZE + len(ADDED_TOKENS)  # 1006


def tid(tok: Tokenizer, s: str) -> int:
    i = tok.token_to_id(s)
    assert i is not None, s
    return i


def checkpoint_specs(tok: Tokenizer, sp_tok: Tokenizer):
    eot, im_end, bot = tid(tok, "<|endoftext|>"), tid(tok, "<|im_end|>"), tid(tok, "<|begin_of_text|>")
    common = dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        max_position_embeddings=512,
        hidden_act="silu",
        attention_dropout=0.0,
    )
    return [
        dict(
            name="tiny-qwen2",
            cls=Qwen2ForCausalLM,
            config=Qwen2Config(
                **common,
                vocab_size=1024,  # padded past the tokenizer (1006), as real Qwen checkpoints are
                num_attention_heads=4,
                num_key_value_heads=2,
                rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
                rms_norm_eps=1e-6,
                tie_word_embeddings=True,
                use_sliding_window=False,
                bos_token_id=eot,  # as real Qwen2.5 configs: set, but the tokenizer adds no BOS
                eos_token_id=im_end,
            ),
            disk_dtype=torch.bfloat16,
            flavour="qwen",
            seed=20240601,
            shard=None,
        ),
        dict(
            name="tiny-qwen3",
            cls=Qwen3ForCausalLM,
            config=Qwen3Config(
                **common,
                vocab_size=1024,
                num_attention_heads=4,
                num_key_value_heads=2,
                head_dim=32,  # != hidden/heads (16)
                rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0},
                rms_norm_eps=1e-6,
                tie_word_embeddings=False,
                attention_bias=False,
                use_sliding_window=False,
                bos_token_id=eot,
                eos_token_id=im_end,
            ),
            disk_dtype=torch.float32,
            flavour="qwen",
            seed=20240602,
            shard=None,
        ),
        dict(
            name="tiny-llama3",
            cls=LlamaForCausalLM,
            config=LlamaConfig(
                **common,
                vocab_size=N_TOKENIZER,
                num_attention_heads=4,
                num_key_value_heads=2,
                rope_parameters={
                    "rope_type": "llama3",
                    "rope_theta": 500_000.0,
                    "factor": 8.0,
                    "low_freq_factor": 1.0,
                    "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 64,
                },
                rms_norm_eps=1e-5,
                tie_word_embeddings=False,
                attention_bias=False,
                mlp_bias=False,
                bos_token_id=bot,
                eos_token_id=im_end,
            ),
            disk_dtype=torch.float16,
            flavour="llama3",
            seed=20240603,
            shard="150KB",
        ),
        dict(
            name="tiny-mistral",
            cls=MistralForCausalLM,
            config=MistralConfig(
                **common,
                vocab_size=N_TOKENIZER,
                num_attention_heads=8,  # head_dim 8, 4 query heads per KV head
                num_key_value_heads=2,
                rope_parameters={"rope_type": "default", "rope_theta": 10_000.0},
                rms_norm_eps=1e-5,
                tie_word_embeddings=False,
                sliding_window=None,
                bos_token_id=bot,
                eos_token_id=im_end,
            ),
            disk_dtype=torch.float32,
            flavour="llama3",  # BOS-adding tokenizer, as Mistral's adds <s>
            seed=20240604,
            shard=None,
        ),
        dict(
            # Llama 2's layout: a SentencePiece-style tokenizer whose decoder
            # strips a leading space (generated text must be decoded in context).
            name="tiny-llama2",
            cls=LlamaForCausalLM,
            config=LlamaConfig(
                **common,
                vocab_size=sp_tok.get_vocab_size(),
                num_attention_heads=4,
                num_key_value_heads=4,
                rope_parameters={"rope_type": "default", "rope_theta": 10_000.0},
                rms_norm_eps=1e-5,
                tie_word_embeddings=False,
                attention_bias=False,
                mlp_bias=False,
                bos_token_id=tid(sp_tok, "<s>"),
                eos_token_id=tid(sp_tok, "</s>"),
            ),
            disk_dtype=torch.float32,
            flavour="llama2",
            seed=20240605,
            shard=None,
        ),
    ]


def init_weights(model: torch.nn.Module, seed: int) -> None:
    """Overwrite every parameter from a seeded generator, independent of the
    library's own init.  Scales chosen so attention is not uniform and logits
    have a std of a few nats (log-probs vary a lot across tokens)."""
    gen = torch.Generator().manual_seed(seed)
    tied = bool(getattr(model.config, "tie_word_embeddings", False))
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if name.endswith("norm.weight"):  # input/post-attn/final RMSNorm, q_norm, k_norm
                val = 1.0 + 0.2 * torch.randn(p.shape, generator=gen)
            elif name.endswith(".bias"):
                val = 0.2 * torch.randn(p.shape, generator=gen)
            elif name.endswith("embed_tokens.weight"):
                val = (0.3 if tied else 1.0) * torch.randn(p.shape, generator=gen)
            elif name.endswith("lm_head.weight"):
                val = 0.3 * torch.randn(p.shape, generator=gen)
            elif p.dim() == 2:
                val = torch.randn(p.shape, generator=gen) / math.sqrt(p.shape[1])
            else:
                raise RuntimeError(f"unexpected parameter {name} {tuple(p.shape)}")
            p.copy_(val.to(p.dtype))


# --------------------------------------------------------------------------
# Cases
# --------------------------------------------------------------------------

CASES = [
    dict(
        name="raw_latex",
        kind="raw",
        prompt=(
            "Problem: Let $f(x) = 3x^2 - 5x + 2$. Find all real $x$ with $f(x) = 0$, "
            "and compute $\\sum_{k=1}^{4} f(k)$.\nSolution:"
        ),
        response=(
            " We factor: $3x^2 - 5x + 2 = (3x - 2)(x - 1)$, so the roots are "
            "$x = \\frac{2}{3}$ and $x = 1$.\n\n"
            "Next, $f(1) = 0$, $f(2) = 12 - 10 + 2 = 4$, $f(3) = 27 - 15 + 2 = 14$, "
            "and $f(4) = 48 - 20 + 2 = 30$. Therefore\n"
            "\\[\n\\sum_{k=1}^{4} f(k) = 0 + 4 + 14 + 30 = 48.\n\\]\n"
            "The answer is $\\boxed{48}$."
        ),
    ),
    dict(
        name="chat_think",
        kind="chat",
        messages=[{"role": "user", "content": "How many positive divisors does $360$ have? Put the answer in \\boxed{}."}],
        response=(
            "<think>\n"
            "Okay, let me factor 360 first. $360 = 2^3 \\cdot 3^2 \\cdot 5$. "
            "Wait, let me double-check: $8 \\cdot 9 = 72$ and $72 \\cdot 5 = 360$. Yes.\n\n"
            "A divisor has the form $2^a 3^b 5^c$ with $0 \\le a \\le 3$, $0 \\le b \\le 2$ and "
            "$0 \\le c \\le 1$, so the number of divisors is $(3+1)(2+1)(1+1) = 4 \\cdot 3 \\cdot 2 = 24$. "
            "Hmm, but should I count $1$ and $360$ themselves? Yes, the formula includes them.\n"
            "</think>\n\n"
            "Since $360 = 2^3 \\cdot 3^2 \\cdot 5$, the number of positive divisors is\n"
            "$$\\tau(360) = (3+1)(2+1)(1+1) = \\boxed{24}.$$"
        ),
    ),
    dict(
        # The prompt ends in a space and the response starts with "So", so the
        # pre-tokenizer and BPE make one token " So" (bytes "ĠSo"): the first
        # response token starts inside the prompt (it straddles the boundary).
        name="raw_multibyte_straddle",
        kind="raw",
        prompt=(
            "Question (café edition ☕): Zoë buys 3 crêpes at €2.50 each. "
            "中文：她一共花了多少钱？ Answer: "
        ),
        response=(
            "So Zoë pays $3 \\times 2.50 = 7.50$ euros, i.e. 7.5 € 🎉. "
            "答案是 7.5 欧元… naïve check: $2.5 + 2.5 + 2.5 = 7.5$ ✓ 👍🏽 "
            "(Ω ≈ ∑ in Greek; 👩‍💻 wrote this)."
        ),
    ),
    dict(
        name="chat_system_multibyte",
        kind="chat",
        messages=[
            {"role": "system", "content": "You are a careful math tutor. Réponds en anglais."},
            {"role": "user", "content": "Résous : $\\int_0^1 x^2\\,dx$ = ? 请给出步骤。"},
        ],
        response=(
            "<think>\nThe antiderivative of $x^2$ is $\\frac{x^3}{3}$, so évaluer at $1$ and $0$: "
            "$\\frac{1}{3} - 0$. 所以 the value is $\\frac{1}{3}$ 🙂\n</think>\n\n"
            "$$\\int_0^1 x^2\\,dx = \\left[\\frac{x^3}{3}\\right]_0^1 = \\frac{1}{3}.$$ "
            "Voilà : $\\boxed{\\tfrac{1}{3}}$."
        ),
    ),
]


def byte_offsets(text: str, char_offsets) -> list[list[int]]:
    prefix = [0]
    for ch in text:
        prefix.append(prefix[-1] + len(ch.encode("utf-8")))
    return [[prefix[s], prefix[e]] for s, e in char_offsets]


def first_response_token(offsets: list[list[int]], prompt_bytes: int) -> int:
    """Index of the first token whose byte span ends after the prompt's UTF-8 length."""
    for i, (_, end) in enumerate(offsets):
        if end > prompt_bytes:
            return i
    raise RuntimeError("response produced no token")


def encode_case(hf_tok, raw_tok: Tokenizer, case: dict) -> dict:
    if case["kind"] == "raw":
        prompt_text = case["prompt"]
        text = prompt_text + case["response"]
        enc = hf_tok(text, return_offsets_mapping=True)  # default add_special_tokens=True
        raw = raw_tok.encode(text, add_special_tokens=True)
    else:
        prompt_text = hf_tok.apply_chat_template(case["messages"], tokenize=False, add_generation_prompt=True)
        text = prompt_text + case["response"]
        enc = hf_tok(text, add_special_tokens=False, return_offsets_mapping=True)
        raw = raw_tok.encode(text, add_special_tokens=False)
    ids = list(enc["input_ids"])
    char_offs = [list(o) for o in enc["offset_mapping"]]
    # transformers' tokenizer must agree with the bare tokenizer.json (what the Rust side loads).
    assert ids == raw.ids, f"{case['name']}: transformers and tokenizer.json disagree on ids"
    assert char_offs == [list(o) for o in raw.offsets], f"{case['name']}: offsets disagree"
    offs = byte_offsets(text, char_offs)
    prompt_bytes = len(prompt_text.encode("utf-8"))
    first = first_response_token(offs, prompt_bytes)
    out = {
        "name": case["name"],
        "kind": case["kind"],
    }
    if case["kind"] == "chat":
        out["messages"] = case["messages"]
    out.update(
        {
            "text": text,
            "prompt_text": prompt_text,
            "response": case["response"],
            "prompt_byte_len": prompt_bytes,
            "text_byte_len": len(text.encode("utf-8")),
            "num_tokens": len(ids),
            "first_response_token": first,
            "first_response_token_starts_in_prompt": offs[first][0] < prompt_bytes,
            "input_ids": ids,
            "tokens": raw.tokens,
            "offsets": offs,
        }
    )
    return out


@torch.no_grad()
def token_logprobs(model, ids: list[int]) -> list[float]:
    """logprobs[k] = log_softmax(logits[k])[ids[k+1]], k = 0..n-2 (i.e. position i=k+1)."""
    x = torch.tensor([ids], dtype=torch.long)
    logits = model(input_ids=x).logits[0].float()
    lp = torch.log_softmax(logits, dim=-1)
    tgt = x[0, 1:]
    vals = lp[:-1].gather(1, tgt[:, None])[:, 0]
    return [float(v) for v in vals.tolist()]


def load_model(path: Path, dtype: torch.dtype, attn: str = "eager"):
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn)
    model.eval()
    return model


def dtype_name(dt: torch.dtype) -> str:
    return str(dt).removeprefix("torch.")


# --------------------------------------------------------------------------
# Compact JSON: objects indented, lists of scalars / pairs on one line.
# --------------------------------------------------------------------------


def _is_flat(v) -> bool:
    return isinstance(v, list) and all(
        not isinstance(x, (dict, list)) or (isinstance(x, list) and all(not isinstance(y, (dict, list)) for y in x))
        for x in v
    )


def dumps(obj, level: int = 0) -> str:
    pad, pad1 = "  " * level, "  " * (level + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{pad1}{json.dumps(k, ensure_ascii=False)}: {dumps(v, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list) and not _is_flat(obj):
        items = [pad1 + dumps(v, level + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    if isinstance(obj, float):
        assert math.isfinite(obj)
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# --------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------


def versions() -> dict:
    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "safetensors": safetensors.__version__,
    }


def features(cfg) -> dict:
    d = cfg.to_dict()
    heads = d["num_attention_heads"]
    head_dim = d.get("head_dim") or d["hidden_size"] // heads
    return {
        "architecture": d["architectures"][0],
        "model_type": d["model_type"],
        "hidden_size": d["hidden_size"],
        "num_attention_heads": heads,
        "num_key_value_heads": d["num_key_value_heads"],
        "head_dim": head_dim,
        "head_dim_explicit_differs": head_dim * heads != d["hidden_size"],
        "qkv_bias": d["model_type"] == "qwen2" or bool(d.get("attention_bias")),
        "qk_norm": d["model_type"] == "qwen3",
        "tie_word_embeddings": d["tie_word_embeddings"],
        "rope": d.get("rope_parameters"),
        "sliding_window": d.get("sliding_window"),
        "vocab_size": d["vocab_size"],
        "dtype": d.get("dtype"),
    }


def generate(out: Path) -> None:
    corpus = read_corpus()
    corpus_sha = hashlib.sha256(corpus.encode("utf-8")).hexdigest()
    print(f"corpus: {len(corpus.encode('utf-8'))} bytes, sha256 {corpus_sha}")
    base = train_base_tokenizer(corpus)
    assert base.get_vocab_size() == BPE_VOCAB_SIZE, base.get_vocab_size()

    if out.exists():
        shutil.rmtree(out)
    (out / "expected").mkdir(parents=True)

    variants = {f: make_tokenizer_variant(base, f) for f in ("qwen", "llama3")}
    for tok in variants.values():
        assert tok.get_vocab_size() == N_TOKENIZER
    variants["llama2"] = train_sentencepiece_tokenizer(corpus)

    for spec in checkpoint_specs(variants["qwen"], variants["llama2"]):
        name, ckdir = spec["name"], out / spec["name"]
        # ---- model: build in f32, init, cast to disk dtype, save
        model = spec["cls"](spec["config"]).float()
        init_weights(model, spec["seed"])
        model = model.to(spec["disk_dtype"])
        save_kw = {"max_shard_size": spec["shard"]} if spec["shard"] else {}
        model.save_pretrained(ckdir, **save_kw)
        del model
        # ---- tokenizer files
        raw_tok = variants[spec["flavour"]]
        raw_tok.save(str(ckdir / "tokenizer.json"))
        write_json(ckdir / "tokenizer_config.json", tokenizer_config(spec["flavour"]))
        raw_tok = Tokenizer.from_file(str(ckdir / "tokenizer.json"))
        hf_tok = AutoTokenizer.from_pretrained(ckdir)
        # ---- reference values from the checkpoint as reloaded from disk
        model = load_model(ckdir, torch.float32)
        assert all(p.dtype == torch.float32 for p in model.parameters())
        cases = []
        for case in CASES:
            c = encode_case(hf_tok, raw_tok, case)
            c["logprobs"] = token_logprobs(model, c["input_ids"])
            c["response_logprob_sum"] = float(sum(c["logprobs"][c["first_response_token"] - 1 :]))
            cases.append(c)
        disk_dtype_info = None
        if spec["disk_dtype"] != torch.float32:
            low = load_model(ckdir, spec["disk_dtype"])
            c0 = cases[0]
            disk_dtype_info = {
                "case": c0["name"],
                "dtype": dtype_name(spec["disk_dtype"]),
                "note": "model run in the on-disk dtype; logits cast to float32 before log_softmax; information only",
                "logprobs": token_logprobs(low, c0["input_ids"]),
            }
            del low
        cfg = AutoConfig.from_pretrained(ckdir)
        expected = {
            "format_version": FORMAT_VERSION,
            "checkpoint": name,
            "generator": {
                "script": "tests/reference/make_reference.py",
                "versions": versions(),
                "tokenizer_corpus_sha256": corpus_sha,
            },
            "model": features(cfg),
            "disk_dtype": dtype_name(spec["disk_dtype"]),
            "compute": "float32 (from_pretrained(dtype=torch.float32), attn_implementation='eager'), batch 1, no attention mask",
            "tokenizer": {
                "flavour": spec["flavour"],
                "len": len(hf_tok),
                "adds_bos": spec["flavour"] in ("llama3", "llama2"),
                "bos_token": hf_tok.bos_token,
                "eos_token": hf_tok.eos_token,
                "added_tokens": {t: raw_tok.token_to_id(t) for t, _ in ADDED_TOKENS},
            },
            "rules": {
                "offsets": "UTF-8 byte offsets [start, end) into `text`; transformers' char offsets converted",
                "logprobs": "logprobs[k] = log_softmax(logits[position k])[input_ids[k+1]], k = 0..num_tokens-2",
                "first_response_token": "smallest i with offsets[i][1] > prompt_byte_len",
                "response_logprob_sum": "sum(logprobs[first_response_token-1:]) (float64 sum of the stored values)",
                "log_softmax_over": "all config.vocab_size logits (incl. rows past the tokenizer's length)",
                "intended_tolerance": 1e-4,
            },
            "cases": cases,
        }
        if disk_dtype_info:
            expected["disk_dtype_logprobs"] = disk_dtype_info
        (out / "expected" / f"{name}.json").write_text(dumps(expected) + "\n", encoding="utf-8")
        print(f"wrote {name}: " + ", ".join(f"{c['name']}={c['num_tokens']} tok" for c in cases))
        del model


def check(out: Path) -> int:
    """Reload everything from disk, recompute, compare.  Returns number of failures."""
    failures = 0
    for path in sorted((out / "expected").glob("*.json")):
        exp = json.loads(path.read_text(encoding="utf-8"))
        ckdir = out / exp["checkpoint"]
        cfg = AutoConfig.from_pretrained(ckdir)
        feats = features(cfg)
        print(f"\n== {exp['checkpoint']}: {json.dumps(feats)}")
        raw_tok = Tokenizer.from_file(str(ckdir / "tokenizer.json"))
        hf_tok = AutoTokenizer.from_pretrained(ckdir)
        print(f"   tokenizer class {type(hf_tok).__name__}, len {len(hf_tok)}, bos {hf_tok.bos_token!r}")
        eager = load_model(ckdir, torch.float32)
        sdpa = load_model(ckdir, torch.float32, attn="sdpa")
        n_params = sum(p.numel() for p in eager.parameters())
        print(f"   {type(eager).__name__}, {n_params} params, files: {sorted(p.name for p in ckdir.iterdir())}")
        # Features as seen in the stored weights (not the config).
        stored = {}
        for f in sorted(ckdir.glob("*.safetensors")):
            with safetensors.safe_open(str(f), "pt") as st:
                for k in st.keys():
                    stored[k] = str(st.get_slice(k).get_dtype())
        print(
            "   weights: "
            f"{len(stored)} tensors in {len(list(ckdir.glob('*.safetensors')))} file(s), dtypes {sorted(set(stored.values()))}, "
            f"q/k/v bias {any(k.endswith('q_proj.bias') for k in stored)}, "
            f"q/k norm {any(k.endswith('q_norm.weight') for k in stored)}, "
            f"lm_head stored {'lm_head.weight' in stored}, "
            f"q_proj {tuple(eager.model.layers[0].self_attn.q_proj.weight.shape)}, "
            f"k_proj {tuple(eager.model.layers[0].self_attn.k_proj.weight.shape)}"
        )
        if exp["disk_dtype"] != "float32":
            # from_pretrained(dtype=float32) must equal loading in the disk dtype then .float().
            upcast = load_model(ckdir, getattr(torch, exp["disk_dtype"])).float()
            c0 = exp["cases"][0]
            if token_logprobs(upcast, c0["input_ids"]) != c0["logprobs"]:
                print("   FAIL: model.float() after a low-precision load differs from dtype=float32 load")
                failures += 1
            else:
                print(f"   load({exp['disk_dtype']}).float() == load(float32): identical logprobs")
            del upcast
        if feats["rope"] and feats["rope"].get("rope_type") == "llama3":
            rot = eager.model.rotary_emb
            hd = feats["head_dim"]
            default = 1.0 / (feats["rope"]["rope_theta"] ** (torch.arange(0, hd, 2).float() / hd))
            print(f"   inv_freq default: {[f'{v:.3g}' for v in default.tolist()]}")
            print(f"   inv_freq llama3 : {[f'{v:.3g}' for v in rot.inv_freq.tolist()]}")
            if torch.allclose(default, rot.inv_freq):
                print("   FAIL: llama3 rope scaling does not change frequencies")
                failures += 1
        for c in exp["cases"]:
            case = next(x for x in CASES if x["name"] == c["name"])
            enc = encode_case(hf_tok, raw_tok, case)
            for k in ("text", "prompt_text", "input_ids", "offsets", "first_response_token"):
                if enc[k] != c[k]:
                    print(f"   FAIL {c['name']}: {k} differs")
                    failures += 1
            lp = torch.tensor(token_logprobs(eager, c["input_ids"]), dtype=torch.float64)
            ref = torch.tensor(c["logprobs"], dtype=torch.float64)
            d_eager = (lp - ref).abs().max().item()
            d_sdpa = (torch.tensor(token_logprobs(sdpa, c["input_ids"]), dtype=torch.float64) - ref).abs().max().item()
            resp = ref[c["first_response_token"] - 1 :]
            print(
                f"   {c['name']:24s} n={c['num_tokens']:3d} first_resp={c['first_response_token']:3d} "
                f"straddle={c['first_response_token_starts_in_prompt']!s:5s} "
                f"lp range [{ref.min().item():.2f}, {ref.max().item():.3f}] std {ref.std().item():.2f} "
                f"resp sum {resp.sum().item():.3f}  |eager-stored| {d_eager:.1e}  |sdpa-stored| {d_sdpa:.1e}"
            )
            if d_eager != 0.0:
                print(f"   FAIL {c['name']}: recomputed eager logprobs differ from stored")
                failures += 1
            if d_sdpa > 1e-4:
                print(f"   FAIL {c['name']}: sdpa differs from eager by {d_sdpa}")
                failures += 1
        if "disk_dtype_logprobs" in exp:
            info = exp["disk_dtype_logprobs"]
            ref = torch.tensor(next(c for c in exp["cases"] if c["name"] == info["case"])["logprobs"])
            low = torch.tensor(info["logprobs"])
            print(f"   {info['dtype']} compute vs f32 on {info['case']}: max |diff| {(low - ref).abs().max().item():.3f}")
    return failures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--out", type=Path, help="generate fixtures into this directory (replaced)")
    g.add_argument("--check", type=Path, help="verify existing fixtures in this directory")
    args = ap.parse_args()
    if args.out:
        generate(args.out)
        failures = check(args.out)
    else:
        failures = check(args.check)
    if failures:
        sys.exit(f"{failures} check(s) failed")
    print("\nall checks passed")


if __name__ == "__main__":
    main()
