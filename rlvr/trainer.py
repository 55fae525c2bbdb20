"""The GRPO training loop, readable top to bottom.

One step: take P prompts -> sample G completions each (rollout engine) -> verify -> combine verifier scores into
rewards [P, G] -> group filter (registry; e.g. dynamic sampling draws more rounds of prompts) -> overlong reward
shaping and loss mask -> advantages (registry) -> policy loss (registry) on micro-batches of groups -> AdamW step ->
sync the engine -> log, checkpoint.

Simplifications, stated plainly:
  * One optimizer step per rollout batch (fully on-policy), so `old_logprobs` are the detached current log-probs
    and the PPO ratio is 1 at the update; the clip only matters for variants that reuse a batch. The engine's own
    sampling log-probs are compared with the trainer's every step (`sampling/logp_diff_*`) to catch a stale engine.
  * Groups whose rewards are all equal have zero advantage and are skipped in the backward pass; the loss is
    normalised by the tokens of the whole step, so skipping changes nothing but the cost.
  * No dropout anywhere (the model stays in eval mode): sampling and training evaluate the same function.
  * Every step's randomness is derived from (seed, step) (and the generation round, for extra rounds of dynamic
    sampling), so a resumed run continues exactly as an uninterrupted one.

Under torchrun (WORLD_SIZE = N > 1, rlvr/distributed.py) the step is the same computation, split: each rank
generates and verifies its contiguous block of the round's prompts (sampling is seeded per global prompt index, so
the completions equal a single process's), then every rank gathers the whole round (completions, rewards, verdicts:
small objects), so the group filter, advantages (batch-level statistics included), the loss normalisers and the
metrics see the global batch exactly as one process would. The step's micro-batches are dealt to the ranks in
contiguous blocks, gradients are summed over ranks (each rank's loss is already divided by the global token count),
and the identical AdamW step keeps the replicas equal. Rank 0 alone writes files, logs, evaluates and runs the
monitor; its stop decision is broadcast so all ranks stop together.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import time

import torch
import yaml

from rlvr import algorithms, distributed
from rlvr.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from rlvr.config import Config, resolve_run_dir
from rlvr.data import PromptSampler, load_splits, render_prompt
from rlvr.errors import ConfigError
from rlvr.evaluation import evaluate
from rlvr.forward import completion_logprobs
from rlvr.metrics import MetricSink, NullSink, open_step_log, read_metrics, rollout_stats
from rlvr.models import load_policy, load_tokenizer, resolve_model
from rlvr.rollouts import SamplingParams, make_engine, resolve_engine_name

log = logging.getLogger("rlvr")


class Reward:
    """Weighted sum of verifier scores. Each verifier's mean score is logged as `rewards/<name>/mean`."""

    def __init__(self, refs):
        from verifiers import get_verifier

        try:
            self.verifiers = [(r.name, get_verifier(r.name, **r.kwargs), r.weight) for r in refs]
        except KeyError as e:
            raise ConfigError(f"verifiers: {e.args[0] if e.args else e}") from None
        total = sum(w for _, _, w in self.verifiers)
        self.verifiers = [(n, v, w / total) for n, v, w in self.verifiers]

    def __call__(self, texts: list[str], references: list[str], prompts: list[str], group_size: int = 1):
        """Items are group-major (`group_size` completions per prompt; verifiers that need the whole group, such
        as majority_vote, get it through `verify_groups`). Returns (rewards [N] float tensor, primary verdicts,
        per-verifier metrics)."""
        rewards = torch.zeros(len(texts))
        metrics: dict[str, float] = {}
        primary = None
        items = [{"completion": t, "reference": r, "prompt": p} for t, r, p in zip(texts, references, prompts)]
        for name, v, w in self.verifiers:
            verdicts = v.verify_groups(items, group_size)
            scores = torch.tensor([vd.score for vd in verdicts], dtype=torch.float32)
            rewards += w * scores
            metrics[f"rewards/{name}/mean"] = float(scores.mean())
            metrics[f"rewards/{name}/error_rate"] = sum(vd.error is not None for vd in verdicts) / max(len(verdicts), 1)
            primary = primary or verdicts
        return rewards, primary, metrics


