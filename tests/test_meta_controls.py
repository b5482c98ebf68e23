"""The meta-trained controls of e-prop 2 (inner backends told the demonstration's true task loss): MAML (second
and first order) and one e-prop 1 step (symmetric and random feedback).

Each update is checked against an independent computation in float64 (a per-task BPTT loop, the e-prop 1 rule of
l2l.rules), each meta-gradient against central finite differences on a smooth learner (a leaky tanh RNN: no spikes,
so finite differences converge), with first-order MAML as the negative control (it must not pass for the exact
meta-gradient). Each trains one iteration from l2l-train.
"""

from __future__ import annotations

import json

import pytest
import torch
from test_reliability import TINY_META

from l2l.inner_loop.backends import BACKENDS
from l2l.outer_loop.app.build import build_meta, build_task
from l2l.outer_loop.app.compose import compose_config
from l2l.outer_loop.app.train import run
from l2l.rules.deep_eprop import DeepEProp

SMALL = ["experiment=smoke", "task.n_steps=20", "network.n_hidden=6", "error_module.n_hidden=4",
         "error_module.code_neurons=3", "outer.batch_size=3"]
TOLERANCE = 1e-6
"""Relative tolerance of the finite-difference check of a meta-gradient (central differences, ε = 1e-6, float64)."""
CONTROLS = {"maml": "maml", "maml_first_order": "maml", "eprop1_symmetric": "eprop1_symmetric",
            "eprop1_random": "eprop1_random"}


def meta_learner(inner: str, *extra: str):
    """A tiny float64 meta-learner with ``inner=<inner>`` and a batch of 3 tasks."""
    cfg = compose_config([*SMALL, f"inner={inner}", *extra])
    torch.manual_seed(0)
    meta = build_meta(cfg, build_task(cfg.task)).double()
    episode = meta.family.sample(3, torch.Generator().manual_seed(1))
    episode = type(episode)(**{k: v.double() if torch.is_tensor(v) and v.is_floating_point() else v
                               for k, v in vars(episode).items()})
    return meta, episode


def adapt(meta, episode):
    codes = meta.encode(episode, torch.Generator().manual_seed(2)).double()
    return meta.adapt(episode, codes)


@pytest.mark.parametrize("inner", sorted(CONTROLS))
def test_each_control_is_registered_and_adapts_per_task(inner):
    meta, episode = meta_learner(inner)
    assert meta.backend is BACKENDS[CONTROLS[inner]] and not meta.backend.uses_error_module
    adaptation = adapt(meta, episode)
    for name in ("layers.0.w_in", "layers.0.w_rec"):
        shape = meta.learner.parameter_dict()[name].shape
        assert adaptation.params[name].shape == (3, *shape) and adaptation.update[name].shape == (3, *shape)
        assert adaptation.params[name].dtype == torch.float64
    assert adaptation.error_trial is None and len(adaptation.steps) == 1
    assert adaptation.params["readout.w_out"] is meta.learner.parameter_dict()["readout.w_out"]   # not adapted


def per_task_bptt(meta, episode) -> dict[str, torch.Tensor]:
    """∇_W E_b for each task b, one task at a time with shared weights (the oracle of MAML's inner step)."""
    params = {k: v.detach() for k, v in meta.learner.parameter_dict().items()}
    names = ("layers.0.w_in", "layers.0.w_rec")
    grads: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for b in range(episode.batch_size):
        weights = {k: v.clone().requires_grad_(k in names) for k, v in params.items()}
        one = episode.select(b)
        loss = meta.family.loss(meta.learner.run(one.inputs, weights).output, one).per_task[0]
        for name, g in zip(names, torch.autograd.grad(loss, [weights[n] for n in names]), strict=True):
            grads[name].append(g)
    return {name: torch.stack(g) for name, g in grads.items()}


