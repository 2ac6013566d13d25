"""whence: provenance tracing for LLM reasoning distillation.

For every sentence (an *action*) of a distilled model's reasoning trace,
whence asks how likely the teacher, the original student and the distilled
model were to write it in that context, and labels it ``teacher``,
``student``, ``shared`` or ``boosted``.

The Python API is a thin layer over the same Rust code as the ``whence``
command line (which this package also installs):

- :func:`trace` labels every action of distilled-model responses;
- :func:`select` keeps one teacher response per question for distillation;
- :func:`attribute` ranks candidate teachers of a distilled model;
- :func:`score` gives a model's token log-probabilities of every response;
- :func:`segment`, :func:`grade` and :func:`label` are the small steps.

Records may be a path (JSONL or Parquet), a list of dicts, a pandas or polars
DataFrame, a ``pyarrow.Table`` or a Hugging Face ``datasets.Dataset``. A
scorer is anything the command line takes (a checkpoint directory,
``vllm+URL``, ``sglang+URL``, ``file:PATH``), a table of precomputed scores
(``id``, ``offsets``, ``logprobs``; e.g. a :class:`Scores`), or a callable
``(prompts, responses) -> [(offsets, logprobs), ...]``.

Errors raise :class:`InputError` (what was given is unusable; the same
message as the command line's, naming file:line or ``SOURCE row N`` and the
field), :class:`ModelError` (a scorer failed) or :class:`WhenceError`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple, Optional, Sequence, Union

import numpy as np
import pyarrow as pa

from . import _inputs, _progress
from . import _whence as _native
from ._whence import InputError, ModelError, WhenceError

__version__: str = _native.__version__

__all__ = [
    "__version__",
    "trace",
    "select",
    "attribute",
    "score",
    "segment",
    "grade",
    "label",
    "report",
    "Trace",
    "Selection",
    "Attribution",
    "Scores",
    "RecordScores",
    "Action",
    "Grade",
    "WhenceError",
    "InputError",
    "ModelError",
]

PathLike = Union[str, "os.PathLike[str]"]
#: A scorer: a spec string (checkpoint DIR, ``vllm+URL``, ``sglang+URL``,
#: ``file:PATH``), a path, a table of precomputed scores, or a callable.
Scorer = Any
#: Records: a path, a list of dicts, a pandas/polars DataFrame, a
#: ``pyarrow.Table``, a ``datasets.Dataset``, or any Arrow stream.
RecordsLike = Any

_FIELDS = ("id", "question_id", "prompt", "messages", "conversations", "response", "correct", "answer")
_FALLBACK = "answer-is-then-last-number"


def _fields(fields: Optional[Mapping[str, str]]) -> dict:
    given = dict(fields or {})
    unknown = sorted(set(given) - set(_FIELDS))
    if unknown:
        raise InputError(f"fields: unknown field role `{unknown[0]}`; valid roles: {', '.join(_FIELDS)}")
    return {f"{role}_field": name for role, name in given.items()}


def _segmentation(special_tokens: Sequence[str], special_patterns: Sequence[str], default_specials: bool, sentence_pattern: Optional[str]) -> dict:
    options: dict = {
        "special_tokens": list(special_tokens),
        "special_patterns": list(special_patterns),
        "no_default_specials": not default_specials,
    }
    if sentence_pattern is not None:
        options["sentence_pattern"] = sentence_pattern
    return options


def _models(
    dtype: str,
    device: str,
    template: Union[str, PathLike],
    truncate: bool,
    batch_tokens: Optional[int],
    threads: Optional[int],
    cache: Union[None, bool, PathLike],
    tokenizers: Union[None, PathLike, Mapping[str, PathLike]],
    server: Optional[Mapping[str, Any]],
) -> dict:
    options: dict = {
        "dtype": dtype,
        "device": device,
        "template": os.fspath(template),
        "truncate": truncate,
        "batch_tokens": batch_tokens,
        "threads": threads,
        "cache": None if cache is True else cache,
        "tokenizers": tokenizers,
    }
    allowed = {"max_in_flight", "max_request_tokens", "request_timeout", "retries", "retry_wait", "api_key"}
    for key, value in (server or {}).items():
        if key not in allowed:
            raise InputError(f"server: unknown option `{key}`; valid options: {', '.join(sorted(allowed))}")
        options[key] = value
    return options


_COMMON_DOC = """
    Records and fields:
        records: a path (JSONL or Parquet), a list of dicts, a pandas or polars
            DataFrame, a ``pyarrow.Table``, a ``datasets.Dataset``, or any
            object with ``__arrow_c_stream__``.
        fields: field names by role, when they are not the defaults: ``id``,
            ``question_id``, ``prompt``, ``messages`` (OpenAI chat),
            ``conversations`` (ShareGPT), ``response``, ``correct``, ``answer``;
            e.g. ``{"prompt": "question"}``.
        skip_invalid: skip invalid records (bad fields, missing or bad scores)
            and count them in the summary, instead of raising.

    Models (checkpoint and server scorers):
        dtype: ``f32`` (exact), ``bf16`` or ``f16``.
        device: ``cpu``, ``cuda``, ``cuda:N`` or ``metal`` (the last three need
            a build with the cargo feature).
        template: ``auto`` (the checkpoint's chat template, else raw), ``raw``,
            or a template file.
        truncate: score only the first max_position_embeddings tokens of
            longer sequences instead of failing.
        batch_tokens: tokens one forward pass may hold (records packed);
            default 8192 on a GPU, 1 record per pass on the CPU.
        threads: CPU threads for checkpoint scoring; the pool is sized once
            per process, so a later, different value raises InputError.
        cache: the score cache (SQLite) path; ``True``/``None``: the default
            (``~/.cache/whence/scores.sqlite``); ``False``: no cache.
        tokenizers: the tokenizer directory of server-scored roles (and of
            ``file:`` scorers that give token ids): one for all, or a dict of
            role to directory.
        server: inference-server options: ``max_in_flight``,
            ``max_request_tokens``, ``request_timeout``, ``retries``,
            ``retry_wait``, ``api_key``.

    Segmentation:
        special_tokens, special_patterns: more special tokens (literal, regex).
        default_specials: keep the default special tokens (``<think>``, …).
        sentence_pattern: the sentence-boundary regex (default: the SPEC's).

    progress: ``True`` (a tqdm bar when tqdm is installed and stderr is a
        terminal or a notebook, else a line on stderr every 5 s), ``False``,
        or an object with ``start(step, total)``,
        ``advance(done, tokens)`` and ``finish()``.

    Scoring runs with the GIL released; Ctrl-C raises ``KeyboardInterrupt``
    at once and the scorers stop after the record in flight (a checkpoint on
    the CPU) or batch; nothing is written.
"""


def _doc(function: Callable) -> Callable:
    function.__doc__ = (function.__doc__ or "") + _COMMON_DOC
    return function


def _summary(run: Any) -> dict:
    return json.loads(run.summary_json())


class Trace:
    """The result of :func:`trace`: SPEC §9's tables and summary."""

    #: One row per action: ids, span, text, tokens, log-probabilities and
    #: probabilities under each model, and the label.
    actions: pa.Table
    #: One row per trajectory: label counts and shares, tokens, mean log-probabilities.
    trajectories: pa.Table
    #: The position profile: one row per action index, label fractions overall
    #: and among correct and incorrect trajectories.
    positions: pa.Table
    #: ``summary.json``: β (and its search), label counts, skipped records, models.
    summary: dict

    def __init__(self, run: Any) -> None:
        self._run = run
        self.actions = run.actions()
        self.trajectories = run.trajectories()
        self.positions = run.positions()
        self.summary = _summary(run)

    def write(self, dir: PathLike, format: str = "parquet") -> list[Path]:
        """Writes what ``whence trace --out DIR`` writes (``actions``,
        ``trajectories``, ``positions`` as ``parquet`` or ``jsonl``, and
        ``summary.json``), each file atomically; returns the paths."""
        return [Path(p) for p in self._run.write(os.fspath(dir), format)]

    def report(self, dir: PathLike, **options: Any) -> Path:
        """Writes the run into ``dir`` (Parquet) and its HTML report and
        figures into ``dir/report`` (options as :func:`report`); returns the
        report's ``index.html``."""
        self.write(dir)
        return report(dir, **options)

    def __repr__(self) -> str:
        s = self.summary
        return f"<whence.Trace: {s['trajectories']} trajectories, {s['actions']} actions, beta {s['beta']} ({s['beta_mode']})>"


class Selection:
    """The result of :func:`select`."""

    #: The kept responses, one per question, in input order, in the type the
    #: records came in, with every column (a path: a list of dicts for JSONL,
    #: a ``pyarrow.Table`` for Parquet).
    records: Any
    #: ``FILE.summary.json``: strategy, β, and every question's candidates.
    summary: dict

    def __init__(self, run: Any, records: _inputs.Records) -> None:
        self._run = run
        self.records = records.subset(run.kept_rows())
        self.summary = _summary(run)

    def write(self, path: PathLike) -> list[Path]:
        """Writes the kept records to ``path`` in the input's own format (a
        table given in memory: Parquet) and ``path.summary.json``, as
        ``whence select --out PATH`` does."""
        return [Path(p) for p in self._run.write(os.fspath(path))]

    def __repr__(self) -> str:
        s = self.summary
        return f"<whence.Selection: kept {s['kept']} of {s['records']} responses ({s['strategy']})>"


class Attribution:
    """The result of :func:`attribute`."""

    #: One row per candidate, in rank order.
    candidates: pa.Table
    #: Each candidate's position profile.
    positions: dict
    #: ``attribution.json``.
    summary: dict

    def __init__(self, run: Any) -> None:
        self._run = run
        self.candidates = run.candidates()
        self.positions = dict(run.positions())
        self.summary = _summary(run)

    @property
    def ranking(self) -> list[str]:
        """Candidate names, most likely teacher first."""
        return list(self.summary["ranking"])

    def write(self, dir: PathLike, format: str = "parquet") -> list[Path]:
        """Writes what ``whence attribute --out DIR`` writes."""
        return [Path(p) for p in self._run.write(os.fspath(dir), format)]

    def __repr__(self) -> str:
        return f"<whence.Attribution: {', '.join(self.ranking)}>"


class RecordScores(NamedTuple):
    """One record's token log-probabilities."""

    id: str
    #: ``(n, 2)`` uint64: each token's [start, end) byte span in the response.
    offsets: np.ndarray
    #: ``(n,)`` float64 natural log-probabilities.
    logprobs: np.ndarray


class Scores(Mapping):
    """The result of :func:`score`: record id → :class:`RecordScores`.

    Usable as a scorer of :func:`trace`, :func:`select` or :func:`attribute`
    as it is (the same numbers as the file ``write`` writes).
    """

    #: ``id``, ``offsets`` (list of [start, end]) and ``logprobs``: the
    #: ``file:`` scorer's columns.
    table: pa.Table
    #: Records skipped as invalid (``skip_invalid``): ``(id, reason)``.
    skipped: list

    def __init__(self, run: Any) -> None:
        self._run = run
        self.table = run.table()
        self.skipped = list(run.skipped)
        ids = self.table.column("id").to_pylist()
        self._index = {id: i for i, id in enumerate(ids)}
        offsets = self.table.column("offsets").combine_chunks()
        logprobs = self.table.column("logprobs").combine_chunks()
        self._bounds = offsets.offsets.to_numpy()
        self._spans = offsets.values.flatten().to_numpy(zero_copy_only=False).reshape(-1, 2)
        self._logprobs = logprobs.values.to_numpy(zero_copy_only=False)
        self._ids = ids

    def __getitem__(self, id: str) -> RecordScores:
        i = self._index[id]
        start, end = self._bounds[i], self._bounds[i + 1]
        return RecordScores(id, self._spans[start:end], self._logprobs[start:end])

    def __iter__(self) -> Iterator[str]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def write(self, path: PathLike) -> Path:
        """Writes the JSONL file ``whence score --out PATH`` writes."""
        return Path(self._run.write(os.fspath(path)))

    def __repr__(self) -> str:
        return f"<whence.Scores: {len(self)} records>"


@_doc
def trace(
    records: RecordsLike,
    *,
    teacher: Scorer,
    student: Scorer,
    distilled: Scorer,
    alpha: float = 0.1,
    beta: Union[str, float] = "auto",
    marker_tokens: int = 4096,
    fallback: str = _FALLBACK,
    fields: Optional[Mapping[str, str]] = None,
    skip_invalid: bool = False,
    dtype: str = "f32",
    device: str = "cpu",
    template: Union[str, PathLike] = "auto",
    truncate: bool = False,
    batch_tokens: Optional[int] = None,
    threads: Optional[int] = None,
    cache: Union[None, bool, PathLike] = None,
    tokenizers: Union[None, PathLike, Mapping[str, PathLike]] = None,
    server: Optional[Mapping[str, Any]] = None,
    special_tokens: Sequence[str] = (),
    special_patterns: Sequence[str] = (),
    default_specials: bool = True,
    sentence_pattern: Optional[str] = None,
    progress: Any = True,
) -> Trace:
    """Labels every action of distilled-model responses (``whence trace``).

    Args:
        teacher, student, distilled: the scorers of the teacher (M_T), the
            original student (M_S) and the distilled model (M_D), which wrote
            the responses.
        alpha: all three probabilities within α make an action ``shared``.
        beta: ``"auto"`` (the histogram-overlap search over 0.05 … 0.20) or a
            number from 0 to 1.
        marker_tokens: spacing of the position profile's token markers.
        fallback: answer extraction when a response has no ``\\boxed{}``:
            ``none``, ``answer-is``, ``answer-is-then-last-number``.

    Returns:
        A :class:`Trace`: ``.actions``, ``.trajectories`` and ``.positions``
        as ``pyarrow.Table`` (the columns of the files ``whence trace``
        writes), ``.summary`` as a dict, ``.write(dir)``, ``.report(dir)``.
    """
    given = _inputs.Records(records)
    run = _native.trace(
        given.native,
        given.name,
        _inputs.scorer(teacher, "teacher"),
        _inputs.scorer(student, "student"),
        _inputs.scorer(distilled, "distilled"),
        alpha=alpha,
        beta=beta,
        marker_tokens=marker_tokens,
        skip_invalid=skip_invalid,
        fallback=fallback,
        fields=_fields(fields),
        models=_models(dtype, device, template, truncate, batch_tokens, threads, cache, tokenizers, server),
        segmentation=_segmentation(special_tokens, special_patterns, default_specials, sentence_pattern),
        progress=_progress.target(progress),
    )
    return Trace(run)


@_doc
def select(
    records: RecordsLike,
    *,
    teacher: Scorer,
    student: Scorer,
    strategy: str = "teacher-count",
    seed: int = 0,
    beta: Union[str, float] = "auto",
    fields: Optional[Mapping[str, str]] = None,
    skip_invalid: bool = False,
    dtype: str = "f32",
    device: str = "cpu",
    template: Union[str, PathLike] = "auto",
    truncate: bool = False,
    batch_tokens: Optional[int] = None,
    threads: Optional[int] = None,
    cache: Union[None, bool, PathLike] = None,
    tokenizers: Union[None, PathLike, Mapping[str, PathLike]] = None,
    server: Optional[Mapping[str, Any]] = None,
    special_tokens: Sequence[str] = (),
    special_patterns: Sequence[str] = (),
    default_specials: bool = True,
    sentence_pattern: Optional[str] = None,
    progress: Any = True,
) -> Selection:
    """Keeps one teacher response per question for distillation (``whence select``).

    Args:
        records: teacher responses, several per question (``question_id``).
        teacher, student: the scorers of the teacher and of the student to
            be distilled.
        strategy: ``teacher-count`` (the most teacher actions: the paper's
            method), ``teacher-ratio``, ``longest``, ``min-teacher-count``,
            ``random`` (reproducible from ``seed``) or ``grape`` (the highest
            mean token log-probability under the student).
        beta: ``"auto"`` or a number from 0 to 1.

    Returns:
        A :class:`Selection`: ``.records``, the kept responses in the type
        they came in (a pandas DataFrame in, a pandas DataFrame out; a list
        of dicts in, a list of dicts out), with every column; ``.summary``;
        ``.write(path)``.
    """
    given = _inputs.Records(records)
    run = _native.select(
        given.native,
        given.name,
        _inputs.scorer(teacher, "teacher"),
        _inputs.scorer(student, "student"),
        strategy=strategy,
        seed=seed,
        beta=beta,
        skip_invalid=skip_invalid,
        fields=_fields(fields),
        models=_models(dtype, device, template, truncate, batch_tokens, threads, cache, tokenizers, server),
        segmentation=_segmentation(special_tokens, special_patterns, default_specials, sentence_pattern),
        progress=_progress.target(progress),
    )
    return Selection(run, given)


@_doc
def attribute(
    records: RecordsLike,
    *,
    distilled: Scorer,
    student: Scorer,
    candidates: Mapping[str, Scorer],
    alpha: float = 0.1,
    beta: Union[str, float] = "auto",
    marker_tokens: int = 4096,
    fallback: str = _FALLBACK,
    fields: Optional[Mapping[str, str]] = None,
    skip_invalid: bool = False,
    dtype: str = "f32",
    device: str = "cpu",
    template: Union[str, PathLike] = "auto",
    truncate: bool = False,
    batch_tokens: Optional[int] = None,
    threads: Optional[int] = None,
    cache: Union[None, bool, PathLike] = None,
    tokenizers: Union[None, PathLike, Mapping[str, PathLike]] = None,
    server: Optional[Mapping[str, Any]] = None,
    special_tokens: Sequence[str] = (),
    special_patterns: Sequence[str] = (),
    default_specials: bool = True,
    sentence_pattern: Optional[str] = None,
    progress: Any = True,
) -> Attribution:
    """Ranks candidate teachers of a distilled model (``whence attribute``).

    Args:
        records: the distilled model's responses.
        distilled, student: the scorers of the distilled model and of the
            original student.
        candidates: two or more candidate teachers, name → scorer (names:
            letters, digits, ``_``, ``-``, ``.``).
        alpha, beta, marker_tokens, fallback: as for :func:`trace` (with
            ``beta="auto"``, β is searched for each candidate).

    Returns:
        An :class:`Attribution`: ``.ranking``, ``.candidates`` (a table in
        rank order), ``.positions`` (each candidate's profile), ``.summary``.
    """
    given = _inputs.Records(records)
    if not isinstance(candidates, Mapping):
        raise InputError("candidates: give a dict of name to scorer, e.g. {'r1': 'file:r1.jsonl', 'qwq': 'file:qwq.jsonl'}")
    run = _native.attribute(
        given.native,
        given.name,
        _inputs.scorer(distilled, "distilled"),
        _inputs.scorer(student, "student"),
        [(str(name), _inputs.scorer(scorer, f"candidate {name}")) for name, scorer in candidates.items()],
        alpha=alpha,
        beta=beta,
        marker_tokens=marker_tokens,
        skip_invalid=skip_invalid,
        fallback=fallback,
        fields=_fields(fields),
        models=_models(dtype, device, template, truncate, batch_tokens, threads, cache, tokenizers, server),
        segmentation=_segmentation(special_tokens, special_patterns, default_specials, sentence_pattern),
        progress=_progress.target(progress),
    )
    return Attribution(run)


@_doc
def score(
    model: Scorer,
    records: RecordsLike,
    *,
    fields: Optional[Mapping[str, str]] = None,
    skip_invalid: bool = False,
    dtype: str = "f32",
    device: str = "cpu",
    template: Union[str, PathLike] = "auto",
    truncate: bool = False,
    batch_tokens: Optional[int] = None,
    threads: Optional[int] = None,
    cache: Union[None, bool, PathLike] = None,
    tokenizers: Union[None, PathLike, Mapping[str, PathLike]] = None,
    server: Optional[Mapping[str, Any]] = None,
    progress: Any = True,
) -> Scores:
    """A model's token log-probabilities of every record's response given
    its prompt (``whence score``).

    Returns:
        :class:`Scores`: record id → :class:`RecordScores` (``offsets`` as an
        ``(n, 2)`` NumPy array of byte spans, ``logprobs`` as an ``(n,)``
        array), ``.table``, ``.write(path)``; usable as a scorer as it is.
    """
    given = _inputs.Records(records)
    run = _native.score(
        given.native,
        given.name,
        _inputs.scorer(model, "model"),
        skip_invalid=skip_invalid,
        fields=_fields(fields),
        models=_models(dtype, device, template, truncate, batch_tokens, threads, cache, tokenizers, server),
        progress=_progress.target(progress),
    )
    return Scores(run)


class Action(NamedTuple):
    """One action of a response: a sentence or a special token."""

    index: int
    #: Byte offsets into the UTF-8 response, as in the command line's output.
    start: int
    end: int
    special: bool
    text: str


def segment(
    text: str,
    *,
    special_tokens: Sequence[str] = (),
    special_patterns: Sequence[str] = (),
    default_specials: bool = True,
    sentence_pattern: Optional[str] = None,
) -> list[Action]:
    """Cuts a response into actions (sentences and special tokens), as
    ``whence segment`` does (SPEC §3).

    Args:
        text: the response.
        special_tokens: more literal special tokens, each an action of its own.
        special_patterns: more special-token regular expressions.
        default_specials: keep the default special tokens (``<think>``,
            ``</think>``, ``<|…|>``).
        sentence_pattern: the sentence-boundary regex; the cut is at the
            start of its last capture group.

    Returns:
        The actions in order, with byte offsets into the UTF-8 text.
    """
    encoded = text.encode("utf-8")
    spans = _native.segment(text, _segmentation(special_tokens, special_patterns, default_specials, sentence_pattern))
    return [Action(i, start, end, special, encoded[start:end].decode("utf-8")) for i, (start, end, special) in enumerate(spans)]


class Grade(NamedTuple):
    """A response graded against a reference answer."""

    correct: bool
    #: ``math`` or ``multiple-choice`` (from the reference).
    kind: str
    #: The answer found in the response, if any.
    extracted: Optional[str]
    #: Which rule found it (``boxed``, ``answer-is``, ``last-number``, …).
    method: Optional[str]


def grade(response: str, answer: Union[str, int, float], *, fallback: str = _FALLBACK) -> Grade:
    """Grades ``response`` against the reference ``answer``, as ``whence
    grade`` does: the last ``\\boxed{}``, else ``fallback`` (``none``,
    ``answer-is``, ``answer-is-then-last-number``), compared as math."""
    return Grade(*_native.grade(response, str(answer), fallback))


def label(
    p_teacher: Any,
    p_student: Any,
    p_distilled: Any = None,
    *,
    alpha: float = 0.1,
    beta: float = 0.1,
) -> np.ndarray:
    """The label of each action from its three sentence probabilities
    (array-likes of one length, each from 0 to 1): ``teacher``,
    ``student``, ``shared``, ``boosted`` (SPEC §5); without
    ``p_distilled``, the labels before training (``teacher``, ``student``,
    ``common``). NaN is ``unscored``.

    Args:
        alpha: all three probabilities within α make an action ``shared``.
        beta: the teacher–student margin (a trace's ``summary["beta"]``).

    Returns a NumPy array of str.
    """

    def arrow(values: Any) -> pa.Array:
        return pa.array(np.ascontiguousarray(np.asarray(values, dtype=np.float64).ravel()))

    labels = _native.label(arrow(p_teacher), arrow(p_student), None if p_distilled is None else arrow(p_distilled), alpha, beta)
    return np.asarray(labels.to_pylist(), dtype=str)


def report(
    path: PathLike,
    *,
    out: Optional[PathLike] = None,
    window: int = 5,
    min_count: int = 10,
    trajectories: Sequence[str] = (),
    embed_limit_mb: int = 20,
    png_scale: float = 2.0,
) -> Path:
    """Writes the HTML report and the paper's figures of a written trace,
    select or attribute run (``whence report PATH``); returns its
    ``index.html``.

    Args:
        path: the run's output directory (or a select run's file).
        out: where to write; default ``PATH/report``.
        window: the position profile's moving-window width, in positions.
        min_count: the profile's x axis ends where fewer responses remain.
        trajectories: ids of trajectories drawn as figure files.
        embed_limit_mb: megabytes of trajectory data embedded in the page.
        png_scale: PNG size relative to the SVG's.
    """
    return Path(
        _native.report(
            os.fspath(path),
            out=None if out is None else os.fspath(out),
            window=window,
            min_count=min_count,
            trajectories=list(trajectories),
            embed_limit_mb=embed_limit_mb,
            png_scale=png_scale,
        )
    )
