#!/usr/bin/env python3
"""Optional cross-check: re-render every case of expected.json / expected_errors.json with
`transformers` itself and compare. Not needed to regenerate the fixtures.

    /tmp/tplenv/bin/pip install transformers     # also pulls tokenizers; torch is NOT needed
    /tmp/tplenv/bin/python tests/templates/crosscheck_transformers.py

Two paths are checked for every case:
  1. transformers.utils.chat_template_utils.render_jinja_template(...) with exactly the
     stored variables (the low-level renderer apply_chat_template calls);
  2. PreTrainedTokenizerFast(...).apply_chat_template(messages, tokenize=False, ...) on a
     throw-away tokenizer that carries the template and the model's bos/eos tokens, i.e.
     the public API path (message normalisation, special_tokens_map injection, ...).
strftime_now is not called by any vendored template, so transformers' wall-clock
strftime_now cannot make the two sides differ.
"""

import json
import pathlib
import sys

import jinja2
import transformers
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast
from transformers.utils.chat_template_utils import render_jinja_template

HERE = pathlib.Path(__file__).resolve().parent
STANDARD = {"messages", "add_generation_prompt", "bos_token", "eos_token", "tools", "documents"}


def template_source(name):
    return (HERE / f"{name}.jinja").read_bytes().decode("utf-8")


def via_renderer(entry):
    v = dict(entry["variables"])
    messages = v.pop("messages")
    out = render_jinja_template(conversations=[messages], chat_template=template_source(entry["template"]), **v)
    # transformers 4.x returns (rendered, generation_indices); so does 5.x
    rendered = out[0] if isinstance(out, tuple) else out
    return rendered[0] if isinstance(rendered, list) else rendered


def via_apply_chat_template(entry):
    v = entry["variables"]
    special = {k: v[k] for k in ("bos_token", "eos_token") if v[k] is not None}
    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.WordLevel({"[UNK]": 0}, unk_token="[UNK]")),
        unk_token="[UNK]",
        chat_template=template_source(entry["template"]),
        **special,
    )
    extra = {k: val for k, val in v.items() if k not in STANDARD}
    return tok.apply_chat_template(
        v["messages"],
        tools=v["tools"],
        documents=v["documents"],
        add_generation_prompt=v["add_generation_prompt"],
        tokenize=False,
        **extra,
    )


def main():
    print(f"transformers {transformers.__version__}, jinja2 {jinja2.__version__}", file=sys.stderr)
    failures = 0
    expected = json.loads((HERE / "expected.json").read_text(encoding="utf-8"))
    for entry in expected:
        for label, fn in (("render_jinja_template", via_renderer), ("apply_chat_template", via_apply_chat_template)):
            got = fn(entry)
            if got != entry["rendered"]:
                failures += 1
                print(f"MISMATCH [{label}] {entry['template']}/{entry['case']}\n  want {entry['rendered']!r}\n  got  {got!r}")
    errors = json.loads((HERE / "expected_errors.json").read_text(encoding="utf-8"))
    for entry in errors:
        for label, fn in (("render_jinja_template", via_renderer), ("apply_chat_template", via_apply_chat_template)):
            try:
                got = fn(entry)
            except jinja2.exceptions.TemplateError as e:
                if str(e) != entry["error"]:
                    failures += 1
                    print(f"MISMATCH [{label}] {entry['template']}/{entry['case']}: error {str(e)!r}")
            else:
                failures += 1
                print(f"MISMATCH [{label}] {entry['template']}/{entry['case']}: rendered {got!r}, expected an error")
    n = 2 * (len(expected) + len(errors))
    print(f"{n - failures}/{n} checks agree", file=sys.stderr)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
