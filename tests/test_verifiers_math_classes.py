"""The failure classes of issue 14, one test per class: wrong verdicts (undefined values, large numbers,
matrices), MATH-style thousands, labelled answers, normalisation gaps, and extraction without a marker.

Cases are written from each class, not taken from another project's suite."""

from __future__ import annotations

import pytest

from verifiers import MathVerifier, extract_answer
from verifiers import _math_parse as mp


@pytest.fixture(scope="module")
def v() -> MathVerifier:
    verifier = MathVerifier(timeout_s=5.0, max_workers=1)
    assert verifier.verify(r"\boxed{x+1}", "1+x").passed  # start the sympy worker outside the cases
    return verifier


def boxed(answer: str) -> str:
    return f"Some work.\nSo the result is $\\boxed{{{answer}}}$."


def check(v: MathVerifier, completion: str, reference, passed: bool) -> None:
    verdict = v.verify(completion, reference)
    assert verdict.error is None, verdict
    assert verdict.passed is passed, verdict


# --- 1. wrong verdicts ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("answer", "reference"),
    [
        ("12:00", "1:00"), ("3:00", "15:00"), ("1/0", "2/0"), (r"\frac{1}{0}", r"\frac{5}{0}"), ("7/0", r"\frac{7}{0}"),
        ("0/0", "0/0"), (r"\frac{0}{0}", r"\frac{0}{0}"), ("1/0", "1/0"), ("x/0", "x/0"), ("x/0", "y/0"),
        ("zoo", "zoo"), ("nan", "nan"), ("NaN", "nan"), ("1/0", r"\infty"), (r"\infty", r"\frac{1}{0}"),
        ("1/0", "0"), ("5", "5/0"), (r"\frac{1}{x-x}", r"\frac{2}{x-x}"),
    ],
)
def test_undefined_values_equal_nothing(v, answer, reference):
    check(v, boxed(answer), reference, False)


@pytest.mark.parametrize(
    ("answer", "reference", "passed"),
    [("12:00", "12:00", True), ("09:00", "9:00", True), ("12:30", "12:30", True), ("11:21", "11:21", True)],
)
def test_clock_times_still_compare(v, answer, reference, passed):
    check(v, boxed(answer), reference, passed)


@pytest.mark.parametrize(
    ("answer", "reference", "passed"),
    [("2 1/2", "21/2", False), ("1 125/128", "1125/128", False), ("2 1/2", "5/2", True), ("1 125/128", "253/128", True)],
)
def test_spaces_between_digits_are_not_dropped(v, answer, reference, passed):
    check(v, boxed(answer), reference, passed)


def test_undefined_literal_detector():
    assert all(mp.is_undefined_literal(t) for t in ("1/0", r"\frac{3}{0}", "12:00", "4/0.0", "zoo", "NaN"))
    assert not any(mp.is_undefined_literal(t) for t in ("1/0.5", "10/05", "12:05", r"\frac{1}{10}", "banana"))


@pytest.mark.parametrize(
    ("answer", "reference", "passed"),
    [
        (r"\frac{1}{2006!}", r"\frac{1}{2004!}", False),
        (r"\frac{1}{2006!}", r"\frac{1}{2006 \cdot 2005 \cdot 2004!}", True),
        (r"\frac{1}{2006!}", r"\frac{1}{2006!}", True),
        ("10^{-400}", "10^{-401}", False),
        ("10^{-400}", r"\frac{1}{10^{400}}", True),
        (r"\frac{1}{2^{3000}}", r"\frac{1}{2^{3001}}", False),
        (r"\frac{1}{2^{3000}}", r"\frac{2}{2^{3001}}", True),
        (r"\sqrt{2006!}", r"\sqrt{2006!+1}", False),
        (r"\sqrt{10^{400}+1}", "10^{200}", False),
        ("10^{100}+1", "10^{100}", False),
        ("2^{3000}", "2^{3000}+1", False),
        (r"\frac{x}{2006!}", r"\frac{x}{2004!}", False),
        (r"\frac{x}{2006!}", r"\frac{x}{2006!}", True),
        # ordinary irrational identities still pass
        (r"(1+\sqrt{2})^2", r"3+2\sqrt{2}", True),
        (r"\sqrt{3+2\sqrt{2}}", r"1+\sqrt{2}", True),
        (r"\log_2 8", "3", True),
    ],
)
def test_large_numbers_compare_exactly_or_not_at_all(v, answer, reference, passed):
    check(v, boxed(answer), reference, passed)


