"""Deep e-prop: e-prop for stacks of recurrent layers with deep eligibility traces.

The learning signal reaches the top layer (symmetric, random or adaptive feedback of the output
error, or supplied from outside, e.g. by an error module) and, optionally, every layer
(``local_feedback="random"``: broadcast of the output error through a fixed random matrix per
layer). Deep traces carry it across layers (``l2l.traces.deep``); ``across_layers=False`` turns
that off, leaving layer-local e-prop (a baseline). ``mode``:

- ``factorized`` (default): the deep-trace sum in factorized form, O(B·T·n·m), any cell and depth;
- ``online``: the traces stored forward (influence tensors with e-prop's Jacobians; = ``morder``
  with order 0), O(n³) per task, memory-budgeted; symmetric feedback only;
- ``exact``: full Jacobians and total derivatives, deep RTRL; equals BPTT.

With one layer and no local feedback it equals ``eprop``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from l2l.feedback import Feedback, RandomFeedback
from l2l.network import RecurrentNetwork
from l2l.regularization import RateRegularization
from l2l.rules.base import GradientResult, LossFn
from l2l.rules.eprop import EProp
from l2l.rules.influence import forward_influence
from l2l.rules.rtrl import RTRL
from l2l.synapses import synaptic_input
from l2l.traces.deep import deep_eligibility_gradients
from l2l.validation import InvalidValueError, require_choice

MODES = ("factorized", "online", "exact")


class DeepEProp(EProp):
    """e-prop with deep eligibility traces for L >= 1 recurrent layers."""

    name = "deep_eprop"

    def __init__(
        self,
        feedback: str | Feedback = "symmetric",
        mode: str = "factorized",
        local_feedback: str | None = None,
        rate_regularization: RateRegularization | None = None,
        per_task: bool = False,
        memory_budget_gib: float = 4.0,
        across_layers: bool = True,
        feedback_seed: int | None = None,
        **feedback_options,
    ) -> None:
        super().__init__(feedback, rate_regularization, per_task, feedback_seed, **feedback_options)
        require_choice("mode", mode, MODES)
        if local_feedback is not None:
            require_choice("local_feedback", local_feedback, ("random",))
        if mode != "factorized" and (self.feedback.name != "symmetric" or local_feedback or per_task):
            raise InvalidValueError(
                "mode", mode, f" with feedback={self.feedback.name!r}, "
                f"local_feedback={local_feedback!r}, per_task={per_task}: the forward modes use the exact "
                "readout path (symmetric feedback, shared weights)"
            )
        if mode != "factorized" and not across_layers:
            raise InvalidValueError("across_layers", False, f" with mode={mode!r}: only the factorized mode has it")
        self.mode, self.local_feedback, self.across_layers = mode, local_feedback, across_layers
        self.memory_budget_gib = memory_budget_gib
        self._local: dict[int, RandomFeedback] = {}

    def gradients(
        self,
        network: RecurrentNetwork,
        inputs: torch.Tensor,
        loss_fn: LossFn,
        params: Mapping[str, torch.Tensor] | None = None,
    ) -> GradientResult:
        params = dict(params) if params is not None else network.parameter_dict()
        if self.mode != "factorized":
            forward = RTRL(self.rate_regularization, self.memory_budget_gib)
            shared = {k: v.detach() for k, v in params.items()}
            influence = forward_influence(network, shared, inputs, 0 if self.mode == "online" else None,
                                          self.memory_budget_gib)
            return forward.result_from_influence(network, shared, inputs, loss_fn, influence)
        with torch.no_grad():
            trial = network.run(inputs, params, record=True)
        out = self.readout_signals(network, params, trial, loss_fn)
        if self.local_feedback is not None:
            for k in range(len(network.layers) - 1):
                feedback = self._local.setdefault(k, RandomFeedback(seed=1000 + k))
                local = synaptic_input(out.error, feedback.fixed(network.layers[k].n, network.n_out, out.error))
                out.signals[k] = local if out.signals[k] is None else out.signals[k] + local
        with torch.no_grad():
            grads = deep_eligibility_gradients(network, trial, out.signals, params, self.per_task, self.across_layers)
        grads.update(out.readout_grads)
        return GradientResult(out.task_loss + out.reg_loss, out.task_loss, grads, trial)
