"""Math answer verifier: strict answer extraction, an exact in-process fast path, sympy behind a hard deadline.

Pipeline of :meth:`MathVerifier.verify`:

1. **Extraction** (:func:`extract_answer`): the last ``\\boxed{}``/``\\fbox{}``, else the last
   ``<answer>`` tag, else ``#### N``, else "the answer is X" / "final answer: X", else a last line that is
   nothing but a short answer; by default (not ``strict_extraction``) then the last math span
   (``$...$``, ``\\(...\\)``, ``\\[...\\]``) or a last line that is nothing but LaTeX. Several *different*
   boxed (or tagged) answers count as a list of answers, which never equals a single reference (hedging);
   an empty or unbalanced last box gives no answer.
2. **Structure** (``verifiers._math_parse``): the answer and the reference are parsed into tuples, sets,
   lists, intervals, unions, matrices, equations, records (``x=1, y=2``), text, or scalar leaves.
3. **Fast path**: if every leaf that matters is a plain number (integers, thousands separators, decimals,
   fractions, mixed numbers, scientific notation), a multiple-choice letter or words, the comparison is
   decided in-process with exact ``Fraction`` arithmetic (microseconds).
4. **Sympy**: otherwise the two strings go to a worker process (``latex2sympy2_extended`` for LaTeX), which
   is killed when it misses the deadline.
"""

from __future__ import annotations

import functools
import os
import re
from decimal import Decimal
from fractions import Fraction
from typing import Any, Optional

from . import _math_parse as mp
from ._worker import WorkerPool
from .base import SignalSpec, Verdict, Verifier, VerifierTimeout
from .registry import register_verifier

MAX_COMPLETION_CHARS = 100_000
KEEP_TAIL_CHARS = 10_000
MAX_ANSWER_CHARS = 1_000
DEFAULT_MAX_WORKERS = min(2, os.cpu_count() or 1)

_PERCENT_QUESTION = re.compile(
    r"\b(?:what|which)\s+(?:is\s+the\s+)?percent(?:age)?\b|\bhow\s+many\s+percent\b"
    r"|\b(?:as|in)\s+(?:a\s+)?percent(?:age)?\b|\bexpressed\s+as\s+a\s+percent(?:age)?\b"
    r"|\bpercent(?:age)?\s+(?:of|is|was|did|does|do|are|were)\b[^.!?\n]*\?",
    re.I,
)


def extract_answer(text: str, *, fallback_last_number: bool = False, strict: bool = False,
                   question: Optional[str] = None) -> Optional[str]:
    """Extract the final answer from a completion, or ``None``.

    Rules, first that applies wins (the last two only when not ``strict``):

    - ``\\boxed{...}``/``\\fbox{...}`` (nested braces handled). An empty or unbalanced last box gives
      ``None``. Several boxes with different contents are returned joined by ``", "`` (they are then
      compared as a list of answers, so hedging between answers never matches a single reference).
    - ``<answer>...</answer>`` (same rule for several different tags; an empty last tag gives ``None``).
    - ``#### N`` (GSM8K) when ``N`` starts like a number, not a markdown heading; inside the last line too
      ("... 7 meals. #### 7").
    - A marker that ends the solution: a last line ``A: N`` (the GSM8K paper's released solutions) or
      ``... Answer: N`` inside the last line.
    - "the answer is X" (also "the answer (arabic numerals) is X", "the correct option is X"),
      "final answer: X", "**Final Answer** X", "Answer: X" at a line start (the last one; up to the end of
      the sentence; ``$`` and ``**`` stripped). A prose value gives its only number ("Answer: Janet makes
      $18 every day." gives ``18``; numbers the question (``prompt``) gives are left out when one new number
      remains: "Kylar pays $64 for 16 glasses."); "Total = 2 bolts + 1 bolt = 3 bolts" gives its last side.
    - The last non-empty line, only when it is nothing but a short answer (at most 40 characters: a
      number, ``x = 5``, ``(B)``, ``B``, ``**C**``, a number with up to three unit words such as
      "33 eggs.", or a single ``$...$``/``\\[...\\]`` math span).
    - Not ``strict``: a closing prose sentence after the last math span that starts "Therefore/Thus/So/Hence"
      and holds exactly one number and no hedge or negation ("Therefore, there are 12 such sequences.").
    - Not ``strict``: a last prose sentence that states a value at its end, after its last "is"/"it's"/":"
      ("... which is 1,000.99 m²", "Total: 3,50 €", "No, it's not 10, it's 12"): one number in that clause,
      followed only by a unit, a currency sign or a short noun; earlier numbers must be negated ("not 10")
      or restated ("10, which is ..."); a hedge, a belief ("I think"), another negation, a condition or a
      comparison refuses.
    - A "final answer" phrase after the last box that states a value by itself ("The final answer is
      $10,455$.") wins over the boxes; a remark that restates a value in prose ("the answer is 221 in another
      convention") is one more final answer beside the box (equal values merge, different ones are hedging);
      a remark without one number ("the answer is considered as 220, written 0220") leaves the box;
      chat-template tokens, "I hope it is correct." and "I hope this helps!" at the end are ignored.
    - Not ``strict``: a finished last sentence "It is 4." (a pronoun and "is" make it prose); a last sentence
      naming exactly one choice as "(D)", "**D**" or "option D" ("I think it's (D)."); a last line that computes
      its value ("Total = 500 + 800 + 130 = 1430", "200 - 100 = 100 pounds": two or more numbers and an
      operator before the last ``=``, at most a unit after it).
    - Not ``strict``: the last math span of the text (``$...$``, ``$$...$$``, ``\\(...\\)``, ``\\[...\\]``;
      ``$`` is ignored when it occurs an odd number of times, as a currency sign). Refused when its line
      hedges before it ("maybe $5$"), and when the text after it takes it back ("However, I made an error",
      "Wait", "let me recheck": reason ``retracted``); several spans on that line joined by "or" are several
      answers.
    - Not ``strict``: the last non-empty line when it is nothing but LaTeX (``\\frac{10}{9}``, at most 80
      characters, no words outside ``\\text{}`` but "and"/"or" between answers, also glued: ``x=1orx=-1``).
    - With ``fallback_last_number``, the last number in the text.

    Strict mode is the policy of the marked forms only; it finds no answer in "Therefore $x \\geq 5$ is
    the solution." or "Answer $9$", which the default reads as ``x \\geq 5`` and ``9``. The default may
    take an intermediate value of an unfinished completion (its last math span) as its answer; pass
    ``finish_reason="length"`` to :meth:`MathVerifier.verify` for completions cut at the token limit.
    """
    return mp.extract(text, fallback_last_number, strict, question=question).answer


