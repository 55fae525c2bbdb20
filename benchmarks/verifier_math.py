"""Benchmark rlvr's math verifier against math-verify on the hand-labelled equivalence set.

Usage:
    pip install math-verify==0.9.0              # the comparison baseline (not an rlvr dependency)
    python benchmarks/verifier_math.py          # writes benchmarks/results/verifier_math.{json,md}
    python benchmarks/verifier_math.py --throughput-items 50000 --workers 2

Both verifiers see the same cases in one run, one case at a time, from the main thread (math-verify uses
``signal.alarm`` for its timeouts, which only works there). Per verifier and per category it reports accuracy,
false positives (accepted though the label says unequal), false negatives, and the mean and 99th-percentile
wall time per case. rlvr's time includes the round trip to its sympy worker process; math-verify's time is
``parse(gold) + parse(pred) + verify``. The prompt column is given to rlvr (its percent rule reads it);
math-verify has no such input.

Throughput: ``MathVerifier.verify_batch`` on integer answers (GSM8K-style ``#### N``, ``<answer>N</answer>``
and ``\\boxed{N}`` completions, half of them wrong), verifications per second.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT / "benchmarks" / "data" / "math_equivalence.jsonl"
RESULTS = ROOT / "benchmarks" / "results"


def load_cases(path: Path = DATA) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def run_rlvr(cases: list[dict], timeout_s: float) -> list[tuple[bool, float, dict]]:
    from verifiers import get_verifier

    v = get_verifier("math", timeout_s=timeout_s, max_workers=1)
    v.verify("\\boxed{x^2+2x+1}", "(x+1)^2")  # start the sympy worker and load its parser outside the timing
    v.verify("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\sqrt{3}/2")
    out = []
    for case in cases:
        start = time.perf_counter()
        verdict = v.verify(case["completion"], case["reference"], prompt=case.get("prompt"))
        elapsed = time.perf_counter() - start
        out.append((bool(verdict.passed), elapsed, {"answer_class": verdict.answer_class, "error": verdict.error,
                                                     **{k: verdict.detail.get(k) for k in ("extracted", "method", "reason")}}))
    return out


def math_verify_gold(reference: str) -> str:
    """math-verify's documented gold form: LaTeX inside ``$...$`` (a plain ``x^3-1`` or ``(1, 2)`` is not
    extracted at all by its default configuration); references that already carry ``$`` or a box are kept."""
    return reference if ("$" in reference or "\\boxed" in reference) else f"${reference}$"


def run_math_verify(cases: list[dict], wrap_gold: bool = True) -> list[tuple[bool, float, dict]]:
    from math_verify import parse, verify

    verify(parse("$\\frac{1}{2}$"), parse("$0.5$"))  # warm-up: load the parser outside the timing
    verify(parse("$x^2+2x+1$"), parse("$(x+1)^2$"))
    out = []
    for case in cases:
        start = time.perf_counter()
        error = None
        try:
            gold = math_verify_gold(case["reference"]) if wrap_gold else case["reference"]
            ok = bool(verify(parse(gold), parse(case["completion"])))
        except Exception as exc:  # math-verify raises on some inputs; a crash counts as "not equal"
            ok, error = False, f"{type(exc).__name__}: {exc}"[:200]
        out.append((ok, time.perf_counter() - start, {"error": error}))
    return out


def summarize(cases: list[dict], results: list[tuple[bool, float, dict]], subset=None) -> dict:
    idx = [i for i in range(len(cases)) if subset is None or subset(cases[i])]
    if not idx:
        return {}
    correct = sum(results[i][0] == cases[i]["equal"] for i in idx)
    fp = sum(results[i][0] and not cases[i]["equal"] for i in idx)
    fn = sum((not results[i][0]) and cases[i]["equal"] for i in idx)
    times = sorted(results[i][1] for i in idx)
    p99 = times[min(len(times) - 1, max(0, int(round(0.99 * len(times))) - 1))]
    return {
        "n": len(idx), "accuracy": correct / len(idx), "correct": correct, "false_positives": fp,
        "false_negatives": fn, "mean_ms": 1000 * statistics.fmean(times), "p99_ms": 1000 * p99,
        "median_ms": 1000 * statistics.median(times),
    }


def throughput(n_items: int, workers: int) -> dict:
    import random

    from verifiers import get_verifier

    rng = random.Random(0)
    forms = ["Adding it up.\n#### {x}", "<answer>{x}</answer>", "So the result is $\\boxed{{{x}}}$.",
             "The answer is {x}."]
    items = []
    for i in range(n_items):
        ref = rng.randint(0, 10**6)
        shown = ref if i % 2 == 0 else ref + rng.randint(1, 9)
        items.append((forms[i % len(forms)].format(x=f"{shown:,}" if i % 8 == 1 else shown), str(ref)))
    v = get_verifier("math", max_workers=workers)
    v.verify_batch(items[:100])  # warm the regex caches
    start = time.perf_counter()
    verdicts = v.verify_batch(items)
    elapsed = time.perf_counter() - start
    expected = [i % 2 == 0 for i in range(n_items)]
    return {
        "items": n_items, "workers": workers, "seconds": elapsed, "per_second": n_items / elapsed,
        "all_correct": [d.passed for d in verdicts] == expected,
        "fast_path_fraction": sum(d.detail.get("method") == "fast_path" for d in verdicts) / n_items,
    }


def table(rows: list[tuple[str, dict, dict]]) -> str:
    lines = ["| category | n | rlvr acc | rlvr FP | rlvr FN | math-verify acc | math-verify FP | math-verify FN |",
             "|---|---|---|---|---|---|---|---|"]
    for name, a, b in rows:
        lines.append(f"| {name} | {a['n']} | {a['accuracy']:.1%} | {a['false_positives']} | {a['false_negatives']} | "
                     f"{b['accuracy']:.1%} | {b['false_positives']} | {b['false_negatives']} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timeout-s", type=float, default=2.0, help="rlvr's per-case sympy deadline")
    parser.add_argument("--throughput-items", type=int, default=40_000)
    parser.add_argument("--workers", type=int, default=2, help="max_workers of verify_batch in the throughput run")
    parser.add_argument("--note", default="", help="free text stored with the results (machine load, ...)")
    args = parser.parse_args(argv)

    cases = load_cases()
    ours = run_rlvr(cases, args.timeout_s)
    theirs = run_math_verify(cases)
    theirs_raw = run_math_verify(cases, wrap_gold=False)

    overall = {"rlvr": summarize(cases, ours), "math_verify": summarize(cases, theirs),
               "math_verify_raw_gold": summarize(cases, theirs_raw)}
    no_policy = {"rlvr": summarize(cases, ours, lambda c: not c.get("policy")),
                 "math_verify": summarize(cases, theirs, lambda c: not c.get("policy"))}
    categories = list(dict.fromkeys(c["category"] for c in cases))
    per_category = {cat: {"rlvr": summarize(cases, ours, lambda c, cat=cat: c["category"] == cat),
                          "math_verify": summarize(cases, theirs, lambda c, cat=cat: c["category"] == cat)}
                    for cat in categories}
    sources = list(dict.fromkeys(c["source"] for c in cases))
    per_source = {src: {"rlvr": summarize(cases, ours, lambda c, src=src: c["source"] == src),
                        "math_verify": summarize(cases, theirs, lambda c, src=src: c["source"] == src)}
                  for src in sources}
    tput = throughput(args.throughput_items, args.workers)

    disagreements = []
    for case, (a_ok, _, a_d), (b_ok, _, b_d) in zip(cases, ours, theirs):
        if a_ok != case["equal"] or b_ok != case["equal"]:
            disagreements.append({
                "id": case["id"], "category": case["category"], "label": case["equal"], "rlvr": a_ok,
                "math_verify": b_ok, "reference": case["reference"], "completion": case["completion"][-160:],
                "rlvr_detail": a_d, "math_verify_error": b_d.get("error"),
            })

    from importlib.metadata import version

    env = {
        "python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
        "math_verify": version("math-verify"), "latex2sympy2_extended": version("latex2sympy2_extended"),
        "sympy": version("sympy"), "note": args.note,
    }
    result = {"cases": len(cases), "overall": overall, "excluding_policy_cases": no_policy,
              "per_category": per_category, "per_source": per_source, "throughput": tput, "environment": env,
              "errors": disagreements}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "verifier_math.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")

    a, b = overall["rlvr"], overall["math_verify"]
    pa, pb = no_policy["rlvr"], no_policy["math_verify"]
    md = [
        "# Math verifier: rlvr vs math-verify",
        "",
        f"{len(cases)} hand-labelled cases (`benchmarks/data/math_equivalence.jsonl`), one run, same machine.",
        "Command: `python benchmarks/verifier_math.py" + (f" --note '{args.note}'" if args.note else "") + "`.",
        "",
        "| verifier | accuracy | false positives | false negatives | mean time/case | p99 time/case |",
        "|---|---|---|---|---|---|",
        f"| rlvr `math` | {a['accuracy']:.1%} ({a['correct']}/{a['n']}) | {a['false_positives']} | "
        f"{a['false_negatives']} | {a['mean_ms']:.2f} ms | {a['p99_ms']:.1f} ms |",
        f"| math-verify {env['math_verify']} | {b['accuracy']:.1%} ({b['correct']}/{b['n']}) | {b['false_positives']} | "
        f"{b['false_negatives']} | {b['mean_ms']:.2f} ms | {b['p99_ms']:.1f} ms |",
        "",
        "math-verify is called as `verify(parse(gold), parse(completion))` with the gold in `$...$` (its documented "
        "form). Called with the raw reference string instead, it scores "
        f"{overall['math_verify_raw_gold']['accuracy']:.1%} ({overall['math_verify_raw_gold']['false_positives']} FP, "
        f"{overall['math_verify_raw_gold']['false_negatives']} FN).",
        "",
        f"Excluding the {a['n'] - pa['n']} cases whose label depends on a documented convention (`policy`): "
        f"rlvr {pa['accuracy']:.1%}, math-verify {pb['accuracy']:.1%}.",
        "",
        f"Throughput (`verify_batch`, integer answers, max_workers={tput['workers']}): "
        f"**{tput['per_second']:,.0f} verifications/s** ({tput['items']:,} items in {tput['seconds']:.2f} s, "
        f"{tput['fast_path_fraction']:.0%} on the fast path, all verdicts correct: {tput['all_correct']}).",
        "",
        "## Per category",
        "",
        table([(cat, per_category[cat]["rlvr"], per_category[cat]["math_verify"]) for cat in categories]),
        "",
        "## Per source",
        "",
        table([(src, per_source[src]["rlvr"], per_source[src]["math_verify"]) for src in sources]),
        "",
        f"Environment: Python {env['python']}, {env['platform']}, {env['cpu_count']} CPUs, sympy {env['sympy']}, "
        f"latex2sympy2_extended {env['latex2sympy2_extended']}." + (f" Note: {args.note}" if args.note else ""),
        "",
        f"Cases either verifier gets wrong are listed under `errors` in `verifier_math.json` ({len(disagreements)}).",
        "",
    ]
    (RESULTS / "verifier_math.md").write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
