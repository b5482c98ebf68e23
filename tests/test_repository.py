"""The repository holds code, configs, results and small test data, not runs: no tracked file over 1 MB outside
the shipped models (l2l/pretrained/) and the test fixtures (tests/data/)."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 1_000_000
ALLOWED = ("l2l/pretrained/", "tests/data/")


def tracked_files() -> list[str]:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    listing = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    return [name for name in listing.decode().split("\0") if name]


def oversized(names: list[str], root: Path) -> list[str]:
    """The files of ``names`` over the limit, outside the allowed folders, as 'path (bytes)'."""
    found = []
    for name in names:
        path = root / name
        if path.is_file() and not name.startswith(ALLOWED) and path.stat().st_size > LIMIT:
            found.append(f"{name} ({path.stat().st_size} bytes)")
    return found


def test_no_tracked_file_over_1_mb_outside_the_models_and_test_data():
    big = oversized(tracked_files(), ROOT)
    assert not big, ("files over 1 MB: keep results (metrics, evaluations, configs) in docs/data, not checkpoints "
                     f"of finished runs: {big}")


def test_the_size_check_fails_on_a_large_file(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "last.pt").write_bytes(b"\0" * (LIMIT + 1))
    (tmp_path / "tests" / "data").mkdir(parents=True)
    (tmp_path / "tests" / "data" / "fixture.npz").write_bytes(b"\0" * (LIMIT + 1))
    assert oversized(["docs/last.pt", "tests/data/fixture.npz"], tmp_path) == [f"docs/last.pt ({LIMIT + 1} bytes)"]
