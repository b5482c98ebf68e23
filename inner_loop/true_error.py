"""What the meta-trained controls share: they are told the demonstration's true task loss and take one plain step.

Used by :mod:`l2l.inner_loop.maml` and :mod:`l2l.inner_loop.eprop1_step`.
"""

from __future__ import annotations

from l2l.inner_loop.backends import DemoLoss
from l2l.inner_loop.settings import InnerSettings


def true_loss(demo_loss: DemoLoss | None, backend: str) -> DemoLoss:
    """``demo_loss``, or ValueError when the caller did not give the demonstration's task loss."""
    if demo_loss is None:
        raise ValueError(f"inner.backend={backend!r} needs the demonstration's true task loss (demo_loss): it is "
                         "a meta-trained control told the true error, not e-prop 2")
    return demo_loss


def require_plain_step(settings: InnerSettings, backend: str, step: str) -> None:
    """ValueError naming ``inner.optimizer`` unless it is sgd: the control takes one plain ``step``."""
    if settings.optimizer != "sgd":
        raise ValueError(f"inner.optimizer={settings.optimizer!r} is not allowed with inner.backend={backend}: it "
                         f"takes {step} (sgd)")
