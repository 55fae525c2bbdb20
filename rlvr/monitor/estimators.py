"""Per-step estimators of the info-gain monitor: pure functions of one step's verdicts.

Spec: ``shared/paper-notes.md`` ("What rlvr estimates each step"), after Li, Sun, Deng, "An Information-Theoretic
Criterion for Efficient Data Synthesis", ICML 2026, arXiv 2605.16379 (the paper gives the criterion
I(X; S | Z_t) > 0; the estimators below are ours and are validated on synthetic streams in tests/test_monitor_*.py).

Inputs are plain Python data so that tests can feed hand-built verdict streams:

* ``scores``: P groups of G verdict scores in [0, 1] (a list of lists or a [P, G] tensor);
* ``levels``: the same, discretised by :func:`discretize` (binary: pass/fail; graded: equal-width bins);
* ``classes``: P lists of G answer classes (``None``: nothing extracted; it counts as its own class ``"none"``,
  as in shared/research/learnability_probe.md);
* ``features``: P lists of G hashable values of a surface feature (see :func:`length_tertile`).

All entropies are in bits. Groups may differ in size; pooled quantities weight each group by its size.
Small samples: a step has P*G samples (64 in the default recipe), so the main quantities come with a 95% interval
(Wilson for proportions, a percentile bootstrap over groups, seeded, for the rest).
"""

from __future__ import annotations

import math
import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Sequence

LN2 = math.log(2.0)
NONE_CLASS = "none"


@dataclass(frozen=True)
class Estimate:
    """A point estimate with an optional 95% interval. ``value`` is None when the sample cannot define it."""

    value: float | None
    lo: float | None = None
    hi: float | None = None
    n: int = 0


def as_rows(x: Any) -> list[list]:
    """[P, G] tensor or nested sequence -> list of lists (floats kept as Python floats)."""
    if hasattr(x, "tolist"):
        x = x.tolist()
    return [list(r) for r in x]


# ------------------------------------------------------------------------------------------ building blocks

