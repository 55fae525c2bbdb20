"""Example rlvr verifier plugin: a numeric answer scored by its relative error (a graded signal).

This is what a user's own verifier looks like: subclass :class:`verifiers.Verifier`, set ``name`` and
``signal``, implement ``_verify`` (it may raise: :meth:`verifiers.Verifier.verify` turns exceptions into
zero-score verdicts with ``error`` set), and expose the class under the entry-point group ``rlvr.verifiers``
in ``pyproject.toml``.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Optional

from verifiers import SignalSpec, Verdict, Verifier, extract_answer
from verifiers.math_verifier import as_number

__all__ = ["ToleranceVerifier"]


class ToleranceVerifier(Verifier):
    """Scores the extracted number by its relative error against a numeric reference.

    ``score`` is 1.0 within ``rel_tol`` (``passed=True``), then falls linearly to 0.0 at ``10 * rel_tol``.
    A completion without a plain-number answer scores 0.0 with ``detail["reason"]`` set.

    Args:
        rel_tol: relative tolerance, a fraction (0.01 = 1 %). Must be > 0 (``ValueError`` otherwise).
        max_workers: threads of :meth:`verify_batch`.
    """

    name = "numeric_tolerance"
    signal = SignalSpec(kind="graded", deterministic=True, source="external", cost="cheap")

    def __init__(self, *, rel_tol: float = 0.01, max_workers: int = 1) -> None:
        super().__init__(max_workers=max_workers)
        if not rel_tol > 0:
            raise ValueError(f"rel_tol must be > 0, got {rel_tol!r}")
        self.rel_tol = Fraction(str(rel_tol))

    def _verify(self, completion: str, reference: Any, *, prompt: Optional[str]) -> Verdict:
        if not isinstance(completion, str):
            raise TypeError(f"completion must be str, got {type(completion).__name__}")
        answer = extract_answer(completion, fallback_last_number=True)
        value = as_number(answer.replace(",", "")) if answer else None
        target = as_number(str(reference))
        if target is None:
            raise ValueError(f"reference {reference!r} is not a number")
        if value is None:
            return Verdict(0.0, False, None, detail={"extracted": answer, "reason": "no_number"})
        error = abs(value - target) / max(abs(target), Fraction(1, 10**12))
        score = 1.0 if error <= self.rel_tol else max(0.0, float(1 - (error - self.rel_tol) / (9 * self.rel_tol)))
        return Verdict(score, error <= self.rel_tol, str(value), detail={"extracted": answer, "rel_error": float(error)})
