"""A synthetic gradient that can learn (issue: e-prop 3, second round): its quality measurement, λ-mixed targets
checked against the true border gradients in float64, the time input, the warm-up, the oracle arm, and the options
through l2l-train."""

import json

import pytest
import torch

from l2l import verify
from l2l.outer_loop.app.compose import compose_config
from l2l.outer_loop.app.train import run
from l2l.rules import BPTT, EProp3, TBPTTSyntheticGradient, make_rule
from l2l.rules import truncated_bptt as tb
from l2l.synthetic_gradient import (
    FixedPredictions,
    OnlineSyntheticGradient,
    ZeroPredictions,
    gradient_quality,
    time_features,
)

WINDOW = 7


def case(cell):
    return verify.make_case(cell)


def rel(a, b):
    return verify.relative_error(a, b, b)


def test_quality_scores_a_perfect_a_zero_and_a_wrong_synthetic_gradient():
    g = torch.Generator().manual_seed(0)
    truths = [torch.randn(3, 10, generator=g, dtype=torch.float64) + 0.5 for _ in range(4)]
    perfect = gradient_quality(truths, truths)
    assert perfect["cosine"] == pytest.approx(1.0, abs=1e-15) and perfect["r2"] == pytest.approx(1.0, abs=1e-15)
    zero = gradient_quality([torch.zeros_like(t) for t in truths], truths)
    assert zero["cosine"] == 0.0 and zero["r2"] <= 0.0
    flipped = gradient_quality([-t for t in truths], truths)
    assert flipped["cosine"] == pytest.approx(-1.0, abs=1e-15) and flipped["r2"] < -1.0
    mean_only = gradient_quality([torch.cat(truths).mean(0).expand_as(t) for t in truths], truths)
    assert mean_only["r2"] == pytest.approx(0.0, abs=1e-12)        # the best constant explains nothing
    assert all(v != v for v in gradient_quality([], []).values())  # NaN without borders
    with pytest.raises(ValueError, match="differ in shape"):
        gradient_quality([torch.zeros(2, 3)], [torch.zeros(2, 4)])


def targets_of(c, predictor, lam, window=WINDOW):
    return tb.truncated_pass(c.network, c.inputs, c.loss, c.network.parameter_dict(), window, predictor,
                             c.regularization, False, target_lambda=lam).targets


@pytest.mark.parametrize("cell", ["lstm", "lif"])
def test_lambda_one_targets_are_the_true_border_gradients(cell):
    c = case(cell)
    truths = tb.border_adjoints(c.network, c.inputs, c.loss, WINDOW, c.regularization)
    got = targets_of(c, ZeroPredictions(), 1.0)
    assert len(got) == len(truths) == 4
    for a, b in zip(got, truths, strict=True):
        assert (a - b).norm() <= 1e-12 * b.norm()
    # negative control: bootstrapping from SG = 0 (λ = 0) is not the true gradient
    biased = targets_of(c, ZeroPredictions(), 0.0)
    assert max(float((a - b).norm() / b.norm()) for a, b in zip(biased[:-1], truths[:-1], strict=True)) > 1e-3


@pytest.mark.parametrize("lam", [0.0, 0.5, 1.0])
def test_a_perfect_synthetic_gradient_is_a_fixed_point_of_its_targets(lam):
    c = case("lstm")
    truths = tb.border_adjoints(c.network, c.inputs, c.loss, WINDOW, c.regularization)
    for a, b in zip(targets_of(c, FixedPredictions(truths), lam), truths, strict=True):
        assert (a - b).norm() <= 1e-12 * b.norm()


