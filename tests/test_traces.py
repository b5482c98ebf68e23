"""Eligibility traces: dense traces vs autograd, the κ-filter identity, and LIF's factorization."""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from l2l.filters import exp_filter, reverse_exp_filter
from l2l.network import RecurrentNetwork
from l2l.rules import EProp
from l2l.traces import eligibility_gradient, eligibility_traces
from l2l.verify import make_case

CELLS = ["lif", "alif", "lstm", "rnn"]


@pytest.mark.parametrize("cell", CELLS)
def test_dense_traces_are_dz_dW_with_recurrence_cut(cell):
    """e_ji^t = dz_j^t/dW_ji in the network whose z^{t-1} is detached in recurrence and reset."""
    case = make_case(cell, steps=12)
    net, x = case.network, case.inputs
    trial = net.run(x, detach_recurrent=True, record=True)
    traces = eligibility_traces(net.layers[0], trial.detached().layers[0], x)
    layer = {k.removeprefix("layers.0."): v for k, v in net.parameter_dict().items() if k.startswith("layers.0.")}
    z = trial.layers[0].z
    if cell in ("lif", "alif"):
        assert z.sum() > 0
    for t in (0, 5, 11):
        grads = torch.autograd.grad(z[:, t].sum(), list(layer.values()), retain_graph=True)
        for (name, _), g in zip(layer.items(), grads, strict=True):
            torch.testing.assert_close(traces[name][:, t].sum(0), g, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", CELLS)
def test_kappa_filter_moves_from_traces_to_learning_signal(cell):
    """Σ_t L^t F_κ(e)^t (online, dense) == Σ_t F_κ^←(L)^t e^t (what the rules compute)."""
    case = make_case(cell)
    net, x = case.network, case.inputs
    trial = net.run(x, record=True)
    activity = trial.layers[0]
    L = torch.randn_like(activity.z)
    kappa = net.readout.kappa
    traces = eligibility_traces(net.layers[0], activity, x)
    # L is per neuron (B, T, n); trace rows are per gate and neuron (G·n): repeat L over the gates
    online = {k: torch.einsum("btr,btr...->r...", L.repeat(1, 1, e.shape[2] // L.shape[2]), exp_filter(e, kappa))
              for k, e in traces.items()}
    offline = eligibility_gradient(net.layers[0], activity, x, reverse_exp_filter(L, kappa))
    for k in online:
        torch.testing.assert_close(offline[k], online[k], rtol=1e-10, atol=1e-12)


def test_reverse_filter_is_the_adjoint_of_the_filter():
    u, v = torch.randn(3, 40, 5, dtype=torch.float64), torch.randn(3, 40, 5, dtype=torch.float64)
    torch.testing.assert_close((exp_filter(u, 0.9) * v).sum(), (u * reverse_exp_filter(v, 0.9)).sum())


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any op produces."""

    def __init__(self):
        super().__init__()
        self.largest = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, torch.Tensor):
                self.largest = max(self.largest, t.numel())
        return out


def test_lif_eprop_never_builds_a_BTnm_tensor():
    batch, steps, n_in, n = 2, 60, 20, 30
    net = RecurrentNetwork(n_in, n, 2, cell="lif")
    x = (torch.rand(batch, steps, n_in) < 0.2).float()
    target = torch.randn(batch, steps, 2)
    with LargestTensor() as probe:
        EProp("random").gradients(net, x, lambda y: ((y - target) ** 2).mean())
    assert probe.largest <= batch * (steps + 1) * max(n, n_in)  # (B, T+1, n) at most; (B, T, n, m) would be 36000


@pytest.mark.parametrize("cell", CELLS)
def test_current_signal_is_the_adjoint_of_the_forward_traces(cell):
    """Σ_t current_signal^t ⊗ u^t (backwards in time) == Σ_t dE_dz^t e^t from the dense forward traces, summed
    over tasks and per task; eligibility_gradient (which takes the backward form for ALIF and LSTM) agrees too."""
    from l2l.synapses import contract_over_time
    from l2l.traces import current_signal
    from l2l.traces.presynaptic import PresynapticInputs

    case = make_case(cell, steps=15)
    net, x = case.network, case.inputs
    cell_module = net.layers[0]
    activity = net.run(x, record=True).layers[0]
    G = torch.randn_like(activity.z)
    dense = eligibility_traces(cell_module, activity, x)
    per_task_oracle = {k: torch.einsum("btr,btr...->br...", G.repeat(1, 1, e.shape[2] // G.shape[2]), e)
                       for k, e in dense.items()}
    pre = PresynapticInputs(x, activity.z_prev)
    has_bias = cell_module.model.has_bias
    backward = pre.split(contract_over_time(current_signal(cell_module, activity, G), pre.concatenated(has_bias),
                                            per_task=True), has_bias)
    got_per_task = eligibility_gradient(cell_module, activity, x, G, per_task=True)
    got_summed = eligibility_gradient(cell_module, activity, x, G)
    for k, expected in per_task_oracle.items():
        mask = 1 - torch.eye(expected.shape[-1], dtype=expected.dtype) \
            if k == "w_rec" and getattr(cell_module.params, "no_autapses", False) else 1
        assert expected.abs().max() > 1e-3
        torch.testing.assert_close(backward[k] * mask, expected, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(got_per_task[k], expected, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(got_summed[k], expected.sum(0), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("cell", ["alif", "lstm"])
def test_backward_form_misses_the_traces_without_the_within_neuron_recursion(cell):
    """Negative control: dropping the within-neuron carry (ALIF's adaptation, LSTM's forget gate) in the
    backward recursion changes the gradient well beyond round-off, so the identity above can fail."""
    from l2l.traces import trace_module

    case = make_case(cell, steps=15)
    net, x = case.network, case.inputs
    activity = net.run(x, record=True).layers[0]
    G = torch.randn_like(activity.z)
    module, params, record = trace_module(net.layers[0]), net.layers[0].params, activity.record
    exact = module.current_signal(params, record, G)
    if cell == "lstm":
        broken = module.current_signal(params, {**record, "f": torch.zeros_like(record["f"])}, G)
    else:
        class WithoutAdaptationCarry:                # ρ = 0: λ^a forgets the future at once
            alpha, rho, betas = params.alpha, 0.0, params.betas

        broken = module.current_signal(WithoutAdaptationCarry, record, G)
    assert (broken - exact).abs().max() > 1e-3 * exact.abs().max()
