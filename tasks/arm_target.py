"""Your own arm movement as a one-shot task: a file of endpoint positions or joint velocities, fitted to a model.

A movement is read from a CSV or NPY file (or an example shipped under ``targets/``, by name: :func:`example_targets`)
as ``(N, 2)`` values, any N ≥ 2 and any sampling rate:

- ``endpoint``: the hand's positions (x, y) in m in the shoulder's frame (the arm of the tasks, ``TwoJointArm``);
  by default shifted so that the first point is the arm's start position (``shift=True``) and scaled by ``scale``
  (e.g. 0.001 for a drawing in mm);
- ``joint_velocity``: ω = (ω1, ω2) in rad/s sampled at ``rate_hz`` (default: one sample per model time step),
  integrated from the arm's start angles.

A CSV may start with a header naming its columns: ``x,y`` (endpoint) or ``omega1,omega2`` (joint velocity);
lines starting with ``#`` are comments. Without a header the kind is ``kind`` (default endpoint).

:func:`movement_episode` turns a movement into the task family's :class:`~l2l.tasks.arm.ArmEpisode` (one task):
the path is resampled over the model's trial (its duration is stretched or squeezed to T·dt; positions are
interpolated linearly in the movement's own time), the joint angles come from inverse kinematics on the elbow
branch of the start posture (θ2 ∈ [0, π]), and ω from the angles' increments, so that the task's own integration
``θ^t = θ^0 + Σ_{t' ≤ t} ω^{t'}·dt`` gives back the resampled path exactly. A point the arm cannot reach
(distance from the shoulder outside [|l1 − l2|, l1 + l2]) stops with one line naming it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from l2l.tasks.arm import ArmEpisode, ArmTrajectories
from l2l.validation import InvalidValueError

TARGET_DIR = Path(__file__).with_name("targets")
"""The example targets (``<name>.csv``), usable by name."""
KINDS = ("endpoint", "joint_velocity")
HEADERS = {("x", "y"): "endpoint", ("omega1", "omega2"): "joint_velocity"}


def example_targets() -> list[str]:
    """The names of the shipped example targets (``target=circle`` ...)."""
    return sorted(p.stem for p in TARGET_DIR.glob("*.csv"))


@dataclass(frozen=True)
class Movement:
    """A movement as read: ``values`` (N, 2) float64 (x, y in m, or ω1, ω2 in rad/s), its ``kind`` and ``source``."""

    values: np.ndarray
    kind: str
    source: str


def _csv_rows(path: Path) -> tuple[tuple[str, ...] | None, list[str]]:
    """A CSV's header (its first non-comment line's cells, lower case, when they are not numbers) and data lines."""
    lines = [t for t in (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
             if t and not t.startswith("#")]
    if not lines:
        return None, []
    cells = tuple(c.strip().lower() for c in lines[0].split(","))
    try:
        [float(c) for c in cells]
    except ValueError:
        return cells, lines[1:]
    return None, lines


def read_movement(spec: str, kind: str | None = None, key: str = "target") -> Movement:
    """The movement of ``spec``: an example target's name or a .csv / .npy file; ``kind`` (endpoint |
    joint_velocity) overrides a CSV header's; ``key`` names the option in messages."""
    if kind is not None and kind not in KINDS:
        raise InvalidValueError(f"{key}_kind", kind, f": it must be one of {list(KINDS)} (or null: the CSV header's)")
    path = TARGET_DIR / f"{spec}.csv" if spec in example_targets() else Path(spec).expanduser()
    if not path.is_file():
        examples = ", ".join(example_targets())
        raise InvalidValueError(key, spec, f": no such file, and not an example target ({examples})")
    header = None
    try:
        if path.suffix.lower() == ".npy":
            values = np.load(path, allow_pickle=False)
        elif path.suffix.lower() == ".csv":
            header, rows = _csv_rows(path)
            values = np.loadtxt(rows, delimiter=",", ndmin=2) if rows else np.zeros((0, 2))
        else:
            raise InvalidValueError(key, spec, ": it must be a .csv or .npy file (or an example target's name)")
    except (OSError, ValueError) as error:
        if isinstance(error, InvalidValueError):
            raise
        raise InvalidValueError(key, spec, f": the file cannot be read as numbers ({error})") from None
    from_header = None
    if header is not None:
        from_header = HEADERS.get(header)
        if from_header is None:
            raise InvalidValueError(key, spec, f": its header {','.join(header)!r} must be one of "
                                    f"{[','.join(h) for h in HEADERS]} (or no header)")
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[1] != 2 or values.shape[0] < 2:
        raise InvalidValueError(key, spec, f": it holds an array of shape {values.shape}; a movement is (N, 2) "
                                "with N >= 2 rows of (x, y) or (omega1, omega2)")
    bad = np.flatnonzero(~np.isfinite(values).all(axis=1))
    if bad.size:
        raise InvalidValueError(key, spec, f": row {int(bad[0])} is not finite ({values[bad[0]].tolist()})")
    return Movement(values, kind or from_header or "endpoint", str(path))


