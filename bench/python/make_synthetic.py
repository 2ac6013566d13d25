#!/usr/bin/env python3
"""Generate a synthetic benchmark input for `whence` (standard library only).

    python3 bench/python/make_synthetic.py --trajectories 100000 --seed 1 --out DIR

writes into DIR

* ``records.jsonl``   {"id", "question_id", "prompt", "response", "correct"}
* ``teacher.jsonl``, ``student.jsonl``, ``distilled.jsonl``
                      {"id", "offsets": [[start, end], ...], "logprobs": [...]}
  one line per record, same order; offsets are UTF-8 *byte* spans into
  ``response`` (on char boundaries), log-probabilities are natural logs <= 0.

The responses look like reasoning traces (``<think>\\n`` ... ``</think>\\n\\n``
solution, sometimes ``<|im_end|>``), with sentence ends that do and do not
trigger the segmentation pattern of SPEC section 2, some LaTeX and occasional
non-ASCII text.  The three models tokenize differently:

* teacher:   whitespace-attached words (``" word"``), newline runs on their own;
* student:   the teacher's pieces chopped into chunks of at most 3 characters;
* distilled: words with every punctuation character split off;
* special tokens (``<think>``, ``</think>``, ``<|...|>``) are atomic for all;

teacher and student occasionally start with a zero-width BOS token at [0, 0];
about 1% of the token lists per model are cut off early (the tail of the
response is then unscored) and the teacher leaves a final ``<|im_end|>``
unscored in 20% of the responses that have one.

Log-probabilities: every sentence gets a hidden source (teacher / student /
shared / boosted) which fixes target sentence-level probabilities p_T, p_S, p_D;
token log-probabilities are ``ln(p) * Exp(1)`` (so their mean is ln p, with a
realistic heavy tail), quantised to 1e-3.  The output is a deterministic
function of ``--seed`` and ``--trajectories``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from itertools import accumulate
from random import Random

# --------------------------------------------------------------------------
# vocabulary

STARTERS = [
    "So", "Wait", "Let", "Then", "Now", "Hmm", "Therefore", "Alternatively",
    "But", "First", "Next", "I", "The", "We", "This", "Okay", "Maybe", "Since",
    "Thus", "Check", "Actually", "Also", "If", "Suppose", "Hence", "Recall",
]
WORDS = (
    "the of to and a is in that it for as with be on we this are by at from "
    "or an which can if so then not all but one two three have has its value "
    "sum number equation answer term side both each case form root factor "
    "check again compute get means gives need let me see try think step first "
    "second last total square area angle point line circle triangle length "
    "ratio product integer prime even odd digit part solve simplify expand "
    "substitute multiply divide add subtract equal equals plus minus times "
    "over under less more than greater smaller positive negative function "
    "derivative limit series sequence probability count ways choose pairs "
    "set interval bound maximum minimum mod remainder wrong right correct "
    "careful here there now just only maybe actually indeed hence thus"
).split()
MATH = [
    "$x^2$", "$x$", "$y$", "$n$", "$a+b$", "$2x+3=7$", "\\frac{1}{2}",
    "$\\frac{3}{4}$", "$\\sqrt{2}$", "$x = 5$", "$n^2 - 1$", "$k$",
    "$\\pi r^2$", "$(a-b)^2$", "$f(x)$", "=", "+", "-", "\\cdot", "$2^{10}$",
]
NON_ASCII = [
    "café", "naïve", "–", "—", "中文", "数学", "😀", "🤔", "→", "≤", "résumé",
    "x²", "½", "°", "∑", "é",
]
LOWER_CONT = ["e.g.", "i.e.", "so", "which", "and", "or", "then", "because"]


def _lp_strings(limit: int = 20000) -> list:
    """Strings for -k/1000, k = 0..limit, as short as JSON allows."""
    out = ["0.0"]
    for k in range(1, limit + 1):
        s = f"{-k / 1000:.3f}".rstrip("0")
        out.append(s + "0" if s.endswith(".") else s)
    return out


LP_STR = _lp_strings()
LP_MAX = len(LP_STR) - 1

TEACHER_RE = re.compile(r"\n+|[^\S\n]*\S+|\s+")
SPECIAL_RE = re.compile(r"<think>|</think>|<\|[^|<>]*\|>")
DISTILLED_RE = re.compile(r"\n+|[^\S\n]*\w+|[^\S\n]*[^\w\s]|\s+")

SOURCES = ("teacher", "student", "shared", "boosted")
SOURCE_WEIGHTS = (0.30, 0.15, 0.35, 0.20)


# --------------------------------------------------------------------------
# text


def make_sentence(rng: Random) -> tuple:
    """Return (text, terminal) where terminal is the closing punctuation."""
    r = rng.random
    words = [STARTERS[int(r() * len(STARTERS))]]
    n = 2 + int(r() * 5)  # 2..6 more items
    for _ in range(n):
        x = r()
        if x < 0.70:
            words.append(WORDS[int(r() * len(WORDS))])
        elif x < 0.82:
            words.append(str(int(r() * 1000)))
        elif x < 0.996:
            words.append(MATH[int(r() * len(MATH))])
        elif x < 0.9985:
            words.append(NON_ASCII[int(r() * len(NON_ASCII))])
        else:
            words.append(WORDS[int(r() * len(WORDS))] + "\u00a0km")
    text = " ".join(words)
    x = r()
    if x < 0.70:
        end = "."
    elif x < 0.82:
        end = "?"
    elif x < 0.88:
        end = "!"
    elif x < 0.94:
        text += " \\boxed{" + str(int(r() * 100)) + "}"
        end = "}"
        return text, end
    else:
        text += " [0, " + str(1 + int(r() * 9)) + "]"
        end = "]"
        return text, end
    if r() < 0.04:
        return text + ",", ","  # mid-sentence comma: the next one glues on
    return text + end, end


def separator(rng: Random) -> str:
    x = rng.random()
    if x < 0.72:
        return " "
    if x < 0.84:
        return "\n"
    if x < 0.97:
        return "\n\n"
    return " \n"


def draw_probs(rng: Random, source: str) -> tuple:
    u = rng.uniform
    if source == "shared":
        base = u(0.55, 0.95)
        pt, ps, pd = base + u(-0.04, 0.04), base + u(-0.04, 0.04), base + u(-0.04, 0.04)
    elif source == "teacher":
        pt = u(0.55, 0.95)
        ps = u(0.10, pt - 0.15)
        pd = pt + u(-0.10, 0.04)
    elif source == "student":
        ps = u(0.55, 0.95)
        pt = u(0.10, ps - 0.15)
        pd = ps + u(-0.10, 0.04)
    else:  # boosted
        pt = u(0.20, 0.55)
        ps = pt + u(-0.08, 0.08)
        pd = u(0.70, 0.97)
    clip = lambda p: min(0.995, max(0.02, p))  # noqa: E731
    # log-probabilities in units of 1e-3 nats (negative)
    return tuple(1000.0 * math.log(clip(p)) for p in (pt, ps, pd))


SPECIAL_LNP = tuple(1000.0 * math.log(p) for p in (0.97, 0.96, 0.98))


def make_response(rng: Random) -> tuple:
    """Return (response, segments) with segments = [(end_char, (lT, lS, lD))]."""
    r = rng.random
    parts = []
    segs = []
    pos = 0

    def emit(text: str, lnp: tuple) -> None:
        nonlocal pos
        parts.append(text)
        pos += len(text)
        segs.append((pos, lnp))

    emit("<think>\n" if r() < 0.9 else "<think>\n\n", SPECIAL_LNP)
    n = 5 + int(r() * 12)  # 5..16 sentences in the thinking part
    for i in range(n):
        text, end = make_sentence(rng)
        src = rng.choices(SOURCES, SOURCE_WEIGHTS)[0]
        lnp = draw_probs(rng, src)
        if i == n - 1:
            emit(text + "\n", lnp)
            break
        sep = separator(rng)
        x = r()
        if end == "," or x < 0.06:
            # continuation that does not start with a capital: no split
            text += sep + LOWER_CONT[int(r() * len(LOWER_CONT))]
            sep = " "
        elif x < 0.09:
            text += sep + str(int(r() * 100))  # a number after the full stop
            sep = " "
        elif x < 0.11:
            text += sep + "É"  # non-ASCII capital: not [A-Z], no split
            sep = " "
        emit(text + sep, lnp)
    emit("</think>\n\n", SPECIAL_LNP)
    m = 1 + int(r() * 3)
    for i in range(m):
        text, _ = make_sentence(rng)
        lnp = draw_probs(rng, rng.choices(SOURCES, SOURCE_WEIGHTS)[0])
        emit(text + (" " if i < m - 1 else ""), lnp)
    if r() < 0.5:
        emit("<|im_end|>", SPECIAL_LNP)
    return "".join(parts), segs


# --------------------------------------------------------------------------
# tokenization and log-probabilities


def tokenize(text: str, pattern, chop: int = 0) -> list:
    """Char spans of the tokens of ``text``; special tokens are atomic."""
    out = []

    def run(a: int, b: int) -> None:
        for m in pattern.finditer(text, a, b):
            s, e = m.span()
            if chop and e - s > chop:
                out.extend((k, min(k + chop, e)) for k in range(s, e, chop))
            else:
                out.append((s, e))

    pos = 0
    for m in SPECIAL_RE.finditer(text):
        run(pos, m.start())
        out.append(m.span())
        pos = m.end()
    run(pos, len(text))
    return out


def teacher_spans(text: str) -> list:
    return tokenize(text, TEACHER_RE)


def student_spans(text: str) -> list:
    return tokenize(text, TEACHER_RE, chop=3)


def distilled_spans(text: str) -> list:
    return tokenize(text, DISTILLED_RE)


def token_line(rid: str, spans: list, cb, segs: list, model: int, bos: bool,
               rng: Random) -> str:
    """One JSONL line; cb maps char index -> byte index (None: ASCII text)."""
    expo = rng.expovariate
    offs = []
    lps = []
    if bos:
        offs.append("[0,0]")
        lps.append(LP_STR[min(LP_MAX, int(3000.0 * expo(1.0)))])
    seg_i = 0
    seg_end, lnp = segs[0][0], segs[0][1][model]
    for s, e in spans:
        last = e - 1
        while last >= seg_end:
            seg_i += 1
            seg_end, lnp = segs[seg_i][0], segs[seg_i][1][model]
        k = int(-lnp * expo(1.0))
        lps.append(LP_STR[k if k < LP_MAX else LP_MAX])
        if cb is None:
            offs.append(f"[{s},{e}]")
        else:
            offs.append(f"[{cb[s]},{cb[e]}]")
    return ('{"id":"' + rid + '","offsets":[' + ",".join(offs)
            + '],"logprobs":[' + ",".join(lps) + "]}\n")


def generate(n: int, seed: int, out_dir: str, quiet: bool = False) -> dict:
    rng = Random(seed)
    os.makedirs(out_dir, exist_ok=True)
    names = ("records", "teacher", "student", "distilled")
    files = [open(os.path.join(out_dir, f"{k}.jsonl"), "w", encoding="utf-8",
                  newline="\n") for k in names]
    f_rec, f_t, f_s, f_d = files
    q = 0
    q_left = 0
    q_prompt = ""
    q_skill = 0.5
    t0 = time.perf_counter()
    try:
        for i in range(1, n + 1):
            if q_left == 0:
                q += 1
                q_left = 1 + int(rng.random() * 7)  # 1..7, mean 4
                a, b = 2 + int(rng.random() * 98), 2 + int(rng.random() * 98)
                q_prompt = (f"Question {q}: find the sum of all integers $n$ with "
                            f"$1 \\le n \\le {a * b}$ that are divisible by {a} "
                            f"or {b}. Put the final answer in \\boxed{{}}.")
                q_skill = rng.random()
            q_left -= 1
            rid = f"t{i:06d}"
            response, segs = make_response(rng)
            correct = rng.random() < q_skill
            f_rec.write(json.dumps(
                {"id": rid, "question_id": f"q{q:05d}", "prompt": q_prompt,
                 "response": response, "correct": correct},
                ensure_ascii=False) + "\n")
            if response.isascii():
                cb = None
            else:
                cb = list(accumulate((len(c.encode("utf-8")) for c in response),
                                     initial=0))
            for model, (fh, spans_of) in enumerate(
                    ((f_t, teacher_spans), (f_s, student_spans),
                     (f_d, distilled_spans))):
                spans = spans_of(response)
                x = rng.random()
                if x < 0.01:
                    # scoring cut off (context limit): the tail is unscored
                    spans = spans[:len(spans) // 2 + int(rng.random() * len(spans) // 2)]
                elif model == 0 and x < 0.2 and response.endswith("<|im_end|>"):
                    # the teacher's template does not score the end marker
                    spans = spans[:-1]
                bos = model != 2 and rng.random() < 0.05
                fh.write(token_line(rid, spans, cb, segs, model, bos, rng))
            if not quiet and i % 10000 == 0:
                print(f"  {i} trajectories, {time.perf_counter() - t0:.1f}s",
                      file=sys.stderr)
    finally:
        for fh in files:
            fh.close()
    secs = time.perf_counter() - t0
    sizes = {k: os.path.getsize(os.path.join(out_dir, f"{k}.jsonl")) for k in names}
    return {"trajectories": n, "seed": seed, "out": out_dir,
            "seconds": round(secs, 2), "bytes": sizes,
            "total_bytes": sum(sizes.values())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trajectories", type=int, default=100000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", required=True, help="output directory")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    print(json.dumps(generate(args.trajectories, args.seed, args.out, args.quiet)))


if __name__ == "__main__":
    main()
