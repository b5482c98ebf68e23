"""e-prop 3, truncated BPTT and synthetic gradients: shapes, identities against float64 oracles written here,
the online synthetic-gradient training, bad options, and l2l-train rule=eprop3 with checkpoint/resume."""

import math

import pytest
import torch

from l2l import verify
from l2l.network import RecurrentNetwork
from l2l.outer_loop.algorithm.curriculum import Curriculum
from l2l.outer_loop.app.build import build_rule
from l2l.outer_loop.app.compose import compose_config
from l2l.outer_loop.app.train import run
from l2l.outer_loop.checkpoint import read_checkpoint
from l2l.rules import BPTT, TBPTT, EProp3, TBPTTSyntheticGradient, make_rule
from l2l.rules import truncated_bptt as tb
from l2l.synthetic_gradient import FixedPredictions, OnlineSyntheticGradient, synthetic_gradient_loss
from l2l.tasks import make_family

WINDOW = 7


def case(cell):
    return verify.make_case(cell)


def rel(a, b):
    return verify.relative_error(a, b, b)


def bptt(c):
    return BPTT(c.regularization).gradients(c.network, c.inputs, c.loss).grads


# ---------------------------------------------------------------- a plain float64 LSTM, truncated by hand

def plain_lstm_intervals(net, x, target, window, sg=None):
    """Truncated BPTT of a one-layer LSTM with leaky readout, step by step and written out here (the oracle).

    Loss 0.5·Σ(y − target)²/numel, summed per interval; the state [c, m, y] is detached at each border and
    ⟨SG([c, m, y])/B, [c, m, y]⟩ is added at the far border (none after the last step).
    Returns the parameter gradients and the bootstrapped targets B·d(interval m+1)/d(state at its start)."""
    cell = net.layers[0]
    w_in, w_rec, bias = cell.w_in, cell.w_rec, cell.bias
    w_out, b_out, kappa = net.readout.w_out, net.readout.bias, net.readout.kappa
    batch, steps = x.shape[:2]
    n = cell.n
    params = [w_in, w_rec, bias, w_out, b_out]
    grads = [torch.zeros_like(p) for p in params]
    targets = []
    start = torch.zeros(batch, 2 * n + w_out.shape[0], dtype=x.dtype)
    for t0 in range(0, steps, window):
        leaf = start.detach().requires_grad_(True)
        c, m, y = leaf[:, :n], leaf[:, n:2 * n], leaf[:, 2 * n:]
        loss = 0.0
        for t in range(t0, min(t0 + window, steps)):
            pre = x[:, t] @ w_in.T + m @ w_rec.T + bias
            i, f, g, o = pre.chunk(4, -1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            m = torch.sigmoid(o) * torch.tanh(c)
            y = kappa * y + m @ w_out.T + b_out
            loss = loss + 0.5 * ((y - target[:, t]) ** 2).sum() / target.numel()
        end = torch.cat([c, m, y], -1)
        if sg is not None and t0 + window < steps:
            with torch.no_grad():
                prediction = sg(end.detach())
            loss = loss + (prediction * end).sum() / batch
        got = torch.autograd.grad(loss, [*params, leaf])
        grads = [a + b for a, b in zip(grads, got[:-1], strict=True)]
        if t0 > 0:
            targets.append(batch * got[-1])
        start = end.detach()
    names = ["layers.0.w_in", "layers.0.w_rec", "layers.0.bias", "readout.w_out", "readout.bias"]
    return dict(zip(names, grads, strict=True)), targets


def random_sg(size, seed=3, scale=0.3):
    """A learned-type SG with random (nonzero) weights."""
    sg = OnlineSyntheticGradient(lr=1e-3, seed=seed)
    module = sg.build(size, torch.zeros(1, dtype=torch.float64))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        module.w_out.copy_(scale * torch.randn(module.w_out.shape, generator=g, dtype=torch.float64))
        module.b_out.copy_(scale * torch.randn(module.b_out.shape, generator=g, dtype=torch.float64))
    return sg


def test_tbptt_equals_the_plain_truncated_lstm():
    c = case("lstm")
    expected, _ = plain_lstm_intervals(c.network, c.inputs, c.target, WINDOW)
    got = TBPTT(WINDOW).gradients(c.network, c.inputs, c.loss).grads
    assert rel(got, expected) <= 1e-12
    assert rel(got, bptt(c)) > 0.1  # truncation is visible on this case


def test_tbptt_sg_and_its_bootstrapped_targets_equal_the_plain_lstm():
    c = case("lstm")
    sg = random_sg(tb.state_size(c.network))
    expected, expected_targets = plain_lstm_intervals(c.network, c.inputs, c.target, WINDOW, sg.module)
    result = tb.truncated_pass(c.network, c.inputs, c.loss, c.network.parameter_dict(), WINDOW, sg, None, True)
    assert rel(result.grads, expected) <= 1e-12
    assert len(result.targets) == len(expected_targets) == math.ceil(30 / WINDOW) - 1
    for got, want in zip(result.targets, expected_targets, strict=True):
        assert (got - want).norm() <= 1e-12 * want.norm()
        assert want.norm() > 0
    # the rule's gradient is the same pass
    rule = TBPTTSyntheticGradient(WINDOW, sg, train_sg=False)
    assert rel(rule.gradients(c.network, c.inputs, c.loss).grads, expected) <= 1e-12


def test_shapes():
    for cell in ("lstm", "lif", "alif", "rnn"):
        c = case(cell)
        rule = EProp3(WINDOW, rate_regularization=c.regularization)
        out = rule.gradients(c.network, c.inputs, c.loss)
        params = c.network.parameter_dict()
        assert set(out.grads) == set(params)
        assert all(out.grads[k].shape == v.shape for k, v in params.items())
        assert out.trial.output.shape == (2, 30, 2) and out.trial.layers[0].z.shape == (2, 30, 8)
        result = tb.truncated_pass(c.network, c.inputs, c.loss, params, WINDOW, rule.predictor, None, False)
        size = tb.state_size(c.network)
        assert size == 8 * len(tb.state_fields(cell)) + 8 + 2
        assert [s.shape for s in result.states] == [(2, size)] * 4
        assert [t.shape for t in result.targets] == [(2, size)] * 4
        assert result.signals.shape == (2, 30, 8)


@pytest.mark.parametrize("cell", ["lstm", "lif", "alif", "rnn"])
def test_oracle_synthetic_gradient_gives_bptt(cell):
    c = case(cell)
    adjoints = tb.border_adjoints(c.network, c.inputs, c.loss, WINDOW, c.regularization)
    exact = bptt(c)
    for rule in (EProp3, TBPTTSyntheticGradient):
        got = rule(WINDOW, FixedPredictions(adjoints), rate_regularization=c.regularization).gradients(
            c.network, c.inputs, c.loss).grads
        assert rel(got, exact) <= 1e-9, rule


def test_oracle_fails_without_the_alif_adaptation_split(monkeypatch):
    """The check can fail: handing ALIF's z across the border as one tensor (no a-correction) double counts."""
    original = tb.split_border

    def without_split(cell, vector, carried):
        state, y0 = original(cell, vector, carried)
        n = cell.n
        return state._replace(a=vector[:, n:2 * n]), y0

    monkeypatch.setattr(tb, "split_border", without_split)
    c = case("alif")
    adjoints = tb.border_adjoints(c.network, c.inputs, c.loss, WINDOW, c.regularization)
    got = EProp3(WINDOW, FixedPredictions(adjoints), rate_regularization=c.regularization).gradients(
        c.network, c.inputs, c.loss).grads
    assert rel(got, bptt(c)) > 1e-6


@pytest.mark.parametrize("cell", ["lstm", "lif"])
@pytest.mark.parametrize("window", [30, 45])
def test_window_at_least_t_is_bptt_without_any_synthetic_gradient(cell, window):
    c = case(cell)
    got = EProp3(window, FixedPredictions([]), rate_regularization=c.regularization).gradients(
        c.network, c.inputs, c.loss).grads
    assert rel(got, bptt(c)) <= 1e-9


@pytest.mark.parametrize("cell", ["lstm", "alif"])
def test_negative_control_zero_sg_is_truncated_signals_times_traces_and_not_bptt(cell):
    c = case(cell)
    err, extra = verify.eprop3_zero_sg_vs_truncated_traces(c)
    assert err <= 1e-9
    assert extra["distance_to_bptt"] > verify.NEGATIVE_CONTROL_MIN_DISTANCE and "reason" not in extra
    # and the traces matter: e-prop 3 with SG = 0 is not truncated BPTT
    tbptt = TBPTT(WINDOW, c.regularization).gradients(c.network, c.inputs, c.loss).grads
    zero = EProp3(WINDOW, "zero", rate_regularization=c.regularization).gradients(c.network, c.inputs, c.loss).grads
    assert rel(zero, tbptt) > 0.05


def test_negative_control_row_fails_when_it_gets_close_to_bptt(monkeypatch):
    monkeypatch.setattr(verify, "NEGATIVE_CONTROL_MIN_DISTANCE", 10.0)
    row = verify.run_check(next(k for k in verify.checks_for("lstm")
                                if k.name == "eprop3_zero_sg_vs_truncated_traces/lstm"))
    assert row["ok"] is False and "reason" in row


def test_online_synthetic_gradient_learns_the_true_adjoints_on_a_fixed_problem():
    """Fixed network and trials, 2 tasks × 3 borders: a linear SG can meet its bootstrapped targets exactly, and
    then (backward induction from the trial's end, where the target has no SG term) they are the true adjoints.
    The online training must drive its loss down and its predictions toward BPTT's adjoints (computed apart)."""
    torch.manual_seed(0)
    net = RecurrentNetwork(3, 6, 2, cell="lstm", tau_out=2.0).double()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 16, 3, generator=g, dtype=torch.float64)
    target = torch.randn(2, 16, 2, generator=g, dtype=torch.float64)

    def loss(y):
        return 0.5 * ((y - target) ** 2).mean()

    adjoints = tb.border_adjoints(net, x, loss, 4)
    rule = EProp3(4, sg_lr=2e-2, sg_seed=0)

    def prediction_error():
        result = tb.truncated_pass(net, x, loss, net.parameter_dict(), 4, rule.predictor, None, False)
        diff = sum(((p - a) ** 2).sum() for p, a in zip(result.predictions, adjoints, strict=True))
        return float((diff / sum((a ** 2).sum() for a in adjoints)) ** 0.5)

    before = {k: v.clone() for k, v in net.state_dict().items()}
    losses = []
    for _ in range(150):
        rule.gradients(net, x, loss)
        losses.append(rule.metrics()["sg_loss"])
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # gradients() leaves the net alone
    assert losses[-1] < 0.02 * max(losses), losses[::15]
    assert prediction_error() < 0.3  # 1.0 for the initial SG = 0


