"""Replay the info-gain monitor over finished runs (their rollouts.jsonl and metrics.jsonl).

The monitor only observes, so a replay gives the alerts a live run would have raised. Used to measure false
alarms on open-loop runs made before the monitor existed, or after changing its thresholds:

    python benchmarks/closure/replay_monitor.py RUN_DIR [RUN_DIR ...] --out benchmarks/results/monitor_replay.json

Completion lengths are re-tokenised from the text (+1 for the stop token), within a token of the generated ids.
"""

from __future__ import annotations

import argparse
import collections
import json

import torch

from rlvr.config import MonitorConfig
from rlvr.models import load_tokenizer, resolve_model
from rlvr.monitor import Monitor, signals_from_verifiers
from verifiers import get_verifier


def replay(run: str, tok, group_size: int, max_new_tokens: int) -> dict:
    recs = [json.loads(ln) for ln in open(f"{run}/rollouts.jsonl")]
    entropy = {}
    for ln in open(f"{run}/metrics.jsonl"):
        row = json.loads(ln)
        entropy[row["step"]] = row.get("entropy")
    v = get_verifier("math")
    mon = Monitor(MonitorConfig(), signals_from_verifiers([("math", v, 1.0)]), reference_verifier=v)
    preflight = [a.name for a in mon.start()]
    by_step = collections.defaultdict(list)
    for r in recs:
        by_step[r["step"]].append(r)
    events, G = [], group_size
    for step in sorted(by_step):
        rs = by_step[step]
        P = len(rs) // G
        rows = lambda xs: [xs[i * G:(i + 1) * G] for i in range(P)]  # noqa: E731
        lengths = [len(tok(r["completion"], add_special_tokens=False)["input_ids"]) + 1
                   if r["finish_reason"] == "stop" else max_new_tokens for r in rs]
        _, alerts = mon.observe(step, torch.tensor([r["reward"] for r in rs]).view(P, G),
                                rows([r["answer_class"] for r in rs]), rows([r["completion"] for r in rs]),
                                torch.tensor(lengths).view(P, G), references=rows([r["reference"] for r in rs]),
                                policy_entropy=entropy.get(step))
        events += [{"step": step, "alert": a.name, "rule": a.rule, "event": a.event} for a in alerts]
    return {"run": run, "steps": len(by_step), "preflight": preflight, "alert_events": events}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--max-new-tokens", type=int, default=24)
    ap.add_argument("--out")
    args = ap.parse_args()
    tok = load_tokenizer(resolve_model("smollm2-135m-instruct"))
    results = [replay(r, tok, args.group_size, args.max_new_tokens) for r in args.runs]
    for r in results:
        print(f"{r['run']}: {r['steps']} steps, preflight {r['preflight']}, alert events {r['alert_events']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"command": "python benchmarks/closure/replay_monitor.py " + " ".join(args.runs),
                       "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
