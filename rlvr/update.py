"""Updating the policy on one `RolloutBatch`: PPO epochs over mini-batches of groups, micro-batched backward.

    for epoch in 1..mu (train.updates_per_batch):               # GRPO's mu (Shao et al. 2024, arXiv 2402.03300,
        for mini-batch in the batch's groups, M parts:          #   Algorithm 1); TRL num_iterations, verl ppo_epochs
            zero_grad
            for micro-batch of <= train.micro_batch_groups informative groups (this rank's share):
                log-probs (with grad) -> loss(logprobs, old_logprobs, advantages, ...) / mini-batch tokens -> backward
            sum gradients over ranks, clip, AdamW step

`old_logprobs` are the policy's log-probs of the sampled tokens *before the first update* of this batch (the pi_old
of the PPO ratio, Schulman et al. 2017, arXiv 1707.06347 eq. 6). With mu = 1 and one mini-batch the only update
happens at pi_old itself, so they are the detached log-probs of that same forward (no extra pass, ratio exactly 1:
today's fully on-policy step, as in TRL when num_iterations = 1). Otherwise one no-grad pass over the informative
groups computes and stores them first (and the reference model's log-probs when beta > 0), so the clip, dual-clip
and GSPO variants and `clip_ratio/*` act from the second update on.

Loss normaliser: the tokens (or sequences) of the mini-batch's groups, tied groups included, so with M = 1 the
sum of micro-batch losses is the whole step's loss exactly (token-level aggregation, DAPO eq. 8). Groups whose
trained rewards all tie have zero advantage and no gradient; they are skipped in the backward (unless
train.skip_zero_variance_groups is false). Mini-batches are contiguous blocks of the batch's groups in batch
order, the same in every epoch (no reshuffle: the batch order is already a seeded random draw).

Metrics: `entropy` and `sampling/*` (engine vs trainer on the sampled tokens) come from the pi_old forward; `loss`
and the loss's own stats (`clip_ratio/*`, `kl`) are means over the optimizer updates (loss: per-update sum over
micro-batches); `grad_norm` is the last update's; `updates` counts optimizer steps.
"""

from __future__ import annotations

import torch

from rlvr import algorithms
from rlvr.batch import RolloutBatch
from rlvr.forward import completion_logprobs
from rlvr.sharing import shared_map


def dropout_active(model) -> bool:
    """Some dropout layer of `model` draws random masks (p > 0, training mode): a forward then depends on the
    random stream, hence on which thread ran first (no work is shared with the rollout thread then)."""
    return any(isinstance(m, torch.nn.Dropout) and m.p > 0 and m.training for m in model.modules())


