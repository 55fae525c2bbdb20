"""The code verifier on real data and on each reference format: HumanEval's 164 canonical solutions score 1 and
wrong ones score below 1; MBPP asserts and stdin/stdout cases are scored per test; extraction and errors."""

from __future__ import annotations

import pickle

import pytest

from verifiers import get_verifier
from verifiers.code import CodeVerifier, build_job, extract_program
from verifiers.code.humaneval import load_humaneval


@pytest.fixture(scope="module")
def verifier():
    v = get_verifier("code", timeout=10.0)
    yield v
    v.close()


@pytest.fixture(scope="module")
def problems():
    return load_humaneval()


def test_all_164_canonical_solutions_pass(verifier, problems):
    assert len(problems) == 164
    verdicts = verifier.verify_batch([(p["canonical_solution"], p["reference"]) for p in problems])
    failed = [(p["task_id"], v.score, v.detail.get("error"), v.error) for p, v in zip(problems, verdicts)
              if v.score != 1.0 or not v.passed]
    assert failed == []
    assert all(len(v.detail["tests"]) >= 1 for v in verdicts)


def _wrong(p) -> str:
    """The canonical solution with its return value perturbed (a different value of the same type), as a full
    function: the verifier must prepend the prompt's imports and helpers itself."""
    entry = p["reference"]["entry_point"]
    return (p["prompt"].replace(f"def {entry}(", f"def _orig_{entry}(", 1) + p["canonical_solution"] + "\n\n"
            f"def {entry}(*args, **kwargs):\n"
            f"    r = _orig_{entry}(*args, **kwargs)\n"
            "    if isinstance(r, bool): return not r\n"
            "    if isinstance(r, (int, float)): return r + 1\n"
            "    if isinstance(r, str): return r + 'x'\n"
            "    if isinstance(r, list): return r + [None]\n"
            "    if isinstance(r, tuple): return r + (None,)\n"
            "    if r is None: return 0\n"
            "    return None\n")


def test_mutated_wrong_solutions_score_below_one(verifier, problems):
    verdicts = verifier.verify_batch([("```python\n" + _wrong(p) + "```", p["reference"]) for p in problems])
    not_caught = [p["task_id"] for p, v in zip(problems, verdicts) if v.score >= 1.0 or v.passed]
    assert not_caught == []
    # partial credit exists: some perturbed solutions still pass some asserts
    assert any(0 < v.score < 1 for v in verdicts)


def test_humaneval_completion_as_continuation_or_full_function(verifier, problems):
    p = next(p for p in problems if p["task_id"] == "HumanEval/0")
    body = p["canonical_solution"]
    assert verifier.verify(body, p["reference"]).score == 1.0                      # continuation of the prompt
    full = "Here you go:\n```python\n" + p["prompt"] + body + "```\nDone."
    assert verifier.verify(full, p["reference"]).score == 1.0                     # fenced full function
    job = build_job(extract_program(full), p["reference"])
    assert "from typing import List" in job["program"] and job["mode"] == "call"


def test_mbpp_asserts_are_scored_one_by_one(verifier):
    ref = {"test_list": ["assert sq(2) == 4", "assert sq(-3) == 9", "assert sq(0) == 0"],
           "test_imports": ["import math"]}
    good = verifier.verify("```python\ndef sq(x):\n    return x * x\n```", ref)
    assert (good.score, good.passed, good.detail["tests"]) == (1.0, True, [True, True, True])
    half = verifier.verify("def sq(x):\n    return x * abs(x)", ref)
    assert half.score == pytest.approx(2 / 3) and half.detail["tests"] == [True, False, True]
    as_list = verifier.verify("def sq(x):\n    return x ** 2", ["assert sq(5) == 25", "assert math.sqrt(sq(4)) == 4"])
    assert as_list.detail["tests"] == [True, False]  # `math` was not imported by the reference: that test errors


