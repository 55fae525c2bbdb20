"""Alerts of the info-gain monitor: what they are, and the window logic that keeps them from flapping.

An alert is identified by (name, rule): one name can be raised by several rules (CLOSED_LOOP by the declared
signal source before training, or by the closure-ratio estimate during it), each tracked on its own. A rule
reports a condition every step: True (holds), False (does not hold) or None (cannot be judged this step, e.g. no
signal to measure); None leaves the rule's state unchanged.

* fires (event "fired") on the step the condition has held for ``window`` consecutive judged steps;
* does not fire again while active;
* clears (event "cleared") after the condition has failed for ``window`` consecutive judged steps, so a
  condition that flickers T,T,T,F,T stays one alert.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

NAMES = ("CLOSED_LOOP", "NO_SIGNAL", "SPURIOUS_SIGNAL", "COLLAPSE", "VERIFIER_FAULT", "SIGNAL_DRIFT",
         "HELDOUT_DECLINE", "STALE_ENGINE")
SEVERITIES = ("info", "warning", "critical")

ACTIONS = {
    "CLOSED_LOOP": "The evidence says the reward carries no task information beyond the model's own answers (or "
                   "does not depend on the reference). It does not say accuracy falls at once: such a loop can raise "
                   "greedy accuracy for a while by sharpening what the model already knows (as test-time RL "
                   "reports), but it cannot teach what the reward does not know. Read the rows of rollouts.jsonl "
                   "named in the evidence (`rows`: step and prompt_index; reward against reference), then add an external signal (a reference-answer "
                   "verifier, tests, a fixed judge that is not the policy) or stop the run.",
    "NO_SIGNAL": "No group has differing verdicts, so there is no gradient. Reward ~0: the task is too hard or "
                 "completions are truncated (raise sampling.max_new_tokens, easier data, few-shot prompt). Reward ~1: "
                 "the data is exhausted (harder problems).",
    "SPURIOUS_SIGNAL": "The reward is explained by a surface feature, or rises while the reference verifier does "
                       "not confirm it (reward hacking). Inspect rollouts.jsonl, remove or decorrelate the feature "
                       "from the reward, or reduce that verifier's weight.",
    "COLLAPSE": "Exploration is collapsing: fewer distinct answers and lower policy entropy while pass@G falls. "
                "Lower the learning rate, raise the temperature, add a KL penalty (algorithm.beta) or stop and "
                "restart from an earlier checkpoint.",
    "VERIFIER_FAULT": "The verifier is failing (errors, timeouts) or gives the same verdict to different answers. "
                      "Check its rewards/<name>/error_rate, its timeout_s and its reference column before trusting "
                      "the reward.",
    "SIGNAL_DRIFT": "The judge changed during the run (identity or weights): verdicts before and after are not "
                    "comparable and a judge that moves with the policy closes the loop. Pin the judge.",
    "STALE_ENGINE": "The rollout engine samples from older weights than the policy being trained: after the sync its "
                    "log-probabilities on a fixed probe are closer to the initial policy than to the current one, so "
                    "every rollout comes from the base model and training learns nothing (the silent class of "
                    "verl#7495 and unsloth#8701). Check the weight sync (a LoRA adapter never merged, a no-op "
                    "update_weights, a sleeping engine that reloads old weights) before training further.",
    "HELDOUT_DECLINE": "Held-out accuracy fell significantly below an earlier evaluation while training went on: "
                       "the loop is losing task information. The evidence's `likely_causes` ranks what the other "
                       "rules saw (a reward that rises without the held-out set: hacking; training references that "
                       "disagree with held-out ones: broken or self-labelled data; a reward blind to the reference: "
                       "closure). Stop, restore the checkpoint before the decline (`against_step`), and check the "
                       "training references against a trusted source (eval.data) before going on.",
}


# Each rule's false-alarm probability per step under its null (an open loop with an exact verifier), stated in every
# alert it fires as evidence["p_false_alarm_per_step"] (with evidence["false_alarm_basis"]). Keyed by the rule
# before any ":" (feature:length -> feature). A float is an upper bound; None means the alert is not a false alarm
# when it fires. SIMULATED is the exact (Clopper-Pearson) 95% upper bound from 0 firings in 5,000 simulated null
# steps (benchmarks/monitor/null_false_alarms.py, benchmarks/results/monitor_null.json; a test keeps the two equal).
# reference_blind computes its own binomial bound from the passes it re-scored (rlvr.monitor.monitor).
SIMULATED_NULL_UPPER95 = 6.0e-4
_SIM = (SIMULATED_NULL_UPPER95, "simulated: 0 firings in 5,000 open-loop steps with an exact verifier, accuracy "
                                "0.1-0.9 (benchmarks/results/monitor_null.json); exact 95% upper bound")
FALSE_ALARM: dict[str, tuple[float | None, str]] = {
    "declared_self": (0.0, "by construction: fires only on a verifier that declares source='self'"),
    "judge_is_policy": (0.0, "by construction: fires only when a judge's identity() is the policy's"),
    "closure_ratio": _SIM,
    "feature": _SIM,
    "reward_gold_gap": _SIM,
    "diversity": _SIM,
    "constant_verdict_rate": _SIM,
    "error_rate": (0.0, "by construction: an exact verifier returns no errors"),
    "timeout_rate": (0.0, "by construction: an exact verifier within its deadline returns no timeouts"),
    "canary": (0.0, "by construction: an exact verifier passes the reference and fails a perturbed one"),
    "identity": (0.0, "by construction: fires only on a changed verifier identity()"),
    "informative_groups": (None, "not a false alarm when it fires: every group tied means no gradient"),
    # heldout_drop states its own bound in its evidence (monitor.heldout_alpha, per evaluation: exact McNemar,
    # Bonferroni over the earlier evaluations); heldout_gap is counted on real runs (docs/monitor.md)
    "heldout_drop": (None, "computed per evaluation: exact one-sided McNemar, Bonferroni over earlier evaluations"),
    "heldout_dip": (None, "computed per evaluation: exact one-sided McNemar, Bonferroni over earlier evaluations"),
    "heldout_gap": (float("nan"), "measured on real runs (docs/monitor.md); no closed form"),
    "probe": (0.0, "by the triangle inequality: an engine synced to the current policy is within half its distance "
                   "to the initial one only if its error grew 14-fold over its step-0 error (the policy must have "
                   "moved 10x that error); a 3x/closer version fired once on a real bf16 run"),
}


@dataclass
class Alert:
    """One alert event, as written to RUN_DIR/alerts.jsonl."""

    name: str
    rule: str
    severity: str
    step: int
    event: str  # "fired" | "cleared"
    threshold: dict[str, Any]
    window: int
    evidence: dict[str, Any] = field(default_factory=dict)
    action: str = ""
    onset: int | None = None  # for "cleared": the step it fired

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def message(self) -> str:
        ev = evidence_text(self.evidence)
        if self.event == "cleared":
            return f"[monitor] {self.name} ({self.rule}) cleared at step {self.step} (active since step {self.onset})"
        return (f"[monitor] {self.severity.upper()} {self.name} ({self.rule}) at step {self.step}: {ev}. "
                f"Action: {self.action}")


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if v != v or v in (float("inf"), float("-inf")):
            return "-"
        return f"{v:.1e}" if 0 < abs(v) < 1e-3 else f"{v:.3f}"
    return str(v)


def evidence_text(evidence: dict[str, Any]) -> str:
    """One line of an alert's evidence for people (console, `rlvr monitor`, the report): numbers to 3 decimals
    (scientific below 1e-3, '-' when undefined), the rows pointer as `rows=step N prompt_index a, b (what they
    show)`, the false-alarm basis left to alerts.jsonl."""
    parts = []
    for k, v in evidence.items():
        if k == "false_alarm_basis":
            continue
        if k == "rows" and isinstance(v, dict):
            idx = ", ".join(map(str, v.get("prompt_index", [])))
            v = f"step {v.get('step')}" + (f" prompt_index {idx} ({v.get('shows')})" if idx else "")
        parts.append(f"{k}={_fmt(v)}")
    return ", ".join(parts)


def _with_false_alarm(rule: str, evidence: dict[str, Any]) -> dict[str, Any]:
    """`evidence` with the rule's p_false_alarm_per_step and false_alarm_basis (FALSE_ALARM) when it has none."""
    if "p_false_alarm_per_step" in evidence:
        return {**evidence, "false_alarm_basis": evidence.get(
            "false_alarm_basis", "binomial bound from the passes re-scored in the window")}
    p, basis = FALSE_ALARM.get(rule.split(":", 1)[0], (float("nan"), "not measured"))
    return {**evidence, "p_false_alarm_per_step": p, "false_alarm_basis": basis}


