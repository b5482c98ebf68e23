"""Two-joint arm: kinematics against hand-computed values and the law of cosines, the movement family
against an independent numpy construction, the reference outer loss, bad parameters."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from l2l.tasks.arm import ArmTrajectories, TwoJointArm

HALF_PI = math.pi / 2
finite_angles = st.floats(-10.0, 10.0, allow_nan=False)
lengths = st.floats(0.01, 5.0, allow_nan=False)


@pytest.mark.parametrize(
    ("angles", "expected"),
    [
        ((0.0, HALF_PI), (0.5, 0.5)),            # the reference start position
        ((0.0, 0.0), (1.0, 0.0)),                # stretched along x
        ((HALF_PI, 0.0), (0.0, 1.0)),            # stretched along y
        ((math.pi, 0.0), (-1.0, 0.0)),
        ((0.0, math.pi), (0.0, 0.0)),            # folded back onto the shoulder
        ((HALF_PI, -HALF_PI), (0.5, 0.5)),       # upper arm up, forearm along x
    ],
)
def test_forward_kinematics_known_points(angles, expected):
    xy = TwoJointArm().forward_kinematics(torch.tensor(angles, dtype=torch.float64))
    torch.testing.assert_close(xy, torch.tensor(expected, dtype=torch.float64), atol=1e-12, rtol=0)


def test_forward_kinematics_unequal_segments():
    arm = TwoJointArm(lengths=(0.3, 0.7))
    xy = arm.forward_kinematics(torch.tensor([[0.0, math.pi], [HALF_PI, HALF_PI]], dtype=torch.float64))
    torch.testing.assert_close(xy, torch.tensor([[-0.4, 0.0], [-0.7, 0.3]], dtype=torch.float64), atol=1e-12, rtol=0)


@settings(max_examples=60, deadline=None)
@given(theta1=finite_angles, theta2=finite_angles, l1=lengths, l2=lengths)
def test_endpoint_within_reach_and_law_of_cosines(theta1, theta2, l1, l2):
    arm = TwoJointArm(lengths=(l1, l2))
    xy = arm.forward_kinematics(torch.tensor([theta1, theta2], dtype=torch.float64))
    distance_sq = float((xy**2).sum())
    assert math.sqrt(distance_sq) <= l1 + l2 + 1e-9
    # |xy|² = l1² + l2² + 2 l1 l2 cos θ2, independent of the shoulder angle
    assert distance_sq == pytest.approx(l1**2 + l2**2 + 2 * l1 * l2 * math.cos(theta2), abs=1e-9)
    # the shoulder angle rotates the whole arm: the polar angle of xy moves with θ1
    rotated = arm.forward_kinematics(torch.tensor([theta1 + 0.3, theta2], dtype=torch.float64))
    c, s = math.cos(0.3), math.sin(0.3)
    expected = torch.tensor([c * xy[0] - s * xy[1], s * xy[0] + c * xy[1]], dtype=torch.float64)
    torch.testing.assert_close(rotated, expected, atol=1e-9, rtol=0)


@settings(max_examples=30, deadline=None)
@given(start1=finite_angles, start2=finite_angles, l1=lengths, l2=lengths, steps=st.integers(1, 50))
def test_zero_velocity_keeps_the_start_position(start1, start2, l1, l2, steps):
    arm = TwoJointArm(lengths=(l1, l2), start_angles=(start1, start2))
    xy = arm.endpoint(torch.zeros(3, steps, 2, dtype=torch.float64))
    start = torch.tensor([l1 * math.cos(start1) + l2 * math.cos(start1 + start2),
                          l1 * math.sin(start1) + l2 * math.sin(start1 + start2)], dtype=torch.float64)
    torch.testing.assert_close(xy, start.expand(3, steps, 2), atol=1e-12, rtol=0)


def test_integrate_constant_velocity():
    arm = TwoJointArm()
    omega = torch.tensor([2.0, -1.0], dtype=torch.float64).expand(1, 10, 2)
    angles = arm.integrate(omega, dt=5.0)
    steps = torch.arange(1, 11, dtype=torch.float64)[:, None]            # θ^t includes ω^t
    expected = torch.tensor([0.0, HALF_PI], dtype=torch.float64) + steps * torch.tensor([2.0, -1.0]) * 0.005
    torch.testing.assert_close(angles[0], expected.to(torch.float64), atol=1e-12, rtol=0)


def test_sample_fields_shapes_and_kinematics():
    family = ArmTrajectories()
    ep = family.sample(batch_size=6, generator=torch.Generator().manual_seed(3))
    assert ep.inputs.shape == (6, 500, 10) and ep.target.shape == (6, 500, 2)
    assert ep.omega.shape == (6, 500, 2) and ep.angles.shape == (6, 500, 2)
    torch.testing.assert_close(ep.target, family.arm.forward_kinematics(ep.angles), atol=1e-5, rtol=0)
    angles = np.array([0.0, HALF_PI]) + np.cumsum(ep.omega.double().numpy(), axis=1) / 1000.0
    np.testing.assert_allclose(ep.angles.numpy(), angles, atol=1e-5)
    assert (ep.inputs[0] == ep.inputs[5]).all(), "the clock is the same for every task"


def _reference_velocity(amplitude, period, phase, steps, normalize_to=None, limit=HALF_PI):
    """One joint's velocity from one sine, built with numpy: the family with n_sines=1 and fixed ranges."""
    s = np.linspace(0, 2 * np.pi, steps)
    omega = amplitude * np.sin(s / period + phase)
    if normalize_to is not None:
        omega = omega / (omega.max() - omega.min()) * normalize_to
    peak = np.abs(np.cumsum(omega) / 1000.0).max()
    return omega * min(1.0, limit / peak)


