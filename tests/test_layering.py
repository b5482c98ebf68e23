"""Imports flow one way: l2l ← l2l.tasks, l2l ← l2l.inner_loop, all of them ← l2l.outer_loop; inside outer_loop
the algorithm imports none of the app, the reports or the benchmarks. Every import counts, lazy ones included.
The installed name is ``l2l`` only: nothing imports the folders by their own names (``tasks``, ``inner_loop``,
``outer_loop``), which a wheel does not install."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("l2l", "tasks", "inner_loop", "outer_loop")
"""The top-level folders; each but l2l/ is the package l2l.<folder> (through the link l2l/<folder>)."""
SHARED = ("l2l.outer_loop.checkpoint", "l2l.outer_loop.optimizers", "l2l.outer_loop.guard")
ALLOWED = {
    "l2l": ("l2l",),
    "l2l.tasks": ("l2l", "l2l.tasks"),
    "l2l.inner_loop": ("l2l", "l2l.inner_loop"),
    "l2l.outer_loop.checkpoint": ("l2l",),
    "l2l.outer_loop.optimizers": ("l2l",),
    "l2l.outer_loop.guard": ("l2l",),
    "l2l.outer_loop.algorithm": ("l2l", "l2l.tasks", "l2l.inner_loop", "l2l.outer_loop.algorithm", *SHARED),
    "l2l.outer_loop": ("l2l", "l2l.tasks", "l2l.inner_loop", "l2l.outer_loop", "l2l.outer_loop.algorithm", *SHARED),
}
"""Each layer (the longest prefix of a module's name) and the layers it may import."""


def modules() -> list[tuple[str, Path]]:
    """(installed module name, file) of every module in the four folders (the links under l2l/ not followed)."""
    found = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if folder == "l2l" and parts[1] in FOLDERS:
                continue
            dotted = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found.append((dotted if folder == "l2l" else f"l2l.{dotted}", path))
    return found


def project_imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every import of a project module anywhere in the file (functions included), by the
    folders' own names too (``import tasks``), which :func:`test_only_l2l_is_imported` refuses."""
    imported = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            imported += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from l2l.outer_loop.app import train` imports l2l.outer_loop.app.train
            imported += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return [(line, name) for line, name in imported if name.split(".")[0] in FOLDERS]


def layer(module: str) -> str:
    return max((key for key in ALLOWED if module == key or module.startswith(key + ".")), key=len)


def rule_for(module: str) -> tuple[str, ...]:
    return ALLOWED[layer(module)]


def within(name: str, layers: tuple[str, ...]) -> bool:
    """Whether module ``name`` belongs to one of ``layers`` (l2l.tasks.arm is in layer l2l.tasks, not l2l)."""
    return name.split(".")[0] == "l2l" and layer(name) in layers


@pytest.mark.parametrize("module, path", modules(), ids=[m for m, _ in modules()])
def test_imports_flow_one_way(module, path):
    allowed = rule_for(module)
    against = [f"{path.relative_to(ROOT)}:{line} imports {name}" for line, name in project_imports(path)
               if not within(name, allowed)]
    assert not against, "\n".join(against)


@pytest.mark.parametrize("folder", ["tests", "docs"])
def test_only_l2l_is_imported(folder):
    """Tests and the docs' Python files import l2l.tasks, never tasks (the wheel installs l2l only)."""
    against = [f"{path.relative_to(ROOT)}:{line} imports {name}" for path in sorted((ROOT / folder).rglob("*.py"))
               for line, name in project_imports(path) if name.split(".")[0] != "l2l"]
    assert not against, "\n".join(against)


def test_the_checker_sees_lazy_imports(tmp_path):
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from l2l.outer_loop.app import train\n    import l2l.tasks.arm\n"
                      "    import tasks.arm\n")
    assert project_imports(source) == [(2, "l2l.outer_loop.app.train"), (3, "l2l.tasks.arm"), (4, "tasks.arm")]
    assert not within("l2l.outer_loop.app.train", rule_for("l2l.outer_loop.algorithm.meta"))
    assert within("l2l.outer_loop.checkpoint", rule_for("l2l.outer_loop.algorithm.meta_train"))
    assert not within("l2l.tasks.arm", rule_for("l2l.spike")), "the core must not import the task families"
    assert not within("tasks.arm", rule_for("l2l.outer_loop.app.train")), "the folder's own name is not installed"


HYDRA_FREE = ("l2l", "l2l.tasks", "l2l.inner_loop", "l2l.outer_loop.algorithm", *SHARED)
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
