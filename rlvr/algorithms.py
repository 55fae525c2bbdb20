"""The RL math: advantage estimators, policy losses and KL estimators as small pure functions, in registries.

The trainer looks estimators and losses up by name (`algorithm.advantage`, `algorithm.loss`) and never branches on
them. Shapes: P prompts, G completions per prompt (a group), R = number of completions in a micro-batch,
T = padded completion length. All tensors are float32 unless stated; masks are {0,1} floats or bools.

Add a variant with::

    @register_advantage("my_adv")
    def my_adv(rewards: Tensor, cfg: AlgorithmConfig) -> Tensor: ...   # [P, G] -> [P, G]

    @register_policy_loss("my_loss")
    def my_loss(batch: LossInputs, cfg: AlgorithmConfig) -> tuple[Tensor, dict[str, float]]: ...

    @register_group_filter("my_filter")   # which sampled groups make up a step's batch
    def my_filter(draw: Callable[[int], RolloutBatch], target: int, cfg: AlgorithmConfig
                  ) -> tuple[list[tuple[int, int]], dict[str, float]]: ...

DAPO is not a separate loss: it is the token-level `grpo` loss with clip-higher, dynamic sampling and overlong
shaping, bundled as `algorithm.preset: dapo` (rlvr/config.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import Tensor

from rlvr.config import AlgorithmConfig

ADVANTAGE_ESTIMATORS: dict[str, Callable[[Tensor, AlgorithmConfig], Tensor]] = {}
POLICY_LOSSES: dict[str, Callable[["LossInputs", AlgorithmConfig], tuple[Tensor, dict[str, float]]]] = {}
GroupFilter = Callable[[Callable[[int], Any], int, AlgorithmConfig], tuple[list[tuple[int, int]], dict[str, float]]]
GROUP_FILTERS: dict[str, GroupFilter] = {}


def register_advantage(name: str):
    def deco(fn):
        ADVANTAGE_ESTIMATORS[name] = fn
        return fn
    return deco


def register_policy_loss(name: str):
    def deco(fn):
        POLICY_LOSSES[name] = fn
        return fn
    return deco


def register_group_filter(name: str):
    def deco(fn):
        GROUP_FILTERS[name] = fn
        return fn
    return deco


def get_advantage(name: str):
    if name not in ADVANTAGE_ESTIMATORS:
        raise KeyError(f"algorithm.advantage '{name}' is not registered; known: {sorted(ADVANTAGE_ESTIMATORS)}")
    return ADVANTAGE_ESTIMATORS[name]


def get_policy_loss(name: str):
    if name not in POLICY_LOSSES:
        raise KeyError(f"algorithm.loss '{name}' is not registered; known: {sorted(POLICY_LOSSES)}")
    return POLICY_LOSSES[name]


def get_group_filter(name: str):
    if name not in GROUP_FILTERS:
        raise KeyError(f"algorithm.group_filter '{name}' is not registered; known: {sorted(GROUP_FILTERS)}")
    return GROUP_FILTERS[name]


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of `x` over positions where `mask` is 1 (0 where the mask is empty)."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


# ---------------------------------------------------------------------------------------------- advantages


@register_advantage("grpo")
def grpo_advantages(rewards: Tensor, cfg: AlgorithmConfig) -> Tensor:
    """Group-normalised advantage, GRPO (Shao et al. 2024, DeepSeekMath, arXiv 2402.03300, eq. 3 / sec. 4.1.2).

    A_ij = (r_ij - mean_j r_ij) / (std + std_eps), where std is the unbiased (Bessel) std of the group when
    `scale_rewards="group"`, of the whole batch when `"batch"` (Hu et al. 2025, REINFORCE++), and 1 when `"none"`.

    Args: rewards [P, G] float. Returns [P, G] float; every completion's tokens share its advantage.
    """
    mean = rewards.mean(dim=-1, keepdim=True)
    centred = rewards - mean
    if cfg.scale_rewards == "group":
        std = rewards.std(dim=-1, keepdim=True) if rewards.shape[-1] > 1 else torch.zeros_like(mean)
    elif cfg.scale_rewards == "batch":
        std = rewards.std() if rewards.numel() > 1 else torch.zeros(())
    else:
        return centred
    return centred / (std + cfg.std_eps)


@register_advantage("dr_grpo")
def dr_grpo_advantages(rewards: Tensor, cfg: AlgorithmConfig) -> Tensor:
    """Dr. GRPO advantage (Liu et al. 2025, "Understanding R1-Zero-Like Training", arXiv 2503.20783, eq. 4):
    A_ij = r_ij - mean_j r_ij, with no std division (removes the difficulty bias). [P, G] -> [P, G]."""
    return rewards - rewards.mean(dim=-1, keepdim=True)


@register_advantage("rloo")
def rloo_advantages(rewards: Tensor, cfg: AlgorithmConfig) -> Tensor:
    """REINFORCE leave-one-out (RLOO) advantage: each completion's baseline is the mean reward of the other G - 1
    completions of its prompt (Kool et al. 2019, "Buy 4 REINFORCE Samples, Get a Baseline for Free!"; Ahmadian et al.
    2024, "Back to Basics: Revisiting REINFORCE Style Optimization for Learning from Human Feedback in LLMs",
    arXiv 2402.14740, sec. 3.2):

        A_i = r_i - 1/(G-1) * sum_{j != i} r_j  =  G/(G-1) * (r_i - mean_j r_j).

    The baseline does not depend on r_i, so the estimator is unbiased. Args: rewards [P, G] float, G >= 2.
    Returns [P, G] float.
    """
    G = rewards.shape[-1]
    if G < 2:
        raise ValueError("rloo needs at least 2 completions per prompt (train.group_size >= 2)")
    others = (rewards.sum(dim=-1, keepdim=True) - rewards) / (G - 1)
    return rewards - others


# ---------------------------------------------------------------------------------------------- reward shaping


def soft_overlong_penalty(lengths: Tensor, max_len: int, buffer: int, factor: float = 1.0) -> Tensor:
    """DAPO's soft overlong punishment (Yu et al. 2025, arXiv 2503.14476, eq. 13), added to the reward:

        R_length(L) = 0                                  if L <= L_max - L_cache
                    = ((L_max - L_cache) - L) / L_cache  if L_max - L_cache < L <= L_max
                    = -1                                 if L > L_max

    times `factor`, with L_max = `max_len` (sampling.max_new_tokens) and L_cache = `buffer`. `buffer` 0 disables it
    (all zeros). Args: lengths [P, G] int (completion tokens). Returns [P, G] float32, in [-factor, 0].
    """
    if buffer <= 0:
        return torch.zeros(lengths.shape, dtype=torch.float32)
    if buffer >= max_len:
        raise ValueError(f"overlong buffer {buffer} must be smaller than the length cap {max_len}")
    L = lengths.to(torch.float32)
    start = float(max_len - buffer)
    penalty = torch.where(L > start, (start - L) / buffer, torch.zeros_like(L))
    return factor * penalty.clamp(min=-1.0)


def overlong_loss_weights(truncated: Tensor, enabled: bool) -> Tensor:
    """Overlong filtering (DAPO, arXiv 2503.14476, sec. 3.4): weight 0 for completions cut at the length cap, so
    their tokens get no loss and do not count in the loss normaliser; 1 otherwise, or everywhere when not `enabled`.
    Args: truncated [P, G] bool (finish_reason == "length"). Returns [P, G] float32 in {0, 1}."""
    if not enabled:
        return torch.ones(truncated.shape, dtype=torch.float32)
    return (~truncated.bool()).to(torch.float32)


# ---------------------------------------------------------------------------------------------- group filters
#
# A group filter decides which sampled groups form a step's batch. It calls `draw(r)` for generation round r = 0,
# 1, ... (the trainer samples that round's prompts, generates and verifies them, deterministically in (seed, step,
# r)) and gets the round as an `rlvr.batch.RolloutBatch` (verifier rewards `.rewards` [n, G], verdicts, lengths,
# texts); it returns the chosen (round, group-within-round) pairs, in
# batch order, and its metrics. It must call draw(0) first and rounds in order.


def _informative(rewards: Tensor) -> Tensor:
    """[n, G] -> [n] bool: the group's rewards are not all equal (it has a GRPO gradient)."""
    return rewards.max(-1).values != rewards.min(-1).values


