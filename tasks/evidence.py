"""Evidence accumulation (e-prop 1's classification task with ALIF memory).

A trial presents ``n_cues`` cues, each on the left or the right; after a delay a recall cue asks
which side had more cues. Per task a majority side m is drawn (left or right, 1/2 each) and every
cue is on side m with probability ``p_majority``; the label is the side that really got more cues
(``n_cues`` odd: no ties). Input neurons come in four equal groups (``n_inputs`` a multiple of 4):
left cues, right cues, recall cue, background noise. Cue k occupies steps
[k·cue_interval + cue_interval − cue_duration, (k+1)·cue_interval), during which its side's group
fires at ``input_rate_hz``; the recall group fires during the last ``recall_duration`` steps; the
noise group fires at ``noise_rate_hz`` throughout. T = n_cues·cue_interval + delay + recall_duration.
Durations are in time steps (ms at dt = 1). Reference (Bellec et al. 2020): 40 inputs, 7 cues of
100 ms every 150 ms, recall of 150 ms, T = 2250 (delay 1050), 40 Hz cues, 10 Hz noise, p = 0.7.

The readout has two outputs (logits for left, right); the loss is the softmax cross-entropy
averaged over the recall window; the decision is the argmax of the output averaged over it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from matplotlib.figure import Figure

from l2l.tasks.base import Episode, TaskFamily, TaskLoss, masked_mean, new_figure
from l2l.tasks.encoders import poisson_spikes
from l2l.validation import (
    InvalidValueError,
    require_nonnegative,
    require_nonnegative_int,
    require_positive,
    require_size,
)


@dataclass
class EvidenceEpisode(Episode):
    """inputs: spikes (B, T, n_inputs); target: one-hot label (B, T, 2); mask: recall window (B, T);
    label: (B,) 0 = left, 1 = right; cues: (B, n_cues) side of each cue."""

    label: torch.Tensor | None = None
    cues: torch.Tensor | None = None


class EvidenceAccumulation(TaskFamily):
    """Count left vs right cues and answer after a delay. Output: 2 logits (B, T, 2)."""

    name = "evidence"
    metric = "accuracy"
    lower_is_better = False

    def __init__(
        self,
        n_inputs: int = 40,
        n_cues: int = 7,
        cue_duration: int = 100,
        cue_interval: int = 150,
        delay: int = 1050,
        recall_duration: int = 150,
        input_rate_hz: float = 40.0,
        noise_rate_hz: float = 10.0,
        p_majority: float = 0.7,
        dt: float = 1.0,
        n_steps: int | None = None,
        task_seed: int | None = None,
    ) -> None:
        super().__init__(task_seed)
        require_size("n_inputs", n_inputs)
        if n_inputs % 4 != 0:
            raise InvalidValueError("n_inputs", n_inputs,
                                    ": it must be a multiple of 4 (left, right, recall, noise groups)")
        require_size("n_cues", n_cues)
        if n_cues % 2 == 0:
            raise InvalidValueError("n_cues", n_cues, ": it must be odd so that one side has more cues")
        require_size("cue_duration", cue_duration)
        require_size("cue_interval", cue_interval)
        if cue_interval < cue_duration:
            raise InvalidValueError("cue_interval", cue_interval, f": it must be >= cue_duration={cue_duration}")
        require_nonnegative_int("delay", delay)
        require_size("recall_duration", recall_duration)
        require_positive("dt", dt)
        require_nonnegative("input_rate_hz", input_rate_hz)
        require_nonnegative("noise_rate_hz", noise_rate_hz)
        if not 0.0 <= p_majority <= 1.0:
            raise InvalidValueError("p_majority", p_majority, ": it must be in [0, 1]")
        expected = n_cues * cue_interval + delay + recall_duration
        if n_steps is not None and n_steps != expected:
            raise InvalidValueError(
                "n_steps", n_steps, ": the trial structure gives n_cues·cue_interval + delay + "
                f"recall_duration = {n_cues}·{cue_interval} + {delay} + {recall_duration} = {expected}"
            )
        self.n_inputs, self.n_outputs, self.n_steps = n_inputs, 2, expected
        self.n_cues, self.cue_duration, self.cue_interval = n_cues, cue_duration, cue_interval
        self.delay, self.recall_duration, self.dt = delay, recall_duration, dt
        self.input_rate_hz, self.noise_rate_hz, self.p_majority = input_rate_hz, noise_rate_hz, p_majority
        for name, rate in (("input_rate_hz", input_rate_hz), ("noise_rate_hz", noise_rate_hz)):
            if rate * dt / 1000.0 > 1.0:
                raise InvalidValueError(name, rate, f" with dt={dt}: at most {1000 / dt:g} Hz")

    def cue_of_step(self) -> torch.Tensor:
        """(T,) long: index k of the cue shown at each step, −1 where no cue is shown."""
        step = torch.arange(self.n_steps)
        k = step // self.cue_interval
        shown = (k < self.n_cues) & (step % self.cue_interval >= self.cue_interval - self.cue_duration)
        return torch.where(shown, k, torch.full_like(k, -1))

    def recall_window(self) -> torch.Tensor:
        """(T,) float: 1 during the recall cue (the last ``recall_duration`` steps)."""
        window = torch.zeros(self.n_steps)
        window[self.n_steps - self.recall_duration:] = 1.0
        return window

    def _sample(self, batch_size: int, generator: torch.Generator | None) -> EvidenceEpisode:
        majority = (torch.rand(batch_size, 1, generator=generator) < 0.5).long()                  # (B, 1)
        agree = torch.rand(batch_size, self.n_cues, generator=generator) < self.p_majority       # (B, K)
        cues = torch.where(agree, majority, 1 - majority)                                      # (B, K)
        label = (cues.sum(1) > self.n_cues // 2).long()                                         # (B,)
        cue_of_step = self.cue_of_step()                                                        # (T,)
        shown = cue_of_step >= 0
        side = cues[:, cue_of_step.clamp(min=0)]                                                # (B, T)
        group = self.n_inputs // 4
        group_of_neuron = torch.arange(self.n_inputs) // group                                  # (n,)
        cue_on = shown[None, :, None] & (side[:, :, None] == group_of_neuron[None, None, :])    # (B, T, n)
        recall = self.recall_window().bool()
        recall_on = recall[None, :, None] & (group_of_neuron == 2)[None, None, :]               # (1, T, n)
        noise_on = (group_of_neuron == 3)[None, None, :]
        rates = (cue_on | recall_on).float() * self.input_rate_hz + noise_on.float() * self.noise_rate_hz
        inputs = poisson_spikes(rates.expand(batch_size, -1, -1), self.dt, generator)
        target = torch.nn.functional.one_hot(label, 2).float()[:, None, :].expand(-1, self.n_steps, -1)
        mask = self.recall_window().expand(batch_size, -1).clone()
        return EvidenceEpisode(inputs, target.contiguous(), mask, label=label, cues=cues)

    def loss(self, output: torch.Tensor, episode: EvidenceEpisode) -> TaskLoss:
        """Cross-entropy of softmax(output) averaged over the recall window; metric ``accuracy``."""
        self.check_output(output, episode)
        log_p = torch.log_softmax(output, dim=-1)
        ce = -(log_p * episode.target.to(output)).sum(-1)                                       # (B, T)
        per_task = masked_mean(ce, episode.mask)
        weights = episode.mask.to(output)[..., None]                                            # (B, T, 1)
        mean_logits = (output.detach() * weights).sum(1) / weights.sum(1).clamp(min=1.0)        # (B, 2)
        decision = mean_logits.argmax(-1)
        accuracy = (decision == episode.label.to(decision.device)).float()
        return TaskLoss(per_task, {"accuracy": accuracy, "ce": per_task.detach()})

    def plot(self, episode: EvidenceEpisode, output: torch.Tensor | None = None, index: int = 0) -> Figure:
        """Input raster (cue groups coloured), and the softmax output (right) against the label."""
        fig, axes = new_figure(2)
        inputs = episode.inputs[index].detach().cpu()
        group = self.n_inputs // 4
        for g, (color, name) in enumerate(zip(("C0", "C3", "C2", "0.6"), ("left", "right", "recall", "noise"),
                                              strict=True)):
            steps, neurons = torch.nonzero(inputs[:, g * group:(g + 1) * group] > 0, as_tuple=True)
            axes[0].scatter(steps.numpy() * self.dt, (neurons + g * group).numpy(), s=1.5, marker="|",
                            color=color, label=name)
        axes[0].set(ylabel="input", ylim=(-0.5, self.n_inputs - 0.5))
        axes[0].legend(fontsize=6, ncol=4, loc="upper center", markerscale=4)
        t = torch.arange(episode.n_steps) * self.dt
        label = int(episode.label[index])
        window = episode.mask[index].cpu() > 0
        target = torch.where(window, episode.target[index, :, 1].detach().cpu(), torch.tensor(float("nan")))
        axes[1].axvspan(float(t[window][0]), float(t[window][-1]), color="0.9", label="recall window")
        axes[1].plot(t, target, "--", color="C0", lw=2, label=f"target (label = {'right' if label else 'left'})")
        if output is not None:
            axes[1].plot(t, torch.softmax(output[index].detach().cpu().float(), -1)[:, 1], color="C1",
                         label="p(right)")
        axes[1].set(ylabel="p(right)", ylim=(-0.05, 1.05), xlabel="time (ms)")
        axes[1].legend(fontsize=7, loc="upper left")
        return fig


__all__ = ["EvidenceAccumulation", "EvidenceEpisode"]
