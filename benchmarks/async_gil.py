"""How much of an asynchronous step holds the GIL (issue 25): py-spy samples a running default-recipe run.

    python benchmarks/async_gil.py [--seed 0] [--after 45] [--seconds 50] [--out benchmarks/results/async/gil.json]

Needs py-spy (`pip install -e ".[bench]"`). Starts `rlvr train recipes/basic_arithmetic.yaml seed=S
run_dir=runs/gil-seedS log.progress=false` (rollout.max_staleness 1, the recipe's default), waits `--after` seconds
(start-up, the initial evaluation and the first steps), then records twice for `--seconds` each at 50 Hz with
`py-spy record --threads --format raw`: first every non-idle sample, then with `--gil` only the samples in which
the thread holds the GIL. Per Python thread it reports the busy share (non-idle samples / samples) and the GIL
share (GIL-holding samples / samples). OpenMP worker threads (torch's second intra-op thread) are not Python
threads and do not appear. The run is left to finish (its held-out figures are the recipe's).
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.default_recipe import machine  # noqa: E402

RATE = 50


def per_thread(raw: Path) -> collections.Counter:
    """Samples per thread name from py-spy's raw (collapsed-stack) output: 'thread (tid): name;frame;... count'."""
    out: collections.Counter = collections.Counter()
    for line in raw.read_text().splitlines():
        if line.strip():
            stack, n = line.rsplit(" ", 1)
            out[stack.split(";")[0].split(": ", 1)[-1]] += int(n)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--after", type=float, default=45.0)
    ap.add_argument("--seconds", type=int, default=50)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/async/gil.json"))
    args = ap.parse_args()
    run_dir = ROOT / f"runs/gil-seed{args.seed}"
    cmd = ["rlvr", "train", "recipes/basic_arithmetic.yaml", f"seed={args.seed}", f"run_dir={run_dir}",
           "log.progress=false", "overwrite=true"]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(args.after)
    counts = {}
    for name, extra in (("busy", []), ("gil", ["--gil"])):
        raw = run_dir.parent / f"gil-seed{args.seed}.{name}.txt"
        subprocess.run(["py-spy", "record", "-p", str(proc.pid), "-r", str(RATE), "-d", str(args.seconds),
                        "--threads", "--nonblocking", "--format", "raw", "-o", str(raw), *extra],
                       check=True, capture_output=True)
        counts[name] = per_thread(raw)
    proc.wait()
    total = RATE * args.seconds
    threads = sorted(set(counts["busy"]) | set(counts["gil"]), key=lambda t: -counts["busy"][t])
    res = {"command": "python benchmarks/async_gil.py " + " ".join(sys.argv[1:]), "run": " ".join(cmd),
           "machine": machine(), "samples_per_recording": total, "exit": proc.returncode,
           "threads": {t: {"busy_share": round(counts["busy"][t] / total, 4),
                           "gil_share": round(counts["gil"][t] / total, 4)} for t in threads
                       if counts["busy"][t] + counts["gil"][t] >= 5},
           "gil_share_all_threads": round(sum(counts["gil"].values()) / total, 4)}
    Path(args.out).write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
