"""Math answer verifier: strict answer extraction, exact fast path, sympy behind a hard deadline."""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction
from typing import Any

from ._worker import WorkerPool
from .base import SignalSpec, Verdict, Verifier, VerifierTimeout
from .registry import register_verifier

MAX_COMPLETION_CHARS = 100_000
KEEP_TAIL_CHARS = 10_000
MAX_ANSWER_CHARS = 1_000

# --- extraction -------------------------------------------------------------------------------

_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_ANSWER_TAG = re.compile(r"<answer>(.*?)</answer>", re.S | re.I)
_HASHES = re.compile(r"####[ \t]*([^\n]*)")
_PHRASE = re.compile(r"(?:the\s+(?:final\s+)?answer\s+is|final\s+answer\s*\**\s*(?:is|:))[\s:*]*([^\n]*)", re.I)
_SENTENCE_END = re.compile(r"\.(?:\s|$)")
_LAST_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def _balanced(text: str, start: int) -> str | None:
    """Content from ``start`` up to the ``}`` closing an already-open ``{``; None if unbalanced."""
    depth, i = 1, start
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2  # escaped brace or command: never counts
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return None


def _extract(text: str, fallback_last_number: bool = False) -> tuple[str | None, str | None]:
    """``(answer, format)``; format is the rule that decided, even when it yields no answer."""
    boxes = list(_BOX.finditer(text))
    if boxes:
        content = _balanced(text, boxes[-1].end())
        return (content.strip() or None) if content is not None else None, "boxed"
    tags = _ANSWER_TAG.findall(text)
    if tags:
        return tags[-1].strip() or None, "answer_tag"
    hashes = _HASHES.findall(text)
    if hashes:
        return hashes[-1].strip().rstrip(".").strip() or None, "hashes"
    phrases = _PHRASE.findall(text)
    if phrases:
        value = _SENTENCE_END.split(phrases[-1].strip().strip("*").strip())[0]
        return value.strip().rstrip(".").strip().strip("$").strip() or None, "phrase"
    if fallback_last_number:
        numbers = _LAST_NUMBER.findall(text)
        if numbers:
            return numbers[-1], "last_number"
    return None, None


def extract_answer(text: str, *, fallback_last_number: bool = False) -> str | None:
    """Extract the final answer from a completion, or ``None``.

    Rules, first that applies wins: the last ``\\boxed{...}``/``\\fbox{...}`` (nested braces
    handled; an empty or unbalanced last box gives ``None``); the last ``<answer>...</answer>``
    (stripped; empty gives ``None``); the last ``#### N`` line; the last "the answer is N" /
    "final answer: N" (case-insensitive; trailing period and ``$`` stripped). With
    ``fallback_last_number`` the last number in the text is used when no rule applies.
    """
    return _extract(text, fallback_last_number)[0]


# --- normalisation and the exact fast path ------------------------------------------------------

_LEFT_RIGHT = re.compile(r"\\(?:left|right)(?![a-zA-Z])")
_DELIMS = re.compile(r"\\[()\[\]]")
_SPACING = re.compile(r"\\(?:displaystyle|textstyle)(?![a-zA-Z])|\\[!,;: ]|~")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°")
_PERCENT = re.compile(r"\\?%")
_TEXT = re.compile(r"\\(?:text|textbf|textit|textrm|mbox|mathrm)\s*\{([^{}]*)\}")

_ASSIGNMENT = re.compile(r"[a-zA-Z]\s*=\s*([^=]+)")
_FRAC = re.compile(r"([+-]?)\\[dt]?frac(?:\{\s*([+-]?\d+)\s*\}\{\s*([+-]?\d+)\s*\}|(\d)(\d))")
_SLASH = re.compile(r"([+-]?\d+)\s*/\s*([+-]?\d+)")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")
_DECIMAL = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")

_WORDS = re.compile(r"[a-z]+(?: [a-z]+)*")
_MATH_WORDS = frozenset({"sqrt", "sin", "cos", "tan", "log", "exp", "abs", "inf", "infinity"})


def normalize(text: str) -> str:
    """Strip presentation from an answer string: ``$``, ``\\left``/``\\right``, math delimiters,
    spacing commands, degree signs, ``%`` (a unit mark: ``50%`` equals ``50``, not ``0.5``),
    ``\\text{...}`` units (kept when they are the whole answer), a trailing period, extra spaces."""
    s = text.replace("\\$", "").replace("$", "")
    s = _LEFT_RIGHT.sub("", s)
    s = _DELIMS.sub("", s)
    s = _SPACING.sub("", s).replace("{,}", ",")
    s = _DEGREES.sub("", s)
    s = _PERCENT.sub("", s)
    without_text = _TEXT.sub("", s)
    s = without_text if without_text.strip(" .,;") else _TEXT.sub(r"\1", s)
    return " ".join(s.split()).rstrip(".").strip()


