"""Task families (one module each) and input encoders. Depends on torch/numpy (and ``l2l.validation``) only.

``FAMILIES`` maps each family's name to its class; ``make_family(name, **params)`` builds one;
``register_family(cls)`` adds one (its ``name``), after which ``task=<name>`` works in the app once
``conf/task/<name>.yaml`` selects its schema (the app reads the schema off the constructor).
"""

from l2l.registry import Registry
from l2l.tasks.arm import ArmEpisode, ArmTrajectories, TwoJointArm
from l2l.tasks.base import Episode, TaskFamily, TaskLoss
from l2l.tasks.copy_repeat import CopyRepeat, CopyRepeatEpisode
from l2l.tasks.encoders import PopulationCode, clock_input, poisson_spikes
from l2l.tasks.evidence import EvidenceAccumulation, EvidenceEpisode
from l2l.tasks.pattern import PatternEpisode, PatternGeneration

FAMILIES: Registry[type[TaskFamily]] = Registry("task")
"""Every task family by name (the class's ``name``)."""


def register_family(family: type[TaskFamily]) -> type[TaskFamily]:
    """Make ``family`` available by its ``name`` (``make_family``, the app's ``task=<name>``); returns it."""
    return FAMILIES.register(family)


for _family in (ArmTrajectories, PatternGeneration, EvidenceAccumulation, CopyRepeat):
    register_family(_family)


def make_family(name: str, **params) -> TaskFamily:
    """A task family by name (``arm``, ``pattern``, ``evidence``, ``copy_repeat``) with its parameters."""
    return FAMILIES.entry(name)(**params)


__all__ = [
    "FAMILIES", "make_family", "register_family", "Episode", "TaskFamily", "TaskLoss",
    "ArmEpisode", "ArmTrajectories", "TwoJointArm",
    "PatternEpisode", "PatternGeneration",
    "EvidenceAccumulation", "EvidenceEpisode",
    "CopyRepeat", "CopyRepeatEpisode",
    "PopulationCode", "clock_input", "poisson_spikes",
]
