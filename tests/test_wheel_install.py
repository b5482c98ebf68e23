"""The wheel installs one import name, ``l2l``, and the README's snippets run from it beside a user's own modules.

The folders ``tasks/``, ``inner_loop/`` and ``outer_loop/`` are installed as ``l2l.tasks``, ``l2l.inner_loop`` and
``l2l.outer_loop``; a ``tasks.py`` (or ``inner_loop.py``, ``outer_loop.py``) in the user's working directory must
neither break the README's code nor be imported by it.
"""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from test_doc_snippets import blocks

ROOT = Path(__file__).resolve().parents[1]
USER_MODULES = ("tasks", "inner_loop", "outer_loop")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The project's wheel, built from this checkout (no build isolation: setuptools of this environment)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(ROOT),
                    "-w", str(out)], check=True, cwd=out, capture_output=True, timeout=600)
    return next(out.glob("l2l-*.whl"))


@pytest.mark.slow
def test_the_wheel_holds_only_l2l(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"l2l", wheel.name.split("-py")[0] + ".dist-info"}
    top_level = next(n for n in names if n.endswith("top_level.txt"))
    assert zipfile.ZipFile(wheel).read(top_level).decode().split() == ["l2l"]
    for package in ("l2l/tasks/arm.py", "l2l/inner_loop/one_shot.py", "l2l/outer_loop/app/train.py",
                    "l2l/outer_loop/conf/config.yaml", "l2l/pretrained/arm_one_shot.pt"):
        assert package in names


@pytest.mark.slow
def test_readme_snippets_run_from_the_wheel_beside_a_users_tasks_py(wheel, tmp_path):
    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=600)
    work = tmp_path / "work"
    work.mkdir()
    for name in USER_MODULES:   # a user's own modules by the folders' names: importing one is an error
        (work / f"{name}.py").write_text(f"raise ImportError('the user\\'s own {name}.py was imported')\n")
    code = "\n".join(blocks(ROOT / "README.md"))
    assert "from l2l.outer_loop.app.build import" in code
    check = ("import sys, l2l\n"
             f"assert l2l.__file__.startswith({str(site)!r}), l2l.__file__\n"
             f"assert not {{'tasks', 'inner_loop', 'outer_loop'}} & set(sys.modules), 'a folder name was imported'\n")
    (work / "readme_snippets.py").write_text(code + "\n" + check)
    done = subprocess.run([sys.executable, "readme_snippets.py"], cwd=work, capture_output=True, text=True,
                          timeout=600, env={**os.environ, "PYTHONPATH": str(site), "WANDB_MODE": "disabled"})
    assert done.returncode == 0, done.stderr[-2000:]
