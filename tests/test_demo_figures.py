"""Demo figures of one-shot arm learning: the figure's layout, the GIF, the arm geometry, bad arguments."""

import io

import pytest
import torch
from PIL import Image

from l2l.outer_loop.algorithm.evaluation import one_shot_step
from l2l.outer_loop.app.build import build_meta, build_task
from l2l.outer_loop.app.compose import compose_config
from l2l.outer_loop.reports.demo_figures import arm_animation, arm_animation_frames, arm_geometry, demo_figure
from l2l.tasks.arm import TwoJointArm

BATCH = 3
OVERRIDES = ["experiment=smoke", "task.n_steps=40", "network.n_hidden=8", "error_module.n_hidden=8",
             "error_module.code_neurons=5", f"outer.batch_size={BATCH}"]


@pytest.fixture(scope="module")
def run():
    """A tiny untrained smoke meta-learner, a batch of BATCH arm tasks (T = 40) and its one-shot step."""
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = compose_config(OVERRIDES)
    meta = build_meta(cfg, build_task(cfg.task))
    g = torch.Generator().manual_seed(0)
    episode = meta.family.sample(BATCH, g)
    step = one_shot_step(meta, episode, meta.encode(episode, g))
    return meta, episode, step


def test_demo_figure_has_five_rows_per_task_and_saves(run):
    meta, episode, step = run
    fig = demo_figure(meta, episode, step, [0, 2], title="tiny")
    assert len(fig.axes) == 5 * 2
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getbuffer().nbytes > 0
    titles = [ax.get_title() for ax in fig.axes]
    assert any("Hz" in t and "learner" in t for t in titles)
    assert any("Hz" in t and "error module" in t for t in titles)


def test_demo_figure_says_when_the_top_layer_has_no_signal(run):
    meta, episode, step = run
    adaptation = step.adaptation
    saved = adaptation.steps[0].signals
    adaptation.steps[0].signals = [None] * len(saved)
    try:
        fig = demo_figure(meta, episode, step, [1])
    finally:
        adaptation.steps[0].signals = saved
    texts = [t.get_text() for ax in fig.axes for t in ax.texts]
    assert any("no learning signal" in t for t in texts)


def test_arm_animation_writes_a_small_gif_with_the_requested_frames(run, tmp_path):
    meta, episode, step = run
    path = arm_animation(meta, episode, step, 1, tmp_path / "sub" / "arm.gif", fps=10, frames=6)
    assert path == tmp_path / "sub" / "arm.gif"
    data = path.read_bytes()
    assert data.startswith(b"GIF8")
    assert 0 < len(data) < 1_000_000
    with Image.open(path) as im:
        assert im.n_frames == 6


def test_arm_geometry_matches_the_arm():
    arm = TwoJointArm((0.3, 0.7), (0.2, 1.0))
    omega = torch.randn(2, 25, 2, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 10
    elbow, hand = arm_geometry(arm, omega, dt=2.0)
    angles = arm.integrate(omega, 2.0)
    torch.testing.assert_close(hand, arm.endpoint(omega, 2.0))
    # the elbow is the endpoint of a straight arm (θ2 = 0) of total length l1
    straight = TwoJointArm((0.15, 0.15)).forward_kinematics(torch.stack((angles[..., 0], 0 * angles[..., 1]), -1))
    torch.testing.assert_close(elbow, straight)
    torch.testing.assert_close((hand - elbow).norm(dim=-1), torch.full((2, 25), 0.7, dtype=torch.float64))
    one_elbow, one_hand = arm_geometry(arm, omega[1], dt=2.0)          # (T, 2) without a batch
    torch.testing.assert_close(one_hand, hand[1])
    torch.testing.assert_close(one_elbow, elbow[1])


def test_animation_draws_the_familys_endpoint_at_the_last_frame(run):
    meta, episode, step = run
    task, frames = 2, 7
    fig, update, count = arm_animation_frames(meta, episode, step, task, frames)
    assert count == frames
    drawn = update(frames - 1)
    family = meta.family
    outputs = {"before": step.adaptation.demo.output, "after": step.test_output}
    for key, output in outputs.items():
        final = family.arm.endpoint(output.to(torch.float64), family.dt)[task, -1]
        torch.testing.assert_close(drawn[key][2], final)
        torch.testing.assert_close(drawn[key][0], torch.zeros(2, dtype=torch.float64))
    # the artist on screen holds those points: shoulder, elbow, endpoint
    arm_line = next(line for line in fig.axes[1].lines if line.get_label() == "arm")
    x, y = arm_line.get_data()
    torch.testing.assert_close(torch.tensor([x[-1], y[-1]], dtype=torch.float64), drawn["after"][2])


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda m, e, s, p: demo_figure(m, e, s, []), "tasks"),
        (lambda m, e, s, p: demo_figure(m, e, s, [0, BATCH]), "tasks"),
        (lambda m, e, s, p: demo_figure(m, e, s, [-1]), "tasks"),
        (lambda m, e, s, p: demo_figure(m, e, s, [0.5]), "tasks"),
        (lambda m, e, s, p: arm_animation(m, e, s, BATCH, p), "task"),
        (lambda m, e, s, p: arm_animation(m, e, s, 0, p, fps=0), "fps"),
        (lambda m, e, s, p: arm_animation(m, e, s, 0, p, frames=0), "frames"),
        (lambda m, e, s, p: arm_animation(m, e, s, 0, p, frames=41), "frames"),
    ],
)
def test_bad_arguments_fail_clearly(run, tmp_path, call, match):
    meta, episode, step = run
    with pytest.raises(ValueError, match=match):
        call(meta, episode, step, tmp_path / "x.gif")
    assert not (tmp_path / "x.gif").exists()