def as_number(text: str) -> Optional[Fraction]:
    """Exact value of a plain number string, or ``None`` (see ``verifiers._math_parse.as_number``)."""
    return mp.as_number(text)


def percent_context(prompt: Optional[str]) -> bool:
    """Whether the question asks for a percentage ("what percent", "as a percentage", ...)."""
    return bool(prompt) and bool(_PERCENT_QUESTION.search(prompt))


def _reference_text(reference: Any) -> str:
    if isinstance(reference, str):
        if mp._BOX.search(reference):
            boxed = mp.extract(reference)
            if boxed.answer is not None:
                return boxed.answer
            unclosed = mp.unclosed_box(reference)
            if unclosed:  # a reference is trusted: a box its author left open runs to the end
                return unclosed
        if len(reference) > 200 and mp._PHRASE.search(reference):  # a worked solution as the reference
            found = mp.extract(reference)
            if found.answer is not None and not found.multiple:
                return found.answer
        if "####" in reference:
            tail = reference.rsplit("####", 1)[1].strip()
            if tail:
                return tail
        return reference
    if isinstance(reference, bool) or not isinstance(reference, (int, float, Fraction, Decimal)):
        raise TypeError(f"reference must be str, int, float, Fraction or Decimal (or a non-empty list or tuple "
                        f"of them), got {type(reference).__name__}")
    if isinstance(reference, float):
        return repr(reference)  # the shortest decimal that round-trips; read at its printed precision
    if isinstance(reference, Fraction):
        if reference.denominator == 1:
            return str(reference.numerator)
        return f"{reference.numerator}/{reference.denominator}"
    return str(reference)


def _references(reference: Any) -> list:
    """A list or tuple of accepted answers, or one reference as a list of one."""
    if isinstance(reference, (list, tuple)):
        if not reference:
            raise TypeError("reference must not be an empty list")
        return list(reference)
    return [reference]


def _merge_equal_values(values: tuple, context: bool) -> Optional[str]:
    """The last of several final answers when all of them have the same value (``\\boxed{0.5}``, i.e.
    ``\\boxed{\\frac{1}{2}}``), decided in-process; ``None`` when they differ or only sympy could tell."""
    first = _parse_reference(values[0])
    for value in values[1:]:
        node = _parse_answer(value)
        outcome = mp.compare_nodes(node, first, lambda a, r: mp.fast_leaf(a, r, context), eq_leaf=mp.linear_eq_leaf)
        if outcome.equal is not True:
            return None
    return values[-1]


