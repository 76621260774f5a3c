"""The optional members of the parts, with their documented defaults, read in this one place.

Each axis protocol (:class:`~prunecli.targets.Target`, :class:`~prunecli.criteria.Criterion`,
:class:`~prunecli.allocation.Allocation`, :class:`~prunecli.objectives.Objective`,
:class:`~prunecli.regularizers.Regularizer`) lists the members every part has. The members below are optional:
a built-in part defines those it needs, and a user's own part (``{_target_: my.module.MyPart}``, subclassing
nothing) may leave any of them out, in which case the default applies:

==========================  ==========  ===========================  =====================================
member                      default     parts                        what it is for
==========================  ==========  ===========================  =====================================
``needs_example_inputs``    ``False``   targets, objectives          get ``example_inputs=`` (one batch)
``unit_name``               ``None``    targets                      units' name in a summary (``channels``)
``needs_activations``       ``False``   criteria                     score from forward activations
``batches``                 ``1``       criteria                     passes to observe before an update
``per_unit``                ``False``   criteria                     scores whole units (off to interpolate)
``bind(...)``               no-op       criteria, regularizers,      ``bind(sites)``; allocations:
                                        allocations                  ``bind(model=, evaluator=)``
``report()``                ``None``    allocations                  a search's evaluations and choice
``share_allocation(a)``     no-op       regularizers                 project with the pruner's allocation
``state_dict()``            ``{}``      regularizers                 state saved with the pruner's
``load_state_dict(state)``  no-op       regularizers                 restore it
==========================  ==========  ===========================  =====================================

:func:`optional` is the only reader, so the builder and the pruner use every member unconditionally.
This module also keeps :func:`prunecli.registry.build_part` under its earlier name.
"""

from __future__ import annotations

from typing import Any

from prunecli.registry import build_part

__all__ = ["DEFAULTS", "optional", "build_part"]


def _nothing(*args: Any, **kwargs: Any) -> None:
    """The default of an optional method: does nothing."""


def _no_report() -> None:
    """The default ``report()``: no search, nothing to report."""


def _no_state() -> dict[str, Any]:
    """The default ``state_dict()``: no state."""
    return {}


DEFAULTS: dict[str, Any] = {
    "needs_example_inputs": False, "unit_name": None, "needs_activations": False, "batches": 1, "per_unit": False,
    "bind": _nothing, "report": _no_report, "share_allocation": _nothing, "state_dict": _no_state,
    "load_state_dict": _nothing, "calibration_only": False,
}


def optional(part: Any, member: str) -> Any:
    """``part``'s optional ``member`` (a value or a bound method), or its default from :data:`DEFAULTS`; a
    missing part (``None``: no regularizer) has every default."""
    return getattr(part, member, DEFAULTS[member])
