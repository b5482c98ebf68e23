"""Two-joint arm: kinematics and the random-movement family of the e-prop 2 reference protocol.

Kinematics. Joint angles θ = (θ1, θ2): θ1 the shoulder angle against the x axis, θ2 the elbow
angle relative to the upper arm. Segment 1 points along φ1 = θ1, segment 2 along φ2 = θ1 + θ2, and
the endpoint is x = l1 cos φ1 + l2 cos φ2, y = l1 sin φ1 + l2 sin φ2. Joint velocities ω (rad/s)
are integrated to angles θ^t = θ^0 + Σ_{t'≤t} ω^{t'}·dt/1000 (dt in ms). Reference: l1 = l2 = 0.5,
θ^0 = (0, π/2), so the arm starts at (0.5, 0.5).

Movements (reference protocol). With s = linspace(0, 2π, T):
ω1(s) = Σ_k A_k sin(s/p_k + φ_k), A_k ~ U[0, 30], p_k ~ U[0.3, 1], φ_k ~ U[0, 2π];
ω2(s) = Σ_k 20·g_k(s)/ptp(g_k), g_k = A'_k sin(s/p'_k + φ'_k), A'_k ~ U[0, 1.5] (each elbow sine
normalized to a peak-to-peak range of 20 rad/s, so A'_k only matters through its sign, as in the
reference). Each joint's displacement Δθ_i = Σ ω_i·dt/1000 is scaled down (with ω_i) when it leaves
±π/2 so that max_t |Δθ_i| = π/2. The target is the endpoint of the resulting angles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from matplotlib.figure import Figure

from l2l.tasks.base import Episode, TaskFamily, TaskLoss, require_pair, require_range
from l2l.tasks.encoders import clock_input
from l2l.validation import InvalidValueError, require_nonnegative, require_positive, require_size


class TwoJointArm:
    """Planar two-joint arm with segment ``lengths`` (l1, l2) > 0 and start angles ``start_angles`` (θ1, θ2)."""

    def __init__(
        self, lengths: Sequence[float] = (0.5, 0.5), start_angles: Sequence[float] = (0.0, math.pi / 2)
    ) -> None:
        l1, l2 = require_pair("lengths", lengths)
        require_positive("lengths[0]", l1)
        require_positive("lengths[1]", l2)
        self.lengths = (l1, l2)
        self.start_angles = require_pair("start_angles", start_angles)

    @property
    def reach(self) -> float:
        """l1 + l2: no endpoint is farther from the shoulder."""
        return self.lengths[0] + self.lengths[1]

    def forward_kinematics(self, angles: torch.Tensor) -> torch.Tensor:
        """Endpoint (..., 2) = (x, y) of joint angles (..., 2) = (θ1, θ2), θ2 relative to the upper arm."""
        if angles.shape[-1] != 2:
            raise ValueError(f"angles has shape {tuple(angles.shape)}: the last dimension must be 2 (θ1, θ2)")
        phi1 = angles[..., 0]
        phi2 = angles[..., 0] + angles[..., 1]
        l1, l2 = self.lengths
        x = l1 * torch.cos(phi1) + l2 * torch.cos(phi2)
        y = l1 * torch.sin(phi1) + l2 * torch.sin(phi2)
        return torch.stack((x, y), dim=-1)

    def start_position(self) -> torch.Tensor:
        """Endpoint (2,) at the start angles (float64)."""
        return self.forward_kinematics(torch.tensor(self.start_angles, dtype=torch.float64))

    def integrate(self, omega: torch.Tensor, dt: float = 1.0) -> torch.Tensor:
        """Joint angles (B, T, 2) from joint velocities ω (B, T, 2) in rad/s; dt in ms (θ^t includes ω^t)."""
        require_positive("dt", dt)
        start = torch.tensor(self.start_angles, dtype=omega.dtype, device=omega.device)
        return start + torch.cumsum(omega, dim=-2) * (dt / 1000.0)

    def endpoint(self, omega: torch.Tensor, dt: float = 1.0) -> torch.Tensor:
        """Endpoint trajectory (B, T, 2) produced by joint velocities ω (B, T, 2) (rad/s)."""
        return self.forward_kinematics(self.integrate(omega, dt))


@dataclass
class ArmEpisode(Episode):
    """inputs: the clock (B, T, n_clock); target: endpoint (B, T, 2); mask: ones (B, T);
    omega: target joint velocities (B, T, 2) in rad/s; angles: target joint angles (B, T, 2)."""

    omega: torch.Tensor | None = None
    angles: torch.Tensor | None = None


class ArmTrajectories(TaskFamily):
    """Random arm movements to reproduce from the clock input (the e-prop 2 task family).

    The network output is the motor command ω (B, T, 2) in rad/s; the loss integrates it through the
    arm: 0.5·(omega_weight·MSE(ω, ω*) + MSE(xy, xy*)) per task (reference: omega_weight = 0.1), with
    ``mse_xy`` and ``mse_omega`` reported as metrics. Every range is a parameter; defaults are the
    reference's (T = 500 steps of 1 ms, 5 sines, clock of 5 groups × 2 neurons).
    """

    name = "arm"
    metric = "mse_xy"

    def __init__(
        self,
        n_steps: int = 500,
        dt: float = 1.0,
        lengths: Sequence[float] = (0.5, 0.5),
        start_angles: Sequence[float] = (0.0, math.pi / 2),
        n_sines: int = 5,
        period_range: Sequence[float] = (0.3, 1.0),
        phase_range: Sequence[float] = (0.0, 2 * math.pi),
        shoulder_amplitude_range: Sequence[float] = (0.0, 30.0),
        elbow_amplitude_range: Sequence[float] = (0.0, 1.5),
        elbow_peak_to_peak: float | None = 20.0,
        angle_limit: float = math.pi / 2,
        clock_groups: int = 5,
        clock_neurons_per_group: int = 2,
        clock_spike_every: int = 10,
        omega_weight: float = 0.1,
        task_seed: int | None = None,
    ) -> None:
        super().__init__(task_seed)
        require_size("n_steps", n_steps)
        require_positive("dt", dt)
        require_size("n_sines", n_sines)
        require_positive("angle_limit", angle_limit)
        require_nonnegative("omega_weight", omega_weight)
        if elbow_peak_to_peak is not None:
            require_positive("elbow_peak_to_peak", elbow_peak_to_peak)
        require_size("clock_groups", clock_groups)
        require_size("clock_neurons_per_group", clock_neurons_per_group)
        require_size("clock_spike_every", clock_spike_every)
        if n_steps % clock_groups != 0:
            raise InvalidValueError(
                "n_steps", n_steps, f": the clock cuts the trial into clock_groups={clock_groups} equal "
                f"segments, so n_steps must be a multiple of {clock_groups}"
            )
        self.arm = TwoJointArm(lengths, start_angles)
        self.n_steps, self.dt, self.n_sines = n_steps, dt, n_sines
        self.period_range = require_range("period_range", period_range, minimum=0.0, strict=True)
        self.phase_range = require_range("phase_range", phase_range)
        self.shoulder_amplitude_range = require_range("shoulder_amplitude_range", shoulder_amplitude_range, minimum=0.0)
        self.elbow_amplitude_range = require_range("elbow_amplitude_range", elbow_amplitude_range, minimum=0.0)
        self.elbow_peak_to_peak = elbow_peak_to_peak
        self.angle_limit, self.omega_weight = angle_limit, omega_weight
        self.clock = clock_input(n_steps, clock_groups, clock_neurons_per_group, clock_spike_every)  # (T, n_clock)
        self.n_inputs, self.n_outputs = self.clock.shape[1], 2

    def _uniform(self, shape: tuple[int, ...], bounds: tuple[float, float], g: torch.Generator | None) -> torch.Tensor:
        low, high = bounds
        return low + (high - low) * torch.rand(shape, generator=g, dtype=torch.float64)

    def _sines(self, batch: int, amplitude: tuple[float, float], g: torch.Generator | None) -> torch.Tensor:
        """Each sine A_k sin(s/p_k + φ_k) over s = linspace(0, 2π, T): (B, T, n_sines), float64."""
        shape = (batch, 1, self.n_sines)
        periods = self._uniform(shape, self.period_range, g)
        phases = self._uniform(shape, self.phase_range, g)
        amplitudes = self._uniform(shape, amplitude, g)
        s = torch.linspace(0.0, 2 * math.pi, self.n_steps, dtype=torch.float64).view(1, -1, 1)
        return amplitudes * torch.sin(s / periods + phases)

    def _limit(self, omega: torch.Tensor) -> torch.Tensor:
        """Scale each task's ω (B, T) so that its displacement stays within ±angle_limit."""
        displacement = torch.cumsum(omega, dim=1) * (self.dt / 1000.0)
        peak = displacement.abs().amax(dim=1, keepdim=True)
        scale = torch.where(peak > self.angle_limit, self.angle_limit / peak.clamp(min=1e-300), torch.ones_like(peak))
        return omega * scale

    def _sample(self, batch_size: int, generator: torch.Generator | None) -> ArmEpisode:
        shoulder = self._sines(batch_size, self.shoulder_amplitude_range, generator).sum(-1)     # (B, T)
        elbow_sines = self._sines(batch_size, self.elbow_amplitude_range, generator)           # (B, T, K)
        if self.elbow_peak_to_peak is not None:
            ptp = elbow_sines.amax(dim=1, keepdim=True) - elbow_sines.amin(dim=1, keepdim=True)
            elbow_sines = torch.where(ptp > 0, elbow_sines / ptp.clamp(min=1e-300), torch.zeros_like(elbow_sines))
            elbow_sines = elbow_sines * self.elbow_peak_to_peak
        elbow = elbow_sines.sum(-1)
        omega = torch.stack((self._limit(shoulder), self._limit(elbow)), dim=-1)              # (B, T, 2)
        angles = self.arm.integrate(omega, self.dt)
        target = self.arm.forward_kinematics(angles)
        inputs = self.clock.expand(batch_size, -1, -1)
        f32 = torch.float32
        return ArmEpisode(inputs.clone(), target.to(f32), torch.ones(batch_size, self.n_steps),
                          omega=omega.to(f32), angles=angles.to(f32))

    def loss(self, output: torch.Tensor, episode: ArmEpisode) -> TaskLoss:
        """0.5·(omega_weight·MSE(ω, ω*) + MSE(xy, xy*)) per task; output ω (B, T, 2) in rad/s."""
        self.check_output(output, episode)
        xy = self.arm.endpoint(output, self.dt)
        mse_xy = ((xy - episode.target.to(xy)) ** 2).mean(dim=(1, 2))
        mse_omega = ((output - episode.omega.to(output)) ** 2).mean(dim=(1, 2))
        per_task = 0.5 * (self.omega_weight * mse_omega + mse_xy)
        return TaskLoss(per_task, {"mse_xy": mse_xy.detach(), "mse_omega": mse_omega.detach()})

    def plot(self, episode: ArmEpisode, output: torch.Tensor | None = None, index: int = 0) -> Figure:
        """Endpoint path in the plane, x(t), y(t) and ω(t): target dashed, produced solid."""
        fig = Figure(figsize=(9.0, 4.2), layout="constrained")
        grid = fig.add_gridspec(3, 2, width_ratios=(1.0, 1.4))
        ax_xy = fig.add_subplot(grid[:, 0])
        axes = [fig.add_subplot(grid[i, 1]) for i in range(3)]
        target = episode.target[index].detach().cpu()
        t = torch.arange(episode.n_steps) * self.dt
        ax_xy.plot(target[:, 0], target[:, 1], "--", color="C0", label="target")
        start = self.arm.start_position()
        ax_xy.plot([0.0], [0.0], "ks", ms=4)
        ax_xy.plot([float(start[0])], [float(start[1])], "o", color="gray", ms=4, label="start")
        produced = None
        if output is not None:
            omega = output[index : index + 1].detach().cpu().to(torch.float64)
            produced = self.arm.endpoint(omega, self.dt)[0]
            ax_xy.plot(produced[:, 0], produced[:, 1], color="C1", label="produced")
        reach = self.arm.reach * 1.05
        ax_xy.set(xlim=(-reach, reach), ylim=(-reach, reach), aspect="equal", xlabel="x (m)", ylabel="y (m)",
                  title=f"task {index}: endpoint")
        ax_xy.title.set_fontsize(8)
        ax_xy.legend(fontsize=7, loc="lower left")
        for i, label in enumerate(("x (m)", "y (m)")):
            axes[i].plot(t, target[:, i], "--", color="C0")
            if produced is not None:
                axes[i].plot(t, produced[:, i], color="C1")
            axes[i].set_ylabel(label)
        omega_target = episode.omega[index].detach().cpu()
        for j in range(2):
            axes[2].plot(t, omega_target[:, j], "--", color=f"C{2 + j}", label=f"ω{j + 1}* (target)")
            if output is not None:
                axes[2].plot(t, output[index, :, j].detach().cpu(), color=f"C{2 + j}", label=f"ω{j + 1}")
        axes[2].set(ylabel="ω (rad/s)", xlabel="time (ms)")
        # below the axes, so that it never hides the traces
        axes[2].legend(fontsize=6, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.45), frameon=False)
        return fig


__all__ = ["ArmEpisode", "ArmTrajectories", "TwoJointArm"]
