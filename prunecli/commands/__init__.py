"""Command functions that Hydra runs, one per subcommand: :func:`prune`, :func:`evaluate`, :func:`export`.

Each takes the composed config, writes its artifacts into Hydra's runtime output dir and returns a dict of
results (so sweepers can optimise it). They are module-level functions because launchers (joblib, submitit)
pickle them. User errors end the job with one line on stderr and exit code 2.
"""

from __future__ import annotations

import importlib
from typing import Any

_TASKS = {name: f"prunecli.commands.{name}" for name in ("prune", "evaluate", "export")}

__all__ = sorted(_TASKS)


def __getattr__(name: str) -> Any:
    if name in _TASKS:
        return getattr(importlib.import_module(_TASKS[name]), name)
    raise AttributeError(f"module 'prunecli.commands' has no attribute {name!r}")