@register_group_filter("none")
def no_group_filter(draw: Callable[[int], Any], target: int, cfg: AlgorithmConfig
                    ) -> tuple[list[tuple[int, int]], dict[str, float]]:
    """Keep the first round's groups as sampled (plain GRPO). Returns ([(0, 0), ..., (0, n-1)], {})."""
    return [(0, g) for g in range(draw(0).rewards.shape[0])], {}


@register_group_filter("dynamic_sampling")
def dynamic_sampling(draw: Callable[[int], Any], target: int, cfg: AlgorithmConfig
                     ) -> tuple[list[tuple[int, int]], dict[str, float]]:
    """DAPO dynamic sampling (Yu et al. 2025, arXiv 2503.14476, eq. 11 and Algorithm 1): keep only groups with
    0 < #correct < G, i.e. whose rewards do not all tie, and draw more rounds until `target` (P) are collected or
    `cfg.max_extra_rounds` extra rounds are spent. Surplus informative groups of the last round are dropped; a batch
    still short is topped up with tied groups in sampling order (zero advantage: they add no gradient), so the batch
    always has `target` groups when enough were sampled.

    Metrics: dynamic_sampling/rounds (rounds drawn, >= 1), /prompts_sampled, /informative_frac (informative share of
    all sampled groups), /filled_tied (tied groups used to top up).
    """
    kept: list[tuple[int, int]] = []
    tied: list[tuple[int, int]] = []
    rounds = sampled = 0
    for r in range(1 + cfg.max_extra_rounds):
        rewards = draw(r).rewards
        rounds, sampled = rounds + 1, sampled + rewards.shape[0]
        for g, ok in enumerate(_informative(rewards).tolist()):
            (kept if ok else tied).append((r, g))
        if len(kept) >= target:
            break
    n_inf = len(kept)
    fill = tied[: max(0, target - n_inf)]
    return kept[:target] + fill, {"dynamic_sampling/rounds": float(rounds),
                                  "dynamic_sampling/prompts_sampled": float(sampled),
                                  "dynamic_sampling/informative_frac": n_inf / max(sampled, 1),
                                  "dynamic_sampling/filled_tied": float(len(fill))}


