#!/usr/bin/env python3
"""Plain-Python reference of whence's core steps (standard library only).

    python3 bench/python/baseline.py DIR [--alpha 0.1] [--beta 0.1] [--out actions.jsonl]
    python3 bench/python/baseline.py --self-test [DIR]

DIR holds ``records.jsonl`` and ``teacher.jsonl``, ``student.jsonl``,
``distilled.jsonl`` (the precomputed log-probability files of SPEC section 9,
one line per record, same order), e.g. as written by ``make_synthetic.py``.

Steps (SPEC sections 2-4), for every record:

1. segmentation of the response into actions (special tokens; the paper's
   sentence pattern; whitespace-only pieces attached to a neighbour);
2. token-to-action alignment for each model and the action probability
   ``p = exp(mean(token log-probs))``;
3. classification into shared / teacher / student / boosted (or unscored).

It prints one JSON line with counts, timings ("load": reading and parsing the
four files; "core": steps 1-3) and a SHA-256 checksum over the lines
``f"{id}\\t{index}\\t{start}\\t{end}\\t{label}\\n"`` of all actions in input
order.  ``--out`` writes one JSON row per action for diffing against the Rust
implementation.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import sys
import time
from bisect import bisect_right
from itertools import accumulate

MODELS = ("teacher", "student", "distilled")
LABELS = ("shared", "teacher", "student", "boosted", "unscored")
TOL = 1e-12

# SPEC section 2
SPECIAL_RE = re.compile(r"<think>|</think>|<\|[^|<>]*\|>")
SPLIT_RE = re.compile(r"([.?!}\]])([\s\n]+)([A-Z])")

# Bytes of ASCII characters for which str.isspace() is true map to 0, every
# other byte (non-whitespace ASCII, and all bytes of multi-byte characters) to
# 1; non-ASCII whitespace characters (U+00A0, U+3000, ...) are patched after.
NONWS_TABLE = bytes(0 if chr(b).isspace() else 1 for b in range(128)) + b"\x01" * 128
NON_ASCII_WS_RE = re.compile(r"[^\S\x00-\x7f]")


# --------------------------------------------------------------------------
# segmentation


def segment(text: str) -> list:
    """Actions of ``text`` as a list of (start_byte, end_byte, is_special).

    The actions tile the response.  A piece that is whitespace only (e.g.
    the whitespace between two special tokens, or after the last one) is
    attached to the preceding action, or to the following one at the very
    start; text after a special token keeps its leading whitespace.  A
    response with no non-whitespace character has no action.
    """
    # pieces as (start_char, end_char, special)
    pieces = []

    def add_text(a: int, b: int) -> None:
        start = a
        for m in SPLIT_RE.finditer(text, a, b):
            cut = m.start(3)
            pieces.append((start, cut, False))
            start = cut
        if start < b:
            pieces.append((start, b, False))

    pos = 0
    for m in SPECIAL_RE.finditer(text):
        if m.start() > pos:
            add_text(pos, m.start())
        pieces.append((m.start(), m.end(), True))
        pos = m.end()
    if pos < len(text):
        add_text(pos, len(text))

    # attach whitespace-only pieces
    merged = []
    pending = None  # leading whitespace at the very start
    for a, b, special in pieces:
        if not special and text[a:b].isspace():
            if merged:
                pa, _, ps = merged[-1]
                merged[-1] = (pa, b, ps)
            elif pending is None:
                pending = a
            continue
        if pending is not None:
            a, pending = pending, None
        merged.append((a, b, special))

    # char offsets -> UTF-8 byte offsets
    if text.isascii():
        return merged
    out = []
    pos_b = 0
    for a, b, special in merged:
        n = len(text[a:b].encode("utf-8"))
        out.append((pos_b, pos_b + n, special))
        pos_b += n
    return out


def nonws_prefix(text: str, data: bytes) -> list:
    """nws[i] = number of non-whitespace bytes in data[:i]."""
    mask = bytearray(data.translate(NONWS_TABLE))
    if not text.isascii():
        for m in NON_ASCII_WS_RE.finditer(text):
            b0 = len(text[: m.start()].encode("utf-8"))
            b1 = b0 + len(m.group().encode("utf-8"))
            mask[b0:b1] = bytes(b1 - b0)
    return list(accumulate(mask, initial=0))


# --------------------------------------------------------------------------
# alignment


def align(actions: list, starts: list, nws: list, offsets: list, logprobs: list,
          n_bytes: int) -> list:
    """Per action: exp(mean log-prob of its tokens), or None without tokens."""
    n = len(actions)
    sums = [0.0] * n
    counts = [0] * n
    for (s, e), lp in zip(offsets, logprobs):
        if s == e:
            continue  # zero-width (BOS): counts toward nothing
        if not 0 <= s < e <= n_bytes:
            raise ValueError(f"token span [{s}, {e}] outside the response "
                             f"({n_bytes} bytes)")
        i = bisect_right(starts, s) - 1
        if nws[e] == nws[s]:
            # whitespace-only: the action holding its first byte
            sums[i] += lp
            counts[i] += 1
            continue
        # every action sharing at least one non-whitespace byte
        while i < n:
            a, b = actions[i][0], actions[i][1]
            if a >= e:
                break
            lo = s if s > a else a
            hi = e if e < b else b
            if nws[hi] > nws[lo]:
                sums[i] += lp
                counts[i] += 1
            i += 1
    return [math.exp(sums[i] / counts[i]) if counts[i] else None for i in range(n)]


# --------------------------------------------------------------------------
# classification


def classify(pt, ps, pd, alpha: float, beta: float) -> str:
    if pt is None or ps is None or pd is None:
        return "unscored"
    a = alpha + TOL
    d_ts = pt - ps
    if abs(ps - pd) <= a and abs(pt - pd) <= a and abs(d_ts) <= a:
        return "shared"
    if d_ts > beta + TOL:
        return "teacher"
    if -d_ts > beta + TOL:
        return "student"
    return "boosted"


# --------------------------------------------------------------------------
# I/O


def read_jsonl(path: str) -> list:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def load(directory: str) -> tuple:
    records = read_jsonl(os.path.join(directory, "records.jsonl"))
    scores = [read_jsonl(os.path.join(directory, f"{m}.jsonl")) for m in MODELS]
    for m, rows in zip(MODELS, scores):
        if len(rows) != len(records):
            sys.exit(f"{m}.jsonl: {len(rows)} lines, records.jsonl: {len(records)}")
    return records, scores


def run(records: list, scores: list, alpha: float, beta: float,
        rows_out=None) -> dict:
    counts = dict.fromkeys(LABELS, 0)
    digest = hashlib.sha256()
    n_actions = 0
    for k, rec in enumerate(records):
        rid = rec["id"]
        text = rec["response"]
        data = text.encode("utf-8")
        actions = segment(text)
        starts = [a for a, _, _ in actions]
        nws = nonws_prefix(text, data)
        probs = []
        for rows in scores:
            row = rows[k]
            if row["id"] != rid:
                raise ValueError(f"line {k + 1}: id {row['id']!r} != {rid!r}")
            probs.append(align(actions, starts, nws, row["offsets"],
                               row["logprobs"], len(data)))
        lines = []
        for j, ((a, b, _), pt, ps, pd) in enumerate(zip(actions, *probs)):
            label = classify(pt, ps, pd, alpha, beta)
            counts[label] += 1
            lines.append(f"{rid}\t{j}\t{a}\t{b}\t{label}\n")
            if rows_out is not None:
                rows_out.write(json.dumps(
                    {"id": rid, "index": j, "start": a, "end": b, "label": label,
                     "p_teacher": pt, "p_student": ps, "p_distilled": pd}) + "\n")
        digest.update("".join(lines).encode("utf-8"))
        n_actions += len(actions)
    return {"actions": n_actions,
            "scored_actions": n_actions - counts["unscored"],
            "labels": counts,
            "checksum": digest.hexdigest()}


# --------------------------------------------------------------------------
# self-test


def check_tiling(text: str, actions: list) -> None:
    data = text.encode("utf-8")
    pos = 0
    for a, b, _ in actions:
        assert a == pos and b > a, (text, actions)
        piece = data[a:b].decode("utf-8")  # raises off char boundaries
        assert piece.strip(), (text, actions, "whitespace-only action")
        pos = b
    assert pos == len(data), (text, actions)


def align_brute(text: str, actions: list, offsets: list, logprobs: list) -> list:
    """SPEC section 3 read literally, byte by byte (for the self-test)."""
    ws = []
    for ch in text:
        ws.extend([ch.isspace()] * len(ch.encode("utf-8")))
    toks = [[] for _ in actions]
    for (s, e), lp in zip(offsets, logprobs):
        if s == e:
            continue
        if all(ws[s:e]):
            for i, (a, b, _) in enumerate(actions):
                if a <= s < b:
                    toks[i].append(lp)
            continue
        for i, (a, b, _) in enumerate(actions):
            if any(not ws[k] for k in range(max(a, s), min(b, e))):
                toks[i].append(lp)
    return [math.exp(sum(t) / len(t)) if t else None for t in toks]


def self_test(directory) -> None:
    def texts(t):
        d = t.encode("utf-8")
        return [d[a:b].decode("utf-8") for a, b, _ in segment(t)]

    cases = {
        "<think>\nHello world. This is it.</think>\n\nAnswer: 5.<|im_end|>":
            ["<think>", "\nHello world. ", "This is it.", "</think>",
             "\n\nAnswer: 5.", "<|im_end|>"],
        "": [],
        "Hi.": ["Hi."],
        "  Lead. Then\n": ["  Lead. ", "Then\n"],
        "\n<think>x</think>": ["\n<think>", "x", "</think>"],
        "a. b. C? D! \\boxed{1}\n\nE [0, 1]  F":
            ["a. b. ", "C? ", "D! \\boxed{1}\n\n", "E [0, 1]  ", "F"],
        "Wait.\u00a0Ok. É. Z 中文! Done. 😀":
            ["Wait.\u00a0", "Ok. É. ", "Z 中文! ", "Done. 😀"],
        "x<|end▁of▁sentence|> \n": ["x", "<|end▁of▁sentence|> \n"],
        "<|a|><|b|>  <think>": ["<|a|>", "<|b|>  ", "<think>"],
        "Done.\n</think>": ["Done.\n", "</think>"],
        "3.5 is e.g. Fine": ["3.5 is e.g. ", "Fine"],
        "x = 2.\nthen y. 7 Z": ["x = 2.\nthen y. 7 Z"],
    }
    for t, want in cases.items():
        got = texts(t)
        assert got == want, f"segment({t!r}) = {got!r}, want {want!r}"
        check_tiling(t, segment(t))
    assert texts("  \n") == []  # whitespace-only response: no action

    # alignment: "Ab. Cd." -> actions [0,4) "Ab. " and [4,7) "Cd."
    t = "Ab. Cd."
    acts = segment(t)
    assert [(a, b) for a, b, _ in acts] == [(0, 4), (4, 7)]
    nws = nonws_prefix(t, t.encode())
    starts = [a for a, _, _ in acts]
    #            BOS     "Ab"    ". C" (both)  " " (ws)  "d."
    offs = [[0, 0], [0, 2], [2, 5], [3, 4], [5, 7]]
    lps = [-9.0, -1.0, -2.0, -4.0, -3.0]
    p = align(acts, starts, nws, offs, lps, 7)
    assert abs(p[0] - math.exp((-1 - 2 - 4) / 3)) < 1e-12, p
    assert abs(p[1] - math.exp((-2 - 3) / 2)) < 1e-12, p
    # " C": its only non-whitespace byte is in the second action
    p = align(acts, starts, nws, [[3, 5]], [-1.0], 7)  # " C": has "C"
    assert p[0] is None and p[1] == math.exp(-1.0), p
    p = align(acts, starts, nws, [[0, 0]], [-1.0], 7)
    assert p == [None, None]
    # multi-byte: "é. Ü" is not split (Ü is not [A-Z]); NBSP is whitespace
    t = "Ok.\u00a0Zé"
    acts = segment(t)
    assert [(a, b) for a, b, _ in acts] == [(0, 5), (5, 8)], acts
    nws = nonws_prefix(t, t.encode())
    assert nws == [0, 1, 2, 3, 3, 3, 4, 5, 6], nws
    p = align(acts, [0, 5], nws, [[3, 5], [5, 8]], [-1.0, -2.0], 8)
    assert p[0] == math.exp(-1.0) and p[1] == math.exp(-2.0), p

    # classification, with the tolerance at the thresholds
    assert classify(0.5, 0.5, 0.5, 0.1, 0.1) == "shared"
    assert classify(0.6, 0.5, 0.5, 0.1, 0.1) == "shared"  # 0.6-0.5 > 0.1 in fp
    assert classify(0.9, 0.5, 0.9, 0.1, 0.1) == "teacher"
    assert classify(0.5, 0.9, 0.9, 0.1, 0.1) == "student"
    assert classify(0.5, 0.55, 0.9, 0.1, 0.1) == "boosted"
    assert classify(0.7, 0.6, 0.9, 0.1, 0.1) == "boosted"  # Δ_TS == β
    assert classify(None, 0.6, 0.9, 0.1, 0.1) == "unscored"
    print("hand-written cases: ok", file=sys.stderr)

    if directory is None:
        import tempfile
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from make_synthetic import generate
        with tempfile.TemporaryDirectory() as tmp:
            generate(2000, 7, tmp, quiet=True)
            records, scores = load(tmp)
            src = "2000 generated trajectories (seed 7)"
    else:
        records, scores = load(directory)
        src = directory
    for rec in records:
        check_tiling(rec["response"], segment(rec["response"]))
    for rows in scores:
        for rec, row in zip(records, rows):
            n = len(rec["response"].encode("utf-8"))
            data = rec["response"].encode("utf-8")
            assert len(row["offsets"]) == len(row["logprobs"]), row["id"]
            for (s, e), lp in zip(row["offsets"], row["logprobs"]):
                assert 0 <= s <= e <= n and lp <= 0 and math.isfinite(lp), row["id"]
                data[s:e].decode("utf-8")  # on char boundaries
    # alignment against a brute-force per-byte version, first 1000 records
    for rec, *rows in list(zip(records, *scores))[:1000]:
        text = rec["response"]
        data = text.encode("utf-8")
        acts = segment(text)
        got = [align(acts, [x[0] for x in acts], nonws_prefix(text, data),
                     row["offsets"], row["logprobs"], len(data)) for row in rows]
        assert got == [align_brute(text, acts, row["offsets"], row["logprobs"])
                       for row in rows], rec["id"]
    summary = run(records, scores, 0.1, 0.1)
    print(f"{src}: alignment matches brute force on "
          f"{min(1000, len(records))} records", file=sys.stderr)
    print(f"{src}: tiling ok for {len(records)} responses, "
          f"{summary['actions']} actions", file=sys.stderr)
    print("self-test passed")


# --------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", nargs="?", help="directory with records.jsonl and "
                    "teacher/student/distilled.jsonl")
    ap.add_argument("--alpha", type=float, default=0.1)
    ap.add_argument("--beta", type=float, default=0.1)
    ap.add_argument("--out", help="write one JSON row per action here")
    ap.add_argument("--self-test", action="store_true",
                    help="check segmentation/alignment on hand-written cases and "
                         "on DIR (default: 2000 freshly generated trajectories)")
    args = ap.parse_args()
    if args.self_test:
        self_test(args.dir)
        return
    if args.dir is None:
        ap.error("DIR is required")

    t0 = time.perf_counter()
    records, scores = load(args.dir)
    t1 = time.perf_counter()
    out = open(args.out, "w", encoding="utf-8") if args.out else None
    try:
        t2 = time.perf_counter()
        summary = run(records, scores, args.alpha, args.beta, out)
        t3 = time.perf_counter()
    finally:
        if out is not None:
            out.close()
    core = t3 - t2
    result = {
        "trajectories": len(records),
        "actions": summary["actions"],
        "scored_actions": summary["scored_actions"],
        "labels": summary["labels"],
        "alpha": args.alpha,
        "beta": args.beta,
        "load_seconds": round(t1 - t0, 3),
        "core_seconds": round(core, 3),
        "core_actions_per_second": round(summary["actions"] / core) if core else None,
        "checksum": summary["checksum"],
    }
    if out is not None:
        result["note"] = "core_seconds includes writing --out"
    print(json.dumps(result))


if __name__ == "__main__":
    main()
