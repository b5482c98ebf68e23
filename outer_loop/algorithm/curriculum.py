"""A curriculum for direct training: stages of task parameters, advanced on the training batches' metric.

``train.curriculum.stages`` is a list of task-parameter overrides, e.g. for copy-repeat
``[{length: 1, max_repeats: 1}, {length: 2, max_repeats: 1}, {length: 2, max_repeats: 2}, ...]``. Training starts
at stage 0 and moves to the next stage after ``patience`` consecutive iterations whose training-batch ``metric``
(the family's by default) is at or below ``threshold`` (at or above it for a family where higher is better). The
network is built for the largest input size over the stages; a stage with fewer input channels gets zero
channels appended (for copy-repeat: the one-hot repeat-count channels a smaller ``max_repeats`` does not use, so
the code of a count is the same in every stage). Every stage must have the same number of outputs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from l2l.tasks.base import Episode, TaskFamily
from l2l.validation import require_size


class Curriculum:
    """Stages of task families built by ``build(overrides)``; ``stage`` is the current one (0-based)."""

    def __init__(self, build: Callable[[Mapping[str, Any]], TaskFamily], stages: Sequence[Mapping[str, Any]],
                 threshold: float, patience: int = 1, metric: str | None = None) -> None:
        if not stages:
            raise ValueError("train.curriculum.stages=[] is not allowed: give at least one stage")
        require_size("train.curriculum.patience", patience)
        self.families = [build(dict(s)) for s in stages]
        self.stages = [dict(s) for s in stages]
        outputs = {f.n_outputs for f in self.families}
        if len(outputs) != 1:
            raise ValueError(f"train.curriculum.stages={self.stages!r} is not allowed: the stages have "
                             f"{sorted(outputs)} outputs, they must all have the same")
        self.metric = metric if metric is not None else self.families[0].metric
        self.threshold, self.patience = float(threshold), patience
        self.n_inputs = max(f.n_inputs for f in self.families)
        self.stage, self.streak = 0, 0

    @property
    def family(self) -> TaskFamily:
        """The current stage's family."""
        return self.families[self.stage]

    @property
    def largest(self) -> TaskFamily:
        """A family with the most input channels (the network is built for it)."""
        return max(self.families, key=lambda f: f.n_inputs)

    def pad(self, episode: Episode) -> Episode:
        """inputs (B, T, n) -> (B, T, n_inputs) with zero channels appended."""
        missing = self.n_inputs - episode.inputs.shape[-1]
        if missing == 0:
            return episode
        return dataclasses.replace(episode, inputs=torch.nn.functional.pad(episode.inputs, (0, missing)))

    def sample(self, batch_size: int, generator: torch.Generator) -> Episode:
        """A batch of the current stage, padded to ``n_inputs`` channels."""
        return self.pad(self.family.sample(batch_size, generator))

    def observe(self, value: float) -> bool:
        """Count one training batch's metric; True when this moved training to the next stage."""
        good = value <= self.threshold if self.family.lower_is_better else value >= self.threshold
        self.streak = self.streak + 1 if good else 0
        if self.streak >= self.patience and self.stage + 1 < len(self.families):
            self.stage, self.streak = self.stage + 1, 0
            return True
        return False

    def summary(self) -> dict[str, Any]:
        """{"stage", "stages", "params"}: where training is."""
        return {"stage": self.stage, "stages": len(self.stages), "params": self.stages[self.stage]}

    def state_dict(self) -> dict[str, int]:
        """{"stage", "streak"}."""
        return {"stage": self.stage, "streak": self.streak}

    def load_state_dict(self, state: Mapping[str, int]) -> None:
        """Restore :meth:`state_dict`."""
        stage = int(state["stage"])
        if not 0 <= stage < len(self.families):
            raise ValueError(f"the checkpoint's curriculum stage {stage} does not exist: train.curriculum.stages has "
                             f"{len(self.families)}")
        self.stage, self.streak = stage, int(state["streak"])