# ---------------------------------------------------------------------------------------------- KL


def kl_estimate(logprobs: Tensor, ref_logprobs: Tensor, estimator: str) -> Tensor:
    """Per-token estimate of KL(pi || pi_ref) from samples of pi (J. Schulman, "Approximating KL divergence", 2020).

    k1 = log pi - log pi_ref (unbiased, can be negative); k3 = exp(d) - d - 1 with d = log pi_ref - log pi
    (unbiased, always >= 0; used by GRPO, arXiv 2402.03300 eq. 4). Shapes [R, T] -> [R, T].
    """
    if estimator == "k1":
        return logprobs - ref_logprobs
    if estimator == "k3":
        d = ref_logprobs - logprobs
        return torch.exp(d) - d - 1.0
    raise ValueError(f"algorithm.kl_estimator '{estimator}': expected 'k1' or 'k3'")


def sampling_mismatch(trainer_logprobs: Tensor, engine_logprobs: Tensor, mask: Tensor) -> dict[str, float]:
    """How far the rollout engine's sampling policy q is from the trainer's policy p on the sampled tokens.

    Both [R, T] (detached), mask [R, T]. Returns `sampling/logp_diff_{mean,max}` (|log p - log q|), `sampling/kl`
    (KL(q || p) estimated from q's own samples with k3 = r - 1 - log r, r = p / q: unbiased and >= 0, Schulman 2020)
    and `sampling/is_ratio_{min,max}` (r). With a correctly synced fp32 engine all are ~1e-6 (kl ~1e-12); a weight
    sync that did not take effect shows up as logp_diff_max >> 1e-2.
    """
    m = mask.to(trainer_logprobs.dtype)
    n = m.sum().clamp(min=1)
    d = (trainer_logprobs - engine_logprobs) * m
    kl = kl_estimate(engine_logprobs, trainer_logprobs, "k3") * m
    on = m > 0
    ratio = torch.exp(d[on]) if on.any() else torch.ones(1)
    return {"sampling/logp_diff_mean": float(d.abs().sum() / n), "sampling/logp_diff_max": float(d.abs().max()),
            "sampling/kl": float(kl.sum() / n), "sampling/is_ratio_min": float(ratio.min()),
            "sampling/is_ratio_max": float(ratio.max())}


