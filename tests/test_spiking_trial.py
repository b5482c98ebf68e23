"""The fused LIF/ALIF trial (C++ kernel and PyTorch loop) gives the numbers of the step-by-step simulation."""

import itertools
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import l2l.native as native
import l2l.spiking_trial as spiking_trial
from l2l.cells import ALIFParameters, LIFParameters
from l2l.network import RecurrentNetwork, simulate_layer

KERNELS = ["cpp", "python"]


def _kernel(monkeypatch, kernel: str) -> None:
    if kernel == "cpp" and native.spiking_ops() is None:
        pytest.skip(f"no C++ kernel here: {native.native_status()}")
    monkeypatch.setattr(spiking_trial, "NATIVE", kernel == "cpp")


def _layer_run(cell, per_task, zeta_on, detach, params, fused, initial=False, dtype=torch.float64, seed=1,
               batch=3, steps=60, n_in=5, n=7):
    """One layer's trial and the gradients of a loss that reads spikes, z^{t-1}, ψ and the final state."""
    spiking_trial.FUSED = fused
    try:
        g = torch.Generator().manual_seed(seed)
        net = RecurrentNetwork(n_in, n, 2, cell=cell, cell_params=params).to(dtype)
        with torch.no_grad():
            for q in net.parameters():
                q.copy_(torch.randn(q.shape, generator=g, dtype=torch.float64) * 1.5)
        x = (torch.rand(batch, steps, n_in, generator=g) < 0.3).to(dtype)
        layer = net.layers[0]
        w_in, w_rec = layer.w_in, layer.w_rec
        if per_task:
            w_in = w_in * (1 + 0.1 * torch.randn(batch, 1, 1, generator=g, dtype=torch.float64)).to(dtype)
            w_rec = w_rec * (1 + 0.1 * torch.randn(batch, 1, 1, generator=g, dtype=torch.float64)).to(dtype)
        zeta = torch.zeros(batch, steps, n, dtype=dtype, requires_grad=True) if zeta_on else None
        state, leaves = None, [layer.w_in, layer.w_rec] + ([zeta] if zeta_on else [])
        if initial:  # a state carried in from an earlier trial, differentiable
            fields = {"v": torch.rand(batch, n, generator=g, dtype=torch.float64).to(dtype).requires_grad_(),
                      "z": (torch.rand(batch, n, generator=g) < 0.3).to(dtype).requires_grad_(),
                      "refractory": torch.randint(0, 3, (batch, n), generator=g).to(dtype)}
            if cell == "alif":
                fields["a"] = torch.rand(batch, n, generator=g, dtype=torch.float64).to(dtype).requires_grad_()
            state = layer.model.state(**{k: fields[k] for k in layer.model.state._fields})
            leaves += [fields[k] for k in ("v", "z", "a") if k in fields]
        act = simulate_layer(layer, x, w_in, w_rec, None, initial_state=state, detach_recurrent=detach, zeta=zeta,
                             record=True)
        weights = [torch.randn(batch, steps, n, generator=g, dtype=torch.float64).to(dtype) for _ in range(3)]
        w_final = torch.randn(batch, n, generator=g, dtype=torch.float64).to(dtype)
        loss = ((act.z * weights[0]).sum() + (act.record["psi"] * weights[1]).sum()
                + (act.z_prev * weights[2]).sum() + (act.final_state.v * w_final).sum())
        if cell == "alif":
            loss = loss + 0.3 * (act.final_state.a * w_final).sum()
        grads = torch.autograd.grad(loss, leaves)
        return act, grads
    finally:
        spiking_trial.FUSED = True


def _params(cell, surrogate="piecewise_linear", psi="zero", n_ref=2, fraction=0.5):
    if cell == "lif":
        return LIFParameters(v_th=0.4, n_ref=n_ref, surrogate=surrogate, psi_refractory=psi)
    return ALIFParameters(v_th=0.4, n_ref=n_ref, tau_a=40.0, beta=0.6, surrogate=surrogate, psi_refractory=psi,
                          adaptive_fraction=fraction)


