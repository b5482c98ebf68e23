"""Pattern generation: targets rebuilt in numpy from the drawn sine parameters, Poisson input rate,
the frozen task of e-prop 1, the MSE loss, bad parameters."""

import math

import numpy as np
import pytest
import torch

from l2l.tasks.pattern import PatternGeneration


def test_target_is_the_normalized_sum_of_sines():
    family = PatternGeneration(n_outputs=2)
    ep = family.sample(3, torch.Generator().manual_seed(0))
    assert ep.inputs.shape == (3, 1000, 100) and ep.target.shape == (3, 1000, 2)
    t = np.arange(1000.0)
    for b in range(3):
        for k in range(2):
            a, phi = ep.amplitudes[b, k].double().numpy(), ep.phases[b, k].double().numpy()
            y = sum(a[i] * np.sin(2 * np.pi * t / p + phi[i]) for i, p in enumerate((1000.0, 500.0, 333.0, 200.0)))
            y = y - y[0]
            y = y / np.abs(y).max()
            np.testing.assert_allclose(ep.target[b, :, k].numpy(), y, atol=2e-5)
    assert (ep.amplitudes >= 0.5).all() and (ep.amplitudes <= 2.0).all()
    assert (ep.phases >= 0).all() and (ep.phases <= 2 * math.pi).all()


def test_unnormalized_target_and_dt():
    family = PatternGeneration(n_steps=50, dt=4.0, periods_ms=(100.0,), amplitude_range=(2.0, 2.0),
                               phase_range=(0.0, 0.0), normalize=False)
    ep = family.sample(1, torch.Generator().manual_seed(0))
    expected = 2.0 * np.sin(2 * np.pi * np.arange(50) * 4.0 / 100.0)
    np.testing.assert_allclose(ep.target[0, :, 0].numpy(), expected, atol=1e-6)


def test_poisson_input_rate():
    family = PatternGeneration(n_steps=500)
    ep = family.sample(8, torch.Generator().manual_seed(1))
    assert set(ep.inputs.unique().tolist()) == {0.0, 1.0}
    assert float(ep.inputs.mean()) == pytest.approx(0.05, abs=0.002)   # 50 Hz at dt = 1 ms


def test_frozen_task_ignores_the_generator():
    family = PatternGeneration(n_steps=200, task_seed=3)
    a = family.sample(4, torch.Generator().manual_seed(0))
    b = family.sample(2, torch.Generator().manual_seed(99))
    assert torch.equal(a.inputs[0], a.inputs[3]) and torch.equal(a.inputs[0], b.inputs[1])
    assert torch.equal(a.target[1], b.target[0])
    other = PatternGeneration(n_steps=200, task_seed=4).sample(1)
    assert not torch.equal(other.target[0], a.target[0])


def test_mse_loss():
    family = PatternGeneration(n_steps=100, n_outputs=2)
    ep = family.sample(4, torch.Generator().manual_seed(0))
    assert float(family.loss(ep.target.clone(), ep).per_task.abs().max()) == 0.0
    zero = family.loss(torch.zeros(4, 100, 2), ep)
    target = ep.target.double().numpy()
    np.testing.assert_allclose(zero.per_task.numpy(), (target**2).mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(zero.metrics["nmse"].numpy(),
                               (target**2).mean(axis=(1, 2)) / target.var(axis=1).mean(-1), rtol=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"n_inputs": 0}, "n_inputs"), ({"n_outputs": 0}, "n_outputs"), ({"n_steps": 0}, "n_steps"),
     ({"periods_ms": (100.0, -5.0)}, r"periods_ms\[1\]"), ({"periods_ms": ()}, "periods_ms"),
     ({"amplitude_range": (2.0, 1.0)}, "amplitude_range"), ({"input_rate_hz": -1.0}, "input_rate_hz"),
     ({"input_rate_hz": 5000.0}, "input_rate_hz"), ({"task_seed": -1}, "task_seed")],
)
def test_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        PatternGeneration(**kwargs)


def test_plot(tmp_path):
    family = PatternGeneration(n_steps=300, n_outputs=2)
    ep = family.sample(2, torch.Generator().manual_seed(0))
    fig = family.plot(ep, ep.target * 0.8)
    assert len(fig.axes) == 3
    fig.savefig(tmp_path / "pattern.png")
    assert (tmp_path / "pattern.png").stat().st_size > 5_000
