"""e-prop 3 (Bellec et al. 2019, arXiv 1901.09049): truncated BPTT's learning signals × eligibility traces.

The trial is cut into intervals of Δ steps (:mod:`l2l.rules.truncated_bptt`). Inside interval m the learning
signal is BPTT truncated at its borders, with a synthetic gradient SG_m ≈ B·dE/ds^{t_m} standing in for the
future at its far border:

    L^t = dÊ_m/dζ^t  (t ∈ I_m),      dE/dθ ≈ Σ_t L^t e^t,

where e^t are the eligibility traces of the whole trial (:mod:`l2l.traces`): they carry credit across the
borders to the weights used in earlier intervals, which truncated BPTT with synthetic gradients
(``tbptt_sg``) loses. The readout gets its exact gradient Σ_t δ^t F_κ(z)^t (its own trace, as in e-prop 1).

Exact: with SG_m the true B·dE/ds^{t_m}, L^t = dE/dζ^t and the gradient is BPTT's (Bellec eq. 1); with Δ ≥ T
there is no border and it is BPTT's too. With SG = 0 it is truncated BPTT's signals times the traces.
The synthetic gradient is trained online after every trial on bootstrapped targets
(:mod:`l2l.synthetic_gradient`).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from l2l.filters import reverse_exp_filter
from l2l.network import RecurrentNetwork
from l2l.rules.base import GradientResult, LossFn, readout_gradients
from l2l.rules.truncated_bptt import TBPTTSyntheticGradient
from l2l.traces import eligibility_gradient


class EProp3(TBPTTSyntheticGradient):
    """e-prop 3 for one recurrent layer (LIF, ALIF, LSTM, leaky RNN); options as :class:`TBPTTSyntheticGradient`:
    ``window`` Δ >= 1, ``synthetic_gradient`` (``learned`` | ``zero`` | a predictor), ``sg_lr``, ``sg_hidden``,
    ``sg_seed``, ``train_sg``, ``rate_regularization``."""

    name = "eprop3"

    def gradients(
        self,
        network: RecurrentNetwork,
        inputs: torch.Tensor,
        loss_fn: LossFn,
        params: Mapping[str, torch.Tensor] | None = None,
    ) -> GradientResult:
        result = self.run_pass(network, inputs, loss_fn, params, parameter_grads=False)
        with torch.no_grad():
            layer = eligibility_gradient(network.layers[0], result.trial.layers[0], inputs, result.signals)
            error = reverse_exp_filter(result.error, network.readout.kappa)  # Σ_t δ^t F_κ(z)^t = Σ_t F_κ^←(δ)^t z^t
            grads = {f"layers.0.{k}": v for k, v in layer.items()}
            grads.update(readout_gradients(error, result.trial.layers[0].z, network.readout.bias is not None))
        self.after_pass(result)
        return GradientResult(result.task_loss + result.reg_loss, result.task_loss, grads, result.trial)
