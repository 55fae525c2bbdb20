"""rlvr.integrations.trl.MonitorCallback inside TRL's GRPOTrainer (TRL 1.16) on a tiny random Llama.

`trl` is a dev dependency: if it is missing, this module fails at import (nothing is skipped).
"""

from __future__ import annotations

import json
import os

import pytest
import torch
import trl  # noqa: F401
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from rlvr.config import MonitorConfig
from rlvr.integrations.trl import MonitorCallback
from rlvr.monitor import estimators as est
from verifiers import get_verifier
from verifiers.integrations.trl import reward_func


@pytest.fixture(scope="module")
def tiny():
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlvr.models import load_tokenizer, resolve_model

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tokenizer = load_tokenizer(resolve_model("smollm2-135m-instruct"))

    def model():
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                          tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
        return LlamaForCausalLM(cfg)

    return model, tokenizer


def _trainer(tiny, tmp_path, rewards, callback, steps):
    model, tokenizer = tiny
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + 1?"}], "answer": str(i + 1)} for i in range(8)]
    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=8, num_generations=4,
                      max_completion_length=8, max_steps=steps, report_to="none", save_strategy="no",
                      logging_steps=1, seed=0)
    return GRPOTrainer(model=model(), processing_class=tokenizer, reward_funcs=callback.reward_funcs,
                       train_dataset=Dataset.from_list(rows), args=args, callbacks=[callback])


def test_callback_feeds_the_monitor_and_logs_alerts(tiny, tmp_path):
    from tests.toy_verifiers import LengthVerifier

    length = reward_func(LengthVerifier(), reference_column="answer")
    said = []
    cb = MonitorCallback([length], config=MonitorConfig(window=1, no_signal_max=1.0, gap_max=1.0),
                         reference_verifier=get_verifier("math", max_workers=1), reference_column="answer",
                         echo=said.append)
    trainer = _trainer(tiny, tmp_path, [length], cb, steps=2)
    trainer.train()

    logs = [e for e in trainer.state.log_history if "monitor/signal_entropy" in e]
    assert [e["step"] for e in logs] == [1, 2]
    # the last batch TRL scored: 2 prompts x 4 generations, grouped as TRL groups them
    scores = [v.score for v in length.last_verdicts]
    groups = [scores[0:4], scores[4:8]]
    assert logs[-1]["monitor/informative_group_frac"] == est.informative_group_fraction(groups).value
    assert logs[-1]["monitor/signal_entropy"] == pytest.approx(
        est.signal_entropy(est.discretize(groups, "graded", 4)).value)
    assert logs[-1]["monitor/policy_entropy"] == pytest.approx(logs[-1]["entropy"])
    assert logs[-1]["monitor/reference_pass@1"] == 0.0  # the random model never answers: gold on the rollouts
    assert logs[0]["alerts/NO_SIGNAL"] == 1.0  # window 1, condition always true: fires at step 1
    events = [json.loads(ln) for ln in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert [(a["name"], a["step"], a["event"]) for a in events] == [("NO_SIGNAL", 1, "fired")]
    assert len(said) == 1 and "NO_SIGNAL" in said[0] and cb.alerts[0].name == "NO_SIGNAL"


def test_self_sourced_reward_is_flagged_and_stopped(tiny, tmp_path):
    mv = reward_func(get_verifier("majority_vote"), reference_column="answer")
    cb = MonitorCallback([mv], config=MonitorConfig(stop_on_critical=True), echo=None)
    trainer = _trainer(tiny, tmp_path, [mv], cb, steps=4)
    trainer.train()
    assert [(a.name, a.rule, a.step) for a in cb.alerts] == [("CLOSED_LOOP", "declared_self", 0)]
    assert cb.monitor.stop_reason == "CLOSED_LOOP (declared_self) at step 0"
    assert trainer.state.global_step < 4  # stopped early
