"""prunecli: prune PyTorch models from the command line or from your own training loop.

The pruning core composes five axes, each in its own subpackage:

- :mod:`prunecli.targets`    what is pruned together (elements, N:M, blocks, channels, heads)
- :mod:`prunecli.criteria`   which units are least important (magnitude, norms, Taylor, movement, ...)
- :mod:`prunecli.allocation` how the sparsity budget is spread over layers (local, global with caps)
- :mod:`prunecli.schedules`  when and how fast sparsity grows (pure functions: oneshot, linear, agp, exp, cos)
- :mod:`prunecli.objectives` what the user wants (a sparsity, a parameter budget, ...)

:func:`build_pruner` turns a plain mapping (the keys of a ``conf/pruner/*.yaml``) into a :class:`Pruner` that
reacts to the hooks named in :mod:`prunecli.hooks`; :func:`pruner_preset` gives that mapping for a preset by
name, as the CLI composes it. :mod:`prunecli.integrations` drives a pruner from a Hugging Face or Lightning
``Trainer``.

Imports are lazy so that ``prunecli --help`` does not pay for importing torch.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "Pruner": "prunecli.pruner",
    "build_pruner": "prunecli.config",
    "pruner_preset": "prunecli.presets",
    "SparsityReport": "prunecli.report",
    "sparsity_report": "prunecli.report",
    "ConfigError": "prunecli.errors",
    "CheckpointError": "prunecli.errors",
    "HOOKS": "prunecli.hooks",
}

__all__ = sorted(_EXPORTS) + ["__version__"]

# torchvision (imported by prunecli, and by transformers' model classes) must import on a CPU torch beside the
# registry's CUDA build of torchvision: see prunecli/_torchvision.py. Installs a finder only; imports nothing.
from prunecli._torchvision import install_import_hook as _install_import_hook  # noqa: E402

_install_import_hook()


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'prunecli' has no attribute {name!r}")
