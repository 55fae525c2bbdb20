"""Held-out accuracy and known answers as evidence: small exact tests the monitor's rules use (pure functions).

* :func:`mcnemar_drop_p` — did held-out accuracy fall between two evaluations of the *same* problems? The exact
  one-sided McNemar test (McNemar 1947; the exact binomial form, e.g. Fagerland, Lydersen, Laake 2013, BMC Med. Res.
  Methodol. 13:91): of the n_d problems whose verdict changed, b went right -> wrong; under "no decline" b is at
  most Binomial(n_d, 1/2), so p = P(Bin(n_d, 1/2) >= b). Paired, so it needs far fewer problems than comparing two
  proportions.
* :func:`heldout_decline` — the rule of HELDOUT_DECLINE: the latest evaluation against every earlier one (the start
  and the best included), Bonferroni over the k comparisons, so the false-alarm probability per evaluation under
  "accuracy has not fallen" is at most `alpha`. The paper's prediction (Li, Sun, Deng, ICML 2026, arXiv 2605.16379,
  data processing inequality): a closed loop can only lose task information, so held-out accuracy falling while
  training continues is the observable trace of closure or of a broken signal.
* :func:`fisher_two_sided_p` — do two pass rates (the base model on training prompts with their references, and on
  held-out prompts, same protocol) disagree? Fisher's exact test (conditional hypergeometric, two-sided by summing
  the tables no more probable than the observed one).
* :func:`reference_shift` — do the policy's answers fit the references of *neighbouring* rows of the training file
  better than their own? The classic data-pipeline bug (an off-by-one join, a shifted column) moves every reference
  one row; a right answer then matches the neighbour's reference, which under aligned data happens only by the
  coincidence rate of a random row's reference. One-sided Fisher (:func:`fisher_greater_p`) of the neighbour matches
  against random-row matches, Bonferroni over the shifts tried. It does not depend on the held-out set's size,
  and it misses other samples than the train/held-out rates test does: on the recipe's data (932 rows, base model 11.7% right) a 128-row sample finds the shift
  with probability 0.96, the rates test 0.92, either 0.997 (64 random rows per sampled row; data_faults.py power).
* :func:`clopper_pearson` and :func:`youden` — a verifier's true-positive rate (references in the forms completions
  use must pass) and false-positive rate (perturbed references must fail) from its canaries, with exact intervals,
  and Youden's J = TPR - FPR (Youden 1950). Below J = 0 the verifier rewards wrong answers at least as often as
  right ones and GRPO learns the wrong thing (arXiv 2601.04411); its lower bound <= 0 is critical.
"""

from __future__ import annotations

import math


def binom_tail_ge(n: int, k: int, p: float = 0.5) -> float:
    """P(Bin(n, p) >= k), exact. Raises ValueError on n < 0 or p outside [0, 1]."""
    if n < 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"binom_tail_ge: need n >= 0 and 0 <= p <= 1, got n={n}, p={p}")
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    return min(1.0, sum(math.comb(n, j) * p ** j * (1 - p) ** (n - j) for j in range(k, n + 1)))


def mcnemar_drop_p(before: list[bool], after: list[bool]) -> float:
    """One-sided exact McNemar p-value for "accuracy fell from `before` to `after`" (per-problem pass/fail of the
    same problems, same order). 1.0 when no problem went right -> wrong. Raises ValueError on unequal lengths."""
    if len(before) != len(after):
        raise ValueError(f"mcnemar_drop_p: {len(before)} vs {len(after)} problems; evaluate the same problems")
    b = sum(1 for x, y in zip(before, after) if x and not y)
    c = sum(1 for x, y in zip(before, after) if y and not x)
    return binom_tail_ge(b + c, b) if b else 1.0


def heldout_decline(history: list[tuple[int, list[bool]]], alpha: float = 0.01) -> dict | None:
    """Test the last evaluation of `history` ([(step, per-problem passes)], oldest first) against each earlier one.

    Returns None with fewer than two evaluations, else {"fired": p_min * k <= alpha, "p_min", "against_step",
    "comparisons": k, "from", "to" (accuracies), "p_false_alarm_per_evaluation": alpha} where p_min is the smallest
    one-sided McNemar p over the k earlier evaluations (Bonferroni: the family-wise false-alarm probability of one
    evaluation is at most alpha when accuracy has not fallen)."""
    if len(history) < 2:
        return None
    step, last = history[-1]
    k = len(history) - 1
    best = min(((mcnemar_drop_p(prev, last), s, prev) for s, prev in history[:-1]), key=lambda t: (t[0], -t[1]))
    p, against, prev = best
    acc = lambda xs: sum(xs) / len(xs) if xs else 0.0  # noqa: E731
    return {"fired": p * k <= alpha, "p_min": p, "p_bonferroni": min(1.0, p * k), "against_step": against,
            "comparisons": k, "from": acc(prev), "to": acc(last), "step": step,
            "p_false_alarm_per_evaluation": alpha}


