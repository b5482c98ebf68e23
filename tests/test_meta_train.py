"""Meta-training (l2l-train mode=meta): outputs, resume, NaN guard, bad overrides, learned rates, W&B."""

import json
import sys
import types

import pytest
import torch
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf
from omegaconf.errors import ValidationError

from l2l.outer_loop.app.build import build_meta, build_task
from l2l.outer_loop.app.compose import compose_config
from l2l.outer_loop.app.train import run
from l2l.outer_loop.checkpoint import load_checkpoint, save_checkpoint
from l2l.outer_loop.guard import NonFiniteLossError

TINY = ["experiment=smoke", "task.n_steps=40", "network.n_hidden=12", "error_module.n_hidden=10",
        "error_module.code_neurons=6", "outer.batch_size=2", "outer.iterations=4", "outer.log_every=1",
        "outer.checkpoint_every=2", "outer.figure_every=0", "outer.progress=false", "eval.tasks=3",
        "eval.figure_tasks=2", "eval.bptt_lrs=[0.1,1.0]", "eval.eprop1_lrs=[0.1,1.0]"]


def config(*overrides):
    return compose_config([*TINY, *overrides])


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def without_time(rows):
    return [{k: v for k, v in r.items() if k != "seconds"} for r in rows]


def test_meta_run_writes_metrics_checkpoint_eval_and_figures(tmp_path):
    summary = run(config("outer.figure_every=2"), tmp_path)
    rows = records(tmp_path)
    assert set(rows[-1]) == {"iteration", *(f"eval/{k}" for k in ("demo_mse", "test_mse", "bptt_step_mse",
                                                                   "eprop1_step_mse"))}
    rows = rows[:-1]
    assert [r["iteration"] for r in rows] == [0, 1, 2, 3]
    for key in ("iteration", "loss", "demo_mse", "test_mse", "learner_rate_hz", "error_module_rate_hz", "seconds"):
        assert all(key in r for r in rows), key
    evaluation = json.loads((tmp_path / "eval.json").read_text())
    for key in ("demo_mse", "test_mse", "bptt_step_mse", "eprop1_step_mse"):
        assert isinstance(evaluation[key], float) and len(evaluation["per_task"][key]) == 3
    assert summary["eval"]["test_mse"] == evaluation["test_mse"]
    for name in ("checkpoints/last.pt", "learning_curve.png", "eval.png", "summary.json", "figures/arm_000001.png"):
        assert (tmp_path / name).exists(), name
    state = load_checkpoint(tmp_path)
    assert state["iteration"] == 4 and state["config"]["outer"]["iterations"] == 4
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))


def test_resumed_run_reproduces_the_uninterrupted_run(tmp_path):
    run(config("eval.enabled=false"), tmp_path / "whole")
    run(config("eval.enabled=false", "outer.iterations=2"), tmp_path / "first")
    resumed = tmp_path / "resumed"
    run(config("eval.enabled=false", f"outer.resume={tmp_path / 'first' / 'checkpoints' / 'last.pt'}"), resumed)
    assert without_time(records(resumed)) == without_time(records(tmp_path / "whole"))
    whole, again = load_checkpoint(tmp_path / "whole"), load_checkpoint(resumed)
    for name, tensor in whole["meta"].items():
        assert torch.equal(tensor, again["meta"][name]), name


def test_resume_with_another_config_fails_naming_the_difference(tmp_path):
    run(config("eval.enabled=false", "outer.iterations=2"), tmp_path / "first")
    last = tmp_path / "first" / "checkpoints" / "last.pt"
    with pytest.raises(ValueError, match="network.*n_hidden|n_hidden.*12"):
        run(config("eval.enabled=false", f"outer.resume={last}", "network.n_hidden=14"), tmp_path / "other")


def test_nan_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    from l2l.outer_loop.algorithm import meta as meta_module

    original = meta_module.MetaLearner.forward
    calls = {"n": 0}

    def poisoned(self, episode, code):
        step = original(self, episode, code)
        calls["n"] += 1
        if calls["n"] == 3:
            step.loss = step.loss * float("nan")
        return step

    monkeypatch.setattr(meta_module.MetaLearner, "forward", poisoned)
    with pytest.raises(NonFiniteLossError, match="iteration 2: the outer loss is nan.*last good checkpoint"):
        run(config("eval.enabled=false"), tmp_path)
    assert load_checkpoint(tmp_path)["iteration"] == 2
    assert not (tmp_path / "summary.json").exists()


@pytest.mark.parametrize(("override", "message"), [
    ("outer.iteratons=5", "iteratons"),
    ("outer.iterations=abc", "iterations"),
    ("error_module.signal_layer=all", "signal_layer"),
])
def test_bad_overrides_fail_at_composition_naming_the_key(override, message):
    with pytest.raises((ConfigCompositionException, ValidationError), match=message):
        config(override)


