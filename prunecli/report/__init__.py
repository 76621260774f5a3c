"""What a pruning did, in numbers and pictures.

- :mod:`prunecli.report.sparsity`  the sparsity of a model under its masks (:class:`SparsityReport`), as the
  pruner, checkpoints and ``prunecli evaluate`` record it;
- :mod:`prunecli.report.read`      run dirs and sweeps read back (``summary.json``, ``metrics.jsonl``,
  ``evaluate.json``, failed jobs' ``error.txt``), checked;
- :mod:`prunecli.report.plots`     the figures (matplotlib, Agg backend; an optional extra);
- :mod:`prunecli.report.html`      ``report.html`` (self-contained) and ``report.md``;
- :mod:`prunecli.report.build`     ``prunecli report``: the three above, in order.

Names are imported on first use, so reading a sweep does not import torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prunecli.report.sparsity import PrunerReport, SparsityReport, sparsity_report

_EXPORTS = {
    "SparsityReport": "prunecli.report.sparsity",
    "PrunerReport": "prunecli.report.sparsity",
    "sparsity_report": "prunecli.report.sparsity",
}

__all__ = ["PrunerReport", "SparsityReport", "sparsity_report"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'prunecli.report' has no attribute {name!r}")
