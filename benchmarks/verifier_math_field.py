"""Benchmark rlvr's math verifier against math-verify on other projects' grader test cases.

Usage:
    pip install math-verify==0.9.0                       # the comparison baseline (not an rlvr dependency)
    python benchmarks/build_math_field_tests.py          # only to regenerate the data from the snapshots
    python benchmarks/verifier_math_field.py             # writes benchmarks/results/verifier_math_field.{json,md}

The cases (``benchmarks/data/math_field_tests.jsonl``) are the (prediction, reference, expected verdict)
triples asserted by the test suites of math-verify and of other public graders; only those facts are taken,
not code. Each side gets the same strings in one run, one case at a time, from the main thread:

- rlvr ``math`` in its default mode and with ``strict_extraction=True``
  (``verify(prediction, reference)``; the prediction is the completion);
- math-verify, called as its README documents it: ``verify(parse(gold), parse(prediction))`` with the gold in
  ``$...$`` when it carries neither ``$`` nor a box (the same call as ``benchmarks/verifier_math.py``);
  also reported: the raw gold string, and, for math-verify's own cases, the options its tests pass
  (``match_types``, ``float_rounding``, ``strict``, ``allow_set_relation_comp``; ``boxed_match_priority=0``).

Per source: accuracy, false positives (accepted though the test expects a rejection), false negatives, mean
and 99th-percentile wall time per case. The headline excludes the ``debatable`` cases (verdicts set by a
convention on which graders differ, with the reason in the data); they are scored separately.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from verifier_math import math_verify_gold, summarize  # noqa: E402

DATA = ROOT / "benchmarks" / "data" / "math_field_tests.jsonl"
RESULTS = ROOT / "benchmarks" / "results"
SIDES = ("rlvr", "rlvr_strict", "math_verify", "math_verify_raw_gold", "math_verify_own_options")


def load_cases(path: Path = DATA) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    # the shape ``summarize`` reads
    return [{**r, "completion": r["prediction"], "equal": r["expected"]} for r in rows]


def run_rlvr(cases: list[dict], timeout_s: float, strict: bool) -> list[tuple[bool, float, dict]]:
    from verifiers import get_verifier

    v = get_verifier("math", timeout_s=timeout_s, max_workers=1, strict_extraction=strict)
    v.verify("\\boxed{x^2+2x+1}", "(x+1)^2")  # start the sympy worker and load its parser outside the timing
    v.verify("\\boxed{\\frac{\\sqrt{3}}{2}}", "\\sqrt{3}/2")
    out = []
    for case in cases:
        start = time.perf_counter()
        d = v.verify(case["prediction"], case["reference"])
        elapsed = time.perf_counter() - start
        out.append((bool(d.passed), elapsed, {"error": d.error, **{k: d.detail.get(k) for k in
                                                                     ("extracted", "method", "reason")}}))
    return out


def _math_verify_configs(harness: dict):
    from math_verify import ExprExtractionConfig, LatexExtractionConfig

    configs = []
    for kind in harness.get("match_types", ["latex", "expr"]):
        configs.append(LatexExtractionConfig(boxed_match_priority=0) if kind == "latex" else ExprExtractionConfig())
    kwargs = {"float_rounding": harness.get("precision", 6), "strict": harness.get("strict", True),
              "allow_set_relation_comp": harness.get("allow_set_relation_comp", False)}
    return configs, kwargs


def run_math_verify(cases: list[dict], mode: str) -> list[tuple[bool, float, dict]]:
    """``mode``: ``documented`` (gold in ``$...$``), ``raw`` (gold as written), ``own`` (the options of
    math-verify's own test helper, for the cases that come from it; the documented call otherwise)."""
    from math_verify import parse, verify

    verify(parse("$\\frac{1}{2}$"), parse("$0.5$"))  # warm-up: load the parser outside the timing
    verify(parse("$x^2+2x+1$"), parse("$(x+1)^2$"))
    out = []
    for case in cases:
        harness = case.get("harness") or {}
        start = time.perf_counter()
        error = None
        try:
            if mode == "own" and harness.get("helper") == "compare_strings":
                configs, kwargs = _math_verify_configs(harness)
                ok = bool(verify(parse(case["reference"], configs), parse(case["prediction"], configs), **kwargs))
            elif mode == "own" and case["source"] == "huggingface/Math-Verify":
                ok = bool(verify(parse(case["reference"]), parse(case["prediction"])))
            else:
                gold = case["reference"] if mode == "raw" else math_verify_gold(case["reference"])
                ok = bool(verify(parse(gold), parse(case["prediction"])))
        except Exception as exc:  # math-verify raises on some inputs; a crash counts as "not equal"
            ok, error = False, f"{type(exc).__name__}: {exc}"[:200]
        out.append((ok, time.perf_counter() - start, {"error": error}))
    return out


def _row(name: str, s: dict) -> str:
    if not s:
        return f"| {name} | 0 | | | | | |"
    return (f"| {name} | {s['n']} | {s['accuracy']:.1%} ({s['correct']}/{s['n']}) | {s['false_positives']} | "
            f"{s['false_negatives']} | {s['mean_ms']:.2f} ms | {s['p99_ms']:.1f} ms |")


HEADER = ["| verifier | n | accuracy | FP | FN | mean time/case | p99 time/case |", "|---|---|---|---|---|---|---|"]
LABELS = {"rlvr": "rlvr `math` (default)", "rlvr_strict": "rlvr `math`, strict_extraction",
          "math_verify": "math-verify (documented call)", "math_verify_raw_gold": "math-verify, raw gold",
          "math_verify_own_options": "math-verify, its tests' options"}


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timeout-s", type=float, default=2.0, help="rlvr's per-case sympy deadline")
    parser.add_argument("--note", default="", help="free text stored with the results (machine load, ...)")
    args = parser.parse_args(argv)

    cases = load_cases()
    results = {
        "rlvr": run_rlvr(cases, args.timeout_s, strict=False),
        "rlvr_strict": run_rlvr(cases, args.timeout_s, strict=True),
        "math_verify": run_math_verify(cases, "documented"),
        "math_verify_raw_gold": run_math_verify(cases, "raw"),
        "math_verify_own_options": run_math_verify(cases, "own"),
    }
    sources = list(dict.fromkeys(c["source"] for c in cases))

    def block(subset) -> dict:
        return {side: summarize(cases, res, subset) for side, res in results.items()}

    overall = block(lambda c: not c["debatable"])
    debatable = block(lambda c: c["debatable"])
    all_cases = block(None)
    per_source = {src: block(lambda c, src=src: c["source"] == src and not c["debatable"]) for src in sources}

    errors = []
    for i, case in enumerate(cases):
        verdicts = {side: res[i][0] for side, res in results.items()}
        if any(v != case["expected"] for k, v in verdicts.items() if k in ("rlvr", "rlvr_strict", "math_verify")):
            errors.append({"id": case["id"], "source": case["source"], "test": case["test"],
                           "debatable": case["debatable"], "expected": case["expected"], **verdicts,
                           "reference": case["reference"], "prediction": case["prediction"][-200:],
                           "rlvr_detail": results["rlvr"][i][2],
                           "math_verify_error": results["math_verify"][i][2].get("error")})

    from importlib.metadata import version

    env = {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
           "cpu": _cpu_model(), "math_verify": version("math-verify"),
           "latex2sympy2_extended": version("latex2sympy2_extended"), "sympy": version("sympy"), "note": args.note}
    result = {"cases": len(cases), "debatable_cases": sum(c["debatable"] for c in cases),
              "non_debatable": overall, "debatable": debatable, "all": all_cases, "per_source": per_source,
              "environment": env, "errors": errors}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "verifier_math_field.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")

    n_deb = result["debatable_cases"]
    md = [
        "# Math verifier on other projects' grader tests: rlvr vs math-verify",
        "",
        f"{len(cases)} cases asserted by the test suites of {len(sources)} public projects "
        f"(`benchmarks/data/math_field_tests.jsonl`, built by `benchmarks/build_math_field_tests.py`), "
        f"{n_deb} of them debatable. One run, same machine.",
        "Command: `python benchmarks/verifier_math_field.py" + (f" --note '{args.note}'" if args.note else "") + "`.",
        "",
        f"## Non-debatable cases ({overall['rlvr']['n']})",
        "",
        *HEADER,
        *[_row(LABELS[s], overall[s]) for s in SIDES],
        "",
        "## Per source (non-debatable)",
        "",
        "| source | n | rlvr acc | rlvr FP | rlvr FN | rlvr mean / p99 | strict acc | math-verify acc | "
        "math-verify FP | math-verify FN | math-verify mean / p99 | math-verify, its tests' options |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for src in sources:
        a, s_, b, o = (per_source[src][k] for k in ("rlvr", "rlvr_strict", "math_verify", "math_verify_own_options"))
        md.append(f"| {src} | {a['n']} | {a['accuracy']:.1%} | {a['false_positives']} | {a['false_negatives']} | "
                  f"{a['mean_ms']:.2f} / {a['p99_ms']:.1f} ms | {s_['accuracy']:.1%} | {b['accuracy']:.1%} | "
                  f"{b['false_positives']} | {b['false_negatives']} | {b['mean_ms']:.2f} / {b['p99_ms']:.1f} ms | "
                  f"{o['accuracy']:.1%} |")
    md += [
        "",
        f"## Debatable cases ({n_deb}), scored against the source's verdict",
        "",
        *HEADER,
        *[_row(LABELS[s], debatable[s]) for s in SIDES],
        "",
        "Reasons (from the data): " + "; ".join(sorted({c["debatable_reason"] for c in cases if c["debatable"]})) + ".",
        "",
        f"Environment: {env['cpu']}, {env['cpu_count']} CPUs, Python {env['python']}, sympy {env['sympy']}, "
        f"math-verify {env['math_verify']}, latex2sympy2_extended {env['latex2sympy2_extended']}."
        + (f" Note: {args.note}" if args.note else ""),
        "",
        f"Cases that rlvr (either mode) or math-verify gets wrong are listed under `errors` in "
        f"`verifier_math_field.json` ({len(errors)}).",
        "",
    ]
    (RESULTS / "verifier_math_field.md").write_text("\n".join(md))
    print("\n".join(md))


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


if __name__ == "__main__":
    main()
