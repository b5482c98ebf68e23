"""The m-order family between e-prop and RTRL (Martín-Sánchez, Bohté & Otte 2022).

The influence is split by the number k of cross-neuron hops in time (uses of E in J = D + E);
terms with k ≤ ``order`` are kept. ``order=0`` is e-prop (symmetric feedback; deep e-prop for
stacks) with its traces stored forward, ``order ≥ T−1`` is RTRL. Memory (order+1)× RTRL's.
"""

from __future__ import annotations

from l2l.regularization import RateRegularization
from l2l.rules.rtrl import RTRL
from l2l.validation import require_nonnegative_int


class MOrder(RTRL):
    """Influence terms with up to ``order`` cross-neuron hops."""

    name = "morder"

    def __init__(self, order: int = 1, rate_regularization: RateRegularization | None = None,
                 memory_budget_gib: float = 4.0) -> None:
        require_nonnegative_int("order", order)
        super().__init__(rate_regularization, memory_budget_gib)
        self.order = order
