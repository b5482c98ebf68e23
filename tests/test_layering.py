"""Imports flow one way: l2l ← tasks, l2l ← inner_loop, all of them ← outer_loop; inside outer_loop the
algorithm imports none of the app, the reports or the benchmarks. Every import counts, lazy ones included."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("l2l", "tasks", "inner_loop", "outer_loop")
SHARED = ("outer_loop.checkpoint", "outer_loop.optimizers", "outer_loop.guard")
ALLOWED = {
    "l2l": ("l2l",),
    "tasks": ("l2l", "tasks"),
    "inner_loop": ("l2l", "inner_loop"),
    "outer_loop.checkpoint": ("l2l",),
    "outer_loop.optimizers": ("l2l",),
    "outer_loop.guard": ("l2l",),
    "outer_loop.algorithm": ("l2l", "tasks", "inner_loop", "outer_loop.algorithm", *SHARED),
    "outer_loop": PROJECT,
}


def modules() -> list[tuple[str, Path]]:
    found = []
    for package in PROJECT:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            found.append((".".join(parts[:-1] if parts[-1] == "__init__" else parts), path))
    return found


def project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a project module anywhere in the file (functions included)."""
    imported = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            imported += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from outer_loop.app import train` imports outer_loop.app.train
            imported += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in imported if name.split(".")[0] in PROJECT]


def rule_for(module: str) -> tuple[str, ...]:
    owner = max((key for key in ALLOWED if module == key or module.startswith(key + ".")), key=len)
    return ALLOWED[owner]


def within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@pytest.mark.parametrize("module, path", modules(), ids=[m for m, _ in modules()])
def test_imports_flow_one_way(module, path):
    allowed = rule_for(module)
    against = [f"{path.relative_to(ROOT)}:{line} imports {name}" for line, name in project_imports(path)
               if not within(name, allowed)]
    assert not against, "\n".join(against)


def test_the_checker_sees_lazy_imports(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from outer_loop.app import train\n    import tasks.arm\n")
    assert project_imports(source) == [(2, "outer_loop.app.train"), (3, "tasks.arm")]
    assert not within("outer_loop.app.train", rule_for("outer_loop.algorithm.meta"))
    assert within("outer_loop.checkpoint", rule_for("outer_loop.algorithm.meta_train"))


HYDRA_FREE = ("l2l", "tasks", "inner_loop", "outer_loop.algorithm", "outer_loop.checkpoint", "outer_loop.optimizers",
              "outer_loop.guard")
"""Below the app: the algorithm works without Hydra; the app maps its config to records once."""


def third_party_imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level package) of every import in the file (functions included)."""
    imported = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            imported += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            imported.append((node.lineno, node.module.split(".")[0]))
    return imported


@pytest.mark.parametrize("module, path", [(m, p) for m, p in modules() if within(m, HYDRA_FREE)],
                         ids=[m for m, _ in modules() if within(m, HYDRA_FREE)])
def test_nothing_below_the_app_imports_hydra_or_omegaconf(module, path):
    against = [f"{path.relative_to(ROOT)}:{line} imports {name}" for line, name in third_party_imports(path)
               if name in ("hydra", "omegaconf")]
    assert not against, "\n".join(against)


def test_the_hydra_checker_sees_lazy_imports(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from omegaconf import DictConfig\n    import hydra.utils\n")
    assert third_party_imports(source) == [(2, "omegaconf"), (3, "hydra")]
