#!/usr/bin/env python3
"""Attribute a `perf record --call-graph dwarf` profile of the whence driver to
lines of crates/whence-checkpoint/src/decoder.rs, and to kinds of leaf work.

    RAYON_NUM_THREADS=1 perf record -e cpu-clock -F 99 --call-graph dwarf,32768 -o perf.data -- \\
        /tmp/target-benchckpt/release/whence-bench-checkpoint /tmp/whence-ckpt/qwen05 IDS_FILE 1 0
    perf script -i perf.data -F tid,ip,sym --no-inline > script.txt
    python3 bench/checkpoint/profile_breakdown.py script.txt /tmp/target-benchckpt/release/whence-bench-checkpoint \
        --source decoder.rs   # the decoder.rs the binary was built from (bench/checkpoint/profile.sh keeps a copy)

With one thread, candle's gemm runs on the calling thread, so its samples carry
the decoder call site that caused it (with several threads, the worker threads'
stacks end in rayon and lose it). whence-checkpoint's own kernels (linear.rs,
attention.rs, the head tiles) run as rayon tasks even with one thread: their
samples are attributed to the innermost whence-checkpoint line (linear.rs:NN,
attention.rs:NN, ...). The innermost whence_checkpoint frame of
each sample is resolved with `addr2line -i` (the decoder's functions are
inlined into token_logprobs) to the innermost line of decoder.rs.
"""
import collections
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def samples(path):
    sample = None
    for line in open(path, errors="replace"):
        if not line.strip():
            if sample:
                yield sample
            sample = None
            continue
        if not line.startswith("\t") and not line.startswith(" " * 8):
            sample = []
            continue
        m = re.match(r"\s*([0-9a-f]+)\s+(.*)$", line)
        if m and sample is not None:
            sample.append((int(m[1], 16), m[2].strip()))
    if sample:
        yield sample


def leaf_kind(frames):
    sym = frames[0][1] if frames else "?"
    kernel = frames and frames[0][0] >= 0xFFFF000000000000
    if kernel:
        names = " ".join(s for _, s in frames[:12])
        if "page_fault" in names or "clear_page" in names:
            return "kernel: page faults (first touch of new buffers)"
        if "munmap" in names or "unmap" in names:
            return "kernel: munmap (freeing big buffers)"
        if "read" in names:
            return "kernel: file read"
        return "kernel: other"
    if "gemm" in sym:
        return "gemm kernels (matmul)"
    if "expf" in sym or "exp" == sym:
        return "libm expf"
    if sym in ("roundf", "__roundf"):
        return "libm roundf"
    if "whence_checkpoint::attention" in sym:
        return "whence attention kernel (attention.rs)"
    if sym.startswith("<whence_checkpoint::kernels::") or sym.startswith("whence_checkpoint::kernels::"):
        return "whence kernels: " + sym.split("kernels::")[1].split(" ")[0].split(">")[0]
    if "memmove" in sym or "memcpy" in sym or "memset" in sym or "copy_strided" in sym or "copy2d" in sym:
        return "memcpy/memset"
    if "unary_map" in sym or "binary_map" in sym or "FnMut" in sym or "vec_sum" in sym or "Map1Any" in sym or "Map2" in sym:
        return "candle elementwise/reduce loops"
    if "Barrier" in sym or "trampoline" in sym or "rayon" in sym or "crossbeam" in sym or "sched_yield" in sym:
        return "thread pool"
    return "other: " + sym[:70]


