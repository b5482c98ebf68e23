"""The interface every task family implements: sample episodes, score outputs, plot an episode.

A *task family* is a distribution over tasks. ``family.sample(batch_size=B, generator=g)`` draws B
tasks and returns one :class:`Episode` per batch: tensors with a leading batch dimension and a time
dimension, (B, T, ...). The same generator state gives the same episodes. Sampling is vectorized
over the batch (no Python loop over tasks).

``family.loss(output, episode)`` scores a network's readout ``output`` (B, T, n_outputs) and returns
a :class:`TaskLoss`: the differentiable loss of every task (B,), its mean (what a learning rule
minimizes) and named metrics per task (B,). ``family.plot(episode, output)`` draws target vs
produced for one task of the batch and returns a matplotlib ``Figure`` (no pyplot state).
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from matplotlib.figure import Figure

from l2l.validation import InvalidValueError, require_nonnegative_int, require_size


@dataclass
class Episode:
    """A batch of B episodes of T steps.

    inputs: (B, T, n_inputs) network input (spikes or analog values);
    target: (B, T, n_targets) what the output should be (its meaning is the family's; see each family);
    mask: (B, T) float, 1 where the loss counts, 0 elsewhere.
    Families add their own fields in subclasses (every tensor field has the batch dimension first).
    """

    inputs: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor

    @property
    def batch_size(self) -> int:
        """B."""
        return self.inputs.shape[0]

    @property
    def n_steps(self) -> int:
        """T."""
        return self.inputs.shape[1]

    def tensors(self) -> dict[str, torch.Tensor]:
        """Every tensor field by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if isinstance(getattr(self, f.name), torch.Tensor)}

    def select(self, index: int | slice | torch.Tensor) -> Episode:
        """The episodes ``index`` of the batch (keeps the batch dimension for an int: B = 1)."""
        if isinstance(index, int):
            index = slice(index, index + 1)
        return dataclasses.replace(self, **{k: v[index] for k, v in self.tensors().items()})

    def repeat(self, batch_size: int) -> Episode:
        """A batch of ``batch_size`` copies of a single episode (B must be 1)."""
        if self.batch_size != 1:
            raise ValueError(f"repeat needs an episode with batch size 1, got {self.batch_size}")
        return dataclasses.replace(
            self, **{k: v.expand(batch_size, *v.shape[1:]).contiguous() for k, v in self.tensors().items()}
        )

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> Episode:
        """Every tensor on ``device``; floating tensors cast to ``dtype`` (integer labels keep theirs)."""
        return dataclasses.replace(self, **{
            k: v.to(device=device, dtype=dtype if v.is_floating_point() else None) for k, v in self.tensors().items()
        })


@dataclass
class TaskLoss:
    """per_task: (B,) differentiable loss of each task; metrics: name -> (B,) detached values per task."""

    per_task: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def mean(self) -> torch.Tensor:
        """The loss averaged over tasks (a scalar): what a learning rule minimizes."""
        return self.per_task.mean()

    def summary(self) -> dict[str, float]:
        """``loss`` and every metric averaged over tasks, as Python floats."""
        out = {"loss": float(self.per_task.detach().mean())}
        out.update({k: float(v.detach().float().mean()) for k, v in self.metrics.items()})
        return out


