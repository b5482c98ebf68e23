"""The l2l-train app: config composition and schemas, bad overrides, the direct training loop, run outputs."""

import inspect
import json
import math
import sys
import types

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from l2l.outer_loop.algorithm.direct_train import DirectSettings, train_direct
from l2l.outer_loop.algorithm.run_loop import LoopSettings
from l2l.outer_loop.app.build import build_network, build_rule, build_task
from l2l.outer_loop.app.compose import compose_config
from l2l.outer_loop.app.schemas import task_schema
from l2l.outer_loop.app.train import run
from l2l.outer_loop.optimizers import make_optimizer
from l2l.outer_loop.reports.plots import episode_figure
from l2l.outer_loop.reports.plots import main as plots_main
from l2l.tasks import FAMILIES

TINY = {  # shrink any family so that a run takes well under a second per iteration
    "pattern": ["task.n_steps=60", "task.n_inputs=12"],
    "evidence": ["task.n_inputs=8", "task.n_cues=3", "task.cue_duration=4", "task.cue_interval=6",
                 "task.delay=10", "task.recall_duration=5"],
    "arm": ["task.n_steps=50", "task.clock_spike_every=5"],
    "copy_repeat": ["task.width=3", "task.length=3", "task.max_repeats=2"],
}


def tiny(task, *extra):
    return [f"task={task}", *TINY[task], "network.n_hidden=12", "train.iterations=3", "train.batch_size=2",
            "train.log_every=1", "train.eval_batch_size=3", "train.progress=false", *extra]


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_task_schema_defaults_equal_the_family_defaults(name):
    """conf/ and tasks/ must agree on the reference defaults."""
    schema = OmegaConf.to_container(OmegaConf.structured(task_schema(name, FAMILIES[name])))
    assert schema.pop("name") == name
    signature = inspect.signature(FAMILIES[name].__init__)
    defaults = {k: p.default for k, p in signature.parameters.items() if k != "self"}
    assert set(schema) == set(defaults)
    for key, value in schema.items():
        expected = list(defaults[key]) if isinstance(defaults[key], tuple) else defaults[key]
        assert value == pytest.approx(expected) if isinstance(value, (float, list)) else value == expected, key


@pytest.mark.parametrize(
    ("experiment", "rule", "feedback", "cell", "task"),
    [("pattern_eprop", "eprop", "symmetric", "lif", "pattern"),
     ("pattern_eprop_random", "eprop", "random", "lif", "pattern"),
     ("pattern_bptt", "bptt", None, "lif", "pattern"),
     ("evidence_eprop", "eprop", "symmetric", "alif", "evidence"),
     ("evidence_eprop_random", "eprop", "random", "alif", "evidence"),
     ("evidence_bptt", "bptt", None, "alif", "evidence")],
)
def test_experiments_compose(experiment, rule, feedback, cell, task):
    cfg = compose_config([f"experiment={experiment}"])
    got = (cfg.rule.name, cfg.rule.get("feedback"), cfg.network.cell, cfg.task.name)
    assert got == (rule, feedback, cell, task)   # a rule's schema has only its own options: bptt has no feedback
    assert cfg.name == experiment and dict(cfg.logger.backends) == {} and cfg.mode == "direct"
    family = build_task(cfg.task)
    network = build_network(cfg.network, family)
    assert (network.n_in, network.sizes, network.n_out) == (family.n_inputs, [100], family.n_outputs)


def test_pattern_experiment_is_the_reference_network():
    cfg = compose_config(["experiment=pattern_eprop_random"])
    # v_th = 0.03 in the reference's (1 - α)-scaled input convention
    assert cfg.network.v_th == pytest.approx(0.03 / (1 - math.exp(-1 / 30)), rel=1e-4)
    assert (cfg.network.tau_m, cfg.network.tau_out, cfg.network.n_ref) == (30.0, 30.0, 0)
    # and the reference's (1 - κ)-scaled readout: the same initial output needs W_out scaled by 1 - κ
    assert cfg.network.readout_init_scale == pytest.approx(1 - math.exp(-1 / 30), rel=1e-3)
    assert (cfg.task.n_inputs, cfg.task.input_rate_hz, cfg.task.n_steps) == (100, 50.0, 1000)