@pytest.mark.parametrize("inner", ["maml", "maml_first_order"])
def test_the_maml_step_is_each_tasks_own_gradient(inner):
    meta, episode = meta_learner(inner)
    adaptation = adapt(meta, episode)
    expected = per_task_bptt(meta, episode)
    for name, g in expected.items():
        torch.testing.assert_close(adaptation.update[name].detach(), g, rtol=1e-10, atol=1e-12)
    rates = meta.rates()
    for name, g in expected.items():
        weight = meta.learner.parameter_dict()[name].detach()
        torch.testing.assert_close(adaptation.params[name].detach(), weight - rates[name].detach() * g,
                                   rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("inner", "feedback"), [("eprop1_symmetric", "symmetric"), ("eprop1_random", "random")])
def test_the_eprop1_step_is_the_eprop_rules_gradient(inner, feedback):
    meta, episode = meta_learner(inner)
    adaptation = adapt(meta, episode)
    rule = DeepEProp(feedback=feedback, per_task=True, feedback_seed=0)
    params = {k: v.detach() for k, v in meta.learner.parameter_dict().items()}
    expected = rule.gradients(meta.learner, episode.inputs, lambda y: meta.family.loss(y, episode).per_task.sum(),
                              params).grads
    for name in ("layers.0.w_in", "layers.0.w_rec"):
        torch.testing.assert_close(adaptation.update[name].detach(), expected[name], rtol=1e-10, atol=1e-12)
    other = DeepEProp(feedback="random" if feedback == "symmetric" else "symmetric", per_task=True,
                      feedback_seed=0).gradients(meta.learner, episode.inputs,
                                                 lambda y: meta.family.loss(y, episode).per_task.sum(), params).grads
    assert not torch.allclose(adaptation.update["layers.0.w_rec"].detach(), other["layers.0.w_rec"]), \
        "negative control: the other feedback gives another update"


def outer_task_loss(meta, episode, codes) -> torch.Tensor:
    """The test trial's mean task loss after the control's update (the outer objective without regularization)."""
    adaptation = meta.adapt(episode, codes)
    return meta.family.loss(meta.learner.run(episode.inputs, adaptation.params).output, episode).mean


def meta_gradient_check(meta, episode) -> tuple[float, float]:
    """(autograd's directional meta-derivative, central finite difference) along a random direction of the
    learner's initial w_in and w_rec, in float64 (use a smooth learner: network=rnn)."""
    codes = meta.encode(episode, torch.Generator().manual_seed(2)).double()
    weights = [meta.learner.layers[0].w_in, meta.learner.layers[0].w_rec]
    direction = [torch.randn(w.shape, generator=torch.Generator().manual_seed(3 + k), dtype=torch.float64)
                 for k, w in enumerate(weights)]
    grads = torch.autograd.grad(outer_task_loss(meta, episode, codes), weights)
    analytic = float(sum((g * d).sum() for g, d in zip(grads, direction, strict=True)))
    eps, values = 1e-6, []
    for sign in (1.0, -1.0):
        with torch.no_grad():
            for w, d in zip(weights, direction, strict=True):
                w.add_(sign * eps * d)
        values.append(float(outer_task_loss(meta, episode, codes).detach()))
        with torch.no_grad():
            for w, d in zip(weights, direction, strict=True):
                w.sub_(sign * eps * d)
    return analytic, (values[0] - values[1]) / (2 * eps)


@pytest.mark.parametrize("inner", ["maml", "eprop1_symmetric", "eprop1_random"])
def test_the_meta_gradient_equals_finite_differences(inner):
    analytic, numeric = meta_gradient_check(*meta_learner(inner, "network=rnn", "inner.lr=0.5"))
    assert abs(analytic - numeric) <= TOLERANCE * abs(numeric), (analytic, numeric)


@pytest.mark.parametrize("inner", ["maml_first_order", "eprop1_symmetric"])
def test_first_order_is_not_the_exact_meta_gradient(inner):
    """Negative control: dropping the second-order terms misses the finite differences by far more than the
    exact check's tolerance."""
    extra = ["inner.first_order=true"] if inner == "eprop1_symmetric" else []
    meta, episode = meta_learner(inner, "network=rnn", "inner.lr=0.5", *extra)
    analytic, numeric = meta_gradient_check(meta, episode)
    assert abs(analytic - numeric) > 100 * TOLERANCE * abs(numeric), (analytic, numeric)


