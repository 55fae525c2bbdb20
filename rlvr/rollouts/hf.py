"""Rollouts with a Hugging Face causal LM: prefill each prompt once, share its KV cache across the G samples.

Plain `model.generate(num_return_sequences=G)` prefills the (long, few-shot) prompt G times; on SmolLM2-135M with a
~120-token prompt that made rollouts 3x slower (shared/research/learnability_probe.md, "Cost"). Here the prompts'
common prefix (the system prompt and few-shot examples every prompt of a recipe starts with) is prefilled once, each
prompt's own tokens once after it (left-padded behind the prefix, masked), the cache is repeated G times
(`DynamicCache.batch_repeat_interleave`), and decoding runs on P*G rows. Rows that have produced a stop token are dropped from the batch
(`batch_select_indices`), so stragglers do not pay for finished rows.

Sampling is seeded per prompt: prompt i of a call draws from its own generator, seeded from (seed, index_offset + i)
(`prompt_seed`), with two uniforms per sample and token, used or not, so a prompt's completions do not depend on
which prompts share the batch, on the chunking, or on when other rows finish. Data-parallel ranks that each generate
a slice of a step's prompts (passing the slice's start as `index_offset`) therefore sample exactly what one process
generating all of them would. Tokens are drawn by inverse CDF (`sample_inverse_cdf`), exact in float64 where it
matters and ~35x cheaper than `torch.multinomial` (which draws V exponentials per row) on a 49k vocabulary.

The engine holds the policy module itself, so `update_weights` has nothing to copy, and it runs wherever the policy
is (`train.device`): prompts are moved to the policy's device, the per-prompt generators stay on the CPU so a
seed draws the same uniforms on every device.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from rlvr.rollouts.base import Completion, Group, SamplingParams, pad_and_stop_ids, prompt_seed


MIN_SHARED_PREFIX = 16  # tokens; below this a separate prefix forward costs more than it saves


def shared_prefix_length(seqs: list[list[int]]) -> int:
    """Length of the longest common token prefix of `seqs`, less one token if it would be a whole sequence (every
    prompt keeps at least one token of its own to prefill, whose logits start decoding)."""
    if not seqs:
        return 0
    shortest = min(len(s) for s in seqs)
    n = 0
    first = seqs[0]
    while n < shortest and all(s[n] == first[n] for s in seqs):
        n += 1
    return min(n, shortest - 1) if shortest else 0


def left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token lists. Returns (ids [B, L] long, attention_mask [B, L] long)."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, width - len(s):] = torch.tensor(s, dtype=torch.long)
            mask[i, width - len(s):] = 1
    return ids, mask


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """Mask logits [B, V] outside the top-k / nucleus top-p set with -inf (Holtzman et al. 2020, arXiv 1904.09751)."""
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cum - sorted_logits.softmax(-1) >= top_p  # keep the token that crosses top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_inverse_cdf(probs: torch.Tensor, u: torch.Tensor, block: int = 256) -> torch.Tensor:
    """One token per row of `probs` [R, V] (non-negative, need not sum to 1) from uniforms `u` [R, 2] in (0, 1].

    Two-stage inverse CDF: u[:, 0] picks a block of `block` tokens by the cumulative block masses (float64), u[:, 1]
    a token inside it by its float64 cumulative sum; the result is distributed exactly as `probs` up to float32
    rounding of the block sums (~1e-7 relative), and a zero-probability token is never returned (left-sided
    search for a target in (0, total]). Returns [R, 1] long.
    """
    R, V = probs.shape
    p = F.pad(probs, (0, (-V) % block)).view(R, -1, block)
    bcdf = p.sum(-1).double().cumsum(-1)  # [R, V/block]
    b = torch.searchsorted(bcdf, u[:, :1].double() * bcdf[:, -1:]).clamp(max=bcdf.shape[1] - 1)
    inner = p[torch.arange(R), b[:, 0]].double().cumsum(-1)  # [R, block]
    t = torch.searchsorted(inner, u[:, 1:].double() * inner[:, -1:]).clamp(max=block - 1)
    return b * block + t


class HFEngine:
    """Batched sampler over a transformers causal LM with a shared prompt cache.

    Args:
        model: a causal LM (peft-wrapped is fine) whose forward accepts past_key_values/position_ids.
        tokenizer: used for pad/stop ids and to decode completions.
        max_batch_prompts: prompts prefilled together; rows decoded together = max_batch_prompts * n.
    """

    reads_policy_modules = True  # runs the policy module itself: under FSDP2, inside full_weights()

    def __init__(self, model, tokenizer, max_batch_prompts: int = 16, share_prefix: bool = True):
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch_prompts = max_batch_prompts
        self.share_prefix = share_prefix  # prefill a chunk's common prompt prefix once (see _generate_chunk)
        self.pad_id, self.stop_ids = pad_and_stop_ids(model, tokenizer)

    def update_weights(self, model) -> None:
        self.model = model


    @torch.no_grad()
    def score(self, prompts: list[list[int]], completions: list[list[int]]) -> list[list[float]]:
        """See RolloutEngine.score (the engine's own module, one forward)."""
        from rlvr.forward import completion_logprobs

        lp, mask, _ = completion_logprobs(self.model, prompts, completions, 1, self.pad_id)
        return [row[: int(m.sum())].tolist() for row, m in zip(lp.float().cpu(), mask.cpu())]

    @torch.no_grad()
    def generate(self, prompts: list[list[int]], n: int, params: SamplingParams, seed: int,
                 index_offset: int = 0) -> list[Group]:
        groups: list[Group] = []
        for start in range(0, len(prompts), self.max_batch_prompts):
            chunk = prompts[start:start + self.max_batch_prompts]
            gens = [torch.Generator().manual_seed(prompt_seed(seed, index_offset + start + i))
                    for i in range(len(chunk))]
            groups.extend(self._generate_chunk(chunk, index_offset + start, n, params, gens))
        return groups

    def _generate_chunk(self, chunk, offset, n, params: SamplingParams, gens) -> list[Group]:
        model = self.model
        device = next(model.parameters()).device  # token ids are built on the CPU and moved once per call
        pre = shared_prefix_length(chunk) if self.share_prefix and len(chunk) > 1 else 0
        if pre >= MIN_SHARED_PREFIX:
            # the chunk's common prefix (a system prompt, few-shot examples) is prefilled once and its cache
            # repeated; each prompt's own tokens follow it, left-padded after the prefix (masked, positions
            # continuing from it), so every prompt sees exactly its own token sequence
            head = torch.tensor([chunk[0][:pre]], dtype=torch.long, device=device)
            cache = model(input_ids=head, attention_mask=torch.ones_like(head),
                          position_ids=torch.arange(pre, device=device)[None], use_cache=True,
                          logits_to_keep=1).past_key_values
            cache.batch_repeat_interleave(len(chunk))
            ids, tail_mask = (t.to(device) for t in left_pad([p[pre:] for p in chunk], self.pad_id))
            mask = torch.cat([torch.ones(len(chunk), pre, dtype=tail_mask.dtype, device=device), tail_mask], -1)
            pos = pre + (tail_mask.cumsum(-1) - 1).clamp(min=0)
            out = model(input_ids=ids, attention_mask=mask, position_ids=pos, past_key_values=cache, use_cache=True,
                        logits_to_keep=1)
        else:
            ids, mask = (t.to(device) for t in left_pad(chunk, self.pad_id))
            pos = (mask.cumsum(-1) - 1).clamp(min=0)
            out = model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True, logits_to_keep=1)
        cache = out.past_key_values
        if n > 1:
            cache.batch_repeat_interleave(n)
        logits = out.logits[:, -1].float().repeat_interleave(n, 0)
        mask = mask.repeat_interleave(n, 0)
        next_pos = pos[:, -1:].repeat_interleave(n, 0) + 1

        rows = len(chunk) * n
        tokens: list[list[int]] = [[] for _ in range(rows)]
        logps: list[list[float]] = [[] for _ in range(rows)]
        finished = [False] * rows
        active = torch.arange(rows, device=device)  # original row index of each row still in the batch
        stop = torch.tensor(self.stop_ids, dtype=torch.long, device=device)
        for t in range(params.max_new_tokens):
            if params.temperature > 0:
                scaled = logits / params.temperature
                logp_all = torch.log_softmax(scaled, dim=-1)
                probs = filter_logits(scaled, params.top_k, params.top_p).softmax(-1)
                # every sample of every prompt draws its two uniforms, finished or not: the streams stay aligned
                # (CPU generators: the same stream on every device)
                u = 1.0 - torch.cat([torch.rand(n, 2, generator=g) for g in gens])  # [rows, 2] in (0, 1]
                tok = sample_inverse_cdf(probs, u.to(device)[active])
            else:
                logp_all = torch.log_softmax(logits, dim=-1)
                tok = logits.argmax(-1, keepdim=True)
            lp = logp_all.gather(-1, tok).squeeze(-1)
            is_stop = torch.isin(tok.squeeze(-1), stop)
            # one device-to-host copy per decoding step
            for r, t_j, lp_j, stop_j in zip(active.tolist(), tok.squeeze(-1).tolist(), lp.tolist(), is_stop.tolist()):
                tokens[r].append(t_j)
                logps[r].append(lp_j)
                if stop_j:
                    finished[r] = True
            if t == params.max_new_tokens - 1:
                break
            keep = (~is_stop).nonzero().squeeze(-1)
            if keep.numel() == 0:
                break
            if keep.numel() < active.numel():
                cache.batch_select_indices(keep)
                active, tok, mask, next_pos = active[keep], tok[keep], mask[keep], next_pos[keep]
            mask = torch.cat([mask, torch.ones_like(tok)], dim=-1)
            out = model(input_ids=tok, attention_mask=mask, position_ids=next_pos, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            logits = out.logits[:, -1].float()
            next_pos = next_pos + 1

        groups = []
        for i, p in enumerate(chunk):
            g = Group(prompt_index=offset + i, prompt_ids=list(p))
            for r in range(i * n, (i + 1) * n):
                g.completions.append(Completion(
                    token_ids=tokens[r], logprobs=logps[r],
                    text=self.tokenizer.decode(tokens[r], skip_special_tokens=True),
                    finish_reason="stop" if finished[r] else "length",
                ))
            groups.append(g)
        return groups


class HFCopyEngine(HFEngine):
    """The HF engine on its own copy of the policy (`copy.deepcopy` at start: the model's memory twice), for
    asynchronous GRPO (`rollout.max_staleness` 1): generation in a background thread must not read weights that the
    optimizer is changing. `update_weights(model)` copies the parameters training can change (requires_grad: the
    LoRA adapters, or every weight of a full fine-tune) into the copy, in place; the frozen base is never copied
    again. The copy is built from the unwrapped module (not a DDP wrapper; FSDP2 shards are refused upstream)."""

    reads_policy_modules = False

    def __init__(self, model, tokenizer, max_batch_prompts: int = 16):
        import copy

        super().__init__(copy.deepcopy(model).requires_grad_(False), tokenizer, max_batch_prompts)
        self._names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.update_weights(model)

    @torch.no_grad()
    def update_weights(self, model) -> None:
        src = dict(model.named_parameters())
        dst = dict(self.model.named_parameters())
        for n in self._names:
            dst[n].copy_(src[n])
