"""The agreement table of ``docs/nir.md`` from the ``l2l-export --json`` results in ``docs/data/nir_export``.

    python -m l2l.outer_loop.reports.nir_table docs/data/nir_export
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

MODELS = ("arm_one_shot", "arm_one_shot_deep", "arm_one_shot_reference", "arm_one_shot_reference_deep")
WEIGHTS = (("initial", "initial weights"), ("circle", "adapted to `circle`"))
SIMULATIONS = (("nir_euler", "NIR neuron, Euler"), ("nir_exact", "NIR neuron, exact"),
               ("l2l_neuron", "l2l's neuron (metadata)"))


def table(data: Path) -> str:
    """One row per model × weights × simulation: l2l's spikes reproduced (same step, within 2 steps), the spike
    count against l2l's, the output's relative RMS error and the Cartesian MSE of each output."""
    lines = ["| model | weights | simulation | l2l's spikes at the same step | within 2 steps | spikes (l2l) | "
             "output rel. RMS error | Cartesian MSE (l2l) |", "|---|---|---|---|---|---|---|---|"]
    for model in MODELS:
        for key, label in WEIGHTS:
            result = json.loads((data / f"{model}_{key}.json").read_text(encoding="utf-8"))
            ours = result["agreement"]["l2l"]
            for name, simulation in SIMULATIONS:
                row = result["agreement"][name]
                lines.append(f"| `{model}` | {label} | {simulation} | {row['l2l_spikes_reproduced']:.3f} | "
                             f"{row['l2l_spikes_within_2_steps']:.3f} | {row['spikes']} ({ours['spikes']}) | "
                             f"{row['output_relative_rms_error']:.2g} | {row['mse_xy']:.4f} ({ours['mse_xy']:.4f}) |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/data/nir_export")))
