"""Advantages, KL and the policy loss against values computed by hand."""

import math
from types import SimpleNamespace

import pytest
import torch

from rlvr import algorithms as A
from rlvr.config import AlgorithmConfig


def test_grpo_advantage_group_zscore_by_hand():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    adv = A.get_advantage("grpo")(r, AlgorithmConfig(std_eps=1e-4))
    # group 0: mean 0.5, unbiased std = sqrt(4 * 0.25 / 3) = 0.57735
    s = math.sqrt(1.0 / 3.0)
    expected0 = [0.5 / (s + 1e-4), -0.5 / (s + 1e-4), -0.5 / (s + 1e-4), 0.5 / (s + 1e-4)]
    assert adv[0].tolist() == pytest.approx(expected0, rel=1e-6)
    assert adv[1].tolist() == [0.0, 0.0, 0.0, 0.0]  # equal rewards carry no signal


def test_grpo_advantage_batch_and_none_scaling():
    r = torch.tensor([[2.0, 0.0], [1.0, 1.0]])
    batch = A.get_advantage("grpo")(r, AlgorithmConfig(scale_rewards="batch", std_eps=0.0 + 1e-9))
    std_all = torch.tensor([2.0, 0.0, 1.0, 1.0]).std().item()  # unbiased: sqrt(2/3)
    assert batch[0].tolist() == pytest.approx([1.0 / std_all, -1.0 / std_all], rel=1e-6)
    none = A.get_advantage("grpo")(r, AlgorithmConfig(scale_rewards="none"))
    assert none.tolist() == [[1.0, -1.0], [0.0, 0.0]]


def test_dr_grpo_is_mean_centred_only():
    r = torch.tensor([[3.0, 1.0, 2.0]])
    assert A.get_advantage("dr_grpo")(r, AlgorithmConfig()).tolist() == [[1.0, -1.0, 0.0]]


def test_kl_estimators_by_hand():
    lp, ref = torch.tensor([-1.0]), torch.tensor([-2.0])
    assert A.kl_estimate(lp, ref, "k1").item() == pytest.approx(1.0)
    d = -1.0  # ref - lp
    assert A.kl_estimate(lp, ref, "k3").item() == pytest.approx(math.exp(d) - d - 1)
    assert A.kl_estimate(lp, lp, "k3").item() == 0.0


def _inputs(logprobs, old, adv, mask, step_tokens, step_sequences=None, ref=None):
    return A.LossInputs(logprobs=logprobs, old_logprobs=old, advantages=adv, mask=mask, ref_logprobs=ref,
                        step_tokens=step_tokens, step_sequences=step_sequences or logprobs.shape[0])


