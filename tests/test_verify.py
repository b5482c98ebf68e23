"""l2l-verify: every row passes, and the checks fail when the math is broken."""

import dataclasses
import json

import pytest
import torch

from l2l import verify
from l2l.cells import CELLS

CHECKS = {c.name: c for cell in verify.CELL_NAMES for c in verify.checks_for(cell)}


@pytest.mark.parametrize("name", list(CHECKS))
def test_verify_row(name):
    row = verify.run_check(CHECKS[name])
    assert row["ok"], row
    assert row["rel_err"] <= 1e-9


def test_every_required_row_exists():
    for cell in verify.CELL_NAMES:
        for required in ("eprop_vs_autodiff", "rtrl_vs_bptt", "factorization_vs_bptt", "order0_vs_eprop",
                         "ordermax_vs_rtrl"):
            assert f"{required}/{cell}" in CHECKS
        for depth in (2, 3):
            assert f"deep_eprop_vs_autodiff/{cell}/depth{depth}" in CHECKS
            assert f"deep_exact_vs_bptt/{cell}/depth{depth}" in CHECKS
        assert f"ordermax_vs_rtrl/{cell}/depth2" in CHECKS


def patch_traces(monkeypatch, cell, traces):
    """Give ``cell`` other trace functions for one test (its registry entry, replaced)."""
    monkeypatch.setitem(CELLS, cell, dataclasses.replace(CELLS[cell], traces=traces))


class WrongTraces:
    """A trace module computed with a wrong parameter (the kind of bug verify must catch)."""

    def __init__(self, module, **wrong):
        self.module, self.wrong = module, wrong

    def gradient(self, params, *args):
        return self.module.gradient(dataclasses.replace(params, **self.wrong), *args)

    def current_signal(self, params, *args):
        return self.module.current_signal(dataclasses.replace(params, **self.wrong), *args)


@pytest.mark.parametrize(("cell", "wrong"), [("lif", {"tau_m": 10.0}), ("alif", {"beta": 0.0}),
                                             ("alif", {"tau_a": 1e9}), ("rnn", {"tau": 4.0})])
def test_wrong_trace_fails_the_trace_checks(monkeypatch, cell, wrong):
    patch_traces(monkeypatch, cell, WrongTraces(CELLS[cell].trace_module(), **wrong))
    rows = verify.run_checks([cell], ["eprop_vs_autodiff", "factorization_vs_bptt", "deep_eprop_vs_autodiff"])
    assert len(rows) == 4 and not any(r["ok"] for r in rows), rows


def test_lstm_without_forget_gate_carry_fails(monkeypatch):
    original = CELLS["lstm"].trace_module()

    class NoCarry:
        @staticmethod
        def gradient(params, record, pre, dE_dz, per_task):
            return original.gradient(params, {**record, "f": torch.zeros_like(record["f"])}, pre, dE_dz, per_task)

        @staticmethod
        def current_signal(params, record, dE_dz):
            return original.current_signal(params, {**record, "f": torch.zeros_like(record["f"])}, dE_dz)

    patch_traces(monkeypatch, "lstm", NoCarry)
    rows = verify.run_checks(["lstm"], ["eprop_vs_autodiff", "deep_eprop_vs_autodiff"])
    assert not any(r["ok"] for r in rows)


def test_a_spiking_check_without_spikes_fails(monkeypatch):
    make = verify.make_case

    def silent(cell, **kw):
        case = make(cell, **kw)
        return dataclasses.replace(case, inputs=torch.zeros_like(case.inputs))

    monkeypatch.setattr(verify, "make_case", silent)
    (row,) = verify.run_checks(["lif"], ["rtrl_vs_bptt"])
    assert not row["ok"] and row["spikes"] == [0] and "did not spike" in row["reason"]


def test_cli_json_and_exit_status(capsys, monkeypatch):
    assert verify.main(["--json", "--cells", "lif", "rnn", "--checks", "eprop_vs_autodiff", "rtrl_vs_bptt"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert {r["name"] for r in report["checks"]} == {"eprop_vs_autodiff/lif", "rtrl_vs_bptt/lif",
                                                     "eprop_vs_autodiff/rnn", "rtrl_vs_bptt/rnn"}
    assert all(set(r) >= {"name", "rel_err", "tol", "ok"} for r in report["checks"])
    patch_traces(monkeypatch, "lif", WrongTraces(CELLS["lif"].trace_module(), tau_m=3.0))
    assert verify.main(["--cells", "lif", "--checks", "eprop_vs_autodiff"]) == 1
    assert "FAIL eprop_vs_autodiff/lif" in capsys.readouterr().out


def test_reference_fixture_rows_pass_and_fail_when_the_semantics_are_wrong(monkeypatch):
    from l2l.outer_loop.app import verify_cli
    from l2l.outer_loop.app.reference_fixture import default_fixture_path

    path = default_fixture_path()
    rows = verify_cli.fixture_rows(path)
    assert [r["name"] for r in rows] == ["eprop2_reference_fixture/explicit", "eprop2_reference_fixture/higher"]
    assert all(r["ok"] and r["rel_err"] <= 1e-10 for r in rows), rows
    papers = verify_cli.build_fixture_meta
    monkeypatch.setattr(verify_cli, "build_fixture_meta", lambda f, s, b: papers(f, "paper", b))
    broken = verify_cli.fixture_rows(path)
    assert not any(r["ok"] for r in broken) and all("spikes differ" in r["reason"] for r in broken)


def test_reference_fixture_rows_are_skipped_without_the_file(tmp_path, capsys):
    from l2l.outer_loop.app import verify_cli

    rows = verify_cli.fixture_rows(tmp_path / "absent.npz")
    assert all(r["ok"] is None and r["reason"].startswith("skipped:") for r in rows)
    assert verify.report(rows, as_json=False) == 0
    assert "0 passed, 0 failed, 2 skipped" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        verify_cli.main(["--checks", "eprop2_reference_fixture", "--reference-fixture", str(tmp_path / "x.npz")])
    assert stop.value.code == 2
    assert "--reference-fixture" in capsys.readouterr().err


def _verify_error(argv, capsys) -> str:
    from l2l.outer_loop.app.verify_cli import main

    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def test_a_selection_that_runs_nothing_exits_2(capsys):
    line = _verify_error(["--checks", "eprop2_reference_fixture", "--cells", "alif"], capsys)
    assert "runs nothing" in line and "--cells lif" in line


@pytest.mark.parametrize("damage, message", [
    ("garbage", "is not an npz of arrays"),
    ("no meta", "has no 'meta' entry"),
    ("no weight", "lacks ['param.network.input_weights.w']"),
    ("wrong shape", "param.network.w_out has shape (3, 3)"),
])
def test_a_damaged_reference_fixture_is_one_line_naming_it(damage, message, tmp_path, capsys):
    import numpy as np

    from l2l.outer_loop.app.reference_fixture import default_fixture_path

    source = default_fixture_path()
    if source is None:
        pytest.skip("the fixture comes with the source checkout")
    arrays = dict(np.load(source, allow_pickle=False))
    path = tmp_path / "fixture.npz"
    if damage == "garbage":
        path.write_bytes(b"not a zip at all")
    else:
        if damage == "no meta":
            del arrays["meta"]
        elif damage == "no weight":
            del arrays["param.network.input_weights.w"]
        else:
            arrays["param.network.w_out"] = np.zeros((3, 3))
        np.savez(path, **arrays)
    line = _verify_error(["--checks", "eprop2_reference_fixture", "--reference-fixture", str(path)], capsys)
    assert line.startswith("l2l-verify: error: --reference-fixture") and message in line, line
