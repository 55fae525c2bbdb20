"""Engine/trainer mismatch metrics and truncated importance sampling (rlvr.algorithms), checked by hand."""

import math

import torch

from rlvr.algorithms import LossInputs, get_policy_loss, sampling_mismatch, truncated_is_weights
from rlvr.config import AlgorithmConfig


def test_mismatch_is_zero_when_engine_equals_trainer():
    lp = torch.log(torch.tensor([[0.5, 0.25, 0.1], [0.9, 0.3, 0.2]]))
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 1.0, 0.0]])
    m = sampling_mismatch(lp, lp.clone(), mask)
    assert m["sampling/logp_diff_max"] == 0 and m["sampling/kl"] == 0
    assert m["sampling/is_ratio_min"] == m["sampling/is_ratio_max"] == 1


def test_mismatch_values_by_hand():
    p = torch.tensor([[math.log(0.5), math.log(0.2)]])
    q = torch.tensor([[math.log(0.25), math.log(0.4)]])  # r = p/q = 2 and 0.5
    mask = torch.ones(1, 2)
    m = sampling_mismatch(p, q, mask)
    assert abs(m["sampling/logp_diff_mean"] - math.log(2)) < 1e-6
    k3 = ((2 - 1 - math.log(2)) + (0.5 - 1 - math.log(0.5))) / 2
    assert abs(m["sampling/kl"] - k3) < 1e-6
    assert abs(m["sampling/is_ratio_min"] - 0.5) < 1e-6 and abs(m["sampling/is_ratio_max"] - 2) < 1e-6


def test_mismatch_ignores_padding():
    p = torch.tensor([[0.0, -1.0]])
    q = torch.tensor([[0.0, -9.0]])
    m = sampling_mismatch(p, q, torch.tensor([[1.0, 0.0]]))
    assert m["sampling/logp_diff_max"] == 0 and m["sampling/kl"] == 0


def test_truncated_is_weights_cap_and_mask():
    p = torch.log(torch.tensor([[0.9, 0.1, 0.5]]))
    q = torch.log(torch.tensor([[0.3, 0.2, 0.5]]))  # ratios 3, 0.5, 1
    w, stats = truncated_is_weights(p.requires_grad_(), q, torch.tensor([[1.0, 1.0, 0.0]]), cap=2.0)
    assert not w.requires_grad
    assert torch.allclose(w, torch.tensor([[2.0, 0.5, 0.0]]))
    assert abs(stats["sampling/tis_clipped_frac"] - 0.5) < 1e-6
    assert abs(stats["sampling/tis_weight_mean"] - 1.25) < 1e-6


def test_is_weights_scale_the_policy_gradient_per_token():
    cfg = AlgorithmConfig()
    lp = torch.log(torch.tensor([[0.5, 0.4], [0.3, 0.6]])).requires_grad_()
    mask = torch.ones(2, 2)
    adv = torch.tensor([1.0, -1.0])
    w = torch.tensor([[2.0, 1.0], [0.5, 1.0]])
    loss_fn = get_policy_loss("grpo")

    def grad(weights):
        x = lp.detach().clone().requires_grad_()
        b = LossInputs(logprobs=x, old_logprobs=x.detach(), advantages=adv, mask=mask, ref_logprobs=None,
                       step_tokens=4, step_sequences=2, is_weights=weights)
        loss, _ = loss_fn(b, cfg)
        loss.backward()
        return x.grad

    g0, g1 = grad(None), grad(w)
    assert torch.allclose(g1, g0 * w)
    # default: no weights, unchanged behaviour
    assert torch.allclose(g0, -adv.unsqueeze(-1).expand(2, 2) / 4)