@pytest.mark.parametrize(("amplitude", "period", "phase"), [(3.0, 0.7, 0.4), (25.0, 0.45, 2.0), (60.0, 1.0, 0.0)])
def test_movement_matches_numpy_construction(amplitude, period, phase):
    family = ArmTrajectories(n_sines=1, period_range=(period, period), phase_range=(phase, phase),
                             shoulder_amplitude_range=(amplitude, amplitude), elbow_amplitude_range=(1.0, 1.0))
    ep = family.sample(2, torch.Generator().manual_seed(0))
    np.testing.assert_allclose(ep.omega[0, :, 0].numpy(), _reference_velocity(amplitude, period, phase, 500),
                               rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(ep.omega[0, :, 1].numpy(),
                               _reference_velocity(1.0, period, phase, 500, normalize_to=20.0), rtol=1e-5, atol=1e-4)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), high=st.floats(0.0, 200.0), limit=st.floats(0.1, 3.0))
def test_joint_angles_stay_within_the_limit(seed, high, limit):
    family = ArmTrajectories(n_steps=100, clock_groups=5, shoulder_amplitude_range=(0.0, high), angle_limit=limit)
    ep = family.sample(16, torch.Generator().manual_seed(seed))
    displacement = ep.angles - torch.tensor([0.0, HALF_PI])
    assert (displacement.abs() <= limit + 1e-5).all()
    assert (ep.target.norm(dim=-1) <= family.arm.reach + 1e-6).all()


def test_large_movements_are_scaled_to_touch_the_limit():
    family = ArmTrajectories(shoulder_amplitude_range=(100.0, 100.0), elbow_peak_to_peak=400.0)
    ep = family.sample(32, torch.Generator().manual_seed(1))
    peak = (ep.angles - torch.tensor([0.0, HALF_PI])).abs().amax(dim=1)
    torch.testing.assert_close(peak, torch.full_like(peak, HALF_PI), atol=1e-5, rtol=0)


def test_seeds_reproduce():
    family = ArmTrajectories()
    a = family.sample(4, torch.Generator().manual_seed(7))
    b = family.sample(4, torch.Generator().manual_seed(7))
    c = family.sample(4, torch.Generator().manual_seed(8))
    for key, value in a.tensors().items():
        assert torch.equal(value, b.tensors()[key]), key
    assert not torch.equal(a.omega, c.omega)


def test_reference_outer_loss():
    family = ArmTrajectories()
    ep = family.sample(5, torch.Generator().manual_seed(0))
    perfect = family.loss(ep.omega.clone(), ep)
    assert perfect.per_task.shape == (5,)
    assert float(perfect.per_task.max()) < 1e-8
    still = family.loss(torch.zeros(5, 500, 2), ep)
    omega, xy = ep.omega.double().numpy(), ep.target.double().numpy()
    mse_omega = (omega**2).mean(axis=(1, 2))
    mse_xy = ((xy - np.array([0.5, 0.5])) ** 2).mean(axis=(1, 2))       # a still arm stays at the start
    np.testing.assert_allclose(still.metrics["mse_omega"].numpy(), mse_omega, rtol=1e-5)
    np.testing.assert_allclose(still.metrics["mse_xy"].numpy(), mse_xy, rtol=1e-4)
    np.testing.assert_allclose(still.per_task.numpy(), 0.5 * (0.1 * mse_omega + mse_xy), rtol=1e-4)
    assert float(still.mean) == pytest.approx(float(still.per_task.mean()))


def test_loss_is_differentiable_through_the_arm():
    family = ArmTrajectories(n_steps=50)
    ep = family.sample(2, torch.Generator().manual_seed(0))
    omega = torch.zeros(2, 50, 2, requires_grad=True)
    family.loss(omega, ep).mean.backward()
    assert omega.grad is not None and omega.grad.abs().sum() > 0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"lengths": (-0.5, 0.5)}, "lengths[0]"),
        ({"lengths": (0.5, 0.0)}, "lengths[1]"),
        ({"lengths": (0.5,)}, "lengths"),
        ({"n_steps": 499}, "n_steps"),             # the clock needs 5 equal segments
        ({"n_steps": 0}, "n_steps"),
        ({"clock_groups": 0}, "clock_groups"),     # zero segments
        ({"n_sines": 0}, "n_sines"),
        ({"dt": -1.0}, "dt"),
        ({"period_range": (0.0, 1.0)}, "period_range"),
        ({"shoulder_amplitude_range": (5.0, 1.0)}, "shoulder_amplitude_range"),
        ({"angle_limit": 0.0}, "angle_limit"),
    ],
)
def test_bad_parameters_raise_naming_them(kwargs, name):
    with pytest.raises(ValueError, match=name.replace("[", r"\[").replace("]", r"\]")):
        ArmTrajectories(**kwargs)


def test_wrong_output_shape_raises():
    family = ArmTrajectories(n_steps=50)
    ep = family.sample(2, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="output has shape"):
        family.loss(torch.zeros(2, 50, 3), ep)


def test_plot(tmp_path):
    family = ArmTrajectories()
    ep = family.sample(2, torch.Generator().manual_seed(0))
    fig = family.plot(ep, ep.omega * 0.5, index=1)
    fig.savefig(tmp_path / "arm.png")
    assert (tmp_path / "arm.png").stat().st_size > 10_000
    assert len(fig.axes) == 4
