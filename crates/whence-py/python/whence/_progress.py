"""Progress of a job: a tqdm bar (``tqdm.auto``: notebooks too) when tqdm
is installed and stderr is a terminal or a notebook's, else a line on
stderr every few seconds (logs of batch jobs stay readable)."""

from __future__ import annotations

import sys
import time
from typing import Any


class Bars:
    """One bar per step; the native module calls ``start``, ``advance`` and
    ``finish`` from the job's thread."""

    def __init__(self) -> None:
        tqdm = None
        interactive = "ipykernel" in sys.modules or (hasattr(sys.stderr, "isatty") and sys.stderr.isatty())
        if interactive:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                pass
        self._tqdm = tqdm
        self._bar: Any = None
        self._step = ""
        self._done = 0
        self._total = 0
        self._tokens = 0
        self._started = 0.0
        self._printed = 0.0

    def start(self, step: str, total: int) -> None:
        self._step = step if step == "generating" else f"scoring {step}"
        self._done, self._total, self._tokens = 0, total, 0
        self._started = self._printed = time.monotonic()
        if self._tqdm is not None:
            self._bar = self._tqdm(total=total, desc=self._step, unit="records", leave=False, dynamic_ncols=True)

    def _rate(self) -> float:
        return self._tokens / max(time.monotonic() - self._started, 1e-9)

    def advance(self, done: int, tokens: int) -> None:
        self._done += done
        self._tokens += tokens
        if self._bar is not None:
            self._bar.set_postfix_str(f"{self._rate():.0f} tokens/s", refresh=False)
            self._bar.update(done)
        elif time.monotonic() - self._printed >= 5.0:
            self._printed = time.monotonic()
            print(f"{self._step}: {self._done}/{self._total} records, {self._rate():.0f} tokens/s", file=sys.stderr, flush=True)

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def target(progress: Any) -> Any:
    """What the native module reports to: ``True`` → :class:`Bars`,
    ``False``/``None`` → nothing, else the given object (with ``start``,
    ``advance`` and ``finish``)."""
    if progress is True:
        return Bars()
    if progress is False or progress is None:
        return None
    for method in ("start", "advance", "finish"):
        if not callable(getattr(progress, method, None)):
            from ._whence import InputError

            raise InputError(f"progress: give True, False, or an object with start(step, total), advance(done, tokens) and finish(); it has no {method}()")
    return progress
