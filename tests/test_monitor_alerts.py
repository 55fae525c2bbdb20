"""Monitor alerts on synthetic streams built to trigger them: the expected first step (window respected), quiet on
an open control stream, no flapping, alerts.jsonl, stop_on_critical, pre-flight checks, state across resume."""

import json
import math

import pytest

from monitor_streams import (G, P, closed_step, length_hacked_step, no_signal_step, observe, open_step)
from rlvr.config import MonitorConfig, load_config
from rlvr.monitor import Monitor, Signal, read_alerts, signals_from_verifiers
from rlvr.monitor.alerts import AlertTracker
from verifiers import SignalSpec, get_verifier

BIN = SignalSpec("binary", True, "external", "cheap")
GRADED = SignalSpec("graded", True, "external", "cheap")


def _run(mon, gen, steps, start=1, **kw):
    events, rows = [], []
    for t in range(start, start + steps):
        m, alerts = observe(mon, t, gen(t, **kw))
        rows.append(m)
        events += [(a.step, a.name, a.rule, a.event) for a in alerts]
    return events, rows


def _mon(signal=BIN, **cfg):
    mon = Monitor(MonitorConfig(**cfg), [Signal("s", 1.0, signal)])
    assert mon.start() == []
    return mon


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("acc", [0.1, 0.3, 0.5])
def test_open_control_stream_raises_nothing(seed, acc):
    events, rows = _run(_mon(), open_step, 30, seed=seed, acc=acc)
    assert events == []
    assert all(r["monitor/class_efficiency"] == 1.0 for r in rows)  # an exact checker depends on the class only
    assert all(r[f"alerts/{n}"] == 0.0 for r in rows for n in ("CLOSED_LOOP", "SPURIOUS_SIGNAL", "NO_SIGNAL"))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_loop_fires_from_the_estimate_alone(seed):
    """Declared external (so no pre-flight), but the reward is the majority answer: the pooled closure ratio is 0
    from step 3 (first full window) and the condition must hold 3 steps: fires at step 5, exactly once."""
    events, rows = _run(_mon(), closed_step, 12, seed=seed)
    assert events == [(5, "CLOSED_LOOP", "closure_ratio", "fired")]
    assert all(r["monitor/closure_ratio"] == 0.0 for r in rows)
    assert math.isnan(rows[1]["monitor/closure_ratio_window"]) and rows[2]["monitor/closure_ratio_window"] == 0.0
    assert [r["alerts/CLOSED_LOOP"] for r in rows[:6]] == [0, 0, 0, 0, 1, 1]


def test_preflight_flags_a_recipe_whose_only_verifier_is_majority_vote(tmp_path):
    cfg = load_config("recipes/closure_closed.yaml")
    assert [v.name for v in cfg.verifiers] == ["majority_vote"]
    weighted = [(r.name, get_verifier(r.name, **r.kwargs), 1.0) for r in cfg.verifiers]
    said = []
    mon = Monitor(cfg.monitor, signals_from_verifiers(weighted), run_dir=tmp_path, echo=said.append)
    alerts = mon.start()
    assert [(a.name, a.rule, a.severity, a.step) for a in alerts] == [("CLOSED_LOOP", "declared_self", "critical", 0)]
    ev = dict(alerts[0].evidence)
    assert ev.pop("p_false_alarm_per_step") == 0.0 and "source='self'" in ev.pop("false_alarm_basis")
    assert ev == {"self_sourced": "majority_vote", "self_weight": 1.0}
    assert "CRITICAL CLOSED_LOOP" in said[0] and "external signal" in said[0]
    assert read_alerts(tmp_path)[0]["rule"] == "declared_self"
    # a partly self-sourced reward is a warning; an all-external one passes
    part = Monitor(None, [Signal("mv", 0.25, get_verifier("majority_vote").signal), Signal("math", 0.75, BIN)])
    assert [(a.rule, a.severity) for a in part.start()] == [("declared_self", "warning")]
    assert Monitor(None, [Signal("math", 1.0, BIN)]).start() == []
    # declared_checks=false turns the pre-flight off (the benchmark measures the estimate alone)
    assert Monitor(MonitorConfig(declared_checks=False), signals_from_verifiers(weighted)).start() == []


