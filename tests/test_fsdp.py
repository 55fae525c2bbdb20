"""FSDP2 (`train.parallelism: fsdp`, rlvr/parallel.py) on 2 CPU processes (gloo) against one process, and its
checkpoints: torch.distributed.checkpoint shards, exact resume after a SIGKILL, conversion to an HF folder.

Tolerances are those of tests/test_distributed.py (2-process DDP): rollouts and rewards identical, metrics to 1e-5
relative, weights within 5% of the learning rate per AdamW step of a batch (an FSDP LoRA run with 2 x 2 steps per
batch measured 2.2e-5 = 11% of lr on 3 weights with AVX2 kernels). FSDP changes only where the gradient sum happens (a
reduce-scatter per micro-batch instead of one all-reduce), so float32 summation order is the only difference.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlvr.config import load_config
from rlvr.errors import ConfigError
from rlvr.metrics import read_metrics
from rlvr.trainer import Trainer
from rlvr.update import balanced_deal
from tests.test_distributed import ROOT, _assert_same_run, _overrides, _torchrun, checkpoint_weights, spawn_gloo


def test_balanced_deal_pads_the_short_ranks():
    mbs = [[0], [1], [2]]  # 3 informative micro-batches over 2 ranks: ceil(3/2) = 2 each, rank 1 pads one
    assert balanced_deal(mbs, 0, 2) == [([0], False), ([1], False)]
    assert balanced_deal(mbs, 1, 2) == [([2], False), ([0], True)]
    # fewer micro-batches than ranks: the ranks without one run a padding copy, so every rank runs 1 pass
    assert balanced_deal([[5, 6]], 0, 3) == [([5, 6], False)]
    assert balanced_deal([[5, 6]], 2, 3) == [([5, 6], True)]
    # one process: no padding; no micro-batch at all: nothing to run anywhere (every rank skips the step)
    assert balanced_deal(mbs, 0, 1) == [(m, False) for m in mbs]
    assert balanced_deal([], 1, 2) == []
    for n in range(7):  # every rank runs the same count and the real ones cover each micro-batch exactly once
        deals = [balanced_deal([[i] for i in range(n)], r, 3) for r in range(3)]
        assert len({len(d) for d in deals}) == 1
        assert sorted(m[0] for d in deals for m, pad in d if not pad) == list(range(n))


@pytest.mark.parametrize("variant", [
    # LoRA over a sharded frozen base; uneven micro-batches (OddTieVerifier ties the groups of odd references, one
    # group per micro-batch), so a rank pads; 2 passes x 2 mini-batches (pi_old pass, padding in every update)
    ("lora", ["verifiers=[{name: 'tests.test_train:OddTieVerifier'}]", "train.micro_batch_groups=1",
              "train.updates_per_batch=2", "train.mini_batches=2", "monitor.enabled=false"]),
    # full fine-tune, KL to a sharded reference model, the monitor, held-out eval on gathered weights
    ("full", ["verifiers=[{name: 'tests.toy_verifiers:LengthVerifier'}]", "train.lora.enabled=false",
              "train.learning_rate=1e-3", "algorithm.beta=0.05", "train.micro_batch_groups=1"]),
], ids=lambda v: v[0])
def test_fsdp_two_processes_equal_one_process(tiny_model_dir, tmp_path, variant):
    name, extra = variant
    _torchrun(_overrides(tiny_model_dir, tmp_path / "fsdp", "train.parallelism=fsdp", *extra))
    cfg = load_config("recipes/basic_arithmetic.yaml", _overrides(tiny_model_dir, tmp_path / "one", *extra))
    Trainer(cfg).run()
    updates = cfg.train.updates_per_batch * cfg.train.mini_batches
    rows = _assert_same_run(tmp_path / "fsdp", tmp_path / "one", cfg.train.learning_rate, updates)
    ckpt = tmp_path / "fsdp" / "checkpoints" / "step_000002"
    assert sorted(p.name for p in (ckpt / "dcp").iterdir()) == [".metadata", "__0_0.distcp", "__1_0.distcp"]
    assert json.loads((ckpt / "state.json").read_text())["parallelism"] == "fsdp"
    if name == "lora":
        assert any(r["trained_groups"] % 2 for r in rows)  # an odd count of micro-batches: a rank padded
        assert max(r["updates"] for r in rows) >= 2.0
        from safetensors.torch import load_file

        a = load_file(str(tmp_path / "fsdp/final_adapter/adapter_model.safetensors"))
        b = load_file(str(tmp_path / "one/final_adapter/adapter_model.safetensors"))
        assert a.keys() == b.keys() and max(float((a[k] - b[k]).abs().max()) for k in a) <= 0.05 * 2e-4 * updates
    else:
        assert "monitor/signal_entropy" in rows[0] and "eval/pass@1" in rows[-1]
        final = _exported_logits_match(ckpt, tmp_path, checkpoint_weights(tmp_path / "one"))
        # the run's own final_model/ (gathered from the shards at the end) is the same plain HF folder
        from transformers import AutoModelForCausalLM

        own = AutoModelForCausalLM.from_pretrained(tmp_path / "fsdp" / "final_model").eval()
        assert json.loads((tmp_path / "fsdp/final_model/config.json").read_text())["architectures"] == [
            "LlamaForCausalLM"]
        with torch.no_grad():
            assert torch.equal(own(input_ids=_IDS).logits, final)


_IDS = torch.tensor([[1, 17, 345, 2044, 99, 7]])


def _exported_logits_match(ckpt, tmp_path, single_weights):
    """`rlvr export` of the FSDP2 checkpoint -> a plain HF folder transformers loads, giving the logits of the
    one-process run's final weights."""
    from transformers import AutoModelForCausalLM

    from rlvr.cli import main as cli_main

    out = tmp_path / "exported"
    assert cli_main(["export", str(ckpt), str(out)]) == 0
    exported = AutoModelForCausalLM.from_pretrained(out).eval()
    cfg = load_config(ckpt.parent.parent / "config.yaml")
    reference = AutoModelForCausalLM.from_pretrained(cfg.model).eval()
    reference.load_state_dict(single_weights, strict=False)
    with torch.no_grad():
        a, b = exported(input_ids=_IDS).logits, reference(input_ids=_IDS).logits
    assert float((a - b).abs().max()) <= 1e-3 * float(b.abs().max()), float((a - b).abs().max())
    return a


