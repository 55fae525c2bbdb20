"""Signals of known information content, for testing the monitor (shared/paper-notes.md, "Validation").

- ``majority_vote``: score 1 when a completion's answer is its group's plurality answer. No reference is read:
  the signal is the model's own pseudo-label (test-time RL, Zuo et al. 2025, arXiv 2504.16084), a closed loop by
  construction (Li, Sun, Deng, ICML 2026, arXiv 2605.16379), declared ``source="self"``.
- ``length_bonus``: score min(length, cap) / cap: external (it needs nothing from the model) but a pure surface
  feature with no correctness in it.
- ``prompt_split``: one verifier on half of the prompts and another on the other half, chosen by a stable hash of
  the prompt. ``prompt_split`` with ``even: {name: math}`` and ``odd: {name: length_bonus}`` is the learnability
  probe's loop C ("gold on even prompts, length on odd"): once the length half is hacked and the answer format is
  gone, the gold half has no variance left to pull back.
"""

from __future__ import annotations

import re
import zlib
from collections import Counter
from typing import Any, Optional, Sequence

from . import _math_parse as mp
from .base import SignalSpec, Verdict, Verifier, _unpack_item
from .math_verifier import _fast_class, _parse_answer
from .registry import get_verifier, register_verifier


def answer_class_of(completion: Any, *, fallback_last_number: bool = False) -> Optional[str]:
    """Canonical class of a completion's final answer without a reference (``"1/2"`` for ``\\boxed{0.5}``), using
    the math verifier's extraction and its in-process canonical form; ``None`` when no answer is extracted.
    Answers the fast path cannot canonicalise fall back to their whitespace-free text."""
    if not isinstance(completion, str):
        return None
    found = mp.extract(completion, fallback_last_number)
    if found.answer is None or found.multiple:
        return None
    try:
        node = _parse_answer(found.answer)
        if node.kind == "empty":
            return None
        return mp.answer_class(node, _fast_class)
    except Exception:  # an unparseable answer is still an answer: compare it as text
        return re.sub(r"\s+", "", found.answer)


@register_verifier("majority_vote")
class MajorityVoteVerifier(Verifier):
    """Score 1.0 if the completion's extracted answer is a plurality answer of its group, else 0.0.

    The group is the ``group_size`` consecutive items given to :meth:`verify_groups` (the trainer passes each
    prompt's G completions). Completions without an answer never score; ties: every tied answer scores 1.
    :meth:`verify_batch` treats all its items as one group; :meth:`verify` (a group of one) returns an error
    verdict, since a single completion has no group to agree with. The reference is never read.
    """

    signal = SignalSpec(kind="binary", deterministic=True, source="self", cost="cheap")

    def __init__(self, *, fallback_last_number: bool = False, max_workers: int = 1) -> None:
        super().__init__(max_workers=max_workers)
        self.fallback_last_number = fallback_last_number

    def _verify(self, completion, reference, *, prompt=None) -> Verdict:
        raise TypeError("majority_vote needs the whole group: call verify_groups(items, group_size)")

    def _group(self, completions: list[Any]) -> list[Verdict]:
        classes = [answer_class_of(c, fallback_last_number=self.fallback_last_number) for c in completions]
        counts = Counter(c for c in classes if c is not None)
        top = max(counts.values()) if counts else 0
        out = []
        for c in classes:
            win = c is not None and counts[c] == top
            out.append(Verdict(1.0 if win else 0.0, win, c, detail={"plurality_count": top}))
        with self._stats_lock:
            self.stats["calls"] += len(out)
        return out

    def verify_groups(self, items: Sequence[tuple[str, Any] | dict], group_size: int) -> list[Verdict]:
        if group_size < 1 or len(items) % group_size:
            raise ValueError(f"verify_groups: {len(items)} items do not split into groups of {group_size}")
        completions = [_unpack_item(i, it)[0] for i, it in enumerate(items)]
        return [v for s in range(0, len(completions), group_size) for v in self._group(completions[s:s + group_size])]

    def verify_batch(self, items: Sequence[tuple[str, Any] | dict]) -> list[Verdict]:
        return self._group([_unpack_item(i, it)[0] for i, it in enumerate(items)]) if items else []


