"""What a Python/PyTorch user expects of the package: W&B's environment honoured, every rule reachable from
the CLI, versions, metadata files, help, figures with units. (The wheel itself: .ci/wheel_check.)"""

from __future__ import annotations

import contextlib
import io
import sys
import types
from pathlib import Path

import pytest
import tomllib

import l2l
from l2l.outer_loop.app import train
from l2l.outer_loop.app.build import build_network, build_rule, build_task
from l2l.outer_loop.app.loggers import wandb_settings
from l2l.rules import RULES

ROOT = Path(__file__).resolve().parents[1]


def logger_node(**values):
    node = {"mode": None, "project": None, "entity": None, "group": None, "tags": [], "run_name": None, "dir": None}
    return types.SimpleNamespace(**{**node, **values})


def test_wandb_settings_follow_the_environment_unless_the_config_sets_them(monkeypatch):
    for key in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_GROUP", "WANDB_TAGS", "WANDB_NAME",
                "WANDB_DIR"):
        monkeypatch.delenv(key, raising=False)
    defaults = wandb_settings(logger_node(), "/run", "exp-seed0", "exp", ["seed=0"])
    assert defaults == {"mode": "offline", "project": "l2l", "entity": None, "group": "exp", "tags": ["seed=0"],
                        "name": "exp-seed0", "run_dir": "/run"}
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.setenv("WANDB_PROJECT", "p")
    monkeypatch.setenv("WANDB_ENTITY", "e")
    monkeypatch.setenv("WANDB_RUN_GROUP", "g")
    monkeypatch.setenv("WANDB_TAGS", "a, b")
    monkeypatch.setenv("WANDB_NAME", "n")
    monkeypatch.setenv("WANDB_DIR", "/w")
    from_env = wandb_settings(logger_node(), "/run", "exp-seed0", "exp", ["seed=0"])
    assert from_env == {"mode": "disabled", "project": "p", "entity": "e", "group": "g", "tags": ["a", "b"],
                        "name": "n", "run_dir": "/w"}
    explicit = wandb_settings(logger_node(mode="online", project="q", group="h", tags=["t"], run_name="r", dir="/d"),
                              "/run", "exp-seed0", "exp", [])
    assert (explicit["mode"], explicit["project"], explicit["group"], explicit["tags"], explicit["name"],
            explicit["run_dir"]) == ("online", "q", "h", ["t"], "r", "/d")


@pytest.mark.slow
def test_wandb_mode_disabled_writes_no_run(tmp_path, monkeypatch, compose):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    cfg = compose("experiment=smoke", "task.n_steps=30", "network.n_hidden=8", "error_module.n_hidden=6",
                  "error_module.code_neurons=4", "outer.batch_size=2", "outer.iterations=1", "outer.progress=false",
                  "eval.enabled=false", "logger=wandb")
    train.run(cfg, tmp_path)
    assert not (tmp_path / "wandb").exists() and (tmp_path / "summary.json").is_file()


def test_each_job_of_a_sweep_gets_its_own_run_name(monkeypatch, compose):
    cfg = compose("experiment=pattern_eprop", "rule=bptt")

    def hydra(mode, num, overrides):
        job = types.SimpleNamespace(num=num, override_dirname=",".join(overrides))
        state = types.SimpleNamespace(mode=types.SimpleNamespace(name=mode), job=job,
                                      sweep=types.SimpleNamespace(dir="multirun/x/2026"),
                                      overrides=types.SimpleNamespace(task=overrides))
        return types.SimpleNamespace(initialized=lambda: True, get=lambda: state)

    monkeypatch.setattr(train, "HydraConfig", hydra("RUN", 0, ["rule=bptt"]))
    assert train.logger_defaults(cfg)["run_name"] == "pattern_eprop-bptt-seed0"     # the rule that ran is named
    names = set()
    for num, lr in enumerate(("0.1", "0.01")):
        monkeypatch.setattr(train, "HydraConfig", hydra("MULTIRUN", num, [f"train.lr={lr}"]))
        names.add(train.logger_defaults(cfg)["run_name"])
    assert names == {"pattern_eprop-bptt-seed0-job0-train.lr=0.1", "pattern_eprop-bptt-seed0-job1-train.lr=0.01"}


TINY_DIRECT = ["task.n_steps=30", "task.n_inputs=5", "network.n_hidden=8", "train.batch_size=2",
               "train.iterations=2", "train.progress=false", "train.plots=false", "train.checkpoint=false"]


@pytest.mark.parametrize("rule", list(RULES))
def test_every_rule_trains_from_the_cli(rule, tmp_path, compose):
    cfg = compose("experiment=pattern_eprop", f"rule={'eprop' if rule == 'eprop' else rule}", *TINY_DIRECT)
    summary = train.run(cfg, tmp_path)
    assert summary["rule"] == rule and summary["final_train"]["task_loss"] > 0