def mini_batch_groups(n_groups: int, mini_batches: int) -> list[range]:
    """Contiguous blocks of range(n_groups): `mini_batches` parts as equal as possible (earlier parts are not
    larger than later ones); empty parts are dropped. `mini_batch_groups(8, 3)` -> [0:2], [2:5], [5:8]."""
    m = max(1, min(mini_batches, n_groups)) if n_groups else 1
    return [r for r in (range(k * n_groups // m, (k + 1) * n_groups // m) for k in range(m)) if len(r)]


def balanced_deal(micro_batches: list[list[int]], rank: int, world_size: int) -> list[tuple[list[int], bool]]:
    """This rank's share of an optimizer step's micro-batches, as (groups, is_padding) pairs: contiguous blocks of
    ceil(n / world_size), every rank's list padded to that length with copies of the step's first micro-batch
    (rlvr/parallel.py: FSDP and DDP need every rank to run the same number of forward/backward passes). No
    padding in one process, or when n is 0 (every rank then skips the step together).

    `balanced_deal([[0], [1], [2]], r, 2)` -> rank 0: [([0], False), ([1], False)], rank 1: [([2], False), ([0], True)].
    """
    n = len(micro_batches)
    if not n:
        return []
    if world_size == 1:
        return [(mb, False) for mb in micro_batches]
    per = -(-n // world_size)
    mine = [(mb, False) for mb in micro_batches[rank * per:(rank + 1) * per]]
    return mine + [(micro_batches[0], True)] * (per - len(mine))


class PolicyUpdater:
    """Runs the optimizer updates of one batch. Holds the policy, optional reference model, optimizer, the loss
    function (a registry entry), the configs and the distributed helper; knows nothing of the algorithm beyond
    the `LossInputs` it fills."""

    def __init__(self, model, optimizer, loss_fn, cfg, parallel, device: torch.device, pad_id: int,
                 ref_model=None):
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.cfg, self.parallel, self.dist = cfg, parallel, parallel.dist
        self.device, self.pad_id, self.ref_model = device, pad_id, ref_model
        # called before every optimizer step (the trainer's asynchronous mode waits there for a pre-flight evaluation
        # still reading the policy on another thread); None: nothing
        self.before_optimizer_step = None
        # asynchronous GRPO on CPU: helper(work) runs work() on the rollout thread once it is free (after the next
        # batch's collection) and returns its future; the micro-batches of an optimizer step are then shared
        # between the two threads (rlvr.sharing.shared_map). None: one thread computes them all.
        self.helper = None
        self.waiting = None  # a threading.Event set while this thread waits for a micro-batch the helper computes
        self._grads_mode = None  # _returns_grads(), decided once

    def update(self, batch: RolloutBatch) -> dict[str, float]:
        """All optimizer updates for `batch` (shaped: advantages and loss weights set). Returns the metrics above,
        or {"loss": 0, "grad_norm": 0, "updates": 0} when no group carries a gradient."""
        cfg = self.cfg
        tcfg = cfg.train
        informative = batch.informative()
        trainable = {i for i in range(batch.n_groups) if informative[i] or not tcfg.skip_zero_variance_groups}
        mu, M = tcfg.updates_per_batch, tcfg.mini_batches
        reuse = mu > 1 or M > 1
        parts = mini_batch_groups(batch.n_groups, M)
        plan = []  # per mini-batch: (this rank's micro-batches as (groups, is_padding), tokens, sequences)
        for part in parts:
            groups = [i for i in part if i in trainable]
            mbs = [groups[s:s + tcfg.micro_batch_groups] for s in range(0, len(groups), tcfg.micro_batch_groups)]
            w = batch.loss_weights[list(part)]
            mine = balanced_deal(mbs, self.dist.rank, self.dist.world_size)
            plan.append((mine, int((batch.lengths[list(part)] * w).sum()), int(w.sum())))

        first = {}  # per (mini-batch, position): (pi_old log-probs, reference log-probs or None)
        obs = _Observed()
        if reuse:  # pi_old before any update (padding included: every rank runs the same forwards)
            with torch.no_grad():
                for j, (mbs, _, _) in enumerate(plan):
                    for k, (mb, pad) in enumerate(mbs):
                        lp, mask, ent = self._logprobs(batch, mb, with_entropy=True)
                        first[j, k] = (lp, self._ref_logprobs(batch, mb) if cfg.algorithm.beta > 0 else None)
                        if not pad:
                            obs.add(lp, self._engine_logprobs(batch, mb, mask), mask, ent)

        totals = {"loss": 0.0}
        stats_acc: dict[str, float] = {}
        grad_norm, n_updates = 0.0, 0
        params = [p for p in self.model.parameters() if p.requires_grad]
        for _epoch in range(mu):
            for j, (mbs, step_tokens, step_sequences) in enumerate(plan):
                n_mb = self.dist.merge_stats({"n": float(sum(not pad for _, pad in mbs))})["n"]
                if not n_mb:
                    continue
                self.optimizer.zero_grad(set_to_none=True)
                loss_sum, mb_stats = 0.0, {}
                if self._returns_grads():
                    def one(k, j=j, mbs=mbs, st=step_tokens, ss=step_sequences):
                        return self._micro_batch(batch, mbs[k][0], first.get((j, k)), not reuse, st, ss, mbs[k][1],
                                                 params=params)

                    results = shared_map(one, len(mbs), self.helper, self.waiting)
                else:
                    results = (self._micro_batch_accumulated(batch, mbs, j, k, first, not reuse, step_tokens,
                                                             step_sequences) for k in range(len(mbs)))
                for k, (loss, stats, seen, grads) in enumerate(results):
                    if grads is not None:  # in micro-batch order: the sums of backward()'s accumulation, bit for bit
                        for p, g in zip(params, grads):
                            if g is not None:
                                p.grad = g if p.grad is None else p.grad.add_(g)
                    if seen is not None:
                        obs.add(*seen)
                    if not mbs[k][1]:
                        loss_sum += loss
                        _accumulate(mb_stats, stats)
                tot = self.dist.merge_stats({"loss": loss_sum, **mb_stats})
                totals["loss"] += tot.pop("loss")
                for key, v in tot.items():
                    stats_acc[key] = stats_acc.get(key, 0.0) + v / n_mb
                # gradients are already summed over ranks (rlvr/parallel.py): every rank's loss is over the
                # mini-batch's token count
                grad_norm = self.parallel.clip_grad_norm(params, tcfg.max_grad_norm)
                if self.before_optimizer_step is not None:
                    self.before_optimizer_step()
                self.optimizer.step()
                n_updates += 1
        if not n_updates:  # every group tied: nothing to learn from this batch
            return {"loss": 0.0, "grad_norm": 0.0, "updates": 0.0}
        return {"loss": totals["loss"] / n_updates, "grad_norm": grad_norm, "updates": float(n_updates),
                **obs.metrics(self.dist), **{k: v / n_updates for k, v in stats_acc.items()}}

    # ------------------------------------------------------------------------------------------ pieces

    def _micro_batch_accumulated(self, batch, mbs, j, k, first, observe, step_tokens, step_sequences):
        """Micro-batch k of mini-batch j, its gradient accumulated by backward() (inside the parallelism's
        accumulate context: DDP all-reduces on the last)."""
        mb, pad = mbs[k]
        with self.parallel.accumulate(last=k == len(mbs) - 1):
            return self._micro_batch(batch, mb, first.get((j, k)), observe, step_tokens, step_sequences, pad)

    def _micro_batch(self, batch, mb, first, observe, step_tokens, step_sequences, pad=False, params=None):
        """Forward + backward of one micro-batch (groups `mb`). `pad`: a balancing copy whose loss is multiplied
        by 0 (rlvr/parallel.py): the same forwards and collectives, an exact zero gradient, no metrics.
        `observe`: this forward is pi_old (mu = 1, one mini-batch). `params`: return the gradients of these
        tensors (torch.autograd.grad) instead of accumulating them into .grad.

        Returns (loss: float, stats: dict, seen: _Observed.add's arguments or None, grads: tuple or None)."""
        cfg = self.cfg
        logprobs, mask, entropy = self._logprobs(batch, mb, with_entropy=observe, grad=True)
        sampled = self._engine_logprobs(batch, mb, mask)
        seen = None
        if not observe:  # pi_old was computed before the first update
            old, ref_lp = first
        else:  # mu = 1, one mini-batch: this forward is pi_old
            old = logprobs.detach()
            ref_lp = self._ref_logprobs(batch, mb) if cfg.algorithm.beta > 0 else None
            if not pad:
                seen = (old, sampled, mask, entropy)
        stats: dict[str, float] = {}
        is_w = None
        if cfg.rollout.importance_sampling == "tis":  # pi_old / engine: the sampling correction, fixed per batch
            is_w, is_stats = algorithms.truncated_is_weights(old, sampled, mask, cfg.rollout.importance_sampling_cap)
            stats.update(is_stats)
        weights = batch.loss_weights[mb].reshape(-1, 1).to(self.device, mask.dtype)
        inputs = algorithms.LossInputs(
            logprobs=logprobs, old_logprobs=old, advantages=batch.advantages[mb].reshape(-1).to(self.device),
            mask=mask * weights, ref_logprobs=ref_lp, step_tokens=step_tokens, step_sequences=step_sequences,
            is_weights=is_w)
        loss, loss_stats = self.loss_fn(inputs, cfg.algorithm)
        grads = None
        if params is None:
            (loss * 0.0 if pad else loss).backward()
        else:
            grads = torch.autograd.grad(loss * 0.0 if pad else loss, params, allow_unused=True)
        stats.update(loss_stats)
        return float(loss.detach()), stats, seen, grads

    def _returns_grads(self) -> bool:
        """Micro-batches return their gradients, folded in order, and are shared with the rollout thread
        (self.helper): one process, and nothing that makes a forward depend on another thread: no reference pass
        through the policy with its adapter disabled (beta > 0 without a separate reference model), no active
        dropout (its random draws would depend on which thread ran first). Decided per run, not per step, so that
        a run's numbers do not depend on when the helper was free (torch.autograd.grad and backward() may sum a
        weight's several uses in another order). Computed at the first update, after the trainer set the helper."""
        if self._grads_mode is None:
            self._grads_mode = (
                self.helper is not None and self.dist.world_size == 1 and not getattr(self.parallel, "sharded", False)
                and not (self.cfg.algorithm.beta > 0 and self.ref_model is None)
                and not dropout_active(self.model))
        return self._grads_mode

    def _logprobs(self, batch, mb, with_entropy=False, grad=False):
        """Policy log-probs of micro-batch `mb`; `grad`: through the parallelism's training module (DDP's
        wrapper; no-grad passes use the module itself, outside any collective)."""
        G = batch.group_size
        comps = [c.token_ids for i in mb for c in batch.completions[i]]
        model = self.parallel.train_module if grad else self.model
        return completion_logprobs(model, [batch.prompt_ids[i] for i in mb], comps, G, self.pad_id,
                                   self.cfg.sampling.temperature, with_entropy=with_entropy, device=self.device)

    def _engine_logprobs(self, batch, mb, mask):
        """The engine's own log-probs of the sampled tokens, [R, T] on the training device (0 past each end)."""
        sampled = torch.zeros(mask.shape, dtype=torch.float32)
        for r, c in enumerate(c for i in mb for c in batch.completions[i]):
            sampled[r, : len(c.logprobs)] = torch.tensor(c.logprobs)
        return sampled.to(self.device)

    def _ref_logprobs(self, batch, mb):
        with torch.no_grad():
            if self.ref_model is not None:
                model, ctx = self.ref_model, _nullcontext()
            else:  # LoRA: the reference is the base model, adapter disabled (no second copy in memory)
                model, ctx = self.model, self.model.disable_adapter()
            with ctx:
                G = batch.group_size
                comps = [c.token_ids for i in mb for c in batch.completions[i]]
                lp, _, _ = completion_logprobs(model, [batch.prompt_ids[i] for i in mb], comps, G, self.pad_id,
                                               self.cfg.sampling.temperature, device=self.device)
        return lp


class _Observed:
    """Token-weighted entropy and engine/trainer mismatch over the pi_old forward of every micro-batch."""

    def __init__(self):
        self.ent_sum, self.tokens, self.mismatch = 0.0, 0.0, {}

    def add(self, logprobs, sampled, mask, entropy):
        n = float(mask.sum())
        if entropy is not None:
            self.ent_sum += float((entropy * mask).sum())
        self.tokens += n
        for k, v in algorithms.sampling_mismatch(logprobs.detach(), sampled, mask).items():
            if k.endswith("_max"):
                self.mismatch[k] = max(self.mismatch.get(k, v), v)
            elif k.endswith("_min"):
                self.mismatch[k] = min(self.mismatch.get(k, v), v)
            else:  # token-weighted mean
                self.mismatch[k] = self.mismatch.get(k, 0.0) + v * n

    def metrics(self, dist) -> dict[str, float]:
        tot = dist.merge_stats({"entropy_sum": self.ent_sum, "tokens": self.tokens})
        mismatch = dist.merge_stats(dict(self.mismatch))
        n = tot["tokens"]
        if not n:
            return {}
        for k in ("sampling/logp_diff_mean", "sampling/kl"):
            if k in mismatch:
                mismatch[k] /= n
        return {"entropy": tot["entropy_sum"] / n, **mismatch}


def _accumulate(acc: dict[str, float], stats: dict[str, float]) -> None:
    for k, v in stats.items():
        acc[k] = acc.get(k, 0.0) + v


class _nullcontext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False

