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


def _torch_rand_spikes(p, generator):
    """The plain draws: one torch.rand number per entry, spike where it is below p."""
    return (torch.rand(p.shape, generator=generator, dtype=p.dtype) < p).to(p.dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("size", [1, 311, 623, 624, 625, 1248, 4097, 40_000])
@pytest.mark.parametrize("offset", [0, 1, 622, 999])
def test_the_cpp_bernoulli_kernel_draws_what_torch_rand_draws(dtype, size, offset):
    """Bit for bit the spikes of torch.rand(...) < p, and the generator left where torch.rand leaves it (its state
    equal, the next numbers equal), from states part-way through the MT19937 block (offset draws before) and for
    sizes across the 624-word regenerations and the kernel's 4096-entry blocks."""
    from l2l.native import random_ops
    from l2l.tasks.encoders import _bernoulli

    if random_ops() is None:
        pytest.skip("no C++ kernels here")
    p = torch.rand(size, generator=torch.Generator().manual_seed(size), dtype=dtype)
    ours, theirs = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    torch.rand(offset, generator=ours)
    torch.rand(offset, generator=theirs)
    drawn = _bernoulli(p, ours)
    assert torch.equal(drawn, _torch_rand_spikes(p, theirs))
    assert torch.equal(ours.get_state(), theirs.get_state())
    assert torch.equal(torch.rand(5, generator=ours), torch.rand(5, generator=theirs))
    if size >= 311:   # negative control: one draw further along the stream gives other spikes
        shifted = torch.Generator().manual_seed(3)
        torch.rand(offset + 1, generator=shifted)
        assert not torch.equal(drawn, _torch_rand_spikes(p, shifted))


def test_the_population_code_is_the_same_with_and_without_the_cpp_kernel(monkeypatch):
    """encode (K draws into one buffer, the kernel when built) equals the torch.rand path; the default generator
    (generator=None) too."""
    import l2l.tasks.encoders as encoders

    code = PopulationCode(n_neurons=40)
    values = torch.rand(3, 70, 2, generator=torch.Generator().manual_seed(2)) * 2 - 1
    fast = code.encode(values, torch.Generator().manual_seed(5), draws=2)
    torch.manual_seed(11)
    fast_default = poisson_spikes(torch.full((900,), 300.0))
    monkeypatch.setattr(encoders, "random_ops", lambda: None)
    assert torch.equal(fast, code.encode(values, torch.Generator().manual_seed(5), draws=2))
    torch.manual_seed(11)
    assert torch.equal(fast_default, poisson_spikes(torch.full((900,), 300.0)))


def test_a_bernoulli_kernel_that_differs_from_torch_rand_is_not_used(capsys):
    """The once-per-process check refuses a kernel whose numbers are off (here: one draw late) and says so."""
    from types import SimpleNamespace

    from l2l.native import checked_random_ops

    def one_late(out, p, generator):
        torch.rand(1, generator=generator)
        return torch.lt(torch.rand(p.shape, generator=generator, dtype=p.dtype), p, out=out)

    def exact(out, p, generator):
        return torch.lt(torch.rand(p.shape, generator=generator, dtype=p.dtype), p, out=out)

    assert checked_random_ops(SimpleNamespace(bernoulli_below_=one_late)) is None
    assert "does not reproduce torch.rand" in capsys.readouterr().err
    right = SimpleNamespace(bernoulli_below_=exact)
    assert checked_random_ops(right) is right


@pytest.mark.parametrize("order", [(1, 0, 2, 3), (0, 2, 1, 3), (3, 2, 1, 0), (1, 0, 3, 2)])
def test_the_cpp_kernel_draws_in_p_order_into_any_layout(order, monkeypatch):
    """out as a permuted view of a buffer (time-major storage behind (B, T, ...) views, and less friendly ones):
    the spikes at each (b, t, ...) are those torch.rand draws for that position, and the generator ends where
    torch.rand leaves it."""
    import l2l.tasks.encoders as encoders
    from l2l.native import random_ops

    if random_ops() is None:
        pytest.skip("no C++ kernels here")
    shape = (5, 37, 2, 30)
    p = torch.rand(shape, generator=torch.Generator().manual_seed(9)) * 0.3
    storage = torch.empty([shape[i] for i in order])
    out = storage.permute([order.index(i) for i in range(4)])
    assert out.shape == shape and not out.is_contiguous()
    ours, theirs = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    encoders._bernoulli(p, ours, out=out)
    assert torch.equal(out, _torch_rand_spikes(p, theirs))
    assert torch.equal(ours.get_state(), theirs.get_state())


def test_time_major_codes_are_the_same_spikes_in_time_major_storage():
    code = PopulationCode(n_neurons=20)
    values = torch.rand(4, 60, 2, generator=torch.Generator().manual_seed(8)) * 2 - 1
    plain = code.encode(values, torch.Generator().manual_seed(1), draws=3)
    time_major = code.encode(values, torch.Generator().manual_seed(1), draws=3, time_major=True)
    assert torch.equal(plain, time_major) and time_major.shape == (3, 4, 60, 40)
    assert time_major.transpose(1, 2).is_contiguous() and not time_major.is_contiguous()
    single = code.encode(values, torch.Generator().manual_seed(1), time_major=True)
    assert torch.equal(single, plain[0]) and single.transpose(0, 1).is_contiguous()
    with pytest.raises(ValueError, match=r"time_major=True needs \(B, T, \.\.\., d\)"):
        code.encode(values[0], time_major=True)
