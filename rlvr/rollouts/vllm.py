"""Rollouts with vLLM, colocated in the trainer's process, synced with the policy after every optimizer step.

The engine is built from the policy object itself, not from a path: the model's config is written to a temporary
folder, vLLM starts on it with dummy weights (`load_format="dummy"`, nothing read from disk) and the policy's weights
are pushed in right away with the same call that syncs them after every optimizer step:

    llm.collective_rpc("reload_weights", kwargs={"weights_iterator": [(hf_name, tensor), ...]})
    llm.reset_prefix_cache()     # mandatory: cached prompt KV was computed with the old weights

`reload_weights` re-runs vLLM's own loading and post-processing (on CPU that repacks the linear weights into the
kernel format); calling the model's `load_weights` directly, as TRL's colocate mode does, fails on CPU
(shared/research/vllm_cpu.md). Tensors can be passed by reference because vLLM runs in this process
(`VLLM_ENABLE_V1_MULTIPROCESSING=0`).

A peft LoRA policy is synced as merged weights W + scale * B @ A (computed here, the peft model is never mutated),
under the base model's Hugging Face names, so vLLM needs no LoRA support at all and the sampled policy is exactly
the trained one. After the first sync only the adapted modules (and their fused siblings) are re-sent: vLLM keeps
the kernel tensors of layers that get no weights, and skipping the frozen embedding alone halves the sync
(`VLLMEngine.update_weights`).

Sampling log-probs: vLLM is started with `logprobs_mode="processed_logprobs"`, so the logprob it returns for a
sampled token is taken from the temperature-scaled distribution, as in HFEngine and `rlvr.forward.
completion_logprobs` (vLLM's default, "raw_logprobs", ignores the temperature). With top_k/top_p set, vLLM's value is
the log-prob under the *truncated, renormalised* distribution (the one it actually sampled from), while HFEngine
records the full temperature-scaled one; the two differ by log(kept mass), which the trainer's
`sampling/logp_diff_*` shows. With top_k = 0 and top_p = 1 (the recipes' default) they are the same quantity;
tests/test_rollouts_vllm.py checks it to 1e-4 in fp32.

CPU specifics: one OpenMP thread (2 threads on a 2-core VM are erratic for both HF and vLLM), an explicit KV-cache
size (without one vLLM tries to reserve 92% of RAM), eager mode (torch.compile costs 10-20 s of start-up for at
most 1.3x), no sleep mode (vLLM-CPU has none). On GPU the engine sleeps (level 2: weights and KV cache released)
after each `generate` when `sleep_between_steps` is on, and wakes for the next weight sync / generate. Level 2, not
1: level 1 would copy the old weights to host memory only to have them overwritten by the next sync.

Under FSDP2 (rlvr/parallel.py) the engine takes the weights from the shards layer by layer
(`fsdp_weight_stream`: one FSDP unit gathered, merged, loaded and resharded at a time; never the full model on a
rank), and generation needs no gathered policy at all (`reads_policy_modules = False`). Under torchrun on GPUs
each rank runs its own engine (external launcher, data parallel).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import Iterable

import torch

from rlvr.rollouts.base import Completion, Group, SamplingParams, pad_and_stop_ids

log = logging.getLogger("rlvr")

DEFAULT_CPU_KV_CACHE_GIB = 1.0


def vllm_available() -> bool:
    """True when `import vllm` would find a module (does not import it: that takes seconds)."""
    import importlib.util

    return importlib.util.find_spec("vllm") is not None


def _set_env() -> None:
    """Environment vLLM reads at import / engine start. Must run before the first `import vllm`."""
    os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"  # in-process: tensors passed by reference, no extra procs
    os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("VLLM_NO_USAGE_STATS", "1")
    os.environ.setdefault("DO_NOT_TRACK", "1")


def merged_state_dict(model, trainable_only: bool = False, buffers: dict[str, torch.Tensor] | None = None,
                      keep=None) -> dict[str, torch.Tensor]:
    """The policy's weights under the base model's Hugging Face names, LoRA adapters merged in.

    For a peft model every LoRA layer contributes W + sum over active adapters of `get_delta_weight(adapter)`
    (= scale * B @ A, with peft's own fan_in_fan_out / scaling rules); `modules_to_save` copies replace their
    originals. Nothing is mutated. Tensors are detached; unchanged ones share storage with the model.

    trainable_only: for a peft model, keep only the tensors training can change (LoRA-merged weights,
        `modules_to_save` copies, base parameters with requires_grad) *and their siblings* (every tensor of the
        same parent module, e.g. all of q/k/v/o of a layer's `self_attn` when only q_proj is adapted: vLLM fuses
        q/k/v and gate/up into one kernel tensor, and a reload that fed one shard only would leave the others
        unset). Ignored for a plain model (a full fine-tune changes everything).
    buffers: optional cache of output tensors for merged weights, filled on the first call and written in place on
        later ones (saves allocating and page-faulting ~0.4 GB per sync for a 135M model). The returned tensors then
        alias the cache: consume them before the next call.
    keep: optional predicate on a tensor's name within the base model (before LoRA names are folded, e.g.
        "model.layers.3.self_attn.q_proj.base_layer.weight"): only those tensors are read and returned (the
        layer-by-layer sync under FSDP2 reads one gathered layer at a time).
    """
    try:
        from peft import PeftModel
    except ImportError:  # peft is a dependency, but keep this usable without it
        PeftModel = ()
    with torch.no_grad():
        if not isinstance(model, PeftModel):
            return {k: v.detach() for k, v in _state_tensors(model).items() if keep is None or keep(k)}
        from peft.tuners.lora import LoraLayer

        from peft.tuners.lora.layer import Linear as LoraLinear

        base = model.get_base_model()
        deltas: dict[str, torch.Tensor] = {}
        factors: dict[str, tuple[torch.Tensor, torch.Tensor, float]] = {}  # fast path: W + scale * B @ A in one addmm
        for name, module in base.named_modules():
            if not isinstance(module, LoraLayer) or getattr(module, "disable_adapters", False):
                continue
            if getattr(module, "merged", False):  # already merged into the base weight by the user: nothing to add
                continue
            if keep is not None and not keep(f"{name}.base_layer.weight"):
                continue
            active = [a for a in module.active_adapters if a in module.lora_A]
            key = f"{name}.weight"
            if (type(module) is LoraLinear and len(active) == 1 and not module.fan_in_fan_out
                    and not module.use_dora.get(active[0], False)
                    and module.lora_A[active[0]].weight.dtype == module.base_layer.weight.dtype):
                a = active[0]
                factors[key] = (module.lora_B[a].weight, module.lora_A[a].weight, float(module.scaling[a]))
                continue
            for adapter in active:  # peft's own rule (fan_in_fan_out, DoRA, several adapters, mixed dtypes)
                d = module.get_delta_weight(adapter)
                deltas[key] = d if key not in deltas else deltas[key] + d
        trainable = {n for n, p in base.named_parameters() if p.requires_grad and (keep is None or keep(n))}
        changing: set[str] = set(deltas) | set(factors)
        out: dict[str, torch.Tensor] = {}
        for k, v in _state_tensors(base).items():
            if keep is not None and not keep(k):
                continue
            parts = k.split(".")
            if any(p.startswith("lora_") for p in parts) or "original_module" in parts:
                continue
            if "modules_to_save" in parts or k in trainable:
                changing_key = True
            else:
                changing_key = False
            if "modules_to_save" in parts:
                i = parts.index("modules_to_save")
                parts = parts[:i] + parts[i + 2:]  # drop "modules_to_save.<adapter>"
            k = ".".join(p for p in parts if p != "base_layer")
            if changing_key:
                changing.add(k)
            v = v.detach()
            if (k in deltas or k in factors) and (not trainable_only or k in changing):
                buf = None
                if buffers is not None:
                    buf = buffers.get(k)
                    if buf is None or buf.shape != v.shape or buf.dtype != v.dtype:
                        buf = buffers[k] = torch.empty_like(v)
                if k in factors:
                    B, A, scale = factors[k]
                    v = torch.addmm(v, B, A, alpha=scale, out=buf) if buf is not None else torch.addmm(
                        v, B, A, alpha=scale)
                else:
                    d = deltas[k].to(v.dtype)
                    v = torch.add(v, d, out=buf) if buf is not None else v + d
            out[k] = v
        if not trainable_only:
            return out
        # parent module of each changing tensor: "model.layers.3.self_attn.q_proj.weight" -> "model.layers.3.self_attn"
        parents = {k.rsplit(".", 2)[0] for k in changing if k.count(".") >= 2}
        return {k: v for k, v in out.items() if k in changing or (k.count(".") >= 2 and k.rsplit(".", 2)[0] in parents)}


def _state_tensors(module) -> dict[str, torch.Tensor]:
    """`module.state_dict()`'s names and tensors, in its order, read from the modules' own attributes rather than
    through state_dict hooks: under FSDP2 those hooks return the sharded DTensors even inside
    `rlvr.parallel.FSDP.full_weights()`, where the attributes are the gathered tensors vLLM needs."""
    out: dict[str, torch.Tensor] = {}
    for name, mod in module.named_modules(remove_duplicate=False):
        prefix = f"{name}." if name else ""
        for n, p in mod._parameters.items():
            if p is not None:
                out[prefix + n] = p
        for n, b in mod._buffers.items():
            if b is not None and n not in mod._non_persistent_buffers_set:
                out[prefix + n] = b
    return out


def fsdp_weight_stream(model, trainable_only: bool = False):
    """(name, tensor) pairs of `merged_state_dict(model)` for an FSDP2-sharded policy, gathered one FSDP unit at a
    time: the root's own tensors (embeddings, final norm, head) first, then each decoder layer, all-gathered,
    merged, handed over and resharded before the next one. At most the root and one layer are whole at any moment
    (in FSDP's compute dtype), never the full model. Every rank must consume the stream in full and in the same
    order (each unit's gather is a collective). Consume each tensor before advancing: it is freed with its unit."""
    from torch.distributed.fsdp import FSDPModule

    try:
        from peft import PeftModel

        base = model.get_base_model() if isinstance(model, PeftModel) else model
    except ImportError:
        base = model
    layers = [(f"{n}.", m) for n, m in base.named_modules() if n and isinstance(m, FSDPModule) and m is not model]

    def outside(k: str) -> bool:
        return not any(k.startswith(p) for p, _ in layers)

    model.unshard()
    try:
        yield from merged_state_dict(model, trainable_only, keep=outside).items()
        for prefix, unit in layers:
            unit.unshard()
            try:
                yield from merged_state_dict(model, trainable_only, keep=lambda k, p=prefix: k.startswith(p)).items()
            finally:
                unit.reshard()
    finally:
        model.reshard()


def is_fsdp(model) -> bool:
    """True for a model sharded with FSDP2's fully_shard (rlvr/parallel.py)."""
    try:
        from torch.distributed.fsdp import FSDPModule
    except ImportError:
        return False
    return isinstance(model, FSDPModule)


class _Counted:
    """An iterable of (name, tensor) that counts what was consumed (the sync's tensor count)."""

    def __init__(self, items):
        self.items, self.n = items, 0

    def __iter__(self):
        for item in self.items:
            self.n += 1
            yield item


def _torchrun_world() -> int:
    """World size of the trainer's process group (1 when none)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def _hf_config(model):
    try:
        from peft import PeftModel

        if isinstance(model, PeftModel):
            return model.get_base_model().config
    except ImportError:
        pass
    return model.config


class VLLMEngine:
    """vLLM sampler colocated with the trainer (same process), fed from the policy's in-memory weights.

    Args:
        model: the policy (a transformers causal LM or a peft LoRA model around one). Its current weights are
            loaded at construction; call `update_weights(model)` after every optimizer step.
        tokenizer: decodes completions (exactly as HFEngine: `skip_special_tokens=True`) and gives the stop ids.
        max_model_len: longest prompt + completion; None = min(max_position_embeddings, 4096).
        kv_cache_gib / kv_cache_memory_bytes: KV-cache size (bytes wins if both are set). None on CPU =
            1 GiB (vLLM-CPU requires an explicit size); None on GPU = vLLM's profile-based size from
            `gpu_memory_utilization`.
        gpu_memory_utilization: GPU: fraction of GPU memory vLLM may take (weights + activations + KV), leave
            room for training. Ignored on CPU when a KV size is set (the default).
        enforce_eager: None = True on CPU (torch.compile: +10-20 s start-up for <= 1.3x), False (CUDA graphs) on GPU.
        sleep_between_steps: GPU only: release vLLM's weights and KV cache after each `generate` (sleep level 2)
            and restore them at the next sync / generate, so training gets the memory. No-op on CPU.
        cpu_threads: CPU only: torch/OpenMP threads for the process (vLLM runs in it). 1 is the measured best on
            a 2-core VM; None leaves the current setting.
        dtype: vLLM's compute dtype; None = the policy's parameter dtype (fp32 keeps logprobs within 1e-4 of HF).
        seed: engine seed (sampling itself is seeded per request from `generate(seed=...)`).
        logprobs_mode: see the module docstring; "processed_logprobs" = temperature-scaled (what the loss uses).
        max_num_seqs: concurrent sequences (P * G rows are decoded together when they fit).
        llm_kwargs: anything else for `vllm.LLM(...)`.
    """

    reads_policy_modules = False  # samples from its own copy of the weights (synced by update_weights)

    def __init__(self, model, tokenizer, *, max_model_len: int | None = None, kv_cache_gib: float | None = None,
                 kv_cache_memory_bytes: int | None = None, gpu_memory_utilization: float = 0.3,
                 enforce_eager: bool | None = None, sleep_between_steps: bool = True, cpu_threads: int | None = 1,
                 dtype: str | torch.dtype | None = None, seed: int = 0, logprobs_mode: str = "processed_logprobs",
                 max_num_seqs: int = 256, llm_kwargs: dict | None = None):
        _set_env()
        import vllm
        from vllm.platforms import current_platform

        self.tokenizer = tokenizer
        self.is_cpu = current_platform.is_cpu()
        self.pad_id, self.stop_ids = pad_and_stop_ids(model, tokenizer)  # same set as HFEngine

        cfg = _hf_config(model)
        if dtype is None:
            dtype = next(model.parameters()).dtype
        if isinstance(dtype, torch.dtype):
            dtype = str(dtype).removeprefix("torch.")
        if max_model_len is None:
            max_model_len = min(int(getattr(cfg, "max_position_embeddings", 4096) or 4096), 4096)
        if kv_cache_memory_bytes is None and kv_cache_gib is not None:
            kv_cache_memory_bytes = int(kv_cache_gib * (1 << 30))
        if kv_cache_memory_bytes is None and self.is_cpu:
            kv_cache_memory_bytes = int(DEFAULT_CPU_KV_CACHE_GIB * (1 << 30))
        if enforce_eager is None:
            enforce_eager = self.is_cpu
        self.sleep_enabled = bool(sleep_between_steps) and not self.is_cpu
        if self.is_cpu and cpu_threads is not None:
            os.environ["OMP_NUM_THREADS"] = str(cpu_threads)
            torch.set_num_threads(cpu_threads)

        # vLLM starts from a folder: config and tokenizer only; weights come from memory right after start-up.
        self._dir = tempfile.mkdtemp(prefix="rlvr-vllm-")
        cfg.save_pretrained(self._dir)
        tokenizer.save_pretrained(self._dir)
        _quiet_vllm_logs()
        kwargs = dict(model=self._dir, load_format="dummy", dtype=dtype, seed=seed,
                      max_model_len=max_model_len, enforce_eager=enforce_eager, logprobs_mode=logprobs_mode,
                      max_num_seqs=max_num_seqs, gpu_memory_utilization=gpu_memory_utilization,
                      kv_cache_memory_bytes=kv_cache_memory_bytes, enable_sleep_mode=self.sleep_enabled,
                      enable_prefix_caching=True)
        if self.is_cpu:
            # Chunked prefill splits a prompt over two engine steps when a batch's prefill exceeds the token budget;
            # vLLM then rewinds the request's seeded generator with Generator.set_offset, which CPU generators do
            # not have ("CPU Generator does not use offset"): every seeded batch over the budget crashed. Without
            # chunking, prompts that do not fit wait for the next step (whole). Prefix caching shares full KV blocks
            # even between requests of the same step, so the G samples of a prompt (and prompts with a common
            # few-shot prefix) prefill only the tokens after the last full block: block size 32 (the CPU attention
            # minimum; its default is 128) keeps that tail under 32 tokens per sample.
            kwargs.update(enable_chunked_prefill=False, max_num_batched_tokens=max(8192, max_model_len),
                          block_size=32)
        world = _torchrun_world()
        if not self.is_cpu and world > 1:
            # Under torchrun on GPUs: one engine per rank (vLLM's external launcher, data parallel, no tensor
            # parallelism); each rank feeds its own share of the prompts, as vLLM's torchrun_dp_example does.
            # Written against vLLM's docs; untested until a multi-GPU machine runs it (README).
            kwargs.update(distributed_executor_backend="external_launcher", tensor_parallel_size=1,
                          data_parallel_size=world)
        kwargs.update(llm_kwargs or {})
        set_threads = torch.set_num_threads
        try:
            self.llm = vllm.LLM(**kwargs)
        finally:
            # vLLM's CPU worker replaces torch.set_num_threads with a no-op (it assumes it bound the threads itself,
            # which it does not do in-process); give the trainer its function back.
            torch.set_num_threads = set_threads
        self._SamplingParams = vllm.SamplingParams
        self._asleep = False           # GPU sleep state
        self._weights_stale = False    # weights were released by sleep level 2 and not yet reloaded
        self.model = model
        self._synced_model = None      # the object whose weights vLLM holds (partial syncs only for the same one)
        self.sync_seconds = 0.0
        self.sync_tensors = 0
        self._merge_buffers: dict[str, torch.Tensor] = {}
        self.update_weights(model)

    # ------------------------------------------------------------------------------------------ weights

    def update_weights(self, model, full: bool = False) -> None:
        """Push `model`'s current weights (LoRA merged) into vLLM and drop the prefix cache built on the old ones.

        A LoRA policy that was synced before sends only what training can change (`merged_state_dict(...,
        trainable_only=True)`): for SmolLM2-135M with all-linear LoRA that skips the 28M-parameter embedding, whose
        oneDNN repacking alone took 0.35 of the 0.78 s sync (benchmarks/results/rollout_vllm.md). vLLM keeps the
        kernel tensors of layers that received no weights. Everything is sent on the first sync, when `model` is a
        different object from the last one synced, after a GPU sleep released the weights, and with `full=True`
        (use it after editing frozen base weights by hand).
        """
        import time

        t0 = time.perf_counter()
        partial = not full and model is self._synced_model and not self._weights_stale
        if self._asleep:
            self.llm.wake_up(tags=["weights"])
        if is_fsdp(model):  # layer by layer from the shards; no merge cache (it would hold a full copy)
            sd = None
            weights = fsdp_weight_stream(model, trainable_only=partial)
        else:
            sd = merged_state_dict(model, trainable_only=partial, buffers=self._merge_buffers)
            weights = list(sd.items())
        _DropKnownNoise.partial_sync = partial
        counted = _Counted(weights)
        try:
            self._load(counted)
        finally:
            _DropKnownNoise.partial_sync = False
        self.llm.reset_prefix_cache()
        self.model = self._synced_model = model
        self._weights_stale = False
        self.sync_seconds = time.perf_counter() - t0
        self.sync_tensors = counted.n

    def _load(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Hand `weights` to vLLM's reload (in-process: the iterable itself, consumed once, in order)."""
        self.llm.collective_rpc("reload_weights", kwargs={"weights_iterator": weights})

    def sleep(self) -> None:
        """GPU: release weights and KV cache (level 2). Weights are reloaded from the policy before the next use."""
        if self.sleep_enabled and not self._asleep:
            self.llm.sleep(level=2)
            self._asleep = True
            self._weights_stale = True

    def wake_up(self) -> None:
        if not self._asleep:
            return
        if self._weights_stale:  # generate() without a sync since the sleep: reload the current policy
            self.update_weights(self.model)
        self.llm.wake_up()
        self._asleep = False

    # ------------------------------------------------------------------------------------------ sampling

    def generate(self, prompts: list[list[int]], n: int, params: SamplingParams, seed: int,
                 index_offset: int = 0) -> list[Group]:
        """See RolloutEngine.generate: request i is seeded from (seed, index_offset + i, n)."""
        from vllm.inputs import TokensPrompt

        self.wake_up()
        sps = [self._SamplingParams(
            n=n, temperature=params.temperature, top_p=params.top_p, top_k=params.top_k,
            max_tokens=params.max_new_tokens, logprobs=0, seed=_request_seed(seed, index_offset + i, n),
            stop_token_ids=list(self.stop_ids), detokenize=False, skip_special_tokens=True,
        ) for i in range(len(prompts))]
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p)) for p in prompts], sps, use_tqdm=False)
        groups = []
        for i, (p, out) in enumerate(zip(prompts, outs)):
            g = Group(prompt_index=index_offset + i, prompt_ids=list(p))
            for c in sorted(out.outputs, key=lambda c: c.index):
                ids = list(c.token_ids)
                g.completions.append(Completion(
                    token_ids=ids, logprobs=_sampled_logprobs(c.logprobs, ids),
                    text=self.tokenizer.decode(ids, skip_special_tokens=True),
                    finish_reason="length" if c.finish_reason == "length" else "stop",
                ))
            groups.append(g)
        if self.sleep_enabled:
            self.sleep()
        return groups

    def score(self, prompts: list[list[int]], completions: list[list[int]]) -> list[list[float]]:
        """See RolloutEngine.score: vLLM's prompt log-probabilities of prompt + completion (prompt_logprobs=0 gives
        the log-probability of each given token), the completion's part."""
        from vllm.inputs import TokensPrompt

        self.wake_up()
        sp = self._SamplingParams(max_tokens=1, temperature=1.0, prompt_logprobs=0, detokenize=False)
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=list(p) + list(c)) for p, c in zip(prompts, completions)],
                                 sp, use_tqdm=False)
        result = []
        for p, c, out in zip(prompts, completions, outs):
            plp = out.prompt_logprobs or []
            result.append([float(plp[len(p) + j][tok].logprob) for j, tok in enumerate(c)])
        if self.sleep_enabled:
            self.sleep()
        return result

    def close(self) -> None:
        """Free the engine (and its temporary config folder)."""
        llm = getattr(self, "llm", None)
        if llm is not None:
            try:
                llm.llm_engine.engine_core.shutdown()
            except Exception:  # best effort: in-process engines have little to shut down
                pass
            self.llm = None
        shutil.rmtree(self._dir, ignore_errors=True)

    def __del__(self):
        d = getattr(self, "_dir", None)
        if d:
            shutil.rmtree(d, ignore_errors=True)


