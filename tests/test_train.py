"""End-to-end training on a tiny random model: finite loss, changing weights, crash safety, exact resume."""

import json
import math

import pytest
import torch

from rlvr.checkpoint import list_checkpoints
from rlvr.config import load_config
from rlvr.errors import ConfigError
from rlvr.metrics import read_metrics
from rlvr.monitor import read_alerts
from rlvr.trainer import Trainer


def _cfg(model_dir, run_dir, *extra):
    return load_config("recipes/basic_arithmetic.yaml", [
        f"model={model_dir}", f"run_dir={run_dir}", "verifiers=[{name: 'tests.toy_verifiers:LengthVerifier'}]",
        "data.train_size=24", "data.eval_size=4", "train.prompts_per_step=2", "train.group_size=4",
        "sampling.max_new_tokens=8", "log.progress=false", "log.tensorboard=false", "rollout.engine=hf",
        "rollout.max_staleness=0", *extra])  # the on-policy step (tests/test_async.py covers max_staleness 1)


def _strip_times(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def test_two_steps_full_finetune_change_weights(tiny_model_dir, tmp_path):
    cfg = _cfg(tiny_model_dir, tmp_path / "run", "train.steps=2", "train.lora.enabled=false",
               "train.learning_rate=1e-3", "eval.at_start=false")
    tr = Trainer(cfg)
    before = {n: p.detach().clone() for n, p in tr.model.named_parameters()}
    summary = tr.run()
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert math.isfinite(r["loss"]) and r["grad_norm"] > 0 and r["trained_groups"] >= 1
        assert 0 <= r["frac_reward_zero_std"] <= 1 and r["completions/max_length"] <= 8
        assert r["sampling/logp_diff_max"] < 1e-3  # engine and trainer agree on the sampled tokens
    changed = [n for n, p in tr.model.named_parameters() if not torch.equal(before[n], p.detach())]
    assert len(changed) == len(before)
    assert summary["heldout_n"] == 4 and summary["heldout_pass@1_before"] is None
    assert (tmp_path / "run" / "summary.json").exists() and (tmp_path / "run" / "config.yaml").exists()
    lines = (tmp_path / "run" / "rollouts.jsonl").read_text().splitlines()
    assert len(lines) == 2 * 2 * 4 and {"completion", "reward", "advantage"} <= set(json.loads(lines[0]))
    # the run ends with a plain HF folder of the trained policy, which `rlvr eval RUN` loads
    from transformers import AutoModelForCausalLM

    from rlvr.artifacts import load_trained

    final = AutoModelForCausalLM.from_pretrained(tmp_path / "run" / "final_model").eval()
    assert all(torch.equal(p, dict(tr.model.named_parameters())[n]) for n, p in final.named_parameters())
    assert load_trained(str(tmp_path / "run"), torch.device("cpu")).source.startswith("final model")


def test_lora_trains_only_the_adapter_and_kl_runs(tiny_model_dir, tmp_path):
    cfg = _cfg(tiny_model_dir, tmp_path / "run", "train.steps=1", "algorithm.beta=0.05", "eval.at_start=false",
               "eval.at_end=false")
    tr = Trainer(cfg)
    base = {n: p.detach().clone() for n, p in tr.model.named_parameters() if not p.requires_grad}
    lora = {n: p.detach().clone() for n, p in tr.model.named_parameters() if p.requires_grad}
    assert lora and all("lora_" in n for n in lora)
    metrics, _ = tr.train_step(0)
    assert math.isfinite(metrics["kl"]) and metrics["kl"] >= 0
    assert all(torch.equal(base[n], p) for n, p in tr.model.named_parameters() if n in base)
    assert any(not torch.equal(lora[n], p) for n, p in tr.model.named_parameters() if n in lora)


class _Crash(RuntimeError):
    pass


@pytest.mark.parametrize("updates", [[], ["train.updates_per_batch=2", "train.mini_batches=2"]],
                         ids=["mu1", "mu2_minibatch2"])
def test_crash_keeps_metrics_and_checkpoint_then_resume_is_exact(tiny_model_dir, tmp_path, monkeypatch, updates):
    # monitor.no_signal_max=1.0 makes NO_SIGNAL's condition hold every step, so with window 3 it fires at step 3:
    # the run crashes after the step-2 checkpoint, so the resumed run fires it on time only if the alert window
    # (streak 2) came back from the checkpoint. With mu = 2 and 2 mini-batches (4 AdamW steps per batch) resume
    # is exact too: the optimizer state in the checkpoint is all the updates carry over.
    steps = ["train.steps=4", "log.checkpoint_every=2", "monitor.no_signal_max=1.0", *updates]
    # uninterrupted reference run
    Trainer(_cfg(tiny_model_dir, tmp_path / "ref", *steps)).run()
    ref = read_metrics(tmp_path / "ref")
    assert [r["step"] for r in ref] == [1, 2, 3, 4]
    ref_alerts = read_alerts(tmp_path / "ref")
    assert [(a["step"], a["name"], a["event"]) for a in ref_alerts if a["name"] == "NO_SIGNAL"] == [
        (3, "NO_SIGNAL", "fired")]
    assert [r["alerts/NO_SIGNAL"] for r in ref] == [0.0, 0.0, 1.0, 1.0]
    assert all("monitor/signal_entropy" in r and "monitor/closure_ratio" in r for r in ref)
    assert max(r["updates"] for r in ref) == (4.0 if updates else 1.0)  # optimizer steps per batch

    # a run that dies during step 3
    tr = Trainer(_cfg(tiny_model_dir, tmp_path / "run", *steps))
    real = tr.train_step

    def dying(step):
        if step == 2:
            raise _Crash("killed")
        return real(step)

    monkeypatch.setattr(tr, "train_step", dying)
    with pytest.raises(_Crash):
        tr.run()
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [1, 2]
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step_000002"]

    # resume in a fresh trainer: steps 3 and 4 equal the uninterrupted run exactly
    summary = Trainer(_cfg(tiny_model_dir, tmp_path / "run", *steps, "resume=true")).run()
    got = read_metrics(tmp_path / "run")
    assert [r["step"] for r in got] == [1, 2, 3, 4]
    assert _strip_times(got) == _strip_times(ref)  # monitor/* and alerts/* included
    assert read_alerts(tmp_path / "run") == ref_alerts
    assert summary["heldout_pass@1_before"] == json.loads((tmp_path / "ref" / "summary.json").read_text())[
        "heldout_pass@1_before"]


def test_interrupted_checkpoint_write_is_ignored(tiny_model_dir, tmp_path):
    Trainer(_cfg(tiny_model_dir, tmp_path / "run", "train.steps=2", "log.checkpoint_every=1",
                 "eval.at_start=false", "eval.at_end=false")).run()
    root = tmp_path / "run" / "checkpoints"
    (root / ".step_000003.tmpx").mkdir()  # a write that died before its rename
    (root / "step_000004").mkdir()  # a folder without state.json
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step_000001", "step_000002"]


def test_monitor_stops_a_self_sourced_recipe_before_training(tiny_model_dir, tmp_path):
    cfg = _cfg(tiny_model_dir, tmp_path / "run", "train.steps=2", "verifiers=[{name: majority_vote}]",
               "monitor.stop_on_critical=true")
    summary = Trainer(cfg).run()
    assert summary["stopped_by_monitor"] == "CLOSED_LOOP (declared_self) at step 0"
    assert read_metrics(tmp_path / "run") == [] and list_checkpoints(tmp_path / "run") == []
    assert [(a["name"], a["rule"], a["severity"]) for a in read_alerts(tmp_path / "run")] == [
        ("CLOSED_LOOP", "declared_self", "critical")]


def test_monitor_stop_on_critical_keeps_a_checkpoint(tiny_model_dir, tmp_path):
    """A verifier that errors on every item: VERIFIER_FAULT (critical) fires at step 3 (window 3); the run stops
    there with a checkpoint and the reason in summary.json. (Canaries off: with them this verifier is stopped at
    step 0, before any training; tests/test_monitor_canaries.py.)"""
    cfg = _cfg(tiny_model_dir, tmp_path / "run", "train.steps=6", "log.checkpoint_every=0",
               "verifiers=[{name: 'tests.toy_verifiers:FailingVerifier'}]", "monitor.stop_on_critical=true",
               "eval.at_start=false", "monitor.canaries=false")
    summary = Trainer(cfg).run()
    assert summary["stopped_by_monitor"] == "VERIFIER_FAULT (error_rate) at step 3"
    assert [r["step"] for r in read_metrics(tmp_path / "run")] == [1, 2, 3]
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step_000003"]
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["stopped_by_monitor"].startswith("VERIFIER")


def test_monitor_disabled_logs_no_monitor_metrics(tiny_model_dir, tmp_path):
    Trainer(_cfg(tiny_model_dir, tmp_path / "run", "train.steps=1", "monitor.enabled=false", "eval.at_start=false",
                 "eval.at_end=false")).run()
    row = read_metrics(tmp_path / "run")[0]
    assert not [k for k in row if k.startswith(("monitor/", "alerts/"))]
    assert not (tmp_path / "run" / "alerts.jsonl").exists()


def test_training_with_the_vllm_engine_keeps_engine_and_trainer_in_sync(tiny_model_dir, tmp_path):
    """Two steps through colocated vLLM: after each optimizer step the engine gets the new weights, so the next
    step's sampled-token log-probs agree with the trainer's (fp32) and TIS weights stay ~1."""
    pytest.importorskip("vllm")
    cfg = _cfg(tiny_model_dir, tmp_path / "run", "train.steps=2", "rollout.engine=vllm", "rollout.dtype=float32",
               "rollout.importance_sampling=tis", "train.learning_rate=5e-3", "eval.at_start=false",
               "eval.at_end=false")
    tr = Trainer(cfg)
    assert tr.engine_name == "vllm"
    tr.run()
    rows = read_metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2]
    trained = [r for r in rows if r["trained_groups"]]
    assert trained, "the toy reward should give at least one informative group"
    for r in trained:
        assert r["sampling/logp_diff_max"] < 1e-3 and r["sampling/kl"] < 1e-6
        assert abs(r["sampling/tis_weight_mean"] - 1.0) < 1e-3 and r["time/sync"] >= 0
    assert tr._eval_engine() is tr.engine  # fp32 engine = the policy: evaluation samples from it too


