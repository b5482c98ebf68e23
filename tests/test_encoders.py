"""Input encoders: the clock against a loop-built reference layout, Poisson statistics, Gaussian tuning."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from l2l.tasks.encoders import PopulationCode, clock_input, poisson_spikes


def _clock_by_loops(n_steps, n_groups, per_group, every):
    expected = torch.zeros(n_steps, n_groups * per_group)
    segment = n_steps // n_groups
    for g in range(n_groups):
        for t in range(g * segment, (g + 1) * segment, every):
            for k in range(per_group):
                expected[t, g * per_group + k] = 1.0
    return expected


def test_reference_clock_layout():
    clock = clock_input(500)
    assert clock.shape == (500, 10)
    assert torch.equal(clock, _clock_by_loops(500, 5, 2, 10))
    # group 0 (neurons 0, 1) spikes at 0, 10, ..., 90 and never after
    assert torch.nonzero(clock[:, 0]).flatten().tolist() == list(range(0, 100, 10))
    assert clock.sum() == 5 * 2 * 10


@settings(max_examples=30, deadline=None)
@given(groups=st.integers(1, 6), per_group=st.integers(1, 3), segment=st.integers(1, 40), every=st.integers(1, 12))
def test_clock_matches_loops(groups, per_group, segment, every):
    clock = clock_input(groups * segment, groups, per_group, every)
    assert torch.equal(clock, _clock_by_loops(groups * segment, groups, per_group, every))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"n_steps": 501}, "n_steps"), ({"n_steps": 500, "n_groups": 0}, "n_groups"),
     ({"n_steps": 500, "neurons_per_group": 0}, "neurons_per_group"),
     ({"n_steps": 500, "spike_every": 0}, "spike_every")],
)
def test_clock_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        clock_input(**kwargs)


def test_poisson_rate_and_edge_cases():
    g = torch.Generator().manual_seed(0)
    spikes = poisson_spikes(torch.full((1000, 1000), 200.0), dt=1.0, generator=g)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    assert float(spikes.mean()) == pytest.approx(0.2, abs=0.003)       # 5 standard errors
    half = poisson_spikes(torch.full((1000, 1000), 50.0), dt=2.0, generator=g)
    assert float(half.mean()) == pytest.approx(0.1, abs=0.003)
    assert poisson_spikes(torch.zeros(50, 50), generator=g).sum() == 0
    assert poisson_spikes(torch.full((50, 50), 1000.0), generator=g).sum() == 2500


def test_poisson_seeds_reproduce():
    rates = torch.full((20, 30), 80.0)
    a = poisson_spikes(rates, generator=torch.Generator().manual_seed(5))
    b = poisson_spikes(rates, generator=torch.Generator().manual_seed(5))
    c = poisson_spikes(rates, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize(("rates", "match"), [(torch.tensor([-1.0]), "negative"), (torch.tensor([2000.0]), "above 1")])
def test_poisson_bad_rates(rates, match):
    with pytest.raises(ValueError, match=match):
        poisson_spikes(rates)


def test_population_code_reference_tuning():
    code = PopulationCode()                       # 100 neurons, σ = 0.2, [-1, 1], 200 Hz
    centres = code.centres
    assert centres.shape == (100,)
    assert float(centres[0]) == pytest.approx(-1.4) and float(centres[-1]) == pytest.approx(1.4)
    assert float(centres[1] - centres[0]) == pytest.approx(2.8 / 99)
    rates = code.rates(torch.tensor([0.3], dtype=torch.float64))[0]
    for j in (0, 37, 60, 99):
        c = -1.4 + 2.8 * j / 99
        assert float(rates[j]) == pytest.approx(200.0 * math.exp(-((0.3 - c) ** 2) / (2 * 0.2**2)), rel=1e-9)
    # values are clipped to the range
    torch.testing.assert_close(code.rates(torch.tensor([5.0])), code.rates(torch.tensor([1.0])))


def test_population_code_configurable():
    code = PopulationCode(n_neurons=5, sigma=1.0, low=0.0, high=4.0, peak_rate_hz=50.0, margin=0.0)
    assert code.centres.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    rates = code.rates(torch.tensor([2.0]))[0]
    torch.testing.assert_close(rates, 50.0 * torch.exp(-torch.tensor([4.0, 1.0, 0.0, 1.0, 4.0]) / 2.0))


@settings(max_examples=40, deadline=None)
@given(value=st.floats(-3.0, 3.0), n=st.integers(2, 50), sigma=st.floats(0.05, 1.0))
def test_population_code_peak_at_nearest_centre(value, n, sigma):
    code = PopulationCode(n_neurons=n, sigma=sigma)
    rates = code.rates(torch.tensor([value], dtype=torch.float64))[0]
    assert (rates >= 0).all() and (rates <= code.peak_rate_hz + 1e-9).all()
    clipped = min(max(value, -1.0), 1.0)
    nearest = int((code.centres - clipped).abs().argmin())
    assert float(rates[nearest]) == pytest.approx(float(rates.max()))


def test_population_encode_shape_and_rates():
    code = PopulationCode(n_neurons=10, sigma=0.5, peak_rate_hz=500.0)
    values = torch.tensor([-0.5, 0.5]).expand(2000, 2)                    # (T, d)
    spikes = code.encode(values, generator=torch.Generator().manual_seed(0))
    assert spikes.shape == (2000, 20)
    expected = code.rates(torch.tensor([-0.5, 0.5])).flatten() / 1000.0   # coordinate-major
    torch.testing.assert_close(spikes.mean(0), expected.float(), atol=0.04, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"n_neurons": 0}, "n_neurons"), ({"sigma": 0.0}, "sigma"), ({"low": 1.0, "high": 1.0}, "high"),
     ({"peak_rate_hz": -5.0}, "peak_rate_hz"), ({"peak_rate_hz": 2000.0}, "peak_rate_hz"),
     ({"margin": -1.0}, "margin")],
)
def test_population_code_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        PopulationCode(**kwargs)


def test_population_code_rates_and_draws_are_the_plain_formula_and_calls():
    """The in-place rates equal peak·exp(−(x−c)²/(2σ²)) written plainly (bit for bit, float32 and float64), and K
    draws written in place equal K calls one after another from the same generator."""
    code = PopulationCode(n_neurons=30, sigma=0.2)
    values = torch.rand(4, 50, 2, generator=torch.Generator().manual_seed(1)) * 2.4 - 1.2
    for dtype in (torch.float32, torch.float64):
        x = values.to(dtype).clamp(-1.0, 1.0).unsqueeze(-1)
        plain = 200.0 * torch.exp(-((x - code.centres.to(dtype)) ** 2) / (2.0 * 0.2**2))
        assert torch.equal(code.rates(values.to(dtype)), plain)
    together = code.encode(values, torch.Generator().manual_seed(7), draws=3)
    generator = torch.Generator().manual_seed(7)
    one_by_one = torch.stack([code.encode(values, generator) for _ in range(3)])
    assert together.shape == (3, 4, 50, 60) and torch.equal(together, one_by_one)
    assert 0 < float(together.mean()) < 0.2 and not torch.equal(together[0], together[1])
