"""Verifier protocol: :class:`Verdict`, :class:`SignalSpec` and the :class:`Verifier` base class."""

from __future__ import annotations

import abc
import dataclasses
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Sequence


@dataclass(frozen=True)
class Verdict:
    """The outcome of verifying one completion against one reference.

    Attributes:
        score: reward in ``[0, 1]`` (``ValueError`` otherwise).
        passed: ``True``/``False`` for a pass/fail verdict, ``None`` when the verifier does not
            define one (graded signals).
        answer_class: canonical string of the extracted answer; equivalent answers share it
            (``"1/2"``, ``"0.5"`` and ``"\\frac{1}{2}"`` all give ``"1/2"``). ``None`` when no answer
            was extracted or the verifier failed.
        detail: free-form diagnostics, e.g. ``{"extracted": "1/2", "method": "fast_path"}``.
            Not part of the hash.
        error: ``"ExcType: message"`` when the verifier raised, ``"timeout after 2.0s"`` when it
            ran out of time; ``None`` otherwise.
        elapsed_s: wall-clock seconds spent in :meth:`Verifier.verify`.
    """

    score: float
    passed: bool | None
    answer_class: str | None
    detail: dict = field(default_factory=dict, hash=False)
    error: str | None = None
    elapsed_s: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"Verdict.score must be in [0, 1], got {self.score!r}")


@dataclass(frozen=True)
class SignalSpec:
    """What kind of reward signal a verifier produces; the training monitor reads this.

    Attributes:
        kind: ``"binary"`` (scores are 0 or 1) or ``"graded"`` (any value in ``[0, 1]``).
        deterministic: the same inputs always give the same verdict.
        source: where the ground truth comes from: ``"external"`` (a reference answer, a test
            suite), ``"judge"`` (another model) or ``"self"`` (the policy grading itself).
        cost: rough price of one call: ``"cheap"`` (sub-millisecond to milliseconds),
            ``"moderate"`` (a subprocess, a sandbox) or ``"expensive"`` (a model call).

    A recipe whose only signal is self-sourced is a closed loop: the policy cannot gain
    information about the task beyond what it already encodes (Li, Sun, Deng, "An
    Information-Theoretic Criterion for Efficient Data Synthesis", ICML 2026, arXiv:2605.16379).
    The monitor flags such recipes.
    """

    kind: Literal["binary", "graded"]
    deterministic: bool
    source: Literal["external", "judge", "self"]
    cost: Literal["cheap", "moderate", "expensive"]


class VerifierTimeout(Exception):
    """Raised by :meth:`Verifier._verify` when it runs out of time.

    :meth:`Verifier.verify` turns it into a zero-score verdict with
    ``error="timeout after {timeout_s}s"`` and ``detail`` copied from the exception.
    """

    def __init__(self, timeout_s: float, detail: dict | None = None) -> None:
        super().__init__(f"timeout after {timeout_s}s")
        self.timeout_s = timeout_s
        self.detail = dict(detail or {})


