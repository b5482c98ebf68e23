"""The registry of neuron models: one entry per cell, carrying everything the rest of l2l needs of it.

An entry holds the layer class (whose ``model`` is the step function, state and parameter record), the
eligibility-trace module (``gradient``, ``traces``, ``current_signal``; an import path, loaded on first
use, or the module itself), how a config node maps onto the parameter record, and the parameters with
which ``l2l-verify`` checks the cell on tiny networks. A new cell is its cell file, its trace file and one
:func:`register_cell` call; networks, e-prop, the verification rows and ``network.cell=<name>`` in the
app then know it.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from l2l.cells.base import RecurrentCell
from l2l.registry import Registry
from l2l.validation import InvalidValueError


@dataclass(frozen=True)
class CellEntry:
    """``config``: parameter field -> config key of the ``network``/``error_module`` node it is read from
    (fields not listed keep their defaults; the node's ``options`` dict may set any field).
    ``border_state``: the differentiable within-neuron fields of the cell's state that truncated BPTT carries
    across a window border, before z and y (e.g. ``("v",)`` for LIF); empty: the truncated rules (tbptt,
    tbptt_sg, eprop3) cannot use the cell."""

    cell: type[RecurrentCell]
    traces: str | Any
    verify_parameters: Any
    config: Mapping[str, str] = field(default_factory=dict)
    border_state: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.cell.model.name

    @property
    def parameters(self) -> type:
        """The cell's parameter record (a frozen dataclass that validates itself)."""
        return self.cell.model.parameters

    def trace_module(self) -> ModuleType | Any:
        """The eligibility-trace functions of this cell."""
        return importlib.import_module(self.traces) if isinstance(self.traces, str) else self.traces

    def parameters_from(self, node: Mapping[str, Any], options: Mapping[str, Any] | None = None,
                        prefix: str = "") -> Any:
        """The parameter record from a config ``node`` (and ``options``: more fields by their own name).

        A ValueError of the record names the config key (``prefix`` + key), not the field."""
        values = {field_name: node[key] for field_name, key in self.config.items()}
        values.update(options or {})
        try:
            return self.parameters(**values)
        except TypeError as error:  # an option the record does not have
            raise ValueError(f"{prefix}options={dict(options or {})!r} is not allowed for a {self.name} cell "
                             f"({error})") from None
        except InvalidValueError as error:
            key = f"options.{error.key}" if error.key in (options or {}) else self.config.get(error.key)
            raise (error.renamed(f"{prefix}{key}") if key else error) from None


CELLS: Registry[CellEntry] = Registry("network.cell")
"""Every neuron model by name."""


def register_cell(entry: CellEntry) -> CellEntry:
    """Make a neuron model known by its name (``entry.cell.model.name``); returns the entry."""
    return CELLS.register(entry)


def get_cell(name: str, key: str = "cell") -> CellEntry:
    """The entry of ``name``; InvalidValueError naming ``key`` and the registered cells otherwise."""
    return CELLS.entry(name, key)


def cell_names() -> tuple[str, ...]:
    """Every registered cell, in registration order."""
    return CELLS.names()


def cells_with_border_state() -> tuple[str, ...]:
    """The registered cells with a ``border_state``: those the truncated rules (tbptt, tbptt_sg, eprop3) take."""
    return tuple(name for name, entry in CELLS.items() if entry.border_state)
