"""Fast paths give the numbers of the plain step-by-step computation (float64 oracles)."""

import pytest
import torch

from l2l.filters import _exp_filter_loop, exp_filter, reverse_exp_filter
from l2l.network import RecurrentNetwork
from l2l.recurrent_input import RecurrentInput


@pytest.fixture(params=["native", "blocked"])
def filter_path(request, monkeypatch):
    """Run a test through the C++ filter (skipped where it is not built) and through the blocked products."""
    import l2l.filters as filters

    if request.param == "native" and filters.filter_ops() is None:
        pytest.skip("no C++ kernels here")
    if request.param == "blocked":
        monkeypatch.setattr(filters, "filter_ops", lambda: None)
    return request.param


@pytest.mark.parametrize("steps", [1, 7, 31, 32, 33, 64, 100, 257])
@pytest.mark.parametrize("with_initial", [False, True])
@pytest.mark.parametrize("time_major", [False, True])
def test_block_exp_filter_equals_the_recurrence(steps, with_initial, time_major, filter_path):
    g = torch.Generator().manual_seed(steps)
    u = torch.randn(3, steps, 4, 2, generator=g, dtype=torch.float64)
    if time_major:  # (B, T, ...) view of (T, B, ...) storage, as a layer's z^{t-1}
        u = u.transpose(0, 1).contiguous().transpose(0, 1)
    initial = torch.randn(3, 4, 2, generator=g, dtype=torch.float64) if with_initial else None
    decay = torch.tensor(0.93, dtype=torch.float64)
    expected = _exp_filter_loop(u, decay, initial)
    torch.testing.assert_close(exp_filter(u, 0.93, initial), expected, rtol=1e-12, atol=1e-12)


def test_block_exp_filter_differentiates_like_the_recurrence(filter_path):
    g = torch.Generator().manual_seed(0)
    u = torch.randn(2, 45, 3, generator=g, dtype=torch.float64, requires_grad=True)
    decay = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    weights = torch.randn(2, 45, 3, generator=g, dtype=torch.float64)
    fast = torch.autograd.grad((exp_filter(u, decay) * weights).sum(), [u, decay])
    slow = torch.autograd.grad((_exp_filter_loop(u, decay, None) * weights).sum(), [u, decay])
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-11, atol=1e-11)


def test_per_channel_decay_takes_the_loop_and_reverse_filter_is_the_adjoint(filter_path):
    g = torch.Generator().manual_seed(1)
    u = torch.randn(2, 20, 3, generator=g, dtype=torch.float64)
    v = torch.randn(2, 20, 3, generator=g, dtype=torch.float64)
    decay = torch.tensor([0.5, 0.9, 0.99], dtype=torch.float64)
    torch.testing.assert_close(exp_filter(u, decay), _exp_filter_loop(u, decay, None))
    # <F(u), v> = <u, F^←(v)>
    torch.testing.assert_close((exp_filter(u, 0.9) * v).sum(), (u * reverse_exp_filter(v, 0.9)).sum())


def _reverse_loop(u, decay):
    """out^t = decay·out^{t+1} + u^t, one step at a time, as PyTorch operations (float decay)."""
    out, acc = [], None
    for step in reversed(u.unbind(1)):
        acc = step if acc is None else decay * acc + step
        out.append(acc)
    return torch.stack(out[::-1], dim=1)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("time_major", [False, True])
@pytest.mark.parametrize("with_initial", [False, True])
def test_the_cpp_filter_is_the_pytorch_loop_bit_for_bit(dtype, time_major, with_initial, filter_path):
    """The C++ recurrence computes ``decay * out + u`` in PyTorch's order: equal to the PyTorch loop bit for bit
    (causal and anti-causal, float32 and float64, over several column blocks and threads). The blocked products
    are the same recurrence to rounding only: the negative control that this equality is not vacuous."""
    g = torch.Generator().manual_seed(5)
    u = torch.randn(5, 130, 7, 90, generator=g, dtype=dtype)   # 630 columns: three blocks of the kernel
    if time_major:
        u = u.transpose(0, 1).contiguous().transpose(0, 1)
    initial = torch.randn(5, 7, 90, generator=g, dtype=dtype) if with_initial else None
    causal = _exp_filter_loop(u, torch.tensor(0.93, dtype=dtype), initial)
    anti = _reverse_loop(u, 0.93)
    if filter_path == "native":
        assert torch.equal(exp_filter(u, 0.93, initial), causal)
        assert torch.equal(reverse_exp_filter(u, 0.93), anti)
    else:
        torch.testing.assert_close(exp_filter(u, 0.93, initial), causal)
        torch.testing.assert_close(reverse_exp_filter(u, 0.93), anti)
        assert not torch.equal(exp_filter(u, 0.93, initial), causal)