@pytest.mark.parametrize(("override", "message"), [
    ("inner.lr_mode=per_neuron", "inner.lr_mode='per_neuron'"),
    ("inner.backend=jax", "inner.backend='jax'"),
    ("inner.adapt_weights=[w_out]", "inner.adapt_weights=['w_out'] is not allowed: 'w_out' is none of"),
    ("error_module.signal_layers=some", "signal_layers='some'"),
    ("outer.checkpoint_every=0", "outer.checkpoint_every=0"),
    ("inner.optimizer=adam", "inner.optimizer='adam' needs inner.backend=higher"),
])
def test_bad_values_fail_before_training_naming_field_and_value(tmp_path, override, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        run(config(override), tmp_path)
    assert not (tmp_path / "checkpoints").exists()


def test_corrupt_checkpoint_is_reported_and_atomic_save_leaves_no_partial_file(tmp_path):
    bad = tmp_path / "last.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="could not be read"):
        load_checkpoint(bad)
    save_checkpoint(tmp_path / "ok.pt", {"meta": {}, "optimizer": {}, "iteration": 0, "config": {}})
    assert load_checkpoint(tmp_path / "ok.pt")["iteration"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt", "ok.pt"]
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


@pytest.mark.parametrize("inner", ["learned_per_layer", "learned_per_synapse"])
def test_meta_gradient_reaches_every_meta_parameter_including_learned_rates(inner):
    cfg = config(f"inner={inner}", "network.layers=2", "error_module.signal_layers=all")
    torch.manual_seed(0)
    meta = build_meta(cfg, build_task(cfg.task)).double()
    generator = torch.Generator().manual_seed(3)
    episode = meta.family.sample(2, generator).to(dtype=torch.float64)
    step = meta(episode, generator)
    step.loss.backward()
    for name, p in meta.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    names = {n for n, _ in meta.named_parameters()}
    assert {"rates.log_rates.layers__0__w_in", "rates.log_rates.layers__1__w_rec", "learner.readout.w_out",
            "error_module.network.readout.w_out", "error_module.network.layers.0.w_rec"} <= names
    if inner == "learned_per_synapse":
        assert meta.rates.log_rates["layers__0__w_rec"].shape == meta.learner.layers[0].w_rec.shape


def test_several_demonstrations_update_after_each(tmp_path):
    from l2l.inner_loop.one_shot import adapt

    cfg = config()
    torch.manual_seed(0)
    meta = build_meta(cfg, build_task(cfg.task)).double()
    generator = torch.Generator().manual_seed(3)
    episode = meta.family.sample(2, generator).to(dtype=torch.float64)
    code = meta.encode(episode, generator).double()[0]     # (B, T, n_code): the same code in both demonstrations
    two = adapt(meta.learner, meta.error_module, episode.inputs, code, 0.01, n_demos=2)
    one = adapt(meta.learner, meta.error_module, episode.inputs, code, 0.01)
    assert len(two.steps) == 2
    torch.testing.assert_close(two.steps[0].update["layers.0.w_in"], one.update["layers.0.w_in"])
    second = meta.learner.run(episode.inputs, one.params, record=True)   # the demonstration seen by W_task
    torch.testing.assert_close(two.steps[1].demo.output, second.output)
    expected = one.params["layers.0.w_rec"] - 0.01 * two.steps[1].update["layers.0.w_rec"]
    torch.testing.assert_close(two.params["layers.0.w_rec"], expected)


def test_each_demonstration_sees_its_own_code():
    from l2l.inner_loop.one_shot import adapt

    cfg = config("inner.n_demos=2")
    torch.manual_seed(0)
    meta = build_meta(cfg, build_task(cfg.task)).double()
    generator = torch.Generator().manual_seed(3)
    episode = meta.family.sample(2, generator).to(dtype=torch.float64)
    codes = meta.encode(episode, generator).double()
    assert codes.shape[0] == 2 and not torch.equal(codes[0], codes[1])
    step = meta(episode, codes=codes)
    for k in range(2):
        seen = torch.cat([codes[k], *(a.z for a in step.adaptation.steps[k].demo.layers), episode.inputs], -1)
        told = meta.error_module.network.run(seen)     # the module run on its concatenated input, explicitly
        got = step.adaptation.steps[k].error_trial
        assert torch.equal(got.layers[0].z, told.layers[0].z)
        torch.testing.assert_close(got.output, told.output, rtol=0, atol=1e-12)
    reused = adapt(meta.learner, meta.error_module, episode.inputs, [codes[0], codes[0]], meta.rates(), n_demos=2)
    assert not torch.equal(reused.params["layers.0.w_rec"], step.adaptation.params["layers.0.w_rec"])


@pytest.fixture
def fake_wandb(monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)   # l2l's own default (offline), not the suite's "disabled"
    calls = []
    module = types.SimpleNamespace(
        init=lambda **kw: calls.append(("init", kw)) or types.SimpleNamespace(
            log=lambda values, step=None: calls.append(("log", step, values)),
            finish=lambda exit_code=0: calls.append(("finish", exit_code))),
        Image=lambda pixels: ("image", pixels.shape), Settings=lambda **kw: kw)
    monkeypatch.setitem(sys.modules, "wandb", module)
    return calls


def test_wandb_gets_resolved_config_group_images_and_finish(fake_wandb, tmp_path):
    run(config("logger=wandb", "outer.figure_every=2"), tmp_path)
    init = fake_wandb[0][1]
    assert init["mode"] == "offline" and init["group"] == "smoke" and init["config"]["outer"]["batch_size"] == 2
    images = [c for c in fake_wandb if c[0] == "log" and "arm" in c[2]]
    assert [c[1] for c in images] == [1, 3] and images[0][2]["arm"][0] == "image"
    assert any(c[0] == "log" and "eval/test_mse" in c[2] for c in fake_wandb)
    logged = {key for c in fake_wandb if c[0] == "log" for key in c[2]}
    assert {"learning_curve", "eval", "demo"} <= logged          # the figures of the run dir, in W&B too
    assert fake_wandb[-1] == ("finish", 0)


def test_wandb_run_finishes_with_exit_code_1_when_training_fails(fake_wandb, tmp_path, monkeypatch):
    from l2l.outer_loop.algorithm import meta as meta_module

    def broken(self, episode, generator=None, codes=None):
        raise RuntimeError("boom")

    monkeypatch.setattr(meta_module.MetaLearner, "forward", broken)
    with pytest.raises(RuntimeError, match="boom"):
        run(config("logger=wandb"), tmp_path)
    assert fake_wandb[-1] == ("finish", 1)


@pytest.mark.parametrize("experiment", ["arm_one_shot", "arm_one_shot_paper", "arm_one_shot_reference",
                                        "arm_one_shot_deep", "smoke"])
def test_meta_experiments_compose_and_build(experiment):
    cfg = compose_config([f"experiment={experiment}"])
    assert cfg.mode == "meta" and cfg.name == experiment
    torch.manual_seed(0)
    meta = build_meta(cfg, build_task(cfg.task))
    assert meta.learner.sizes == [cfg.network.n_hidden] * cfg.network.layers
    if experiment == "arm_one_shot_paper":   # the reference protocol, unchanged
        assert (cfg.network.n_hidden, cfg.error_module.n_hidden, cfg.outer.batch_size, cfg.outer.iterations,
                cfg.task.n_steps, cfg.task.n_sines, cfg.task.omega_weight, cfg.inner.lr) == (
                    400, 300, 100, 20000, 500, 5, 0.1, 4e-5)
        assert meta.error_module.network.n_in == 200 + 400 + 10
    if experiment == "arm_one_shot_reference":  # the same protocol at the small sizes: only the sizes differ
        paper = compose_config(["experiment=arm_one_shot_paper", "network.n_hidden=100", "error_module.n_hidden=100",
                                "outer.batch_size=32", "outer.iterations=10000", "outer.checkpoint_every=50",
                                "outer.figure_every=1000", "outer.threads=2", "name=arm_one_shot_reference"])
        assert OmegaConf.to_container(cfg) == OmegaConf.to_container(paper)


def test_frozen_error_module_stays_at_its_initialization_while_the_learner_trains(tmp_path):
    """outer.train_error_module=false: the ablation's error module is exactly its seeded random start."""
    cfg = config("eval.enabled=false", "outer.train_error_module=false")
    run(cfg, tmp_path)
    torch.manual_seed(cfg.seed)
    initial = build_meta(cfg, build_task(cfg.task)).state_dict()
    trained = load_checkpoint(tmp_path)["meta"]
    error_module = [name for name in trained if name.startswith("error_module.")]
    assert error_module
    for name in error_module:
        assert torch.equal(trained[name], initial[name]), name
    assert not torch.equal(trained["learner.layers.0.w_rec"], initial["learner.layers.0.w_rec"])


def test_resume_from_a_checkpoint_older_than_a_config_entry_uses_its_default(tmp_path):
    """A checkpoint written before outer.train_error_module existed resumes as if it held the default."""
    run(config("eval.enabled=false", "outer.iterations=2"), tmp_path / "first")
    last = tmp_path / "first" / "checkpoints" / "last.pt"
    state = load_checkpoint(last)
    del state["config"]["outer"]["train_error_module"]
    save_checkpoint(last, state)
    run(config("eval.enabled=false", "outer.iterations=3", f"outer.resume={last}"), tmp_path / "resumed")
    assert load_checkpoint(tmp_path / "resumed")["iteration"] == 3
