"""Equivalence families of the math verifier, each with accepted and rejected cases, and the traps."""

from __future__ import annotations

import time

import pytest

import verifiers.math_verifier as math_verifier
from verifiers import MathVerifier


@pytest.fixture(scope="module")
def v() -> MathVerifier:
    verifier = MathVerifier(timeout_s=5.0, max_workers=1)
    assert verifier.verify(r"\boxed{x+1}", "1+x").passed  # start the sympy worker outside the cases
    return verifier


def boxed(answer: str) -> str:
    return f"Some reasoning.\nSo the result is $\\boxed{{{answer}}}$."


def check(v: MathVerifier, answer: str, reference, passed: bool, prompt: str | None = None) -> None:
    verdict = v.verify(boxed(answer), reference, prompt=prompt)
    assert verdict.error is None, verdict
    assert verdict.passed is passed, verdict
    assert verdict.score == (1.0 if passed else 0.0)


FAMILIES = {
    "integers": [
        ("1,234", "1234", True), ("1{,}234", "1234", True), ("1\\,234", "1234", True), ("1 000 000", "1000000", True),
        ("1,243", "1234", False), ("12.0", "12", True), ("-4", "4", False), ("\\$18", "18", True), ("\u22129", "-9", True),
        ("2^{10}", "1024", True), ("07", "7", True),
    ],
    "decimals_fractions": [
        ("\\frac{1}{2}", "0.5", True), ("0.5", "1/2", True), ("\\dfrac12", "1/2", True), ("\\frac{2}{4}", "1/2", True),
        (".75", "3/4", True), ("\\frac{-1}{2}", "-1/2", True), ("-\\frac{1}{2}", "1/2", False), ("2.50", "2.5", True),
        ("2.05", "2.5", False), ("0.333", "1/3", False), ("0.3333333333", "1/3", False), ("\\frac{22}{7}", "3.14", False),
    ],
    "mixed_numbers": [
        ("2\\frac{1}{2}", "5/2", True), ("2 1/2", "2.5", True), ("2\\ \\frac{1}{2}", "5/2", True), ("-2\\frac{1}{2}", "-5/2", True),
        ("2 3/4", "11/4", True), ("2 1/4", "11/4", False), ("2\\frac{1}{2}", "1", False), ("10/3", "3\\frac{1}{3}", True),
    ],
    "scientific": [
        ("3\\times 10^{5}", "300000", True), ("3e5", "300000", True), ("3.0E5", "300000", True),
        ("3 \\cdot 10^{-3}", "0.003", True), ("602000000000000000000000", "6.02\\times10^{23}", True),
        ("6.02 \\times 10^{22}", "6.02\\times10^{23}", False), ("0.0025", "2.5e-3", True),
    ],
    "radicals_constants": [
        ("\\sqrt{8}", "2\\sqrt{2}", True), ("\\frac{1}{\\sqrt{2}}", "\\sqrt{2}/2", True), ("\\sqrt{48}", "4\\sqrt{3}", True),
        ("(1+\\sqrt{2})^2", "3+2\\sqrt{2}", True), ("(1+\\sqrt{2})^2", "3-2\\sqrt{2}", False), ("\\sqrt{3}", "\\sqrt{2}", False),
        ("\\frac{\\pi}{2}", "\\pi/2", True), ("\\frac{\\pi}{3}", "\\frac{\\pi}{6}", False), ("\\mathrm{e}", "e", True),
        ("e^{2}", "e^2", True), ("2e", "e^2", False), ("2^{1/3}", "\\sqrt[3]{2}", True), ("3", "\\log_2 8", True),
        ("\\frac12", "\\sin(\\pi/6)", True),
        # decimals against exact irrationals: 6+ significant digits needed; a decimal reference sets the precision
        ("1.41421356", "\\sqrt{2}", True), ("1.414", "\\sqrt{2}", False), ("3.14159265358979", "\\pi", True),
        ("6.28", "2\\pi", False), ("\\pi", "3.14", True), ("\\pi", "3.15", False),
    ],
    "symbolic": [
        ("(x+1)^2", "x^2+2x+1", True), ("(x-1)(x+1)", "x^2-1", True), ("(x-1)^2", "x^2-1", False),
        ("2^{n}/2", "2^(n-1)", True), ("2^{n+1}", "2^(n-1)", False), ("\\frac{n^2-3n}{2}", "n(n-3)/2", True),
        ("\\frac{1}{2(x-1)}+\\frac{1}{2(x+1)}", "\\frac{x}{x^2-1}", True), ("\\sin 2x", "2\\sin x\\cos x", True),
        ("\\binom{n}{4}", "n(n-1)(n-2)(n-3)/24", True), ("\\binom{10}{5}", "252", True), ("C(10, 5)", "252", True),
        ("\\frac{(2n)!}{2^n n!}", "(2n)!/(2^n*n!)", True), ("(n-1)!", "n!", False),
        ("2^{\\lfloor n/2\\rfloor}\\lfloor n/2\\rfloor!", "2^floor(n/2)*floor(n/2)!", True),
    ],
    "equations": [
        ("x=5", "5", True), ("5", "x=5", True), ("x=6", "5", False), ("y = 2x+1", "2x+1", True),
        ("2x-y+1=0", "y=2x+1", True), ("2y=4x+2", "y=2x+1", True), ("y=2x-1", "y=2x+1", False),
        ("y^2+x^2=1", "x^2+y^2=1", True), ("x^2+y^2=2", "x^2+y^2=1", False), ("k=-3", "-3 is the only possible value", True),
        ("b=-4, a=3", "a=3, b=-4", True), ("(3,-4)", "a=3, b=-4", True), ("a=-4, b=3", "a=3, b=-4", False),
        ("x=0, y=0", "x=y=0", True), ("a_{1964} \\bmod 4 = 2", "2", True), ("1000 - 101 + 1 = 900", "900", True),
        ("3 \\times 4 = 12", "12", True), ("2x = 10", "5", False), ("x^2-5x+6=0", "0", False),
    ],
    "tuples": [
        ("(1,2)", "(1, 2)", True), ("(2,1)", "(1,2)", False), ("(1,3,2)", "(1,2,3)", False), ("(0.5, 3)", "(\\frac{1}{2}, 3)", True),
        ("\\left(3, -4\\right)", "(3, -4)", True), ("1, 2", "(1,2)", True), ("(1,2)", "(1,2,3)", False),
        ("(8,2), (2,8)", "(x=8, y=2), (x=2, y=8)", True), ("(8,2)", "(x=8, y=2), (x=2, y=8)", False),
    ],
    "sets_and_lists": [
        ("\\{3,2,1\\}", "\\{1,2,3\\}", True), ("\\{1,2\\}", "\\{1,2,3\\}", False), ("2, 1", "1, 2", True),
        ("625 \\text{ and } 376", "376 and 625", True), ("x = 16 \\text{ or } x = 81", "x=16 and x=81", True),
        ("\\pm 1", "x=\u00b11", True), ("1, -1", "x=\u00b11", True), ("\\pm1, \\pm2, \\pm\\frac{1}{2}", "x=\u00b11, \u00b12, \u00b11/2", True),
        ("\\varnothing", "\\emptyset", True), ("\\{0\\}", "\\emptyset", False), ("\\{1,1,2\\}", "\\{1,2\\}", True),
        ("(9, 11), (0, 2)", "x=0, y=2 and x=9, y=11", True), ("f(x)=0 \\text{ or } f(x)=1", "f(x)=0 or f(x)=1", True),
    ],
    "intervals": [
        ("(1,2]", "(1, 2]", True), ("[1,2)", "(1,2]", False), ("[0,\\infty)", "(0,\\infty)", False), ("x>0", "(0,\\infty)", True),
        ("x \\le 2", "(-\\infty, 2]", True), ("x < 2", "(-\\infty, 2]", False), ("-1 \\le x \\le 1", "[-1, 1]", True),
        ("(1,\\infty)\\cup(-\\infty,-1)", "(-\\infty,-1)\\cup(1,\\infty)", True),
        ("(-\\infty,-1]\\cup[1,\\infty)", "(-\\infty,-1)\\cup(1,\\infty)", False), ("[0,3]", "[0,1]\\cup[2,3]", False),
        ("\\mathbb{R}", "(-\\infty, \\infty)", True), ("2<x<3", "(2, 3)", True),
    ],
    "matrices": [
        ("\\begin{bmatrix}1&2\\\\3&4\\end{bmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", True),
        ("\\begin{pmatrix}1&3\\\\2&4\\end{pmatrix}", "\\begin{pmatrix}1&2\\\\3&4\\end{pmatrix}", False),
        ("\\begin{pmatrix}0.5&0\\\\0&1\\end{pmatrix}", "\\begin{pmatrix}1/2&0\\\\0&1\\end{pmatrix}", True),
        ("\\begin{pmatrix}\\sqrt{4}&0\\\\0&1\\end{pmatrix}", "\\begin{pmatrix}2&0\\\\0&1\\end{pmatrix}", True),
        ("(2,-1)", "\\begin{pmatrix}2\\\\-1\\end{pmatrix}", True),
        ("\\begin{pmatrix}1&2&0\\end{pmatrix}", "\\begin{pmatrix}1&2\\end{pmatrix}", False),
    ],
    "units_degrees": [
        ("30^\\circ", "30", True), ("30^{\\circ}", "45", False), ("30\u00b0", "30", True), ("30 \\text{ degrees}", "30", True),
        ("5\\text{ cm}", "5", True), ("5 \\mathrm{cm}", "5", True), ("12 \\text{ apples}", "12", True),
        ("13\\text{ apples}", "12", False), ("9\\text{ m}^2", "9", True), ("5", "5\\text{ cm}", True),
        ("2 \\text{ inequalities}", "2 inequalities", True), ("98", "98 values", True), ("3\\pi", "3", False),
    ],
    "multiple_choice": [
        ("B", "B", True), ("(B)", "B", True), ("\\text{B}", "B", True), ("\\textbf{(B)}", "B", True), ("B", "(B)", True),
        ("\\text{(E) } 12", "E", True), ("C", "B", False), ("(C)", "B", False), ("B \\text{ or } D", "D", False),
    ],
    "text": [
        ("\\text{No}", "No", True), ("\\text{NO}", "No", True), ("\\text{Yes}", "No", False), ("\\text{Blue}", "blue", True),
        ("\\text{bleu}", "blue", False), ("\\text{no integer solutions}", "No integer solutions", True),
        ("\\text{monotonically decreasing}", "Monotonically increasing", False), ("3", "The limit exists and is equal to 3", True),
        ("4", "The limit exists and is equal to 3", False), ("100", "100 (i.e., all values)", True),
        ("\\frac{(-1)^{n+1}+n+1}{n+2}", "((-1)^(n+1)+n+1)/(n+2) (i.e., 1 if for odd n, and n/(n+2) for even n)", True),
        ("\\binom{10}{5}", "C(10, 5), or equivalently 252", True), ("253", "C(10, 5), or equivalently 252", False),
    ],
}