def test_bf16_vllm_engine_mismatch_is_measured_and_eval_uses_the_policy(tiny_model_dir, tmp_path):
    """The default recipe's setting: vLLM samples in bf16 from the fp32 policy. The mismatch is real (logp_diff well
    above the fp32 level of 1e-5) and visible in the metrics; the held-out evaluation runs on the policy itself
    (HF engine, fp32), not on the rounded copy."""
    pytest.importorskip("vllm")
    from rlvr.rollouts import HFEngine

    cfg = _cfg(tiny_model_dir, tmp_path / "run", "train.steps=1", "rollout.engine=vllm", "rollout.dtype=bfloat16",
               "rollout.importance_sampling=tis", "eval.at_end=false")
    tr = Trainer(cfg)
    assert isinstance(tr._eval_engine(), HFEngine) and tr._eval_engine() is tr._eval_engine()
    tr.run()
    (r,) = read_metrics(tmp_path / "run")
    assert r["trained_groups"] > 0  # the length reward varies within groups
    assert r["sampling/logp_diff_mean"] > 1e-4
    # the default recipe samples in bf16 only where the CPU computes it natively (auto; rlvr/hardware.py)
    from rlvr.build import resolve_placement
    from rlvr.hardware import cpu_bf16_support

    recipe = load_config("recipes/basic_arithmetic.yaml")
    assert recipe.rollout.dtype == "auto" and recipe.train.device == "auto"
    if not torch.cuda.is_available():
        assert resolve_placement(recipe)[2].dtype == ("bfloat16" if cpu_bf16_support()[0] else "float32")


