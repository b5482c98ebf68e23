"""A movement of your own as a one-shot arm task (l2l.tasks.arm_target) and ``l2l-demo target=``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from l2l.tasks.arm import ArmTrajectories
from l2l.tasks.arm_target import (
    Movement,
    example_targets,
    inverse_kinematics,
    movement_episode,
    read_movement,
)
from l2l.tasks.copy_repeat import CopyRepeat
from l2l.validation import InvalidValueError

FAMILY = ArmTrajectories(n_steps=100, n_sines=2, clock_groups=5)


def test_the_examples_ship_and_read_as_endpoint_paths():
    assert example_targets() == ["circle", "figure_eight", "letter_e"]
    for name in example_targets():
        movement = read_movement(name)
        assert movement.kind == "endpoint" and movement.values.shape[1] == 2 and len(movement.values) >= 100


def test_inverse_kinematics_inverts_the_arm_in_float64():
    g = np.random.default_rng(0)
    angles = np.stack((g.uniform(-math.pi, math.pi, 500), g.uniform(0.01, math.pi - 0.01, 500)), axis=1)
    xy = FAMILY.arm.forward_kinematics(torch.from_numpy(angles)).numpy()
    back = inverse_kinematics(xy, FAMILY.arm.lengths, FAMILY.arm.start_angles)
    again = FAMILY.arm.forward_kinematics(torch.from_numpy(back)).numpy()
    assert np.abs(again - xy).max() < 1e-12
    assert np.abs(back[:, 1] - angles[:, 1]).max() < 1e-6         # the elbow branch of the start posture
    # negative control: the other elbow branch reaches the same points with different angles
    assert np.abs(back[:, 1] + angles[:, 1]).min() > 0.01


def test_an_endpoint_path_becomes_the_episodes_target_from_the_arms_start():
    t = np.linspace(0.0, 1.0, 37)
    path = np.stack((0.2 * t, -0.1 * np.sin(math.pi * t)), axis=1) + 3.0        # anywhere: it is shifted
    episode, facts = movement_episode(Movement(path, "endpoint", "test"), FAMILY)
    start = FAMILY.arm.start_position().numpy()
    target = episode.target[0].double().numpy()
    assert episode.target.shape == episode.omega.shape == (1, FAMILY.n_steps, 2)
    assert episode.inputs.shape == (1, FAMILY.n_steps, FAMILY.n_inputs)
    # the last step is the path's last point; every step lies on the (shifted, linearly interpolated) path
    assert np.abs(target[-1] - (path[-1] - path[0] + start)).max() < 1e-6
    fractions = np.arange(1, FAMILY.n_steps + 1) / FAMILY.n_steps
    on_path = np.stack([np.interp(fractions, t, path[:, d] - path[0, d] + start[d]) for d in range(2)], axis=1)
    # interpolation happens in joint angles: close to the straight interpolation in x, y at this spacing
    assert np.abs(target - on_path).max() < 2e-3
    # the task's own loss of the target's ω is zero: the episode is consistent
    assert float(FAMILY.loss(episode.omega, episode).per_task[0]) < 1e-10
    assert facts["points"] == 37 and facts["duration_s"] is None and facts["max_displacement_rad"] > 0


def test_joint_velocities_are_integrated_at_their_rate_and_stretched_to_the_trial():
    omega = np.tile([[3.0, -2.0]], (FAMILY.n_steps, 1))
    same, _ = movement_episode(Movement(omega, "joint_velocity", "test"), FAMILY)
    assert torch.allclose(same.omega[0].double(), torch.from_numpy(omega), atol=1e-5)
    # half as many samples at half the rate: the same duration, the same velocities
    half, facts = movement_episode(Movement(omega[::2], "joint_velocity", "test"), FAMILY, rate_hz=500.0)
    assert torch.allclose(half.omega, same.omega, atol=1e-4) and facts["duration_s"] == pytest.approx(0.1)
    # the same samples at twice the model's rate last half the trial: stretched, the velocities halve
    fast, _ = movement_episode(Movement(omega, "joint_velocity", "test"), FAMILY, rate_hz=2000.0)
    assert torch.allclose(fast.omega, same.omega / 2, atol=1e-4)


def test_files_csv_with_and_without_header_and_npy(tmp_path):
    values = np.array([[0.0, 0.0], [0.05, 0.01], [0.1, 0.0]])
    (tmp_path / "xy.csv").write_text("# drawn by hand\nx,y\n" + "\n".join(f"{a},{b}" for a, b in values) + "\n")
    (tmp_path / "w.csv").write_text("omega1, omega2\n1,2\n3,4\n")
    (tmp_path / "bare.csv").write_text("1,2\n3,4\n")
    np.save(tmp_path / "xy.npy", values)
    assert np.array_equal(read_movement(str(tmp_path / "xy.csv")).values, values)
    assert read_movement(str(tmp_path / "w.csv")).kind == "joint_velocity"
    assert read_movement(str(tmp_path / "bare.csv")).kind == "endpoint"
    assert read_movement(str(tmp_path / "bare.csv"), "joint_velocity").kind == "joint_velocity"
    assert np.array_equal(read_movement(str(tmp_path / "xy.npy")).values, values)


@pytest.mark.parametrize("content, match", [
    (None, r"target='.*nothing.csv' is not allowed: no such file, and not an example target \(circle"),
    ("a,b\n1,2\n3,4\n", r"its header 'a,b' must be one of \['x,y', 'omega1,omega2'\]"),
    ("x,y\n1,2\n", r"an array of shape \(1, 2\); a movement is \(N, 2\) with N >= 2"),
    ("x,y\n1,2,3\n4,5,6\n", r"shape \(2, 3\)"),
    ("x,y\n0,0\nnan,1\n", r"row 1 is not finite"),
    ("x,y\n0,0\nhello,1\n", r"cannot be read as numbers"),
    ("x,y\n0,0\n0.3,0\n0.6,0\n0.9,0\n", r"point 2 \(x=1.100, y=0.500 m after the shift to the start\) is 1.208 m from "
                                        r"the shoulder; the arm reaches 0.000 to 1.000 m"),
])
def test_bad_movements_stop_in_one_line(tmp_path, content, match):
    path = tmp_path / "nothing.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InvalidValueError, match=match):
        episode_of(str(path))


def episode_of(spec: str, **kwargs):
    return movement_episode(read_movement(spec), FAMILY, **kwargs)


def test_bad_options_and_models_are_refused():
    with pytest.raises(InvalidValueError, match=r"target_kind='xy' is not allowed: it must be one of"):
        read_movement("circle", "xy")
    with pytest.raises(InvalidValueError, match=r"target_scale=-1.0 is not allowed"):
        episode_of("circle", scale=-1.0)
    with pytest.raises(InvalidValueError, match=r"point \d+ .* from the shoulder"):
        episode_of("circle", scale=10.0)
    with pytest.raises(InvalidValueError, match=r"target_rate_hz=0.0 is not allowed"):
        movement_episode(Movement(np.ones((5, 2)), "joint_velocity", "w"), FAMILY, rate_hz=0.0)
    with pytest.raises(InvalidValueError, match=r"a target needs an arm model; this one learns the 'copy_repeat'"):
        movement_episode(read_movement("circle"), CopyRepeat())
    # unshifted, the path must lie within reach where it is
    with pytest.raises(InvalidValueError, match=r"point 0 \(x=0.000, y=0.000 m\) is 0.000 m"):
        movement_episode(Movement(np.array([[0.0, 0.0], [0.1, 0.0]]), "endpoint", "p"), ArmTrajectories(
            n_steps=100, n_sines=2, clock_groups=5, lengths=(0.6, 0.4)), shift=False)


def test_the_shipped_model_learns_an_example_target_in_one_shot(tmp_path):
    target = "circle"
    from test_reliability import run_hydra_command

    from l2l.outer_loop.reports.demo import cli as demo_cli

    out = tmp_path / "demo"
    code, err = run_hydra_command(demo_cli, ["l2l-demo", f"target={target}", "threads=1", "gif=false",
                                             "baselines=false", f"hydra.run.dir={out}"])
    assert code == 0, err
    result = json.loads((out / "demo.json").read_text())
    assert result["tasks"] == 1 and result["target"]["name"] == target and result["target"]["kind"] == "endpoint"
    assert result["test_mse"] < 0.5 * result["demo_mse"]
