"""``l2l-verify``: gradient identities in float64 on tiny networks (docs/verification.md).

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

from l2l.cells import CELLS, cell_names, cells_with_border_state
from l2l.command_line import CommandParser
from l2l.network import RecurrentNetwork
from l2l.regularization import RateRegularization
from l2l.rules import BPTT, RTRL, DeepEProp, EProp, EProp3, LearningRule, MOrder
from l2l.rules.truncated_bptt import border_adjoints, intervals
from l2l.synthetic_gradient import FixedPredictions
from l2l.traces import eligibility_gradient

CELL_NAMES = cell_names()
"""The built-in cells (every registered cell is checked: :func:`run_checks` reads the registry)."""
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
    """Parameters that make tiny networks spike, refract and adapt within 30 steps (the registry's)."""
    return CELLS[cell].verify_parameters


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
    """max over tensors of ‖a − b‖ / ‖b‖ (a per-tensor maximum, so exact readout gradients cannot dilute
    an error in the recurrent weights); a tensor whose reference is zero counts only if the estimate is not."""
    worst = 0.0
    for k in keys:
        diff, norm = (estimate[k] - reference[k]).norm().item(), reference[k].norm().item()
        if norm > 0:
            worst = max(worst, diff / norm)
        elif diff > 0:
            return math.inf
    return worst


def spike_counts(case: Case) -> list[float]:
    """Spikes per layer in a plain run (for the 'no spike, no test' rule)."""
    with torch.no_grad():
        return [a.z.sum().item() for a in case.network.run(case.inputs).layers]


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


def fused_trial_vs_step(case: Case) -> float:
    """The fused trial (:mod:`l2l.spiking_trial`) against the step-by-step simulation: BPTT gradients of the loss
    plus a term in ψ (what the inner loop's update reads) and dE/dz^t through ζ, per task weights and shared."""
    import l2l.spiking_trial as spiking_trial

    network = case.network
    batch, steps = case.inputs.shape[:2]
    psi_weight = torch.linspace(-1.0, 1.0, steps, dtype=torch.float64)[None, :, None]

    def gradients() -> dict[str, torch.Tensor]:
        zetas = [torch.zeros(batch, steps, c.n, dtype=torch.float64, requires_grad=True) for c in network.layers]
        params = network.parameter_dict()
        per_task = {k: v.expand(batch, *v.shape) * 1.0 for k, v in params.items() if k.endswith("w_rec")}
        trial = network.run(case.inputs, per_task, zeta=zetas, record=True)
        loss = case.loss(trial.output) + sum((a.record["psi"] * psi_weight).sum() for a in trial.layers)
        grads = torch.autograd.grad(loss, [*params.values(), *zetas])
        return dict(zip([*params, *(f"zeta{k}" for k in range(len(zetas)))], grads, strict=True))

    fused = gradients()
    spiking_trial.FUSED = False
    try:
        plain = gradients()
    finally:
        spiking_trial.FUSED = True
    return relative_error(fused, plain, plain)


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


def deep_eprop_vs_autodiff(case: Case) -> float:
    estimate = DeepEProp("symmetric", rate_regularization=case.regularization).gradients(
        case.network, case.inputs, case.loss
    )
    return relative_error(estimate.grads, detached_autograd(case), case.network.parameter_dict())


EPROP3_WINDOW = 7  # T = 30: borders at 7, 14, 21, 28 (a short last interval)
NEGATIVE_CONTROL_MIN_DISTANCE = 0.1
"""e-prop 3 with SG = 0 must differ from BPTT by at least this relative error (measured 0.61-0.73)."""


def eprop3_oracle_vs_bptt(case: Case) -> float:
    """e-prop 3 with the perfect synthetic gradient (the true B·dE/ds^{t_m} at each border) = BPTT."""
    adjoints = border_adjoints(case.network, case.inputs, case.loss, EPROP3_WINDOW, case.regularization)
    rule = EProp3(EPROP3_WINDOW, FixedPredictions(adjoints), rate_regularization=case.regularization)
    return rule_pair(lambda reg: rule, lambda reg: BPTT(reg))(case)


def eprop3_window_ge_t_vs_bptt(case: Case) -> float:
    """e-prop 3 with Δ = T: no border, no synthetic gradient asked for (an empty predictor), = BPTT."""
    rule = EProp3(case.inputs.shape[1], FixedPredictions([]), rate_regularization=case.regularization)
    return rule_pair(lambda reg: rule, lambda reg: BPTT(reg))(case)


def truncated_signals_times_traces(case: Case, window: int) -> dict[str, torch.Tensor]:
    """The negative control's oracle, from one plain run: L^t = d(interval m's loss)/dζ^t for t in interval m
    (within the interval: its loss terms lie before its end), times the traces; the readout's BPTT gradient."""
    network, (cell,) = case.network, case.network.layers
    batch, steps = case.inputs.shape[:2]
    zeta = torch.zeros(batch, steps, cell.n, dtype=torch.float64, requires_grad=True)
    trial = network.run(case.inputs, zeta=[zeta], record=True)
    reg_signal = (case.regularization.gradient_wrt_spikes(trial.layers[0].z.detach())
                  if case.regularization is not None else None)
    signal = torch.zeros_like(zeta)
    for span in intervals(steps, window):
        loss = 0.5 * ((trial.output[:, span] - case.target[:, span]) ** 2).sum() / case.target.numel()
        if reg_signal is not None:
            loss = loss + (reg_signal[:, span] * trial.layers[0].z[:, span]).sum()
        (g,) = torch.autograd.grad(loss, zeta, retain_graph=True)
        signal[:, span] = g[:, span]
    layer = eligibility_gradient(cell, trial.detached().layers[0], case.inputs, signal)
    readout = BPTT(case.regularization).gradients(network, case.inputs, case.loss).grads
    return {**{f"layers.0.{k}": v for k, v in layer.items()},
            **{k: v for k, v in readout.items() if k.startswith("readout.")}}


def eprop3_zero_sg_vs_truncated_traces(case: Case) -> tuple[float, dict]:
    """Negative control: e-prop 3 with SG = 0 = truncated-BPTT signals × traces, computed independently, and at
    least NEGATIVE_CONTROL_MIN_DISTANCE away from BPTT (else the row fails: the check would test nothing)."""
    got = EProp3(EPROP3_WINDOW, "zero", rate_regularization=case.regularization).gradients(
        case.network, case.inputs, case.loss).grads
    expected = truncated_signals_times_traces(case, EPROP3_WINDOW)
    exact = BPTT(case.regularization).gradients(case.network, case.inputs, case.loss).grads
    distance = relative_error(got, exact, exact)
    extra: dict = {"distance_to_bptt": distance, "min_distance": NEGATIVE_CONTROL_MIN_DISTANCE}
    if distance < NEGATIVE_CONTROL_MIN_DISTANCE:
        extra["reason"] = f"SG = 0 came within {distance:.2e} of BPTT: the negative control tests nothing"
    return relative_error(got, expected, expected), extra


@dataclass(frozen=True)
class Check:
    """A named identity: ``compare(case)`` returns the relative error on a case of this depth and length (or the
    error and further row fields; a ``"reason"`` among them fails the row)."""

    name: str
    compare: Callable[[Case], float | tuple[float, dict]]
    depth: int = 1
    steps: int = 30
    hidden: int = 8


def rule_pair(estimate: Callable[[RateRegularization | None], LearningRule],
              reference: Callable[[RateRegularization | None], LearningRule]) -> Callable[[Case], float]:
    """Compare two rules (built with the case's regularizer) on the same case."""

    def compare(case: Case) -> float:
        exact = reference(case.regularization).gradients(case.network, case.inputs, case.loss).grads
        got = estimate(case.regularization).gradients(case.network, case.inputs, case.loss).grads
        return relative_error(got, exact, exact)

    return compare


ORDERMAX_STEPS = 10  # order T−1 keeps T influence tensors: a shorter trial and 6 neurons keep it fast


def checks_for(cell: str) -> list[Check]:
    """Every identity l2l-verify runs for one cell type."""
    def bptt(reg):
        return BPTT(rate_regularization=reg)

    def rtrl(reg):
        return RTRL(rate_regularization=reg)

    def symmetric(reg):
        return EProp("symmetric", rate_regularization=reg)

    def deep(mode):
        return lambda reg: DeepEProp("symmetric", mode=mode, rate_regularization=reg)

    factorized, online, exact = deep("factorized"), deep("online"), deep("exact")
    fused = CELLS[cell].cell.model.trial_constants is not None
    rows = [Check(f"fused_trial_vs_step/{cell}", fused_trial_vs_step),
            Check(f"fused_trial_vs_step/{cell}/depth2", fused_trial_vs_step, 2)] if fused else []
    rows += [
        Check(f"eprop_vs_autodiff/{cell}", eprop_vs_autodiff),
        Check(f"rtrl_vs_bptt/{cell}", rule_pair(rtrl, bptt)),
        Check(f"factorization_vs_bptt/{cell}", factorization_vs_bptt),
    ]
    for depth in (2, 3):
        rows += [
            Check(f"deep_eprop_vs_autodiff/{cell}/depth{depth}", deep_eprop_vs_autodiff, depth),
            Check(f"deep_exact_vs_bptt/{cell}/depth{depth}", rule_pair(exact, bptt), depth),
            Check(f"deep_online_vs_factorized/{cell}/depth{depth}", rule_pair(online, factorized), depth),
        ]
    rows += [
        Check(f"deep_eprop_vs_eprop/{cell}", rule_pair(factorized, symmetric)),
        Check(f"order0_vs_eprop/{cell}", rule_pair(lambda reg: MOrder(0, reg), symmetric)),
        Check(f"ordermax_vs_rtrl/{cell}", rule_pair(lambda reg: MOrder(ORDERMAX_STEPS - 1, reg), rtrl),
              steps=ORDERMAX_STEPS, hidden=6),
        Check(f"ordermax_vs_rtrl/{cell}/depth2", rule_pair(lambda reg: MOrder(ORDERMAX_STEPS - 1, reg), rtrl),
              depth=2, steps=ORDERMAX_STEPS, hidden=6),
    ]
    if cell in cells_with_border_state():
        rows += [Check(f"eprop3_oracle_vs_bptt/{cell}", eprop3_oracle_vs_bptt),
                 Check(f"eprop3_window_ge_T_vs_bptt/{cell}", eprop3_window_ge_t_vs_bptt),
                 Check(f"eprop3_zero_sg_vs_truncated_traces/{cell}", eprop3_zero_sg_vs_truncated_traces)]
    return rows


def run_check(check: Check) -> dict:
    """One row {"name", "rel_err", "tol", "ok", ...} for one check."""
    cell = check.name.split("/")[1]
    case = make_case(cell, depth=check.depth, steps=check.steps, n=check.hidden)
    started = time.perf_counter()
    err = check.compare(case)
    err, extra = err if isinstance(err, tuple) else (err, {})
    row = {"name": check.name, "rel_err": err, "tol": TOLERANCE, "ok": err <= TOLERANCE and "reason" not in extra,
           **extra}
    if case.network.layers[0].model.spiking:
        row["spikes"] = spike_counts(case)
        if min(row["spikes"]) == 0:
            row["ok"] = False
            row["reason"] = "a layer did not spike: the check tests nothing there"
    row["seconds"] = round(time.perf_counter() - started, 3)
    return row


def run_checks(cells: Iterable[str] | None = None, families: Iterable[str] | None = None) -> list[dict]:
    """Run every check of the given families (default: all) for every cell (default: every registered one)."""
    cells = cell_names() if cells is None else cells
    families = None if families is None else set(families)
    return [run_check(c) for cell in cells for c in checks_for(cell)
            if families is None or c.name.split("/")[0] in families]


CHECK_FAMILIES = (
    "fused_trial_vs_step",
    "eprop_vs_autodiff", "rtrl_vs_bptt", "factorization_vs_bptt", "deep_eprop_vs_autodiff", "deep_exact_vs_bptt",
    "deep_online_vs_factorized", "deep_eprop_vs_eprop", "order0_vs_eprop", "ordermax_vs_rtrl",
    "eprop3_oracle_vs_bptt", "eprop3_window_ge_T_vs_bptt", "eprop3_zero_sg_vs_truncated_traces",
)


def add_arguments(parser: argparse.ArgumentParser, families: tuple[str, ...] = CHECK_FAMILIES) -> None:
    """The options of ``l2l-verify``: --json, --cells, --checks (one of ``families``)."""
    parser.add_argument("--json", action="store_true", help='print {"checks": [...]} as JSON')
    parser.add_argument("--cells", nargs="+", default=list(cell_names()), choices=cell_names())
    parser.add_argument("--checks", nargs="+", default=list(families), choices=families)


def report(rows: list[dict], as_json: bool) -> int:
    """Print the rows (a table, or JSON); 1 if any row failed, else 0. A row with ``"ok": None`` was skipped
    (its ``"reason"`` says why) and fails nothing."""
    failed = [r for r in rows if r["ok"] is False]
    skipped = [r for r in rows if r["ok"] is None]
    if as_json:
        print(json.dumps({"checks": rows, "ok": not failed}, indent=2))
        return 1 if failed else 0
    for r in rows:
        status = "skip" if r["ok"] is None else "ok  " if r["ok"] else "FAIL"
        err = "n/a" if r["rel_err"] is None else f"{r['rel_err']:.2e}"
        print(f"{status} {r['name']:<34} rel_err={err} tol={r['tol']:.0e}"
              + (f"  {r['reason']}" if "reason" in r else ""))
    print(f"{len(rows) - len(failed) - len(skipped)} passed, {len(failed)} failed"
          + (f", {len(skipped)} skipped" if skipped else ""))
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """The core identities only (``python -m l2l.verify``); the ``l2l-verify`` command adds the app's rows."""
    parser = CommandParser(prog="python -m l2l.verify", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    return report(run_checks(args.cells, args.checks), args.json)


if __name__ == "__main__":
    sys.exit(main())