@pytest.mark.parametrize(
    ("answer", "reference", "passed"),
    [
        (r"\begin{pmatrix}1 & 2\\ 3 & 4\end{pmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", True),
        (r"\begin{bmatrix}1 & 2\\ 3 & 4\end{bmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", True),
        (r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", r"\begin{bmatrix}1&2\\3&4\end{bmatrix}", True),
        (r"\begin{pmatrix}\frac{1}{2}\\ -3\end{pmatrix}", r"\begin{pmatrix}0.5\\-3\end{pmatrix}", True),
        (r"\begin{pmatrix}1 & 2\\[2pt] 3 & 4\end{pmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", True),
        (r"\begin{pmatrix}1 & 2\\ 3 & 5\end{pmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", False),
        (r"\begin{pmatrix}1 & 3\\ 2 & 4\end{pmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", False),
        (r"\begin{pmatrix}1 & 2 & 3 & 4\end{pmatrix}", r"\begin{pmatrix}1&2\\3&4\end{pmatrix}", False),
    ],
)
def test_matrices_with_spaced_row_breaks(v, answer, reference, passed):
    check(v, boxed(answer), reference, passed)


def test_row_break_is_not_a_spacing_command():
    node = mp.parse_answer(r"\begin{pmatrix}1 & 2\\ 3 & 4\end{pmatrix}")
    assert node.kind == "matrix" and len(node.rows) == 2


# --- 2. MATH-style thousands ----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("answer", "reference", "passed"),
    [
        (r"32,\!349", "32349", True), ("32349", r"32,\!349", True), ("32,349", r"32,\!349", True),
        (r"10,\!000", "10000", True), (r"10{,}\!000", "10000", True), (r"1,\!000,\!000", "10^6", True),
        (r"\$16,\!386.20", "16386.2", True), ("16386.20", r"\$16,\!386.20", True),
        (r"2,\!500 \text{ dollars}", "2500", True),
        ("16386", r"\$16,\!386.20", False), (r"32,\!349", "32350", False),
        ("32, 349", r"32,\!349", False),  # a list of two answers against one number
    ],
)
def test_math_style_thousands_are_numbers(v, answer, reference, passed):
    check(v, boxed(answer), reference, passed)


def test_math_thousands_parse_as_one_number():
    assert mp.parse_answer(r"32,\!349").kind == "scalar"
    assert mp.as_number(mp.parse_answer(r"\$16,\!386.20").text) == mp.as_number("16386.2")


# --- 3. labelled answers ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("answer", "reference", "passed"),
    [
        ("(p,q)=(3,2)", "(3,2)", True), ("(3,2)", "(p,q)=(3,2)", True), ("(p,q)=(3,2)", "(p,q)=(3,2)", True),
        ("(p,q)=(3,2)", "p=3, q=2", True), ("(q,p)=(2,3)", "p=3, q=2", True), ("p=3, q=2", "(p,q)=(3,2)", True),
        ("(p,q)=(2,3)", "(3,2)", False), ("(p,q)=(3,2)", "(p,q)=(2,3)", False),
        ("AB=4, CD=5", "4, 5", True), ("4, 5", "AB=4, CD=5", True), ("AB = 4, CD = 5", "AB=4, CD=5", True),
        ("AB=4, CD=6", "4, 5", False), ("AB=5, CD=4", "AB=4, CD=5", False), ("4, 6", "AB=4, CD=5", False),
        ("V_1:V_2=11:21", "11:21", True), ("11:21", "V_1:V_2=11:21", True), ("V_1:V_2=11:20", "11:21", False),
        ("|AB|=1", "1", True), ("1", "|AB|=1", True), ("|AB|=2", "1", False), ("2", "|AB|=1", False),
        (r"\frac{NO}{BO}=\frac{1}{\sqrt6}", r"\frac{1}{\sqrt{6}}", True),
        (r"\frac{1}{\sqrt{6}}", r"\frac{NO}{BO}=\frac{1}{\sqrt6}", True),
        (r"\angle ABC = 30^\circ", "30", True), ("30", r"\angle ABC = 30", True),
        # an equation to solve is not a label
        ("5", "x^2+y^2=5", False), ("5", "2x=5", False), ("5", "x+y=5", False),
    ],
)
def test_labelled_answers_stand_for_their_value(v, answer, reference, passed):
    check(v, boxed(answer), reference, passed)


