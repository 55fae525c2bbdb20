"""The GRPO run, readable top to bottom. A step, from recipe to optimizer step, through named types:

    Config (rlvr/config.py)                     the recipe, validated; `auto` device/dtype resolved by
      -> build()        -> Run                  rlvr/hardware.py (rlvr/build.py: splits, reward, pre-flight,
                                                tokenizer, policy, reference model, AdamW, rollout engine on
                                                train.device, collector, updater, monitor)
    per step s:
      BatchCollector.collect(s) -> RolloutBatch (rlvr/collect.py, rlvr/batch.py)
          round r: P prompts from (seed, s, r) -> engine.generate: G Completions each
                   -> scoring.score / Reward: verdicts, rewards [P, G] (deadline per group, rlvr/scoring.py)
          group filter (registry) picks groups across rounds -> RolloutBatch.select
          RolloutBatch.shape: overlong penalty, loss weights, advantages (registry) [P, G]
      PolicyUpdater.update(batch) (rlvr/update.py)
          mu = train.updates_per_batch passes x train.mini_batches optimizer steps; pi_old log-probs once;
          micro-batches of informative groups -> policy loss (registry) -> backward -> clip -> AdamW
      engine.update_weights(policy)             vLLM: merged weights synced; HF: the policy itself
      metrics (rollout_stats), monitor.observe_batch (first round), rollouts.jsonl, checkpoint, eval

    rollout.max_staleness 1 (asynchronous GRPO): collect(s + 1) runs in a background thread, on the engine still
    holding the policy before update s, while update s (and a held-out evaluation on the HF engine) runs here; the
    sync waits for it. Step s + 1 trains on that batch: staleness 1, corrected by the truncated importance weight
    pi_old / pi_engine (AReaL's decoupled PPO objective, arXiv 2505.24298); the batch in flight is checkpointed.

Simplifications, stated plainly:
  * By default (mu = 1, one mini-batch) each batch gets one optimizer step at pi_old itself: the PPO ratio is 1
    at the update and the clip does nothing; `train.updates_per_batch` / `train.mini_batches` reuse a batch.
    The engine's own sampling log-probs are compared with the trainer's every step (`sampling/logp_diff_*`).
  * Groups whose rewards are all equal have zero advantage and are skipped in the backward pass; the loss is
    normalised by the tokens of the whole (mini-)batch, so skipping changes nothing but the cost.
  * No dropout anywhere (the model stays in eval mode): sampling and training evaluate the same function.
  * Every step's randomness is derived from (seed, step) (and the generation round, for extra rounds of dynamic
    sampling), so a resumed run continues exactly as an uninterrupted one.

Under torchrun (WORLD_SIZE = N > 1, rlvr/distributed.py) the step is the same computation, split: each rank
generates and verifies its block of each round's prompts, every rank gathers the whole round, the micro-batches of
each optimizer step are dealt to the ranks in equal contiguous blocks (padded, rlvr/update.py `balanced_deal`),
and gradients are summed over ranks by the layout of `train.parallelism` (rlvr/parallel.py: torch DDP, or FSDP2
with sharded weights and optimizer state; each rank's loss is already divided by the global token count). Rank 0
alone writes files, logs, evaluates and runs the monitor; every rank writes its part of a checkpoint; rank 0's stop
decision is broadcast so all ranks stop together.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import threading
import time

import torch
import yaml

from rlvr.batch import RolloutBatch
from rlvr.build import batch_plan, build, check_batch_config, echo  # noqa: F401 (check_batch_config re-exported)
from rlvr.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from rlvr.collect import step_seed
from rlvr.config import Config
from rlvr.evaluation import evaluate
from rlvr.metrics import MetricSink, NullSink, open_step_log, read_metrics, rollout_stats
from rlvr.plugins import build_reward  # noqa: F401 (re-exported)
from rlvr.preflight import PreflightError
from rlvr.rollouts import make_engine
from rlvr.sharing import shared_map
from rlvr.update import dropout_active

log = logging.getLogger("rlvr")


# Asynchronous GRPO on CPU: per thread (threading.get_ident()), the check of an open Trainer._idle_core block, called
# at every block of the policy. Module-level functions, so a deep copy of the policy (HFCopyEngine) stays cheap.
_IDLE_CHECKS: dict = {}


def _idle_pre_hook(module, args) -> None:
    check = _IDLE_CHECKS.get(threading.get_ident())
    if check is not None:
        check()


def _idle_post_hook(module, args, output) -> None:
    """In a forward with gradients, the block's output gets a tensor hook: the check also runs in the backward pass
    (which runs on the calling thread for CPU tensors)."""
    me = threading.get_ident()
    if me not in _IDLE_CHECKS or not torch.is_grad_enabled():
        return
    out = output[0] if isinstance(output, (tuple, list)) and output else output
    if isinstance(out, torch.Tensor) and out.requires_grad:
        out.register_hook(lambda grad, me=me: _idle_grad_hook(me))


def _idle_grad_hook(me: int) -> None:
    check = _IDLE_CHECKS.get(me)
    if check is not None:
        check()


def _watch_blocks(model) -> None:
    """Install the _IDLE_CHECKS hooks once on `model`: on every element of its ModuleLists (a transformer's decoder
    layers), or on the model itself when it has none."""
    if model is None or getattr(model, "_rlvr_idle_hooks", False):
        return
    blocks = [m for lst in model.modules() if isinstance(lst, torch.nn.ModuleList) for m in lst] or [model]
    for m in blocks:
        m.register_forward_pre_hook(_idle_pre_hook)
        m.register_forward_hook(_idle_post_hook)
    model._rlvr_idle_hooks = True


def _peak_rss_gib() -> float | None:
    """Peak resident memory of this process so far, GiB (Linux ru_maxrss is in KiB); None where unavailable."""
    try:
        import resource

        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)
    except (ImportError, OSError):
        return None


class Trainer:
    """Builds everything a run needs from a Config (`rlvr.build.build`: one `Run` holding every part, whose fields
    become this object's attributes), then `run()` trains and evaluates.

    Stages (each readable on its own): `rlvr.build.build` (checks, data, verifiers, pre-flight, device, precision,
    model, engine, optimizer, collector, updater, monitor),
    `rlvr.collect.BatchCollector` (generate, score, filter, shape -> RolloutBatch), `rlvr.update.PolicyUpdater`
    (PPO epochs, mini-batches, micro-batches, AdamW), and this class's run loop (eval, checkpoints, logging).

    Attributes after construction: run_dir, device, train_precision, rollout_precision, tokenizer, model
    (peft-wrapped when LoRA is on), ref_model, engine, optimizer, train/eval splits (datasets.Dataset), reward,
    sampler, collector, updater, monitor.
    """

    def __init__(self, cfg: Config):
        self.cfg = cfg
        run = build(cfg)  # every part of the run, in the order a run needs them (rlvr/build.py)
        for f in dataclasses.fields(run):
            if f.name not in ("cfg", "engine"):  # the engine is the collector's (the `engine` property)
                setattr(self, f.name, getattr(run, f.name))
        self.pad_id = self.tokenizer.pad_token_id
        self._pending = None  # asynchronous GRPO: (step it is for, step whose policy sampled it, collect()'s result)
        self._ahead = None  # asynchronous GRPO: (step, future) of a batch submitted before the step that trains on it
        self._submitted: list = []  # the rollout thread's tasks not known to be done (_rollout_idle)
        # set while the main thread waits for the rollout thread's work (the consistency pre-flight, a shared
        # micro-batch): that work then takes the main thread's core (_idle_core)
        self._main_waits = threading.Event()
        self._share_eval = False  # the rollout thread, when free, generates some of the held-out evaluation's batches
        if self.executor is not None and self.device.type == "cpu" and self._threads_alone() > cfg.threads:
            # the rollout thread shares the update's micro-batches when free
            self.updater.helper = functools.partial(self._lend, grad=True)
            self.updater.waiting = self._main_waits
            # (as the update's: one process, its whole policy in it, no dropout draws that depend on the thread)
            self._share_eval = (self.dist.world_size == 1 and not self.parallel.sharded
                                and not dropout_active(self.model))
        self._probe = self._probe_start = None  # the staleness probe (_start_probe)

    @property
    def engine(self):
        """The rollout engine (the collector's); assignable (benchmarks swap engines between steps)."""
        return self.collector.engine

    @engine.setter
    def engine(self, value) -> None:
        self.collector.engine = value

    # ------------------------------------------------------------------------------------------ one step

    def train_step(self, step: int, overlap=None) -> tuple[dict[str, float], list[dict]]:
        """Run optimizer step `step` (0-based): collect a batch, update the policy, sync the engine, observe.
        Returns (metrics, rollout records).

        Asynchronous GRPO (rollout.max_staleness 1): the batch of this step was collected while the previous step
        trained (staleness 1; step 0, and the first step of a run resumed without a pending batch, collect it now),
        and the batch of step + 1 is collected in the background while this one trains, by the engine still holding
        the policy before this step's update. The sync waits for it. `overlap`: a no-argument callable run on this
        thread after the update, beside the background collection (the held-out evaluation on the HF engine); not
        called when nothing runs in the background (the caller runs it after the step). The update, the staleness
        probe's policy side and `overlap` take the idle core once the background work is done (_idle_core)."""
        t0 = time.perf_counter()
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] == step:
            _, sampled_by, collected = pending
            batch, first_round, collect_metrics = collected.result() if hasattr(collected, "result") else collected
        else:
            sampled_by = step
            batch, first_round, collect_metrics = self.collector.collect(step)
        future = None
        if self.executor is not None and step + 1 < self.cfg.train.steps:
            ahead, self._ahead = self._ahead, None  # the run's second batch, queued before the consistency pre-flight
            future = ahead[1] if ahead is not None and ahead[0] == step + 1 else self._submit(self._collect_in_background,
                                                                                              step + 1)
        t_update = time.perf_counter()
        synced = None
        with self._idle_core() as took:
            train_metrics = self.updater.update(batch)
            t_trained = time.perf_counter()
            if future is not None and self._probe is not None:  # one process: the sync and the engine's side of
                # the staleness probe run on the rollout thread after the collection, beside the probe's policy side
                synced = self._submit(self._in_background, self._sync_and_probe, bool(train_metrics["updates"]))
            # the probe's policy side reads the updated policy, which the sync does not change: computed here, it
            # fills the wait for the background work or takes the idle core
            probe_policy = self._policy_logp(*self._probe) if self._probe is not None else None
            if future is not None and overlap is not None:
                overlap()
        if future is not None:
            t_wait = time.perf_counter()
            self._pending = (step + 1, step, future.result())
            self._overlap_ran = overlap is not None
        t_sync = time.perf_counter()
        if synced is not None:
            sync_s, probe_engine = synced.result()
        else:
            if train_metrics["updates"]:  # vLLM: reload (FSDP: layer by layer) + reset prefix cache; HF: none
                self.engine.update_weights(self.model)
            sync_s, probe_engine = time.perf_counter() - t_sync, None
        t_end = time.perf_counter()
        metrics = self._step_metrics(batch, collect_metrics, train_metrics)
        if self._probe is not None:  # does the engine now serve the policy it was given?
            if probe_engine is None:
                probe_engine = self.engine.score(*self._probe)
            metrics.update(self.monitor.observe_engine(step + 1, probe_engine, probe_policy,
                                                       self.monitor.probe_initial)[0])
        metrics.update({"time/train": t_trained - t_update, "time/sync": sync_s, "time/step": t_end - t0})
        if self.executor is not None:  # what the next step's generation cost this one: the wait after the update
            metrics.update({"rollout/staleness": float(step - sampled_by),
                            "time/wait_rollout": (t_sync - t_wait) if future is not None else 0.0,
                            "time/collect_inline": t_update - t0,
                            "time/train_alone": max(0.0, t_trained - took[0]) if took else 0.0})
        if self.monitor is not None:  # the info-gain monitor: estimates, alerts (written and echoed by it)
            mon_metrics, _ = self.monitor.observe_batch(step + 1, first_round, train_metrics.get("entropy"),
                                                        rescore=lambda items, g: self.reward(items, g)[0])
            metrics.update(mon_metrics)
        return metrics, batch.records(step + 1)

    @contextlib.contextmanager
    def _idle_core(self, other_idle=None):
        """Asynchronous GRPO on CPU: the work of this thread inside the block (an update, the probe, a held-out
        evaluation on the HF engine, the consistency pre-flight) runs on `threads` torch intra-op threads while the
        other thread computes, and on `threads_alone` while it finds the other thread idle, so no core sits idle
        and none is asked for twice (the other thread may start again: a shared item, rlvr.sharing). `other_idle`:
        a no-argument predicate; default: every task submitted to the rollout thread is done (_rollout_idle).
        torch's thread count is per thread; the rollout thread sets its own at the start of every task
        (_in_background).

        Where it checks: on entry, and at every block of the policy (a forward pre-hook on each element of the
        model's ModuleLists, i.e. each decoder layer, and in the backward pass a hook on each block's output),
        through _IDLE_CHECKS, keyed by thread, so a check is ~1/30 of a forward late at most.

        Yields `took`: a list that holds the moment (time.perf_counter) the thread count was first raised, empty if
        it was not. Nothing changes (took stays empty) without a rollout thread, off CPU, or when threads_alone <=
        threads. On exit the count is `threads` again. Measured by `python benchmarks/threads_alone.py` (2-core
        EPYC): the recipe's micro-batch 1.5x faster on 2 threads than 1, loss and gradients bitwise equal; 64
        held-out problems 1.4x faster, the same completions."""
        took: list = []
        n = self._threads_alone()
        if self.executor is None or self.device.type != "cpu" or n <= self.cfg.threads:
            yield took
            return
        other_idle = other_idle or self._rollout_idle
        me = threading.get_ident()

        now = [self.cfg.threads]

        def check():  # the count follows the other thread: it may start work again (a shared item, a collection)
            want = n if other_idle() else self.cfg.threads
            if want != now[0]:
                torch.set_num_threads(want)
                now[0] = want
                if want == n and not took:
                    took.append(time.perf_counter())

        _watch_blocks(self.model)
        _IDLE_CHECKS[me] = check
        try:
            check()
            yield took
        finally:
            _IDLE_CHECKS.pop(me, None)
            torch.set_num_threads(self.cfg.threads)

    def _threads_alone(self) -> int:
        """rlvr.config `threads_alone`; default: the cores this process may use / LOCAL_WORLD_SIZE."""
        n = self.cfg.threads_alone
        if n is None:
            cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
            n = cores // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
        return n

    def _submit(self, fn, *args, **kwargs):
        """executor.submit(fn, *args), remembered until done (see _rollout_idle)."""
        future = self.executor.submit(fn, *args, **kwargs)
        self._submitted = [f for f in self._submitted if not f.done()] + [future]
        return future

    def _rollout_idle(self) -> bool:
        """Every task submitted to the rollout thread is done: its core is free."""
        return all(f.done() for f in self._submitted)

    def _collect_in_background(self, step: int):
        """collect(step) on the rollout thread."""
        return self._in_background(self.collector.collect, step)

    def _in_background(self, fn, *args, grad: bool = False):
        """fn(*args) on the rollout thread: torch's intra-op threads are per thread, set them as the trainer's
        (rlvr.config `threads`); grad mode is per thread: off unless `grad` (the update's shared micro-batches)."""
        torch.set_num_threads(self.cfg.threads)
        with torch.set_grad_enabled(grad):
            return fn(*args)

    def _sync_and_probe(self, updated: bool) -> tuple[float, list[list[float]]]:
        """On the rollout thread, after the next batch's collection: the engine takes the updated policy (when the
        step updated it) and scores the staleness probe. Returns (sync seconds, the engine's probe log-probs)."""
        t0 = time.perf_counter()
        if updated:
            self.engine.update_weights(self.model)
        return time.perf_counter() - t0, self.engine.score(*self._probe)

    def _lend(self, work, grad: bool = False):
        """rlvr.sharing.shared_map's helper (the update's micro-batches, with `grad`; the held-out evaluation's
        batches): `work` on the rollout thread once it is free (after the next batch's collection), on the main
        thread's core too while that waits for an item this thread computes."""
        def lend():
            with self._idle_core(self._main_waits.is_set):
                work()

        return self._submit(self._in_background, lend, grad=grad)

    def _step_metrics(self, batch: RolloutBatch, collect_metrics: dict, train_metrics: dict) -> dict:
        metrics = rollout_stats(batch.rewards, batch.lengths, batch.truncated, batch.answer_classes, batch.passed)
        metrics.update(batch.reward_metrics)
        metrics.update(collect_metrics)
        metrics.update(train_metrics)
        w = batch.loss_weights
        penalty = batch.overlong_penalty
        metrics.update({
            "trained_groups": int(sum(bool(x) for x in batch.informative())
                                  if self.cfg.train.skip_zero_variance_groups else batch.n_groups),
            "num_tokens": int((batch.lengths * w).sum()), "lr": self.optimizer.param_groups[0]["lr"],
            "overlong/penalty_mean": float(penalty.mean()) if penalty.numel() else 0.0,
            "overlong/masked_frac": float(1.0 - w.mean()) if w.numel() else 0.0,
            "device": str(self.device), "train_dtype": self.train_precision.dtype,
        })
        return metrics

    # ------------------------------------------------------------------------------------------ the run

    def _eval_engine(self):
        """The held-out evaluation's engine (eval.engine); the HF engine is built once, on demand."""
        choice = self.cfg.eval.engine
        if choice == "auto":
            rounded = self.engine_name == "vllm" and self.rollout_precision.dtype != self.train_precision.dtype
            # asynchronous HF rollouts sample from a copy: the evaluation reads the policy itself and can overlap
            choice = "hf" if rounded or (self.engine_name == "hf" and self.executor is not None) else "rollout"
        if choice == "rollout" or (self.engine_name == "hf" and self.executor is None):
            return self.engine
        if getattr(self, "_hf_eval_engine", None) is None:
            self._hf_eval_engine = make_engine("hf", self.model, self.tokenizer)
        return self._hf_eval_engine

    def evaluate(self, tag: str) -> dict:
        """The held-out evaluation (rlvr.evaluation.evaluate) written to eval_{tag}.jsonl."""
        e = self.cfg.eval
        n_tokens = e.max_new_tokens or self.cfg.sampling.max_new_tokens
        engine = self._eval_engine()
        share = None
        if self._share_eval and engine is not self.engine:  # the HF engine on the policy (vLLM is the rollout's)
            share = functools.partial(shared_map, helper=self._lend, waiting=self._main_waits)
        return evaluate(engine, self.eval_prompt_ids, list(self.splits.eval["reference"]),
                        self.eval_verifier, n_tokens, e.batch_size, self.run_dir / f"eval_{tag}.jsonl",
                        prompts=list(self.splits.eval["prompt"]), samples=e.samples, temperature=e.temperature,
                        seed=step_seed(self.cfg.seed, 0, 0), timeout_s=e.timeout_s,
                        progress=self.cfg.log.progress and self.dist.is_main, map_batches=share)

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
                state = load_checkpoint(ckpts[-1], self.model, self.optimizer, self.parallel)
                start = state["step"]
                self._restore_pending(ckpts[-1], state)
                self.engine.update_weights(self.model)
                log.info("resumed from %s (step %d)", ckpts[-1], start)
            else:
                log.info("resume=true but no checkpoint in %s: starting from step 0", self.run_dir)
        sink = (MetricSink(self.run_dir, cfg.log.tensorboard, resume_step=start if cfg.resume else None,
                           wandb=self._wandb_sink()) if main else NullSink())
        evals = state.setdefault("evals", {})
        if main:
            self._print_plan()
        stop_reason = None
        if self.monitor is not None:
            self.monitor.start(resume_step=start if cfg.resume else None, state=state.get("monitor"))
            pf = self.preflight
            if start == 0 and pf.canary_report is not None:  # the pre-flight's canaries, recorded at step 0
                self.monitor.check_canaries(0, pf.canary_report, pf.canary_total, pf.canary_forms, pf.canary_rates)
            elif start:
                self._canaries(start)
                self.monitor.canary_metrics = {}  # reported at step 1 of the run; a resumed run's rows stay equal
            stop_reason = self.monitor.stop_reason if start == 0 else None
            sink.alerts(start, self.monitor.drain())
        self._start_probe(start)
        if self.dist.broadcast_object(stop_reason):
            self._say(f"rlvr: stopped before training by the monitor (monitor.stop_on_critical): {stop_reason}")
            sink.close()
            return self._finish(evals, stop_reason, write_final=False)
        consistency, verdict_after_step = None, False
        if cfg.eval.at_start and "0" not in evals and len(self.eval_prompt_ids):
            if self._pending is None and start < cfg.train.steps and self._eval_overlaps():
                # asynchronous GRPO: the first batch (on-policy: nothing has been trained) is collected while the
                # initial evaluation and the consistency pre-flight run
                # (and the second batch: the engine serves the initial policy until the first update's sync)
                self._pending = (start, start, self._submit(self._collect_in_background, start))
                if start + 1 < cfg.train.steps:
                    self._ahead = (start + 1, self._submit(self._collect_in_background, start + 1))
                if start == 0:  # and, after them, the consistency pre-flight's training prompts, whose verdict every
                    verdict_after_step = True  # rank awaits after the first update, before anything is kept
                    if main:
                        consistency = self._submit(self._in_background, self._consistency_eval,
                                                   len(self.eval_prompt_ids))
            with self.parallel.for_engine(self._eval_engine()), self._idle_core():  # FSDP + HF engine: gathered;
                if main:  # rank 0 evaluates
                    evals["0"] = self.evaluate("step0")
                    self._say(f"held-out pass@1 before training: {_fmt_eval(evals['0'])}")
                    fault = self._consistency(evals["0"]) if start == 0 and not verdict_after_step else None
                else:
                    fault = None
            fault = self.dist.broadcast_object(fault)
            if fault:  # a pre-flight fault found with the model: nothing of this run is kept
                sink.close()
                self._discard_run_dir()
                raise PreflightError(fault)
        self._observe_probe_start()
        if self.monitor is not None and "0" in evals and evals["0"].get("greedy_passed") is not None and start == 0:
            self.monitor.observe_heldout(0, evals["0"]["greedy_passed"])
            sink.alerts(0, self.monitor.drain())
        rollouts = (open_step_log(self.run_dir / "rollouts.jsonl", start if cfg.resume else None)
                    if cfg.log.save_rollouts and main else None)
        bar = _progress(cfg, start, enabled=main)
        discard = False
        if consistency is not None:  # the first update's forwards run beside the consistency evaluation, which reads
            def wait_for_consistency(event=self._main_waits):  # the same policy: its weights wait for it, and the
                event.set()  # evaluation takes this thread's core meanwhile (_consistency_eval)
                try:
                    consistency.result()
                finally:
                    event.clear()

            self.updater.before_optimizer_step = wait_for_consistency
        try:
            for step in range(start, cfg.train.steps):
                done = step + 1
                periodic = cfg.eval.every and done % cfg.eval.every == 0
                final = done == cfg.train.steps and cfg.eval.at_end
                due = (periodic or final) and len(self.eval_prompt_ids)
                result: dict = {}

                def held_out(done=done, result=result):
                    with self.parallel.for_engine(self._eval_engine()):
                        result["eval"] = self.evaluate(f"step{done}") if main else None

                # asynchronous GRPO: an evaluation that does not use the rollout engine runs beside the background
                # generation (it reads the updated policy, which nothing changes until the next step)
                self._overlap_ran = False
                if due and self._eval_overlaps():
                    metrics, records = self.train_step(step, overlap=held_out)
                else:
                    metrics, records = self.train_step(step)
                if verdict_after_step:  # asynchronous GRPO: the first update ran beside the consistency pre-flight;
                    verdict_after_step = False  # a fault still keeps nothing (exit 2, the run dir discarded)
                    self.updater.before_optimizer_step = None
                    fault = self.dist.broadcast_object(
                        self._consistency(evals["0"], consistency.result()) if main else None)
                    if fault:
                        discard = True
                        raise PreflightError(fault)
                if due and not self._overlap_ran:
                    with self._idle_core() if self._eval_overlaps() else contextlib.nullcontext():
                        held_out()  # nothing runs beside it: the HF engine takes the idle core
                if due and main:
                    evals[str(done)] = result["eval"]
                    metrics["eval/pass@1"] = evals[str(done)]["pass@1"]
                    self._say(f"held-out pass@1 after step {done}: {_fmt_eval(evals[str(done)])}")
                    if self.monitor is not None and evals[str(done)].get("greedy_passed") is not None:
                        metrics.update(self.monitor.observe_heldout(done, evals[str(done)]["greedy_passed"])[0])
                if self.monitor is not None and cfg.monitor.canary_every and done % cfg.monitor.canary_every == 0:
                    self._canaries(done)
                sink.log(done, metrics)
                if self.monitor is not None:
                    sink.alerts(done, self.monitor.drain())
                if rollouts is not None:
                    rollouts.writelines(json.dumps(r) + "\n" for r in records)
                    rollouts.flush()
                # rank 0's monitor decides; every rank stops after the same step
                stop_reason = self.dist.broadcast_object(self.monitor.stop_reason if self.monitor else None)
                if ((cfg.log.checkpoint_every and done % cfg.log.checkpoint_every == 0)
                        or done == cfg.train.steps or stop_reason):  # every rank: FSDP ranks write their shards
                    mon_state = {"monitor": self.monitor.state_dict()} if self.monitor is not None else {}
                    save_checkpoint(self.run_dir, done, self.model, self.optimizer, {"evals": evals, **mon_state},
                                    keep=cfg.log.keep_checkpoints, parallel=self.parallel,
                                    **self._pending_checkpoint())
                bar.update(1)
                bar.set_postfix_str(f"reward {metrics['reward']:.2f} informative {metrics['informative_group_frac']:.2f}"
                                    f" gen {metrics['time/generate']:.1f}s train {metrics['time/train']:.1f}s"
                                    f" sync {metrics.get('time/sync', 0.0):.2f}s")
                if stop_reason:
                    self._say(f"rlvr: stopped after step {done} by the monitor (monitor.stop_on_critical): "
                              f"{stop_reason}; checkpoint kept")
                    break
            if main and getattr(sink, "wandb", None) is not None and self.monitor is not None:
                from rlvr.monitor.report import report

                try:
                    png, _ = report(self.run_dir)
                    sink.images(cfg.train.steps if not stop_reason else done, {"monitor/report": png})
                except Exception as e:  # a plot must not fail a finished run
                    log.warning("rlvr: the monitor report for W&B failed (%s: %s)", type(e).__name__, e)
        finally:
            bar.close()
            sink.close()
            if rollouts is not None:
                rollouts.close()
            if discard:
                self._discard_run_dir()
        return self._finish(evals, stop_reason, write_final=True)

    def _eval_overlaps(self) -> bool:
        """The held-out evaluation may run beside the background generation: asynchronous GRPO, and an evaluation
        engine other than the rollout engine (the HF engine on the policy; vLLM is busy generating)."""
        return self.executor is not None and self._eval_engine() is not self.engine

    def _pending_checkpoint(self) -> dict:
        """save_checkpoint's arguments for the batch collected for the next step (asynchronous GRPO): it was sampled
        by the policy before this step's update, which the checkpoint no longer holds, so it is saved with the
        checkpoint (pending_batch.pt) and a resumed run trains on it exactly as the uninterrupted run does."""
        if self._pending is None:
            return {}
        step, sampled_by, collected = self._pending
        return {"extra_state": {"pending_batch": {"step": step, "sampled_by": sampled_by}},
                "blobs": {"pending_batch.pt": collected}}

    def _restore_pending(self, ckpt, state: dict) -> None:
        """The pending batch of an asynchronous run's checkpoint (see _pending_checkpoint); a checkpoint without one
        (on-policy run, or rollout.max_staleness changed) makes the first resumed step collect its batch itself."""
        info = state.pop("pending_batch", None)
        path = ckpt / "pending_batch.pt"
        if info and self.executor is not None and path.is_file():
            self._pending = (info["step"], info["sampled_by"], torch.load(path, weights_only=False))
        elif info and self.executor is None:
            log.info("rlvr: the checkpoint holds a batch sampled ahead by an asynchronous run; rollout.max_staleness "
                     "is 0 now, so step %d collects its own (on-policy) batch", state["step"] + 1)

    def _consistency_eval(self, n_eval: int) -> dict | None:
        """The consistency pre-flight's evaluation (see _consistency): the policy's greedy answers to 2 * n_eval
        seeded training prompts, graded against their references; evaluate()'s result, or None when the check is
        off. Writes consistency_step0.jsonl. Runs on the rollout thread of an asynchronous run, beside the initial
        held-out evaluation (both read the untrained policy)."""
        import random

        mc = self.cfg.monitor
        if not mc.consistency_alpha or not n_eval or len(self.train_prompt_ids) < 2:
            return None
        rng = random.Random(self.cfg.seed * 1_000_003 + 17)
        # twice the held-out size: a real misaligned file read 1/64 against 11/64 (p = 0.004, missed at 0.001);
        # 128 training prompts at that rate give p ~ 1e-4
        idx = sorted(rng.sample(range(len(self.train_prompt_ids)), min(2 * n_eval, len(self.train_prompt_ids))))
        e = self.cfg.eval
        with self._idle_core(self._main_waits.is_set):  # the main thread waits for it before its first optimizer step
            res = evaluate(self._eval_engine(), [self.train_prompt_ids[i] for i in idx],
                           [self.splits.train[i]["reference"] for i in idx], self.eval_verifier,
                           e.max_new_tokens or self.cfg.sampling.max_new_tokens, e.batch_size,
                           self.run_dir / "consistency_step0.jsonl",
                           prompts=[self.splits.train[i]["prompt"] for i in idx], timeout_s=e.timeout_s,
                           progress=self.cfg.log.progress, keep_completions=True)
        res["shift"] = self._shift_evidence(idx, res.pop("completions"), res["greedy_passed"],
                                            mc.consistency_alpha / 2)
        return res

    SHIFTS = (-2, -1, 1, 2)
    CHANCE_REFERENCES_PER_ROW = 64  # 8,192 pairs on 128 rows: the coincidence rate's noise no longer limits the test

    def _shift_evidence(self, idx: list[int], texts: list[str], own: list[bool], alpha: float) -> dict | None:
        """The shifted-reference test (rlvr.monitor.heldout.reference_shift) on the consistency sample: training
        rows `idx` with the policy's greedy completions `texts` and their verdicts `own` against their own
        references. Each completion is also graded (eval verifier, its own prompt) against the references of the
        rows SHIFTS places away in data.path's file order, and of CHANCE_REFERENCES_PER_ROW seeded random rows at
        least 3 away (the coincidence rate). Returns reference_shift's result plus up to 3 example rows, None for
        a generated task or a file of fewer than 8 rows, or {"skipped": why} when the eval verifier's declared
        cost is not "cheap". About 8.7k verifier calls on 128 rows (under a second for the math verifier)."""
        import random

        from rlvr.data import file_order
        from rlvr.monitor.heldout import reference_shift
        from rlvr.scoring import make_items, passed, score

        cost = getattr(getattr(self.eval_verifier, "signal", None), "cost", "cheap")
        if cost != "cheap":  # a sandbox or a model call per pair: 8k+ calls would cost minutes
            return {"skipped": f"eval verifier cost '{cost}'"}
        rows = file_order(self.cfg.data)
        if rows is None or len(rows) < 8:
            return None
        where: dict = {}
        for k, r in enumerate(rows):
            where.setdefault(r["prompt"], k)
        train = self.splits.train
        rng = random.Random(self.cfg.seed * 1_000_003 + 29)
        pairs = []  # (position in the sample, shift or None for a random row, file row of the reference)
        for pos, i in enumerate(idx):
            k = where.get(train[i]["prompt"])
            if k is None:
                continue
            pairs += [(pos, s, k + s) for s in self.SHIFTS if 0 <= k + s < len(rows)]
            for _ in range(self.CHANCE_REFERENCES_PER_ROW):
                j = rng.randrange(len(rows))
                while abs(j - k) <= 2:
                    j = rng.randrange(len(rows))
                pairs.append((pos, None, j))
        verdicts = score(self.eval_verifier, make_items([texts[pos] for pos, _, _ in pairs],
                                                        [rows[j]["reference"] for _, _, j in pairs],
                                                        [train[idx[pos]]["prompt"] for pos, _, _ in pairs]),
                         1, self.cfg.eval.timeout_s)
        shifted = {s: [False] * len(idx) for s in self.SHIFTS}
        chance_k = chance_n = 0
        answers: dict = {}
        for (pos, s, j), v in zip(pairs, verdicts):
            if s is None:
                chance_k += passed(v)
                chance_n += 1
            elif passed(v):
                shifted[s][pos] = True
                answers[(pos, s)] = (v.answer_class, j)
        res = reference_shift(own, shifted, chance_k, chance_n, alpha)
        if res is not None:
            s = res["shift"]
            res["examples"] = [
                {"row": j - s, "prompt": str(train[idx[pos]]["prompt"])[:80], "answer": a,
                 "reference": rows[j - s]["reference"], "neighbour_row": j, "neighbour_reference": rows[j]["reference"]}
                for pos in range(len(idx)) if shifted[s][pos] and not own[pos]
                for a, j in [answers[(pos, s)]]][:3]
        return res

    def _consistency(self, heldout: dict, res: dict | None = None) -> str | None:
        """Pre-flight train/held-out consistency (monitor.consistency_alpha): the policy, before any update, answers
        twice as many training prompts as the held-out set has (a seeded sample), graded against their references with
        the held-out verifier and protocol (`res`: _consistency_eval's result, computed here when None). Two pass
        rates of one model on two splits of one task should agree; a two-sided Fisher exact p below alpha / 2
        means the training references do not fit their prompts (a misaligned column, another answer format) or the
        splits differ. The same answers fitting the references of neighbouring file rows better than their own, far
        above the coincidence rate (_shift_evidence, also at alpha / 2), means the references are shifted; the
        message then names the shift and example rows. Returns the fault message (None: consistent or ignored; an
        ignored one is recorded for the monitor's likely causes)."""
        from rlvr.monitor.heldout import fisher_two_sided_p

        mc = self.cfg.monitor
        n_eval = heldout.get("n", 0)
        if res is None:
            res = self._consistency_eval(n_eval)
        if res is None:
            return None
        p = fisher_two_sided_p(res["correct"], res["n"], heldout["correct"], n_eval)
        half = mc.consistency_alpha / 2  # two tests, each at alpha / 2: a consistent dataset stops at most alpha
        shift = res.get("shift")
        skipped = shift.get("skipped") if shift else None
        shift = None if skipped else shift
        said = (f"pre-flight: train/held-out consistency: the policy passes {res['correct']}/{res['n']} training "
                f"prompts against their references and {heldout['correct']}/{n_eval} held-out ones (Fisher p "
                f"{p:.2g}; fault below {half:g})")
        if shift is not None:
            said += (f"; its answers fit the references {abs(shift['shift'])} row(s) "
                     f"{'above' if shift['shift'] < 0 else 'below'} on {shift['k']}/{shift['n']} rows, random rows' on "
                     f"{shift['chance_k']}/{shift['chance_n']} (p {shift['p']:.2g}; fault below {half:g})")
        if skipped:
            said += f"; shifted-reference test skipped ({skipped})"
        self._say(said)
        shifted = shift is not None and shift["fired"]
        if p >= half and not shifted:
            return None
        causes = ("references misaligned with their prompts (a shifted or wrong data.reference_column), references "
                  "in another answer format than the verifier reads, or training and held-out data from different "
                  "distributions")
        if p < half:
            msg = (f"pre-flight: the policy passes {res['correct']}/{res['n']} training prompts against their "
                   f"references but {heldout['correct']}/{n_eval} held-out prompts (same model, same verifier, same "
                   f"protocol; two-sided Fisher exact p = {p:.2g} < monitor.consistency_alpha / 2 = {half:g}).")
        else:
            msg = (f"pre-flight: the policy passes {res['correct']}/{res['n']} training prompts against their "
                   f"references and {heldout['correct']}/{n_eval} held-out prompts (Fisher p = {p:.2g}, consistent "
                   f"on its own).")
        if shifted:
            s = shift["shift"]
            ex = "; ".join(f"row {x['row']} {x['prompt']!r}: answer {x['answer']}, its reference {x['reference']}, "
                           f"row {x['neighbour_row']}'s reference {x['neighbour_reference']}"
                           for x in shift["examples"])
            msg += (f" Its answers fit the reference of the row {abs(s)} {'above' if s < 0 else 'below'} in "
                    f"data.path on {shift['k']}/{shift['n']} sampled training rows, their own reference on "
                    f"{shift['own']}/{shift['n']}, and a random row's reference on {shift['chance_k']}/"
                    f"{shift['chance_n']} (one-sided Fisher exact p = {shift['p']:.2g}, Bonferroni over "
                    f"{len(self.SHIFTS)} shifts, < {half:g}): the references look shifted by {s:+d} row(s) against "
                    f"their prompts (an off-by-one join or a shifted column when the file was built; rows are 0-based "
                    f"in file order). For example: {ex}.")
            causes = (f"references shifted by {s:+d} row(s) against their prompts (fix the join or "
                      f"data.reference_column that built data.path)")
        msg += (f" Likely causes: {causes}; compare rows of consistency_step0.jsonl with eval_step0.jsonl. To train "
                f"anyway: monitor.preflight_ignore=[train_heldout_consistency]")
        if "train_heldout_consistency" in mc.preflight_ignore:
            log.warning("rlvr: pre-flight fault train_heldout_consistency ignored (monitor.preflight_ignore): %s", msg)
            if self.monitor is not None:
                self.monitor.data_findings.append(
                    f"broken training data: the base model passed {res['correct']}/{res['n']} training prompts "
                    f"against their references and {heldout['correct']}/{n_eval} held-out ones (p = {p:.2g})"
                    + (f"; its answers fit the references {shift['shift']:+d} row(s) away on {shift['k']}/"
                       f"{shift['n']} rows (p = {shift['p']:.2g}): shifted references" if shifted else ""))
            return None
        return msg

    def _start_probe(self, start: int) -> None:
        """The staleness probe (monitor.staleness_probe): the first 2 training prompts with their references in
        the tagged form as completions. At step 0 the initial policy's log-probs are recorded (kept in the monitor's
        state, so a resumed run compares with the same initial policy) and the engine's error measured."""
        self._probe = self._probe_start = None
        mc = self.cfg.monitor
        if (self.monitor is None or not mc.staleness_probe or self.dist.world_size > 1
                or self.parallel.sharded or not hasattr(self.engine, "score") or len(self.train_prompt_ids) < 1):
            return
        rows = [self.splits.train[i] for i in range(min(2, len(self.train_prompt_ids)))]
        comps = [self.tokenizer(f"<answer>{r['reference']}</answer>", add_special_tokens=False)["input_ids"]
                 for r in rows]
        self._probe = ([self.train_prompt_ids[i] for i in range(len(rows))], comps)
        if start == 0 or self.monitor.probe_initial is None:
            # asynchronous GRPO: the engine's side runs first on the rollout thread (vLLM compiles its log-prob
            # kernel at its first use, ~1 s in which this process computes nothing), beside the policy's side and
            # the initial evaluation when that does not use the rollout engine; recorded by _observe_probe_start
            # before the first step
            engine_lp = (self._submit(self._in_background, self.engine.score, *self._probe)
                         if self._eval_overlaps() else None)
            self.monitor.probe_initial = self._policy_logp(*self._probe)
            self._probe_start = engine_lp if engine_lp is not None else self.engine.score(*self._probe)

    def _observe_probe_start(self) -> None:
        """The staleness probe's step 0 (its engine side may still be on the rollout thread): the engine's error."""
        engine_lp, self._probe_start = self._probe_start, None
        if engine_lp is not None:
            engine_lp = engine_lp.result() if hasattr(engine_lp, "result") else engine_lp
            self.monitor.observe_engine(0, engine_lp, self.monitor.probe_initial, self.monitor.probe_initial)

    @torch.no_grad()
    def _policy_logp(self, prompts: list[list[int]], completions: list[list[int]]) -> list[list[float]]:
        """The trainer's policy's per-token log-probs (temperature 1) of `completions` after `prompts`."""
        from rlvr.forward import completion_logprobs

        lp, mask, _ = completion_logprobs(self.model, prompts, completions, 1, self.pad_id)
        return [row[: int(m.sum())].tolist() for row, m in zip(lp.float().cpu(), mask.cpu())]

    def _discard_run_dir(self) -> None:
        """Remove what this run wrote when it stops in pre-flight: the run dir if this run created it (a refused
        run leaves the disk as it was)."""
        import shutil

        if self.dist.is_main and self.created_run_dir and self.run_dir.is_dir():
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def _canaries(self, step: int) -> None:
        """Score the verifier canaries (rlvr/monitor/canaries.py) and hand the result to the monitor."""
        mc = self.cfg.monitor
        if self.monitor is None or not mc.canaries:
            return
        from rlvr.monitor.canaries import canaries_for, canary_rates, form_counts, run_canaries
        from rlvr.preflight import reward_tolerance

        canaries = canaries_for(self.cfg, self.splits.train, tolerance=reward_tolerance(self.reward))
        tallies: dict = {}
        report = run_canaries([(s.name, s.verifier, s.timeout_s) for s in self.reward.specs], canaries,
                              counts=tallies)
        self.monitor.check_canaries(step, report, len(canaries), form_counts(canaries),
                                    {n: canary_rates(t) for n, t in tallies.items()})

    def _wandb_sink(self):
        """A WandbSink when log.wandb is set (rank 0 only), else None."""
        if self.cfg.log.wandb is None:
            return None
        from rlvr.metrics import WandbSink

        return WandbSink(self.run_dir, self.cfg.log.wandb, self.cfg.model_dump(mode="json"), resume=self.cfg.resume)

    def _finish(self, evals: dict, stop_reason: str | None, write_final: bool) -> dict:
        """Rank 0 writes summary.json and, with `write_final`, the trained policy: `final_adapter/` (LoRA, peft) or
        `final_model/` (full fine-tune: a plain HF folder with the tokenizer), gathered from the shards under FSDP
        (a collective: every rank calls this). Every rank returns the summary."""
        summary = None
        lora = self.cfg.train.lora.enabled
        weights = (self.parallel.full_state_dict(self.model, trainable_only=lora)
                   if write_final and self.parallel.sharded else None)
        if self.dist.is_main:
            summary = self._summary(evals)
            if stop_reason:
                summary["stopped_by_monitor"] = stop_reason
            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
            from rlvr.artifacts import share_permissions, write_portable_base

            if write_final and lora:
                self.model.save_pretrained(self.run_dir / "final_adapter", state_dict=weights)
                write_portable_base(self.run_dir / "final_adapter", self.cfg.model)
            elif write_final:
                _save_hf_folder(self.model, self.tokenizer, self.run_dir / "final_model", weights)
            share_permissions(self.run_dir)
        return self.dist.broadcast_object(summary)

    def close(self) -> None:
        """Free the rollout engine now (vLLM: its engine core and its process groups, which must go before
        torchrun's default group is destroyed; otherwise vLLM's exit hook fails on the destroyed group), after the
        background generation of an asynchronous run has stopped."""
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)
        close = getattr(self.engine, "close", None)
        if close is not None:
            close()

    def _say(self, msg: str) -> None:
        if self.dist.is_main:
            _say(msg)

    def _summary(self, evals: dict) -> dict:
        rows = read_metrics(self.run_dir)
        rewards = [r["reward"] for r in rows]
        k = min(5, len(rewards) // 2)  # two windows that never overlap: 3 steps compare step 1 with step 3
        first, last = str(0), str(self.cfg.train.steps)
        summary = {
            "run_dir": str(self.run_dir), "model": self.cfg.model, "seed": self.cfg.seed,
            "steps": len(rows), "evals": evals,
            "heldout_pass@1_before": evals.get(first, {}).get("pass@1"),
            "heldout_pass@1_after": evals.get(last, {}).get("pass@1"),
            "heldout_n": evals.get(last, evals.get(first, {})).get("n"),
            "train_reward_first5": sum(rewards[:k]) / k if k else None,
            "train_reward_last5": sum(rewards[-k:]) / k if k else None,
            "train_reward_window": k,  # steps in each of the two means above (min(5, steps // 2))
            "critical_alerts": _critical_alerts(self.run_dir),
            "seconds_per_step_mean": sum(r["time/step"] for r in rows) / len(rows) if rows else None,
            "rollout_engine": self.engine_name, "rollout_dtype": self.rollout_precision.dtype,
            "device": str(self.device), "train_dtype": self.train_precision.dtype,
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
             f"(P*G*({plan['max_prompt_tokens']} prompt + {c.sampling.max_new_tokens} new)) | "
             f"{plan['optimizer_steps']} optimizer step(s)/batch{gen}"
             + (f" | WORLD_SIZE {plan['world_size']}: {plan['prompts'] // plan['world_size']} prompts/rank"
                if plan["world_size"] > 1 else ""))
        _say(f"rlvr: device {self.device} | train dtype {self.train_precision.dtype} ({self.train_precision.reason})"
             f" | rollout dtype {self.rollout_precision.dtype if self.engine_name == 'vllm' else self.train_precision.dtype}"
             f" ({self.rollout_precision.reason if self.engine_name == 'vllm' else 'the HF engine samples from the policy'})"
             f" | updates per batch {c.train.updates_per_batch} x {c.train.mini_batches} mini-batch(es)")
        _say(f"rlvr: algorithm: preset {a.preset} | advantage {a.advantage} | loss {a.loss} (epsilon {a.epsilon}/"
             f"{a.epsilon_high if a.epsilon_high is not None else a.epsilon}, beta {a.beta}) | group_filter "
             f"{a.group_filter} | overlong_mask {a.overlong_mask} | overlong_buffer {a.overlong_buffer}")


def _critical_alerts(run_dir) -> list[dict]:
    """The critical alerts that fired in this run (alerts.jsonl), each {step, name, rule, cleared_at}: a run that
    trained through one says so in summary.json and on the console."""
    from rlvr.monitor import read_alerts

    out: dict[tuple, dict] = {}
    for a in read_alerts(run_dir):
        key = (a.get("name"), a.get("rule"))
        if a.get("event") == "fired" and a.get("severity") == "critical":
            out[key] = {"step": a.get("step"), "name": a.get("name"), "rule": a.get("rule"), "cleared_at": None}
        elif a.get("event") == "cleared" and key in out and out[key]["cleared_at"] is None:
            out[key]["cleared_at"] = a.get("step")
    return sorted(out.values(), key=lambda a: (a["step"] or 0, a["name"] or ""))


def _save_hf_folder(model, tokenizer, folder, state_dict=None) -> None:
    """A plain HF folder (safetensors, config, tokenizer) that transformers and vLLM load. Under FSDP2 the module's
    class is FSDP's subclass of the model class: config.json names the model class itself."""
    import os
    import shutil
    import tempfile

    tmp = tempfile.mkdtemp(prefix=folder.name + ".tmp", dir=folder.parent)
    try:
        model.save_pretrained(tmp, state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        cls = next(c for c in type(model).__mro__ if not c.__name__.startswith("FSDP"))
        cfg_path = os.path.join(tmp, "config.json")
        cfg = json.loads(open(cfg_path).read())
        cfg["architectures"] = [cls.__name__]
        with open(cfg_path, "w") as f:
            json.dump(cfg, f, indent=2)
        if folder.exists():
            shutil.rmtree(folder)
        from rlvr.artifacts import share_permissions

        share_permissions(tmp)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _fmt_eval(e: dict) -> str:
    k = e.get("samples", 1)
    extra = f", {k} samples: pass@1 {e['pass@1_sampled']:.3f}, pass@{k} {e[f'pass@{k}']:.3f}" if k > 1 else ""
    return (f"{e['pass@1']:.3f} ({e['correct']}/{e['n']} problems, answer extracted {e['extracted_rate']:.0%}"
            f"{extra})")


_say = echo


def _progress(cfg: Config, start: int, enabled: bool = True):
    from tqdm import tqdm

    return tqdm(total=cfg.train.steps, initial=start, desc="GRPO", unit="step",
                disable=not (cfg.log.progress and enabled), dynamic_ncols=True)