def binary_entropy(p: float) -> float:
    """H_b(p) = -p log2 p - (1-p) log2 (1-p), with H_b(0) = H_b(1) = 0."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -(p * math.log2(p) + (1.0 - p) * math.log2(1.0 - p))


def entropy_plugin(counts: Sequence[int]) -> float:
    """Plug-in (maximum-likelihood) entropy of a histogram, bits. Biased low by about (m-1)/(2n ln 2)."""
    n = sum(counts)
    if n == 0:
        return 0.0
    return -sum(c / n * math.log2(c / n) for c in counts if c > 0)


def entropy_miller_madow(counts: Sequence[int]) -> float:
    """Miller-Madow corrected entropy (Miller 1955, "Note on the bias of information estimates"):
    H_MM = H_plugin + (m - 1) / (2 n ln 2), m = number of non-empty bins, n = sample size.

    Removes the O(1/n) term of the plug-in's downward bias; the remaining bias is O(1/n^2). A histogram with a
    single non-empty bin gets no correction (0 stays 0)."""
    n = sum(counts)
    if n == 0:
        return 0.0
    m = sum(1 for c in counts if c > 0)
    return entropy_plugin(counts) + (m - 1) / (2.0 * n * LN2)


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (Wilson 1927, JASA 22:209). Good coverage down to n ~ 5,
    unlike the normal approximation; returns (0, 1) for n = 0."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def bootstrap_groups(stat: Callable[[list[int]], float | None], n_groups: int, resamples: int = 200,
                     seed: int = 0) -> tuple[float | None, float | None]:
    """95% percentile-bootstrap interval of ``stat`` over groups (Efron 1979): resample the P group indices with
    replacement ``resamples`` times and take the 2.5% and 97.5% quantiles of ``stat(indices)``. Groups are the
    independent units (samples inside a group share a prompt). Seeded, so a resumed run reproduces it. With
    fewer than 2 groups, or no defined resample, returns (None, None). Coverage is approximate for P < 10."""
    if n_groups < 2 or resamples <= 0:
        return None, None
    rng = random.Random(seed)
    vals = []
    for _ in range(resamples):
        v = stat([rng.randrange(n_groups) for _ in range(n_groups)])
        if v is not None:
            vals.append(v)
    if not vals:
        return None, None
    vals.sort()
    return vals[int(0.025 * (len(vals) - 1))], vals[int(math.ceil(0.975 * (len(vals) - 1)))]


def discretize(scores: Any, kind: str = "binary", bins: int = 4) -> list[list[int]]:
    """Verdict levels: binary -> 1 if score > 0.5 else 0; graded -> equal-width bin index min(floor(s*bins),
    bins-1) of [0, 1]. Entropies of graded signals are entropies of these bins (at most log2(bins) bits)."""
    rows = as_rows(scores)
    if kind == "binary":
        return [[int(s > 0.5) for s in r] for r in rows]
    return [[min(int(s * bins), bins - 1) for s in r] for r in rows]


def _cls(c: Any) -> Hashable:
    return NONE_CLASS if c is None else c


# ------------------------------------------------------------------------------------------ the quantities

def informative_group_fraction(scores: Any) -> Estimate:
    """Share of groups whose verdicts are not all equal (only these give a GRPO gradient; paper-notes table).

    Exact count, no bias; Wilson 95% interval over groups (min sample: 1 group; the interval is wide below ~10).
    """
    rows = as_rows(scores)
    k = sum(1 for r in rows if r and max(r) != min(r))
    n = len(rows)
    if n == 0:
        return Estimate(None)
    lo, hi = wilson_interval(k, n)
    return Estimate(k / n, lo, hi, n)


def _group_entropy(levels_row: list[int]) -> float:
    return entropy_plugin(list(Counter(levels_row).values()))


def signal_entropy(levels: list[list[int]], resamples: int = 200, seed: int = 0) -> Estimate:
    """Signal entropy H_t = (1/P) sum_i H(levels of group i) (paper-notes: mean over groups of H_b(p_i),
    p_i = mean_j s_ij, for binary verdicts; graded verdicts binned by :func:`discretize`).

    An upper bound on what a deterministic verifier can tell the model per sample given the prompt. Plug-in
    within each group: biased low by about (m-1)/(2G ln 2) per group (0.09 bits for G = 8, binary); min sample
    G >= 2 per group, P >= 2 for the interval (bootstrap over groups).
    """
    if not levels:
        return Estimate(None)
    per = [_group_entropy(r) for r in levels]
    value = sum(per) / len(per)
    lo, hi = bootstrap_groups(lambda idx: sum(per[i] for i in idx) / len(idx), len(per), resamples, seed)
    return Estimate(value, lo, hi, sum(len(r) for r in levels))


def self_prediction(classes: list[list[Any]]) -> list[list[int]]:
    """s_hat_ij = 1 if completion j's answer class is a plurality class of its group i, else 0 (paper-notes: the
    model's own pseudo-label, as in test-time RL, Zuo et al. 2025, arXiv 2504.16084).

    ``None`` counts as its own class ``"none"``. Ties: every class with the top count is a plurality class, so a
    group of all-different answers gets s_hat = 1 everywhere (no consensus: the self-prediction says nothing).
    Exact (no estimation); defined for any G >= 1.
    """
    out = []
    for row in classes:
        counts = Counter(_cls(c) for c in row)
        top = max(counts.values()) if counts else 0
        out.append([int(counts[_cls(c)] == top) for c in row])
    return out


def _group_parts(levels: list[list[int]], given: list[list[Hashable]] | None) -> list[tuple[float, int, int]]:
    """Per group i: (sum over its cells of n_c * H_plugin(cell), sum over its cells of (m_c - 1), n_i), cells being
    the values of ``given`` inside the group. Pooled estimates (and their bootstrap) are sums of these."""
    parts = []
    for i, row in enumerate(levels):
        cells: dict[Hashable, Counter] = {}
        g_row = given[i] if given is not None else [0] * len(row)
        for s, g in zip(row, g_row):
            cells.setdefault(g, Counter())[s] += 1
        weighted, extra, total = 0.0, 0, 0
        for cnt in cells.values():
            n_c = sum(cnt.values())
            weighted += n_c * entropy_plugin(list(cnt.values()))
            extra += len(cnt) - 1
            total += n_c
        parts.append((weighted, extra, total))
    return parts


def _pooled(parts: list[tuple[float, int, int]], groups: list[int] | None, correction: bool) -> float | None:
    idx = range(len(parts)) if groups is None else groups
    weighted = sum(parts[i][0] for i in idx)
    extra = sum(parts[i][1] for i in idx)
    total = sum(parts[i][2] for i in idx)
    if total == 0:
        return None
    return weighted / total + (extra / (2.0 * total * LN2) if correction else 0.0)


def conditional_entropy(levels: list[list[int]], given: list[list[Hashable]] | None = None,
                        correction: bool = True, groups: list[int] | None = None) -> float | None:
    """Pooled H(S | given, Q) = sum over cells (q, g) of (n_qg / N) H(S | cell), bits; ``given=None`` gives
    H(S | Q) pooled (equal to :func:`signal_entropy` when groups have equal sizes and correction is off).

    With ``correction`` each cell's entropy is Miller-Madow corrected (Miller 1955): the pooled correction is
    sum_cells (m_c - 1) / (2 N ln 2). A verdict that is a function of ``given`` inside each group has one value per
    cell and gets exactly 0. ``groups`` selects group indices (with repetition, for the bootstrap).
    """
    return _pooled(_group_parts(levels, given), groups, correction)


def novel_bits(levels: list[list[int]], s_hat: list[list[int]], correction: bool = True, resamples: int = 200,
               seed: int = 0) -> Estimate:
    """Novel bits N_t = H(S | S_hat, Q), pooled over groups (paper-notes), Miller-Madow corrected per cell.

    Proxy for I(X; S | Z_t): the part of the verdict the model could not have produced itself from its own
    majority answer. Exactly 0 when the verdict is the majority indicator (majority-vote reward). Bias: the
    plug-in is low by ~(m-1)/(2 n_c ln 2) per cell; the correction removes that first-order term (it can
    overshoot slightly for cells of 2-4 samples). Min sample: 2 samples per (group, s_hat) cell to be non-trivial;
    95% interval by bootstrap over groups.
    """
    parts = _group_parts(levels, s_hat)
    value = _pooled(parts, None, correction)
    if value is None:
        return Estimate(None)
    lo, hi = bootstrap_groups(lambda idx: _pooled(parts, idx, correction), len(levels), resamples, seed)
    return Estimate(value, lo, hi, sum(len(r) for r in levels))


def closure_ratio(levels: list[list[int]], s_hat: list[list[int]], min_entropy: float = 0.05,
                  resamples: int = 200, seed: int = 0) -> Estimate:
    """Closure ratio N_t / H_t (paper-notes), computed like for like: H(S | S_hat, Q) / H(S | Q), both pooled and
    Miller-Madow corrected, clipped to [0, 1]. Near 0: the signal echoes the model's own majority (a closed loop
    in disguise); 1: the verdict is independent of the model's self-prediction.

    Undefined (value None) when H(S | Q) < ``min_entropy`` bits: with no signal there is nothing to be closed or
    open. Bias: a ratio of two corrected estimates; with small cells the numerator's correction is the larger, so
    an independent verdict can read slightly above 1 before clipping. Min sample: a few informative groups; one
    step of 8 groups is noisy (simulated exact verifier at 50% accuracy: 10th percentile 0.08), so the monitor's
    alert uses the ratio pooled over its window (3 steps: 10th percentile 0.15). An exact verifier on a model
    that is already right by majority also reads low: the verdict then tells it little it did not know.
    95% interval by bootstrap over groups.
    """
    h_parts, n_parts = _group_parts(levels, None), _group_parts(levels, s_hat)

    def ratio(idx: list[int] | None) -> float | None:
        h = _pooled(h_parts, idx, True)
        if h is None or h < min_entropy:
            return None
        return min(1.0, max(0.0, _pooled(n_parts, idx, True) / h))

    value = ratio(None)
    if value is None:
        return Estimate(None)
    lo, hi = bootstrap_groups(ratio, len(levels), resamples, seed)
    return Estimate(value, lo, hi, sum(len(r) for r in levels))


def class_efficiency(scores: Any, classes: list[list[Any]]) -> float | None:
    """Class efficiency eta = 1 - E[Var(s | c, q)] / E[Var(s | q)] (paper-notes; the variance form of the
    paper's eta_pi = I([Y]_pi; S | Q) / I(Y; S | Q)), both expectations over samples, variances population ones.

    1: the verdict depends on the answer class only (any exact answer checker); below 1: the verdict varies
    among equal answers (noisy judge, surface-form reward). ``None`` when E[Var(s|q)] = 0 (no signal) or when no
    class has 2 members in a group (singleton classes have zero variance, so eta would be 1 trivially: that is the
    estimator's upward bias at small G). Min sample: classes with >= 2 members in the informative groups.
    """
    rows = as_rows(scores)
    within_q, within_c, repeated, n = 0.0, 0.0, 0, 0
    for r, cls_row in zip(rows, classes):
        if not r:
            continue
        mean = sum(r) / len(r)
        within_q += sum((s - mean) ** 2 for s in r)
        by_c: dict[Hashable, list[float]] = {}
        for s, c in zip(r, cls_row):
            by_c.setdefault(_cls(c), []).append(s)
        for vals in by_c.values():
            m = sum(vals) / len(vals)
            within_c += sum((s - m) ** 2 for s in vals)
            if len(vals) >= 2 and max(r) != min(r):
                repeated += len(vals)
        n += len(r)
    if n == 0 or within_q <= 1e-12 or repeated == 0:
        return None
    return 1.0 - within_c / within_q


def conditional_mutual_information(levels: list[list[int]], feature: list[list[Hashable]],
                                   correction: bool = True) -> float | None:
    """Pooled I(S; f | Q) = H(S | Q) - H(S | f, Q), bits, each term Miller-Madow corrected (so the correction
    of the mutual information is the bias term of Panzeri & Treves 1996 built from observed bin counts), clipped
    at 0. A feature that determines the verdict inside each group gives I = H(S | Q) (corrected) exactly.

    Bias: the plug-in MI is biased upward by ~(m_s - 1)(m_f - 1) / (2 n ln 2) per group (0.18 bits for a
    binary verdict and a 3-valued feature at G = 8); the correction removes it to first order. Min sample: G >= 6
    for a 3-valued feature.
    """
    h = conditional_entropy(levels, None, correction)
    hf = conditional_entropy(levels, feature, correction)
    if h is None or hf is None:
        return None
    return max(0.0, h - hf)


def spurious_share(levels: list[list[int]], feature: list[list[Hashable]], min_entropy: float = 0.05) -> float | None:
    """Spurious share of a surface feature: I(S; f | Q) / H(S | Q) (paper-notes: I(S; f | Q) / H_t), both
    Miller-Madow corrected so that a feature that determines the verdict reads exactly 1; clipped to [0, 1].
    ``None`` when H(S | Q) < ``min_entropy`` (no signal to explain). Same bias and sample needs as
    :func:`conditional_mutual_information`."""
    h = conditional_entropy(levels, None, True)
    if h is None or h < min_entropy:
        return None
    i = conditional_mutual_information(levels, feature, True)
    return min(1.0, max(0.0, (i or 0.0) / h))


# ------------------------------------------------------------------------------------------ surface features

def length_tertile(lengths: Any) -> list[list[int]]:
    """Length tertile within each group: 0 if length <= the group's 1/3 order statistic (sorted[ceil(G/3)-1]),
    1 if <= the 2/3 one (sorted[ceil(2G/3)-1]), else 2. Equal lengths always share a tertile, so a group of equal
    lengths is one tertile (the feature then carries no information). Needs G >= 3 to have three tertiles."""
    out = []
    for r in as_rows(lengths):
        s = sorted(r)
        g = len(s)
        if g == 0:
            out.append([])
            continue
        q1, q2 = s[math.ceil(g / 3) - 1], s[math.ceil(2 * g / 3) - 1]
        out.append([int(x > q1) + int(x > q2) for x in r])
    return out


_ANSWER_TAG = re.compile(r"<answer>.*?</answer>", re.S)
_BOXED = re.compile(r"\\(?:boxed|fbox)\{")


def format_marker(texts: list[list[str]], pattern: re.Pattern | str) -> list[list[int]]:
    """1 where the completion contains ``pattern`` (a regex), else 0."""
    rx = re.compile(pattern) if isinstance(pattern, str) else pattern
    return [[int(bool(rx.search(t or ""))) for t in r] for r in texts]


FeatureFn = Callable[[list[list[str]], list[list[int]], list[list[Any]]], list[list[Hashable]]]
_FEATURES: dict[str, FeatureFn] = {}


def register_feature(name: str) -> Callable[[FeatureFn], FeatureFn]:
    """Register a surface feature ``fn(texts, lengths, classes) -> P lists of G hashable values`` under ``name``;
    the monitor computes ``monitor/spurious_share/<name>`` for every feature named in ``monitor.features``."""
    def deco(fn: FeatureFn) -> FeatureFn:
        if name in _FEATURES and _FEATURES[name] is not fn:
            raise ValueError(f"surface feature {name!r} is already registered")
        _FEATURES[name] = fn
        return fn
    return deco


def get_feature(name: str) -> FeatureFn:
    """A registered feature by name, or ``"pkg.module:function"`` imported on demand."""
    if name in _FEATURES:
        return _FEATURES[name]
    if ":" in name:
        import importlib

        mod, _, attr = name.partition(":")
        return getattr(importlib.import_module(mod), attr)
    raise KeyError(f"unknown surface feature {name!r}; known: {', '.join(sorted(_FEATURES))}, or pkg.module:function")


def list_features() -> list[str]:
    return sorted(_FEATURES)


register_feature("length_tertile")(lambda texts, lengths, classes: length_tertile(lengths))
register_feature("answer_tag")(lambda texts, lengths, classes: format_marker(texts, _ANSWER_TAG))
register_feature("boxed")(lambda texts, lengths, classes: format_marker(texts, _BOXED))


# ------------------------------------------------------------------------------------------ diversity, health, gold

def diversity(scores: Any, classes: list[list[Any]]) -> dict[str, float]:
    """distinct_per_group: mean number of distinct answer classes per group (None counts as one class "none");
    pass@1: share of samples with score > 0.5; pass@G: share of groups with at least one score > 0.5.
    Exact; pass@1 gets a Wilson interval over samples (pass@1_lo/hi). Policy token entropy comes from the
    trainer's metrics (``entropy``)."""
    rows = as_rows(scores)
    n = sum(len(r) for r in rows)
    k = sum(1 for r in rows for s in r if s > 0.5)
    lo, hi = wilson_interval(k, n)
    return {
        "distinct_per_group": sum(len({_cls(c) for c in r}) for r in classes) / max(len(classes), 1),
        "pass@1": k / n if n else float("nan"), "pass@1_lo": lo, "pass@1_hi": hi,
        "pass@G": sum(1 for r in rows if r and max(r) > 0.5) / max(len(rows), 1),
    }


def verifier_health(scores: Any, classes: list[list[Any]], errors: list[list[str | None]]) -> dict[str, float]:
    """error_rate: share of verdicts with an error other than a timeout; timeout_rate: share whose error starts
    with "timeout"; constant_verdict_rate: among groups with >= 2 distinct extracted answer classes (None
    excluded), the share whose scores are all equal and above 0: the verifier rewards different answers
    identically. (All-zero groups are excluded: every answer wrong is normal for an exact checker.) NaN when no
    group has 2 distinct classes. Exact counts; min sample: a handful of groups with distinct answers."""
    flat = [e for r in errors for e in r]
    n = max(len(flat), 1)
    timeouts = sum(1 for e in flat if e is not None and str(e).startswith("timeout"))
    errs = sum(1 for e in flat if e is not None) - timeouts
    diverse, constant = 0, 0
    for r, c in zip(as_rows(scores), classes):
        if len({x for x in c if x is not None}) >= 2:
            diverse += 1
            constant += int(max(r) == min(r) and min(r) > 0)
    return {"error_rate": errs / n, "timeout_rate": timeouts / n,
            "constant_verdict_rate": constant / diverse if diverse else float("nan")}


def reward_gold_gap(rewards: Any, reference_scores: Any) -> dict[str, float]:
    """reference_pass@1: share of training completions the held-out reference verifier accepts (score > 0.5);
    reward_gold_gap = mean training reward - reference_pass@1 (learnability_probe.md: 0 by construction for an
    exact reward, grows to 0.5-0.8 under hacking or a closed loop). Needs gold answers: only computed where the
    recipe's reference verifier differs from the training reward. Exact on the rollouts; Wilson interval on the
    reference pass rate."""
    r, g = as_rows(rewards), as_rows(reference_scores)
    n = sum(len(x) for x in r)
    k = sum(1 for row in g for s in row if s > 0.5)
    lo, hi = wilson_interval(k, n)
    mean_r = sum(s for row in r for s in row) / max(n, 1)
    return {"reference_pass@1": k / max(n, 1), "reference_pass@1_lo": lo, "reference_pass@1_hi": hi,
            "reward_gold_gap": mean_r - k / max(n, 1)}


def reference_sensitivity_counts(original: Any, swapped: Any, threshold: float = 0.5) -> tuple[int, int]:
    """(changed, passed) for an intervention on the reference: `original` [k][G] rewards of k groups as scored,
    `swapped` [k][G] the same completions re-scored against another prompt's reference. `passed` counts the
    original rewards >= `threshold`; `changed` those of them whose reward moved (|diff| > 1e-9).

    Why passed verdicts only: a wrong completion stays wrong under another problem's reference with an exact
    verifier too, so it carries no evidence either way; a right one must turn wrong unless the verdict ignores the
    reference. I(X; S | Z_t) > 0 needs S to depend on X (paper-notes): a verifier whose passes survive a swapped
    reference is reference-blind, i.e. closed or self-derived whatever it declares."""
    changed = passed = 0
    for o_row, s_row in zip(as_rows(original), as_rows(swapped)):
        for o, s in zip(o_row, s_row):
            if o >= threshold:
                passed += 1
                changed += abs(o - s) > 1e-9
    return changed, passed


def reference_sensitivity(changed: int, passed: int) -> Estimate:
    """Share of passed verdicts that change when the reference is swapped (see `reference_sensitivity_counts`),
    with a Wilson 95% interval. None when nothing passed. Exact verifier on arithmetic: ~1 (a swapped answer
    collides with the right one rarely); a reference-blind verifier: 0; a reward exact on a share s of the prompts
    and blind on the rest: ~s."""
    if passed == 0:
        return Estimate(None, n=0)
    lo, hi = wilson_interval(changed, passed)
    return Estimate(changed / passed, lo, hi, n=passed)