def _assert_same(plain, fused, tolerance=1e-10):
    (act_p, grads_p), (act_f, grads_f) = plain, fused
    assert torch.equal(act_p.z, act_f.z), "spikes differ"
    assert torch.equal(act_p.z_prev, act_f.z_prev)
    torch.testing.assert_close(act_f.record["psi"], act_p.record["psi"], rtol=1e-12, atol=1e-12)
    for name in act_p.final_state._fields:
        torch.testing.assert_close(getattr(act_f.final_state, name), getattr(act_p.final_state, name),
                                   rtol=1e-12, atol=1e-12)
    for a, b in zip(grads_f, grads_p, strict=True):
        scale = float(b.abs().max()) or 1.0
        assert float((a - b).abs().max()) <= tolerance * scale, float((a - b).abs().max()) / scale


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("cell,per_task,zeta_on,detach", [
    c for c in itertools.product(["lif", "alif"], [False, True], [False, True], [False, True])])
def test_fused_trial_equals_the_step_by_step_path(monkeypatch, kernel, cell, per_task, zeta_on, detach):
    _kernel(monkeypatch, kernel)
    params = _params(cell)
    plain = _layer_run(cell, per_task, zeta_on, detach, params, fused=False)
    _assert_same(plain, _layer_run(cell, per_task, zeta_on, detach, params, fused=True))
    assert plain[0].z.mean() > 0.05  # the loss sees spikes, refractory steps and the surrogate


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("cell", ["lif", "alif"])
@pytest.mark.parametrize("surrogate", ["piecewise_linear", "fast_sigmoid", "gaussian"])
@pytest.mark.parametrize("psi", ["zero", "keep"])
def test_fused_trial_covers_surrogates_and_psi_semantics(monkeypatch, kernel, cell, surrogate, psi):
    _kernel(monkeypatch, kernel)
    params = _params(cell, surrogate, psi, fraction=1.0)
    _assert_same(_layer_run(cell, True, False, False, params, fused=False),
                 _layer_run(cell, True, False, False, params, fused=True))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("cell", ["lif", "alif"])
@pytest.mark.parametrize("n_ref", [0, 4])
def test_fused_trial_from_a_differentiable_initial_state(monkeypatch, kernel, cell, n_ref):
    _kernel(monkeypatch, kernel)
    params = _params(cell, n_ref=n_ref)
    _assert_same(_layer_run(cell, False, False, False, params, fused=False, initial=True),
                 _layer_run(cell, False, False, False, params, fused=True, initial=True))


@pytest.mark.parametrize("kernel", KERNELS)
def test_fused_trial_float32_spikes_equal_and_gradients_close(monkeypatch, kernel):
    _kernel(monkeypatch, kernel)
    params = _params("lif")
    plain = _layer_run("lif", True, False, False, params, fused=False, dtype=torch.float32, steps=300, batch=8, n=30)
    fused = _layer_run("lif", True, False, False, params, fused=True, dtype=torch.float32, steps=300, batch=8, n=30)
    assert torch.equal(plain[0].z, fused[0].z)
    for a, b in zip(fused[1], plain[1], strict=True):
        assert float((a - b).abs().max()) <= 1e-4 * float(b.abs().max())


def test_negative_control_the_eprop_approximation_is_not_bptt():
    """The fused path reproduces BPTT and the e-prop oracle (detach_recurrent) each, and they differ:
    a kernel that dropped the recurrent adjoint would pass for e-prop but not for BPTT."""
    params = _params("lif")
    full = _layer_run("lif", False, False, False, params, fused=True)[1]
    cut = _layer_run("lif", False, False, True, params, fused=True)[1]
    rel = float((full[1] - cut[1]).abs().max() / full[1].abs().max())
    assert rel > 0.05, rel