def _peak_rss_gib() -> float | None:
    """Peak resident memory of this process so far, GiB (Linux ru_maxrss is in KiB); None where unavailable."""
    try:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    except (ImportError, OSError):
        return None


def _step_seed(seed: int, step: int, round: int = 0) -> int:
    """Generation seed of (seed, step, round); round 0 (every step's first generation) keeps the original formula."""
    return (seed * 1_000_003 + step * 7919 + 17 + round * 104_729) % (2**63 - 1)


def check_batch_config(cfg: Config, world_size: int | None = None) -> None:
    """Cross-section checks of the batch, before anything is loaded. Raises ConfigError naming the fields and the fix.

    `world_size` defaults to the WORLD_SIZE environment variable (torchrun): when > 1, every rank must get the same
    number of prompts, so train.prompts_per_step must be a multiple of it. Micro-batches need no divisibility: the
    loss is normalised by the whole step's tokens, so a smaller last micro-batch is exact (tests/test_algorithms.py).
    """
    t, a = cfg.train, cfg.algorithm
    if world_size is None:
        world_size = distributed.world_size()
    if t.parallelism == "fsdp":
        raise ConfigError("train.parallelism = 'fsdp' is not implemented yet: FSDP2 shards parameters across GPUs, "
                          "and this trainer trains the policy on CPU; use train.parallelism=ddp (replicated "
                          "weights, gradients summed over ranks)")
    if world_size > 1 and t.prompts_per_step % world_size:
        lo = max(world_size, t.prompts_per_step // world_size * world_size)
        raise ConfigError(f"train.prompts_per_step = {t.prompts_per_step} is not divisible by WORLD_SIZE = "
                          f"{world_size}: each rank needs the same number of prompts; set train.prompts_per_step to "
                          f"a multiple of {world_size} (e.g. {lo} or {lo + world_size})")
    if a.overlong_buffer >= cfg.sampling.max_new_tokens:
        raise ConfigError(f"algorithm.overlong_buffer = {a.overlong_buffer} must be smaller than "
                          f"sampling.max_new_tokens = {cfg.sampling.max_new_tokens} (the soft overlong penalty ramps "
                          f"over the last overlong_buffer tokens); lower it or set 0 to disable the penalty")


def batch_plan(cfg: Config, max_prompt_tokens: int, world_size: int | None = None) -> dict[str, int]:
    """The numbers of one optimizer step (validated by check_batch_config first):

    prompts P, group_size G, completions P*G, micro_batches ceil(P / micro_batch_groups) (at most; zero-variance
    groups may be skipped), max_tokens P*G*(max_prompt_tokens + max_new_tokens) (the padded bound of the trained
    batch), max_generation_rounds (1, or 1 + algorithm.max_extra_rounds with a group filter other than `none`),
    max_completions_generated (rounds * P * G) and world_size.
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
            "world_size": distributed.world_size() if world_size is None else world_size}


class Trainer:
    """Builds everything a run needs from a Config, then `run()` trains and evaluates.

    Attributes after construction: run_dir, tokenizer, model (peft-wrapped when LoRA is on), engine, optimizer,
    train/eval splits (datasets.Dataset), reward.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        check_batch_config(cfg)
        self.adv_fn = _lookup(algorithms.get_advantage, cfg.algorithm.advantage, "algorithm.advantage")
        self.loss_fn = _lookup(algorithms.get_policy_loss, cfg.algorithm.loss, "algorithm.loss")
        self.group_filter = _lookup(algorithms.get_group_filter, cfg.algorithm.group_filter, "algorithm.group_filter")
        self.dist = distributed.init_from_env()  # rank 0 of 1 unless launched by torchrun
        torch.set_num_threads(cfg.threads)
        self.run_dir = resolve_run_dir(cfg)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.splits = load_splits(cfg.data)
        self.reward = Reward(cfg.verifiers)
        from verifiers import get_verifier

        self.eval_verifier = get_verifier(cfg.eval.verifier)

        model_path = resolve_model(cfg.model)
        self.tokenizer = load_tokenizer(model_path)
        torch.manual_seed(cfg.seed)
        lc = cfg.train.lora
        if lc.base_dtype != "same" and not lc.enabled:
            raise ConfigError(f"train.lora.base_dtype = '{lc.base_dtype}' freezes a low-precision base for LoRA; "
                              f"set train.lora.enabled=true or base_dtype=same")
        base_dtype = "bfloat16" if lc.enabled and lc.base_dtype == "bfloat16" else cfg.train.dtype
        quantize = lc.base_dtype if lc.enabled and lc.base_dtype in ("nf4", "int8") else None
        self.model = load_policy(model_path, base_dtype, quantize=quantize)
        if lc.enabled:
            from peft import LoraConfig, get_peft_model

            if quantize is not None:
                from peft import prepare_model_for_kbit_training

                self.model = prepare_model_for_kbit_training(self.model, use_gradient_checkpointing=False)
            # autocast_adapter_dtype (peft's default) keeps the adapters in fp32 over a bf16 / quantized base
            self.model = get_peft_model(self.model, LoraConfig(r=lc.r, lora_alpha=lc.alpha, lora_dropout=lc.dropout,
                                                               target_modules=lc.target_modules, task_type="CAUSAL_LM"))
            if cfg.train.dtype == "float32":
                for p in self.model.parameters():
                    if p.requires_grad:
                        p.data = p.data.float()
        self.model.eval()
        self.dist.broadcast_params([p for p in self.model.parameters() if p.requires_grad])  # replicas start equal
        self.ref_model = None
        if cfg.algorithm.beta > 0 and not cfg.train.lora.enabled:
            self.ref_model = load_policy(model_path, cfg.train.dtype).requires_grad_(False)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.train.learning_rate, weight_decay=cfg.train.weight_decay,
                                           betas=tuple(cfg.train.adam_betas))
        self.engine_name, self.engine = self._make_engine()
        self.pad_id = self.tokenizer.pad_token_id
        self.train_prompt_ids = [self._tokenize(q) for q in self.splits.train["prompt"]]
        self.eval_prompt_ids = [self._tokenize(q) for q in self.splits.eval["prompt"]]
        self.sampler = PromptSampler(len(self.train_prompt_ids), cfg.train.prompts_per_step, cfg.seed)
        self.params = SamplingParams(cfg.sampling.temperature, cfg.sampling.top_p, cfg.sampling.top_k,
                                     cfg.sampling.max_new_tokens)
        self.monitor = None
        if cfg.monitor.enabled and self.dist.is_main:  # on the gathered global batch, rank 0 only
            from rlvr.monitor import Monitor, signals_from_verifiers

            self.monitor = Monitor(cfg.monitor, signals_from_verifiers(self.reward.verifiers), run_dir=self.run_dir,
                                   reference_verifier=self.eval_verifier, policy_identity=str(model_path), echo=_say)

    def _make_engine(self):
        r = self.cfg.rollout
        name = resolve_engine_name(r.engine)
        kw = {}
        if name == "vllm":
            kw = dict(dtype=None if r.dtype == "auto" else r.dtype, kv_cache_gib=r.kv_cache_gib,
                      max_model_len=r.max_model_len, enforce_eager=r.enforce_eager,
                      gpu_memory_utilization=r.gpu_memory_utilization, sleep_between_steps=r.sleep_between_steps,
                      cpu_threads=self.cfg.threads, seed=self.cfg.seed)
        try:
            return name, make_engine(name, self.model, self.tokenizer, **kw)
        except ImportError as e:
            raise ConfigError(f"rollout.engine = '{r.engine}': vllm cannot be imported ({e}); run "
                              f"`bash scripts/install.sh` or set rollout.engine=hf") from None

    def _tokenize(self, question: str) -> list[int]:
        text = render_prompt(self.tokenizer, question, self.cfg.data.prompt)
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    # ------------------------------------------------------------------------------------------ one step

    def train_step(self, step: int) -> tuple[dict[str, float], list[dict]]:
        """Run optimizer step `step` (0-based). Returns (metrics, rollout records)."""
        cfg, G, alg = self.cfg, self.cfg.train.group_size, self.cfg.algorithm
        t0 = time.perf_counter()
        rounds: list[dict] = []  # per generation round: prompt indices, groups, verdicts, verifier rewards
        timing = {"generate": 0.0, "verify": 0.0}

        def draw(r: int) -> torch.Tensor:
            """Generation round r of this step: prompts from (seed, step, r), completions, verifier rewards [n, G].
            Under torchrun each rank generates and verifies its block of the prompts; all ranks get the whole round."""
            ta = time.perf_counter()
            if r == 0:
                idx = self.sampler.indices(step)
            else:
                idx = self.sampler.extra_indices(step, r, exclude=[i for rd in rounds for i in rd["idx"]])
            mine = self.dist.shard(len(idx))  # all of them when alone
            groups = self.engine.generate([self.train_prompt_ids[i] for i in idx[mine]], G, self.params,
                                          seed=_step_seed(cfg.seed, step, r), index_offset=mine.start)
            tb = time.perf_counter()
            questions = [self.splits.train[i]["prompt"] for i in idx]
            refs = [self.splits.train[i]["reference"] for i in idx]
            texts = [c.text for g in groups for c in g.completions]
            flat_rewards, verdicts, reward_metrics = self.reward(
                texts, [x for x in refs[mine] for _ in range(G)], [q for q in questions[mine] for _ in range(G)], G)
            groups, flat_rewards, verdicts, reward_metrics = self._gather_round(groups, flat_rewards, verdicts,
                                                                                reward_metrics)
            rewards = flat_rewards.view(len(groups), G)
            rounds.append({"idx": idx, "groups": groups, "questions": questions, "refs": refs, "rewards": rewards,
                           "verdicts": [verdicts[k * G:(k + 1) * G] for k in range(len(groups))],
                           "reward_metrics": reward_metrics, "n": len(texts)})
            timing["generate"] += tb - ta
            timing["verify"] += time.perf_counter() - tb
            return rewards

        selection, filter_metrics = self.group_filter(draw, cfg.train.prompts_per_step, alg)
        pick = lambda key: [rounds[r][key][g] for r, g in selection]  # noqa: E731
        idx, groups, questions, refs, group_verdicts = (pick(k) for k in ("idx", "groups", "questions", "refs",
                                                                          "verdicts"))
        rewards = torch.stack(pick("rewards")) if selection else torch.zeros(0, G)  # verifier rewards [n, G]
        verdicts = [vd for gv in group_verdicts for vd in gv]
        # verifier metrics over every completion generated this step (dropped groups included), count-weighted
        n_all = sum(rd["n"] for rd in rounds)
        reward_metrics = {k: sum(rd["reward_metrics"][k] * rd["n"] for rd in rounds) / max(n_all, 1)
                          for k in rounds[0]["reward_metrics"]}

        lengths = torch.tensor([[len(c.token_ids) for c in g.completions] for g in groups])
        truncated = torch.tensor([[c.finish_reason == "length" for c in g.completions] for g in groups])
        penalty = algorithms.soft_overlong_penalty(lengths, cfg.sampling.max_new_tokens, alg.overlong_buffer,
                                                   alg.overlong_penalty_factor)
        trained_rewards = rewards + penalty  # what the advantage sees
        loss_weights = algorithms.overlong_loss_weights(truncated, alg.overlong_mask)  # [n, G] in {0, 1}
        advantages = self.adv_fn(trained_rewards, alg)
        informative = (trained_rewards.max(-1).values != trained_rewards.min(-1).values)
        active = [i for i in range(len(groups)) if informative[i] or not cfg.train.skip_zero_variance_groups]
        step_tokens, step_sequences = int((lengths * loss_weights).sum()), int(loss_weights.sum())

        t_ver = time.perf_counter()
        train_metrics = self._policy_update(groups, advantages, active, step_tokens, step_sequences, loss_weights)
        t_train = time.perf_counter()

        classes = [[verdicts[gi * G + j].answer_class for j in range(G)] for gi in range(len(groups))]
        metrics = rollout_stats(rewards, lengths, truncated, classes)
        metrics.update(reward_metrics)
        metrics.update(filter_metrics)
        metrics.update(train_metrics)
        metrics.update({
            "trained_groups": len(active), "num_tokens": step_tokens, "lr": self.optimizer.param_groups[0]["lr"],
            "overlong/penalty_mean": float(penalty.mean()) if penalty.numel() else 0.0,
            "overlong/masked_frac": float(1.0 - loss_weights.mean()) if loss_weights.numel() else 0.0,
            "time/generate": timing["generate"], "time/verify": timing["verify"],
            "time/train": t_train - t_ver - train_metrics.get("time/sync", 0.0),
            "time/step": t_train - t0,
        })
        if self.monitor is not None:  # the info-gain monitor: estimates, alerts (written and echoed by it)
            # It sees the step's first generation round, the unfiltered draw of P prompts its estimators assume:
            # a group filter (dynamic sampling) keeps informative groups, which would hide NO_SIGNAL and bias
            # every variance-based estimate. Without a filter, round 0 is exactly the trained batch.
            r0 = rounds[0]
            g0 = r0["groups"]
            mon_metrics, _ = self.monitor.observe(
                step + 1, r0["rewards"],
                [[vd.answer_class for vd in gv] for gv in r0["verdicts"]],
                [[c.text for c in g.completions] for g in g0],
                torch.tensor([[len(c.token_ids) for c in g.completions] for g in g0]),
                errors=[[vd.error for vd in gv] for gv in r0["verdicts"]],
                references=[[ref] * G for ref in r0["refs"]], prompts=[[q] * G for q in r0["questions"]],
                policy_entropy=train_metrics.get("entropy"))
            metrics.update(mon_metrics)
        records = [{"step": step + 1, "prompt_index": idx[gi], "reference": refs[gi], "completion": c.text,
                    "reward": float(rewards[gi, j]), "advantage": float(advantages[gi, j]),
                    "answer_class": verdicts[gi * G + j].answer_class, "finish_reason": c.finish_reason}
                   for gi, g in enumerate(groups) for j, c in enumerate(g.completions)]
        return metrics, records

    def _gather_round(self, groups, rewards, verdicts, reward_metrics):
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

    def _policy_update(self, groups, advantages, active, step_tokens, step_sequences, loss_weights=None
                       ) -> dict[str, float]:
        """Backward over micro-batches of the `active` groups (under torchrun: this rank's contiguous block of the
        micro-batches, gradients then summed over ranks), clip, AdamW step, engine sync. `loss_weights` [n, G]
        (None: all 1) multiply each completion's loss mask (overlong filtering). Returns metrics:
        loss, grad_norm, entropy, the loss's own stats, and sampling/logp_diff_{mean,max} (|trainer - engine|
        log-prob of the sampled tokens; near 0 unless the engine is stale)."""
        cfg, G = self.cfg, self.cfg.train.group_size
        self.optimizer.zero_grad(set_to_none=True)
        loss_total, stats_acc, n_mb = 0.0, {}, 0
        ent_sum, n_tok, mismatch, is_acc = 0.0, 0.0, {}, {}
        mbg = cfg.train.micro_batch_groups
        mbs = [active[s:s + mbg] for s in range(0, len(active), mbg)]
        for mb in mbs[self.dist.shard(len(mbs))]:  # all of them when alone
            mb_prompts = [groups[i].prompt_ids for i in mb]
            mb_comps = [c for i in mb for c in groups[i].completions]
            logprobs, mask, entropy = completion_logprobs(
                self.model, mb_prompts, [c.token_ids for c in mb_comps], G, self.pad_id,
                cfg.sampling.temperature, with_entropy=True)
            ref_lp = self._ref_logprobs(mb_prompts, mb_comps) if cfg.algorithm.beta > 0 else None
            sampled = torch.zeros_like(mask)  # the engine's log-probs of the same tokens
            for r, c in enumerate(mb_comps):
                sampled[r, : len(c.logprobs)] = torch.tensor(c.logprobs)
            is_w = None
            if cfg.rollout.importance_sampling == "tis":
                is_w, is_stats = algorithms.truncated_is_weights(logprobs, sampled, mask,
                                                                 cfg.rollout.importance_sampling_cap)
                _accumulate(is_acc, is_stats)
            loss_mask = mask if loss_weights is None else mask * loss_weights[mb].reshape(-1, 1).to(mask.dtype)
            inputs = algorithms.LossInputs(
                logprobs=logprobs, old_logprobs=logprobs.detach(), advantages=advantages[mb].reshape(-1),
                mask=loss_mask, ref_logprobs=ref_lp, step_tokens=step_tokens, step_sequences=step_sequences,
                is_weights=is_w)
            loss, stats = self.loss_fn(inputs, cfg.algorithm)
            loss.backward()
            loss_total += float(loss.detach())
            _accumulate(stats_acc, stats)
            n_mb += 1
            ent_sum += float((entropy * mask).sum())
            n_tok += float(mask.sum())
            mb_mismatch = algorithms.sampling_mismatch(logprobs.detach(), sampled, mask)
            for k, v in mb_mismatch.items():  # token-weighted means, extremes over micro-batches
                if k.endswith(("_max",)):
                    mismatch[k] = max(mismatch.get(k, v), v)
                elif k.endswith("_min"):
                    mismatch[k] = min(mismatch.get(k, v), v)
                else:
                    mismatch[k] = mismatch.get(k, 0.0) + v * float(mask.sum())
        # totals over ranks (sums; extremes for *_max / *_min); unchanged when alone
        tot = self.dist.merge_stats({"loss": loss_total, "micro_batches": n_mb, "entropy_sum": ent_sum,
                                     "tokens": n_tok})
        loss_total, n_mb, ent_sum, n_tok = tot["loss"], tot["micro_batches"], tot["entropy_sum"], tot["tokens"]
        stats_acc, mismatch = self.dist.merge_stats({**stats_acc, **is_acc}), self.dist.merge_stats(mismatch)
        if not n_mb:  # every group tied: nothing to learn from this batch
            return {"loss": 0.0, "grad_norm": 0.0}
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.dist.all_reduce_grads(params)  # sum: every rank's loss is already over the global token count
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, cfg.train.max_grad_norm))
        self.optimizer.step()
        t_sync = time.perf_counter()
        self.engine.update_weights(self.model)  # vLLM: reload_weights + reset_prefix_cache; HF: nothing to copy
        for k in ("sampling/logp_diff_mean", "sampling/kl"):
            mismatch[k] /= n_tok
        return {"loss": loss_total, "grad_norm": grad_norm, "entropy": ent_sum / n_tok, **mismatch,
                "time/sync": time.perf_counter() - t_sync, **{k: v / n_mb for k, v in stats_acc.items()}}

    def _ref_logprobs(self, prompts, comps):
        with torch.no_grad():
            if self.ref_model is not None:
                lp, _, _ = completion_logprobs(self.ref_model, prompts, [c.token_ids for c in comps],
                                               self.cfg.train.group_size, self.pad_id, self.cfg.sampling.temperature)
            else:  # LoRA: the reference is the base model, adapter disabled (no second copy in memory)
                with self.model.disable_adapter():
                    lp, _, _ = completion_logprobs(self.model, prompts, [c.token_ids for c in comps],
                                                   self.cfg.train.group_size, self.pad_id,
                                                   self.cfg.sampling.temperature)
        return lp

    # ------------------------------------------------------------------------------------------ the run

    def _eval_engine(self):
        """The held-out evaluation's engine (eval.engine); the HF engine is built once, on demand."""
        choice, r = self.cfg.eval.engine, self.cfg.rollout
        if choice == "auto":
            rounded = self.engine_name == "vllm" and r.dtype not in ("auto", self.cfg.train.dtype)
            choice = "hf" if rounded else "rollout"
        if choice == "rollout" or self.engine_name == "hf":
            return self.engine
        if getattr(self, "_hf_eval_engine", None) is None:
            self._hf_eval_engine = make_engine("hf", self.model, self.tokenizer)
        return self._hf_eval_engine

    def evaluate(self, tag: str) -> dict:
        n_tokens = self.cfg.eval.max_new_tokens or self.cfg.sampling.max_new_tokens
        return evaluate(self._eval_engine(), self.eval_prompt_ids, list(self.splits.eval["reference"]), self.eval_verifier,
                        n_tokens, self.cfg.eval.batch_size, self.run_dir / f"eval_{tag}.jsonl")

    def run(self) -> dict:
        """Train for `train.steps` steps (resuming if asked), evaluate, write summary.json. Returns the summary.

        Under torchrun every rank trains; rank 0 alone writes config.yaml, metrics, rollouts, checkpoints, alerts,
        evaluations and summary.json (the other ranks wait for it at their next collective), and every rank returns
        rank 0's summary."""
        cfg, main = self.cfg, self.dist.is_main
        if main:
            (self.run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
        start, state = 0, {"evals": {}}
        if cfg.resume:
            ckpts = list_checkpoints(self.run_dir)
            if ckpts:
                state = load_checkpoint(ckpts[-1], self.model, self.optimizer)
                start = state["step"]
                self.engine.update_weights(self.model)
                log.info("resumed from %s (step %d)", ckpts[-1], start)
            else:
                log.info("resume=true but no checkpoint in %s: starting from step 0", self.run_dir)
        sink = (MetricSink(self.run_dir, cfg.log.tensorboard, resume_step=start if cfg.resume else None) if main
                else NullSink())
        evals = state.setdefault("evals", {})
        if main:
            self._print_plan()
        stop_reason = None
        if self.monitor is not None:
            self.monitor.start(resume_step=start if cfg.resume else None, state=state.get("monitor"))
            stop_reason = self.monitor.stop_reason if start == 0 else None
        if self.dist.broadcast_object(stop_reason):
            self._say(f"rlvr: stopped before training by the monitor (monitor.stop_on_critical): {stop_reason}")
            sink.close()
            return self._finish(evals, stop_reason, write_adapter=False)
        if main and cfg.eval.at_start and "0" not in evals and len(self.eval_prompt_ids):
            evals["0"] = self.evaluate("step0")
            self._say(f"held-out pass@1 before training: {_fmt_eval(evals['0'])}")
        rollouts = (open_step_log(self.run_dir / "rollouts.jsonl", start if cfg.resume else None)
                    if cfg.log.save_rollouts and main else None)
        bar = _progress(cfg, start, enabled=main)
        try:
            for step in range(start, cfg.train.steps):
                metrics, records = self.train_step(step)
                done = step + 1
                periodic = cfg.eval.every and done % cfg.eval.every == 0
                final = done == cfg.train.steps and cfg.eval.at_end
                if main and (periodic or final) and len(self.eval_prompt_ids):
                    evals[str(done)] = self.evaluate(f"step{done}")
                    metrics["eval/pass@1"] = evals[str(done)]["pass@1"]
                    self._say(f"held-out pass@1 after step {done}: {_fmt_eval(evals[str(done)])}")
                sink.log(done, metrics)
                if rollouts is not None:
                    rollouts.writelines(json.dumps(r) + "\n" for r in records)
                    rollouts.flush()
                # rank 0's monitor decides; every rank stops after the same step
                stop_reason = self.dist.broadcast_object(self.monitor.stop_reason if self.monitor else None)
                if main and ((cfg.log.checkpoint_every and done % cfg.log.checkpoint_every == 0)
                             or done == cfg.train.steps or stop_reason):
                    mon_state = {"monitor": self.monitor.state_dict()} if self.monitor is not None else {}
                    save_checkpoint(self.run_dir, done, self.model, self.optimizer, {"evals": evals, **mon_state},
                                    keep=cfg.log.keep_checkpoints)
                bar.update(1)
                bar.set_postfix_str(f"reward {metrics['reward']:.2f} informative {metrics['informative_group_frac']:.2f}"
                                    f" gen {metrics['time/generate']:.1f}s train {metrics['time/train']:.1f}s"
                                    f" sync {metrics.get('time/sync', 0.0):.2f}s")
                if stop_reason:
                    self._say(f"rlvr: stopped after step {done} by the monitor (monitor.stop_on_critical): "
                              f"{stop_reason}; checkpoint kept")
                    break
        finally:
            bar.close()
            sink.close()
            if rollouts is not None:
                rollouts.close()
        return self._finish(evals, stop_reason, write_adapter=cfg.train.lora.enabled)

    def _finish(self, evals: dict, stop_reason: str | None, write_adapter: bool) -> dict:
        """Rank 0 writes summary.json (and the final LoRA adapter); every rank returns that summary."""
        summary = None
        if self.dist.is_main:
            summary = self._summary(evals)
            if stop_reason:
                summary["stopped_by_monitor"] = stop_reason
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
            if write_adapter:
                self.model.save_pretrained(self.run_dir / "final_adapter")
        return self.dist.broadcast_object(summary)

    def close(self) -> None:
        """Free the rollout engine now (vLLM: its engine core and its process groups, which must go before
        torchrun's default group is destroyed; otherwise vLLM's exit hook fails on the destroyed group)."""
        close = getattr(self.engine, "close", None)
        if close is not None:
            close()

    def _say(self, msg: str) -> None:
        if self.dist.is_main:
            _say(msg)

    def _summary(self, evals: dict) -> dict:
        rows = read_metrics(self.run_dir)
        rewards = [r["reward"] for r in rows]
        k = min(5, len(rewards))
        first, last = str(0), str(self.cfg.train.steps)
        summary = {
            "run_dir": str(self.run_dir), "model": self.cfg.model, "seed": self.cfg.seed,
            "steps": len(rows), "evals": evals,
            "heldout_pass@1_before": evals.get(first, {}).get("pass@1"),
            "heldout_pass@1_after": evals.get(last, {}).get("pass@1"),
            "heldout_n": evals.get(last, evals.get(first, {})).get("n"),
            "train_reward_first5": sum(rewards[:k]) / k if k else None,
            "train_reward_last5": sum(rewards[-k:]) / k if k else None,
            "seconds_per_step_mean": sum(r["time/step"] for r in rows) / len(rows) if rows else None,
            "rollout_engine": self.engine_name, "rollout_dtype": self.cfg.rollout.dtype,
            "peak_rss_gib": _peak_rss_gib(),
        }
        return summary

    def _print_plan(self) -> None:
        c, a = self.cfg, self.cfg.algorithm
        n_params = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        plan = batch_plan(c, max((len(p) for p in self.train_prompt_ids), default=0))
        _say(f"rlvr: {c.model} | train {len(self.train_prompt_ids)} / held-out {len(self.eval_prompt_ids)} problems | "
             f"{n_params/1e6:.2f}M trainable params | rollouts: {self.engine_name} | run dir {self.run_dir}")
        gen = (f" | generation: up to {plan['max_generation_rounds']} rounds = {plan['max_completions_generated']} "
               f"completions ({a.group_filter})" if plan["max_generation_rounds"] > 1 else "")
        _say(f"rlvr: batch plan: {c.train.steps} steps x P={plan['prompts']} prompts x G={plan['group_size']} = "
             f"{plan['completions']} completions/step | {plan['micro_batches']} micro-batches of <= "
             f"{plan['micro_batch_groups']} groups | <= {plan['max_tokens']} tokens/step "
             f"(P*G*({plan['max_prompt_tokens']} prompt + {c.sampling.max_new_tokens} new)){gen}"
             + (f" | WORLD_SIZE {plan['world_size']}: {plan['prompts'] // plan['world_size']} prompts/rank"
                if plan["world_size"] > 1 else ""))
        _say(f"rlvr: algorithm: preset {a.preset} | advantage {a.advantage} | loss {a.loss} (epsilon {a.epsilon}/"
             f"{a.epsilon_high if a.epsilon_high is not None else a.epsilon}, beta {a.beta}) | group_filter "
             f"{a.group_filter} | overlong_mask {a.overlong_mask} | overlong_buffer {a.overlong_buffer}")


def _accumulate(acc: dict[str, float], stats: dict[str, float]) -> None:
    for k, v in stats.items():
        acc[k] = acc.get(k, 0.0) + v


def _lookup(getter, name, field):
    try:
        return getter(name)
    except KeyError as e:
        raise ConfigError(f"{field} = '{name}': {e.args[0]}") from None


def _fmt_eval(e: dict) -> str:
    return f"{e['pass@1']:.3f} ({e['correct']}/{e['n']} problems, answer extracted {e['extracted_rate']:.0%})"


def _say(msg: str) -> None:
    from tqdm import tqdm

    tqdm.write(msg)


def _progress(cfg: Config, start: int, enabled: bool = True):
    from tqdm import tqdm

    return tqdm(total=cfg.train.steps, initial=start, desc="GRPO", unit="step",
                disable=not (cfg.log.progress and enabled), dynamic_ncols=True)

