"""Compare the math verifier's verdicts before and after a change, on the completions of real training runs.

Usage:
    python benchmarks/verifier_math_verdict_diff.py --before <commit> RUN_DIR [RUN_DIR ...] [--out FILE.json]

Each run folder's ``rollouts.jsonl`` (training completions, graded as the recipe grades them: ``strict_extraction``
from the run's ``config.yaml``) and ``eval_step*.jsonl`` (held-out completions, graded with the default extraction,
as ``rlvr``'s evaluation does) are verified twice, with the question as prompt as the trainer passes it: with
``verifiers/`` as it was at ``--before`` (exported with ``git archive`` into a temporary folder and run in a
subprocess) and with the working tree's. Every changed verdict is listed with both extractions. A third pass also
gives the working tree's verifier each rollout's ``finish_reason`` (which the trainer does not pass yet) and counts
the verdicts that would change.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_WORKER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from verifiers import MathVerifier
items = json.load(open(sys.argv[2]))
out = []
cache = {}
for it in items:
    key = it["strict"]
    if key not in cache:
        cache[key] = MathVerifier(max_workers=1, strict_extraction=key)
    kwargs = {"finish_reason": it["finish_reason"]} if it.get("finish_reason") else {}
    d = cache[key].verify(it["completion"], it["reference"], prompt=it.get("prompt"), **kwargs)
    out.append([bool(d.passed), d.detail.get("extracted"), d.detail.get("reason")])
json.dump(out, open(sys.argv[3], "w"))
"""


def load_items(run_dirs: list[Path]) -> list[dict]:
    items = []
    for run in run_dirs:
        config = (run / "config.yaml").read_text() if (run / "config.yaml").exists() else ""
        strict = "strict_extraction: true" in config
        for line in (run / "rollouts.jsonl").read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                items.append({"run": run.name, "kind": "train", "strict": strict, "completion": r["completion"],
                              "reference": r["reference"], "prompt": r.get("question"), "logged": r.get("passed"),
                              "finish_reason": r.get("finish_reason")})
        for path in sorted(run.glob("eval_step*.jsonl")):
            for line in path.read_text().splitlines():
                if line.strip():
                    r = json.loads(line)
                    items.append({"run": run.name, "kind": path.stem, "strict": False, "completion": r["completion"],
                                  "reference": r["reference"], "prompt": r.get("question"), "logged": r.get("passed"),
                                  "finish_reason": r.get("finish_reason")})
    return items


def verdicts(src_root: Path, items: list[dict], tmp: Path, tag: str, finish_reason: bool = False) -> list:
    """Verdicts of ``src_root``'s verifiers/ on ``items`` (with the question as prompt, as the trainer passes it;
    with ``finish_reason`` also the rollout's finish reason, which the trainer does not pass yet)."""
    inp, out = tmp / f"{tag}_in.json", tmp / f"{tag}_out.json"
    keys = ("completion", "reference", "strict", "prompt") + (("finish_reason",) if finish_reason else ())
    inp.write_text(json.dumps([{k: it.get(k) for k in keys} for it in items]))
    subprocess.run([sys.executable, "-c", _WORKER, str(src_root), str(inp), str(out)], check=True)
    return json.loads(out.read_text())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--before", required=True, help="git commit whose verifiers/ gives the 'before' verdicts")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    items = load_items(args.runs)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        old_root = tmp / "before"
        old_root.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before, "verifiers"], check=True,
                                 capture_output=True).stdout
        subprocess.run(["tar", "-x", "-C", str(old_root)], input=archive, check=True)
        before = verdicts(old_root, items, tmp, "before")
        after = verdicts(ROOT, items, tmp, "after")
        with_reason = verdicts(ROOT, items, tmp, "after_finish_reason", finish_reason=True)
    changed = [{**{k: it[k] for k in ("run", "kind", "strict", "reference")}, "completion": it["completion"][-200:],
                "before": b, "after": a} for it, b, a in zip(items, before, after) if b[0] != a[0]]
    extraction_changed = sum(1 for b, a in zip(before, after) if b[1] != a[1])
    by_kind: dict = {}
    for it in items:
        k = "train" if it["kind"] == "train" else "held-out"
        by_kind[k] = by_kind.get(k, 0) + 1
    if_reason = [{**{k: it[k] for k in ("run", "kind", "strict", "reference", "finish_reason")},
                  "completion": it["completion"][-200:], "after": a, "with_finish_reason": w}
                 for it, a, w in zip(items, after, with_reason) if a[0] != w[0]]
    cut = sum(1 for it in items if it.get("finish_reason") == "length")
    logged_mismatch = sum(1 for it, b in zip(items, before) if it["logged"] is not None and it["logged"] != b[0])
    result = {"before": args.before, "runs": [str(r) for r in args.runs], "verdicts": len(items), "by_kind": by_kind,
              "changed_verdicts": len(changed), "changed_extractions": extraction_changed,
              "before_vs_logged_mismatches": logged_mismatch, "finish_reason_length": cut,
              "changed_if_finish_reason_passed": len(if_reason), "changed": changed,
              "changed_by_finish_reason": if_reason}
    text = json.dumps(result, indent=2, ensure_ascii=False)
    if args.out:
        args.out.write_text(text + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("changed", "changed_by_finish_reason")}, indent=2))
    for c in changed[:40]:
        print(c)


if __name__ == "__main__":
    main()
