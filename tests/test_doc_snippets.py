"""Every Python block of the README and docs/ runs as written (blocks of one file share their names, in order)."""

import re
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def blocks(path: Path) -> list[str]:
    return BLOCK.findall(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", [p for p in DOCS if blocks(p)], ids=lambda p: p.name)
def test_python_blocks_run(path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)          # a snippet that writes files writes them here
    torch.manual_seed(0)
    namespace: dict = {"__name__": "__doc_snippet__"}
    for number, code in enumerate(blocks(path), 1):
        try:
            exec(compile(code, f"{path.name}[{number}]", "exec"), namespace)
        except Exception as error:
            pytest.fail(f"{path.name}, Python block {number}: {type(error).__name__}: {error}")


def test_the_docs_have_python_blocks():
    assert sum(len(blocks(p)) for p in DOCS) >= 4
