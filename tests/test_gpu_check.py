"""The GPU check (benchmarks/gpu/run.sh) on the CPU at toy sizes, so it cannot rot between GPU sessions.

`bash benchmarks/gpu/run.sh --emulate-gpu-site --cpu --tiny` runs every part of the GPU run (correctness check, rlvr
fsdp and ddp, TRL's GRPOTrainer, the JSON and markdown) with only the packages the GPU machine has plus the wheel list
(benchmarks/gpu/wheels.txt) importable, under `python -S`. About 100 s on 2 cores.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks" / "gpu"))

import bench  # noqa: E402


def test_flops_count_is_nemo_rl_qwen2_formula():
    shape = bench.SHAPES["qwen2.5-1.5b"]
    f = bench.flops_per_step(shape, 49152, 16, 8, 256, 512)
    L, h, ffn, V, s = 28, 1536, 8960, 49152, 768
    # nemo_rl/utils/flops_formulas.py qwen2(), one sequence of 768 tokens, times 128 sequences
    one = (3 * 2 * L * s * h * h * (3 + s / h * 2 * 0.5 + 1) + 3 * 2 * L * s * h * 3 * ffn + 3 * 2 * s * h * V)
    assert f["nominal"] == pytest.approx(128 * one, rel=1e-12)
    # rlvr runs each prompt once per group: 7/8 of the prompt tokens are not recomputed
    assert 0.6 < f["executed"] / f["nominal"] < 0.75
    assert f["executed_gqa"] < f["executed"]


@pytest.mark.skipif(importlib.util.find_spec("trl") is None,
                    reason="the check runs TRL's GRPOTrainer (pip install trl)")
def test_gpu_check_runs_on_cpu_tiny(tmp_path):
    out = tmp_path / "out"
    r = subprocess.run(["bash", str(ROOT / "benchmarks/gpu/run.sh"), "--emulate-gpu-site", "--cpu", "--tiny",
                        "--steps", "2", "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = json.loads((out / "gpu_check_cpu.json").read_text())
    md = (out / "gpu_check_cpu.md").read_text()
    assert "| run | s/step |" in md and "rlvr_fsdp" in md and "trl" in md

    for key in ("device_name", "versions", "shape", "vocab", "params", "batch", "flops_per_step", "flops_note",
                "peak_note", "runs", "ratios", "correctness", "goals", "wall_s"):
        assert key in report, key
    assert report["vocab"] == 49152  # SmolLM2's vocabulary
    b = report["batch"]
    for name in ("rlvr_fsdp", "rlvr_ddp", "trl"):
        run = report["runs"][name]
        assert "error" not in run, run
        for key in ("seconds_per_step", "steps_per_s", "rollout_tokens_per_s", "train_tokens_per_s", "generate_s",
                    "train_s"):
            assert run[key] and run[key] > 0, (name, key)
        assert report["ratios"][name] > 0
    for name in ("rlvr_fsdp", "rlvr_ddp"):
        run = report["runs"][name]
        assert run["fwd_bwd_s"] > 0 and run["tflops_fwd_bwd"] > 0
        for step in run["raw"]["per_step"]:  # completions forced to the full length, every group trained
            assert step["completion_tokens"] == b["P"] * b["G"] * b["completion_len"]
            assert step["updates"] == 1 and step["micro_batches"] == b["P"] // b["micro_batch_groups"]
        # the emulated GPU site: rlvr's pydantic comes from the wheel list's copy, not this machine's site-packages
        assert "rlvr-emulated-gpu" in run["raw"]["import_origins"]["pydantic"]["file"]
    assert report["runs"]["rlvr_fsdp"]["raw"]["strategy"] == "fsdp"
    assert report["runs"]["rlvr_ddp"]["raw"]["strategy"] == "single"  # ddp at world size 1: the plain module
    trl = report["runs"]["trl"]["raw"]
    assert trl["completion_lengths"] == [b["completion_len"]]
    assert trl["completions_scored"] == trl["completions_expected"]

    c = report["correctness"]
    assert c["passed"], c
    assert c["reference"] == "cpu_ddp" and c["candidates"] == ["cpu_fsdp"]
    for step in c["steps"]:
        cand = step["runs"]["cpu_fsdp"]
        assert cand["grad_tensors_compared"] > 0 and not cand["grad_tensors_missing"]
        assert cand["grad_rel_l2"] <= c["tolerances"]["grad_rel_l2"]
    assert report["goals"]["mfu_35pct"] is None  # no MFU claim from a CPU run
