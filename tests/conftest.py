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
    from outer_loop.app.compose import compose_config

    return lambda *overrides: compose_config(overrides)


@pytest.fixture(autouse=True)
def _one_thread():
    """Small tensors: one thread is as fast and immune to CPU oversubscription on shared machines."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