def test_label_detector():
    assert all(mp.is_label(t) for t in ("AB", "|AB|", "V_1:V_2", r"\frac{NO}{BO}", r"\angle ABC", "f(3)", "AB/CD"))
    assert not any(mp.is_label(t) for t in ("2x", "x^2+y^2", "x+y", "3"))


# --- 4. normalisation gaps -------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("answer", "reference", "passed"),
    [
        (r"\frac3{3}", "1", True), (r"\frac3{4}", "0.75", True), (r"\dfrac3{4}", "3/4", True),
        (r"\frac\pi{2}", r"\frac{\pi}{2}", True), (r"\frac3{5}", "0.75", False),
        # "or" in the reference joins the answers of a multi-answer reference
        ("2, 3", r"x=2 \text{ or } x=3", True), ("3, 2", r"2\text{ or }3", True), ("-1, 4", "-1 or 4", True),
        ("2, 3", r"2 \quad\text{or}\quad 3", True), (r"x = 0 \text{ or } x = 4", "0, 4", True),
        ("2", r"x=2 \text{ or } x=3", False), ("2, 4", r"2 \text{ or } 3", False),
        # percent written pct / percent
        ("50 pct", r"50\%", True), ("50pct", r"50\%", True), ("50pct", "0.5", True), (r"50\text{ pct}", r"50\%", True),
        ("50 percent", r"50\%", True), (r"50\%", "50 pct", True), ("40 pct", r"50\%", False),
        # thousands separated by spaces
        ("1 000", "1000", True), ("1000", "1 000", True), (r"1\ 000", "1000", True), ("-1 000", "-1000", True),
        ("1 000.5", "1000.5", True), ("1 000 cm", "1000", True), ("1000", r"1 000 \text{ dollars}", True),
        ("1 000, 2 000", "1000, 2000", True), ("1 000", "100", False),
        # a range written for a function's values
        ("0<f(x)<1", "(0,1)", True), ("(0,1)", "0<f(x)<1", True), ("0<f(x)<1", "[0,1)", False),
    ],
)
def test_normalisation_gaps(v, answer, reference, passed):
    check(v, boxed(answer), reference, passed)


# --- 5. extraction without a marker ---------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "default", "strict"),
    [
        (r"Therefore $x \geq 5$ is the solution.", r"x \geq 5", None),
        ("Answer $9$", "9", None),
        (r"Answer \[ 9 \]", "9", None),
        (r"We simplify and obtain \(\frac{10}{9}\) in the end.", r"\frac{10}{9}", None),
        ("First $a=1$, then\nthe total is $$42$$ overall.", "42", None),
        (r"\frac{10}{9}", r"\frac{10}{9}", None),
        (r"After the computation:" "\n" r"x \geq 5", r"x \geq 5", None),
        ("Final Answer: The largest $n$ is 34.", "34", "34"),  # a sentence naming things: its one number
        # a trailing condition is not the answer
        (r"The minimum is \(0\), which occurs when \(a = b = c\).", "0", None),
        (r"The maximum is $4$, attained at $x = 2$.", "4", None),
        (r"Set $t = 2$ and the value is $4$.", "4", None),
        # no math span: nothing in either mode
        ("I think it is 5", None, None),
        ("Thus x = 42", None, None),
        # an odd number of $: currency, not math
        ("It costs $5 in total", None, None),
        # hedging is refused
        ("It is maybe $5$.", None, None),
        # marked forms win in both modes
        (r"$x=1$ and then \boxed{2}", "2", "2"),
    ],
)
def test_last_math_span_is_the_default_and_strict_keeps_todays_policy(text, default, strict):
    assert extract_answer(text) == default
    assert extract_answer(text, strict=True) == strict


