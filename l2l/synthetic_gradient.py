"""Synthetic gradients (Jaderberg et al. 2016) for truncated BPTT and e-prop 3, with their online training.

At an interval border t_m the future's contribution to the gradient, B·dE/ds^{t_m} for the border state
s^{t_m} (B, D) (the cell state, the spike as it leaves the neuron and the readout; see
:mod:`l2l.rules.truncated_bptt`), is replaced by a prediction SG(s^{t_m}) (B, D). E is a mean over the B
tasks, so B·dE/ds_b is task b's own gradient: the module predicts a quantity that does not depend on the
batch size.

Online training (bootstrapping): the target of the prediction at border m is the gradient of the next
interval's truncated objective with respect to its initial state,

    target_m = B · d/ds^{t_m} [ Σ_{t_m ≤ t < t_{m+1}} E^t + ⟨SG(s^{t_{m+1}}) / B, s^{t_{m+1}}⟩ ],

with the far border's prediction held fixed, and no SG term after the trial's last step (the future there
is empty: zero gradient). The loss is ½ Σ_m mean_b ‖SG(s_b^{t_m}) − target_{m,b}‖²; one optimizer step per
trial (:meth:`OnlineSyntheticGradient.update`).

Less biased targets (λ-mixed bootstrapping, the λ-return of temporal-difference learning): the far border's term
is ⟨(λ·target_{m+1} + (1 − λ)·SG(s^{t_{m+1}})) / B, s^{t_{m+1}}⟩, computed from the last border backwards. λ = 0 is
the bootstrapped target above; λ = 1 the true B·dE/ds^{t_m} of the whole future (BPTT's); a perfect SG is a fixed
point for every λ. Options of the module: ``time_input`` appends the border's time t_m and the time left T − t_m
(in units of 100 steps) to its input; ``warmup`` trials during which it learns but its predictions are not used
as learning signals (the rule runs as with SG = 0). :func:`gradient_quality` scores predictions against the true
border gradients (cosine, R²).

Following a network that learns (the SG's target moves every trial): ``steps`` Adam steps per trial on the mean loss
of this trial and the ``replay`` trials before it (their inputs and targets kept as they were), and ``calibrate``:
the predictions are used scaled by c = max(0, Σ⟨p, t⟩ / Σ⟨p, p⟩), the least-squares scale of the module's raw
predictions p against the targets t of past trials, each sum an exponential average over trials (decay
``CALIBRATION_DECAY``) of p made before the module saw that trial: out of sample. A module whose direction is
barely right is then shrunk towards SG = 0 instead of adding a large wrong gradient.
"""

from __future__ import annotations

import copy
import math
from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import nn

from l2l.validation import require_bool, require_nonnegative_int, require_positive, require_size


class Predictor(Protocol):
    """What a truncated rule asks at each border: ``predict(state (B, D), border m >= 1) -> (B, D)``, detached."""

    def predict(self, state: torch.Tensor, border: int) -> torch.Tensor: ...


class SyntheticGradient(nn.Module):
    """SG(s): (B, D + extra) -> (B, D). Linear (``hidden=0``) or one tanh hidden layer of ``hidden`` units; ``extra``
    inputs beyond the state (e.g. the time features of ``time_input``).

    The output layer starts at zero (the first predictions are 0: the rule starts as its SG-free version);
    the hidden layer, if any, from N(0, 1/(D + extra)) drawn from ``generator``.
    """

    def __init__(self, size: int, hidden: int = 0, generator: torch.Generator | None = None, extra: int = 0) -> None:
        super().__init__()
        require_nonnegative_int("sg_hidden", hidden)
        self.size, self.hidden, self.extra = size, hidden, extra
        inputs = size + extra
        if hidden > 0:
            self.w_hidden = nn.Parameter(torch.randn(hidden, inputs, generator=generator) / math.sqrt(inputs))
            self.b_hidden = nn.Parameter(torch.zeros(hidden))
        self.w_out = nn.Parameter(torch.zeros(size, hidden if hidden > 0 else inputs))
        self.b_out = nn.Parameter(torch.zeros(size))

    def forward(self, state: torch.Tensor) -> torch.Tensor:
        """state (B, D + extra) -> predicted gradient (B, D)."""
        h = torch.tanh(state @ self.w_hidden.T + self.b_hidden) if self.hidden > 0 else state
        return h @ self.w_out.T + self.b_out


