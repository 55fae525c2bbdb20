"""`rlvr eval` and `rlvr export` on a real (tiny) trained run: the run's own held-out completions are reproduced
exactly, a merged export gives the trained policy's logits in plain transformers (and vLLM's greedy completion),
and bad input exits 2 with one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rlvr.cli import main as cli_main
from rlvr.config import load_config
from rlvr.trainer import Trainer


def _train(model_dir, run_dir):
    over = [f"model={model_dir}", f"run_dir={run_dir}", "data.train_size=16", "data.eval_size=6",
            "train.prompts_per_step=2", "train.group_size=4", "train.steps=2", "sampling.max_new_tokens=8",
            "log.progress=false", "log.tensorboard=false", "rollout.engine=hf", "monitor.enabled=false",
            "train.learning_rate=5e-2", "verifiers=[{name: 'tests.toy_verifiers:LengthVerifier'}]",
            "log.checkpoint_every=2"]
    return Trainer(load_config("recipes/basic_arithmetic.yaml", over)).run()


@pytest.fixture(scope="module")
def trained_run(tiny_model_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "r"
    summary = _train(tiny_model_dir, run)
    return run, summary


def _completions(path):
    return [json.loads(x)["completion"] for x in Path(path).read_text().splitlines()]


@pytest.mark.parametrize("which", ["run", "final_adapter", "checkpoint"])
def test_eval_reproduces_the_runs_own_heldout_evaluation(trained_run, tmp_path, which, capsys):
    run, summary = trained_run
    target = {"run": run, "final_adapter": run / "final_adapter",
              "checkpoint": run / "checkpoints" / "step_000002"}[which]
    out = tmp_path / "ev"
    assert cli_main(["eval", str(target), "--out", str(out), "--no-progress"]) == 0
    s = json.loads((out / "eval_summary.json").read_text())
    assert s["pass@1"] == summary["heldout_pass@1_after"] and s["n"] == summary["heldout_n"] == 6
    # the same greedy completions, token for token, as the run's final evaluation (the trained weights, not the
    # base model: the run changed them, see the last assert)
    assert _completions(out / "eval.jsonl") == _completions(run / "eval_step2.jsonl")
    assert s["engine"] == "hf" and s["tokens_per_s"] > 0 and {"error_rate", "timeout_rate"} <= set(s["verifiers"]["math"])
    assert "greedy pass@1" in capsys.readouterr().out


def test_eval_of_the_base_model_differs_and_reports_pass_at_k(trained_run, tiny_model_dir, tmp_path):
    run, _ = trained_run
    out = tmp_path / "base"
    assert cli_main(["eval", tiny_model_dir, "--recipe", "recipes/basic_arithmetic.yaml", "--n", "6", "--engine",
                     "hf", "--samples", "4", "--out", str(out), "--no-progress",
                     "--max-new-tokens", "8"]) == 0
    s = json.loads((out / "eval_summary.json").read_text())
    assert s["samples"] == 4 and {"pass@1_sampled", "pass@2", "pass@4"} <= set(s)
    assert 0 <= s["pass@1_sampled"] <= s["pass@2"] <= s["pass@4"] <= 1  # pass@k is monotone in k
    rows = [json.loads(x) for x in (out / "eval.jsonl").read_text().splitlines()]
    assert len(rows) == 6 + 6 * 4
    assert [r["completion"] for r in rows[:6]] != _completions(run / "eval_step2.jsonl")  # training changed it


@pytest.mark.parametrize("argv, message", [
    (["eval", "/no/such/model"], "path does not exist"),
    (["eval", "RUN", "--verifier", "nope"], "--verifier 'nope'"),
    (["eval", "RUN", "--data", "missing.jsonl"], "missing.jsonl"),
    (["export", "RUN", "EXISTING"], "already exists"),
])
def test_bad_input_exits_2_with_one_line(trained_run, tmp_path, capsys, argv, message):
    run, _ = trained_run
    (tmp_path / "exists").mkdir()
    argv = [str(run) if a == "RUN" else str(tmp_path / "exists") if a == "EXISTING" else a for a in argv]
    assert cli_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def _policy_logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_merged_export_gives_the_trained_policys_logits_in_plain_transformers(trained_run, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlvr.artifacts import load_trained

    run, _ = trained_run
    assert cli_main(["export", str(run), str(tmp_path / "adapter")]) == 0
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert cli_main(["export", str(run), str(tmp_path / "merged"), "--merge"]) == 0
    merged = tmp_path / "merged"
    assert (merged / "model.safetensors").is_file() and (merged / "config.json").is_file()
    assert not (merged / "adapter_config.json").exists()
    tok = AutoTokenizer.from_pretrained(merged)
    assert tok.chat_template  # the chat template travels with it
    plain = AutoModelForCausalLM.from_pretrained(merged, dtype=torch.float32).eval()
    policy = load_trained(str(run), torch.device("cpu")).model
    ids = torch.tensor([tok("Calculate 7 + 5. <answer>12</answer>")["input_ids"]])
    a, b = _policy_logits(plain, ids), _policy_logits(policy, ids)
    assert torch.allclose(a, b, atol=1e-4), float((a - b).abs().max())
    base = AutoModelForCausalLM.from_pretrained(policy.peft_config["default"].base_model_name_or_path,
                                                dtype=torch.float32).eval()
    assert (a - _policy_logits(base, ids)).abs().max() > 1e-2  # the adapter's effect is in the merged weights


def test_vllm_greedy_from_the_merged_export_equals_transformers(trained_run, tmp_path):
    """vLLM loads the exported folder from disk (its own loader, no rlvr code) and decodes what transformers does."""
    vllm = pytest.importorskip("vllm")
    from rlvr.models import load_policy, load_tokenizer
    from rlvr.rollouts import SamplingParams, make_engine

    run, _ = trained_run
    merged = tmp_path / "m"
    assert cli_main(["export", str(run), str(merged), "--merge"]) == 0
    model, tok = load_policy(str(merged)), load_tokenizer(str(merged))
    prompt = tok("Calculate 7 + 5.")["input_ids"]
    hf = make_engine("hf", model, tok).generate([prompt], 1, SamplingParams(temperature=0.0, max_new_tokens=8),
                                                seed=0)[0].completions[0].token_ids
    llm = vllm.LLM(model=str(merged), dtype="float32", enforce_eager=True, max_model_len=256, seed=0,
                   kv_cache_memory_bytes=1 << 28, enable_chunked_prefill=False, max_num_batched_tokens=8192,
                   block_size=32)
    try:
        out = llm.generate([{"prompt_token_ids": prompt}], vllm.SamplingParams(temperature=0.0, max_tokens=8))
        got = list(out[0].outputs[0].token_ids)
    finally:
        del llm
    assert got == hf[:len(got)] and len(got) == len(hf)


# ---------------------------------------------------------------------------------------------- W&B (offline)

def _wandb_records(path):
    """Records of a W&B transaction log (.wandb), read with our own reader of its block format (a 7-byte ':W&B'
    header, then 32 KiB blocks of records: crc32, length, type FULL/FIRST/MIDDLE/LAST) and W&B's protobuf schema."""
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    buf, block = Path(path).read_bytes(), 32768
    assert buf[:4] == b":W&B"
    pos, parts = 7, b""
    while pos + 7 <= len(buf):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, n, kind = struct.unpack("<IHB", buf[pos:pos + 7])
        if kind == 0 and n == 0:  # zero padding at a block's end
            pos += left
            continue
        parts += buf[pos + 7:pos + 7 + n]
        pos += 7 + n
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(parts)
            parts = b""
            yield rec


