"""Inner learning rates η of the one-shot update: fixed, learned per layer, or learned per synapse.

Learned rates are meta-parameters kept in log space (η = exp(log η)), so that they stay positive
whatever the outer optimizer does; they start at ``initial``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from l2l.validation import require_choice, require_positive

RATE_MODES = ("fixed", "per_layer", "per_synapse")


class InnerLearningRates(nn.Module):
    """η per adapted weight name.

    ``mode="fixed"``: the float ``initial`` for every name (no parameters).
    ``mode="per_layer"``: one learned scalar per adapted tensor (``layers.<k>.w_in`` and ``w_rec`` get their own).
    ``mode="per_synapse"``: one learned rate per synapse, the shape of the weight.
    """

    def __init__(self, shapes: Mapping[str, torch.Size], mode: str = "fixed", initial: float = 1e-4) -> None:
        super().__init__()
        require_choice("inner.lr_mode", mode, RATE_MODES)
        require_positive("inner.lr", initial)
        self.mode, self.initial, self.names = mode, float(initial), list(shapes)
        self.log_rates = nn.ParameterDict()
        if mode != "fixed":
            for name, shape in shapes.items():
                size = shape if mode == "per_synapse" else ()
                self.log_rates[_key(name)] = nn.Parameter(torch.full(size, math.log(initial)))

    def forward(self) -> dict[str, float | torch.Tensor]:
        """η per name: a float (fixed) or a tensor broadcastable to the (B, ...) per-task weight."""
        if self.mode == "fixed":
            return {name: self.initial for name in self.names}
        return {name: self.log_rates[_key(name)].exp() for name in self.names}

    def summary(self) -> dict[str, float]:
        """Mean η per name (for logging)."""
        with torch.no_grad():
            return {name: float(torch.as_tensor(eta).mean()) for name, eta in self().items()}


def _key(name: str) -> str:
    """ParameterDict keys may not contain dots."""
    return name.replace(".", "__")
