#!/usr/bin/env python3
"""Scoring throughput and memory: whence-checkpoint (candle) vs transformers + torch, CPU, f32 or bf16.

Each (engine, length) runs in a separate process, which loads the checkpoint
(timed: load_s), scores the same sequence of token ids once as a warm-up and
then RUNS times (timed: the forward pass and the extraction of every
position's next-token log-probability), and reports the best run as tokens/s
(sequence length / seconds). Peak RSS is the child's ru_maxrss (from wait4),
cross-checked with its own VmHWM; the child also resets VmHWM after loading
(/proc/self/clear_refs) to report the scoring peak alone.

    /tmp/refenv/bin/python bench/checkpoint/run.py                 # everything, once
    /tmp/refenv/bin/python bench/checkpoint/run.py --rounds 3      # everything, 3 rounds, best per row
    /tmp/refenv/bin/python bench/checkpoint/run.py --only speed    # 512/2048/8192 on qwen2.5-0.5b shape
    /tmp/refenv/bin/python bench/checkpoint/run.py --only memory   # 32768 on narrow-151k
    /tmp/refenv/bin/python bench/checkpoint/run.py --only eager    # transformers eager vs sdpa at 512/2048
    /tmp/refenv/bin/python bench/checkpoint/run.py --dtype bf16 --speed-model /tmp/whence-ckpt/qwen05-bf16 --only speed
    /tmp/refenv/bin/python bench/checkpoint/run.py --dtype f32 bf16 --only speed   # both, one after the other

--dtype sets the compute dtype of both engines: transformers loads with
`dtype=torch.bfloat16` (sdpa unless --only eager), whence gets `--dtype bf16`
(the DType of `weights::open_weights`, as `whence score --dtype bf16`). With
several dtypes each runs on its own checkpoint: --speed-model for f32 and
--speed-model-bf16 (default /tmp/whence-ckpt/qwen05-bf16, the f32 one's
weights rounded to bf16) for bf16. The table then puts whence bf16 beside
transformers bf16 and whence f32 beside transformers f32.

JSON lines go to stdout (and --out); a markdown table ends the output (the best
run per row; `--table FILE...` rebuilds it from earlier JSON lines).
"""
import argparse
import hashlib
import json
import os
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
DRIVER_DIR = HERE / "driver"
DEFAULT_TARGET = Path(os.environ.get("CARGO_TARGET_DIR_BENCH", "/tmp/target-benchckpt"))
THREADS = 2
GIB = 1 << 30


# --------------------------------------------------------------------------
# Child: transformers
# --------------------------------------------------------------------------

