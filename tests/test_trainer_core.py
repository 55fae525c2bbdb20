"""Trainer core: device and precision from the hardware, one scoring path (pass/fail, pass@k, deadlines), and PPO
epochs that reuse a batch. Independent truths: the kernel's CPU flags, hand-computed binomials, a HumanEval program
that passes 10 of 12 tests, the math verifier's percent rule (it reads the prompt), and the PPO-epoch algorithm
re-done by hand with the registry's loss."""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlvr import hardware
from rlvr.batch import RolloutBatch
from rlvr.config import load_config
from rlvr.distributed import Dist
from rlvr.evaluation import evaluate, pass_k_values
from rlvr.rollouts.base import Completion, Group
from rlvr.scoring import make_items, pass_at_k, passed, score
from verifiers import SignalSpec, Verdict, Verifier

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------------------------- precision

def _cpu(monkeypatch, bf16: bool, amx: bool, capability: str):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)


@pytest.mark.parametrize("bf16, amx, capability, expected", [
    (True, False, "AVX512", "bfloat16"),   # e.g. AMD EPYC Zen 4 (avx512_bf16)
    (False, True, "AVX512", "bfloat16"),   # AMX tiles (Intel Sapphire Rapids)
    (False, False, "AVX2", "float32"),     # AVX2-only: bf16 matmul is emulated (0.7 vs 67.6 GFLOP/s measured)
    (False, False, "AVX512", "float32"),   # AVX-512 without bf16 (e.g. Zen 3 has none; Skylake-SP)
    (True, False, "AVX2", "float32"),      # bf16 in the CPU, but torch dispatches AVX2 kernels (ATEN_CPU_CAPABILITY)
])
def test_auto_dtype_follows_the_cpu_capability(monkeypatch, bf16, amx, capability, expected):
    _cpu(monkeypatch, bf16, amx, capability)
    p = hardware.resolve_dtype("auto", torch.device("cpu"))
    assert p.dtype == expected and p.reason.startswith("auto:")
    assert hardware.resolve_dtype("float32", torch.device("cpu")).dtype == "float32"  # explicit wins
    assert hardware.resolve_dtype("bfloat16", torch.device("cpu")).dtype == "bfloat16"


def test_auto_dtype_on_cuda_asks_the_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "FakeGPU")
    for ok, want in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda ok=ok: ok)
        assert hardware.resolve_dtype("auto", torch.device("cuda", 0)).dtype == want


def _kernel_says_bf16() -> bool:
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags |= set(line.split(":", 1)[1].split())
    return bool(flags & {"avx512_bf16", "amx_bf16"})


@pytest.mark.skipif(not Path("/proc/cpuinfo").exists(), reason="needs Linux /proc/cpuinfo")
def test_real_probe_agrees_with_the_kernels_cpu_flags():
    """The probe (torch's cpuinfo) against the kernel's own flag list, on whatever CPU runs this."""
    cap = torch.backends.cpu.get_cpu_capability()
    want = "bfloat16" if _kernel_says_bf16() and cap.startswith(("AVX512", "AMX")) else "float32"
    assert hardware.resolve_dtype("auto", torch.device("cpu")).dtype == want


def test_avx2_dispatch_turns_auto_to_float32_in_a_fresh_process():
    """ATEN_CPU_CAPABILITY=avx2 makes torch run AVX2 kernels (how an AVX2-only machine runs): auto must pick fp32."""
    code = "import torch; from rlvr.hardware import resolve_dtype; print(resolve_dtype('auto', torch.device('cpu')).dtype)"
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "ATEN_CPU_CAPABILITY": "avx2",
                                                             "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "float32"


# ---------------------------------------------------------------------------------------------- device

def test_resolve_device(monkeypatch):
    assert hardware.resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"train\.device = 'tpu'"):
        hardware.resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert hardware.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match=r"train\.device = 'cuda'.*not available.*train\.device=cpu"):
        hardware.resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert hardware.resolve_device("auto", local_rank=1) == torch.device("cuda", 1)  # torchrun: cuda:LOCAL_RANK
    assert hardware.resolve_device("cuda", local_rank=0) == torch.device("cuda", 0)
    assert hardware.resolve_device("cuda:1", local_rank=0) == torch.device("cuda", 1)
    with pytest.raises(ValueError, match=r"cuda:5 does not exist"):
        hardware.resolve_device("cuda:5")


