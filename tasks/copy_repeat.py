"""Copy-repeat (the e-prop 3 demonstration): see a random binary pattern, then repeat it n times.

Time is cut into slots of ``step_duration`` steps. Input channels: ``width`` pattern bits, one cue
channel, and ``max_repeats`` channels coding the repeat count one-hot.

- slots 0 .. length−1: the pattern, one row of ``width`` random bits per slot (bits ~ Bernoulli(1/2));
- slot ``length``: the cue channel and the count channel n (1 ≤ n ≤ max_repeats) are on;
- the next max_repeats·length + 1 slots are the answer period: the target is the pattern repeated
  n times, then the end marker (output channel ``width``) for one slot, then silence.

T = (length + 1 + max_repeats·length + 1)·step_duration.
Output: width + 1 logits (bits and end marker); the loss is the binary cross-entropy with logits over
the answer period (mask), the metric ``bit_error`` the fraction of wrong bits there (logit > 0 = 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from matplotlib.figure import Figure

from l2l.tasks.base import Episode, TaskFamily, TaskLoss, masked_mean, new_figure
from l2l.validation import InvalidValueError, require_size


@dataclass
class CopyRepeatEpisode(Episode):
    """inputs: (B, T, width + 1 + max_repeats); target: (B, T, width + 1); mask: answer period (B, T);
    pattern: (B, length, width) bits; repeats: (B,) long, the repeat count n."""

    pattern: torch.Tensor | None = None
    repeats: torch.Tensor | None = None


class CopyRepeat(TaskFamily):
    """Repeat a binary pattern as often as the cue says. Parameters: width, length, max_repeats."""

    name = "copy_repeat"
    metric = "bit_error"

    def __init__(
        self,
        width: int = 4,
        length: int = 5,
        max_repeats: int = 3,
        min_repeats: int = 1,
        step_duration: int = 1,
        n_steps: int | None = None,
        task_seed: int | None = None,
    ) -> None:
        super().__init__(task_seed)
        require_size("width", width)
        require_size("length", length)
        require_size("max_repeats", max_repeats)
        require_size("min_repeats", min_repeats)
        require_size("step_duration", step_duration)
        if min_repeats > max_repeats:
            raise InvalidValueError("min_repeats", min_repeats, f": it must be <= max_repeats={max_repeats}")
        self.width, self.length, self.max_repeats, self.min_repeats = width, length, max_repeats, min_repeats
        self.step_duration = step_duration
        self.n_slots = length + 1 + max_repeats * length + 1
        expected = self.n_slots * step_duration
        if n_steps is not None and n_steps != expected:
            raise InvalidValueError(
                "n_steps", n_steps, ": the trial structure gives (length + 1 + max_repeats·length + 1)"
                f"·step_duration = ({length} + 1 + {max_repeats}·{length} + 1)·{step_duration} = {expected}"
            )
        self.n_steps = expected
        self.n_inputs, self.n_outputs = width + 1 + max_repeats, width + 1

    def _sample(self, batch_size: int, generator: torch.Generator | None) -> CopyRepeatEpisode:
        L, W, R = self.length, self.width, self.max_repeats
        pattern = (torch.rand(batch_size, L, W, generator=generator) < 0.5).float()
        repeats = torch.randint(self.min_repeats, R + 1, (batch_size,), generator=generator)
        inputs = torch.zeros(batch_size, self.n_slots, self.n_inputs)
        inputs[:, :L, :W] = pattern
        inputs[:, L, W] = 1.0
        inputs[:, L, W + 1:] = torch.nn.functional.one_hot(repeats - 1, R).float()
        answer = torch.arange(R * L + 1)                                            # answer slots j
        shown = answer[None, :] < (repeats * L)[:, None]                            # (B, R·L + 1)
        rows = pattern[:, answer[:-1] % L]                                          # (B, R·L, W)
        bits = torch.cat((rows, torch.zeros(batch_size, 1, W)), 1) * shown[..., None]
        end = (answer[None, :] == (repeats * L)[:, None]).float()[..., None]        # (B, R·L + 1, 1)
        target = torch.zeros(batch_size, self.n_slots, self.n_outputs)
        target[:, L + 1:] = torch.cat((bits, end), -1)
        mask = torch.zeros(batch_size, self.n_slots)
        mask[:, L + 1:] = 1.0
        d = self.step_duration
        return CopyRepeatEpisode(
            inputs.repeat_interleave(d, 1), target.repeat_interleave(d, 1), mask.repeat_interleave(d, 1),
            pattern=pattern, repeats=repeats,
        )

    def loss(self, output: torch.Tensor, episode: Episode) -> TaskLoss:
        """Binary cross-entropy with logits over the answer period; metric ``bit_error`` (the fraction of wrong answer
        bits), also ``bits_wrong`` (wrong answer bits per sequence)."""
        self.check_output(output, episode)
        target = episode.target.to(output)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(output, target, reduction="none")
        per_task = masked_mean(bce, episode.mask)
        wrong = ((output.detach() > 0).to(output) != target).to(output)
        bits_wrong = (wrong * episode.mask.to(output).unsqueeze(-1)).sum(dim=(1, 2))
        return TaskLoss(per_task, {"bit_error": masked_mean(wrong, episode.mask), "bce": per_task.detach(),
                                   "bits_wrong": bits_wrong})

    def plot(self, episode: Episode, output: torch.Tensor | None = None, index: int = 0) -> Figure:
        """Input, target and (if given) sigmoid(output) as images over time."""
        panels = [("input", episode.inputs[index]), ("target", episode.target[index])]
        if output is not None:
            panels.append(("sigmoid(output)", torch.sigmoid(output[index].float())))
        fig, axes = new_figure(len(panels), height_per_row=1.3)
        for ax, (name, data) in zip(axes, panels, strict=True):
            image = data.detach().cpu().T.numpy()
            ax.imshow(image, aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
            ax.set_ylabel(name)
        axes[-1].set_xlabel("time step")
        return fig
