"""docs/performance.md's tables of the third step recompute from each sitting's raw files
(docs/data/side_by_side_2026-12-05 and side_by_side_2026-12-05_evening): the published code's own logs, l2l-bench
meta's JSON before and after, the measured GEMM rates."""

import json
import statistics
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "docs" / "data"
SITTINGS = {"side_by_side_2026-12-05": "b6cd838", "side_by_side_2026-12-05_evening": "1d6e3a7"}  # dir: "before"
PHASES = ("sample tasks", "demo trial", "error module", "update", "test trial", "loss", "backward", "optimizer step")


def published_seconds(log: Path) -> float:
    """Median of the published code's ITER lines after the first two (its start-up)."""
    seconds = [float(line.split()[2]) for line in log.read_text().splitlines() if line.startswith("ITER ")]
    return statistics.median(seconds[2:])


def bench(sitting: Path, name: str) -> dict:
    return json.loads((sitting / f"{name}.json").read_text())


def max_rss_gib(sitting: Path, name: str) -> float:
    return int((sitting / f"{name}.rss").read_text().split()[-1]) / 2**20


def side_by_side_table(sitting: Path, before_commit: str) -> str:
    """published | l2l before | l2l now | now / published | now as a multiple of its GEMM bound, per workload."""
    rows = [("small reference protocol (learner 100, error module 100, B 32, 2 × 500 steps), 2 threads",
             "published_small_2t", "small_2t"),
            ("the same, 1 thread", "published_small_1t", "small_1t"),
            ("paper sizes (400 / 300, B 100, 2 × 500 steps), 2 threads", "published_paper_2t", "paper_2t")]
    lines = [f"| workload | published code | l2l before ({before_commit}) | l2l now | now / published | "
             "now / its GEMM bound |",
             "|---|---|---|---|---|---|"]
    for label, published, ours in rows:
        p = published_seconds(sitting / f"{published}.log")
        before, now = bench(sitting, f"l2l_before_{ours}"), bench(sitting, f"l2l_now_{ours}")
        lines.append(f"| {label} | {p:.3f} s | {before['seconds_per_iteration']:.3f} s | "
                     f"**{now['seconds_per_iteration']:.3f} s** | **{now['seconds_per_iteration'] / p:.3f}×** | "
                     f"{now['multiple_of_bound']:.2f}× |")
    rss = {name: max_rss_gib(sitting, name)
           for name in ("published_paper_2t", "l2l_before_paper_2t", "l2l_now_paper_2t")}
    lines.append(f"| peak memory at paper sizes (max RSS) | {rss['published_paper_2t']:.2f} GiB | "
                 f"{rss['l2l_before_paper_2t']:.2f} GiB | {rss['l2l_now_paper_2t']:.2f} GiB | "
                 f"{rss['l2l_now_paper_2t'] / rss['published_paper_2t']:.2f}× | – |")
    return "\n".join(lines)


def phase_table(sitting: Path, ours: str) -> str:
    """Per phase: seconds before and now, GFLOP, the bound (GFLOP at the measured GEMM rate) and now / bound."""
    before, now = bench(sitting, f"l2l_before_{ours}"), bench(sitting, f"l2l_now_{ours}")
    lines = ["| phase | before | now | GFLOP | bound | now / bound |", "|---|---|---|---|---|---|"]
    for name in PHASES:
        bound = now["bound_s"][name]
        ratio = f"{now['breakdown_s'][name] / bound:.2f}×" if bound > 0 else "–"
        lines.append(f"| {name} | {before['breakdown_s'][name]:.4f} s | {now['breakdown_s'][name]:.4f} s | "
                     f"{now['breakdown_flops'][name] / 1e9:.2f} | {bound:.4f} s | {ratio} |")
    lines.append(f"| **total** | **{before['seconds_per_iteration']:.3f} s** | "
                 f"**{now['seconds_per_iteration']:.3f} s** | "
                 f"{now['matmul_flops_per_iteration'] / 1e9:.1f} | {now['bound_seconds_per_iteration']:.3f} s | "
                 f"**{now['multiple_of_bound']:.2f}×** |")
    lines.append(f"| measured GEMM rate | {before['gemm_flops_per_s'] / 1e9:.0f} GFLOP/s | "
                 f"{now['gemm_flops_per_s'] / 1e9:.0f} GFLOP/s | | | |")
    return "\n".join(lines)


@pytest.mark.parametrize("folder", sorted(SITTINGS))
def test_the_side_by_side_and_phase_tables_recompute_from_the_sittings_files(folder):
    sitting = DATA / folder
    docs = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    for table in (side_by_side_table(sitting, SITTINGS[folder]), phase_table(sitting, "small_2t"),
                  phase_table(sitting, "paper_2t")):
        for line in table.splitlines():
            assert line in docs, line
    for name in ("small_2t", "small_1t", "paper_2t"):        # one sitting: the same experiment and threads
        before, now = bench(sitting, f"l2l_before_{name}"), bench(sitting, f"l2l_now_{name}")
        assert (before["experiment"], before["threads"], before["batch_size"]) == \
               (now["experiment"], now["threads"], now["batch_size"])
