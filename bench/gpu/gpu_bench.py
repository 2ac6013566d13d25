#!/usr/bin/env python3
"""Helper of bench/gpu/run.sh: whence (a `--features cuda` build) against
transformers on the same GPU. Needs torch, transformers (with tokenizers,
safetensors, numpy); no network, no Rust toolchain.

    gpu_bench.py parity --whence BIN --device cuda --results DIR
    gpu_bench.py speed  --whence BIN --device cuda --results DIR [--shapes ...] [--lengths ...]
    gpu_bench.py table  --results DIR

parity: the cases of tests/reference/fixtures/expected/<name>.json (4 tiny
checkpoints x 4 cases) as records, scored with `whence score --device D
--dtype f32` and `--dtype bf16`; transformers scores the same ids on the
same device (f32 eager and bf16 sdpa). Raw cases run with `--template raw`,
chat cases with `--template auto` (the checkpoint's chat template), so the
ids are those of the reference (checked: the response spans must equal the
reference offsets). Compared over the response tokens, which is what `whence
score` writes. Pass/fail:
  - whence f32 vs expected/<name>.json (transformers f32, CPU): max |diff| <= 1e-4;
  - whence bf16 vs transformers bf16 (sdpa) on the same device: max |diff| <= 0.2 and
    mean |diff| <= 0.04 (BF16_GENERIC of crates/whence-checkpoint/tests/parity.rs:
    on a GPU whence runs candle's generic ops, all in bf16 as transformers does).
Also reported, without a verdict: whence bf16 vs the f32 reference,
transformers bf16 on the device vs expected-bf16/<name>.json (CPU) and vs f32,
transformers f32 on the device vs the reference.

speed: random-weight checkpoints of Qwen2.5-0.5B's and Qwen2.5-7B's shapes
(made with bench/checkpoint/make_checkpoint.py if missing), one record of
exactly L tokens (single-token words of the tiny tokenizer, seeded; raw
template). whence: two processes, one scoring 1 record, one scoring 1+K
copies; per-record time = (t(1+K) - t(1)) / K, where t is the "scored N tokens
in X s" line of `whence -v` (it includes the lazy weight load and the first
record's warm-up, which cancel out in the difference). transformers
(sdpa, dtype=bf16): a child process loads the model, scores once as a
warm-up, then times K runs (forward + float32 log_softmax + gather, with
torch.cuda.synchronize) and takes the best. Peak GPU memory: nvidia-smi
polled every ~0.1 s during each process (`--query-compute-apps` for the
child's pid; where the pid is not listed, as in some containers, the
device's memory.used minus its value before the process started); for
transformers also torch.cuda.max_memory_allocated/reserved. On --device cpu
(the dry run) the peak is the child's RSS (ru_maxrss) instead.

Results: DIR/results.jsonl (one JSON object per measurement) and
DIR/results.md (the tables).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
FIXTURES = REPO / "tests" / "reference" / "fixtures"
MAKE_CHECKPOINT = REPO / "bench" / "checkpoint" / "make_checkpoint.py"
CHECKPOINTS = ["tiny-qwen2", "tiny-qwen3", "tiny-llama3", "tiny-mistral"]
TOL_F32 = 1e-4
TOL_BF16 = 0.2
TOL_BF16_MEAN = 0.04
SHAPE_DIRS = {"qwen2.5-0.5b": "qwen05-bf16", "qwen2.5-7b": "qwen7b-bf16"}
MIB = 1 << 20


# --------------------------------------------------------------------------
# Shared
# --------------------------------------------------------------------------

def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def append_result(results: Path, obj: dict) -> None:
    with open(results / "results.jsonl", "a") as f:
        f.write(json.dumps(obj) + "\n")
    print(json.dumps(obj), flush=True)


def write_jsonl(path: Path, rows) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


class GpuPeak:
    """Polls nvidia-smi while a process runs: the most memory its pid held, and the
    most the device held above its level before the start."""

    def __init__(self, device: str, interval: float = 0.1):
        self.enabled = device.startswith("cuda") and shutil.which("nvidia-smi") is not None
        self.index = device.split(":", 1)[1] if ":" in device else "0"
        self.interval = interval
        self.pid = None
        self.pid_peak_mib = 0
        self.device_peak_mib = 0
        self.baseline_mib = self._device_used() if self.enabled else 0
        self._stop = threading.Event()
        self._thread = None

    def _smi(self, *query: str) -> str:
        try:
            return subprocess.run(["nvidia-smi", "-i", self.index, *query, "--format=csv,noheader,nounits"],
                                  capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            return ""

    def _device_used(self) -> int:
        out = self._smi("--query-gpu=memory.used").strip().splitlines()
        return int(float(out[0])) if out and out[0].strip().replace(".", "").isdigit() else 0

    def _poll(self) -> None:
        while not self._stop.is_set():
            for line in self._smi("--query-compute-apps=pid,used_memory").splitlines():
                parts = [p.strip() for p in line.split(",")]
                if len(parts) == 2 and parts[0].isdigit() and self.pid is not None and int(parts[0]) == self.pid:
                    try:
                        self.pid_peak_mib = max(self.pid_peak_mib, int(float(parts[1])))
                    except ValueError:
                        pass
            self.device_peak_mib = max(self.device_peak_mib, self._device_used())
            self._stop.wait(self.interval)

    def start(self, pid: int) -> None:
        self.pid = pid
        if self.enabled:
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()

    def stop(self) -> dict:
        if not self.enabled:
            return {"gpu_peak_mib": None, "gpu_peak_method": "none (no nvidia-smi or not a cuda device)"}
        self._stop.set()
        if self._thread:
            self._thread.join()
        if self.pid_peak_mib:
            return {"gpu_peak_mib": self.pid_peak_mib, "gpu_peak_method": "nvidia-smi compute-apps, own pid",
                    "gpu_device_peak_above_baseline_mib": self.device_peak_mib - self.baseline_mib}
        return {"gpu_peak_mib": self.device_peak_mib - self.baseline_mib,
                "gpu_peak_method": f"nvidia-smi memory.used above the {self.baseline_mib} MiB before the start (pid not listed)"}


def run_child(cmd: list[str], device: str, env=None) -> dict:
    """Runs cmd, polling the GPU; returns rc, stdout, stderr, wall, ru_maxrss and the GPU peak."""
    peak = GpuPeak(device)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peak.start(proc.pid)
    out, err = [], []
    t_out = threading.Thread(target=lambda: out.append(proc.stdout.read()))
    t_err = threading.Thread(target=lambda: err.append(proc.stderr.read()))
    t_out.start()
    t_err.start()
    _, status, usage = os.wait4(proc.pid, 0)
    t_out.join()
    t_err.join()
    wall = time.perf_counter() - start
    return {"rc": os.waitstatus_to_exitcode(status), "stdout": out[0] if out else "", "stderr": err[0] if err else "",
            "wall_s": round(wall, 3), "ru_maxrss_mib": round(usage.ru_maxrss / 1024, 1), **peak.stop()}


def whence_score(whence: str, model: Path, records: Path, out: Path, device: str, dtype: str, template: str) -> dict:
    cmd = [whence, "-v", "score", "--model", str(model), "--out", str(out), "--device", device, "--dtype", dtype,
           "--template", template, "--no-cache", str(records)]
    r = run_child(cmd, device)
    r["cmd"] = " ".join(cmd)
    m = re.search(r"scored (\d+) tokens in ([0-9.]+) s", r["stderr"])
    r["scored_tokens"], r["scoring_s"] = (int(m.group(1)), float(m.group(2))) if m else (None, None)
    if r["rc"] != 0:
        r["error"] = (r["stderr"].strip().splitlines() or ["no output"])[-1][:400]
    return r


def read_scores(path: Path) -> dict:
    rows = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            rows[d["id"]] = d
    return rows


def torch_setup(device: str):
    import torch

    torch.manual_seed(0)
    if device == "cpu":
        torch.set_num_threads(max(1, min(os.cpu_count() or 1, 16)))
    else:
        # Plain f32 products for the f32 comparison (no TF32).
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    return torch


def load_tf(torch, path: Path, dtype, attn: str, device: str):
    from transformers import AutoModelForCausalLM

    kw = {}
    if device != "cpu":
        try:
            import accelerate  # noqa: F401  (device_map needs it; without it: load on the CPU, then move)

            kw["device_map"] = device
        except ImportError:
            pass
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, attn_implementation=attn, **kw)
    return model.to(device).eval()


def tf_logprobs(torch, model, ids: list[int], device: str) -> list[float]:
    x = torch.tensor([ids], dtype=torch.long, device=device)
    with torch.inference_mode():
        logits = model(input_ids=x).logits[0, :-1].float()
        lp = torch.log_softmax(logits, dim=-1).gather(1, x[0, 1:, None])[:, 0]
    return lp.cpu().tolist()


def stats(a, b) -> dict:
    import numpy as np

    d = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    return {"positions": int(d.size), "max_abs": float(d.max()), "mean_abs": float(d.mean())}


# --------------------------------------------------------------------------
# parity
# --------------------------------------------------------------------------

def parity(args) -> int:
    torch = torch_setup(args.device)
    import transformers

    transformers.logging.set_verbosity_error()
    work = args.results / "parity"
    work.mkdir(parents=True, exist_ok=True)
    failures = 0
    for name in args.checkpoints:
        ckdir = args.fixtures / name
        ref = json.loads((args.fixtures / "expected" / f"{name}.json").read_text(encoding="utf-8"))
        bf16_path = args.fixtures / "expected-bf16" / f"{name}.json"
        ref_bf16 = json.loads(bf16_path.read_text(encoding="utf-8")) if bf16_path.exists() else None
        cases = {c["name"]: c for c in ref["cases"]}
        raw = [{"id": c["name"], "prompt": c["prompt_text"], "response": c["response"]} for c in ref["cases"] if c["kind"] == "raw"]
        chat = [{"id": c["name"], "messages": c["messages"], "response": c["response"]} for c in ref["cases"] if c["kind"] != "raw"]
        write_jsonl(work / f"{name}-raw.jsonl", raw)
        write_jsonl(work / f"{name}-chat.jsonl", chat)

        # transformers on the same device: f32 eager (as the reference) and bf16 sdpa.
        tf = {}
        for dtype, attn in (("f32", "eager"), ("bf16", "sdpa")):
            model = load_tf(torch, ckdir, {"f32": torch.float32, "bf16": torch.bfloat16}[dtype], attn, args.device)
            tf[dtype] = {n: tf_logprobs(torch, model, c["input_ids"], args.device) for n, c in cases.items()}
            del model
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()

        for dtype in ("f32", "bf16"):
            got = {}
            for kind, template in (("raw", "raw"), ("chat", "auto")):
                out = work / f"{name}-{kind}-{dtype}.scores.jsonl"
                r = whence_score(args.whence, ckdir, work / f"{name}-{kind}.jsonl", out, args.device, dtype, template)
                if r["rc"] != 0:
                    append_result(args.results, {"part": "parity", "checkpoint": name, "dtype": dtype, "kind": kind,
                                                 "verdict": "FAIL", "error": r.get("error"), "cmd": r["cmd"]})
                    failures += 1
                    continue
                got.update(read_scores(out))
            # Per comparison, over all cases' response tokens.
            pairs = {"whence_vs_f32_ref": [], "whence_vs_tf_device": [], "tf_device_vs_f32_ref": [], "tf_device_vs_cpu_bf16": []}
            spans_ok = True
            for n, c in cases.items():
                if n not in got:
                    continue
                first = c["first_response_token"]
                want_f32 = c["logprobs"][first - 1:]
                w = got[n]["logprobs"]
                plen = c["prompt_byte_len"]
                want_spans = [[max(s - plen, 0), e - plen] for s, e in c["offsets"][first:]]
                if len(w) != len(want_f32) or got[n]["offsets"] != want_spans:
                    spans_ok = False
                    log(f"{name}/{n}/{dtype}: whence scored {len(w)} tokens, the reference has {len(want_f32)} (or the spans differ)")
                    continue
                t = tf[dtype][n][first - 1:]
                pairs["whence_vs_f32_ref"].append((w, want_f32))
                pairs["whence_vs_tf_device"].append((w, t))
                pairs["tf_device_vs_f32_ref"].append((t, want_f32))
                if dtype == "bf16" and ref_bf16:
                    cb = next(x for x in ref_bf16["cases"] if x["name"] == n)["logprobs"][first - 1:]
                    pairs["tf_device_vs_cpu_bf16"].append((t, cb))
            row = {"part": "parity", "checkpoint": name, "dtype": dtype, "device": args.device, "spans_match": spans_ok}
            for key, lst in pairs.items():
                if lst:
                    row[key] = stats([x for a, _ in lst for x in a], [x for _, b in lst for x in b])
            if dtype == "f32":
                basis, tol = "whence_vs_f32_ref", TOL_F32
            else:
                basis, tol = "whence_vs_tf_device", TOL_BF16
            ok = spans_ok and basis in row and row[basis]["max_abs"] <= tol and len(got) == len(cases)
            if dtype != "f32":
                ok = ok and row[basis]["mean_abs"] <= TOL_BF16_MEAN
            row.update({"verdict_on": basis, "tolerance": tol, "verdict": "PASS" if ok else "FAIL"})
            failures += 0 if ok else 1
            append_result(args.results, row)
    return failures


# --------------------------------------------------------------------------
# speed
# --------------------------------------------------------------------------

def single_token_words(tokenizer) -> list[str]:
    """Words w (ASCII letters) whose ' w' is one token of the tokenizer, also inside a text."""
    words = []
    for tok in sorted(tokenizer.get_vocab()):
        if tok.startswith("Ġ") and tok[1:].isascii() and tok[1:].isalpha() and len(tok) > 2:
            w = tok[1:]
            if len(tokenizer.encode(" " + w, add_special_tokens=False).ids) == 1:
                words.append(w)
    return words


def make_text(tokenizer, length: int, seed: int) -> tuple[str, str, list[int]]:
    """A prompt and response of exactly `length` tokens together, and their ids."""
    words = single_token_words(tokenizer)
    assert len(words) > 50, f"only {len(words)} single-token words"
    rng = random.Random(seed)
    seq = [rng.choice(words) for _ in range(length)]
    prompt = "".join(" " + w for w in seq[:8])
    response = "".join(" " + w for w in seq[8:])
    ids = tokenizer.encode(prompt + response, add_special_tokens=True).ids
    assert len(ids) == length, (len(ids), length)
    return prompt, response, ids


def ensure_checkpoint(args, shape: str) -> Path:
    path = args.ckpt_root / SHAPE_DIRS[shape]
    if (path / "config.json").exists() and list(path.glob("*.safetensors")):
        return path
    cmd = [sys.executable, str(MAKE_CHECKPOINT), "--shape", shape, "--dtype", "bf16", "--out", str(path), "--no-hash"]
    log("# " + " ".join(cmd))
    start = time.perf_counter()
    subprocess.run(cmd, check=True)
    append_result(args.results, {"part": "checkpoint", "shape": shape, "path": str(path),
                                 "seconds": round(time.perf_counter() - start, 1),
                                 "bytes": sum(p.stat().st_size for p in path.glob("*.safetensors"))})
    return path


def tf_child(args) -> None:
    """One transformers measurement (own process): load, warm up, time --reps runs."""
    torch = torch_setup(args.device)
    import transformers

    transformers.logging.set_verbosity_error()
    ids = [int(x) for x in Path(args.ids).read_text().split()]
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype]
    cuda = args.device.startswith("cuda")
    result = {"engine": "transformers", "attn": "sdpa", "dtype": args.dtype, "length": len(ids), "torch": torch.__version__,
              "transformers": transformers.__version__}
    start = time.perf_counter()
    model = load_tf(torch, Path(args.model), dtype, "sdpa", args.device)
    if cuda:
        torch.cuda.synchronize()
    result["load_s"] = round(time.perf_counter() - start, 3)
    x = torch.tensor([ids], dtype=torch.long, device=args.device)

    def score():
        with torch.inference_mode():
            logits = model(input_ids=x).logits[0, :-1]
            lp = torch.log_softmax(logits.float(), dim=-1).gather(1, x[0, 1:, None])[:, 0]
            return lp.cpu()

    times = []
    try:
        for i in range(1 + args.reps):
            if cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = score()
            if cuda:
                torch.cuda.synchronize()
            if i >= 1:
                times.append(time.perf_counter() - t0)
        result["logprob_sum"] = round(float(out.double().sum()), 3)
        result["finite"] = bool(torch.isfinite(out).all())
    except (RuntimeError, MemoryError) as e:  # torch.cuda.OutOfMemoryError is a RuntimeError
        result["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
    if times:
        result["runs_s"] = [round(t, 4) for t in times]
        result["per_record_s"] = round(min(times), 4)
        result["tokens_per_s"] = round(len(ids) / min(times), 1)
    if cuda:
        result["torch_max_allocated_mib"] = round(torch.cuda.max_memory_allocated() / MIB)
        result["torch_max_reserved_mib"] = round(torch.cuda.max_memory_reserved() / MIB)
    print(json.dumps(result), flush=True)


def speed(args) -> int:
    from tokenizers import Tokenizer

    work = args.results / "speed"
    work.mkdir(parents=True, exist_ok=True)
    failures = 0
    for shape in args.shapes:
        ckpt = ensure_checkpoint(args, shape)
        tok = Tokenizer.from_file(str(ckpt / "tokenizer.json"))
        for length in args.lengths:
            prompt, response, ids = make_text(tok, length, seed=length)
            ids_path = work / f"ids-{length}.txt"
            ids_path.write_text(" ".join(map(str, ids)) + "\n")
            reps = args.reps if length < 32768 else max(1, args.reps - 1)
            base = {"part": "speed", "shape": shape, "length": length, "dtype": args.dtype, "device": args.device}
            # whence: 1 record, then 1 + reps records, each a copy of the same text.
            runs = {}
            for n in (1, 1 + reps):
                records = work / f"records-{length}-x{n}.jsonl"
                write_jsonl(records, [{"id": f"r{i}", "prompt": prompt, "response": response} for i in range(n)])
                out = work / f"scores-{shape}-{length}-x{n}.jsonl"
                runs[n] = whence_score(args.whence, ckpt, records, out, args.device, args.dtype, "raw")
                r = runs[n]
                if r["rc"] == 0:
                    scored = read_scores(out)
                    r["finite"] = all(all(v == v and abs(v) != float("inf") for v in s["logprobs"]) for s in scored.values())
                    r["logprob_sum"] = round(sum(next(iter(scored.values()))["logprobs"]), 3)
                    r["scored_per_record"] = len(next(iter(scored.values()))["logprobs"])
                log(f"# whence {shape} {length} x{n}: rc {r['rc']}, scoring {r['scoring_s']} s, wall {r['wall_s']} s, "
                    f"gpu peak {r['gpu_peak_mib']} MiB, rss {r['ru_maxrss_mib']} MiB")
            one, many = runs[1], runs[1 + reps]
            row = {**base, "engine": "whence", "reps": reps,
                   "t1_s": one["scoring_s"], f"t{1 + reps}_s": many["scoring_s"], "wall1_s": one["wall_s"],
                   f"wall{1 + reps}_s": many["wall_s"],
                   "gpu_peak_mib": many["gpu_peak_mib"], "gpu_peak_method": many["gpu_peak_method"],
                   "ru_maxrss_mib": many["ru_maxrss_mib"], "finite": many.get("finite"), "logprob_sum": many.get("logprob_sum"),
                   "scored_per_record": many.get("scored_per_record"), "cmd": many["cmd"]}
            if one["rc"] or many["rc"]:
                row["error"] = one.get("error") or many.get("error")
                failures += 1
            elif one["scoring_s"] is None or many["scoring_s"] is None:
                row["error"] = "no `scored N tokens in X s` line on stderr (is this whence built with -v support?)"
                failures += 1
            else:
                per = (many["scoring_s"] - one["scoring_s"]) / reps
                row["per_record_s"] = round(per, 4)
                row["tokens_per_s"] = round(length / per, 1) if per > 0 else None
                row["first_record_with_load_s"] = one["scoring_s"]
            append_result(args.results, row)

            # transformers, own process.
            cmd = [sys.executable, str(Path(__file__).resolve()), "tf-child", "--model", str(ckpt), "--ids", str(ids_path),
                   "--device", args.device, "--dtype", args.dtype, "--reps", str(reps)]
            r = run_child(cmd, args.device)
            res = next((json.loads(l) for l in r["stdout"].splitlines() if l.startswith("{")), None)
            if res is None:
                res = {"error": f"exit {r['rc']}: {(r['stderr'].strip().splitlines() or ['no output'])[-1][:300]}"}
            res.update({**base, "engine": "transformers", "reps": reps, "wall_s": r["wall_s"], "gpu_peak_mib": r["gpu_peak_mib"],
                        "gpu_peak_method": r["gpu_peak_method"], "ru_maxrss_mib": r["ru_maxrss_mib"]})
            if "error" in res:
                failures += 1
            log(f"# transformers {shape} {length}: {res.get('per_record_s')} s/record, gpu peak {res['gpu_peak_mib']} MiB")
            append_result(args.results, res)
    return failures


# --------------------------------------------------------------------------
# tables
# --------------------------------------------------------------------------

def fmt(x, spec=".3g"):
    return "" if x is None else format(x, spec)


def tables(results: Path) -> str:
    path = results / "results.jsonl"
    rows = [json.loads(l) for l in path.read_text().splitlines() if l.startswith("{")] if path.exists() else []
    if not rows:
        text = f"no results in {path}\n"
        (results / "results.md").write_text(text)
        return text
    out = []
    par = [r for r in rows if r.get("part") == "parity"]
    if par:
        dev = par[0].get("device", "?")
        out += [f"### Parity ({dev})", "",
                "| checkpoint | dtype | verdict on | max \\|Δ\\| | mean \\|Δ\\| | tolerance | verdict | whence vs f32 ref (max / mean) | "
                "transformers on device vs f32 ref (max / mean) | transformers on device vs CPU bf16 file (max / mean) |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        for r in par:
            if "error" in r:
                out.append(f"| {r['checkpoint']} | {r['dtype']} | {r.get('kind', '')} | | | | **{r['verdict']}**: {r['error'][:120]} | | | |")
                continue
            b = r.get(r["verdict_on"], {})
            label = {"whence_vs_f32_ref": "whence vs expected/*.json", "whence_vs_tf_device": "whence vs transformers bf16 (sdpa), same device"}[r["verdict_on"]]

            def pair(key):
                s = r.get(key)
                return f"{s['max_abs']:.3g} / {s['mean_abs']:.3g}" if s else ""

            out.append(f"| {r['checkpoint']} | {r['dtype']} | {label} | {fmt(b.get('max_abs'))} | {fmt(b.get('mean_abs'))} | "
                       f"{r['tolerance']:g} | **{r['verdict']}**{'' if r['spans_match'] else ' (spans differ)'} | "
                       f"{pair('whence_vs_f32_ref')} | {pair('tf_device_vs_f32_ref')} | {pair('tf_device_vs_cpu_bf16')} |")
        out.append("")
    sp = [r for r in rows if r.get("part") == "speed"]
    if sp:
        dev = sp[0].get("device", "?")
        out += [f"### Speed ({dev}, {sp[0].get('dtype')})", "",
                "| shape | tokens | whence s/record | whence tok/s | transformers (sdpa) s/record | transformers tok/s | "
                "whence / transformers | peak GPU MiB whence / transformers | transformers torch max allocated MiB | peak RSS MiB whence / transformers |",
                "|---|---|---|---|---|---|---|---|---|---|"]
        keys = sorted({(r["shape"], r["length"]) for r in sp}, key=lambda k: (k[0] != "qwen2.5-0.5b", k[1]))
        for shape, length in keys:
            w = next((r for r in sp if r["shape"] == shape and r["length"] == length and r["engine"] == "whence"), {})
            t = next((r for r in sp if r["shape"] == shape and r["length"] == length and r["engine"] == "transformers"), {})

            def cell(r, key, spec):
                if "error" in r:
                    return "failed: " + r["error"][:80]
                return fmt(r.get(key), spec)

            ratio = (f"{w['tokens_per_s'] / t['tokens_per_s']:.2f}×"
                     if w.get("tokens_per_s") and t.get("tokens_per_s") else "")
            out.append(f"| {shape} | {length} | {cell(w, 'per_record_s', '.4g')} | {cell(w, 'tokens_per_s', ',.0f')} | "
                       f"{cell(t, 'per_record_s', '.4g')} | {cell(t, 'tokens_per_s', ',.0f')} | {ratio} | "
                       f"{fmt(w.get('gpu_peak_mib'), 'd')} / {fmt(t.get('gpu_peak_mib'), 'd')} | {fmt(t.get('torch_max_allocated_mib'), 'd')} | "
                       f"{fmt(w.get('ru_maxrss_mib'), '.0f')} / {fmt(t.get('ru_maxrss_mib'), '.0f')} |")
        methods = sorted({r.get("gpu_peak_method") for r in sp if r.get("gpu_peak_method")})
        out += ["", "GPU memory: " + "; ".join(methods)]
    made = [r for r in rows if r.get("part") == "checkpoint"]
    if made:
        out += ["", "Checkpoints made by this run: " + "; ".join(
            f"{r['shape']} bf16 {r['bytes'] / 1e9:.2f} GB in {r['seconds']} s" for r in made)]
    text = "\n".join(out) + "\n"
    (results / "results.md").write_text(text)
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("parity", "speed", "table", "tf-child"):
        s = sub.add_parser(name)
        s.add_argument("--results", type=Path, default=Path("/tmp/whence-gpu-bench"))
        s.add_argument("--device", default="cuda")
        if name in ("parity", "speed"):
            s.add_argument("--whence", required=True)
        if name == "parity":
            s.add_argument("--fixtures", type=Path, default=FIXTURES)
            s.add_argument("--checkpoints", nargs="+", default=CHECKPOINTS)
        if name == "speed":
            s.add_argument("--shapes", nargs="+", default=["qwen2.5-0.5b", "qwen2.5-7b"], choices=sorted(SHAPE_DIRS))
            s.add_argument("--lengths", type=int, nargs="+", default=[2048, 8192, 32768])
            s.add_argument("--reps", type=int, default=3, help="K: extra records for whence, timed runs for transformers (K-1 at 32768)")
            s.add_argument("--ckpt-root", type=Path, default=Path("/tmp/whence-ckpt"))
            s.add_argument("--dtype", default="bf16", choices=["bf16", "f32"])
        if name == "tf-child":
            s.add_argument("--model", required=True)
            s.add_argument("--ids", required=True)
            s.add_argument("--dtype", default="bf16")
            s.add_argument("--reps", type=int, default=3)
    args = p.parse_args()
    if args.cmd == "tf-child":
        tf_child(args)
        return
    args.results.mkdir(parents=True, exist_ok=True)
    if args.cmd == "table":
        print(tables(args.results))
        return
    failures = parity(args) if args.cmd == "parity" else speed(args)
    print(tables(args.results))
    if failures:
        sys.exit(f"{failures} failure(s) in {args.cmd}")


if __name__ == "__main__":
    main()