def _overrides(model_dir, run_dir, *extra):
    return [f"model={model_dir}", f"run_dir={run_dir}", "data.train_size=16", "data.eval_size=2",
            "train.prompts_per_step=2", "train.group_size=4", "train.steps=1", "sampling.max_new_tokens=6",
            "log.progress=false", "log.tensorboard=false", "rollout.engine=hf", "eval.at_start=false",
            "eval.at_end=false", "monitor.enabled=false", *extra]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without CUDA")
def test_cuda_device_without_cuda_exits_2_naming_the_field(tiny_model_dir, tmp_path, capsys):
    from rlvr.cli import main as cli_main

    code = cli_main(["train", "recipes/basic_arithmetic.yaml",
                     *_overrides(tiny_model_dir, tmp_path / "r", "train.device=cuda")])
    assert code == 2
    assert "train.device = 'cuda': CUDA is not available" in capsys.readouterr().err


def test_cpu_run_logs_where_it_ran(tiny_model_dir, tmp_path):
    from rlvr.trainer import Trainer

    tr = Trainer(load_config("recipes/basic_arithmetic.yaml",
                             _overrides(tiny_model_dir, tmp_path / "r", "train.device=cpu", "train.lora.enabled=false",
                                        "algorithm.beta=0.1", "train.learning_rate=1e-3")))
    metrics, _ = tr.train_step(0)
    assert metrics["device"] == "cpu" and metrics["train_dtype"] == "float32"
    assert {p.device.type for p in tr.model.parameters()} == {"cpu"}
    assert {p.device.type for p in tr.ref_model.parameters()} == {"cpu"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (never required)")
def test_cuda_run_places_policy_reference_and_optimizer_state_on_the_gpu(tiny_model_dir, tmp_path):
    from rlvr.trainer import Trainer

    tr = Trainer(load_config("recipes/basic_arithmetic.yaml",
                             _overrides(tiny_model_dir, tmp_path / "r", "train.device=cuda", "train.lora.enabled=false",
                                        "algorithm.beta=0.1", "train.learning_rate=1e-3",
                                        "verifiers=[{name: 'tests.toy_verifiers:LengthVerifier'}]")))
    metrics, _ = tr.train_step(0)
    assert metrics["device"].startswith("cuda")
    assert {p.device.type for p in tr.model.parameters()} == {"cuda"}
    assert {p.device.type for p in tr.ref_model.parameters()} == {"cuda"}
    states = [t for st in tr.optimizer.state.values() for t in st.values() if torch.is_tensor(t) and t.dim()]
    assert states and {t.device.type for t in states} == {"cuda"}


# ---------------------------------------------------------------------------------------------- scoring

def test_pass_at_k_against_hand_computed_binomials():
    # 1 - C(n-c, k) / C(n, k), written out
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)          # C(3,2)=3, C(5,2)=10
    assert pass_at_k(10, 3, 5) == pytest.approx(1 - 21 / 252)       # C(7,5)=21, C(10,5)=252
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)                # pass@1 = c/n
    assert pass_at_k(4, 0, 3) == 0.0 and pass_at_k(4, 2, 3) == 1.0  # n - c < k: certain
    assert pass_at_k(200, 13, 100) == pytest.approx(1 - math.comb(187, 100) / math.comb(200, 100), rel=1e-12)
    with pytest.raises(ValueError):
        pass_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        pass_at_k(3, 1, 4)
    assert pass_k_values(8) == [2, 4, 8] and pass_k_values(5) == [2, 4, 5] and pass_k_values(1) == []


