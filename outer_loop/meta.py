"""The e-prop 2 meta-learner: learner + error module + inner rates, and one outer-loop loss (DESIGN §4).

    demo   = learner(W_init, x)                      # demonstration trial(s)
    L      = error_module(target code, demo spikes, x)
    W_task = W_init − η·Σ_t L^t e^t                  # deep eligibility traces, per task
    test   = learner(W_task, x)                      # test trial
    (error_module(fresh target code, test spikes, x)   # with error_module_in_test: regularized only)
    loss   = task.loss(test) + rate regularization of learner and error module

Every meta-parameter (the learner's initial weights and readout, the error module and its projection,
learned inner rates) is a parameter of :class:`MetaLearner`, so one optimizer over
``meta.parameters()`` trains them all by BPTT through both trials and the update.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from inner_loop.higher_backend import adapt_with_higher
from inner_loop.learning_rates import InnerLearningRates
from inner_loop.one_shot import Adaptation, adapt
from l2l.error_module import ErrorModule
from l2l.network import RecurrentNetwork, Trial
from l2l.regularization import RateRegularization
from l2l.timing import phase
from l2l.validation import require_choice, require_nonnegative, require_size
from tasks.base import Episode, TaskFamily
from tasks.encoders import PopulationCode

BACKENDS = ("explicit", "higher")


@dataclass(frozen=True)
class InnerSettings:
    """How the inner loop adapts: backend explicit | higher (optimizer sgd | adam, fixed η only),
    which weight kinds adapt, how many demonstrations (one update after each), first-order or not."""

    backend: str = "explicit"
    optimizer: str = "sgd"
    adapt_weights: tuple[str, ...] = ("w_in", "w_rec")
    n_demos: int = 1
    first_order: bool = False

    def __post_init__(self) -> None:
        require_choice("inner.backend", self.backend, BACKENDS)
        require_choice("inner.optimizer", self.optimizer, ("sgd", "adam"))
        require_size("inner.n_demos", self.n_demos)
        if self.backend == "explicit" and self.optimizer != "sgd":
            raise ValueError(f"inner.optimizer={self.optimizer!r} needs inner.backend=higher "
                             "(the explicit backend applies W − η·ΔW, i.e. sgd)")
        if self.backend == "higher" and self.n_demos != 1:
            raise ValueError(f"inner.n_demos={self.n_demos} needs inner.backend=explicit (higher takes one step)")


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


@dataclass
class MetaStep:
    """loss: the outer loss (scalar, differentiable); metrics: floats for logging (demo_mse and test_mse:
    the family's metric before and after the update, means over tasks); per_task: those per task (B,);
    adaptation: the inner loop's result; test_output: the test trial's output (B, T, n_out); test_trial: the
    learner's test trial; test_error_trial: the error module's trial during it (with error_module_in_test)."""

    loss: torch.Tensor
    metrics: dict[str, float]
    per_task: dict[str, torch.Tensor] = field(default_factory=dict)
    adaptation: Adaptation | None = None
    test_output: torch.Tensor | None = None
    test_trial: Trial | None = None
    test_error_trial: Trial | None = None


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
        code: PopulationCode,
        inner: InnerSettings = InnerSettings(),
        regularization: RateTargets = RateTargets(),
        error_module_in_test: bool = False,
    ) -> None:
        super().__init__()
        if rates.mode != "fixed" and inner.backend == "higher":
            raise ValueError(f"inner.lr_mode={rates.mode!r} needs inner.backend=explicit "
                             "(higher's optimizers take one float learning rate)")
        self.family, self.learner, self.error_module, self.rates = family, learner, error_module, rates
        self.code, self.inner, self.regularization = code, inner, regularization
        self.error_module_in_test = error_module_in_test
        self.learner_reg = RateRegularization(regularization.learner_hz, regularization.weight, learner.readout.dt)
        self.error_reg = RateRegularization(regularization.error_module_hz, regularization.weight, learner.readout.dt)

    @property
    def code_trials(self) -> int:
        """How many trials the error module sees: one per demonstration, plus the test trial if it runs there."""
        return self.inner.n_demos + int(self.error_module_in_test)

    def encode(self, episode: Episode, generator: torch.Generator | None = None) -> torch.Tensor:
        """The target population-coded for the error module, drawn afresh for each trial it sees:
        (K, B, T, n_out·code.n_neurons) spikes, K = :attr:`code_trials` (demonstrations first)."""
        target = episode.target.to(torch.float32)
        return torch.stack([self.code.encode(target, generator) for _ in range(self.code_trials)])

    def trial_codes(self, code: torch.Tensor) -> list[torch.Tensor]:
        """``code`` (K, B, T, n_code) from :meth:`encode` split per trial, or one (B, T, n_code) for every trial."""
        if code.dim() == 3:
            return [code] * self.code_trials
        if code.dim() != 4 or code.shape[0] != self.code_trials:
            raise ValueError(f"code has shape {tuple(code.shape)}: expected (K={self.code_trials}, B, T, n_code) "
                             "from meta.encode, or one (B, T, n_code) for every trial")
        return list(code.unbind(0))

    def adapt(self, episode: Episode, code: torch.Tensor) -> Adaptation:
        """The inner loop on ``episode`` (inputs (B, T, n_in)) with the coded target ``code`` (:meth:`encode`)."""
        inner = self.inner
        codes = self.trial_codes(code)[:inner.n_demos]
        if inner.backend == "higher":
            return adapt_with_higher(self.learner, self.error_module, episode.inputs, codes[0], self.rates.initial,
                                     inner.adapt_weights, inner.first_order, inner.optimizer)
        return adapt(self.learner, self.error_module, episode.inputs, codes, self.rates(), inner.adapt_weights,
                     inner.first_order, inner.n_demos)

    def forward(self, episode: Episode, code: torch.Tensor) -> MetaStep:
        """The outer loss: the task loss of the test trial after the update plus rate regularization."""
        adaptation = self.adapt(episode, code)
        with phase("test trial"):
            test = self.learner.run(episode.inputs, adaptation.params)
        error_trials = [step.error_trial for step in adaptation.steps]
        test_error_trial = None
        if self.error_module_in_test:
            with phase("error module"):
                test_error_trial = self.error_module.run(self.trial_codes(code)[-1], test)[1]
            error_trials.append(test_error_trial)
        test_loss = self.family.loss(test.output, episode)
        with torch.no_grad():
            demo_loss = self.family.loss(adaptation.demo.output, episode)
        trials = [step.demo for step in adaptation.steps] + [test]
        learner_reg = sum(self.learner_reg.loss(torch.cat([t.layers[k].z for t in trials], dim=1))
                          for k in range(len(self.learner.layers)))
        error_spikes = [[trial.layers[k].z for trial in error_trials]
                        for k in range(len(self.error_module.network.layers))]
        error_reg = sum(self.error_reg.loss(torch.cat(z, dim=1)) for z in error_spikes)
        loss = test_loss.mean + learner_reg + error_reg
        metric = self.family.metric
        metrics = {
            "loss": float(loss.detach()), "task_loss": float(test_loss.mean.detach()),
            "reg_loss": float((learner_reg + error_reg).detach()),
            "demo_mse": float(demo_loss.metrics[metric].mean()), "test_mse": float(test_loss.metrics[metric].mean()),
            "learner_rate_hz": _rate_hz(trials, self.learner.readout.dt),
            "error_module_rate_hz": _rate_hz(error_trials, self.learner.readout.dt),
        }
        per_task = {"demo_mse": demo_loss.metrics[metric], "test_mse": test_loss.metrics[metric].detach()}
        return MetaStep(loss, metrics, per_task, adaptation, test.output, test, test_error_trial)


def _rate_hz(trials: list, dt: float) -> float:
    """Mean firing rate (Hz) over every layer, task and step of ``trials``."""
    with torch.no_grad():
        rates = [layer.z.float().mean() for t in trials for layer in t.layers]
        return float(torch.stack(rates).mean()) * 1000.0 / dt