@functools.lru_cache(maxsize=4096)
def _parse_reference(text: str) -> mp.Node:
    return mp.parse_answer(text, reference=True)


@functools.lru_cache(maxsize=4096)
def _parse_answer(text: str) -> mp.Node:
    return mp.parse_answer(text)


def _fast_class(node: mp.Node) -> str:
    return mp.fast_leaf_class(node) or re.sub(r"\s+", "", node.text)


_SYMPY_POOL = WorkerPool("verifiers._sympy_backend")


@register_verifier("math")
class MathVerifier(Verifier):
    """Checks the final answer of a math completion against a reference answer.

    Equivalences understood: integers with thousands separators, decimals and fractions compared as exact
    rationals (``0.5 == 1/2``, ``0.333 != 1/3``; for a decimal *reference* see below), mixed numbers
    (``2 1/2``, ``2\\frac{1}{2}``), scientific
    notation (``3 \\times 10^{5}``), percent (see below), radicals, ``\\pi`` and ``e``, symbolic expressions
    (sympy: ``simplify(a - b) == 0`` or agreement at deterministic points), equations (``x = 5`` equals
    ``5``; ``y = 2x + 1`` equals ``2x - y + 1 = 0``), ordered tuples, unordered sets and lists of answers,
    intervals and unions (open and closed ends matter), matrices, degree signs and units after a number
    (``30^\\circ``, ``5\\text{ cm}``), multiple-choice letters (``(B)``, ``B``, ``b``, ``\\text{B}``, ``(B) 42``,
    ``B. 42``, ``B is correct``; never a letter inside a formula: ``B + 3``, ``E*2``, ``C \\cdot 5``) and text
    answers (case-insensitive; a yes/no reference matches an answer starting with that word), MATH-style
    thousands (``32,\\!349``), spaced thousands (``1 000``), labelled answers (``AB = 4``, ``|AB| = 1``,
    ``V_1:V_2 = 11:21``, ``(p, q) = (3, 2)``, on either side), clock times (``12:00``), matrix arithmetic
    with explicit matrices (``A + B``, ``2A``, ``AB``, ``A^{3}`` against the matrix they evaluate to).
    Rational arithmetic on plain numbers (``\\frac{1}{3} + \\frac{1}{6}``), linear expressions (``x + 1``) and
    linear equations (``2x + 4y - 3 = 0``) are decided in-process, with the verdicts sympy would give.

    Never equal: undefined values (a division by zero such as ``1/0`` or ``12:00`` read as a ratio, sympy's
    ``zoo`` and ``nan``), themselves included. Large factorials and powers are compared exactly (rationals)
    or at a precision that covers their size; they never pass by rounding.

    Decimal-reference rule: a decimal reference stands for the values that print as it: within half a unit of
    its last digit (a whole unit when it has 15+ significant digits, the ``repr`` of a binary float). It accepts
    an irrational answer there (``\\pi`` for ``3.14``, ``\\sqrt{17}`` for ``math.sqrt(17)``) and a rational answer
    with no finite decimal form when the reference has at least 6 significant digits (``1/3`` for ``0.333333``
    and for the float ``1/3``, ``10/3`` for ``3.33333333``); shorter references are exact against rationals
    (``22/7`` is not ``3.14``, ``1/3`` is not ``0.333``), and so is any answer with a finite decimal form
    (``49/20`` is not ``2.5``). A decimal *answer* to a rational reference is exact (``0.333`` is not ``1/3``).

    Percent rule: ``%`` is a unit mark worth 1/100. An answer ``50%`` matches a reference ``50`` and a
    reference ``0.5``; a bare answer matches a percent reference ``50%`` when it is ``50`` or ``0.5``; when
    the prompt asks for a percentage, a bare reference ``50`` is read as ``50%``.

    Refused (score 0, ``detail["reason"]``): no answer (``no_answer``), an empty or unbalanced box
    (``empty_or_unbalanced_box``), an unmarked math span after a hedge such as "maybe $5$" (``hedged``) or
    taken back after it (``retracted``), several different answers against one reference (``multiple_answers``;
    several boxes of the same value, ``\\boxed{0.5}``, i.e. ``\\boxed{\\frac{1}{2}}``, are one answer when the
    fast path can tell), a cut-off completion (``finish_reason="length"``) whose last answer tag is still open
    (``unclosed_answer_tag``),
    an identity such as ``2=2`` or ``x=x`` (``tautology``), an answer over ``MAX_ANSWER_CHARS`` characters
    (``answer_too_long``), brackets nested deeper than 40 (``too_deep``), a literal power tower or factorial
    with more than 10,000 digits (``too_large``).

    Scores are 1.0 or 0.0 and ``passed`` is their boolean. ``answer_class`` is the reference's canonical
    form for correct answers and the answer's own otherwise, so equivalent answers share a class.
    ``detail`` holds ``extracted``, ``format`` (the extraction rule), ``method`` (``fast_path`` or
    ``sympy``), ``reason``, ``multiple`` (several different final answers) and ``truncated`` (the
    completion exceeded ``MAX_COMPLETION_CHARS`` characters and only its last ``KEEP_TAIL_CHARS`` were read).

    Args:
        timeout_s: deadline in seconds for one sympy comparison (default 2.0). The worker is killed when
            it misses it, so :meth:`verify` returns in about ``timeout_s`` from any thread (a fresh worker
            also pays its start-up, about a second, outside the deadline).
        fallback_last_number: use the last number in the text when no other rule matches.
        strict_extraction: only the marked forms and a short last line (see :func:`extract_answer`); by
            default an unmarked completion also gives its last math span.
        max_workers: sympy worker processes (and threads) used by :meth:`verify_batch`; default
            ``min(2, cpu_count)``. Fast-path items never leave the calling thread.

    References may be ``str`` (a ``\\boxed{}`` or a ``#### N`` inside is extracted; a box the reference never
    closes runs to its end), ``int``, ``float`` (read at its printed precision, see above),
    ``Fraction`` or ``Decimal``, or a non-empty ``list``/``tuple`` of them (accepted answers: any one may match;
    the verdict is the first that passes, else the last); other types, an empty list and non-``str``
    completions give an error verdict (``TypeError``), never an exception.

    Truncated completions: :meth:`verify` takes ``finish_reason``; with ``"length"`` (the completion hit the
    token limit) only marked answers count (strict extraction): a closed box or answer tag anywhere, any other
    marker ("The answer is 12", ``#### 12``, a short last line) only before the last line, which may be cut
    mid-number; :meth:`verify_batch` reads it from a dict item's ``finish_reason``. Without it, the default
    mode may read an unfinished completion's last math span (the field mostly grades truncated text like any
    other: verl and open-r1 read the last box whatever the finish reason; DAPO masks or penalises overlong
    samples in the loss instead, as rlvr's ``overlong_mask`` does).
    """

    signal = SignalSpec(kind="binary", deterministic=True, source="external", cost="cheap")

    def __init__(self, *, timeout_s: float = 2.0, fallback_last_number: bool = False,
                 strict_extraction: bool = False, max_workers: Optional[int] = None) -> None:
        super().__init__(max_workers=DEFAULT_MAX_WORKERS if max_workers is None else max_workers)
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        self.timeout_s = timeout_s
        self.fallback_last_number = fallback_last_number
        self.strict_extraction = strict_extraction

    # -- the in-process part ------------------------------------------------------------------------

    def verify(self, completion: str, reference: Any, *, prompt: Optional[str] = None,
               finish_reason: Optional[str] = None) -> Verdict:
        """:meth:`Verifier.verify`, plus ``finish_reason``: ``"length"`` (the completion hit the token limit) reads
        only marked answers (strict extraction): a closed box or answer tag anywhere, any other marker only before
        the last line, which may be cut off mid-number."""
        if finish_reason is None:
            return super().verify(completion, reference, prompt=prompt)
        return self._guarded(functools.partial(self._verify, finish_reason=finish_reason), completion, reference,
                             prompt)

    def verify_batch(self, items) -> list[Verdict]:
        """:meth:`Verifier.verify_batch`; a dict item may also carry ``finish_reason`` (see :meth:`verify`)."""
        cut = {i for i, item in enumerate(items) if isinstance(item, dict) and item.get("finish_reason") == "length"}
        if not cut:
            return super().verify_batch(items)
        rest = [i for i in range(len(items)) if i not in cut]
        verdicts: list[Optional[Verdict]] = [None] * len(items)
        for i, verdict in zip(rest, super().verify_batch([items[i] for i in rest])):
            verdicts[i] = verdict
        for i in sorted(cut):
            item = items[i]
            verdicts[i] = self.verify(item["completion"], item["reference"], prompt=item.get("prompt"),
                                      finish_reason="length")
        return verdicts  # type: ignore[return-value]

    def _prepare(self, completion: Any, reference: Any, prompt: Optional[str], finish_reason: Optional[str] = None):
        """Returns ``(verdict, None)`` when decided in-process, else ``(None, request)`` for the worker."""
        if not isinstance(completion, str):
            raise TypeError(f"completion must be str, got {type(completion).__name__}")
        ref_text = _reference_text(reference)
        detail: dict[str, Any] = {}
        if len(completion) > MAX_COMPLETION_CHARS:
            completion = completion[-KEEP_TAIL_CHARS:]
            detail["truncated"] = True
        if finish_reason == "length":  # cut off: a closed box or tag anywhere, other marked answers before the
            detail["finish_reason"] = "length"  # last line (it may end mid-number: "The answer is 1|2")
            found = mp.extract(completion, self.fallback_last_number, True, question=prompt)
            lowered = completion.lower()
            if found.format == "answer_tag" and lowered.rfind("<answer>") > lowered.rfind("</answer>"):
                found = mp.Extraction(None, "answer_tag", reason="unclosed_answer_tag")  # a later answer, cut
            elif found.format not in ("boxed", "answer_tag"):
                head = completion.rstrip()
                head = head[:head.rfind("\n") + 1] if "\n" in head else ""
                found = mp.extract(head, self.fallback_last_number, True, question=prompt)
        else:
            found = mp.extract(completion, self.fallback_last_number, self.strict_extraction, question=prompt)
        context = percent_context(prompt)
        if found.multiple and found.values:
            merged = _merge_equal_values(found.values, context)
            if merged is not None:  # "\\boxed{0.5}, i.e. \\boxed{\\frac{1}{2}}": one answer written twice
                found = mp.Extraction(merged, found.format)
        detail["format"], detail["extracted"] = found.format, found.answer
        if found.multiple:
            detail["multiple"] = True
        if found.answer is None:
            return Verdict(0.0, False, None, detail={**detail, "reason": found.reason or "no_answer"}), None
        if len(found.answer) > MAX_ANSWER_CHARS:
            return Verdict(0.0, False, None, detail={**detail, "reason": "answer_too_long"}), None
        r_node = _parse_reference(ref_text)
        a_node = _parse_answer(found.answer)
        if a_node.kind == "empty":
            return Verdict(0.0, False, None, detail={**detail, "reason": "empty_answer"}), None
        if a_node.kind == "eq" and mp.linear_identity(a_node):  # "2x + 1 = 1 + 2x" says nothing
            return _verdict(False, None, {**detail, "reason": "tautology"}, method="fast_path"), None
        outcome = mp.compare_nodes(a_node, r_node, lambda a, r: mp.fast_leaf(a, r, context),
                                   eq_leaf=mp.linear_eq_leaf)
        if outcome.equal is not None:
            if outcome.reason:
                detail["reason"] = outcome.reason
            if outcome.reason == "tautology":
                cls = None
            else:
                cls = mp.answer_class(r_node if outcome.equal else a_node, _fast_class)
            return _verdict(outcome.equal, cls, detail, method="fast_path"), None
        guard = mp.too_large(found.answer)
        if guard:
            return Verdict(0.0, False, None, detail={**detail, "reason": guard, "method": "guard"}), None
        request = {"answer": found.answer, "reference": ref_text, "percent_context": context}
        return None, (request, detail)

    def _quick(self, completion: Any, reference: Any, *, prompt: Optional[str]) -> Optional[Verdict]:
        verdict = None
        for ref in _references(reference):  # a list of accepted answers: any one may match
            verdict, _ = self._prepare(completion, ref, prompt)
            if verdict is None or verdict.passed:
                return verdict
        return verdict

    def _verify(self, completion: Any, reference: Any, *, prompt: Optional[str],
                finish_reason: Optional[str] = None) -> Verdict:
        verdict = None
        for ref in _references(reference):  # a list of accepted answers: any one may match
            verdict = self._verify_one(completion, ref, prompt, finish_reason)
            if verdict.passed:
                return verdict
        return verdict

    def _verify_one(self, completion: Any, reference: Any, prompt: Optional[str],
                    finish_reason: Optional[str]) -> Verdict:
        verdict, pending = self._prepare(completion, reference, prompt, finish_reason)
        if verdict is not None:
            return verdict
        request, detail = pending
        try:
            reply = _SYMPY_POOL.call(request, self.timeout_s)
        except TimeoutError:
            raise VerifierTimeout(self.timeout_s, {**detail, "method": "sympy"}) from None
        if "error" in reply:
            raise RuntimeError(f"sympy worker: {reply['error']}")
        if reply.get("reason"):
            detail["reason"] = reply["reason"]
        return _verdict(reply["equal"], reply["answer_class"], detail, method=reply["method"])


def _verdict(equal: bool, answer_class: Optional[str], detail: dict, *, method: str) -> Verdict:
    return Verdict(1.0 if equal else 0.0, bool(equal), answer_class, detail={**detail, "method": method})