def test_the_cpp_filter_gradients_check_twice(filter_path):
    """Finite differences of first and second order (float64) through the filter, its initial value and the
    anti-causal one; a 0-dim decay with a gradient takes the blocked products and is checked the same way."""
    g = torch.Generator().manual_seed(6)
    u = torch.randn(2, 11, 3, generator=g, dtype=torch.float64, requires_grad=True)
    initial = torch.randn(2, 3, generator=g, dtype=torch.float64, requires_grad=True)
    decay = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)
    for fn, inputs in ((lambda x, x0: exp_filter(x, 0.8, x0), (u, initial)),
                       (lambda x: reverse_exp_filter(x, 0.8), (u,)),
                       (lambda x, a: exp_filter(x, a), (u, decay)),
                       (lambda x: exp_filter(x.transpose(0, 1).contiguous().transpose(0, 1), 0.6), (u,))):
        assert torch.autograd.gradcheck(fn, inputs)
        assert torch.autograd.gradgradcheck(fn, inputs)


def _plain_weight_grad(w, z_seq, current_seq, weights_out):
    """Autograd through plain matmuls, one step at a time (the oracle)."""
    out = []
    for t in range(z_seq.shape[1]):
        z = z_seq[:, t]
        drive = z @ w.transpose(-1, -2) if w.dim() == 2 else (z.unsqueeze(1) @ w.transpose(1, 2)).squeeze(1)
        out.append(current_seq[:, t] + drive)
    return torch.stack(out, 1)


