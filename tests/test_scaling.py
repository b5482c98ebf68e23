"""The scaling study of the e-prop 2 outer iteration: report, fitted exponents, figure, table, argument errors."""

import math

import pytest
import torch

from l2l.outer_loop.bench.scaling import AXES, fit_power_law, format_scaling, plot_scaling, run_scaling

TINY = {"batch_size": [2, 4], "network_size": [8, 16], "trial_length": [20, 40]}


@pytest.fixture(scope="module")
def report():
    torch.set_num_threads(1)
    return run_scaling("smoke", values=TINY, iterations=1, warmup=0, progress=False,
                       overrides=["task.n_steps=20", "network.n_hidden=8", "error_module.n_hidden=8",
                                  "error_module.code_neurons=5", "outer.batch_size=2"])


def test_axes_name_their_config_keys():
    assert set(AXES) == {"batch_size", "network_size", "trial_length"}
    assert AXES["network_size"]["keys"] == ["network.n_hidden", "error_module.n_hidden"]
    assert all(len(a["values"]) >= 2 and all(v > 0 for v in a["values"]) for a in AXES.values())


def test_report_has_every_point_and_a_finite_exponent(report):
    assert set(report["axes"]) == set(AXES)
    for name, axis in report["axes"].items():
        assert axis["values"] == TINY[name]
        assert len(axis["seconds_per_iteration"]) == len(axis["breakdown_s"]) == 2
        assert all(s > 0 for s in axis["seconds_per_iteration"])
        assert math.isfinite(axis["exponent"]) and axis["prefactor"] > 0
    base = report["base"]
    assert base["settings"] == {"outer.batch_size": 2, "network.n_hidden": 8, "error_module.n_hidden": 8,
                                "task.n_steps": 20}
    # the base point (batch 2, 8 neurons, 20 steps) is measured once and shared by the three axes
    assert report["profiles_run"] == 4
    for axis in report["axes"].values():
        assert axis["base_on_axis"] and axis["seconds_per_iteration"][0] == base["seconds_per_iteration"]


def test_plot_and_table(report, tmp_path):
    path = tmp_path / "scaling.png"
    plot_scaling(report, str(path))
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 1000
    table = format_scaling(report)
    assert "exponent" in table and "batch size" in table and "(base)" in table


def test_power_law_fit_recovers_the_exponent():
    k, a = fit_power_law([1, 2, 4, 8], [3 * x**1.5 for x in [1, 2, 4, 8]])
    assert k == pytest.approx(1.5) and a == pytest.approx(3.0)
    assert math.isnan(fit_power_law([4], [1.0])[0])


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"axes": ["batch"]}, r"axes contains 'batch', which is not an axis: allowed are batch_size, network_size"),
    ({"values": {"depth": [1, 2]}}, r"values has the key 'depth', which is not an axis"),
    ({"values": {"batch_size": [4, 0]}}, r"values\['batch_size'\] contains 0, which is not allowed: every batch "
                                         r"size must be a positive integer"),
    ({"values": {"trial_length": [-5]}}, r"values\['trial_length'\] contains -5"),
    ({"values": {"network_size": [2.5]}}, r"values\['network_size'\] contains 2.5"),
    ({"axes": ["batch_size"], "values": {"trial_length": [10]}}, r"'trial_length' is not in axes"),
])
def test_bad_axis_or_value_is_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        run_scaling("smoke", progress=False, **kwargs)


def test_direct_experiment_is_rejected():
    with pytest.raises(ValueError, match="mode='direct'"):
        run_scaling("pattern_eprop", axes="batch_size", values={"batch_size": [2, 4]}, progress=False)


def test_a_trial_length_the_task_rejects_fails_before_the_sweep():
    message = r"task.n_steps=23 is not a valid setting of experiment='smoke': task.n_steps=23"
    with pytest.raises(ValueError, match=message):
        run_scaling("smoke", axes="trial_length", values={"trial_length": [20, 23]}, progress=False)
