"""Input encoders: the clock of the arm protocol, Poisson spike trains, population-rate coding.

Rates are in Hz and time steps in ms (``dt``), so a neuron firing at ``r`` Hz spikes in a step with
probability r·dt/1000 (Bernoulli spikes, at most one per step).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from l2l.native import random_ops
from l2l.validation import InvalidValueError, require_positive, require_size


def clock_input(n_steps: int, n_groups: int = 5, neurons_per_group: int = 2, spike_every: int = 10) -> torch.Tensor:
    """The clock of the arm protocol: (T, n_groups·neurons_per_group) spikes, the same for every task.

    The trial is cut into ``n_groups`` equal segments; during segment i the ``neurons_per_group``
    neurons of group i spike together every ``spike_every`` steps, starting at the segment's first
    step, and every other neuron is silent. Reference: T = 500, 5 groups of 2, a spike every 10 ms.
    """
    require_size("n_steps", n_steps)
    require_size("n_groups", n_groups)
    require_size("neurons_per_group", neurons_per_group)
    require_size("spike_every", spike_every)
    if n_steps % n_groups != 0:
        raise InvalidValueError(
            "n_steps", n_steps, f": the clock cuts the trial into n_groups={n_groups} equal "
            f"segments, so n_steps must be a multiple of {n_groups}"
        )
    segment = n_steps // n_groups
    step = torch.arange(n_steps)
    group_of_step = step // segment                                   # (T,)
    fires = (step % segment) % spike_every == 0                       # (T,)
    group_of_neuron = torch.arange(n_groups * neurons_per_group) // neurons_per_group   # (n,)
    return ((group_of_step[:, None] == group_of_neuron[None, :]) & fires[:, None]).float()


def poisson_spikes(rates_hz: torch.Tensor, dt: float = 1.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Bernoulli spikes with probability rate·dt/1000 per step. rates_hz (...) -> spikes (...) in {0, 1}.

    Raise ValueError if a rate is negative or gives a probability above 1 per step.
    """
    require_positive("dt", dt)
    if not torch.isfinite(rates_hz).all() or (rates_hz < 0).any():
        raise ValueError("rates_hz has negative or non-finite entries: rates must be finite numbers >= 0 (Hz)")
    p = rates_hz * dt / 1000.0
    if (p > 1).any():
        raise ValueError(
            f"rates_hz up to {float(rates_hz.max()):g} Hz with dt={dt} ms give a spike probability above 1 per step: "
            f"rates must be <= {1000.0 / dt:g} Hz"
        )
    return _bernoulli(p, generator)


def _bernoulli(p: torch.Tensor, generator: torch.Generator | None, out: torch.Tensor | None = None) -> torch.Tensor:
    """1 with probability p, else 0 (p already checked), one uniform draw per entry; written into ``out`` (p's
    shape, the draws' dtype) when given. The numbers are those of ``torch.rand(p.shape, generator) < p``; on the
    CPU, for float32 and float64, the C++ kernel draws the same ones about 7x faster (when it is built)."""
    kernel = _bernoulli_kernel(p, generator, out)
    if kernel is not None:
        return kernel.bernoulli_below_(out if out is not None else torch.empty_like(p), p.detach(), generator)
    u = torch.rand(p.shape, generator=generator, dtype=p.dtype if p.is_floating_point() else torch.float32)
    if out is None:
        return (u < p).to(u.dtype)
    return torch.lt(u, p, out=out)


def _bernoulli_kernel(p: torch.Tensor, generator: torch.Generator | None, out: torch.Tensor | None) -> Any | None:
    """The C++ Bernoulli operators when they apply here (CPU float32/float64 p and generator, an ``out`` of p's
    shape and dtype, any dense layout), else None."""
    if p.device.type != "cpu" or p.dtype not in (torch.float32, torch.float64):
        return None
    if generator is not None and generator.device.type != "cpu":
        return None
    if out is not None and (out.dtype != p.dtype or out.shape != p.shape or not _dense(out)):
        return None
    return random_ops()


def _dense(t: torch.Tensor) -> bool:
    """Whether t's entries tile its memory without gaps or overlap (contiguous after some permutation of its dims)."""
    order = sorted(range(t.dim()), key=lambda dim: -t.stride(dim))
    return t.permute(order).is_contiguous()


