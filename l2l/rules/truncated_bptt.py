"""Truncated BPTT over intervals of Δ steps, without (``tbptt``) or with synthetic gradients (``tbptt_sg``).

The trial 0..T−1 is cut at the borders t_m = mΔ into intervals I_m = [t_{m−1}, t_m). The state handed across a
border, s^{t_m} (B, D), is detached: the next interval starts from a leaf. What it holds, per cell (n neurons):

* LIF: v, z; ALIF: v, a, z_self, z; LSTM: c, z; leaky RNN: v, z; and the readout y (n_out) for every cell.
  z is the spike (output) as it leaves the neuron at t_m − 1: it enters the recurrent input and the reset of
  the next interval. ALIF's adaptation reads the neuron's own copy z_self instead (the split of
  docs/verification.md); the next interval is started with a = a + (z_self − z)/ρ, so that its first step
  computes ρ·a + z_self (equal values: z_self = z) with the derivative of z_self, not of z, on that path.
  The refractory counter is carried too; it has no derivative.

Interval m's truncated objective is linear in what the whole trial's loss says about each step,

    Ê_m = Σ_{t∈I_m} ⟨δ^t, y^t⟩ + ⟨r^t, z^t⟩ + ⟨SG_m / B, s^{t_m}⟩,   δ^t = ∂E/∂y^t, r^t = ∂E_reg/∂z^t,

with SG_m a prediction of B·dE/ds^{t_m} (zero for plain truncated BPTT, none after the last interval).
δ and r are taken from the whole trial's output (any loss function; for a loss that is a sum over time they
are what an online implementation has at step t). Gradients: tbptt and tbptt_sg Σ_m dÊ_m/dθ through
interval m only; e-prop 3 (:mod:`l2l.rules.eprop3`) reads the learning signals L^t = dÊ_m/dζ^t instead.
With SG_m the true B·dE/ds^{t_m} (:func:`border_adjoints`) both equal BPTT; with Δ ≥ T there is no border.
Memory here is that of BPTT (every interval's graph is kept until δ is known); the arithmetic is the online one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

from l2l.cells import cells_with_border_state, get_cell
from l2l.filters import exp_filter
from l2l.network import LayerActivity, RecurrentNetwork, Trial, simulate_layer
from l2l.regularization import RateRegularization
from l2l.rules.base import GradientResult, LearningRule, LossFn, output_error
from l2l.synapses import synaptic_input
from l2l.synthetic_gradient import (
    FixedPredictions,
    OnlineSyntheticGradient,
    Predictor,
    ZeroPredictions,
    gradient_quality,
)
from l2l.validation import InvalidValueError, require_choice, require_nonnegative_int, require_size

SG_KINDS = ("learned", "zero", "oracle")


def state_fields(cell_name: str) -> tuple[str, ...]:
    """The differentiable within-neuron fields of the border state, before z (output) and y (readout): the cell
    registry's ``border_state`` (l2l.cells.CellEntry)."""
    return get_cell(cell_name).border_state


def check_network(rule: str, network: RecurrentNetwork) -> None:
    """ValueError unless the network is one recurrent layer of a cell with a border state."""
    cells = [c.model.name for c in network.layers]
    if len(cells) != 1 or cells[0] not in cells_with_border_state():
        raise ValueError(f"network cells={cells} is not allowed with rule {rule}: it takes one recurrent layer of "
                         f"cell {', '.join(cells_with_border_state())}")


def intervals(steps: int, window: int) -> list[slice]:
    """[0, Δ), [Δ, 2Δ), …, the last one ending at T."""
    return [slice(t0, min(t0 + window, steps)) for t0 in range(0, steps, window)]


def state_size(network: RecurrentNetwork) -> int:
    """D of the border state: n·(fields + 1) + n_out."""
    cell = network.layers[0]
    return cell.n * (len(state_fields(cell.model.name)) + 1) + network.n_out


