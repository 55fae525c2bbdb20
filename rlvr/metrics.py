"""Per-step rollout statistics (pure functions) and the run's metric sinks (metrics.jsonl, TensorBoard).

Names follow TRL's where one exists (`reward`, `reward_std`, `frac_reward_zero_std`, `completions/mean_length`,
`completions/clipped_ratio`, `entropy`, `kl`, `clip_ratio/*`), so dashboards carry over.
"""

from __future__ import annotations

import json
import logging
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


def _scalars(metrics: dict) -> dict[str, float]:
    """The finite numbers of a metrics dict (what TensorBoard and W&B get; strings and None stay in the jsonl)."""
    return {k: v for k, v in metrics.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}


class WandbSink:
    """A W&B run mirroring the metric sink (rlvr.config.WandbConfig). The run id is a hash of the run directory's
    absolute path, so `resume=true` continues the same W&B run (resume="allow")."""

    def __init__(self, run_dir: Path, wcfg, config: dict, resume: bool):
        try:
            import wandb
        except ImportError:
            from rlvr.errors import ConfigError

            raise ConfigError("log.wandb is set but wandb is not installed: `pip install wandb` (or set "
                              "log.wandb=null)") from None
        import hashlib

        self._wandb = wandb
        run_dir = Path(run_dir)
        rid = hashlib.sha1(str(run_dir.resolve()).encode()).hexdigest()[:12]
        os.environ.setdefault("WANDB_SILENT", "true")
        self.run = wandb.init(project=wcfg.project, entity=wcfg.entity, mode=wcfg.mode, dir=str(run_dir),
                              name=wcfg.name or run_dir.name, tags=list(wcfg.tags) or None, config=config, id=rid,
                              resume="allow" if resume else None)
        self._alert_rows: list[list] = []
        self.mode = wcfg.mode
        if wcfg.mode == "offline":  # WANDB_SILENT hides wandb's own lines: say where it writes and how to upload
            folder = getattr(self.run, "dir", None)
            folder = str(Path(folder).parent) if folder else str(run_dir / "wandb")
            logging.getLogger("rlvr").info("rlvr: W&B offline run in %s; upload it with `wandb sync %s`", folder,
                                           folder)
        elif wcfg.mode == "online":
            url = getattr(self.run, "url", None)
            if url:
                logging.getLogger("rlvr").info("rlvr: W&B run %s", url)

    def log(self, step: int, metrics: dict) -> None:
        self.run.log(_scalars(metrics), step=step)

    def alerts(self, step: int, alerts: list) -> None:
        """Each monitor alert event as a W&B alert (title `NAME fired|cleared`, the one-line message as text) and a
        row of the `alerts` table (step, name, rule, severity, event, evidence JSON)."""
        if not alerts:
            return
        levels = {"critical": self._wandb.AlertLevel.ERROR, "warning": self._wandb.AlertLevel.WARN}
        for a in alerts:
            self._alert_rows.append([a.step, a.name, a.rule, a.severity, a.event, json.dumps(a.evidence, default=str)])
            level = levels.get(a.severity, self._wandb.AlertLevel.INFO) if a.event == "fired" else \
                self._wandb.AlertLevel.INFO
            self.run.alert(title=f"{a.name} {a.event}", text=a.message(), level=level, wait_duration=0)
        table = self._wandb.Table(columns=["step", "name", "rule", "severity", "event", "evidence"],
                                  data=list(self._alert_rows))
        self.run.log({"alerts": table}, step=step)

    def images(self, step: int, paths: dict[str, Path]) -> None:
        """Report images (e.g. the monitor report's report.png) under their keys."""
        logged = {k: self._wandb.Image(str(p)) for k, p in paths.items() if Path(p).is_file()}
        if logged:
            self.run.log(logged, step=step)

    def close(self) -> None:
        self.run.finish()


class MetricSink:
    """Appends one JSON line per step to RUN_DIR/metrics.jsonl (flushed, so a crash keeps every finished step)
    and mirrors scalars to TensorBoard and, when `wandb` (a WandbSink) is given, to Weights & Biases."""

    def __init__(self, run_dir: Path, tensorboard: bool, resume_step: int | None = None, wandb=None):
        self.path = Path(run_dir) / "metrics.jsonl"
        self._fh = open_step_log(self.path, resume_step)
        self._tb = None
        self.wandb = wandb
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=resume_step)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in metrics.items()}
        self._fh.write(json.dumps({"step": step, **clean}) + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        if self._tb is not None:
            for k, v in _scalars(metrics).items():
                self._tb.add_scalar(k, v, step)
            self._tb.flush()
        if self.wandb is not None:
            self.wandb.log(step, metrics)

    def alerts(self, step: int, alerts: list) -> None:
        if self.wandb is not None:
            self.wandb.alerts(step, alerts)

    def images(self, step: int, paths: dict) -> None:
        if self.wandb is not None:
            self.wandb.images(step, paths)

    def close(self) -> None:
        self._fh.close()
        if self._tb is not None:
            self._tb.close()
        if self.wandb is not None:
            self.wandb.close()


class NullSink:
    """A MetricSink that writes nothing: what ranks other than 0 log to under torchrun."""

    def log(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def alerts(self, step: int, alerts: list) -> None:
        pass

    def images(self, step: int, paths: dict) -> None:
        pass

    def close(self) -> None:
        pass


def read_metrics(run_dir: Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
