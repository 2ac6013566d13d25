"""Shared fixtures: the repository's example and tiny checkpoints, and the
installed `whence` command (the wheel's, the one these tests check)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "synthetic"
FIXTURES = ROOT / "tests" / "reference" / "fixtures"


def whence_command() -> str:
    """The `whence` console script installed beside this interpreter."""
    found = shutil.which("whence", path=str(Path(sys.executable).parent))
    assert found, f"no `whence` command beside {sys.executable}: the wheel's console script is missing"
    return found


def run_cli(*args: str, expect: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run([whence_command(), "-q", *args], capture_output=True, text=True)
    assert result.returncode == expect, f"whence {' '.join(args)}: exit {result.returncode}\n{result.stderr}"
    return result


def cli_error(*args: str) -> str:
    """The message the command line prints after `error: ` (exit code 2)."""
    stderr = run_cli(*args, expect=2).stderr
    assert stderr.startswith("error: "), stderr
    return stderr[len("error: ") :].rstrip("\n")


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def example() -> Path:
    return EXAMPLE


@pytest.fixture(scope="session")
def scorers() -> dict:
    return {role: f"file:{EXAMPLE / f'{role}.jsonl'}" for role in ("teacher", "student", "distilled")}


@pytest.fixture(scope="session")
def checkpoints() -> dict:
    return {
        "teacher": str(FIXTURES / "tiny-qwen3"),
        "student": str(FIXTURES / "tiny-qwen2"),
        "distilled": str(FIXTURES / "tiny-llama3"),
    }


@pytest.fixture(autouse=True)
def _no_user_cache(tmp_path, monkeypatch):
    # Checkpoint scorers use the score cache by default; keep it out of ~.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    os.makedirs(tmp_path / "cache", exist_ok=True)
