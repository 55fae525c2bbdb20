"""The monitor's false alarms under its null: simulated open loops with an exact verifier.

    python benchmarks/monitor/null_false_alarms.py [--steps 1000] [--out benchmarks/results/monitor_null.json]

Each step has P = 8 prompts x G = 8 samples (the default recipe's batch). Prompt q has an accuracy p_q drawn from
Beta(a, b) with mean `acc` (a + b = 4: some prompts easy, some hard); a sample is the right answer with
probability p_q, else one of 3 wrong answers with probabilities 0.6 / 0.3 / 0.1 (so the plurality answer is
sometimes wrong). The verdict is exact: 1 iff the answer is right. That is an open loop: the verifier reads the
reference, so every CLOSED_LOOP is a false alarm. The intervention sample re-scores monitor.intervention_groups (3) groups with a pass against
another prompt's answer: a right answer turns wrong unless the wrong answer equals the donor (probability 1/50).

Three monitors see the same streams: `before` (the rules as they were: no evidence minimum, no intervention),
`min_evidence` (monitor.min_informative_groups = 8, no intervention: what a judge-sourced reward gets) and
`default` (both, as the trainer runs it). Reported: CLOSED_LOOP firings per 1,000 steps, per accuracy; and for the
`default` monitor every alert's firings per 1,000 steps, per accuracy, with the per-step false-alarm probability
over all accuracies and its exact one-sided 95% upper bound (Clopper-Pearson; 0 firings in N steps: 1 - 0.05^(1/N),
about 3/N). Completion lengths are drawn independently of the verdict, so a length feature carries no signal:
any SPURIOUS_SIGNAL would be false. NO_SIGNAL is not a false alarm when it fires: it reports steps whose groups
all tie, which a hard task (accuracy 0.1) really has.
Pure Python (the monitor's estimators), bootstrap off; a few minutes on one core.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from rlvr.config import MonitorConfig  # noqa: E402
from rlvr.monitor import Monitor, Signal  # noqa: E402
from verifiers import SignalSpec  # noqa: E402

P, G = 8, 8


def stream(acc: float, steps: int, seed: int):
    rng = random.Random(seed)
    a = 4 * acc
    b = 4 - a
    for _ in range(steps):
        rewards, classes, inter_o, inter_s = [], [], [], []
        for q in range(P):
            p = rng.betavariate(max(a, 1e-3), max(b, 1e-3))
            row_r, row_c = [], []
            for _ in range(G):
                if rng.random() < p:
                    row_r.append(1.0)
                    row_c.append(f"right{q}")
                else:
                    w = rng.choices(["w0", "w1", "w2"], weights=[0.6, 0.3, 0.1])[0]
                    row_r.append(0.0)
                    row_c.append(f"{w}-{q}")
            rewards.append(row_r)
            classes.append(row_c)
        passing = [g for g in range(P) if max(rewards[g]) >= 0.5]
        for g in rng.sample(passing, min(MonitorConfig().intervention_groups, len(passing))):
            inter_o.append(rewards[g])
            inter_s.append([1.0 if (r >= 0.5 and rng.random() < 1 / 50) else 0.0 for r in rewards[g]])
        yield rewards, classes, ((inter_o, inter_s) if inter_o else None)


def run(acc: float, steps: int, seed: int) -> dict[str, int]:
    sig = [Signal("math", 1.0, SignalSpec("binary", True, "external", "cheap"))]
    mons = {"before": (Monitor(MonitorConfig(bootstrap=0, min_informative_groups=1), sig), False),
            "min_evidence": (Monitor(MonitorConfig(bootstrap=0), sig), False),
            "default": (Monitor(MonitorConfig(bootstrap=0), sig), True)}
    for m, _ in mons.values():
        m.start()
    fires = {k: 0 for k in mons}
    every: dict[str, int] = {}  # the default monitor's firings per "NAME (severity)"
    texts = [["x"] * G for _ in range(P)]
    len_rng = random.Random(seed + 1)
    for t, (rewards, classes, inter) in enumerate(stream(acc, steps, seed), start=1):
        lengths = [[len_rng.randint(5, 60) for _ in range(G)] for _ in range(P)]
        for k, (m, use_inter) in mons.items():
            _, alerts = m.observe(t, rewards, classes, texts, lengths, intervention=inter if use_inter else None)
            fires[k] += sum(a.name == "CLOSED_LOOP" and a.event == "fired" for a in alerts)
            if k == "default":
                for a in alerts:
                    if a.event == "fired":
                        key = f"{a.name} ({a.severity})"
                        every[key] = every.get(key, 0) + 1
    return fires, every


def upper95(k: int, n: int) -> float:
    """Exact one-sided 95% upper bound of a binomial rate with k events in n trials (Clopper-Pearson)."""
    if k >= n:
        return 1.0
    lo, hi = k / n, 1.0
    for _ in range(60):  # bisection on P(X <= k; p) = 0.05
        mid = (lo + hi) / 2
        cdf, term = 0.0, (1 - mid) ** n
        for i in range(k + 1):
            cdf += term
            term *= (n - i) / (i + 1) * mid / (1 - mid) if mid < 1 else 0.0
        lo, hi = (mid, hi) if cdf > 0.05 else (lo, mid)
    return hi


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--accuracies", type=float, nargs="+", default=[0.1, 0.3, 0.5, 0.7, 0.9])
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/monitor_null.json"))
    a = ap.parse_args()
    rows, per_alert, totals = {}, {}, {}
    for acc in a.accuracies:
        f, every = run(acc, a.steps, seed=int(acc * 1000))
        rows[str(acc)] = {k: 1000 * v / a.steps for k, v in f.items()}
        per_alert[str(acc)] = {k: 1000 * v / a.steps for k, v in sorted(every.items())}
        for k, v in every.items():
            totals[k] = totals.get(k, 0) + v
        print(f"accuracy {acc:.1f}: CLOSED_LOOP firings per 1,000 open-loop steps " +
              ", ".join(f"{k} {v:.1f}" for k, v in rows[str(acc)].items()) +
              f" | default monitor, every alert: {per_alert[str(acc)] or 'none'}", flush=True)
    n = a.steps * len(a.accuracies)
    names = ["CLOSED_LOOP (critical)", "CLOSED_LOOP (warning)", "SPURIOUS_SIGNAL (warning)", "COLLAPSE (warning)",
             "VERIFIER_FAULT (critical)", "VERIFIER_FAULT (warning)", "SIGNAL_DRIFT (critical)", "NO_SIGNAL (warning)"]
    p_false = {k: {"firings": totals.get(k, 0), "steps": n, "p_per_step": totals.get(k, 0) / n,
                   "p_per_step_upper95": upper95(totals.get(k, 0), n)} for k in sorted(set(names) | set(totals))}
    for k, v in p_false.items():
        print(f"{k}: {v['firings']} firings in {n} open-loop steps, p/step {v['p_per_step']:.2e} "
              f"(95% upper {v['p_per_step_upper95']:.2e})")
    out = {"command": "python benchmarks/monitor/null_false_alarms.py " + " ".join(sys.argv[1:]),
           "steps_per_accuracy": a.steps, "P": P, "G": G, "closed_loop_firings_per_1000_steps": rows,
           "default_monitor_firings_per_1000_steps": per_alert, "p_false_alarm_per_step": p_false}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
