"""The common task-family interface, checked on every family: sample, score, plot, seeds, frozen tasks."""

import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from l2l.tasks import FAMILIES, make_family
from l2l.tasks.base import Episode, masked_mean

SMALL = {  # every family, shrunk
    "arm": {"n_steps": 100},
    "pattern": {"n_steps": 120, "n_inputs": 20, "n_outputs": 2},
    "evidence": {"n_inputs": 8, "n_cues": 3, "cue_duration": 5, "cue_interval": 8, "delay": 10, "recall_duration": 6},
    "copy_repeat": {"width": 3, "length": 4, "max_repeats": 3},
}


def small(name, **extra):
    return make_family(name, **SMALL[name], **extra)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_sample_score_plot(name, tmp_path):
    family = small(name)
    ep = family.sample(batch_size=5, generator=torch.Generator().manual_seed(0))
    assert isinstance(ep, Episode)
    assert ep.inputs.shape == (5, family.n_steps, family.n_inputs)
    assert ep.mask.shape == (5, family.n_steps) and ep.mask.sum() > 0
    for key, value in ep.tensors().items():
        assert value.shape[0] == 5, key
    output = torch.randn(5, family.n_steps, family.n_outputs, requires_grad=True)
    loss = family.loss(output, ep)
    assert loss.per_task.shape == (5,) and torch.isfinite(loss.per_task).all()
    assert family.metric in loss.summary()
    for value in loss.metrics.values():
        assert value.shape == (5,)
    loss.mean.backward()
    assert output.grad.abs().sum() > 0
    fig = family.plot(ep, output.detach(), index=4)
    fig.savefig(tmp_path / f"{name}.png")
    assert (tmp_path / f"{name}.png").stat().st_size > 3_000
    family.plot(ep)                                  # the target alone


@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**40), name=st.sampled_from(sorted(FAMILIES)))
def test_same_seed_same_tasks(seed, name):
    family = small(name)
    a = family.sample(3, torch.Generator().manual_seed(seed))
    b = family.sample(3, torch.Generator().manual_seed(seed))
    c = family.sample(3, torch.Generator().manual_seed(seed + 1))
    for key, value in a.tensors().items():
        assert torch.equal(value, b.tensors()[key]), key
    assert any(not torch.equal(v, c.tensors()[k]) for k, v in a.tensors().items())


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_frozen_task(name):
    family = small(name, task_seed=11)
    a = family.sample(3, torch.Generator().manual_seed(0))
    b = family.sample(2, torch.Generator().manual_seed(1))
    for key, value in a.tensors().items():
        assert torch.equal(value[0], value[2]) and torch.equal(value[0], b.tensors()[key][1]), key


def test_episode_select_repeat_to():
    ep = small("evidence").sample(4, torch.Generator().manual_seed(0))
    one = ep.select(2)
    assert one.batch_size == 1 and torch.equal(one.label, ep.label[2:3])
    many = one.repeat(3)
    assert many.batch_size == 3 and torch.equal(many.inputs[2], ep.inputs[2])
    as64 = ep.to(dtype=torch.float64)
    assert as64.inputs.dtype == torch.float64 and as64.label.dtype == torch.long
    with pytest.raises(ValueError, match="batch size 1"):
        ep.repeat(2)


def test_masked_mean_against_loops():
    values = torch.randn(3, 7, 2)
    mask = (torch.rand(3, 7) < 0.5).float()
    mask[:, 0] = 1.0
    got = masked_mean(values, mask)
    for b in range(3):
        rows = [values[b, t] for t in range(7) if mask[b, t] == 1]
        assert float(got[b]) == pytest.approx(float(torch.stack(rows).mean()), rel=1e-6)


@pytest.mark.parametrize("batch_size", [0, -2, 1.5])
def test_bad_batch_size(batch_size):
    with pytest.raises(ValueError, match="batch_size"):
        small("pattern").sample(batch_size)


def test_unknown_family():
    with pytest.raises(ValueError, match="task='maze'"):
        make_family("maze")


def test_tasks_do_not_import_the_apps():
    """l2l.tasks sits below l2l.outer_loop (docs/architecture.md): importing it pulls in no app, Hydra or W&B."""
    code = ("import sys, l2l.tasks; roots = {m.split('.')[0] for m in sys.modules}; "
            "print(sorted(roots & {'hydra', 'omegaconf', 'wandb'} | {'l2l.outer_loop', 'l2l.inner_loop', "
            "'matplotlib.pyplot'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
