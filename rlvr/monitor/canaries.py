"""Verifier canaries: known answers scored through the training reward's verifiers before training (and every
`monitor.canary_every` steps). A verifier that rejects the reference itself, or accepts a perturbed one, is broken
in a way no reward curve shows: a grader that strips `\\boxed{}` and then expects it gives every right answer 0; an
unparseable gold that scores 1.0 rewards anything. Both are reported as VERIFIER_FAULT (rule `canary:<verifier>`,
critical) with the failing pairs, at step 0, before any compute is spent on training.

Canaries per training row (the first `monitor.canary_rows` rows of the train split):
  * math-like references (a string): the reference in each of `monitor.canary_forms` (tagged `<answer>R</answer>`,
    boxed `\\boxed{R}`, plain `The answer is R.`) must pass; a perturbed reference in the tagged form (R + 1 for a
    number, else another row's reference) must fail;
  * code references (HumanEval-style, with `canonical_solution` in the row's meta): the dataset's canonical solution
    must pass; the prompt with a body that raises NotImplementedError must fail.
Each verifier's true-positive rate (must-pass canaries passed), false-positive rate (perturbed references passed)
and Youden's J = TPR - FPR come with exact intervals (`canary_rates`); J's lower bound at or below 0 (the verifier
rewards wrong answers about as often as right ones: GRPO then learns the wrong thing, arXiv 2601.04411) is a
fault, judged once there are enough canaries for a perfect verifier's bound to exceed 0.
Only verifiers that declare `source="external"` are checked (a judge or a self-derived reward has no right answer
to check against), and only verdicts that say pass or fail (`Verdict.passed` set, or an error): a graded score
without pass/fail, such as a length bonus, has no right answer either.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

FORMS = {
    "tagged": "<answer>{}</answer>",
    "boxed": "\\boxed{{{}}}",
    "plain": "The answer is {}.",
}


@dataclass
class Canary:
    """One known item: what to score and whether it must pass."""

    form: str
    completion: str
    reference: Any
    prompt: str
    must_pass: bool


def _perturb(ref: str, others: list[str], tolerance: tuple[float, float] = (0.0, 0.0)) -> str | None:
    """A wrong answer for `ref`: a number moved beyond the verifiers' declared tolerance (rel_tol, abs_tol), at
    least by 1 (an exact verifier: R + 1; answers within 10% pass: -79 -> -63), else another row's reference."""
    try:
        v = float(ref.replace(",", ""))
    except ValueError:
        return next((o for o in others if o != ref), None)
    if not math.isfinite(v):
        return next((o for o in others if o != ref), None)
    rel, ab = tolerance
    step = max(1.0, 2.0 * max(ab, rel * abs(v)))  # twice the widest accepted distance: outside any isclose band
    if v == int(v):
        return str(int(v) + math.ceil(step))
    return str(v + step)


def build_canaries(rows: list[dict], forms: list[str], tolerance: tuple[float, float] = (0.0, 0.0)) -> list[Canary]:
    """Canaries for `rows` (dicts with prompt, reference, optional meta JSON); perturbed references lie beyond
    `tolerance` = (rel_tol, abs_tol), the widest equivalence the verifiers declare. Raises ValueError on an unknown
    form."""
    bad = [f for f in forms if f not in FORMS]
    if bad:
        raise ValueError(f"monitor.canary_forms: unknown form(s) {bad}; known: {sorted(FORMS)}")
    out: list[Canary] = []
    refs = [str(r["reference"]) for r in rows]
    for r in rows:
        ref, q = r["reference"], r["prompt"]
        meta = _json(r.get("meta"))
        code_ref = _json(ref) if isinstance(ref, str) and ref.lstrip().startswith("{") else None
        if isinstance(code_ref, dict) and "entry_point" in code_ref:
            sol = meta.get("canonical_solution") if isinstance(meta, dict) else None
            head = code_ref.get("prompt", "")
            if sol:
                out.append(Canary("canonical_solution", f"```python\n{head}{sol}\n```", ref, q, True))
            out.append(Canary("not_implemented", f"```python\n{head}    raise NotImplementedError\n```", ref, q,
                              False))
            continue
        for f in forms:
            out.append(Canary(f, FORMS[f].format(ref), ref, q, True))
        wrong = _perturb(str(ref), [o for o in refs if o != str(ref)], tolerance)
        if wrong is not None:
            out.append(Canary("perturbed", FORMS["tagged"].format(wrong), ref, q, False))
    return out


