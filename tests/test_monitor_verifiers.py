"""Verifiers of known information content for the closure benchmark: majority_vote (self-sourced), length_bonus
(a surface feature), prompt_split (the probe's loop C); the group-level hook of the Verifier base class."""

import math
import pickle
import zlib

import pytest
import torch

from rlvr.config import VerifierRef
from rlvr.scoring import make_items
from rlvr.plugins import build_reward
from verifiers import SignalSpec, Verdict, Verifier, answer_class_of, get_verifier, list_verifiers


def _items(answers, prompt="Calculate 1 + 1."):
    """Numbers become tagged answers; any other text stays as is (no answer)."""
    return [{"completion": f"<answer>{a}</answer>" if a.replace(".", "").isdigit() else a, "reference": "2",
             "prompt": prompt} for a in answers]


def test_registered_and_declared():
    assert {"majority_vote", "length_bonus", "prompt_split"} <= set(list_verifiers())
    assert get_verifier("majority_vote").signal.source == "self"
    assert get_verifier("length_bonus", unit="chars").signal == SignalSpec("graded", True, "external", "cheap")


def test_answer_class_of():
    assert answer_class_of("<answer>0.5</answer>") == answer_class_of("\\boxed{\\frac{1}{2}}") == "1/2"
    assert answer_class_of("<answer>1,234</answer>") == "1234"
    assert answer_class_of("no answer here") is None and answer_class_of(None) is None
    assert answer_class_of("\\boxed{3} or \\boxed{4}") is None  # hedging is no answer


def test_majority_vote_per_group():
    mv = get_verifier("majority_vote")
    items = _items(["5", "5.0", "6", "no tag"]) + _items(["1", "2", "3", "3"])
    v = mv.verify_groups(items, 4)
    assert [x.score for x in v] == [1, 1, 0, 0, 0, 0, 1, 1]
    assert [x.answer_class for x in v[:4]] == ["5", "5", "6", None]
    assert v[0].passed is True and v[0].detail == {"plurality_count": 2}
    # ties: every tied answer scores; a group without any answer scores nothing
    assert [x.score for x in mv.verify_groups(_items(["1", "2", "no", "no"]), 4)] == [1, 1, 0, 0]
    assert [x.score for x in mv.verify_groups(_items(["no", "none"]), 2)] == [0, 0]
    # the reference is never read
    other = [dict(i, reference="999") for i in items]
    assert [x.score for x in mv.verify_groups(other, 4)] == [x.score for x in v]
    # verify_batch = one group; verify alone has no group
    two = _items(["5", "5", "6", "6"]) + _items(["6", "7", "8", "9"])
    assert [x.score for x in mv.verify_groups(two, 4)] == [1] * 8
    assert [x.score for x in mv.verify_batch(two)] == [0, 0, 1, 1, 1, 0, 0, 0]
    alone = mv.verify("<answer>3</answer>", "3")
    assert alone.score == 0.0 and "needs the whole group" in alone.error
    with pytest.raises(ValueError, match="groups of 3"):
        mv.verify_groups(items, 3)


def test_length_bonus_units(smollm2_dir):
    chars = get_verifier("length_bonus", unit="chars", cap=10)
    v = chars.verify_batch([("<answer>7</answer>", "7"), ("abcde", "7")])
    assert [x.score for x in v] == [1.0, 0.5] and v[0].answer_class == "7" and v[1].answer_class is None
    words = get_verifier("length_bonus", unit="words", cap=4)
    assert words.verify("one two", "x").score == 0.5
    tokens = get_verifier("length_bonus", unit="tokens", cap=24, tokenizer=smollm2_dir)
    from transformers import AutoTokenizer

    text = "To add 61 and 16, you add them"
    n = len(AutoTokenizer.from_pretrained(smollm2_dir)(text, add_special_tokens=False)["input_ids"])
    assert tokens.verify(text, "77").score == pytest.approx(min(n, 24) / 24) and 0 < n < 24
    assert pickle.loads(pickle.dumps(tokens)).verify(text, "77").score == tokens.verify(text, "77").score
    with pytest.raises(ValueError):
        get_verifier("length_bonus", unit="bytes")