def test_synthetic_gradient_update_minimizes_the_stated_loss():
    """update(states, targets) takes an Adam step on ½ Σ_m mean_b ‖SG(s) − target‖², computed here by hand."""
    g = torch.Generator().manual_seed(0)
    states = [torch.randn(3, 5, generator=g, dtype=torch.float64) for _ in range(2)]
    targets = [torch.randn(3, 5, generator=g, dtype=torch.float64) for _ in range(2)]
    sg = random_sg(5)
    w, b = sg.module.w_out.detach().clone(), sg.module.b_out.detach().clone()
    by_hand = sum(0.5 * (((s @ w.T + b) - t) ** 2).sum(-1).mean() for s, t in zip(states, targets, strict=True))
    assert sg.update(states, targets) == pytest.approx(float(by_hand), rel=1e-12)
    with torch.no_grad():
        after = synthetic_gradient_loss([sg.module(s) for s in states], targets)
    assert float(after) < float(by_hand)


def test_state_dict_round_trip():
    c = case("lstm")
    rule = EProp3(WINDOW, sg_hidden=4, sg_lr=1e-2)
    for _ in range(2):
        rule.gradients(c.network, c.inputs, c.loss)
    copy = EProp3(WINDOW, sg_hidden=4, sg_lr=1e-2)
    copy.load_state_dict(rule.state_dict())
    a, b = rule.gradients(c.network, c.inputs, c.loss).grads, copy.gradients(c.network, c.inputs, c.loss).grads
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(p, q) for p, q in zip(rule.predictor.module.parameters(),
                                                  copy.predictor.module.parameters(), strict=True))


