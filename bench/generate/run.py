#!/usr/bin/env python3
"""In-process generation: `whence generate` vs transformers' `generate` (CPU, f32, 2 threads).

    /tmp/refenv/bin/python bench/generate/run.py /tmp/whence-ckpt/qwen05 \\
        --whence /tmp/target-bench/release/whence --lengths 128 512 --batch-lengths 128 --runs 3

Both engines continue the same prompt (one question rendered with the
checkpoint's chat template; the script checks that both see the same prompt
token ids) for exactly N new tokens:

- greedy: `whence generate --samples 1 --temperature 0` against
  `model.generate(do_sample=False)`;
- batch: `whence generate --samples S --temperature 1 --seed 0` against
  `model.generate(do_sample=True, num_return_sequences=S, top_k=0, top_p=1)`;
- prefill: N = 1 (the prompt's pass and one head), from which a decode-only
  rate is estimated: (N - 1) / (t(N) - t(1)).

The transformers side has no EOS (`generation_config.eos_token_id = None`), so
it always makes N tokens; the whence side must end every sample by length
(`finish_reason` "length", `generated_tokens` = S x N in the summary), which the
script checks (a random-weight model could draw the EOS; then the row says so).

Each measurement is one process, timed from outside (wall seconds; peak RSS is
the child's own ru_maxrss from wait4) and from inside: whence's summary
(`generated_tokens`, `generation_seconds`: prefill + decode, loading excluded)
and, for transformers, the `generate` call alone (loading excluded, prefill
included), after an untimed 2-token `generate` of the same prompt that takes
torch's one-off first-call set-up out of it (`--cold`: no warm-up; whence's
call is always its process's first and only one, so the default favours
transformers). The engines
alternate (whence, transformers, whence, ...), RUNS times per row; the table
shows medians. The 1-minute load average is read before and after every run;
above --max-load the script waits (up to --max-wait seconds) before starting.

Greedy agreement: one more (untimed) run per greedy length, whence with a
fresh --cache (the samples' token ids are in its `generations` table; the row's
key, a sha256 of the prompt ids and the settings, is recomputed here from the
prompt ids the transformers tokenizer made, which proves both prompts are the
same ids) and transformers with `output_logits=True`; the script reports
whether the N token ids agree, where they first differ, and the largest
difference of the chosen tokens' log-probabilities.

JSON lines of every run go to --out (default: stdout only); the markdown table
ends the output. `--table FILE` rebuilds the table from earlier JSON lines.
"""
import argparse
import hashlib
import json
import os
import shutil
import sqlite3
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
THREADS = 2
PAD = 1000  # <|endoftext|> of the fixture tokenizer; transformers wants a pad id, never emitted here

QUESTION = (
    "A farmer has three fields. The first is 120 metres long and 45 metres wide, the second is twice as "
    "long but only two thirds as wide, and the third is a square whose side is the average of the other "
    "two lengths. Which field is the largest, and by how many square metres? Explain each step."
)


# --------------------------------------------------------------------------
# Children (run under the venv's python)
# --------------------------------------------------------------------------