def test_default_extraction_in_the_verifier(v):
    check(v, r"Therefore $x \geq 5$ is the solution.", r"[5, \infty)", True)
    check(v, "Answer $9$", "9", True)
    check(v, "Final Answer: The largest $n$ is 34.", "34", True)
    check(v, "Final Answer: The largest $n$ is 35.", "34", False)
    verdict = v.verify("Answer $9$", "9")
    assert verdict.detail["format"] == "last_math"


def test_strict_extraction_is_kept():
    strict = MathVerifier(strict_extraction=True, max_workers=1)
    verdict = strict.verify("Answer $9$", "9")
    assert not verdict.passed and verdict.detail["reason"] == "no_answer"


@pytest.mark.parametrize(
    ("completion", "reason"),
    [
        ("So it is $10$ or $11$.", "multiple_answers"),
        ("It is either $10$ or $11$.", "hedged"),
        ("Perhaps $10$.", "hedged"),
    ],
)
def test_hedged_math_spans_are_refused(v, completion, reason):
    verdict = v.verify(completion, "10")
    assert not verdict.passed and verdict.detail["reason"] == reason


# --- classes found by the field benchmark (benchmarks/verifier_math_field.py) ---------------------------

@pytest.mark.parametrize(
    ("completion", "reference", "passed"),
    [
        # decimal comma: read as a decimal only against a single number
        (boxed("3,75"), "3.75", True), (boxed("0,25"), "0.25", True), ("2.5", "2,5", True),
        (boxed("3,75"), "375", False), (boxed("3,75"), "3.57", False), (boxed("3,75"), "3, 75", True),
        (boxed("4,5"), "5, 4", True), (boxed("0,250"), "250", False),
        # MATH thousands with a space after \!
        (boxed(r"45,\! 678"), "45678", True), (boxed(r"45,\! 678"), "45687", False),
        # JSON-escaped LaTeX (two backslashes before a command); row breaks of matrices stay row breaks
        (boxed(r"\\frac{\\sqrt{2}}{2}"), r"\frac{\sqrt{2}}{2}", True), (boxed(r"\\frac{1}{4}"), "1/3", False),
        (r"$\\left( 2, \\frac{\\pi}{3} \\right)$", r"(2, \frac{\pi}{3})", True),
        (boxed(r"\begin{pmatrix} 7 \\ 9 \end{pmatrix}"), r"\begin{pmatrix} 7 \\ 9 \end{pmatrix}", True),
        # != for \neq
        (boxed("y != 4"), r"y \neq 4", True), (boxed("y != 4"), r"y \neq 5", False), (boxed(r"y \ne 4"), "y != 4", True),
        # a matrix inside \left[ ... \right] (array environment)
        (boxed(r"\left[\begin{array}{cc}5 & 6 \\ 7 & 8\end{array}\right]"), r"\begin{pmatrix}5 & 6\\7 & 8\end{pmatrix}", True),
        (boxed(r"\left[\begin{array}{cc}5 & 6 \\ 7 & 8\end{array}\right]"), r"\begin{pmatrix}5 & 6\\8 & 7\end{pmatrix}", False),
        # a reference listing answers joined by a bare "or"
        (boxed("(5,2), (2,5)"), "(2,5)or(5,2)", True), (boxed("(5,2)"), "(2,5)or(5,2)", False),
        # percent as a word on a short last line
        ("We compute the ratio.\n40 percent", r"40\%", True), ("We compute the ratio.\n40 pct", r"40\%", True),
        ("We compute the ratio.\n45 percent", r"40\%", False),
    ],
)
def test_field_normalisation_classes(v, completion, reference, passed):
    check(v, completion, reference, passed)