def _torchrun_cmd(overrides):
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "rlvr.cli",
            "train", "recipes/basic_arithmetic.yaml", *overrides]


def test_fsdp_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(tiny_model_dir, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    extra = ["verifiers=[{name: 'tests.toy_verifiers:LengthVerifier'}]", "train.parallelism=fsdp", "train.steps=5",
             "log.checkpoint_every=2", "log.keep_checkpoints=3", "train.learning_rate=5e-3", "eval.at_end=false",
             "train.micro_batch_groups=1"]
    full, run = tmp_path / "full", tmp_path / "killed"
    _torchrun(_overrides(tiny_model_dir, full, *extra))
    proc = subprocess.Popen(_torchrun_cmd(_overrides(tiny_model_dir, run, *extra)), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    target, metrics = run / "checkpoints" / "step_000002" / "state.json", run / "metrics.jsonl"
    deadline = time.monotonic() + 240
    while not (target.exists() and metrics.exists() and len(metrics.read_text().splitlines()) >= 3) \
            and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both ranks, mid-run, no cleanup
    proc.wait()
    assert 2 <= len(read_metrics(run)) < 5, "the kill should land mid-run"
    _torchrun(_overrides(tiny_model_dir, run, *extra, "resume=true"))

    def strip(rows):
        return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]

    assert strip(read_metrics(run)) == strip(read_metrics(full))
    a, b = checkpoint_weights(full, 5), checkpoint_weights(run, 5)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fsdp_refuses_a_low_precision_lora_base(tiny_model_dir, tmp_path):
    cfg = load_config("recipes/basic_arithmetic.yaml", _overrides(
        tiny_model_dir, tmp_path / "r", "train.parallelism=fsdp", "train.lora.base_dtype=bfloat16"))
    with pytest.raises(ConfigError, match=r"train\.lora\.base_dtype = 'bfloat16' with train\.parallelism=fsdp"):
        Trainer(cfg)


def test_resuming_across_layouts_names_the_fix(tiny_model_dir, tmp_path):
    """An FSDP2 checkpoint resumed by a one-process (ddp) run: refused with the parallelism that wrote it."""
    from rlvr.checkpoint import load_checkpoint

    ckpt = tmp_path / "checkpoints" / "step_000001"
    (ckpt / "dcp").mkdir(parents=True)
    (ckpt / "state.json").write_text(json.dumps({"step": 1, "torch_rng": [], "parallelism": "fsdp"}))
    with pytest.raises(ConfigError, match="resume it with train.parallelism=fsdp"):
        load_checkpoint(ckpt, None, None)


def _stream_worker(rank, port, out):
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    from rlvr.distributed import Dist
    from rlvr.parallel import FSDP
    from rlvr.rollouts.vllm import fsdp_weight_stream

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        model = _small_lora()
        model, _ = FSDP(Dist(rank, 2), torch.device("cpu")).wrap(model)
        layers = model.get_base_model().model.layers
        got, whole = {}, []
        for name, tensor in fsdp_weight_stream(model):
            got[name] = tensor.clone().tolist()
            whole.append(sum(not isinstance(l.self_attn.q_proj.base_layer.weight, DTensor) for l in layers))
        out.put((rank, got, max(whole), isinstance(layers[0].self_attn.q_proj.base_layer.weight, DTensor)))
    finally:
        dist.destroy_process_group()


def _small_lora():
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    base = LlamaForCausalLM(LlamaConfig(vocab_size=100, hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                        num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True))
    return get_peft_model(base.eval(), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                                  task_type="CAUSAL_LM", init_lora_weights=False))


