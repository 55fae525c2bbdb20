"""Fault injection on real training runs: the monitor against held-out accuracy it does not see.

    python benchmarks/monitor/real_faults.py run [--loops ...] [--seeds 0] [--steps 30] [--runs runs/faults]
    python benchmarks/monitor/real_faults.py report [--runs runs/faults]
        [--out benchmarks/results/monitor_real_faults]

`run` trains the default recipe (`recipes/basic_arithmetic.yaml`: SmolLM2-135M-Instruct, LoRA, GRPO, vLLM or HF
on CPU) with its reward replaced by a plug-in of known truth (`benchmarks/monitor/fault_verifiers.py`; none
declares what it is), held-out greedy pass@1 on 64 problems every `--eval-every` steps with the exact math
verifier, one run after another (a run already finished is kept). The monitor runs as it does for users (defaults,
`stop_on_critical: false`, so a run goes on after a critical alert and its accuracy curve can be read).

`report` reads each run's alerts.jsonl and metrics.jsonl and writes, per loop: the first firing of each alert, the
held-out accuracy curve, the step where held-out accuracy starts to fall, and the lead time (fall step minus first
detection: positive = the alert came first). It also replays the current monitor over every run (this benchmark's,
and the calibration runs given with `--replay-runs`), and copies each run's rollouts.jsonl (gzipped),
config.yaml, summary.json, alerts.jsonl and reward curve to OUT/runs/, so that the report (replay included) can be
rerun from the committed files alone: runs missing from --runs are read from OUT/runs/.

"Starts to fall": the first evaluation at which pass@1 is below the best earlier evaluation by more than two
binomial standard errors of a 64-problem accuracy at that best value (e.g. 0.125 at 0.5), i.e. a drop the
evaluation noise does not explain. A run whose accuracy never falls so is reported as "no fall by step N" and its
lead time is censored (> N - first detection).
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

FV = "benchmarks.monitor.fault_verifiers"
FAULT_NAMES = ["length_bonus", "fault_agree_first", "fault_majority_external", "fault_even_answer", "fault_noisy_math",
               "fault_flaky_math"]
# loop name -> (truth, verifiers override (YAML), alerts that count as detecting it)
LOOPS = {
    "spurious_length": ("spurious", "[{name: length_bonus, kwargs: {cap: 24, unit: tokens}}]",
                        ["SPURIOUS_SIGNAL", "CLOSED_LOOP"]),
    "spurious_even": ("spurious", f"[{{name: '{FV}:EvenAnswer'}}]", ["SPURIOUS_SIGNAL", "CLOSED_LOOP",
                                                                     "VERIFIER_FAULT"]),
    "closed_first": ("closed", f"[{{name: '{FV}:AgreeFirst'}}]", ["CLOSED_LOOP", "VERIFIER_FAULT"]),
    "closed_majority": ("closed", f"[{{name: '{FV}:MajorityExternal'}}]", ["CLOSED_LOOP", "VERIFIER_FAULT"]),
    "open_noisy": ("open", f"[{{name: '{FV}:NoisyMath'}}]", []),
    "fault_flaky": ("fault", f"[{{name: '{FV}:FlakyMath'}}]", ["VERIFIER_FAULT"]),
}

CALIBRATION_RUNS = ["runs/default-recipe-seed0", "runs/default-recipe-seed1", "runs/default-recipe-seed2",
                    "runs_avx2/default-recipe-seed0", "runs/open-easy-vllm-seed0", "runs/open-hard-hf-seed0",
                    *(f"runs/calib/{n}-seed{s}" for n in ("default-fp32", "open-easy-vllm", "open-hard-hf")
                      for s in (1, 2))]


def cmd_run(args) -> None:
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for loop in args.loops:
            run_dir = runs / f"{loop}-seed{seed}"
            if (run_dir / "summary.json").is_file():
                print(f"{run_dir}: finished, kept", flush=True)
                continue
            over = [f"run_dir={run_dir}", f"seed={seed}", f"train.steps={args.steps}", f"eval.every={args.eval_every}",
                    f"verifiers={LOOPS[loop][1]}", "log.progress=false", "log.checkpoint_every=10",
                    # the monitor is measured during training: a fault the pre-flight would stop at step 0 trains on
                    f"monitor.preflight_ignore=[{','.join('canary:' + n for n in FAULT_NAMES)}]", *args.override]
            t0 = time.time()
            print(f"{time.strftime('%H:%M:%S')} {run_dir}: start", flush=True)
            with open(runs / f"{loop}-seed{seed}.log", "w") as log:
                # resume: a run killed half-way continues from its last checkpoint
                rc = subprocess.call(["rlvr", "train", str(ROOT / "recipes/basic_arithmetic.yaml"), *over],
                                     env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
            print(f"{time.strftime('%H:%M:%S')} {run_dir}: rc={rc} in {time.time() - t0:.0f}s", flush=True)


def pack_run(run_dir: Path, dest: Path) -> None:
    """Copy what a replay needs (rollouts.jsonl gzipped, config.yaml) and the run's own record (summary.json,
    alerts.jsonl, the eval curve) to DEST."""
    dest.mkdir(parents=True, exist_ok=True)
    with open(run_dir / "rollouts.jsonl", "rb") as f, gzip.open(dest / "rollouts.jsonl.gz", "wb", 9) as g:
        shutil.copyfileobj(f, g)
    for name in ("config.yaml", "summary.json", "alerts.jsonl"):
        if (run_dir / name).is_file():
            shutil.copy(run_dir / name, dest / name)
    if (run_dir / "metrics.jsonl").is_file():
        rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
        (dest / "train_reward.json").write_text(json.dumps({m["step"]: m["reward"] for m in rows}) + "\n")


def replay_packed(packed: Path) -> dict:
    """Replay the current monitor (its default thresholds) over a packed run (see :func:`pack_run`)."""
    from rlvr.monitor.replay import replay

    import yaml

    from rlvr.config import MonitorConfig

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        # the current monitor: today's defaults, not the thresholds resolved into the run's config when it ran
        # (no run here sets a monitor field)
        cfg = yaml.safe_load((packed / "config.yaml").read_text())
        cfg["monitor"] = MonitorConfig().model_dump(mode="json")
        (tmp / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        with gzip.open(packed / "rollouts.jsonl.gz", "rb") as g, open(tmp / "rollouts.jsonl", "wb") as f:
            shutil.copyfileobj(g, f)
        return replay(tmp, tmp / "replay")


def read_alerts(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [a for a in map(json.loads, filter(str.strip, path.read_text().splitlines())) if a["event"] == "fired"]


def fall_step(curve: list[tuple[int, float]], n: int = 64) -> int | None:
    """First evaluation step whose pass@1 is below the best earlier one by more than 2 binomial standard errors
    of an n-problem accuracy at that best value; None if there is none."""
    best = None
    for step, acc in curve:
        if best is not None and best - acc > 2 * math.sqrt(max(best * (1 - best), 1e-9) / n):
            return step
        best = acc if best is None else max(best, acc)
    return None


def analyse(packed: Path, loop: str, seed: int) -> dict:
    truth, _, expect = LOOPS[loop]
    summary = json.loads((packed / "summary.json").read_text())
    curve = sorted((int(k), v["pass@1"]) for k, v in summary["evals"].items())
    live = read_alerts(packed / "alerts.jsonl")
    rep = replay_packed(packed)
    fall = fall_step(curve)
    out = {"fall_step": fall, "loop": loop, "seed": seed, "truth": truth, "steps": summary["steps"], "heldout_pass@1": curve}
    for tag, alerts in (("live", live), ("replay", rep["alerts"])):
        first: dict[str, int] = {}
        for a in alerts:
            key = f"{a['name']}:{a['rule']}:{a['severity']}"
            first[key] = min(first.get(key, a["step"]), a["step"])
        hits = sorted((a["step"], f"{a['name']} ({a['rule'].replace(FV + ':', '')})") for a in alerts
                      if a["name"] in expect)
        det = hits[0][0] if hits else None
        out[tag] = {"first_firing": dict(sorted(first.items(), key=lambda kv: kv[1])),
                    "detected_at": det, "detected_by": hits[0][1] if hits else None,
                    "critical": sum(a["severity"] == "critical" for a in alerts),
                    "warning": sum(a["severity"] == "warning" for a in alerts),
                    "lead_time": (fall - det) if fall is not None and det is not None else None,
                    "lead_time_censored": (f"> {summary['steps'] - det}" if fall is None and det is not None
                                           else None)}
    return out


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    cols = 3
    fig, axes = plt.subplots((n + cols - 1) // cols, cols, figsize=(5 * cols, 3.2 * ((n + cols - 1) // cols)),
                             squeeze=False)
    for ax, r in zip(axes.flat, results):
        xs, ys = zip(*r["heldout_pass@1"])
        ax.plot(xs, ys, "o-", color="k", label="held-out greedy pass@1 (exact verifier)")
        ax.plot(r["train_steps"], r["train_reward"], color="tab:blue", alpha=0.6, label="training reward (the fault)")
        colors = {"critical": "tab:red", "warning": "tab:orange"}
        for i, (key, step) in enumerate(r["replay"]["first_firing"].items()):
            name_rule, sev = key.rsplit(":", 1)
            name, rule = name_rule.split(":", 1)
            rule = rule.replace("benchmarks.monitor.fault_verifiers:", "")
            ax.axvline(step, color=colors.get(sev, "grey"), ls="--", lw=1)
            ax.text(step, 0.98 - 0.13 * (i % 4), f" {name}\n ({rule})", color=colors.get(sev, "grey"), fontsize=6,
                    va="top")
        if r["fall_step"] is not None:
            ax.axvspan(r["fall_step"] - 0.3, r["fall_step"] + 0.3, color="grey", alpha=0.3)
        ax.set_title(f"{r['loop']} [{r['truth']}] seed {r['seed']}", fontsize=9)
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("step")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def cmd_report(args) -> None:
    out = Path(args.out)
    packed_root = out / "runs"
    for run_dir in sorted(Path(args.runs).glob("*-seed*")):
        if run_dir.is_dir() and (run_dir / "summary.json").is_file():
            pack_run(run_dir, packed_root / run_dir.name)
    for run_dir in map(Path, args.replay_runs):
        if (run_dir / "summary.json").is_file():
            pack_run(run_dir, packed_root / f"open-{run_dir.parent.name}-{run_dir.name}")
    results, open_runs = [], []
    for packed in sorted(packed_root.iterdir()):
        name, _, seed = packed.name.rpartition("-seed")
        if name in LOOPS:
            r = analyse(packed, name, int(seed))
            reward = json.loads((packed / "train_reward.json").read_text())
            r["train_steps"], r["train_reward"] = [int(k) for k in reward], list(reward.values())
            results.append(r)
            print(f"{packed.name}: fall {r['fall_step']}, live {r['live']['detected_at']} "
                  f"({r['live']['detected_by']}), replay {r['replay']['detected_at']} ({r['replay']['detected_by']})",
                  flush=True)
        else:  # an open-loop calibration run: replayed for false alarms
            rep = replay_packed(packed)
            open_runs.append({"run": packed.name, "steps": rep["steps"], "critical": rep["critical"],
                              "warning": rep["warning"],
                              "alerts": sorted({f"{a['name']}:{a['rule']}" for a in rep["alerts"]})})
            print(f"{packed.name}: replay {rep['critical']} critical {rep['warning']} warning", flush=True)
    open_rows = open_runs + [{"steps": r["steps"], "critical": r["replay"]["critical"],
                              "warning": r["replay"]["warning"]} for r in results if r["truth"] == "open"]
    t = {k: sum(r[k] for r in open_rows) for k in ("steps", "critical", "warning")}
    res = {"command": "python benchmarks/monitor/real_faults.py report " + " ".join(sys.argv[2:]),
           "machine": _machine(), "fall_rule": fall_step.__doc__.strip(), "loops": results, "open_runs": open_runs,
           "open_loop_totals": {**t, "critical_per_1000": 1000 * t["critical"] / max(t["steps"], 1),
                                "warning_per_1000": 1000 * t["warning"] / max(t["steps"], 1)}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(res, indent=1) + "\n")
    if results:
        plot(results, out / "curves.png")
    (out / "summary.md").write_text(_markdown(res))
    print((out / "summary.md").read_text())


def _machine() -> str:
    import platform

    import torch

    try:
        model = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor()
    return f"{model}, {os.cpu_count()} cores, torch {torch.__version__}, capability " \
           f"{torch.backends.cpu.get_cpu_capability()}"


def _markdown(res: dict) -> str:
    def short(key: str) -> str:
        name_rule, sev = key.rsplit(":", 1)
        name, rule = name_rule.split(":", 1)
        return f"{name} ({rule.replace('benchmarks.monitor.fault_verifiers:', '')})"

    def lead(d: dict) -> str:
        return str(d["lead_time"]) if d["lead_time"] is not None else (d["lead_time_censored"] or "-")

    L = ["# Monitor fault injection on real runs", "", f"Command: `{res['command']}`", f"Machine: {res['machine']}", "",
         "Live: the alerts the run raised as it trained (its monitor version and thresholds). Replay: the current "
         "monitor (default thresholds) over its rollouts.jsonl after its canaries (rollouts.jsonl has no policy "
         "entropy, so no COLLAPSE). Lead time: fall step "
         "minus detection step (positive: the alert came first; evaluations every 5 steps).", "",
         "| loop | truth | seed | held-out pass@1 by step | falls at | first firing per alert (replay) | detected "
         "(lead time): live / replay |", "|---|---|---|---|---|---|---|"]
    for r in res["loops"]:
        firing = "; ".join(f"{short(k)} {v}" for k, v in r["replay"]["first_firing"].items()) or "none"
        curve = " ".join(f"{s}:{a:.2f}" for s, a in r["heldout_pass@1"])
        cells = []
        for tag in ("live", "replay"):
            d = r[tag]
            cells.append(f"{d['detected_at']} ({lead(d)})" if d["detected_at"] is not None
                         else f"no ({d['critical']} critical, {d['warning']} warning)")
        L.append(f"| {r['loop']} | {r['truth']} | {r['seed']} | {curve} | "
                 f"{r['fall_step'] if r['fall_step'] is not None else 'no fall'} | {firing} | {' / '.join(cells)} |")
    t = res["open_loop_totals"]
    L += ["", f"Open-loop replays ({len(res['open_runs'])} calibration runs + the open fault loops): {t['steps']} steps, "
          f"{t['critical']} critical ({t['critical_per_1000']:.1f} per 1,000 steps), {t['warning']} warning "
          f"({t['warning_per_1000']:.1f} per 1,000 steps).", "",
          "| open run (replayed) | steps | critical | warning | alerts |", "|---|---|---|---|---|"]
    for r in res["open_runs"]:
        L.append(f"| {r['run']} | {r['steps']} | {r['critical']} | {r['warning']} | {', '.join(r['alerts']) or '-'} |")
    L += ["", f"Fall rule: {res['fall_rule']}", ""]
    return "\n".join(L)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--loops", nargs="+", default=list(LOOPS), choices=list(LOOPS))
    r.add_argument("--seeds", nargs="+", type=int, default=[0])
    r.add_argument("--steps", type=int, default=30)
    r.add_argument("--eval-every", type=int, default=5)
    r.add_argument("--runs", default="runs/faults")
    r.add_argument("override", nargs="*", help="extra recipe overrides (key=value)")
    p = sub.add_parser("report")
    p.add_argument("--runs", default="runs/faults")
    p.add_argument("--out", default="benchmarks/results/monitor_real_faults")
    p.add_argument("--replay-runs", nargs="*", default=CALIBRATION_RUNS,
                   help="open-loop runs to pack and replay as well (default: the calibration runs)")
    args = ap.parse_args()
    if args.cmd == "run":
        cmd_run(args)
    else:
        cmd_report(args)


if __name__ == "__main__":
    main()
