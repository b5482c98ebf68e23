"""Task families (one module each) and input encoders. Depends on torch/numpy (and ``l2l.validation``) only.

``FAMILIES`` maps each family's name to its class; ``make_family(name, **params)`` builds one;
``register_family(cls)`` adds one (its ``name``), after which ``task=<name>`` works in the app once
``conf/task/<name>.yaml`` selects its schema (the app reads the schema off the constructor).
"""

from tasks.arm import ArmEpisode, ArmTrajectories, TwoJointArm
from tasks.base import Episode, TaskFamily, TaskLoss
from tasks.copy_repeat import CopyRepeat, CopyRepeatEpisode
from tasks.encoders import PopulationCode, clock_input, poisson_spikes
from tasks.evidence import EvidenceAccumulation, EvidenceEpisode
from tasks.pattern import PatternEpisode, PatternGeneration

FAMILIES: dict[str, type[TaskFamily]] = {
    "arm": ArmTrajectories,
    "pattern": PatternGeneration,
    "evidence": EvidenceAccumulation,
    "copy_repeat": CopyRepeat,
}


def register_family(family: type[TaskFamily]) -> type[TaskFamily]:
    """Make ``family`` available by its ``name`` (``make_family``, the app's ``task=<name>``); returns it."""
    FAMILIES[family.name] = family
    return family


def make_family(name: str, **params) -> TaskFamily:
    """A task family by name (``arm``, ``pattern``, ``evidence``, ``copy_repeat``) with its parameters."""
    if name not in FAMILIES:
        raise ValueError(f"task={name!r} is not allowed: choose one of {sorted(FAMILIES)}")
    return FAMILIES[name](**params)


__all__ = [
    "FAMILIES", "make_family", "register_family", "Episode", "TaskFamily", "TaskLoss",
    "ArmEpisode", "ArmTrajectories", "TwoJointArm",
    "PatternEpisode", "PatternGeneration",
    "EvidenceAccumulation", "EvidenceEpisode",
    "CopyRepeat", "CopyRepeatEpisode",
    "PopulationCode", "clock_input", "poisson_spikes",
]
