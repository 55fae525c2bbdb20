"""The real-run fault-injection benchmark's pieces (benchmarks/monitor/): the rewards of known truth do what their
names say, and the fall rule matches its definition computed by hand."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.monitor import fault_verifiers as fv  # noqa: E402
from benchmarks.monitor.real_faults import fall_step  # noqa: E402

GROUP = [("<answer>12</answer>", "12"), ("<answer>12</answer>", "12"), ("<answer>13</answer>", "12"),
         ("no answer", "12")]


def test_agree_first_ignores_the_reference():
    v = fv.AgreeFirst()
    assert [x.score for x in v.verify_groups(GROUP, 4)] == [1.0, 1.0, 0.0, 0.0]
    wrong_ref = [(c, "99") for c, _ in GROUP]
    assert [x.score for x in v.verify_groups(wrong_ref, 4)] == [1.0, 1.0, 0.0, 0.0]
    assert v.signal.source == "external"  # it does not declare what it is


def test_even_answer_scores_the_answer_not_its_correctness():
    v = fv.EvenAnswer()
    assert [x.score for x in v.verify_batch(GROUP)] == [1.0, 1.0, 0.0, 0.0]
    assert v.verify("<answer>-8</answer>", "3").score == 1.0 and v.verify("<answer>7</answer>", "7").score == 0.0


def test_noisy_and_flaky_math_fault_rates():
    noisy, flaky = fv.NoisyMath(), fv.FlakyMath()
    right = [(f"<answer>{i}</answer>", str(i)) for i in range(2000)]
    wrong = sum(noisy.verify(c, r).score == 0.0 for c, r in right)
    errors = sum(flaky.verify(c, r).error is not None for c, r in right)
    assert 150 <= wrong <= 250 and 340 <= errors <= 460  # 10% and 20% of 2000, binomial +-3.5 sd
    assert all(noisy.verify(c, r).score == noisy.verify(c, r).score for c, r in right[:50])  # fixed per item


def test_fall_step_is_two_standard_errors_below_the_best_earlier_evaluation():
    # 2 * sqrt(0.5 * 0.5 / 64) = 0.125: a drop of 0.05 is noise, 0.2 is a fall
    assert fall_step([(0, 0.5), (5, 0.45), (10, 0.3)]) == 10
    assert fall_step([(0, 0.2), (5, 0.5), (10, 0.4)]) is None  # 0.1 < 0.125
    assert fall_step([(0, 0.17), (5, 0.22), (10, 0.02)]) == 10  # 2 * sqrt(.22 * .78 / 64) = 0.104
    assert fall_step([(0, 0.0), (5, 0.0)]) is None
