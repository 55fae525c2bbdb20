"""Answer extraction of the math verifier: every rule, hedging, refusals, size limits."""

from __future__ import annotations

import time

import pytest

import verifiers.math_verifier as math_verifier
from verifiers import MathVerifier, extract_answer


@pytest.fixture(scope="module")
def v() -> MathVerifier:
    return MathVerifier(timeout_s=5.0, max_workers=1)


@pytest.fixture()
def no_sympy(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("sympy worker used")

    monkeypatch.setattr(math_verifier._SYMPY_POOL, "call", forbidden)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # boxes: last one, nested braces, \fbox, a box inside a box, boxes win over tags
        (r"so \boxed{\frac{1}{2}}.", r"\frac{1}{2}"),
        (r"\boxed{\boxed{42}}", r"\boxed{42}"),
        (r"\fbox{7}", "7"),
        (r"<answer>1</answer> but finally \boxed{2}", "2"),
        (r"\boxed{5} and again \boxed{5}", "5"),
        # answer tags, GSM8K hashes (but not markdown headings), phrases
        ("<answer>\n42\n</answer>", "42"),
        ("Janet sells eggs.\n#### 1,234", "1,234"),
        ("#### Step 1\nCompute 6*7.\n#### Step 2\nSo the answer is 42.", "42"),
        ("The answer is 42.", "42"),
        ("so the final answer is 3.5. Done", "3.5"),
        (r"Final answer: $\frac{3}{4}$.", r"\frac{3}{4}"),
        ("**Final Answer**\n\n$$42$$", "42"),
        ("Answer: B", "B"),
        ("Final Answer: The final answer is 42. I hope it is correct.", "42"),
        ("the final answer is that \\( L_u - L_v = 0 \\).", "L_u - L_v = 0"),
        # last line, only when it is nothing but a short answer
        ("Let me compute.\n6 * 7 = 42\n\n42", "42"),
        ("The total is:\n$42$", "42"),
        ("Working...\n**x = 7**", "x = 7"),
        ("The difference is\n-5", "-5"),
        ("Result:\n- **-5**", "-5"),
        ("Thus x = 42", None),
        ("I think it is 5", None),
        ("Adding them gives 17 apples in the basket.", None),
        ("no final answer here", None),
        # refusals: empty and unbalanced boxes and tags
        (r"\boxed{}", None),
        (r"\boxed{  }", None),
        (r"\boxed{\frac{1}{2}", None),
        (r"\boxed{1} and finally \boxed{2", None),
        ("<answer>   </answer>", None),
        ("", None),
        ("The answer is", None),
    ],
)
def test_extract_answer(text, expected):
    assert extract_answer(text) == expected


@pytest.mark.parametrize(
    "completion",
    [
        r"\boxed{10} or \boxed{11}",
        r"First \boxed{10}. Hmm, maybe \boxed{11}.",
        "<answer>10</answer>\n<answer>11</answer>",
        "The answer is 10 or 11.",
        r"\boxed{10 \text{ or } 11}",
        r"\boxed{\text{either } 10 \text{ or } 11}",
        "The answer is one of 10, 11, 12.",
        r"\boxed{10, 11}",
        r"\boxed{\{10, 11\}}",
    ],
)
def test_hedging_between_answers_is_refused(v, completion):
    verdict = v.verify(completion, "10")
    assert verdict.passed is False and verdict.score == 0.0
    assert verdict.detail["reason"] == "multiple_answers"


def test_several_different_boxes_are_reported(v):
    verdict = v.verify(r"\boxed{10} or \boxed{11}", "10")
    assert verdict.detail["multiple"] is True and verdict.detail["extracted"] == "10, 11"
    assert v.verify(r"\boxed{10}. Checking again: \boxed{10}.", "10").passed


def test_a_list_of_answers_matches_a_multi_answer_reference(v):
    assert v.verify(r"\boxed{10} and \boxed{11}", "10, 11").passed
    assert v.verify(r"\boxed{10 \text{ or } 11}", "11, 10").passed
    assert not v.verify(r"\boxed{10 \text{ or } 12}", "10, 11").passed


@pytest.mark.parametrize(
    ("completion", "reason"),
    [
        ("no final answer here", "no_answer"),
        (r"\boxed{}", "empty_or_unbalanced_box"),
        (r"\boxed{3", "empty_or_unbalanced_box"),
        ("<answer></answer>", "empty_answer_tag"),
    ],
)
def test_refusal_reasons(v, completion, reason):
    verdict = v.verify(completion, "3")
    assert (verdict.score, verdict.passed, verdict.answer_class) == (0.0, False, None)
    assert verdict.detail["reason"] == reason


def test_fallback_last_number_is_opt_in():
    assert extract_answer("it is 3 or maybe 1,500") is None
    assert extract_answer("it is 3 or maybe 1,500", fallback_last_number=True) == "1,500"
    assert MathVerifier(fallback_last_number=True, max_workers=1).verify("it is 1,500", 1500).passed
    assert MathVerifier(max_workers=1).verify("it is 1,500", 1500).detail["reason"] == "no_answer"


def test_references_with_boxes_or_hashes_are_extracted(v, no_sympy):
    assert v.verify(r"\boxed{18}", "Janet makes 9 * 2 = 18 dollars.\n#### 18").passed
    assert v.verify(r"\boxed{7}", r"The solution gives $\boxed{7}$.").passed


def test_100kb_completion_returns_quickly(v, no_sympy):
    filler = "We keep checking the intermediate sums carefully. " * 2000
    start = time.perf_counter()
    ok = v.verify(filler + r"\boxed{7}", 7)
    missing = v.verify(filler, 7)
    many_boxes = v.verify(r"\boxed{1} " * 20_000, 1)
    assert time.perf_counter() - start < 1.0
    assert ok.passed and ok.detail["format"] == "boxed"
    assert missing.detail["reason"] == "no_answer"
    assert many_boxes.passed  # 20,000 identical boxes are one answer


def test_completions_over_the_limit_keep_their_tail(v, no_sympy):
    verdict = v.verify("x" * 200_000 + r"\boxed{3}", 3)
    assert verdict.passed and verdict.detail["truncated"] is True