def test_negative_control_psi_gradient_matters():
    """The ψ path (the inner update's dependence on the membrane) carries gradient: without it the result
    differs from the step-by-step path, so the comparison above would catch a kernel that ignored it."""
    params = _params("lif")
    with_psi = _layer_run("lif", False, False, False, params, fused=True)[1][0]

    original = spiking_trial._FusedSpikingTrial

    class NoPsi(original):
        @staticmethod
        def backward(ctx, g_z, g_excess, *rest):
            return original.backward(ctx, g_z, None, *rest)

    spiking_trial._FusedSpikingTrial = NoPsi
    try:
        without = _layer_run("lif", False, False, False, params, fused=True)[1][0]
    finally:
        spiking_trial._FusedSpikingTrial = original
    assert float((with_psi - without).abs().max() / with_psi.abs().max()) > 0.05


def test_double_backward_is_refused_with_a_clear_error():
    net = RecurrentNetwork(3, 5, 1).double()
    x = torch.rand(2, 20, 3, dtype=torch.float64)
    loss = net.run(x).output.sum()
    with pytest.raises(RuntimeError, match="first-order gradients only"):
        torch.autograd.grad(loss, net.layers[0].w_rec, create_graph=True)


def test_torch_func_transforms_take_the_step_by_step_path():
    net = RecurrentNetwork(3, 5, 1).double()
    params = {k: v.detach() for k, v in net.named_parameters()}
    x = torch.rand(2, 20, 3, dtype=torch.float64)

    def loss(p):
        return torch.func.functional_call(net, p, (x,)).sum()

    fused_grad = torch.autograd.grad(net.run(x).output.sum(), net.layers[0].w_rec)[0]
    func_grad = torch.func.grad(loss)(params)["layers.0.w_rec"]
    torch.testing.assert_close(func_grad, fused_grad, rtol=1e-10, atol=1e-12)


def test_without_native_kernels_the_pytorch_loop_runs_and_says_why():
    code = ("import torch, l2l.native as n; from l2l.network import RecurrentNetwork;"
            "y = RecurrentNetwork(3, 5, 1).run(torch.rand(2, 10, 3)).output; print(n.native_status())")
    out = subprocess.run([sys.executable, "-c", code], env={"L2L_NATIVE": "0", "PATH": ""}, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "not in use (L2L_NATIVE=0)" in out.stdout


@pytest.mark.slow
def test_a_failed_build_falls_back_once_with_the_reason(monkeypatch, tmp_path, capsys):
    broken = tmp_path / "spiking_trial.cpp"
    broken.write_text("this is not C++\n")
    monkeypatch.setattr(native, "SOURCE", broken)
    monkeypatch.setattr(native, "_state", {})
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path / "build"))
    assert native.spiking_ops() is None
    assert native.spiking_ops() is None  # asked again: no second attempt, no second message
    err = capsys.readouterr().err
    assert err.count("the C++ trial kernel is not available") == 1
    assert "using the PyTorch loop" in err


@pytest.mark.parametrize("per_task,zeta_on", [(False, False), (True, False), (True, True)])
@pytest.mark.parametrize("cell", ["lif", "alif"])
def test_fused_trial_at_sizes_where_the_kernel_changes_strategy(monkeypatch, cell, per_task, zeta_on):
    """B·n² beyond the cache: the C++ backward forms Wᵀδv by a GEMM (shared W) or, a task's W (n = 400 in float64:
    1.25 MiB) beyond 1 MiB, by dot products where the surrogate is non-zero (per-task W)."""
    _kernel(monkeypatch, "cpp")
    params = _params(cell)
    kwargs = {"batch": 4, "steps": 40, "n": 400, "seed": 5}
    plain = _layer_run(cell, per_task, zeta_on, False, params, fused=False, **kwargs)
    _assert_same(plain, _layer_run(cell, per_task, zeta_on, False, params, fused=True, **kwargs))
    assert 0.01 < float(plain[0].z.detach().mean()) < 0.5  # spiking, neither silent nor saturated