def test_judge_that_is_the_policy_is_a_closed_loop():
    judge = SignalSpec("graded", False, "judge", "expensive")
    mon = Monitor(None, [Signal("judge", 1.0, judge, lambda: "/models/policy")], policy_identity="/models/policy")
    assert [(a.name, a.rule) for a in mon.start()] == [("CLOSED_LOOP", "judge_is_policy:judge")]
    other = Monitor(None, [Signal("judge", 1.0, judge, lambda: "/models/big-judge")], policy_identity="/models/policy")
    assert other.start() == []


def test_spurious_feature_fires_after_window_when_hack_starts():
    mon = _mon(GRADED)
    events, _ = _run(mon, open_step, 4)
    assert events == []
    events, rows = _run(mon, length_hacked_step, 10, start=5)
    assert events == [(7, "SPURIOUS_SIGNAL", "feature:length_tertile", "fired")]
    assert rows[2]["monitor/spurious_share/length_tertile"] >= 0.3 and rows[2]["monitor/class_efficiency"] < 0.95


def test_reward_gold_gap_rule():
    """Reward and reference agree for 3 steps (baseline gap 0), then the reward rises to 0.5 above the reference:
    fires at the third step of the rise; a constant large gap from the start (a partial-credit reward) does not."""
    def stream(t, rise_at):
        d = open_step(t)
        d["reference_scores"] = [list(r) for r in d["rewards"]]
        if t >= rise_at:
            d["rewards"] = [[min(1.0, s + 0.5) for s in r] for r in d["rewards"]]
        return d

    mon = Monitor(None, [Signal("s", 1.0, GRADED)])
    mon.start()
    events, rows = _run(mon, stream, 10, rise_at=4)
    assert events == [(6, "SPURIOUS_SIGNAL", "reward_gold_gap", "fired")]
    assert rows[0]["monitor/reward_gold_gap"] == 0.0 and rows[5]["monitor/reward_gold_gap"] > 0.3
    mon2 = Monitor(None, [Signal("s", 1.0, GRADED)])
    mon2.start()
    assert [e for e in _run(mon2, stream, 10, rise_at=1)[0] if e[2] == "reward_gold_gap"] == []
    # a self-sourced reward is CLOSED_LOOP's business, not SPURIOUS_SIGNAL's
    mon3 = Monitor(MonitorConfig(declared_checks=False), [Signal("mv", 1.0, get_verifier("majority_vote").signal)])
    mon3.start()
    assert [e for e in _run(mon3, stream, 10, rise_at=4)[0] if e[2] == "reward_gold_gap"] == []


def test_no_signal_fires_then_clears_without_flapping(tmp_path):
    said = []
    mon = Monitor(None, [Signal("s", 1.0, BIN)], run_dir=tmp_path, echo=said.append)
    mon.start()
    pattern = "OOOOO" + "NNNNN" + "O" + "NN" + "OOOO"  # O: open step, N: no-signal step
    events = []
    for t, kind in enumerate(pattern, start=1):
        _, alerts = observe(mon, t, (open_step if kind == "O" else no_signal_step)(t))
        events += [(a.step, a.name, a.event) for a in alerts]
    # fires on the 3rd no-signal step (8); one open step (11) does not clear it; 3 open steps in a row (14-16) do
    assert events == [(8, "NO_SIGNAL", "fired"), (16, "NO_SIGNAL", "cleared")]
    logged = read_alerts(tmp_path)
    assert [(a["step"], a["event"]) for a in logged] == [(8, "fired"), (16, "cleared")]
    assert logged[0]["evidence"]["informative_group_frac"] == 0.0 and logged[0]["threshold"] == {"no_signal_max": 0.05}
    assert logged[0]["window"] == 3 and logged[0]["severity"] == "warning" and logged[0]["action"]
    assert logged[1]["onset"] == 8 and len(said) == 2 and "cleared" in said[1]


def test_tracker_window_and_unknown_steps():
    tr = AlertTracker()
    seq = [True, None, True, False, True, True, None, False, False, True, False, False, False]
    got = [(i, a.event) for i, c in enumerate(seq) if (a := tr.update("NO_SIGNAL", "r", "warning", c, i, 3, {}, {}))]
    # None holds the streak, False resets it: streaks 1,(1),2,0,1,2,(2),0,0,1,0,... never reach 3
    assert got == []
    seq = [True, True, None, True, False, True, False, False, False]
    got = [(i, a.event) for i, c in enumerate(seq) if (a := tr.update("NO_SIGNAL", "s", "warning", c, i, 3, {}, {}))]
    assert got == [(3, "fired"), (8, "cleared")]