def child_tokenize(args):
    """The prompt's ids as transformers makes them: the chat template, then the tokenizer."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    messages = [{"role": "user", "content": QUESTION}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    print(json.dumps({"text": text, "ids": ids}))


def child_transformers(args):
    import torch
    import transformers
    from transformers import AutoModelForCausalLM, GenerationConfig

    torch.set_num_threads(args.threads)
    ids = json.loads(Path(args.ids).read_text())
    result = {"engine": "transformers", "torch": torch.__version__, "transformers": transformers.__version__,
              "threads": torch.get_num_threads(), "attn": args.attn}
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, attn_implementation=args.attn).eval()
    result["load_s"] = round(time.perf_counter() - start, 3)
    # No EOS: every sequence gets exactly max_new_tokens.
    model.generation_config.eos_token_id = None
    model.generation_config.pad_token_id = PAD
    settings = dict(max_new_tokens=args.new_tokens, min_new_tokens=None, eos_token_id=None, pad_token_id=PAD,
                    use_cache=True, num_return_sequences=args.samples)
    if args.samples > 1 or args.sample:
        settings.update(do_sample=True, temperature=1.0, top_k=0, top_p=1.0)
        torch.manual_seed(args.seed)
    else:
        settings.update(do_sample=False)
    if args.logits:
        settings.update(return_dict_in_generate=True, output_logits=True)
    config = GenerationConfig(**settings)
    input_ids = torch.tensor([ids], dtype=torch.long)
    attention_mask = torch.ones_like(input_ids)
    if args.warmup:
        # torch's first call in a process pays a one-off set-up (several seconds here, for the
        # prompt's shapes); a 2-token generate of the same prompt takes it out of the timed call.
        warm = GenerationConfig(max_new_tokens=2, do_sample=False, eos_token_id=None, pad_token_id=PAD)
        with torch.inference_mode():
            start = time.perf_counter()
            model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=warm)
            result["warmup_s"] = round(time.perf_counter() - start, 3)
    with torch.inference_mode():
        start = time.perf_counter()
        out = model.generate(input_ids=input_ids, attention_mask=attention_mask, generation_config=config)
        elapsed = time.perf_counter() - start
    sequences = out.sequences if args.logits else out
    new = sequences[:, len(ids):]
    result.update(samples=args.samples, new_tokens=args.new_tokens, generation_s=round(elapsed, 4),
                  generated_tokens=int(new.numel()), tokens_per_s=round(new.numel() / elapsed, 3),
                  lengths=[int(new.shape[1])] * new.shape[0])
    if args.logits:
        logprobs = []
        for step, logits in enumerate(out.logits):  # [samples, vocab] per step, before any processing
            lp = torch.log_softmax(logits.double(), dim=-1)
            logprobs.append(float(lp[0, new[0, step]]))
        result["logprobs"] = logprobs
    if args.samples == 1:
        result["token_ids"] = new[0].tolist()
    print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------
# whence's cache key (crates/whence-generate/src/job.rs: sample_key;
# crates/whence-sample/src/lib.rs: request_seed), to prove the prompt ids
# --------------------------------------------------------------------------

MASK = (1 << 64) - 1


def splitmix64(x):
    z = (x + 0x9E3779B97F4A7C15) & MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
    return z ^ (z >> 31)


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & MASK
    return h


def request_seed(seed, question_id):
    return splitmix64(seed ^ splitmix64(fnv1a64(question_id.encode()))) >> 1


def sample_key(prompt_ids, temperature, top_p, top_k, seed, question_id, samples, max_new_tokens, stop, stop_ids):
    h = hashlib.sha256(b"whence-generate-samples-v1\0")
    h.update(struct.pack("<Q", len(prompt_ids)))
    for i in prompt_ids:
        h.update(struct.pack("<I", i))
    h.update(struct.pack("<d", temperature))
    h.update(struct.pack("<d", top_p))
    h.update(struct.pack("<Q", 0 if top_k is None else top_k + 1))
    h.update(struct.pack("<Q", request_seed(seed, question_id)))
    h.update(struct.pack("<Q", samples))
    h.update(struct.pack("<Q", max_new_tokens))
    h.update(struct.pack("<Q", len(stop)))
    for s in stop:
        h.update(struct.pack("<Q", len(s.encode())) + s.encode())
    h.update(struct.pack("<Q", len(stop_ids)))
    for i in stop_ids:
        h.update(struct.pack("<I", i))
    return h.hexdigest()


# --------------------------------------------------------------------------
# Parent (stdlib only, so that it stays small: children's RSS is their own)
# --------------------------------------------------------------------------

def load1():
    return float(Path("/proc/loadavg").read_text().split()[0])


def busy_cores(seconds=3.0):
    """CPU cores kept busy by other processes over a short window while this script is idle (/proc/stat)."""
    def sample():
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
        return sum(fields[:8]), fields[3] + fields[4]  # total, idle + iowait (ticks)
    total0, idle0 = sample()
    time.sleep(seconds)
    total1, idle1 = sample()
    cores = os.cpu_count() or 1
    dt = total1 - total0
    return round(cores * (dt - (idle1 - idle0)) / dt, 2) if dt else 0.0


def wait_for_load(max_load, max_busy, max_wait):
    """Waits until the 1-minute load is at most max_load and other processes keep at most max_busy
    cores busy (or max_wait s pass); returns (load, busy, waited_s). The load includes this script's
    own previous run, which decays in about 20 s from 2 to 1.5."""
    start = time.monotonic()
    while True:
        busy = busy_cores()
        load = load1()
        if (load <= max_load and busy <= max_busy) or time.monotonic() - start >= max_wait:
            return load, busy, round(time.monotonic() - start)
        time.sleep(5)


def run_child(cmd, log_path):
    """Runs cmd; returns (returncode, wall_s, peak_rss_bytes, stdout)."""
    with open(log_path, "w") as err, tempfile.TemporaryFile("w+") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        return proc.returncode, wall, usage.ru_maxrss * 1024, out.read()


class Bench:
    def __init__(self, args, workdir):
        self.args = args
        self.workdir = workdir
        self.questions = workdir / "questions.jsonl"
        self.questions.write_text(json.dumps({"id": "q0", "prompt": QUESTION}) + "\n")
        code, _, _, stdout = run_child([sys.executable, str(HERE), str(args.model), "--child", "tokenize"],
                                       workdir / "tokenize.log")
        if code != 0:
            sys.exit("tokenizing the prompt failed:\n" + (workdir / "tokenize.log").read_text()[-3000:])
        self.prompt = json.loads(stdout.strip().splitlines()[-1])
        self.ids_path = workdir / "prompt-ids.json"
        self.ids_path.write_text(json.dumps(self.prompt["ids"]))
        self.out = open(args.out, "a") if args.out else None

    def emit(self, record):
        line = json.dumps(record)
        print(line, flush=True)
        if self.out:
            self.out.write(line + "\n")
            self.out.flush()

    def whence_cmd(self, n, samples, out, cache=None):
        cmd = [str(self.args.whence), "generate", str(self.args.model), "-i", str(self.questions), "-o", str(out),
               "--samples", str(samples), "--max-new-tokens", str(n), "--threads", str(THREADS)]
        cmd += ["--temperature", "0"] if samples == 1 else ["--temperature", "1", "--seed", "0"]
        cmd += ["--cache", str(cache)] if cache else ["--no-cache"]
        return cmd

    def tf_cmd(self, n, samples, logits=False):
        cmd = [sys.executable, str(HERE), str(self.args.model), "--child", "transformers",
               "--ids", str(self.ids_path), "--new-tokens", str(n), "--samples", str(samples),
               "--threads", str(THREADS), "--attn", self.args.attn]
        return cmd + (["--logits"] if logits else []) + ([] if self.args.cold else ["--warmup"])

    def run_whence(self, n, samples, cache=None, tag=""):
        out = self.workdir / f"whence-{n}-{samples}{tag}.jsonl"
        summary_path = Path(f"{out}.summary.json")
        for p in (out, summary_path):
            p.unlink(missing_ok=True)
        before = load1()
        code, wall, rss, _ = run_child(self.whence_cmd(n, samples, out, cache), self.workdir / "whence.log")
        after = load1()
        record = {"engine": "whence", "samples": samples, "new_tokens": n, "returncode": code, "wall_s": round(wall, 3),
                  "peak_rss": rss, "load_before": before, "load_after": after}
        if code != 0:
            record["error"] = (self.workdir / "whence.log").read_text()[-2000:]
            return record
        summary = json.loads(summary_path.read_text())
        record.update(generated_tokens=summary["generated_tokens"], generation_s=round(summary["generation_seconds"], 4),
                      tokens_per_s=round(summary["tokens_per_second"], 3), finish_reasons=summary["finish_reasons"],
                      stop_token_ids=summary["settings"]["stop_token_ids"], response_tokens=summary["response_tokens"])
        record["exact"] = summary["generated_tokens"] == samples * n and summary["finish_reasons"]["length"] == samples
        return record

    def run_tf(self, n, samples, logits=False):
        before = load1()
        code, wall, rss, stdout = run_child(self.tf_cmd(n, samples, logits), self.workdir / "transformers.log")
        after = load1()
        record = {"engine": "transformers", "returncode": code, "wall_s": round(wall, 3), "peak_rss": rss,
                  "load_before": before, "load_after": after}
        if code != 0:
            record["error"] = (self.workdir / "transformers.log").read_text()[-2000:]
            return record
        record.update(json.loads(stdout.strip().splitlines()[-1]))
        record["exact"] = record["generated_tokens"] == samples * n
        return record

    def verify(self, n):
        """Greedy agreement at n tokens (untimed): ids, first difference, logprob difference."""
        cache = self.workdir / f"verify-{n}.sqlite"
        cache.unlink(missing_ok=True)
        w = self.run_whence(n, 1, cache=cache, tag="-verify")
        t = self.run_tf(n, 1, logits=True)
        record = {"check": "greedy", "new_tokens": n, "prompt_tokens": len(self.prompt["ids"])}
        if "error" in w or "error" in t:
            record["error"] = w.get("error") or t.get("error")
            return record
        with sqlite3.connect(cache) as db:
            rows = db.execute("SELECT sample, value FROM generations").fetchall()
        key, value = rows[0]
        sample = json.loads(value)[0]
        expected = sample_key(self.prompt["ids"], 0.0, 1.0, None, 0, "q0", 1, n, [], w["stop_token_ids"])
        ours, theirs = sample["tokens"], t["token_ids"]
        first = next((i for i, (a, b) in enumerate(zip(ours, theirs)) if a != b), None)
        if first is None and len(ours) != len(theirs):
            first = min(len(ours), len(theirs))
        agree = first if first is not None else len(ours)
        diffs = [abs(a - b) for a, b in zip(sample["logprobs"][:agree], t["logprobs"][:agree])]
        record.update(
            prompt_ids_identical=(key == expected and len(rows) == 1),
            whence_tokens=len(ours), whence_finish=sample["finish_reason"], transformers_tokens=len(theirs),
            identical=(first is None), first_difference=first, agreeing_prefix=agree,
            max_logprob_abs_diff=max(diffs) if diffs else None,
        )
        if first is not None and first < len(ours) and first < len(theirs):
            record.update(at_difference={
                "whence": [ours[first], sample["logprobs"][first]],
                "transformers": [theirs[first], t["logprobs"][first]],
            })
        record["whence_first_ids"] = ours[:12]
        record["transformers_first_ids"] = theirs[:12]
        return record

    def measure(self, n, samples, rounds):
        records = []
        for r in range(rounds):
            for engine in ("whence", "transformers"):
                load, busy, waited = wait_for_load(self.args.max_load, self.args.max_busy, self.args.max_wait)
                record = self.run_whence(n, samples) if engine == "whence" else self.run_tf(n, samples)
                record.update(round=r, waited_s=waited, others_busy_cores=busy, kind=kind_of(n, samples),
                              samples=samples, new_tokens=n)
                record.pop("token_ids", None)
                self.emit(record)
                records.append(record)
        return records


def kind_of(n, samples):
    if n == 1:
        return "prefill"
    return "greedy" if samples == 1 else "batch"


def fmt_gb(b):
    return f"{b / 1e9:.2f}"


def median(values):
    return statistics.median(values) if values else float("nan")


def table(records, checks):
    rows = {}
    for r in records:
        if "engine" not in r or "kind" not in r:
            continue
        rows.setdefault((r["kind"], r["samples"], r["new_tokens"]), {}).setdefault(r["engine"], []).append(r)
    order = {"prefill": 0, "greedy": 1, "batch": 2}
    lines = [
        "| row | new tokens × samples | whence tok/s | transformers tok/s | ratio | generate s, whence / transformers "
        "| wall s, whence / transformers | peak RSS GB, whence / transformers | runs (exact N) | load (1 min) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    medians = {}
    for key in sorted(rows, key=lambda k: (order[k[0]], k[2], k[1])):
        kind, samples, n = key
        per = rows[key]
        cells = {}
        for engine in ("whence", "transformers"):
            ok = [r for r in per.get(engine, []) if "error" not in r]
            cells[engine] = dict(
                tps=median([r["tokens_per_s"] for r in ok]),
                gen=median([r["generation_s"] for r in ok]),
                wall=median([r["wall_s"] for r in ok]),
                rss=median([r["peak_rss"] for r in ok]),
                runs=len(ok), exact=sum(1 for r in ok if r.get("exact")),
                loads=[x for r in ok for x in (r["load_before"], r["load_after"])],
                busy=[r["others_busy_cores"] for r in ok if "others_busy_cores" in r],
                failed=len(per.get(engine, [])) - len(ok),
            )
        medians[key] = cells
        w, t = cells["whence"], cells["transformers"]
        ratio = w["tps"] / t["tps"] if t["tps"] else float("nan")
        loads = w["loads"] + t["loads"]
        load = f"{min(loads):.1f}–{max(loads):.1f}" if loads else "–"
        busy = w["busy"] + t["busy"]
        if busy:
            load += f" (others ≤ {max(busy):.2f} cores)"
        label = {"prefill": "prefill (N = 1)", "greedy": "greedy", "batch": "sampled, batch"}[kind]
        runs = f"{w['runs']} ({w['exact']}) / {t['runs']} ({t['exact']})"
        if w["failed"] or t["failed"]:
            runs += f", failed {w['failed']} / {t['failed']}"
        lines.append(
            f"| {label} | {n} × {samples} | **{w['tps']:.1f}** | {t['tps']:.1f} | **{ratio:.2f}×** "
            f"| {w['gen']:.2f} / {t['gen']:.2f} | {w['wall']:.1f} / {t['wall']:.1f} "
            f"| {fmt_gb(w['rss'])} / {fmt_gb(t['rss'])} | {runs} | {load} |"
        )
    # Decode-only rate from the prefill row: (N - 1) / (t(N) - t(1)), greedy.
    pre = medians.get(("prefill", 1, 1))
    decode = []
    if pre:
        for key, cells in sorted(medians.items(), key=lambda kv: kv[0][2]):
            if key[0] != "greedy":
                continue
            n = key[2]
            rates = []
            for engine in ("whence", "transformers"):
                dt = cells[engine]["gen"] - pre[engine]["gen"]
                rates.append((n - 1) / dt if dt > 0 else float("nan"))
            decode.append(f"| decode only (est.), greedy | {n - 1} × 1 | {rates[0]:.1f} | {rates[1]:.1f} "
                          f"| {rates[0] / rates[1]:.2f}× | | | | | |")
    lines += decode
    for c in checks:
        if "error" in c:
            lines.append(f"\nGreedy check at {c['new_tokens']}: failed: {c['error'][:300]}")
            continue
        verdict = ("all identical" if c["identical"]
                   else f"first {c['agreeing_prefix']} identical, first difference at token {c['first_difference']}")
        lines.append(
            f"\nGreedy check at {c['new_tokens']} tokens (prompt {c['prompt_tokens']} tokens, prompt ids identical: "
            f"{c['prompt_ids_identical']}): whence {c['whence_tokens']} tokens ({c['whence_finish']}), transformers "
            f"{c['transformers_tokens']}; {verdict}; largest |Δ logprob| over the agreeing tokens "
            f"{c['max_logprob_abs_diff']:.2e}" + (f"; at the difference (id, logprob): {c['at_difference']}"
                                                  if c.get("at_difference") else "")
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, nargs="?", help="checkpoint directory (make_checkpoint.py)")
    parser.add_argument("--whence", type=Path, default=Path("/tmp/target-bench/release/whence"))
    parser.add_argument("--lengths", type=int, nargs="+", default=[128, 512], help="greedy rows: new tokens")
    parser.add_argument("--batch-lengths", type=int, nargs="*", default=[128], help="sampled rows: new tokens")
    parser.add_argument("--batch", type=int, default=4, help="samples per sampled row")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--no-prefill", action="store_true", help="skip the N = 1 row")
    parser.add_argument("--no-verify", action="store_true", help="skip the greedy agreement check")
    parser.add_argument("--attn", default="sdpa")
    parser.add_argument("--cold", action="store_true",
                        help="time transformers' first generate call of the process (default: after a 2-token warm-up on the same prompt)")
    parser.add_argument("--max-load", type=float, default=1.5, help="wait before a run while the 1-min load is above")
    parser.add_argument("--max-busy", type=float, default=0.3,
                        help="wait before a run while other processes keep more cores busy (3 s sample)")
    parser.add_argument("--max-wait", type=float, default=600)
    parser.add_argument("--out", type=Path, help="append JSON lines here")
    parser.add_argument("--table", type=Path, nargs="+", help="rebuild the table from JSON lines and exit")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    # Child mode.
    parser.add_argument("--child", choices=["tokenize", "transformers"], help=argparse.SUPPRESS)
    parser.add_argument("--ids", help=argparse.SUPPRESS)
    parser.add_argument("--new-tokens", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--samples", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--sample", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=THREADS, help=argparse.SUPPRESS)
    parser.add_argument("--logits", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--warmup", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child == "tokenize":
        return child_tokenize(args)
    if args.child == "transformers":
        return child_transformers(args)
    if args.table:
        records = [json.loads(line) for f in args.table for line in f.read_text().splitlines() if line.strip()]
        print(table([r for r in records if "engine" in r], [r for r in records if r.get("check") == "greedy"]))
        return
    if args.model is None:
        parser.error("the checkpoint directory is required")

    workdir = Path(tempfile.mkdtemp(prefix="whence-bench-generate-"))
    bench = Bench(args, workdir)
    bench.emit({"machine": {"nproc": os.cpu_count(), "load": Path("/proc/loadavg").read_text().split()[:3]},
                "prompt_tokens": len(bench.prompt["ids"]), "whence": str(args.whence), "model": str(args.model),
                "workdir": str(workdir)})
    checks = []
    if not args.no_verify:
        for n in args.lengths:
            c = bench.verify(n)
            bench.emit(c)
            checks.append(c)
    records = []
    if not args.no_prefill:
        records += bench.measure(1, 1, args.runs)
    for n in args.lengths:
        records += bench.measure(n, 1, args.runs)
    for n in args.batch_lengths:
        records += bench.measure(n, args.batch, args.runs)
    print()
    print(table(records, checks))
    if not args.keep:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
