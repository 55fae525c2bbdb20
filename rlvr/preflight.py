"""Pre-flight: the checks that stop a run which cannot learn before any model is loaded or step trained.

A run whose verifier rejects the right answer, accepts a wrong one, raises on every item, or whose references are
empty trains every step at a reward that carries no task information and used to exit 0 (reward 0.000 for 30
steps). These faults are visible before step 1 from the data and the reward alone (seconds, no model):

  * empty references: every training row's reference is empty (None or blank): nothing can pass;
  * canaries (rlvr/monitor/canaries.py): the first `monitor.canary_rows` references, written as completions write
    them, must pass every external verifier of the reward, and a perturbed reference (beyond the verifier's declared
    tolerance) must fail. A *systematic* failure (every canary of one form) or a verifier that raises on a canary
    stops the run. Scattered failures (a noisy verifier misgrading some rows) are left to the monitor's warning.

Each stop is a PreflightError (exit status 2) naming the fault, the failing pairs and the opt-out
`monitor.preflight_ignore=[<fault>]` (`canary:<verifier name>`, `empty_references`). The canary report is kept and
handed to the monitor at step 0, so alerts.jsonl records it as before.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from rlvr.errors import UserError

log = logging.getLogger("rlvr")


class PreflightError(UserError):
    """A run that cannot learn, found before step 1 (exit status 2)."""


@dataclass
class Preflight:
    """What the pre-flight saw: the canary report for Monitor.check_canaries (None when canaries are off) and the
    faults the user chose to train through (monitor.preflight_ignore)."""

    canary_report: dict | None = None
    canary_total: int = 0
    canary_forms: dict = field(default_factory=dict)
    canary_rates: dict = field(default_factory=dict)  # verifier name -> canary_rates() (TPR, FPR, J, J_lo)
    ignored: list[str] = field(default_factory=list)


def run_preflight(cfg, train, reward) -> Preflight:
    """Check the training split `train` (datasets.Dataset with prompt/reference) and `reward` (rlvr.scoring.Reward)
    under `cfg` (rlvr Config). Returns a Preflight; raises PreflightError on a fault not in
    `cfg.monitor.preflight_ignore`."""
    ignore = set(cfg.monitor.preflight_ignore)
    out = Preflight()
    refs = list(train["reference"]) if len(train) else []
    empty = [i for i, r in enumerate(refs) if r is None or not str(r).strip()]
    if refs and len(empty) == len(refs):
        msg = (f"every training reference is empty ({len(refs)} rows, column data.reference_column = "
               f"'{cfg.data.reference_column}'): no completion can pass, so the run cannot learn")
        _fault("empty_references", msg + "; point data.reference_column at the answers", ignore, out)
    elif empty:
        log.warning("rlvr: %d of %d training references are empty (rows %s): those groups can never pass",
                    len(empty), len(refs), ", ".join(map(str, empty[:5])) + (", ..." if len(empty) > 5 else ""))
    src = cfg.data.reference_source
    if src and src.startswith("model:"):
        from rlvr.monitor.monitor import same_model

        labeller = src.split(":", 1)[1].strip()
        if same_model(labeller, cfg.model):
            _fault("self_labelled_references", f"data.reference_source = '{src}' declares the references were "
                   f"produced by the policy's own model ({cfg.model}): a verifier that reads them rewards agreement "
                   f"with the model's own answers, a closed loop (Li, Sun, Deng, ICML 2026: no task information "
                   f"beyond the model's); use human or program references, or a stronger labelling model", ignore, out)
    if cfg.monitor.canaries and len(train):
        from rlvr.monitor.canaries import canaries_for, canary_rates, form_counts, run_canaries, systematic_forms

        canaries = canaries_for(cfg, train, tolerance=reward_tolerance(reward))
        tallies: dict = {}
        report = run_canaries([(s.name, s.verifier, s.timeout_s) for s in reward.specs], canaries, counts=tallies)
        forms = form_counts(canaries)
        out.canary_report, out.canary_total, out.canary_forms = report, len(canaries), forms
        out.canary_rates = {n: canary_rates(t) for n, t in tallies.items()}
        for name, fails in report.items():
            errors = [f for f in fails if f["error"] and not str(f["error"]).startswith("timeout")]
            systematic = systematic_forms(fails, forms)
            rates = out.canary_rates.get(name, {})
            if not (errors or systematic or rates.get("fault")):
                continue
            why = (f"raised on {len(errors)} of {len(canaries)} canaries ({errors[0]['error']})" if errors else
                   "failed " + ", ".join(f"every {f} canary" for f in systematic) if systematic else
                   f"passes wrong answers about as often as right ones: TPR {rates['tpr']:.2f}, FPR "
                   f"{rates['fpr']:.2f}, Youden's J {rates['j']:.2f} with lower bound {rates['j_lo']:.2f} <= 0")
            pairs = "; ".join(_pair(f) for f in (errors or fails)[:2])
            _fault(f"canary:{name}", f"verifier '{name}' {why}: {pairs}. A verifier that fails its canaries "
                   f"grades the reference itself wrong, so training on it teaches nothing (rlvr/monitor/"
                   f"canaries.py); fix the verifier or the references", ignore, out)
    return out


def reward_tolerance(reward) -> tuple[float, float]:
    """(rel_tol, abs_tol): the widest numeric equivalence the reward's verifiers declare (verifiers.Verifier)."""
    rel = max((float(getattr(s.verifier, "rel_tol", 0.0) or 0.0) for s in reward.specs), default=0.0)
    ab = max((float(getattr(s.verifier, "abs_tol", 0.0) or 0.0) for s in reward.specs), default=0.0)
    return rel, ab


def _pair(f: dict) -> str:
    verdict = f"error {f['error']}" if f["error"] else f"score {f['score']:g}"
    return (f"{'must pass' if f['must_pass'] else 'must fail'} [{f['form']}] {f['completion']!r} vs reference "
            f"{f['reference']!r} -> {verdict}")


def _fault(name: str, message: str, ignore: set[str], out: Preflight) -> None:
    if name in ignore:
        out.ignored.append(name)
        log.warning("rlvr: pre-flight fault %s ignored (monitor.preflight_ignore): %s", name, message)
        return
    raise PreflightError(f"pre-flight: {message}. To train anyway: monitor.preflight_ignore=[{name}]")