def test_collapse():
    """Distinct answers and policy entropy halve and pass@G drops after 3 healthy steps."""
    def stream(t):
        d = open_step(t)
        if t > 3:
            for i in range(P):
                d["classes"][i] = [f"{i}9"] * G  # one wrong answer per group
                d["texts"][i] = [f"<answer>{i}9</answer>"] * G
                d["rewards"][i] = [0.0] * G
            d["rewards"][0] = [1.0] + [0.0] * (G - 1)
            d["policy_entropy"] = 0.3
        return d

    events, rows = _run(_mon(), stream, 8)
    assert events == [(6, "COLLAPSE", "diversity", "fired")]  # 3-step baseline, then 3 steps of the condition
    assert rows[5]["monitor/distinct_per_group"] == 1.0 and rows[5]["monitor/policy_entropy"] == 0.3
    # same fall in diversity and entropy but pass@G holding up (the open loop converging): no collapse
    def converging(t):
        d = stream(t)
        if t > 3:
            d["rewards"] = [[1.0] * G for _ in range(P)]
        return d
    assert not [e for e in _run(_mon(), converging, 8)[0] if e[1] == "COLLAPSE"]


def test_verifier_fault_errors_timeouts_and_constant_verdicts():
    def errors(t):
        d = open_step(t)
        d["errors"] = [["ValueError: boom" if j == 0 else None for j in range(G)] for _ in range(P)]  # 12.5%
        return d

    assert _run(_mon(), errors, 4)[0] == [(3, "VERIFIER_FAULT", "error_rate", "fired")]

    def timeouts(t):
        d = open_step(t)
        d["errors"] = [["timeout after 2.0s" if j < 2 else None for j in range(G)] for _ in range(P)]
        return d

    assert [e for e in _run(_mon(), timeouts, 4)[0] if e[1] == "VERIFIER_FAULT"] == [
        (3, "VERIFIER_FAULT", "timeout_rate", "fired")]

    def constant(t):
        d = open_step(t)
        d["rewards"] = [[1.0] * G for _ in range(P)]  # every different answer accepted
        return d

    events, rows = _run(_mon(), constant, 4)
    # every group is all 1: no gradient either
    assert events == [(3, "NO_SIGNAL", "informative_groups", "fired"), (3, "VERIFIER_FAULT", "constant_verdict_rate",
                                                                        "fired")]
    assert rows[0]["monitor/constant_verdict_rate"] == 1.0


def test_signal_drift_fires_on_the_step_the_identity_changes():
    ident = {"v": "judge-v1@sha256:aa"}
    mon = Monitor(None, [Signal("judge", 1.0, SignalSpec("graded", False, "judge", "expensive"), lambda: ident["v"])])
    mon.start()
    events, _ = _run(mon, open_step, 3)
    assert events == []
    ident["v"] = "judge-v2@sha256:bb"
    events, rows = _run(mon, open_step, 3, start=4)
    assert events == [(4, "SIGNAL_DRIFT", "identity:judge", "fired")] and rows[0]["alerts/SIGNAL_DRIFT"] == 1.0


def test_math_verifier_never_drifts():
    assert get_verifier("math").identity() is None


def _run_blind(mon, steps):
    """closed_step with the intervention: re-scored against other prompts' references, every pass survives."""
    for t in range(1, steps + 1):
        d = closed_step(t)
        sample = [r for r in d["rewards"] if max(r) >= 0.5][:2]
        mon.observe(t, d["rewards"], d["classes"], d["texts"], d["lengths"], intervention=(sample, sample))


def test_stop_on_critical_only_when_configured():
    mon = _mon(stop_on_critical=True)
    _run(mon, closed_step, 6)  # the passive closure_ratio rule alone is a warning (not strong evidence): no stop
    assert mon.tracker.active_rules() and mon.stop_reason is None
    mon = _mon(stop_on_critical=True)
    _run_blind(mon, 5)  # the intervention shows the verdicts ignore the reference: critical, stop
    assert mon.stop_reason == "CLOSED_LOOP (reference_blind) at step 3"
    mon = _mon(stop_on_critical=True)
    _run(mon, no_signal_step, 5)  # NO_SIGNAL is a warning: no stop
    assert mon.stop_reason is None
    mon = _mon()
    _run_blind(mon, 5)
    assert mon.stop_reason is None