@pytest.mark.parametrize(("options", "message"), [
    ({"window": 0}, "window=0 is not allowed"),
    ({"window": 2.5}, "window=2.5 is not allowed"),
    ({"synthetic_gradient": "perfect"}, "synthetic_gradient='perfect' is not allowed"),
    ({"sg_lr": -1.0}, "sg_lr=-1.0 is not allowed"),
    ({"sg_hidden": -2}, "sg_hidden=-2 is not allowed"),
])
def test_bad_options_name_the_field(options, message):
    with pytest.raises(ValueError, match=message):
        make_rule("eprop3", **options)


def test_bad_networks_are_refused():
    x = torch.rand(1, 5, 3)
    for net in (RecurrentNetwork(3, [4, 4], 2, cell="lstm"),):
        with pytest.raises(ValueError, match="rule eprop3: it takes one recurrent layer"):
            EProp3(2).gradients(net, x, lambda y: y.sum())


@pytest.mark.parametrize(("override", "key"), [("rule.window=0", "rule.window=0"),
                                               ("rule.synthetic_gradient=perfect", "rule.synthetic_gradient"),
                                               ("rule.sg_lr=0", "rule.sg_lr=0"),
                                               ("rule.sg_lambda=1.5", "rule.sg_lambda=1.5"),
                                               ("rule.sg_warmup=-1", "rule.sg_warmup=-1"),
                                               ("rule.sg_quality_every=-2", "rule.sg_quality_every=-2")])
