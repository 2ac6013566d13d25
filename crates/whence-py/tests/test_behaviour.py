"""Behaving like Python: the GIL released while scoring, Ctrl-C within a
second, nothing half-written, docstrings."""

from __future__ import annotations

import _thread
import json
import threading
import time

import pytest

import whence
from conftest import EXAMPLE, read_jsonl


def test_the_gil_is_released_while_checkpoints_score(tmp_path, checkpoints):
    source = read_jsonl(EXAMPLE / "records.jsonl")
    path = tmp_path / "records.jsonl"
    path.write_text("".join(json.dumps({**source[i % 48], "id": f"r{i}"}) + "\n" for i in range(60)))
    done = threading.Event()
    ticks = 0

    def count():
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0.001)

    counter = threading.Thread(target=count)
    counter.start()
    started = time.monotonic()
    whence.trace(path, **checkpoints, cache=False, progress=False)
    seconds = time.monotonic() - started
    done.set()
    counter.join()
    # A thread holding the GIL for the whole call would leave ~0 ticks.
    assert seconds > 0.2, "the run was too short to tell"
    assert ticks > 0.3 * seconds * 1000 / 2, (ticks, seconds)


def test_ctrl_c_stops_a_run_within_a_second_and_writes_nothing(tmp_path, scorers):
    teacher = {line["id"]: line for line in read_jsonl(EXAMPLE / "teacher.jsonl")}
    by_response = {r["response"]: r["id"] for r in read_jsonl(EXAMPLE / "records.jsonl")}
    calls = []

    def slow(prompts, responses):
        calls.append(time.monotonic())
        time.sleep(0.3)
        return [(teacher[by_response[r]]["offsets"], teacher[by_response[r]]["logprobs"]) for r in responses]

    source = read_jsonl(EXAMPLE / "records.jsonl")
    many = [{**source[i % 48], "id": f"r{i}"} for i in range(64 * 40)]
    pressed = []

    def press_ctrl_c():
        time.sleep(1.0)
        pressed.append(time.monotonic())
        _thread.interrupt_main()

    threading.Thread(target=press_ctrl_c).start()
    with pytest.raises(KeyboardInterrupt):
        whence.trace(many, teacher=slow, student=scorers["student"], distilled=scorers["distilled"], progress=False)
    stopped = time.monotonic()
    assert stopped - pressed[0] < 1.0, stopped - pressed[0]
    # The worker stops at its next batch: no more calls after the one in flight.
    time.sleep(0.8)
    assert len([t for t in calls if t > pressed[0] + 0.35]) == 0, calls
    assert [p for p in tmp_path.rglob("*") if p.is_file()] == []


def test_every_function_is_documented():
    for name in ("trace", "select", "attribute", "score", "segment", "grade", "label", "report"):
        doc = getattr(whence, name).__doc__
        assert doc and len(doc) > 100, name
    for argument in ("teacher", "alpha", "beta", "records", "fields", "skip_invalid", "dtype", "batch_tokens", "progress"):
        assert argument in whence.trace.__doc__, argument
    assert "strategy" in whence.select.__doc__ and "candidates" in whence.attribute.__doc__
    assert issubclass(whence.InputError, whence.WhenceError) and issubclass(whence.ModelError, whence.WhenceError)


def test_the_readmes_example_plots_the_position_profile(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("pandas")
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "examples" / "position_profile.py"
    out = tmp_path / "profile.png"
    result = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "48 trajectories, 655 actions" in result.stdout
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_threads_size_the_pool_once(tmp_path):
    import subprocess
    import sys

    script = f"""
import whence
from pathlib import Path
data = Path({str(EXAMPLE)!r})
roles = {{r: f"file:{{data / (r + '.jsonl')}}" for r in ("teacher", "student", "distilled")}}
whence.trace(data / "records.jsonl", **roles, threads=1, progress=False)
whence.trace(data / "records.jsonl", **roles, threads=1, progress=False)
try:
    whence.trace(data / "records.jsonl", **roles, threads=2, progress=False)
except whence.InputError as error:
    print(error)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("threads: this process's CPU thread pool already runs 1 threads"), result.stdout