@pytest.mark.parametrize(
    ("answer", "reference", "passed"),
    [pytest.param(*case, id=f"{family}-{i}") for family, cases in FAMILIES.items() for i, case in enumerate(cases)],
)
def test_equivalence_family(v, answer, reference, passed):
    check(v, answer, reference, passed)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_has_accepted_and_rejected_cases(family):
    assert {passed for _, _, passed in FAMILIES[family]} == {True, False}


# --- percent: the documented rule ---------------------------------------------------------------

PERCENT_QUESTION = "What percentage of the students passed the test?"


@pytest.mark.parametrize(
    ("answer", "reference", "prompt", "passed"),
    [
        ("50\\%", "50%", None, True),
        ("50", "50%", None, True),                 # a bare answer to a percent reference: 50 ...
        ("0.5", "50%", None, True),                # ... or its value 0.5
        ("\\frac{1}{2}", "50\\%", None, True),
        ("50\\%", "50", None, True),               # % is a unit mark on the answer ...
        ("50\\%", "0.5", None, True),              # ... and 50% is one half
        ("0.5", "50", None, False),                # a bare 0.5 is not a bare 50 ...
        ("0.5", "50", PERCENT_QUESTION, True),     # ... unless the question asks for a percentage
        ("50\\%", "0.5", PERCENT_QUESTION, False),  # then a bare 0.5 reference means 0.5%
        ("0.5\\%", "50%", None, False),
        ("25\\%", "20%", None, False),
        ("40 \\text{ percent}", "40", None, True),
    ],
)
def test_percent_rule(v, answer, reference, prompt, passed):
    check(v, answer, reference, passed, prompt=prompt)