def main():
    import argparse
    p = argparse.ArgumentParser()
    p.add_argument("script")
    p.add_argument("binary")
    p.add_argument("--source", type=Path, default=REPO / "crates/whence-checkpoint/src/decoder.rs",
                   help="decoder.rs as it was when the binary was built (profile.sh keeps a copy)")
    args = p.parse_args()
    script, binary = args.script, args.binary
    all_samples = list(samples(script))
    total = len(all_samples)
    phase = collections.Counter()
    sites = collections.Counter()
    site_leaf = collections.defaultdict(collections.Counter)
    leaf_score = collections.Counter()
    pending = []
    for frames in all_samples:
        syms = [s for _, s in frames]
        if any("open_weights" in s or "Decoder::load" in s for s in syms):
            phase["load (open_weights + Decoder::load)"] += 1
            continue
        if any("drop_in_place" in s and "Decoder" in s for s in syms):
            phase["drop"] += 1
            continue
        # The decoder's own kernels (linear products, attention, head tiles) run as
        # rayon tasks, on a worker thread even with one thread: their stacks hold
        # the kernel's frames but not token_logprobs.
        if not any("token_logprobs" in s or s.startswith("whence_checkpoint::") for s in syms):
            phase["other (thread start, exit, ...)"] += 1
            continue
        phase["token_logprobs"] += 1
        # innermost whence_checkpoint frame: a return address (not the leaf), so -1
        for i, (addr, sym) in enumerate(frames):
            if sym.startswith("whence_checkpoint::"):
                pending.append((addr - 1 if i else addr, leaf_kind(frames)))
                break
    # perf script prints the DSO-relative address as a file offset; addr2line wants the ELF virtual
    # address: add (p_vaddr - p_offset) of the LOAD segment that holds the offset.
    segments = []
    for line in subprocess.run(["readelf", "-lW", binary], capture_output=True, text=True).stdout.splitlines():
        f = line.split()
        if f and f[0] == "LOAD":
            segments.append((int(f[1], 16), int(f[2], 16), int(f[4], 16)))  # offset, vaddr, filesz

    def to_vaddr(offset):
        for off, vaddr, size in segments:
            if off <= offset < off + size:
                return offset + vaddr - off
        return offset

    pending = [(to_vaddr(a), kind) for a, kind in pending]
    addrs = sorted({a for a, _ in pending})
    resolved = {}
    if addrs:
        out = subprocess.run(["addr2line", "-i", "-f", "-C", "-e", binary, "-a"] + [hex(a) for a in addrs],
                             capture_output=True, text=True).stdout
        current = None
        for line in out.splitlines():
            if line.startswith("0x"):
                current = int(line, 16)
                resolved[current] = None
            elif current is not None and resolved[current] is None and "decoder.rs:" in line:
                resolved[current] = "decoder.rs:" + line.split("decoder.rs:")[1].split()[0]
            elif current is not None and resolved[current] is None and "whence-checkpoint/src/" in line:
                # outside decoder.rs (e.g. a kernel called from it): keep the innermost file:line
                resolved.setdefault(("fallback", current), line.split("whence-checkpoint/src/")[1].split()[0])
        for addr in list(resolved):
            if not isinstance(addr, tuple) and resolved[addr] is None and ("fallback", addr) in resolved:
                resolved[addr] = resolved[("fallback", addr)]
    source = args.source.read_text().splitlines()
    for addr, kind in pending:
        site = resolved.get(addr) or "?"
        sites[site] += 1
        site_leaf[site][kind] += 1
        leaf_score[kind] += 1

    print(f"{total} samples")
    print("\n## phases (% of all samples)")
    for k, v in phase.most_common():
        print(f"{100 * v / total:6.1f}%  {k}")
    scoring = phase["token_logprobs"] or 1
    print("\n## token_logprobs: leaf work (% of token_logprobs samples)")
    for k, v in leaf_score.most_common():
        print(f"{100 * v / scoring:6.1f}%  {k}")
    print("\n## token_logprobs: call site, the innermost line of decoder.rs (else of another whence-checkpoint file), % of token_logprobs samples, and its leaf work")
    for site, v in sites.most_common(25):
        text = ""
        if site.startswith("decoder.rs:"):
            try:
                text = source[int(site.split(":")[1]) - 1].strip()[:110]
            except (ValueError, IndexError):
                pass
        kinds = ", ".join(f"{k.split(' (')[0]} {100 * c / v:.0f}%" for k, c in site_leaf[site].most_common(3))
        print(f"{100 * v / scoring:6.1f}%  {site:16} {text}\n{'':26}[{kinds}]")


if __name__ == "__main__":
    main()