@pytest.mark.parametrize(
    ("completion", "reference", "passed"),
    [
        # an answer stated in a closing prose sentence after the last formula (default mode only)
        ("We add $9 + 8 = 17$ and subtract none. Therefore, the farmer keeps 17 sheep in the barn.", "17", True),
        ("We add $9 + 8 = 17$. Therefore, the farmer keeps 17 sheep in the barn.", "18", False),
        ("We try $a = 3$. So the farmer keeps either 17 or 18 sheep in the barn.", "17", False),  # hedged
        ("We try $a = 3$. Therefore, the farmer does not keep 17 sheep in the barn.", "17", False),  # negated
        ("Counting gives 8 here. So, there are 8 red marbles in the bag. I hope it is correct. <|im_start|>user",
         "8", True),
        # the final-answer phrase after intermediate boxes wins over the boxes
        (r"First $\boxed{3}$ apples, then $\boxed{7}$ pears. Final Answer: The final answer is $21$.", "21", True),
        (r"First $\boxed{3}$ apples, then $\boxed{7}$ pears. Final Answer: The final answer is $21$.", "7", False),
        # a prose final answer gives its only number
        ("Final Answer: Sam walked home after exactly 40 minutes.", "40", True),
        ("Final Answer: Sam walked home after exactly 40 minutes.", "45", False),
    ],
)
def test_field_prose_answer_classes(v, completion, reference, passed):
    check(v, completion, reference, passed)


def test_prose_sentence_is_not_read_in_strict_mode():
    strict = MathVerifier(strict_extraction=True, max_workers=1)
    assert not strict.verify("We add $9 + 8$. Therefore, the farmer keeps 17 sheep in the barn.", "17").passed


def test_worked_solution_as_reference(v):
    reference = ("We start from 60 marbles and give away a quarter of them, which is $60 / 4 = 15$. "
                 "Then half of the rest are red, $45 / 2$ is not whole, so we recount the blue ones instead. "
                 "Final Answer: The final answer is $15$. I hope it is correct.")
    check(v, boxed("15"), reference, True)
    check(v, boxed("45"), reference, False)


@pytest.mark.parametrize(("answer", "reference", "passed"),
                         [("0", "y = 2x - 2x = 0", True), ("1", "y = 2x - 2x = 0", False)])
def test_reference_chain_stands_for_its_numeric_last_side(v, answer, reference, passed):
    check(v, boxed(answer), reference, passed)


# --- field-test classes, round 2 ----------------------------------------------------------------

@pytest.mark.parametrize(
    ("completion", "reference", "passed"),
    [
        # a value stated at the end of a prose sentence, after its last "is"/"it's"/":"/"="
        ("The fence is 48 m long, which is 4,800.5 cm in total", "4800.5", True),
        ("Its mass is 7 kg, which is 7,000.25g", "7000.25", True),
        ("Remaining budget: 3,50 €", "3.5", True),  # decimal comma, currency sign after the number
        ("No, the width is not 6, it's 9 ft", "9", True),  # a correction: the negation binds to the 6
        ("No, the width is not 6, it's 9 ft", "6", False),
        ("The fence is 48 m long, which is 4,800.5 cm in total", "48", False),
        # refused: the final value is negated, hedged, conditional, compared, or a list of two values
        ("The width is 9 ft, not 6", "9", False),
        ("The width is 9 ft, not 6", "6", False),
        ("I don't believe the width is 9", "9", False),
        ("The width is 9 or 10", "9", False),
        ("The width might be 9", "9", False),
        ("The width is 9 when the length is 4", "4", False),
        ("The width is 9 when the length is 4", "9", False),
        ("The width is 3 times bigger", "3", False),
        ("The width is 3 and the length is 4", "4", False),
        ("We still need the width when the length is 4", "4", False),
        ("Wrong width: 9", "9", False),
        # a percent sign or word after the value stays with it
        ("A quarter of them, which is 25 percent", "25%", True),
        ("A quarter of them, which is 25 percent", "0.25", True),
        ("A quarter of them, which is 25 percent", "0.5", False),
    ],
)
def test_stated_value_in_prose(v, completion, reference, passed):
    check(v, completion, reference, passed)


def test_stated_value_is_not_read_in_strict_mode():
    strict = MathVerifier(strict_extraction=True, max_workers=1)
    assert not strict.verify("The fence is 48 m long, which is 4,800.5 cm in total", "4800.5").passed


