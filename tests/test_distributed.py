"""Data-parallel training under torchrun (rlvr/distributed.py, rlvr/parallel.py): 2 CPU processes (gloo) give the
single-process run, with torch DDP (`train.parallelism: ddp`, the default) and FSDP2 (`fsdp`, tests/test_fsdp.py).

Each variant trains the tiny model 2 steps with P=4 prompts x G=4 samples, once with `torchrun --nproc_per_node=2`
(through the CLI) and once in this process, and compares the run directories: the sampled completions, rewards,
advantages and answer classes are identical; every logged metric agrees to 1e-5 relative (timings aside; loss and
grad_norm measured within 1e-7 relative); the final trainable weights agree to max |diff| <= 5% of the learning rate
per AdamW step of a batch.

Why a weight tolerance in units of lr: the recipe's 4 micro-batches (one group each) are summed as
((g0 + g1) + g2) + g3 in one process and (g0 + g1) + (g2 + g3) over 2 ranks, so gradients differ by float32
rounding (~1e-7 relative). AdamW's first steps move each weight by about lr * g / (|g| + eps), eps = 1e-8, which
amplifies that rounding on the few components whose gradient is itself ~eps. Measured, 2 steps: LoRA (lr 2e-4)
bitwise equal; full fine-tune (lr 1e-3) max |diff| 1.1e-5 = 1.1% of lr on 1 weight, 15 of 3.2M weights above 1e-7.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlvr.cli import main as cli_main
from rlvr.config import load_config
from rlvr.metrics import read_metrics
from rlvr.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent
WEIGHT_TOL_LR = 0.05  # max |w_2proc - w_1proc| over every trainable weight after 2 steps, in units of lr


def _overrides(model_dir, run_dir, *extra):
    return [f"model={model_dir}", f"run_dir={run_dir}", "data.train_size=24", "data.eval_size=4",
            "train.prompts_per_step=4", "train.group_size=4", "train.steps=2", "sampling.max_new_tokens=8",
            "log.progress=false", "log.tensorboard=false", "rollout.engine=hf", "eval.at_start=false",
            "rollout.max_staleness=0", *extra]  # on-policy unless a variant says otherwise (lora_async)


def _torchrun(overrides, nproc=2):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    for k in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(k, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "rlvr.cli", "train", "recipes/basic_arithmetic.yaml", *overrides]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out


def _rollouts(run_dir):
    return [json.loads(ln) for ln in (Path(run_dir) / "rollouts.jsonl").read_text().splitlines()]


def checkpoint_weights(run_dir, step: int = 2) -> dict[str, torch.Tensor]:
    """The trainable weights of checkpoint `step`, from either layout: trainable.safetensors, or FSDP2's dcp/ read
    with torch.distributed.checkpoint in one process (no process group)."""
    folder = Path(run_dir) / f"checkpoints/step_{step:06d}"
    if (folder / "trainable.safetensors").is_file():
        return load_file(str(folder / "trainable.safetensors"))
    import torch.distributed.checkpoint as dcp

    meta = dcp.FileSystemReader(str(folder / "dcp")).read_metadata().state_dict_metadata
    box = {"model": {k[len("model."):]: torch.empty(m.size, dtype=m.properties.dtype)
                     for k, m in meta.items() if k.startswith("model.")}}
    dcp.load(box, checkpoint_id=str(folder / "dcp"), no_dist=True)
    return box["model"]


def _assert_same_run(dp, single, lr, updates: int = 1):
    """`updates`: AdamW steps per batch. Each step can move a weight whose gradient is ~eps by up to ~lr on a float32
    rounding difference (see the module docstring), so the weight tolerance grows with the number of steps."""
    # sampling and verification: identical (per-prompt seeding does not depend on the split across ranks)
    a, b = _rollouts(dp), _rollouts(single)
    assert len(a) == len(b) == 2 * 4 * 4
    for x, y in zip(a, b):
        assert x.pop("advantage") == pytest.approx(y.pop("advantage"), abs=1e-6)
        assert x == y
    # metrics: the same keys (monitor's and eval's included, logged by rank 0 over the whole batch), same values
    ma, mb = read_metrics(dp), read_metrics(single)
    assert [r["step"] for r in ma] == [r["step"] for r in mb] == [1, 2]
    for ra, rb in zip(ma, mb):
        # the monitor's staleness probe runs in one process only (monitor.staleness_probe): its metrics are extra
        rb = {k: v for k, v in rb.items() if not k.startswith("sampling/probe_")}
        assert set(ra) == set(rb)
        for k in ra:
            if k.startswith("time/"):
                continue
            if isinstance(ra[k], float) and isinstance(rb[k], float):
                # sampling/*: the engine-vs-trainer log-prob gap is itself float32 rounding (~1e-6 nats); under
                # FSDP the trainer's forward runs on all-gathered copies of the weights, whose kernels round
                # differently by an ulp, so only its absolute size is compared
                tol = 1e-5 if k.startswith("sampling/") else 1e-7
                assert ra[k] == pytest.approx(rb[k], rel=1e-5, abs=tol, nan_ok=True), k
            else:  # None (an undefined estimate, written as null), ints, strings: exactly equal
                assert ra[k] == rb[k], (k, ra[k], rb[k])
    # weights: the 2-process checkpoint (rank 0's replica, or FSDP's shards) against the single process's
    wa, wb = checkpoint_weights(dp), checkpoint_weights(single)
    assert set(wa) == set(wb)
    diff = max(float((wa[k] - wb[k]).abs().max()) for k in wa)
    off = sum(int(((wa[k] - wb[k]).abs() > 1e-6).sum()) for k in wa)
    assert diff <= WEIGHT_TOL_LR * lr * updates and off <= 1e-4 * updates * sum(w.numel() for w in wa.values()), (
        diff, off)
    sa, sb = (json.loads((Path(d) / "summary.json").read_text()) for d in (dp, single))
    assert sa["steps"] == sb["steps"] == 2 and sa["heldout_pass@1_after"] == sb["heldout_pass@1_after"]
    return ma


@pytest.mark.parametrize("variant", [
    # LoRA; DAPO dynamic sampling (several generation rounds, each sharded and gathered), batch-std advantages
    # (global statistics), one group per micro-batch (each rank runs several; some may run none)
    ("lora", ["verifiers=[{name: 'tests.test_train:OddTieVerifier'}]", "algorithm.preset=dapo",
              "algorithm.scale_rewards=batch", "train.micro_batch_groups=1", "monitor.enabled=false"]),
    # full fine-tune with a KL reference model, the monitor on rank 0, held-out eval on rank 0
    ("full", ["verifiers=[{name: 'tests.toy_verifiers:LengthVerifier'}]", "train.lora.enabled=false",
              "train.learning_rate=1e-3", "algorithm.beta=0.05"]),
    # PPO epochs over mini-batches: 2 passes x 2 mini-batches = 4 AdamW steps per batch, each summed over ranks
    ("lora_mu2", ["verifiers=[{name: 'tests.toy_verifiers:LengthVerifier'}]", "train.updates_per_batch=2",
                  "train.mini_batches=2", "train.micro_batch_groups=1", "monitor.enabled=false"]),
    # asynchronous GRPO (rollout.max_staleness 1): step 2 trains on the batch sampled during step 1, the background
    # collection (DAPO rounds, each gathered over the side process group) runs beside DDP's all-reduce, and the
    # held-out evaluation on rank 0 overlaps it
    ("lora_async", ["verifiers=[{name: 'tests.test_train:OddTieVerifier'}]", "algorithm.preset=dapo",
                    "train.micro_batch_groups=1", "rollout.max_staleness=1", "rollout.importance_sampling=tis",
                    "eval.every=1", "monitor.enabled=false"]),
], ids=lambda v: v[0])
def test_two_processes_equal_one_process(tiny_model_dir, tmp_path, variant):
    name, extra = variant
    out = _torchrun(_overrides(tiny_model_dir, tmp_path / "dp", *extra))
    # one rank prints: every rlvr line once (rank 1's info lines are off, its progress bars disabled)
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("rlvr:")]
    assert lines and len(lines) == len(set(lines)), out.stdout
    assert sum(ln.startswith("rlvr: train ") for ln in lines) == 1
    cfg = load_config("recipes/basic_arithmetic.yaml", _overrides(tiny_model_dir, tmp_path / "one", *extra))
    Trainer(cfg).run()
    rows = _assert_same_run(tmp_path / "dp", tmp_path / "one", cfg.train.learning_rate,
                            cfg.train.updates_per_batch * cfg.train.mini_batches)
    assert any(r["trained_groups"] for r in rows) and all(r["grad_norm"] >= 0 for r in rows)
    if name == "lora":
        assert (tmp_path / "dp" / "final_adapter").is_dir()
        assert max(r["dynamic_sampling/rounds"] for r in rows) >= 2  # extra rounds happened
    elif name == "lora_async":
        assert [r["rollout/staleness"] for r in rows] == [0.0, 1.0] and "eval/pass@1" in rows[0]
    elif name == "lora_mu2":
        assert max(r["updates"] for r in rows) == 4.0  # and every rank took the same 4 steps (weights equal)
    else:
        assert "monitor/signal_entropy" in rows[0] and "eval/pass@1" in rows[-1]


def test_world_size_must_divide_prompts_per_step(tiny_model_dir, tmp_path, monkeypatch, capsys):
    """Checked before the process group is joined: every rank exits 2 with the fix, nothing hangs."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    code = cli_main(["train", "recipes/basic_arithmetic.yaml",
                     *_overrides(tiny_model_dir, tmp_path / "r", "train.prompts_per_step=3")])
    assert code == 2
    assert "train.prompts_per_step = 3 is not divisible by WORLD_SIZE = 2" in capsys.readouterr().err


