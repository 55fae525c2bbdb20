"""Benchmark rlvr's math verifier against math-verify on released real model completions with correctness labels.

Usage:
    pip install math-verify==0.9.0                       # the comparison baseline (not an rlvr dependency)
    python benchmarks/build_math_real_outputs.py         # only to regenerate the data from the snapshots
    python benchmarks/verifier_math_real.py              # writes benchmarks/results/verifier_math_real.{json,md}

The cases (``benchmarks/data/math_real_outputs.jsonl``) are full completions written by released models, the
reference as the dataset gives it, and the label their publisher recorded (see the builder's docstring). Each side
gets the same strings in one run, one case at a time, from the main thread:

- rlvr ``math`` in its default mode and with ``strict_extraction=True``
  (``verify(completion, reference, prompt=question)``, as the trainer calls it);
- math-verify 0.9.0 as its README documents it: ``verify(parse(gold), parse(completion))`` with the gold in
  ``$...$`` (the same call as ``benchmarks/verifier_math.py`` and ``benchmarks/verifier_math_field.py``); and a
  second time with the extraction its README documents for multiple choice on the letter references
  (``StringExtractionConfig(strings=("A", ..., "E"))`` first, then its LaTeX and expression configs).

Per source: accuracy, false positives (accepted though labelled wrong), false negatives. The headline excludes the
``debatable`` cases (a label that is not a fact about the text alone; the reason is in the data); they are scored
separately. Every case on which rlvr (either mode) and math-verify disagree, or any of them misses the label, is
listed in the JSON and in the Markdown.
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
from verifier_math_field import _cpu_model  # noqa: E402

DATA = ROOT / "benchmarks" / "data" / "math_real_outputs.jsonl"
RESULTS = ROOT / "benchmarks" / "results"
SIDES = ("rlvr", "rlvr_strict", "math_verify", "math_verify_letters")
LABELS = {"rlvr": "rlvr `math` (default)", "rlvr_strict": "rlvr `math`, strict_extraction",
          "math_verify": "math-verify 0.9.0 (documented call)",
          "math_verify_letters": "math-verify 0.9.0, choice letters via StringExtractionConfig"}


def load_cases(path: Path = DATA) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [{**r, "equal": r["label"]} for r in rows]  # the shape ``summarize`` reads


def run_rlvr(cases: list[dict], timeout_s: float, strict: bool) -> list[tuple[bool, float, dict]]:
    from verifiers import get_verifier

    v = get_verifier("math", timeout_s=timeout_s, max_workers=1, strict_extraction=strict)
    v.verify("\\boxed{x^2+2x+1}", "(x+1)^2")  # start the sympy worker outside the timing
    out = []
    for case in cases:
        start = time.perf_counter()
        d = v.verify(case["completion"], case["reference"], prompt=case.get("question"))
        elapsed = time.perf_counter() - start
        out.append((bool(d.passed), elapsed, {"error": d.error, **{k: d.detail.get(k) for k in
                                                                     ("extracted", "format", "reason")}}))
    return out


def run_math_verify(cases: list[dict], letters: bool = False) -> list[tuple[bool, float, dict]]:
    """``letters``: for a choice-letter reference (``A``-``E``), the extraction math-verify documents for multiple
    choice: ``StringExtractionConfig`` with the choice letters, before its LaTeX and expression configs."""
    import re

    from math_verify import ExprExtractionConfig, LatexExtractionConfig, StringExtractionConfig, parse, verify

    verify(parse("$\\frac{1}{2}$"), parse("$0.5$"))  # warm-up
    choices = StringExtractionConfig(strings=tuple("ABCDE"))
    out = []
    for case in cases:
        start = time.perf_counter()
        error, extracted = None, None
        try:
            if letters and re.fullmatch(r"[A-E]", case["reference"].strip()):
                gold = parse(case["reference"].strip(), [choices])
                pred = parse(case["completion"], [choices, LatexExtractionConfig(), ExprExtractionConfig()])
            else:
                gold, pred = parse(math_verify_gold(case["reference"])), parse(case["completion"])
            extracted = str(pred[-1]) if pred else None
            ok = bool(verify(gold, pred))
        except Exception as exc:  # a crash counts as "not equal"
            ok, error = False, f"{type(exc).__name__}: {exc}"[:200]
        out.append((ok, time.perf_counter() - start, {"error": error, "extracted": extracted}))
    return out


def _row(name: str, s: dict) -> str:
    if not s:
        return f"| {name} | 0 | | | | |"
    return (f"| {name} | {s['n']} | {s['accuracy']:.1%} ({s['correct']}/{s['n']}) | {s['false_positives']} | "
            f"{s['false_negatives']} | {s['mean_ms']:.2f} ms |")


HEADER = ["| verifier | n | accuracy | FP | FN | mean time/case |", "|---|---|---|---|---|---|"]


def _short(text: str, n: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else "..." + text[-n:]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--timeout-s", type=float, default=2.0, help="rlvr's per-case sympy deadline")
    parser.add_argument("--note", default="", help="free text stored with the results (machine load, ...)")
    parser.add_argument("--no-math-verify", action="store_true", help="rlvr only (math-verify not installed)")
    parser.add_argument("--verifiers-root", type=Path, default=None,
                        help="import verifiers/ from this folder (e.g. an older commit exported with git archive)")
    parser.add_argument("--name", default="verifier_math_real", help="results file stem in benchmarks/results/")
    args = parser.parse_args(argv)
    if args.verifiers_root is not None:
        sys.path.insert(0, str(args.verifiers_root.resolve()))

    cases = load_cases()
    results = {"rlvr": run_rlvr(cases, args.timeout_s, strict=False),
               "rlvr_strict": run_rlvr(cases, args.timeout_s, strict=True)}
    sides = ["rlvr", "rlvr_strict"]
    if not args.no_math_verify:
        results["math_verify"] = run_math_verify(cases)
        results["math_verify_letters"] = run_math_verify(cases, letters=True)
        sides += ["math_verify", "math_verify_letters"]
    sources = list(dict.fromkeys(c["source"] for c in cases))

    def block(subset) -> dict:
        return {side: summarize(cases, res, subset) for side, res in results.items()}

    overall = block(lambda c: not c["debatable"])
    debatable = block(lambda c: c["debatable"])
    per_source = {src: block(lambda c, src=src: c["source"] == src and not c["debatable"]) for src in sources}
    sets = list(dict.fromkeys((c["source"], c["dataset"]) for c in cases))
    per_set = {f"{src} {ds}": block(lambda c, src=src, ds=ds: (c["source"], c["dataset"]) == (src, ds)
                                     and not c["debatable"]) for src, ds in sets}

    listed = []
    for i, case in enumerate(cases):
        verdicts = {side: results[side][i][0] for side in sides}
        if len(set(verdicts.values())) > 1 or any(v != case["label"] for v in verdicts.values()):
            listed.append({"id": case["id"], "source": case["source"], "debatable": case["debatable"],
                           "label": case["label"], **verdicts, "reference": case["reference"],
                           "completion_tail": case["completion"][-300:],
                           "rlvr_detail": results["rlvr"][i][2],
                           "math_verify_detail": results["math_verify"][i][2] if "math_verify" in results else None})

    from importlib.metadata import PackageNotFoundError, version

    def _version(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    import verifiers

    env = {"verifiers_from": str(Path(verifiers.__file__).parent), "python": platform.python_version(),
           "platform": platform.platform(), "cpu_count": os.cpu_count(),
           "cpu": _cpu_model(), "math_verify": _version("math-verify"), "sympy": _version("sympy"),
           "note": args.note}
    result = {"cases": len(cases), "debatable_cases": sum(bool(c["debatable"]) for c in cases),
              "non_debatable": overall, "debatable": debatable, "per_source": per_source, "per_set": per_set,
              "environment": env,
              "listed": listed}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / f"{args.name}.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")

    flags = ([f"--verifiers-root {args.verifiers_root}"] if args.verifiers_root else []) \
        + (["--no-math-verify"] if args.no_math_verify else []) \
        + ([f"--name {args.name}"] if args.name != "verifier_math_real" else []) \
        + ([f"--note '{args.note}'"] if args.note else [])
    cmd = " ".join(["python benchmarks/verifier_math_real.py", *flags])
    md = [
        "# Math verifier on released real model completions: rlvr vs math-verify",
        "",
        f"{len(cases)} completions from {len(sources)} public sources (`benchmarks/data/math_real_outputs.jsonl`, "
        f"built by `benchmarks/build_math_real_outputs.py`), {result['debatable_cases']} of them debatable. "
        "One run, same machine.",
        f"Command: `{cmd}`.",
        "",
        f"## Non-debatable cases ({overall['rlvr']['n']})",
        "",
        *HEADER,
        *[_row(LABELS[s], overall[s]) for s in sides],
        "",
        "## Per source (non-debatable)",
        "",
        "| source | n | " + " | ".join(f"{LABELS[s]} acc / FP / FN" for s in sides) + " |",
        "|---|---|" + "---|" * len(sides),
    ]
    for src in sources:
        cells = [f"{per_source[src][s]['accuracy']:.1%} / {per_source[src][s]['false_positives']} / "
                 f"{per_source[src][s]['false_negatives']}" for s in sides]
        md.append(f"| {src} | {per_source[src]['rlvr']['n']} | " + " | ".join(cells) + " |")
    md += ["", "## Per source and dataset (non-debatable)", "",
           "| source | dataset | n | " + " | ".join(f"{LABELS[s]} acc / FP / FN" for s in sides) + " |",
           "|---|---|---|" + "---|" * len(sides)]
    for (src, ds) in sets:
        row = per_set[f"{src} {ds}"]
        cells = [f"{row[s]['accuracy']:.1%} / {row[s]['false_positives']} / {row[s]['false_negatives']}" for s in sides]
        md.append(f"| {src} | {ds} | {row['rlvr']['n']} | " + " | ".join(cells) + " |")
    md += [
        "",
        f"## Debatable cases ({result['debatable_cases']}), scored against the source's label",
        "",
        *HEADER,
        *[_row(LABELS[s], debatable[s]) for s in sides],
        "",
        "Reasons (from the data): " + "; ".join(sorted({c["debatable"] for c in cases if c["debatable"]})) + ".",
        "",
        f"Environment: {env['cpu']}, {env['cpu_count']} CPUs, Python {env['python']}, sympy {env['sympy']}, "
        f"math-verify {env['math_verify']}." + (f" Note: {args.note}" if args.note else ""),
        "",
        f"## Every case where the verifiers disagree or one misses the label ({len(listed)})",
        "",
        "| id | debatable | label | " + " | ".join(sides) + " | reference | rlvr extracted | completion (end) |",
        "|---|---|---|" + "---|" * len(sides) + "---|---|---|",
    ]
    for row in listed:
        tail = _short(row["completion_tail"]).replace("|", "\\|")
        md.append(f"| {row['id']} | {'yes' if row['debatable'] else ''} | {int(row['label'])} | "
                  + " | ".join(str(int(row[s])) for s in sides)
                  + f" | {row['reference']} | {_short(row['rlvr_detail'].get('extracted') or '', 40)} | {tail} |")
    md.append("")
    (RESULTS / f"{args.name}.md").write_text("\n".join(md))
    print("\n".join(md[:30]))


if __name__ == "__main__":
    main()
