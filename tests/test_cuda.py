"""On a CUDA GPU (`make gpu-check` runs them): float64 on the GPU is the CPU's to round-off — the network, the e-prop
gradients, one e-prop 2 outer iteration, and the published code's iteration. Each test also runs with device
"cpu" (the same code moving tensors to the CPU), so that its logic is exercised on machines without a GPU."""

import json

import pytest
import torch

from l2l import verify
from l2l.rules import BPTT, EProp

pytestmark = pytest.mark.cuda
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                reason="no CUDA device: run on a GPU machine"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cell", ["lif", "alif", "lstm"])
def test_a_trial_and_its_gradients_on_the_gpu_are_the_cpus(cell, device):
    c = verify.make_case(cell)
    cpu_trial = c.network.run(c.inputs)
    cpu = {name: rule.gradients(c.network, c.inputs, c.loss).grads for name, rule in
           (("bptt", BPTT(c.regularization)), ("eprop", EProp(rate_regularization=c.regularization)))}
    network, inputs = c.network.to(device), c.inputs.to(device)
    loss = lambda y: c.loss(y.cpu()).to(device)   # noqa: E731  (the case's targets stay on the CPU)
    gpu_trial = network.run(inputs)
    assert torch.allclose(gpu_trial.output.cpu(), cpu_trial.output, rtol=0, atol=1e-12)
    for name, rule in (("bptt", BPTT(c.regularization)), ("eprop", EProp(rate_regularization=c.regularization))):
        gpu = rule.gradients(network, inputs, loss).grads
        assert verify.relative_error({k: v.cpu() for k, v in gpu.items()}, cpu[name], cpu[name]) <= 1e-10, name


@pytest.mark.parametrize("device", DEVICES)
def test_the_published_iteration_reproduces_on_the_gpu_in_float64(device):
    from l2l.outer_loop.app.reference_fixture import build_fixture_meta, default_fixture_path, load_fixture, reproduce

    path = default_fixture_path()
    if path is None:
        pytest.skip("the fixture is in tests/data of the source checkout")
    fixture = load_fixture(path)
    comparison = reproduce(build_fixture_meta(fixture, "reference", "explicit"), fixture, device)
    assert comparison.ok(), comparison.rel_err


@pytest.mark.parametrize("device", DEVICES)
def test_one_meta_iteration_on_the_gpu_is_the_cpus_in_float64(device):
    from l2l.outer_loop.app.build import build_meta, build_task
    from l2l.outer_loop.app.compose import compose_config

    cfg = compose_config(["experiment=smoke"])
    torch.manual_seed(0)
    meta = build_meta(cfg, build_task(cfg.task)).double()
    episode = meta.family.sample(4, torch.Generator().manual_seed(1)).to(dtype=torch.float64)
    codes = meta.encode(episode, torch.Generator().manual_seed(2)).double()
    cpu_step = meta(episode, codes=codes)
    cpu_grads = torch.autograd.grad(cpu_step.loss, list(meta.parameters()))
    meta = meta.to(device)
    gpu_step = meta(episode.to(device), codes=codes.to(device))
    gpu_grads = torch.autograd.grad(gpu_step.loss, list(meta.parameters()))
    gpu_loss, cpu_loss = float(gpu_step.loss.detach()), float(cpu_step.loss.detach())
    assert abs(gpu_loss - cpu_loss) <= 1e-10 * abs(cpu_loss)
    for a, b in zip(gpu_grads, cpu_grads, strict=True):
        assert float((a.cpu() - b).norm()) <= 1e-9 * max(float(b.norm()), 1e-30)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_gpu_check_measures_nothing_without_a_gpu(tmp_path, capsys):
    from l2l.outer_loop.bench.gpu_check import main

    with pytest.raises(SystemExit) as stop:
        main(["--out", str(tmp_path / "g.json")])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "torch sees no CUDA device here: nothing is measured" in err
    assert not (tmp_path / "g.json").exists()


def test_gpu_check_writes_one_json_of_its_four_parts(tmp_path, capsys, monkeypatch):
    from l2l.outer_loop.bench import gpu_check

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu_check, "environment", lambda: {"device": "Fake GPU", "torch": "x", "cuda": "y"})
    monkeypatch.setattr(gpu_check, "cuda_tests", lambda root: {"ran": True, "exit_code": 0, "summary": "9 passed"})
    monkeypatch.setattr(gpu_check, "fixture_on_gpu", lambda: {"ran": True, "explicit": {"max_rel_err": 1e-15},
                                                              "higher": {"max_rel_err": 2e-15}})
    monkeypatch.setattr(gpu_check, "bench", lambda n: {e: {"seconds_per_iteration": 0.1, "fraction_of_gemm": 0.2}
                                                       for e in gpu_check.EXPERIMENTS})
    assert gpu_check.main(["--out", str(tmp_path / "g.json")]) == 0
    report = json.loads((tmp_path / "g.json").read_text())
    assert set(report) == {"environment", "tests", "reference_fixture", "bench_meta"}
    assert set(report["bench_meta"]) == {"arm_one_shot_reference", "arm_one_shot_paper"}
    out = capsys.readouterr().out
    assert "Fake GPU" in out and "9 passed" in out and "arm_one_shot_paper: 0.1000 s per outer iteration" in out
