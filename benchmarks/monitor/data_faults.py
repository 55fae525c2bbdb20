"""Closure and damage that come through the data (issue 22): real training runs of the default recipe whose training
references are faulty, held out against the recipe's own reasoning-gym task (trusted gold references).

    python benchmarks/monitor/data_faults.py build  [--out runs/data_faults/data]
    python benchmarks/monitor/data_faults.py run    [--loops ...] [--seeds 0] [--steps 20] [--runs runs/data_faults]
    python benchmarks/monitor/data_faults.py power  [--data runs/data_faults/data]
    python benchmarks/monitor/data_faults.py report [--seeds 0 1 2 3] [--out benchmarks/results/monitor_data_faults]

`build` writes the training files (JSON lines, columns prompt/reference/meta; not committed):

* ``default.jsonl``: the recipe's own training rows (reasoning-gym basic_arithmetic, train_seed 1, minus the held-out
  problems) as a file, references as generated. The control.
* ``misaligned.jsonl``: the same rows, each reference taken from the next row (the last takes the first): a
  shifted reference column, a data-pipeline bug.
* ``noisy_open.jsonl``: the same rows, 30% of them (seeded) with the reference moved by +-1..3: noisy labels, an open
  loop (the reference still carries the task).
* ``self_labelled.jsonl``: 300 training prompts of the recipe's task (train_seed 1); each reference is the base
  model's own majority answer over 8 samples at the recipe's sampling settings (temperature 1, 24 new tokens, the
  recipe's prompt, its rollout engine and dtype on this machine), read with the math verifier's strict extraction
  (the reward's); prompts where no sample gave an answer are dropped. No reference_source is declared: the
  undeclared case of pseudo-labelling.

`run` trains each loop one after another (`nice -n 10 rlvr train recipes/basic_arithmetic.yaml ...`; the runs
before 2026-12-06 13:00 UTC used nice -n 5; seed 0, 20 steps (silent_sync 15),
held-out greedy pass@1 every 5 steps on 64 problems of `eval.data` = the recipe's task with eval_seed 999, the
training data a file with data.eval_size=0), each into RUNS/<loop>-seed<S>; a finished run (summary.json, or a
recorded exit 2 at pre-flight) is kept, a killed one resumes with resume=true. The monitor runs with its defaults
(stop_on_critical false, so a run continues after a critical alert and its held-out curve can be read). Loops named
``*_trained`` add monitor.preflight_ignore=[train_heldout_consistency], to measure the rules during training on a
fault the pre-flight stops. Each run's console output goes to RUNS/<loop>-seed<S>.log and its exit status, command
and wall time to RUNS/<loop>-seed<S>.meta.json (a run stopped at pre-flight leaves no run folder). The runs import
rlvr from the script's own tree (PYTHONPATH); to run a fixed commit while the working tree is being edited:
``git archive <commit> | tar -x -C SNAP && git rev-parse <commit> > SNAP/.code_commit`` and run
``python SNAP/benchmarks/monitor/data_faults.py run --runs runs/data_faults --data runs/data_faults/data ...``
(the commit is recorded in each run's meta.json; the loops below were run so, from 24184fa).

Faults outside the data (the other shapes of issue 22), on the control's aligned data (default.jsonl):

* ``silent_sync``: every weight sync after the engine's first load is a silent no-op, so rollouts keep coming from
  the base model and the run exits 0 (the class of verl#7495). Injected without touching product code: the run is
  launched through ``benchmarks/monitor/silent_sync_launch.py``, which replaces
  ``rlvr.rollouts.vllm.VLLMEngine.update_weights``. 15 steps. Right cause: STALE_ENGINE.
* ``j_negative``: the reward is the plug-in ``benchmarks.monitor.fault_verifiers:OtherNumber`` (1 for any number
  except the reference's: TPR 0, FPR ~1, Youden's J = -1), declared external like every fault verifier. Right
  cause: the pre-flight's canary fault (exit 2) or VERIFIER_FAULT. ``j_negative_trained`` trains through it
  (monitor.preflight_ignore=[canary:fault_other_number]).
* ``closing_midrun``: the reward is ``fault_verifiers:MathThenPlurality``: the exact math verifier (strict) for the
  first 64 prompts graded in groups (8 steps), then the group's plurality answer (reads no reference). Right cause:
  CLOSED_LOOP or SPURIOUS_SIGNAL.

`power` grades the base model's greedy answer to EVERY training row against each file's references (the pre-flight
consistency check's protocol) and gives the check's exact firing probability per file (hypergeometric sample).

`report` reads each run (alerts.jsonl, metrics.jsonl, summary.json's evals with per-problem greedy verdicts, the log)
and writes OUT/summary.json and OUT/summary.md: exit status, the pre-flight consistency line, held-out pass@1 per
evaluation, training reward, first firing of each alert (name, rule, severity), and lead time.

Detection = the first CRITICAL firing of an alert naming the loop's cause (data loops: HELDOUT_DECLINE or
CLOSED_LOOP; the others above); other alerts are listed, not counted.

Damage (independent of the monitor's own test): the first evaluation whose held-out pass@1 is below the start or the
best earlier evaluation by more than two binomial standard errors of a 64-problem accuracy at that value (the
definition of benchmarks/monitor/real_faults.py and issue 22). Also reported: the first evaluation with an
unadjusted one-sided exact McNemar p <= 0.05 against the start or the best earlier evaluation. Lead time = damage
step - first critical detection step (a pre-flight stop with exit 2 counts as detection at step 0); positive: the
alert came first.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from benchmarks.monitor.real_faults import fall_step  # noqa: E402

RECIPE = ROOT / "recipes/basic_arithmetic.yaml"
N_SELF = 300  # prompts pseudo-labelled
DETECTING = ("HELDOUT_DECLINE", "CLOSED_LOOP")  # alerts whose cause a data fault supports
K_SELF = 8  # samples per prompt for the majority answer
NOISE_FRAC = 0.3

# loop -> (truth, training file, extra overrides)
LOOPS = {
    "self_labelled": ("closed through the data (undeclared pseudo-labels)", "self_labelled.jsonl", []),
    "misaligned": ("broken data (references shifted by one row)", "misaligned.jsonl", []),
    "noisy_open": ("open (30% of references off by 1-3)", "noisy_open.jsonl", []),
    "default": ("open (the recipe's data, aligned)", "default.jsonl", []),
    "self_labelled_trained": ("closed through the data (undeclared pseudo-labels)", "self_labelled.jsonl",
                              ["monitor.preflight_ignore=[train_heldout_consistency]"]),
    "misaligned_trained": ("broken data (references shifted by one row)", "misaligned.jsonl",
                           ["monitor.preflight_ignore=[train_heldout_consistency]"]),
    # faults outside the data (issue 22's other shapes), on the control's aligned data
    "silent_sync": ("stale engine (every weight sync after the first is a silent no-op)", "default.jsonl", []),
    "j_negative": ("verifier with Youden's J < 0 (accepts any number but the reference's)", "default.jsonl",
                   ["verifiers=[{name: 'benchmarks.monitor.fault_verifiers:OtherNumber', weight: 1.0}]"]),
    "j_negative_trained": ("verifier with Youden's J < 0 (accepts any number but the reference's)", "default.jsonl",
                           ["verifiers=[{name: 'benchmarks.monitor.fault_verifiers:OtherNumber', weight: 1.0}]",
                            "monitor.preflight_ignore=[canary:fault_other_number]"]),
    "closing_midrun": ("closes mid-run (exact math verifier for 8 steps, then the group's plurality answer)",
                       "default.jsonl",
                       ["verifiers=[{name: 'benchmarks.monitor.fault_verifiers:MathThenPlurality', weight: 1.0}]"]),
}
# per loop (default DETECTING): the alerts naming the cause the fault supports; critical firings of these count
CAUSES = {"silent_sync": ("STALE_ENGINE",), "j_negative": ("VERIFIER_FAULT",),
          "j_negative_trained": ("VERIFIER_FAULT",), "closing_midrun": ("CLOSED_LOOP", "SPURIOUS_SIGNAL")}
OPEN = ("noisy_open", "default")  # open loops: any critical alert on them is a false alarm
# per loop: launched through a wrapper instead of the `rlvr` console script; its default train.steps
LAUNCH = {"silent_sync": ["python", "benchmarks/monitor/silent_sync_launch.py"]}
STEPS = {"silent_sync": 15}


def recipe_cfg(overrides: list[str] | None = None):
    from rlvr.config import load_config

    return load_config(str(RECIPE), overrides or [])


def eval_data_override(cfg) -> str:
    """eval.data = the recipe's own reasoning-gym task and held-out set (trusted gold)."""
    d = cfg.data
    tc = json.dumps(d.task_config)  # JSON is YAML flow
    return f"eval.data={{task: {d.task}, task_config: {tc}, eval_size: {d.eval_size}, eval_seed: {d.eval_seed}}}"


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for r in rows:
            row = {"prompt": r["prompt"], "reference": r["reference"], "meta": r.get("meta", "{}")}
            f.write(json.dumps(row) + "\n")