class _FixedEngine:
    """An engine that returns given texts: greedy[i] at temperature 0, sampled[i] (a list) otherwise."""

    def __init__(self, greedy, sampled=None):
        self.greedy, self.sampled = greedy, sampled

    def generate(self, prompts, n, params, seed, index_offset=0):
        out = []
        for i in range(len(prompts)):
            k = index_offset + i
            texts = [self.greedy[k]] * n if params.temperature == 0 else self.sampled[k][:n]
            out.append(Group(k, list(prompts[i]), [Completion([1], [0.0], t, "stop") for t in texts]))
        return out

    def update_weights(self, model):
        pass


def _humaneval_problem():
    from rlvr.config import DataConfig
    from rlvr.data import load_splits

    sp = load_splits(DataConfig(task=None, path="humaneval", eval_size=4))
    row = next(r for r in sp.eval if "def correct_bracketing" in r["prompt"])
    return row["prompt"], row["reference"]


PARTIAL = ("```python\ndef correct_bracketing(brackets: str):\n"
           "    return brackets.count('(') == brackets.count(')')\n```")  # ignores order: fails ")(" cases
CORRECT = ("```python\ndef correct_bracketing(brackets: str):\n    d = 0\n    for c in brackets:\n"
           "        d += 1 if c == '(' else -1\n        if d < 0:\n            return False\n    return d == 0\n```")


