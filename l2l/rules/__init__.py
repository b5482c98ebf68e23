"""Learning rules behind one interface (:class:`LearningRule`), one module each."""

from l2l.rules.base import GradientResult, LearningRule, LossFn, output_error
from l2l.rules.bptt import BPTT
from l2l.rules.deep_eprop import DeepEProp
from l2l.rules.eprop import EProp
from l2l.rules.eprop3 import EProp3
from l2l.rules.influence import MemoryBudgetError
from l2l.rules.morder import MOrder
from l2l.rules.online_eprop import OnlineEProp, SeparableLoss
from l2l.rules.rtrl import RTRL
from l2l.rules.truncated_bptt import TBPTT, TBPTTSyntheticGradient
from l2l.validation import require_choice

RULES: dict[str, type[LearningRule]] = {
    "bptt": BPTT, "rtrl": RTRL, "eprop": EProp, "eprop_online": OnlineEProp, "deep_eprop": DeepEProp,
    "morder": MOrder, "tbptt": TBPTT, "tbptt_sg": TBPTTSyntheticGradient, "eprop3": EProp3,
}


def make_rule(name: str, **options) -> LearningRule:
    """A learning rule by name (``bptt``, ``rtrl``, ``eprop``, ``eprop_online``, ``deep_eprop``, ``morder``,
    ``tbptt``, ``tbptt_sg``, ``eprop3``)
    with its options; ``eprop_online`` takes its loss as a :class:`SeparableLoss`."""
    require_choice("rule", name, tuple(RULES))
    return RULES[name](**options)


__all__ = [
    "BPTT", "DeepEProp", "EProp", "EProp3", "MOrder", "RTRL", "RULES", "GradientResult", "LearningRule", "LossFn",
    "MemoryBudgetError", "OnlineEProp", "SeparableLoss", "TBPTT", "TBPTTSyntheticGradient", "make_rule",
    "output_error",
]