def test_state_survives_resume(tmp_path):
    """10 steps in one monitor == 5 steps, state through JSON, a fresh monitor for steps 6-10."""
    def stream(t):
        return (open_step if t < 4 else closed_step)(t)

    ref = Monitor(None, [Signal("s", 1.0, BIN)], run_dir=tmp_path / "ref")
    ref.start()
    ref_events, ref_rows = _run(ref, stream, 10)
    assert ref_events == [(8, "CLOSED_LOOP", "closure_ratio", "fired")]

    a = Monitor(None, [Signal("s", 1.0, BIN)], run_dir=tmp_path / "run")
    a.start()
    ev1, rows1 = _run(a, stream, 5)
    state = json.loads(json.dumps(a.state_dict()))
    _run(a, stream, 2, start=6)  # steps 6-7 of a run that then crashed: their events must be dropped
    b = Monitor(None, [Signal("s", 1.0, BIN)], run_dir=tmp_path / "run")
    assert b.start(resume_step=5, state=state) == []  # pre-flight already done
    ev2, rows2 = _run(b, stream, 5, start=6)
    assert ev1 + ev2 == ref_events
    assert json.dumps(rows1 + rows2) == json.dumps(ref_rows)  # NaN-safe equality of every metric
    assert read_alerts(tmp_path / "run") == read_alerts(tmp_path / "ref")
    # without the state the window restarts and the alert comes later: the state is what makes resume exact
    c = Monitor(None, [Signal("s", 1.0, BIN)])
    c.start()
    assert _run(c, stream, 5, start=6)[0] != ev2


def _plurality_step(n_informative, P=8, G=8):
    """A step where the verdict is the plurality answer (closure ratio 0) in `n_informative` groups; the other
    groups tie (every completion the same wrong answer)."""
    rewards, classes = [], []
    for g in range(P):
        if g < n_informative:
            rewards.append([1.0] * 5 + [0.0] * 3)
            classes.append(["a"] * 5 + ["b"] * 3)
        else:
            rewards.append([0.0] * G)
            classes.append(["c"] * G)
    return rewards, classes


@pytest.mark.parametrize("per_step, fires", [(1, False), (4, True)])
def test_closed_loop_needs_enough_informative_groups_in_the_window(per_step, fires):
    """The default recipe's false alarm: a window of 0 + 2 + 0 informative groups read closure ratio 0.000 and
    fired CLOSED_LOOP (critical). With 1 informative group per step (3 per window) the ratio is 0 but undetermined;
    with 4 per step (12 per window, >= monitor.min_informative_groups = 8) the same pattern fires."""
    from rlvr.monitor import Monitor, Signal
    from verifiers import SignalSpec

    mon = Monitor(None, [Signal("ext", 1.0, SignalSpec("binary", True, "external", "cheap"))])
    mon.start()
    fired = []
    for t in range(1, 9):
        rewards, classes = _plurality_step(per_step)
        m, alerts = mon.observe(t, rewards, classes, [["x"] * 8 for _ in rewards], [[5] * 8 for _ in rewards])
        if t >= 3:
            assert m["monitor/closure_ratio_window"] == 0.0
            assert m["monitor/window_informative_groups"] == 3 * per_step
        fired += [(a.name, a.step) for a in alerts if a.event == "fired"]
    assert (("CLOSED_LOOP", 5) in fired) == fires, fired


def test_reference_dependence_vetoes_the_passive_closure_rule():
    """An exact verifier on a model that is right by plurality reads closure ratio 0 (the default recipe's false
    alarm). The same stream with the intervention showing that the verdicts follow the reference (every re-scored
    pass fails under another prompt's answer) does not fire CLOSED_LOOP; the reference-blind variant of it does."""
    from rlvr.monitor import Monitor, Signal
    from verifiers import SignalSpec

    def run(swapped_value):
        mon = Monitor(None, [Signal("ext", 1.0, SignalSpec("binary", True, "external", "cheap"))])
        mon.start()
        fired = []
        for t in range(1, 9):
            rewards, classes = _plurality_step(4)
            sample = rewards[:2]  # two groups with passes, 5 passes each
            inter = (sample, [[swapped_value if r >= 0.5 else r for r in row] for row in sample])
            m, alerts = mon.observe(t, rewards, classes, [["x"] * 8 for _ in rewards], [[5] * 8 for _ in rewards],
                                    intervention=inter)
            fired += [(a.name, a.rule, a.step) for a in alerts if a.event == "fired"]
        return m, fired

    m, fired = run(0.0)  # the verdict depends on the reference
    assert m["monitor/closure_ratio_window"] == 0.0 and m["monitor/reference_sensitivity_window"] == 1.0
    assert not [f for f in fired if f[0] == "CLOSED_LOOP"], fired
    m, fired = run(1.0)  # the passes survive any reference: blind
    assert m["monitor/reference_sensitivity_window"] == 0.0
    assert ("CLOSED_LOOP", "reference_blind", 3) in fired and ("CLOSED_LOOP", "closure_ratio", 5) in fired, fired


