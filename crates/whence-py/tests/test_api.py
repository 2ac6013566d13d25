"""The Python API against the command line: the same tables, the same
files, the same errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import whence
from conftest import EXAMPLE, cli_error, read_jsonl, run_cli, whence_command

TABLES = ("actions", "trajectories", "positions")


def test_version_and_the_installed_command():
    assert whence.__version__
    out = subprocess.run([whence_command(), "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"whence {whence.__version__}"
    out = subprocess.run([sys.executable, "-m", "whence", "--version"], capture_output=True, text=True, check=True).stdout
    assert out.strip() == f"whence {whence.__version__}"
    usage = subprocess.run([whence_command(), "trace"], capture_output=True, text=True)
    assert usage.returncode == 2 and "Usage: whence trace" in usage.stderr


def assert_same_run(run: whence.Trace, out: Path) -> None:
    for name in TABLES:
        expected = pq.read_table(out / f"{name}.parquet")
        assert getattr(run, name).equals(expected), name
    assert run.summary == json.loads((out / "summary.json").read_text())


def test_trace_tables_equal_the_command_lines_files(tmp_path, scorers):
    records = str(EXAMPLE / "records.jsonl")
    run_cli("trace", records, *sum([[f"--{r}", s] for r, s in scorers.items()], []), "--out", str(tmp_path / "cli"))
    run = whence.trace(records, **scorers, progress=False)
    assert_same_run(run, tmp_path / "cli")
    # write() writes what the command line writes, byte for byte.
    written = run.write(tmp_path / "api")
    assert sorted(p.name for p in written) == sorted(["actions.parquet", "trajectories.parquet", "positions.parquet", "summary.json"])
    for path in written:
        assert path.read_bytes() == (tmp_path / "cli" / path.name).read_bytes(), path.name
    run.write(tmp_path / "jsonl", format="jsonl")
    run_cli("trace", records, *sum([[f"--{r}", s] for r, s in scorers.items()], []), "--format", "jsonl", "--out", str(tmp_path / "cli-jsonl"))
    for name in TABLES:
        assert (tmp_path / "jsonl" / f"{name}.jsonl").read_bytes() == (tmp_path / "cli-jsonl" / f"{name}.jsonl").read_bytes()


def records_file(tmp_path: Path, n: int) -> Path:
    """`n` short records from the example's responses, for checkpoint runs."""
    source = read_jsonl(EXAMPLE / "records.jsonl")
    lines = []
    for i in range(n):
        record = dict(source[i % len(source)])
        record["id"] = f"r{i:03}"
        record["response"] = record["response"][:300] + f" Check {i}."
        lines.append(json.dumps(record))
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_a_checkpoint_scored_trace_equals_the_command_lines(tmp_path, checkpoints):
    records = records_file(tmp_path, 6)
    roles = sum([[f"--{r}", s] for r, s in checkpoints.items()], [])
    run_cli("trace", str(records), *roles, "--no-cache", "--out", str(tmp_path / "cli"))
    run = whence.trace(records, **checkpoints, cache=False, progress=False)
    assert_same_run(run, tmp_path / "cli")
    assert run.summary["models"]["teacher"]["kind"] == "checkpoint"


def test_score_equals_whence_score(tmp_path, checkpoints):
    records = records_file(tmp_path, 4)
    run_cli("score", str(records), "--model", checkpoints["teacher"], "--no-cache", "--out", str(tmp_path / "cli.jsonl"))
    scores = whence.score(checkpoints["teacher"], records, cache=False, progress=False)
    scores.write(tmp_path / "api.jsonl")
    assert (tmp_path / "api.jsonl").read_bytes() == (tmp_path / "cli.jsonl").read_bytes()
    first = read_jsonl(tmp_path / "cli.jsonl")[0]
    one = scores[first["id"]]
    assert one.offsets.dtype == np.uint64 and one.offsets.shape == (len(first["offsets"]), 2)
    assert one.logprobs.dtype == np.float64
    assert one.offsets.tolist() == first["offsets"] and one.logprobs.tolist() == first["logprobs"]
    assert list(scores) == [r["id"] for r in read_jsonl(records)]


def input_forms(path: Path) -> dict:
    import datasets
    import pandas as pd
    import polars as pl

    rows = read_jsonl(path)
    table = pa.Table.from_pylist(rows)
    return {
        "list": rows,
        "pandas": pd.DataFrame(rows),
        "polars": pl.DataFrame(rows),
        "pyarrow": table,
        "datasets": datasets.Dataset.from_list(rows),
    }


