"""Feedback matrices that turn output errors into learning signals, L_j^t = Σ_k B_jk δ_k^t.

``symmetric``: B = W_outᵀ (exact for the readout path); ``random``: a fixed random B (broadcast
alignment, e-prop 1), N(0, 1)/√n as in the reference code; ``adaptive``: B starts random and
receives W_out's update (the change of W_out between calls) plus a decay, so that with the
same weight decay on W_out it aligns with W_outᵀ.
"""

from __future__ import annotations

import math

import torch

from l2l.validation import require_choice, require_nonnegative


class Feedback:
    """Base: ``matrix(w_out)`` returns B with shape (n, n_out), or (B, n, n_out) for per-task W_out."""

    name = "feedback"

    def matrix(self, w_out: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class SymmetricFeedback(Feedback):
    """B = W_outᵀ."""

    name = "symmetric"

    def matrix(self, w_out: torch.Tensor) -> torch.Tensor:
        return w_out.transpose(-1, -2)


class RandomFeedback(Feedback):
    """A fixed random B ~ N(0, 1)/√n drawn on first use from ``seed``."""

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = seed
        self.b: torch.Tensor | None = None

    def fixed(self, n: int, n_out: int, like: torch.Tensor) -> torch.Tensor:
        """The fixed B (n, n_out), drawn from ``seed`` on first use, in ``like``'s dtype and device."""
        if self.b is None or self.b.shape != (n, n_out):
            g = torch.Generator().manual_seed(self.seed)
            self.b = torch.randn(n, n_out, generator=g, dtype=torch.float64) / math.sqrt(n)
        return self.b.to(like)

    def matrix(self, w_out: torch.Tensor) -> torch.Tensor:
        n_out, n = w_out.shape[-2:]
        return self.fixed(n, n_out, w_out)


class AdaptiveFeedback(RandomFeedback):
    """B ← (1 − decay)·B + ΔW_outᵀ at every call, ΔW_out the change of W_out since the last call."""

    name = "adaptive"

    def __init__(self, seed: int = 0, decay: float = 0.01) -> None:
        super().__init__(seed)
        require_nonnegative("decay", decay)
        self.decay = decay
        self.last_w_out: torch.Tensor | None = None

    def matrix(self, w_out: torch.Tensor) -> torch.Tensor:
        if w_out.dim() != 2:
            raise ValueError(f"adaptive feedback needs a shared W_out (n_out, n), got shape {tuple(w_out.shape)}")
        w_now = w_out.detach().clone()
        b = super().matrix(w_out)
        if self.last_w_out is not None and self.last_w_out.shape == w_now.shape:
            b = (1 - self.decay) * b + (w_now - self.last_w_out).transpose(0, 1)
        self.b, self.last_w_out = b, w_now
        return b


FEEDBACKS = {"symmetric": SymmetricFeedback, "random": RandomFeedback, "adaptive": AdaptiveFeedback}


def make_feedback(name: str, **kwargs) -> Feedback:
    """Feedback by name: ``symmetric``, ``random`` or ``adaptive``."""
    require_choice("feedback", name, tuple(FEEDBACKS))
    return FEEDBACKS[name](**kwargs)
