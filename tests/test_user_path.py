"""The path a user walks, driven through the CLI in a temporary folder (issue 21): nothing is lost, nothing trains
for nothing with exit 0, and what `rlvr eval` of an export reports is the run's own task.

Truth used: file hashes before and after (a refused command changes nothing on disk), the run's own summary.json
and held-out completions (an export graded on its source run's task reproduces them), exit statuses of the
documented contract (0 done, 2 bad input, 3 stopped by the monitor)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from pathlib import Path

import pytest

from rlvr.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _tree(d: Path) -> dict[str, str]:
    """Every file under `d` -> sha256 (the disk as a user would compare it)."""
    return {str(p.relative_to(d)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(d.rglob("*")) if p.is_file()}


def _rlvr(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


@pytest.fixture()
def user(tmp_path, monkeypatch, tiny_model_dir):
    """A user's folder: a small recipe (tiny model, HF engine, a toy graded reward with variance) and cwd there."""
    monkeypatch.chdir(tmp_path)
    shutil.copy(ROOT / "tests" / "toy_verifiers.py", tmp_path / "toy_verifiers.py")
    (tmp_path / "r.yaml").write_text(f"""
model: {tiny_model_dir}
data: {{task: basic_arithmetic, train_size: 16, eval_size: 4}}
verifiers: [{{name: 'toy_verifiers:LengthVerifier'}}]
eval: {{verifier: 'toy_verifiers:LengthVerifier'}}
train: {{steps: 2, prompts_per_step: 2, group_size: 4, learning_rate: 0.05}}
sampling: {{max_new_tokens: 8}}
rollout: {{engine: hf}}
log: {{progress: false, tensorboard: false, checkpoint_every: 1}}
""")
    return tmp_path


def test_a_second_run_never_touches_the_first(user, capsys):
    assert _rlvr(capsys, "train", "r.yaml")[0] == 0
    run = user / "runs" / "r-seed0"
    before = _tree(run)
    assert {"metrics.jsonl", "summary.json", "rollouts.jsonl", "alerts.jsonl", "config.yaml"} <= set(before)
    code, _, err = _rlvr(capsys, "train", "r.yaml", "train.steps=1")
    assert code == 2 and len(err.splitlines()) == 1
    assert "already holds a run (2 steps logged, finished)" in err
    assert all(k in err for k in ("resume=true", "run_dir=NEW_FOLDER", "overwrite=true"))
    assert _tree(run) == before  # every file's hash unchanged
    # the same run dir given explicitly, and a run dir that is a file: refused, disk as it was
    assert _rlvr(capsys, "train", "r.yaml", f"run_dir={run}")[0] == 2 and _tree(run) == before
    (user / "afile").write_text("x")
    code, _, err = _rlvr(capsys, "train", "r.yaml", "run_dir=afile")
    assert code == 2 and "is a file" in err and (user / "afile").read_text() == "x"
    # resume continues it: 2 more steps appended, the first two rows untouched
    rows = (run / "metrics.jsonl").read_text().splitlines()
    assert _rlvr(capsys, "train", "r.yaml", "resume=true", "train.steps=4")[0] == 0
    assert (run / "metrics.jsonl").read_text().splitlines()[:2] == rows
    # overwrite replaces it whole: no checkpoint of the old run survives to be mixed in by a later resume
    assert _rlvr(capsys, "train", "r.yaml", "overwrite=true", "train.steps=1")[0] == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step_000001"]


def _plugin(user: Path, name: str, body: str) -> None:
    (user / f"{name}.py").write_text(body)


_NO_PROMPT = '''
from verifiers import SignalSpec, Verdict, Verifier


class NoPrompt(Verifier):
    name = "no_prompt"
    signal = SignalSpec(kind="binary", deterministic=True, source="external", cost="cheap")

    def _verify(self, completion, reference):
        return Verdict(score=1.0, passed=True, answer_class=None)
'''


@pytest.mark.parametrize("case, files, overrides, expect", [
    ("verify without prompt", {"bad_sig": _NO_PROMPT}, ["verifiers=[{name: 'bad_sig:NoPrompt'}]"],
     ["lacks the keyword argument `prompt`", "bad_sig.py:9", "def _verify(self, completion: str, reference, *, "
      "prompt"]),
    ("syntax error", {"bad_syntax": "from verifiers import Verifier\nclass X(Verifier)\n    pass\n"},
     ["verifiers=[{name: 'bad_syntax:X'}]"], ["syntax error at", "bad_syntax.py:2"]),
    ("import error inside the plug-in", {"bad_import": "import numpy\nimport no_such_dependency_xyz\n"},
     ["verifiers=[{name: 'bad_import:X'}]"], ["bad_import.py:2", "No module named 'no_such_dependency_xyz'"]),
    ("missing module", {}, ["verifiers=[{name: 'not_here:X'}]"], ["no module 'not_here' in the current folder"]),
    ("missing class", {"ok_mod": "x = 1\n"}, ["verifiers=[{name: 'ok_mod:Nope'}]"], ["has no attribute 'Nope'"]),
    ("all references empty", {"empty.jsonl": "".join(json.dumps({"prompt": f"{i}+1", "reference": ""}) + "\n"
                                                     for i in range(12))},
     ["data={path: empty.jsonl, eval_size: 2}", "verifiers=[{name: math}]", "eval.verifier=math"],
     ["every training reference is empty", "monitor.preflight_ignore=[empty_references]"]),
    ("verifier that raises on every item", {}, ["verifiers=[{name: 'toy_verifiers:FailingVerifier'}]"],
     ["'toy_failing' raised on", "reference service unavailable", "preflight_ignore=[canary:toy_failing]"]),
])
def test_runs_that_cannot_learn_stop_before_step_1_and_leave_nothing(user, capsys, case, files, overrides, expect):
    for fname, body in files.items():
        if fname.endswith(".jsonl"):
            (user / fname).write_text(body)
        else:
            _plugin(user, fname, body)
    code, out, err = _rlvr(capsys, "train", "r.yaml", *overrides)
    assert code == 2, (case, err)
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert all(e in err for e in expect), (case, err)
    assert not (user / "runs").exists()  # no empty run dir left behind
    assert "GRPO" not in out and "held-out pass@1" not in out  # nothing trained, nothing evaluated