def fisher_two_sided_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Fisher's exact two-sided p for successes k1/n1 vs k2/n2. Raises ValueError on impossible counts."""
    if not (0 <= k1 <= n1 and 0 <= k2 <= n2):
        raise ValueError(f"fisher_two_sided_p: impossible counts {k1}/{n1}, {k2}/{n2}")
    K, N = k1 + k2, n1 + n2

    def prob(x: int) -> float:
        return math.comb(n1, x) * math.comb(n2, K - x) / math.comb(N, K)

    lo, hi = max(0, K - n2), min(K, n1)
    observed = prob(k1)
    return min(1.0, sum(q for q in (prob(x) for x in range(lo, hi + 1)) if q <= observed * (1 + 1e-9)))


def fisher_greater_p(k1: int, n1: int, k2: int, n2: int) -> float:
    """Fisher's exact one-sided p for "rate 1 is higher": P(X >= k1) where X is hypergeometric (k1 + k2 successes,
    n1 draws from n1 + n2). Raises ValueError on impossible counts."""
    if not (0 <= k1 <= n1 and 0 <= k2 <= n2):
        raise ValueError(f"fisher_greater_p: impossible counts {k1}/{n1}, {k2}/{n2}")
    K, N = k1 + k2, n1 + n2
    return min(1.0, sum(math.comb(n1, x) * math.comb(n2, K - x) for x in range(k1, min(K, n1) + 1))
               / math.comb(N, K))


def reference_shift(own: list[bool], shifted: dict[int, list[bool]], chance_k: int, chance_n: int,
                    alpha: float) -> dict | None:
    """Test whether training references are shifted relative to their prompts.

    Args:
        own: per sampled row, whether the policy's answer passes against the row's own reference (n rows).
        shifted: {s: per sampled row, whether the same answer passes against the reference of the row s places
            away in the file}, each of length n (a row without such a neighbour counts as False).
        chance_k, chance_n: passes of the same answers against references of random rows far from their own (the
            coincidence rate: how often an answer equals an unrelated row's reference).
        alpha: the false-alarm probability of the whole test when the references belong to their rows.
    Returns:
        None when no shift fits better than the own references; else, for the shift s with the smallest p among
        those with k_s > k_own: {"shift": s, "k": k_s, "n": n, "own": k_own, "chance_k", "chance_n",
        "p": min(1, p_s * len(shifted)) (one-sided Fisher of k_s/n against chance_k/chance_n, Bonferroni over the
        shifts), "fired": p <= alpha}. Under aligned references a neighbour's reference is an unrelated row's, so
        k_s is a coincidence count like chance_k (exact conditional test; rows are sampled without replacement).
    Raises:
        ValueError: a shifted list whose length differs from `own`.
    """
    n, k_own = len(own), sum(own)
    best = None
    for s, hits in shifted.items():
        if len(hits) != n:
            raise ValueError(f"reference_shift: shift {s} has {len(hits)} rows, own has {n}")
        k = sum(hits)
        if k <= k_own:
            continue
        p = min(1.0, fisher_greater_p(k, n, chance_k, chance_n) * len(shifted))
        if best is None or p < best["p"]:
            best = {"shift": s, "k": k, "n": n, "own": k_own, "chance_k": chance_k, "chance_n": chance_n, "p": p,
                    "fired": p <= alpha}
    return best


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact (Clopper-Pearson 1934) two-sided 1 - alpha interval for a proportion k/n, by bisection on the binomial
    tails. (0.0, 1.0) for n = 0. Raises ValueError unless 0 <= k <= n."""
    if not 0 <= k <= n:
        raise ValueError(f"clopper_pearson: need 0 <= k <= n, got k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0

    def solve(f, target: float) -> float:  # f increasing in p
        a, b = 0.0, 1.0
        for _ in range(60):
            m = (a + b) / 2
            if f(m) < target:
                a = m
            else:
                b = m
        return (a + b) / 2

    lo = 0.0 if k == 0 else solve(lambda p: binom_tail_ge(n, k, p), alpha / 2)
    hi = 1.0 if k == n else solve(lambda p: binom_tail_ge(n, k + 1, p), 1 - alpha / 2)  # P(X <= k) = alpha/2
    return lo, hi


def youden(tp: int, n_pos: int, fp: int, n_neg: int, alpha: float = 0.05) -> dict:
    """A verifier's rates on known answers: TPR = tp / n_pos (right answers passed), FPR = fp / n_neg (wrong answers
    passed), each with its Clopper-Pearson 1 - alpha interval, and Youden's J = TPR - FPR with the conservative
    bound J_lo = TPR_lo - FPR_hi (both intervals at once: coverage >= 1 - 2 alpha). None fields when a side has no
    canaries."""
    tpr = tp / n_pos if n_pos else None
    fpr = fp / n_neg if n_neg else None
    t_lo, t_hi = clopper_pearson(tp, n_pos, alpha) if n_pos else (None, None)
    f_lo, f_hi = clopper_pearson(fp, n_neg, alpha) if n_neg else (None, None)
    j = tpr - fpr if tpr is not None and fpr is not None else None
    j_lo = t_lo - f_hi if t_lo is not None and f_hi is not None else None
    return {"tpr": tpr, "tpr_ci": [t_lo, t_hi], "fpr": fpr, "fpr_ci": [f_lo, f_hi], "j": j, "j_lo": j_lo,
            "n_pos": n_pos, "n_neg": n_neg}