@pytest.mark.parametrize("per_task", [False, True])
@pytest.mark.parametrize("cell", ["lif", "alif"])
def test_fused_trial_with_two_threads_equals_the_step_by_step_path(monkeypatch, cell, per_task):
    """With several threads the C++ forward runs task by task in parallel (and the per-task backward too): the same
    numbers as the step-by-step path, float64 (the suite otherwise runs on one thread)."""
    _kernel(monkeypatch, "cpp")
    params = _params(cell)
    kwargs = {"batch": 9, "steps": 50, "n": 20, "seed": 7}
    plain = _layer_run(cell, per_task, True, False, params, fused=False, **kwargs)
    torch.set_num_threads(2)        # the autouse fixture restores the suite's setting afterwards
    _assert_same(plain, _layer_run(cell, per_task, True, False, params, fused=True, **kwargs))
    assert 0.01 < float(plain[0].z.detach().mean()) < 0.5


@pytest.mark.parametrize("batch", [7, 8])
@pytest.mark.parametrize("cell", ["lif", "alif"])
def test_fused_trial_on_either_side_of_the_batch_where_a_shared_w_takes_the_gemm(monkeypatch, cell, batch):
    """A small shared W: row updates below 8 tasks, one GEMM per step from 8 on; both against the step-by-step path."""
    _kernel(monkeypatch, "cpp")
    params = _params(cell)
    kwargs = {"batch": batch, "steps": 50, "n": 20, "seed": 6}
    plain = _layer_run(cell, False, True, False, params, fused=False, **kwargs)
    _assert_same(plain, _layer_run(cell, False, True, False, params, fused=True, **kwargs))
    assert 0.01 < float(plain[0].z.detach().mean()) < 0.5