def test_humaneval_pass_at_1_counts_only_programs_passing_every_test(tmp_path):
    from verifiers import get_verifier

    prompt, ref = _humaneval_problem()
    code = get_verifier("code")
    try:
        v = code.verify(PARTIAL, ref, prompt=prompt)
        assert 0.5 < v.score < 1.0 and v.passed is False  # most tests pass: `score > 0.5` would call it solved
        res = evaluate(_FixedEngine([PARTIAL, CORRECT]), [[1], [2]], [ref, ref], code, 8, prompts=[prompt, prompt],
                       out_path=tmp_path / "e.jsonl")
    finally:
        getattr(code, "close", lambda: None)()
    assert res["pass@1"] == 0.5 and res["correct"] == 1
    rows = [json.loads(x) for x in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [r["passed"] for r in rows] == [False, True]


def test_training_and_evaluation_give_the_same_verdict_for_the_same_prompt(tmp_path):
    """The math verifier's percent rule reads the prompt: 0.25 answers 'What percent of 40 is 10?' (reference 25).
    Before the one scoring path, evaluation passed no prompt and scored it wrong while training scored it right."""
    from rlvr.config import VerifierRef
    from rlvr.trainer import build_reward
    from verifiers import get_verifier

    q, ref, text = "What percent of 40 is 10?", "25", "<answer>0.25</answer>"
    rewards, verdicts, _ = build_reward([VerifierRef(name="math")])(make_items([text, "<answer>4</answer>"],
                                                                               [ref, ref], [q, q]), 2)
    assert rewards.tolist() == [1.0, 0.0]
    res = evaluate(_FixedEngine([text]), [[1]], [ref], get_verifier("math"), 8, prompts=[q])
    assert res["pass@1"] == 1.0 and passed(verdicts[0])


def test_sampled_evaluation_reports_unbiased_pass_at_k():
    from verifiers import get_verifier

    right, wrong = "<answer>3</answer>", "<answer>9</answer>"
    eng = _FixedEngine([right, wrong], sampled=[[right, wrong, right, wrong], [wrong] * 4])
    res = evaluate(eng, [[1], [2]], ["3", "4"], get_verifier("math"), 8, prompts=["1+2?", "2+2?"], samples=4)
    assert res["pass@1"] == 0.5  # greedy: prompt 0 right, prompt 1 wrong
    assert res["pass@1_sampled"] == pytest.approx((2 / 4 + 0) / 2)
    assert res["pass@2"] == pytest.approx((1 - 1 / 6 + 0) / 2)  # c=2 of n=4: 1 - C(2,2)/C(4,2)
    assert res["pass@4"] == pytest.approx((1 + 0) / 2)


class _SleepsOnOneGroup(Verifier):
    name = "sleeps_on_b"
    signal = SignalSpec(kind="binary", deterministic=True, source="external", cost="cheap")

    def _verify(self, completion, reference, *, prompt=None):
        if prompt == "b":
            time.sleep(3600)
        return Verdict(float(completion == reference), completion == reference, completion)


def test_a_late_group_gets_timeout_verdicts_and_the_others_are_scored():
    v = _SleepsOnOneGroup()
    items = make_items(["x", "y", "x", "x", "y", "x"], ["x"] * 6, ["a", "a", "b", "b", "c", "c"])
    verdicts = score(v, items, 2, timeout_s=0.5)
    assert [vd.score for vd in verdicts] == [1.0, 0.0, 0.0, 0.0, 0.0, 1.0]
    assert [bool(vd.error and vd.error.startswith("timeout")) for vd in verdicts] == [False, False, True, True,
                                                                                    False, False]
    assert v.stats["timeouts"] == 2


def test_a_sleeping_plugin_verifier_times_out_and_the_run_finishes(tiny_model_dir, tmp_path):
    """`rlvr train` with a verifier that never answers: every verdict becomes a timeout, VERIFIER_FAULT fires
    (critical evidence), and the process exits 0 instead of hanging at `GRPO: 0/1`."""
    run = tmp_path / "r"
    cmd = [sys.executable, "-m", "rlvr.cli", "train", "recipes/basic_arithmetic.yaml",
           *_overrides(tiny_model_dir, run, "train.steps=3", "train.group_size=2", "monitor.enabled=true",
                       "verifiers=[{name: 'tests.toy_verifiers:SleepyVerifier', timeout_s: 0.5}]",
                       "monitor.preflight_ignore=[canary:toy_sleepy]")]  # else pre-flight stops it (exit 2)
    out = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    key = "rewards/toy_sleepy/timeout_rate"  # metrics are keyed by the verifier's own name
    assert [r[key] for r in rows] == [1.0, 1.0, 1.0]
    assert all(r["monitor/timeout_rate"] == 1.0 for r in rows)
    alerts = [json.loads(x) for x in (run / "alerts.jsonl").read_text().splitlines()]
    assert any(a["name"] == "VERIFIER_FAULT" and a["event"] == "fired" for a in alerts)


# ---------------------------------------------------------------------------------------------- PPO epochs

def _crafted_batch(tokenizer, G=4):
    g = torch.Generator().manual_seed(3)
    prompts = [tokenizer("Calculate 7 + 5.")["input_ids"], tokenizer("Calculate 2 - 1.")["input_ids"]]
    comps = [[Completion(torch.randint(10, 2000, (5 + (j % 3),), generator=g).tolist(), [0.0] * (5 + (j % 3)),
                         "t", "stop") for j in range(G)] for _ in prompts]
    for row in comps:
        for c in row:
            c.logprobs = [0.0] * len(c.token_ids)
    rewards = torch.tensor([[1.0, 0.0, 0.0, 1.0], [0.0, 0.0, 1.0, 0.0]])
    verdicts = [[Verdict(float(r), bool(r), None) for r in row] for row in rewards.tolist()]
    return RolloutBatch([0, 1], prompts, ["q0", "q1"], ["12", "1"], comps, rewards, verdicts)


def _updater(model, cfg, lr):
    from rlvr import algorithms
    from rlvr.parallel import Single
    from rlvr.update import PolicyUpdater

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr)
    parallel = Single(Dist(), torch.device("cpu"))
    parallel.wrap(model)
    return PolicyUpdater(model, opt, algorithms.get_policy_loss(cfg.algorithm.loss), cfg, parallel,
                         torch.device("cpu"), 0), opt


def _cfg(*extra):
    return load_config(None, ["train.learning_rate=0.02", "train.micro_batch_groups=1", *extra])