def inverse_kinematics(xy: np.ndarray, lengths: tuple[float, float], start_angles: tuple[float, float]) -> np.ndarray:
    """Joint angles (N, 2) reaching the endpoints ``xy`` (N, 2), elbow θ2 ∈ [0, π] (the start posture's branch
    when its θ2 ≥ 0), θ1 unwrapped over the path from the start's θ1. The points must be reachable."""
    l1, l2 = lengths
    r2 = (xy ** 2).sum(axis=1)
    cos2 = np.clip((r2 - l1 ** 2 - l2 ** 2) / (2 * l1 * l2), -1.0, 1.0)
    sign = 1.0 if start_angles[1] >= 0 else -1.0
    theta2 = sign * np.arccos(cos2)
    theta1 = np.arctan2(xy[:, 1], xy[:, 0]) - np.arctan2(l2 * np.sin(theta2), l1 + l2 * np.cos(theta2))
    theta1 = np.unwrap(np.concatenate(([start_angles[0]], theta1)))[1:]
    return np.stack((theta1, theta2), axis=1)


def _resample(values: np.ndarray, points: int) -> np.ndarray:
    """``values`` (N, D) at equally spaced times over [0, 1], linearly interpolated at ``points`` (M,) in [0, 1]."""
    grid = np.linspace(0.0, 1.0, len(values))
    return np.stack([np.interp(points, grid, values[:, d]) for d in range(values.shape[1])], axis=1)


def _rate(family: ArmTrajectories, rate_hz: float | None) -> float:
    """Samples per second of a joint-velocity movement: ``rate_hz``, or one per model time step."""
    return 1000.0 / family.dt if rate_hz is None else rate_hz


def movement_angles(movement: Movement, family: ArmTrajectories, rate_hz: float | None = None, shift: bool = True,
                    scale: float = 1.0, key: str = "target") -> np.ndarray:
    """The movement's joint angles (N', 2) from its start posture on (first row = the start angles for a joint
    velocity, the first point's inverse kinematics for an endpoint path). Checks reachability (endpoint)."""
    arm = family.arm
    if not (math.isfinite(scale) and scale > 0):
        raise InvalidValueError(f"{key}_scale", scale, ": it must be a finite number > 0")
    if movement.kind == "joint_velocity":
        rate = _rate(family, rate_hz)
        if not (math.isfinite(rate) and rate > 0):
            raise InvalidValueError(f"{key}_rate_hz", rate_hz, ": it must be a finite number > 0 (samples per second)")
        start = np.asarray(arm.start_angles, dtype=np.float64)
        steps = np.cumsum(movement.values * scale / rate, axis=0)
        return np.concatenate((start[None], start + steps))
    xy = movement.values * scale
    if shift:
        xy = xy - xy[0] + arm.start_position().numpy()
    l1, l2 = arm.lengths
    distance = np.sqrt((xy ** 2).sum(axis=1))
    low, high = abs(l1 - l2), l1 + l2
    outside = np.flatnonzero((distance > high * (1 + 1e-9)) | (distance < low * (1 - 1e-9)))
    if outside.size:
        i = int(outside[0])
        where = " after the shift to the start" if shift else ""
        raise InvalidValueError(
            key, movement.source, f": point {i} (x={xy[i, 0]:.3f}, y={xy[i, 1]:.3f} m{where}) is {distance[i]:.3f} m "
            f"from the shoulder; the arm reaches {low:.3f} to {high:.3f} m (scale it with {key}_scale=...)",
            shown=repr(movement.source))
    return inverse_kinematics(xy, arm.lengths, arm.start_angles)


def movement_episode(movement: Movement, family: ArmTrajectories, rate_hz: float | None = None, shift: bool = True,
                     scale: float = 1.0, key: str = "target") -> tuple[ArmEpisode, dict[str, float]]:
    """One task (B = 1) of ``family`` whose target is ``movement`` resampled to the trial (T = family.n_steps).

    Returns the episode (inputs the family's clock (1, T, n_clock); target (1, T, 2) endpoint; omega (1, T, 2);
    angles (1, T, 2)) and facts for the report: the movement's points, its duration in s (joint velocity; None
    for an endpoint path), the largest joint displacement from the start in rad and the largest |ω| in rad/s.
    """
    if not isinstance(family, ArmTrajectories):
        raise InvalidValueError(key, movement.source, f": a target needs an arm model; this one learns the "
                                f"{getattr(family, 'name', type(family).__name__)!r} task family",
                                shown=repr(movement.source))
    angles = movement_angles(movement, family, rate_hz, shift, scale, key)
    start = np.asarray(family.arm.start_angles, dtype=np.float64)
    n_steps = family.n_steps
    # θ^t for t = 0..T-1 at fractions (t + 1)/T of the movement; θ^{-1} is the arm's start posture (for an
    # unshifted path that starts elsewhere, the first step moves the arm onto the path)
    fractions = np.arange(1, n_steps + 1, dtype=np.float64) / n_steps
    resampled = _resample(angles, fractions)
    omega = np.diff(np.concatenate((start[None], resampled)), axis=0) / (family.dt / 1000.0)
    omega_t = torch.from_numpy(omega)[None]                                           # (1, T, 2) float64
    arm_angles = family.arm.integrate(omega_t, family.dt)
    target = family.arm.forward_kinematics(arm_angles)
    f32 = torch.float32
    episode = ArmEpisode(family.clock[None].clone(), target.to(f32), torch.ones(1, n_steps),
                         omega=omega_t.to(f32), angles=arm_angles.to(f32))
    facts = {"points": int(len(movement.values)),
             "duration_s": None if movement.kind == "endpoint"
             else len(movement.values) / _rate(family, rate_hz),
             "max_displacement_rad": float(np.abs(resampled - start).max()),
             "max_abs_omega_rad_s": float(np.abs(omega).max())}
    return episode, facts


__all__ = ["KINDS", "Movement", "example_targets", "inverse_kinematics", "movement_angles", "movement_episode",
           "read_movement"]
