"""Pattern generation (e-prop 1's regression task): map Poisson input spikes to a sum of sines.

Each task draws, per output channel, amplitudes a_k ~ U[amplitude_range] and phases φ_k ~
U[phase_range] for the fixed periods P_k, and the target
y*(t) = Σ_k a_k sin(2π·t·dt/P_k + φ_k), t = 0..T−1 (ms); with ``normalize`` it is shifted to start
at 0 and scaled to a peak |y*| of 1 (as in the reference). The input is Poisson noise:
``n_inputs`` neurons at ``input_rate_hz``. Reference (Bellec et al. 2020): 100 inputs at 50 Hz,
T = 1000 ms, periods 1000/500/333/200 ms, one frozen task (``task_seed``). Loss: MSE per task.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from matplotlib.figure import Figure

from l2l.tasks.base import Episode, TaskFamily, TaskLoss, new_figure, raster, require_range
from l2l.tasks.encoders import poisson_spikes
from l2l.validation import InvalidValueError, require_nonnegative, require_positive, require_size


@dataclass
class PatternEpisode(Episode):
    """inputs: Poisson spikes (B, T, n_inputs); target: (B, T, n_outputs); mask: ones (B, T);
    amplitudes, phases: the drawn sine parameters (B, n_outputs, n_sines)."""

    amplitudes: torch.Tensor | None = None
    phases: torch.Tensor | None = None


class PatternGeneration(TaskFamily):
    """Sum-of-sines targets from Poisson input (regression). Output (B, T, n_outputs), loss MSE per task."""

    name = "pattern"
    metric = "nmse"

    def __init__(
        self,
        n_inputs: int = 100,
        n_outputs: int = 1,
        n_steps: int = 1000,
        dt: float = 1.0,
        input_rate_hz: float = 50.0,
        periods_ms: Sequence[float] = (1000.0, 500.0, 333.0, 200.0),
        amplitude_range: Sequence[float] = (0.5, 2.0),
        phase_range: Sequence[float] = (0.0, 2 * math.pi),
        normalize: bool = True,
        task_seed: int | None = None,
    ) -> None:
        super().__init__(task_seed)
        require_size("n_inputs", n_inputs)
        require_size("n_outputs", n_outputs)
        require_size("n_steps", n_steps)
        require_positive("dt", dt)
        require_nonnegative("input_rate_hz", input_rate_hz)
        if input_rate_hz * dt / 1000.0 > 1.0:
            raise InvalidValueError("input_rate_hz", input_rate_hz, f" with dt={dt}: at most {1000 / dt:g} Hz")
        periods = tuple(periods_ms)
        if not periods:
            raise InvalidValueError("periods_ms", (), ": give at least one period")
        for k, p in enumerate(periods):
            require_positive(f"periods_ms[{k}]", p)
        self.n_inputs, self.n_outputs, self.n_steps, self.dt = n_inputs, n_outputs, n_steps, dt
        self.input_rate_hz, self.periods_ms, self.normalize = input_rate_hz, tuple(map(float, periods)), normalize
        self.amplitude_range = require_range("amplitude_range", amplitude_range)
        self.phase_range = require_range("phase_range", phase_range)

    def _sample(self, batch_size: int, generator: torch.Generator | None) -> PatternEpisode:
        shape = (batch_size, self.n_outputs, len(self.periods_ms))
        (a0, a1), (p0, p1) = self.amplitude_range, self.phase_range
        amplitudes = a0 + (a1 - a0) * torch.rand(shape, generator=generator, dtype=torch.float64)
        phases = p0 + (p1 - p0) * torch.rand(shape, generator=generator, dtype=torch.float64)
        time_ms = torch.arange(self.n_steps, dtype=torch.float64).view(1, -1, 1, 1) * self.dt      # (1, T, 1, 1)
        periods = torch.tensor(self.periods_ms, dtype=torch.float64)                              # (K,)
        sines = amplitudes[:, None] * torch.sin(2 * math.pi * time_ms / periods + phases[:, None])
        target = sines.sum(-1)                                                                    # (B, T, n_out)
        if self.normalize:
            target = target - target[:, :1]
            peak = target.abs().amax(dim=1, keepdim=True)
            target = target / peak.clamp(min=1e-12)
        rates = torch.full((batch_size, self.n_steps, self.n_inputs), self.input_rate_hz)
        inputs = poisson_spikes(rates, self.dt, generator)
        return PatternEpisode(inputs, target.float(), torch.ones(batch_size, self.n_steps),
                              amplitudes=amplitudes.float(), phases=phases.float())

    def loss(self, output: torch.Tensor, episode: Episode) -> TaskLoss:
        """MSE over time and outputs per task; metric ``nmse`` = MSE / variance of the target."""
        self.check_output(output, episode)
        target = episode.target.to(output)
        mse = ((output - target) ** 2).mean(dim=(1, 2))
        variance = target.var(dim=1, unbiased=False).mean(-1).clamp(min=1e-12)
        return TaskLoss(mse, {"mse": mse.detach(), "nmse": (mse / variance).detach()})

    def chunk_loss(self, output: torch.Tensor, episode: Episode, steps: slice) -> torch.Tensor:
        """The mean over tasks of the MSE's share of ``steps``: Σ_chunks equals ``loss(...).mean``."""
        target = episode.target[:, steps].to(output)
        return ((output - target) ** 2).sum() / (episode.target.shape[1] * target.shape[-1] * target.shape[0])

    def plot(self, episode: Episode, output: torch.Tensor | None = None, index: int = 0) -> Figure:
        """Input raster and, per output channel, target (dashed) vs produced output."""
        fig, axes = new_figure(1 + self.n_outputs)
        raster(axes[0], episode.inputs[index].detach().cpu())
        axes[0].set_ylabel("input")
        t = torch.arange(episode.n_steps) * self.dt
        for k in range(self.n_outputs):
            ax = axes[1 + k]
            ax.plot(t, episode.target[index, :, k].detach().cpu(), "--", color="C0", label="target")
            if output is not None:
                ax.plot(t, output[index, :, k].detach().cpu(), color="C1", label="output")
            ax.set_ylabel(f"y{k}")
        axes[1].legend(fontsize=7, loc="upper right")
        axes[-1].set_xlabel("time (ms)")
        return fig
