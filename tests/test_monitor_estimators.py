"""rlvr.monitor.estimators on synthetic verdict streams whose true values are computed by hand."""

import math

import pytest
import torch

from rlvr.monitor import estimators as est
from verifiers import get_verifier

LN2 = math.log(2)


def hb(p):
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def test_entropy_building_blocks():
    assert est.binary_entropy(0.5) == 1.0 and est.binary_entropy(0.0) == 0.0 and est.binary_entropy(1.0) == 0.0
    assert est.binary_entropy(0.25) == pytest.approx(0.5 + 0.75 * math.log2(4 / 3))
    assert est.entropy_plugin([2, 2]) == 1.0
    assert est.entropy_miller_madow([2, 2]) == pytest.approx(1 + 1 / (8 * LN2))  # (m-1)/(2 n ln2), n=4, m=2
    assert est.entropy_miller_madow([5]) == 0.0  # one bin: no correction
    lo, hi = est.wilson_interval(2, 4)  # Wilson 1927, textbook value for 2/4
    assert lo == pytest.approx(0.1500, abs=1e-4) and hi == pytest.approx(0.8500, abs=1e-4)
    assert est.wilson_interval(0, 0) == (0.0, 1.0)


def test_discretize_binary_and_graded():
    assert est.discretize([[0.0, 0.5, 0.51, 1.0]]) == [[0, 0, 1, 1]]
    assert est.discretize(torch.tensor([[0.0, 0.24, 0.25, 0.5, 0.99, 1.0]]), "graded", 4) == [[0, 0, 1, 2, 3, 3]]


def test_all_groups_fifty_fifty_is_one_bit():
    levels = [[1, 0, 1, 0], [0, 0, 1, 1], [1, 1, 0, 0]]
    h = est.signal_entropy(levels)
    assert h.value == 1.0 and h.lo == 1.0 and h.hi == 1.0 and h.n == 12


def test_signal_entropy_mixed_groups_and_interval():
    levels = [[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]]
    h = est.signal_entropy(levels, resamples=500, seed=3)
    assert h.value == pytest.approx((hb(0.25) + 1.0) / 4)
    assert h.lo < h.value < h.hi and h.lo >= 0.0 and h.hi <= 1.0
    assert est.signal_entropy(levels, resamples=500, seed=3) == h  # seeded: a resumed run reproduces it


def test_informative_group_fraction_with_wilson_interval():
    e = est.informative_group_fraction([[1.0, 0.0], [0.5, 0.5], [0.2, 0.3], [1.0, 1.0]])
    assert e.value == 0.5 and e.n == 4
    assert (e.lo, e.hi) == pytest.approx(est.wilson_interval(2, 4))


def test_self_prediction_plurality_none_and_ties():
    assert est.self_prediction([["5", "5", "6", None]]) == [[1, 1, 0, 0]]
    assert est.self_prediction([["a", "b", "c"]]) == [[1, 1, 1]]  # no consensus: every answer is a plurality
    assert est.self_prediction([[None, None, "a"]]) == [[1, 1, 0]]  # "none" is a class of its own
    assert est.self_prediction([["a", "a", "b", "b", "c"]]) == [[1, 1, 1, 1, 0]]


def test_majority_vote_reward_stream_has_closure_ratio_zero():
    """The reward IS the model's majority answer: the verdict is a function of S_hat inside every group."""
    mv = get_verifier("majority_vote")
    answers = [["3", "3", "3", "7", "7", "1", "2", "9"], ["4", "4", "5", "5", "6", "0", "0", "8"],
               ["2", "2", "2", "2", "2", "2", "1", "3"], ["9", "8", "7", "9", "6", "5", "4", "9"]]
    texts = [f"<answer>{a}</answer>" for row in answers for a in row]
    verdicts = mv.verify_groups([(t, "unused") for t in texts], 8)
    rewards = [[verdicts[i * 8 + j].score for j in range(8)] for i in range(4)]
    classes = [[verdicts[i * 8 + j].answer_class for j in range(8)] for i in range(4)]
    assert rewards[1] == [1, 1, 1, 1, 0, 1, 1, 0]  # three-way tie at 2: all tied answers score
    levels, s_hat = est.discretize(rewards), est.self_prediction(classes)
    assert est.signal_entropy(levels).value > 0.5  # there is signal ...
    assert est.novel_bits(levels, s_hat).value == 0.0  # ... but none of it is new
    cr = est.closure_ratio(levels, s_hat)
    assert cr.value == 0.0 and cr.lo == 0.0 and cr.hi == 0.0