def test_prompt_split_is_the_probe_loop_c():
    split = get_verifier("prompt_split", even={"name": "math"},
                         odd={"name": "length_bonus", "kwargs": {"unit": "chars", "cap": 100}})
    assert split.signal == SignalSpec("graded", True, "external", "cheap")
    prompts = [f"Calculate {i} + 1." for i in range(12)]
    sides = [zlib.crc32(p.encode()) % 2 for p in prompts]
    assert 0 < sum(sides) < 12  # both halves present
    items = [{"completion": "<answer>5</answer>", "reference": "5", "prompt": p} for p in prompts]
    v = split.verify_batch(items)
    assert [x.score for x in v] == [1.0 if s == 0 else 18 / 100 for s in sides]
    assert all(x.answer_class == "5" for x in v)
    # groups stay whole: a group-level verifier on one side still sees its groups
    mixed = get_verifier("prompt_split", even={"name": "majority_vote"}, odd="math")
    assert mixed.signal.source == "self"  # partly self-sourced: flagged
    grouped = [dict(i, completion=c) for i in items[:2] for c in ("<answer>5</answer>", "<answer>5</answer>",
                                                                   "<answer>6</answer>")]
    got = [x.score for x in mixed.verify_groups(grouped, 3)]
    want = []
    for i in items[:2]:
        side = zlib.crc32(i["prompt"].encode()) % 2
        want += [1.0, 1.0, 0.0] if side == 0 else [1.0, 1.0, 0.0]  # plurality "5" / gold "5"
    assert got == want
    with pytest.raises(ValueError, match="mixes prompts"):
        mixed.verify_groups([dict(items[sides.index(0)]), dict(items[sides.index(1)])], 2)


class _Plain(Verifier):
    name = "plain_for_groups"
    signal = SignalSpec("binary", True, "external", "cheap")

    def _verify(self, completion, reference, *, prompt=None):
        return Verdict(float(completion == reference), completion == reference, completion)


def test_base_verify_groups_falls_back_and_identity_defaults_to_none():
    p = _Plain()
    items = [("a", "a"), ("b", "a"), ("a", "a"), ("c", "a")]
    assert [v.score for v in p.verify_groups(items, 2)] == [v.score for v in p.verify_batch(items)] == [1, 0, 1, 0]
    with pytest.raises(ValueError):
        p.verify_groups(items, 3)
    assert p.identity() is None


def test_trainer_reward_passes_whole_groups():
    reward = build_reward([VerifierRef(name="majority_vote")])
    texts = ["<answer>1</answer>", "<answer>1</answer>", "<answer>2</answer>",
             "<answer>3</answer>", "<answer>4</answer>", "<answer>4</answer>"]
    rewards, verdicts, metrics = reward(make_items(texts, ["0"] * 6, ["q1"] * 3 + ["q2"] * 3), 3)
    assert rewards.tolist() == [1, 1, 0, 0, 1, 1] and metrics["rewards/majority_vote/mean"] == pytest.approx(4 / 6)


# ---------------------------------------------------------------------------------------------- intervention

def _batch(texts_per_group, refs, prompts, rewards):
    from rlvr.batch import RolloutBatch
    from rlvr.rollouts.base import Completion

    comps = [[Completion([1], [0.0], t, "stop") for t in row] for row in texts_per_group]
    verdicts = [[Verdict(float(r), bool(r), None) for r in row] for row in rewards]
    return RolloutBatch(list(range(len(refs))), [[1]] * len(refs), prompts, refs, comps, torch.tensor(rewards),
                        verdicts)


def _sensitivity(refs_cfg, texts, refs, prompts, groups=4):
    from rlvr.config import MonitorConfig
    from rlvr.monitor import Monitor, signals_from_verifiers

    reward = build_reward(refs_cfg)
    G = len(texts[0])
    flat = make_items([t for row in texts for t in row], [r for r in refs for _ in range(G)],
                      [p for p in prompts for _ in range(G)])
    rewards = reward(flat, G)[0].view(len(refs), G).tolist()
    mon = Monitor(MonitorConfig(intervention_groups=groups), signals_from_verifiers(reward.verifiers))
    mon.start()
    m, _ = mon.observe_batch(1, _batch(texts, refs, prompts, rewards), rescore=lambda it, g: reward(it, g)[0])
    return m