def gradient_quality(predictions: Sequence[torch.Tensor], truths: Sequence[torch.Tensor]) -> dict[str, float]:
    """How well predictions (one (B, D) per border) match the true border gradients: ``cosine``, the mean over
    borders and tasks of cos(prediction, truth) (0 where either is zero), and ``r2``, 1 − Σ‖p − t‖² / Σ‖t − t̄‖²
    over every border and task (t̄ the mean truth per dimension). A perfect SG scores 1 and 1; SG = 0 an R² ≤ 0.
    NaN for no borders."""
    if not predictions:
        return {"cosine": float("nan"), "r2": float("nan")}
    p = torch.cat([x.detach().double() for x in predictions])
    t = torch.cat([x.detach().double() for x in truths])
    if p.shape != t.shape:
        raise ValueError(f"predictions {tuple(p.shape)} and truths {tuple(t.shape)} differ in shape")
    norms = p.norm(dim=-1) * t.norm(dim=-1)
    cosine = torch.where(norms > 0, (p * t).sum(-1) / norms.clamp(min=1e-300), torch.zeros_like(norms))
    spread = ((t - t.mean(0)) ** 2).sum()
    r2 = 1.0 - float(((p - t) ** 2).sum() / spread) if spread > 0 else float("nan")
    return {"cosine": float(cosine.mean()), "r2": r2}


def time_features(border: int, window: int, steps: int, like: torch.Tensor) -> torch.Tensor:
    """(B, 2): the border's time t_m = border·window and the time left T − t_m, in units of 100 steps."""
    t = border * window
    values = torch.tensor([t / 100.0, (steps - t) / 100.0], dtype=like.dtype, device=like.device)
    return values.expand(like.shape[0], 2)


