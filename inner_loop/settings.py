"""How the inner loop adapts, as one validated record (built from the ``inner`` config node)."""

from __future__ import annotations

from dataclasses import dataclass

from l2l.validation import require_choice, require_size


@dataclass(frozen=True)
class InnerSettings:
    """``backend``: the name of a registered inner backend (``l2l.inner_loop.backends``: explicit | higher);
    ``optimizer`` sgd | adam (adam needs higher); which weight kinds adapt; how many demonstrations (one
    update after each); first-order or not. Each backend checks what it supports (``check``)."""

    backend: str = "explicit"
    optimizer: str = "sgd"
    adapt_weights: tuple[str, ...] = ("w_in", "w_rec")
    n_demos: int = 1
    first_order: bool = False

    def __post_init__(self) -> None:
        from l2l.inner_loop.backends import get_backend

        require_choice("inner.optimizer", self.optimizer, ("sgd", "adam"))
        require_size("inner.n_demos", self.n_demos)
        get_backend(self.backend).check(self)
