"""Networks: shapes, per-task weights and vmap give the same numbers as one task at a time."""

import pytest
import torch
from torch.func import vmap

from l2l.network import RecurrentNetwork
from l2l.verify import cell_parameters

CELLS = ["lif", "alif", "lstm", "rnn"]


def per_task_params(net, batch):
    """Each weight with a leading batch dimension, a different perturbation per task."""
    g = torch.Generator().manual_seed(3)
    return {k: v.detach() + 0.3 * torch.randn(batch, *v.shape, generator=g, dtype=v.dtype)
            for k, v in net.named_parameters()}


@pytest.mark.parametrize("cell", CELLS)
def test_per_task_weights_equal_running_tasks_one_by_one(cell):
    net = RecurrentNetwork(3, [6, 5], 2, cell=cell, cell_params=cell_parameters(cell)).double()
    x = 1.5 * torch.rand(4, 20, 3, dtype=torch.float64)
    params = per_task_params(net, 4)
    together = net.run(x, params).output
    one_by_one = torch.cat([net.run(x[b:b + 1], {k: v[b] for k, v in params.items()}).output for b in range(4)])
    torch.testing.assert_close(together, one_by_one, rtol=0, atol=1e-12)
    assert together.abs().sum() > 0


@pytest.mark.parametrize("cell", CELLS)
def test_vmap_over_tasks_equals_loop(cell):
    net = RecurrentNetwork(3, 6, 2, cell=cell, cell_params=cell_parameters(cell)).double()
    x = 1.5 * torch.rand(4, 20, 3, dtype=torch.float64)
    params = per_task_params(net, 4)
    mapped = vmap(lambda p, xb: net.run(xb.unsqueeze(0), p).output.squeeze(0))(params, x)
    loop = torch.stack([net.run(x[b:b + 1], {k: v[b] for k, v in params.items()}).output[0] for b in range(4)])
    torch.testing.assert_close(mapped, loop, rtol=0, atol=1e-12)


def test_spiking_network_spikes_and_output_shapes():
    net = RecurrentNetwork(3, [8, 4], 2, cell=["lif", "alif"])
    trial = net.run(2 * torch.rand(5, 30, 3), record=True)
    assert trial.output.shape == (5, 30, 2)
    assert [a.z.shape for a in trial.layers] == [(5, 30, 8), (5, 30, 4)]
    assert trial.layers[0].z.sum() > 0 and set(trial.layers[0].z.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(trial.layers[0].z_prev[:, 1:], trial.layers[0].z[:, :-1])
    assert trial.layers[0].record["psi"].shape == (5, 30, 8)


def test_readout_is_a_leaky_integrator_of_the_top_layer():
    net = RecurrentNetwork(2, 4, 1, cell="rnn").double()
    trial = net.run(torch.rand(1, 10, 2, dtype=torch.float64))
    drive = trial.layers[0].z @ net.readout.w_out.T + net.readout.bias
    y = torch.zeros(1, 1, dtype=torch.float64)
    for t in range(10):
        y = net.readout.kappa * y + drive[:, t]
        torch.testing.assert_close(trial.output[:, t], y)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_in": 0, "hidden": 4, "n_out": 1}, "n_in=0"),
        ({"n_in": 2, "hidden": [4, 0], "n_out": 1}, r"hidden\[1\]=0"),
        ({"n_in": 2, "hidden": [], "n_out": 1}, "hidden=\\[\\]"),
        ({"n_in": 2, "hidden": 4, "n_out": 0}, "n_out=0"),
        ({"n_in": 2, "hidden": 4, "n_out": 1, "cell": "gru"}, r"cell\[0\]='gru'"),
        ({"n_in": 2, "hidden": [4, 4], "n_out": 1, "cell": ["lif"]}, "1/2 entries"),
        ({"n_in": 2, "hidden": 4, "n_out": 1, "tau_out": 0.0}, "tau_out=0.0"),
    ],
)
def test_bad_network_configs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RecurrentNetwork(**kwargs)


def test_bad_input_shape_is_named():
    net = RecurrentNetwork(3, 4, 1)
    with pytest.raises(ValueError, match=r"inputs has shape \(2, 5, 4\): expected \(B, T, n_in=3\)"):
        net.run(torch.zeros(2, 5, 4))
    with pytest.raises(ValueError, match="inputs has shape"):
        net.run(torch.zeros(5, 3))


@pytest.mark.parametrize("cell", ["lif", "alif", "lstm"])
@pytest.mark.parametrize("fused", [True, False])
def test_a_given_input_current_is_the_product_it_replaces(cell, fused, monkeypatch):
    """run(None, input_current=W_in x (T, B, n)) against run(x), float64: the fused trial and the step path."""
    import l2l.spiking_trial as spiking_trial

    monkeypatch.setattr(spiking_trial, "FUSED", fused)
    torch.manual_seed(0)
    net = RecurrentNetwork(6, [5, 4], 2, cell=cell, cell_params=cell_parameters(cell)).double()
    x = torch.rand(3, 20, 6, dtype=torch.float64)
    current = x.transpose(0, 1) @ net.layers[0].w_in.transpose(0, 1)
    given, plain = net.run(None, input_current=current, record=True), net.run(x, record=True)
    assert given.inputs is None
    for a, b in zip(given.layers, plain.layers, strict=True):
        assert torch.equal(a.z, b.z)
    torch.testing.assert_close(given.output, plain.output, rtol=1e-12, atol=1e-12)
    width = current.shape[-1]   # 5, or 20 for the LSTM's four gates
    with pytest.raises(ValueError, match=rf"input_current has shape \(20, 3, 6\).*expected \(T, B, {width}\)"):
        net.run(None, input_current=x.transpose(0, 1))