class TaskFamily(ABC):
    """Base class of a task family.

    Subclasses set ``n_inputs``, ``n_outputs`` and ``n_steps`` (T) and implement :meth:`_sample`,
    :meth:`loss` and :meth:`plot`. ``task_seed`` (an int) freezes the family to a single task drawn
    from that seed: every sample is B copies of it (inputs included), whatever the generator — the
    setting of e-prop 1's pattern generation, where one fixed input pattern is mapped to one target.
    """

    name = "task"  # also the name of its episode figures (``<name>_<iteration>.png``)
    metric = "loss"  # the headline metric (a key of TaskLoss.metrics): progress bars, learning curves, baselines
    lower_is_better = True  # of ``metric``: how the evaluation picks the best learning rate of a grid
    n_inputs: int
    n_outputs: int
    n_steps: int

    def __init__(self, task_seed: int | None = None) -> None:
        if task_seed is not None:
            require_nonnegative_int("task_seed", task_seed)
        self.task_seed = task_seed

    def sample(self, batch_size: int, generator: torch.Generator | None = None) -> Episode:
        """Draw ``batch_size`` episodes, each (T, ...) -> an Episode with tensors (B, T, ...).

        ``generator`` (a CPU ``torch.Generator``) makes the draw reproducible; ``None`` uses the global
        generator. With ``task_seed`` set, every episode is the frozen task and ``generator`` is unused.
        """
        require_size("batch_size", batch_size)
        if self.task_seed is not None:
            frozen = torch.Generator().manual_seed(self.task_seed)
            return self._sample(1, frozen).repeat(batch_size)
        return self._sample(batch_size, generator)

    @abstractmethod
    def _sample(self, batch_size: int, generator: torch.Generator | None) -> Episode:
        """Draw ``batch_size`` independent episodes (vectorized over the batch)."""

    @abstractmethod
    def loss(self, output: torch.Tensor, episode: Episode) -> TaskLoss:
        """Score the readout ``output`` (B, T, n_outputs) on ``episode``: per-task loss (B,) and metrics."""

    def chunk_loss(self, output: torch.Tensor, episode: Episode, steps: slice) -> torch.Tensor:
        """The task loss's share of the steps ``steps`` (a scalar; output: those steps (B, t, n_outputs)),
        for families whose loss is a sum over time (online e-prop needs it). Summed over consecutive
        chunks it equals ``loss(...).mean``."""
        raise ValueError(f"task={self.name!r} has no loss that is a sum over time: rule=eprop_online needs one "
                         "(task=pattern has it)")

    @abstractmethod
    def plot(self, episode: Episode, output: torch.Tensor | None = None, index: int = 0) -> Figure:
        """Draw task ``index`` of the batch: the target and, if given, the produced output (B, T, n_outputs)."""

    def check_output(self, output: torch.Tensor, episode: Episode) -> None:
        """Raise ValueError unless output is (B, T, n_outputs) for this episode."""
        expected = (episode.batch_size, episode.n_steps, self.n_outputs)
        if tuple(output.shape) != expected:
            raise ValueError(f"output has shape {tuple(output.shape)}: expected (B, T, n_outputs) = {expected}")


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` (B, T, ...) over time (and any trailing dims) where ``mask`` (B, T) is 1 -> (B,)."""
    weights = mask.reshape(*mask.shape, *([1] * (values.dim() - 2))).to(values.dtype).expand_as(values)
    total = (values * weights).flatten(1).sum(1)
    count = weights.flatten(1).sum(1).clamp(min=1.0)
    return total / count


def new_figure(n_rows: int, height_per_row: float = 1.6, width: float = 7.0) -> tuple[Figure, list]:
    """A pyplot-free figure with ``n_rows`` stacked axes sharing the x axis."""
    fig = Figure(figsize=(width, height_per_row * n_rows + 0.6), layout="constrained")
    axes = fig.subplots(n_rows, 1, sharex=True, squeeze=False)[:, 0].tolist()
    return fig, axes


def raster(ax, spikes: torch.Tensor, max_neurons: int = 100, **kwargs) -> None:
    """Spike raster of ``spikes`` (T, n) on ``ax`` (at most ``max_neurons`` rows)."""
    steps, neurons = torch.nonzero(spikes[:, :max_neurons] > 0, as_tuple=True)
    ax.scatter(steps.numpy(), neurons.numpy(), s=1.5, marker="|", color=kwargs.pop("color", "black"), **kwargs)
    ax.set_ylim(-0.5, min(spikes.shape[1], max_neurons) - 0.5)


def require_pair(name: str, value: Sequence[float]) -> tuple[float, float]:
    """Raise unless ``value`` is two finite numbers; return them as floats."""
    values = tuple(value)
    if len(values) != 2 or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values
    ):
        raise InvalidValueError(name, value, ": it must be two finite numbers")
    return float(values[0]), float(values[1])


def require_range(name: str, value: Sequence[float], minimum: float | None = None,
                  strict: bool = False) -> tuple[float, float]:
    """Raise unless ``value`` is (low, high) with low <= high and low >= minimum (> if ``strict``)."""
    low, high = require_pair(name, value)
    too_low = minimum is not None and (low <= minimum if strict else low < minimum)
    if low > high or too_low:
        bound = "" if minimum is None else f" and low {'>' if strict else '>='} {minimum:g}"
        raise InvalidValueError(name, value, f": it must be (low, high) with low <= high{bound}")
    return low, high
