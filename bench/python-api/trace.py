"""`whence trace` through the Python API: the same job as the command line
(file: scorers, Parquet outputs written into OUT), for bench/python-api/run.sh."""

import sys

import whence

data, out = sys.argv[1], sys.argv[2]
run = whence.trace(
    f"{data}/records.jsonl",
    teacher=f"file:{data}/teacher.jsonl",
    student=f"file:{data}/student.jsonl",
    distilled=f"file:{data}/distilled.jsonl",
    progress=False,
)
run.write(out)
print(run.summary["trajectories"], run.actions.num_rows)
