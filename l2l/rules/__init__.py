"""Learning rules behind one interface (:class:`LearningRule`), one module each."""

from l2l.rules.base import GradientResult, LearningRule, LossFn, output_error
from l2l.rules.bptt import BPTT
from l2l.rules.deep_eprop import DeepEProp
from l2l.rules.eprop import EProp
from l2l.rules.eprop3 import EProp3
from l2l.rules.influence import MemoryBudgetError
from l2l.rules.morder import MOrder
from l2l.rules.online_eprop import OnlineEProp, SeparableLoss
from l2l.rules.registry import RULES, Option, RuleEntry, make_rule, register_rule
from l2l.rules.rtrl import RTRL
from l2l.rules.truncated_bptt import TBPTT, TBPTTSyntheticGradient

register_rule(RuleEntry(BPTT))
register_rule(RuleEntry(RTRL))
register_rule(RuleEntry(EProp, one_layer=True))
register_rule(RuleEntry(OnlineEProp, one_layer=True))
register_rule(RuleEntry(DeepEProp))
register_rule(RuleEntry(MOrder))
register_rule(RuleEntry(TBPTT, one_layer=True, truncated=True))
register_rule(RuleEntry(TBPTTSyntheticGradient, one_layer=True, truncated=True))
register_rule(RuleEntry(EProp3, one_layer=True, truncated=True))


__all__ = [
    "BPTT", "DeepEProp", "EProp", "EProp3", "MOrder", "RTRL", "RULES", "GradientResult", "LearningRule", "LossFn",
    "MemoryBudgetError", "OnlineEProp", "Option", "RuleEntry", "SeparableLoss", "TBPTT", "TBPTTSyntheticGradient",
    "make_rule", "output_error", "register_rule",
]