@pytest.mark.slow
def test_without_a_compiler_training_goes_on_with_the_pytorch_loop(tmp_path):
    """No C++ compiler (CXX points nowhere, a fresh build dir): one message with the reason, the same numbers."""
    code = ("import torch, l2l.native as n; from l2l.network import RecurrentNetwork; torch.manual_seed(0);"
            "y = RecurrentNetwork(3, 5, 1).run(torch.rand(2, 10, 3)).output; print(n.native_status())")
    import os

    env = {**os.environ, "CXX": str(tmp_path / "no-such-compiler"), "TORCH_EXTENSIONS_DIR": str(tmp_path / "ext")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "not in use (FileNotFoundError: no C++ compiler" in out.stdout
    assert out.stderr.count("the C++ trial kernel is not available") == 1


def test_each_torch_environment_keeps_its_own_build(monkeypatch):
    # the build's command names its torch's include folders: two environments sharing one cache entry
    # rebuilt it in turn (about 20 s each time); the name now differs by torch location and version
    here = native._source_tag()
    assert native._source_tag() == here                                  # same environment: the cached build
    monkeypatch.setattr(torch, "__file__", "/another/venv/site-packages/torch/__init__.py")
    elsewhere = native._source_tag()
    assert elsewhere != here
    monkeypatch.setattr(torch, "__version__", "0.0.0")
    assert native._source_tag() not in (here, elsewhere)


@pytest.mark.slow
def test_a_build_lock_left_by_a_killed_process_does_not_hang_the_next_one(tmp_path):
    """kill -9 inside torch's load leaves its ``lock`` file, and torch waits for it forever (the negative control,
    cut at 15 s); l2l's own flock around the load finds it stale, removes it and loads."""
    import os
    import shutil

    from torch.utils import cpp_extension

    name = f"l2l_spiking_{native._source_tag()}"
    native.spiking_ops()                                    # built (or loaded) in the default cache
    built = Path(cpp_extension._get_build_directory(name, verbose=False))
    cache = tmp_path / "ext"
    shutil.copytree(built, cache / built.name)   # the same build, in a cache of its own
    (cache / built.name / "lock").write_text("")
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(cache)}
    torch_alone = ("from torch.utils import cpp_extension; import l2l.native as n; "
                   f"cpp_extension.load(name={name!r}, sources=[str(s) for s in n.sources()], extra_cflags=n.FLAGS, "
                   "is_python_module=False)")
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run([sys.executable, "-c", torch_alone], env=env, capture_output=True, timeout=15)
    out = subprocess.run([sys.executable, "-c", "import l2l.native as n; print(n.native_status())"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "C++ kernels: in use" in out.stdout, out.stderr
    assert "left by a process killed while it loaded the C++ kernel" in out.stderr


@pytest.mark.parametrize("per_task", [False, True])
@pytest.mark.parametrize("density", [0.0, 0.03, 0.3])
def test_the_event_driven_weight_gradient_is_the_dense_product(per_task, density):
    """Σ_t δv^t ⊗ z^{t-1} summed over z's non-zero entries (spikes, a non-binary initial row included) equals the
    dense product to float64 round-off, on both sides of the density where the kernel takes the product itself,
    and gives the same numbers on 1 and 2 threads; the negative control: a gradient that skips the initial row's
    events (all of z but row 0) is off by far more than round-off."""
    ops = native.spiking_ops()
    if ops is None:
        pytest.skip(f"no C++ kernel here: {native.native_status()}")
    g = torch.Generator().manual_seed(int(density * 100) + per_task)
    steps, batch, n, m = 40, 5, 9, 11
    delta_v = torch.randn(steps, batch, n, generator=g, dtype=torch.float64)
    z_prev = (torch.rand(steps, batch, m, generator=g, dtype=torch.float64) < density).double()
    z_prev[0] = torch.rand(batch, m, generator=g, dtype=torch.float64)      # an initial state need not be spikes
    if per_task:
        dense = delta_v.permute(1, 2, 0) @ z_prev.transpose(0, 1)
    else:
        dense = delta_v.reshape(-1, n).T @ z_prev.reshape(-1, m)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = ops.weight_gradient(delta_v, z_prev, per_task)
        torch.set_num_threads(2)
        two = ops.weight_gradient(delta_v, z_prev, per_task)
    finally:
        torch.set_num_threads(before)
    assert one.shape == dense.shape and one.is_contiguous()
    torch.testing.assert_close(one, dense, rtol=1e-13, atol=1e-13)
    assert torch.equal(one, two)
    skipped = z_prev.clone()
    skipped[0] = 0
    without_first = ops.weight_gradient(delta_v, skipped, per_task)
    assert (without_first - dense).abs().max() > 1e-3


@pytest.mark.parametrize("used", ["both", "z", "z_prev"])
def test_shifted_spike_views_pass_the_gradients_slicing_would(used):
    """z = both[1:] and z_prev = both[:-1] through one node: values are the views, and the gradient reaching the
    buffer equals the two slices' bit for bit (one of them unused too)."""
    g = torch.Generator().manual_seed(1)
    both = torch.randn(7, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    w_z, w_prev = torch.randn(2, 6, 3, 4, generator=g, dtype=torch.float64)

    def loss(z, z_prev):   # an unused view gets no gradient at all (None in the node's backward)
        terms = [(z * w_z).sum()] if used != "z_prev" else []
        return sum(terms + ([(z_prev * w_prev).sum()] if used != "z" else []))

    z, z_prev = spiking_trial.shifted_spikes(both)
    assert torch.equal(z, both[1:]) and torch.equal(z_prev, both[:-1])
    (fast,) = torch.autograd.grad(loss(z, z_prev), both)
    (plain,) = torch.autograd.grad(loss(both[1:], both[:-1]), both)
    assert torch.equal(fast, plain)
