"""Per-step rollout statistics against values counted by hand, and the metrics file's crash/resume behaviour."""

import json

import pytest
import torch

from rlvr.metrics import MetricSink, read_metrics, rollout_stats


def test_rollout_stats_by_hand():
    rewards = torch.tensor([[1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0]])
    lengths = torch.tensor([[4, 6, 8, 10], [5, 5, 5, 5], [24, 24, 3, 3]])
    truncated = lengths == 24
    classes = [["7", "8", "8", None], ["5", "5", "5", "5"], [None, None, "1", "2"]]
    s = rollout_stats(rewards, lengths, truncated, classes)
    assert s["reward"] == pytest.approx(5 / 12)
    assert s["frac_reward_zero_std"] == pytest.approx(2 / 3)
    assert s["informative_group_frac"] == pytest.approx(1 / 3)
    assert s["pass@1"] == pytest.approx(5 / 12)
    assert s["pass@4"] == pytest.approx(2 / 3)
    assert s["completions/clipped_ratio"] == pytest.approx(2 / 12)
    assert s["completions/mean_length"] == pytest.approx(102 / 12)
    assert s["answers/extracted_rate"] == pytest.approx(9 / 12)
    assert s["answers/distinct_per_group"] == pytest.approx((3 + 1 + 3) / 3)  # None counts as one class


def test_sink_truncates_on_resume_and_starts_fresh_otherwise(tmp_path):
    sink = MetricSink(tmp_path, tensorboard=False)
    for step in (1, 2, 3):
        sink.log(step, {"reward": step / 10, "bad": float("nan")})
    sink.close()
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2, 3]
    assert read_metrics(tmp_path)[0]["bad"] is None  # NaN is written as null, not as invalid JSON
    MetricSink(tmp_path, tensorboard=False, resume_step=2).close()
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2]
    MetricSink(tmp_path, tensorboard=False).close()
    assert read_metrics(tmp_path) == []


def test_tensorboard_scalars_are_written(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    sink = MetricSink(tmp_path, tensorboard=True)
    sink.log(1, {"reward": 0.25})
    sink.log(2, {"reward": 0.5})
    sink.close()
    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("reward")] == [(1, 0.25), (2, 0.5)]
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[1])["reward"] == 0.5
