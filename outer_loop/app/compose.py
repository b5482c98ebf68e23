"""The app's configs: where they live and how code (benchmarks, checks, tests) composes one without Hydra's CLI."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from outer_loop.app.config import register_configs

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")
"""The app's configs: ``outer_loop/conf`` (in a source tree a link to the top-level ``conf/``; in a wheel a copy)."""


def compose_config(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """The config ``l2l-train <overrides>`` would run with (``config_name="demo"``: ``l2l-demo``'s)."""
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))