def border_vector(cell_name: str, state: Any, z_out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """s = [fields…, z, y]: (B, D) from the cell state after an interval, the output spike z (B, n) of its last
    step (with ζ) and the readout y (B, n_out)."""
    parts = [state.z if f == "z_self" else getattr(state, f) for f in state_fields(cell_name)]
    return torch.cat([*parts, z_out, y], dim=-1)


def split_border(cell, vector: torch.Tensor, carried: Any) -> tuple[Any, torch.Tensor]:
    """The initial cell state and readout y0 (B, n_out) of the next interval from s (B, D); ``carried`` (the
    previous interval's final state) gives the fields without derivative (the refractory counter)."""
    name, n = cell.model.name, cell.n
    fields = state_fields(name)
    parts = {f: vector[:, k * n:(k + 1) * n] for k, f in enumerate(fields)}
    z = vector[:, len(fields) * n:(len(fields) + 1) * n]
    y0 = vector[:, (len(fields) + 1) * n:]
    values = carried._asdict()
    values.update({f: v for f, v in parts.items() if f != "z_self"})
    values["z"] = z
    if name == "alif":  # first step: a = ρ·a_init + z = ρ·a + z_self (module docstring)
        values["a"] = parts["a"] + (parts["z_self"] - z) / cell.params.rho
    return type(carried)(**values), y0


@dataclass
class Interval:
    """One interval's graph: its leaf initial state (None for the first), ζ (B, T_m, n), the recorded activity,
    the readout y (B, T_m, n_out) and the border state at its end s (B, D), all still attached."""

    start: torch.Tensor | None
    zeta: torch.Tensor
    activity: LayerActivity
    output: torch.Tensor
    end: torch.Tensor


def simulate_intervals(network: RecurrentNetwork, inputs: torch.Tensor, params: Mapping[str, torch.Tensor],
                       window: int, connected: bool = False) -> list[Interval]:
    """The trial interval by interval (graphs kept). ``connected=False``: each interval starts from a detached
    leaf (truncation); True: from the previous end plus a zero leaf ξ (``start``), so that d/dξ is the true
    adjoint of the border state."""
    cell = network.layers[0]
    get = lambda name: params.get(name)  # noqa: E731
    w_in, w_rec, bias = get("layers.0.w_in"), get("layers.0.w_rec"), get("layers.0.bias")
    w_out, b_out = get("readout.w_out"), get("readout.bias")
    if b_out is not None and b_out.dim() == 2:
        b_out = b_out.unsqueeze(1)
    batch = inputs.shape[0]
    pieces: list[Interval] = []
    for span in intervals(inputs.shape[1], window):
        x = inputs[:, span]
        zeta = torch.zeros(batch, x.shape[1], cell.n, dtype=inputs.dtype, device=inputs.device, requires_grad=True)
        start, state0, y0 = None, None, None
        if pieces:
            previous = pieces[-1]
            if connected:
                start = torch.zeros_like(previous.end, requires_grad=True)
                vector = previous.end + start
            else:
                start = previous.end.detach().requires_grad_(True)
                vector = start
            state0, y0 = split_border(cell, vector, previous.activity.final_state)
        activity = simulate_layer(cell, x, w_in, w_rec, bias, initial_state=state0, zeta=zeta, record=True)
        drive = synaptic_input(activity.z, w_out)
        if b_out is not None:
            drive = drive + b_out
        y = exp_filter(drive, network.readout.kappa, y0)
        end = border_vector(cell.model.name, activity.final_state, activity.z[:, -1], y[:, -1])
        pieces.append(Interval(start, zeta, activity, y, end))
    return pieces


def whole_trial(inputs: torch.Tensor, pieces: list[Interval]) -> Trial:
    """The intervals joined into one detached, recorded trial: z, z_prev (B, T, n), records, output (B, T, n_out)."""
    acts = [p.activity for p in pieces]
    record = {k: torch.cat([a.record[k].detach() for a in acts], 1) for k in acts[0].record}
    final = type(acts[-1].final_state)(*(f.detach() for f in acts[-1].final_state))
    layer = LayerActivity(torch.cat([a.z.detach() for a in acts], 1), torch.cat([a.z_prev.detach() for a in acts], 1),
                          record, final)
    return Trial(inputs, [layer], torch.cat([p.output.detach() for p in pieces], 1))


@dataclass
class TruncatedPass:
    """What one truncated pass computes.

    trial: the whole trial (detached, recorded); task_loss, reg_loss: scalars; error δ (B, T, n_out);
    signals L^t = dÊ_m/dζ^t (B, T, n); grads: Σ_m dÊ_m/dθ by parameter name (empty unless asked);
    states s^{t_m}, predictions SG_m and targets B·dÊ_{m+1}/ds^{t_m}, each (B, D), for the borders m = 1..M−1.
    """

    trial: Trial
    task_loss: torch.Tensor
    reg_loss: torch.Tensor
    error: torch.Tensor
    signals: torch.Tensor
    grads: dict[str, torch.Tensor]
    states: list[torch.Tensor]
    predictions: list[torch.Tensor]
    targets: list[torch.Tensor]


def truncated_pass(network: RecurrentNetwork, inputs: torch.Tensor, loss_fn: LossFn,
                   params: Mapping[str, torch.Tensor], window: int, predictor: Predictor,
                   regularization: RateRegularization | None, parameter_grads: bool,
                   target_lambda: float = 0.0) -> TruncatedPass:
    """One trial: the forward pass by intervals, then each interval's truncated backward pass (module docstring),
    from the last interval to the first.

    The learning signals use the predictor's SG at each far border (zeros while a learned SG is warming up).
    The SG's training targets use the λ-mixed far-border term λ·target + (1 − λ)·SG (``target_lambda`` = λ;
    :mod:`l2l.synthetic_gradient`); with λ = 0 and no warm-up both objectives are one and one backward pass serves."""
    batch = inputs.shape[0]
    with torch.enable_grad():
        pieces = simulate_intervals(network, inputs, params, window)
    trial = whole_trial(inputs, pieces)
    task_loss, delta = output_error(loss_fn, trial.output)
    reg_loss, reg_signal = task_loss.new_zeros(()), None
    if regularization is not None and network.layers[0].model.spiking:
        reg_loss = regularization.loss(trial.layers[0].z)
        reg_signal = regularization.gradient_wrt_spikes(trial.layers[0].z)
    states = [p.end.detach() for p in pieces[:-1]]
    predictions = [predictor.predict(s, m + 1) for m, s in enumerate(states)]
    used = [torch.zeros_like(p) for p in predictions] if getattr(predictor, "warming_up", False) else predictions
    names = [k for k, v in params.items() if v.requires_grad] if parameter_grads else []
    spans = intervals(inputs.shape[1], window)
    signals: list[torch.Tensor] = [None] * len(pieces)
    targets: list[torch.Tensor] = [None] * len(states)
    per_interval: list[tuple[torch.Tensor | None, ...]] = [()] * len(pieces)
    for m in reversed(range(len(pieces))):
        piece, span = pieces[m], spans[m]
        far = m < len(states)
        with torch.enable_grad():
            local = (delta[:, span] * piece.output).sum()
            if reg_signal is not None:
                local = local + (reg_signal[:, span] * piece.activity.z).sum()
            objective = local + (used[m] * piece.end).sum() / batch if far else local
            mix = None
            if far and (target_lambda != 0.0 or used is not predictions):
                mix = target_lambda * targets[m] + (1.0 - target_lambda) * predictions[m]
            separate = mix is not None and piece.start is not None
            wrt = [piece.zeta, *([piece.start] if piece.start is not None and not separate else []),
                   *(params[k] for k in names)]
            got = torch.autograd.grad(objective, wrt, allow_unused=True, retain_graph=separate)
            if separate:
                (start_grad,) = torch.autograd.grad(local + (mix * piece.end).sum() / batch, [piece.start])
        signals[m] = got[0]
        if piece.start is not None:
            targets[m - 1] = batch * (start_grad if separate else got[1])
        per_interval[m] = got[1 + (piece.start is not None and not separate):]
    grads = {k: torch.zeros_like(v) for k, v in params.items()} if parameter_grads else {}
    for got in per_interval:                   # summed in interval order (as the forward-order loop summed them)
        for k, g in zip(names, got, strict=True):
            if g is not None:
                grads[k] = grads[k] + g
    return TruncatedPass(trial, task_loss, reg_loss, delta, torch.cat(signals, 1), grads, states, predictions,
                         targets)


def border_adjoints(network: RecurrentNetwork, inputs: torch.Tensor, loss_fn: LossFn, window: int,
                    regularization: RateRegularization | None = None,
                    params: Mapping[str, torch.Tensor] | None = None) -> list[torch.Tensor]:
    """The true B·dE/ds^{t_m} (B, D) for every border (BPTT through the whole trial): the perfect synthetic
    gradient, for verification (:class:`l2l.synthetic_gradient.FixedPredictions`)."""
    params = dict(params) if params is not None else network.parameter_dict()
    with torch.enable_grad():
        pieces = simulate_intervals(network, inputs, params, window, connected=True)
        if len(pieces) == 1:
            return []
        y = torch.cat([p.output for p in pieces], 1)
        loss = loss_fn(y)
        if regularization is not None and network.layers[0].model.spiking:
            loss = loss + regularization.loss([p.activity.z for p in pieces])
        adjoints = torch.autograd.grad(loss, [p.start for p in pieces[1:]])
    return [inputs.shape[0] * a for a in adjoints]


class OraclePredictions:
    """The true border gradients of each trial (BPTT through the whole trial): the upper bound of any synthetic
    gradient. The rule computes them per trial (:func:`border_adjoints`); ``predict`` then returns them."""

    def __init__(self) -> None:
        self.current = FixedPredictions([])

    def predict(self, state: torch.Tensor, border: int) -> torch.Tensor:
        return self.current.predict(state, border)


def make_predictor(synthetic_gradient: str | Predictor, sg_lr: float, sg_hidden: int, sg_seed: int,
                   train_sg: bool, sg_time: bool = False, sg_warmup: int = 0, sg_steps: int = 1, sg_replay: int = 0,
                   sg_calibrate: bool = False) -> Predictor:
    """``learned`` (an :class:`OnlineSyntheticGradient`), ``zero``, ``oracle``, or any object with ``predict``."""
    if isinstance(synthetic_gradient, str):
        require_choice("synthetic_gradient", synthetic_gradient, SG_KINDS)
        if synthetic_gradient == "zero":
            return ZeroPredictions()
        if synthetic_gradient == "oracle":
            return OraclePredictions()
        return OnlineSyntheticGradient(lr=sg_lr, hidden=sg_hidden, seed=sg_seed, learn=train_sg, time_input=sg_time,
                                       warmup=sg_warmup, steps=sg_steps, replay=sg_replay, calibrate=sg_calibrate)
    if not callable(getattr(synthetic_gradient, "predict", None)):
        raise InvalidValueError("synthetic_gradient", synthetic_gradient, f": choose one of {list(SG_KINDS)} "
                                "or pass an object with predict(state, border)")
    return synthetic_gradient


class TBPTT(LearningRule):
    """Truncated BPTT: the gradient of each interval's loss through that interval only (SG = 0)."""

    name = "tbptt"

    def __init__(self, window: int = 10, rate_regularization: RateRegularization | None = None) -> None:
        super().__init__(rate_regularization)
        require_size("window", window)
        self.window = window
        self.predictor: Predictor = ZeroPredictions()
        self.target_lambda = 0.0

    def run_pass(self, network: RecurrentNetwork, inputs: torch.Tensor, loss_fn: LossFn,
                 params: Mapping[str, torch.Tensor] | None, parameter_grads: bool) -> TruncatedPass:
        """Check the network and inputs, then :func:`truncated_pass` with this rule's predictor."""
        check_network(self.name, network)
        network.check_inputs(inputs)
        params = {**network.parameter_dict(), **params} if params is not None else network.parameter_dict()
        self.before_pass(network, inputs, loss_fn, params)
        result = truncated_pass(network, inputs, loss_fn, params, self.window, self.predictor,
                                self.rate_regularization, parameter_grads, self.target_lambda)
        self.measure(network, inputs, loss_fn, params, result)
        return result

    def before_pass(self, network: RecurrentNetwork, inputs: torch.Tensor, loss_fn: LossFn,
                    params: Mapping[str, torch.Tensor]) -> None:
        """Hook before each trial (the synthetic gradient's trial length, the oracle's true border gradients)."""

    def measure(self, network: RecurrentNetwork, inputs: torch.Tensor, loss_fn: LossFn,
                params: Mapping[str, torch.Tensor], result: TruncatedPass) -> None:
        """Hook after each pass, before the SG's update (the SG quality measurement)."""

    def gradients(
        self,
        network: RecurrentNetwork,
        inputs: torch.Tensor,
        loss_fn: LossFn,
        params: Mapping[str, torch.Tensor] | None = None,
    ) -> GradientResult:
        result = self.run_pass(network, inputs, loss_fn, params, parameter_grads=True)
        self.after_pass(result)
        return GradientResult(result.task_loss + result.reg_loss, result.task_loss, result.grads, result.trial)

    def after_pass(self, result: TruncatedPass) -> None:
        """Hook after each trial (the synthetic gradient's online update in the subclasses)."""


class TBPTTSyntheticGradient(TBPTT):
    """Truncated BPTT with a synthetic gradient at every border (Jaderberg et al. 2016), no eligibility traces.

    ``synthetic_gradient``: ``learned`` (linear, or ``sg_hidden`` tanh units; Adam with ``sg_lr``; trained online on
    the bootstrapped targets after every trial unless ``train_sg=False``; initial weights from ``sg_seed``), ``zero``,
    ``oracle`` (the true border gradients of each trial, from a BPTT pass: the upper bound), or a
    :class:`~l2l.synthetic_gradient.Predictor`. A learned SG's options: ``sg_time`` (the border's time and the time
    left as inputs), ``sg_warmup`` (trials it learns before its predictions are used), ``sg_lambda`` (λ of its
    λ-mixed targets, 0 = bootstrapped, 1 = the true future gradient), ``sg_steps`` (Adam steps per trial),
    ``sg_replay`` (earlier trials each step also fits), ``sg_calibrate`` (predictions scaled by their out-of-sample
    least-squares scale, clipped at 0; :mod:`l2l.synthetic_gradient`). ``sg_quality_every`` N > 0: every N trials
    the predictions are scored against the true border gradients (a BPTT pass on the same batch): ``metrics()``
    gives ``sg_cosine`` and ``sg_r2`` (:func:`~l2l.synthetic_gradient.gradient_quality`). ``state_dict()`` holds
    the learned module and its optimizer.
    """

    name = "tbptt_sg"

    def __init__(self, window: int = 10, synthetic_gradient: str | Predictor = "learned", sg_lr: float = 1e-3,
                 sg_hidden: int = 0, sg_seed: int | None = None, train_sg: bool = True, sg_time: bool = False,
                 sg_warmup: int = 0, sg_lambda: float = 0.0, sg_quality_every: int = 0, sg_steps: int = 1,
                 sg_replay: int = 0, sg_calibrate: bool = False,
                 rate_regularization: RateRegularization | None = None) -> None:
        super().__init__(window, rate_regularization)
        self.predictor = make_predictor(synthetic_gradient, sg_lr, sg_hidden, 0 if sg_seed is None else sg_seed,
                                        train_sg, sg_time, sg_warmup, sg_steps, sg_replay, sg_calibrate)
        if not (isinstance(sg_lambda, (int, float)) and 0.0 <= sg_lambda <= 1.0):
            raise InvalidValueError("sg_lambda", sg_lambda, ": it must be a number in [0, 1]")
        require_nonnegative_int("sg_quality_every", sg_quality_every)
        self.target_lambda, self.quality_every = float(sg_lambda), sg_quality_every
        self.passes = 0
        self.quality: dict[str, float] = {}

    def before_pass(self, network: RecurrentNetwork, inputs: torch.Tensor, loss_fn: LossFn,
                    params: Mapping[str, torch.Tensor]) -> None:
        """The learned SG's trial length (time input); the oracle's true border gradients of this trial."""
        if isinstance(self.predictor, OnlineSyntheticGradient):
            self.predictor.begin_trial(inputs.shape[1], self.window)
        if isinstance(self.predictor, OraclePredictions):
            self.predictor.current = FixedPredictions(
                border_adjoints(network, inputs, loss_fn, self.window, self.rate_regularization, params))

    def measure(self, network: RecurrentNetwork, inputs: torch.Tensor, loss_fn: LossFn,
                params: Mapping[str, torch.Tensor], result: TruncatedPass) -> None:
        """Every ``sg_quality_every`` passes: the predictions of this pass against the true border gradients."""
        self.passes += 1
        if self.quality_every and (self.passes - 1) % self.quality_every == 0 and result.states:
            if isinstance(self.predictor, OraclePredictions):      # computed for this trial already
                truths = self.predictor.current.predictions
            else:
                truths = border_adjoints(network, inputs, loss_fn, self.window, self.rate_regularization, params)
            self.quality = gradient_quality(result.predictions, truths)

    def after_pass(self, result: TruncatedPass) -> None:
        """One online step of a learned synthetic gradient on this trial's bootstrapped targets."""
        if isinstance(self.predictor, OnlineSyntheticGradient):
            self.predictor.update(result.states, result.targets)

    def state_dict(self) -> dict[str, Any]:
        """{"synthetic_gradient": module, optimizer, size} for a learned SG, else {}."""
        if isinstance(self.predictor, OnlineSyntheticGradient):
            return {"synthetic_gradient": self.predictor.state_dict()}
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        if isinstance(self.predictor, OnlineSyntheticGradient) and state.get("synthetic_gradient"):
            self.predictor.load_state_dict(state["synthetic_gradient"])

    def metrics(self) -> dict[str, float]:
        """``sg_loss``: the synthetic gradient's loss on the last trial (before its update); ``sg_scale``: its
        calibration scale (with ``sg_calibrate``); ``sg_cosine``, ``sg_r2``:
        the last quality measurement (with ``sg_quality_every``, once measured)."""
        out = {"sg_loss": self.predictor.last_loss} if isinstance(self.predictor, OnlineSyntheticGradient) else {}
        if isinstance(self.predictor, OnlineSyntheticGradient) and self.predictor.calibrate:
            out["sg_scale"] = self.predictor.scale
        out.update({f"sg_{k}": v for k, v in self.quality.items()})
        return out