class Verifier(abc.ABC):
    """Base class of all verifiers.

    Subclasses set the class attributes :attr:`name` and :attr:`signal` and implement
    :meth:`_verify`; they may also implement :meth:`_quick`, a cheap in-process first pass that
    :meth:`verify_batch` runs before dispatching the remaining items to its worker pool. Callers use
    :meth:`verify` / :meth:`verify_batch`, which never raise on bad inputs or verifier failures.
    Verifiers are picklable (the stats lock is recreated), so they can be shipped to other processes.

    Args:
        max_workers: threads used by :meth:`verify_batch` for the items :meth:`_quick` did not decide;
            1 (default) runs sequentially.

    Attributes:
        stats: counters ``{"calls": int, "errors": int, "timeouts": int}``; ``errors`` counts
            exceptions other than timeouts. Updated thread-safely.
    """

    name: ClassVar[str]
    signal: ClassVar[SignalSpec]
    #: Declared equivalence of numeric answers (``math.isclose`` semantics): an answer within
    #: ``max(abs_tol, rel_tol * |reference|)`` of a numeric reference may pass. ``0.0`` / ``0.0`` (the default)
    #: declares an exact verifier. Set them (class attributes, or in ``__init__``) on a tolerant verifier: rlvr's
    #: canaries perturb references beyond this band, so a correct tolerant verifier is not reported as accepting
    #: wrong answers.
    rel_tol: float = 0.0
    abs_tol: float = 0.0

    def __init__(self, *, max_workers: int = 1) -> None:
        if not isinstance(getattr(type(self), "name", None), str):
            raise TypeError(f"{type(self).__name__} must define a class attribute `name: str`")
        if not isinstance(getattr(type(self), "signal", None), SignalSpec):
            raise TypeError(f"{type(self).__name__} must define a class attribute `signal: SignalSpec`")
        if max_workers < 1:
            raise ValueError(f"max_workers must be >= 1, got {max_workers}")
        self.max_workers = max_workers
        self.stats = {"calls": 0, "errors": 0, "timeouts": 0}
        self._stats_lock = threading.Lock()

    @abc.abstractmethod
    def _verify(self, completion: str, reference: Any, *, prompt: str | None) -> Verdict:
        """Verify one completion; may raise (including :class:`VerifierTimeout`)."""

    def _quick(self, completion: str, reference: Any, *, prompt: str | None) -> Verdict | None:
        """Optional cheap first pass for :meth:`verify_batch`: the verdict when it can be decided in the
        calling thread without blocking, else ``None`` (the default) to send the item to the pool. Must
        agree with :meth:`_verify`; may raise like it."""
        return None

    def verify(self, completion: str, reference: Any, *, prompt: str | None = None) -> Verdict:
        """Verify ``completion`` against ``reference``. Never raises (``Exception`` subclasses).

        Any exception from :meth:`_verify` becomes ``Verdict(score=0.0, passed=False,
        answer_class=None, error="ExcType: message")``. ``elapsed_s`` is filled in (seconds).
        """
        return self._guarded(self._verify, completion, reference, prompt)

    def _guarded(self, fn, completion: Any, reference: Any, prompt: str | None) -> Verdict | None:
        start = time.perf_counter()
        counter = None
        try:
            verdict = fn(completion, reference, prompt=prompt)
        except VerifierTimeout as exc:
            counter = "timeouts"
            verdict = Verdict(0.0, False, None, detail=exc.detail, error=str(exc))
        except Exception as exc:
            counter = "errors"
            verdict = Verdict(0.0, False, None, error=f"{type(exc).__name__}: {exc}")
        if verdict is None:
            return None
        with self._stats_lock:
            self.stats["calls"] += 1
            if counter:
                self.stats[counter] += 1
        return dataclasses.replace(verdict, elapsed_s=time.perf_counter() - start)

    def verify_batch(self, items: Sequence[tuple[str, Any] | dict]) -> list[Verdict]:
        """Verify many items; returns one verdict per item, in order.

        Each item is a ``(completion, reference)`` or ``(completion, reference, prompt)`` tuple, or a
        dict with keys ``completion``, ``reference`` and optionally ``prompt``. With ``max_workers > 1``,
        :meth:`_quick` first decides what it can in the calling thread; the rest runs on a pool of
        ``max_workers`` threads (for the math verifier, each drives its own sympy worker process).
        Errors and timeouts become verdicts exactly as in :meth:`verify`.

        Raises:
            TypeError: an item has neither of the accepted shapes (checked before any work).
        """
        calls = [_unpack_item(i, item) for i, item in enumerate(items)]

        def run(call: tuple[Any, Any, str | None]) -> Verdict:
            return self.verify(call[0], call[1], prompt=call[2])

        if self.max_workers == 1 or len(calls) <= 1:
            return [run(c) for c in calls]
        verdicts: list[Verdict | None] = [self._guarded(self._quick, *c) for c in calls]
        pending = [i for i, v in enumerate(verdicts) if v is None]
        if len(pending) == 1:
            verdicts[pending[0]] = run(calls[pending[0]])
        elif pending:
            with ThreadPoolExecutor(max_workers=min(self.max_workers, len(pending))) as pool:
                for i, verdict in zip(pending, pool.map(lambda i: run(calls[i]), pending)):
                    verdicts[i] = verdict
        return verdicts  # type: ignore[return-value]

    def verify_groups(self, items: Sequence[tuple[str, Any] | dict], group_size: int) -> list[Verdict]:
        """Verify ``items`` laid out group-major: ``group_size`` consecutive completions per prompt (the trainer
        calls this with all P*G completions of a step). Verifiers whose verdict depends on the whole group (e.g.
        ``majority_vote``) override it; the default ignores the grouping and calls :meth:`verify_batch`.

        Raises:
            ValueError: ``len(items)`` is not a multiple of ``group_size``.
        """
        if group_size < 1 or len(items) % group_size:
            raise ValueError(f"verify_groups: {len(items)} items do not split into groups of {group_size}")
        return self.verify_batch(items)

    def identity(self) -> str | None:
        """What the verdicts depend on besides the inputs, as a string that changes when the verifier does (a
        judge's model id and weights hash, a rubric's version); ``None`` (the default) for verifiers that are
        fixed code with no external state. The training monitor records it before training and raises
        SIGNAL_DRIFT when it changes during the run, and CLOSED_LOOP when a judge's identity is the policy's."""
        return None

    def judge_models(self) -> list[str]:
        """Paths or ids of the models that judge for this verifier ([] by default: no judge). The training monitor
        raises CLOSED_LOOP (critical) when one of them is the policy's model (same string, or the same folder)."""
        return []

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_stats_lock", None)
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._stats_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, max_workers={self.max_workers})"


def _unpack_item(index: int, item: Any) -> tuple[Any, Any, str | None]:
    if isinstance(item, dict) and "completion" in item and "reference" in item:
        return item["completion"], item["reference"], item.get("prompt")
    if isinstance(item, tuple) and len(item) in (2, 3):
        return item[0], item[1], item[2] if len(item) == 3 else None
    raise TypeError(
        f"verify_batch item {index}: expected (completion, reference[, prompt]) or a dict with "
        f"keys completion/reference[/prompt], got {type(item).__name__}"
    )
