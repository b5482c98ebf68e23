"""Evidence accumulation: the input layout against a loop-built reference, labels by recount,
the windowed cross-entropy and the accuracy, bad parameters."""

import math

import pytest
import torch

from l2l.tasks.evidence import EvidenceAccumulation


def _layout_by_loops(family, cues):
    """Expected rates (B, T, n) in units of 'on' (1.0 = cue/recall/noise group active), built step by step."""
    batch = cues.shape[0]
    expected = torch.zeros(batch, family.n_steps, family.n_inputs)
    group = family.n_inputs // 4
    for b in range(batch):
        for k in range(family.n_cues):
            start = k * family.cue_interval + family.cue_interval - family.cue_duration
            side = int(cues[b, k])
            expected[b, start:(k + 1) * family.cue_interval, side * group:(side + 1) * group] = 1.0
        expected[b, family.n_steps - family.recall_duration:, 2 * group:3 * group] = 1.0
        expected[b, :, 3 * group:] = 1.0
    return expected


def test_reference_trial_length():
    family = EvidenceAccumulation()
    assert family.n_steps == 2250 and family.n_inputs == 40 and family.n_outputs == 2


def test_input_layout_matches_loops():
    # rates of 1000 Hz at dt = 1 ms make every active neuron spike at every step: the input is the layout
    family = EvidenceAccumulation(n_inputs=8, n_cues=5, cue_duration=3, cue_interval=5, delay=4, recall_duration=2,
                                  input_rate_hz=1000.0, noise_rate_hz=1000.0)
    ep = family.sample(6, torch.Generator().manual_seed(0))
    assert ep.inputs.shape == (6, 5 * 5 + 4 + 2, 8)
    assert torch.equal(ep.inputs, _layout_by_loops(family, ep.cues))
    window = torch.zeros(31)
    window[-2:] = 1.0
    assert torch.equal(ep.mask, window.expand(6, 31))


def test_silent_where_nothing_is_shown():
    family = EvidenceAccumulation(n_steps=2250)
    ep = family.sample(4, torch.Generator().manual_seed(1))
    on = _layout_by_loops(family, ep.cues)
    assert ep.inputs[on == 0].sum() == 0
    cue_spikes = ep.inputs[:, :, :20][on[:, :, :20] == 1]
    assert float(cue_spikes.mean()) == pytest.approx(0.04, abs=0.01)      # 40 Hz
    assert float(ep.inputs[:, :, 30:].mean()) == pytest.approx(0.01, abs=0.003)  # 10 Hz noise


def test_labels_are_the_majority_side():
    family = EvidenceAccumulation(n_steps=None)
    ep = family.sample(400, torch.Generator().manual_seed(2))
    for b in range(400):
        rights = int(ep.cues[b].sum())
        assert int(ep.label[b]) == (1 if rights > 3 else 0)
        assert torch.equal(ep.target[b, 0], torch.tensor([1.0 - ep.label[b], float(ep.label[b])]))
    assert 0.4 < float(ep.label.float().mean()) < 0.6
    # each cue agrees with its task's majority side with probability 0.7
    majority_side = (ep.cues.float().mean(1) > 0.5).float()
    agree = (ep.cues.float() == majority_side[:, None]).float().mean()
    assert 0.7 < float(agree) < 0.85      # the realized majority agrees a bit more often than the drawn one


def test_p_majority_one_makes_all_cues_agree():
    family = EvidenceAccumulation(p_majority=1.0)
    ep = family.sample(50, torch.Generator().manual_seed(3))
    assert ((ep.cues.sum(1) == 0) | (ep.cues.sum(1) == 7)).all()


def test_cross_entropy_and_accuracy():
    family = EvidenceAccumulation(n_inputs=8, n_cues=3, cue_duration=2, cue_interval=3, delay=5, recall_duration=4)
    ep = family.sample(64, torch.Generator().manual_seed(4))
    flat = family.loss(torch.zeros(64, family.n_steps, 2), ep)
    torch.testing.assert_close(flat.per_task, torch.full((64,), math.log(2.0)))
    sign = 2.0 * ep.label.float() - 1.0                                   # +1 right, -1 left
    right = torch.stack((-sign, sign), -1)[:, None, :].expand(-1, family.n_steps, -1) * 3.0
    good = family.loss(right, ep)
    expected = math.log(1 + math.exp(-6.0))                                # softmax CE with logit gap 6
    torch.testing.assert_close(good.per_task, torch.full((64,), expected))
    assert float(good.metrics["accuracy"].mean()) == 1.0
    assert float(family.loss(-right, ep).metrics["accuracy"].mean()) == 0.0
    # outside the recall window the output does not count
    noisy = right.clone()
    noisy[:, :-4] = 100.0 * torch.randn(64, family.n_steps - 4, 2)
    torch.testing.assert_close(family.loss(noisy, ep).per_task, good.per_task)


def test_accuracy_uses_the_mean_over_the_window():
    family = EvidenceAccumulation(n_inputs=4, n_cues=1, cue_duration=1, cue_interval=1, delay=0, recall_duration=3)
    ep = family.sample(1, torch.Generator().manual_seed(0))
    label = int(ep.label[0])
    output = torch.zeros(1, 4, 2)
    output[0, 1:, label] = torch.tensor([5.0, -1.0, -1.0])                 # mean +1 for the right class
    assert float(family.loss(output, ep).metrics["accuracy"][0]) == 1.0


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"n_inputs": 42}, "n_inputs"), ({"n_cues": 6}, "n_cues"), ({"n_cues": 0}, "n_cues"),
     ({"cue_interval": 50}, "cue_interval"), ({"delay": -1}, "delay"), ({"recall_duration": 0}, "recall_duration"),
     ({"p_majority": 1.5}, "p_majority"), ({"n_steps": 2000}, "n_steps"), ({"input_rate_hz": 1e4}, "input_rate_hz")],
)
def test_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        EvidenceAccumulation(**kwargs)


def test_plot(tmp_path):
    family = EvidenceAccumulation()
    ep = family.sample(2, torch.Generator().manual_seed(0))
    fig = family.plot(ep, torch.randn(2, family.n_steps, 2))
    fig.savefig(tmp_path / "evidence.png")
    assert (tmp_path / "evidence.png").stat().st_size > 5_000
