"""Deep e-prop, the m-order family and the memory budget of forward traces."""

import pytest
import torch

from l2l.network import RecurrentNetwork
from l2l.rules import BPTT, RTRL, DeepEProp, EProp, MemoryBudgetError, MOrder, make_rule
from l2l.traces.deep import deep_eligibility_gradients
from l2l.verify import make_case


@pytest.mark.parametrize("feedback", ["symmetric", "random", "adaptive"])
def test_one_layer_deep_eprop_equals_eprop(feedback):
    case = make_case("alif")
    a = EProp(feedback, rate_regularization=case.regularization).gradients(case.network, case.inputs, case.loss)
    b = DeepEProp(feedback, rate_regularization=case.regularization).gradients(case.network, case.inputs, case.loss)
    for k in a.grads:
        torch.testing.assert_close(b.grads[k], a.grads[k], rtol=1e-12, atol=1e-14)


def test_per_task_deep_eprop_equals_one_task_at_a_time():
    case = make_case("lif", depth=2, batch=3)
    net = case.network
    params = {k: v.detach().expand(3, *v.shape).clone() for k, v in net.named_parameters()}

    def summed(target):
        return lambda y: 0.5 * ((y - target) ** 2).sum()

    together = DeepEProp(per_task=True).gradients(net, case.inputs, summed(case.target), params).grads
    for b in range(3):
        single = DeepEProp().gradients(net, case.inputs[b:b + 1], summed(case.target[b:b + 1]),
                                       {k: v[b] for k, v in params.items()}).grads
        for k in single:
            torch.testing.assert_close(together[k][b], single[k], rtol=1e-10, atol=1e-12)


def test_deep_traces_bring_lower_layers_closer_to_bptt_than_layer_local_signals():
    case = make_case("lif", depth=2)
    exact = BPTT().gradients(case.network, case.inputs, case.loss).grads
    deep = DeepEProp().gradients(case.network, case.inputs, case.loss).grads
    local = DeepEProp(local_feedback="random", across_layers=False).gradients(case.network, case.inputs, case.loss)
    both = DeepEProp(local_feedback="random").gradients(case.network, case.inputs, case.loss).grads
    cos = torch.nn.functional.cosine_similarity
    key = "layers.0.w_in"
    assert cos(deep[key].flatten(), exact[key].flatten(), 0) > cos(local.grads[key].flatten(), exact[key].flatten(), 0)
    torch.testing.assert_close(both[key], deep[key] + local.grads[key])  # signals add linearly
    torch.testing.assert_close(local.grads["layers.1.w_in"], deep["layers.1.w_in"])  # the top layer is the same


def test_external_learning_signals():
    case = make_case("rnn", depth=2)
    trial = case.network.run(case.inputs, record=True).detached()
    top = torch.randn_like(trial.layers[1].z)
    grads = deep_eligibility_gradients(case.network, trial, [None, top])
    assert set(grads) == {f"layers.{k}.{w}" for k in (0, 1) for w in ("w_in", "w_rec", "bias")}
    doubled = deep_eligibility_gradients(case.network, trial, [None, 2 * top])
    torch.testing.assert_close(doubled["layers.0.w_in"], 2 * grads["layers.0.w_in"])  # linear in the signal
    with pytest.raises(ValueError, match="signals has 1 entries for 2 layers"):
        deep_eligibility_gradients(case.network, trial, [top])


def test_order_one_lies_between_eprop_and_rtrl():
    case = make_case("lif", steps=15)
    grads = {name: rule.gradients(case.network, case.inputs, case.loss).grads["layers.0.w_rec"]
             for name, rule in {"m0": MOrder(0), "m1": MOrder(1), "rtrl": RTRL()}.items()}
    assert not torch.allclose(grads["m1"], grads["m0"]) and not torch.allclose(grads["m1"], grads["rtrl"])


def test_memory_budget_is_checked_before_allocating():
    net = RecurrentNetwork(10, [64, 64], 2).double()
    with pytest.raises(MemoryBudgetError, match=r"need .* GiB, above memory_budget_gib=0.01: raise memory_budget_gib"):
        MOrder(2, memory_budget_gib=0.01).gradients(net, torch.rand(4, 50, 10, dtype=torch.float64), lambda y: y.sum())
    with pytest.raises(MemoryBudgetError):
        DeepEProp(mode="exact", memory_budget_gib=0.01).gradients(net, torch.rand(4, 50, 10, dtype=torch.float64),
                                                                  lambda y: y.sum())


def test_bad_deep_options():
    with pytest.raises(ValueError, match="order=-1"):
        MOrder(-1)
    with pytest.raises(ValueError, match="mode='fast'"):
        DeepEProp(mode="fast")
    with pytest.raises(ValueError, match="mode='online' is not allowed with feedback='random'"):
        DeepEProp("random", mode="online")
    with pytest.raises(ValueError, match="local_feedback='symmetric'"):
        DeepEProp(local_feedback="symmetric")
    assert isinstance(make_rule("morder", order=3), MOrder) and isinstance(make_rule("deep_eprop"), DeepEProp)
