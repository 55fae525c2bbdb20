"""`RolloutBatch`: one step's rollouts as the trainer's stages pass them along.

Shapes: P groups (one per prompt) of G completions each. Tensors live on the CPU (they are built from rollout
records); the policy update moves what it needs to the training device once per micro-batch.

Lifecycle in a step (rlvr/trainer.py):
  collect  -> `RolloutBatch.from_round` per generation round (prompts, completions, rewards, verdicts),
              the group filter picks groups across rounds (`RolloutBatch.select`);
  shape    -> `shape()` adds the overlong penalty, loss weights and advantages;
  update   -> the policy update reads completions, advantages, loss weights;
  record   -> `rollout_stats`, the monitor (`Monitor.observe_batch`) and `records()` (rollouts.jsonl) read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from rlvr.rollouts.base import Completion, Group
from rlvr.scoring import passed as verdict_passed


@dataclass
class RolloutBatch:
    """P groups of G completions with their verdicts and, after `shape()`, their advantages.

    Attributes:
        prompt_index: [P] dataset row of each group's prompt (the group index of the records).
        prompt_ids: [P] token ids of the rendered prompt (no padding).
        prompts: [P] question text (passed to the verifiers as `prompt`).
        references: [P] reference answers.
        completions: [P][G] `Completion` records (token ids, engine log-probs, text, finish reason).
        rewards: [P, G] float32, the verifiers' weighted reward.
        verdicts: [P][G] the primary (first) verifier's verdicts.
        reward_metrics: `rewards/<name>/*` over the completions this batch was built from.
        lengths: [P, G] long, completion tokens. truncated: [P, G] bool, finish_reason == "length".
        passed: [P, G] bool, pass/fail of the primary verdict (`rlvr.scoring.passed`).
        trained_rewards: [P, G] rewards + overlong penalty (what the advantage sees); set by `shape`.
        loss_weights: [P, G] float32 in {0, 1} (overlong filtering); set by `shape`.
        advantages: [P, G] float32; set by `shape`.
    """

    prompt_index: list[int]
    prompt_ids: list[list[int]]
    prompts: list[str]
    references: list[Any]
    completions: list[list[Completion]]
    rewards: Tensor
    verdicts: list[list[Any]]
    reward_metrics: dict[str, float] = field(default_factory=dict)
    lengths: Tensor = field(init=False)
    truncated: Tensor = field(init=False)
    passed: Tensor = field(init=False)
    trained_rewards: Tensor | None = None
    loss_weights: Tensor | None = None
    advantages: Tensor | None = None

    def __post_init__(self) -> None:
        P = len(self.completions)
        G = len(self.completions[0]) if P else 0
        if tuple(self.rewards.shape) != (P, G):
            raise ValueError(f"RolloutBatch: rewards have shape {tuple(self.rewards.shape)}, expected [{P}, {G}]")
        for name in ("prompt_index", "prompt_ids", "prompts", "references", "verdicts"):
            if len(getattr(self, name)) != P:
                raise ValueError(f"RolloutBatch: {name} has {len(getattr(self, name))} entries for {P} groups")
        self.lengths = torch.tensor([[len(c.token_ids) for c in g] for g in self.completions],
                                    dtype=torch.long).reshape(P, G)
        self.truncated = torch.tensor([[c.finish_reason == "length" for c in g] for g in self.completions],
                                      dtype=torch.bool).reshape(P, G)
        self.passed = torch.tensor([[verdict_passed(v) for v in g] for g in self.verdicts],
                                   dtype=torch.bool).reshape(P, G)

    # ------------------------------------------------------------------------------------------ building

    @classmethod
    def from_round(cls, groups: list[Group], prompts: list[str], references: list[Any], rewards: Tensor,
                   verdicts: list, reward_metrics: dict[str, float]) -> "RolloutBatch":
        """One generation round: engine groups, their prompts/references, flat rewards [P*G] and verdicts [P*G]."""
        G = len(groups[0].completions) if groups else 0
        return cls(prompt_index=[g.prompt_index for g in groups], prompt_ids=[g.prompt_ids for g in groups],
                   prompts=list(prompts), references=list(references),
                   completions=[list(g.completions) for g in groups], rewards=rewards.reshape(len(groups), G),
                   verdicts=[list(verdicts[k * G:(k + 1) * G]) for k in range(len(groups))],
                   reward_metrics=dict(reward_metrics))

    @classmethod
    def select(cls, rounds: list["RolloutBatch"], selection: list[tuple[int, int]]) -> "RolloutBatch":
        """The groups `selection` [(round, group)] picked across generation rounds, in that order. Verifier metrics
        are count-weighted over every completion of every round (dropped groups included)."""
        n = [r.rewards.numel() for r in rounds]
        metrics = {k: sum(r.reward_metrics[k] * m for r, m in zip(rounds, n)) / max(sum(n), 1)
                   for k in rounds[0].reward_metrics}
        G = rounds[0].group_size

        def pick(name):
            return [getattr(rounds[r], name)[g] for r, g in selection]

        rewards = torch.stack([rounds[r].rewards[g] for r, g in selection]) if selection else torch.zeros(0, G)
        return cls(prompt_index=pick("prompt_index"), prompt_ids=pick("prompt_ids"), prompts=pick("prompts"),
                   references=pick("references"), completions=pick("completions"), rewards=rewards,
                   verdicts=pick("verdicts"), reward_metrics=metrics)

    # ------------------------------------------------------------------------------------------ views

    @property
    def n_groups(self) -> int:
        return len(self.completions)

    @property
    def group_size(self) -> int:
        return len(self.completions[0]) if self.completions else 0

    @property
    def texts(self) -> list[list[str]]:
        return [[c.text for c in g] for g in self.completions]

    @property
    def answer_classes(self) -> list[list[str | None]]:
        return [[v.answer_class for v in g] for g in self.verdicts]

    @property
    def errors(self) -> list[list[str | None]]:
        return [[v.error for v in g] for g in self.verdicts]

    def informative(self) -> Tensor:
        """[P] bool: the group's trained rewards are not all equal (it has a non-zero advantage)."""
        r = self.trained_rewards if self.trained_rewards is not None else self.rewards
        return r.max(-1).values != r.min(-1).values if r.numel() else torch.zeros(0, dtype=torch.bool)

    # ------------------------------------------------------------------------------------------ shaping

    def shape(self, adv_fn, cfg, max_new_tokens: int) -> "RolloutBatch":
        """Overlong penalty -> trained_rewards, overlong mask -> loss_weights, advantages = adv_fn(trained_rewards).
        `cfg` is the AlgorithmConfig; `adv_fn` a registered advantage estimator. Returns self."""
        from rlvr import algorithms

        penalty = algorithms.soft_overlong_penalty(self.lengths, max_new_tokens, cfg.overlong_buffer,
                                                   cfg.overlong_penalty_factor)
        self.trained_rewards = self.rewards + penalty
        self.loss_weights = algorithms.overlong_loss_weights(self.truncated, cfg.overlong_mask)
        self.advantages = adv_fn(self.trained_rewards, cfg)
        return self

    @property
    def overlong_penalty(self) -> Tensor:
        return self.trained_rewards - self.rewards

    # ------------------------------------------------------------------------------------------ records

    def records(self, step: int) -> list[dict]:
        """One rollouts.jsonl row per completion: step, prompt_index (row of the train split), question (its text as
        the dataset gives it, before the chat template), reference, completion, reward, advantage, passed,
        answer_class, finish_reason, length (tokens), error."""
        return [{"step": step, "prompt_index": self.prompt_index[gi], "question": self.prompts[gi],
                 "reference": self.references[gi],
                 "completion": c.text, "reward": float(self.rewards[gi, j]),
                 "advantage": float(self.advantages[gi, j]) if self.advantages is not None else None,
                 "passed": bool(self.passed[gi, j]), "answer_class": self.verdicts[gi][j].answer_class,
                 "finish_reason": c.finish_reason, "length": int(self.lengths[gi, j]),
                 "error": (self.verdicts[gi][j].error or None) and self.verdicts[gi][j].error[:200]}
                for gi, g in enumerate(self.completions) for j, c in enumerate(g)]
