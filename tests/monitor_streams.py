"""Synthetic verdict streams with known information content, for the monitor's tests.

Each generator returns one step as a dict of Monitor.observe inputs ([P][G] lists), seeded by (seed, step) so a
stream can be replayed. P = 8 prompts x G = 8 completions, as in the default recipe.
"""

from __future__ import annotations

import random

P, G = 8, 8


def _rng(seed: int, step: int) -> random.Random:
    return random.Random(seed * 100_003 + step)


def open_step(step: int, seed: int = 0, acc: float = 0.3) -> dict:
    """An exact answer checker on a learning model: each group has one correct answer "c<i>"; the model answers
    it with probability ~acc, else one of a few wrong answers; lengths are independent of correctness."""
    rng = _rng(seed, step)
    rewards, classes, texts, lengths = [], [], [], []
    for i in range(P):
        p = min(0.95, max(0.0, rng.gauss(acc, 0.2)))
        rr, cc, tt, ll = [], [], [], []
        for _ in range(G):
            if rng.random() < p:
                c = f"{i}"
            else:
                c = rng.choices([f"{i}{k}" for k in range(4)] + [None], weights=[1, 0.5, 0.25, 0.12, 0.1])[0]
            rr.append(float(c == f"{i}"))
            cc.append(c)
            tt.append(f"<answer>{c}</answer>" if c is not None else "I think")
            ll.append(rng.randint(6, 12))
        rewards.append(rr), classes.append(cc), texts.append(tt), lengths.append(ll)
    return {"rewards": rewards, "classes": classes, "texts": texts, "lengths": lengths,
            "policy_entropy": 1.0 + 0.1 * rng.random()}


def closed_step(step: int, seed: int = 0) -> dict:
    """A majority-vote reward: the verdict is 1 exactly for the group's plurality answers."""
    d = open_step(step, seed)
    from rlvr.monitor.estimators import self_prediction

    s_hat = self_prediction(d["classes"])
    d["reference_scores"] = d["rewards"]
    d["rewards"] = [[float(s and c is not None) for s, c in zip(sr, cr)] for sr, cr in zip(s_hat, d["classes"])]
    return d


def length_hacked_step(step: int, seed: int = 0) -> dict:
    """Probe loop C after the hack: on odd prompts the reward is min(len, 24)/24 and the completions are untagged
    prose (no answer class) of varying length; even prompts keep the exact checker."""
    d = open_step(step, seed)
    rng = _rng(seed, step + 777)
    d["reference_scores"] = [list(r) for r in d["rewards"]]
    for i in range(1, P, 2):
        ll = [rng.randint(8, 24) for _ in range(G)]
        d["lengths"][i] = ll
        d["texts"][i] = ["To add them, " + "x" * n for n in ll]
        d["classes"][i] = [None] * G
        d["rewards"][i] = [min(n, 24) / 24 for n in ll]
        d["reference_scores"][i] = [0.0] * G
    return d


def no_signal_step(step: int, seed: int = 0) -> dict:
    """Every group's verdicts are equal (all wrong): no GRPO gradient."""
    d = open_step(step, seed)
    d["rewards"] = [[0.0] * G for _ in range(P)]
    return d


def observe(mon, step: int, d: dict):
    return mon.observe(step, d["rewards"], d["classes"], d["texts"], d["lengths"], errors=d.get("errors"),
                       reference_scores=d.get("reference_scores"), policy_entropy=d.get("policy_entropy"))
