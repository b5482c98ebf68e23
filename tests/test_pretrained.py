"""Shipped models: they still learn in one shot; export round trip; bad checkpoints fail with one clear line."""

import json
import subprocess
import sys

import pytest
import torch
import yaml

from l2l.outer_loop.app.compose import compose_config
from l2l.outer_loop.app.train import run
from l2l.outer_loop.checkpoint import save_checkpoint
from l2l.outer_loop.reports.pretrained import (
    CheckpointError,
    available,
    check_scores,
    export_pretrained,
    load_pretrained,
    read_state,
)

SHIPPED = ("arm_one_shot", "arm_one_shot_deep", "arm_one_shot_reference", "arm_one_shot_reference_deep")
TINY = ["experiment=smoke", "task.n_steps=40", "network.n_hidden=12", "error_module.n_hidden=10",
        "error_module.code_neurons=6", "outer.batch_size=2", "outer.iterations=2", "outer.log_every=1",
        "outer.checkpoint_every=2", "outer.figure_every=0", "outer.progress=false", "eval.enabled=false"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("tiny_run")
    run(compose_config(TINY), run_dir)
    return run_dir


def test_the_models_are_shipped():
    assert set(SHIPPED) <= set(available())


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_still_learns_in_one_shot(name):
    """The fixed held-out tasks of the model's check: a change that breaks one-shot learning fails here."""
    meta, cfg, info = load_pretrained(name)
    assert info["command"].startswith("l2l-train ") and info["iteration"] >= 1000
    stored = info["check"]
    scores = check_scores(meta, stored["seed"], stored["tasks"])
    assert scores["ratio"] < 0.7, scores  # one update must cut the error by more than 30 %
    assert scores["test_mse"] == pytest.approx(stored["test_mse"], rel=0.15), (scores, stored)
    assert scores["demo_mse"] == pytest.approx(stored["demo_mse"], rel=0.05), (scores, stored)


def test_export_round_trip_keeps_weights_command_and_scores(tiny_run, tmp_path):
    path = export_pretrained(tiny_run, "tiny", "l2l-train experiment=smoke ...", tmp_path)
    assert path == tmp_path / "tiny.pt" and not list(tmp_path.glob("*.tmp"))
    meta, cfg, info = load_pretrained(path)
    assert info["name"] == "tiny" and info["command"] == "l2l-train experiment=smoke ..." and info["iteration"] == 2
    assert set(info["check"]) == {"seed", "tasks", "demo_mse", "test_mse", "ratio"}
    saved = read_state(tiny_run / "checkpoints" / "last.pt")["meta"]
    for name, tensor in meta.state_dict().items():
        assert torch.equal(tensor, saved[name]), name
    readable = yaml.safe_load((tmp_path / "tiny.yaml").read_text())
    assert readable["command"] == info["command"] and readable["config"]["network"]["n_hidden"] == 12
    assert "selection" not in readable


def test_export_keeps_how_the_model_was_chosen(tiny_run, tmp_path):
    selection = {"validation_seed": 1, "test_seed": 2, "selected": "training seed1",
                 "candidates": [{"model": "training seed1", "validation_after": 0.5}]}
    path = export_pretrained(tiny_run, "tiny", "l2l-train ...", tmp_path, selection)
    assert read_state(path)["selection"] == selection
    assert yaml.safe_load((tmp_path / "tiny.yaml").read_text())["selection"]["selected"] == "training seed1"


def test_training_checkpoint_loads_under_its_run_name(tiny_run):
    _, cfg, info = load_pretrained(tiny_run)
    assert info["name"] == tiny_run.name and cfg.network.n_hidden == 12


def test_missing_checkpoint_names_the_shipped_models(tmp_path):
    with pytest.raises(CheckpointError, match=r"no such file, and not a shipped model \(shipped: .*arm_one_shot"):
        load_pretrained(tmp_path / "nope.pt")


def test_corrupted_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"PK\x03\x04 this is not a torch zip archive" * 10)
    with pytest.raises(CheckpointError, match=r"broken\.pt' is corrupted or not a torch checkpoint"):
        load_pretrained(bad)


def test_truncated_checkpoint_is_corrupted(tiny_run, tmp_path):
    data = (tiny_run / "checkpoints" / "last.pt").read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="is corrupted or not a torch checkpoint"):
        load_pretrained(cut)


def test_incompatible_weights_are_named(tiny_run, tmp_path):
    state = read_state(tiny_run / "checkpoints" / "last.pt")
    state["meta"]["learner.layers.0.w_rec"] = torch.zeros(3, 3)
    del state["meta"]["learner.layers.0.w_in"]
    save_checkpoint(tmp_path / "other.pt", state)
    with pytest.raises(CheckpointError, match=r"does not match the model its config describes: missing "
                                              r"\['learner.layers.0.w_in'\]; wrong shapes \['learner.layers.0.w_rec"):
        load_pretrained(tmp_path / "other.pt")


@pytest.mark.parametrize("state, message", [
    ({"weights": {}}, "is not an l2l e-prop 2 model"),
    ({"meta": {}, "config": {"mode": "direct"}}, "comes from a mode='direct' run"),
    ({"meta": {}, "config": {"mode": "meta", "network": {"n_hidden": "many"}}}, "has a config this version cannot"),
])
def test_foreign_checkpoints_are_named(tmp_path, state, message):
    save_checkpoint(tmp_path / "foreign.pt", state)
    with pytest.raises(CheckpointError, match=message):
        load_pretrained(tmp_path / "foreign.pt")


def test_non_finite_weights_are_refused(tiny_run, tmp_path):
    state = read_state(tiny_run / "checkpoints" / "last.pt")
    state["meta"]["learner.layers.0.w_rec"][0, 1] = float("nan")
    save_checkpoint(tmp_path / "nan.pt", state)
    with pytest.raises(CheckpointError, match=r"non-finite weights in \['learner.layers.0.w_rec'\]"):
        load_pretrained(tmp_path / "nan.pt")


def _demo(*overrides, cwd):
    return subprocess.run([sys.executable, "-m", "l2l.outer_loop.reports.demo", *overrides], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def test_demo_on_a_corrupted_checkpoint_prints_one_line_and_exits_2(tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"garbage")
    done = _demo(f"checkpoint={bad}", f"hydra.run.dir={tmp_path / 'out'}", cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("l2l-demo: error: checkpoint") and "broken.pt" in done.stderr


@pytest.mark.slow
def test_demo_writes_json_figure_and_gif(tmp_path):
    out = tmp_path / "demo"
    done = _demo("tasks=2", "threads=1", f"hydra.run.dir={out}", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "demo.json").read_text())
    for key in ("tasks", "demo_mse", "test_mse", "bptt_step_mse", "eprop1_step_mse", "checkpoint"):
        assert key in result, key
    assert result["checkpoint"] == "arm_one_shot" and result["tasks"] == 2
    assert len(result["per_task"]["test_mse"]) == 2
    assert (out / "demo.png").stat().st_size > 0 and (out / "arm.gif").read_bytes()[:4] == b"GIF8"
    assert "after one e-prop update" in done.stdout


def test_eval_on_a_corrupted_checkpoint_prints_one_line_and_exits_2(tmp_path, capsys):
    from l2l.outer_loop.reports.eval_cli import main as eval_main

    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(SystemExit) as exit_:
        eval_main([str(bad)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("l2l-eval: error: checkpoint") and "broken.pt" in err and "Traceback" not in err
