"""Learning rules behind one interface (:class:`LearningRule`), one module each."""

from l2l.rules.base import GradientResult, LearningRule, LossFn, output_error
from l2l.rules.bptt import BPTT
from l2l.rules.eprop import EProp
from l2l.rules.rtrl import RTRL
from l2l.validation import require_choice

RULES: dict[str, type[LearningRule]] = {"bptt": BPTT, "rtrl": RTRL, "eprop": EProp}


def make_rule(name: str, **options) -> LearningRule:
    """A learning rule by name (``bptt``, ``rtrl``, ``eprop``) with its options."""
    require_choice("rule", name, tuple(RULES))
    return RULES[name](**options)


__all__ = ["BPTT", "EProp", "RTRL", "RULES", "GradientResult", "LearningRule", "LossFn", "make_rule", "output_error"]
