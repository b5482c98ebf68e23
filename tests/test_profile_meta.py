"""l2l-bench meta: phase timing of one outer iteration, FLOP count, GEMM throughput; the phase timer."""

import time

import pytest
import torch

from l2l.outer_loop.bench.cli import main as bench_main
from l2l.outer_loop.bench.profile_meta import PHASES, profile_meta
from l2l.timing import PhaseTimer, phase


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
    breakdown, total = report["breakdown_s"], report["seconds_per_iteration"]
    # every timed phase ran, and none is counted twice: what they leave of the iteration (the "loss" residual: the
    # outer loss and the checks) is >= 0, and they account for most of it (a phase missing its timer would not)
    timed = {k: v for k, v in breakdown.items() if k != "loss"}
    assert all(v > 0 for v in timed.values()), timed
    assert breakdown["loss"] >= 0 and sum(timed.values()) > 0.5 * total, breakdown
    assert report["matmul_flops_per_iteration"] > 0 and 0 < report["fraction_of_gemm"] < 1


def test_bench_meta_rejects_a_direct_experiment(capsys):
    with pytest.raises(SystemExit) as stop:
        bench_main(["meta", "--experiment", "pattern_eprop", "--iterations", "1"])
    assert stop.value.code == 2
    assert "experiment='pattern_eprop' is a mode='direct' experiment" in capsys.readouterr().err


def test_the_fused_trials_flops_are_those_of_the_products_they_replace(monkeypatch):
    """The FLOP formulas of the C++ trial against the step-by-step path's products, counted by torch: equal, so the
    bound of an iteration does not depend on which path ran (and would fail if a product were left uncounted)."""
    from torch.utils.flop_counter import FlopCounterMode

    import l2l.spiking_trial as spiking_trial
    from l2l.native import spiking_ops
    from l2l.network import RecurrentNetwork
    from l2l.outer_loop.bench.profile_meta import _register_fused_trial_flops
    from l2l.verify import cell_parameters

    if spiking_ops() is None:
        pytest.skip("the C++ kernels are not built here")
    _register_fused_trial_flops()
    torch.manual_seed(0)
    net = RecurrentNetwork(5, [7, 6], 2, cell="lif", cell_params=cell_parameters("lif")).double()
    x = torch.rand(3, 20, 5, dtype=torch.float64)
    counts = {}
    for fused in (True, False):
        monkeypatch.setattr(spiking_trial, "FUSED", fused)
        with FlopCounterMode(display=False) as counter:
            net.run(x).output.square().sum().backward()
        counts[fused] = counter.get_total_flops()
    assert counts[True] == counts[False] > 0


def test_the_profile_gives_each_phase_its_flops_and_bound():
    torch.set_num_threads(1)
    report = profile_meta("smoke", ["task.n_steps=40", "network.n_hidden=12", "error_module.n_hidden=10"],
                          iterations=1, warmup=0)
    flops, bound = report["breakdown_flops"], report["bound_s"]
    assert set(flops) == set(bound) == set(PHASES)
    assert sum(flops.values()) == pytest.approx(report["matmul_flops_per_iteration"])
    assert all(flops[name] > 0 for name in ("demo trial", "error module", "update", "test trial", "backward"))
    assert bound["backward"] == pytest.approx(flops["backward"] / report["gemm_flops_per_s"])
    assert report["multiple_of_bound"] == pytest.approx(
        report["seconds_per_iteration"] / report["bound_seconds_per_iteration"])