def test_bad_config_values_name_the_key(override, key):
    cfg = compose_config(["rule=eprop3", override])
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        build_rule(cfg.rule)


def test_curriculum_advances_pads_and_refuses_mixed_outputs():
    stages = [{"length": 1, "max_repeats": 1}, {"length": 2, "max_repeats": 3}]
    cur = Curriculum(lambda o: make_family("copy_repeat", width=2, **o), stages, threshold=0.1, patience=2)
    assert cur.n_inputs == 2 + 1 + 3
    episode = cur.sample(2, torch.Generator().manual_seed(0))
    assert episode.inputs.shape == (2, 4, 6) and episode.inputs[..., 4:].abs().sum() == 0
    assert not cur.observe(0.05) and not cur.observe(0.5) and not cur.observe(0.05)
    assert cur.observe(0.1) and cur.stage == 1
    assert not cur.observe(0.0) and not cur.observe(0.0) and cur.stage == 1  # the last stage stays
    with pytest.raises(ValueError, match="same"):
        Curriculum(lambda o: make_family("copy_repeat", **o), [{"width": 2}, {"width": 3}], threshold=0.1)


def tiny_eprop3(iterations, *extra):
    return ["task=copy_repeat", "network=lstm", "rule=eprop3", "rule.window=3", "task.width=2", "network.n_hidden=8",
            "network.tau_out=0.5", f"train.iterations={iterations}", "train.batch_size=2", "train.log_every=1",
            "train.eval_batch_size=2", "train.progress=false", "train.plots=false", "train.curriculum.threshold=1.0",
            "train.curriculum.patience=2",
            "train.curriculum.stages=[{length: 1, max_repeats: 1}, {length: 2, max_repeats: 2}, "
            "{length: 3, max_repeats: 2}]", *extra]


def test_l2l_train_eprop3_checkpoint_and_resume_continue_bit_for_bit(tmp_path):
    straight = run(compose_config(tiny_eprop3(6)), tmp_path / "straight")
    run(compose_config(tiny_eprop3(3)), tmp_path / "first")
    resumed = run(compose_config(tiny_eprop3(6, f"train.resume={tmp_path / 'first'}")), tmp_path / "resumed")
    a = read_checkpoint(tmp_path / "straight" / "checkpoints" / "last.pt")
    b = read_checkpoint(tmp_path / "resumed" / "checkpoints" / "last.pt")
    half = read_checkpoint(tmp_path / "first" / "checkpoints" / "last.pt")
    assert half["iteration"] == 3 and half["rule"]["synthetic_gradient"]["size"] == 8 * 2 + 3
    assert all(torch.equal(a["network"][k], b["network"][k]) for k in a["network"])
    sg_a, sg_b = a["rule"]["synthetic_gradient"]["module"], b["rule"]["synthetic_gradient"]["module"]
    assert sg_a["w_out"].abs().sum() > 0  # the SG learned something
    assert all(torch.equal(sg_a[k], sg_b[k]) for k in sg_a)
    assert a["curriculum"] == b["curriculum"] and straight["curriculum"] == resumed["curriculum"]
    assert straight["curriculum"]["stage"] == 2  # threshold 1.0: every batch counts, two per stage
    assert straight["final_train"]["sg_loss"] == resumed["final_train"]["sg_loss"]
    with pytest.raises(ValueError, match=r"train\.resume=.*rule"):
        run(compose_config(tiny_eprop3(6, f"train.resume={tmp_path / 'first'}", "rule.window=4")), tmp_path / "bad")