def test_verdict_independent_of_majority_gives_novel_bits_equal_to_signal_entropy():
    classes = [["a", "a", "a", "a", "b", "c", "d", "e"]] * 3
    levels = [[1, 0, 1, 0, 1, 0, 1, 0], [0, 1, 1, 0, 0, 1, 0, 1], [1, 1, 0, 0, 1, 1, 0, 0]]
    s_hat = est.self_prediction(classes)
    assert s_hat[0] == [1, 1, 1, 1, 0, 0, 0, 0]
    h = est.signal_entropy(levels).value
    assert h == 1.0
    assert est.novel_bits(levels, s_hat, correction=False).value == h  # plug-in: exactly H_t
    # Miller-Madow: each (group, s_hat) cell of 4 with 2 values adds 1/(2*4*ln2); pooled (6 cells): 6/(2*24*ln2)
    assert est.novel_bits(levels, s_hat).value == pytest.approx(1 + 6 / (48 * LN2))
    assert est.closure_ratio(levels, s_hat).value == 1.0  # (1+1/(8ln2)) / (1+1/(16ln2)) > 1, clipped


def test_half_closed_half_open_closure_ratio_by_hand():
    classes = [["a", "a", "a", "a", "b", "c", "d", "e"]] * 2
    levels = [[1, 1, 1, 1, 0, 0, 0, 0],  # verdict == s_hat (closed)
              [1, 0, 1, 0, 1, 0, 1, 0]]  # independent of s_hat (open)
    s_hat = est.self_prediction(classes)
    c = 1 / (32 * LN2)  # one Miller-Madow unit at N = 16: 1 / (2 * 16 * ln 2)
    assert est.novel_bits(levels, s_hat).value == pytest.approx(0.5 + 2 * c)
    assert est.conditional_entropy(levels, None) == pytest.approx(1 + 2 * c)
    assert est.closure_ratio(levels, s_hat).value == pytest.approx((0.5 + 2 * c) / (1 + 2 * c))


def test_closure_ratio_undefined_without_signal():
    assert est.closure_ratio([[1, 1, 1, 1], [0, 0, 0, 0]], [[1, 1, 1, 1]] * 2).value is None


def test_class_efficiency():
    classes = [["a", "a", "b", "b"]]
    assert est.class_efficiency([[1.0, 1.0, 0.0, 0.0]], classes) == 1.0  # verdict depends on the class only
    # group mean .75, total SS .75; class a = [1, 0] has SS .5, class b = [1, 1] has 0 -> 1 - .5/.75
    assert est.class_efficiency([[1.0, 0.0, 1.0, 1.0]], classes) == pytest.approx(1 / 3)
    assert est.class_efficiency([[1.0, 0.0, 0.5, 0.0]], [["a", "b", "c", "d"]]) is None  # singletons only
    assert est.class_efficiency([[1.0, 1.0]], [["a", "a"]]) is None  # no signal
    # None is the class "none": a length reward among unanswered completions varies within it
    assert est.class_efficiency([[0.2, 0.6, 1.0, 0.0]], [[None, None, None, "3"]]) < 0.5


def test_length_tertile_and_format_markers():
    assert est.length_tertile([[1, 2, 3, 4, 5, 6, 7, 8]]) == [[0, 0, 0, 1, 1, 1, 2, 2]]
    assert est.length_tertile([[5, 5, 5, 5]]) == [[0, 0, 0, 0]]
    assert est.length_tertile([[8, 1, 8, 1, 4, 4]]) == [[2, 0, 2, 0, 1, 1]]
    texts = [["<answer>3</answer>", "so \\boxed{3}", "3"]]
    assert est.get_feature("answer_tag")(texts, None, None) == [[1, 0, 0]]
    assert est.get_feature("boxed")(texts, None, None) == [[0, 1, 0]]


