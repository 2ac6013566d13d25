"""From a pandas DataFrame of responses to a plot of the position profile.

    python crates/whence-py/examples/position_profile.py [OUT.png]

The responses are the shipped example's (examples/synthetic: 48 traces with
precomputed token log-probabilities under a teacher, a student and the
distilled model, as `file:` scorers); with checkpoints, give their
directories as the scorers instead.
"""

import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

import whence

data = Path(__file__).resolve().parents[3] / "examples" / "synthetic"
out = Path(sys.argv[1] if len(sys.argv) > 1 else "position-profile.png")

# Any DataFrame with a prompt and a response per row (and optionally id,
# question_id, correct or answer) will do.
responses = pd.read_json(data / "records.jsonl", lines=True)

run = whence.trace(
    responses,
    teacher=f"file:{data / 'teacher.jsonl'}",
    student=f"file:{data / 'student.jsonl'}",
    distilled=f"file:{data / 'distilled.jsonl'}",
)
print(run)
print({label: f"{count}" for label, count in run.summary["label_counts"].items()})

# Per-action labels, as a DataFrame: which labels go with correct answers?
actions = run.actions.to_pandas()
print(actions.groupby("correct")["label"].value_counts(normalize=True).unstack().round(3))

# The position profile: the share of each label at each action index.
profile = run.positions.to_pandas()
fig, ax = plt.subplots(figsize=(7, 3.5))
for label in ("teacher", "student", "shared", "boosted"):
    smoothed = profile[f"{label}_all"].rolling(5, min_periods=1, center=True).mean()
    ax.plot(profile["index"], smoothed, label=label)
ax.set_xlabel("action index")
ax.set_ylabel("share of actions")
ax.set_title("Where in a trace each label occurs")
ax.legend()
fig.tight_layout()
fig.savefig(out, dpi=120)
print(f"wrote {out}")
