"""A stack of recurrent layers (any cell type) with a leaky readout, run over whole trials.

Weights may be shared, shape (n, m), or per task, shape (B, n, m): a batch of B
tasks each with its own copy (the inner loop's adapted weights). Both give the
same numbers as running the tasks one by one.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from l2l.cells import RecurrentCell, get_cell
from l2l.cells.base import recurrent_weight
from l2l.filters import exp_filter
from l2l.recurrent_input import RecurrentInput
from l2l.spike_input import input_projection
from l2l.spiking_trial import fusable, run_spiking_trial, shifted_spikes
from l2l.synapses import synaptic_input
from l2l.validation import require_positive, require_size


@dataclass
class LayerActivity:
    """One layer over one trial.

    z: (B, T, n) observable output; z_prev: (B, T, n) the recurrent presynaptic input z^{t-1}
    at each step (the initial state's z at t = 0); record: per-step quantities for the
    eligibility traces, each (B, T, ...); final_state: the cell state after the last step.
    """

    z: torch.Tensor
    z_prev: torch.Tensor
    record: dict[str, torch.Tensor] = field(default_factory=dict)
    final_state: Any = None


@dataclass
class Trial:
    """inputs (B, T, n_in), one LayerActivity per layer, output y (B, T, n_out). inputs is None where the
    first layer's input current was given instead (``RecurrentNetwork.run(input_current=...)``)."""

    inputs: torch.Tensor | None
    layers: list[LayerActivity]
    output: torch.Tensor

    def detached(self) -> Trial:
        """A copy with every tensor detached (results never hold autograd graphs)."""
        layers = [
            LayerActivity(a.z.detach(), a.z_prev.detach(), {k: v.detach() for k, v in a.record.items()}, a.final_state)
            for a in self.layers
        ]
        return Trial(self.inputs, layers, self.output.detach())


class LeakyReadout(nn.Module):
    """y^t = κ y^{t-1} + W_out z^t + b, κ = exp(−dt/τ_out). W_out (n_out, n) ~ scale·N(0, 1)/√n."""

    def __init__(self, n: int, n_out: int, tau_out: float = 20.0, dt: float = 1.0, bias: bool = True,
                 init_scale: float = 1.0) -> None:
        super().__init__()
        require_size("n_out", n_out)
        require_positive("tau_out", tau_out)
        require_positive("dt", dt)
        self.tau_out, self.dt = tau_out, dt
        self.w_out = nn.Parameter(init_scale * torch.randn(n_out, n) / math.sqrt(n))
        self.bias = nn.Parameter(torch.zeros(n_out)) if bias else None

    @property
    def kappa(self) -> float:
        """Readout decay per step."""
        return math.exp(-self.dt / self.tau_out)


def simulate_layer(
    cell: RecurrentCell,
    inputs: torch.Tensor,
    w_in: torch.Tensor,
    w_rec: torch.Tensor,
    bias: torch.Tensor | None,
    *,
    initial_state: Any = None,
    detach_recurrent: bool = False,
    zeta: torch.Tensor | None = None,
    record: bool = False,
    input_current: torch.Tensor | None = None,
) -> LayerActivity:
    """Run one layer over a trial. inputs (B, T, m) -> LayerActivity with z (B, T, n).

    ``detach_recurrent`` cuts z^{t-1} where it enters the recurrent input and the reset (the
    e-prop oracle); ``zeta`` (B, T, n), zeros requiring grad, is added to the output as it leaves
    the neuron so that autograd yields the total derivative dE/dz^t of BPTT. ``input_current``
    (T, B, n), time-major, is W_in x^t given directly: inputs and w_in are then not used.
    """
    model, p = cell.model, cell.params
    if input_current is not None:
        steps, batch = input_current.shape[:2]
        like = input_current
    else:
        batch, steps = inputs.shape[:2]
        like = inputs
    if model.trial_constants is not None and fusable():
        return _simulate_fused(cell, inputs, w_in, w_rec, bias, initial_state, detach_recurrent, zeta, record,
                               input_current)
    if input_current is not None:
        current_in = input_current + bias if bias is not None else input_current
        currents = current_in.unbind(0)
    else:
        current_in = synaptic_input(inputs, w_in)
        if bias is not None:
            current_in = current_in + (bias.unsqueeze(1) if bias.dim() == 2 else bias)
        # unbind, not current_in[:, t]: one backward node for all steps (indexing would add a (B, T, n)
        # zero-filled gradient per step, O(T²) work)
        currents = current_in.unbind(1)
    recurrent = RecurrentInput(recurrent_weight(w_rec, p))
    state = initial_state if initial_state is not None else cell.init_state(batch, like.dtype, like.device)
    zs, records = [state.z], []
    offsets = zeta.unbind(1) if zeta is not None else None
    for t in range(steps):
        z_prev = zs[-1].detach() if detach_recurrent and t > 0 else zs[-1]
        current = recurrent.add_to(currents[t], z_prev)
        z, state, rec = model.dynamics(current, z_prev, state, p, record)
        if offsets is not None:
            z = z + offsets[t]
        zs.append(z)
        records.append(rec)
    # one copy for z and z^{t-1} (views of the same (T+1, B, n) buffer), time-major stacking is contiguous
    both = torch.stack(zs, 0)
    z_prev = torch.cat([both[:1], both[1:-1].detach()]) if detach_recurrent else both[:-1]
    recorded = {}
    if record:  # stacked time-major (contiguous copies), finished once, handed out as (B, T, ...) views
        finished = model.finish_record({k: torch.stack([r[k] for r in records], 0) for k in records[0]}, p)
        recorded = {k: v.transpose(0, 1) for k, v in finished.items()}
    return LayerActivity(both[1:].transpose(0, 1), z_prev.transpose(0, 1), recorded, state)


def _simulate_fused(cell: RecurrentCell, inputs: torch.Tensor | None, w_in: torch.Tensor | None,
                    w_rec: torch.Tensor, bias: torch.Tensor | None, initial_state: Any, detach_recurrent: bool,
                    zeta: torch.Tensor | None, record: bool, input_current: torch.Tensor | None) -> LayerActivity:
    """:func:`simulate_layer` for a spiking cell through the fused trial (:mod:`l2l.spiking_trial`)."""
    model, p = cell.model, cell.params
    if input_current is not None:
        current = input_current
    elif w_in.dim() == 2:  # time-major (T, B, n) directly
        current = input_projection(inputs, w_in)
    else:
        current = synaptic_input(inputs, w_in).transpose(0, 1).contiguous()
    if bias is not None:
        current = current + bias
    batch = current.shape[1]
    state = initial_state if initial_state is not None else cell.init_state(batch, current.dtype, current.device)
    fields = state._asdict()
    trial = run_spiking_trial(
        current, recurrent_weight(w_rec, p), model.trial_constants(p, cell.n, current), fields["v"],
        fields.get("a"), fields["z"], fields["refractory"],
        zeta.transpose(0, 1) if zeta is not None else None, detach_recurrent)
    final = {"v": trial.v, "a": trial.a, "z": trial.z_in, "refractory": trial.r}
    both = trial.z
    if detach_recurrent:
        z, z_prev = both[1:], torch.cat([both[:1], both[1:-1].detach()])
    else:
        z, z_prev = shifted_spikes(both)
    recorded = {}
    if record:
        finished = model.finish_record({"excess": trial.excess, "refractory": trial.refractory}, p)
        recorded = {k: v.transpose(0, 1) for k, v in finished.items()}
    return LayerActivity(z.transpose(0, 1), z_prev.transpose(0, 1), recorded,
                         model.state(**{k: final[k] for k in model.state._fields}))


class RecurrentNetwork(nn.Module):
    """L recurrent layers (cells ``lif``/``alif``/``lstm``/``rnn``, mixed allowed) and a leaky readout.

    Parameters are named ``layers.<l>.w_in``, ``layers.<l>.w_rec``, ``layers.<l>.bias`` (LSTM/RNN),
    ``readout.w_out`` and ``readout.bias``. ``run(inputs (B, T, n_in))`` returns a :class:`Trial`.
    """

    def __init__(
        self,
        n_in: int,
        hidden: int | Sequence[int],
        n_out: int,
        cell: str | Sequence[str] = "lif",
        cell_params: Any = None,
        tau_out: float = 20.0,
        dt: float = 1.0,
        readout_bias: bool = True,
        readout_init_scale: float = 1.0,
    ) -> None:
        super().__init__()
        require_size("n_in", n_in)
        sizes = [hidden] if isinstance(hidden, int) else list(hidden)
        if not sizes:
            raise ValueError("hidden=[] is not allowed: give at least one layer size")
        for l, n in enumerate(sizes):
            require_size(f"hidden[{l}]", n)
        cells = [cell] * len(sizes) if isinstance(cell, str) else list(cell)
        params = cell_params if isinstance(cell_params, (list, tuple)) else [cell_params] * len(sizes)
        if len(cells) != len(sizes) or len(params) != len(sizes):
            raise ValueError(
                f"cell={cell!r} / cell_params has {len(cells)}/{len(params)} entries but hidden={sizes!r} "
                f"has {len(sizes)} layers: give one per layer or a single one"
            )
        layers = []
        for l, (kind, n, p) in enumerate(zip(cells, sizes, params, strict=True)):
            layers.append(get_cell(kind, f"cell[{l}]").cell(n_in if l == 0 else sizes[l - 1], n, p))
        self.n_in, self.sizes, self.n_out = n_in, sizes, n_out
        self.layers = nn.ModuleList(layers)
        self.readout = LeakyReadout(sizes[-1], n_out, tau_out, dt, readout_bias, readout_init_scale)

    def parameter_dict(self) -> dict[str, torch.Tensor]:
        """The trainable tensors by name (the keys every learning rule returns gradients for)."""
        return dict(self.named_parameters())

    def check_inputs(self, inputs: torch.Tensor) -> None:
        """Raise ValueError unless inputs is (B, T, n_in) with B, T >= 1."""
        if inputs.dim() != 3 or inputs.shape[-1] != self.n_in or inputs.shape[0] < 1 or inputs.shape[1] < 1:
            raise ValueError(
                f"inputs has shape {tuple(inputs.shape)}: expected (B, T, n_in={self.n_in}) with B, T >= 1"
            )

    def run(
        self,
        inputs: torch.Tensor,
        params: Mapping[str, torch.Tensor] | None = None,
        *,
        detach_recurrent: bool = False,
        zeta: Sequence[torch.Tensor | None] | None = None,
        record: bool = False,
        initial_states: Sequence[Any] | None = None,
        input_current: torch.Tensor | None = None,
    ) -> Trial:
        """Simulate a trial. inputs (B, T, n_in); ``params`` overrides any named tensor (shared or per task).

        ``input_current`` (T, B, n_0), time-major: the first layer's W_in x^t computed by the caller (the error
        module forms it from its input pieces without concatenating them); ``inputs`` is then None.
        """
        own = self.parameter_dict()
        get = (lambda name: params.get(name, own.get(name))) if params is not None else own.get
        if input_current is None:
            self.check_inputs(inputs)
        else:
            width = get("layers.0.w_in").shape[-2]  # n, or 4n for an LSTM's gates
            if inputs is not None or input_current.dim() != 3 or input_current.shape[-1] != width:
                raise ValueError(f"input_current has shape {tuple(input_current.shape)} with inputs "
                                 f"{'given' if inputs is not None else 'None'}: expected (T, B, {width}) "
                                 "and inputs=None")
        x, activities = inputs, []
        for l, cell in enumerate(self.layers):
            activity = simulate_layer(
                cell, x, get(f"layers.{l}.w_in"), get(f"layers.{l}.w_rec"), get(f"layers.{l}.bias"),
                initial_state=initial_states[l] if initial_states is not None else None,
                detach_recurrent=detach_recurrent, zeta=zeta[l] if zeta is not None else None, record=record,
                input_current=input_current if l == 0 else None,
            )
            activities.append(activity)
            x = activity.z
        w_out = get("readout.w_out")
        if w_out.dim() == 2 and x.transpose(0, 1).is_contiguous():
            # the spikes are stored time-major (the fused trial, the step path's stack): the product on that storage,
            # no transposing copy forward or backward; the filter below takes its time-major path on the result
            drive = (x.transpose(0, 1) @ w_out.transpose(0, 1)).transpose(0, 1)
        else:
            drive = synaptic_input(x, w_out)
        b_out = get("readout.bias")
        if b_out is not None:
            drive = drive + (b_out.unsqueeze(1) if b_out.dim() == 2 else b_out)
        return Trial(inputs, activities, exp_filter(drive, self.readout.kappa))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        """inputs (B, T, n_in) -> readout y (B, T, n_out)."""
        return self.run(inputs).output
