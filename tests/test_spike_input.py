"""The spike-driven input current (l2l.spike_input) against the dense product, in float64."""

import pytest
import torch

import l2l.spike_input as spike_input
from l2l.native import spiking_ops
from l2l.spike_input import input_projection
from l2l.twice_differentiable import twice_differentiable

pytestmark = pytest.mark.skipif(spiking_ops() is None, reason="the C++ kernels are not built here")


def _inputs(density, time_major, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(4, 30, 13, generator=g, dtype=torch.float64) < density).double()
    if density >= 0.5:
        x = torch.randn(4, 30, 13, generator=g, dtype=torch.float64)     # analog inputs
    x[:, 0] *= 0.7                                                        # not only 0 and 1
    if time_major:                                                        # a layer's z: (B, T, m) view of (T, B, m)
        x = x.transpose(0, 1).contiguous().transpose(0, 1)
    w = torch.randn(9, 13, generator=g, dtype=torch.float64)
    return x.requires_grad_(), w.requires_grad_()


@pytest.mark.parametrize("density", [0.0, 0.05, 0.5])
@pytest.mark.parametrize("time_major", [False, True])
def test_the_spike_driven_current_and_its_gradients_are_the_products(density, time_major):
    """Forward and both gradients equal x Wᵀ's through autograd to float64 round-off, for spikes, no spikes and
    analog inputs (the kernels' own products), batch-major and time-major x; the same numbers on 1 and 2 threads."""
    x, w = _inputs(density, time_major)
    weights = torch.randn(30, 4, 9, dtype=torch.float64)
    dense = x.transpose(0, 1) @ w.transpose(0, 1)
    dense_grads = torch.autograd.grad((dense * weights).sum(), [x, w])
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            fast = input_projection(x, w)
            results.append((fast, *torch.autograd.grad((fast * weights).sum(), [x, w])))
    finally:
        torch.set_num_threads(before)
    assert results[0][0].shape == (30, 4, 9)
    for got, want in zip(results[0], (dense, *dense_grads), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-13, atol=1e-13)
    for one, two in zip(*results, strict=True):
        assert torch.equal(one, two)


def test_a_dropped_event_is_seen():
    """Negative control: the kernel on x with one spike removed differs from the product on the full x."""
    x, w = _inputs(0.05, False, seed=3)
    x = x.detach()
    spikes = x.nonzero()
    fewer = x.clone()
    fewer[tuple(spikes[0])] = 0
    assert (input_projection(fewer, w.detach()) - x.transpose(0, 1) @ w.detach().T).abs().max() > 1e-3


def test_second_order_asks_for_the_product_path():
    """create_graph through the kernels is refused in one line; inside twice_differentiable() the product runs and
    a gradient of a gradient is taken."""
    x, w = _inputs(0.05, False)
    current = input_projection(x, w)
    with pytest.raises(RuntimeError, match="first-order gradients only"):
        torch.autograd.grad(current.square().sum(), w, create_graph=True)
    with twice_differentiable():
        current = input_projection(x, w)
        (g_w,) = torch.autograd.grad(current.square().sum(), w, create_graph=True)
        (g_x,) = torch.autograd.grad(g_w.sum(), x)
    assert torch.isfinite(g_x).all()


def test_the_kernels_count_the_flops_of_the_products_they_replace(monkeypatch):
    from torch.utils.flop_counter import FlopCounterMode

    from l2l.outer_loop.bench.profile_meta import _register_fused_trial_flops

    _register_fused_trial_flops()
    x, w = _inputs(0.05, False)
    counts = {}
    for kernels in (True, False):
        if not kernels:
            monkeypatch.setattr(spike_input, "_applies", lambda x, w: False)
        with FlopCounterMode(display=False) as counter:
            input_projection(x, w).square().sum().backward()
        counts[kernels] = counter.get_total_flops()
    assert counts[True] == counts[False] > 0