@pytest.mark.parametrize("loss", ["grpo", "gspo"])
def test_two_updates_per_batch_move_the_ratio_and_clip(tiny_model, tokenizer, loss):
    from rlvr import algorithms

    extra = [f"algorithm.loss={loss}"] + (["algorithm.epsilon=3e-4", "algorithm.epsilon_high=4e-4"]
                                          if loss == "gspo" else [])
    cfg = _cfg("train.updates_per_batch=2", *extra)
    batch = _crafted_batch(tokenizer).shape(algorithms.get_advantage("grpo"), cfg.algorithm, 24)
    hand = copy.deepcopy(tiny_model)
    up, _ = _updater(tiny_model, cfg, 0.02)
    m = up.update(batch)
    assert m["updates"] == 2.0
    assert m["clip_ratio/region"] > 0  # the second update sees ratio != 1 and clips

    # the same two updates by hand: pi_old once, then two AdamW steps against it (registry loss, same normaliser)
    from rlvr.forward import completion_logprobs

    loss_fn = algorithms.get_policy_loss(loss)
    opt = torch.optim.AdamW([p for p in hand.parameters() if p.requires_grad], lr=0.02)
    tokens = int((batch.lengths * batch.loss_weights).sum())

    def lp_of(model, i):
        return completion_logprobs(model, [batch.prompt_ids[i]], [c.token_ids for c in batch.completions[i]], 4, 0)

    with torch.no_grad():
        old = [lp_of(hand, i)[0] for i in range(2)]
    ratios = []
    for _ in range(2):
        opt.zero_grad()
        for i in range(2):
            lp, mask, _ = lp_of(hand, i)
            ratios.append(float(((lp.detach() - old[i]).exp() * mask).sum() / mask.sum()))
            li, _ = loss_fn(algorithms.LossInputs(lp, old[i], batch.advantages[i], mask, None, tokens, 8), cfg.algorithm)
            li.backward()
        torch.nn.utils.clip_grad_norm_([p for p in hand.parameters() if p.requires_grad], cfg.train.max_grad_norm)
        opt.step()
    assert ratios[:2] == [1.0, 1.0] and all(abs(r - 1) > 1e-3 for r in ratios[2:])
    for (n, a), b in zip(tiny_model.named_parameters(), hand.parameters()):
        # Tolerance 1% of lr: measured 0 (grpo) and 1.6e-3 * lr on one weight (gspo, where AdamW's
        # lr * m / (sqrt(v) + eps) amplifies float32 rounding on components whose gradient is ~eps). A wrong
        # pi_old (recomputed before each update) leaves the second update unclipped and moves weights by ~lr.
        assert torch.allclose(a, b, atol=1e-2 * 0.02), (n, float((a - b).abs().max()))


def test_one_update_per_batch_is_the_on_policy_step(tiny_model, tokenizer):
    """mu = 1: ratio exactly 1, so the token-level loss is -sum(A_i * tokens_i) / tokens and nothing clips."""
    from rlvr import algorithms

    cfg = _cfg()
    batch = _crafted_batch(tokenizer).shape(algorithms.get_advantage("grpo"), cfg.algorithm, 24)
    up, _ = _updater(tiny_model, cfg, 0.02)
    m = up.update(batch)
    want = -float((batch.advantages * batch.lengths).sum()) / float(batch.lengths.sum())
    assert m["updates"] == 1.0 and m["clip_ratio/region"] == 0.0
    assert m["loss"] == pytest.approx(want, abs=1e-6)


def test_mini_batches_split_the_groups_into_optimizer_steps(tiny_model, tokenizer):
    from rlvr import algorithms
    from rlvr.update import mini_batch_groups

    assert [list(r) for r in mini_batch_groups(8, 3)] == [[0, 1], [2, 3, 4], [5, 6, 7]]
    assert [list(r) for r in mini_batch_groups(2, 4)] == [[0], [1]]
    cfg = _cfg("train.mini_batches=2", "train.updates_per_batch=2")
    batch = _crafted_batch(tokenizer).shape(algorithms.get_advantage("grpo"), cfg.algorithm, 24)
    up, opt = _updater(tiny_model, cfg, 0.02)
    assert up.update(batch)["updates"] == 4.0
    assert max(s["step"] for s in opt.state.values()) == 4