def test_percent_context_detection():
    assert math_verifier.percent_context("How much more likely is it (expressed as a percentage) that he wins?")
    assert math_verifier.percent_context("What percent of the budget is left?")
    assert not math_verifier.percent_context("A shirt costs $20 after a 20% discount. What was the price?")
    assert not math_verifier.percent_context(None)


# --- traps ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("answer", "reference"),
    [("2=2", "2"), ("x=x", "x"), ("5 = 5", "5"), ("x+1=1+x", "y=2x+1"), ("x^2 = x^2", "x^2"), ("0=0", "0")],
)
def test_tautologies_are_not_answers(v, answer, reference):
    verdict = v.verify(boxed(answer), reference)
    assert (verdict.passed, verdict.answer_class, verdict.detail["reason"]) == (False, None, "tautology")


def test_tautology_reason_and_false_equations(v):
    assert v.verify(boxed("2=2"), "2").detail["reason"] == "tautology"
    assert v.verify(boxed("2+2=5"), "5").detail["reason"] == "false_equation"
    assert v.verify(boxed("2x=10"), "5").detail["reason"] == "equation_not_assignment"


def test_answer_classes_are_shared_by_equivalent_answers(v):
    correct = {v.verify(boxed(a), "1/2").answer_class for a in ["1/2", "\\frac{1}{2}", "0.5", "\\dfrac12", "\\frac{2}{4}"]}
    assert correct == {"1/2"}
    wrong = {v.verify(boxed(a), "7").answer_class for a in ["(x+1)^2", "x^2+2x+1"]}
    assert len(wrong) == 1 and wrong != {None}
    assert v.verify(boxed("\\{2, 1\\}"), "0").answer_class == v.verify(boxed("\\{1, 2\\}"), "0").answer_class


