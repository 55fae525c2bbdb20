"""Training-side forward pass: log-probs of completion tokens with the prompt computed once per group.

A group's G completions share one prompt. Instead of running G copies of a ~120-token few-shot prompt, the prompts
of the micro-batch are run once (left-padded), their KV cache is repeated G times, and only the completion tokens
are run on top. Gradients flow through the repeated cache into the prompt's activations, so the result equals a
full forward of every (prompt + completion) sequence (checked in tests/test_forward.py to 1e-5).
"""

from __future__ import annotations

import torch
from torch import Tensor

from rlvr.rollouts.hf import left_pad


def right_pad(seqs: list[list[int]], pad_id: int) -> tuple[Tensor, Tensor]:
    """Right-pad token lists. Returns (ids [B, T] long, mask [B, T] float)."""
    width = max(1, max(len(s) for s in seqs))
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.float32)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        mask[i, : len(s)] = 1.0
    return ids, mask


def completion_logprobs(model, prompts: list[list[int]], completions: list[list[int]], group_size: int,
                        pad_id: int, temperature: float = 1.0, with_entropy: bool = False,
                        device: torch.device | str | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
    """Per-token log pi(token | prefix) of completions, temperature-scaled as during sampling.

    Args:
        prompts: g prompt token lists. completions: g * group_size completion token lists, group-major
            (completions[i*G:(i+1)*G] belong to prompts[i]).
    Returns:
        logprobs [R, T] float32 (grad flows to the model), mask [R, T] float32, entropy [R, T] (detached, nats)
        or None. R = g * group_size, T = longest completion. All on `device` (default: the model's device); token
        ids are built on the CPU and moved there once.
    """
    if device is None:
        device = next(model.parameters()).device
    ids, pmask = (t.to(device) for t in left_pad(prompts, pad_id))
    pos = (pmask.cumsum(-1) - 1).clamp(min=0)
    out = model(input_ids=ids, attention_mask=pmask, position_ids=pos, use_cache=True, logits_to_keep=1)
    cache = out.past_key_values
    if group_size > 1:
        cache.batch_repeat_interleave(group_size)
    first = out.logits[:, -1:].repeat_interleave(group_size, 0)  # [R, 1, V] predicts completion token 0
    comp, cmask = (t.to(device) for t in right_pad(completions, pad_id))
    T = comp.shape[1]
    if T > 1:
        full_mask = torch.cat([pmask.repeat_interleave(group_size, 0), cmask[:, :-1].long()], dim=-1)
        cpos = pos[:, -1:].repeat_interleave(group_size, 0) + 1 + torch.arange(T - 1, device=device)
        rest = model(input_ids=comp[:, :-1], attention_mask=full_mask, position_ids=cpos,
                     past_key_values=cache, use_cache=True).logits  # [R, T-1, V]
        logits = torch.cat([first, rest], dim=1)
    else:
        logits = first
    logits = logits.float() / temperature
    lse = torch.logsumexp(logits, dim=-1)
    logprobs = logits.gather(-1, comp.unsqueeze(-1)).squeeze(-1) - lse
    entropy = None
    if with_entropy:
        with torch.no_grad():
            p = torch.softmax(logits, dim=-1)
            entropy = lse - (p * logits).sum(-1)
    return logprobs * cmask, cmask, entropy