def test_evidence_experiment_is_an_lsnn():
    cfg = compose_config(["experiment=evidence_eprop"])
    params = build_network(cfg.network, build_task(cfg.task)).layers[0].params
    assert (params.adaptive_fraction, params.tau_a, params.v_th, params.tau_m) == (0.5, 2000.0, 0.6, 20.0)
    assert params.beta == pytest.approx(1.7 * (1 - math.exp(-1 / 2000)) / (1 - math.exp(-1 / 20)), rel=1e-4)


@pytest.mark.parametrize("override", ["task.n_stepz=5", "train.iteratons=5", "network.celll=lif", "sed=1"])
def test_typo_in_an_override_fails_naming_the_key(override):
    with pytest.raises(ConfigCompositionException) as info:
        compose_config([override])
    assert override.split("=")[0].split(".")[-1] in str(info.value) + str(info.value.__cause__)


@pytest.mark.parametrize("override", ["train.iterations=abc", "task.n_steps=1.5", "seed=x", "train.lr=fast"])
def test_wrong_type_fails_naming_the_key(override):
    with pytest.raises((ConfigCompositionException, ValidationError)) as info:
        compose_config([override])
    text = str(info.value) + str(info.value.__cause__)
    assert override.split("=")[0] in text


@pytest.mark.parametrize(
    ("override", "name"),
    [("network.cell=foo", "network.cell"), ("rule.name=foo", "rule.name"), ("rule.feedback=foo", "rule.feedback"),
     ("train.optimizer=foo", "train.optimizer"), ("+logger.backends.foo=true", "logger.backends"),
     ("mode=meta_learning", "mode"), ("task.n_steps=0", "n_steps")],
)
def test_bad_values_raise_value_error(override, name, tmp_path):
    cfg = compose_config(tiny("pattern", override))
    with pytest.raises(ValueError, match=name):
        run(cfg, tmp_path)


@pytest.mark.parametrize("rule_name", ["eprop", "bptt"])
def test_direct_training_learns(rule_name):
    torch.manual_seed(0)
    cfg = compose_config(["experiment=pattern_eprop_random", "task.n_steps=150", "task.n_inputs=30",
                          "network.n_hidden=30", *([] if rule_name == "eprop" else [f"rule={rule_name}"])])
    family = build_task(cfg.task)
    network = build_network(cfg.network, family)
    result = train_direct(network, build_rule(cfg.rule), family, make_optimizer("adam", network.parameters(), 0.01),
                          DirectSettings(batch_size=1), LoopSettings(iterations=30, log_every=29, progress=False),
                          torch.Generator().manual_seed(1), eval_episode=family.sample(1))
    first, last = result.history[0]["task_loss"], result.history[-1]["task_loss"]
    assert [r["iteration"] for r in result.history] == [0, 29]
    assert last < 0.5 * first, (first, last)
    assert result.final_eval["loss"] < 0.5 * first


@pytest.mark.parametrize("task", sorted(TINY))
def test_run_writes_metrics_summary_plots_and_checkpoint(task, tmp_path):
    rule = "rule=bptt" if task == "copy_repeat" else "rule=eprop_random"
    cell = "network=alif" if task == "evidence" else "network=lif"
    cfg = compose_config(tiny(task, rule, cell, "train.eval_every=2"))
    summary = run(cfg, tmp_path)
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    *records, held_out = [json.loads(line) for line in lines]
    assert [r["iteration"] for r in records] == [0, 1, 2]
    metric = FAMILIES[task].metric
    assert held_out["iteration"] == 3 and {"eval/loss", f"eval/{metric}"} <= set(held_out)   # as in meta mode
    for r in records:
        assert {"loss", "task_loss", "rate_hz", "seconds", metric} <= set(r)
    assert "eval_loss" in records[0] and "eval_loss" in records[2] and "eval_loss" not in records[1]
    assert summary["final_eval"].keys() >= {"loss", metric}
    assert json.loads((tmp_path / "summary.json").read_text())["iterations"] == 3
    for png in ("learning_curve.png", "episode.png"):
        assert (tmp_path / png).stat().st_size > 5_000
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=False)
    assert checkpoint["config"]["task"]["name"] == task and "readout.w_out" in checkpoint["network"]


def test_same_seed_same_run(tmp_path):
    histories = []
    for i, seed in enumerate((3, 3, 4)):
        run(compose_config(tiny("pattern", f"seed={seed}", "train.plots=false", "train.checkpoint=false")),
            tmp_path / str(i))
        histories.append([(r["loss"], r["rate_hz"]) for r in
                          map(json.loads, (tmp_path / str(i) / "metrics.jsonl").read_text().splitlines())
                          if "loss" in r])
    assert histories[0] == histories[1]
    assert histories[0] != histories[2]