# ---------------------------------------------------------------------------------------------- DAPO / GSPO / plan

from verifiers import SignalSpec, Verdict, Verifier  # noqa: E402

from rlvr import algorithms  # noqa: E402
from rlvr.trainer import batch_plan, check_batch_config  # noqa: E402


class OddTieVerifier(Verifier):
    """Ties every group whose reference is odd (score 0), else the toy length score: some groups carry no signal."""

    name = "toy_odd_tie"
    signal = SignalSpec(kind="graded", deterministic=True, source="external", cost="cheap")

    def _verify(self, completion, reference, *, prompt=None):
        score = 0.0 if int(reference) % 2 else (len(completion) % 5) / 4
        return Verdict(score=score, passed=None, answer_class=completion[:3] or None)


def _odd_tie_cfg(tiny_model_dir, run_dir, *extra):
    return _cfg(tiny_model_dir, run_dir, "verifiers=[{name: 'tests.test_train:OddTieVerifier'}]",
                "eval.at_start=false", "eval.at_end=false", "monitor.enabled=false", *extra)


def test_dapo_dynamic_sampling_refills_informative_groups_deterministically(tiny_model_dir, tmp_path, capsys):
    cfg = _odd_tie_cfg(tiny_model_dir, tmp_path / "a", "algorithm.preset=dapo", "algorithm.max_extra_rounds=4")
    assert cfg.algorithm.group_filter == "dynamic_sampling" and cfg.algorithm.epsilon_high == 0.28
    tr = Trainer(cfg)
    first = tr.sampler.indices(0)
    # precondition: round 0 has a tied (odd-reference) prompt, so the batch must be refilled from extra rounds
    assert any(int(tr.splits.train[i]["reference"]) % 2 for i in first)
    metrics, records = tr.train_step(0)
    rounds = int(metrics["dynamic_sampling/rounds"])
    assert rounds >= 2 and metrics["dynamic_sampling/prompts_sampled"] == 2 * rounds
    assert metrics["dynamic_sampling/filled_tied"] == 0
    assert metrics["trained_groups"] == 2 and metrics["informative_group_frac"] == 1.0
    assert len(records) == 2 * 4
    picked = list(dict.fromkeys(r["prompt_index"] for r in records))
    assert all(int(tr.splits.train[i]["reference"]) % 2 == 0 for i in picked)  # no tied group was trained on
    drawn = list(first)
    for r in range(1, rounds):
        drawn += tr.sampler.extra_indices(0, r, exclude=drawn)
    assert set(picked) <= set(drawn) and not set(picked) <= set(first)
    tr._print_plan()
    out = capsys.readouterr().out
    assert "P=2 prompts x G=4 = 8 completions/step" in out and "up to 5 rounds = 40 completions" in out

    again_metrics, again = Trainer(_odd_tie_cfg(tiny_model_dir, tmp_path / "b", "algorithm.preset=dapo",
                                                "algorithm.max_extra_rounds=4")).train_step(0)
    assert again == records  # same (seed, step): same extra prompts, completions, rewards, advantages
    assert _strip_times([again_metrics]) == _strip_times([metrics])