@register_verifier("length_bonus")
class LengthBonusVerifier(Verifier):
    """Score min(length, cap) / cap ("longer is better"): a surface-feature reward with no correctness in it.

    Args:
        cap: length at which the score saturates at 1.
        unit: ``"chars"``, ``"words"`` (whitespace-separated) or ``"tokens"`` (needs ``tokenizer``).
        tokenizer: for ``unit="tokens"``: an HF tokenizer folder or the alias ``smollm2-135m-instruct``
            (resolved by rlvr.models, converted once and cached), loaded on first use.

    ``answer_class`` is the completion's extracted answer class (:func:`answer_class_of`), so the monitor can see
    that the score varies among completions with the same answer.
    """

    signal = SignalSpec(kind="graded", deterministic=True, source="external", cost="cheap")

    def __init__(self, *, cap: int = 24, unit: str = "tokens", tokenizer: str | None = "smollm2-135m-instruct",
                 max_workers: int = 1) -> None:
        super().__init__(max_workers=max_workers)
        if cap < 1:
            raise ValueError(f"cap must be >= 1, got {cap}")
        if unit not in ("chars", "words", "tokens"):
            raise ValueError(f"unit must be chars, words or tokens, got {unit!r}")
        if unit == "tokens" and not tokenizer:
            raise ValueError("unit='tokens' needs tokenizer=<HF folder or alias>")
        self.cap, self.unit, self.tokenizer = cap, unit, tokenizer
        self._tok = None

    def _length(self, text: str) -> int:
        if self.unit == "chars":
            return len(text)
        if self.unit == "words":
            return len(text.split())
        if self._tok is None:
            from pathlib import Path

            path = self.tokenizer
            if not Path(path).exists():
                from verifiers.registry import resolve_model_path

                path = resolve_model_path(path)
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(path)
        return len(self._tok(text, add_special_tokens=False)["input_ids"])

    def _verify(self, completion, reference, *, prompt=None) -> Verdict:
        if not isinstance(completion, str):
            raise TypeError(f"completion must be str, got {type(completion).__name__}")
        n = self._length(completion)
        return Verdict(min(n, self.cap) / self.cap, None, answer_class_of(completion), detail={"length": n})

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state["_tok"] = None
        return state


def _parity(prompt: Any, reference: Any) -> int:
    key = prompt if isinstance(prompt, str) else repr(reference)
    return zlib.crc32(key.encode("utf-8")) % 2


@register_verifier("prompt_split")
class PromptSplitVerifier(Verifier):
    """Verifier ``even`` on the prompts whose CRC-32 is even, ``odd`` on the others (the reference's repr when no
    prompt is given): a fixed, reproducible half/half split of the prompt set.

    Args:
        even, odd: ``{"name": ..., "kwargs": {...}}`` (or a name) of the two verifiers.

    The instance's ``signal`` is graded unless both are binary, deterministic if both are, of the components'
    source when they agree, else ``"self"`` if either is self-sourced (so the monitor flags a partly closed loop),
    else ``"judge"``; cost is the dearer one. Whole groups go to one component (the split is by prompt), so
    group-level verifiers keep working under :meth:`verify_groups`.
    """

    signal = SignalSpec(kind="graded", deterministic=True, source="external", cost="cheap")

    def __init__(self, *, even: dict | str, odd: dict | str, max_workers: int = 1) -> None:
        super().__init__(max_workers=max_workers)
        self.parts = [self._build(even), self._build(odd)]
        a, b = (p.signal for p in self.parts)
        if a.source == b.source:
            source = a.source
        else:
            source = "self" if "self" in (a.source, b.source) else "judge"
        order = ["cheap", "moderate", "expensive"]
        self.signal = SignalSpec(kind="binary" if a.kind == b.kind == "binary" else "graded",
                                 deterministic=a.deterministic and b.deterministic, source=source,
                                 cost=max(a.cost, b.cost, key=order.index))

    @staticmethod
    def _build(spec: dict | str) -> Verifier:
        if isinstance(spec, str):
            return get_verifier(spec)
        return get_verifier(spec["name"], **dict(spec.get("kwargs") or {}))

    def _verify(self, completion, reference, *, prompt=None) -> Verdict:
        return self.parts[_parity(prompt, reference)].verify(completion, reference, prompt=prompt)

    def _dispatch(self, items, call) -> list[Verdict]:
        calls = [_unpack_item(i, it) for i, it in enumerate(items)]
        out: list[Verdict | None] = [None] * len(calls)
        for side in (0, 1):
            idx = [i for i, c in enumerate(calls) if _parity(c[2], c[1]) == side]
            if idx:
                for i, v in zip(idx, call(self.parts[side], [calls[i] for i in idx])):
                    out[i] = v
        return out  # type: ignore[return-value]

    def verify_batch(self, items):
        return self._dispatch(items, lambda v, sub: v.verify_batch(sub))

    def verify_groups(self, items, group_size: int):
        if group_size < 1 or len(items) % group_size:
            raise ValueError(f"verify_groups: {len(items)} items do not split into groups of {group_size}")
        for s in range(0, len(items), group_size):
            calls = [_unpack_item(s + j, items[s + j]) for j in range(group_size)]
            if len({_parity(c[2], c[1]) for c in calls}) > 1:
                raise ValueError("prompt_split.verify_groups: a group mixes prompts (its items must share one prompt)")
        return self._dispatch(items, lambda v, sub: v.verify_groups(sub, group_size))

    def identity(self) -> str | None:
        ids = [p.identity() for p in self.parts]
        return None if ids == [None, None] else f"even={ids[0]};odd={ids[1]}"