def test_every_rule_states_its_false_alarm_probability():
    """Each rule the monitor can fire has a false-alarm statement (reference_blind computes its own), and the
    simulated bound equals the exact one-sided 95% bound for 0 firings in the null benchmark's steps."""
    import json
    import re
    from pathlib import Path

    from rlvr.monitor.alerts import FALSE_ALARM, SIMULATED_NULL_UPPER95, _with_false_alarm

    src = Path("rlvr/monitor/monitor.py").read_text()
    rules = set(re.findall(r'(?:upd|self\.tracker\.update)\(\s*"[A-Z_]+",\s*f?"([a-z_]+)', src))
    assert {"closure_ratio", "reference_blind", "feature", "canary", "identity"} <= rules, rules
    rules |= {"error_rate", "timeout_rate", "constant_verdict_rate"}  # fired from a loop over these keys
    assert rules - {"reference_blind"} <= set(FALSE_ALARM), rules - set(FALSE_ALARM)
    null = json.loads(Path("benchmarks/results/monitor_null.json").read_text())["p_false_alarm_per_step"]
    for row in null.values():
        assert row["firings"] == 0
        exact = 1 - 0.05 ** (1 / row["steps"])  # Clopper-Pearson, one-sided 95%, 0 successes
        assert abs(row["p_per_step_upper95"] - exact) < 1e-12
        assert float(f"{exact:.1e}") == SIMULATED_NULL_UPPER95
    ev = _with_false_alarm("feature:length", {"spurious_share": 0.5})
    assert ev["p_false_alarm_per_step"] == SIMULATED_NULL_UPPER95 and "monitor_null.json" in ev["false_alarm_basis"]
    assert _with_false_alarm("informative_groups", {})["p_false_alarm_per_step"] is None


def test_fault_alert_points_at_the_groups_with_errors():
    """VERIFIER_FAULT (error_rate) names the groups whose verdicts errored, and no others."""
    from rlvr.monitor import Monitor, Signal
    from verifiers import SignalSpec

    mon = Monitor(MonitorConfig(bootstrap=0), [Signal("r", 1.0, SignalSpec("binary", True, "external", "cheap"))])
    mon.start()
    P, G = 4, 4
    rewards = [[1.0, 0.0, 1.0, 0.0]] * P
    classes = [["1", "2", "1", "3"]] * P
    errors = [[None] * G, [None] * G, ["RuntimeError: down", None, None, None], [None] * G]
    errors[1] = ["timeout after 2.0s"] * 2 + [None] * 2  # timeouts are not errors for error_rate, but rows of both
    fired = []
    for step in range(1, 6):
        _, alerts = mon.observe(step, rewards, classes, [["x"] * G] * P, [[3] * G] * P, errors=errors)
        fired += [a for a in alerts if a.event == "fired"]
    err = next(a for a in fired if a.rule == "error_rate")
    assert err.evidence["rows"] == {"file": "rollouts.jsonl", "step": err.step, "prompt_index": [1, 2],
                                    "shows": "verdicts with an error"}


def test_evidence_text_for_people():
    from rlvr.monitor.alerts import evidence_text

    ev = {"reference_sensitivity_window": 0.0, "p_false_alarm_per_step": 3.8e-24, "ci": [0.0, 0.28],
          "gap": float("nan"), "false_alarm_basis": "long text",
          "rows": {"file": "rollouts.jsonl", "step": 5, "prompt_index": [334, 261], "shows": "passes"}}
    assert evidence_text(ev) == ("reference_sensitivity_window=0.000, p_false_alarm_per_step=3.8e-24, "
                                 "ci=[0.0, 0.28], gap=-, rows=step 5 prompt_index 334, 261 (passes)")
    assert evidence_text({"rows": {"file": "rollouts.jsonl", "step": 18}}) == "rows=step 18"
