"""One registry per concept: a new cell, inner backend or task family is its own code plus one registration.

Each toy below is what a user would write in their own files (for a cell: the cell file, the trace file
and ``register_cell``); nothing else in l2l changes, and the verification rows, the app's config, the
meta-learner and the evaluation pick it up.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass
from typing import NamedTuple

import pytest
import torch
from hydra.core.config_store import ConfigStore

from l2l import verify
from l2l.cells import CELLS, CellEntry, CellModel, RecurrentCell, register_cell
from l2l.filters import exp_filter, reverse_exp_filter
from l2l.inner_loop.backends import BACKENDS
from l2l.inner_loop.one_shot import Adaptation, InnerStep
from l2l.outer_loop.app.build import build_meta, build_network, build_rule, build_task
from l2l.outer_loop.app.schemas import task_schema
from l2l.synapses import contract_over_time
from l2l.tasks import FAMILIES, register_family
from l2l.tasks.base import Episode, TaskFamily, TaskLoss

# ---- file 1 of a new cell: l2l/cells/sigmoid.py ------------------------------------------------------------


@dataclass(frozen=True)
class SigmoidParameters:
    """Leaky sigmoid unit: v^t = α v^{t-1} + (1 − α) I^t, z^t = gain·σ(v^t)."""

    tau: float = 5.0
    dt: float = 1.0
    gain: float = 1.0
    no_autapses: bool = False

    @property
    def alpha(self) -> float:
        return math.exp(-self.dt / self.tau)


class SigmoidState(NamedTuple):
    v: torch.Tensor
    z: torch.Tensor


def sigmoid_dynamics(current, z_prev_out, state, p, record=False):
    v = p.alpha * state.v + (1 - p.alpha) * current
    s = torch.sigmoid(v)
    return p.gain * s, SigmoidState(v, p.gain * s), ({"psi": p.gain * s * (1 - s)} if record else {})


class SigmoidCell(RecurrentCell):
    model = CellModel("sigmoid", SigmoidParameters, SigmoidState, n_gates=1, has_bias=True, spiking=False,
                      dynamics=sigmoid_dynamics)


# ---- file 2: l2l/traces/sigmoid.py (the leak factorizes: e^t = ψ^t (1 − α) F_α(u)^t) -----------------------


class SigmoidTraces:
    @staticmethod
    def gradient(params, record, pre, dE_dz, per_task):
        post = (1 - params.alpha) * dE_dz * record["psi"]
        return pre.split(contract_over_time(post, exp_filter(pre.concatenated(True), params.alpha), per_task), True)

    @staticmethod
    def traces(params, record, pre):
        u_bar = exp_filter(pre.concatenated(True), params.alpha)
        return (1 - params.alpha) * record["psi"].unsqueeze(-1) * u_bar.unsqueeze(-2)

    @staticmethod
    def current_signal(params, record, dE_dz):
        return (1 - params.alpha) * reverse_exp_filter(dE_dz * record["psi"], params.alpha)


# ---- file 3: the registration ------------------------------------------------------------------------------

TOY_CELL = CellEntry(SigmoidCell, SigmoidTraces, SigmoidParameters(tau=4.0, gain=1.5), {"tau": "tau_m", "dt": "dt"})


@pytest.fixture
def toy_cell(monkeypatch):
    monkeypatch.setitem(CELLS, "sigmoid", TOY_CELL)    # what register_cell(TOY_CELL) does, undone after the test
    return TOY_CELL


def test_register_cell_adds_it_by_its_name(monkeypatch):
    monkeypatch.setattr("l2l.cells.registry.CELLS", CELLS.copy())
    from l2l.cells import registry

    assert register_cell(TOY_CELL) is TOY_CELL and registry.CELLS["sigmoid"] is TOY_CELL


def test_a_registered_cell_passes_the_verification_rows(toy_cell):
    rows = verify.run_checks(["sigmoid"], ["eprop_vs_autodiff", "rtrl_vs_bptt", "factorization_vs_bptt",
                                           "deep_eprop_vs_autodiff", "deep_exact_vs_bptt"])
    assert len(rows) == 7 and all(r["ok"] for r in rows), rows


def test_a_wrong_trace_of_a_registered_cell_fails_them(toy_cell, monkeypatch):
    class Wrong(SigmoidTraces):
        @staticmethod
        def gradient(params, record, pre, dE_dz, per_task):
            return SigmoidTraces.gradient(dataclasses.replace(params, tau=2.0), record, pre, dE_dz, per_task)

    monkeypatch.setitem(CELLS, "sigmoid", dataclasses.replace(TOY_CELL, traces=Wrong))
    rows = verify.run_checks(["sigmoid"], ["eprop_vs_autodiff"])
    assert not rows[0]["ok"]


def test_a_registered_cell_is_configurable_in_the_app(toy_cell, compose):
    cfg = compose("experiment=pattern_eprop", "network.cell=sigmoid", "network.tau_m=7.0",
                  "+network.options={gain: 2.0}", "task.n_steps=30", "task.n_inputs=5")
    network = build_network(cfg.network, build_task(cfg.task))
    assert isinstance(network.layers[0], SigmoidCell)
    assert network.layers[0].params == SigmoidParameters(tau=7.0, dt=1.0, gain=2.0)
    family = build_task(cfg.task)
    episode = family.sample(2, torch.Generator().manual_seed(0))
    result = build_rule(cfg.rule).gradients(network, episode.inputs, lambda y: family.loss(y, episode).mean)
    assert all(torch.isfinite(g).all() for g in result.grads.values())


def test_an_unknown_cell_or_option_names_the_key(compose):
    with pytest.raises(ValueError, match=r"network\.cell='nope' is not allowed: choose one of \['alif', 'lif'"):
        build_network(compose("experiment=pattern_eprop", "network.cell=nope").network, build_task(
            compose("experiment=pattern_eprop").task))
    cfg = compose("experiment=pattern_eprop", "+network.options={colour: 3}")
    with pytest.raises(ValueError, match=r"network\.options=\{'colour': 3\} is not allowed for a lif cell"):
        build_network(cfg.network, build_task(cfg.task))


# ---- an inner backend: one class and one registration --------------------------------------------------------


class NoUpdateBackend:
    """Shows the demonstration to the learner and the error module, then leaves W_task = W_init."""

    name = "no_update"
    needs_autograd = False
    uses_error_module = True

    def check(self, settings, lr_mode="fixed"):
        if settings.n_demos != 1:
            raise ValueError(f"inner.n_demos={settings.n_demos} needs one demonstration for no_update")

    def adapt(self, learner, error_module, inputs, codes, rates, settings, demo_loss=None):
        demo = learner.run(inputs, record=True)
        signals, error_trial = error_module.run(codes[0], demo)
        params = {name: w.expand(inputs.shape[0], *w.shape) for name, w in learner.parameter_dict().items()
                  if name.startswith("layers.")}
        update = {name: torch.zeros_like(w) for name, w in params.items()}
        return Adaptation({**learner.parameter_dict(), **params}, [InnerStep(demo, signals, error_trial, update)])


TINY_META = ["experiment=smoke", "task.n_steps=30", "network.n_hidden=8", "error_module.n_hidden=6",
             "error_module.code_neurons=4"]


def test_a_registered_backend_runs_the_inner_loop(monkeypatch, compose):
    monkeypatch.setitem(BACKENDS, "no_update", NoUpdateBackend())
    cfg = compose(*TINY_META, "inner.backend=no_update")
    torch.manual_seed(0)
    meta = build_meta(cfg, build_task(cfg.task)).double()
    g = torch.Generator().manual_seed(1)
    episode = meta.family.sample(2, g).to(dtype=torch.float64)
    step = meta(episode, g)
    assert step.metrics["test_mse"] == pytest.approx(step.metrics["demo_mse"], rel=1e-12)   # nothing changed
    step.loss.backward()
    assert meta.learner.readout.w_out.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"inner\.backend='nope' is not allowed: choose one of \["):
        build_meta(compose(*TINY_META, "inner.backend=nope"), build_task(cfg.task))
    with pytest.raises(ValueError, match="inner.n_demos=2 needs one demonstration for no_update"):
        build_meta(compose(*TINY_META, "inner.backend=no_update", "inner.n_demos=2"), build_task(cfg.task))


# ---- a task family: its module, its registration, and conf/task/<name>.yaml (here: the same entry in Hydra's store)


class Constant(TaskFamily):
    """Hold a constant output drawn per task (an accuracy-like metric where higher is better)."""

    name = "constant"
    metric = "closeness"
    lower_is_better = False

    def __init__(self, n_steps: int = 20, n_inputs: int = 3, level_range: tuple[float, float] = (-1.0, 1.0),
                 task_seed: int | None = None) -> None:
        super().__init__(task_seed)
        self.n_steps, self.n_inputs, self.n_outputs, self.level_range = n_steps, n_inputs, 1, tuple(level_range)

    def _sample(self, batch_size, generator):
        low, high = self.level_range
        level = low + (high - low) * torch.rand(batch_size, 1, 1, generator=generator)
        inputs = (torch.rand(batch_size, self.n_steps, self.n_inputs, generator=generator) < 0.1).float()
        return Episode(inputs, level.expand(-1, self.n_steps, 1).clone(), torch.ones(batch_size, self.n_steps))

    def loss(self, output, episode):
        error = ((output - episode.target) ** 2).mean(dim=(1, 2))
        return TaskLoss(error, {"closeness": (-error).detach()})

    def plot(self, episode, output=None, index=0):
        raise NotImplementedError


@pytest.fixture
def toy_family(monkeypatch):
    monkeypatch.setattr("l2l.tasks.FAMILIES", FAMILIES.copy())
    register_family(Constant)
    store = ConfigStore.instance()
    store.store(group="task", name="constant_schema", node=task_schema("constant", Constant))
    store.store(group="task", name="constant", node={"defaults": ["constant_schema"]})
    return Constant


def test_a_registered_family_is_built_from_the_app_config(toy_family, compose):
    import l2l.tasks

    assert l2l.tasks.FAMILIES["constant"] is Constant
    cfg = compose("experiment=pattern_eprop", "task=constant", "task.n_steps=12", "task.level_range=[0.0,0.5]")
    family = build_task(cfg.task)
    assert isinstance(family, Constant) and family.n_steps == 12 and family.level_range == (0.0, 0.5)


def test_the_evaluation_grid_maximizes_a_higher_is_better_metric(toy_family, compose):
    from l2l.outer_loop.algorithm.evaluation import step_grid

    cfg = compose("mode=meta", "task=constant", "task.n_steps=15", "network.n_hidden=8", "error_module.n_hidden=6",
                  "error_module.code_neurons=4")
    torch.manual_seed(0)
    meta = build_meta(cfg, build_task(cfg.task)).double()
    episode = meta.family.sample(3, torch.Generator().manual_seed(2)).to(dtype=torch.float64)
    w = meta.learner.parameter_dict()["layers.0.w_in"]
    grads = {"layers.0.w_in": torch.randn(3, *w.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))}
    result = step_grid(meta, episode, grads, [0.0, 1.0, 10.0])
    assert min(result["grid"].values()) < max(result["grid"].values())
    assert result["mse"] == max(result["grid"].values()) and result["lr"] == max(result["grid"], key=result["grid"].get)


# ---- a new learning rule: file 1, l2l/rules/scaled_bptt.py (the class and its register_rule) -------------------


from l2l.rules import BPTT, RULES, RuleEntry  # noqa: E402
from l2l.validation import require_positive  # noqa: E402


class ScaledBPTT(BPTT):
    """BPTT's gradient times ``scale`` (a toy rule with one option)."""

    name = "scaled_bptt"

    def __init__(self, scale: float = 0.5, rate_regularization=None) -> None:
        super().__init__(rate_regularization)
        require_positive("scale", scale)
        self.scale = scale

    def gradients(self, network, inputs, loss_fn, params=None):
        result = super().gradients(network, inputs, loss_fn, params)
        return dataclasses.replace(result, grads={k: self.scale * g for k, g in result.grads.items()})