def _helpers_worker(rank, port, out):
    import torch.distributed as dist

    from rlvr.distributed import Dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        d = Dist(rank, 2)
        stats = {"loss": 1.0 + rank, "sampling/logp_diff_max": 0.1 * (rank + 1), "sampling/is_ratio_min": 1.0 - rank}
        if rank == 0:
            stats["kl"] = 0.25
        out.put((rank, d.merge_stats(stats), d.shard(5),
                 d.broadcast_object({"stop": "x"} if rank == 0 else None), d.all_gather_object(rank * 2)))
    finally:
        dist.destroy_process_group()


def spawn_gloo(worker, n: int = 2) -> list:
    """Run `worker(rank, port, queue)` in n spawned processes (the worker joins a gloo group on 127.0.0.1:port and
    puts one result on the queue); returns the n results in arrival order, after every process exited 0."""
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(r, port, q)) for r in range(n)]
    for p in procs:
        p.start()
    got = [q.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    return got


def test_dist_helpers_on_two_gloo_processes():
    got = sorted(spawn_gloo(_helpers_worker))
    for rank, stats, shard, box, gathered in got:
        assert stats == pytest.approx({"loss": 3.0, "sampling/logp_diff_max": 0.2, "sampling/is_ratio_min": 0.0,
                                       "kl": 0.25})
        assert shard == (slice(0, 2) if rank == 0 else slice(2, 5))
        assert box == {"stop": "x"} and gathered == [0, 2]