@pytest.mark.parametrize("per_task", [False, True])
def test_deferred_weight_gradient_equals_autograd_per_step(per_task):
    g = torch.Generator().manual_seed(2)
    batch, steps, n, m = 3, 9, 5, 4
    shape = (batch, n, m) if per_task else (n, m)
    w = torch.randn(*shape, generator=g, dtype=torch.float64, requires_grad=True)
    z = torch.randn(batch, steps, m, generator=g, dtype=torch.float64, requires_grad=True)
    current = torch.randn(batch, steps, n, generator=g, dtype=torch.float64, requires_grad=True)
    probe = torch.randn(batch, steps, n, generator=g, dtype=torch.float64)
    recurrent = RecurrentInput(w)
    assert recurrent.deferred
    fast_out = torch.stack([recurrent.add_to(current[:, t], z[:, t]) for t in range(steps)], 1)
    fast = torch.autograd.grad((fast_out * probe).sum(), [w, z, current])
    slow = torch.autograd.grad((_plain_weight_grad(w, z, current, probe) * probe).sum(), [w, z, current])
    for a, b in zip(fast, slow, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_deferred_weight_gradient_survives_retain_graph_and_refuses_double_backward():
    g = torch.Generator().manual_seed(3)
    w = torch.randn(4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    z = torch.randn(2, 4, generator=g, dtype=torch.float64)
    recurrent = RecurrentInput(w)
    out = recurrent.add_to(torch.zeros(2, 4, dtype=torch.float64), z)
    out = recurrent.add_to(out, torch.tanh(out))
    loss = (out ** 2).sum()
    (first,) = torch.autograd.grad(loss, w, retain_graph=True)
    (second,) = torch.autograd.grad(loss, w, retain_graph=True)
    torch.testing.assert_close(first, second)
    (with_graph,) = torch.autograd.grad(loss, w, create_graph=True)
    with pytest.raises(RuntimeError):
        with_graph.sum().backward()


def _two_steps(seed: int = 3):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    z0 = torch.randn(2, 4, generator=g, dtype=torch.float64, requires_grad=True)
    recurrent = RecurrentInput(w)
    out = recurrent.add_to(torch.zeros(2, 4, dtype=torch.float64), z0)
    out = recurrent.add_to(out, torch.tanh(out))
    return w, z0, recurrent, (out ** 2).sum()


def test_a_pass_that_skips_the_weight_leaves_nothing_for_the_next_pass():
    # autograd.grad with respect to z only runs the steps' backward, not the weight's: their pairs must not be
    # added to the next pass's W gradient (before the fix: exactly twice the gradient)
    w, z0, _, loss = _two_steps()
    (alone,) = torch.autograd.grad(loss, w, retain_graph=True)
    torch.autograd.grad(loss, z0, retain_graph=True)
    (after,) = torch.autograd.grad(loss, w)
    torch.testing.assert_close(after, alone, rtol=1e-15, atol=0.0)


def test_a_graph_whose_weight_gradient_was_never_taken_is_freed():
    # e-prop 3 asks autograd for the signals only; the graph must go when its tensors do (before the fix the
    # stored z^{t-1} tied the graph to itself, a cycle the garbage collector cannot free: 0.45 MB per trial)
    import gc
    import weakref

    w, z0, recurrent, loss = _two_steps()
    torch.autograd.grad(loss, z0)
    pairs = weakref.ref(recurrent.pairs)
    del recurrent, loss
    gc.collect()
    assert pairs() is None


def test_plain_simulation_takes_no_autograd_path():
    w = torch.randn(3, 3, requires_grad=True)
    with torch.no_grad():
        assert not RecurrentInput(w).deferred
    assert not RecurrentInput(w.detach()).deferred


@pytest.mark.parametrize("cell", ["lif", "alif", "lstm", "rnn"])
@pytest.mark.parametrize("per_task", [False, True])
def test_network_gradients_match_the_plain_step_by_step_graph(cell, per_task, monkeypatch):
    """BPTT through a whole network: deferred W_rec gradient == autograd's per-step gradient."""
    torch.manual_seed(4)
    net = RecurrentNetwork(3, [6, 5], 2, cell=cell).double()
    x = (torch.rand(2, 23, 3, dtype=torch.float64) < 0.3).double()
    params = {k: (v.detach().expand(2, *v.shape).clone() if per_task and v.dim() == 2 else v.detach()).requires_grad_()
              for k, v in net.parameter_dict().items()}

    def grads():
        y = net.run(x, params).output
        return torch.autograd.grad((y ** 2).sum(), list(params.values()))

    fast = grads()
    monkeypatch.setattr("l2l.recurrent_input.DEFERRED", False)  # autograd's per-step weight gradient
    slow = grads()
    for name, a, b in zip(params, fast, slow, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=name)


@pytest.mark.parametrize("cell", ["lif", "alif"])
@pytest.mark.parametrize("surrogate", ["piecewise_linear", "fast_sigmoid", "gaussian"])
def test_plain_and_differentiable_simulation_record_the_same_spikes_and_psi(cell, surrogate):
    """Without autograd the step skips the surrogate and ψ is evaluated in place: same numbers."""
    from l2l.cells.alif import ALIFParameters
    from l2l.cells.lif import LIFParameters

    params = (LIFParameters if cell == "lif" else ALIFParameters)(surrogate=surrogate, n_ref=3)
    torch.manual_seed(5)
    net = RecurrentNetwork(4, 7, 2, cell=cell, cell_params=params).double()
    x = (torch.rand(3, 40, 4, dtype=torch.float64) < 0.4).double() * 2.0
    with torch.no_grad():
        plain = net.run(x, record=True).layers[0]
    tracked = net.run(x, record=True).layers[0]
    assert tracked.record["psi"].requires_grad
    assert plain.z.sum() > 0 and (plain.record["psi"] == 0).any()
    torch.testing.assert_close(plain.z, tracked.z.detach(), rtol=0, atol=0)
    torch.testing.assert_close(plain.record["psi"], tracked.record["psi"].detach(), rtol=1e-12, atol=1e-15)