def test_every_input_form_gives_the_same_trace(tmp_path, scorers):
    path = EXAMPLE / "records.jsonl"
    reference = whence.trace(path, **scorers, progress=False)
    parquet = tmp_path / "records.parquet"
    pq.write_table(pa.Table.from_pylist(read_jsonl(path)), parquet)
    forms = {"jsonl path": str(path), "parquet path": parquet, **input_forms(path)}
    for name, records in forms.items():
        run = whence.trace(records, **scorers, progress=False)
        for table in TABLES:
            assert getattr(run, table).equals(getattr(reference, table)), (name, table)
        without_input = {k: v for k, v in run.summary.items() if k != "input"}
        assert without_input == {k: v for k, v in reference.summary.items() if k != "input"}, name


def test_select_returns_the_inputs_type_with_every_column(tmp_path, scorers):
    path = EXAMPLE / "records.jsonl"
    out = tmp_path / "selected.jsonl"
    run_cli("select", str(path), "--teacher", scorers["teacher"], "--student", scorers["student"], "--out", str(out))
    kept_ids = [r["id"] for r in read_jsonl(out)]
    rows = read_jsonl(path)
    for row in rows:
        row["extra"] = f"x-{row['id']}"
    extra = tmp_path / "extra.jsonl"
    extra.write_text("".join(json.dumps(r) + "\n" for r in rows))
    for name, records in input_forms(extra).items():
        selection = whence.select(records, teacher=scorers["teacher"], student=scorers["student"], progress=False)
        kept = selection.records
        assert type(kept) is type(records), name
        if name == "list":
            assert [r["id"] for r in kept] == kept_ids and all(r["extra"] == f"x-{r['id']}" for r in kept)
            assert kept[0] is records[[r["id"] for r in records].index(kept_ids[0])]
        else:
            table = {
                "pandas": lambda t: pa.Table.from_pandas(t, preserve_index=False),
                "polars": lambda t: t.to_arrow(),
                "pyarrow": lambda t: t,
                "datasets": lambda t: t.with_format("arrow")[:],
            }[name](kept)
            assert table.column_names == list(rows[0].keys()), name
            assert table.column("id").to_pylist() == kept_ids, name
            assert table.column("extra").to_pylist() == [f"x-{i}" for i in kept_ids], name
    # A path in: the kept lines as dicts, and write() writes the CLI's file.
    selection = whence.select(path, teacher=scorers["teacher"], student=scorers["student"], progress=False)
    assert selection.records == read_jsonl(out)
    selection.write(tmp_path / "api.jsonl")
    assert (tmp_path / "api.jsonl").read_bytes() == out.read_bytes()
    summary = json.loads(Path(str(out) + ".summary.json").read_text())
    assert selection.summary == summary


def file_scores(role: str) -> dict:
    return {line["id"]: line for line in read_jsonl(EXAMPLE / f"{role}.jsonl")}


def test_a_callable_scorer_gives_the_labels_of_the_same_numbers_in_a_file(scorers):
    teacher = file_scores("teacher")
    by_response = {r["response"]: r["id"] for r in read_jsonl(EXAMPLE / "records.jsonl")}
    calls = []

    def score_teacher(prompts, responses):
        calls.append(len(responses))
        assert all(isinstance(p, str) for p in prompts)
        lines = [teacher[by_response[r]] for r in responses]
        return [(np.array(line["offsets"]), np.array(line["logprobs"])) for line in lines]

    reference = whence.trace(EXAMPLE / "records.jsonl", **scorers, progress=False)
    run = whence.trace(EXAMPLE / "records.jsonl", teacher=score_teacher, student=scorers["student"], distilled=scorers["distilled"], progress=False)
    assert run.actions.column("label").equals(reference.actions.column("label"))
    assert run.actions.column("p_teacher").equals(reference.actions.column("p_teacher"))
    assert sum(calls) == 48 and max(calls) <= 64
    assert run.summary["models"]["teacher"]["kind"] == "python"
    # A table of the same numbers is a scorer too.
    table = pa.Table.from_pylist([{"id": k, "offsets": v["offsets"], "logprobs": v["logprobs"]} for k, v in teacher.items()])
    run = whence.trace(EXAMPLE / "records.jsonl", teacher=table, student=scorers["student"], distilled=scorers["distilled"], progress=False)
    assert run.actions.column("label").equals(reference.actions.column("label"))


