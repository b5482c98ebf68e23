"""One e-prop 2 outer iteration of the published code, reproduced by l2l in float64.

The fixture ``eprop2_reference_seed11.npz`` (``tests/data/``) was dumped from the published e-prop 2
TensorFlow code (IGITUGraz/eligibility_propagation, branch ``eprop2``) run in float64: learner 50 LIF,
error module 40 LIF, 3 tasks, 2 trials of 500 steps. It holds every initial weight (stored (inputs,
outputs), i.e. transposed to l2l's (outputs, inputs)), the clock, the targets, the error module's coded
target of both trials, every spike, the learning signals, ΔW, the losses and the meta-gradients.

:func:`reproduce` builds ``experiment=arm_one_shot_paper`` at the fixture's sizes, loads its weights,
feeds its clock and coded targets instead of sampling them, runs one outer iteration and returns the
relative error of every quantity. With ``semantics=reference`` they agree to round-off; with
``semantics=paper`` (or any one switch of it) they differ, which is what makes the fixture a test.

    python -m l2l.outer_loop.app.reference_fixture [--fixture PATH] [--json] [--device cuda]   # comparison, switches
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from l2l.command_line import CommandParser
from l2l.device import resolve_device
from l2l.outer_loop.algorithm.meta import MetaLearner
from l2l.outer_loop.app.build import build_meta, build_task
from l2l.outer_loop.app.compose import compose_config
from l2l.outer_loop.checkpoint import load_failure
from l2l.tasks.arm import ArmEpisode

FIXTURE_NAME = "eprop2_reference_seed11.npz"
TOLERANCE = 1e-10
SPIKES = ("trial0_z", "trial1_z", "trial0_error_spikes", "trial1_error_spikes")
SIGNALS_AND_OUTPUTS = ("trial0_learning_signals", "trial1_learning_signals", "dw_in", "dw_rec",
                       "trial0_motor_commands", "trial0_cartesian", "trial1_motor_commands", "trial1_cartesian")
LOSSES = ("loss", "loss_reg", "outer_loop_loss")
# fixture name -> l2l parameter name (the fixture stores the transpose)
GRADIENTS = {
    "network.input_weights.w": "learner.layers.0.w_in",
    "network.recurrent_weights.w": "learner.layers.0.w_rec",
    "network.w_out": "learner.readout.w_out",
    "error_module.input_weights.w": "error_module.network.layers.0.w_in",
    "error_module.recurrent_weights.w": "error_module.network.layers.0.w_rec",
    "error_module.learning_signal_projection": "error_module.network.readout.w_out",
}
# one switch of semantics=reference at a time back to the papers' choice (the rows of docs/eprop2.md's table)
SWITCHES = {
    "n_ref": ["network.n_ref=5", "error_module.n_ref=5"],
    "psi_refractory": ["network.psi_refractory=zero", "error_module.psi_refractory=zero"],
    "in_test_trial": ["error_module.in_test_trial=false"],
}


def default_fixture_path() -> Path | None:
    """The fixture in a source checkout (``tests/data/`` beside the packages), or None if it is not there."""
    path = Path(__file__).resolve().parents[2] / "tests" / "data" / FIXTURE_NAME
    return path if path.is_file() else None


class FixtureError(ValueError):
    """A file that is not the e-prop 2 reference fixture: the message names the file and what is wrong."""


META_KEYS = ("n_rec_network", "n_rec_error_module", "batch_size")


def load_fixture(path: str | Path) -> dict[str, np.ndarray]:
    """The fixture's arrays by name (no pickles are loaded); ``meta`` is parsed from its JSON string.
    FixtureError naming the file when it is not an npz, lacks an array or its ``meta`` is not the fixture's."""
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except Exception as error:  # not a zip, a pickle, truncated: numpy raises several kinds
        raise FixtureError(f"{str(path)!r} is not an npz of arrays ({load_failure(error)})") from None
    if not isinstance(arrays, dict) or "meta" not in arrays:
        raise FixtureError(f"{str(path)!r} is not the e-prop 2 reference fixture: it has no 'meta' entry "
                           f"(found {sorted(arrays)[:6]})")
    try:
        arrays["meta"] = json.loads(str(arrays["meta"]))
    except ValueError:
        raise FixtureError(f"{str(path)!r}: its 'meta' entry is not the fixture's JSON") from None
    missing = [k for k in META_KEYS if not isinstance(arrays["meta"], dict) or k not in arrays["meta"]]
    missing += [f"param.{theirs}" for theirs in GRADIENTS if f"param.{theirs}" not in arrays]
    if missing:
        raise FixtureError(f"{str(path)!r} is not the e-prop 2 reference fixture: it lacks {missing[:4]}")
    return arrays