def discounted_future_gradients(c, lam):
    """B·d/ds^{t_m} of Σ_{k>m} λ^{k−m−1} Ê_k(local), SG = 0, on the connected graph: the λ-target's closed form,
    computed here without the rule's recursion."""
    params = c.network.parameter_dict()
    with torch.enable_grad():
        pieces = tb.simulate_intervals(c.network, c.inputs, params, WINDOW, connected=True)
        y = torch.cat([p.output for p in pieces], 1)
        z = torch.cat([p.activity.z for p in pieces], 1)
    task = y.detach().requires_grad_(True)
    with torch.enable_grad():
        delta = torch.autograd.grad(c.loss(task), task)[0]
        spikes = z.detach().requires_grad_(True)
        reg = torch.autograd.grad(c.regularization.loss(spikes), spikes)[0] if c.regularization else None
    spans = tb.intervals(c.inputs.shape[1], WINDOW)
    out = []
    for m in range(len(pieces) - 1):
        with torch.enable_grad():
            total = 0.0
            for k in range(m + 1, len(pieces)):
                local = (delta[:, spans[k]] * pieces[k].output).sum()
                if reg is not None:
                    local = local + (reg[:, spans[k]] * pieces[k].activity.z).sum()
                total = total + lam ** (k - m - 1) * local
            (g,) = torch.autograd.grad(total, [pieces[m + 1].start], retain_graph=True)
        out.append(c.inputs.shape[0] * g)
    return out


@pytest.mark.parametrize("cell", ["lstm", "lif"])
def test_lambda_mixed_targets_from_sg_zero_are_the_discounted_future(cell):
    c = case(cell)
    for a, b in zip(targets_of(c, ZeroPredictions(), 0.5), discounted_future_gradients(c, 0.5), strict=True):
        assert (a - b).norm() <= 1e-12 * b.norm()


def test_the_time_input_and_its_values():
    c = case("lstm")
    sg = OnlineSyntheticGradient(hidden=5, time_input=True)
    size = tb.state_size(c.network)
    state = torch.zeros(2, size, dtype=torch.float64)
    with pytest.raises(ValueError, match="sg_time=true needs the trial's length"):
        sg.predict(state, 1)
    sg.begin_trial(30, WINDOW)
    assert sg.predict(state, 2).shape == (2, size) and sg.module.w_hidden.shape == (5, size + 2)
    assert time_features(2, WINDOW, 30, state)[0].tolist() == [0.14, 0.16]
    rule = EProp3(WINDOW, sg_hidden=5, sg_time=True, rate_regularization=c.regularization)
    rule.gradients(c.network, c.inputs, c.loss)       # builds and trains with the time input
    assert rule.predictor.module.w_hidden.shape == (5, size + 2) and rule.predictor.trials == 1


def test_warmup_uses_sg_zero_for_the_signals_while_the_sg_learns():
    c = case("lstm")
    zero = EProp3(WINDOW, "zero", rate_regularization=c.regularization).gradients(c.network, c.inputs, c.loss).grads
    rule = EProp3(WINDOW, sg_hidden=4, sg_lr=0.05, sg_warmup=2, rate_regularization=c.regularization)
    rule.gradients(c.network, c.inputs, c.loss)            # builds the module; its output layer starts at 0
    with torch.no_grad():
        rule.predictor.module.w_out.normal_(generator=torch.Generator().manual_seed(0))
    before = rule.predictor.module.w_out.detach().clone()
    second = rule.gradients(c.network, c.inputs, c.loss).grads     # trial 2 of the warm-up: SG not used
    assert rel(second, zero) <= 1e-12
    assert not torch.equal(before, rule.predictor.module.w_out)     # but it learned
    third = rule.gradients(c.network, c.inputs, c.loss).grads       # warm-up over: the SG is used
    assert rel(third, zero) > 1e-6
    state = rule.state_dict()["synthetic_gradient"]
    assert state["trials"] == 3
    again = EProp3(WINDOW, sg_hidden=4, sg_warmup=5)
    again.load_state_dict({"synthetic_gradient": state})
    assert again.predictor.trials == 3 and again.predictor.warming_up