def canaries_for(cfg, train, tolerance: tuple[float, float] = (0.0, 0.0)) -> list[Canary]:
    """The canaries of a run: the first `cfg.monitor.canary_rows` rows of its train split, in `monitor.canary_forms`
    (default: the forms the recipe's few-shot answers use, else all three), perturbed beyond `tolerance`. `cfg` is
    an rlvr Config."""
    mc = cfg.monitor
    forms = mc.canary_forms
    if forms is None:
        shots = " ".join(t.assistant for t in cfg.data.prompt.few_shot)
        forms = [f for f, mark in (("tagged", "<answer>"), ("boxed", "\\boxed")) if mark in shots]
        forms = forms or ["tagged", "boxed", "plain"]
    return build_canaries([train[i] for i in range(min(mc.canary_rows, len(train)))], forms, tolerance)


def systematic_forms(fails: list[dict], per_form: dict[str, int] | None) -> list[str]:
    """Forms whose every canary failed (`per_form`: canaries of each form; None counts any failure as systematic).
    The one rule of "systematic" for the pre-flight stop and the monitor's critical canary alert."""
    counts: dict[str, int] = {}
    for f in fails:
        counts[f["form"]] = counts.get(f["form"], 0) + 1
    return sorted(f for f, n in counts.items() if per_form is None or n >= per_form.get(f, 0))


def form_counts(canaries: list[Canary]) -> dict[str, int]:
    """Number of canaries of each form (for Monitor.check_canaries' per_form)."""
    out: dict[str, int] = {}
    for c in canaries:
        out[c.form] = out.get(c.form, 0) + 1
    return out


def _json(x):
    if not isinstance(x, str):
        return x
    try:
        return json.loads(x)
    except (ValueError, TypeError):
        return None


def run_canaries(named_verifiers: list[tuple], canaries: list[Canary], timeout_s: float | None = None,
                 counts: dict | None = None) -> dict:
    """Score every canary with every external verifier: one `verify_batch` call per verifier (item by item, no group
    semantics) under one deadline, the verifier's own `timeout_s` (the third element of its tuple) or `timeout_s`.
    A verifier that misses it gets timeout verdicts for all its canaries (each a failure).

    Returns {verifier name: [failure dicts]}, a failure being {form, completion, reference, must_pass, score,
    passed, error}; an empty list means every canary behaved. With `counts` (a dict), fills {verifier name:
    {"n_pos", "tp", "n_neg", "fp"}}: the must-pass canaries judged and passed, the must-fail ones judged and
    (wrongly) passed, for the verifier's TPR, FPR and Youden's J (rlvr.monitor.heldout.youden)."""
    from rlvr.scoring import _run_with_deadlines, make_items, passed, timeout_verdict

    report: dict[str, list[dict]] = {}
    items = make_items([c.completion for c in canaries], [c.reference for c in canaries],
                       [c.prompt for c in canaries])
    for entry in named_verifiers:
        name, v = entry[0], entry[1]
        deadline = entry[2] if len(entry) > 2 else timeout_s
        if getattr(getattr(v, "signal", None), "source", None) != "external":
            continue
        (res,) = _run_with_deadlines([lambda v=v: v.verify_batch(items)], deadline)
        if isinstance(res, BaseException):
            raise res
        verdicts = res if res is not None else [timeout_verdict(deadline) for _ in items]
        fails = []
        tally = {"n_pos": 0, "tp": 0, "n_neg": 0, "fp": 0}
        for c, vd in zip(canaries, verdicts):
            if vd.passed is None and vd.error is None:
                continue  # a graded verdict without pass/fail (e.g. length_bonus): nothing to check it against
            side = "pos" if c.must_pass else "neg"
            tally[f"n_{side}"] += 1
            tally["tp" if c.must_pass else "fp"] += int(passed(vd))
            if passed(vd) != c.must_pass:
                fails.append({"form": c.form, "completion": _short(c.completion), "reference": _short(str(c.reference)),
                              "must_pass": c.must_pass, "score": vd.score, "passed": passed(vd), "error": vd.error})
        report[name] = fails
        if counts is not None:
            counts[name] = tally
    return report


def canary_rates(tally: dict, alpha: float = 0.05) -> dict:
    """TPR, FPR (Clopper-Pearson intervals) and Youden's J with its bound J_lo from a run_canaries tally, plus
    `determined`: whether these counts could show J > 0 at all (a perfect verifier's J_lo > 0; with 4 must-fail
    canaries even a perfect verifier has FPR_hi = 0.60, so its J is undetermined rather than a fault)."""
    from rlvr.monitor.heldout import youden

    r = youden(tally["tp"], tally["n_pos"], tally["fp"], tally["n_neg"], alpha)
    best = youden(tally["n_pos"], tally["n_pos"], 0, tally["n_neg"], alpha)["j_lo"]
    r["determined"] = best is not None and best > 0
    r["fault"] = bool(r["determined"] and r["j_lo"] is not None and r["j_lo"] <= 0)
    return r


def _short(s: str, n: int = 80) -> str:
    s = re.sub(r"\s+", " ", s)
    return s if len(s) <= n else s[: n - 3] + "..."