def status_bytes(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def child_transformers(args):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(args.threads)
    ids = [int(x) for x in Path(args.ids).read_text().split()]
    dtype = {"f32": torch.float32, "bf16": torch.bfloat16}[args.dtype[0]]
    result = {"engine": "transformers", "dtype": args.dtype[0], "attn": args.attn, "length": len(ids),
              "threads": torch.get_num_threads(), "torch": torch.__version__}
    start = time.perf_counter()
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=dtype, attn_implementation=args.attn)
    model.eval()
    result["load_s"] = round(time.perf_counter() - start, 3)
    result["rss_after_load"] = status_bytes("VmRSS")
    result["peak_rss_load"] = status_bytes("VmHWM")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        result["hwm_reset"] = True
    except OSError:
        result["hwm_reset"] = False

    input_ids = torch.tensor([ids], dtype=torch.long)
    targets = input_ids[0, 1:].unsqueeze(1)

    def score():
        with torch.inference_mode():
            logits = model(input_ids=input_ids).logits[0, :-1]  # [T-1, vocab], all materialised
            # bf16: cast to f32 before the log-softmax, as whence accumulates it in f32 (a no-op for f32).
            logprobs = torch.log_softmax(logits.float(), dim=-1)  # a second [T-1, vocab]
            return logprobs.gather(1, targets).squeeze(1)

    times = []
    try:
        for i in range(args.warmups + args.runs):
            start = time.perf_counter()
            out = score()
            elapsed = time.perf_counter() - start
            if i >= args.warmups:
                times.append(elapsed)
        result["scored"] = out.numel()
        result["logprob_sum"] = round(float(out.double().sum()), 4)
    except (RuntimeError, MemoryError) as e:
        result["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
    if times:
        best = min(times)
        result["runs_s"] = [round(t, 4) for t in times]
        result["best_s"] = round(best, 4)
        result["tokens_per_s"] = round(len(ids) / best, 1)
    result["peak_rss_score"] = status_bytes("VmHWM")
    result["peak_rss"] = max(result["peak_rss_load"], result["peak_rss_score"])
    print(json.dumps(result), flush=True)


# --------------------------------------------------------------------------
# Parent
# --------------------------------------------------------------------------

def source_fingerprint():
    """sha256 over whence-checkpoint's Cargo.toml and src/*.rs: which decoder the whence rows measured."""
    crate = REPO / "crates" / "whence-checkpoint"
    digest = hashlib.sha256()
    for path in [crate / "Cargo.toml"] + sorted((crate / "src").glob("*.rs")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def git_head():
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "?"


def build_driver(target):
    env = dict(os.environ, CARGO_TARGET_DIR=str(target))
    print(f"# building the driver: cd {DRIVER_DIR} && CARGO_TARGET_DIR={target} cargo build --release", flush=True)
    proc = subprocess.run(["cargo", "build", "--release"], cwd=DRIVER_DIR, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit("driver build failed (is crates/whence-checkpoint being edited? retry in a few minutes):\n"
                 + proc.stderr[-3000:])


def write_ids(workdir, length, seed):
    """`length` ids drawn uniformly from 0..999 with a fixed seed (same file for both engines)."""
    path = workdir / f"ids-{length}-seed{seed}.txt"
    if not path.exists():
        rng = random.Random(seed)
        path.write_text(" ".join(str(rng.randrange(1000)) for _ in range(length)) + "\n")
    return path


def loadavg():
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


class ChildRunner:
    """Runs one child at a time; wait4 gives that child's own ru_maxrss (peak RSS)."""

    def run(self, cmd, env, mem_limit):
        def limit():
            if mem_limit:
                resource.setrlimit(resource.RLIMIT_AS, (mem_limit, mem_limit))

        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=limit, text=True)
        # Read the pipes ourselves, then reap with wait4 to get this child's own rusage.
        stdout = proc.stdout.read()
        stderr = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        return stdout, stderr, proc.returncode, wall, usage.ru_maxrss * 1024


def measure(runner, engine, model, ids_path, runs, warmups, attn, driver, mem_limit, label, dtype="f32"):
    env = dict(os.environ, RAYON_NUM_THREADS=str(THREADS), OMP_NUM_THREADS=str(THREADS))
    if engine == "whence":
        # The driver's optional 5th argument; an old driver without it ignores it (prints no "dtype").
        cmd = [str(driver), str(model), str(ids_path), str(runs), str(warmups), dtype]
        env["WHENCE_BENCH_DTYPE"] = dtype
        fingerprint = source_fingerprint()
    else:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "transformers", "--model", str(model),
               "--ids", str(ids_path), "--runs", str(runs), "--warmups", str(warmups), "--attn", attn,
               "--threads", str(THREADS), "--dtype", dtype]
    load_before = loadavg()
    stdout, stderr, rc, wall, maxrss = runner.run(cmd, env, mem_limit)
    result = None
    for line in stdout.splitlines():
        if line.startswith("{"):
            result = json.loads(line)
    if result is None:
        result = {"engine": engine, "attn": attn if engine == "transformers" else None,
                  "error": f"exit {rc}: {stderr.strip().splitlines()[-1][:300] if stderr.strip() else 'no output'}"}
    if engine == "whence":
        result.update({"source_sha256": fingerprint, "git_head": git_head()})
        ran = result.get("dtype")
        if ran is None and dtype != "f32" and "error" not in result:
            result["error"] = f"asked for {dtype}, but the driver prints no dtype: an old build (rebuild it)"
        elif ran is not None and ran != dtype:
            result["error"] = f"asked for {dtype}, the driver ran {ran}"
    result.setdefault("dtype", dtype)
    result.update({"model": label, "exit": rc, "wall_s": round(wall, 2), "ru_maxrss": maxrss,
                   "loadavg_before": load_before, "loadavg_after": loadavg(), "mem_limit": mem_limit})
    print(json.dumps(result), flush=True)
    return result


def fmt_bytes(n):
    return f"{n / GIB:.2f} GiB" if n >= GIB else f"{n / (1 << 20):.0f} MiB"


def dtype_of(r):
    """JSON lines written before --dtype existed are f32."""
    return r.get("dtype") or "f32"


def best_per_key(results):
    """One record per (model, length, dtype, engine, attn): the fastest successful run, else the last one."""
    chosen = {}
    for r in results:
        key = (r["model"], r["length"], dtype_of(r), r["engine"], r.get("attn"))
        old = chosen.get(key)
        if old is None or ("tokens_per_s" in r and r["tokens_per_s"] > old.get("tokens_per_s", -1)):
            chosen[key] = r
    return chosen


MODEL_ORDER = {"qwen2.5-0.5b": 0, "narrow-151k": 1}
DTYPE_ORDER = {"bf16": 0, "f32": 1}


def table(results):
    """Markdown table. Peak RSS is the child's own VmHWM over its whole life (loading included);
    'scoring' is the VmHWM after a reset at the end of loading. Ratios compare whence with
    transformers (sdpa) of the same model, length and dtype. When the lines hold more than
    one dtype, a second table puts them side by side."""
    chosen = best_per_key(results)
    keys = sorted(chosen, key=lambda k: (MODEL_ORDER.get(k[0], 9), k[1], DTYPE_ORDER.get(k[2], 9), k[3] != "whence",
                                         k[4] != "sdpa"))
    lines = ["| model | tokens | dtype | engine | load s | tokens/s (best) | peak RSS | peak RSS while scoring | "
             "tokens/s whence / transformers | peak RSS transformers / whence |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key in keys:
        r = chosen[key]
        eng = r["engine"] + (f" ({r['attn']})" if r.get("attn") else "")
        tps = f"{r['tokens_per_s']:,.1f}" if "tokens_per_s" in r else f"**failed**: {r.get('error', '')[:100]}"
        ratio = rss_ratio = ""
        if r["engine"] == "whence":
            peer = chosen.get((r["model"], r["length"], key[2], "transformers", "sdpa"))
            if peer and "tokens_per_s" in peer and "tokens_per_s" in r:
                ratio = f"{r['tokens_per_s'] / peer['tokens_per_s']:.2f}×"
            if peer and "tokens_per_s" not in peer:
                rss_ratio = "n/a (transformers failed)"
            elif peer and peer.get("peak_rss") and r.get("peak_rss"):
                rss_ratio = f"{peer['peak_rss'] / r['peak_rss']:.2f}×"
        peak = fmt_bytes(r["peak_rss"]) if r.get("peak_rss") else ""
        peak_score = fmt_bytes(r["peak_rss_score"]) if r.get("peak_rss_score") else ""
        lines.append(f"| {r['model']} | {r['length']} | {key[2]} | {eng} | {r.get('load_s', '')} | {tps} | {peak} | "
                     f"{peak_score} | {ratio} | {rss_ratio} |")
    dtypes = sorted({k[2] for k in keys}, key=lambda d: DTYPE_ORDER.get(d, 9))
    if len(dtypes) > 1:
        lines += ["", side_by_side(chosen, dtypes)]
    return "\n".join(lines)


def side_by_side(chosen, dtypes):
    """Per (model, length): for each dtype, whence vs transformers (sdpa) tokens/s and their ratio,
    and the peak RSS while scoring of each."""
    def tps(r):
        return f"{r['tokens_per_s']:,.1f}" if r and "tokens_per_s" in r else ("failed" if r else "")

    def rss(r):
        return fmt_bytes(r["peak_rss_score"]) if r and r.get("peak_rss_score") and "tokens_per_s" in r else ""

    head = "| model | tokens |"
    rule = "|---|---|"
    for d in dtypes:
        head += f" whence {d} tok/s | transformers {d} tok/s | whence / transformers {d} | peak RSS scoring whence / transformers {d} |"
        rule += "---|---|---|---|"
    lines = [head, rule]
    for model, length in sorted({(k[0], k[1]) for k in chosen}, key=lambda x: (MODEL_ORDER.get(x[0], 9), x[1])):
        row = f"| {model} | {length} |"
        for d in dtypes:
            w = chosen.get((model, length, d, "whence", None))
            t = chosen.get((model, length, d, "transformers", "sdpa"))
            ratio = f"{w['tokens_per_s'] / t['tokens_per_s']:.2f}×" if w and t and "tokens_per_s" in w and "tokens_per_s" in t else ""
            mem = f"{rss(w)} / {rss(t)}" if rss(w) or rss(t) else ""
            row += f" {tps(w)} | {tps(t)} | {ratio} | {mem} |"
        lines.append(row)
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--child", choices=["transformers"])
    p.add_argument("--model")
    p.add_argument("--ids")
    p.add_argument("--attn", default="sdpa")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--warmups", type=int, default=1)
    p.add_argument("--threads", type=int, default=THREADS)
    # parent options
    p.add_argument("--speed-model", type=Path, default=Path("/tmp/whence-ckpt/qwen05"))
    p.add_argument("--narrow-model", type=Path, default=Path("/tmp/whence-ckpt/narrow"))
    p.add_argument("--speed-model-bf16", type=Path, default=Path("/tmp/whence-ckpt/qwen05-bf16"),
                   help="the speed checkpoint for --dtype bf16 when several dtypes are given (with one, --speed-model is used)")
    p.add_argument("--narrow-model-bf16", type=Path, default=Path("/tmp/whence-ckpt/narrow-bf16"),
                   help="likewise for the memory run")
    p.add_argument("--dtype", nargs="+", choices=["f32", "bf16"], default=["f32"],
                   help="compute dtype(s) of both engines (default f32); a child takes one")
    p.add_argument("--workdir", type=Path, default=Path("/tmp/whence-bench-ckpt"))
    p.add_argument("--driver", type=Path, default=DEFAULT_TARGET / "release" / "whence-bench-checkpoint")
    p.add_argument("--no-build", dest="build", action="store_false",
                   help="do not (re)build the driver first (by default: cargo build --release, incremental)")
    p.add_argument("--only", choices=["speed", "memory", "eager"], action="append")
    p.add_argument("--lengths", type=int, nargs="*", default=[512, 2048, 8192])
    p.add_argument("--engines", nargs="*", default=["whence", "transformers"])
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--rounds", type=int, default=1,
                   help="repeat every measurement this many times (engine order alternating); the table keeps the best")
    p.add_argument("--mem-limit-gib", type=float, default=16.0,
                   help="RLIMIT_AS of each child, so that a [T, vocab] allocation fails instead of exhausting the shared machine")
    p.add_argument("--out", type=Path, help="also append the JSON lines here")
    p.add_argument("--table", type=Path, nargs="+", metavar="JSONL",
                   help="only print the table of earlier results (best run per row across the files)")
    args = p.parse_args()

    if args.table:
        results = [json.loads(l) for f in args.table for l in f.read_text().splitlines() if l.startswith("{")]
        print(table(results))
        return

    if args.child == "transformers":
        child_transformers(args)
        return

    if args.build and "whence" in args.engines:
        build_driver(args.driver.parents[1])
    if "whence" in args.engines and not args.driver.exists():
        sys.exit(f"{args.driver} is missing: build it with\n  cd {DRIVER_DIR} && CARGO_TARGET_DIR={DEFAULT_TARGET} cargo build --release")
    args.workdir.mkdir(parents=True, exist_ok=True)
    parts = args.only or ["speed", "eager", "memory"]
    mem_limit = int(args.mem_limit_gib * GIB) if args.mem_limit_gib > 0 else 0
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    print(f"# machine: {os.cpu_count()} cores, {cpu}, {os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / GIB:.0f} GiB; "
          f"threads {THREADS}; dtype {' '.join(args.dtype)}; load {loadavg()}; child RLIMIT_AS {args.mem_limit_gib} GiB; "
          f"whence-checkpoint source {source_fingerprint()} (HEAD {git_head()})", flush=True)

    runner = ChildRunner()
    results = []
    out = open(args.out, "a") if args.out else None

    def record(r):
        results.append(r)
        if out:
            out.write(json.dumps(r) + "\n")
            out.flush()

    def models_for(dtype):
        """(speed, narrow) checkpoints of a dtype: the plain flags when one dtype is asked for."""
        if len(args.dtype) == 1 or dtype == "f32":
            return args.speed_model, args.narrow_model
        return args.speed_model_bf16, args.narrow_model_bf16

    for round_ in range(args.rounds):
        # Alternate which engine goes first, so that both see the machine's load alike.
        engines = args.engines if round_ % 2 == 0 else list(reversed(args.engines))
        for dtype in args.dtype:
            speed_model, narrow_model = models_for(dtype)
            if "speed" in parts:
                for length in args.lengths:
                    ids = write_ids(args.workdir, length, args.seed)
                    runs = 3 if length <= 2048 else 1
                    for engine in engines:
                        record(measure(runner, engine, speed_model, ids, runs, 1, "sdpa", args.driver, mem_limit,
                                       "qwen2.5-0.5b", dtype))
                        if engine == "transformers" and "eager" in parts and length <= 2048:
                            record(measure(runner, "transformers", speed_model, ids, 3, 1, "eager", args.driver, mem_limit,
                                           "qwen2.5-0.5b", dtype))
            elif "eager" in parts and "transformers" in args.engines:
                for length in [l for l in args.lengths if l <= 2048]:
                    ids = write_ids(args.workdir, length, args.seed)
                    record(measure(runner, "transformers", speed_model, ids, 3, 1, "eager", args.driver, mem_limit,
                                   "qwen2.5-0.5b", dtype))
            if "memory" in parts:
                ids = write_ids(args.workdir, 32768, args.seed)
                for engine in engines:
                    record(measure(runner, engine, narrow_model, ids, 1, 1, "sdpa", args.driver, mem_limit,
                                   "narrow-151k", dtype))

    print(f"# load after: {loadavg()}")
    print()
    print(table(results))


if __name__ == "__main__":
    main()