@pytest.mark.parametrize("name", ["eprop3", "tbptt_sg"])
def test_the_oracle_arm_is_bptt_and_scores_one(name):
    c = case("lif")
    rule = make_rule(name, window=WINDOW, synthetic_gradient="oracle", sg_quality_every=1,
                     rate_regularization=c.regularization)
    got = rule.gradients(c.network, c.inputs, c.loss).grads
    assert rel(got, BPTT(c.regularization).gradients(c.network, c.inputs, c.loss).grads) <= 1e-9
    assert rule.metrics()["sg_cosine"] == pytest.approx(1.0, abs=1e-12)
    assert rule.metrics()["sg_r2"] == pytest.approx(1.0, abs=1e-12)


def test_quality_is_measured_every_n_trials_and_a_fresh_sg_scores_no_better_than_zero():
    c = case("lstm")
    rule = TBPTTSyntheticGradient(WINDOW, sg_quality_every=2, rate_regularization=c.regularization)
    rule.gradients(c.network, c.inputs, c.loss)
    first = rule.metrics()
    assert first["sg_cosine"] == 0.0 and first["sg_r2"] <= 0.0      # the module starts at 0
    rule.quality = {}
    rule.gradients(c.network, c.inputs, c.loss)                     # trial 2: not measured
    assert "sg_cosine" not in rule.metrics()
    rule.gradients(c.network, c.inputs, c.loss)                     # trial 3: measured
    assert "sg_cosine" in rule.metrics()


def logged_rows(tmp_path, overrides):
    """Train a tiny run with ``overrides`` (plus a quiet, eval-free set-up); its metrics.jsonl rows."""
    cfg = compose_config([*overrides, "train.log_every=1", "train.progress=false", "eval.enabled=false",
                          "logger=none", f"hydra.run.dir={tmp_path}"])
    run(cfg, tmp_path)
    return [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]


def test_l2l_train_logs_the_sg_quality(tmp_path):
    rows = logged_rows(tmp_path, ["experiment=copy_repeat_eprop3", "train.iterations=4", "rule.sg_quality_every=2",
                                  "rule.sg_time=true", "rule.sg_hidden=8", "rule.sg_lambda=0.5", "rule.sg_warmup=1",
                                  "rule.window=1"])
    measured = [r for r in rows if "sg_r2" in r]
    assert measured and all(-1.0 <= r["sg_cosine"] <= 1.0 for r in measured)


@pytest.fixture(scope="module")
def tiny_eprop3_run(tmp_path_factory):
    path = tmp_path_factory.mktemp("eprop3_run")
    cfg = compose_config(["experiment=copy_repeat_eprop3", "train.iterations=3", "rule.window=1",
                          "network.n_hidden=8", "train.progress=false", "eval.enabled=false", "logger=none",
                          f"hydra.run.dir={path}"])
    run(cfg, path)
    return path


def test_sg_fit_trains_an_sg_on_the_frozen_network_and_scores_it(tiny_eprop3_run, tmp_path, capsys):
    from l2l.outer_loop.checkpoint import read_checkpoint
    from l2l.outer_loop.reports.sg_fit import main

    before = read_checkpoint(tiny_eprop3_run / "checkpoints" / "last.pt")["network"]
    assert main([str(tiny_eprop3_run), "--trials", "10", "--every", "5", "--sg-hidden", "0,4", "--sg-lambda", "1",
                 "--sg-lr", "1e-3", "--probe", "8", "--out", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "sg_fit.json").read_text())
    assert set(record["series"]) == {"h0_lambda1_lr0.001", "h4_lambda1_lr0.001"}
    for series in record["series"].values():
        assert [s["trial"] for s in series] == [0, 5, 10]
        assert all(-1.0 <= s["cosine"] <= 1.0 and s["r2"] == s["r2"] for s in series)
    assert (tmp_path / "sg_fit.png").read_bytes()[:4] == b"\x89PNG"
    assert "h4_lambda1_lr0.001: after 10 trials cosine" in capsys.readouterr().out
    after = read_checkpoint(tiny_eprop3_run / "checkpoints" / "last.pt")["network"]
    assert all(torch.equal(before[k], after[k]) for k in before)          # the run is read, never written


