"""One scoring path: every verdict the trainer, the held-out evaluation and the monitor use comes from `score`.

* Items always have the same shape: ``{"completion", "reference", "prompt"}`` (the prompt is always passed: the
  math verifier's percent rule reads it), group-major, ``group_size`` consecutive items per prompt.
* Every verifier, plug-ins included, runs under a deadline (``verifiers[].timeout_s``, ``eval.timeout_s``): each
  group's verdicts must arrive within ``timeout_s`` seconds of the group's call starting. A group that is late gets
  timeout verdicts (score 0, ``error="timeout after ...s"``, counted by the monitor's VERIFIER_FAULT), and the step
  goes on. Verifier calls run in daemon threads, so a call that never returns is abandoned, not waited for, and
  does not keep the process alive at exit.
* Pass/fail is :func:`passed`: ``Verdict.passed`` where the verifier defines it, else ``score >= PASS_THRESHOLD``.
  pass@1 and pass@k (:func:`pass_at_k`, the unbiased estimator of Chen et al. 2021, arXiv 2107.03374, eq. 1) are
  computed from it, never from ``score > 0.5`` on a graded score (a program passing 2 of 3 tests is not solved).
"""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

import torch

# A graded verdict without `passed` counts as passed at or above this score (the one threshold of the project).
PASS_THRESHOLD = 0.5
DEFAULT_TIMEOUT_S = 120.0


def make_items(completions: Sequence[str], references: Sequence[Any], prompts: Sequence[str | None]) -> list[dict]:
    """The item shape every verifier call gets. Raises ValueError when the three lengths differ."""
    if not len(completions) == len(references) == len(prompts):
        raise ValueError(f"make_items: {len(completions)} completions, {len(references)} references, "
                         f"{len(prompts)} prompts; they must be equal")
    return [{"completion": c, "reference": r, "prompt": p} for c, r, p in zip(completions, references, prompts)]


def passed(verdict) -> bool:
    """Pass/fail of one verdict: ``verdict.passed`` when the verifier sets it, else ``score >= PASS_THRESHOLD``."""
    if verdict.passed is not None:
        return bool(verdict.passed)
    return verdict.score >= PASS_THRESHOLD


def timeout_verdict(timeout_s: float):
    from verifiers import Verdict

    return Verdict(0.0, False, None, detail={"deadline": "rlvr.scoring"}, error=f"timeout after {timeout_s}s")


def score(verifier, items: Sequence[dict], group_size: int = 1, timeout_s: float | None = DEFAULT_TIMEOUT_S) -> list:
    """Verdicts of `verifier` on `items` (group-major; see :func:`make_items`), one per item, in order.

    Each group of `group_size` items is one ``verifier.verify_groups(group, group_size)`` call (so verifiers that
    judge a whole group, e.g. majority_vote, see it), run in a daemon thread. A call that has not returned
    `timeout_s` seconds after it started yields timeout verdicts for its group; the remaining groups continue in
    a fresh thread. ``timeout_s=None`` waits forever (use only for trusted verifiers).

    Raises:
        ValueError: len(items) is not a multiple of group_size, or the verifier returned a wrong number of verdicts.
    """
    if group_size < 1 or len(items) % group_size:
        raise ValueError(f"score: {len(items)} items do not split into groups of {group_size}")
    groups = [list(items[s:s + group_size]) for s in range(0, len(items), group_size)]
    results = _run_with_deadlines([lambda g=g: verifier.verify_groups(g, group_size) for g in groups], timeout_s)
    out = []
    for g, res in zip(groups, results):
        if res is None:
            out.extend(timeout_verdict(timeout_s) for _ in g)
            _count_timeouts(verifier, len(g))
            continue
        if isinstance(res, BaseException):
            raise res
        if len(res) != len(g):
            raise ValueError(f"verifier {getattr(verifier, 'name', verifier)!r} returned {len(res)} verdicts for "
                             f"{len(g)} items")
        out.extend(res)
    return out


def _count_timeouts(verifier, n: int) -> None:
    stats = getattr(verifier, "stats", None)
    if isinstance(stats, dict):
        stats["calls"] = stats.get("calls", 0) + n
        stats["timeouts"] = stats.get("timeouts", 0) + n


