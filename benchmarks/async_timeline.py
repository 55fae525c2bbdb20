"""Where a core sits idle in an asynchronous run (issue 25): the default recipe once, its threads' CPU time sampled.

    python benchmarks/async_timeline.py [--seed 0] [--run runs/async-timeline] [--out benchmarks/results/async]
                                        [-- override ...]

Runs `rlvr train recipes/basic_arithmetic.yaml seed=S run_dir=RUN log.progress=false` (the recipe's default,
rollout.max_staleness 1) and every 0.25 s reads each thread's user + system CPU time from /proc/PID/task/*/stat.
Idle core-seconds in an interval = cores x seconds - CPU seconds used by the process's threads (a thread that
ended inside an interval loses that interval's part: a small undercount of use). The console lines split the run
into phases:

    start-up    launch -> the held-out line before training (imports, data, vLLM start, the initial evaluation)
    pre-flight  -> the consistency pre-flight's line (printed after the first update in an asynchronous run)
    steps       -> the held-out line after the last step
    end         -> exit (summary, final checkpoint)

Writes OUT/timeline.json (per-second CPU use, the phases' idle core-seconds, wall clock, CPU %) and prints a table.
The CPU % here counts only the sampled threads; `/usr/bin/time` (benchmarks/async.py) is the reference figure.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.default_recipe import machine  # noqa: E402


def _thread_cpu(pid: int, hz: int) -> dict[str, float]:
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[tid] = (int(fields[11]) + int(fields[12])) / hz  # utime + stime, clock ticks
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--run", default=str(ROOT / "runs/async-timeline"))
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/async"))
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    run = Path(args.run)
    if run.exists():
        import shutil

        shutil.rmtree(run)
    cores = len(os.sched_getaffinity(0))
    hz = os.sysconf("SC_CLK_TCK")
    cmd = ["rlvr", "train", "recipes/basic_arithmetic.yaml", f"seed={args.seed}", f"run_dir={run}",
           "log.progress=false", *args.overrides]
    print("timeline: " + " ".join(cmd), flush=True)
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})  # each line timed when it is written
    lines: list[tuple[float, str]] = []

    def read():
        for ln in proc.stdout:
            lines.append((time.time() - t0, ln.rstrip()))
            print(f"{time.time() - t0:7.1f}s {ln.rstrip()}", flush=True)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    samples = []  # (seconds since launch, CPU seconds used since the previous sample by threads alive at both)
    prev = _thread_cpu(proc.pid, hz)
    t_prev = time.time() - t0
    while proc.poll() is None:
        time.sleep(0.25)
        cur, t = _thread_cpu(proc.pid, hz), time.time() - t0
        samples.append((t_prev, t, sum(c - prev.get(tid, 0.0) for tid, c in cur.items())))
        prev, t_prev = cur, t
    reader.join(timeout=5)
    wall = time.time() - t0
    if proc.returncode:
        sys.exit(f"timeline: the run exited {proc.returncode}")

    def at(pattern: str, default: float) -> float:
        return next((t for t, ln in lines if pattern in ln), default)

    steps = [t for t, ln in lines if "held-out pass@1 after step" in ln]
    marks = [("start-up", 0.0, at("held-out pass@1 before training", 0.0)),
             ("pre-flight", at("held-out pass@1 before training", 0.0), at("train/held-out consistency", 0.0)),
             ("steps", at("train/held-out consistency", 0.0), steps[-1] if steps else wall),
             ("end", steps[-1] if steps else wall, wall)]
    phases = []
    for name, a, b in marks:
        used = sum(u * max(0.0, min(b, s1) - max(a, s0)) / (s1 - s0) for s0, s1, u in samples if s1 > s0)
        phases.append({"phase": name, "from_s": round(a, 1), "to_s": round(b, 1),
                       "idle_core_s": round(max(0.0, cores * (b - a) - used), 1),
                       "cpu_percent": round(100 * used / (b - a), 1) if b > a else None})
    used = sum(u for _, _, u in samples)
    per_second = [[round(s0, 2), round(100 * u / (s1 - s0), 1)] for s0, s1, u in samples if s1 > s0]
    res = {"command": "python benchmarks/async_timeline.py " + " ".join(sys.argv[1:]), "machine": machine(),
           "cores": cores, "wall_s": round(wall, 1), "cpu_percent": round(100 * used / wall, 1),
           "idle_core_s": round(cores * wall - used, 1), "phases": phases, "cpu_percent_per_sample": per_second}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "timeline.json").write_text(json.dumps(res) + "\n")
    print(f"\nwall {res['wall_s']} s, CPU {res['cpu_percent']}% of one core, idle {res['idle_core_s']} core-s")
    print("| phase | from s | to s | CPU % | idle core-s |\n|---|---|---|---|---|")
    for p in phases:
        print(f"| {p['phase']} | {p['from_s']} | {p['to_s']} | {p['cpu_percent']} | {p['idle_core_s']} |")


if __name__ == "__main__":
    main()