# ---------------------------------------------------------------------------------------------------------- build
def self_labels(cfg, questions: list[str], seed: int = 0) -> tuple[list[str | None], dict]:
    """The base model's majority answer of K_SELF samples per question (None: no sample gave an answer)."""
    import torch

    from rlvr.build import _engine, resolve_placement
    from rlvr.data import render_prompt
    from rlvr.models import load_policy, load_tokenizer, resolve_model
    from rlvr.rollouts import SamplingParams
    from verifiers.math_verifier import as_number, extract_answer

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    _, _, rollout_p = resolve_placement(cfg)
    path = resolve_model(cfg.model)
    tok = load_tokenizer(path)
    torch.manual_seed(seed)
    model = load_policy(path, cfg.train.dtype)
    name, engine = _engine(cfg, model, tok, rollout_p)
    s = cfg.sampling
    params = SamplingParams(s.temperature, s.top_p, s.top_k, s.max_new_tokens)
    ids = [tok(render_prompt(tok, q, cfg.data.prompt), add_special_tokens=False)["input_ids"] for q in questions]
    labels: list[str | None] = []
    t0 = time.time()
    for start in range(0, len(ids), 50):
        groups = engine.generate(ids[start:start + 50], K_SELF, params, seed=seed + start)
        for g in groups:
            votes: Counter = Counter()
            for c in g.completions:
                a = extract_answer(c.text, strict=True)  # the reward's extraction (strict_extraction: true)
                if a is None:
                    continue
                v = as_number(a)
                key = (str(int(v)) if v.denominator == 1 else str(v)) if v is not None else a.strip()
                votes[key] += 1
            labels.append(votes.most_common(1)[0][0] if votes else None)  # ties: the first answer seen
        print(f"  self-labels: {len(labels)}/{len(ids)} prompts, {time.time() - t0:.0f}s", flush=True)
    close = getattr(engine, "close", None)
    if close is not None:
        close()
    return labels, {"engine": name, "dtype": rollout_p.dtype, "seconds": round(time.time() - t0, 1)}


