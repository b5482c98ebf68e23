"""The app's configs: where they live, how code (benchmarks, checks, tests) composes one without Hydra's CLI,
and the ``--version`` of the Hydra commands (Hydra's own flag prints Hydra's version)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from l2l import __version__
from l2l.allocator import keep_freed_memory
from l2l.outer_loop.app.composition_errors import composition_problem
from l2l.outer_loop.app.config import register_configs

CONFIG_DIR = str(Path(__file__).resolve().parents[1] / "conf")
"""The app's configs: ``outer_loop/conf`` (in a source tree a link to the top-level ``conf/``; in a wheel a copy)."""


def compose_config(overrides: Sequence[str] = (), config_name: str = "config") -> DictConfig:
    """The config ``l2l-train <overrides>`` would run with (``config_name="demo"``: ``l2l-demo``'s)."""
    register_configs()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides))


def with_version(prog: str, app: Callable[[], object], config_name: str = "config") -> Callable[[], None]:
    """The console entry of a Hydra ``app``: ``--version`` prints l2l's version; a command line Hydra would refuse
    stops in one line (exit 2; ``HYDRA_FULL_ERROR=1`` leaves it to Hydra); anything else runs the app."""

    def command() -> None:
        if "--version" in sys.argv[1:]:
            print(f"{prog} (l2l) {__version__}")
            return
        keep_freed_memory()
        if os.environ.get("HYDRA_FULL_ERROR") != "1":
            problem = composition_problem(sys.argv[1:], lambda overrides: compose_config(overrides, config_name), prog)
            if problem is not None:
                print(f"{prog}: error: {problem}", file=sys.stderr)
                raise SystemExit(2)
        app()

    command.__doc__ = (f"The ``{prog}`` command: ``--version`` prints l2l's version, a refused command line stops in "
                       "one line, anything else runs the app.")
    return command
