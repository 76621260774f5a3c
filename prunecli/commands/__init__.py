"""Command functions that Hydra runs, one per subcommand: :func:`prune`, :func:`evaluate`, :func:`export`.

Each takes the composed config, writes its artifacts into Hydra's runtime output dir and returns a dict of
results (so sweepers can optimise it). They are module-level functions because launchers (joblib, submitit)
pickle them. User errors end the job with one line on stderr and exit code 2.
"""

from __future__ import annotations

import importlib
from typing import Any

_TASKS = {name: f"prunecli.commands.{name}" for name in ("prune", "evaluate", "export")}
# What the command line needs before Hydra runs: the resumed run's overrides, the check of choices that need an
# extra (a launcher, sweeper or logger), and the user-error exit code.
_CLI = {"resume_command": "prunecli.commands._resume", "check_choices": "prunecli.commands._extras",
        "USER_ERROR_EXIT": "prunecli.commands._common"}

__all__ = sorted([*_TASKS, *_CLI])


def __getattr__(name: str) -> Any:
    if name in _TASKS or name in _CLI:
        return getattr(importlib.import_module(_TASKS.get(name) or _CLI[name]), name)
    raise AttributeError(f"module 'prunecli.commands' has no attribute {name!r}")
