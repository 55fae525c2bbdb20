"""Fault-injection benchmark of the info-gain monitor on simulated loops of known truth.

    python benchmarks/monitor/fault_injection.py [--steps 40] [--seeds 0 1 2]
        [--out benchmarks/results/monitor_fault_injection.json]

What it is and what it is not: the policy is simulated (no model trains), so this measures the monitor's rules on
streams whose truth is known by construction; it does not measure lead time against a real held-out accuracy
curve (`benchmarks/monitor/real_faults.py` does that on real runs). Each step: P = 8 prompts x G = 8 samples;
prompt i's right answer is `i`; the model answers it with probability ~acc (per-prompt accuracy around acc), else
one of four wrong answers or no answer. A loop is a *verdict function* `score(answer, text, length, reference,
group)`: the monitor gets its verdicts, and the closure-by-intervention sample is the same function applied with
another prompt's reference (what the trainer does with the real reward).

Loops (truth in brackets):
  open_exact (0.3), open_exact_high (0.85), open_noisy (10% of verdicts flipped)   [open: any alert is false]
  closed_majority   verdict = the group's plurality answer, declared external      [closed: CLOSED_LOOP]
  closed_first      verdict = agrees with the group's first completion             [closed: CLOSED_LOOP]
  spurious_length   odd prompts rewarded by length, even prompts exact             [spurious: SPURIOUS_SIGNAL]
  spurious_parity   1 when the answer's last digit is even, whatever the reference [answer-level: CLOSED_LOOP
                    (reference_blind) or SPURIOUS_SIGNAL]
  spurious_tag      1 for any tagged answer, right or wrong                         [spurious/blind]
  verifier_errors   20% of verdicts are errors                                      [VERIFIER_FAULT]
  verifier_timeouts 10% of verdicts time out                                        [VERIFIER_FAULT]
  exhausted         every answer right (an easy task)                               [NO_SIGNAL]
  judge_is_policy   a judge whose identity is the policy                            [CLOSED_LOOP at step 0]
  drifting_judge    a judge whose identity changes at step 10                       [SIGNAL_DRIFT at step 10]

Per loop: detection rate over seeds, steps to first detection of the expected alert, and for the open loops the
alerts fired per 1,000 steps (critical and warning apart).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import zlib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from rlvr.config import MonitorConfig  # noqa: E402
from rlvr.monitor import Monitor, Signal  # noqa: E402
from verifiers import SignalSpec  # noqa: E402

P, G = 8, 8
EXT = SignalSpec("binary", True, "external", "cheap")
GRADED = SignalSpec("graded", True, "external", "cheap")
JUDGE = SignalSpec("binary", True, "judge", "expensive")


def exact(a, t, n, ref, grp):
    return float(a == ref)


def majority(a, t, n, ref, grp):
    c = Counter(x for x in grp if x is not None)
    return float(a is not None and bool(c) and a == c.most_common(1)[0][0])


def first(a, t, n, ref, grp):
    return float(a == grp[0])


def parity(a, t, n, ref, grp):
    return float(a is not None and int(a[-1]) % 2 == 0)


def tagged(a, t, n, ref, grp):
    return float("<answer>" in t)


LOOPS = {
    # name: (accuracy, verdict function, signal spec, expected alert names, kind)
    "open_exact": (0.3, exact, EXT, [], "open"),
    "open_exact_high": (0.85, exact, EXT, [], "open"),
    "open_noisy": (0.4, "noisy", EXT, [], "open"),
    "closed_majority": (0.4, majority, EXT, ["CLOSED_LOOP"], "closed"),
    "closed_first": (0.4, first, EXT, ["CLOSED_LOOP"], "closed"),
    "spurious_length": (0.3, "length", GRADED, ["SPURIOUS_SIGNAL"], "spurious"),
    "spurious_parity": (0.3, parity, EXT, ["CLOSED_LOOP", "SPURIOUS_SIGNAL"], "spurious"),
    "spurious_tag": (0.3, tagged, EXT, ["CLOSED_LOOP", "SPURIOUS_SIGNAL"], "spurious"),
    "verifier_errors": (0.4, "errors", EXT, ["VERIFIER_FAULT"], "fault"),
    "verifier_timeouts": (0.4, "timeouts", EXT, ["VERIFIER_FAULT"], "fault"),
    "exhausted": (1.0, exact, EXT, ["NO_SIGNAL"], "fault"),
    "judge_is_policy": (0.4, exact, JUDGE, ["CLOSED_LOOP"], "closed"),
    "drifting_judge": (0.4, exact, JUDGE, ["SIGNAL_DRIFT"], "fault"),
}


def policy_step(rng: random.Random, acc: float):
    """Answers, texts and lengths of P x G samples from the simulated policy."""
    answers, texts, lengths = [], [], []
    for i in range(P):
        p = 1.0 if acc >= 1.0 else min(0.97, max(0.0, rng.gauss(acc, 0.2)))
        aa, tt, ll = [], [], []
        for _ in range(G):
            if rng.random() < p:
                a = str(i)
            else:
                a = rng.choices([f"{i}{k}" for k in range(1, 5)] + [None], weights=[1, 0.5, 0.25, 0.12, 0.15])[0]
            n = rng.randint(6, 12)
            aa.append(a), tt.append(f"<answer>{a}</answer>" if a is not None else "I think " + "x" * n)
            ll.append(n)
        answers.append(aa), texts.append(tt), lengths.append(ll)
    return answers, texts, lengths


def verdicts(loop: str, fn, answers, texts, lengths, refs, rng):
    """([P][G] rewards, [P][G] errors) of a loop given the references `refs` (per prompt)."""
    rewards, errors = [], []
    for i in range(P):
        rr, ee = [], []
        for j in range(G):
            a, t, n = answers[i][j], texts[i][j], lengths[i][j]
            err = None
            if fn == "noisy":
                s = exact(a, t, n, refs[i], answers[i])
                s = 1.0 - s if rng.random() < 0.1 else s
            elif fn == "length":
                s = exact(a, t, n, refs[i], answers[i]) if i % 2 == 0 else min(n, 12) / 12
            elif fn in ("errors", "timeouts"):
                if fn == "errors" and rng.random() < 0.2:
                    s, err = 0.0, "RuntimeError: injected"
                elif fn == "timeouts" and rng.random() < 0.1:
                    s, err = 0.0, "timeout after 2.0s"
                else:
                    s = exact(a, t, n, refs[i], answers[i])
            else:
                s = fn(a, t, n, refs[i], answers[i])
            rr.append(s), ee.append(err)
        rewards.append(rr), errors.append(ee)
    return rewards, errors


def run_loop(loop: str, seed: int, steps: int) -> list[tuple[int, str, str, str]]:
    acc, fn, spec, _, _ = LOOPS[loop]
    ident = {"v": "judge-v1"}
    kwargs = {}
    if loop == "judge_is_policy":
        sig = Signal("judge", 1.0, spec, identity=lambda: "the-policy")
        kwargs["policy_identity"] = "the-policy"
    elif loop == "drifting_judge":
        sig = Signal("judge", 1.0, spec, identity=lambda: ident["v"])
        kwargs["policy_identity"] = "the-policy"
    else:
        sig = Signal("reward", 1.0, spec)
    mon = Monitor(MonitorConfig(bootstrap=0), [sig], **kwargs)
    events = [(0, a.name, a.rule, a.severity) for a in mon.start() if a.event == "fired"]
    rng = random.Random(seed * 1_000_003 + zlib.crc32(loop.encode()) % 10_007)
    refs = [str(i) for i in range(P)]
    for t in range(1, steps + 1):
        if loop == "drifting_judge" and t == 10:
            ident["v"] = "judge-v2"
        answers, texts, lengths = policy_step(rng, acc)
        rewards, errors = verdicts(loop, fn, answers, texts, lengths, refs, rng)
        classes = answers
        intervention = None
        if mon.intervenes:  # the trainer's rule: external verifiers only
            passing = [g for g in range(P) if max(rewards[g]) >= 0.5]
            picked = sorted(rng.sample(passing, min(mon.cfg.intervention_groups, len(passing))))
            if picked:
                donors = [refs[(g + 1) % P] for g in range(P)]
                swapped, _ = verdicts(loop, fn, answers, texts, lengths, donors, random.Random(t))
                intervention = ([rewards[g] for g in picked], [swapped[g] for g in picked])
        ref_scores = [[float(a == refs[i]) for a in answers[i]] for i in range(P)]
        _, alerts = mon.observe(t, rewards, classes, texts, lengths, errors=errors, reference_scores=ref_scores,
                                policy_entropy=1.0 + 0.05 * rng.random(), intervention=intervention)
        events += [(t, a.name, a.rule, a.severity) for a in alerts if a.event == "fired"]
    return events


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/monitor_fault_injection.json"))
    a = ap.parse_args()
    table = {}
    for loop, (acc, _, _, expected, kind) in LOOPS.items():
        per_seed = {s: run_loop(loop, s, a.steps) for s in a.seeds}
        firsts = []
        for s, ev in per_seed.items():
            hit = [t for t, name, _, _ in ev if name in expected]
            firsts.append(min(hit) if hit else None)
        row = {"kind": kind, "expected": expected, "events": {str(s): ev for s, ev in per_seed.items()}}
        if expected:
            found = [f for f in firsts if f is not None]
            row["detection_rate"] = len(found) / len(firsts)
            row["first_detection_steps"] = firsts
            row["median_first_detection"] = statistics.median(found) if found else None
        if kind == "open":
            n_steps = a.steps * len(a.seeds)
            for sev in ("critical", "warning"):
                row[f"{sev}_per_1000_steps"] = 1000 * sum(1 for ev in per_seed.values() for e in ev
                                                          if e[3] == sev) / n_steps
        table[loop] = row
        shown = {k: v for k, v in row.items() if k != "events"}
        print(loop, json.dumps(shown), flush=True)
    out = {"command": "python benchmarks/monitor/fault_injection.py " + " ".join(sys.argv[1:]),
           "steps": a.steps, "seeds": a.seeds, "P": P, "G": G, "loops": table}
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
