"""Per-step rollout statistics (pure functions) and the run's metric sinks (metrics.jsonl, TensorBoard).

Names follow TRL's where one exists (`reward`, `reward_std`, `frac_reward_zero_std`, `completions/mean_length`,
`completions/clipped_ratio`, `entropy`, `kl`, `clip_ratio/*`), so dashboards carry over.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import torch


def rollout_stats(rewards: torch.Tensor, lengths: torch.Tensor, truncated: torch.Tensor,
                  answer_classes: list[list[str | None]], passed: torch.Tensor | None = None) -> dict[str, float]:
    """Statistics of one step's rollouts.

    Args:
        rewards: [P, G] float, the combined reward. lengths: [P, G] completion tokens. truncated: [P, G] bool,
        finish_reason == "length". answer_classes: P lists of G answer classes (None: nothing extracted).
    Returns:
        reward, reward_std (over all P*G), frac_reward_zero_std (groups whose rewards are all equal: no GRPO
        gradient), informative_group_frac (1 - that), completions/{mean,min,max}_length, completions/clipped_ratio,
        answers/extracted_rate, answers/distinct_per_group, pass@1 (share of passed completions) and pass@G (share
        of groups with at least one passed completion). passed: [P, G] bool, the primary verdicts' pass/fail
        (rlvr.scoring.passed); None: reward >= rlvr.scoring.PASS_THRESHOLD.
    """
    from rlvr.scoring import PASS_THRESHOLD

    zero_std = (rewards.max(-1).values == rewards.min(-1).values).float()
    passed = (rewards >= PASS_THRESHOLD).float() if passed is None else passed.float()
    flat = [c for grp in answer_classes for c in grp]
    distinct = [len(set(grp)) for grp in answer_classes]  # None counts as one class, as in the probe
    return {
        "reward": float(rewards.mean()),
        "reward_std": float(rewards.std()) if rewards.numel() > 1 else 0.0,
        "frac_reward_zero_std": float(zero_std.mean()),
        "informative_group_frac": float(1.0 - zero_std.mean()),
        "completions/mean_length": float(lengths.float().mean()),
        "completions/min_length": float(lengths.min()),
        "completions/max_length": float(lengths.max()),
        "completions/clipped_ratio": float(truncated.float().mean()),
        "answers/extracted_rate": sum(c is not None for c in flat) / max(len(flat), 1),
        "answers/distinct_per_group": sum(distinct) / max(len(distinct), 1),
        "pass@1": float(passed.mean()),
        f"pass@{rewards.shape[-1]}": float(passed.max(-1).values.mean()),
    }


def open_step_log(path: Path, resume_step: int | None):
    """Open a per-step JSON-lines log (metrics.jsonl, rollouts.jsonl) for appending, line-buffered, after
    `reset_step_log`."""
    reset_step_log(path, resume_step)
    return open(path, "a", buffering=1)


def reset_step_log(path: Path, resume_step: int | None) -> None:
    """Prepare a per-step JSON-lines log (metrics, rollouts, alerts) for a run.

    Fresh run (`resume_step` None): an old file is removed. Resume: rows with "step" > resume_step are dropped (the
    steps after the checkpoint are run again and logged again), and so is a torn last line left by a kill in the
    middle of a write. The rewrite is atomic (temporary file + rename)."""
    path = Path(path)
    if resume_step is not None and path.exists():
        kept = []
        for ln in path.read_text().splitlines():
            try:
                row = json.loads(ln)
            except ValueError:
                continue
            if row.get("step", 0) <= resume_step:
                kept.append(ln)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text("".join(ln + "\n" for ln in kept))
        os.replace(tmp, path)
    elif resume_step is None and path.exists():
        path.unlink()


class MetricSink:
    """Appends one JSON line per step to RUN_DIR/metrics.jsonl (flushed, so a crash keeps every finished step)
    and mirrors scalars to TensorBoard when enabled."""

    def __init__(self, run_dir: Path, tensorboard: bool, resume_step: int | None = None):
        self.path = Path(run_dir) / "metrics.jsonl"
        self._fh = open_step_log(self.path, resume_step)
        self._tb = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=resume_step)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        self._fh.write(json.dumps({"step": step, **clean}) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        if self._tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
                    self._tb.add_scalar(k, v, step)
            self._tb.flush()

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()


class NullSink:
    """A MetricSink that writes nothing: what ranks other than 0 log to under torchrun."""

    def log(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def close(self) -> None:
        pass


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