@pytest.mark.parametrize("inner", sorted(CONTROLS))
def test_one_training_iteration_from_l2l_train(inner, tmp_path):
    summary = run(compose_config([*TINY_META, f"inner={inner}", "outer.iterations=1", "outer.log_every=1"]),
                  tmp_path)
    assert summary["mode"] == "meta"
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["iteration"] == 0 and all(torch.isfinite(torch.tensor(rows[0][k])) for k in ("loss", "test_mse"))
    assert rows[0]["error_module_rate_hz"] == 0.0          # no error module ran


def test_a_control_refuses_the_error_module_in_the_test_trial():
    with pytest.raises(ValueError, match="error_module.in_test_trial=true is not allowed with inner.backend=maml"):
        meta_learner("maml", "error_module.in_test_trial=true")


# ---- the difficulty reference: k Adam steps of BPTT per task ------------------------------------------------------


def test_stacked_adam_is_each_tasks_own_adam_run():
    """One Adam over the (B, ...) copies with Σ_b E_b equals B separate Adam runs, one task each (float64)."""
    from l2l.outer_loop.algorithm.difficulty import adam_trajectory

    meta, episode = meta_learner("one_step")
    stacked = adam_trajectory(meta, episode, (1, 5), lr=1e-2)
    for b in range(episode.batch_size):
        alone = adam_trajectory(meta, episode.select(b), (1, 5), lr=1e-2)
        for k in (1, 5):
            torch.testing.assert_close(stacked[k][b:b + 1], alone[k], rtol=1e-9, atol=1e-12)
    assert not torch.equal(stacked[1], stacked[5]), "the steps change the weights"


def test_l2l_eval_adds_the_difficulty_reference(tmp_path):
    from l2l.outer_loop.reports.eval_cli import main

    run(compose_config([*TINY_META, "outer.iterations=1"]), tmp_path / "run")
    assert main([str(tmp_path / "run"), "--tasks", "3", "--adam-steps", "2,4", "--adam-lrs", "0.001,0.01"]) == 0
    reached = json.loads((tmp_path / "run" / "eval.json").read_text())["adam_steps"]
    assert set(reached) == {"2", "4"} and set(reached["4"]["grid"]) == {"0.001", "0.01"}
    assert reached["4"]["mse"] == min(reached["4"]["grid"].values())
    with pytest.raises(SystemExit):
        main([str(tmp_path / "run"), "--adam-steps", "0"])


# ---- how gradient-like an update is -------------------------------------------------------------------------------


def test_a_maml_step_is_aligned_with_bptt_and_the_step_scale_curve_is_consistent():
    """Positive control: MAML's step with one fixed η is the gradient (cosine 1); s = 0 and s = 1 of the step-scale
    curve are the metric before and after the update."""
    from l2l.outer_loop.algorithm.evaluation import one_shot_step
    from l2l.outer_loop.algorithm.update_alignment import update_alignment

    meta, episode = meta_learner("maml", "inner.lr_mode=fixed")
    codes = meta.encode(episode, torch.Generator().manual_seed(2)).double()
    result = update_alignment(meta, episode, codes, scales=(0.0, 1.0, 2.0))
    for stats in result["cosine"].values():
        assert stats["mean"] == pytest.approx(1.0, abs=1e-12) and stats["std"] < 1e-12
    step = one_shot_step(meta, episode, codes)
    assert result["step_scale"]["0.0"] == pytest.approx(step.metrics["demo_mse"], rel=1e-12)
    assert result["step_scale"]["1.0"] == pytest.approx(step.metrics["test_mse"], rel=1e-12)


def test_an_eprop2_step_is_scored_too():
    """e-prop 2's learned step: a cosine in [-1, 1] that is not 1 (negative control of the measurement)."""
    from l2l.outer_loop.algorithm.update_alignment import update_alignment

    meta, episode = meta_learner("one_step")
    codes = meta.encode(episode, torch.Generator().manual_seed(2)).double()
    cosine = update_alignment(meta, episode, codes, scales=(1.0,))["cosine"]["all"]
    assert -1.0 <= cosine["mean"] <= 1.0 and abs(cosine["mean"]) < 0.99
