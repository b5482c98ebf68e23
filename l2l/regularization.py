"""Firing-rate regularization toward a target rate, with its e-prop-compatible gradient.

E_reg = weight · Σ_layers Σ_j (f̄_j − f_0)², f̄_j the rate of neuron j averaged over tasks and time
in spikes per ms (kHz; the unit of the reference code), f_0 = target_hz / 1000. Its gradient
w.r.t. each spike, ∂E_reg/∂z_j^t = 2·weight·(f̄_j − f_0)/(B·T·dt), is added to the learning
signal, so e-prop handles it with the same eligibility traces (Bellec et al. 2020, Methods).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from l2l.validation import require_nonnegative, require_positive


@dataclass(frozen=True)
class RateRegularization:
    """target_hz >= 0, weight >= 0, dt in ms."""

    target_hz: float = 10.0
    weight: float = 1.0
    dt: float = 1.0

    def __post_init__(self) -> None:
        require_nonnegative("target_hz", self.target_hz)
        require_nonnegative("weight", self.weight)
        require_positive("dt", self.dt)

    def rates_khz(self, z: torch.Tensor | Sequence[torch.Tensor]) -> torch.Tensor:
        """Mean rate per neuron in spikes per ms. z: (B, T, n), or several trials [(B, T_i, n)] pooled as if
        joined in time (summed in place: no concatenated copy) -> (n,)."""
        if isinstance(z, torch.Tensor):
            return z.mean(dim=(0, 1)) / self.dt
        count = sum(trial.shape[0] * trial.shape[1] for trial in z)
        return sum(trial.sum(dim=(0, 1)) for trial in z) / (count * self.dt)

    def loss(self, z: torch.Tensor | Sequence[torch.Tensor],
             across: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
        """E_reg for one layer's spikes z (B, T, n) or trials [(B, T_i, n)]; differentiable. ``across`` maps this
        batch's per-neuron rates (n,) to those of the whole batch when the batch is split over processes (the
        mean over tasks)."""
        rates = self.rates_khz(z) if across is None else across(self.rates_khz(z))
        return self.weight * ((rates - self.target_hz / 1000.0) ** 2).sum()

    def gradient_wrt_spikes(self, z: torch.Tensor) -> torch.Tensor:
        """∂E_reg/∂z_j^t (B, T, n), the regularization's learning signal."""
        batch, steps = z.shape[:2]
        per_neuron = 2 * self.weight * (self.rates_khz(z) - self.target_hz / 1000.0) / (batch * steps * self.dt)
        return per_neuron.expand_as(z)
