"""The info-gain monitor: per-step quantities (estimators.py) + declared facts -> metrics and alerts (alerts.py).

Usage (the trainer and the TRL callback do exactly this)::

    mon = Monitor(cfg.monitor, signals, run_dir=run_dir, reference_verifier=get_verifier("math"))
    alerts = mon.start(resume_step=None)                 # pre-flight checks on the declared signals
    metrics, alerts = mon.observe(step, rewards, classes, texts, lengths, errors=..., references=..., prompts=...)
    state = mon.state_dict()                             # into the checkpoint; mon.load_state_dict(state) on resume

Every input is [P][G] (group-major): P prompts, G completions each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from rlvr.config import MonitorConfig
from rlvr.monitor import estimators as est
from rlvr.monitor.alerts import NAMES, Alert, AlertLog, AlertTracker
from rlvr.monitor.canaries import systematic_forms
from rlvr.monitor.estimators import Estimate


@dataclass
class Signal:
    """A reward component as the monitor sees it: its declared SignalSpec, normalised weight, and an optional
    ``identity`` callable (the verifier's ``identity()``: a judge's model id/weights hash; None if it has none)."""

    name: str
    weight: float
    spec: Any  # verifiers.SignalSpec
    identity: Callable[[], str | None] | None = None
    judge_models: Callable[[], list[str]] | None = None  # the verifier's judge_models(): paths/ids of its judges


def signals_from_verifiers(weighted: list[tuple[str, Any, float]]) -> list[Signal]:
    """[(name, verifier, weight)] (as in rlvr.trainer.Reward.verifiers) -> Signals."""
    return [Signal(n, w, v.signal, getattr(v, "identity", None), getattr(v, "judge_models", None))
            for n, v, w in weighted]


def same_model(a: str, b: str) -> bool:
    """Two model references name the same model: equal strings, or existing paths to the same folder/file."""
    if a == b:
        return True
    try:
        import os

        return os.path.exists(a) and os.path.exists(b) and os.path.realpath(a) == os.path.realpath(b)
    except (OSError, ValueError):
        return False


def _nan(x: float | None) -> float:
    return float("nan") if x is None else float(x)


def _blind_false_alarm(passes: int, max_share: float, survive: float = 0.05) -> float:
    """P(the reference_blind condition holds) for an exact verifier: each re-scored pass survives a swapped reference
    with probability `survive` (an equivalent answer form of the donor's reference; 0.05 is a conservative bound,
    the donors are chosen with different references), so the condition, at most max_share of the passes changed,
    is the binomial tail P(Bin(passes, 1 - survive) <= floor(max_share * passes)). 6 passes: 1.6e-8; 8: 3.9e-11."""
    if passes <= 0:
        return float("nan")
    k = math.floor(max_share * passes)
    return sum(math.comb(passes, j) * (1 - survive) ** j * survive ** (passes - j) for j in range(k + 1))


def _ok(x: Any) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


class Monitor:
    """Estimates the monitor's quantities every step and raises alerts (see docs/monitor.md).

    Args:
        config: a :class:`rlvr.config.MonitorConfig` (thresholds, windows); None uses the defaults.
        signals: the reward's components with their declared SignalSpecs.
        run_dir: where alerts.jsonl goes (None: nowhere).
        reference_verifier: a held-out reference verifier (the recipe's eval.verifier). When given and it is not
            the training reward itself, it is run on the training completions each step to get the reward-gold gap.
        policy_identity: the policy's model id/path, compared with judges' identities (a judge that is the policy
            closes the loop).
        echo: called with each alert's one-line message (the trainer passes tqdm.write).
        reference_timeout_s: deadline of the reference verifier's verdicts per completion (the recipe's
            eval.timeout_s; rlvr.scoring).
    """

    def __init__(self, config: MonitorConfig | None = None, signals: list[Signal] | None = None, *,
                 run_dir: str | Path | None = None, reference_verifier: Any = None,
                 policy_identity: str | None = None, echo: Callable[[str], None] | None = None,
                 reference_timeout_s: float | None = 120.0):
        self.cfg = config or MonitorConfig()
        self.reference_timeout_s = reference_timeout_s
        self.signals = list(signals or [])
        total = sum(s.weight for s in self.signals) or 1.0
        self.self_weight = sum(s.weight for s in self.signals if s.spec.source == "self") / total
        single_binary = len(self.signals) == 1 and self.signals[0].spec.kind == "binary"
        self.kind = "binary" if single_binary or not self.signals else "graded"
        names = {s.name for s in self.signals}
        self.reference_verifier = reference_verifier
        self.use_reference = (reference_verifier is not None and self.cfg.reference_on_rollouts
                              and names != {getattr(reference_verifier, "name", None)})
        self.policy_identity = policy_identity
        self.echo = echo
        self.log = AlertLog(Path(run_dir) / "alerts.jsonl" if run_dir is not None else None)
        self.features = {n: est.get_feature(n) for n in self.cfg.features}
        self.tracker = AlertTracker()
        self.baseline: dict[str, list[float]] = {}
        self.recent: list[dict] = []  # the last `window` steps' verdict levels and self-predictions
        self.identities: dict[str, str | None] = {}
        self.preflight_done = False
        self.canary_metrics: dict[str, float] = {}  # the last canary run's rates, reported with the next step
        self.reward_history: list[list] = []  # [step, mean training reward]
        self.heldout_history: list[list] = []  # [step, per-problem greedy pass/fail of the held-out set]
        self.data_findings: list[str] = []  # what the pre-flight found about the data (for likely_causes)
        self.probe_noise: float | None = None  # the staleness probe's engine error at step 0
        self.probe_initial: list[list[float]] | None = None  # the initial policy's log-probs on the probe
        self.probe_engine0: list[list[float]] | None = None  # the engine's log-probs on the probe at step 0
        self.stop_reason: str | None = None
        self.pending: list[Alert] = []  # emitted since the last drain()
        # this step's context for the alerts' `rows` pointer: dataset rows of the groups, the intervention's groups,
        # and the groups showing each kind of evidence (_evidence_rows)
        self._prompt_index: list[int] | None = None
        self._picked: list[int] | None = None
        self._rows: dict[str, list[int]] = {}

    # -------------------------------------------------------------------------------------- lifecycle

    def start(self, resume_step: int | None = None, state: dict | None = None) -> list[Alert]:
        """Begin (or resume) a run: reset alerts.jsonl (fresh) or drop its events after ``resume_step``, restore
        ``state``, and run the pre-flight checks once per run. Returns the pre-flight alerts."""
        self.log.reset(resume_step)
        if state:
            self.load_state_dict(state)
        if self.preflight_done:
            return []
        alerts = self.preflight()
        self.preflight_done = True
        self._emit(alerts)
        return alerts

    def preflight(self) -> list[Alert]:
        """Declared facts, before training: a self-sourced reward (CLOSED_LOOP, critical when it is the whole
        reward, warning when it is part of it), a judge whose identity is the policy's (CLOSED_LOOP, critical).
        Records each signal's identity for SIGNAL_DRIFT."""
        out = []
        for s in self.signals:
            self.identities[s.name] = s.identity() if s.identity else None
        if self.cfg.declared_checks and self.self_weight > 0:
            sev = "critical" if self.self_weight >= 1.0 - 1e-9 else "warning"
            selfs = [s.name for s in self.signals if s.spec.source == "self"]
            a = self.tracker.update("CLOSED_LOOP", "declared_self", sev, True, 0, 1, {"self_weight": 0.0},
                                    {"self_sourced": ",".join(selfs), "self_weight": self.self_weight})
            out += [a] if a else []
        if self.cfg.declared_checks and self.policy_identity:
            for s in self.signals:
                models = list(s.judge_models() or []) if s.judge_models else []
                ident = self.identities.get(s.name)
                if s.spec.source == "judge" and (ident == self.policy_identity or any(
                        same_model(m, self.policy_identity) for m in models)):
                    a = self.tracker.update("CLOSED_LOOP", f"judge_is_policy:{s.name}", "critical", True, 0, 1,
                                            {}, {"judge": s.name, "identity": self.policy_identity})
                    out += [a] if a else []
        return out

    def state_dict(self) -> dict:
        """JSON-serialisable state: the alert windows, baselines, recorded identities. A stop request is not
        state: a run resumed after a monitor stop continues (its active alerts do not fire again)."""
        return {"tracker": self.tracker.state_dict(), "baseline": self.baseline, "identities": self.identities,
                "preflight_done": self.preflight_done, "recent": self.recent, "reward_history": self.reward_history,
                "heldout_history": self.heldout_history, "data_findings": self.data_findings,
                "probe_noise": self.probe_noise, "probe_initial": self.probe_initial,
                "probe_engine0": self.probe_engine0}

    def load_state_dict(self, state: dict) -> None:
        self.tracker.load_state_dict(state.get("tracker", {}))
        self.baseline = {k: list(v) for k, v in state.get("baseline", {}).items()}
        self.identities = dict(state.get("identities", {}))
        self.preflight_done = bool(state.get("preflight_done", False))
        self.recent = list(state.get("recent", []))
        self.reward_history = [list(x) for x in state.get("reward_history", [])]
        self.heldout_history = [list(x) for x in state.get("heldout_history", [])]
        self.data_findings = list(state.get("data_findings", []))
        self.probe_noise = state.get("probe_noise")
        self.probe_initial = state.get("probe_initial")
        self.probe_engine0 = state.get("probe_engine0")

    # -------------------------------------------------------------------------------------- one step

    def observe(self, step: int, rewards: Any, classes: list[list[Any]], texts: list[list[str]],
                lengths: Any, *, errors: list[list[str | None]] | None = None,
                references: list[list[Any]] | None = None, prompts: list[list[str | None]] | None = None,
                reference_scores: Any = None,
                policy_entropy: float | None = None,
                intervention: tuple[Any, Any] | None = None) -> tuple[dict[str, float], list[Alert]]:
        """Estimate this step's quantities and update the alerts.

        Args:
            step: the finished optimizer step (1-based, as in metrics.jsonl).
            rewards: [P][G] the reward the policy was trained on. classes: answer classes (None: no answer).
            texts: completion texts. lengths: completion lengths in tokens.
            errors: verifier error strings (None: no error). references/prompts: for the reference verifier.
            reference_scores: [P][G] reference verdicts, when the caller already has them (otherwise they are
                computed with ``reference_verifier`` from ``references``).
            policy_entropy: mean token entropy of the policy on these completions (the trainer's ``entropy``).
            intervention: (original [k][G], swapped [k][G]) rewards of k groups re-scored against another
                prompt's reference (the trainer's closure-by-intervention sample); None: not measured this step.
        Returns:
            (metrics: ``monitor/*`` and ``alerts/<NAME>`` (1 while active), new alert events).
        """
        cfg, B, seed = self.cfg, self.cfg.bootstrap, step
        rewards = est.as_rows(rewards)
        flat = [float(x) for row in rewards for x in row]
        if flat:  # the reward curve the held-out rules compare against
            self.reward_history = [h for h in self.reward_history if h[0] < step] + [[step, sum(flat) / len(flat)]]
        levels = est.discretize(rewards, self.kind, cfg.bins)
        s_hat = est.self_prediction(classes)
        lengths = est.as_rows(lengths)
        q: dict[str, float] = {}

        inf = est.informative_group_fraction(rewards)
        h = est.signal_entropy(levels, B, seed)
        nb = est.novel_bits(levels, s_hat, True, B, seed)
        cr = est.closure_ratio(levels, s_hat, cfg.min_signal_entropy, B, seed)
        counts = est.reference_sensitivity_counts(*intervention) if intervention is not None else (0, 0)
        self.recent = (self.recent + [{"levels": levels, "s_hat": s_hat, "intervention": list(counts)}])[-cfg.window:]
        rs = est.reference_sensitivity(*counts)
        q["reference_sensitivity"], q["reference_sensitivity_lo"], q["reference_sensitivity_hi"] = (
            _nan(rs.value), _nan(rs.lo), _nan(rs.hi))
        pooled = [sum(st.get("intervention", (0, 0))[i] for st in self.recent) for i in (0, 1)]
        rsw = est.reference_sensitivity(*pooled)
        q["reference_sensitivity_window"], q["intervention_passes_window"] = _nan(rsw.value), float(pooled[1])
        crw = Estimate(None)
        q["window_informative_groups"] = float("nan")
        if len(self.recent) == cfg.window:  # pooled over the window's groups: steadier than one step's
            pooled_l = [r for st in self.recent for r in st["levels"]]
            pooled_s = [r for st in self.recent for r in st["s_hat"]]
            crw = est.closure_ratio(pooled_l, pooled_s, cfg.min_signal_entropy, B, seed)
            q["window_informative_groups"] = float(sum(1 for r in pooled_l if r and max(r) != min(r)))
        for key, e in (("informative_group_frac", inf), ("signal_entropy", h), ("novel_bits", nb),
                       ("closure_ratio", cr), ("closure_ratio_window", crw)):
            q[key], q[key + "_lo"], q[key + "_hi"] = _nan(e.value), _nan(e.lo), _nan(e.hi)
        eta = est.class_efficiency(rewards, classes)
        q["class_efficiency"] = _nan(eta)
        shares = {}
        for name, fn in self.features.items():
            shares[name] = est.spurious_share(levels, fn(texts, lengths, classes), cfg.min_signal_entropy)
            q[f"spurious_share/{name}"] = _nan(shares[name])
        div = est.diversity(rewards, classes)
        q.update({k: v for k, v in div.items()})
        q["policy_entropy"] = _nan(policy_entropy)
        health = est.verifier_health(rewards, classes, errors or [[None] * len(r) for r in rewards])
        q.update(health)
        ref = None
        if reference_scores is None and self.use_reference and references is not None:
            reference_scores = self._reference_scores(texts, references, prompts)
        if reference_scores is not None:
            ref = est.as_rows(reference_scores)
            q.update(est.reward_gold_gap(rewards, ref))
            q["reference_pass@G"] = est.diversity(ref, classes)["pass@G"]

        self._evidence_rows(rewards, classes, ref, errors, intervention)
        alerts = self._rules(step, q, shares, eta)
        for a in alerts:
            if a.event == "fired":
                a.evidence["rows"] = self._pointer(a.name, a.rule, step)
        self._emit(alerts)
        self._prompt_index = self._picked = None
        metrics = {f"monitor/{k}": v for k, v in q.items()}
        metrics.update(self.canary_metrics)
        self.canary_metrics = {}
        active = self.tracker.active_names()
        metrics.update({f"alerts/{n}": float(n in active) for n in NAMES})
        return metrics, alerts

    def check_canaries(self, step: int, report: dict[str, list[dict]], total: int,
                       per_form: dict[str, int] | None = None, rates: dict[str, dict] | None = None) -> list[Alert]:
        """VERIFIER_FAULT (rule `canary:<verifier>`) for each verifier with failing canaries, fired at once (evidence:
        the count, the systematic failures and the first two failing pairs); cleared by a later clean canary run.
        `report` is rlvr.monitor.canaries.run_canaries' result over `total` canaries per verifier, `per_form` the
        number of canaries of each form.

        Critical when a failure is systematic: every canary of one form failed (every tagged / boxed / plain
        reference rejected: a format the grader cannot read; every perturbed reference accepted: a grader that
        accepts anything; every canonical solution rejected). Scattered failures (some rows of a form, the others
        passing) are a warning: a noisy verifier misgrades known answers now and then, and its loop can still be
        open (benchmarks/monitor/real_faults.py, open_noisy: held-out 0.17 -> 0.50). Without `per_form` every
        failure is critical.

        `rates` ({name: rlvr.monitor.canaries.canary_rates()}) adds the verifier's TPR, FPR and Youden's J with its
        bound to the evidence and to the next step's metrics (`monitor/canary_tpr/<name>`, `canary_fpr`,
        `canary_j_lo`); a determined J_lo <= 0 is critical (the verifier passes wrong answers about as often as right
        ones: GRPO learns the wrong thing below J = 0, arXiv 2601.04411)."""
        out = []
        for name, fails in report.items():
            systematic = systematic_forms(fails, per_form)
            r = (rates or {}).get(name)
            ev = {"failed": len(fails), "canaries": total, "systematic": [f"every {f} canary" for f in systematic],
                  "examples": fails[:2]}
            if r is not None:
                ev.update({k: r[k] for k in ("tpr", "tpr_ci", "fpr", "fpr_ci", "j", "j_lo", "determined")})
                self.canary_metrics.update({f"monitor/canary_{k}/{name}": _nan(r[k]) for k in ("tpr", "fpr", "j_lo")})
            severe = bool(systematic) or bool(r and r.get("fault"))
            a = self.tracker.update("VERIFIER_FAULT", f"canary:{name}", "critical" if severe else "warning",
                                    bool(fails) or bool(r and r.get("fault")), step, 1,
                                    {"canaries_must_all_behave": True, "youden_j_lo_max": 0.0}, ev)
            if a:
                out.append(a)
        self._emit(out)
        return out

    def observe_heldout(self, step: int, passed: list[bool]) -> tuple[dict[str, float], list[Alert]]:
        """Held-out accuracy as evidence: the greedy pass/fail of each held-out problem at `step` (0 = before
        training; the same problems every time). Two rules, each judged once per evaluation (window 1):

        * HELDOUT_DECLINE (rule `heldout_drop`, critical): the accuracy is below an earlier evaluation's by the exact
          one-sided McNemar test, Bonferroni over the earlier evaluations (rlvr.monitor.heldout.heldout_decline),
          p <= `monitor.heldout_alpha`: at most that false-alarm probability per evaluation when accuracy has not
          fallen. Rule `heldout_dip` (warning): the same test at `monitor.heldout_warn_alpha` (a real self-labelled
          run fell 11 -> 3 of 64 problems at its first evaluation with p = 0.011: flagged as a warning at once). A closed loop can only lose task information (Li, Sun, Deng, ICML 2026, data processing
          inequality); a broken signal teaches wrong answers. The evidence ranks `likely_causes` from what the
          other rules and the pre-flight saw.
        * SPURIOUS_SIGNAL (rule `heldout_gap`, warning): the training reward rose by at least `monitor.gap_rise`
          (mean of the last `window` steps against the first `window`) while held-out accuracy is not above its
          start: reward rising without the held-out set is the paper's reward-hacking signature.

        Returns (metrics `monitor/heldout_p_drop`, `monitor/heldout_reward_rise`, new alert events)."""
        from rlvr.monitor.heldout import heldout_decline

        cfg = self.cfg
        self.heldout_history = [h for h in self.heldout_history if h[0] < step] + [[step, [bool(x) for x in passed]]]
        metrics: dict[str, float] = {}
        alerts: list[Alert] = []
        d = heldout_decline([(s_, p_) for s_, p_ in self.heldout_history], cfg.heldout_alpha)
        if d is not None:
            metrics["monitor/heldout_p_drop"] = d["p_bonferroni"]
            ev = {"heldout_from": d["from"], "heldout_to": d["to"], "against_step": d["against_step"],
                  "p_bonferroni": d["p_bonferroni"], "comparisons": d["comparisons"], "n": len(passed),
                  "p_false_alarm_per_step": cfg.heldout_alpha,
                  "false_alarm_basis": "per evaluation: exact one-sided McNemar on the same problems, Bonferroni "
                                       "over the earlier evaluations (rlvr.monitor.heldout)"}
            weak = d["p_bonferroni"] <= cfg.heldout_warn_alpha
            if d["fired"] or weak:
                ev["likely_causes"] = self._likely_causes()
            a = self.tracker.update("HELDOUT_DECLINE", "heldout_drop", "critical", d["fired"], step, 1,
                                    {"heldout_alpha": cfg.heldout_alpha}, ev)
            if a:
                alerts.append(a)
            a = self.tracker.update("HELDOUT_DECLINE", "heldout_dip", "warning", weak and not d["fired"], step, 1,
                                    {"heldout_warn_alpha": cfg.heldout_warn_alpha},
                                    {**ev, "p_false_alarm_per_step": cfg.heldout_warn_alpha})
            if a:
                alerts.append(a)
        w = cfg.window
        if len(self.heldout_history) >= 2 and len(self.reward_history) >= 2 * w:
            rise = (sum(r for _, r in self.reward_history[-w:]) / w) - (sum(r for _, r in self.reward_history[:w]) / w)
            start, last = self.heldout_history[0][1], self.heldout_history[-1][1]
            acc0, acc1 = sum(start) / max(len(start), 1), sum(last) / max(len(last), 1)
            metrics["monitor/heldout_reward_rise"] = rise
            cond = rise >= cfg.gap_rise and acc1 <= acc0
            a = self.tracker.update("SPURIOUS_SIGNAL", "heldout_gap", "warning", cond, step, 1,
                                    {"gap_rise": cfg.gap_rise, "heldout_not_above_start": True},
                                    {"reward_rise": rise, "heldout_start": acc0, "heldout_now": acc1})
            if a:
                alerts.append(a)
        for a in alerts:
            if a.event == "fired":  # the two evaluations' files: the problems whose verdict changed show it
                a.evidence["rows"] = {"file": f"eval_step{step}.jsonl",
                                      "compare_with": f"eval_step{a.evidence.get('against_step', 0)}.jsonl",
                                      "step": step, "shows": "held-out problems right before and wrong now"}
        self._emit(alerts)
        return metrics, alerts

    def observe_engine(self, step: int, engine_lp: list[list[float]], current_lp: list[list[float]],
                       initial_lp: list[list[float]]) -> tuple[dict[str, float], list[Alert]]:
        """The staleness probe: per-token log-probabilities of a fixed probe (prompts with fixed completions) from
        the rollout engine after its sync, from the trainer's current policy and from the initial policy. With
        d(a, b) the mean absolute difference over the probe's tokens: step 0 records the engine's numeric error
        `noise0` = d(engine, initial) (bf16 sampling ~1e-2, fp32 ~1e-6). STALE_ENGINE (rule `probe`, critical,
        window 1) when the policy has moved, d(current, initial) > max(10 * noise0, 1e-5), and the engine is clearly
        closer to the initial policy than to the current one, d(engine, initial) < d(engine, current) / 2. (With
        3x and "closer" alone, a correctly synced bf16 engine fired at step 2 of a real run: bf16 rounding moves from
        step to step, 2.3x noise0 from the initial policy while the policy had moved 4.3x. With these margins a
        synced engine would need its error to grow 14-fold to fire; a no-op sync under bf16 is caught once the
        policy has moved 10x noise0, step 3-4 of the default recipe.) The same alert also fires when the engine's
        log-probs are those of step 0 to within 1e-3 of its rounding error, d(engine, engine at step 0) <=
        1e-3 * max(noise0, 1e-6), while the policy has moved more than twice that error, d(current, initial) >
        max(2 * noise0, 1e-5): a sync that had no effect at all, seen at step 1 under bf16 sampling too (a synced
        engine reproduces its step-0 log-probs only when the policy has not moved; a run of the default recipe
        with a no-op sync gave bit-identical engine log-probs at every step while d(current, initial) was 4x noise0
        at step 1, benchmarks/results/monitor_data_faults). Returns (metrics
        `sampling/probe_{engine_vs_current, engine_vs_initial, drift}` and, after step 0,
        `sampling/probe_engine_vs_step0`, new alert events)."""

        def d(a, b) -> float:
            pairs = [(x, y) for ra, rb in zip(a, b) for x, y in zip(ra, rb)]
            return sum(abs(x - y) for x, y in pairs) / max(len(pairs), 1)

        vs_cur, vs_init, drift = d(engine_lp, current_lp), d(engine_lp, initial_lp), d(current_lp, initial_lp)
        metrics = {"sampling/probe_engine_vs_current": vs_cur, "sampling/probe_engine_vs_initial": vs_init,
                   "sampling/probe_drift": drift}
        if step == 0 or self.probe_noise is None:
            self.probe_noise, self.probe_engine0 = vs_init, engine_lp
            return metrics, []
        moved = drift > max(10 * self.probe_noise, 1e-5)
        cond = moved and vs_init < 0.5 * vs_cur
        frozen_gate = drift > max(2 * self.probe_noise, 1e-5) and self.probe_engine0 is not None
        vs_step0 = d(engine_lp, self.probe_engine0) if self.probe_engine0 is not None else None
        if vs_step0 is not None:
            metrics["sampling/probe_engine_vs_step0"] = vs_step0
        frozen = frozen_gate and vs_step0 <= 1e-3 * max(self.probe_noise, 1e-6)
        a = self.tracker.update("STALE_ENGINE", "probe", "critical", (cond or frozen) if moved or frozen_gate else None,
                                step, 1,
                                {"drift_over_noise_min": 10.0, "engine_to_initial_over_engine_to_current_max": 0.5,
                                 "unchanged_engine": "engine_vs_step0 <= 1e-3 * noise0 with drift > 2 * noise0"},
                                {"engine_vs_current": vs_cur, "engine_vs_initial": vs_init, "policy_drift": drift,
                                 "noise_at_step_0": self.probe_noise, "engine_vs_step0": vs_step0,
                                 "engine_unchanged_since_step_0": bool(frozen)})
        alerts = [a] if a else []
        self._emit(alerts)
        return metrics, alerts

    def _likely_causes(self) -> list[str]:
        """What the other rules and the pre-flight saw, most specific first: the cause a held-out decline most
        likely has (broken data vs closure vs hacking vs no signal)."""
        active = self.tracker.active_rules()
        causes = list(self.data_findings)
        if any(k.startswith("CLOSED_LOOP") for k in active):
            causes.append("closure: the reward does not depend on the task (CLOSED_LOOP active)")
        if any(k.startswith("SPURIOUS_SIGNAL") for k in active):
            causes.append("reward hacking: the reward rises without the reference verifier (SPURIOUS_SIGNAL active)")
        if any(k.startswith("VERIFIER_FAULT") for k in active):
            causes.append("a faulty verifier (VERIFIER_FAULT active)")
        if any(k.startswith("NO_SIGNAL") for k in active):
            causes.append("no signal: groups tie, so updates are noise (NO_SIGNAL active)")
        causes.append("closure through the data: training references that come from the model itself (pseudo-labels,"
                      " majority votes) pass the verifiers and every per-step rule; check where they came from "
                      "(data.reference_source) against a trusted held-out set (eval.data)")
        return causes

    @property
    def intervenes(self) -> bool:
        """Whether closure by intervention applies: enabled, and every verifier declares an external source (a
        judge may legitimately ignore the reference; self-sourced rewards are closed by declaration)."""
        return self.cfg.intervention_groups > 0 and bool(self.signals) and all(
            s.spec.source == "external" for s in self.signals)

    def observe_batch(self, step: int, batch, policy_entropy: float | None = None, rescore=None
                      ) -> tuple[dict[str, float], list[Alert]]:
        """:meth:`observe` on a `rlvr.batch.RolloutBatch` (the trainer's step, first generation round).

        `rescore(items, group_size) -> rewards [n]` is the training reward; with it (and `intervenes`), up to
        `monitor.intervention_groups` groups with a passed verdict, picked by a seeded draw of `step`, are
        re-scored against the reference of another group whose reference differs (the next such group in batch
        order), for `monitor/reference_sensitivity`."""
        G = batch.group_size
        intervention = None
        self._prompt_index = list(batch.prompt_index)
        if rescore is not None and self.intervenes:
            intervention = self._intervene(step, batch, rescore)
        metrics, alerts = self.observe(step, batch.rewards, batch.answer_classes, batch.texts, batch.lengths,
                                       errors=batch.errors, references=[[r] * G for r in batch.references],
                                       prompts=[[q] * G for q in batch.prompts], policy_entropy=policy_entropy,
                                       intervention=intervention)
        metrics["monitor/intervention_calls"] = float(sum(map(len, intervention[0])) if intervention else 0)
        return metrics, alerts

    def _intervene(self, step: int, batch, rescore):
        import random

        from rlvr.scoring import PASS_THRESHOLD, make_items

        G, P = batch.group_size, batch.n_groups
        refs = [str(r) for r in batch.references]
        candidates = [g for g in range(P) if float(batch.rewards[g].max()) >= PASS_THRESHOLD
                      and any(refs[h] != refs[g] for h in range(P))]
        if not candidates:
            return None
        picked = sorted(random.Random(step * 7_919 + 13).sample(candidates, min(self.cfg.intervention_groups,
                                                                               len(candidates))))
        donors = [next(batch.references[(g + d) % P] for d in range(1, P) if refs[(g + d) % P] != refs[g])
                  for g in picked]
        texts = [c for g in picked for c in batch.texts[g]]
        items = make_items(texts, [r for r in donors for _ in range(G)], [batch.prompts[g] for g in picked
                                                                         for _ in range(G)])
        swapped = rescore(items, G)
        swapped = swapped.tolist() if hasattr(swapped, "tolist") else list(swapped)
        self._picked = picked
        return ([batch.rewards[g].tolist() for g in picked], [swapped[i * G:(i + 1) * G] for i in range(len(picked))])

    def _reference_scores(self, texts, references, prompts) -> list[list[float]]:
        """The reference verifier's pass/fail (1.0 / 0.0) on the rollouts, through rlvr.scoring (same item shape,
        deadline and pass rule as training and held-out evaluation). Rows may differ in length."""
        from rlvr.scoring import make_items, passed, score

        prompts = prompts or [[None] * len(t) for t in texts]
        flat_t = [t for tr in texts for t in tr]
        items = make_items(flat_t, [r for rr in references for r in rr], [p for pr in prompts for p in pr])
        verdicts = score(self.reference_verifier, items, 1, self.reference_timeout_s)
        out, i = [], 0
        for row in texts:
            out.append([float(passed(verdicts[i + j])) for j in range(len(row))])
            i += len(row)
        return out

    def _evidence_rows(self, rewards, classes, ref, errors, intervention) -> None:
        """Groups of this step that show each kind of evidence, for the alerts' `rows` pointer (positions in the
        batch; :meth:`_pointer` maps them to dataset rows)."""
        from rlvr.scoring import PASS_THRESHOLD

        P = len(rewards)
        rows: dict[str, list[int]] = {"disagree": [], "errors": [], "unchanged": [], "constant": []}
        if ref is not None:
            n = [sum((r >= PASS_THRESHOLD) != (g >= PASS_THRESHOLD) for r, g in zip(rewards[i], ref[i])) for i in range(P)]
            rows["disagree"] = sorted((i for i in range(P) if n[i]), key=lambda i: -n[i])
        rows["errors"] = [i for i in range(P) if errors and any(e is not None for e in errors[i])]
        rows["constant"] = [i for i in range(P) if len({c for c in classes[i] if c is not None}) >= 2
                            and len(set(rewards[i])) == 1 and rewards[i][0] > 0]
        if intervention is not None and self._picked:
            rows["unchanged"] = [g for g, o, w in zip(self._picked, *intervention)
                                 if any(a >= PASS_THRESHOLD and b >= PASS_THRESHOLD for a, b in zip(o, w))]
        self._rows = rows

    _SHOWS = {  # (alert name, rule prefix) -> (kind of evidence rows, what they show)
        ("CLOSED_LOOP", "reference_blind"): ("unchanged", "completions that still pass when re-scored against "
                                                          "another prompt's reference"),
        ("CLOSED_LOOP", "closure_ratio"): ("disagree", "rewards that disagree with the reference verifier"),
        ("SPURIOUS_SIGNAL", "feature"): ("disagree", "rewards that disagree with the reference verifier"),
        ("SPURIOUS_SIGNAL", "reward_gold_gap"): ("disagree", "rewards that disagree with the reference verifier"),
        ("VERIFIER_FAULT", "error_rate"): ("errors", "verdicts with an error"),
        ("VERIFIER_FAULT", "timeout_rate"): ("errors", "verdicts with an error"),
        ("VERIFIER_FAULT", "constant_verdict_rate"): ("constant", "groups whose different answers got one "
                                                                  "positive score"),
    }

    def _pointer(self, name: str, rule: str, step: int) -> dict:
        """Where in RUN_DIR/rollouts.jsonl this alert's evidence can be read: the step, and up to 3 groups
        (`prompt_index`, as in the file) that show it, with what they show."""
        out: dict[str, Any] = {"file": "rollouts.jsonl", "step": step}
        kind, shows = self._SHOWS.get((name, rule.split(":", 1)[0]), (None, None))
        groups = self._rows.get(kind, []) if kind else []
        if kind == "unchanged" and not groups:  # this step's sample had no survivor: fall back to disagreement
            shows, groups = self._SHOWS[("CLOSED_LOOP", "closure_ratio")][1], self._rows.get("disagree", [])
        if groups:
            idx = self._prompt_index
            out["prompt_index"] = [idx[g] if idx else g for g in groups[:3]]
            out["shows"] = shows
        return out

    # -------------------------------------------------------------------------------------- the rules

    def _base(self, key: str, value: float | None) -> float | None:
        """Mean of the first ``window`` defined values of a quantity in this run (its baseline), None until then."""
        buf = self.baseline.setdefault(key, [])
        if len(buf) < self.cfg.window and _ok(value):
            buf.append(float(value))
            return None
        return sum(buf) / len(buf) if len(buf) >= self.cfg.window else None

    def _rules(self, step: int, q: dict[str, float], shares: dict[str, float | None], eta: float | None) -> list[Alert]:
        cfg, W, out = self.cfg, self.cfg.window, []

        def upd(name, rule, sev, cond, thr, ev):
            a = self.tracker.update(name, rule, sev, cond, step, W, thr, ev)
            if a:
                out.append(a)

        cr = q["closure_ratio_window"]
        enough = q.get("window_informative_groups", 0.0) >= cfg.min_informative_groups  # else undetermined
        rsw, passes = q["reference_sensitivity_window"], q["intervention_passes_window"]
        measured = _ok(rsw) and passes >= cfg.min_intervention_passes
        # The intervention outranks the correlation: when swapping the reference demonstrably changes the verdicts,
        # a low passive ratio means the model is right by majority (an exact verifier on a learning model reads
        # ~0 there), not that the reward echoes the model; the condition is then false.
        depends = measured and rsw > cfg.reference_sensitivity_min
        cond = False if depends else ((cr < cfg.closure_ratio_min) if _ok(cr) and enough else None)
        # A warning, not critical: a correlation alone is not strong evidence. Simulated open loops with an exact
        # verifier read a pooled ratio < 0.05 often once the model is right by plurality (52-74 firings per 1,000
        # steps at 90% accuracy without the intervention; benchmarks/monitor/null_false_alarms.py). The critical
        # CLOSED_LOOPs are the declared ones and reference_blind (by intervention).
        upd("CLOSED_LOOP", "closure_ratio", "warning", cond,
            {"closure_ratio_min": cfg.closure_ratio_min},
            {"closure_ratio_window": cr, "ci": [q["closure_ratio_window_lo"], q["closure_ratio_window_hi"]],
             "closure_ratio_step": q["closure_ratio"],
             "window_informative_groups": q.get("window_informative_groups"),
             "novel_bits": q["novel_bits"], "signal_entropy": q["signal_entropy"]})

        upd("CLOSED_LOOP", "reference_blind", "critical",
            (rsw <= cfg.reference_sensitivity_min) if measured else None,
            {"reference_sensitivity_min": cfg.reference_sensitivity_min,
             "min_intervention_passes": cfg.min_intervention_passes},
            {"reference_sensitivity_window": rsw, "intervention_passes_window": passes,
             "ci": [q["reference_sensitivity_lo"], q["reference_sensitivity_hi"]],
             "p_false_alarm_per_step": _blind_false_alarm(int(passes), cfg.reference_sensitivity_min)})

        inf = q["informative_group_frac"]
        upd("NO_SIGNAL", "informative_groups", "warning", inf <= cfg.no_signal_max if _ok(inf) else None,
            {"no_signal_max": cfg.no_signal_max},
            {"informative_group_frac": inf, "pass@1": q["pass@1"], "pass@G": q["pass@G"]})

        for name, share in shares.items():
            cond = None
            if _ok(share) and share >= cfg.spurious_share_max:
                cond = (eta < cfg.class_efficiency_min) if _ok(eta) else None
            elif _ok(share):
                cond = False
            upd("SPURIOUS_SIGNAL", f"feature:{name}", "warning", cond,
                {"spurious_share_max": cfg.spurious_share_max, "class_efficiency_min": cfg.class_efficiency_min},
                {"spurious_share": share, "class_efficiency": _nan(eta), "signal_entropy": q["signal_entropy"]})

        if "reward_gold_gap" in q and self.self_weight < 1.0:
            gap = q["reward_gold_gap"]
            base = self._base("reward_gold_gap", gap)
            cond = None if base is None else (gap >= cfg.gap_max and gap - base >= cfg.gap_rise)
            upd("SPURIOUS_SIGNAL", "reward_gold_gap", "warning", cond,
                {"gap_max": cfg.gap_max, "gap_rise": cfg.gap_rise},
                {"reward_gold_gap": gap, "gap_at_start": _nan(base), "reference_pass@1": q["reference_pass@1"],
                 "reward": q["reference_pass@1"] + gap})

        d, ent = q["distinct_per_group"], q["policy_entropy"]
        pg = q.get("reference_pass@G", q["pass@G"])
        bd, be, bp = self._base("distinct", d), self._base("entropy", ent), self._base("pass@G", pg)
        cond = None
        if None not in (bd, be, bp) and _ok(ent):
            keep = 1.0 - cfg.collapse_drop
            cond = d <= keep * bd and ent <= keep * be and pg < bp
        upd("COLLAPSE", "diversity", "warning", cond, {"collapse_drop": cfg.collapse_drop},
            {"distinct_per_group": d, "distinct_at_start": _nan(bd), "policy_entropy": ent,
             "entropy_at_start": _nan(be), "pass@G": pg, "pass@G_at_start": _nan(bp)})

        for key, thr in (("error_rate", cfg.error_rate_max), ("timeout_rate", cfg.timeout_rate_max),
                         ("constant_verdict_rate", cfg.constant_verdict_max)):
            v = q[key]
            upd("VERIFIER_FAULT", key, "critical" if key != "constant_verdict_rate" else "warning",
                (v > thr) if _ok(v) else None, {f"{key}_max": thr}, {key: v})

        for s in self.signals:
            if s.identity is None:
                continue
            now, before = s.identity(), self.identities.get(s.name)
            a = self.tracker.update("SIGNAL_DRIFT", f"identity:{s.name}", "critical", now != before, step, 1,
                                    {}, {"verifier": s.name, "identity_at_start": before, "identity_now": now})
            if a:
                out.append(a)
        return out

    def drain(self) -> list[Alert]:
        """The alert events emitted since the last call (pre-flight ones included), oldest first; for other sinks
        (the trainer forwards them to W&B)."""
        out, self.pending = self.pending, []
        return out

    def _emit(self, alerts: list[Alert]) -> None:
        self.log.write(alerts)
        self.pending += list(alerts)
        for a in alerts:
            if self.echo is not None:
                self.echo(a.message())
            if a.event == "fired" and a.severity == "critical" and self.cfg.stop_on_critical and not self.stop_reason:
                self.stop_reason = f"{a.name} ({a.rule}) at step {a.step}"
