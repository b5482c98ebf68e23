"""Demonstration figures of one-shot arm learning: what the learner, the error module and the update do.

For one batch of arm tasks and the meta-learner's result on it
(:func:`l2l.outer_loop.algorithm.evaluation.one_shot_step`):

- :func:`demo_figure`: one column per task, five rows: (a) the endpoint path in the plane (target, before
  the update = the demonstration trial, after one e-prop update = the test trial), (b) the joint
  velocities ω1, ω2 over time, (c) the learner's spike raster during the demonstration, (d) the error
  module's spike raster, (e) the learning signals of a few learner neurons.
- :func:`arm_animation`: a GIF of the two-link arm moving, before and after the update side by side.
- :func:`arm_geometry`: elbow and endpoint positions (..., T, 2) from joint velocities ω (..., T, 2),
  integrated exactly as the task integrates them (``TwoJointArm.integrate``).

The learner's output is the motor command ω (rad/s); positions are in m, time in ms (step·dt).
Everything is drawn pyplot-free on :class:`matplotlib.figure.Figure` with an Agg canvas (no global backend
switch, no pyplot state).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from matplotlib.animation import PillowWriter
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from l2l.outer_loop.algorithm.meta import MetaLearner, MetaStep
from l2l.tasks.arm import TwoJointArm
from l2l.tasks.base import Episode

# the conventions of l2l.outer_loop.algorithm.evaluation.one_shot_figure
COLORS = {"target": "C0", "before": "C1", "after": "C2"}
LABELS = {"target": "target", "before": "before update (demo)", "after": "after one e-prop update (test)"}
MAX_RASTER_NEURONS = 100
N_SIGNAL_NEURONS = 5
SIGNAL_COLORS = ("C3", "C4", "C5", "C6", "C8")   # distinct from the target/before/after colors and gray


def arm_geometry(arm: TwoJointArm, omega: torch.Tensor, dt: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Elbow and endpoint positions (..., T, 2) in m of the arm driven by joint velocities ω (..., T, 2) in rad/s.

    The angles are ``arm.integrate(ω, dt)`` (dt in ms), as the task computes them; the elbow is the end of
    the first link, l1·(cos θ1, sin θ1), the endpoint ``arm.forward_kinematics`` of the angles. The shoulder
    is at the origin.
    """
    if omega.dim() < 2 or omega.shape[-1] != 2:
        raise ValueError(f"omega has shape {tuple(omega.shape)}: expected (..., T, 2) joint velocities")
    squeeze = omega.dim() == 2
    batch = omega.unsqueeze(0) if squeeze else omega.reshape(-1, *omega.shape[-2:])
    angles = arm.integrate(batch, dt)                                              # (B, T, 2)
    theta1 = angles[..., 0]
    elbow = arm.lengths[0] * torch.stack((torch.cos(theta1), torch.sin(theta1)), dim=-1)
    hand = arm.forward_kinematics(angles)
    shape = omega.shape
    if squeeze:
        return elbow[0], hand[0]
    return elbow.reshape(shape), hand.reshape(shape)


