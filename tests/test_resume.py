"""Exact resume after a real SIGKILL, and checkpoints that survive a full disk or an interrupted write."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlvr.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint
from rlvr.metrics import read_metrics

ROOT = Path(__file__).resolve().parents[1]


def _cmd(model_dir, run_dir, *extra):
    return [sys.executable, "-m", "rlvr.cli", "train", "recipes/basic_arithmetic.yaml", f"model={model_dir}",
            f"run_dir={run_dir}", "verifiers=[{name: 'tests.toy_verifiers:LengthVerifier'}]", "data.train_size=24",
            "data.eval_size=4", "train.prompts_per_step=2", "train.group_size=4", "sampling.max_new_tokens=8",
            "log.progress=false", "log.tensorboard=false", "rollout.engine=hf", "train.steps=6",
            "log.checkpoint_every=2", "log.keep_checkpoints=3", "eval.every=0", "train.learning_rate=5e-3", *extra]


def _strip(rows):
    return [{k: v for k, v in r.items() if not k.startswith("time/")} for r in rows]


def _rollouts(run_dir):
    return [json.loads(ln) for ln in (Path(run_dir) / "rollouts.jsonl").read_text().splitlines()]


def test_sigkill_mid_run_then_resume_equals_an_uninterrupted_run(tiny_model_dir, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    full = tmp_path / "full"
    subprocess.run(_cmd(tiny_model_dir, full), cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)

    run = tmp_path / "killed"
    proc = subprocess.Popen(_cmd(tiny_model_dir, run), cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    target = run / "checkpoints" / "step_000002" / "state.json"
    deadline = time.monotonic() + 240
    metrics = run / "metrics.jsonl"

    def logged():
        return len(metrics.read_text().splitlines()) if metrics.exists() else 0

    # kill after step 3 was logged (metrics and rollouts), past the step-2 checkpoint: the resumed run must drop
    # step 3's rows, not append a second copy
    while not (target.exists() and logged() >= 3) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)  # no cleanup, no atexit: whatever was half-written stays half-written
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    done_before_kill = len(read_metrics(run))
    assert 2 <= done_before_kill < 6, "the kill should land mid-run"

    r = subprocess.run(_cmd(tiny_model_dir, run, "resume=true"), cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert _strip(read_metrics(run)) == _strip(read_metrics(full))
    assert _rollouts(run) == _rollouts(full)
    a = load_file(str(full / "final_adapter" / "adapter_model.safetensors"))
    b = load_file(str(run / "final_adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (full, run))
    assert sa["train_reward_last5"] == sb["train_reward_last5"]


class _Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.arange(6, dtype=torch.float32).reshape(2, 3))


def _step(model, opt, k):
    opt.zero_grad()
    (model.w * (k + 1)).sum().backward()
    opt.step()


def test_disk_full_while_writing_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    model = _Net()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    _step(model, opt, 0)
    save_checkpoint(tmp_path, 1, model, opt, {"note": "good"})
    good_w = model.w.detach().clone()
    _step(model, opt, 1)

    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        real_save(obj, f, *a, **k)  # part of the file reaches the disk, then the device is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(tmp_path, 2, model, opt, {"note": "bad"})
    monkeypatch.setattr(torch, "save", real_save)

    ckpts = list_checkpoints(tmp_path)
    assert [p.name for p in ckpts] == ["step_000001"]
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_000001"]  # no temp left
    fresh, fresh_opt = _Net(), None
    fresh_opt = torch.optim.AdamW(fresh.parameters(), lr=0.1)
    state = load_checkpoint(ckpts[-1], fresh, fresh_opt)
    assert state["step"] == 1 and state["note"] == "good" and torch.equal(fresh.w, good_w)


def test_interrupted_write_leftovers_are_ignored(tmp_path):
    model = _Net()
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    _step(model, opt, 0)
    save_checkpoint(tmp_path, 2, model, opt, {})
    root = tmp_path / "checkpoints"
    # a process killed mid-write leaves its temporary folder, or (older layouts) a step folder without state.json
    partial = root / ".step_000004.abc123"
    partial.mkdir()
    (partial / "trainable.safetensors").write_bytes(b"\x00" * 10)
    (root / "step_000006").mkdir()
    (root / "step_000006" / "trainable.safetensors").write_bytes(b"garbage")
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_000002"]
    # the next save still works and prunes only complete checkpoints
    _step(model, opt, 1)
    save_checkpoint(tmp_path, 4, model, opt, {}, keep=1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_000004"]


def test_step_logs_drop_later_rows_and_a_torn_line_on_resume(tmp_path):
    from rlvr.metrics import open_step_log

    path = tmp_path / "rollouts.jsonl"
    path.write_text("".join(json.dumps({"step": s, "x": s}) + "\n" for s in (1, 2, 2, 3)) + '{"step": 4, "x"')
    with open_step_log(path, 2) as fh:
        fh.write(json.dumps({"step": 3, "x": "again"}) + "\n")
    assert [json.loads(ln) for ln in path.read_text().splitlines()] == [
        {"step": 1, "x": 1}, {"step": 2, "x": 2}, {"step": 2, "x": 2}, {"step": 3, "x": "again"}]
    open_step_log(path, None).close()  # a fresh run starts an empty log
    assert path.read_text() == ""
