"""Asynchronous GRPO (rollout.max_staleness, issue 25): the batch of step s+1 is collected while step s trains.

* max_staleness 0 is today's on-policy step, bit for bit: a tiny run reproduces the metrics committed in
  tests/data/on_policy_tiny_metrics.json, written by `python tests/test_async.py` on the commit before the
  asynchronous path existed (2026-12-06, 212f06e).
* max_staleness 1: step 0 trains on its own batch (staleness 0), every later step on the batch sampled by the policy
  before the previous update (staleness 1), and the loss weights each token by the truncated importance ratio
  pi_old / pi_behaviour computed by hand here (AReaL's decoupled PPO objective, arXiv 2505.24298 eq. 5).
* exact resume after kill -9 holds (the pending batch is checkpointed); torchrun with 2 processes equals 1.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlvr.config import load_config
from rlvr.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "data" / "on_policy_tiny_metrics.json"


def _overrides(model_dir, run_dir, *extra):
    return [f"model={model_dir}", f"run_dir={run_dir}", "verifiers=[{name: 'tests.toy_verifiers:LengthVerifier'}]",
            "data.train_size=24", "data.eval_size=4", "train.prompts_per_step=2", "train.group_size=4",
            "sampling.max_new_tokens=8", "log.progress=false", "log.tensorboard=false", "rollout.engine=hf",
            "train.steps=4", "log.checkpoint_every=2", "log.keep_checkpoints=3", "eval.every=2",
            "train.learning_rate=5e-3", *extra]


def _strip(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def _train(model_dir, run_dir, *extra):
    from rlvr.trainer import Trainer

    tr = Trainer(load_config("recipes/basic_arithmetic.yaml", _overrides(model_dir, run_dir, *extra)))
    try:
        summary = tr.run()
    finally:
        tr.close()
    return tr, summary


def _close(a, b, key, rel=1e-5):
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=rel, abs=1e-6, nan_ok=True)
    return a == b


def test_max_staleness_0_reproduces_the_committed_on_policy_run(tiny_model_dir, tmp_path):
    _, summary = _train(tiny_model_dir, tmp_path / "run", "rollout.max_staleness=0")
    want = json.loads(FIXTURE.read_text())
    got = _strip(read_metrics(tmp_path / "run"))
    assert len(got) == len(want["metrics"])
    # every sampled token, reward, advantage and count equal; floats to float32 rounding: the HF engine's
    # shared-prefix prefill (after the fixture) rounds differently by ~1e-7 (noise-level values such as the loss,
    # ~5e-8, and logp_diff_mean, ~4e-7, move by that much), and CI's AVX2 pass dispatches other kernels (measured
    # up to 1.3e-5 relative on the probe's log-prob distances)
    for g, w in zip(got, want["metrics"]):
        assert set(w) <= set(g), set(w) - set(g)  # metrics added since the fixture are not compared
        bad = [k for k in w if not _close(g[k], w[k], k, rel=1e-4)]
        assert not bad, [(k, g[k], w[k]) for k in bad]
    rows = [json.loads(x) for x in (tmp_path / "run" / "rollouts.jsonl").read_text().splitlines()]
    assert [(r["completion"], r["reward"]) for r in rows] == [tuple(x) for x in want["rollouts"]]
    assert summary["heldout_pass@1_after"] == want["heldout_pass@1_after"]
    assert "rollout/staleness" not in got[0]


def test_max_staleness_1_trains_step_s_on_the_batch_sampled_before_update_s_minus_1(tiny_model_dir, tmp_path):
    tr, _ = _train(tiny_model_dir, tmp_path / "async", "rollout.max_staleness=1", "rollout.importance_sampling=tis",
                   "rollout.importance_sampling_cap=1000", "monitor.enabled=false")
    rows = read_metrics(tmp_path / "async")
    assert [r["rollout/staleness"] for r in rows] == [0.0, 1.0, 1.0, 1.0]
    on = _strip(read_metrics(tmp_path / "async"))
    # step 0 is the on-policy step (same batch, same update) as the synchronous run's
    _train(tiny_model_dir, tmp_path / "sync", "rollout.max_staleness=0", "rollout.importance_sampling=tis",
           "rollout.importance_sampling_cap=1000", "monitor.enabled=false")
    off = _strip(read_metrics(tmp_path / "sync"))
    # (the asynchronous HF engine samples from a copy of the policy: its log-probs agree to float32 rounding)
    first = {k: v for k, v in on[0].items() if k != "rollout/staleness"}
    assert set(first) == set(off[0]) and all(_close(first[k], off[0][k], k) for k in first), (first, off[0])
    # step 1's batch differs from the synchronous run's: it was sampled by the initial policy, not the updated one
    a = [json.loads(x) for x in (tmp_path / "async" / "rollouts.jsonl").read_text().splitlines()]
    b = [json.loads(x) for x in (tmp_path / "sync" / "rollouts.jsonl").read_text().splitlines()]
    assert [r["completion"] for r in a if r["step"] == 1] == [r["completion"] for r in b if r["step"] == 1]
    assert [r["completion"] for r in a if r["step"] == 2] != [r["completion"] for r in b if r["step"] == 2]


def test_the_stale_batch_is_weighted_by_the_hand_computed_importance_ratio(tiny_model_dir, tmp_path):
    """A crafted two-step case: the batch of step 1 was sampled by pi_0 (the initial policy) and trains pi_1.
    By hand: w_t = min(pi_1(y_t) / pi_0(y_t), cap) with pi_0 the initial weights, pi_1 after one update; the
    loss of the single update (ratio 1 at pi_old = pi_1) is -sum_t w_t A_i / tokens."""
    from rlvr.forward import completion_logprobs
    from rlvr.trainer import Trainer

    cfg = load_config("recipes/basic_arithmetic.yaml", _overrides(
        tiny_model_dir, tmp_path / "r", "rollout.max_staleness=1", "rollout.importance_sampling=tis",
        "rollout.importance_sampling_cap=1.05", "monitor.enabled=false", "train.steps=2", "eval.at_start=false",
        "eval.at_end=false", "eval.every=0", "train.learning_rate=0.05", "train.max_grad_norm=100"))
    tr = Trainer(cfg)
    pi0 = {n: p.detach().clone() for n, p in tr.model.named_parameters() if p.requires_grad}
    seen = {}
    real_update = tr.updater.update

    def spy(batch, **kw):
        if "pi1" not in seen and len(seen.get("batches", [])) == 1:  # step 1: record pi_1 before its update
            seen["pi1"] = {n: p.detach().clone() for n, p in tr.model.named_parameters() if p.requires_grad}
        seen.setdefault("batches", []).append(batch)
        out = real_update(batch, **kw)
        seen.setdefault("metrics", []).append(out)
        return out

    tr.updater.update = spy
    tr.run()
    tr.close()
    batch = seen["batches"][1]

    def logp(weights):
        with torch.no_grad():
            for n, p in tr.model.named_parameters():
                if n in weights:
                    p.copy_(weights[n])
        prompts = [batch.prompt_ids[i] for i in range(batch.n_groups)]
        comps = [c.token_ids for i in range(batch.n_groups) for c in batch.completions[i]]
        lp, mask, _ = completion_logprobs(tr.model, prompts, comps, batch.group_size, tr.pad_id, 1.0)
        return lp, mask

    lp0, mask = logp(pi0)
    lp1, _ = logp(seen["pi1"])
    engine = torch.zeros_like(lp0)
    for r, c in enumerate(c for i in range(batch.n_groups) for c in batch.completions[i]):
        engine[r, : len(c.logprobs)] = torch.tensor(c.logprobs)
    m = mask.float()
    # the engine sampled with pi_0: its log-probs are pi_0's (HF engine, same weights, same function)
    assert float(((engine - lp0).abs() * m).max()) < 1e-5
    assert float(((lp1 - lp0).abs() * m).max()) > 1e-3, "the update must have moved the policy"
    ratio = torch.exp(lp1 - lp0)
    w = ratio.clamp(max=1.05) * m
    n = m.sum()
    adv = batch.advantages.reshape(-1, 1)
    keep = (adv != 0).float()  # zero-variance groups are skipped; the loss is over every token of the step
    loss = float(-(w * adv * keep).sum() / (batch.lengths.float() * batch.loss_weights).sum())
    got = seen["metrics"][1]
    assert got["sampling/tis_weight_mean"] == pytest.approx(float(w.sum() / n), rel=1e-4)
    assert got["sampling/tis_clipped_frac"] == pytest.approx(float(((ratio > 1.05).float() * m).sum() / n), abs=1e-6)
    assert got["loss"] == pytest.approx(loss, rel=1e-4, abs=1e-7)


def _cmd(model_dir, run_dir, *extra):
    return [sys.executable, "-m", "rlvr.cli", "train", "recipes/basic_arithmetic.yaml",
            *_overrides(model_dir, run_dir, "train.steps=6", "eval.every=0", "rollout.max_staleness=1",
                        # the moment training takes the idle core depends on timing, and torch does not promise
                        # bitwise-equal kernels across thread counts: the bit-for-bit resume pins one count
                        "rollout.importance_sampling=tis", "threads_alone=1", *extra)]


def test_sigkill_then_resume_with_max_staleness_1_equals_an_uninterrupted_run(tiny_model_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    full = tmp_path / "full"
    subprocess.run(_cmd(tiny_model_dir, full), cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    assert (full / "checkpoints" / "step_000004" / "pending_batch.pt").is_file()

    run = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(tiny_model_dir, run), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    target = run / "checkpoints" / "step_000002" / "state.json"
    metrics = run / "metrics.jsonl"
    deadline = time.monotonic() + 240

    def logged():
        return len(metrics.read_text().splitlines()) if metrics.exists() else 0

    while not (target.exists() and logged() >= 3) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert 2 <= len(read_metrics(run)) < 6, "the kill should land mid-run"
    r = subprocess.run(_cmd(tiny_model_dir, run, "resume=true"), cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _strip(read_metrics(run)) == _strip(read_metrics(full))
    ra = (full / "rollouts.jsonl").read_text()
    assert (run / "rollouts.jsonl").read_text() == ra
    from safetensors.torch import load_file

    a = load_file(str(full / "final_adapter" / "adapter_model.safetensors"))
    b = load_file(str(run / "final_adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_training_takes_the_idle_core_once_the_next_batch_is_ready():
    """_idle_core: while the other thread computes, this thread's work keeps `threads`; the first block of the
    policy it enters after the other thread is idle (forward pre-hook) or the first block the backward pass reaches
    (hook on the block's output) raises torch's intra-op threads to threads_alone, the first block after the other
    thread started again lowers it, and leaving the block restores `threads`. Nothing changes without a rollout thread, off CPU, or when threads_alone <= threads."""
    import threading
    import types
    from types import SimpleNamespace

    from rlvr.trainer import Trainer

    seen = []

    class Block(torch.nn.Linear):
        def forward(self, x):
            seen.append(torch.get_num_threads())
            return super().forward(x)

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.ModuleList([Block(4, 4) for _ in range(3)]))
    model.forward = lambda x: model[0][2](model[0][1](model[0][0](x)))
    idle = threading.Event()
    def trainer(**kw):
        t = SimpleNamespace(**{"device": torch.device("cpu"), "cfg": SimpleNamespace(threads=1, threads_alone=3),
                               "executor": object(), "model": model, **kw})
        t._threads_alone = types.MethodType(Trainer._threads_alone, t)
        return t

    tr = trainer()
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        with Trainer._idle_core(tr, idle.is_set) as took:  # forward: the other thread finishes during block 0
            model[0][0].register_forward_hook(lambda *a: idle.set())
            model(torch.ones(1, 4))
            assert seen == [1, 3, 3] and len(took) == 1
        assert torch.get_num_threads() == 1
        model[0][0]._forward_hooks.clear()
        idle.clear()
        seen.clear()
        with Trainer._idle_core(tr, idle.is_set) as took:  # backward: it finishes between forward and backward
            y = model(torch.ones(1, 4, requires_grad=True)).sum()
            idle.set()
            assert took == []
            y.backward()
            assert seen == [1, 1, 1] and len(took) == 1 and torch.get_num_threads() == 3
        assert torch.get_num_threads() == 1
        with Trainer._idle_core(tr, idle.is_set) as took:  # already idle on entry
            assert len(took) == 1 and torch.get_num_threads() == 3
            seen.clear()  # the other thread starts again during block 0 (a shared item): from block 1, `threads`
            hook = model[0][0].register_forward_hook(lambda *a: idle.clear())
            model(torch.ones(1, 4))
            hook.remove()
            assert seen == [3, 1, 1] and torch.get_num_threads() == 1 and len(took) == 1
        for off in (trainer(executor=None), trainer(device=torch.device("meta")),
                    trainer(cfg=SimpleNamespace(threads=1, threads_alone=1))):
            with Trainer._idle_core(off, idle.is_set) as took:
                model(torch.ones(1, 4))
                assert took == [] and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_the_rollout_thread_generates_some_heldout_batches_with_the_same_completions(tiny_model, tokenizer, tmp_path):
    """Asynchronous GRPO on CPU: once free, the rollout thread generates some of the held-out evaluation's batches
    (Trainer.evaluate passes rlvr.sharing.shared_map as evaluate's map_batches). Greedy and seeded-sampled
    completions, verdicts and the file written equal the evaluation by one thread, and both threads generated a
    batch (the main thread's first batch is slowed so that the other thread claims the second)."""
    import functools
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from rlvr.evaluation import evaluate
    from rlvr.rollouts.hf import HFEngine
    from rlvr.sharing import shared_map
    from verifiers import get_verifier

    pairs = [(1, 2), (3, 4), (5, 6), (17, 9), (40, 2), (8, 8), (2, 90)]
    questions = [f"Calculate {a} + {b}." for a, b in pairs]
    prompts = [tokenizer(q)["input_ids"] for q in questions]
    refs = [str(a + b) for a, b in pairs]
    engine = HFEngine(tiny_model, tokenizer)

    def run(out, map_batches=None):
        res = evaluate(engine, prompts, refs, get_verifier("math"), 8, batch_size=2, out_path=out, prompts=questions,
                       samples=3, temperature=1.0, seed=7, keep_completions=True, map_batches=map_batches)
        return {k: v for k, v in res.items() if k != "tokens_per_s"}, out.read_text()

    want = run(tmp_path / "alone.jsonl")
    main, ran, generate = threading.get_ident(), [], engine.generate

    def traced(*a, **k):
        if threading.get_ident() == main and not ran:
            time.sleep(0.5)  # the other thread claims batch 1 meanwhile
        ran.append(threading.get_ident())
        return generate(*a, **k)

    engine.generate = traced
    with ThreadPoolExecutor(1) as pool:
        n = torch.get_num_threads()  # as the trainer's rollout thread does (Trainer._in_background)
        helper = lambda work: pool.submit(lambda: (torch.set_num_threads(n), work()))  # noqa: E731
        got = run(tmp_path / "shared.jsonl", functools.partial(shared_map, helper=helper))
    assert main in ran and len(set(ran)) == 2 and len(ran) == 8  # 4 greedy + 4 sampled batches
    assert got == want


def test_the_first_engine_probe_runs_on_the_rollout_thread_and_is_recorded_before_step_1(tiny_model_dir, tmp_path):
    """The staleness probe's step-0 engine score (vLLM compiles a kernel at its first log-prob call) runs on the
    rollout thread, beside the initial evaluation; the monitor still records it as step 0's engine error, so step
    1 reports the engine's distance to its step-0 scores."""
    import threading

    from rlvr.trainer import Trainer

    cfg = load_config("recipes/basic_arithmetic.yaml", _overrides(tiny_model_dir, tmp_path / "r", "train.steps=1"))
    tr = Trainer(cfg)
    calls, score = [], tr.engine.score

    def traced(*a):
        calls.append(threading.current_thread().name)
        return score(*a)

    tr.engine.score = traced
    try:
        tr.run()
    finally:
        tr.close()
    assert calls and calls[0].startswith("rlvr-rollout")
    assert tr.monitor.probe_engine0 is not None
    row = read_metrics(tmp_path / "r")[0]
    assert row["sampling/probe_engine_vs_step0"] >= 0.0 and row["rollout/staleness"] == 0.0


def test_the_consistency_preflight_reads_the_untrained_policy_beside_the_first_update(tiny_model_dir, tmp_path,
                                                                                      monkeypatch):
    """Asynchronous GRPO runs the first update's forwards beside the consistency pre-flight, which reads the same
    policy on the rollout thread: the optimizer step must wait for it. The evaluation is delayed here so that the
    update would step first; its answers must equal the on-policy run's, whose pre-flight runs before any update
    (with lr 0.05 one step changes the tiny model's greedy answers)."""
    from rlvr.trainer import Trainer

    evaluate_consistency = Trainer._consistency_eval

    def late(self, n_eval):
        time.sleep(3)
        return evaluate_consistency(self, n_eval)

    monkeypatch.setattr(Trainer, "_consistency_eval", late)
    extra = ("train.steps=2", "eval.every=0", "eval.at_end=false", "train.learning_rate=0.05",
             "rollout.importance_sampling=tis", "monitor.consistency_alpha=1e-300")
    tr, _ = _train(tiny_model_dir, tmp_path / "async", "rollout.max_staleness=1", *extra)
    _train(tiny_model_dir, tmp_path / "sync", "rollout.max_staleness=0", *extra)
    assert tr.updater.before_optimizer_step is None  # the wait is only for the first update
    a, b = (tmp_path / d / "consistency_step0.jsonl" for d in ("async", "sync"))
    assert [json.loads(x)["completion"] for x in a.read_text().splitlines()] == \
        [json.loads(x)["completion"] for x in b.read_text().splitlines()]


def test_max_staleness_needs_the_importance_correction(tiny_model_dir, tmp_path):
    from rlvr.errors import ConfigError
    from rlvr.trainer import Trainer

    cfg = load_config("recipes/basic_arithmetic.yaml", _overrides(tiny_model_dir, tmp_path / "x",
                                                                  "rollout.max_staleness=1",
                                                                  "rollout.importance_sampling=none"))
    with pytest.raises(ConfigError, match="rollout.importance_sampling=tis"):
        Trainer(cfg)
    assert not (tmp_path / "x").exists()


if __name__ == "__main__":  # write the on-policy fixture (run on the commit before the asynchronous path)
    import tempfile

    from transformers import LlamaConfig, LlamaForCausalLM

    from rlvr.models import load_tokenizer, resolve_model
    from rlvr.trainer import Trainer

    torch.set_num_threads(1)
    tok = load_tokenizer(resolve_model("smollm2-135m-instruct"))
    torch.manual_seed(0)  # the model of tests/conftest.py's tiny_model_dir
    c = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                    num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024,
                    tie_word_embeddings=True, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                    pad_token_id=tok.pad_token_id)
    d = Path(tempfile.mkdtemp())
    LlamaForCausalLM(c).save_pretrained(d / "m")
    tok.save_pretrained(d / "m")
    tr = Trainer(load_config("recipes/basic_arithmetic.yaml", _overrides(d / "m", d / "run")))
    s = tr.run()
    FIXTURE.write_text(json.dumps({"cpu_capability": torch.backends.cpu.get_cpu_capability(),
                                   "metrics": _strip(read_metrics(d / "run")),
                                   "rollouts": [[r["completion"], r["reward"]] for r in map(json.loads, (
                                       d / "run" / "rollouts.jsonl").read_text().splitlines())],
                                   "heldout_pass@1_after": s["heldout_pass@1_after"]}, indent=1) + "\n")
    print("wrote", FIXTURE)
