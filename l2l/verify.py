"""``l2l-verify``: gradient identities in float64 on tiny networks (DESIGN §5, §6).

Each check is a row {"name", "rel_err", "tol", "ok"}; the command exits 1 if any row fails.
Spiking checks also fail when no neuron spiked (a check without spikes tests nothing).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch

from l2l.cells import ALIFParameters, LIFParameters, LSTMParameters, RNNParameters
from l2l.network import RecurrentNetwork
from l2l.regularization import RateRegularization
from l2l.rules import BPTT, RTRL, EProp
from l2l.traces import eligibility_gradient

CELL_NAMES = ("lif", "alif", "lstm", "rnn")
TOLERANCE = 1e-9


@dataclass
class Case:
    """A tiny float64 problem: network, inputs (B, T, n_in), target (B, T, n_out), regularizer."""

    network: RecurrentNetwork
    inputs: torch.Tensor
    target: torch.Tensor
    regularization: RateRegularization | None

    def loss(self, y: torch.Tensor) -> torch.Tensor:
        """Mean squared error, (B, T, n_out) -> scalar."""
        return 0.5 * ((y - self.target) ** 2).mean()


def cell_parameters(cell: str):
    """Parameters that make tiny networks spike, refract and adapt within 30 steps."""
    return {
        "lif": LIFParameters(tau_m=20.0, v_th=0.4, n_ref=2),
        "alif": ALIFParameters(tau_m=20.0, v_th=0.4, n_ref=2, tau_a=40.0, beta=0.6),
        "lstm": LSTMParameters(),
        "rnn": RNNParameters(tau=5.0),
    }[cell]


def make_case(cell: str, depth: int = 1, seed: int = 0, batch: int = 2, steps: int = 30, n_in: int = 4,
              n: int = 8, n_out: int = 2) -> Case:
    """Build a reproducible float64 case for ``cell`` with ``depth`` layers."""
    torch.manual_seed(seed)
    network = RecurrentNetwork(n_in, [n] * depth, n_out, cell=cell, cell_params=cell_parameters(cell), tau_out=10.0)
    network = network.double()
    g = torch.Generator().manual_seed(seed + 1)
    inputs = 1.5 * torch.rand(batch, steps, n_in, generator=g, dtype=torch.float64)
    target = torch.randn(batch, steps, n_out, generator=g, dtype=torch.float64)
    spiking = network.layers[0].model.spiking
    reg = RateRegularization(target_hz=20.0, weight=0.5) if spiking else None
    return Case(network, inputs, target, reg)


def relative_error(estimate: dict[str, torch.Tensor], reference: dict[str, torch.Tensor], keys: Iterable[str]) -> float:
    """‖a − b‖ / ‖b‖ over the concatenation of ``keys``; nan if the reference is zero."""
    keys = list(keys)
    a = torch.cat([estimate[k].flatten() for k in keys])
    b = torch.cat([reference[k].flatten() for k in keys])
    norm = b.norm().item()
    return (a - b).norm().item() / norm if norm > 0 else math.nan


def spike_count(case: Case) -> float:
    """Total spikes of a plain run (for the 'no spike, no test' rule)."""
    with torch.no_grad():
        return sum(a.z.sum().item() for a in case.network.run(case.inputs).layers)


def detached_autograd(case: Case) -> dict[str, torch.Tensor]:
    """The e-prop oracle: autograd with z^{t-1} detached in the recurrent input and the reset."""
    params = case.network.parameter_dict()
    trial = case.network.run(case.inputs, detach_recurrent=True)
    loss = case.loss(trial.output) + BPTT(case.regularization).regularization_loss(case.network, trial)
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return {k: g if g is not None else torch.zeros_like(p) for (k, p), g in zip(params.items(), grads, strict=True)}


def eprop_vs_autodiff(case: Case) -> float:
    estimate = EProp("symmetric", rate_regularization=case.regularization).gradients(
        case.network, case.inputs, case.loss
    )
    return relative_error(estimate.grads, detached_autograd(case), case.network.parameter_dict())


def rtrl_vs_bptt(case: Case) -> float:
    exact = BPTT(case.regularization).gradients(case.network, case.inputs, case.loss).grads
    forward = RTRL(case.regularization).gradients(case.network, case.inputs, case.loss).grads
    return relative_error(forward, exact, exact)


def factorization_vs_bptt(case: Case) -> float:
    """Σ_t (dE/dz^t from BPTT) · e^t against the BPTT gradient of the recurrent layer (Bellec eq. 1)."""
    network, (cell,) = case.network, case.network.layers
    batch, steps = case.inputs.shape[:2]
    zeta = torch.zeros(batch, steps, cell.n, dtype=torch.float64, requires_grad=True)
    trial = network.run(case.inputs, zeta=[zeta], record=True)
    loss = case.loss(trial.output) + BPTT(case.regularization).regularization_loss(network, trial)
    layer = {k: v for k, v in network.parameter_dict().items() if k.startswith("layers.0.")}
    *grads, dE_dz = torch.autograd.grad(loss, [*layer.values(), zeta])
    exact = {k.removeprefix("layers.0."): g for k, g in zip(layer, grads, strict=True)}
    factorized = eligibility_gradient(cell, trial.detached().layers[0], case.inputs, dE_dz)
    return relative_error(factorized, exact, exact)


CHECKS: dict[str, Callable[[Case], float]] = {
    "eprop_vs_autodiff": eprop_vs_autodiff,
    "rtrl_vs_bptt": rtrl_vs_bptt,
    "factorization_vs_bptt": factorization_vs_bptt,
}


def run_checks(cells: Iterable[str] = CELL_NAMES, checks: Iterable[str] | None = None) -> list[dict]:
    """Run every check for every cell; one row per (check, cell)."""
    rows = []
    for check in checks or CHECKS:
        for cell in cells:
            case = make_case(cell)
            started = time.perf_counter()
            err = CHECKS[check](case)
            row = {"name": f"{check}/{cell}", "rel_err": err, "tol": TOLERANCE, "ok": err <= TOLERANCE}
            if case.network.layers[0].model.spiking:
                row["spikes"] = spike_count(case)
                if row["spikes"] == 0:
                    row["ok"] = False
                    row["reason"] = "no neuron spiked: the check tests nothing"
            row["seconds"] = round(time.perf_counter() - started, 3)
            rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="l2l-verify", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help='print {"checks": [...]} as JSON')
    parser.add_argument("--cells", nargs="+", default=list(CELL_NAMES), choices=CELL_NAMES)
    parser.add_argument("--checks", nargs="+", default=list(CHECKS), choices=list(CHECKS))
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rows = run_checks(args.cells, args.checks)
    failed = [r for r in rows if not r["ok"]]
    if args.json:
        print(json.dumps({"checks": rows, "ok": not failed}, indent=2))
    else:
        for r in rows:
            print(f"{'ok  ' if r['ok'] else 'FAIL'} {r['name']:<34} rel_err={r['rel_err']:.2e} tol={r['tol']:.0e}"
                  + (f"  {r['reason']}" if "reason" in r else ""))
        print(f"{len(rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
