"""The rollout engine interface and the rollout record every engine returns.

An engine turns tokenised prompts into G sampled completions each. Engines differ in speed (HF with a shared
prompt KV cache here; vLLM later) but return the same record, so the trainer never knows which one ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings of one `generate` call.

    temperature: logits are divided by it; 0 means greedy (argmax). top_p/top_k restrict the sampling distribution;
    the recorded logprob is always that of the full temperature-scaled distribution, which is what the loss uses.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_new_tokens: int = 24


@dataclass
class Completion:
    """One sampled completion.

    token_ids: completion tokens (int), including the stop token when finish_reason == "stop".
    logprobs: per-token log-probability (float, nats) of each token under the sampling policy, len == len(token_ids).
    finish_reason: "stop" (a stop token was sampled) or "length" (hit max_new_tokens).
    """

    token_ids: list[int]
    logprobs: list[float]
    text: str
    finish_reason: Literal["stop", "length"]


@dataclass
class Group:
    """G completions of one prompt. `prompt_ids` are the prompt's token ids (no padding)."""

    prompt_index: int
    prompt_ids: list[int]
    completions: list[Completion] = field(default_factory=list)


@runtime_checkable
class RolloutEngine(Protocol):
    """What the trainer needs from a generator.

    `reads_policy_modules`: True when `generate` runs the policy module itself (HFEngine), so under FSDP2 it runs
    inside `rlvr.parallel.FSDP.full_weights()`; False for an engine with its own copy of the weights (vLLM)."""

    reads_policy_modules: bool

    def generate(self, prompts: list[list[int]], n: int, params: SamplingParams, seed: int,
                 index_offset: int = 0) -> list[Group]:
        """Sample `n` completions for each tokenised prompt. Deterministic given `seed` and the weights.

        `index_offset` is the global index of `prompts[0]`: prompt i's samples are seeded from (seed,
        index_offset + i) alone, so data-parallel ranks that each generate a slice of a step's prompts (offset =
        the slice's start) sample what one process generating them all would. Groups get prompt_index
        index_offset + i."""
        ...

    def update_weights(self, model) -> None:
        """Make the engine sample from `model`'s current weights (called after every optimizer step)."""
        ...

    def score(self, prompts: list[list[int]], completions: list[list[int]]) -> list[list[float]]:
        """Per-token log-probabilities (nats, temperature 1) of `completions[i]` after `prompts[i]` under the weights
        the engine samples from: the monitor's staleness probe compares them with the trainer's policy."""
        ...


def prompt_seed(seed: int, index: int) -> int:
    """Seed of the generator of prompt `index` (its global index within a generate call's batch) under `seed`."""
    return (seed * 1_000_003 + index * 7_919 + 1) % (2**63 - 1)


def pad_and_stop_ids(model, tokenizer) -> tuple[int, list[int]]:
    """(pad id, sorted stop ids): the tokenizer's eos plus the model's generation_config eos (int or list); pad falls
    back to eos. Every engine uses this set, so completions end at the same tokens whichever engine samples them."""
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stops = {tokenizer.eos_token_id}
    gen_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(gen_eos, int):
        stops.add(gen_eos)
    elif isinstance(gen_eos, (list, tuple)):
        stops.update(gen_eos)
    return pad_id, sorted(s for s in stops if s is not None)