def build_fixture_meta(fixture: dict, semantics: str = "reference", backend: str = "explicit",
                       overrides: Sequence[str] = ()) -> MetaLearner:
    """``experiment=arm_one_shot_paper`` at the fixture's sizes in float64, holding the fixture's weights."""
    info = fixture["meta"]
    sizes = [f"network.n_hidden={info['n_rec_network']}", f"error_module.n_hidden={info['n_rec_error_module']}",
             f"outer.batch_size={info['batch_size']}", f"inner.backend={backend}"]
    cfg = compose_config(["experiment=arm_one_shot_paper", f"semantics={semantics}", *sizes, *overrides])
    meta = build_meta(cfg, build_task(cfg.task)).double()
    params = dict(meta.named_parameters())
    with torch.no_grad():
        for theirs, ours in GRADIENTS.items():
            value = torch.from_numpy(np.asarray(fixture[f"param.{theirs}"])).T
            if value.shape != params[ours].shape:
                raise FixtureError(f"the fixture's param.{theirs} has shape {tuple(value.T.shape)}, its meta's sizes "
                                   f"give {tuple(params[ours].T.shape)}")
            params[ours].copy_(value)
    return meta


@dataclass
class Comparison:
    """spikes_equal: per spike array, whether every spike is the fixture's; rel_err: ‖l2l − fixture‖/‖fixture‖
    per compared quantity (``grad.<name>`` for the meta-gradients)."""

    spikes_equal: dict[str, bool] = field(default_factory=dict)
    rel_err: dict[str, float] = field(default_factory=dict)

    @property
    def max_rel_err(self) -> float:
        return max(self.rel_err.values())

    def ok(self, tolerance: float = TOLERANCE) -> bool:
        """Every spike identical and every other quantity within ``tolerance``."""
        return all(self.spikes_equal.values()) and self.max_rel_err <= tolerance


def fixture_inputs(fixture: dict) -> tuple[ArmEpisode, torch.Tensor]:
    """The episode (clock (B, T, n_in), target xy and ω of one trial) and the coded targets (2, B, T, n_code)."""
    clock = torch.from_numpy(fixture["clock"])
    batch, steps = clock.shape[:2]
    episode = ArmEpisode(clock, torch.from_numpy(fixture["target_xy"][:, :steps]).clone(),
                         torch.ones(batch, steps, dtype=torch.float64),
                         omega=torch.from_numpy(fixture["omega"][:, :steps]).clone())
    codes = torch.stack([torch.from_numpy(fixture[f"code_{k}"].reshape(batch, steps, -1).astype(np.float64))
                         for k in (0, 1)])
    return episode, codes


def reproduce(meta: MetaLearner, fixture: dict, device: str | torch.device = "cpu") -> Comparison:
    """Run one outer iteration of ``meta`` (from :func:`build_fixture_meta`) on the fixture, on ``device`` (the meta
    is moved there; float64 on a GPU too), and compare."""
    episode, codes = fixture_inputs(fixture)
    meta = meta.to(device)
    episode, codes = episode.to(device), codes.to(device)
    if not torch.equal(episode.inputs, meta.family.clock.to(episode.inputs).expand_as(episode.inputs)):
        raise ValueError("the fixture's clock is not the arm family's clock: the configs disagree")
    step = meta(episode, codes=codes if meta.error_module_in_test else codes[:1])
    params = dict(meta.named_parameters())
    grads = torch.autograd.grad(step.loss, [params[name] for name in GRADIENTS.values()])
    adaptation = step.adaptation
    v_th = meta.learner.layers[0].params.v_th
    test_error = step.test_error_trial
    ours = {
        "trial0_z": adaptation.demo.layers[0].z,
        "trial1_z": step.test_trial.layers[0].z,
        "trial0_error_spikes": adaptation.error_trial.layers[0].z,
        "trial1_error_spikes": test_error.layers[0].z if test_error is not None else None,
        "trial0_learning_signals": adaptation.signals[-1],
        "trial1_learning_signals": test_error.output if test_error is not None else None,
        # the published ψ lacks l2l's 1/v_th (η = 4e-5 here is its 1e-4): its ΔW is v_th times l2l's
        "dw_in": v_th * adaptation.update["layers.0.w_in"].transpose(1, 2),
        "dw_rec": v_th * adaptation.update["layers.0.w_rec"].transpose(1, 2),
        "trial0_motor_commands": adaptation.demo.output,
        "trial0_cartesian": meta.family.arm.endpoint(adaptation.demo.output, meta.family.dt),
        "trial1_motor_commands": step.test_output,
        "trial1_cartesian": meta.family.arm.endpoint(step.test_output, meta.family.dt),
        "loss": step.loss,
        "loss_reg": torch.tensor(step.metrics["reg_loss"], dtype=torch.float64),
        "outer_loop_loss": torch.tensor(step.metrics["task_loss"], dtype=torch.float64),
    }
    result = Comparison()
    for name in SPIKES:
        mine = ours[name]
        result.spikes_equal[name] = mine is not None and torch.equal(
            mine.detach().cpu(), torch.from_numpy(fixture[name].astype(np.float64)))
    for name in SIGNALS_AND_OUTPUTS + LOSSES:
        mine = ours[name]
        result.rel_err[name] = math.inf if mine is None else _relative(mine, fixture[name])
    for (theirs, _), grad in zip(GRADIENTS.items(), grads, strict=True):
        result.rel_err[f"grad.{theirs}"] = _relative(grad.T, fixture[f"grad.{theirs}"])
    return result