@pytest.mark.parametrize("argv, message", [
    (["--sg-lambda", "2"], "--sg-lambda='2' is not allowed: each λ must be in [0, 1]"),
    (["--sg-lr", "0"], "--sg-lr='0' is not allowed: each rate must be > 0"),
    (["--stage", "99"], "--stage=99 is not allowed: the run has 15 curriculum stages"),
    (["--trials", "0"], "--trials=0 is not allowed"),
])
def test_sg_fit_bad_input_stops_in_one_line(tiny_eprop3_run, capsys, argv, message):
    from l2l.outer_loop.reports.sg_fit import main

    with pytest.raises(SystemExit) as stop:
        main([str(tiny_eprop3_run), *argv])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_probe_stages_are_scored_at_every_evaluation(tmp_path):
    cfg = compose_config(["experiment=copy_repeat_bptt", "train.iterations=4", "train.log_every=1",
                          "train.eval_every=2", "network.n_hidden=8", "train.curriculum.probe_stages=[2,4]",
                          "train.progress=false", "logger=none", f"hydra.run.dir={tmp_path}"])
    run(cfg, tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    probed = [r for r in rows if "probe4_bits_wrong" in r]
    assert [r["iteration"] for r in probed] == [0, 2, 3]
    assert all(0.0 <= r["probe2_bit_error"] <= 1.0 and r["probe4_bits_wrong"] >= 0 for r in probed)


@pytest.mark.parametrize("probes, message", [
    ("[99]", "train.curriculum.probe_stages=[99] is not allowed: each must be a stage index in [0, 15)"),
    ("[-1]", "train.curriculum.probe_stages=[-1] is not allowed"),
])
def test_bad_probe_stages_are_refused_before_training(probes, message):
    from l2l.outer_loop.app.train import preflight

    cfg = compose_config(["experiment=copy_repeat_bptt", f"train.curriculum.probe_stages={probes}"])
    with pytest.raises(ValueError) as error:
        preflight(cfg)
    assert message in str(error.value)


def _trial(generator, borders=3, batch=4, size=5):
    states = [torch.randn(batch, size, generator=generator, dtype=torch.float64) for _ in range(borders)]
    targets = [torch.randn(batch, size, generator=generator, dtype=torch.float64) for _ in range(borders)]
    return states, targets


def test_sg_steps_and_replay_fit_the_mean_loss_of_the_kept_trials_step_by_step():
    """steps=3, replay=1 equals three hand-made Adam steps on the mean of this trial's and the previous trial's
    losses; replay keeps only ``replay`` earlier trials."""
    g = torch.Generator().manual_seed(3)
    trials = [_trial(g) for _ in range(3)]
    sg = OnlineSyntheticGradient(lr=0.01, hidden=3, seed=1, steps=3, replay=1)
    sg.build(5, trials[0][0][0])
    with torch.no_grad():
        sg.module.w_out.normal_(generator=torch.Generator().manual_seed(2))
    import copy as copy_module
    twin = copy_module.deepcopy(sg.module)
    adam = torch.optim.Adam(twin.parameters(), lr=0.01)
    for k, (states, targets) in enumerate(trials):
        before = float(tb_loss(twin, states, targets).detach())
        kept = trials[max(0, k - 1):k + 1]
        for _ in range(3):
            adam.zero_grad()
            loss = sum(tb_loss(twin, s, t) for s, t in kept) / len(kept)
            loss.backward()
            adam.step()
        got = sg.update(states, targets)
        assert got == pytest.approx(before, rel=1e-12)           # this trial's loss before its update
        for a, b in zip(sg.module.parameters(), twin.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    assert len(sg.memory) == 2
    resumed = OnlineSyntheticGradient(lr=0.01, hidden=3, seed=1, steps=3, replay=1)      # a checkpoint's round trip
    resumed.load_state_dict(sg.state_dict())
    states, targets = _trial(g)
    sg.update(states, targets)
    resumed.update(states, targets)
    for a, b in zip(sg.module.parameters(), resumed.module.parameters(), strict=True):
        assert torch.equal(a, b)


def tb_loss(module, states, targets):
    from l2l.synthetic_gradient import synthetic_gradient_loss
    return synthetic_gradient_loss([module(s) for s in states], targets)


def test_the_default_sg_update_is_unchanged_by_the_new_options():
    """steps=1, replay=0, calibrate=False: one Adam step on this trial's loss, predictions unscaled (the rules are
    unchanged to the last digit)."""
    g = torch.Generator().manual_seed(4)
    states, targets = _trial(g)
    sg = OnlineSyntheticGradient(lr=0.01, hidden=0)
    sg.build(5, states[0])
    import copy as copy_module
    twin = copy_module.deepcopy(sg.module)
    adam = torch.optim.Adam(twin.parameters(), lr=0.01)
    loss = tb_loss(twin, states, targets)
    adam.zero_grad()
    loss.backward()
    adam.step()
    sg.update(states, targets)
    for a, b in zip(sg.module.parameters(), twin.parameters(), strict=True):
        assert torch.equal(a, b)
    assert torch.equal(sg.predict(states[0], 1), twin(states[0]).detach()) and sg.scale == 1.0


def test_calibration_scales_by_the_out_of_sample_least_squares_fit_and_never_flips_the_sign():
    g = torch.Generator().manual_seed(5)
    states, targets = _trial(g, size=4)
    sg = OnlineSyntheticGradient(lr=1e-9, hidden=0, calibrate=True)          # lr ~0: the module stays put
    sg.build(4, states[0])
    with torch.no_grad():                       # raw prediction = 2 · state; the targets are 2 · state / 4
        sg.module.w_out.copy_(2 * torch.eye(4, dtype=torch.float64))
    targets = [s / 2 for s in states]
    assert sg.scale == 1.0                                                # no data yet
    sg.update(states, targets)
    assert sg.scale == pytest.approx(0.25, rel=1e-6)
    torch.testing.assert_close(sg.predict(states[1], 2), targets[1], rtol=1e-5, atol=1e-8)
    quality = gradient_quality([sg.predict(s, m + 1) for m, s in enumerate(states)], targets)
    assert quality["r2"] == pytest.approx(1.0, abs=1e-5)
    # the next trial's targets point the other way: the decayed sums 0.9·(1/4·P) − 1/4·P < 0 -> scale 0 (SG = 0)
    sg.update(states, [-t for t in targets])
    assert sg.scale == 0.0 and float(sg.predict(states[0], 1).abs().max()) == 0.0
    state = sg.state_dict()
    again = OnlineSyntheticGradient(hidden=0, calibrate=True, replay=0)
    again.load_state_dict(state)
    assert (again.agreement, again.power) == (sg.agreement, sg.power) and len(again.memory) == 0   # no replay


@pytest.mark.parametrize(("option", "value", "message"), [
    ("sg_steps", 0, "sg_steps=0 is not allowed: it must be an integer >= 1"),
    ("sg_replay", -1, "sg_replay=-1 is not allowed: it must be an integer >= 0"),
    ("sg_calibrate", "yes", "sg_calibrate='yes' is not allowed: it must be true or false")])
def test_bad_sg_options_stop_with_one_line(option, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        make_rule("eprop3", window=4, **{option: value})


def test_the_new_options_through_l2l_train_log_the_scale(tmp_path):
    rows = logged_rows(tmp_path, ["experiment=copy_repeat_tbptt_sg", "train.iterations=3", "rule.window=1",
                                  "network.n_hidden=8", "rule.sg_steps=2", "rule.sg_replay=2", "rule.sg_calibrate=true",
                                  "rule.sg_hidden=4"])
    scales = [r["sg_scale"] for r in rows if "sg_scale" in r]
    assert len(scales) == 3 and all(s >= 0.0 for s in scales)
