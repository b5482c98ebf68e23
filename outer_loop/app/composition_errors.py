"""Hydra's composition errors as one line naming the override, the value and what is allowed.

Hydra prints a refused override as a block (the message, OmegaConf's ``full_key``/``object_type`` lines and a
note about ``HYDRA_FULL_ERROR``) and exits 1. The Hydra commands compose their command line once before Hydra
does (:func:`composition_problem`): every override, and in a sweep (``-m``) every value of every swept key, so
that a typo in the fifth value of a sweep stops the sweep before its first job.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import re
from collections.abc import Callable, Sequence

from hydra.errors import HydraException, MissingConfigException, OverrideParseException
from omegaconf.errors import OmegaConfBaseException

HYDRA_ONLY = ("help", "hydra_help", "cfg", "info", "shell_completion", "config_path", "config_name", "config_dir",
              "experimental_rerun")
"""Hydra flags after which the command does not run its app: left to Hydra."""

SCHEMA_SUFFIX = "_schema"
"""Config-store entries that are a group's schema (``rule/eprop_schema``), not a choice."""
TYPE_WORDS = {"Integer": "an integer", "Float": "a number", "Boolean": "true or false", "String": "a string"}


def composition_message(error: BaseException, prog: str = "l2l-train") -> str:
    """One line for a Hydra or OmegaConf composition error: the override, its value, what is allowed."""
    if isinstance(error, OverrideParseException):
        return f"{error.override!r} cannot be read as an override: {_first_line(error.message)}"
    if isinstance(error, MissingConfigException) and error.missing_cfg_file and error.options:
        group, _, name = str(error.missing_cfg_file).rpartition("/")
        if group:
            options = sorted(o for o in error.options if not o.endswith(SCHEMA_SUFFIX))
            return f"{group}={name!r} is not allowed: choose one of {options}"
    text = " ".join(str(error).split())
    cause = error.__cause__
    merging = re.match(r"Error merging override (\S+)", text)
    if merging and isinstance(cause, OmegaConfBaseException):
        return f"{merging.group(1)} is not allowed: {_allowed(cause)}"
    override = re.match(r"Could not override '([^']+)'\. To append to your config use \+(\S+)", text)
    if override:
        key = override.group(1)
        hint = _did_you_mean(key, cause)
        return f"{override.group(2)}{hint} is not an {prog} key: check the spelling ({prog} --cfg job prints every key)"
    text = text.split(" Config search path:")[0]
    if isinstance(cause, OmegaConfBaseException) or (cause is not None and str(cause).strip()):
        text += f": {_first_line(str(cause))}"
    return text


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0].strip() if text.strip() else ""


def _allowed(cause: OmegaConfBaseException) -> str:
    """What OmegaConf's validation error says is allowed, in the words of the other l2l messages."""
    message = _first_line(str(cause))
    converted = re.search(r"could not be converted to (\w+)", message)
    if converted and converted.group(1) in TYPE_WORDS:
        return f"it must be {TYPE_WORDS[converted.group(1)]}"
    if "is not a valid bool" in message:
        return "it must be true or false"
    invalid = re.search(r"Invalid value '[^']*', expected one of \[([^\]]*)\]", message)
    if invalid:
        return f"choose one of [{invalid.group(1)}]"
    return message


def _did_you_mean(key: str, cause: BaseException | None) -> str:
    """' (did you mean outer.batch_size?)' from the keys beside the unknown one, '' when none is close."""
    parent = getattr(cause, "parent_node", None)
    try:
        known = [str(k) for k in parent] if parent is not None else []
    except Exception:  # noqa: BLE001 - a node that cannot list its keys gives no hint
        return ""
    prefix, _, last = key.rpartition(".")
    close = difflib.get_close_matches(last, known, n=1)
    return f" (did you mean {prefix + '.' if prefix else ''}{close[0]}?)" if close else ""


def composition_problem(argv: Sequence[str], compose: Callable[[list[str]], object], prog: str) -> str | None:
    """The one-line problem of composing a Hydra command line ``argv`` with ``compose(overrides)``, None when it
    composes or is not a run (``--help``, ``--cfg``, ``--info``, ... are left to Hydra). With ``-m`` every
    value of every swept key is composed once (with the other sweeps at their first value)."""
    from hydra._internal.utils import get_args_parser
    from hydra.core.override_parser.overrides_parser import OverridesParser

    try:
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            args = get_args_parser().parse_args(list(argv))
    except SystemExit:
        return None
    if any(getattr(args, flag, None) for flag in HYDRA_ONLY):
        return None
    try:
        parsed = OverridesParser.create().parse_overrides(list(args.overrides))
    except HydraException as error:
        return composition_message(error, prog)
    points: list[list[str]] = [list(args.overrides)]
    if args.multirun:
        try:
            values = [list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.input_line] for o in parsed]
        except Exception:  # noqa: BLE001 - an interval or other sweep the sweeper samples: left to Hydra
            return None
        keys = [o.get_key_element() for o in parsed]
        first = [f"{key}={v[0]}" if o.is_sweep_override() else v[0] for key, v, o in zip(keys, values, parsed,
                                                                                          strict=True)]
        points = [first]
        for i, (override, options) in enumerate(zip(parsed, values, strict=True)):
            if override.is_sweep_override():
                points += [[*first[:i], f"{keys[i]}={value}", *first[i + 1:]] for value in options[1:]]
    for point in points:
        try:
            compose(point)
        except (HydraException, OmegaConfBaseException) as error:
            return composition_message(error, prog)
    return None
