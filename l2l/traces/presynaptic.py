"""The presynaptic side of a layer's synapses over a trial: x^t for W_in, z^{t-1} for W_rec, 1 for b."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class PresynapticInputs:
    """x: (B, T, n_in) feedforward input; z_prev: (B, T, n) recurrent input z^{t-1}."""

    x: torch.Tensor
    z_prev: torch.Tensor

    def concatenated(self, with_bias: bool) -> torch.Tensor:
        """u^t = [x^t, z^{t-1}(, 1)]: (B, T, n_in + n (+ 1))."""
        parts = [self.x, self.z_prev]
        if with_bias:
            parts.append(torch.ones_like(self.x[..., :1]))
        return torch.cat(parts, dim=-1)

    def split(self, grad: torch.Tensor, with_bias: bool) -> dict[str, torch.Tensor]:
        """Split a gradient over u's columns (·, rows, m) into W_in, W_rec (and bias)."""
        n_in, n = self.x.shape[-1], self.z_prev.shape[-1]
        out = {"w_in": grad[..., :n_in], "w_rec": grad[..., n_in : n_in + n]}
        if with_bias:
            out["bias"] = grad[..., n_in + n]
        return out
