"""RL objectives: a hand-computed λ-return example with a termination, signs and stop-gradients."""

import pytest
import torch

from diamond.loop.rl import lambda_returns, policy_loss, value_loss


def test_lambda_returns_hand_computed_with_termination() -> None:
    gamma, lam = 0.9, 0.5
    r = torch.tensor([[1.0, 0.0, 2.0, 1.0]])
    d = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    v = torch.tensor([[0.5, 1.0, 2.0, 4.0, 8.0]])
    # Backwards by hand (Eq. 14): Λ_4 = V_4 = 8
    l3 = 1.0 + 0.9 * 1 * (0.5 * 8.0 + 0.5 * 8.0)  # 8.2
    l2 = 2.0 + 0.9 * 0 * (0.5 * 4.0 + 0.5 * l3)  # termination cuts the future: 2.0
    l1 = 0.0 + 0.9 * (0.5 * 2.0 + 0.5 * l2)  # 1.8
    l0 = 1.0 + 0.9 * (0.5 * 1.0 + 0.5 * l1)  # 2.26
    out = lambda_returns(r, d, v, gamma, lam)
    torch.testing.assert_close(out, torch.tensor([[l0, l1, l2, l3]]))
    assert out[0, 2].item() == pytest.approx(2.0)
    assert out[0, 0].item() == pytest.approx(2.26)


def test_lambda_one_is_discounted_return_and_zero_is_td0() -> None:
    r = torch.tensor([[1.0, 1.0, 1.0]])
    d = torch.zeros(1, 3)
    v = torch.tensor([[0.0, 10.0, 10.0, 10.0]])
    mc = lambda_returns(r, d, v, 0.5, 1.0)
    assert mc[0, 0].item() == pytest.approx(1 + 0.5 + 0.25 + 0.125 * 10)
    td0 = lambda_returns(r, d, v, 0.5, 0.0)
    assert td0[0, 0].item() == pytest.approx(1 + 0.5 * 10)


def test_lambda_returns_shape_error() -> None:
    with pytest.raises(ValueError, match="H \\+ 1"):
        lambda_returns(torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(2, 3), 0.9, 0.9)


def test_value_loss_stops_gradient_through_targets() -> None:
    values = torch.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    returns = (values[:, :2] * 2).clone()  # a target that depends on values: must not get gradient
    loss = value_loss(values, returns, torch.ones(1, 2))
    loss.backward()
    # d/dV_t of mean (V_t - sg(2 V_t))^2 = 2 (V_t - 2V_t) / 2 = -V_t
    torch.testing.assert_close(values.grad, torch.tensor([[-1.0, -2.0, 0.0]]))


def test_policy_loss_sign_and_no_gradient_into_values() -> None:
    logits = torch.zeros(1, 1, 2, requires_grad=True)
    values = torch.zeros(1, 2, requires_grad=True)
    actions = torch.tensor([[0]])
    returns = torch.tensor([[1.0]])  # positive advantage: action 0 must become more likely
    loss, entropy = policy_loss(logits, actions, returns, values, torch.ones(1, 1), entropy_weight=0.0)
    loss.backward()
    assert logits.grad[0, 0, 0] < 0 < logits.grad[0, 0, 1]  # gradient descent raises logit 0
    assert values.grad is None or torch.all(values.grad == 0)
    assert entropy.item() == pytest.approx(torch.log(torch.tensor(2.0)).item())


def test_entropy_bonus_pushes_towards_uniform_and_mask_excludes_steps() -> None:
    logits = torch.tensor([[[2.0, 0.0], [5.0, -5.0]]], requires_grad=True)
    zeros = torch.zeros(1, 3)
    loss, _ = policy_loss(logits, torch.tensor([[0, 0]]), torch.zeros(1, 2), zeros, torch.tensor([[1.0, 0.0]]), 1.0)
    loss.backward()
    assert logits.grad[0, 0, 0] > 0  # entropy maximisation lowers the dominant logit
    assert torch.all(logits.grad[0, 1] == 0)  # masked step contributes nothing