def cmd_build(args) -> None:
    from rlvr.data import load_splits

    out = Path(args.out)
    cfg = recipe_cfg()
    train = load_splits(cfg.data).train.to_list()  # the recipe's training split (held-out problems removed)
    rows = [{"prompt": r["prompt"], "reference": r["reference"], "meta": r["meta"]} for r in train]
    info: dict = {"recipe_train_rows": len(rows)}
    write_jsonl(out / "default.jsonl", rows)
    write_jsonl(out / "misaligned.jsonl",
                [dict(r, reference=rows[(i + 1) % len(rows)]["reference"]) for i, r in enumerate(rows)])
    info["misaligned_reference_equals_gold"] = sum(
        rows[(i + 1) % len(rows)]["reference"] == r["reference"] for i, r in enumerate(rows))
    rng = random.Random(22)
    noisy_idx = set(rng.sample(range(len(rows)), round(NOISE_FRAC * len(rows))))
    noisy = []
    for i, r in enumerate(rows):
        if i in noisy_idx:
            r = dict(r, reference=str(int(r["reference"]) + rng.choice([-1, 1]) * rng.randint(1, 3)))
        noisy.append(r)
    write_jsonl(out / "noisy_open.jsonl", noisy)
    info["noisy_rows"] = len(noisy_idx)
    if args.skip_self and (out / "self_labelled.jsonl").is_file():
        print("self_labelled.jsonl kept")
    else:
        first = rows[:N_SELF]
        labels, meta = self_labels(cfg, [r["prompt"] for r in first])
        kept = [dict(r, reference=lab) for r, lab in zip(first, labels) if lab is not None]
        write_jsonl(out / "self_labelled.jsonl", kept)
        agree = sum(lab == r["reference"] for r, lab in zip(first, labels) if lab is not None)
        info["self_labelled"] = {**meta, "prompts": len(first), "kept": len(kept),
                                 "dropped_no_answer": len(first) - len(kept),
                                 "labels_equal_gold": agree, "label_accuracy": round(agree / max(len(kept), 1), 4),
                                 "samples_per_prompt": K_SELF}
    old = json.loads((out / "build.json").read_text()) if (out / "build.json").is_file() else {}
    info = {**old, **info}
    (out / "build.json").write_text(json.dumps(info, indent=2) + "\n")
    print(json.dumps(info, indent=2))


# ------------------------------------------------------------------------------------------------------------ run
def run_command(loop: str, seed: int, args, run_dir: Path, resume: bool) -> list[str]:
    cfg = recipe_cfg()
    data = Path(args.data) / LOOPS[loop][1]
    steps = args.steps or STEPS.get(loop, 20)
    over = [f"run_dir={run_dir}", f"seed={seed}", f"train.steps={steps}", f"eval.every={args.eval_every}",
            "data.task=null", f"data.path={data}", "data.eval_size=0", eval_data_override(cfg),
            "log.progress=false", *LOOPS[loop][2], *args.override]
    if resume:
        over.append("resume=true")
    return ["nice", "-n", str(args.nice), *LAUNCH.get(loop, ["rlvr"]), "train", str(RECIPE.relative_to(ROOT)), *over]