class _DropKnownNoise(logging.Filter):
    """Drops vLLM warnings that are expected in this setup and say nothing actionable:
    its CPU worker disables torch.set_num_threads (restored by VLLMEngine), layers without weights (rotary
    embeddings) report "Failed to load weights" on every reload, and LD_PRELOAD tuning advice."""

    NOISE = ("doesn't allow to use `torch.set_num_threads`", "RotaryEmbedding: Failed to load weights",
             "not found in LD_PRELOAD")
    # A partial sync (VLLMEngine.update_weights) leaves the untouched weights out on purpose; vLLM then lists every
    # one of them. Dropped only while a partial sync runs: after a full sync the list would mean a real gap.
    PARTIAL_ONLY = ("Following weights were not loaded from checkpoint", "Failed to load weights")
    partial_sync = False

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        if _DropKnownNoise.partial_sync and any(n in msg for n in self.PARTIAL_ONLY):
            return False
        return not any(n in msg for n in self.NOISE)


def _quiet_vllm_logs() -> None:
    # Filters on the emitting loggers themselves: vLLM re-applies its dictConfig (new handlers) during start-up.
    for name in ("vllm.v1.worker.cpu_worker", "vllm.model_executor.model_loader.reload.layerwise",
                 "vllm.model_executor.model_loader.reload.inplace"):
        lg = logging.getLogger(name)
        if not any(isinstance(f, _DropKnownNoise) for f in lg.filters):
            lg.addFilter(_DropKnownNoise())


def _request_seed(seed: int, index: int, n: int) -> int:
    """Per-prompt seed; vLLM gives sample j of a request seed + j, so prompts are spaced n apart."""
    return (seed * 1_000_003 + index * n) % (2**31 - 1)


def _sampled_logprobs(logprobs, ids: list[int]) -> list[float]:
    """Logprob of each sampled token from vLLM's per-position {token_id: Logprob} (logprobs=0: just that token)."""
    if logprobs is None:
        raise RuntimeError("vLLM returned no logprobs (SamplingParams.logprobs must be 0)")
    return [float(pos[t].logprob) for pos, t in zip(logprobs, ids)]