def truncated_is_weights(trainer_logprobs: Tensor, engine_logprobs: Tensor, mask: Tensor, cap: float = 2.0
                         ) -> tuple[Tensor, dict[str, float]]:
    """Truncated importance sampling (TIS) weights w = min(p / q, cap) per token, detached.

    The engine (q: vLLM, possibly bf16 or other kernels) and the trainer (p) compute slightly different
    distributions, so on-policy samples are really off-policy; weighting each token's policy-gradient term by the
    truncated ratio corrects for it with bounded variance (Yao et al. 2025, "Your Efficient RL Framework Secretly
    Brings You Off-Policy RL Training"; TRL's `vllm_importance_sampling_cap`, verl's `tis_imp_ratio_cap`, both 2).
    Returns (weights [R, T], 0 off the mask; stats `sampling/tis_weight_mean`, `sampling/tis_clipped_frac`).
    """
    m = mask.to(trainer_logprobs.dtype)
    with torch.no_grad():
        ratio = torch.exp(trainer_logprobs.detach() - engine_logprobs.detach())
        w = ratio.clamp(max=cap) * m
        n = m.sum().clamp(min=1)
        stats = {"sampling/tis_weight_mean": float(w.sum() / n),
                 "sampling/tis_clipped_frac": float(((ratio > cap).to(m.dtype) * m).sum() / n)}
    return w, stats


# ---------------------------------------------------------------------------------------------- losses


@dataclass
class LossInputs:
    """One micro-batch of R completions (padded to T tokens) plus whole-step normalisers.

    logprobs: [R, T] log pi_theta(token), with grad. old_logprobs: [R, T] log-probs of the policy that sampled
    (detached). advantages: [R]. mask: [R, T] 1 on completion tokens. ref_logprobs: [R, T] or None (no KL).
    is_weights: [R, T] importance weights of the rollout engine's sampling mismatch (TIS) or None: they multiply
    each token's policy-gradient term (not the KL term).
    step_tokens / step_sequences: completion tokens / completions in the whole optimizer step (all micro-batches,
    skipped groups included), so that summing micro-batch losses gives the full-batch loss exactly.
    """

    logprobs: Tensor
    old_logprobs: Tensor
    advantages: Tensor
    mask: Tensor
    ref_logprobs: Tensor | None
    step_tokens: int
    step_sequences: int
    is_weights: Tensor | None = None  # [R, T] detached per-token weights (truncated_is_weights) or None


def _clipped_surrogate(b: LossInputs, cfg: AlgorithmConfig) -> tuple[Tensor, dict[str, float]]:
    """Per-token negative PPO-clip objective (Schulman et al. 2017, arXiv 1707.06347, eq. 7), plus beta * KL."""
    eps_low = cfg.epsilon
    eps_high = cfg.epsilon_high if cfg.epsilon_high is not None else cfg.epsilon
    ratio = torch.exp(b.logprobs - b.old_logprobs)
    adv = b.advantages.unsqueeze(-1)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv
    per_token = -torch.minimum(unclipped, clipped)
    if b.is_weights is not None:
        per_token = per_token * b.is_weights
    m = b.mask.to(per_token.dtype)
    with torch.no_grad():
        low = ((ratio < 1.0 - eps_low) & (adv < 0)).to(m.dtype)
        high = ((ratio > 1.0 + eps_high) & (adv > 0)).to(m.dtype)
        n = m.sum().clamp(min=1)
        stats = {"clip_ratio/low": float((low * m).sum() / n), "clip_ratio/high": float((high * m).sum() / n),
                 "clip_ratio/region": float(((low + high) * m).sum() / n)}
    if b.ref_logprobs is not None and cfg.beta > 0:
        kl = kl_estimate(b.logprobs, b.ref_logprobs, cfg.kl_estimator)
        per_token = per_token + cfg.beta * kl
        stats["kl"] = float(masked_mean(kl.detach(), m))
    return per_token * m, stats


