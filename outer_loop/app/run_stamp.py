"""The time stamp of a default run dir (``outputs/<name>/${l2l_run_stamp:}``): one per run, also under torchrun.

Hydra's ``${now:...}`` is read by every process, so ``torchrun --nproc_per_node=K l2l-train ...`` without a
``hydra.run.dir`` gave K run dirs (rank 0's holding the run, the others empty). Under torchrun (``LOCAL_RANK`` set)
the stamp is the start time of the launcher process, the parent of every worker on the node; elsewhere it is now.
Both carry microseconds, so two runs started in the same second get two dirs.
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

from omegaconf import OmegaConf

FORMAT = "%Y-%m-%d_%H-%M-%S_%f"
RESOLVER = "l2l_run_stamp"


def process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch, 10 ms resolution), from Linux's /proc; None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])      # field 22, starttime: clock ticks after boot
        boot = next(float(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


def run_stamp() -> str:
    """The stamp of this run's default dir: the torchrun launcher's start time in a worker, else now."""
    if "LOCAL_RANK" in os.environ:
        started = process_start(os.getppid())
        if started is not None:
            return datetime.fromtimestamp(started).strftime(FORMAT)
    return datetime.now().strftime(FORMAT)


def register_run_stamp() -> None:
    """Make ``${l2l_run_stamp:}`` available to the configs (one value per process, as Hydra's ``now``)."""
    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, run_stamp, use_cache=True)
