"""Inner loop groundwork: error module signals and one differentiable e-prop update per task."""

import pytest
import torch

from l2l.error_module import ErrorModule
from l2l.inner_loop.one_shot import adapt
from l2l.network import RecurrentNetwork


def setup(depth=1, signal_layers="top", batch=3):
    torch.manual_seed(0)
    learner = RecurrentNetwork(5, [10] * depth, 2).double()
    module = ErrorModule(4, learner.sizes, 5, hidden=12, signal_layers=signal_layers).double()
    g = torch.Generator().manual_seed(1)
    inputs = 1.5 * torch.rand(batch, 25, 5, generator=g, dtype=torch.float64)
    code = (torch.rand(batch, 25, 4, generator=g, dtype=torch.float64) < 0.3).double()
    target = torch.randn(batch, 25, 2, generator=g, dtype=torch.float64)
    return learner, module, inputs, code, target


@pytest.mark.parametrize(("depth", "signal_layers"), [(1, "top"), (2, "top"), (2, "all")])
def test_per_task_adaptation_equals_one_task_at_a_time(depth, signal_layers):
    learner, module, inputs, code, _ = setup(depth, signal_layers)
    together = adapt(learner, module, inputs, code, 0.1)
    for b in range(inputs.shape[0]):
        alone = adapt(learner, module, inputs[b:b + 1], code[b:b + 1], 0.1)
        for name, w in alone.params.items():
            expected = w[0] if name in alone.update else w
            got = together.params[name][b] if name in together.update else together.params[name]
            torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_update_is_the_eprop_gradient_with_the_error_modules_signal():
    """With the error module's signal standing in for dE/dz, ΔW is what the verified traces give."""
    from l2l.traces import eligibility_gradient

    learner, module, inputs, code, _ = setup()
    result = adapt(learner, module, inputs, code, 0.1)
    single = eligibility_gradient(learner.layers[0], result.demo.detached().layers[0], inputs,
                                  result.signals[0].detach(), per_task=True)
    for kind in ("w_in", "w_rec"):
        torch.testing.assert_close(result.update[f"layers.0.{kind}"].detach(), single[kind], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("first_order", [False, True])
def test_meta_gradient_reaches_every_meta_parameter(first_order):
    learner, module, inputs, code, target = setup(depth=2, signal_layers="all")
    result = adapt(learner, module, inputs, code, 0.5, first_order=first_order)
    test = learner.run(inputs, result.params)
    loss = 0.5 * ((test.output - target) ** 2).mean()
    meta = [*learner.parameters(), *module.parameters()]
    grads = torch.autograd.grad(loss, meta, allow_unused=True)
    names = [n for n, _ in learner.named_parameters()] + [f"error.{n}" for n, _ in module.named_parameters()]
    for name, g in zip(names, grads, strict=True):
        assert g is not None and g.abs().sum() > 0, name
    assert all(a.z.sum() > 0 for a in result.demo.layers)


def test_first_order_drops_only_the_terms_through_the_traces():
    learner, module, inputs, code, target = setup()
    w = learner.layers[0].w_rec

    def meta_grad(first_order):
        result = adapt(learner, module, inputs, code, 0.5, first_order=first_order)
        loss = 0.5 * ((learner.run(inputs, result.params).output - target) ** 2).mean()
        return torch.autograd.grad(loss, w)[0]

    # first order = the test loss's gradient with ΔW held fixed, i.e. BPTT through the test trial at W_task
    result = adapt(learner, module, inputs, code, 0.5, first_order=True)
    frozen = {k: (v.detach() if k in result.update else v) for k, v in result.params.items()}
    w_task = frozen["layers.0.w_rec"].requires_grad_(True)
    loss = 0.5 * ((learner.run(inputs, {**frozen, "layers.0.w_rec": w_task}).output - target) ** 2).mean()
    expected = torch.autograd.grad(loss, w_task)[0].sum(0)
    torch.testing.assert_close(meta_grad(True), expected, rtol=1e-9, atol=1e-12)
    assert not torch.allclose(meta_grad(False), meta_grad(True))


def test_bad_adapt_weights():
    learner, module, inputs, code, _ = setup()
    with pytest.raises(ValueError, match="'w_out' is none of"):
        adapt(learner, module, inputs, code, 0.1, adapt_weights=("w_out",))
    with pytest.raises(ValueError, match="signal_layers='some'"):
        ErrorModule(4, [10], 5, signal_layers="some")


@pytest.mark.parametrize(("depth", "first_order"), [(1, False), (2, False), (2, True)])
def test_higher_backend_gives_the_same_adaptation_and_meta_gradients(depth, first_order):
    from l2l.inner_loop.higher_backend import adapt_with_higher

    learner, module, inputs, code, target = setup(depth, "all" if depth > 1 else "top", batch=2)
    meta = [*learner.parameters(), *module.parameters()]

    def meta_gradients(adaptation):
        loss = 0.5 * ((learner.run(inputs, adaptation.params).output - target) ** 2).mean()
        return torch.autograd.grad(loss, meta, allow_unused=True)

    explicit = adapt(learner, module, inputs, code, 0.3, first_order=first_order)
    patched = adapt_with_higher(learner, module, inputs, code, 0.3, first_order=first_order)
    for name in explicit.update:
        torch.testing.assert_close(patched.params[name], explicit.params[name], rtol=1e-10, atol=1e-12)
    for a, b in zip(meta_gradients(patched), meta_gradients(explicit), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_higher_backend_runs_an_inner_adam():
    from l2l.inner_loop.higher_backend import adapt_with_higher

    learner, module, inputs, code, target = setup(batch=2)
    result = adapt_with_higher(learner, module, inputs, code, 1e-2, inner_optimizer="adam")
    loss = 0.5 * ((learner.run(inputs, result.params).output - target) ** 2).mean()
    grads = torch.autograd.grad(loss, [learner.layers[0].w_rec, *module.parameters()], allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in grads)
    with pytest.raises(ValueError, match="inner_optimizer='rmsprop'"):
        adapt_with_higher(learner, module, inputs, code, 1e-2, inner_optimizer="rmsprop")