class PopulationCode:
    """Population-rate coding of analog values by Gaussian-tuned neurons.

    Each coordinate is coded by ``n_neurons`` neurons with preferred values (centres) spread evenly
    over [low − margin, high + margin] (margin = 2σ unless given) and rate
    peak_rate_hz · exp(−(x − c)² / (2σ²)); values are clipped to [low, high] first. Reference
    (error module of e-prop 2): 100 neurons per coordinate, σ = 0.2, range [−1, 1], 200 Hz.
    """

    def __init__(
        self,
        n_neurons: int = 100,
        sigma: float = 0.2,
        low: float = -1.0,
        high: float = 1.0,
        peak_rate_hz: float = 200.0,
        margin: float | None = None,
        dt: float = 1.0,
    ) -> None:
        require_size("n_neurons", n_neurons)
        require_positive("sigma", sigma)
        require_positive("peak_rate_hz", peak_rate_hz)
        require_positive("dt", dt)
        for name, value in (("low", low), ("high", high)):
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                raise InvalidValueError(name, value, ": it must be a finite number")
        if high <= low:
            raise InvalidValueError("high", high, f": it must be > low={low!r}")
        if margin is None:
            margin = 2.0 * sigma
        if not isinstance(margin, (int, float)) or not math.isfinite(margin) or margin < 0:
            raise InvalidValueError("margin", margin, ": it must be a finite number >= 0")
        if peak_rate_hz * dt / 1000.0 > 1.0:
            raise InvalidValueError(
                "peak_rate_hz", peak_rate_hz, f" with dt={dt} ms: the spike probability per step "
                f"would exceed 1 (at most {1000.0 / dt:g} Hz)"
            )
        self.n_neurons, self.sigma, self.low, self.high = n_neurons, sigma, low, high
        self.peak_rate_hz, self.margin, self.dt = peak_rate_hz, margin, dt

    @property
    def centres(self) -> torch.Tensor:
        """Preferred values (n_neurons,), float64: evenly spaced over [low − margin, high + margin]."""
        if self.n_neurons == 1:
            return torch.tensor([(self.low + self.high) / 2.0], dtype=torch.float64)
        return torch.linspace(self.low - self.margin, self.high + self.margin, self.n_neurons, dtype=torch.float64)

    def rates(self, values: torch.Tensor) -> torch.Tensor:
        """Firing rates in Hz. values (...) -> (..., n_neurons); values are clipped to [low, high]."""
        x = values.clamp(self.low, self.high).unsqueeze(-1)
        centres = self.centres.to(dtype=x.dtype if x.is_floating_point() else torch.float32, device=x.device)
        # peak · exp(−(x − c)² / (2σ²)), the same operations in the same order, in place (one buffer)
        return (x - centres).pow_(2).neg_().div_(2.0 * self.sigma**2).exp_().mul_(self.peak_rate_hz)

    def encode(self, values: torch.Tensor, generator: torch.Generator | None = None, draws: int | None = None,
               time_major: bool = False) -> torch.Tensor:
        """Poisson spikes coding ``values`` (..., d) -> (..., d·n_neurons), coordinate-major; with ``draws=K``,
        K independent draws (K, ..., d·n_neurons), the same numbers as K calls one after another. With
        ``time_major``, values are (B, T, ..., d) and the spikes are stored time-major: the same numbers, as
        (B, T, ...) views of (T, B, ...) storage, which a layer's input current reads without a transposing copy."""
        if not torch.isfinite(values).all():
            raise ValueError("values has non-finite entries: a population code needs finite values")
        if time_major and values.dim() < 3:
            raise ValueError(f"values has shape {tuple(values.shape)}: time_major=True needs (B, T, ..., d)")
        # the rates are finite and at most peak_rate_hz (checked to give a probability <= 1 per step)
        p = self.rates(values).mul_(self.dt).div_(1000.0)
        if time_major:   # each draw written in place (no stacking copy), into time-major storage
            spikes = p.new_empty((draws or 1, p.shape[1], p.shape[0], *p.shape[2:])).transpose(1, 2)
        else:
            spikes = p.new_empty((draws or 1, *p.shape))
        for k in range(draws or 1):
            _bernoulli(p, generator, out=spikes[k])
        spikes = spikes.flatten(-2)
        return spikes if draws is not None else spikes[0]