def test_spurious_share_determined_independent_and_partial():
    lengths = [[1, 2, 3, 4, 5, 6, 7, 8], [8, 7, 6, 5, 4, 3, 2, 1]]
    f = est.length_tertile(lengths)
    longer_wins = [[int(t == 2) for t in row] for row in f]  # verdict = "in the top tertile"
    assert est.spurious_share(longer_wins, f) == 1.0
    indep_f = [[0, 0, 0, 0, 1, 1, 1, 1]] * 2
    indep_s = [[1, 0, 1, 0, 1, 0, 1, 0]] * 2
    # plug-in I = 0; the Miller-Madow terms make H(S|f,Q) > H(S|Q), clipped to 0
    assert est.conditional_mutual_information(indep_s, indep_f, correction=False) == 0.0
    assert est.spurious_share(indep_s, indep_f) == 0.0
    # partial: f splits 8 into halves, verdict [1,1,1,0 | 0,0,0,1]; plug-in I = 1 - Hb(1/4)
    s = [[1, 1, 1, 0, 0, 0, 0, 1]]
    assert est.conditional_mutual_information(s, [[0] * 4 + [1] * 4], correction=False) == pytest.approx(1 - hb(0.25))
    h_mm = 1 + 1 / (16 * LN2)
    i_mm = h_mm - (hb(0.25) + 2 / (16 * LN2))
    assert est.spurious_share(s, [[0] * 4 + [1] * 4]) == pytest.approx(i_mm / h_mm)
    assert est.spurious_share([[1, 1], [0, 0]], [[0, 1], [0, 1]]) is None  # no signal


def test_feature_registry():
    @est.register_feature("test_first_char_digit")
    def first_digit(texts, lengths, classes):
        return [[int(t[:1].isdigit()) for t in row] for row in texts]

    assert "test_first_char_digit" in est.list_features()
    assert est.get_feature("test_first_char_digit")([["1a", "b"]], None, None) == [[1, 0]]
    with pytest.raises(ValueError):
        est.register_feature("test_first_char_digit")(lambda t, l, c: t)
    with pytest.raises(KeyError, match="unknown surface feature"):
        est.get_feature("nope")
    assert est.get_feature("rlvr.monitor.estimators:length_tertile") is est.length_tertile


def test_diversity():
    d = est.diversity([[1.0, 0.0, 0.0], [0.0, 0.0, 0.0]], [["a", "b", None], ["c", "c", "c"]])
    assert d["distinct_per_group"] == 2.0 and d["pass@1"] == pytest.approx(1 / 6) and d["pass@G"] == 0.5
    assert (d["pass@1_lo"], d["pass@1_hi"]) == pytest.approx(est.wilson_interval(1, 6))


def test_verifier_health():
    scores = [[1.0, 1.0], [0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]
    classes = [["a", "b"], ["a", "b"], ["a", "b"], ["a", "a"]]
    errors = [["timeout after 2.0s", None], ["ValueError: bad", None], [None, None], [None, None]]
    h = est.verifier_health(scores, classes, errors)
    assert h["timeout_rate"] == 1 / 8 and h["error_rate"] == 1 / 8
    # groups with 2 distinct answers: 1, 2, 3; all-equal positive verdicts: group 1 only (all-zero is normal)
    assert h["constant_verdict_rate"] == pytest.approx(1 / 3)
    assert math.isnan(est.verifier_health([[1.0]], [[None]], [[None]])["constant_verdict_rate"])


def test_reward_gold_gap():
    g = est.reward_gold_gap([[1.0, 1.0], [0.5, 0.5]], [[1.0, 0.0], [0.0, 0.0]])
    assert g["reward_gold_gap"] == 0.5 and g["reference_pass@1"] == 0.25
    assert g["reference_pass@1_lo"] < 0.25 < g["reference_pass@1_hi"]
