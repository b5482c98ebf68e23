"""Neuron models on hand-computed tiny cases, and their parameter checks."""

import math

import pytest
import torch

from l2l.cells import (
    ALIFCell,
    ALIFParameters,
    LIFCell,
    LIFParameters,
    LSTMCell,
    LSTMParameters,
    RNNCell,
    RNNParameters,
    alif_step,
    lif_step,
    lstm_step,
    rnn_step,
)
from l2l.cells.alif import MODEL as ALIF
from l2l.cells.lif import MODEL as LIF


def run_lif(currents, p):
    """Feed a (T,) current into one LIF neuron with no recurrence; return v, z over time."""
    state = LIF.init_state(1, 1, torch.float64)
    w_in, w_rec = torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
    vs, zs = [], []
    for c in currents:
        z, state = lif_step(torch.tensor([[c]], dtype=torch.float64), state, w_in, w_rec, p)
        vs.append(state.v.item())
        zs.append(z.item())
    return vs, zs


def test_lif_threshold_crossing_and_reset_by_subtraction():
    p = LIFParameters(tau_m=20.0, v_th=1.0, n_ref=0)
    a = math.exp(-1 / 20)
    vs, zs = run_lif([0.6, 0.6, 0.0], p)
    assert vs[0] == pytest.approx(0.6) and zs[0] == 0
    assert vs[1] == pytest.approx(0.6 * a + 0.6) and zs[1] == 1  # 1.17 > 1: spike
    assert vs[2] == pytest.approx((0.6 * a + 0.6) * a - 1.0)  # reset subtracts v_th once
    assert zs[2] == 0


def test_lif_below_threshold_never_spikes():
    vs, zs = run_lif([0.3] * 3, LIFParameters(tau_m=1e9, v_th=1.0, n_ref=0))
    assert zs == [0, 0, 0] and vs[-1] == pytest.approx(0.9)


def test_lif_refractory_period_blocks_spikes_for_n_ref_steps():
    p = LIFParameters(tau_m=1e9, v_th=0.5, n_ref=3)
    _, zs = run_lif([5.0] * 9, p)  # drive far above threshold: would spike every step
    assert zs == [1, 0, 0, 0, 1, 0, 0, 0, 1]


def test_refractory_steps_have_zero_pseudo_derivative():
    p = LIFParameters(tau_m=1e9, v_th=0.5, n_ref=2)
    state = LIF.init_state(1, 1, torch.float64)
    psis = []
    for current in (0.55, 0.0, 0.0, 0.0):
        z, state, rec = LIF.dynamics(torch.tensor([[current]], dtype=torch.float64), state.z, state, p, True)
        psis.append(LIF.finish_record(rec, p)["psi"].item())
    # step 0: v=0.55 spikes; then v=0.05 (|v-v_th|/v_th = 0.9: ψ would be > 0), masked on the two
    # refractory steps, free again at step 3
    assert psis[0] > 0 and psis[1] == 0 and psis[2] == 0 and psis[3] > 0


@pytest.mark.parametrize("differentiable", [False, True])
@pytest.mark.parametrize("surrogate", ["piecewise_linear", "fast_sigmoid"])
def test_psi_refractory_keep_is_the_surrogate_of_v_on_refractory_steps(differentiable, surrogate):
    """The e-prop 2 code's ψ: the same surrogate of v − v_th on refractory steps; free steps unchanged."""
    from l2l.spike import surrogate_derivative

    def psi(mode):
        p = LIFParameters(tau_m=1e9, v_th=0.5, n_ref=2, surrogate=surrogate, psi_refractory=mode)
        state = LIF.init_state(1, 1, torch.float64)
        rows = []
        for current in (0.55, 0.0, 0.0, 0.0):
            x = torch.tensor([[current]], dtype=torch.float64, requires_grad=differentiable)
            z, state, rec = LIF.dynamics(x, state.z, state, p, True)
            excess = rec["excess"].detach().clone()
            rows.append((LIF.finish_record(rec, p)["psi"].item(), excess.item(), rec["refractory"].item()))
        return rows, p

    zero, _ = psi("zero")
    keep, p = psi("keep")
    for (psi_zero, _, refractory), (psi_keep, excess, _) in zip(zero, keep, strict=True):
        scaled = torch.tensor(excess / p.v_th, dtype=torch.float64)
        expected = surrogate_derivative(scaled, p.gamma, surrogate).item() / p.v_th
        assert psi_keep == pytest.approx(expected, rel=1e-15)
        assert psi_zero == (0.0 if refractory > 0 else pytest.approx(expected, rel=1e-15))
    assert keep[1][0] > 0 and zero[1][0] == 0         # step 1 is refractory: kept vs zeroed


def test_alif_takes_psi_refractory_and_bad_values_are_refused():
    assert ALIFParameters(psi_refractory="keep").psi_refractory == "keep"
    message = r"psi_refractory='sometimes' is not allowed: choose one of \['keep', 'zero'\]"
    with pytest.raises(ValueError, match=message):
        LIFParameters(psi_refractory="sometimes")


