"""Inner backends: the ways to run the one-shot inner loop, one small protocol and one registry.

A backend turns a batch of tasks into per-task adapted weights (:class:`l2l.inner_loop.one_shot.Adaptation`).
``explicit`` applies W − η·ΔW itself (any η mode, several demonstrations); ``higher`` steps higher's
differentiable optimizers (SGD or Adam, one float η, one demonstration). The meta-trained controls are told the
demonstration's true task loss instead of using the error module: ``maml`` (one BPTT step,
:mod:`l2l.inner_loop.maml`) and ``eprop1_symmetric`` / ``eprop1_random`` (one e-prop 1 step,
:mod:`l2l.inner_loop.eprop1_step`). A new backend is one file with a class that has these members, plus one
``register_backend(...)`` call (e.g. at the end of that file, imported below or by the code that uses it).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol

import torch

from l2l.error_module import ErrorModule
from l2l.inner_loop.higher_backend import adapt_with_higher
from l2l.inner_loop.learning_rates import InnerLearningRates
from l2l.inner_loop.one_shot import Adaptation, adapt
from l2l.inner_loop.settings import InnerSettings
from l2l.network import RecurrentNetwork
from l2l.registry import Registry

DemoLoss = Callable[[torch.Tensor], torch.Tensor]
"""The demonstration's true task loss: the learner's output (B, T, n_out) -> the loss of each task (B,)."""


class InnerBackend(Protocol):
    """``name``; ``needs_autograd``: whether evaluation must keep autograd on (an optimizer that differentiates);
    ``uses_error_module``: whether its update comes from the error module (e-prop 2) or from the true task loss
    (the controls); ``check(settings, lr_mode)`` raises ValueError naming the key of an unsupported setting;
    ``adapt(...)`` runs the inner loop (codes: one (B, T, n_code) per demonstration; ``demo_loss``: the true task
    loss, which the controls need and e-prop 2 never reads)."""

    name: str
    needs_autograd: bool
    uses_error_module: bool

    def check(self, settings: InnerSettings, lr_mode: str = "fixed") -> None: ...

    def adapt(self, learner: RecurrentNetwork, error_module: ErrorModule, inputs: torch.Tensor,
              codes: Sequence[torch.Tensor], rates: InnerLearningRates, settings: InnerSettings,
              demo_loss: DemoLoss | None = None) -> Adaptation: ...


BACKENDS: Registry[InnerBackend] = Registry("inner.backend")
"""Every inner backend by name."""


def register_backend(backend: InnerBackend) -> InnerBackend:
    """Make ``backend`` available as ``inner.backend=<backend.name>``; returns it."""
    return BACKENDS.register(backend)


def get_backend(name: str) -> InnerBackend:
    """The registered backend ``name``; InvalidValueError naming ``inner.backend`` and the choices otherwise."""
    return BACKENDS.entry(name)


class ExplicitBackend:
    """W_task = W − η·ΔW per demonstration (``l2l.inner_loop.one_shot.adapt``); η fixed or learned."""

    name = "explicit"
    needs_autograd = False
    uses_error_module = True

    def check(self, settings: InnerSettings, lr_mode: str = "fixed") -> None:
        if settings.optimizer != "sgd":
            raise ValueError(f"inner.optimizer={settings.optimizer!r} needs inner.backend=higher "
                             "(the explicit backend applies W − η·ΔW, i.e. sgd)")

    def adapt(self, learner, error_module, inputs, codes, rates, settings, demo_loss=None) -> Adaptation:
        return adapt(learner, error_module, inputs, list(codes), rates(), settings.adapt_weights,
                     settings.first_order, settings.n_demos)


class HigherBackend:
    """One step of higher's differentiable SGD or Adam per task (``l2l.inner_loop.higher_backend``); fixed η."""

    name = "higher"
    needs_autograd = True
    uses_error_module = True

    def check(self, settings: InnerSettings, lr_mode: str = "fixed") -> None:
        if settings.n_demos != 1:
            raise ValueError(f"inner.n_demos={settings.n_demos} needs inner.backend=explicit (higher takes one step)")
        if lr_mode != "fixed":
            raise ValueError(f"inner.lr_mode={lr_mode!r} needs inner.backend=explicit "
                             "(higher's optimizers take one float learning rate)")

    def adapt(self, learner, error_module, inputs, codes, rates, settings, demo_loss=None) -> Adaptation:
        return adapt_with_higher(learner, error_module, inputs, codes[0], rates.initial, settings.adapt_weights,
                                 settings.first_order, settings.optimizer)


register_backend(ExplicitBackend())
register_backend(HigherBackend())

# the meta-trained controls register themselves (imported last: they use this module's protocol)
from l2l.inner_loop import eprop1_step, maml  # noqa: E402, F401