def test_overlong_penalty_and_mask_reach_the_advantage_and_loss(tiny_model_dir, tmp_path):
    cfg = _cfg(tiny_model_dir, tmp_path / "run", "algorithm.advantage=dr_grpo", "algorithm.loss=gspo",
               "algorithm.overlong_buffer=4", "algorithm.overlong_penalty_factor=0.5", "algorithm.overlong_mask=true",
               "eval.at_start=false", "eval.at_end=false", "monitor.enabled=false")
    tr = Trainer(cfg)
    seen = []
    real = tr.engine.generate

    def spy(*a, **k):
        out = real(*a, **k)
        seen.extend(out)
        return out

    tr.engine.generate = spy
    metrics, records = tr.train_step(0)
    lengths = [len(c.token_ids) for g in seen for c in g.completions]
    # L_max 8, L_cache 4, factor 0.5: penalty 0.5 * (4 - L) / 4 for L in 5..8, else 0
    pen = [0.5 * (4 - n) / 4 if n > 4 else 0.0 for n in lengths]
    assert metrics["overlong/penalty_mean"] == pytest.approx(sum(pen) / len(pen), abs=1e-6)
    assert any(p < 0 for p in pen)  # the tiny random model runs into the cap
    truncated = [r["finish_reason"] == "length" for r in records]
    assert metrics["overlong/masked_frac"] == pytest.approx(sum(truncated) / len(truncated))
    kept_tokens = sum(n for n, t in zip(lengths, truncated) if not t)
    assert metrics["num_tokens"] == kept_tokens
    for gi in range(2):  # dr_grpo on shaped rewards: (r + p) - mean(r + p)
        shaped = [records[gi * 4 + j]["reward"] + pen[gi * 4 + j] for j in range(4)]
        want = [x - sum(shaped) / 4 for x in shaped]
        assert [records[gi * 4 + j]["advantage"] for j in range(4)] == pytest.approx(want, abs=1e-6)
    assert math.isfinite(metrics["loss"])