@pytest.mark.parametrize("experiment", ["pattern_deep_eprop", "pattern_eprop_online", "pattern_morder"])
def test_the_new_rules_have_an_experiment(experiment, compose):
    cfg = compose(f"experiment={experiment}")
    assert cfg.rule.name == experiment.removeprefix("pattern_") and cfg.name == experiment
    network = build_network(cfg.network, build_task(cfg.task))
    assert build_rule(cfg.rule).name == cfg.rule.name and network.n_in == cfg.task.n_inputs


def test_rule_options_are_checked_by_key(compose):
    for override, message in (("rule.mode=sideways", "rule.mode='sideways' is not allowed"),
                              ("rule.chunk=0", "rule.chunk=0 is not allowed"),
                              ("rule.order=-1", "rule.order=-1 is not allowed")):
        name = {"rule.mode": "deep_eprop", "rule.chunk": "eprop_online", "rule.order": "morder"}[override.split("=")[0]]
        with pytest.raises(ValueError, match=message.replace("(", r"\(")):
            build_rule(compose("experiment=pattern_eprop", f"rule={name}", override).rule)


def test_online_eprop_from_the_cli_needs_a_loss_that_is_a_sum_over_time(tmp_path, compose):
    cfg = compose("experiment=evidence_eprop", "network=lif", "rule=eprop_online", "train.iterations=1",
                  "train.progress=false")
    with pytest.raises(ValueError, match="task='evidence' has no loss that is a sum over time"):
        train.run(cfg, tmp_path)


def run_cli(function, argv: list[str]) -> str:
    out = io.StringIO()
    saved = sys.argv
    sys.argv = argv
    try:
        with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
            function()
            raise SystemExit(0)
        assert stop.value.code in (0, None)
    finally:
        sys.argv = saved
    return out.getvalue()


def test_every_command_prints_l2l_version():
    from l2l.outer_loop.app import verify_cli
    from l2l.outer_loop.bench import cli as bench
    from l2l.outer_loop.reports import demo, eval_cli, export_cli

    assert l2l.__version__ == tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    expected = f"(l2l) {l2l.__version__}"
    assert expected in run_cli(train.cli, ["l2l-train", "--version"])
    assert expected in run_cli(demo.cli, ["l2l-demo", "--version"])
    for main, name in ((verify_cli.main, "l2l-verify"), (bench.main, "l2l-bench"), (eval_cli.main, "l2l-eval"),
                       (export_cli.main, "l2l-export")):
        assert f"{name} {expected}" in run_cli(lambda m=main: m(["--version"]), [name, "--version"])


def test_l2l_train_help_is_about_l2l():
    text = run_cli(train.cli, ["l2l-train", "--help"])
    assert text.startswith("l2l-train: train a recurrent network")
    assert "semantics: paper, reference" in text and "l2l-train experiment=arm_one_shot" in text


def test_package_metadata_and_files():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert meta["license"] == "MIT" and "Typing :: Typed" in meta["classifiers"]
    assert (ROOT / "LICENSE").read_text().startswith("MIT License")
    citation = (ROOT / "CITATION.cff").read_text()
    assert f"version: {meta['version']}" in citation and "10.1038/s41467-020-17236-y" in citation
    assert f"## {meta['version']}" in (ROOT / "CHANGELOG.md").read_text()
    packages = (".", "tasks", "inner_loop", "outer_loop")
    assert all((ROOT / "l2l" / package / "py.typed").is_file() for package in packages)
    floors = {d.split(">=")[0]: d.split(">=")[1].split()[0] for d in meta["dependencies"] if ">=" in d}
    assert floors["hydra-core"] == "1.3.6" and floors["torch"] == "2.11"
    from l2l.outer_loop.app.compose import CONFIG_DIR

    assert (Path(CONFIG_DIR) / "config.yaml").is_file() and Path(CONFIG_DIR).parent.name == "outer_loop"


def test_figures_name_their_units():
    import torch

    from l2l.outer_loop.reports.plots import learning_curves
    from l2l.tasks import ArmTrajectories

    history = [{"iteration": i, "mse_xy": 0.1 / (i + 1), "task_loss": 1.0 / (i + 1)} for i in range(5)]
    figure = learning_curves({"run": history}, ["task_loss", "mse_xy"])
    assert [ax.get_ylabel() for ax in figure.axes] == ["task loss", "Cartesian MSE (m²)"]
    family = ArmTrajectories(n_steps=50, clock_groups=5, clock_spike_every=5)
    episode = family.sample(1, torch.Generator().manual_seed(0))
    axes = family.plot(episode, episode.omega).axes
    assert (axes[0].get_xlabel(), axes[0].get_ylabel(), axes[1].get_ylabel(), axes[3].get_ylabel()) == \
        ("x (m)", "y (m)", "x (m)", "ω (rad/s)")
    legend = axes[3].get_legend()
    assert legend is not None and legend.get_bbox_to_anchor().y0 < axes[3].bbox.y0   # below the ω panel