def test_no_autapses_masked_in_forward_pass():
    p = LIFParameters(tau_m=1e9, v_th=0.5, n_ref=0)
    state = LIF.init_state(1, 2, torch.float64)._replace(z=torch.tensor([[1.0, 0.0]], dtype=torch.float64))
    w_rec = torch.tensor([[10.0, 0.0], [1.0, 0.0]], dtype=torch.float64)  # W_00 is an autapse
    _, state = lif_step(torch.zeros(1, 1, dtype=torch.float64), state, torch.zeros(2, 1, dtype=torch.float64), w_rec, p)
    # neuron 0 gets only its reset (-0.5), neuron 1 gets W_10 * z_0 = 1
    assert state.v.tolist() == [[-0.5, 1.0]]


def test_alif_threshold_adapts_after_spikes():
    p = ALIFParameters(tau_m=1e9, v_th=1.0, n_ref=0, tau_a=100.0, beta=2.0)
    rho = math.exp(-1 / 100)
    state = ALIF.init_state(1, 1, torch.float64)
    w_in, w_rec = torch.ones(1, 1, dtype=torch.float64), torch.zeros(1, 1, dtype=torch.float64)
    z, state = alif_step(torch.tensor([[1.5]], dtype=torch.float64), state, w_in, w_rec, p)
    assert z.item() == 1 and state.a.item() == 0  # a^t uses z^{t-1}
    z, state = alif_step(torch.tensor([[1.5]], dtype=torch.float64), state, w_in, w_rec, p)
    assert state.a.item() == pytest.approx(1.0)
    # v = 1.5 + 1.5 - 1 = 2.0 < A = 1 + 2·1 = 3: the adapted threshold blocks the spike a LIF would fire
    assert state.v.item() == pytest.approx(2.0) and z.item() == 0
    z, state = alif_step(torch.tensor([[0.0]], dtype=torch.float64), state, w_in, w_rec, p)
    assert state.a.item() == pytest.approx(rho)


def test_lstm_gates_match_the_definition():
    torch.manual_seed(1)
    n_in, n = 3, 2
    x = torch.randn(1, n_in, dtype=torch.float64)
    w_in = torch.randn(4 * n, n_in, dtype=torch.float64)
    w_rec = torch.randn(4 * n, n, dtype=torch.float64)
    b = torch.randn(4 * n, dtype=torch.float64)
    c0, m0 = torch.randn(1, n, dtype=torch.float64), torch.randn(1, n, dtype=torch.float64)
    from l2l.cells import LSTMState

    m, state = lstm_step(x, LSTMState(c0, m0), w_in, w_rec, b)
    pre = x @ w_in.T + m0 @ w_rec.T + b
    i, f, g, o = torch.sigmoid(pre[:, :n]), torch.sigmoid(pre[:, n:2 * n]), torch.tanh(pre[:, 2 * n:3 * n]), \
        torch.sigmoid(pre[:, 3 * n:])
    c = f * c0 + i * g
    torch.testing.assert_close(state.c, c)
    torch.testing.assert_close(m, o * torch.tanh(c))


def test_rnn_is_a_leaky_tanh_unit():
    p = RNNParameters(tau=10.0)
    a = math.exp(-0.1)
    from l2l.cells import RNNState

    zero, one = torch.zeros(1, 1, dtype=torch.float64), torch.ones(1, 1, dtype=torch.float64)
    z, state = rnn_step(one, RNNState(zero, zero), 2 * one, zero, torch.zeros(1, dtype=torch.float64), p)
    assert state.v.item() == pytest.approx((1 - a) * 2.0)
    assert z.item() == pytest.approx(math.tanh((1 - a) * 2.0))


def test_modules_wrap_the_step_functions():
    for cls in (LIFCell, ALIFCell, LSTMCell, RNNCell):
        cell = cls(3, 5)
        z, state = cell(torch.randn(2, 3))
        assert z.shape == (2, 5) and state.z.shape == (2, 5)
        z2, _ = cell(torch.randn(2, 3), state)
        assert z2.shape == (2, 5)
    assert LSTMCell(3, 5).w_in.shape == (20, 3)


@pytest.mark.parametrize(
    ("make", "field", "value"),
    [
        (lambda: LIFParameters(tau_m=0.0), "tau_m", "0.0"),
        (lambda: LIFParameters(tau_m=-5.0), "tau_m", "-5.0"),
        (lambda: LIFParameters(v_th=0.0), "v_th", "0.0"),
        (lambda: LIFParameters(n_ref=-1), "n_ref", "-1"),
        (lambda: LIFParameters(n_ref=1.5), "n_ref", "1.5"),
        (lambda: LIFParameters(surrogate="box"), "surrogate", "'box'"),
        (lambda: ALIFParameters(tau_a=0.0), "tau_a", "0.0"),
        (lambda: ALIFParameters(beta=-1.0), "beta", "-1.0"),
        (lambda: RNNParameters(tau=-1.0), "tau", "-1.0"),
        (lambda: ALIFParameters(adaptive_fraction=1.5), "adaptive_fraction", "1.5"),
        (lambda: LIFCell(0, 5), "n_in", "0"),
        (lambda: LIFCell(3, 0), "n", "0"),
        (lambda: LSTMCell(3, -2), "n", "-2"),
    ],
)
def test_bad_parameters_name_field_value_and_rule(make, field, value):
    with pytest.raises(ValueError) as err:
        make()
    text = str(err.value)
    assert text.startswith(f"{field}={value}") and ("must be" in text or "choose one of" in text)


def test_wrong_parameter_class_is_refused():
    with pytest.raises(ValueError, match="pass a LIFParameters"):
        LIFCell(3, 4, LSTMParameters())