@pytest.mark.parametrize(
    ("answer", "reference"),
    [("42", "42"), ("1,234", "1234"), ("0.5", "1/2"), ("2\\frac{1}{2}", "2.5"), ("3\\times 10^{5}", "300000"),
     ("50\\%", "0.5"), ("(B)", "B"), ("\\text{No}", "no"), ("(1, 2)", "(1,2)"), ("\\{1, 2\\}", "\\{2, 1\\}"),
     ("x = 6, y = 5", "x=6, y=5"), ("[1, 2)", "[1,2)"), ("41", "42")],
)
def test_fast_path_never_touches_sympy(v, monkeypatch, answer, reference):
    def forbidden(*args, **kwargs):
        raise AssertionError("sympy worker used")

    monkeypatch.setattr(math_verifier._SYMPY_POOL, "call", forbidden)
    verdict = v.verify(boxed(answer), reference)
    assert verdict.detail["method"] == "fast_path" and verdict.error is None


def test_integer_fast_path_costs_microseconds(v):
    items = [(f"<answer>{i}</answer>", str(i + (i % 2))) for i in range(2000)]
    start = time.perf_counter()
    verdicts = [v.verify(c, r) for c, r in items]
    per_item = (time.perf_counter() - start) / len(items)
    assert [d.passed for d in verdicts] == [i % 2 == 0 for i in range(2000)]
    assert per_item < 500e-6, f"{per_item * 1e6:.0f} us per integer verification"
