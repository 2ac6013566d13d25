#!/usr/bin/env python3
"""Writes the seed corpora under fuzz/seeds/ from small hand-made inputs,
the first records of examples/synthetic/ and the real chat templates of
tests/templates/. (records_parquet has no seeds yet.)"""
import json
import os
import struct

root = os.path.dirname(os.path.abspath(__file__))
examples = os.path.join(root, "..", "examples", "synthetic")
templates = os.path.join(root, "..", "tests", "templates")


def seed(target, name, data):
    folder = os.path.join(root, "seeds", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def lines(path, n):
    with open(path, encoding="utf-8") as f:
        return [next(f) for _ in range(n)]


records = [json.loads(l) for l in lines(os.path.join(examples, "records.jsonl"), 2)]
teacher = [json.loads(l) for l in lines(os.path.join(examples, "teacher.jsonl"), 2)]

# records_jsonl: FLAGS byte, then JSON lines.
small = [
    {"id": "a", "question_id": 7, "prompt": "What is 2+2?", "response": "It is 4. \\boxed{4}", "correct": True, "answer": "4"},
    {"id": 2, "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                           {"role": "assistant", "content": [{"type": "text", "text": "Hello."}]}]},
    {"conversations": [{"from": "human", "value": "Q?"}, {"from": "gpt", "value": "<think>\nHmm.</think> A."}], "answer": 3.5},
]
jsonl = "".join(json.dumps(r) + "\n" for r in small)
seed("records_jsonl", "small", b"\x00" + jsonl.encode())
seed("records_jsonl", "small-skip", b"\x01" + (jsonl + "not json\n{\"id\": \"a\", \"prompt\": \"p\", \"response\": \" \"}\n\n").encode())
seed("records_jsonl", "questions", b"\x04" + jsonl.encode())
seed("records_jsonl", "prompt-optional", b"\x02" + b'{"response": "Only a response."}\n{"id": 1, "response": "x", "prompt": null}\n')
short = [dict(r, response=r["response"][:300]) for r in records]
seed("records_jsonl", "example", b"\x00" + "".join(json.dumps(r) + "\n" for r in short).encode())

# score_file: RESPONSE \0 score lines.
response = "First step. Then <think>\nwe add</think> the rest!"
offsets = [[0, 5], [5, 11], [11, 16], [16, 24], [24, 27], [27, 31], [31, 39], [39, 43], [43, len(response.encode())]]
score_lines = [
    {"id": "a", "offsets": offsets, "logprobs": [-0.5] * len(offsets)},
    {"id": 7, "offsets": [[0, 3], [2, 1]], "logprobs": [0.0, -1e9]},
    {"id": "b", "offsets": [], "logprobs": []},
]
seed("score_file", "small", (response + "\0" + "".join(json.dumps(l) + "\n" for l in score_lines)).encode())
seed("score_file", "python-nan", response + "\0" + '{"id": "a", "offsets": [[0, 5]], "logprobs": [NaN]}\n')
r0 = records[0]["response"]
t0 = teacher[0]
cut = [i for i, (s, e) in enumerate(t0["offsets"]) if e <= 400]
line = {"id": t0["id"], "offsets": [t0["offsets"][i] for i in cut], "logprobs": [t0["logprobs"][i] for i in cut]}
seed("score_file", "example", (r0[:400] + "\0" + json.dumps(line) + "\n").encode("utf-8", "surrogatepass"))


# segment_align: FLAGS TEXT \0 tokens (start u32, end u32, -16·logprob u8).
def tokens(spans, lp=8):
    return b"".join(struct.pack("<IIB", s, e, lp) for s, e in spans)


text = "<think>\nFirst, x = 2. Then y!  Next [1] \\boxed{3}.</think>\n\n<|im_end|>"
size = len(text.encode())
spans = [(i, min(i + 4, size)) for i in range(0, size, 4)]
for flags in range(4):
    seed("segment_align", f"tiles-{flags}", bytes([flags]) + text.encode() + b"\0" + tokens(spans))
seed("segment_align", "odd-spans", b"\x80" + "héllo wörld. Ünïcode\u2028Next.".encode() + b"\0"
     + tokens([(0, 2), (9, 3), (0xFFFFFFFF, 1), (1, 0xFFFFFFFF), (2, 2), (100000, 100001)], 200))
seed("segment_align", "example", b"\x00" + r0[:600].encode() + b"\0" + tokens([tuple(p) for p in t0["offsets"][:80]], 20))

# grade: RESPONSE \0 REFERENCE.
for name, response, reference in [
    ("boxed-frac", "So the answer is \\boxed{\\frac{1}{2}}.", "0.5"),
    ("answer-is", "Thus the answer is $x^2+2x+1$", "(x+1)^2"),
    ("last-number", "We get 3, then 4, then 1,024", "1024"),
    ("choice", "Looking at the options... (C) is right.\nAnswer: (C)", "C"),
    ("tuple", "\\boxed{(1, -2), \\{3,4\\}}", "\\left(1,-2\\right)"),
    ("matrix", "\\boxed{\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}}", "\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}"),
    ("nested", "\\fbox{\\sqrt{\\dfrac{3}{4}}} and \\boxed{2^{10}\\cdot 3\\%}", "\\frac{\\sqrt3}{2}"),
    ("text", "\\boxed{\\text{(B) } 12\\text{ cm}^2}", "\\text{(B)}"),
    ("example", r0[-400:], records[0].get("answer") or "24"),
]:
    seed("grade", name, (response + "\0" + str(reference)).encode())

# template_render: TEMPLATE \0 EXTRA \0 MESSAGES.
conversation = ["system:You are helpful.", "user:What is 2+2?", "assistant:<think>\nEasy.</think>4", "user:And 3+3?"]
for name in sorted(os.listdir(templates)):
    if name.endswith(".jinja"):
        with open(os.path.join(templates, name), encoding="utf-8") as f:
            source = f.read()
        seed("template_render", name, "\0".join([source, json.dumps({"enable_thinking": False})] + conversation))
for name, source in [
    ("loop", "{% for m in messages %}<|{{ m.role }}|>{{ m.content | trim }}{% if not loop.last %}\n{% endif %}{% endfor %}"
             "{% if add_generation_prompt %}<|assistant|>{% endif %}"),
    ("macro", "{% macro r(n) %}{% if n > 0 %}{{ r(n - 1) }}{{ n }}{% endif %}{% endmacro %}{{ r(5) }}{{ bos_token }}"),
    ("raise", "{% if messages[0].role != 'system' %}{{ raise_exception('first must be system') }}{% endif %}"),
    ("json", "{{ messages | tojson(indent=2) }}{{ tools | tojson }}{{ strftime_now('%Y-%m-%d') }}"),
    ("namespace", "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + m.content|length %}{% endfor %}{{ ns.n }}"
                  "{{ 'x' * 3 }}{{ range(3) | list }}{{ messages[-1].content.split(':') }}"),
]:
    seed("template_render", name, "\0".join([source, "{}"] + conversation))

# serve_settings: request bodies.
for name, body in [
    ("defaults", {"model": "m", "prompt": "Hi"}),
    ("scoring", {"prompt": [1, 2, 3], "max_tokens": 0, "echo": True, "logprobs": 1, "prompt_logprobs": 0, "return_token_ids": True}),
    ("sampling", {"prompt": ["a", "b"], "n": 4, "temperature": 0.7, "top_p": 0.9, "top_k": 50, "seed": -3,
                  "stop": ["\n\n", "</s>"], "stop_token_ids": [2, 151645], "ignore_eos": False, "best_of": 4}),
    ("unsupported", {"prompt": "x", "frequency_penalty": 0.5, "logit_bias": {"1": 2}, "stream": True, "suffix": "y"}),
    ("neutral", {"prompt": "x", "frequency_penalty": 0, "repetition_penalty": 1.0, "logit_bias": {}, "guided_choice": [], "suffix": ""}),
]:
    seed("serve_settings", name, json.dumps(body))