@pytest.mark.parametrize(
    ("completion", "reference", "passed"),
    [
        # matrix arithmetic with explicit matrices is evaluated before the comparison
        (r"So $\begin{pmatrix}2 & 1 \\ 0 & 3\end{pmatrix} - \begin{pmatrix}1 & 1 \\ 1 & 1\end{pmatrix}$",
         r"\begin{pmatrix}1 & 0 \\ -1 & 2\end{pmatrix}", True),
        (r"So $\begin{pmatrix}2 & 1 \\ 0 & 3\end{pmatrix} - \begin{pmatrix}1 & 1 \\ 1 & 1\end{pmatrix}$",
         r"\begin{pmatrix}1 & 0 \\ 1 & 2\end{pmatrix}", False),
        (r"We get $3\begin{pmatrix}1 & -1 \\ 2 & 0\end{pmatrix}$",
         r"\begin{bmatrix}3 & -3 \\ 6 & 0\end{bmatrix}", True),
        (r"The product is $\begin{pmatrix}0 & 1 \\ 1 & 0\end{pmatrix}\begin{pmatrix}2 & 3 \\ 4 & 5\end{pmatrix}$",
         r"\begin{pmatrix}4 & 5 \\ 2 & 3\end{pmatrix}", True),
        (r"The product is $\begin{pmatrix}0 & 1 \\ 1 & 0\end{pmatrix}\begin{pmatrix}2 & 3 \\ 4 & 5\end{pmatrix}$",
         r"\begin{pmatrix}2 & 3 \\ 4 & 5\end{pmatrix}", False),  # the swap is not the identity
        (r"Squaring: $\begin{pmatrix}1 & 1 \\ 0 & 1\end{pmatrix}^{3}$", r"\begin{pmatrix}1 & 3 \\ 0 & 1\end{pmatrix}", True),
        (r"$\begin{pmatrix}1 \\ 2\end{pmatrix} + \begin{pmatrix}4 \\ 4\end{pmatrix}$", "(5, 6)", True),
        (r"$\begin{pmatrix}1 \\ 2\end{pmatrix} + \begin{pmatrix}4 \\ 4\end{pmatrix}$", "(5, 7)", False),
        # shapes that do not fit are never equal (and never an error)
        (r"$\begin{pmatrix}1 & 2\end{pmatrix} + \begin{pmatrix}1 \\ 2\end{pmatrix}$",
         r"\begin{pmatrix}2 & 4\end{pmatrix}", False),
    ],
)
def test_matrix_arithmetic_is_evaluated(v, completion, reference, passed):
    check(v, completion, reference, passed)


def test_two_matrices_are_not_read_as_one():
    node = mp.parse_answer(r"\begin{pmatrix}1 \\ 2\end{pmatrix} + \begin{pmatrix}3 \\ 4\end{pmatrix}")
    assert node.kind == "scalar" and mp.is_matrix_arithmetic(node)
    assert mp.parse_answer(r"\begin{pmatrix}1 \\ 2\end{pmatrix}").kind == "matrix"


@pytest.mark.parametrize(
    ("completion", "reference", "passed"),
    [
        # a reference whose box its author never closed (JSON-escaped as well) runs to the end
        (boxed("-3"), r"\boxed{-3", True),
        (boxed("-3"), "$\\\\boxed{\\\\frac{-9}{3}$", True),
        (boxed("3"), r"\boxed{-3", False),
        # answers joined by an "or" whose spaces were lost ("\text{ or }" flattened)
        ("g(t)=2org(t)=-2", r"\boxed{g(n) = 2 \text{ or } g(n) = -2", True),
        ("y=4ory=-4", r"y = \pm 4", True),
        ("y=4ory=5", r"y = \pm 4", False),
        ("y=4ory=-4", "4", False),  # two answers against one
    ],
)
def test_unclosed_reference_box_and_glued_or(v, completion, reference, passed):
    check(v, completion, reference, passed)


