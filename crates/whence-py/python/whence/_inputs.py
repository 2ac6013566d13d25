"""What the API takes, turned into what the native module takes.

Records and score tables cross into Rust as Arrow tables through the
PyCapsule stream protocol (``__arrow_c_stream__``), never as JSON: a
``pyarrow.Table`` or a polars DataFrame as it is, a pandas DataFrame, a list
of dicts or a Hugging Face ``datasets.Dataset`` after one conversion to
``pyarrow.Table``. A path is handed over as a path, so that it is read, and
its errors are worded, exactly as the command line does.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pyarrow as pa

from ._whence import InputError

PathLike = "str | os.PathLike[str]"


def _module_of(obj: Any) -> str:
    return type(obj).__module__.split(".")[0]


class Records:
    """Records as given, and how to hand back a subset in the same type."""

    def __init__(self, given: Any) -> None:
        self.given = given
        if isinstance(given, (str, os.PathLike)):
            self.path: Path | None = Path(given)
            self.native: Any = os.fspath(given)
            self.name = os.fspath(given)
            self.kind = "path"
            return
        self.path = None
        kind = _module_of(given)
        if isinstance(given, pa.Table):
            table, self.kind, self.name = given, "pyarrow", "pyarrow.Table"
        elif kind == "pandas" and hasattr(given, "iloc"):
            table, self.kind, self.name = _from_pandas(given), "pandas", "pandas.DataFrame"
        elif kind == "polars" and hasattr(given, "to_arrow"):
            table, self.kind, self.name = given.to_arrow(), "polars", "polars.DataFrame"
        elif kind == "datasets" and hasattr(given, "with_format"):
            table, self.kind, self.name = given.with_format("arrow")[:], "datasets", "datasets.Dataset"
        elif isinstance(given, (list, tuple)):
            table, self.kind, self.name = _from_rows(given), "list", "list"
        elif hasattr(given, "__arrow_c_stream__"):
            table, self.kind, self.name = pa.table(given), "arrow", type(given).__name__
        else:
            raise InputError(
                f"records: cannot read a {type(given).__module__}.{type(given).__qualname__}; give a path (JSONL or "
                "Parquet), a list of dicts, a pandas or polars DataFrame, a pyarrow.Table, a datasets.Dataset, or "
                "anything with __arrow_c_stream__"
            )
        self.table: pa.Table = table
        self.native = table

    def subset(self, rows: Sequence[Any]) -> Any:
        """The records at ``rows`` (from the native module's ``kept_rows``),
        in the type the records came in, with every column."""
        if self.kind == "path":
            if rows and isinstance(rows[0], (bytes, bytearray)):
                return [json.loads(line) for line in rows]
            import pyarrow.parquet as pq

            return pq.read_table(self.native).take(pa.array(rows, type=pa.int64()))
        indices = [int(r) for r in rows]
        if self.kind == "pandas":
            return self.given.iloc[indices]
        if self.kind == "polars":
            return self.given[indices]
        if self.kind == "datasets":
            return self.given.select(indices)
        if self.kind == "list":
            return [self.given[i] for i in indices]
        return self.table.take(pa.array(indices, type=pa.int64()))


def _from_pandas(frame: Any) -> pa.Table:
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise InputError(f"pandas.DataFrame: cannot convert it to an Arrow table: {error}") from error


def _from_rows(rows: Sequence[Any]) -> pa.Table:
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise InputError(f"list row {i}: a record is a dict of fields, not a {type(row).__name__}")
    try:
        return pa.Table.from_pylist(list(rows))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
        raise InputError(
            f"list: cannot convert the records to an Arrow table: {error}\n"
            "hint: a field must hold one type in every record (e.g. `id` all str or all int)"
        ) from error


# Scorers ---------------------------------------------------------------

ScoreFunction = Callable[[list, list], Sequence[Any]]


def scorer(given: Any, role: str) -> tuple[str, Any, str]:
    """A scorer as the native module takes it: ``(kind, value, name)``."""
    from . import Scores

    if isinstance(given, Scores):
        return ("table", given.table, f"{role} scores")
    if isinstance(given, os.PathLike):
        path = Path(given)
        if path.is_file():
            return ("spec", f"file:{os.fspath(path)}", os.fspath(path))
        return ("spec", os.fspath(path), os.fspath(path))
    if isinstance(given, str):
        return ("spec", given, given)
    if callable(given) and not hasattr(given, "__arrow_c_stream__"):
        name = f"{getattr(given, '__module__', None) or type(given).__module__}.{getattr(given, '__qualname__', type(given).__qualname__)}"
        return ("callable", _score_function(given, name), name)
    try:
        table = Records(given).table
    except InputError:
        raise InputError(
            f"{role}: cannot use a {type(given).__qualname__} as a scorer; give a checkpoint directory, "
            "vllm+URL or sglang+URL, file:PATH, a table with `id`, `offsets` and `logprobs`, or a callable "
            "(prompts, responses) -> [(offsets, logprobs), ...]"
        ) from None
    return ("table", table, f"{role} scores")


def _score_function(function: ScoreFunction, name: str) -> Callable[[list, list], list]:
    """Wraps a user's scoring function: checks its results' shapes and packs
    them as little-endian bytes for the native module."""

    def call(prompts: list, responses: list) -> list:
        results = list(function(prompts, responses))
        if len(results) != len(responses):
            raise InputError(
                f"returned {len(results)} results for {len(responses)} records; it must return one "
                "(offsets, logprobs) pair per record, in order"
            )
        packed = []
        for i, result in enumerate(results):
            try:
                offsets, logprobs = result
            except (TypeError, ValueError):
                raise InputError(f"result {i}: expected an (offsets, logprobs) pair, got {type(result).__name__}") from None
            spans = np.asarray(offsets, dtype=np.int64)
            if spans.size == 0:
                spans = spans.reshape(0, 2)
            if spans.ndim != 2 or spans.shape[1] != 2:
                raise InputError(f"result {i}: offsets must be [start, end] byte pairs (shape (n, 2)), got shape {spans.shape}")
            if (spans < 0).any():
                raise InputError(f"result {i}: offsets must be non-negative byte offsets")
            values = np.asarray(logprobs, dtype=np.float64)
            if values.ndim != 1:
                raise InputError(f"result {i}: logprobs must be one number per token (shape (n,)), got shape {values.shape}")
            packed.append((spans.astype("<u8").tobytes(), values.astype("<f8").tobytes()))
        return packed

    return call