def _relative(mine: torch.Tensor, theirs: np.ndarray) -> float:
    """‖a − b‖ / ‖b‖ (inf if b = 0 and a ≠ 0)."""
    b = torch.from_numpy(np.asarray(theirs, dtype=np.float64))
    a = mine.detach().to("cpu", torch.float64).reshape(b.shape)
    diff, norm = float((a - b).norm()), float(b.norm())
    return diff / norm if norm > 0 else (0.0 if diff == 0 else math.inf)


def switch_effects(fixture: dict) -> dict[str, dict]:
    """For each switch of ``semantics=reference`` set back alone to the papers' choice (and for all of them,
    ``semantics=paper``): the spike arrays that differ from the fixture's, ΔW's relative change, and the
    loss's and the meta-gradients' largest relative change."""
    effects = {}
    for name, overrides in {**SWITCHES, "semantics=paper": None}.items():
        if overrides is None:
            meta = build_fixture_meta(fixture, "paper")
        else:
            meta = build_fixture_meta(fixture, "reference", overrides=overrides)
        c = reproduce(meta, fixture)
        effects[name] = {
            "spikes_differ": [k for k, equal in c.spikes_equal.items() if not equal],
            "dw_in": c.rel_err["dw_in"], "dw_rec": c.rel_err["dw_rec"],
            "loss": c.rel_err["loss"], "loss_reg": c.rel_err["loss_reg"],
            "max_grad": max(v for k, v in c.rel_err.items() if k.startswith("grad.")),
        }
    return effects


def main(argv: list[str] | None = None) -> int:
    parser = CommandParser(prog="python -m l2l.outer_loop.app.reference_fixture",
                                     description="Reproduce the published e-prop 2 code's float64 outer iteration.")
    parser.add_argument("--fixture", type=Path, default=default_fixture_path(),
                        help=f"path of {FIXTURE_NAME} (default: tests/data/ of the source checkout)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument("--device", default="cpu", help="cpu | cuda[:N] (float64 on either)")
    args = parser.parse_args(argv)
    try:
        device = resolve_device(args.device, "--device")
    except ValueError as error:
        parser.error(str(error))
    if args.fixture is None or not Path(args.fixture).is_file():
        print(f"error: --fixture {args.fixture}: no such file (it is tests/data/{FIXTURE_NAME} of the source "
              "checkout)", file=sys.stderr)
        return 2
    torch.set_num_threads(max(1, torch.get_num_threads()))
    fixture = load_fixture(args.fixture)
    report = {}
    for backend in ("explicit", "higher"):
        c = reproduce(build_fixture_meta(fixture, "reference", backend), fixture, device)
        report[backend] = {"spikes_equal": c.spikes_equal, "rel_err": c.rel_err, "ok": c.ok()}
    report["switches"] = switch_effects(fixture)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0 if all(report[b]["ok"] for b in ("explicit", "higher")) else 1
    for backend in ("explicit", "higher"):
        r = report[backend]
        print(f"semantics=reference, inner.backend={backend}: {'ok' if r['ok'] else 'FAIL'}")
        for name, equal in r["spikes_equal"].items():
            print(f"  {name:<44} {'identical' if equal else 'DIFFERENT'}")
        for name, err in r["rel_err"].items():
            print(f"  {name:<44} rel_err={err:.2e}")
    print("one switch back to the papers' choice (relative change against the fixture):")
    for name, e in report["switches"].items():
        differ = ", ".join(e["spikes_differ"]) or "none"
        print(f"  {name:<16} ΔW_in {e['dw_in']:.3f}  "
              f"ΔW_rec {e['dw_rec']:.3f}  loss {e['loss']:.2e}  loss_reg {e['loss_reg']:.2e}  "
              f"meta-gradient {e['max_grad']:.3f}  spikes differing: {differ}")
    return 0 if all(report[b]["ok"] for b in ("explicit", "higher")) else 1


if __name__ == "__main__":
    sys.exit(main())
