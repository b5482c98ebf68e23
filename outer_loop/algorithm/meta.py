"""The e-prop 2 meta-learner: learner + error module + inner rates; one call is one outer loss.

    codes  = population code of the target, a fresh Poisson draw per trial the error module sees
    demo   = learner(W_init, x)                      # demonstration trial(s)       } the inner loop
    L      = error_module(codes[k], demo spikes, x)  #                               } (l2l.inner_loop.backends)
    W_task = W_init − η·Σ_t L^t e^t                  # deep eligibility traces, per task }
    loss   = outer_objective(test trial with W_task) # l2l.outer_loop.algorithm.objective

Every meta-parameter (the learner's initial weights and readout, the error module and its projection,
learned inner rates) is a parameter of :class:`MetaLearner`, so one optimizer over
``meta.parameters()`` trains them all by BPTT through both trials and the update.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from l2l.error_module import ErrorModule
from l2l.inner_loop.backends import get_backend
from l2l.inner_loop.learning_rates import InnerLearningRates
from l2l.inner_loop.one_shot import Adaptation
from l2l.inner_loop.settings import InnerSettings
from l2l.network import RecurrentNetwork
from l2l.outer_loop.algorithm.distributed import Ranks
from l2l.outer_loop.algorithm.objective import MetaStep, outer_objective
from l2l.regularization import RateRegularization
from l2l.tasks.base import Episode, TaskFamily
from l2l.tasks.encoders import PopulationCode
from l2l.timing import phase
from l2l.validation import require_nonnegative


@dataclass(frozen=True)
class RateTargets:
    """Firing-rate regularization of the outer loss (reference: weight 100, learner 20 Hz, error module 10 Hz)."""

    weight: float = 100.0
    learner_hz: float = 20.0
    error_module_hz: float = 10.0

    def __post_init__(self) -> None:
        require_nonnegative("outer.rate_weight", self.weight)
        require_nonnegative("outer.learner_rate_hz", self.learner_hz)
        require_nonnegative("outer.error_module_rate_hz", self.error_module_hz)


class MetaLearner(nn.Module):
    """The meta-parameters of e-prop 2 and the outer loss on a batch of tasks.

    ``error_module_in_test``: the error module also runs during the test trial (on a fresh code of the
    target and the test trial's spikes) and its spikes there enter its rate regularization; its signals
    there update nothing. The published e-prop 2 code does this; the papers describe the module in the
    demonstration only (the default).
    """

    def __init__(
        self,
        family: TaskFamily,
        learner: RecurrentNetwork,
        error_module: ErrorModule,
        rates: InnerLearningRates,
        target_code: PopulationCode,
        inner: InnerSettings | None = None,
        regularization: RateTargets = RateTargets(),
        error_module_in_test: bool = False,
    ) -> None:
        super().__init__()
        inner = inner if inner is not None else InnerSettings()
        self.backend = get_backend(inner.backend)
        self.backend.check(inner, rates.mode)
        if error_module_in_test and not self.backend.uses_error_module:
            raise ValueError(f"error_module.in_test_trial=true is not allowed with inner.backend={inner.backend}: "
                             "that control never runs the error module")
        self.family, self.learner, self.error_module, self.rates = family, learner, error_module, rates
        self.target_code, self.inner, self.regularization = target_code, inner, regularization
        self.error_module_in_test = error_module_in_test
        # set when the batch is split over processes (l2l.outer_loop.algorithm.distributed)
        self.ranks: Ranks | None = None
        self.learner_reg = RateRegularization(regularization.learner_hz, regularization.weight, learner.readout.dt)
        self.error_reg = RateRegularization(regularization.error_module_hz, regularization.weight, learner.readout.dt)

    @property
    def code_trials(self) -> int:
        """How many trials the error module sees: one per demonstration, plus the test trial if it runs there."""
        return self.inner.n_demos + int(self.error_module_in_test)

    def encode(self, episode: Episode, generator: torch.Generator | None = None) -> torch.Tensor:
        """The target population-coded for the error module, drawn afresh for each trial it sees:
        (K, B, T, n_out·target_code.n_neurons) spikes, K = :attr:`code_trials` (demonstrations first), stored
        time-major ((K, T, B, ...) storage: the error module's input current reads it without a copy)."""
        target = episode.target.to("cpu", torch.float32)   # drawn on the CPU, from a CPU generator
        return self.target_code.encode(target, generator, draws=self.code_trials, time_major=True)

    def trial_codes(self, code: torch.Tensor) -> list[torch.Tensor]:
        """``code`` (K, B, T, n_code) from :meth:`encode` split per trial, or one (B, T, n_code) for every trial."""
        if code.dim() == 3:
            return [code] * self.code_trials
        if code.dim() != 4 or code.shape[0] != self.code_trials:
            raise ValueError(f"code has shape {tuple(code.shape)}: expected (K={self.code_trials}, B, T, n_code) "
                             "from meta.encode, or one (B, T, n_code) for every trial")
        return list(code.unbind(0))

    def adapt(self, episode: Episode, codes: torch.Tensor) -> Adaptation:
        """The inner loop on ``episode`` (inputs (B, T, n_in)) with the coded targets ``codes`` (:meth:`encode`)."""
        demos = self.trial_codes(codes)[:self.inner.n_demos]
        return self.backend.adapt(self.learner, self.error_module, episode.inputs, demos, self.rates, self.inner,
                                  demo_loss=lambda output: self.family.loss(output, episode).per_task)

    def forward(self, episode: Episode, generator: torch.Generator | None = None, *,
                codes: torch.Tensor | None = None) -> MetaStep:
        """The outer loss on ``episode``: encode the target (from ``generator``, unless ``codes`` are given:
        (K, B, T, n_code) as :meth:`encode` returns, or one (B, T, n_code) for every trial), adapt, test."""
        if isinstance(generator, torch.Tensor):
            raise TypeError("meta(episode, generator): pass coded targets as meta(episode, codes=...)")
        if codes is None:
            with phase("sample tasks"):
                codes = self.encode(episode, generator)
        codes = codes.to(episode.inputs)
        adaptation = self.adapt(episode, codes)
        return outer_objective(self, episode, adaptation, self.trial_codes(codes)[-1])