def test_a_failing_callable_is_a_model_error_with_its_exception_as_cause(scorers):
    def broken(prompts, responses):
        raise ValueError("the GPU caught fire")

    with pytest.raises(whence.ModelError, match="the GPU caught fire") as raised:
        whence.trace(EXAMPLE / "records.jsonl", teacher=broken, student=scorers["student"], distilled=scorers["distilled"], progress=False)
    assert isinstance(raised.value.__cause__, ValueError)

    def short(prompts, responses):
        return []

    with pytest.raises(whence.InputError, match="returned 0 results for 48 records"):
        whence.trace(EXAMPLE / "records.jsonl", teacher=short, student=scorers["student"], distilled=scorers["distilled"], progress=False)

    def past_the_end(prompts, responses):
        return [([[0, len(r.encode()) + 5]], [-0.5]) for r in responses]

    with pytest.raises(whence.InputError, match=r"field `offsets\[0\]`: span .* ends past the response"):
        whence.trace(EXAMPLE / "records.jsonl", teacher=past_the_end, student=scorers["student"], distilled=scorers["distilled"], progress=False)
    with pytest.raises(whence.InputError, match="no record left to analyse: all 48 records were skipped as invalid"):
        whence.trace(
            EXAMPLE / "records.jsonl", teacher=past_the_end, student=scorers["student"], distilled=scorers["distilled"], skip_invalid=True, progress=False
        )


def bad_inputs(tmp_path: Path, scorers: dict) -> list[tuple[str, list[str], dict]]:
    """(name, CLI arguments, API keyword arguments) of bad-input cases."""
    good = read_jsonl(EXAMPLE / "records.jsonl")
    no_response = tmp_path / "no-response.jsonl"
    no_response.write_text(json.dumps(good[0]) + "\n" + json.dumps({k: v for k, v in good[1].items() if k != "response"}) + "\n")
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text(json.dumps(good[0]) + "\n{not json\n")
    duplicate = tmp_path / "duplicate.jsonl"
    duplicate.write_text(json.dumps(good[0]) + "\n" + json.dumps(good[0]) + "\n")
    unknown = tmp_path / "records.csv"
    unknown.write_text("id,response\n")
    partial = tmp_path / "partial.jsonl"
    partial.write_text("".join(json.dumps(line) + "\n" for line in read_jsonl(EXAMPLE / "teacher.jsonl")[:10]))
    nan = tmp_path / "nan.jsonl"
    line = read_jsonl(EXAMPLE / "teacher.jsonl")[0]
    nan.write_text(json.dumps(line).replace(str(line["logprobs"][0]), "NaN", 1) + "\n")
    records = str(EXAMPLE / "records.jsonl")
    cases = [
        ("a record without a response", str(no_response), {}),
        ("a line that is not JSON", str(bad_json), {}),
        ("a duplicate id", str(duplicate), {}),
        ("an unknown input format", str(unknown), {}),
        ("a missing input file", str(tmp_path / "missing.jsonl"), {}),
        ("a missing scorer file", records, {"teacher": f"file:{tmp_path / 'none.jsonl'}"}),
        ("a scorer file without some records", records, {"teacher": f"file:{partial}"}),
        ("a scorer file with NaN", records, {"teacher": f"file:{nan}"}),
        ("a bad scorer spec", records, {"teacher": "ftp:x"}),
        ("a checkpoint directory that is not one", records, {"teacher": str(tmp_path)}),
    ]
    out = []
    for name, input, override in cases:
        roles = {**scorers, **override}
        argv = ["trace", input, *sum([[f"--{r}", s] for r, s in roles.items()], []), "--out", str(tmp_path / "never")]
        out.append((name, argv, {"records": input, **roles}))
    return out


def test_every_bad_input_raises_input_error_with_the_command_lines_message(tmp_path, scorers):
    for name, argv, kwargs in bad_inputs(tmp_path, scorers):
        if kwargs["teacher"] == "ftp:x":
            # clap words the flag around the same message.
            message = cli_error(*argv)
            with pytest.raises(whence.InputError) as raised:
                whence.trace(kwargs.pop("records"), **kwargs, progress=False)
            assert str(raised.value) in message, name
            continue
        message = cli_error(*argv)
        with pytest.raises(whence.InputError) as raised:
            whence.trace(kwargs.pop("records"), **kwargs, progress=False)
        assert str(raised.value) == message, name
        assert not (tmp_path / "never").exists(), name


def test_bad_options_raise_input_error(scorers):
    records = EXAMPLE / "records.jsonl"
    cases = [
        ({"alpha": 2.0}, "alpha: invalid threshold `2`; it must be a number from 0 to 1"),
        ({"beta": "often"}, "beta: invalid β `often`; give `auto` or a number from 0 to 1"),
        ({"fallback": "guess"}, "fallback: unknown"),
        ({"sentence_pattern": "("}, "regex"),
        ({"fields": {"reply": "x"}}, "fields: unknown field role `reply`"),
        ({"dtype": "f8"}, "dtype: unknown dtype `f8`; valid dtypes: f32, bf16, f16"),
        ({"server": {"timeout": 3}}, "server: unknown option `timeout`"),
    ]
    for options, message in cases:
        with pytest.raises(whence.InputError, match=None) as raised:
            whence.trace(records, **scorers, progress=False, **options)
        assert message in str(raised.value), (options, str(raised.value))
    with pytest.raises(whence.InputError, match="records: cannot read a builtins.int"):
        whence.trace(3, **scorers)
    with pytest.raises(whence.InputError, match=r"list row 1: a record is a dict"):
        whence.trace([{"id": "a", "response": "x"}, "b"], **scorers)
    with pytest.raises(whence.InputError, match="strategy: unknown"):
        whence.select(records, teacher=scorers["teacher"], student=scorers["student"], strategy="best")
    with pytest.raises(whence.InputError, match="two or more candidates"):
        whence.attribute(records, distilled=scorers["distilled"], student=scorers["student"], candidates={"a": scorers["teacher"]})


