"""The main job's figures: the default recipe over seeds, then one summary (held-out pass@1 before/after, train
reward, wall clock, per-phase step time).

    python benchmarks/default_recipe.py [--seeds 0 1 2] [--out benchmarks/results/default_recipe] [-- override ...]

Runs `rlvr train recipes/basic_arithmetic.yaml seed=S run_dir=runs/default-recipe-seedS` one seed after another
(never two at once on a 2-core machine), copies each run's metrics.jsonl and summary.json to --out and writes
--out/summary.json. With --collect-only it only re-reads existing run folders.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rows(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]


def machine() -> dict:
    """The CPU the figures were measured on: lscpu's model name and core count, torch's dispatch level, and the
    bf16 probe the recipe's `dtype: auto` follows (rlvr/hardware.py)."""
    import os
    import platform

    import torch

    from rlvr.hardware import cpu_bf16_support

    model = platform.processor()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")), model)
        flags = next((ln.split(":", 1)[1].split() for ln in out.splitlines() if ln.startswith("Flags")), [])
    except (OSError, subprocess.SubprocessError):
        flags = []
    ok, why = cpu_bf16_support()
    return {"cpu": model, "cores": os.cpu_count(), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "avx512f": "avx512f" in flags, "avx512_bf16": "avx512_bf16" in flags, "amx_bf16": "amx_bf16" in flags,
            "native_bf16": ok, "probe": why, "torch": torch.__version__,
            # set to emulate an AVX2-only CPU on an AVX-512 one (torch and oneDNN dispatch AVX2 kernels)
            "ATEN_CPU_CAPABILITY": os.environ.get("ATEN_CPU_CAPABILITY"),
            "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA")}


def collect(run_dirs: dict[int, Path], out: Path, overrides: list[str], walls: dict[int, float]) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    per_seed = {}
    for seed, rd in run_dirs.items():
        shutil.copy(rd / "metrics.jsonl", out / f"seed{seed}_metrics.jsonl")
        shutil.copy(rd / "summary.json", out / f"seed{seed}_summary.json")
        s = json.loads((rd / "summary.json").read_text())
        rows = _rows(rd / "metrics.jsonl")
        evals = s["evals"]
        last = str(max(int(k) for k in evals))
        med = {k: statistics.median(r[k] for r in rows if k in r)
               for k in ("time/step", "time/generate", "time/verify", "time/train", "time/sync") if k in rows[0]}
        per_seed[seed] = {
            "heldout_before": evals["0"]["pass@1"], "heldout_after": evals[last]["pass@1"],
            "train_reward_first5": statistics.mean(r["reward"] for r in rows[:5]),
            "train_reward_last5": statistics.mean(r["reward"] for r in rows[-5:]),
            "median_seconds": med, "wall_seconds": walls.get(seed),
            "engine": s.get("rollout_engine"), "peak_rss_gib": s.get("peak_rss_gib"),
        }
    after = [v["heldout_after"] for v in per_seed.values()]
    before = [v["heldout_before"] for v in per_seed.values()]
    summary = {
        "command": "python benchmarks/default_recipe.py " + " ".join(overrides),
        "machine": machine(),
        "per_seed": per_seed,
        "heldout_before_mean": statistics.mean(before),
        "heldout_after_mean": statistics.mean(after),
        "heldout_after_sd": statistics.stdev(after) if len(after) > 1 else 0.0,
        "delta_points": 100 * (statistics.mean(after) - statistics.mean(before)),
        "train_reward_first5_mean": statistics.mean(v["train_reward_first5"] for v in per_seed.values()),
        "train_reward_last5_mean": statistics.mean(v["train_reward_last5"] for v in per_seed.values()),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/default_recipe"))
    ap.add_argument("--runs", default="runs", help="parent folder of the run directories")
    ap.add_argument("--collect-only", action="store_true")
    ap.add_argument("overrides", nargs="*", help="extra key=value overrides for every run")
    a = ap.parse_args()
    run_dirs, walls = {}, {}
    for seed in a.seeds:
        rd = Path(a.runs) / f"default-recipe-seed{seed}"
        run_dirs[seed] = rd
        if a.collect_only:
            continue
        t0 = time.time()
        cmd = [sys.executable, "-m", "rlvr.cli", "train", str(ROOT / "recipes/basic_arithmetic.yaml"), f"seed={seed}",
               f"run_dir={rd}", *a.overrides]
        print("+", " ".join(cmd), flush=True)
        if subprocess.call(cmd) != 0:
            print(f"seed {seed} failed", file=sys.stderr)
            return 1
        walls[seed] = time.time() - t0
    s = collect(run_dirs, Path(a.out), a.overrides, walls)
    print(json.dumps({k: v for k, v in s.items() if k != "per_seed"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
