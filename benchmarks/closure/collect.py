"""Summarise closure-benchmark runs (issue 6, "Proof"): held-out accuracy along the run and the monitor's alerts.

    rlvr train recipes/closure_{open,closed,spurious}.yaml seed=S run_dir=RUNS/{loop}-sS   # S = 0, 1, 2
    python benchmarks/closure/collect.py RUNS --out benchmarks/closure/results

Writes results.json (per run: evals, first-fire step of every alert rule, false alarms) and results.md.
A false alarm is any alert on the open loop, or CLOSED_LOOP / SPURIOUS_SIGNAL on a loop built to show the other.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
from pathlib import Path

EXPECTED = {"open": set(), "closed": {"CLOSED_LOOP"}, "spurious": {"SPURIOUS_SIGNAL"}}


def load_run(path: Path) -> dict:
    summary = json.loads((path / "summary.json").read_text())
    alerts_file = path / "alerts.jsonl"
    events = [json.loads(ln) for ln in alerts_file.read_text().splitlines()] if alerts_file.exists() else []
    first: dict[str, int] = {}
    for e in events:
        if e["event"] == "fired":
            first.setdefault(f"{e['name']}:{e['rule']}", e["step"])
    loop = path.name.rsplit("-s", 1)[0]
    expected = EXPECTED[loop]
    fired_names = {k.split(":")[0] for k in first}
    false_alarms = sorted(k for k in first if k.split(":")[0] in {"CLOSED_LOOP", "SPURIOUS_SIGNAL"} - expected
                          or (loop == "open"))
    return {"run": path.name, "loop": loop, "seed": summary["seed"],
            "heldout": {int(k): v["pass@1"] for k, v in summary["evals"].items()},
            "train_reward_first5": summary["train_reward_first5"], "train_reward_last5": summary["train_reward_last5"],
            "first_fire": first, "expected_raised": sorted(expected & fired_names), "false_alarms": false_alarms}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", type=Path)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/closure/results"))
    args = ap.parse_args()
    runs = [load_run(p) for p in sorted(args.runs.iterdir()) if (p / "summary.json").exists()]
    args.out.mkdir(parents=True, exist_ok=True)
    for r in runs:  # keep each run's small files next to the summary
        dst = args.out / r["run"]
        dst.mkdir(exist_ok=True)
        for name in ("summary.json", "metrics.jsonl", "alerts.jsonl", "config.yaml"):
            if (args.runs / r["run"] / name).exists():
                shutil.copy(args.runs / r["run"] / name, dst / name)
    (args.out / "results.json").write_text(json.dumps(runs, indent=2))
    lines = ["| run | held-out pass@1 by step | train reward first-5 -> last-5 | alerts (first-fire step) | false alarms |",
             "|---|---|---|---|---|"]
    for r in runs:
        acc = ", ".join(f"{s}: {a:.3f}" for s, a in sorted(r["heldout"].items()))
        fires = ", ".join(f"{k} @{v}" for k, v in sorted(r["first_fire"].items(), key=lambda kv: kv[1])) or "none"
        lines.append(f"| {r['run']} | {acc} | {r['train_reward_first5']:.3f} -> {r['train_reward_last5']:.3f} | "
                     f"{fires} | {', '.join(r['false_alarms']) or 'none'} |")
    lines += ["", "| loop | seeds | held-out pass@1 at step 0 -> last eval (mean, min-max) |", "|---|---|---|"]
    for loop in ("open", "closed", "spurious"):
        rs = [r for r in runs if r["loop"] == loop]
        if not rs:
            continue
        last = [r["heldout"][max(r["heldout"])] for r in rs]
        first = [r["heldout"][0] for r in rs]
        lines.append(f"| {loop} | {len(rs)} | {statistics.mean(first):.3f} -> {statistics.mean(last):.3f} "
                     f"({min(last):.3f}-{max(last):.3f}) |")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")
    plot(runs, args.out / "heldout_by_loop.png")
    print("\n".join(lines))


def plot(runs: list[dict], path: Path) -> None:
    """Held-out pass@1 along the run, one line per run, coloured by loop; markers at each run's first alert."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"open": "tab:green", "closed": "tab:red", "spurious": "tab:orange"}
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for r in runs:
        steps = sorted(r["heldout"])
        ax.plot(steps, [r["heldout"][s] for s in steps], color=colours[r["loop"]], marker="o", alpha=0.8,
                label=r["loop"] if r["seed"] == 0 else None)
        fired = [v for k, v in r["first_fire"].items() if not k.endswith("declared_self")]
        if fired:
            ax.axvline(min(fired), color=colours[r["loop"]], linestyle=":", alpha=0.6)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("held-out pass@1 (greedy, exact verifier)")
    ax.set_title("Closure benchmark: open vs closed vs spurious loops (dotted: first alert from the estimates)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
