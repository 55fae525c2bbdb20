"""Calibration of the info-gain monitor's thresholds on real open-loop runs (issue 13 item 3).

    python benchmarks/monitor/calibration.py [RUN_DIR ...] [--out benchmarks/results/monitor_calibration]

Every run here trains on the math verifier, which reads the reference answer: an open loop, so every CLOSED_LOOP,
VERIFIER_FAULT or SIGNAL_DRIFT on it is a false alarm. For each run this replays the *current* monitor over the
run's rollouts.jsonl exactly as `rlvr monitor RUN --replay` does (rlvr/monitor/replay.py: same monitor, the
intervention re-scored with the run's own verifiers; alerts to RUN/replay/alerts.jsonl) and records the monitor's
per-step statistics on the way. It also reads the run's own alerts.jsonl (what the live monitor raised, the
pre-training canaries included), and replays once more with the intervention off (to
RUN/replay_no_intervention/): what the passive closure-ratio rule alone would raise, as for a judge-sourced reward.

Written: OUT.json and OUT.md (per run: task configuration, engine, sampling dtype, seed, steps, alerts by name and
severity; totals; for each MonitorConfig threshold the observed distribution of its statistic over these real
steps and the margin to the threshold), and OUT/<run>.json (per-step statistics and alerts of each run, small).

Without RUN_DIR arguments it takes the calibration set: runs/default-recipe-seed{0,1,2}, runs_avx2/default-recipe-
seed0, runs/open-{easy-vllm,hard-hf}-seed0 and every run under runs/calib/ (the commands are in the README,
"The info-gain monitor"). Runs are not committed (runs/ is git-ignored); their summaries in OUT/ are.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

DEFAULT_RUNS = ["runs/default-recipe-seed0", "runs/default-recipe-seed1", "runs/default-recipe-seed2",
                "runs_avx2/default-recipe-seed0", "runs/open-easy-vllm-seed0", "runs/open-hard-hf-seed0"]

# task configurations by their data.task_config (README: the default recipe, the easy and the hard open loops)
TASKS = {
    "default": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2, "operators": ["+", "-"]},
    "easy": {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 1, "operators": ["+"]},
    "hard": {"min_terms": 3, "max_terms": 3, "min_digits": 1, "max_digits": 2, "operators": ["+", "-"]},
}

# per-step statistics recorded from the replayed monitor (metrics key without the `monitor/` prefix)
STATS = ["closure_ratio_window", "window_informative_groups", "reference_sensitivity_window",
         "intervention_passes_window", "informative_group_frac", "signal_entropy", "pass@1", "class_efficiency",
         "spurious_share/length_tertile", "spurious_share/answer_tag", "spurious_share/boxed", "distinct_per_group",
         "error_rate", "timeout_rate", "constant_verdict_rate", "intervention_calls"]


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def task_name(task_config: dict) -> str:
    for name, want in TASKS.items():
        if all(task_config.get(k) == v for k, v in want.items()):
            return name
    return json.dumps(task_config, sort_keys=True)


def describe(run: Path) -> dict:
    """Task configuration, engine, sampling dtype and seed of a run (summary.json, else config.yaml)."""
    import yaml

    cfg = yaml.safe_load((run / "config.yaml").read_text())
    summ = json.loads((run / "summary.json").read_text()) if (run / "summary.json").exists() else {}
    engine = summ.get("rollout_engine") or cfg["rollout"]["engine"]
    dtype = summ.get("rollout_dtype") or cfg["rollout"]["dtype"]
    if engine == "hf":  # the HF engine samples from the policy itself, in the training dtype (rlvr/trainer.py)
        dtype = summ.get("train_dtype") or cfg["train"]["dtype"]
    strict = any((v.get("kwargs") or {}).get("strict_extraction") for v in cfg.get("verifiers", []))
    out = {"run": str(run), "task": task_name(cfg["data"]["task_config"]), "engine": engine,
           "dtype": {"bfloat16": "bf16", "float32": "fp32"}.get(dtype, dtype), "seed": cfg["seed"],
           "reward": "math (strict extraction)" if strict else "math (default extraction)",
           "steps_configured": cfg["train"]["steps"]}
    if summ:
        out["heldout_pass@1"] = [summ.get("heldout_pass@1_before"), summ.get("heldout_pass@1_after")]
    metrics = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines() if ln.strip()]
    if metrics:
        k = min(5, len(metrics))
        out["train_reward_first_last5"] = [round(statistics.mean(r["reward"] for r in metrics[:k]), 3),
                                           round(statistics.mean(r["reward"] for r in metrics[-k:]), 3)]
        out["median_s_per_step"] = round(statistics.median(r["time/step"] for r in metrics if "time/step" in r), 1)
    return out


def replay_with_stats(run: Path) -> tuple[dict, list[dict]]:
    """rlvr.monitor.replay.replay(run), recording each step's monitor metrics (Monitor.observe_batch wrapped for
    the duration of the call; the replay itself is unchanged)."""
    from rlvr.monitor import monitor as monitor_mod
    from rlvr.monitor.replay import replay

    rows: list[dict] = []
    original = monitor_mod.Monitor.observe_batch

    def recording(self, step, batch, policy_entropy=None, rescore=None):
        metrics, alerts = original(self, step, batch, policy_entropy=policy_entropy, rescore=rescore)
        rows.append({"step": step, **{k: metrics.get(f"monitor/{k}") for k in STATS}})
        return metrics, alerts

    monitor_mod.Monitor.observe_batch = recording
    try:
        result = replay(run)
    finally:
        monitor_mod.Monitor.observe_batch = original
    return result, rows


def live_alerts(run: Path) -> list[dict]:
    p = run / "alerts.jsonl"
    if not p.exists():
        return []
    return [a for a in (json.loads(ln) for ln in p.read_text().splitlines() if ln.strip()) if a["event"] == "fired"]


def dist(values: list[float]) -> dict:
    v = sorted(x for x in values if _finite(x))
    if not v:
        return {"n": 0}

    def pct(p):
        return v[min(len(v) - 1, max(0, round(p / 100 * (len(v) - 1))))]

    return {"n": len(v), "min": v[0], "p5": pct(5), "p25": pct(25), "median": pct(50), "p95": pct(95),
            "max": v[-1]}


def thresholds(all_rows: list[dict], mcfg) -> list[dict]:
    """For each threshold: the statistic it is compared with, over the steps where its rule can judge, the
    observed distribution, how often the condition held, and the margin (distance from the nearest observed value
    to the threshold, positive = on the safe side)."""
    out = []

    def add(field, severity, rule, stat, judged, fires_below, note=""):
        vals = [r[stat] for r in judged if _finite(r.get(stat))]
        thr = getattr(mcfg, field)
        d = dist(vals)
        held = sum(1 for x in vals if (x < thr if fires_below == "lt" else x <= thr if fires_below == "le"
                                       else x > thr if fires_below == "gt" else x >= thr))
        margin = None
        if vals and "evidence" not in severity:
            margin = (min(vals) - thr) if fires_below in ("lt", "le") else (thr - max(vals))
        out.append({"threshold": f"monitor.{field}", "value": thr, "severity": severity, "rule": rule,
                    "statistic": f"monitor/{stat}", "condition": {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}[
                        fires_below], "judged_steps": len(judged), "observed": d, "steps_condition_held": held,
                    "margin": margin, "note": note})

    rs_judged = [r for r in all_rows if _finite(r.get("reference_sensitivity_window"))
                 and (r.get("intervention_passes_window") or 0) >= mcfg.min_intervention_passes]
    add("reference_sensitivity_min", "critical", "CLOSED_LOOP (reference_blind)", "reference_sensitivity_window",
        rs_judged, "le", f"windows with >= monitor.min_intervention_passes = {mcfg.min_intervention_passes} "
        "re-scored passes")
    add("min_intervention_passes", "critical (evidence)", "CLOSED_LOOP (reference_blind)",
        "intervention_passes_window", [r for r in all_rows if _finite(r.get("intervention_passes_window"))], "lt",
        "share of steps below it = share of steps on which reference_blind is undetermined")
    for key in ("error_rate", "timeout_rate"):
        add(f"{key}_max", "critical", f"VERIFIER_FAULT ({key})", key, all_rows, "gt")
    cr_judged = [r for r in all_rows if _finite(r.get("closure_ratio_window"))
                 and (r.get("window_informative_groups") or 0) >= mcfg.min_informative_groups]
    add("closure_ratio_min", "warning", "CLOSED_LOOP (closure_ratio)", "closure_ratio_window", cr_judged, "lt",
        f"windows with >= monitor.min_informative_groups = {mcfg.min_informative_groups} informative groups "
        "(before the reference-sensitivity override)")
    ov = [r for r in cr_judged if _finite(r.get("closure_ratio_window")) and r["closure_ratio_window"]
          < mcfg.closure_ratio_min]
    out[-1]["steps_condition_held_after_override"] = sum(
        1 for r in ov if not (_finite(r.get("reference_sensitivity_window"))
                              and (r.get("intervention_passes_window") or 0) >= mcfg.min_intervention_passes
                              and r["reference_sensitivity_window"] > mcfg.reference_sensitivity_min))
    out[-1]["note"] += (f"; after the override (reference sensitivity measured > "
                        f"{mcfg.reference_sensitivity_min}): {out[-1]['steps_condition_held_after_override']} steps")
    add("min_informative_groups", "warning (evidence)", "CLOSED_LOOP (closure_ratio)", "window_informative_groups",
        [r for r in all_rows if _finite(r.get("window_informative_groups"))], "lt",
        "share of steps below it = share of steps on which closure_ratio is undetermined")
    add("min_signal_entropy", "warning (evidence)", "closure ratio, spurious shares defined", "signal_entropy",
        all_rows, "lt", "a step below it leaves the per-step closure ratio and spurious shares undefined")
    add("no_signal_max", "warning", "NO_SIGNAL", "informative_group_frac", all_rows, "le")
    add("constant_verdict_max", "warning", "VERIFIER_FAULT (constant_verdict_rate)", "constant_verdict_rate",
        all_rows, "gt")
    add("class_efficiency_min", "warning", "SPURIOUS_SIGNAL (feature, with spurious_share_max)", "class_efficiency",
        all_rows, "lt", "the feature rule needs both a share >= spurious_share_max and eta below this")
    for f in ("length_tertile", "answer_tag", "boxed"):
        add("spurious_share_max", "warning", f"SPURIOUS_SIGNAL (feature:{f})", f"spurious_share/{f}", all_rows, "ge")
    return out


def machine() -> str:
    try:
        model = next(ln.split(":", 1)[1].strip() for ln in subprocess.run(
            ["lscpu"], capture_output=True, text=True).stdout.splitlines() if ln.startswith("Model name"))
    except (StopIteration, OSError):
        model = platform.processor()
    import os

    return f"{model}, {os.cpu_count()} cores"


def _fmt(v) -> str:
    return f"{v:.3f}" if _finite(v) else "-"


def markdown(res: dict) -> str:
    L = ["# Monitor calibration on real open-loop runs", "",
         f"`{res['command']}` on {res['machine']}, {res['date']}. Every run is an open loop (the math verifier reads "
         "the reference), so every CLOSED_LOOP, VERIFIER_FAULT or SIGNAL_DRIFT is a false alarm.", "",
         "| run | task | engine | dtype | seed | steps | held-out before -> after | train reward first/last 5 | "
         "replay alerts | live alerts | critical | replay without the intervention |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res["runs"]:
        ho = r.get("heldout_pass@1") or [None, None]
        tr = r.get("train_reward_first_last5") or [None, None]
        rep = ", ".join(f"{k} x{v}" for k, v in r["replay_alerts_by"].items()) or "none"
        live = ", ".join(f"{k} x{v}" for k, v in r["live_alerts_by"].items()) or "none"
        L.append(f"| {Path(r['run']).name} ({Path(r['run']).parent.name}) | {r['task']} | {r['engine']} | "
                 f"{r['dtype']} | {r['seed']} | {r['steps']} | {_fmt(ho[0])} -> {_fmt(ho[1])} | "
                 f"{_fmt(tr[0])} / {_fmt(tr[1])} | {rep} | {live} | {r['critical']} | "
                 + (", ".join(f"{k} x{v}" for k, v in r["replay_alerts_no_intervention_by"].items()) or "none")
                 + " |")
    t = res["totals"]
    L += ["", f"**Totals**: {t['runs']} runs, {t['steps']} open-loop steps, tasks {t['tasks']}, engines "
          f"{t['engines']}, dtypes {t['dtypes']}; replay alerts {t['replay_alerts_by'] or 'none'}; critical "
          f"(replay + live): **{t['critical']}**.", "",
          "## Thresholds: observed statistic on these steps", "",
          "Margin: distance from the nearest observed value to the threshold (positive: no step met the "
          "condition). For an evidence minimum the steps below it are the steps its rule was undetermined.", "",
          "| threshold | value | severity | rule | fires when | judged steps | min | p5 | median | p95 | max | "
          "steps condition held | margin | note |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for h in res["thresholds"]:
        o = h["observed"]
        L.append(f"| `{h['threshold']}` | {h['value']} | {h['severity']} | {h['rule']} | "
                 f"`{h['statistic']}` {h['condition']} {h['value']} | {o['n']} | {_fmt(o.get('min'))} | "
                 f"{_fmt(o.get('p5'))} | {_fmt(o.get('median'))} | {_fmt(o.get('p95'))} | {_fmt(o.get('max'))} | "
                 f"{h['steps_condition_held']} | {_fmt(h['margin']) if h['margin'] is not None else 'n/a'} | "
                 f"{h['note']} |")
    return "\n".join(L) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("runs", nargs="*")
    ap.add_argument("--out", default="benchmarks/results/monitor_calibration")
    args = ap.parse_args(argv)
    import os

    os.chdir(ROOT)
    runs = args.runs or DEFAULT_RUNS + sorted(str(p.parent) for p in Path("runs/calib").glob("*/rollouts.jsonl"))
    runs = [Path(r) for r in runs if (Path(r) / "rollouts.jsonl").exists()]
    from rlvr.config import MonitorConfig

    mcfg = MonitorConfig()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    per_run, all_rows = [], []
    for run in runs:
        t0 = time.time()
        info = describe(run)
        result, rows = replay_with_stats(run)
        live = live_alerts(run)
        # the same replay with the intervention off (what a judge-sourced reward gets): which alerts the
        # intervention's override keeps from firing (to RUN/replay_no_intervention/, not the run's replay/)
        from rlvr.monitor.replay import replay

        bare = replay(run, out=run / "replay_no_intervention", intervene=False)["alerts"]
        info["replay_alerts_no_intervention_by"] = dict(Counter(f"{a['name']}({a['rule']}) {a['severity']}"
                                                                for a in bare))
        info.update({"steps": result["steps"], "replay_seconds": round(time.time() - t0, 1),
                     "replay_alerts": result["alerts"], "live_alerts": live,
                     "replay_alerts_by": dict(Counter(f"{a['name']}({a['rule']}) {a['severity']}"
                                                     for a in result["alerts"])),
                     "live_alerts_by": dict(Counter(f"{a['name']}({a['rule']}) {a['severity']}" for a in live)),
                     "critical": sum(a["severity"] == "critical" for a in result["alerts"] + live)})
        per_run.append(info)
        all_rows += rows
        name = f"{run.parent.name}__{run.name}"
        (out / f"{name}.json").write_text(json.dumps({**info, "per_step": rows}, indent=1, default=str))
        print(f"{run}: {result['steps']} steps, replay {info['replay_alerts_by'] or 'no alert'}, live "
              f"{info['live_alerts_by'] or 'no alert'} ({info['replay_seconds']} s)", flush=True)
    tally = Counter()
    for r in per_run:
        tally.update(r["replay_alerts_by"])
    res = {"command": "python benchmarks/monitor/calibration.py " + " ".join(args.runs or []),
           "machine": machine(), "date": time.strftime("%Y-%m-%d"),
           "monitor_config": mcfg.model_dump(), "runs": per_run,
           "totals": {"runs": len(per_run), "steps": sum(r["steps"] for r in per_run),
                      "tasks": dict(Counter(r["task"] for r in per_run)),
                      "engines": dict(Counter(r["engine"] for r in per_run)),
                      "dtypes": dict(Counter(r["dtype"] for r in per_run)),
                      "seeds_per_task": {t: sorted({r["seed"] for r in per_run if r["task"] == t})
                                         for t in {r["task"] for r in per_run}},
                      "replay_alerts_by": dict(tally),
                      "critical": sum(r["critical"] for r in per_run)},
           "thresholds": thresholds(all_rows, mcfg)}
    Path(f"{out}.json").write_text(json.dumps(res, indent=1, default=str))
    Path(f"{out}.md").write_text(markdown(res))
    print(markdown(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
