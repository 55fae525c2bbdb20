"""Building a run: device and precision, tokenizer, policy (LoRA or full), reference model, optimizer, rollout engine.

Everything here happens once, before the first step; `build(cfg, dist)` returns a `Built` that the trainer's
stages share. Nothing in it knows the RL algorithm.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rlvr.config import Config
from rlvr.errors import ConfigError
from rlvr.hardware import Precision, resolve_device, resolve_dtype
from rlvr.models import load_policy, load_tokenizer, resolve_model
from rlvr.parallel import make_parallel
from rlvr.rollouts import make_engine, resolve_engine_name


@dataclass
class Built:
    """What `build` made. `train_precision` / `rollout_precision` carry the reason of an `auto` choice."""

    device: torch.device
    train_precision: Precision
    rollout_precision: Precision
    model_path: str
    tokenizer: Any
    model: Any  # peft-wrapped when LoRA is on
    ref_model: Any  # None unless beta > 0 with full fine-tuning
    optimizer: torch.optim.Optimizer
    engine_name: str
    engine: Any
    parallel: Any  # rlvr.parallel strategy (single, ddp, fsdp)


def resolve_placement(cfg: Config) -> tuple[torch.device, Precision, Precision]:
    """(device, train precision, rollout precision) of a recipe on this machine. Raises ConfigError naming the field."""
    try:
        device = resolve_device(cfg.train.device)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    train_p = resolve_dtype(cfg.train.dtype, device)
    rollout_p = resolve_dtype(cfg.rollout.dtype, device)
    return device, train_p, rollout_p


def build(cfg: Config, dist) -> Built:
    device, train_p, rollout_p = resolve_placement(cfg)
    model_path = resolve_model(cfg.model)
    tokenizer = load_tokenizer(model_path)
    parallel = make_parallel(cfg.train.parallelism, dist, device)
    # FSDP keeps fp32 master weights (sharded, with the AdamW state) and computes in train.dtype through its
    # MixedPrecisionPolicy; the other layouts hold the weights in train.dtype itself
    mixed = train_p.dtype if parallel.sharded and train_p.dtype != "float32" else None
    weights_dtype = "float32" if mixed else train_p.dtype
    if parallel.sharded and cfg.train.lora.enabled and cfg.train.lora.base_dtype != "same":
        raise ConfigError(f"train.lora.base_dtype = '{cfg.train.lora.base_dtype}' with train.parallelism=fsdp: "
                          f"FSDP2 shards the frozen base itself (1/world_size of it per rank); set "
                          f"train.lora.base_dtype=same (train.dtype=bfloat16 computes in bf16)")
    torch.manual_seed(cfg.seed)
    model = _policy(cfg, model_path, weights_dtype, device)
    dist.broadcast_params([p for p in model.parameters() if p.requires_grad])  # replicas start equal
    ref_model = None
    if cfg.algorithm.beta > 0 and not cfg.train.lora.enabled:
        ref_model = load_policy(model_path, weights_dtype, device=device).requires_grad_(False)
    model, ref_model = parallel.wrap(model, ref_model, mixed_precision=mixed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.train.learning_rate, weight_decay=cfg.train.weight_decay,
                                  betas=tuple(cfg.train.adam_betas))
    engine_name, engine = _engine(cfg, model, tokenizer, rollout_p, parallel)  # vLLM: first sync (FSDP: by layer)
    return Built(device, train_p, rollout_p, model_path, tokenizer, model, ref_model, optimizer, engine_name, engine,
                 parallel)


def _policy(cfg: Config, model_path: str, dtype: str, device: torch.device):
    lc = cfg.train.lora
    if lc.base_dtype != "same" and not lc.enabled:
        raise ConfigError(f"train.lora.base_dtype = '{lc.base_dtype}' freezes a low-precision base for LoRA; "
                          f"set train.lora.enabled=true or base_dtype=same")
    base_dtype = "bfloat16" if lc.enabled and lc.base_dtype == "bfloat16" else dtype
    quantize = lc.base_dtype if lc.enabled and lc.base_dtype in ("nf4", "int8") else None
    model = load_policy(model_path, base_dtype, quantize=quantize, device=device)
    if lc.enabled:
        from peft import LoraConfig, get_peft_model

        if quantize is not None:
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
        # autocast_adapter_dtype (peft's default) keeps the adapters in fp32 over a bf16 / quantized base
        model = get_peft_model(model, LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout,
                                                 target_modules=lc.target_modules, task_type="CAUSAL_LM"))
        if dtype == "float32":
            for p in model.parameters():
                if p.requires_grad:
                    p.data = p.data.float()
        model.to(device)
    model.eval()
    return model


def _engine(cfg: Config, model, tokenizer, rollout_p: Precision, parallel=None):
    """The rollout engine. With rollout.max_staleness > 0 generation runs while the policy trains, so the engine
    must sample from its own weights: vLLM always does (and stays awake on GPU: no sleep while training runs beside
    it); the HF engine gets a copy of the policy (rlvr.rollouts.hf.HFCopyEngine), which FSDP2 shards cannot give."""
    r = cfg.rollout
    name = resolve_engine_name(r.engine)
    kw = {}
    if name == "vllm":
        kw = dict(dtype=rollout_p.dtype, kv_cache_gib=r.kv_cache_gib, max_model_len=r.max_model_len,
                  enforce_eager=r.enforce_eager, gpu_memory_utilization=r.gpu_memory_utilization,
                  sleep_between_steps=r.sleep_between_steps and not r.max_staleness, cpu_threads=cfg.threads,
                  seed=cfg.seed)
    if name == "hf" and r.max_staleness:
        if parallel is not None and parallel.sharded:
            raise ConfigError("rollout.max_staleness > 0 with rollout.engine=hf and train.parallelism=fsdp: the HF "
                              "engine would need a full copy of the sharded policy; use rollout.engine=vllm or "
                              "rollout.max_staleness=0")
        from rlvr.rollouts.hf import HFCopyEngine

        return name, HFCopyEngine(model, tokenizer)
    try:
        return name, make_engine(name, model, tokenizer, **kw)
    except ImportError as e:
        raise ConfigError(f"rollout.engine = '{r.engine}': vllm cannot be imported ({e}); run "
                          f"`bash scripts/install.sh` or set rollout.engine=hf") from None
