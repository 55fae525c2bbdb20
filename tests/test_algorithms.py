"""Advantages, KL and the policy loss against values computed by hand."""

import math

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