def test_vllm_sync_from_fsdp_shards_is_layer_by_layer_and_exact():
    """What the vLLM engine is fed under FSDP2 (2 gloo ranks): exactly the LoRA-merged weights of the unsharded
    model, while at most one decoder layer is gathered at any moment, and every layer resharded afterwards."""
    from rlvr.rollouts.vllm import merged_state_dict

    ref = {k: v.tolist() for k, v in merged_state_dict(_small_lora()).items()}
    for rank, weights, most_whole, resharded in spawn_gloo(_stream_worker):
        assert set(weights) == set(ref) and all(weights[k] == ref[k] for k in ref), rank
        assert most_whole == 1 and resharded


def test_fsdp_with_the_vllm_engine_samples_what_ddp_samples(tiny_model_dir, tmp_path):
    """One process: FSDP2 over a 1-process group with the vLLM engine (synced layer by layer) gives the completions
    of the plain module, and after the first update the engine still samples from the trained weights."""
    pytest.importorskip("vllm")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    runs = {}
    for par in ("fsdp", "ddp"):
        run = tmp_path / par
        cmd = [sys.executable, "-m", "rlvr.cli", "train", "recipes/basic_arithmetic.yaml",
               *_overrides(tiny_model_dir, run, "rollout.engine=vllm", "rollout.dtype=float32",
                           f"train.parallelism={par}", "verifiers=[{name: 'tests.toy_verifiers:LengthVerifier'}]",
                           "eval.at_end=false")]
        r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
        assert r.returncode == 0, r.stderr[-3000:]
        runs[par] = run
    a, b = ([json.loads(ln) for ln in (runs[p] / "rollouts.jsonl").read_text().splitlines()] for p in runs)
    assert [x["completion"] for x in a] == [x["completion"] for x in b]
    rows = read_metrics(runs["fsdp"])
    assert rows[-1]["sampling/logp_diff_max"] < 1e-4  # step 2 sampled from the weights step 1 trained