def test_wandb_offline_run_has_the_scalars_config_alerts_and_report(tiny_model_dir, tmp_path):
    pytest.importorskip("wandb")
    from rlvr.metrics import read_metrics

    run = tmp_path / "r"
    over = [f"model={tiny_model_dir}", f"run_dir={run}", "data.train_size=16", "data.eval_size=2",
            "train.prompts_per_step=2", "train.group_size=4", "train.steps=3", "sampling.max_new_tokens=6",
            "log.progress=false", "rollout.engine=hf", "eval.at_start=false",
            "monitor.no_signal_max=1.0",  # NO_SIGNAL's condition holds every step: it fires at step 3 (window 3)
            "log.wandb={project: rlvr-test, mode: offline}"]
    import logging

    said: list[str] = []
    catch = logging.Handler()
    catch.emit = lambda record: said.append(record.getMessage())
    own = logging.getLogger("rlvr")
    own.addHandler(catch)
    level, own.level = own.level, logging.INFO
    try:
        Trainer(load_config("recipes/basic_arithmetic.yaml", over)).run()
    finally:
        own.removeHandler(catch)
        own.setLevel(level)
    (folder,) = (run / "wandb").glob("offline-run-*")
    # WANDB_SILENT hides wandb's own lines, so rlvr says where the offline run is and how to upload it
    assert any(f"upload it with `wandb sync {folder}`" in m for m in said), said
    recs = list(_wandb_records(next(folder.glob("run-*.wandb"))))
    kinds = [r.WhichOneof("record_type") for r in recs]
    assert "exit" in kinds, kinds  # the run was finished and its log is complete
    hist = {}
    for r in recs:
        if r.WhichOneof("record_type") == "history":
            items = {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in r.history.item}
            hist.setdefault(items["_step"], {}).update(items)
    rows = read_metrics(run)
    assert sorted(hist) == [r["step"] for r in rows] == [1, 2, 3], (sorted(hist), kinds)
    for row in rows:  # the same scalars as metrics.jsonl / TensorBoard, at the same steps
        h = hist[row["step"]]
        assert h["reward"] == pytest.approx(row["reward"]) and h["loss"] == pytest.approx(row["loss"])
        assert "device" not in h  # strings stay in metrics.jsonl
    config = [r.run.config for r in recs if r.WhichOneof("record_type") == "run"][0]
    conf = {i.key: json.loads(i.value_json) for i in config.update}
    train = conf["train"].get("value", conf["train"])  # wandb versions differ in wrapping values
    assert train["steps"] == 3 and train["group_size"] == 4
    alerts = [(r.alert.title, r.alert.text) for r in recs if r.WhichOneof("record_type") == "alert"]
    assert any(t == "NO_SIGNAL fired" and "at step 3" in x for t, x in alerts), alerts
    assert list((folder / "files" / "media" / "images").rglob("*.png"))  # the monitor report
    assert list((folder / "files" / "media" / "table").rglob("alerts_*.table.json"))


def test_eval_on_a_file_and_on_humaneval(tiny_model_dir, tmp_path):
    """Any dataset the recipes accept: a .jsonl file (every row by default) and the built-in humaneval source with
    the code verifier (the tiny random model writes no working program: pass@1 0, and no verifier error)."""
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"Calculate {i} + 1.", "reference": str(i + 1)}) + "\n"
                            for i in range(5)))
    out = tmp_path / "f"
    assert cli_main(["eval", tiny_model_dir, "--data", str(data), "--engine", "hf", "--out", str(out),
                     "--no-progress", "--max-new-tokens", "4"]) == 0
    s = json.loads((out / "eval_summary.json").read_text())
    assert s["n"] == 5 and s["data"] == str(data) and s["verifier"] == "math"
    out = tmp_path / "h"
    assert cli_main(["eval", tiny_model_dir, "--data", "humaneval", "--n", "2", "--verifier", "code", "--engine",
                     "hf", "--out", str(out), "--no-progress", "--max-new-tokens", "8"]) == 0
    s = json.loads((out / "eval_summary.json").read_text())
    assert s["n"] == 2 and s["pass@1"] == 0.0 and s["verifiers"]["code"]["error_rate"] == 0.0