def test_grpo_token_loss_clipping_by_hand():
    # two completions, 2 tokens each (second completion has one padding token)
    old = torch.log(torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    new = torch.log(torch.tensor([[0.75, 0.5], [0.25, 0.9]]))  # ratios 1.5, 1.0 | 0.5, (pad)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    adv = torch.tensor([1.0, -1.0])
    loss, stats = A.get_policy_loss("grpo")(_inputs(new, old, adv, mask, step_tokens=3), AlgorithmConfig(epsilon=0.2))
    # token terms: -min(1.5*1, 1.2*1) = -1.2 ; -min(1.0, 1.0) = -1.0 ; -min(0.5*-1, 0.8*-1) = 0.8
    assert loss.item() == pytest.approx((-1.2 - 1.0 + 0.8) / 3, rel=1e-6)
    assert stats["clip_ratio/high"] == pytest.approx(1 / 3)
    assert stats["clip_ratio/low"] == pytest.approx(1 / 3)


def test_grpo_seq_loss_averages_per_sequence_first():
    lp = torch.zeros(2, 3, requires_grad=True)
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    adv = torch.tensor([1.0, 2.0])
    loss, _ = A.get_policy_loss("grpo_seq")(_inputs(lp, lp.detach(), adv, mask, step_tokens=4), AlgorithmConfig())
    # ratio 1 everywhere: per-seq means are -1 and -2; mean over 2 sequences = -1.5
    assert loss.item() == pytest.approx(-1.5)
    loss.backward()
    # d/dlp of -(A * exp(lp - old)) / len / n_seq at ratio 1 = -A / len / 2
    assert torch.allclose(lp.grad, torch.tensor([[-1 / 6, -1 / 6, -1 / 6], [-1.0, 0.0, 0.0]]))


def test_kl_term_added_with_beta():
    lp = torch.log(torch.tensor([[0.5]]))
    ref = torch.log(torch.tensor([[0.25]]))
    loss, stats = A.get_policy_loss("grpo")(_inputs(lp, lp, torch.tensor([0.0]), torch.ones(1, 1), 1, ref=ref),
                                            AlgorithmConfig(beta=0.1, kl_estimator="k3"))
    d = math.log(0.25) - math.log(0.5)
    assert loss.item() == pytest.approx(0.1 * (math.exp(d) - d - 1))
    assert stats["kl"] == pytest.approx(math.exp(d) - d - 1)


def test_micro_batches_sum_to_full_batch_loss_and_gradient():
    torch.manual_seed(0)
    lp = torch.randn(6, 5, requires_grad=True)
    old = lp.detach() + 0.1 * torch.randn(6, 5)
    mask = (torch.rand(6, 5) > 0.3).float()
    adv = torch.randn(6)
    cfg = AlgorithmConfig()
    n = int(mask.sum())
    full, _ = A.get_policy_loss("grpo")(_inputs(lp, old, adv, mask, n, 6), cfg)
    g_full = torch.autograd.grad(full, lp)[0]
    parts = [A.get_policy_loss("grpo")(_inputs(lp[s], old[s], adv[s], mask[s], n, 6), cfg)[0]
             for s in (slice(0, 2), slice(2, 6))]
    total = parts[0] + parts[1]
    g_parts = torch.autograd.grad(total, lp)[0]
    assert total.item() == pytest.approx(full.item(), rel=1e-6)
    assert torch.allclose(g_parts, g_full, atol=1e-7)


def test_masked_mean_ignores_padding():
    x = torch.tensor([[1.0, 100.0], [3.0, 5.0]])
    m = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert A.masked_mean(x, m).item() == pytest.approx(3.0)
    assert A.masked_mean(x, m, dim=-1).tolist() == [1.0, 4.0]


def test_unknown_names_list_the_registry():
    with pytest.raises(KeyError, match="grpo"):
        A.get_advantage("nope")
    with pytest.raises(KeyError, match="grpo_seq"):
        A.get_policy_loss("nope")


# ---------------------------------------------------------------------------------------------- RLOO


def test_rloo_leave_one_out_baseline_by_hand():
    r = torch.tensor([[1.0, 0.0, 0.0, 1.0], [3.0, 1.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0]])
    adv = A.get_advantage("rloo")(r, AlgorithmConfig())
    # [1,0,0,1]: i=0 baseline mean(0,0,1)=1/3 -> 2/3; i=1 baseline mean(1,0,1)=2/3 -> -2/3
    assert adv[0].tolist() == pytest.approx([2 / 3, -2 / 3, -2 / 3, 2 / 3], rel=1e-6)
    # [3,1,2,2]: baselines 5/3, 7/3, 2, 2 -> 4/3, -4/3, 0, 0
    assert adv[1].tolist() == pytest.approx([4 / 3, -4 / 3, 0.0, 0.0], abs=1e-6)
    assert adv[2].tolist() == [0.0, 0.0, 0.0, 0.0]  # a tied group carries no signal


def test_rloo_rejects_single_completion_groups():
    with pytest.raises(ValueError, match="group_size"):
        A.get_advantage("rloo")(torch.tensor([[1.0]]), AlgorithmConfig())


# ---------------------------------------------------------------------------------------------- GSPO


def test_gspo_sequence_ratio_and_clipping_by_hand():
    # per-token log-ratios (logp - old): seq 0 [0.2, 0.0] -> s0 = exp(0.1) = 1.10517; seq 1 [-0.4, pad] -> exp(-0.4)
    old = torch.zeros(2, 2)
    lp = torch.tensor([[0.2, 0.0], [-0.4, 5.0]], requires_grad=True)  # the 5.0 is padding: must be ignored
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    adv = torch.tensor([1.0, -1.0])
    cfg = AlgorithmConfig(loss="gspo", epsilon=0.2, epsilon_high=0.05)
    loss, stats = A.get_policy_loss("gspo")(_inputs(lp, old, adv, mask, step_tokens=3, step_sequences=2), cfg)
    # seq 0: A=+1, s0=1.10517 > 1.05 -> -min(1.10517, 1.05) = -1.05 (clipped high)
    # seq 1: A=-1, s1=0.67032 < 0.8  -> -min(-0.67032, -0.8) = 0.8  (clipped low)
    assert loss.item() == pytest.approx((-1.05 + 0.8) / 2, rel=1e-6)
    assert stats["clip_ratio/high"] == 0.5 and stats["clip_ratio/low"] == 0.5 and stats["clip_ratio/region"] == 1.0
    loss.backward()
    assert torch.count_nonzero(lp.grad) == 0  # both sequences clipped: no gradient


def test_gspo_unclipped_value_and_gradient_by_hand():
    # paper's epsilons 3e-4 / 4e-4; log-ratios [1e-4, -3e-4] -> mean -1e-4 -> s = exp(-1e-4), inside [1-3e-4, 1+4e-4]
    old = torch.zeros(1, 2)
    lp = torch.tensor([[1e-4, -3e-4]], requires_grad=True, dtype=torch.float64)
    cfg = AlgorithmConfig(loss="gspo", epsilon=3e-4, epsilon_high=4e-4)
    loss, stats = A.get_policy_loss("gspo")(
        _inputs(lp, old.double(), torch.tensor([2.0], dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64),
                step_tokens=2, step_sequences=4), cfg)
    s = math.exp(-1e-4)
    assert loss.item() == pytest.approx(-2.0 * s / 4, rel=1e-12)  # -A*s / step_sequences
    assert stats["clip_ratio/region"] == 0.0
    loss.backward()
    # d/dlp_t of -A * exp(mean_t lp_t) / 4 = -A * s / |y| / 4 for each of the |y| = 2 tokens
    assert lp.grad[0].tolist() == pytest.approx([-2.0 * s / 2 / 4, -2.0 * s / 2 / 4], rel=1e-12)
    # sequence-level: only the band 1 - 3e-4 .. 1 + 4e-4 counts; a sequence ratio of exp(-4e-4) < 1 - 3e-4 clips
    lp2 = torch.tensor([[-4e-4, -4e-4]], dtype=torch.float64)
    loss2, stats2 = A.get_policy_loss("gspo")(
        _inputs(lp2, old.double(), torch.tensor([-1.0], dtype=torch.float64), torch.ones(1, 2, dtype=torch.float64),
                step_tokens=2, step_sequences=1), cfg)
    assert loss2.item() == pytest.approx(1.0 - 3e-4, rel=1e-12) and stats2["clip_ratio/low"] == 1.0


def test_gspo_differs_from_token_level_clipping():
    # token log-ratios [+0.3, -0.3]: token-level clips the first token (1.35 > 1.2), the sequence ratio is exactly 1
    old = torch.zeros(1, 2)
    lp = torch.tensor([[0.3, -0.3]])
    mask, adv = torch.ones(1, 2), torch.tensor([1.0])
    seq, seq_stats = A.get_policy_loss("gspo")(_inputs(lp, old, adv, mask, 2, 1), AlgorithmConfig())
    tok, _ = A.get_policy_loss("grpo")(_inputs(lp, old, adv, mask, 2, 1), AlgorithmConfig())
    assert seq.item() == pytest.approx(-1.0) and seq_stats["clip_ratio/region"] == 0.0
    assert tok.item() == pytest.approx((-1.2 - math.exp(-0.3)) / 2, rel=1e-6)


def test_gspo_tis_weights_and_fully_masked_rows():
    lp = torch.zeros(2, 2)
    w = torch.tensor([[0.5, 1.5], [2.0, 2.0]])
    mask = torch.tensor([[1.0, 1.0], [0.0, 0.0]])  # row 1 overlong-filtered: contributes nothing
    b = A.LossInputs(logprobs=lp, old_logprobs=lp, advantages=torch.tensor([1.0, 3.0]), mask=mask,
                     ref_logprobs=None, step_tokens=2, step_sequences=1, is_weights=w)
    loss, _ = A.get_policy_loss("gspo")(b, AlgorithmConfig())
    assert loss.item() == pytest.approx(-1.0 * (0.5 + 1.5) / 2)  # mean token weight of row 0 is 1


# ---------------------------------------------------------------------------------------------- overlong


def test_soft_overlong_penalty_at_the_boundaries():
    # L_max = 20, L_cache = 5: 0 up to 15, then (15 - L) / 5 down to -1 at 20
    lengths = torch.tensor([[0, 10, 15, 16], [17, 19, 20, 15]])
    p = A.soft_overlong_penalty(lengths, max_len=20, buffer=5)
    assert p.flatten().tolist() == pytest.approx([0.0, 0.0, 0.0, -0.2, -0.4, -0.8, -1.0, 0.0], abs=1e-7)
    half = A.soft_overlong_penalty(lengths, max_len=20, buffer=5, factor=0.5)
    assert half[1].tolist() == pytest.approx([-0.2, -0.4, -0.5, 0.0], abs=1e-7)
    assert A.soft_overlong_penalty(lengths, 20, 0).tolist() == [[0.0] * 4] * 2  # buffer 0: off
    assert A.soft_overlong_penalty(torch.tensor([[21]]), 20, 5).item() == -1.0  # beyond L_max: -1 (eq. 13)
    with pytest.raises(ValueError, match="smaller"):
        A.soft_overlong_penalty(lengths, 20, 20)


def test_overlong_loss_weights_mask_truncated_completions():
    truncated = torch.tensor([[True, False], [False, True]])
    assert A.overlong_loss_weights(truncated, True).tolist() == [[0.0, 1.0], [1.0, 0.0]]
    assert A.overlong_loss_weights(truncated, False).tolist() == [[1.0, 1.0], [1.0, 1.0]]


def test_overlong_masked_tokens_leave_the_token_loss():
    # the trainer multiplies the mask by the loss weights and counts only kept tokens in step_tokens
    lp = torch.zeros(2, 3, requires_grad=True)
    weights = A.overlong_loss_weights(torch.tensor([False, True]), True)
    mask = torch.ones(2, 3) * weights.reshape(-1, 1)
    loss, _ = A.get_policy_loss("grpo")(_inputs(lp, lp.detach(), torch.tensor([1.0, 5.0]), mask, 3, 1),
                                        AlgorithmConfig())
    assert loss.item() == pytest.approx(-1.0)  # only row 0: 3 tokens of -1, / 3 tokens
    loss.backward()
    assert lp.grad[1].tolist() == [0.0, 0.0, 0.0]


# ---------------------------------------------------------------------------------------------- group filters


def _toy_draw(rounds):
    """A draw() over fixed per-round rewards that records which rounds were asked for."""
    asked = []

    def draw(r):
        asked.append(r)
        return SimpleNamespace(rewards=torch.tensor(rounds[r]))  # what a filter reads of a RolloutBatch
    return draw, asked


# round 0: groups 1, 3 informative; round 1: group 2; round 2: groups 0, 1, 3
_ROUNDS = [
    [[1.0, 1.0], [1.0, 0.0], [0.0, 0.0], [0.0, 1.0]],
    [[0.0, 0.0], [1.0, 1.0], [0.5, 1.0], [1.0, 1.0]],
    [[1.0, 0.0], [0.0, 1.0], [0.0, 0.0], [1.0, 0.0]],
]


def test_dynamic_sampling_refills_to_p_informative_groups():
    draw, asked = _toy_draw(_ROUNDS)
    sel, stats = A.get_group_filter("dynamic_sampling")(draw, 4, AlgorithmConfig(max_extra_rounds=3))
    assert asked == [0, 1, 2]  # stops as soon as 4 informative groups are in hand
    assert sel == [(0, 1), (0, 3), (1, 2), (2, 0)]  # surplus (2, 1), (2, 3) dropped
    assert all(max(_ROUNDS[r][g]) != min(_ROUNDS[r][g]) for r, g in sel)
    assert stats == {"dynamic_sampling/rounds": 3.0, "dynamic_sampling/prompts_sampled": 12.0,
                     "dynamic_sampling/informative_frac": 6 / 12, "dynamic_sampling/filled_tied": 0.0}


def test_dynamic_sampling_tops_up_with_tied_groups_when_rounds_run_out():
    draw, asked = _toy_draw(_ROUNDS)
    sel, stats = A.get_group_filter("dynamic_sampling")(draw, 4, AlgorithmConfig(max_extra_rounds=1))
    assert asked == [0, 1]
    # 3 informative groups in 2 rounds; the first tied group sampled, (0, 0), fills the batch
    assert sel == [(0, 1), (0, 3), (1, 2), (0, 0)]
    assert stats["dynamic_sampling/rounds"] == 2.0 and stats["dynamic_sampling/filled_tied"] == 1.0
    draw, asked = _toy_draw(_ROUNDS)
    sel, _ = A.get_group_filter("dynamic_sampling")(draw, 2, AlgorithmConfig(max_extra_rounds=0))
    assert asked == [0] and sel == [(0, 1), (0, 3)]


def test_no_group_filter_keeps_the_first_round():
    draw, asked = _toy_draw(_ROUNDS)
    sel, stats = A.get_group_filter("none")(draw, 4, AlgorithmConfig())
    assert asked == [0] and sel == [(0, 0), (0, 1), (0, 2), (0, 3)] and stats == {}


def test_unknown_group_filter_lists_the_registry():
    with pytest.raises(KeyError, match="dynamic_sampling"):
        A.get_group_filter("nope")


def test_prompt_sampler_extra_rounds_are_deterministic_and_fresh():
    from rlvr.data import PromptSampler

    s1, s2 = PromptSampler(50, 4, seed=3), PromptSampler(50, 4, seed=3)
    first = s1.indices(7)
    e1 = s1.extra_indices(7, 1, exclude=first)
    assert e1 == s2.extra_indices(7, 1, exclude=first)  # same (seed, step, round) -> same prompts
    assert len(e1) == 4 and len(set(e1)) == 4 and not set(e1) & set(first)
    assert e1 != s1.extra_indices(7, 2, exclude=first) and e1 != s1.extra_indices(8, 1, exclude=first)
    assert e1 != PromptSampler(50, 4, seed=4).extra_indices(7, 1, exclude=first)
    assert s1.indices(8) == s2.indices(8)  # the epoch order is untouched by extra draws
    tiny = PromptSampler(5, 4, seed=0)
    assert len(tiny.extra_indices(0, 1, exclude=tiny.indices(0))) == 4  # too few fresh prompts: reuse allowed


# ---------------------------------------------------------------------------------------------- presets


def test_dapo_and_gspo_presets_fill_unset_options_only():
    dapo = AlgorithmConfig(preset="dapo")
    assert (dapo.loss, dapo.epsilon, dapo.epsilon_high, dapo.group_filter, dapo.overlong_mask, dapo.beta) == (
        "grpo", 0.2, 0.28, "dynamic_sampling", True, 0.0)
    assert AlgorithmConfig(preset="dapo", epsilon_high=0.3).epsilon_high == 0.3  # explicit options win
    gspo = AlgorithmConfig(preset="gspo")
    assert (gspo.loss, gspo.epsilon, gspo.epsilon_high) == ("gspo", 3e-4, 4e-4)
    assert AlgorithmConfig().group_filter == "none" and AlgorithmConfig().epsilon_high is None