@dataclass
class RuleState:
    streak: int = 0
    false_streak: int = 0
    active: bool = False
    onset: int | None = None


class AlertTracker:
    """Window logic for every (name, rule); its state is a plain dict (saved in checkpoints)."""

    def __init__(self) -> None:
        self.rules: dict[str, RuleState] = {}

    def update(self, name: str, rule: str, severity: str, cond: bool | None, step: int, window: int,
               threshold: dict[str, Any], evidence: dict[str, Any]) -> Alert | None:
        assert name in NAMES and severity in SEVERITIES, (name, severity)
        st = self.rules.setdefault(f"{name}:{rule}", RuleState())
        if cond is None:
            return None
        if cond:
            st.streak += 1
            st.false_streak = 0
            if not st.active and st.streak >= window:
                st.active, st.onset = True, step
                evidence = _with_false_alarm(rule, evidence)
                return Alert(name, rule, severity, step, "fired", threshold, window, evidence, ACTIONS[name], step)
            return None
        st.streak = 0
        st.false_streak += 1
        if st.active and st.false_streak >= window:
            onset, st.active, st.onset = st.onset, False, None
            return Alert(name, rule, "info", step, "cleared", threshold, window, evidence, ACTIONS[name], onset)
        return None

    def active_names(self) -> set[str]:
        return {k.split(":", 1)[0] for k, st in self.rules.items() if st.active}

    def active_rules(self) -> dict[str, int | None]:
        return {k: st.onset for k, st in self.rules.items() if st.active}

    def state_dict(self) -> dict[str, dict]:
        return {k: asdict(v) for k, v in self.rules.items()}

    def load_state_dict(self, state: dict[str, dict]) -> None:
        self.rules = {k: RuleState(**v) for k, v in state.items()}


class AlertLog:
    """RUN_DIR/alerts.jsonl: one JSON line per event, appended and flushed."""

    def __init__(self, path: Path | None) -> None:
        self.path = Path(path) if path is not None else None

    def reset(self, keep_until_step: int | None) -> None:
        """Fresh run: an empty file (it exists from the start, so `tail -f` and tools can open it before any alert).
        Resume from step k: keep only events with step <= k (a crashed run's later events are replayed by the
        resumed steps)."""
        if self.path is not None:
            from rlvr.metrics import reset_step_log

            reset_step_log(self.path, keep_until_step)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.touch()

    def write(self, alerts: list[Alert]) -> None:
        if self.path is None or not alerts:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as fh:
            for a in alerts:
                fh.write(json.dumps(a.to_dict(), default=str) + "\n")
            fh.flush()


def read_alerts(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "alerts.jsonl"
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
