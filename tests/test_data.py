"""Dataset loading, held-out separation, prompt rendering and the deterministic prompt order."""

import json

import pytest

from rlvr.config import DataConfig, PromptConfig
from rlvr.data import PromptSampler, build_messages, load_splits
from rlvr.errors import DataError

ARITH = {"min_terms": 2, "max_terms": 2, "min_digits": 1, "max_digits": 2, "operators": ["+", "-"],
         "allow_parentheses": False, "allow_negation": False}


def test_reasoning_gym_splits_are_disjoint_and_correct():
    cfg = DataConfig(task="basic_arithmetic", task_config=ARITH, train_size=300, eval_size=64)
    s = load_splits(cfg)
    assert s.train.column_names == ["prompt", "reference", "meta"]
    assert len(s.eval) == 64
    assert not set(s.train["prompt"]) & set(s.eval["prompt"])
    assert len(s.train) <= 300
    # the reference is the true value of the expression (independent check with Python arithmetic)
    for row in list(s.train)[:50]:
        expr = json.loads(row["meta"])["expression"]
        assert int(row["reference"]) == eval(expr, {"__builtins__": {}})  # plain "a + b" strings from the generator


def test_jsonl_source_and_seeded_split(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text("".join(json.dumps({"question": f"q{i}", "answer": i}) + "\n" for i in range(20)))
    cfg = DataConfig(path=str(f), prompt_column="question", reference_column="answer", eval_size=5, train_size=100)
    s = load_splits(cfg)
    assert len(s.eval) == 5 and len(s.train) == 15
    assert sorted(list(s.train["prompt"]) + list(s.eval["prompt"])) == sorted(f"q{i}" for i in range(20))
    assert s.train["reference"][0] == str(int(s.train["prompt"][0][1:]))
    assert list(load_splits(cfg).eval["prompt"]) == list(s.eval["prompt"])  # same seed, same split


def test_missing_column_names_it(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"prompt": "x", "answer": 1}) + "\n")
    with pytest.raises(DataError, match=r"missing column 'reference' \(data.reference_column\)"):
        load_splits(DataConfig(path=str(f)))


def test_unknown_task_and_missing_file():
    with pytest.raises(DataError, match="data.task = 'no_such_task': not a reasoning-gym task"):
        load_splits(DataConfig(task="no_such_task"))
    with pytest.raises(DataError, match="did you mean 'basic_arithmetic'"):
        load_splits(DataConfig(task="basic_arithmetc"))
    with pytest.raises(DataError, match="does not exist"):
        load_splits(DataConfig(path="./nope.jsonl"))


def test_build_messages_order():
    p = PromptConfig(system="S", few_shot=[{"user": "u1", "assistant": "a1"}], user_template="Q: {question}")
    assert build_messages("x", p) == [
        {"role": "system", "content": "S"}, {"role": "user", "content": "u1"},
        {"role": "assistant", "content": "a1"}, {"role": "user", "content": "Q: x"}]


def test_prompt_sampler_is_a_permutation_per_epoch_and_stateless():
    s = PromptSampler(n=10, per_step=4, seed=3)
    first_epoch = s.indices(0) + s.indices(1) + s.indices(2)[:2]
    assert sorted(first_epoch) == list(range(10))
    fresh = PromptSampler(n=10, per_step=4, seed=3)
    assert fresh.indices(2) == s.indices(2)  # resuming at step 2 draws the same prompts
    assert PromptSampler(n=10, per_step=4, seed=4).indices(0) != s.indices(0)
