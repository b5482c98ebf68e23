"""``l2l-verify``: the float64 identities of ``l2l.verify`` plus the e-prop 2 reference fixture row.

``eprop2_reference_fixture/<backend>`` runs one outer iteration of ``experiment=arm_one_shot_paper``
(``semantics=reference``) on the published e-prop 2 code's float64 dump and passes when every spike is
identical and every signal, ΔW, output, loss and meta-gradient agrees to 1e-10 (l2l.outer_loop.app.reference_fixture).
The dump lives in the source checkout's ``tests/data/`` (2.2 MB, not in the wheel): without it the rows are
skipped with a message, or ``--reference-fixture PATH`` points at it.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import torch

from l2l import __version__
from l2l.allocator import keep_freed_memory
from l2l.command_line import CommandParser
from l2l.outer_loop.app.reference_fixture import (
    FIXTURE_NAME,
    TOLERANCE,
    FixtureError,
    build_fixture_meta,
    default_fixture_path,
    load_fixture,
    reproduce,
)
from l2l.verify import CHECK_FAMILIES, add_arguments, report, run_checks

FIXTURE_FAMILY = "eprop2_reference_fixture"
BACKENDS = ("explicit", "higher")


def fixture_rows(path: Path | None) -> list[dict]:
    """One row per inner backend: the largest relative error over every compared quantity (spikes must be equal)."""
    names = [f"{FIXTURE_FAMILY}/{backend}" for backend in BACKENDS]
    if path is None or not Path(path).is_file():
        where = f"{path} does not exist" if path is not None else f"tests/data/{FIXTURE_NAME} is not installed"
        reason = f"skipped: {where} (it comes with the source checkout; pass --reference-fixture PATH)"
        return [{"name": n, "rel_err": None, "tol": TOLERANCE, "ok": None, "reason": reason} for n in names]
    fixture = load_fixture(path)
    rows = []
    for name, backend in zip(names, BACKENDS, strict=True):
        started = time.perf_counter()
        result = reproduce(build_fixture_meta(fixture, "reference", backend), fixture)
        row = {"name": name, "rel_err": result.max_rel_err, "tol": TOLERANCE, "ok": result.ok()}
        different = [k for k, equal in result.spikes_equal.items() if not equal]
        if different:
            row["reason"] = "spikes differ: " + ", ".join(different)
        row["seconds"] = round(time.perf_counter() - started, 3)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> int:
    keep_freed_memory()
    parser = CommandParser(prog="l2l-verify", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"%(prog)s (l2l) {__version__}")
    add_arguments(parser, (*CHECK_FAMILIES, FIXTURE_FAMILY))
    parser.add_argument("--reference-fixture", type=Path, default=None, metavar="PATH",
                        help=f"the published e-prop 2 code's float64 dump ({FIXTURE_NAME}; default: tests/data/)")
    args = parser.parse_args(argv)
    if args.reference_fixture is not None and not args.reference_fixture.is_file():
        parser.error(f"--reference-fixture {str(args.reference_fixture)!r}: no such file")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    core = [c for c in args.checks if c != FIXTURE_FAMILY]
    fixture = FIXTURE_FAMILY in args.checks and "lif" in args.cells
    if not core and not fixture:
        parser.error(f"--checks {' '.join(args.checks)} --cells {' '.join(args.cells)} runs nothing: the "
                     f"{FIXTURE_FAMILY} rows are of the lif cell (add --cells lif)")
    rows = run_checks(args.cells, core) if core else []
    if fixture:
        try:
            rows += fixture_rows(args.reference_fixture or default_fixture_path())
        except FixtureError as error:
            parser.error(f"--reference-fixture: {error}")
    return report(rows, args.json)


if __name__ == "__main__":
    sys.exit(main())