def synthetic_gradient_loss(predictions: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> torch.Tensor:
    """½ Σ_m mean_b ‖prediction_m − target_m‖²; each (B, D). Zero for no borders."""
    total = torch.zeros(())
    for p, t in zip(predictions, targets, strict=True):
        total = total + 0.5 * ((p - t) ** 2).sum(-1).mean()
    return total


CALIBRATION_DECAY = 0.9
"""Per-trial decay of the calibration's sums Σ⟨p, t⟩ and Σ⟨p, p⟩ (about the last 10 trials)."""


class OnlineSyntheticGradient:
    """A :class:`SyntheticGradient` and its Adam optimizer, built on first use when D is known.

    ``predict(state, border)`` gives SG(state) detached (times the calibration scale with ``calibrate``);
    ``update(states, targets)`` takes ``steps`` optimizer steps on :func:`synthetic_gradient_loss` averaged over this
    trial and the ``replay`` trials before it, and returns this trial's loss before the first step. ``learn=False``
    freezes the module. ``state_dict``/``load_state_dict`` hold the module, the optimizer, D, the replayed trials
    and the calibration sums (plain containers and tensors).
    """

    def __init__(self, lr: float = 1e-3, hidden: int = 0, seed: int = 0, learn: bool = True,
                 time_input: bool = False, warmup: int = 0, steps: int = 1, replay: int = 0,
                 calibrate: bool = False) -> None:
        require_positive("sg_lr", lr)
        require_nonnegative_int("sg_hidden", hidden)
        require_nonnegative_int("sg_seed", seed)
        require_nonnegative_int("sg_warmup", warmup)
        require_size("sg_steps", steps)
        require_nonnegative_int("sg_replay", replay)
        require_bool("sg_calibrate", calibrate)
        self.lr, self.hidden, self.seed, self.learn = lr, hidden, seed, learn
        self.time_input, self.warmup = time_input, warmup
        self.steps, self.calibrate = steps, calibrate
        self.module: SyntheticGradient | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.last_loss = float("nan")
        self.trials = 0
        self.trial_shape: tuple[int, int] | None = None   # (T, window) of the current trial, for the time input
        self.memory: deque[tuple[list[torch.Tensor], list[torch.Tensor]]] = deque(maxlen=replay + 1)
        self.agreement = 0.0     # Σ⟨p, t⟩ and Σ⟨p, p⟩ of the calibration (exponential averages over trials)
        self.power = 0.0

    def begin_trial(self, steps: int, window: int) -> None:
        """The coming trial's length T and window Δ (the time input's t_m = m·Δ and T − t_m)."""
        self.trial_shape = (steps, window)

    @property
    def warming_up(self) -> bool:
        """True for the first ``warmup`` trials: the rule uses SG = 0 for its learning signals meanwhile."""
        return self.trials < self.warmup

    def features(self, state: torch.Tensor, border: int) -> torch.Tensor:
        """The module's input (B, D [+ 2]) for the border state (B, D) at border ``border`` (1-based)."""
        if not self.time_input:
            return state
        if self.trial_shape is None:
            raise ValueError("sg_time=true needs the trial's length: the rule calls begin_trial(steps, window) first")
        steps, window = self.trial_shape
        return torch.cat([state, time_features(border, window, steps, state)], dim=-1)

    def build(self, size: int, like: torch.Tensor) -> SyntheticGradient:
        """The module for states of ``size`` D (dtype and device of ``like``); an existing one must match."""
        if self.module is not None:
            if self.module.size != size:
                raise ValueError(f"the synthetic gradient was built for border states of size {self.module.size}, "
                                 f"this network's have {size}: use a new rule for another network")
            return self.module
        generator = torch.Generator().manual_seed(self.seed)
        extra = 2 if self.time_input else 0
        self.module = SyntheticGradient(size, self.hidden, generator, extra).to(dtype=like.dtype, device=like.device)
        self.optimizer = torch.optim.Adam(self.module.parameters(), lr=self.lr)
        return self.module

    @property
    def scale(self) -> float:
        """The calibration scale c = max(0, Σ⟨p, t⟩ / Σ⟨p, p⟩); 1 without ``calibrate`` or before any data."""
        if not self.calibrate or self.power <= 0.0:
            return 1.0
        return max(0.0, self.agreement / self.power)

    def predict(self, state: torch.Tensor, border: int) -> torch.Tensor:
        """SG(state): (B, D) -> (B, D), no graph."""
        module = self.build(state.shape[-1], state)
        with torch.no_grad():
            raw = module(self.features(state, border).to(module.w_out.dtype)).to(state.dtype)
            return raw * self.scale if self.calibrate else raw

    def update(self, states: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> float:
        """``steps`` Adam steps on the targets of this trial (and the ``replay`` trials before it); returns this
        trial's loss before the first step (0 without borders). Only computes the loss when ``learn`` is False."""
        self.trials += 1
        if not states:
            self.last_loss = 0.0
            return 0.0
        module = self.build(states[0].shape[-1], states[0])
        dtype = module.w_out.dtype
        inputs = [self.features(s.detach(), m + 1).to(dtype) for m, s in enumerate(states)]
        goals = [t.detach().to(dtype) for t in targets]
        self.memory.append((inputs, goals))
        kept = list(reversed(self.memory))                                      # this trial first
        for step in range(self.steps):
            with torch.enable_grad():
                predictions = [[module(x) for x in trial_inputs] for trial_inputs, _ in kept]
                losses = [synthetic_gradient_loss(p, g) for p, (_, g) in zip(predictions, kept, strict=True)]
                loss = sum(losses) / len(losses)
                if step == 0:
                    self.last_loss = float(losses[0].detach())
                    if self.calibrate:
                        self.calibrate_on(predictions[0], goals)
                if not self.learn:
                    break
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                self.optimizer.step()
        return self.last_loss

    def calibrate_on(self, predictions: Sequence[torch.Tensor], targets: Sequence[torch.Tensor]) -> None:
        """Add one trial's out-of-sample ⟨p, t⟩ and ⟨p, p⟩ (raw predictions before its update) to the decayed sums."""
        with torch.no_grad():
            agreement = sum(float((p * t).sum()) for p, t in zip(predictions, targets, strict=True))
            power = sum(float((p * p).sum()) for p in predictions)
        self.agreement = CALIBRATION_DECAY * self.agreement + agreement
        self.power = CALIBRATION_DECAY * self.power + power

    def state_dict(self) -> dict[str, Any]:
        """{"size", "module", "optimizer", "trials", "memory" (the replayed trials; none without replay),
        "calibration"} (empty before first use)."""
        if self.module is None:
            return {}
        return {"size": self.module.size, "module": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
                "trials": self.trials,
                "memory": [[list(x), list(t)] for x, t in self.memory] if self.memory.maxlen > 1 else [],
                "calibration": [self.agreement, self.power]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned (builds the module of the stored size)."""
        if not state:
            return
        like = next(iter(state["module"].values()))
        self.module = None
        self.build(int(state["size"]), like)
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(copy.deepcopy(state["optimizer"]))  # Adam would share the given moments
        self.trials = int(state.get("trials", 0))
        self.memory.clear()
        for inputs, goals in state.get("memory", []):
            self.memory.append((list(inputs), list(goals)))
        self.agreement, self.power = (float(v) for v in state.get("calibration", (0.0, 0.0)))


class FixedPredictions:
    """Given predictions, one (B, D) tensor per border m = 1..M−1 (the oracle: the true B·dE/ds^{t_m})."""

    def __init__(self, predictions: Sequence[torch.Tensor]) -> None:
        self.predictions = list(predictions)

    def predict(self, state: torch.Tensor, border: int) -> torch.Tensor:
        """The stored prediction for ``border`` (1-based); its shape must be the state's."""
        p = self.predictions[border - 1]
        if p.shape != state.shape:
            raise ValueError(f"the fixed prediction for border {border} has shape {tuple(p.shape)}, the border state "
                             f"{tuple(state.shape)}")
        return p


class ZeroPredictions:
    """SG = 0 at every border: truncated BPTT's learning signals (the negative control of e-prop 3)."""

    def predict(self, state: torch.Tensor, border: int) -> torch.Tensor:
        """Zeros like ``state``."""
        return torch.zeros_like(state)