def cmd_run(args) -> None:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    # this working tree's rlvr and verifiers first (an editable install may point at another checkout)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    for seed in args.seeds:
        for loop in args.loops:
            name = f"{loop}-seed{seed}"
            run_dir, meta_path = runs / name, runs / f"{name}.meta.json"
            meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
            if (run_dir / "summary.json").is_file() or meta.get("rc") == 2:
                print(f"{run_dir}: finished (rc={meta.get('rc')}), kept", flush=True)
                continue
            if args.deadline and time.time() > args.deadline:
                print(f"{run_dir}: not started (deadline)", flush=True)
                continue
            cmd = run_command(loop, seed, args, run_dir, resume=run_dir.is_dir())
            t0 = time.time()
            print(f"{time.strftime('%H:%M:%S')} {run_dir}: start", flush=True)
            with open(runs / f"{name}.log", "a") as log:
                log.write(f"$ {' '.join(cmd)}\n")
                log.flush()
                rc = subprocess.call(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
            dt = time.time() - t0
            code = (ROOT / ".code_commit").read_text().strip() if (ROOT / ".code_commit").is_file() else None
            meta_path.write_text(json.dumps({"rc": rc, "command": cmd, "code": code, "started": time.strftime(
                "%Y-%m-%dT%H:%M:%SZ", time.gmtime(t0)), "wall_s": round(dt + meta.get("wall_s", 0), 1),
                "attempts": meta.get("attempts", 0) + 1}, indent=2) + "\n")
            print(f"{time.strftime('%H:%M:%S')} {run_dir}: rc={rc} in {dt:.0f}s", flush=True)


# --------------------------------------------------------------------------------------------------------- report
def fall_step_mcnemar(hist: list[tuple[int, list[bool]]], alpha: float = 0.05) -> tuple[int | None, list]:
    """First evaluation with a one-sided exact McNemar p <= alpha (unadjusted) against the start or the best
    earlier evaluation; also every evaluation's p against start and best."""
    from rlvr.monitor.heldout import mcnemar_drop_p

    first, ps = None, []
    for i in range(1, len(hist)):
        step, now = hist[i]
        start = hist[0][1]
        best = max(hist[:i], key=lambda h: (sum(h[1]), -h[0]))[1]
        p = min(mcnemar_drop_p(start, now), mcnemar_drop_p(best, now))
        ps.append([step, round(p, 5)])
        if first is None and p <= alpha:
            first = step
    return first, ps


def read_jsonl(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def gold_reward(rollouts: Path, gold_file: Path) -> list:
    """Per step, the share of training completions whose extracted answer (the reward's, strict) equals the GOLD
    answer of their prompt (the recipe's reasoning-gym reference), whatever reference the run trained on."""
    from verifiers.math_verifier import as_number

    if not rollouts.is_file() or not gold_file.is_file():
        return []
    gold = {r["prompt"]: r["reference"] for r in read_jsonl(gold_file)}
    per: dict[int, list[int]] = {}
    for r in read_jsonl(rollouts):
        a, g = r.get("answer_class"), gold.get(r["question"])
        ok = a is not None and g is not None and as_number(str(a)) is not None and as_number(str(a)) == as_number(g)
        per.setdefault(r["step"], []).append(int(ok))
    return [[s, round(sum(v) / len(v), 4)] for s, v in sorted(per.items())]


def commit_at(started: str | None) -> str | None:
    """The repository's HEAD commit at a run's start, by commit time (the runs import rlvr from this working tree,
    which another engineer edited while they ran; uncommitted edits are not visible here)."""
    if not started:
        return None
    r = subprocess.run(["git", "log", "-1", f"--before={started}", "--format=%h %ci"], capture_output=True, text=True,
                       cwd=ROOT)
    return r.stdout.strip() or None


def replay_heldout(hist: list[tuple[int, list[bool]]]) -> dict:
    """The held-out decline rules of the CURRENT code's defaults replayed on a run's recorded evaluations:
    HELDOUT_DECLINE heldout_drop (critical, Bonferroni p <= monitor.heldout_alpha) and, where the config has it,
    heldout_dip (warning, p <= monitor.heldout_warn_alpha). First firing step of each."""
    from rlvr.config import MonitorConfig
    from rlvr.monitor.heldout import heldout_decline

    mc = MonitorConfig()
    warn = getattr(mc, "heldout_warn_alpha", None)
    out: dict = {"heldout_alpha": mc.heldout_alpha, "heldout_warn_alpha": warn, "heldout_drop": None,
                 "heldout_dip": None}
    for i in range(2, len(hist) + 1):
        d = heldout_decline(hist[:i], mc.heldout_alpha)
        if d["fired"] and out["heldout_drop"] is None:
            out["heldout_drop"] = d["step"]
        if warn is not None and not d["fired"] and d["p_bonferroni"] <= warn and out["heldout_dip"] is None:
            out["heldout_dip"] = d["step"]
    return out


def analyse(runs: Path, loop: str, seed: int, args_data: str) -> dict:
    name = f"{loop}-seed{seed}"
    run_dir = runs / name
    meta = json.loads((runs / f"{name}.meta.json").read_text()) if (runs / f"{name}.meta.json").is_file() else {}
    log = (runs / f"{name}.log").read_text(errors="replace") if (runs / f"{name}.log").is_file() else ""
    out: dict = {"loop": loop, "seed": seed, "truth": LOOPS[loop][0], "exit": meta.get("rc"),
                 "wall_s": meta.get("wall_s"),
                 "command": shlex.join(meta.get("command", [])).replace(f"{ROOT}/", "")}
    m = re.findall(r"pre-flight: train/held-out consistency: .*", log)
    out["consistency_line"] = m[-1].strip() if m else None
    stop = [ln.strip() for ln in log.splitlines() if "pre-flight" in ln and ("but" in ln or "fault" in ln)
            and "consistency:" not in ln]
    out["preflight_stop_message"] = stop[-1] if meta.get("rc") == 2 and stop else None
    ign = [ln.strip() for ln in log.splitlines() if "ignored (monitor.preflight_ignore)" in ln]
    out["preflight_ignored"] = ign[-1] if ign else None
    summary = json.loads((run_dir / "summary.json").read_text()) if (run_dir / "summary.json").is_file() else None
    out["finished"] = summary is not None
    if summary is None and meta.get("rc") != 2:
        out["status"] = "not run" if not meta else f"unfinished (rc={meta.get('rc')})"
    evals = (summary or {}).get("evals", {})
    hist = sorted((int(k), v.get("greedy_passed")) for k, v in evals.items())
    curve = [(int(k), v["pass@1"]) for k, v in sorted(evals.items(), key=lambda kv: int(kv[0]))]
    n = next((v["n"] for v in evals.values()), 64)
    out["heldout_pass@1"] = curve
    out["heldout_correct"] = [(int(k), v["correct"], v["n"])
                              for k, v in sorted(evals.items(), key=lambda kv: int(kv[0]))]
    metrics = read_jsonl(run_dir / "metrics.jsonl")
    out["train_reward"] = [[r["step"], round(r["reward"], 4)] for r in metrics if "reward" in r]
    out["steps"] = len(metrics)
    out["monitor_heldout_p_bonferroni"] = [[r["step"], round(r["monitor/heldout_p_drop"], 5)] for r in metrics
                                           if "monitor/heldout_p_drop" in r]
    out["monitor_heldout_reward_rise"] = [[r["step"], round(r["monitor/heldout_reward_rise"], 4)] for r in metrics
                                          if "monitor/heldout_reward_rise" in r]
    out["gold_reward_on_rollouts"] = gold_reward(run_dir / "rollouts.jsonl", Path(args_data) / "default.jsonl")
    alerts = [a for a in read_jsonl(run_dir / "alerts.jsonl") if a.get("event") == "fired"]
    first: dict[str, int] = {}
    for a in alerts:
        key = f"{a['name']}:{a['rule']}:{a['severity']}"
        first[key] = min(first.get(key, a["step"]), a["step"])
    out["first_firing"] = dict(sorted(first.items(), key=lambda kv: kv[1]))
    out["alert_evidence"] = {f"{a['name']}:{a['rule']}@{a['step']}": {k: a.get("evidence", {}).get(k) for k in (
        "heldout_from", "heldout_to", "against_step", "p_bonferroni", "reward_rise", "heldout_start", "heldout_now",
        "likely_causes") if k in a.get("evidence", {})} for a in alerts if a["name"] in ("HELDOUT_DECLINE",
                                                                                           "SPURIOUS_SIGNAL")}
    out["code_commit_at_start"] = (f"{meta['code']} (a `git archive` of it, untouched while the run ran)"
                                   if meta.get("code") else commit_at(meta.get("started")))
    out["heldout_rules_replayed_now"] = replay_heldout(hist) if hist and all(h[1] is not None for h in hist) else {}
    # detection: a pre-flight stop, or a critical alert naming a cause the fault supports (a held-out decline or
    # closure); any other critical alert is reported as such, not counted as detecting the data fault
    causes = CAUSES.get(loop, DETECTING)
    out["right_causes"] = list(causes)
    rel = {k: v for k, v in first.items() if k.endswith(":critical") and k.split(":")[0] in causes}
    det = 0 if meta.get("rc") == 2 else (min(rel.values()) if rel else None)
    out["first_critical_step"] = det
    out["first_critical"] = "pre-flight (exit 2)" if meta.get("rc") == 2 else (min(rel, key=rel.get) if rel else None)
    out["other_critical"] = {k: v for k, v in first.items() if k.endswith(":critical") and k not in rel}
    fall = fall_step(curve, n) if curve else None  # the definition of real_faults.py
    fall_mc, ps = fall_step_mcnemar(hist) if hist and all(h[1] is not None for h in hist) else (None, [])
    out["damage_step_2se"] = fall
    out["damage_step_mcnemar05"] = fall_mc
    out["mcnemar_p_vs_start_or_best"] = ps
    out["lead_time"] = (fall - det) if fall is not None and det is not None else None
    last = curve[-1][0] if curve else None
    out["lead_time_note"] = (None if out["lead_time"] is not None else
                             "stopped at pre-flight: no training" if meta.get("rc") == 2 else
                             f"no damage by step {last}; detected at {det}" if fall is None and det is not None else
                             f"damage at {fall}, no critical alert" if fall is not None else
                             f"no damage by step {last}, no critical alert" if curve else None)
    return out


def fmt_curve(c) -> str:
    return " -> ".join(f"{v:.3f}@{s}" for s, v in c) if c else "-"


def cmd_report(args) -> None:
    import platform

    runs, out = Path(args.runs), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = [analyse(runs, loop, s, args.data) for loop in args.loops for s in args.seeds
               if (runs / f"{loop}-seed{s}.meta.json").is_file()]
    cpu = next((ln.split(":", 1)[1].strip() for ln in subprocess.run(["lscpu"], capture_output=True, text=True)
                .stdout.splitlines() if ln.startswith("Model name")), platform.processor())
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    machine = {"cpu": cpu, "cores": os.cpu_count(), "avx512f": " avx512f" in flags,
               "avx512_bf16": "avx512_bf16" in flags,
               "note": "shared with other work (another engineer's tests and training ran on the other core)"}
    b_path = Path(args.data) / "build.json"
    build = json.loads(b_path.read_text()) if b_path.is_file() else {}
    pw_path = Path(args.data) / "power.json"
    power = json.loads(pw_path.read_text()) if pw_path.is_file() else {}
    greedy = Path(args.data) / "greedy_default.jsonl"
    if power and greedy.is_file():  # the same greedy completions graded against GOLD, per file's prompts
        default_prompts = [r["prompt"] for r in read_jsonl(Path(args.data) / "default.jsonl")]
        gold_ok = {default_prompts[r["prompt_index"]]: r["passed"] for r in read_jsonl(greedy)}
        for name, f in power["files"].items():
            prompts = [r["prompt"] for r in read_jsonl(Path(args.data) / f"{name}.jsonl")]
            f["greedy_passes_vs_gold"] = sum(gold_ok[q] for q in prompts)
    doc = {"what": "issue 22: closure and damage through the data, real runs of the default recipe",
           "commands": ["python benchmarks/monitor/data_faults.py build",
                        f"python benchmarks/monitor/data_faults.py run --seeds {' '.join(map(str, args.seeds))} "
                        f"--loops {' '.join(args.loops)}  (a finished run is kept; each loop's own command below)",
                        "python benchmarks/monitor/data_faults.py power",
                        f"python benchmarks/monitor/data_faults.py report --seeds {' '.join(map(str, args.seeds))} "
                        f"--loops {' '.join(args.loops)}"],
           "machine": machine, "build": build, "consistency_power": power,
           "damage_definition": "first evaluation below the start or best earlier one by > 2 binomial SEs of a "
                                "64-problem accuracy (issue 22 / real_faults.py); lead_time = damage - first "
                                "critical detection (pre-flight exit 2 = step 0)",
           "loops": results}
    open_runs = [r for r in results if r["loop"] in OPEN and r["finished"]]
    doc["open_loops"] = {
        "runs": len(open_runs), "steps": sum(r["steps"] for r in open_runs),
        "evaluations_after_start": sum(len(r["heldout_pass@1"]) - 1 for r in open_runs),
        "alerts_fired": sum(len(r["first_firing"]) for r in open_runs),
        "critical_fired": sum(any(k.endswith(":critical") for k in r["first_firing"]) for r in open_runs),
        "smallest_heldout_p_bonferroni": min((p for r in open_runs for _, p in r["monitor_heldout_p_bonferroni"]),
                                             default=None)}
    (out / "summary.json").write_text(json.dumps(doc, indent=1) + "\n")
    md = ["# Monitor: faults through the data (issue 22), real runs", "",
          f"Machine: {cpu}, {os.cpu_count()} cores (AVX-512: {machine['avx512f']}, AVX512_BF16: "
          f"{machine['avx512_bf16']}), shared with other work. Default recipe (SmolLM2-135M-Instruct, LoRA, GRPO), "
          f"seeds {', '.join(map(str, args.seeds))}, train.steps={args.steps or '20 (silent_sync 15)'}, eval.every={args.eval_every}, held-out = `eval.data` (the recipe's "
          f"basic_arithmetic task, 64 problems, eval_seed 999, gold references).", "",
          "| loop | seed | truth | exit | pre-flight consistency (train vs held-out, Fisher p) | held-out greedy "
          "pass@1 (value@step) | train reward, first 3 -> last 3 steps | first alerts (name:rule:severity @step) | "
          "damage step (2 SE) | lead time |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        rw = [x[1] for x in r["train_reward"]]
        rws = f"{sum(rw[:3]) / 3:.3f} -> {sum(rw[-3:]) / 3:.3f}" if len(rw) >= 6 else "-"
        c = re.search(r"passes (\d+/\d+) training .* and (\d+/\d+) held-out .*Fisher p ([0-9.e-]+)",
                      r["consistency_line"] or "")
        cons = f"{c.group(1)} vs {c.group(2)}, p {c.group(3)}" if c else "-"
        if r["exit"] == 2:
            cons += " (stopped, exit 2)"
        elif r["preflight_ignored"]:
            cons += " (fault, ignored)"
        alerts = "; ".join(f"{k} @{v}" for k, v in r["first_firing"].items()) or "none"
        md.append(f"| {r['loop']} | {r['seed']} | {r['truth']} | {r['exit']} | {cons} | "
                  f"{fmt_curve(r['heldout_pass@1'])} "
                  f"| {rws} | {alerts} | {r['damage_step_2se'] if r['damage_step_2se'] is not None else '-'} | "
                  f"{r['lead_time'] if r['lead_time'] is not None else r['lead_time_note'] or '-'} |")
    md += ["", "## Detection and lead time per fault shape", "",
           "Detected at = the first critical alert naming the loop's cause (pre-flight exit 2 = step 0); first damage "
           "= the first held-out evaluation 2 binomial SEs below the start or the best earlier one; lead = damage - "
           "detection (positive: the alert came first).", "",
           "| loop | seed | right cause | detected at (step, alert) | first damage (step) | lead time (steps) |",
           "|---|---|---|---|---|---|"]
    for r in results:
        det = r["first_critical_step"]
        is_open = r["loop"] in OPEN
        detected = (f"{det} ({r['first_critical']})" if det is not None else
                    ("no critical alert (none expected)" if is_open else "not detected"))
        last = r["heldout_pass@1"][-1][0] if r["heldout_pass@1"] else None
        damage = r["damage_step_2se"] if r["damage_step_2se"] is not None else (
            f"none by {last}" if last is not None else "- (no training)")
        lead = r["lead_time"] if r["lead_time"] is not None else "-"
        cause = "none (open loop)" if is_open else " / ".join(r["right_causes"])
        md.append(f"| {r['loop']} | {r['seed']} | {cause} | {detected} | {damage} | {lead} |")
    ol = doc["open_loops"]
    md += ["", f"Open loops (noisy_open, default): {ol['runs']} runs, {ol['steps']} steps, "
               f"{ol['evaluations_after_start']} held-out evaluations after the start; alerts fired: "
               f"{ol['alerts_fired']} (critical: {ol['critical_fired']}); smallest HELDOUT_DECLINE Bonferroni p: "
               f"{ol['smallest_heldout_p_bonferroni']}. With the 350 open-loop steps of the replayed real runs "
               f"(benchmarks/results/monitor_real_faults/summary.md: 12 calibration runs + the open fault loops, "
               f"0 critical), {ol['steps'] + 350} open-loop steps without a critical alert.", "", "## Per loop", ""]
    for r in results:
        md += [f"### {r['loop']} (seed {r['seed']}): {r['truth']}", "",
               f"- exit status: {r['exit']}; wall time {r['wall_s']} s"
               + (f"; {r['status']}" if r.get("status") else ""),
               f"- pre-flight consistency: {r['consistency_line'] or '-'}"]
        if r["preflight_stop_message"]:
            md.append(f"- pre-flight stop: {r['preflight_stop_message']}")
        if r["preflight_ignored"]:
            md.append(f"- ignored: {r['preflight_ignored']}")
        md += [f"- held-out pass@1: {fmt_curve(r['heldout_pass@1'])}",
               f"- one-sided McNemar p (unadjusted) vs start or best: {r['mcnemar_p_vs_start_or_best'] or '-'}",
               f"- HELDOUT_DECLINE's p (Bonferroni, fires at <= 0.01): {r['monitor_heldout_p_bonferroni'] or '-'}; "
               f"heldout_gap's reward rise (fires at >= 0.1 with held-out not above start): "
               f"{r['monitor_heldout_reward_rise'] or '-'}",
               f"- training reward per step: {', '.join(f'{v:.2f}' for _, v in r['train_reward']) or '-'}",
               f"- gold pass rate of the training completions per step: "
               f"{', '.join(f'{v:.2f}' for _, v in r['gold_reward_on_rollouts']) or '-'}",
               "- first firing: " + (", ".join(f"{k} @{v}" for k, v in r["first_firing"].items()) or "none"),
               "- critical alerts that do not name the fault's cause (not counted as detection): "
               + (", ".join(f"{k} @{v}" for k, v in r["other_critical"].items()) or "none"),
               f"- damage step: 2 SE rule {r['damage_step_2se']}, McNemar p<=0.05 {r['damage_step_mcnemar05']}; "
               f"lead time {r['lead_time'] if r['lead_time'] is not None else r['lead_time_note']}",
               f"- current code's held-out decline rules replayed on these evaluations: "
               f"{r['heldout_rules_replayed_now'] or '-'}",
               f"- code: HEAD at start {r['code_commit_at_start']}",
               f"- command: `{r['command']}`", ""]
    if power:
        md += ["## The consistency pre-flight's firing probability (exact, from every training row)", "",
               f"The base model's greedy verdict on every row of each training file against its reference (the "
               f"check's protocol), held-out {power['heldout_correct']}/{power['heldout_n']}, fault when the two-sided "
               f"Fisher p < {power['consistency_alpha']}; the check draws a uniform sample of rows, so its pass "
               f"count is hypergeometric. `python benchmarks/monitor/data_faults.py power` ({power['seconds']} s).", "",
               "| file | rows | greedy passes vs its references | same completions vs gold | P(fire), 64-row sample "
               "| fires at | P(fire), 128-row sample | fires at |", "|---|---|---|---|---|---|---|---|"]
        for name, f in power["files"].items():
            a, b = (f[k] for k in sorted((k for k in f if k.startswith("sample_")), key=lambda k: int(k[7:])))
            md.append(f"| {name} | {f['rows']} | {f['greedy_passes_vs_reference']} ({f['rate']:.3f}) | "
                      f"{f.get('greedy_passes_vs_gold', '-')} | "
                      f"{a['p_fire']:.4f} | {a['fires_when_sample_passes']} passes | {b['p_fire']:.4f} | "
                      f"{b['fires_when_sample_passes']} passes |")
        md.append("")
        shift = {name: next((f[k] for k in f if k.startswith("shift_")), None) for name, f in power["files"].items()}
        if any(shift.values()):
            t = next(v for v in shift.values() if v)
            md += ["The check as it is now: the rates test above and the shifted-reference test (the same answers "
                   "against the references of the rows 1 and 2 above and below in file order, and of "
                   f"{t.get('random_rows_per_row', 64)} random rows per row, "
                   f"`rlvr.monitor.heldout.reference_shift`), each at consistency_alpha / 2 = {t['alpha_each']:g}, on "
                   f"a 128-row sample; Monte Carlo over {t['trials']} seeded samples of the same greedy completions "
                   "graded by the real verifier.", "",
                   "| file | P(fire), rates test | P(fire), shift test | P(fire), either (the check) |",
                   "|---|---|---|---|"]
            md += [f"| {name} | {v['p_fire_rates']:.4f} | {v['p_fire_shift']:.4f} | {v['p_fire_either']:.4f} |"
                   for name, v in shift.items() if v]
            md.append("")
    md += ["Build: `" + json.dumps(build) + "`", ""]
    (out / "summary.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))

# ---------------------------------------------------------------------------------------------------------- power
def cmd_power(args) -> None:
    """The pre-flight consistency check's firing probability on each training file, exactly: the base model's greedy
    verdict (the check's protocol: HF engine on the fp32 policy, greedy, eval.verifier) on EVERY training row against
    its reference; the check draws min(64, N) rows without replacement, so its pass count is hypergeometric, and it
    fires when the two-sided Fisher p against the held-out count is below monitor.consistency_alpha."""
    import torch

    from rlvr.data import heldout_rows, render_prompt
    from rlvr.evaluation import evaluate
    from rlvr.models import load_policy, load_tokenizer, resolve_model
    from rlvr.monitor.heldout import fisher_two_sided_p
    from rlvr.plugins import load_verifier
    from rlvr.rollouts import HFEngine

    torch.set_num_threads(max(1, os.cpu_count() or 1))
    cfg = recipe_cfg()
    alpha = cfg.monitor.consistency_alpha
    data = Path(args.data)
    files = {name: [json.loads(x) for x in (data / f"{name}.jsonl").read_text().splitlines()]
             for name in ("default", "misaligned", "noisy_open", "self_labelled")}
    t0 = time.time()
    out_path = data / "greedy_default.jsonl"
    rows = files["default"]
    if args.reuse:  # the greedy completions and held-out counts of an earlier `power` run
        old = json.loads((data / "power.json").read_text())
        h = {"correct": old["heldout_correct"], "n": old["heldout_n"]}
        verifier = load_verifier(cfg.eval.verifier, field="eval.verifier")
    else:
        held = heldout_rows(cfg.data)
        path = resolve_model(cfg.model)
        tok = load_tokenizer(path)
        engine = HFEngine(load_policy(path, cfg.train.dtype), tok)
        verifier = load_verifier(cfg.eval.verifier, field="eval.verifier")

        def ids(qs: list[str]) -> list[list[int]]:
            return [tok(render_prompt(tok, q, cfg.data.prompt), add_special_tokens=False)["input_ids"] for q in qs]

        n_tok = cfg.eval.max_new_tokens or cfg.sampling.max_new_tokens
        h = evaluate(engine, ids([r["prompt"] for r in held]), [r["reference"] for r in held], verifier, n_tok,
                     cfg.eval.batch_size, prompts=[r["prompt"] for r in held])
        evaluate(engine, ids([r["prompt"] for r in rows]), [r["reference"] for r in rows], verifier, n_tok,
                 cfg.eval.batch_size, out_path, prompts=[r["prompt"] for r in rows])
    completions = {rows[int(r["prompt_index"])]["prompt"]: r["completion"]
                   for r in map(json.loads, out_path.read_text().splitlines())}
    from rlvr.scoring import make_items, passed, score

    res: dict = {"heldout_correct": h["correct"], "heldout_n": h["n"], "consistency_alpha": alpha,
                 "seconds": old["seconds"] if args.reuse else round(time.time() - t0, 1), "files": {}}
    for name, rs in files.items():
        verdicts = score(verifier, make_items([completions[r["prompt"]] for r in rs], [r["reference"] for r in rs],
                                              [r["prompt"] for r in rs]), 1, cfg.eval.timeout_s)
        K, N = sum(passed(v) for v in verdicts), len(rs)
        res["files"][name] = {"rows": N, "greedy_passes_vs_reference": K, "rate": round(K / N, 4)}
        for mult in (1, 2):  # the check's sample: the held-out size (until 9b6d543), twice it (since)
            m = min(mult * h["n"], N)
            fire_at = [k for k in range(m + 1) if fisher_two_sided_p(k, m, h["correct"], h["n"]) < alpha]
            p_fire = sum(math.comb(K, k) * math.comb(N - K, m - k) / math.comb(N, m) for k in fire_at
                         if k <= K and m - k <= N - K)
            res["files"][name][f"sample_{m}"] = {"p_fire": round(p_fire, 4),
                                                 "fires_when_sample_passes": _ranges(fire_at)}
        print(name, res["files"][name], flush=True)
    shift_power(res, files, completions, verifier, cfg.eval.timeout_s)
    (data / "power.json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


def shift_power(res: dict, files: dict, completions: dict, verifier, timeout_s, trials: int = 2000) -> None:
    """The consistency pre-flight as it is now: the rates test (two-sided Fisher against held-out) and the
    shifted-reference test (rlvr.monitor.heldout.reference_shift: answers against the references of the rows
    Trainer.SHIFTS away in file order, and of Trainer.CHANCE_REFERENCES_PER_ROW random rows at least 3 away), each
    at consistency_alpha / 2, on a 128-row sample. Monte Carlo over `trials` seeded samples (the random rows make
    an exact sum impractical), on the base model's real greedy completions graded by the real eval verifier
    (every distinct (completion, reference) pair once). Adds "shift_128" to each file of `res`."""
    import random

    from rlvr.monitor.heldout import fisher_two_sided_p, reference_shift
    from rlvr.scoring import make_items, passed, score
    from rlvr.trainer import Trainer

    half = res["consistency_alpha"] / 2
    hk, hn = res["heldout_correct"], res["heldout_n"]
    for name, rs in files.items():
        t0 = time.time()
        texts = [completions[r["prompt"]] for r in rs]
        refs = sorted({r["reference"] for r in rs})
        pairs = [(t, ref, r["prompt"]) for t, r in zip(texts, rs) for ref in refs]
        verdicts = score(verifier, make_items([a for a, _, _ in pairs], [b for _, b, _ in pairs],
                                              [c for _, _, c in pairs]), 1, timeout_s)
        ok = {(a, b, c): passed(v) for (a, b, c), v in zip(pairs, verdicts)}
        fit = lambda i, j: ok[(texts[i], rs[j]["reference"], rs[i]["prompt"])]  # noqa: E731
        n, m = len(rs), min(2 * hn, len(rs))
        rng = random.Random(12345)
        fires = {"shift": 0, "rates": 0, "either": 0}
        for _ in range(trials):
            idx = sorted(rng.sample(range(n), m))
            own = [fit(i, i) for i in idx]
            shifted = {s: [0 <= i + s < n and fit(i, i + s) for i in idx] for s in Trainer.SHIFTS}
            ck = cn = 0
            for i in idx:
                for _ in range(Trainer.CHANCE_REFERENCES_PER_ROW):
                    j = rng.randrange(n)
                    while abs(j - i) <= 2:
                        j = rng.randrange(n)
                    ck += fit(i, j)
                    cn += 1
            sh = reference_shift(own, shifted, ck, cn, half)
            a, b = bool(sh and sh["fired"]), fisher_two_sided_p(sum(own), m, hk, hn) < half
            fires["shift"] += a
            fires["rates"] += b
            fires["either"] += a or b
        res["files"][name][f"shift_{m}"] = {"trials": trials, "alpha_each": half,
                                            "random_rows_per_row": Trainer.CHANCE_REFERENCES_PER_ROW,
                                            "seconds": round(time.time() - t0, 1),
                                            **{f"p_fire_{k}": round(v / trials, 4) for k, v in fires.items()}}
        print(name, res["files"][name][f"shift_{m}"], flush=True)


def machine_line() -> str:
    """`lscpu`'s model name, the core count and the AVX-512 flags that decide the sampling dtype."""
    import platform

    cpu = next((ln.split(":", 1)[1].strip() for ln in subprocess.run(["lscpu"], capture_output=True, text=True)
                .stdout.splitlines() if ln.startswith("Model name")), platform.processor())
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    return (f"{cpu}, {os.cpu_count()} cores, avx512f {' avx512f' in flags}, avx512_bf16 {'avx512_bf16' in flags}, "
            f"{time.strftime('%Y-%m-%d')}")


def cmd_preflight(args) -> None:
    """Only the consistency pre-flight of each loop and seed, with the current code: the loop's own command with
    train.steps=1 and no final evaluation (the pre-flight reads only the seed and the held-out size, so its verdict
    is the 20-step run's), into runs/data_faults/preflight/. Records the exit status and the pre-flight's lines."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])
    runs = Path(args.runs) / "preflight"  # never the full runs' directories
    runs.mkdir(parents=True, exist_ok=True)
    rows = []
    args.steps, args.override = 1, [*args.override, "eval.at_end=false"]
    for seed in args.seeds:
        for loop in args.loops:
            name = f"{loop}-seed{seed}"
            run_dir = runs / name
            if run_dir.exists():
                shutil.rmtree(run_dir)
            cmd = run_command(loop, seed, args, run_dir, resume=False)
            t0 = time.time()
            p = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
            out = p.stdout + p.stderr
            (runs / f"{name}.log").write_text(f"$ {' '.join(cmd)}\n{out}")
            lines = [x.strip() for x in out.splitlines()
                     if "pre-flight" in x and ("consistency" in x or "shifted" in x)]
            rows.append({"loop": loop, "seed": seed, "rc": p.returncode, "wall_s": round(time.time() - t0, 1),
                         "truth": LOOPS[loop][0], "preflight": lines, "command": " ".join(cmd)})
            print(f"{name}: rc={p.returncode} {lines[:1]}", flush=True)
            shutil.rmtree(run_dir, ignore_errors=True)
    out_dir = ROOT / "benchmarks/results/monitor_data_faults"
    (out_dir / "preflight.json").write_text(json.dumps({"machine": machine_line(), "rows": rows}, indent=2) + "\n")
    md = ["# The consistency pre-flight alone, current code (issue 22)", "",
          f"Machine: {machine_line()}. `python benchmarks/monitor/data_faults.py preflight --seeds "
          f"{' '.join(map(str, args.seeds))} --loops {' '.join(args.loops)}` (each loop's command with train.steps=1).",
          "", "| loop | seed | truth | exit | pre-flight |", "|---|---|---|---|---|"]
    md += [f"| {r['loop']} | {r['seed']} | {r['truth']} | {r['rc']} | {' '.join(r['preflight'])[:700]} |" for r in rows]
    (out_dir / "preflight.md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


def _ranges(xs: list[int]) -> str:
    out, i = [], 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
            j += 1
        out.append(f"{xs[i]}" if i == j else f"{xs[i]}-{xs[j]}")
        i = j + 1
    return ", ".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build")
    b.add_argument("--out", default=str(ROOT / "runs/data_faults/data"))
    b.add_argument("--skip-self", action="store_true", help="keep an existing self_labelled.jsonl")
    pw = sub.add_parser("power")
    pw.add_argument("--data", default=str(ROOT / "runs/data_faults/data"))
    pw.add_argument("--reuse", action="store_true", help="reuse greedy_default.jsonl and power.json's held-out counts "
                    "(skip the 200 s of generation)")
    for name in ("run", "report", "preflight"):
        p = sub.add_parser(name)
        p.add_argument("--loops", nargs="+", default=list(LOOPS), choices=list(LOOPS))
        p.add_argument("--seeds", nargs="+", type=int, default=[0])
        p.add_argument("--steps", type=int, default=0, help="train.steps (0: the loop's default, 20; silent_sync 15)")
        p.add_argument("--nice", type=int, default=10)
        p.add_argument("--eval-every", type=int, default=5)
        p.add_argument("--runs", default=str(ROOT / "runs/data_faults"))
        p.add_argument("--data", default=str(ROOT / "runs/data_faults/data"))
        p.add_argument("--override", nargs="*", default=[])
        p.add_argument("--deadline", type=float, default=0.0, help="unix time after which no run is started")
        if name == "report":
            p.add_argument("--out", default=str(ROOT / "benchmarks/results/monitor_data_faults"))
    args = ap.parse_args()
    {"build": cmd_build, "run": cmd_run, "report": cmd_report, "power": cmd_power,
     "preflight": cmd_preflight}[args.cmd](args)


if __name__ == "__main__":
    main()