def test_stdio_cases_compare_whole_outputs(verifier):
    cases = [{"input": "1 2\n", "output": "3\n"}, {"input": "5 7\n", "output": "12\n"},
             {"input": "0.1 0.2\n", "output": "0.3\n"}]
    prog = "```python\na, b = map(float, input().split())\nr = a + b\nprint(int(r) if r == int(r) else r)\n```"
    v = verifier.verify(prog, cases)
    assert v.detail["tests"] == [True, True, True]                 # 0.30000000000000004 within 1e-6 of 0.3
    prefix = verifier.verify("print(3)\nprint(4)", [{"input": "", "output": "3\n4\n5\n"}])
    assert prefix.score == 0.0                                     # a prefix of the expected output is not a pass
    extra = verifier.verify("print(3)\nprint(4)", [{"input": "", "output": "3\n"}])
    assert extra.score == 0.0
    apps = verifier.verify("import sys\nprint(sys.stdin.read().upper(), end='')", {"inputs": ["ab\n"],
                                                                                    "outputs": ["AB\n"]})
    assert apps.score == 1.0


def test_bad_inputs_give_zero_with_a_reason(verifier):
    v = verifier.verify("I don't know how to write this.", ["assert f(1) == 1"])
    assert v.score == 0.0
    assert verifier.verify("", ["assert f(1) == 1"]).detail["reason"] == "no_code"
    bad = verifier.verify("def f(): pass", {"nonsense": 1})
    assert bad.score == 0.0 and "unknown code reference format" in bad.error
    syntax = verifier.verify("def f(:\n", ["assert f() == 1"])
    assert syntax.score == 0.0 and "SyntaxError" in syntax.detail["error"]


def test_extract_program_takes_the_last_python_block():
    text = "```text\nnot code\n```\n```python\nx = 1\n```\nthen\n```py\nx = 2\n```"
    assert extract_program(text) == "x = 2"
    assert extract_program("def f():\n    return 1") == "def f():\n    return 1"
    assert extract_program("```python\ndef f():\n    return 1") == "def f():\n    return 1"  # unterminated fence


def test_verifier_pickles_without_its_pool(verifier):
    verifier.verify("def f():\n    return 1", ["assert f() == 1"])
    clone = pickle.loads(pickle.dumps(verifier))
    assert clone._pool is None and isinstance(clone, CodeVerifier)
    try:
        assert clone.verify("def f():\n    return 1", ["assert f() == 1"]).score == 1.0
    finally:
        clone.close()


def test_signal_is_external_and_graded():
    s = CodeVerifier.signal
    assert (s.source, s.kind, s.cost) == ("external", "graded", "moderate")


def test_humaneval_recipe_data_and_one_training_step(tiny_model_dir, tmp_path, problems):
    """recipes/humaneval.yaml: the built-in `humaneval` data source splits 132/32 without overlap, references
    travel as JSON text and the code verifier scores them; one GRPO step runs end to end (tiny model)."""
    import json

    from rlvr.config import load_config
    from rlvr.data import load_splits
    from rlvr.metrics import read_metrics
    from rlvr.trainer import Trainer

    cfg = load_config("recipes/humaneval.yaml", [
        f"model={tiny_model_dir}", f"run_dir={tmp_path / 'run'}", "train.steps=1", "train.prompts_per_step=2",
        "train.group_size=2", "sampling.max_new_tokens=8", "data.eval_size=2", "rollout.engine=hf",
        "eval.every=0", "eval.at_end=false", "log.progress=false", "log.tensorboard=false"])
    splits = load_splits(cfg.data)
    assert (len(splits.train), len(splits.eval)) == (132, 2)
    assert not set(splits.train["prompt"]) & set(splits.eval["prompt"])
    by_prompt = {p["prompt"]: p for p in problems}
    row = splits.eval[0]
    assert json.loads(row["reference"]) == by_prompt[row["prompt"]]["reference"]
    v = get_verifier("code")
    try:
        assert v.verify(by_prompt[row["prompt"]]["canonical_solution"], row["reference"]).score == 1.0
    finally:
        v.close()
    Trainer(cfg).run()
    (m,) = read_metrics(tmp_path / "run")
    assert m["rewards/code/mean"] == 0.0 and m["rewards/code/error_rate"] == 0.0  # random model: no code, no crash


