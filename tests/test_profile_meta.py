"""l2l-bench meta: phase timing of one outer iteration, FLOP count, GEMM throughput; the phase timer."""

import time

import pytest
import torch

from l2l.timing import PhaseTimer, phase
from outer_loop.bench.cli import main as bench_main
from outer_loop.bench.profile_meta import PHASES, profile_meta


def test_phase_timer_sums_named_blocks_and_is_inert_when_inactive():
    with phase("outside"):          # no active timer: nothing recorded anywhere
        pass
    with PhaseTimer() as timer:
        for _ in range(2):
            with phase("sleep"):
                time.sleep(0.01)
    assert timer.calls == {"sleep": 2} and timer.seconds["sleep"] >= 0.02
    with phase("after"):
        pass
    assert "after" not in timer.seconds


def test_profile_of_the_smoke_experiment_accounts_for_the_iteration():
    torch.set_num_threads(1)
    report = profile_meta("smoke", ["task.n_steps=40", "network.n_hidden=12", "error_module.n_hidden=10"],
                          iterations=1, warmup=0)
    assert set(report["breakdown_s"]) == set(PHASES)
    assert all(v >= 0 for k, v in report["breakdown_s"].items() if k != "loss")
    # the phases partition the iteration (loss = forward minus the timed inner phases)
    assert sum(report["breakdown_s"].values()) == pytest.approx(report["seconds_per_iteration"], rel=1e-6)
    assert report["matmul_flops_per_iteration"] > 0 and 0 < report["fraction_of_gemm"] < 1


def test_bench_meta_rejects_a_direct_experiment(capsys):
    with pytest.raises(SystemExit) as stop:
        bench_main(["meta", "--experiment", "pattern_eprop", "--iterations", "1"])
    assert stop.value.code == 2
    assert "experiment='pattern_eprop' is a mode='direct' experiment" in capsys.readouterr().err