# file 2: one line in l2l/rules/__init__.py (here: the fixture) registers it; file 3: conf/rule/scaled_bptt.yaml

TOY_RULE_YAML = "defaults:\n  - scaled_bptt_schema\n  - _self_\n\nname: scaled_bptt\nscale: 0.5\n"


@pytest.fixture
def toy_rule(monkeypatch, tmp_path):
    from l2l.outer_loop.app.config import register_configs

    monkeypatch.setitem(RULES, ScaledBPTT.name, RuleEntry(ScaledBPTT, one_layer=True))   # register_rule, undone after
    register_configs()                  # the app reads its schema off the constructor
    (tmp_path / "conf" / "rule").mkdir(parents=True)
    (tmp_path / "conf" / "rule" / "scaled_bptt.yaml").write_text(TOY_RULE_YAML)
    return tmp_path / "conf"


def test_a_registered_rule_trains_from_l2l_train_with_its_options_checked(toy_rule, tmp_path):
    from test_reliability import TINY_DIRECT, l2l_train

    search = f"hydra.searchpath=[file://{toy_rule}]"
    code, err = l2l_train([*TINY_DIRECT, search, "rule=scaled_bptt", "rule.scale=0.25"], tmp_path / "run")
    assert code == 0, err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["rule"] == "scaled_bptt" and summary["final_train"]["loss"] > 0
    code, err = l2l_train([*TINY_DIRECT, search, "rule=scaled_bptt", "rule.scale=-1"], tmp_path / "bad")
    assert code == 2 and err.strip() == ("l2l-train: error: rule.scale=-1.0 is not allowed: it must be a finite "
                                         "number > 0"), err
    # its compatibility entry: one recurrent layer
    code, err = l2l_train([*TINY_DIRECT, search, "rule=scaled_bptt", "network.layers=2"], tmp_path / "deep")
    assert code == 2 and "network.layers=2 is not allowed with rule=scaled_bptt" in err, err


def test_rule_options_are_read_off_the_constructor():
    from l2l.outer_loop.app.schemas import rule_schema

    entry = RuleEntry(ScaledBPTT)
    assert [(o.name, o.default) for o in entry.options()] == [("scale", 0.5)]
    fields = {f.name: f.default for f in dataclasses.fields(rule_schema(entry))}
    assert fields == {"name": "scaled_bptt", "rate_target_hz": 10.0, "rate_weight": 0.0, "scale": 0.5}
    # every built-in rule: its options are its constructor's, through *args/**kwargs to the base class
    assert [o.name for o in RULES["eprop_online"].options()] == ["chunk", "feedback", "feedback_seed"]
    assert "memory_budget_gib" in [o.name for o in RULES["rtrl"].options()]