def test_a_tolerant_plugin_from_the_examples_passes_its_canaries(user, capsys):
    shutil.copy(ROOT / "examples" / "my_verifiers.py", user / "my_verifiers.py")
    code, out, err = _rlvr(capsys, "train", "r.yaml", "verifiers=[{name: 'my_verifiers:Within10'}]",
                           "train.steps=1", "eval.at_start=false")
    assert code == 0, err
    alerts = [json.loads(x) for x in (user / "runs/r-seed0/alerts.jsonl").read_text().splitlines()]
    assert not [a for a in alerts if a["name"] == "VERIFIER_FAULT"]
    metrics = json.loads((user / "runs/r-seed0/metrics.jsonl").read_text().splitlines()[0])
    assert "rewards/within10/mean" in metrics  # keyed by the verifier's name, not its import path


def test_a_run_that_trains_through_a_critical_alert_says_so(user, capsys):
    code, out, _ = _rlvr(capsys, "train", "r.yaml", "verifiers=[{name: 'toy_verifiers:FailingVerifier'}]",
                         "monitor.preflight_ignore=[canary:toy_failing]", "eval.at_start=false")
    assert code == 0
    summary = json.loads((user / "runs/r-seed0/summary.json").read_text())
    crit = summary["critical_alerts"]
    assert crit and crit[0]["name"] == "VERIFIER_FAULT" and crit[0]["step"] == 0
    assert "this run trained through a critical alert: VERIFIER_FAULT (canary:toy_failing) from step 0" in out


def test_export_then_eval_grades_the_runs_own_task_and_nothing_is_replaced(user, capsys):
    assert _rlvr(capsys, "train", "r.yaml")[0] == 0
    run = user / "runs" / "r-seed0"
    summary = json.loads((run / "summary.json").read_text())
    assert _rlvr(capsys, "export", run, "exported", "--merge")[0] == 0
    exported = _tree(user / "exported")
    code, out, _ = _rlvr(capsys, "eval", "exported", "--no-progress")  # no --recipe, no --data
    assert code == 0 and "task: basic_arithmetic from the run's own config" in out
    ev = json.loads((user / "evals/exported/eval_summary.json").read_text())
    assert ev["pass@1"] == summary["heldout_pass@1_after"] and ev["n"] == summary["heldout_n"] == 4
    completions = [json.loads(x)["completion"] for x in (user / "evals/exported/eval.jsonl").read_text().splitlines()]
    assert completions == [json.loads(x)["completion"] for x in (run / "eval_step2.jsonl").read_text().splitlines()]
    # the adapter export (no --merge) carries the run's config too and grades the same task
    assert _rlvr(capsys, "export", run, "adapter")[0] == 0
    assert _rlvr(capsys, "eval", "adapter", "--no-progress")[0] == 0
    ev2 = json.loads((user / "evals/adapter/eval_summary.json").read_text())
    assert ev2["pass@1"] == summary["heldout_pass@1_after"] and ev2["data"] == "basic_arithmetic"
    # a second eval goes to a new folder; an explicit --out that holds files and a second export are refused
    assert _rlvr(capsys, "eval", "exported", "--no-progress")[0] == 0 and (user / "evals/exported-2").is_dir()
    before = _tree(user / "evals/exported")
    assert _rlvr(capsys, "eval", "exported", "--out", "evals/exported")[0] == 2
    assert _tree(user / "evals/exported") == before
    assert _rlvr(capsys, "export", run, "exported")[0] == 2 and _tree(user / "exported") == exported
    # shareable: readable by others under the usual umask (mkdtemp would have made the folder 0700)
    umask = os.umask(0)
    os.umask(umask)
    for p in [user / "exported", *(user / "exported").iterdir(), run / "final_adapter",
              *(run / "final_adapter").iterdir()]:
        want = (0o777 if p.is_dir() else 0o666) & ~umask
        assert stat.S_IMODE(p.stat().st_mode) == want, p
    # the adapter names its base portably (the recipe's model, not a cache path) with a content hash
    record = json.loads((run / "final_adapter/rlvr_base_model.json").read_text())
    assert len(record["sha256"]) == 64
    cfg = json.loads((run / "final_adapter/adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == record["portable_ref"]
    # a plain model has no task of its own: eval asks which one
    code, _, err = _rlvr(capsys, "eval", summary["model"])
    assert code == 2 and "--recipe" in err and "--data" in err
    # rollouts.jsonl rows carry the question the alerts point at
    row = json.loads((run / "rollouts.jsonl").read_text().splitlines()[0])
    assert row["question"] and "=" not in row["question"][-1:]


def test_short_runs_compare_non_overlapping_windows(user, capsys):
    code, out, _ = _rlvr(capsys, "train", "r.yaml", "train.steps=3")
    assert code == 0
    s = json.loads((user / "runs/r-seed0/summary.json").read_text())
    rewards = [json.loads(x)["reward"] for x in (user / "runs/r-seed0/metrics.jsonl").read_text().splitlines()]
    assert s["train_reward_window"] == 1
    assert s["train_reward_first5"] == rewards[0] and s["train_reward_last5"] == rewards[2]
    assert "mean of steps 1-1" in out and "mean of the last 1 step " in out
