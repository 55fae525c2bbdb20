"""Building a run: every part of it, once, before the first step. `build(cfg)` returns a `Run`, in this order:

    checks that need nothing loaded (batch arithmetic, registries, device, the run folder: refused before torchrun's
    rendezvous) -> process group -> data splits -> reward and evaluation verifiers -> pre-flight (exit 2 before any
    model loads) -> policy, reference model, layout, AdamW, rollout engine (`build_policy`) -> the run folder ->
    tokenised prompts, prompt sampler -> collector, updater -> monitor (rank 0).

The trainer (rlvr/trainer.py) only runs the loop over these parts. Nothing here knows the RL algorithm beyond the
registry names it looks up.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rlvr import algorithms, distributed
from rlvr.config import Config, check_run_dir, clear_run_dir
from rlvr.errors import ConfigError
from rlvr.hardware import Precision, resolve_device, resolve_dtype
from rlvr.models import load_policy, load_tokenizer, resolve_model
from rlvr.parallel import make_parallel
from rlvr.rollouts import make_engine, resolve_engine_name

log = logging.getLogger("rlvr")


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


@dataclass
class Run:
    """Every part a run needs (see the module docstring). `created_run_dir`: this run made its folder (a run stopped
    in pre-flight removes it). `executor`: the background rollout thread of asynchronous GRPO
    (rollout.max_staleness 1), else None. `monitor`: rank 0 with monitor.enabled, else None."""

    cfg: Config
    dist: Any
    run_dir: Path
    created_run_dir: bool
    splits: Any
    reward: Any
    eval_verifier: Any
    preflight: Any
    device: torch.device
    train_precision: Precision
    rollout_precision: Precision
    model_path: str
    tokenizer: Any
    model: Any
    ref_model: Any
    optimizer: torch.optim.Optimizer
    engine_name: str
    engine: Any
    parallel: Any
    train_prompt_ids: list
    eval_prompt_ids: list
    sampler: Any
    collector: Any
    updater: Any
    executor: Any
    monitor: Any


def build(cfg: Config) -> Run:
    """Build a run from a validated Config. Raises ConfigError / DataError / PreflightError (exit 2) naming the
    field and the fix, before anything is written or loaded where it can."""
    from rlvr.collect import BatchCollector
    from rlvr.data import PromptSampler, load_splits, render_prompt
    from rlvr.plugins import build_reward, load_verifier
    from rlvr.preflight import run_preflight
    from rlvr.update import PolicyUpdater

    check_batch_config(cfg)
    resolve_placement(cfg)  # a bad train.device fails here, before anything is loaded
    adv_fn = _lookup(algorithms.get_advantage, cfg.algorithm.advantage, "algorithm.advantage")
    loss_fn = _lookup(algorithms.get_policy_loss, cfg.algorithm.loss, "algorithm.loss")
    group_filter = _lookup(algorithms.get_group_filter, cfg.algorithm.group_filter, "algorithm.group_filter")
    run_dir = check_run_dir(cfg)  # refused before the rendezvous, so no rank has written anything when any checks
    dist = distributed.init_from_env()  # rank 0 of 1 unless launched by torchrun
    torch.set_num_threads(cfg.threads)
    splits = load_splits(cfg.data, cfg.eval.data)
    reward = build_reward(cfg.verifiers)
    eval_verifier = load_verifier(cfg.eval.verifier, field="eval.verifier")
    pf = run_preflight(cfg, splits.train, reward)  # exit 2 before any model is loaded
    log.info("rlvr: data %s: %d train / %d held-out problems | reward %s | pre-flight: %s", cfg.data.task or
             cfg.data.path, len(splits.train), len(splits.eval), " + ".join(s.name for s in reward.specs),
             "canaries off" if pf.canary_report is None else
             f"{pf.canary_total} canaries per verifier, {sum(map(len, pf.canary_report.values()))} failed "
             f"(none systematic)" + (f"; ignored: {', '.join(pf.ignored)}" if pf.ignored else ""))
    log.info("rlvr: loading %s and starting the %s rollout engine ...", cfg.model,
             resolve_engine_name(cfg.rollout.engine))
    b = build_policy(cfg, dist)
    created = False
    if dist.is_main:  # the run folder exists only once the run can start
        if cfg.overwrite and run_dir.is_dir():
            clear_run_dir(run_dir)
            log.info("rlvr: overwrite=true: replaced the run in %s", run_dir)
        created = not run_dir.exists() or not any(run_dir.iterdir()) or cfg.overwrite
        run_dir.mkdir(parents=True, exist_ok=True)

    def tokenize(question: str) -> list[int]:
        return b.tokenizer(render_prompt(b.tokenizer, question, cfg.data.prompt), add_special_tokens=False)["input_ids"]

    train_ids = [tokenize(q) for q in splits.train["prompt"]]
    eval_ids = [tokenize(q) for q in splits.eval["prompt"]]
    sampler = PromptSampler(len(train_ids), cfg.train.prompts_per_step, cfg.seed)
    # asynchronous GRPO: the next batch is collected in a background thread, whose gathers under torchrun go over a
    # second process group (the update's gradient all-reduce keeps the default one)
    executor, collect_dist = None, dist
    if cfg.rollout.max_staleness:
        from concurrent.futures import ThreadPoolExecutor

        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="rlvr-rollout")
        collect_dist = dist.side_channel()
    collector = BatchCollector(b.engine, reward, sampler, splits.train, train_ids, group_filter, adv_fn, cfg,
                               collect_dist, engine_context=b.parallel.for_engine)
    updater = PolicyUpdater(b.model, b.optimizer, loss_fn, cfg, b.parallel, b.device, b.tokenizer.pad_token_id,
                            ref_model=b.ref_model)
    monitor = None
    if cfg.monitor.enabled and dist.is_main:  # on the gathered global batch, rank 0 only
        from rlvr.monitor import Monitor, signals_from_verifiers

        monitor = Monitor(cfg.monitor, signals_from_verifiers(reward.verifiers), run_dir=run_dir,
                          reference_verifier=eval_verifier, policy_identity=str(b.model_path), echo=echo,
                          reference_timeout_s=cfg.eval.timeout_s)
    return Run(cfg, dist, run_dir, created, splits, reward, eval_verifier, pf, b.device, b.train_precision,
               b.rollout_precision, b.model_path, b.tokenizer, b.model, b.ref_model, b.optimizer, b.engine_name,
               b.engine, b.parallel, train_ids, eval_ids, sampler, collector, updater, executor, monitor)


def echo(msg: str) -> None:
    """A line on the console that does not break a progress bar (tqdm.write)."""
    from tqdm import tqdm

    tqdm.write(msg)


def resolve_placement(cfg: Config) -> tuple[torch.device, Precision, Precision]:
    """(device, train precision, rollout precision) of a recipe on this machine. Raises ConfigError naming the field."""
    try:
        device = resolve_device(cfg.train.device)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    train_p = resolve_dtype(cfg.train.dtype, device)
    rollout_p = resolve_dtype(cfg.rollout.dtype, device)
    return device, train_p, rollout_p


def build_policy(cfg: Config, dist) -> Built:
    """Device, precision, tokenizer, policy (LoRA or full), reference model, layout, AdamW, rollout engine."""
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


def check_batch_config(cfg: Config, world_size: int | None = None) -> None:
    """Cross-section checks of the batch, before anything is loaded. Raises ConfigError naming the fields and the fix.

    `world_size` defaults to the WORLD_SIZE environment variable (torchrun): when > 1, every rank must get the same
    number of prompts, so train.prompts_per_step must be a multiple of it. Micro-batches need no divisibility: the
    loss is normalised by the whole step's tokens, so a smaller last micro-batch is exact (tests/test_algorithms.py).
    """
    t, a = cfg.train, cfg.algorithm
    if world_size is None:
        world_size = distributed.world_size()
    if world_size > 1 and t.prompts_per_step % world_size:
        lo = max(world_size, t.prompts_per_step // world_size * world_size)
        raise ConfigError(f"train.prompts_per_step = {t.prompts_per_step} is not divisible by WORLD_SIZE = "
                          f"{world_size}: each rank needs the same number of prompts; set train.prompts_per_step to "
                          f"a multiple of {world_size} (e.g. {lo} or {lo + world_size})")
    if cfg.rollout.max_staleness and cfg.rollout.importance_sampling != "tis":
        raise ConfigError(f"rollout.max_staleness = {cfg.rollout.max_staleness} trains on batches sampled by an "
                          f"older policy: the loss needs the behaviour policy's correction; set "
                          f"rollout.importance_sampling=tis (or rollout.max_staleness=0)")
    if a.overlong_buffer >= cfg.sampling.max_new_tokens:
        raise ConfigError(f"algorithm.overlong_buffer = {a.overlong_buffer} must be smaller than "
                          f"sampling.max_new_tokens = {cfg.sampling.max_new_tokens} (the soft overlong penalty ramps "
                          f"over the last overlong_buffer tokens); lower it or set 0 to disable the penalty")


def batch_plan(cfg: Config, max_prompt_tokens: int, world_size: int | None = None) -> dict[str, int]:
    """The numbers of one optimizer step (validated by check_batch_config first):

    prompts P, group_size G, completions P*G, micro_batches ceil(P / micro_batch_groups) (at most; zero-variance
    groups may be skipped), max_tokens P*G*(max_prompt_tokens + max_new_tokens) (the padded bound of the trained
    batch), max_generation_rounds (1, or 1 + algorithm.max_extra_rounds with a group filter other than `none`),
    max_completions_generated (rounds * P * G), optimizer_steps (updates_per_batch * mini-batches) and world_size.
    """
    check_batch_config(cfg, world_size)
    t = cfg.train
    P, G = t.prompts_per_step, t.group_size
    rounds = 1 + cfg.algorithm.max_extra_rounds if cfg.algorithm.group_filter != "none" else 1
    return {"prompts": P, "group_size": G, "completions": P * G,
            "micro_batches": math.ceil(P / t.micro_batch_groups),
            "micro_batch_groups": min(t.micro_batch_groups, P),
            "max_prompt_tokens": max_prompt_tokens,
            "max_tokens": P * G * (max_prompt_tokens + cfg.sampling.max_new_tokens),
            "max_generation_rounds": rounds, "max_completions_generated": rounds * P * G,
            "optimizer_steps": t.updates_per_batch * min(t.mini_batches, P),
            "world_size": distributed.world_size() if world_size is None else world_size}


def _lookup(getter, name, field):
    try:
        return getter(name)
    except KeyError as e:
        raise ConfigError(f"{field} = '{name}': {e.args[0]}") from None
