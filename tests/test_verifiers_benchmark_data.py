"""The hand-labelled equivalence set (benchmarks/data/math_equivalence.jsonl): its shape, and a regression floor
for the math verifier's accuracy on it (the full comparison with math-verify is benchmarks/verifier_math.py)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from verifiers import MathVerifier

DATA = Path(__file__).resolve().parents[1] / "benchmarks" / "data" / "math_equivalence.jsonl"
FAMILIES = {
    "integers_format", "decimals_fractions", "mixed_numbers", "percent", "scientific", "radicals_constants",
    "symbolic", "equations", "tuples", "sets_multi", "intervals", "matrices", "units_degrees", "multiple_choice",
    "text", "extraction", "model_formats", "hedging", "tautology", "pathological", "champ_verbal",
    "champ_model_output", "gsm_symbolic",
}


@pytest.fixture(scope="module")
def cases() -> list[dict]:
    with DATA.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_dataset_shape(cases):
    assert len(cases) >= 300
    assert [c["id"] for c in cases] == list(range(len(cases)))
    for case in cases:
        assert isinstance(case["reference"], str) and case["reference"]
        assert isinstance(case["completion"], str) and isinstance(case["equal"], bool)
        assert case["category"] in FAMILIES and case["source"]
    assert {c["category"] for c in cases} == FAMILIES
    sources = Counter(c["source"] for c in cases)
    assert sources["champ"] >= 50 and sources["champ_model_output"] >= 30 and sources["reasoning_gym/gsm_symbolic"] >= 30
    labels = Counter(c["equal"] for c in cases)
    assert labels[True] >= 100 and labels[False] >= 100
    assert len({(c["reference"], c["completion"], c.get("prompt")) for c in cases}) == len(cases)


def test_accuracy_floor(cases):
    """14 of 588 cases are known misses (answers stated only in prose, refused by design); nothing is accepted
    that the labels reject."""
    v = MathVerifier(timeout_s=2.0, max_workers=1)
    runnable = [c for c in cases if c["category"] != "pathological"]  # the deadline itself is tested elsewhere
    verdicts = [v.verify(c["completion"], c["reference"], prompt=c.get("prompt")) for c in runnable]
    wrong = [(c["id"], c["category"]) for c, d in zip(runnable, verdicts) if d.passed != c["equal"]]
    false_positives = [(c["id"], c["category"]) for c, d in zip(runnable, verdicts) if d.passed and not c["equal"]]
    assert false_positives == []
    assert len(wrong) <= 16, wrong
    assert all(d.error is None for d in verdicts)


FIELD = DATA.parent / "math_field_tests.jsonl"
FIELD_RESULT = DATA.parents[1] / "results" / "verifier_math_field.json"


def test_field_dataset_shape():
    """Cases taken from other projects' grader tests: each names its source and has a verdict."""
    rows = [json.loads(line) for line in FIELD.open(encoding="utf-8")]
    assert len(rows) >= 250 and [r["id"] for r in rows] == list(range(len(rows)))
    for r in rows:
        assert r["source"] and r["path"] and len(r["commit"]) == 40 and r["test"]
        assert isinstance(r["reference"], str) and isinstance(r["prediction"], str)
        assert isinstance(r["expected"], bool) and isinstance(r["debatable"], bool)
        assert (r["debatable_reason"] is not None) == r["debatable"]
    assert len({r["source"] for r in rows}) >= 4 and "huggingface/Math-Verify" in {r["source"] for r in rows}


def test_field_accuracy_regression_guard():
    """rlvr's default mode on the non-debatable field cases: no fewer right and no more false positives than
    the committed run of benchmarks/verifier_math_field.py."""
    committed = json.loads(FIELD_RESULT.read_text())["non_debatable"]["rlvr"]
    rows = [json.loads(line) for line in FIELD.open(encoding="utf-8")]
    rows = [r for r in rows if not r["debatable"]]
    v = MathVerifier(timeout_s=5.0, max_workers=1)
    verdicts = [v.verify(r["prediction"], r["reference"]).passed for r in rows]
    correct = sum(p == r["expected"] for p, r in zip(verdicts, rows))
    false_positives = [r["id"] for p, r in zip(verdicts, rows) if p and not r["expected"]]
    assert len(rows) == committed["n"]
    assert correct >= committed["correct"], [r["id"] for p, r in zip(verdicts, rows) if p != r["expected"]]
    assert len(false_positives) <= committed["false_positives"], false_positives
