"""Collecting one step's `RolloutBatch`: sample prompts, generate G completions each, score, filter groups, shape.

Round r of step s draws its prompts and its sampling seed from (seed, s, r) alone, so a resumed run collects
exactly what an uninterrupted one would. Under torchrun each rank generates and verifies its contiguous block of a
round's prompts (sampling is seeded per global prompt index, so the completions equal a single process's), then
every rank gathers the whole round, so the group filter, the advantages and every metric see the global batch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time

import torch

from rlvr.batch import RolloutBatch
from rlvr.rollouts import SamplingParams
from rlvr.scoring import make_items


def step_seed(seed: int, step: int, round: int = 0) -> int:
    """Generation seed of (seed, step, round); round 0 (every step's first generation) keeps the original formula."""
    return (seed * 1_000_003 + step * 7919 + 17 + round * 104_729) % (2**63 - 1)


class BatchCollector:
    """Generates, scores and filters one step's batch.

    Args:
        engine: the rollout engine. reward: `rlvr.scoring.Reward`. sampler: `PromptSampler` over the train split.
        train: the train split (columns prompt, reference). prompt_ids: its rendered, tokenised prompts.
        group_filter / adv_fn: registry entries. cfg: the Config. dist: `rlvr.distributed.Dist`.
        engine_context: engine -> the context generation runs in (rlvr/parallel.py `for_engine`: FSDP gathers
            the weights for an engine that runs the policy module); default none.
    """

    def __init__(self, engine, reward, sampler, train, prompt_ids, group_filter, adv_fn, cfg, dist,
                 engine_context=None):
        self.engine_context = engine_context or (lambda engine: contextlib.nullcontext())
        self.engine, self.reward, self.sampler, self.train = engine, reward, sampler, train
        self.prompt_ids, self.group_filter, self.adv_fn, self.cfg, self.dist = (prompt_ids, group_filter, adv_fn,
                                                                               cfg, dist)
        self.params = SamplingParams(cfg.sampling.temperature, cfg.sampling.top_p, cfg.sampling.top_k,
                                     cfg.sampling.max_new_tokens)

    def collect(self, step: int) -> tuple[RolloutBatch, RolloutBatch, dict[str, float]]:
        """Returns (the shaped batch to train on, the step's first generation round as sampled, metrics): the
        group filter's metrics and time/generate, time/verify (seconds, summed over rounds). The first round is
        what the monitor observes: the unfiltered draw of P prompts its estimators assume (a filter that keeps
        informative groups would hide NO_SIGNAL and bias every variance-based estimate)."""
        rounds: list[RolloutBatch] = []
        timing = {"time/generate": 0.0, "time/verify": 0.0}
        seen: list[int] = []

        def draw(r: int) -> RolloutBatch:
            rounds.append(self._round(step, r, seen, timing))
            seen.extend(rounds[-1].prompt_index)
            return rounds[-1]

        selection, metrics = self.group_filter(draw, self.cfg.train.prompts_per_step, self.cfg.algorithm)
        batch = RolloutBatch.select(rounds, selection)
        batch.shape(self.adv_fn, self.cfg.algorithm, self.cfg.sampling.max_new_tokens)
        return batch, rounds[0], {**metrics, **timing}

    def _round(self, step: int, r: int, seen: list[int], timing: dict) -> RolloutBatch:
        G = self.cfg.train.group_size
        ta = time.perf_counter()
        idx = self.sampler.indices(step) if r == 0 else self.sampler.extra_indices(step, r, exclude=seen)
        mine = self.dist.shard(len(idx))  # all of them when alone
        with self.engine_context(self.engine):
            groups = self.engine.generate([self.prompt_ids[i] for i in idx[mine]], G, self.params,
                                          seed=step_seed(self.cfg.seed, step, r), index_offset=mine.start)
        tb = time.perf_counter()
        questions = [self.train[i]["prompt"] for i in idx]
        refs = [self.train[i]["reference"] for i in idx]
        texts = [c.text for g in groups for c in g.completions]
        items = make_items(texts, [x for x in refs[mine] for _ in range(G)],
                           [q for q in questions[mine] for _ in range(G)])
        rewards, verdicts, reward_metrics = self.reward(items, G)
        groups, rewards, verdicts, reward_metrics = self._gather(groups, rewards, verdicts, reward_metrics)
        for g, row in zip(groups, idx):  # the engine numbers groups by position; records want the dataset row
            g.prompt_index = int(row)
        batch = RolloutBatch.from_round(groups, questions, refs, rewards, verdicts, reward_metrics)
        timing["time/generate"] += tb - ta
        timing["time/verify"] += time.perf_counter() - tb
        return batch

    def _gather(self, groups, rewards, verdicts, reward_metrics):
        """Every rank's share of a generation round, concatenated in rank order (= prompt order); the per-verifier
        metrics become count-weighted means over all ranks. Unchanged when alone."""
        if self.dist.world_size == 1:
            return groups, rewards, verdicts, reward_metrics
        light = [dataclasses.replace(v, detail={}) for v in verdicts]  # the trainer reads score/class/error only
        parts = self.dist.all_gather_object((groups, rewards, light, reward_metrics))
        n = [len(p[2]) for p in parts]
        metrics = {k: sum(p[3][k] * m for p, m in zip(parts, n)) / max(sum(n), 1) for k in reward_metrics}
        return ([g for p in parts for g in p[0]], torch.cat([p[1] for p in parts]), [v for p in parts for v in p[2]],
                metrics)
