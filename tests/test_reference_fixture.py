"""l2l against one float64 outer iteration of the published e-prop 2 code (tests/data/; the comparison is
l2l.outer_loop.app.reference_fixture).

semantics=reference must reproduce every spike exactly and every other number to 1e-10, for both inner
backends; the papers' semantics, and each of its switches alone, must not (negative controls: the fixture
tells the two apart).
"""

import pytest
import torch

from l2l.outer_loop.app.compose import compose_config
from l2l.outer_loop.app.reference_fixture import (
    GRADIENTS,
    LOSSES,
    SIGNALS_AND_OUTPUTS,
    SPIKES,
    TOLERANCE,
    build_fixture_meta,
    default_fixture_path,
    fixture_inputs,
    load_fixture,
    reproduce,
)


@pytest.fixture(scope="module")
def fixture():
    path = default_fixture_path()
    assert path is not None, "tests/data/eprop2_reference_seed11.npz is missing"
    return load_fixture(path)


@pytest.mark.parametrize("backend", ["explicit", "higher"])
def test_reference_semantics_reproduce_the_published_iteration(fixture, backend):
    result = reproduce(build_fixture_meta(fixture, "reference", backend), fixture)
    assert result.spikes_equal == dict.fromkeys(SPIKES, True)
    expected = set(SIGNALS_AND_OUTPUTS) | set(LOSSES) | {f"grad.{name}" for name in GRADIENTS}
    assert set(result.rel_err) == expected
    assert result.max_rel_err <= TOLERANCE, {k: v for k, v in result.rel_err.items() if v > TOLERANCE}


def test_the_fixture_spikes_and_refracts(fixture):
    """A fixture without spikes or refractory steps could not tell the semantics apart."""
    z = torch.from_numpy(fixture["trial0_z"]).double()
    assert z.mean() > 0.005
    # a spike followed by a silent step: refractoriness is exercised (and ψ on refractory steps matters)
    assert ((z[:, :-1] == 1) & (z[:, 1:] == 0)).sum() > 100


def test_papers_semantics_differ_from_the_published_code(fixture):
    result = reproduce(build_fixture_meta(fixture, "paper"), fixture)
    assert not result.spikes_equal["trial0_z"]           # n_ref=5 blocks 5 steps: another neuron
    assert result.rel_err["dw_in"] > 0.3 and result.rel_err["dw_rec"] > 0.3
    assert result.rel_err["loss"] > 1e-3


@pytest.mark.parametrize("switch, overrides", [
    ("n_ref", ["network.n_ref=5", "error_module.n_ref=5"]),
    ("psi_refractory", ["network.psi_refractory=zero"]),
    ("in_test_trial", ["error_module.in_test_trial=false"]),
])
def test_each_reference_switch_is_needed(fixture, switch, overrides):
    result = reproduce(build_fixture_meta(fixture, "reference", overrides=overrides), fixture)
    assert not result.ok()
    if switch == "n_ref":
        assert not result.spikes_equal["trial0_z"]
    elif switch == "psi_refractory":
        # the demonstration is the same neuron; only the update (and so the test trial) changes
        assert result.spikes_equal["trial0_z"] and result.spikes_equal["trial0_error_spikes"]
        assert result.rel_err["trial0_learning_signals"] <= TOLERANCE
        assert result.rel_err["dw_in"] > 0.1 and result.rel_err["dw_rec"] > 0.1
    else:
        # the update is untouched; the test trial's error-module spikes are missing from the regularization
        assert result.rel_err["dw_in"] <= TOLERANCE and result.rel_err["dw_rec"] <= TOLERANCE
        assert result.rel_err["trial1_motor_commands"] <= TOLERANCE
        assert not result.spikes_equal["trial1_error_spikes"]
        assert result.rel_err["loss_reg"] > 1e-4


def test_codes_are_drawn_per_trial_the_error_module_sees(fixture):
    meta = build_fixture_meta(fixture, "reference")
    episode, _ = fixture_inputs(fixture)
    codes = meta.encode(episode, torch.Generator().manual_seed(0))
    assert meta.code_trials == 2 and codes.shape == (2, 3, 500, 200)
    assert not torch.equal(codes[0], codes[1])           # fresh Poisson spikes, the same target
    with pytest.raises(ValueError, match=r"code has shape \(3, 3, 500, 200\)"):
        meta(episode, codes=torch.cat([codes, codes[:1]]))
    assert build_fixture_meta(fixture, "paper").code_trials == 1


def test_arm_one_shot_paper_selects_the_reference_semantics(compose):
    reference = compose("experiment=arm_one_shot_paper")
    paper = compose("experiment=arm_one_shot_paper", "semantics=paper")
    default = compose("experiment=arm_one_shot")
    for node in ("network", "error_module"):
        assert (reference[node].n_ref, reference[node].psi_refractory) == (4, "keep")
        assert (paper[node].n_ref, paper[node].psi_refractory) == (5, "zero")
        assert (default[node].n_ref, default[node].psi_refractory) == (5, "zero")
    assert reference.error_module.in_test_trial and not paper.error_module.in_test_trial
    assert not default.error_module.in_test_trial


def test_a_bad_psi_refractory_names_the_key():
    from l2l.outer_loop.app.build import cell_parameters

    cfg = compose_config(["experiment=arm_one_shot", "error_module.psi_refractory=half"])
    allowed = r"error_module\.psi_refractory='half' is not allowed: choose one of \['keep', 'zero'\]"
    with pytest.raises(ValueError, match=allowed):
        cell_parameters(cfg.error_module, "error_module")
