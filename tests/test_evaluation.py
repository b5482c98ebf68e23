"""One-shot evaluation: the BPTT and e-prop 1 one-step baselines, eval.json content, the figure."""

import math

import pytest
import torch
from matplotlib.figure import Figure

from l2l.error_module import ErrorModule
from l2l.inner_loop.learning_rates import InnerLearningRates
from l2l.network import RecurrentNetwork
from l2l.outer_loop.algorithm.evaluation import (
    bptt_step_mse,
    bptt_task_gradients,
    eprop1_step_mse,
    eprop1_task_gradients,
    evaluate_one_shot,
    one_shot_figure,
    step_grid,
)
from l2l.outer_loop.algorithm.meta import InnerSettings, MetaLearner, RateTargets
from l2l.rules.eprop import EProp
from l2l.tasks.arm import ArmTrajectories
from l2l.tasks.encoders import PopulationCode

BATCH = 3


def build(hidden=12, cell="lif", omega_weight=0.1, dtype=torch.float32):
    """A tiny meta-learner on short arm trials and one batch of BATCH tasks (in ``dtype``)."""
    torch.manual_seed(0)
    fam = ArmTrajectories(n_steps=50, clock_spike_every=5, omega_weight=omega_weight)
    learner = RecurrentNetwork(fam.n_inputs, hidden, 2, cell=cell, readout_bias=False, readout_init_scale=0.5)
    code = PopulationCode(n_neurons=8)
    em = ErrorModule(2 * 8, learner.sizes, fam.n_inputs, hidden=10)
    rates = InnerLearningRates({n: p.shape for n, p in learner.named_parameters()
                                if n.split(".")[-1] in ("w_in", "w_rec")}, "fixed", 1e-3)
    meta = MetaLearner(fam, learner, em, rates, code, InnerSettings(), RateTargets()).to(dtype)
    episode = fam.sample(BATCH, torch.Generator().manual_seed(1)).to(dtype=dtype)
    return meta, episode


def metric_before(meta, episode):
    with torch.no_grad():
        output = meta.learner.run(episode.inputs).output
    return meta.family.loss(output, episode).metrics[meta.family.metric]


def test_learner_spikes():
    meta, episode = build()
    trial = meta.learner.run(episode.inputs)
    assert trial.layers[0].z.sum() > 0


def test_bptt_gradient_of_each_task_is_that_task_alone():
    meta, episode = build(dtype=torch.float64)
    together = bptt_task_gradients(meta, episode)
    assert set(together) == {"layers.0.w_in", "layers.0.w_rec"}
    params = meta.learner.parameter_dict()
    for b in range(BATCH):
        alone = episode.select(b)
        loss = meta.family.loss(meta.learner.run(alone.inputs).output, alone).per_task.sum()
        expected = torch.autograd.grad(loss, [params[n] for n in together])
        for (name, got), want in zip(together.items(), expected, strict=True):
            assert got.shape == (BATCH, *params[name].shape)
            torch.testing.assert_close(got[b], want, rtol=1e-10, atol=1e-14)
    assert all(g.abs().sum() > 0 for g in together.values())


def test_tiny_bptt_step_lowers_every_tasks_metric_of_a_smooth_learner():
    """tanh units (no spikes) and a loss that is ½·mse_xy: to first order a small step along −∇E_b lowers E_b."""
    meta, episode = build(cell="rnn", omega_weight=0.0, dtype=torch.float64)
    demo = metric_before(meta, episode)
    grads = bptt_task_gradients(meta, episode)
    squared = sum(g.flatten(1).pow(2).sum(1) for g in grads.values())           # |∇E_b|² (B,)
    tiny = 1e-4 * float((0.5 * demo).min() / squared.max())                     # relative decrease ~1e-4
    result = bptt_step_mse(meta, episode, [tiny, 1e4])
    assert result["grid"][tiny] < float(demo.mean())
    assert result["mse"] <= result["grid"][tiny]
    assert result["lr"] in (tiny, 1e4)
    after = torch.tensor(step_grid(meta, episode, grads, [tiny])["per_task"], dtype=torch.float64)
    assert (after < demo).all()
    # metric = 2·E_b, so to first order it drops by 2·lr·|∇E_b|²
    torch.testing.assert_close(demo - after, 2 * tiny * squared, rtol=0.1, atol=0.0)


