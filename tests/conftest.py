"""Test set-up: no network access, W&B off, deterministic seeds."""

import os

import pytest
import torch

os.environ.setdefault("WANDB_MODE", "disabled")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def compose():
    """``compose(*overrides)``: the config ``l2l-train <overrides>`` would run with (as the app composes it)."""
    from l2l.outer_loop.app.compose import compose_config

    return lambda *overrides: compose_config(overrides)


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one thread is as fast and immune to CPU oversubscription on shared machines."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def write_eval():
    """write_eval(dir, demo, test): an ``l2l-eval`` eval.json in dir with these per-task MSEs (BPTT step 0.1,
    e-prop 1 step 0.2), for the report tests."""
    import json

    def write(path, demo, test):
        path.mkdir(parents=True, exist_ok=True)
        path.joinpath("eval.json").write_text(json.dumps({
            "demo_mse": sum(demo) / len(demo), "test_mse": sum(test) / len(test),
            "ratio_test_over_demo": sum(test) / sum(demo), "bptt_step_mse": 0.1, "eprop1_step_mse": 0.2,
            "per_task": {"demo_mse": demo, "test_mse": test}, "n_tasks": len(demo), "bptt_lr": 0.01,
            "eprop1_lr": 0.1}))

    return write
