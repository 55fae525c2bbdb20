"""Replaying the monitor over a finished run: `rlvr monitor RUN_DIR --replay`.

The monitor's rules and thresholds change (this is how they are calibrated on real runs); a run's
`rollouts.jsonl` keeps every completion with its reward, answer class, length and verifier error, so the current
monitor can be run over it step by step, as if it had watched the run, after the verifier canaries it runs before
step 1. The intervention sample (closure by intervention) is re-scored with the run's own verifiers, prompts taken from its data by `prompt_index`. Alerts go
to OUT/alerts.jsonl (default RUN_DIR/replay/), never to the run's own alerts.jsonl.

Limits: rollouts.jsonl holds the *trained* groups, which are the step's first generation round unless a group
filter (dynamic sampling) replaced some; runs written before lengths were recorded use character lengths for the
length feature.
"""

from __future__ import annotations

import json
from pathlib import Path


def replay(run_dir: str | Path, out: str | Path | None = None, intervene: bool = True) -> dict:
    """Run the current monitor over RUN_DIR/rollouts.jsonl. Returns {"steps", "alerts": [fired alert dicts],
    "critical": n, "warning": n, "out"}.

    Raises:
        UserError: no rollouts.jsonl or config.yaml in `run_dir`.
    """
    from rlvr.config import load_config
    from rlvr.errors import UserError
    from rlvr.monitor import Monitor, signals_from_verifiers
    from rlvr.plugins import build_reward

    run_dir = Path(run_dir)
    if not (run_dir / "rollouts.jsonl").is_file() or not (run_dir / "config.yaml").is_file():
        raise UserError(f"'{run_dir}': --replay needs the run's rollouts.jsonl and config.yaml")
    cfg = load_config(run_dir / "config.yaml")
    out = Path(out) if out is not None else run_dir / "replay"
    out.mkdir(parents=True, exist_ok=True)
    (out / "alerts.jsonl").unlink(missing_ok=True)
    reward = build_reward(cfg.verifiers)
    from verifiers import get_verifier

    mcfg = cfg.monitor.model_copy(update={"stop_on_critical": False,
                                          "intervention_groups": cfg.monitor.intervention_groups if intervene else 0})
    mon = Monitor(mcfg, signals_from_verifiers(reward.verifiers), run_dir=out,
                  reference_verifier=get_verifier(cfg.eval.verifier), policy_identity=str(cfg.model),
                  reference_timeout_s=cfg.eval.timeout_s)
    fired = [a.to_dict() for a in mon.start() if a.event == "fired"]
    from rlvr.data import load_splits

    train = load_splits(cfg.data, cfg.eval.data).train
    if cfg.monitor.canaries:  # the verifier canaries, as the trainer runs them before step 1
        from rlvr.monitor.canaries import canaries_for, canary_rates, form_counts, run_canaries
        from rlvr.preflight import reward_tolerance

        canaries = canaries_for(cfg, train, tolerance=reward_tolerance(reward))
        tallies: dict = {}
        report = run_canaries([(s.name, s.verifier, s.timeout_s) for s in reward.specs], canaries, counts=tallies)
        fired += [a.to_dict() for a in mon.check_canaries(0, report, len(canaries), form_counts(canaries),
                                                         {n: canary_rates(t) for n, t in tallies.items()})
                  if a.event == "fired"]
    prompts = list(train["prompt"]) if mon.intervenes else None
    G = cfg.train.group_size
    steps: dict[int, list[dict]] = {}
    for line in (run_dir / "rollouts.jsonl").read_text().splitlines():
        if line.strip():
            r = json.loads(line)
            steps.setdefault(r["step"], []).append(r)
    for step in sorted(steps):
        rows = steps[step]
        groups = [rows[k:k + G] for k in range(0, len(rows) - len(rows) % G, G)]
        batch = _batch(groups, prompts)
        _, alerts = mon.observe_batch(step, batch, rescore=(lambda it, g: reward(it, g)[0]) if prompts else None)
        fired += [a.to_dict() for a in alerts if a.event == "fired"]
    return {"steps": len(steps), "alerts": fired, "critical": sum(a["severity"] == "critical" for a in fired),
            "warning": sum(a["severity"] == "warning" for a in fired), "out": str(out)}


def _batch(groups: list[list[dict]], prompts: list[str] | None):
    import torch

    from rlvr.batch import RolloutBatch
    from rlvr.rollouts.base import Completion
    from verifiers import Verdict

    comps, verdicts, rewards = [], [], []
    for g in groups:
        comps.append([Completion([0] * int(r.get("length") or len(r["completion"])), [],
                                 r["completion"], r.get("finish_reason", "stop")) for r in g])
        verdicts.append([Verdict(min(max(float(r["reward"]), 0.0), 1.0), r.get("passed"), r.get("answer_class"),
                                 error=r.get("error")) for r in g])
        rewards.append([float(r["reward"]) for r in g])
    idx = [g[0]["prompt_index"] for g in groups]
    return RolloutBatch(idx, [[0]] * len(groups), [prompts[i] if prompts else "" for i in idx],
                        [g[0]["reference"] for g in groups], comps, torch.tensor(rewards), verdicts)
