"""Online e-prop: the same gradients as offline e-prop, chunk by chunk, with memory independent of T."""

import pytest
import torch

from l2l.cells import ALIFParameters, LIFParameters
from l2l.feedback import AdaptiveFeedback, RandomFeedback
from l2l.network import RecurrentNetwork
from l2l.regularization import RateRegularization
from l2l.rules.eprop import EProp
from l2l.rules.online_eprop import OnlineEProp, SeparableLoss

B, T, N_IN, N, N_OUT = 3, 37, 4, 6, 2
TOL = {"rtol": 1e-10, "atol": 1e-10}


def make_problem(steps: int = T, seed: int = 0):
    """A float64 LIF network that spikes, inputs (B, steps, N_IN) and a mean-squared-error SeparableLoss."""
    torch.manual_seed(seed)
    net = RecurrentNetwork(N_IN, N, N_OUT, cell="lif", cell_params=LIFParameters(v_th=0.4, n_ref=2), tau_out=10.0)
    net = net.double()
    inputs = 1.5 * torch.rand(B, steps, N_IN, dtype=torch.float64)
    target = torch.randn(B, steps, N_OUT, dtype=torch.float64)
    loss = SeparableLoss(lambda y, s: 0.5 * ((y - target[:, s]) ** 2).sum() / target.numel())
    return net, inputs, loss


def assert_same(online, offline):
    assert online.grads.keys() == offline.grads.keys()
    for k in offline.grads:
        torch.testing.assert_close(online.grads[k], offline.grads[k], **TOL, msg=k)
    torch.testing.assert_close(online.loss, offline.loss, **TOL)
    torch.testing.assert_close(online.task_loss, offline.task_loss, **TOL)


@pytest.mark.parametrize("chunk", [1, 5, 37, 50])
@pytest.mark.parametrize("per_task", [False, True])
@pytest.mark.parametrize("regularized", [False, True])
@pytest.mark.parametrize("feedback", ["symmetric", "random"])
def test_online_gradients_equal_offline_eprop(chunk, per_task, regularized, feedback):
    net, inputs, loss = make_problem()
    with torch.no_grad():
        assert net.run(inputs).layers[0].z.sum() > 0  # no spikes, no test
    reg = RateRegularization(target_hz=20.0, weight=0.5) if regularized else None
    fb = RandomFeedback(seed=3) if feedback == "random" else "symmetric"
    offline = EProp(fb, reg, per_task).gradients(net, inputs, loss)
    online = OnlineEProp(fb, reg, per_task, chunk=chunk).gradients(net, inputs, loss)
    assert_same(online, offline)
    assert online.grads["layers.0.w_rec"].shape[-2:] == (N, N)
    assert (online.grads["layers.0.w_rec"].diagonal(dim1=-2, dim2=-1) == 0).all()  # no autapses


@pytest.mark.parametrize("per_task", [False, True])
def test_per_task_weights(per_task):
    net, inputs, loss = make_problem()
    params = {k: v.detach() + 0.1 * torch.randn(B, *v.shape, dtype=v.dtype) for k, v in net.named_parameters()}
    reg = RateRegularization(target_hz=20.0, weight=0.5)
    offline = EProp("symmetric", reg, per_task).gradients(net, inputs, loss, params)
    online = OnlineEProp("symmetric", reg, per_task, chunk=6).gradients(net, inputs, loss, params)
    assert_same(online, offline)
    if per_task:
        assert online.grads["layers.0.w_in"].shape == (B, N, N_IN)


def test_adaptive_feedback_is_read_once_per_trial():
    net, inputs, loss = make_problem()
    offline_rule = EProp(AdaptiveFeedback(seed=1, decay=0.1))
    online_rule = OnlineEProp(AdaptiveFeedback(seed=1, decay=0.1), chunk=4)
    for _ in range(2):  # the second call sees W_out's update
        assert_same(online_rule.gradients(net, inputs, loss), offline_rule.gradients(net, inputs, loss))
        with torch.no_grad():
            net.readout.w_out.add_(0.1 * torch.randn_like(net.readout.w_out))


def test_loss_on_the_last_step_only():
    """Chunks whose loss does not depend on y (here a constant zero) contribute δ = 0."""
    net, inputs, _ = make_problem()
    target = torch.randn(B, N_OUT, dtype=torch.float64)

    def last_step(y, s):
        return ((y[:, -1] - target) ** 2).sum() if s.stop == T else y.new_zeros(())

    loss = SeparableLoss(last_step)
    assert_same(OnlineEProp(chunk=5).gradients(net, inputs, loss), EProp().gradients(net, inputs, loss))


def test_backward_and_gradients_online_agree():
    net, inputs, loss = make_problem()
    rule = OnlineEProp("random", chunk=7)
    direct = rule.gradients_online(net, inputs, loss.chunk_loss)
    rule.backward(net, inputs, loss)
    for k, p in net.named_parameters():
        torch.testing.assert_close(p.grad, direct.grads[k], **TOL)


def test_returned_trial_is_the_last_chunk_only():
    net, inputs, loss = make_problem(steps=400)
    result = OnlineEProp(chunk=10).gradients(net, inputs, loss)
    assert result.trial.output.shape == (B, 10, N_OUT)
    assert result.trial.inputs.shape == (B, 10, N_IN)
    assert result.trial.layers[0].record["psi"].shape == (B, 10, N)
    with torch.no_grad():
        full = net.run(inputs).output
    torch.testing.assert_close(result.trial.output, full[:, -10:], **TOL)
    short = OnlineEProp(chunk=5).gradients(*make_problem()).trial  # 37 = 7·5 + 2
    assert short.output.shape[1] == 2


def test_bad_configurations_are_rejected():
    with pytest.raises(ValueError, match="chunk"):
        OnlineEProp(chunk=0)
    with pytest.raises(ValueError, match="chunk"):
        OnlineEProp(chunk=2.5)
    net, inputs, loss = make_problem()
    alif = RecurrentNetwork(N_IN, N, N_OUT, cell="alif", cell_params=ALIFParameters()).double()
    with pytest.raises(ValueError, match="eprop_online supports one LIF layer.*alif"):
        OnlineEProp().gradients(alif, inputs, loss)
    deep = RecurrentNetwork(N_IN, [N, N], N_OUT, cell="lif").double()
    with pytest.raises(ValueError, match="2 layer"):
        OnlineEProp().gradients(deep, inputs, loss)
    with pytest.raises(TypeError, match="SeparableLoss"):
        OnlineEProp().gradients(net, inputs, lambda y: y.sum())