def _run_with_deadlines(tasks: list, timeout_s: float | None) -> list:
    """Run `tasks` (no-argument callables) one after another in a daemon thread. Returns each result, the exception
    it raised, or None when it overran `timeout_s` seconds (its thread is abandoned and a new one takes the rest)."""
    if timeout_s is None:
        return [t() for t in tasks]
    results: list = [None] * len(tasks)
    done = [False] * len(tasks)
    todo: queue.SimpleQueue = queue.SimpleQueue()
    for i in range(len(tasks)):
        todo.put(i)
    cond = threading.Condition()
    started: dict[int, float] = {}
    abandoned: set[int] = set()

    def worker():
        while True:
            try:
                i = todo.get_nowait()
            except queue.Empty:
                return
            with cond:
                started[i] = time.monotonic()
            try:
                r = tasks[i]()
            except BaseException as e:  # re-raised in the caller (a bug, not a verdict)
                r = e
            with cond:
                if i in abandoned:
                    return  # too late: the caller has moved on, and another thread runs the rest
                results[i], done[i] = r, True
                cond.notify_all()

    def spawn():
        threading.Thread(target=worker, name="rlvr-verifier", daemon=True).start()

    spawn()
    with cond:
        while not all(done[i] or i in abandoned for i in range(len(tasks))):
            running = [i for i in started if not done[i] and i not in abandoned]
            now = time.monotonic()
            late = [i for i in running if now - started[i] >= timeout_s]
            if late:
                for i in late:
                    abandoned.add(i)
                spawn()
                continue
            wait = min((started[i] + timeout_s - now for i in running), default=timeout_s)
            cond.wait(timeout=max(wait, 1e-3))
    return results


@dataclass
class VerifierSpec:
    """One verifier of the reward: registry name, instance, normalised weight, deadline in seconds."""

    name: str
    verifier: Any
    weight: float
    timeout_s: float | None


class Reward:
    """The training reward: the weighted sum of its verifiers' scores (weights normalised to 1), scored through
    :func:`score`. The first verifier's verdicts are the *primary* verdicts (answer class, pass/fail, errors)."""

    def __init__(self, specs: list[VerifierSpec]):
        total = sum(s.weight for s in specs)
        self.specs = [VerifierSpec(s.name, s.verifier, s.weight / total, s.timeout_s) for s in specs]

    @property
    def verifiers(self) -> list[tuple[str, Any, float]]:
        """(name, verifier, weight) triples (what the monitor's signal table reads)."""
        return [(s.name, s.verifier, s.weight) for s in self.specs]

    def __call__(self, items: Sequence[dict], group_size: int) -> tuple[torch.Tensor, list, dict[str, float]]:
        """Returns (rewards [N] float32, primary verdicts [N], metrics rewards/<name>/{mean,error_rate,timeout_rate})."""
        rewards = torch.zeros(len(items))
        metrics: dict[str, float] = {}
        primary = None
        for s in self.specs:
            verdicts = score(s.verifier, items, group_size, s.timeout_s)
            scores = torch.tensor([vd.score for vd in verdicts], dtype=torch.float32)
            rewards += s.weight * scores
            n = max(len(verdicts), 1)
            timeouts = sum(_is_timeout(vd) for vd in verdicts)
            metrics[f"rewards/{s.name}/mean"] = float(scores.mean()) if len(verdicts) else 0.0
            metrics[f"rewards/{s.name}/error_rate"] = sum(vd.error is not None for vd in verdicts) / n
            metrics[f"rewards/{s.name}/timeout_rate"] = timeouts / n
            primary = primary if primary is not None else verdicts
        return rewards, primary, metrics


def _is_timeout(verdict) -> bool:
    return bool(verdict.error) and verdict.error.startswith("timeout")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k of one problem from n samples of which c passed: 1 - C(n-c, k) / C(n, k)
    (Chen et al. 2021, arXiv 2107.03374, eq. 1; computed as a product to stay exact for large n).

    Raises:
        ValueError: not 0 <= c <= n, or not 1 <= k <= n.
    """
    if not 0 <= c <= n:
        raise ValueError(f"pass_at_k: need 0 <= c <= n, got n={n}, c={c}")
    if not 1 <= k <= n:
        raise ValueError(f"pass_at_k: need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - math.prod((n - c - i) / (n - i) for i in range(k))