def test_sandbox_works_from_a_checkout_under_tmp(tmp_path):
    """bubblewrap mounts a fresh /tmp: a checkout (or virtualenv) living under /tmp must be bound back in."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import verifiers

    shutil.copytree(Path(verifiers.__file__).parent, tmp_path / "verifiers")
    code = ("from verifiers.code import CodeVerifier\n"
            "v = CodeVerifier(workers=1)\n"
            "print(v.pool.active_tier, v.verify('def f():\\n    return 1', ['assert f() == 1']).score)\n"
            "v.close()\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                       env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split()[-1] == "1.0"


def test_standard_library_beyond_the_preload_imports_in_the_sandbox(verifier):
    """Only a few modules are preloaded in the zygote; the rest of the standard library is read from disk."""
    prog = ("import statistics, decimal, datetime, textwrap\n"
            "def f(xs):\n"
            "    return [statistics.mean(xs), str(decimal.Decimal('1.10') + 1), datetime.date(2024, 2, 29).isoformat(),"
            " textwrap.fill('a b', 1)]\n")
    v = verifier.verify(prog, ["assert f([1, 2, 3]) == [2, '2.10', '2024-02-29', 'a\\nb']"])
    assert v.score == 1.0, v.detail


def test_verify_batch_gives_the_verdicts_of_verify(verifier, problems):
    """The batch path (every worker fed from the calling thread, the next job queued behind the running one) gives
    each item the verdict `verify` gives it: passes, failures, errors, timeouts, no code, bad references."""
    add = {"prompt": "def add(a, b):\n    \"\"\"a + b\"\"\"\n",
           "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n", "entry_point": "add"}
    items = [("    return a + b\n", add), ("    return a - b\n", add), ("", ["assert f(1) == 1"]),
             ("def f(): pass", {"nonsense": 1}), ("def f(:\n", ["assert f() == 1"]),
             ("import time\ndef f():\n    time.sleep(30)", ["assert f() == 1"]),
             ("def f(x):\n    return x", ["assert f(1) == 1", "assert f(2) == 3"]),
             ("print(sum(map(int, input().split())))", [{"input": "1 2", "output": "3"}]),
             ("    return a + b\n", add, "a prompt"), {"completion": "    return a * b\n", "reference": add},
             (problems[0]["canonical_solution"], problems[0]["reference"])] * 2
    quick = CodeVerifier(timeout=1.0, workers=2)
    try:
        batch = quick.verify_batch(items)
        one = [quick.verify(*(it if isinstance(it, tuple) else (it["completion"], it["reference"]))[:2])
               for it in items]
        assert [(v.score, v.passed, v.answer_class, v.error, v.detail) for v in batch] == \
               [(v.score, v.passed, v.answer_class, v.error, v.detail) for v in one]
        assert [v.score for v in batch[:11]] == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 1.0, 1.0, 0.0, 1.0]
        assert batch[5].detail["timed_out"] and quick.stats["calls"] == 2 * len(items)
    finally:
        quick.close()


def test_a_worker_lost_in_a_batch_fails_only_its_running_job():
    """A worker that dies in the middle of a batch (killed here from outside) fails the job it was running, as
    `run` does, and is replaced; the job queued behind it runs on a worker again, and every other job passes."""
    import os
    import signal
    import threading
    import time

    quick = CodeVerifier(timeout=5.0, workers=2)
    try:
        pool = quick.pool
        pids = [w.proc.pid for w in pool._free.queue]   # each worker's bwrap (or checker) process
        add = {"prompt": "def add(a, b):\n    \"\"\"a + b\"\"\"\n",
               "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n", "entry_point": "add"}
        items = [("    import time\n    time.sleep(0.05)\n    return a + b\n", add)] * 60
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("v", quick.verify_batch(items)))
        t.start()
        time.sleep(0.5)
        assert not pool._free.queue   # both workers are out with the batch
        os.kill(pids[0], signal.SIGKILL)
        t.join(60)
        verdicts = out["v"]
        assert len(verdicts) == 60
        lost = [v for v in verdicts if v.score != 1.0]
        assert len(lost) == 1 and "worker lost" in lost[0].detail["error"], [v.detail for v in lost]
        assert pool.stats["worker_restarts"] == 1
        assert quick.verify("    return a + b\n", add).score == 1.0
    finally:
        quick.close()
