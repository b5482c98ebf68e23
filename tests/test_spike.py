"""Spike function: forward Heaviside, surrogate backward, and torch.func transforms through it."""

import pytest
import torch
from torch.func import grad, jvp, vmap

from l2l.spike import SURROGATES, spike, surrogate_derivative


def test_forward_is_heaviside():
    x = torch.tensor([-1.0, -1e-9, 0.0, 1e-9, 2.0])
    assert spike(x).tolist() == [0, 0, 0, 1, 1]


@pytest.mark.parametrize("surrogate", sorted(SURROGATES))
def test_backward_is_the_surrogate(surrogate):
    x = torch.linspace(-2, 2, 41, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(spike(x, 0.7, surrogate).sum(), x)
    torch.testing.assert_close(g, surrogate_derivative(x.detach(), 0.7, surrogate))


def test_piecewise_linear_shape():
    x = torch.tensor([-1.5, -0.5, 0.0, 0.25, 1.0])
    assert surrogate_derivative(x, 0.3).tolist() == pytest.approx([0.0, 0.15, 0.3, 0.225, 0.0])


def test_fast_sigmoid_differs_from_piecewise_linear():
    x = torch.tensor([1.5])
    assert surrogate_derivative(x, 0.3, "fast_sigmoid").item() > 0 == surrogate_derivative(x, 0.3).item()


def test_grad_and_vmap_work_through_spike():
    x = torch.randn(5, 3, dtype=torch.float64)
    per_row = vmap(grad(lambda v: (spike(v) * torch.arange(3.0, dtype=torch.float64)).sum()))(x)
    expected = surrogate_derivative(x, 0.3) * torch.arange(3.0, dtype=torch.float64)
    torch.testing.assert_close(per_row, expected)


def test_forward_mode_uses_the_surrogate():
    x = torch.randn(4, dtype=torch.float64)
    t = torch.randn(4, dtype=torch.float64)
    _, tangent = jvp(lambda v: spike(v, 0.5), (x,), (t,))
    torch.testing.assert_close(tangent, t * surrogate_derivative(x, 0.5))


def test_bad_gamma_and_surrogate_are_refused():
    with pytest.raises(ValueError, match="gamma=-1"):
        spike(torch.zeros(1), gamma=-1)
    with pytest.raises(ValueError, match="surrogate='nope'"):
        spike(torch.zeros(1), surrogate="nope")
