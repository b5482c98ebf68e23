"""docs/nir.md's agreement table is the one its data gives (docs/data/nir_export, from l2l-export --json)."""

from __future__ import annotations

from pathlib import Path

from l2l.outer_loop.reports.nir_table import table

ROOT = Path(__file__).resolve().parents[1]


def test_the_nir_table_recomputes_from_its_data():
    text = (ROOT / "docs" / "nir.md").read_text(encoding="utf-8")
    assert table(ROOT / "docs" / "data" / "nir_export") in text


def test_the_control_rows_agree_to_round_off():
    import json

    for path in sorted((ROOT / "docs" / "data" / "nir_export").glob("*.json")):
        control = json.loads(path.read_text())["agreement"]["l2l_neuron"]
        assert control["l2l_spikes_reproduced"] == 1.0 and control["output_relative_rms_error"] < 1e-12, path.name
