"""Learning rules: the common interface, per-task gradients, feedback, regularization, training."""

import pytest
import torch

from l2l.feedback import AdaptiveFeedback, RandomFeedback, SymmetricFeedback, make_feedback
from l2l.network import RecurrentNetwork
from l2l.regularization import RateRegularization
from l2l.rules import BPTT, RTRL, EProp, make_rule
from l2l.verify import make_case


def test_backward_accumulates_like_loss_backward():
    case = make_case("lif")
    net = case.network
    result = BPTT(case.regularization).backward(net, case.inputs, case.loss)
    via_rule = {k: p.grad.clone() for k, p in net.named_parameters()}
    net.zero_grad()
    trial = net.run(case.inputs)
    (case.loss(trial.output) + case.regularization.loss(trial.layers[0].z)).backward()
    for k, p in net.named_parameters():
        torch.testing.assert_close(via_rule[k], p.grad)
    assert result.loss.item() > result.task_loss.item() > 0


@pytest.mark.parametrize("cell", ["lif", "alif", "lstm", "rnn"])
def test_per_task_eprop_gradients_equal_one_task_at_a_time(cell):
    case = make_case(cell, batch=3)
    net = case.network
    params = {k: v.detach().expand(3, *v.shape).clone() for k, v in net.named_parameters()}

    def summed_loss(y):
        return 0.5 * ((y - case.target) ** 2).sum()

    together = EProp("symmetric", per_task=True).gradients(net, case.inputs, summed_loss, params).grads
    for b in range(3):
        target = case.target[b:b + 1]
        one_task = {k: v[b] for k, v in params.items()}
        single = EProp("symmetric").gradients(
            net, case.inputs[b:b + 1], lambda y, t=target: 0.5 * ((y - t) ** 2).sum(), one_task
        ).grads
        for k in single:
            torch.testing.assert_close(together[k][b], single[k], rtol=1e-10, atol=1e-12)


def test_random_feedback_is_fixed_and_differs_from_symmetric():
    w_out = torch.randn(2, 6)
    fb = RandomFeedback(seed=1)
    b1 = fb.matrix(w_out)
    assert torch.equal(b1, fb.matrix(w_out + 1.0)) and b1.shape == (6, 2)
    assert not torch.allclose(b1, SymmetricFeedback().matrix(w_out))


def test_adaptive_feedback_follows_w_out_updates():
    w = torch.randn(2, 6, dtype=torch.float64)
    fb = AdaptiveFeedback(seed=1, decay=0.0)
    gap = fb.matrix(w) - w.T
    for _ in range(3):
        w = w + torch.randn_like(w)
        torch.testing.assert_close(fb.matrix(w) - w.T, gap)  # B received exactly W_out's updates
    decaying = AdaptiveFeedback(seed=1, decay=0.5)
    b0 = decaying.matrix(w).clone()
    torch.testing.assert_close(decaying.matrix(w), 0.5 * b0)


def test_rate_regularization_gradient_matches_autograd():
    reg = RateRegularization(target_hz=20.0, weight=3.0)
    z = (torch.rand(4, 50, 7, dtype=torch.float64) < 0.1).double().requires_grad_(True)
    (auto,) = torch.autograd.grad(reg.loss(z), z)
    torch.testing.assert_close(reg.gradient_wrt_spikes(z.detach()), auto)


def test_rate_regularization_of_several_trials_is_that_of_their_concatenation():
    """The pooled form (trials summed in place, the meta-objective's) against the concatenated trials, float64,
    values and gradients; trials of unequal lengths and a time-major view among them."""
    reg = RateRegularization(target_hz=20.0, weight=3.0)
    one = (torch.rand(4, 50, 7, dtype=torch.float64) < 0.1).double().requires_grad_(True)
    two = (torch.rand(30, 4, 7, dtype=torch.float64) < 0.3).double().requires_grad_(True)  # stored time-major
    pieces = [one, two.transpose(0, 1)]
    pooled, joined = reg.loss(pieces), reg.loss(torch.cat(pieces, dim=1))
    torch.testing.assert_close(pooled, joined, rtol=1e-14, atol=0)
    for a, b in zip(torch.autograd.grad(pooled, [one, two]), torch.autograd.grad(joined, [one, two]), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-14, atol=1e-18)
    assert not torch.allclose(reg.loss([one]), joined)    # the second trial counts (a control that could fail)

def test_eprop_random_feedback_trains_a_small_spiking_network():
    torch.manual_seed(0)
    net = RecurrentNetwork(20, 40, 1, cell="lif", tau_out=5.0)
    x = (torch.rand(1, 200, 20) < 0.05).float()
    t = torch.linspace(0, 1, 200)
    target = (torch.sin(2 * torch.pi * 3 * t) + 0.5 * torch.sin(2 * torch.pi * 5 * t)).view(1, 200, 1)
    rule = EProp("random", rate_regularization=RateRegularization(target_hz=20.0, weight=1.0))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(100):
        opt.zero_grad()
        losses.append(rule.backward(net, x, lambda y: 0.5 * ((y - target) ** 2).mean()).task_loss.item())
        opt.step()
    assert sum(losses[-20:]) < 0.5 * sum(losses[:20])


def test_rule_errors_are_clear():
    with pytest.raises(ValueError, match="rule='sgd'"):
        make_rule("sgd")
    with pytest.raises(ValueError, match="feedback='mirror'"):
        make_feedback("mirror")
    deep = RecurrentNetwork(3, [4, 4], 1)
    with pytest.raises(ValueError, match="has 2: use deep_eprop"):
        EProp().gradients(deep, torch.rand(1, 5, 3), lambda y: y.sum())
    net = RecurrentNetwork(3, 4, 1)
    per_task = {k: v.detach().expand(2, *v.shape) for k, v in net.named_parameters()}
    with pytest.raises(ValueError, match="shared weights only"):
        RTRL().gradients(net, torch.rand(2, 5, 3), lambda y: y.sum(), per_task)
    with pytest.raises(ValueError, match="target_hz=-1"):
        RateRegularization(target_hz=-1)


def test_make_rule_builds_each_rule():
    assert isinstance(make_rule("eprop", feedback="adaptive", decay=0.1).feedback, AdaptiveFeedback)
    assert isinstance(make_rule("bptt"), BPTT) and isinstance(make_rule("rtrl"), RTRL)


def test_mixed_lif_alif_population_matches_the_oracle():
    """ALIFParameters(adaptive_fraction=0.5): half LIF, half ALIF in one layer (the LSNN)."""
    from l2l import verify
    from l2l.cells import ALIFParameters

    case = verify.make_case("alif")
    cell = case.network.layers[0]
    cell.params = ALIFParameters(tau_m=20.0, v_th=0.4, n_ref=2, tau_a=40.0, beta=0.6, adaptive_fraction=0.5)
    assert verify.eprop_vs_autodiff(case) < 1e-9
    assert verify.factorization_vs_bptt(case) < 1e-9
    betas = cell.params.betas(8, torch.zeros(1, dtype=torch.float64))
    assert betas.tolist() == [0.0] * 4 + [0.6] * 4
