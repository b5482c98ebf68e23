"""Copy-repeat: episodes against a loop-built reference, the masked BCE loss and bit error, bad parameters."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from l2l.tasks.copy_repeat import CopyRepeat


def _episode_by_loops(pattern, repeats, max_repeats):
    """inputs, target, mask for one task, slot by slot (step_duration 1)."""
    length, width = pattern.shape
    slots = length + 1 + max_repeats * length + 1
    inputs = torch.zeros(slots, width + 1 + max_repeats)
    target = torch.zeros(slots, width + 1)
    mask = torch.zeros(slots)
    for i in range(length):
        inputs[i, :width] = pattern[i]
    inputs[length, width] = 1.0
    inputs[length, width + repeats] = 1.0          # one-hot count: channel width + 1 + (n − 1)
    start = length + 1
    for j in range(max_repeats * length + 1):
        mask[start + j] = 1.0
        if j < repeats * length:
            target[start + j, :width] = pattern[j % length]
        elif j == repeats * length:
            target[start + j, width] = 1.0
    return inputs, target, mask


@settings(max_examples=25, deadline=None)
@given(width=st.integers(1, 5), length=st.integers(1, 6), max_repeats=st.integers(1, 4), seed=st.integers(0, 10**6))
def test_episode_matches_loops(width, length, max_repeats, seed):
    family = CopyRepeat(width=width, length=length, max_repeats=max_repeats)
    ep = family.sample(5, torch.Generator().manual_seed(seed))
    assert ep.inputs.shape == (5, family.n_steps, width + 1 + max_repeats)
    assert family.n_steps == length + 1 + max_repeats * length + 1
    for b in range(5):
        assert 1 <= int(ep.repeats[b]) <= max_repeats
        inputs, target, mask = _episode_by_loops(ep.pattern[b], int(ep.repeats[b]), max_repeats)
        assert torch.equal(ep.inputs[b], inputs)
        assert torch.equal(ep.target[b], target)
        assert torch.equal(ep.mask[b], mask)


def test_step_duration_stretches_every_slot():
    slow = CopyRepeat(width=3, length=2, max_repeats=2, step_duration=3)
    ep = slow.sample(2, torch.Generator().manual_seed(0))
    assert slow.n_steps == 3 * (2 + 1 + 4 + 1)
    inputs, target, mask = _episode_by_loops(ep.pattern[1], int(ep.repeats[1]), 2)
    assert torch.equal(ep.inputs[1], inputs.repeat_interleave(3, 0))
    assert torch.equal(ep.target[1], target.repeat_interleave(3, 0))


def test_repeat_counts_cover_the_range():
    family = CopyRepeat(max_repeats=4, min_repeats=2)
    ep = family.sample(400, torch.Generator().manual_seed(1))
    assert set(ep.repeats.tolist()) == {2, 3, 4}
    assert 0.4 < float(ep.pattern.mean()) < 0.6


def test_loss_and_bit_error():
    family = CopyRepeat(width=3, length=4, max_repeats=2)
    ep = family.sample(8, torch.Generator().manual_seed(2))
    logits = 10.0 * (2.0 * ep.target - 1.0)
    good = family.loss(logits, ep)
    assert float(good.metrics["bit_error"].max()) == 0.0
    torch.testing.assert_close(good.per_task, torch.full((8,), math.log1p(math.exp(-10.0))))
    assert float(family.loss(-logits, ep).metrics["bit_error"].min()) == 1.0
    torch.testing.assert_close(family.loss(torch.zeros_like(logits), ep).per_task, torch.full((8,), math.log(2.0)))
    # before the answer period the output does not count
    noisy = logits.clone()
    noisy[:, :5] = torch.randn(8, 5, 4) * 50
    torch.testing.assert_close(family.loss(noisy, ep).per_task, good.per_task)
    # one wrong bit of the 3 + 1 outputs over the 9 answer slots of task 0
    one_wrong = logits.clone()
    one_wrong[0, 6, 0] *= -1
    assert float(family.loss(one_wrong, ep).metrics["bit_error"][0]) == pytest.approx(1 / 36)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"width": 0}, "width"), ({"length": 0}, "length"), ({"max_repeats": 0}, "max_repeats"),
     ({"min_repeats": 0}, "min_repeats"), ({"min_repeats": 4, "max_repeats": 3}, "min_repeats"),
     ({"step_duration": 0}, "step_duration"), ({"n_steps": 10}, "n_steps")],
)
def test_bad_parameters(kwargs, name):
    with pytest.raises(ValueError, match=name):
        CopyRepeat(**kwargs)


def test_plot(tmp_path):
    family = CopyRepeat()
    ep = family.sample(2, torch.Generator().manual_seed(0))
    fig = family.plot(ep, torch.randn(2, family.n_steps, family.n_outputs))
    assert len(fig.axes) == 3
    fig.savefig(tmp_path / "copy.png")
    assert (tmp_path / "copy.png").stat().st_size > 3_000


def test_bits_wrong_counts_the_wrong_answer_bits_of_each_sequence():
    family = CopyRepeat(width=3, length=2, max_repeats=2)
    episode = family.sample(4, torch.Generator().manual_seed(0))
    perfect = torch.where(episode.target > 0.5, 10.0, -10.0)
    assert family.loss(perfect, episode).metrics["bits_wrong"].tolist() == [0.0] * 4
    flipped = -perfect
    answer_bits = (episode.mask.unsqueeze(-1) * torch.ones_like(episode.target)).sum(dim=(1, 2))
    assert torch.equal(family.loss(flipped, episode).metrics["bits_wrong"], answer_bits)
    one = perfect.clone()
    t = int(episode.mask[0].nonzero()[0])
    one[0, t, 0] = -one[0, t, 0]
    assert family.loss(one, episode).metrics["bits_wrong"].tolist() == [1.0, 0.0, 0.0, 0.0]