def demo_figure(meta: MetaLearner, episode: Episode, step: MetaStep, tasks: Sequence[int], title: str = "") -> Figure:
    """The one-shot demonstration of ``tasks`` (indices into the batch), one column each, five rows.

    episode: the batch (target (B, T, 2) in m, omega (B, T, 2) in rad/s); step: the meta-learner's result on
    it (``step.adaptation.demo.output`` and ``step.test_output`` (B, T, 2) the command ω before and after
    the update; ``step.per_task`` the metric per task). Rows: (a) endpoint paths, (b) ω over time,
    (c) learner spikes (top layer, ≤ 100 neurons) and (d) error-module spikes (top layer) during the
    demonstration, (e) the learning signals of the 5 top-layer learner neurons with the largest RMS
    signal. Returns a Figure of 5 × len(tasks) axes with a shared legend.
    """
    arm = _arm(meta)
    chosen = _check_tasks(tasks, episode.batch_size)
    _check_step(step)
    family, adaptation = meta.family, step.adaptation
    dt, spike_dt = float(family.dt), float(meta.learner.readout.dt)
    target = episode.target.detach().cpu().to(torch.float64)
    omega = {"target": episode.omega.detach().cpu().to(torch.float64),
             "before": adaptation.demo.output.detach().cpu().to(torch.float64),
             "after": step.test_output.detach().cpu().to(torch.float64)}
    xy = {"target": target,
          "before": arm_geometry(arm, omega["before"], dt)[1],
          "after": arm_geometry(arm, omega["after"], dt)[1]}
    mse_before = step.per_task["demo_mse"].detach().cpu()
    mse_after = step.per_task["test_mse"].detach().cpu()
    t = torch.arange(episode.n_steps, dtype=torch.float64) * dt
    learner_z = adaptation.demo.layers[-1].z.detach().cpu()                   # (B, T, n)
    error_trial = adaptation.error_trial                                    # None: a control told the true error
    error_z = error_trial.layers[-1].z.detach().cpu() if error_trial is not None else None   # (B, T, n_em)
    top_signal = adaptation.signals[-1]
    signals = top_signal.detach().cpu() if top_signal is not None else None  # (B, T, n) or None
    start = arm.start_position()
    reach = arm.reach * 1.05

    n = len(chosen)
    fig = Figure(figsize=(4.0 * n, 15.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    grid = fig.add_gridspec(5, n, height_ratios=(3.6, 2.0, 2.3, 2.3, 2.0))
    for col, i in enumerate(chosen):
        ax_xy = fig.add_subplot(grid[0, col])
        for key in ("target", "before", "after"):
            ax_xy.plot(xy[key][i, :, 0], xy[key][i, :, 1], **_style(key))
        ax_xy.plot([0.0], [0.0], "ks", ms=5)
        ax_xy.plot([float(start[0])], [float(start[1])], "o", color="gray", ms=6)
        limits = _square_limits(torch.cat([xy[key][i] for key in xy] + [start.view(1, 2)]), reach)
        ax_xy.set(xlim=limits[0], ylim=limits[1], aspect="equal", xlabel="x (m)", ylabel="y (m)")
        ax_xy.set_title(f"(a) task {i}: {family.metric} {float(mse_before[i]):.3g} → {float(mse_after[i]):.3g}",
                        fontsize=9)

        ax_w = fig.add_subplot(grid[1, col])
        for key in ("target", "before", "after"):
            for j, ls in enumerate(("-", ":")):
                ax_w.plot(t, omega[key][i, :, j], **{**_style(key), "ls": ls})
        ax_w.set(xlabel="time (ms)", ylabel="ω (rad/s)", xlim=(0.0, float(t[-1])))
        ax_w.set_title("(b) joint velocities ω1 (solid), ω2 (dotted)", fontsize=9)

        _raster(fig.add_subplot(grid[2, col]), learner_z[i], dt, spike_dt, "(c) learner (top layer), demo")
        ax_e = fig.add_subplot(grid[3, col])
        if error_z is not None:
            _raster(ax_e, error_z[i], dt, spike_dt, "(d) error module (top layer)")
        else:
            ax_e.text(0.5, 0.5, f"no error module: inner.backend={meta.inner.backend}\n(told the true error)",
                      ha="center", va="center", transform=ax_e.transAxes)
            ax_e.set_title("(d) error module", fontsize=9)
            ax_e.set_axis_off()

        ax_l = fig.add_subplot(grid[4, col])
        _signals(ax_l, None if signals is None else signals[i], dt)
    fig.legend(handles=_legend_handles(), loc="outside lower center", ncol=7, fontsize=9, frameon=False)
    if title:
        fig.suptitle(title, fontsize=12)
    return fig


def arm_animation(
    meta: MetaLearner,
    episode: Episode,
    step: MetaStep,
    task: int,
    path: str | Path,
    fps: int = 25,
    frames: int = 50,
) -> Path:
    """An animated GIF of the arm of task ``task`` moving: before the update (left) and after one e-prop
    update (right), each with the target endpoint path (dashed), the two links from the shoulder and the
    endpoint's trail so far. ``frames`` (≤ T) time steps evenly spaced from the first to the last are
    shown at ``fps`` frames per second (8 × 4 in at 70 dpi). Returns ``path``.
    """
    if not isinstance(fps, int) or fps < 1:
        raise ValueError(f"fps={fps!r} is not allowed: it must be an integer >= 1")
    fig, update, count = arm_animation_frames(meta, episode, step, task, frames)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = PillowWriter(fps=fps)
    with writer.saving(fig, str(path), dpi=70):
        for k in range(count):
            update(k)
            writer.grab_frame()
    return path


def arm_animation_frames(
    meta: MetaLearner, episode: Episode, step: MetaStep, task: int, frames: int = 50
) -> tuple[Figure, Callable[[int], dict[str, torch.Tensor]], int]:
    """The figure of :func:`arm_animation`, its update function and the number of frames.

    ``update(k)`` draws frame k (0 ≤ k < frames) and returns, per panel ("before", "after"), the arm
    (3, 2) it draws: shoulder, elbow and endpoint positions in m.
    """
    arm = _arm(meta)
    (task,) = _check_tasks([task], episode.batch_size, name="task")
    _check_step(step)
    n_steps = episode.n_steps
    if not isinstance(frames, int) or frames < 1:
        raise ValueError(f"frames={frames!r} is not allowed: it must be an integer >= 1")
    if frames > n_steps:
        raise ValueError(f"frames={frames} is not allowed: the trial has only T={n_steps} steps to show")
    family = meta.family
    dt = float(family.dt)
    indices = torch.linspace(0, n_steps - 1, frames, dtype=torch.float64).round().long().tolist()
    target = episode.target[task].detach().cpu().to(torch.float64)
    commands = {"before": step.adaptation.demo.output[task], "after": step.test_output[task]}
    mse = {"before": float(step.per_task["demo_mse"][task]), "after": float(step.per_task["test_mse"][task])}
    titles = {"before": "before the update", "after": "after one e-prop update"}
    reach = arm.reach * 1.05
    start = arm.start_position()

    fig = Figure(figsize=(8.0, 4.0), dpi=70)   # fixed margins, no layout engine: one draw per frame
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, gridspec_kw={"left": 0.08, "right": 0.98, "bottom": 0.12, "top": 0.86, "wspace": 0.2})
    panels = {}
    for ax, key in zip(axes, ("before", "after"), strict=True):
        elbow, hand = arm_geometry(arm, commands[key].detach().cpu().to(torch.float64), dt)   # (T, 2) each
        ax.plot(target[:, 0], target[:, 1], "--", color=COLORS["target"], lw=1.2, label="target path")
        (trail,) = ax.plot([], [], color=COLORS[key], lw=1.5, label="endpoint trail")
        (links,) = ax.plot([], [], "-o", color="k", lw=3, ms=5, label="arm")
        ax.plot([0.0], [0.0], "ks", ms=6)
        ax.plot([float(start[0])], [float(start[1])], "o", color="gray", ms=5, label="start")
        ax.set(xlim=(-reach, reach), ylim=(-reach, reach), aspect="equal", xlabel="x (m)", ylabel="y (m)")
        ax.set_title(f"task {task}, {titles[key]}\n{family.metric} = {mse[key]:.3g}", fontsize=10)
        ax.legend(fontsize=7, loc="lower left")
        clock = ax.text(0.98, 0.97, "", transform=ax.transAxes, ha="right", va="top", fontsize=9)
        panels[key] = (elbow, hand, trail, links, clock)

    def update(k: int) -> dict[str, torch.Tensor]:
        s = indices[k]
        drawn = {}
        for key, (elbow, hand, trail, links, clock) in panels.items():
            arm_points = torch.stack((torch.zeros(2, dtype=hand.dtype), elbow[s], hand[s]))   # (3, 2)
            links.set_data(arm_points[:, 0].tolist(), arm_points[:, 1].tolist())
            trail.set_data(hand[: s + 1, 0].tolist(), hand[: s + 1, 1].tolist())
            clock.set_text(f"t = {s * dt:.0f} ms")
            drawn[key] = arm_points
        return drawn

    return fig, update, frames


def _arm(meta: MetaLearner) -> TwoJointArm:
    arm = getattr(meta.family, "arm", None)
    if not isinstance(arm, TwoJointArm):
        raise ValueError(f"meta: the demo figures draw a two-joint arm; the family {meta.family.name!r} has none")
    return arm


def _check_tasks(tasks: Sequence[int], batch: int, name: str = "tasks") -> list[int]:
    """The task indices as ints, each in [0, batch); ValueError naming ``name`` otherwise."""
    chosen = list(tasks)
    if not chosen:
        raise ValueError(f"{name}=[] is not allowed: give at least one task index")
    indices = []
    for i in chosen:
        try:
            if isinstance(i, bool):
                raise TypeError
            index = operator.index(i)
        except TypeError:
            raise ValueError(f"{name} contains {i!r}: task indices must be integers") from None
        if not 0 <= index < batch:
            raise ValueError(f"{name} contains {index}: out of range for a batch of B={batch} tasks (0..{batch - 1})")
        indices.append(index)
    return indices


def _check_step(step: MetaStep) -> None:
    if step.adaptation is None or step.test_output is None:
        raise ValueError("step has no adaptation or test_output: pass the MetaStep of one_shot_step(meta, ...)")
    missing = {"demo_mse", "test_mse"} - set(step.per_task)
    if missing:
        raise ValueError(f"step.per_task lacks {sorted(missing)}: pass the MetaStep of one_shot_step(meta, ...)")


def _square_limits(points: torch.Tensor, reach: float, min_side: float = 0.4) -> tuple[tuple[float, float], ...]:
    """Equal x and y ranges around points (N, 2) with a 10 % margin, at least ``min_side`` m wide,
    clipped to the arm's reach box [-reach, reach]²."""
    finite = points[points.isfinite().all(-1)]
    if finite.numel() == 0:
        return (-reach, reach), (-reach, reach)
    low, high = finite.amin(0), finite.amax(0)
    center = (low + high) / 2
    side = min(max(float((high - low).max()) * 1.1, min_side), 2 * reach)
    limits = []
    for c in center.tolist():
        lo = min(max(c - side / 2, -reach), reach - side)
        limits.append((lo, lo + side))
    return tuple(limits)


def _style(key: str) -> dict:
    """Line style per curve: the target a broad translucent line (so that it shows under the others)."""
    if key == "target":
        return {"color": COLORS[key], "lw": 3.0, "alpha": 0.45}
    return {"color": COLORS[key], "lw": 1.2}


def _raster(ax: Axes, z: torch.Tensor, dt: float, spike_dt: float, label: str) -> None:
    """Spike raster of z (T, n) (≤ 100 evenly spaced neurons shown) with the mean rate (all neurons) in Hz."""
    n_steps, n = z.shape
    shown = torch.linspace(0, n - 1, min(n, MAX_RASTER_NEURONS)).round().long().unique()
    steps, rows = torch.nonzero(z[:, shown] > 0, as_tuple=True)
    rate = float(z.float().mean()) * 1000.0 / spike_dt
    ax.plot((steps.to(torch.float64) * dt).tolist(), rows.tolist(), "|", color="k", ms=2.5, mew=0.6)
    ax.set(xlim=(0.0, (n_steps - 1) * dt), ylim=(-0.5, len(shown) - 0.5), xlabel="time (ms)",
           ylabel=f"neuron ({len(shown)} of {n})")
    ax.set_title(f"{label}: {rate:.1f} Hz", fontsize=9)


def _signals(ax: Axes, signals: torch.Tensor | None, dt: float) -> None:
    """Learning signals (T, n) of the N_SIGNAL_NEURONS neurons with the largest RMS, or a note if None."""
    ax.set(xlabel="time (ms)", ylabel="learning signal L (a.u.)")
    if signals is None:
        ax.text(0.5, 0.5, "no learning signal for the top layer", ha="center", va="center", transform=ax.transAxes)
        ax.set_title("(e) learning signals", fontsize=9)
        return
    n_steps, n = signals.shape
    t = torch.arange(n_steps, dtype=torch.float64) * dt
    rms = signals.to(torch.float64).pow(2).mean(0).sqrt()
    top = torch.argsort(rms, descending=True)[: min(N_SIGNAL_NEURONS, n)].tolist()
    for rank, j in enumerate(top):
        ax.plot(t.tolist(), signals[:, j].tolist(), lw=1.0, color=SIGNAL_COLORS[rank], label=f"neuron {j}")
    ax.axhline(0.0, color="gray", lw=0.5)
    ax.set_xlim(0.0, float(t[-1]))
    ax.legend(fontsize=6, ncol=min(len(top), 3), loc="best", framealpha=0.6)
    ax.set_title(f"(e) learning signals, {len(top)} of {n} neurons (largest RMS)", fontsize=9)


def _legend_handles() -> list[Line2D]:
    handles = [Line2D([], [], label=LABELS[key], **_style(key)) for key in ("target", "before", "after")]
    handles += [Line2D([], [], color="gray", ls="-", label="ω1 (shoulder)"),
                Line2D([], [], color="gray", ls=":", label="ω2 (elbow)"),
                Line2D([], [], marker="o", color="gray", ls="", label="start"),
                Line2D([], [], marker="s", color="k", ls="", label="shoulder (0, 0)")]
    return handles


__all__ = ["arm_animation", "arm_animation_frames", "arm_geometry", "demo_figure"]