@pytest.mark.parametrize("step", [bptt_step_mse, eprop1_step_mse])
def test_diverging_learning_rate_counts_as_worse(step):
    meta, episode = build()
    result = step(meta, episode, [math.inf, 1e-4, 1e300])
    assert result["lr"] == 1e-4
    assert result["grid"][math.inf] == math.inf and result["grid"][1e300] == math.inf
    assert math.isfinite(result["mse"]) and len(result["per_task"]) == BATCH
    assert result["mse"] == pytest.approx(sum(result["per_task"]) / BATCH)


def test_lr_zero_gives_the_demonstration_metric():
    meta, episode = build()
    demo = metric_before(meta, episode)
    for step in (bptt_step_mse, eprop1_step_mse):
        result = step(meta, episode, [0.0])
        assert result["per_task"] == pytest.approx(demo.tolist(), rel=1e-6)


def test_eprop1_step_of_each_task_is_the_eprop_rules_gradient_for_that_task_alone():
    meta, episode = build(dtype=torch.float64)
    together = eprop1_task_gradients(meta, episode)
    assert set(together) == {"layers.0.w_in", "layers.0.w_rec"}
    rule = EProp(feedback="symmetric")
    for b in range(BATCH):
        alone = episode.select(b)
        result = rule.gradients(meta.learner, alone.inputs, lambda y, alone=alone: meta.family.loss(y, alone).mean)
        for name, got in together.items():
            torch.testing.assert_close(got[b], result.grads[name], rtol=1e-10, atol=1e-14)
    assert all(g.abs().sum() > 0 for g in together.values())


def test_eprop1_step_of_a_two_layer_learner():
    meta, episode = build(hidden=[8, 8])
    grads = eprop1_task_gradients(meta, episode)
    params = meta.learner.parameter_dict()
    assert set(grads) == {f"layers.{k}.{w}" for k in (0, 1) for w in ("w_in", "w_rec")}
    assert all(g.shape == (BATCH, *params[n].shape) and g.isfinite().all() for n, g in grads.items())
    assert math.isfinite(eprop1_step_mse(meta, episode, [1e-4, 1e-3])["mse"])


def test_evaluate_one_shot_returns_every_key():
    meta, episode = build()
    code = meta.encode(episode, torch.Generator().manual_seed(2))
    result = evaluate_one_shot(meta, episode, code, [1e-4, 1e-3], [1e-4, 1e-3])
    names = ("demo_mse", "test_mse", "bptt_step_mse", "eprop1_step_mse")
    for name in names:
        assert isinstance(result[name], float) and math.isfinite(result[name])
        assert len(result["per_task"][name]) == BATCH
        assert result[name] == pytest.approx(sum(result["per_task"][name]) / BATCH, rel=1e-6)
        assert math.isfinite(result["std"][name])
    assert result["bptt_lr"] in (1e-4, 1e-3) and result["eprop1_lr"] in (1e-4, 1e-3)
    assert result["n_tasks"] == BATCH
    assert result["ratio_test_over_demo"] == pytest.approx(result["test_mse"] / result["demo_mse"])
    assert result["demo_mse"] == pytest.approx(float(metric_before(meta, episode).mean()), rel=1e-6)


def test_one_shot_figure_has_three_rows_per_task():
    meta, episode = build()
    code = meta.encode(episode, torch.Generator().manual_seed(2))
    with torch.no_grad():
        step = meta(episode, codes=code)
    fig = one_shot_figure(meta, episode, step.adaptation.demo.output, step.test_output, indices=(0, 2, 7))
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 3 * 2
    assert fig.axes[0].get_legend() is not None