def test_batch_plan_numbers_and_errors_name_the_fields(tiny_model_dir, tmp_path, monkeypatch):
    cfg = load_config(None, ["train.prompts_per_step=8", "train.group_size=4", "train.micro_batch_groups=3",
                             "sampling.max_new_tokens=24"])
    plan = batch_plan(cfg, max_prompt_tokens=100, world_size=1)
    assert (plan["completions"], plan["micro_batches"], plan["max_tokens"]) == (32, 3, 8 * 4 * (100 + 24))
    assert plan["max_generation_rounds"] == 1
    dapo = load_config(None, ["algorithm.preset=dapo", "algorithm.max_extra_rounds=2"])
    assert batch_plan(dapo, 10, world_size=1)["max_completions_generated"] == 3 * 8 * 8
    assert batch_plan(cfg, 100, world_size=4)["world_size"] == 4
    with pytest.raises(ConfigError, match=r"train\.prompts_per_step = 8 is not divisible by WORLD_SIZE = 3.*e\.g\. 6 "
                                          r"or 9"):
        check_batch_config(cfg, world_size=3)
    with pytest.raises(ConfigError, match=r"algorithm\.overlong_buffer = 24 .*sampling\.max_new_tokens = 24"):
        check_batch_config(load_config(None, ["algorithm.overlong_buffer=24"]), world_size=1)
    # Trainer start: the checks and the registry names fail before anything is loaded
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ConfigError, match="WORLD_SIZE = 3"):
        Trainer(_cfg(tiny_model_dir, tmp_path / "r1"))
    monkeypatch.delenv("WORLD_SIZE")
    for field, known in (("advantage", "rloo"), ("loss", "gspo"), ("group_filter", "dynamic_sampling")):
        with pytest.raises(ConfigError, match=rf"algorithm\.{field} = 'nope'.*{known}"):
            Trainer(_cfg(tiny_model_dir, tmp_path / "r2", f"algorithm.{field}=nope"))
    assert set(algorithms.GROUP_FILTERS) >= {"none", "dynamic_sampling"}


def test_monitor_sees_the_unfiltered_first_round_under_dynamic_sampling(tiny_model_dir, tmp_path):
    """Dynamic sampling trains only on informative groups; the monitor must still see the i.i.d. first round (with
    its tied groups), or NO_SIGNAL could never fire and every variance-based estimate would be inflated."""
    cfg = _cfg(tiny_model_dir, tmp_path / "run", "verifiers=[{name: 'tests.test_train:OddTieVerifier'}]",
               "eval.at_start=false", "eval.at_end=false", "algorithm.preset=dapo", "algorithm.max_extra_rounds=4")
    tr = Trainer(cfg)
    seen = {}
    real = tr.monitor.observe

    def spy(step, rewards, *a, **k):
        seen["rewards"] = rewards.clone()
        return real(step, rewards, *a, **k)

    tr.monitor.observe = spy
    first = tr.sampler.indices(0)
    metrics, records = tr.train_step(0)
    assert metrics["informative_group_frac"] == 1.0  # the trained batch: informative groups only
    r = seen["rewards"]
    assert r.shape == (len(first), 4)
    tied = [(row.max() == row.min()).item() for row in r]
    odd = [int(tr.splits.train[i]["reference"]) % 2 == 1 for i in first]
    assert tied == odd and any(tied)  # the monitor got round 0 as drawn, tied (odd-reference) groups included


def test_lora_over_a_bf16_frozen_base(tiny_model_dir, tmp_path):
    """QLoRA-style on CPU (train.lora.base_dtype=bfloat16): the frozen base is stored in bf16 (half the memory), the
    adapters train in fp32, and a step changes only the adapters; 4/8-bit bases need CUDA and say so."""
    cfg = _cfg(tiny_model_dir, tmp_path / "run", "train.steps=1", "train.lora.base_dtype=bfloat16",
               "eval.at_start=false", "eval.at_end=false", "train.learning_rate=5e-3")
    tr = Trainer(cfg)
    frozen = {n: p for n, p in tr.model.named_parameters() if not p.requires_grad}
    trained = {n: p for n, p in tr.model.named_parameters() if p.requires_grad}
    assert frozen and all(p.dtype == torch.bfloat16 for p in frozen.values())
    assert trained and all(p.dtype == torch.float32 for p in trained.values())
    base_mib = sum(p.numel() * p.element_size() for p in frozen.values()) / 2**20
    fp32_mib = sum(p.numel() * 4 for p in frozen.values()) / 2**20
    assert base_mib == pytest.approx(fp32_mib / 2)
    before = {n: p.detach().clone() for n, p in tr.model.named_parameters()}
    tr.run()
    (row,) = read_metrics(tmp_path / "run")
    assert math.isfinite(row["loss"]) and row["trained_groups"] > 0
    after = dict(tr.model.named_parameters())
    assert all(torch.equal(before[n], after[n]) for n in frozen)
    assert any(not torch.equal(before[n], after[n]) for n in trained)
    if not torch.cuda.is_available():
        from rlvr.errors import UserError

        with pytest.raises(UserError, match="needs .*CUDA|bitsandbytes"):
            Trainer(_cfg(tiny_model_dir, tmp_path / "q", "train.lora.base_dtype=nf4"))
    with pytest.raises(ConfigError, match="train.lora.base_dtype"):
        Trainer(_cfg(tiny_model_dir, tmp_path / "x", "train.lora.base_dtype=bfloat16", "train.lora.enabled=false"))
