"""Asynchronous GRPO against on-policy GRPO, side by side in one invocation (issue 25).

    python benchmarks/async.py [--seeds 0 1 2] [--staleness 0 1] [--runs runs/async]
                               [--out benchmarks/results/async] [-- override ...]
    python benchmarks/async.py --collect-only        # re-read the run folders, rewrite the summary

For each seed, the default recipe (`recipes/basic_arithmetic.yaml`, 30 steps, held-out greedy pass@1 on 64 problems
at steps 0, 10, 20, 30) is trained once per `rollout.max_staleness` value, one run after another (never two at
once: the asynchronous run uses both cores), under `/usr/bin/time -v` for the CPU utilisation and peak memory:

    /usr/bin/time -v rlvr train recipes/basic_arithmetic.yaml seed=S rollout.max_staleness=K run_dir=RUNS/kK-seedS

Per run it reports: wall clock; CPU utilisation (time's "Percent of CPU this job got": 200% = both cores busy);
peak RSS; the console, each line prefixed with seconds since launch (RUNS/kK-seedS.log); start-up = launch until
the first training step begins (the first metrics row's arrival, polled every
0.1 s, minus that step's time/step); held-out pass@1 at each evaluation; per-step medians of time/step,
time/generate, time/train, time/sync and time/wait_rollout (the wait for the background generation after the
update); rollout/staleness per step; the truncated importance weights (sampling/tis_weight_mean,
sampling/tis_clipped_frac) and sampling/logp_diff_mean; the monitor's alerts (an alert that fires only with
staleness would be a false alarm caused by it). The summary gives mean and sd over seeds per staleness value and the
wall-clock ratio. Run folders are kept under --runs; their metrics.jsonl, summary.json and alerts.jsonl are copied to
--out/runs/ so the summary can be rebuilt from the committed files (--collect-only reads --out/runs when --runs is
gone).
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.default_recipe import machine  # noqa: E402


def _rows(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.is_file() else []


def run_one(run_dir: Path, seed: int, staleness: int, extra: list[str]) -> dict:
    """Train one run (skipped when its summary.json exists); returns what /usr/bin/time and the poller saw."""
    meta_path = run_dir.with_suffix(".meta.json")
    if (run_dir / "summary.json").is_file() and meta_path.is_file():
        print(f"async bench: {run_dir} done, kept", flush=True)
        return json.loads(meta_path.read_text())
    if run_dir.exists():
        shutil.rmtree(run_dir)
    cmd = ["/usr/bin/time", "-v", "rlvr", "train", "recipes/basic_arithmetic.yaml", f"seed={seed}",
           f"rollout.max_staleness={staleness}", f"run_dir={run_dir}", "log.progress=false", *extra]
    print("async bench: " + " ".join(cmd[2:]), flush=True)
    first_row: dict = {}
    done = threading.Event()
    t0 = time.time()

    def poll():
        metrics = run_dir / "metrics.jsonl"
        while not done.is_set():
            if metrics.is_file() and metrics.stat().st_size and "t" not in first_row:
                first_row["t"] = time.time() - t0
                return
            time.sleep(0.1)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    log_path = run_dir.with_suffix(".log")
    with open(log_path, "w") as log:  # each console line prefixed with seconds since launch
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        for line in proc.stdout:
            log.write(f"{time.time() - t0:7.1f}s {line}")
            log.flush()
        rc = proc.wait()
    wall = time.time() - t0
    done.set()
    text = log_path.read_text()

    def grab(pattern, cast=float):
        m = re.search(pattern, text)
        return cast(m.group(1)) if m else None

    rows = _rows(run_dir / "metrics.jsonl")
    meta = {"seed": seed, "staleness": staleness, "exit": rc, "wall_s": wall, "command": " ".join(cmd),
            "cpu_percent": grab(r"Percent of CPU this job got: (\d+)%"),
            "peak_rss_gib": (grab(r"Maximum resident set size \(kbytes\): (\d+)") or 0) / 2**20,
            "startup_s": (first_row["t"] - rows[0]["time/step"]) if rows and "t" in first_row else None,
            "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime(t0))}
    meta_path.write_text(json.dumps(meta, indent=1))
    print(f"async bench: exit {rc}, {wall:.0f} s, CPU {meta['cpu_percent']}%, start-up {meta['startup_s']}", flush=True)
    return meta


def describe(run_dir: Path, meta: dict) -> dict:
    rows = _rows(run_dir / "metrics.jsonl")
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else {}
    alerts = _rows(run_dir / "alerts.jsonl")

    def med(key):
        vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        return statistics.median(vals) if vals else None

    def mean(key):
        vals = [r[key] for r in rows if isinstance(r.get(key), (int, float))]
        return statistics.fmean(vals) if vals else None

    evals = {int(k): v["pass@1"] for k, v in summary.get("evals", {}).items()}
    return {**meta, "steps": len(rows), "heldout": dict(sorted(evals.items())),
            "heldout_final": summary.get("heldout_pass@1_after"),
            "train_reward_last5": summary.get("train_reward_last5"),
            "median": {k: med(k) for k in ("time/step", "time/generate", "time/verify", "time/train", "time/sync",
                                           "time/wait_rollout")},
            "sum_step_s": sum(r.get("time/step", 0.0) for r in rows),
            "staleness_per_step": [r.get("rollout/staleness", 0.0) for r in rows],
            "tis_weight_mean": mean("sampling/tis_weight_mean"), "tis_clipped_frac": mean("sampling/tis_clipped_frac"),
            "logp_diff_mean": mean("sampling/logp_diff_mean"),
            "alerts": [f"{a['name']}:{a.get('rule')}:{a.get('severity')}@{a['step']}" for a in alerts
                       if a.get("event") == "fired"]}


def _ms(xs):
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    return f"{statistics.fmean(xs):.3f} ± {statistics.stdev(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"


def markdown(report: dict) -> str:
    m = report["machine"]
    out = ["# Asynchronous GRPO vs on-policy: the default recipe, side by side", "",
           f"Machine: {m['cpu']}, {m['cores']} cores (AVX-512F {m['avx512f']}, AVX512_BF16 {m['avx512_bf16']}), "
           f"torch {m['torch']}. Command: `{report['command']}` ({report['date']}).", "",
           "| max_staleness | seed | exit | wall | CPU | start-up | peak RSS GiB | held-out pass@1 by step | median "
           "step / generate / train / wait s | TIS weight mean / clipped | alerts |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["runs"]:
        md = r["median"]
        out.append(f"| {r['staleness']} | {r['seed']} | {r['exit']} | {r['wall_s'] / 60:.2f} min | {r['cpu_percent']}% | "
                   f"{r['startup_s']:.1f} s | {r['peak_rss_gib']:.2f} | "
                   + " ".join(f"{k}:{v:.3f}" for k, v in r["heldout"].items())
                   + f" | {md['time/step']:.2f} / {md['time/generate']:.2f} / {md['time/train']:.2f} / "
                   f"{(md['time/wait_rollout'] or 0):.2f} | {r['tis_weight_mean']:.4f} / {r['tis_clipped_frac']:.4f} | "
                   f"{', '.join(r['alerts']) or 'none'} |")
    out += ["", "| max_staleness | runs | held-out pass@1 at the last step (mean ± sd) | wall min (mean ± sd) | CPU % | "
            "start-up s | median step s |", "|---|---|---|---|---|---|---|"]
    for k, agg in report["by_staleness"].items():
        out.append(f"| {k} | {agg['runs']} | {agg['heldout_final']} | {agg['wall_min']} | {agg['cpu_percent']} | "
                   f"{agg['startup_s']} | {agg['median_step_s']} |")
    if "wall_ratio" in report:
        out += ["", f"Wall-clock ratio (max_staleness 1 / 0, means): {report['wall_ratio']:.3f}."]
    return "\n".join(out) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--staleness", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--runs", default="runs/async")
    ap.add_argument("--out", default="benchmarks/results/async")
    ap.add_argument("--collect-only", action="store_true")
    ap.add_argument("extra", nargs="*", help="recipe overrides after --")
    a = ap.parse_args()
    runs, out = ROOT / a.runs, ROOT / a.out
    runs.mkdir(parents=True, exist_ok=True)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    results = []
    for seed in a.seeds:
        for k in a.staleness:  # interleaved: both settings of a seed see the same machine load
            run_dir = runs / f"k{k}-seed{seed}"
            saved = out / "runs" / run_dir.name
            if a.collect_only:
                src = run_dir if (run_dir / "summary.json").is_file() else saved
                meta_file = src.with_suffix(".meta.json") if src == run_dir else saved / "meta.json"
                if not meta_file.is_file():
                    continue
                results.append(describe(src, json.loads(meta_file.read_text())))
                continue
            meta = run_one(run_dir, seed, k, a.extra)
            results.append(describe(run_dir, meta))
            saved.mkdir(parents=True, exist_ok=True)
            for name in ("metrics.jsonl", "summary.json", "alerts.jsonl", "config.yaml"):
                if (run_dir / name).is_file():
                    shutil.copy(run_dir / name, saved / name)
            (saved / "meta.json").write_text(json.dumps(meta, indent=1))
            if run_dir.with_suffix(".log").is_file():
                shutil.copy(run_dir.with_suffix(".log"), saved / "console.log")
    by = {}
    for k in sorted({r["staleness"] for r in results}):
        rs = [r for r in results if r["staleness"] == k and r["exit"] == 0]
        by[str(k)] = {"runs": len(rs), "heldout_final": _ms([r["heldout_final"] for r in rs]),
                      "wall_min": _ms([r["wall_s"] / 60 for r in rs]),
                      "cpu_percent": _ms([r["cpu_percent"] for r in rs]),
                      "startup_s": _ms([r["startup_s"] for r in rs]),
                      "median_step_s": _ms([r["median"]["time/step"] for r in rs]),
                      "wall_s_mean": statistics.fmean([r["wall_s"] for r in rs]) if rs else None}
    report = {"command": "python benchmarks/async.py " + " ".join(sys.argv[1:]),
              "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), "machine": machine(), "runs": results,
              "by_staleness": by}
    if by.get("0", {}).get("wall_s_mean") and by.get("1", {}).get("wall_s_mean"):
        report["wall_ratio"] = by["1"]["wall_s_mean"] / by["0"]["wall_s_mean"]
    (out / "summary.json").write_text(json.dumps(report, indent=1))
    (out / "summary.md").write_text(markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