class FakeRun:
    def __init__(self, calls, kwargs):
        self.calls = calls
        calls.append(("init", kwargs))

    def log(self, values, step=None):
        self.calls.append(("log", step, values))

    def finish(self, exit_code=0):
        self.calls.append(("finish", exit_code))


@pytest.fixture
def fake_wandb(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)   # l2l's own default (offline), not the suite's "disabled"
    calls = []
    module = types.SimpleNamespace(init=lambda **kwargs: FakeRun(calls, kwargs), Settings=lambda **kwargs: kwargs,
                                   Image=lambda pixels: ("image", pixels.shape))
    monkeypatch.setitem(sys.modules, "wandb", module)
    return calls


def test_wandb_logger_offline_by_default_and_finished(fake_wandb, tmp_path):
    run(compose_config(tiny("pattern", "logger=wandb")), tmp_path)
    kinds = [c[0] for c in fake_wandb]
    assert kinds == ["init", "log", "log", "log", "log", "log", "log", "finish"]
    held_out, curve, episode = (c[2] for c in fake_wandb[4:7])
    assert fake_wandb[4][1] == 3 and {"eval/loss", "eval/nmse"} <= set(held_out)     # the keys of meta mode
    assert curve["learning_curve"][0] == "image" and episode["pattern"][0] == "image"
    init = fake_wandb[0][1]
    assert init["mode"] == "offline" and init["dir"] == str(tmp_path) and init["project"] == "l2l"
    assert init["config"]["task"]["name"] == "pattern" and isinstance(init["config"]["train"], dict)
    assert [c[1] for c in fake_wandb[1:4]] == [0, 1, 2]
    assert "task_loss" in fake_wandb[1][2] and "iteration" not in fake_wandb[1][2]
    assert fake_wandb[-1] == ("finish", 0)


def test_wandb_run_is_finished_with_exit_code_1_on_failure(fake_wandb, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr("l2l.outer_loop.algorithm.direct_train.DirectStepper.step", boom)
    with pytest.raises(RuntimeError, match="boom"):
        run(compose_config(tiny("pattern", "logger=wandb")), tmp_path)
    assert fake_wandb[-1] == ("finish", 1)


def test_wandb_mode_is_validated(fake_wandb, tmp_path):
    with pytest.raises(ValueError, match="logger.mode"):
        run(compose_config(tiny("pattern", "logger=wandb", "logger.mode=sometimes")), tmp_path)


def test_plots_cli_redraws_curves_and_the_episode_from_the_checkpoint(tmp_path):
    run_dir = tmp_path / "run"
    run(compose_config(tiny("evidence", "network=alif")), run_dir)
    plots_main(["curves", str(tmp_path / "curves.png"), f"a={run_dir}", f"b={run_dir}", "--keys",
                "task_loss,accuracy"])
    assert (tmp_path / "curves.png").stat().st_size > 5_000
    figure = episode_figure(run_dir)
    assert len(figure.axes) == 2
    # the redrawn output is the checkpointed network's: p(right) on the plot equals a fresh forward pass
    line = [ln for ln in figure.axes[1].lines if ln.get_label() == "p(right)"][0]
    checkpoint = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=False)
    cfg = OmegaConf.create(checkpoint["config"])
    family = build_task(cfg.task)
    network = build_network(cfg.network, family)
    network.load_state_dict(checkpoint["network"])
    episode = family.sample(cfg.train.eval_batch_size, torch.Generator().manual_seed(cfg.seed + 2)).select(0)
    expected = torch.softmax(network(episode.inputs)[0].detach(), -1)[:, 1]
    torch.testing.assert_close(torch.as_tensor(line.get_ydata()).float(), expected)


def test_the_episode_of_a_curriculum_run_is_drawn_at_its_stage(tmp_path):
    """A curriculum run builds its network for the largest stage: the redrawn episode is padded as in training
    (it failed with a size mismatch of layers.0.w_in)."""
    run_dir = tmp_path / "run"
    run(compose_config(["experiment=copy_repeat_eprop3", "train.iterations=2", "train.progress=false",
                        "train.plots=false", "network.n_hidden=16", "train.batch_size=2"]), run_dir)
    figure = episode_figure(run_dir)
    image = figure.axes[-1].images[0].get_array()
    target = figure.axes[1].images[0].get_array()
    assert image.shape == target.shape and figure.axes[0].images[0].get_array().shape[0] < 13