def as_number(text: str) -> Fraction | None:
    """Exact value of a plain number (``-4``, ``1,000``, ``0.5``, ``1/2``, ``\\frac{1}{2}``,
    ``x = 3``), or ``None``. No sympy involved."""
    assignment = _ASSIGNMENT.fullmatch(text)
    s = assignment.group(1).strip() if assignment else text
    try:
        if m := _FRAC.fullmatch(s):
            num, den = (m.group(2), m.group(3)) if m.group(2) is not None else (m.group(4), m.group(5))
            value = Fraction(int(num), int(den))
            return -value if m.group(1) == "-" else value
        if m := _SLASH.fullmatch(s):
            return Fraction(int(m.group(1)), int(m.group(2)))
        if _THOUSANDS.fullmatch(s):
            return Fraction(s.replace(",", ""))
        if _DECIMAL.fullmatch(s):
            return Fraction(s)
    except (ZeroDivisionError, ValueError):
        return None
    return None


def _is_words(text: str) -> bool:
    """Plain words such as ``"no solution"``; sympy would read ``blue`` as ``b*l*u*e``."""
    lowered = text.lower()
    return bool(_WORDS.fullmatch(lowered)) and any(
        len(w) >= 3 and w not in _MATH_WORDS for w in lowered.split()
    )


def _reference_text(reference: Any) -> str:
    if isinstance(reference, str):
        if _BOX.search(reference):
            boxed = extract_answer(reference)
            if boxed is not None:
                return boxed
        return reference
    if isinstance(reference, bool) or not isinstance(reference, (int, float, Fraction, Decimal)):
        raise TypeError(f"reference must be str, int, float or Fraction, got {type(reference).__name__}")
    return repr(reference) if isinstance(reference, float) else str(reference)


# --- the verifier -------------------------------------------------------------------------------

_SYMPY_POOL = WorkerPool("verifiers._sympy_backend")


@register_verifier("math")
class MathVerifier(Verifier):
    """Checks the final answer of a math completion against a reference answer.

    The answer is taken by :func:`extract_answer`. Two plain numbers are compared exactly as
    ``fractions.Fraction`` in-process (microseconds). Anything else goes to a sympy worker
    process (``latex2sympy`` / a locked-down ``parse_expr``): equal when ``simplify(a - b) == 0``
    or, for constants, within 1e-9 relative; tautologies such as ``2=2`` are rejected. The worker
    is killed when it misses the deadline, so ``verify`` returns in about ``timeout_s`` from any
    thread (the first sympy call also pays the worker start-up, about half a second).

    Scores are 1.0 or 0.0 and ``passed`` is their boolean. ``detail`` holds ``extracted``,
    ``format`` (the extraction rule), ``method`` (``fast_path``, ``sympy`` or ``text``) and a
    ``reason`` when the answer was rejected before comparison; ``truncated`` when the completion
    exceeded ``MAX_COMPLETION_CHARS`` characters and only its last ``KEEP_TAIL_CHARS`` were read.

    Args:
        timeout_s: deadline in seconds for the sympy comparison (default 2.0).
        fallback_last_number: use the last number in the text when no strict format matches.
        max_workers: threads for :meth:`verify_batch` (each busy thread gets its own worker).

    References may be ``str`` (a ``\\boxed{}`` inside is extracted), ``int``, ``float``,
    ``Fraction`` or ``Decimal``; other types and non-``str`` completions give an error verdict.
    """

    signal = SignalSpec(kind="binary", deterministic=True, source="external", cost="cheap")

    def __init__(self, *, timeout_s: float = 2.0, fallback_last_number: bool = False,
                 max_workers: int = 1) -> None:
        super().__init__(max_workers=max_workers)
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s!r}")
        self.timeout_s = timeout_s
        self.fallback_last_number = fallback_last_number

    def _verify(self, completion: str, reference: Any, *, prompt: str | None) -> Verdict:
        if not isinstance(completion, str):
            raise TypeError(f"completion must be str, got {type(completion).__name__}")
        ref = normalize(_reference_text(reference))
        detail: dict[str, Any] = {}
        if len(completion) > MAX_COMPLETION_CHARS:
            completion = completion[-KEEP_TAIL_CHARS:]
            detail["truncated"] = True
        extracted, detail["format"] = _extract(completion, self.fallback_last_number)
        detail["extracted"] = extracted
        if extracted is None:
            return Verdict(0.0, False, None, detail={**detail, "reason": "no_answer"})
        if len(extracted) > MAX_ANSWER_CHARS:
            return Verdict(0.0, False, None, detail={**detail, "reason": "answer_too_long"})
        answer = normalize(extracted)
        if not answer:
            return Verdict(0.0, False, None, detail={**detail, "reason": "empty_answer"})

        a_num, r_num = as_number(answer), as_number(ref)
        if a_num is not None and r_num is not None:
            return _verdict(a_num == r_num, str(a_num), detail, method="fast_path")
        if _is_words(answer) or _is_words(ref):
            key = " ".join(answer.lower().split())
            return _verdict(key == " ".join(ref.lower().split()), key, detail, method="text")
        try:
            reply = _SYMPY_POOL.call({"answer": answer, "reference": ref}, self.timeout_s)
        except TimeoutError:
            raise VerifierTimeout(self.timeout_s, {**detail, "method": "sympy"}) from None
        if "error" in reply:
            raise RuntimeError(f"sympy worker: {reply['error']}")
        if reply.get("reason"):
            detail["reason"] = reply["reason"]
        return _verdict(reply["equal"], reply["answer_class"], detail, method=reply["method"])


def _verdict(equal: bool, answer_class: str | None, detail: dict, *, method: str) -> Verdict:
    return Verdict(1.0 if equal else 0.0, bool(equal), answer_class, detail={**detail, "method": method})