def test_reference_sensitivity_exact_blind_and_mixed():
    """Exact verifier: its passes turn to fails under another problem's answer -> 1. A verifier that never reads the
    reference (declared external) -> 0. A reward exact on half the prompts and blind on the rest -> 1/2."""
    import zlib

    refs = ["3", "5", "7", "9"]
    prompts = ["q0", "q1", "a", "b"]  # CRC-32 parity 0, 0, 1, 1: prompt_split's even (math) / odd (blind) halves
    assert [zlib.crc32(q.encode()) % 2 for q in prompts] == [0, 0, 1, 1]
    texts = [[f"<answer>{r}</answer>", f"<answer>{r}</answer>", "<answer>0</answer>"] for r in refs]
    m = _sensitivity([VerifierRef(name="math")], texts, refs, prompts)
    assert m["monitor/reference_sensitivity"] == 1.0 and m["monitor/intervention_calls"] == 12
    m = _sensitivity([VerifierRef(name="tests.toy_verifiers:FirstCompletionVerifier")], texts, refs, prompts)
    assert m["monitor/reference_sensitivity"] == 0.0
    mixed = VerifierRef(name="prompt_split", kwargs={"even": "math",
                                                     "odd": "tests.toy_verifiers:FirstCompletionVerifier"})
    m = _sensitivity([mixed], texts, refs, prompts)
    assert m["monitor/reference_sensitivity"] == 0.5  # 4 of the 8 passes change: the exact half's
    # a judge-sourced reward is not intervened on (a rubric may ignore the reference): undetermined, no calls
    m = _sensitivity([VerifierRef(name="majority_vote")], texts, refs, prompts)
    assert m["monitor/intervention_calls"] == 0 and math.isnan(m["monitor/reference_sensitivity"])


def test_reference_blind_reward_raises_closed_loop_in_a_real_run(tiny_model_dir, tmp_path):
    """The undeclared self-derived loop of the monitor issue: the passive ratio read 'open' for 15+ steps. By
    intervention it is CLOSED_LOOP (reference_blind) at step 4: every group's first completion passes and 4 groups
    are re-scored per step, so the pooled window holds >= 6 passes from step 2 on (none changes), and the condition
    must then hold for 3 consecutive steps (window 3)."""
    from rlvr.config import load_config
    from rlvr.monitor import read_alerts
    from rlvr.trainer import Trainer

    over = [f"model={tiny_model_dir}", f"run_dir={tmp_path / 'r'}", "data.train_size=16", "data.eval_size=2",
            "train.prompts_per_step=4", "train.group_size=4", "train.steps=4", "sampling.max_new_tokens=6",
            "log.progress=false", "log.tensorboard=false", "rollout.engine=hf", "eval.at_start=false",
            "eval.at_end=false", "verifiers=[{name: 'tests.toy_verifiers:FirstCompletionVerifier'}]",
            "monitor.preflight_ignore=[canary:toy_first_completion]",
            "monitor.intervention_groups=4"]
    Trainer(load_config("recipes/basic_arithmetic.yaml", over)).run()
    fired = [(a["name"], a["rule"], a["step"]) for a in read_alerts(tmp_path / "r") if a["event"] == "fired"]
    assert ("CLOSED_LOOP", "reference_blind", 4) in fired, fired
    # the alert points at rows of rollouts.jsonl that show it: groups of step 4 with a pass that survived the swap
    import json

    blind = next(a for a in read_alerts(tmp_path / "r") if a["rule"] == "reference_blind" and a["event"] == "fired")
    ptr = blind["evidence"]["rows"]
    assert ptr["file"] == "rollouts.jsonl" and ptr["step"] == 4 and ptr["prompt_index"], ptr
    rows = [json.loads(x) for x in (tmp_path / "r" / "rollouts.jsonl").read_text().splitlines()]
    for i in ptr["prompt_index"]:
        group = [r for r in rows if r["step"] == 4 and r["prompt_index"] == i]
        assert len(group) == 4 and group[0]["reward"] == 1.0  # the first completion always agrees with itself