@pytest.mark.parametrize("mu", [1, 2])
def test_micro_batches_shared_with_the_rollout_thread_equal_the_sequential_update(tiny_model, tokenizer, mu):
    """Asynchronous GRPO on CPU: once the rollout thread is free it computes some of the optimizer step's
    micro-batches (PolicyUpdater.helper / rlvr.sharing.shared_map), each returning its gradients, which are folded in micro-batch
    order. Loss, metrics and the updated weights must equal the same update computed by the main thread alone (to
    float32 rounding: a GEMM run beside another thread's may round differently), and both threads must have computed
    a micro-batch (the main thread's first one is slowed so the helper claims the second); against backward()'s
    accumulation they agree to float32 rounding."""
    import threading
    import time
    from concurrent.futures import Future, ThreadPoolExecutor

    from rlvr import algorithms

    cfg = _cfg(f"train.updates_per_batch={mu}")
    batch = _crafted_batch(tokenizer).shape(algorithms.get_advantage("grpo"), cfg.algorithm, 24)
    alone, backward = copy.deepcopy(tiny_model), copy.deepcopy(tiny_model)
    up_alone, _ = _updater(alone, cfg, 0.02)
    never = Future()
    never.set_result(None)
    up_alone.helper = lambda work: never  # a helper that is never free: the main thread computes every micro-batch
    up_backward, _ = _updater(backward, cfg, 0.02)  # no helper: backward() accumulates into .grad
    grads = {}  # the gradients at the first optimizer step (after clipping), from the same weights

    def capture(updater):
        step = updater.optimizer.step
        updater.optimizer.step = lambda *a, **k: (grads.setdefault(updater, [
            p.grad.clone() for p in updater.model.parameters() if p.requires_grad]), step(*a, **k))[1]

    up, _ = _updater(tiny_model, cfg, 0.02)
    for u in (up, up_alone, up_backward):
        capture(u)
    want = up_alone.update(batch)
    assert up_backward.update(batch) == pytest.approx(want, rel=1e-5, abs=1e-7)

    ran, main = [], threading.get_ident()
    micro_batch = up._micro_batch

    def traced(*a, **k):
        if threading.get_ident() == main and not ran:
            time.sleep(0.5)  # the helper claims micro-batch 1 meanwhile
        ran.append(threading.get_ident())
        return micro_batch(*a, **k)

    up._micro_batch = traced
    with ThreadPoolExecutor(1) as pool:
        n = torch.get_num_threads()  # as the trainer's rollout thread does (Trainer._in_background)
        up.helper = lambda work: pool.submit(lambda: (torch.set_num_threads(n), torch.set_grad_enabled(True), work()))
        got = up.update(batch)
    assert main in ran and len(set(ran)) == 2
    assert got == pytest.approx(want, rel=1e-6, abs=1e-9)
    names = [n for n, p in tiny_model.named_parameters() if p.requires_grad]
    for n, a, b, c in zip(names, grads[up], grads[up_alone], grads[up_backward]):
        # measured: every gradient bitwise equal except the tied embedding's (its 49k-row lm_head part differs by
        # <= 5e-13 when the other thread computed it beside this one's micro-batch; AdamW amplifies that on
        # components whose gradient is ~eps, so later updates are compared by their metrics)
        assert torch.allclose(a, b, rtol=0, atol=1e-10), n
        assert torch.allclose(a, c, rtol=0, atol=1e-8), n  # backward() may sum a tied weight's uses in another order


def test_an_error_in_a_shared_micro_batch_is_raised_on_the_main_thread():
    """rlvr.sharing.shared_map: results in order whichever thread computed them; an item's exception is raised on
    the calling thread at that item's turn, after the items before it."""
    from concurrent.futures import ThreadPoolExecutor

    from rlvr.sharing import shared_map

    def fn(k):
        if k == 3:
            raise RuntimeError("micro-batch 3 failed")
        return k

    with ThreadPoolExecutor(1) as pool:
        assert list(shared_map(fn, 3, pool.submit)) == [0, 1, 2]
        got = []
        with pytest.raises(RuntimeError, match="micro-batch 3 failed"):
            for x in shared_map(fn, 5, pool.submit):
                got.append(x)
        assert got == [0, 1, 2]