def test_input_errors_of_a_dataframe_name_its_row_and_field(scorers):
    import pandas as pd

    rows = read_jsonl(EXAMPLE / "records.jsonl")[:3]
    rows[2]["response"] = "   "
    with pytest.raises(whence.InputError, match=r"^pandas.DataFrame row 2: field `response`"):
        whence.trace(pd.DataFrame(rows), **scorers, progress=False)


def test_attribute_equals_the_command_line(tmp_path, scorers):
    records = str(EXAMPLE / "records.jsonl")
    candidates = {"true": scorers["teacher"], "other": scorers["student"]}
    argv = ["attribute", records, "--distilled", scorers["distilled"], "--student", scorers["student"]]
    argv += sum([["--candidate", f"{n}={s}"] for n, s in candidates.items()], [])
    run_cli(*argv, "--out", str(tmp_path / "cli"))
    run = whence.attribute(records, distilled=scorers["distilled"], student=scorers["student"], candidates=candidates, progress=False)
    assert run.summary == json.loads((tmp_path / "cli" / "attribution.json").read_text())
    assert run.candidates.equals(pq.read_table(tmp_path / "cli" / "candidates.parquet"))
    for name, table in run.positions.items():
        assert table.equals(pq.read_table(tmp_path / "cli" / f"positions-{name}.parquet"))
    assert run.ranking == run.summary["ranking"]


def test_segment_grade_and_label_equal_the_command_line(tmp_path, scorers):
    records = EXAMPLE / "records.jsonl"
    lines = read_jsonl_text(run_cli("segment", str(records)).stdout)
    by_id = {r["id"]: r["response"] for r in read_jsonl(records)}
    api = [
        {"id": id, "index": a.index, "start": a.start, "end": a.end, "special": a.special, "text": a.text}
        for id, response in by_id.items()
        for a in whence.segment(response)
    ]
    assert api == lines
    answered = tmp_path / "answered.jsonl"
    answered.write_text("".join(json.dumps({**r, "answer": ["24", "\\frac{1}{2}", "B"][i % 3]}) + "\n" for i, r in enumerate(read_jsonl(records))))
    graded = read_jsonl_text(run_cli("grade", str(answered)).stdout)
    assert len(graded) == 48
    for row in graded:
        grade = whence.grade(by_id[row["id"]], row["answer"])
        assert (grade.correct, grade.kind, grade.extracted, grade.method) == (row["correct"], row["kind"], row["extracted"], row["method"])
    run = whence.trace(records, **scorers, progress=False)
    actions = run.actions
    beta = run.summary["beta"]
    labels = whence.label(actions["p_teacher"].to_numpy(), actions["p_student"].to_numpy(), actions["p_distilled"].to_numpy(), alpha=0.1, beta=beta)
    assert labels.tolist() == actions["label"].to_pylist()
    assert whence.label([0.9], [0.1]).tolist() == ["teacher"]
    with pytest.raises(whence.InputError, match="probabilities must be from 0 to 1"):
        whence.label([1.5], [0.1], [0.2])


def read_jsonl_text(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_report_and_progress(tmp_path, scorers):
    events = []

    class Recorder:
        def start(self, step, total):
            events.append(("start", step, total))

        def advance(self, done, tokens):
            events.append(("advance", done, tokens))

        def finish(self):
            events.append(("finish",))

    run = whence.trace(EXAMPLE / "records.jsonl", **scorers, progress=Recorder())
    assert [e[1] for e in events if e[0] == "start"] == ["teacher", "student", "distilled"]
    assert sum(e[1] for e in events if e[0] == "advance") == 3 * 48
    assert sum(e[2] for e in events if e[0] == "advance") > 0
    index = run.report(tmp_path / "run")
    assert index == tmp_path / "run" / "report" / "index.html" and index.stat().st_size > 10_000
    run_cli("report", str(tmp_path / "run"), "--out", str(tmp_path / "cli-report"))
    assert sorted(p.name for p in (tmp_path / "cli-report" / "figures").iterdir()) == sorted(
        p.name for p in (index.parent / "figures").iterdir()
    )