@register_policy_loss("grpo")
def grpo_token_loss(b: LossInputs, cfg: AlgorithmConfig) -> tuple[Tensor, dict[str, float]]:
    """Clipped surrogate with token-level aggregation: sum over all completion tokens / tokens in the step.

    Token-level averaging is DAPO's fix for long-sequence under-weighting (Yu et al. 2025, arXiv 2503.14476, eq. 8);
    it is TRL's default (`loss_type="dapo"`). Returns (scalar loss for this micro-batch, stats).
    """
    per_token, stats = _clipped_surrogate(b, cfg)
    return per_token.sum() / max(b.step_tokens, 1), stats


@register_policy_loss("grpo_seq")
def grpo_sequence_loss(b: LossInputs, cfg: AlgorithmConfig) -> tuple[Tensor, dict[str, float]]:
    """Clipped surrogate with sample-level aggregation as in the original GRPO objective (arXiv 2402.03300, eq. 3):
    mean over each completion's tokens, then mean over completions in the step."""
    per_token, stats = _clipped_surrogate(b, cfg)
    lengths = b.mask.to(per_token.dtype).sum(-1).clamp(min=1)
    return (per_token.sum(-1) / lengths).sum() / max(b.step_sequences, 1), stats


@register_policy_loss("gspo")
def gspo_loss(b: LossInputs, cfg: AlgorithmConfig) -> tuple[Tensor, dict[str, float]]:
    """Group Sequence Policy Optimization (Zheng et al. 2025, arXiv 2507.18071, eq. 5-7): one importance ratio per
    sequence, the length-normalised likelihood ratio

        s_i = (pi(y_i|x) / pi_old(y_i|x))^(1/|y_i|) = exp(1/|y_i| * sum_t (log pi(y_it) - log pi_old(y_it))),

    clipped at the sequence level: loss_i = -min(s_i A_i, clip(s_i, 1 - epsilon, 1 + epsilon_high) A_i), averaged
    over the step's sequences (sum over this micro-batch / step_sequences). Because s_i is a geometric mean its
    deviations are small: the paper clips at 3e-4 / 4e-4 (sec. 5.1), not PPO's 0.2. With TIS weights each
    sequence's term is multiplied by the mean of its tokens' weights; with beta > 0, beta * the sequence's mean
    per-token KL is added. Shapes as in LossInputs; stats clip_ratio/{low,high,region} are shares of sequences.
    """
    eps_low = cfg.epsilon
    eps_high = cfg.epsilon_high if cfg.epsilon_high is not None else cfg.epsilon
    m = b.mask.to(b.logprobs.dtype)
    lengths = m.sum(-1).clamp(min=1)
    seq_log_ratio = ((b.logprobs - b.old_logprobs) * m).sum(-1) / lengths  # [R]
    ratio = torch.exp(seq_log_ratio)
    adv = b.advantages
    per_seq = -torch.minimum(ratio * adv, torch.clamp(ratio, 1.0 - eps_low, 1.0 + eps_high) * adv)
    if b.is_weights is not None:
        per_seq = per_seq * (b.is_weights * m).sum(-1) / lengths
    present = (m.sum(-1) > 0).to(m.dtype)  # fully masked rows (e.g. overlong-filtered) contribute nothing
    with torch.no_grad():
        low = ((ratio < 1.0 - eps_low) & (adv < 0)).to(m.dtype) * present
        high = ((ratio > 1.0 + eps_high) & (adv > 0)).to(m.dtype) * present
        n = present.sum().clamp(min=1)
        stats = {"clip_ratio/low": float(low.sum() / n), "clip_ratio/high": float(high.sum() / n),
                 "clip_ratio/region": float((low + high).sum() / n)}
    if b.ref_logprobs is not None and cfg.beta > 0:
        kl = kl_estimate(b.logprobs, b.ref_logprobs, cfg.kl_estimator)
        per_seq = per_seq + cfg.beta * (kl * m).sum(-1) / lengths
        stats["kl"] = float(masked_mean(kl.detach(), m))
    return (per_seq * present).sum() / max(b.step_sequences, 1), stats
