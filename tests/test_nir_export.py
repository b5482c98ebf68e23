"""NIR export and import (l2l.nir_export), the independent NIR simulator (l2l.nir_simulation) and l2l-export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

nir = pytest.importorskip("nir")

from l2l.cells.alif import ALIFParameters  # noqa: E402
from l2l.cells.base import recurrent_weight  # noqa: E402
from l2l.cells.lif import LIFParameters  # noqa: E402
from l2l.network import RecurrentNetwork  # noqa: E402
from l2l.nir_export import network_from_nir, network_to_nir  # noqa: E402
from l2l.nir_simulation import simulate_nir  # noqa: E402


def lif_network(layers: int = 1, bias: bool = False, n_ref: int = 3, seed: int = 0) -> RecurrentNetwork:
    """A small LIF network that spikes a lot on random input spikes (float64)."""
    torch.manual_seed(seed)
    params = LIFParameters(tau_m=15.0, v_th=0.3, n_ref=n_ref, gamma=0.5, psi_refractory="keep")
    network = RecurrentNetwork(6, [12] * layers, 3, cell="lif", cell_params=params, tau_out=25.0,
                               readout_bias=bias, readout_init_scale=2.0).double()
    with torch.no_grad():
        for name, value in network.named_parameters():
            if "w_in" in name:
                value.mul_(3.0)
            if "bias" in name:
                value.normal_()
    return network


def spiking_input(batch: int = 3, steps: int = 80, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, steps, 6, generator=g, dtype=torch.float64) < 0.2).double()


def effective(network: RecurrentNetwork) -> dict[str, torch.Tensor]:
    """The weights as the forward pass uses them (W_rec's diagonal masked)."""
    return {name: recurrent_weight(value, network.layers[int(name.split(".")[1])].params) if "w_rec" in name
            else value for name, value in network.named_parameters()}


def potentials(network: RecurrentNetwork, x: torch.Tensor) -> np.ndarray:
    """v^t (B, T, n) of the first layer, stepped by l2l's own LIF step."""
    from l2l.cells.lif import lif_step

    cell = network.layers[0]
    state, vs = cell.init_state(x.shape[0], x.dtype, x.device), []
    with torch.no_grad():
        for t in range(x.shape[1]):
            _, state = lif_step(x[:, t], state, cell.w_in, cell.w_rec, cell.params)
            vs.append(state.v)
    return torch.stack(vs, 1).numpy()


def trial(network: RecurrentNetwork, x: torch.Tensor):
    with torch.no_grad():
        return network.run(x)


@pytest.mark.parametrize("layers, bias", [(1, False), (2, True)])
def test_a_written_and_read_graph_imports_as_the_same_network(tmp_path, layers, bias):
    network = lif_network(layers, bias)
    nir.write(tmp_path / "net.nir", network_to_nir(network, metadata={"model": "test"}))
    graph = nir.read(tmp_path / "net.nir")
    back = network_from_nir(graph, torch.float64)
    assert [cell.params for cell in back.layers] == [cell.params for cell in network.layers]
    assert back.readout.tau_out == network.readout.tau_out and back.sizes == network.sizes
    ours, theirs = effective(network), effective(back)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    x = spiking_input()
    a, b = trial(network, x), trial(back, x)
    assert torch.equal(a.output, b.output)
    assert all(torch.equal(p.z, q.z) for p, q in zip(a.layers, b.layers, strict=True))


@pytest.mark.parametrize("layers, bias", [(1, False), (2, True)])
def test_the_nir_simulator_with_l2ls_neuron_reproduces_l2l_exactly(tmp_path, layers, bias):
    network = lif_network(layers, bias)
    nir.write(tmp_path / "net.nir", network_to_nir(network))
    graph = nir.read(tmp_path / "net.nir")
    x = spiking_input()
    ours = trial(network, x)
    run = simulate_nir(graph, x.numpy(), "euler", l2l_neuron=True)
    for l, activity in enumerate(ours.layers):
        assert activity.z.sum() > 50, "the control needs spikes"
        assert np.array_equal(run.spikes[f"layers.{l}.lif"], activity.z.numpy())
    assert np.abs(run.output - ours.output.numpy()).max() < 1e-12
    # negative control: NIR's own neuron (reset to 0, no refractory period) is a different neuron
    plain = simulate_nir(graph, x.numpy(), "euler", l2l_neuron=False)
    assert not np.array_equal(plain.spikes["layers.0.lif"], ours.layers[0].z.numpy())


def test_below_threshold_nirs_own_neuron_is_l2ls_leak_and_input():
    network = lif_network(1, n_ref=0)
    network.layers[0].params = LIFParameters(tau_m=15.0, v_th=1e9, n_ref=0)      # never spikes
    v = potentials(network, spiking_input())
    graph = network_to_nir(network)
    euler = simulate_nir(graph, spiking_input().numpy(), "euler")
    assert trial(network, spiking_input()).layers[0].z.sum() == 0
    assert np.abs(euler.potentials["layers.0.lif"] - v).max() < 1e-12 * np.abs(v).max()
    # exact integration of NIR's ODE is not l2l's discrete neuron: a measurable difference
    exact = simulate_nir(graph, spiking_input().numpy(), "exact")
    assert np.abs(exact.potentials["layers.0.lif"] - v).max() > 1e-3 * np.abs(v).max()


def test_a_graph_without_l2l_metadata_imports_with_its_gain_folded_into_the_weights():
    g = np.random.default_rng(0)
    w_in, w_rec, w_out = g.normal(size=(5, 4)), g.normal(size=(5, 5)) * 0.1, g.normal(size=(2, 5))
    np.fill_diagonal(w_rec, 0.0)
    tau, r = np.full(5, 10.0), np.full(5, 4.0)        # r·dt/tau = 0.4: not l2l's unit gain
    graph = nir.NIRGraph(nodes={
        "in": nir.Input(np.array([4])), "a": nir.Linear(weight=w_in),
        "lif": nir.LIF(tau=tau, r=r, v_leak=np.zeros(5), v_threshold=np.full(5, 1e9), v_reset=np.zeros(5)),
        "rec": nir.Linear(weight=w_rec), "b": nir.Linear(weight=w_out),
        "li": nir.LI(tau=np.full(2, 5.0), r=np.full(2, 5.0), v_leak=np.zeros(2)), "out": nir.Output(np.array([2]))},
        edges=[("in", "a"), ("a", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "b"), ("b", "li"), ("li", "out")])
    network = network_from_nir(graph, torch.float64)
    assert network.layers[0].params.n_ref == 0
    assert network.layers[0].params.alpha == pytest.approx(0.9, abs=1e-15)        # 1 − dt/tau
    x = torch.from_numpy(np.random.default_rng(1).random((2, 30, 4)))
    run = simulate_nir(graph, x.numpy(), "euler")
    assert np.abs(run.potentials["lif"] - potentials(network, x)).max() < 1e-12


def test_what_nir_cannot_hold_is_refused_in_one_line():
    alif = RecurrentNetwork(3, 4, 2, cell="alif", cell_params=ALIFParameters())
    with pytest.raises(ValueError, match=r"network layer 0 is a 'alif' cell: NIR export takes LIF layers only"):
        network_to_nir(alif)
    network = lif_network(1)
    with pytest.raises(ValueError, match=r"params\['readout.w_out'\] has shape \(1, 3, 12\)"):
        network_to_nir(network, {"readout.w_out": torch.zeros(1, 3, 12)})
    graph = network_to_nir(network)
    graph.nodes["layers.0.lif"].v_reset = np.full(12, 0.1)
    with pytest.raises(ValueError, match=r"layers.0.lif.v_reset is not 0"):
        network_from_nir(graph)
    with pytest.raises(ValueError, match=r"discretization='rk4' is not allowed"):
        simulate_nir(graph, np.zeros((1, 5, 6)), "rk4")


def export(*argv, capsys):
    from l2l.outer_loop.reports.export_cli import main

    try:
        code = main(list(argv))
    except SystemExit as stop:
        code = stop.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_l2l_export_writes_a_graph_nir_reads_and_checks_it(tmp_path, capsys):
    out = tmp_path / "arm.nir"
    code, text, _ = export("arm_one_shot", "--format", "nir", "--out", str(out), "--adapted-to", "circle", "--json",
                           capsys=capsys)
    assert code == 0
    result = json.loads(text)
    graph = nir.read(out)
    assert {"input", "layers.0.lif", "layers.0.w_rec", "readout.li", "output"} <= set(graph.nodes)
    assert graph.metadata["adapted_to"] == "circle"
    control = result["agreement"]["l2l_neuron"]
    assert control["identical_spike_bins"] == 1.0 and control["output_relative_rms_error"] < 1e-12
    assert result["one_shot"]["test_mse"] < result["one_shot"]["demo_mse"]
    # the adapted weights are exported, not the initial ones
    from l2l.outer_loop.reports.pretrained import load_pretrained

    meta, _, _ = load_pretrained("arm_one_shot")
    initial = meta.learner.layers[0].w_in.detach().double().numpy()
    assert not np.array_equal(np.asarray(graph.nodes["layers.0.w_in"].weight), initial)
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.parametrize("argv, match", [
    (["arm_one_shot", "--format", "onnx"], "--format='onnx' is not allowed: it must be one of ['nir']"),
    (["arm_one_shot", "--out", "{tmp}"], "is not allowed: it is a directory"),
    (["nothing_here"], "checkpoint 'nothing_here': no such file"),
    (["arm_one_shot", "--adapted-to", "nowhere"], "target='nowhere' is not allowed: no such file"),
    (["arm_one_shot", "--tasks", "0"], "--tasks=0 is not allowed"),
])
def test_l2l_export_bad_input_stops_in_one_line(tmp_path, capsys, argv, match):
    argv = [a.format(tmp=tmp_path) for a in argv]
    if "--out" not in argv:
        argv += ["--out", str(tmp_path / "x.nir")]
    code, _, err = export(*argv, capsys=capsys)
    assert code == 2 and match in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_the_simulator_is_independent_of_l2l():
    import ast
    from pathlib import Path

    import l2l.nir_simulation as simulation

    tree = ast.parse(Path(simulation.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert not any(name.startswith("l2l") for name in imported), imported


def test_l2l_export_without_the_nir_package_says_how_to_install_it(tmp_path, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "nir", None)       # import nir raises ImportError
    code, _, err = export("arm_one_shot", "--out", str(tmp_path / "x.nir"), capsys=capsys)
    assert code == 2 and "pip install 'l2l[nir]'" in err and len(err.strip().splitlines()) == 1


def test_l2l_export_takes_a_checkpoint_file(tmp_path, capsys):
    import shutil

    from l2l.outer_loop.reports.pretrained import resolve

    checkpoint = tmp_path / "model.pt"
    shutil.copy(resolve("arm_one_shot"), checkpoint)
    code, text, _ = export(str(checkpoint), "--out", str(tmp_path / "m.nir"), "--tasks", "1", capsys=capsys)
    assert code == 0 and "l2l_neuron: identical spike bins 1.0000" in text
    assert nir.read(tmp_path / "m.nir").metadata["model"] == "arm_one_shot"     # the name the checkpoint records


def test_l2l_export_takes_a_directly_trained_network(tmp_path, capsys):
    from l2l.outer_loop.app.compose import compose_config
    from l2l.outer_loop.app.train import run

    run_dir = tmp_path / "pattern"
    cfg = compose_config(["experiment=pattern_eprop", "train.iterations=2", "network.n_hidden=12", "task.n_steps=60",
                          "train.progress=false", "eval.enabled=false", "logger=none", f"hydra.run.dir={run_dir}"])
    run(cfg, run_dir)
    code, text, _ = export(str(run_dir), "--out", str(tmp_path / "p.nir"), "--tasks", "2", "--json", capsys=capsys)
    assert code == 0
    result = json.loads(text)
    assert result["metric"] == "nmse" and result["agreement"]["l2l_neuron"]["identical_spike_bins"] == 1.0
    assert nir.read(tmp_path / "p.nir").nodes["layers.0.lif"].tau.shape == (12,)
    code, _, err = export(str(run_dir), "--out", str(tmp_path / "q.nir"), "--adapted-to", "circle", capsys=capsys)
    assert code == 2 and "a directly trained network has no one-shot update" in err
