"""Rewards of known truth for the real-run fault injection (`benchmarks/monitor/real_faults.py`).

Each is a plug-in verifier loaded by import path (`benchmarks.monitor.fault_verifiers:AgreeFirst`), the way a user
plugs in their own, and none declares what it is: every one says ``source="external"``. The monitor must find the
closed and spurious ones from the verdicts alone.

- ``AgreeFirst`` [closed]: 1 when a completion's answer equals its group's first completion's answer. It never
  reads the reference (the undeclared self-derived loop of the monitor issue).
- ``MajorityExternal`` [closed]: the built-in ``majority_vote`` (the group's plurality answer), declared external.
- ``EvenAnswer`` [spurious, answer-level]: 1 when the answer's last digit is even, right or wrong; the same answer
  always gets the same score, so no length or format feature can explain it.
- ``NoisyMath`` [open]: the math verifier with 10% of its verdicts flipped (a fixed hash of completion and
  reference picks them): noisy, but its verdicts depend on the reference.
- ``FlakyMath`` [fault]: the math verifier, raising on 20% of the items (a fixed hash picks them).
- ``OtherNumber`` [fault, Youden's J = -1]: 1 for any number except the reference's: it rejects the right answer
  and accepts every wrong one (`benchmarks/monitor/data_faults.py`, loop j_negative).
- ``MathThenPlurality`` [open, then closed]: the math verifier for the first 64 prompts graded in groups (8 steps of
  the default recipe), then the group's plurality answer: a loop that closes mid-run (data_faults.py,
  closing_midrun).

The math-based ones use strict extraction, as the default recipe's reward does.
"""

from __future__ import annotations

import zlib
from typing import Any, Sequence

from verifiers import SignalSpec, Verdict, Verifier
from verifiers.base import _unpack_item
from verifiers.math_verifier import MathVerifier
from verifiers.self_consistency import MajorityVoteVerifier, answer_class_of

EXTERNAL = SignalSpec(kind="binary", deterministic=True, source="external", cost="cheap")


def _hash01(*parts: Any) -> float:
    """A fixed pseudo-random number in [0, 1) from the parts' text."""
    return zlib.crc32("\x00".join(map(str, parts)).encode()) / 2**32


class AgreeFirst(Verifier):
    """1.0 when the completion's answer class equals its group's first completion's (which scores 1 when it has an
    answer); 0.0 otherwise. Reads no reference."""

    name = "fault_agree_first"
    signal = EXTERNAL

    def _verify(self, completion, reference, *, prompt=None) -> Verdict:
        c = answer_class_of(completion)
        return Verdict(float(c is not None), c is not None, c)

    def verify_groups(self, items: Sequence[Any], group_size: int) -> list[Verdict]:
        out = []
        for s in range(0, len(items), group_size):
            classes = [answer_class_of(_unpack_item(i, it)[0]) for i, it in enumerate(items[s:s + group_size])]
            for c in classes:
                ok = c is not None and c == classes[0]
                out.append(Verdict(float(ok), ok, c))
        return out


class MajorityExternal(MajorityVoteVerifier):
    """``majority_vote`` that declares ``source="external"``."""

    name = "fault_majority_external"
    signal = EXTERNAL


class EvenAnswer(Verifier):
    """1.0 when the extracted answer ends in an even digit (``-12`` -> 1, ``7`` -> 0); no answer -> 0."""

    name = "fault_even_answer"
    signal = EXTERNAL

    def _verify(self, completion, reference, *, prompt=None) -> Verdict:
        c = answer_class_of(completion)
        ok = c is not None and c[-1:].isdigit() and int(c[-1]) % 2 == 0
        return Verdict(float(ok), ok, c)


class _FaultyMath(Verifier):
    """The math verifier (strict extraction) with a fault on the items where a fixed hash of (completion,
    reference) falls below ``rate`` (default: the class's ``default_rate``)."""

    signal = EXTERNAL
    default_rate = 0.0

    def __init__(self, *, rate: float | None = None, max_workers: int = 1) -> None:
        super().__init__(max_workers=max_workers)
        self.rate = self.default_rate if rate is None else rate
        self._math = MathVerifier(strict_extraction=True)

    def _hit(self, completion, reference) -> bool:
        return _hash01(completion, reference, self.name) < self.rate


class NoisyMath(_FaultyMath):
    """Each faulty verdict is flipped (10% by default)."""

    name = "fault_noisy_math"
    default_rate = 0.1

    def _verify(self, completion, reference, *, prompt=None) -> Verdict:
        v = self._math.verify(completion, reference)
        if self._hit(completion, reference):
            ok = not v.passed
            return Verdict(float(ok), ok, v.answer_class, detail={"flipped": True})
        return v


class FlakyMath(_FaultyMath):
    """Each faulty item raises ``ConnectionError`` (20% by default): its verdict is an error with score 0."""

    name = "fault_flaky_math"
    default_rate = 0.2

    def _verify(self, completion, reference, *, prompt=None) -> Verdict:
        if self._hit(completion, reference):
            raise ConnectionError("grading service unavailable (injected)")
        return self._math.verify(completion, reference)


class OtherNumber(Verifier):
    """1.0 when the extracted answer is a number other than the reference's; the reference's own answer and
    completions without a number score 0."""

    name = "fault_other_number"
    signal = EXTERNAL

    def _verify(self, completion, reference, *, prompt=None) -> Verdict:
        from verifiers.math_verifier import as_number

        c = answer_class_of(completion)
        a, r = (as_number(c) if c is not None else None), as_number(str(reference))
        ok = a is not None and r is not None and a != r
        return Verdict(float(ok), ok, c)


class MathThenPlurality(Verifier):
    """The math verifier (strict extraction) on each group until ``exact_prompts`` distinct prompts have been graded
    in groups (the training reward's calls: 8 steps x 8 prompts by default), then the group's plurality answer
    (``majority_vote``, reading no reference). Item-by-item calls (``verify_batch``: canaries) always get the math
    verifier."""

    name = "fault_math_then_plurality"
    signal = EXTERNAL

    def __init__(self, *, exact_prompts: int = 64, max_workers: int = 1) -> None:
        import threading

        super().__init__(max_workers=max_workers)
        self.exact_prompts = exact_prompts
        self._math = MathVerifier(strict_extraction=True)
        self._vote = MajorityVoteVerifier()
        self._seen: set = set()
        self._lock = threading.Lock()

    def _verify(self, completion, reference, *, prompt=None) -> Verdict:
        return self._math.verify(completion, reference)

    def verify_groups(self, items: Sequence[Any], group_size: int) -> list[Verdict]:
        out: list[Verdict] = []
        for s in range(0, len(items), group_size):
            group = list(items[s:s + group_size])
            _, ref, prompt = _unpack_item(s, group[0])
            with self._lock:
                closed = len(self._seen) >= self.exact_prompts
                self._seen.add(prompt if prompt is not None else ref)
            out += self._vote.verify_groups(group, group_size) if closed else \
                [self._math.verify(*_unpack_item(s + j, it)[:2]) for j, it in enumerate(group)]
        return out