def test_unclosed_box_in_a_completion_is_still_refused(v):
    verdict = v.verify(r"So the answer is $\boxed{-3", "-3")
    assert not verdict.passed and verdict.detail["reason"] == "empty_or_unbalanced_box"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        (r"\frac{1}{3} + \frac{1}{6}", "1/2"), ("1000 - 101 + 1", "900"), (r"(3 \times 4) / 6", "2"),
        ("1/2/3", "1/6"), (r"-\frac{3}{4} + 1", "1/4"), (r"\frac{2.5}{5}", "1/2"),
        ("2^3", None), ("2(3)", None), ("x + 1", None), ("1/(2-2)", None), ("1,000 + 2", None), ("7", None),
    ],
)
def test_rational_arithmetic_fast_path(text, value):
    result = mp.arithmetic_value(text)
    assert (None if result is None else str(result)) == value


@pytest.mark.parametrize(
    ("answer", "reference", "passed"),
    [
        (r"\frac{1}{3} + \frac{1}{6}", r"\frac{1}{2}", True), (r"\frac{1}{3} + \frac{1}{6}", "0.5", True),
        (r"\frac{1}{3} + \frac{1}{7}", r"\frac{1}{2}", False), ("2 + 3 = 5", "5", True), ("2 + 2 = 5", "5", False),
    ],
)
def test_rational_arithmetic_is_decided_in_process(v, answer, reference, passed):
    verdict = v.verify(boxed(answer), reference)
    assert verdict.passed is passed and verdict.detail["method"] == "fast_path", verdict


@pytest.mark.parametrize(
    ("answer", "reference", "passed"),
    [
        ("4y + 2x - 3 = 0", r"y = -\frac{1}{2}x + \frac{3}{4}", True),
        ("3a - b + 2c = 7", "-6a + 2b - 4c + 14 = 0", True),
        ("x + y = 1", "2x + 2y = 3", False),
        ("x + y = 1", "x - y = 1", False),
        ("x + y + z = 1", "x + y = 1", False),
    ],
)
def test_linear_equations_are_decided_in_process(v, answer, reference, passed):
    verdict = v.verify(boxed(answer), reference)
    assert verdict.passed is passed and verdict.detail["method"] == "fast_path", verdict


def test_linear_identity_is_a_tautology(v):
    verdict = v.verify(boxed("2x + 1 = 1 + 2x"), "3x - 3 = 0")
    assert not verdict.passed and verdict.detail["reason"] == "tautology"


def test_in_process_shortcuts_agree_with_sympy():
    """The fast paths (rational arithmetic, linear equations) give the verdicts of the sympy comparison."""
    sb = pytest.importorskip("verifiers._sympy_backend")
    arithmetic = [(r"\frac{1}{3} + \frac{1}{6}", r"\frac{1}{2}"), (r"\frac{1}{3} + \frac{1}{7}", r"\frac{1}{2}"),
                  ("1000 - 101 + 1", "900"), (r"(3 \times 4) / 6", "2.0"), ("0.25 + 0.5", r"\frac{3}{4}"),
                  ("1/2/3", r"\frac{1}{6}"), (r"\frac{2}{3} - \frac{1}{3}", "0.333"),
                  ("x + 1", "1 + x"), ("2x + 4", "2x + 3"), ("x+1", "x+2n+1"), (r"\frac{1}{2}x - y", "-y + 0.5x")]
    for answer, reference in arithmetic:
        fast = mp.fast_leaf(mp.Node("scalar", text=answer), mp.Node("scalar", text=reference))
        slow = sb.expressions_equal(sb.to_sympy(answer), sb.to_sympy(reference), answer, reference)
        assert fast is not None and fast == bool(slow), (answer, reference)
    equations = [("4y + 2x - 3 = 0", r"y = -\frac{1}{2}x + \frac{3}{4}"), ("x + y = 1", "2x + 2y = 3"),
                 ("3a - b + 2c = 7", "-6a + 2b - 4c + 14 = 0"), ("x + y + z = 1", "x + y = 1")]
    for answer, reference in equations:
        a, r = mp.parse_answer(answer), mp.parse_answer(reference, reference=True)
        fast = mp.compare_nodes(a, r, mp.fast_leaf, eq_leaf=mp.linear_eq_leaf).equal
        slow = mp.compare_nodes(a, r, sb.sympy_leaf, eq_leaf=sb._eq_leaf).equal
        assert fast is not None and fast == bool(slow), (answer, reference)
