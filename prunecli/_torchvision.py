"""The one place prunecli imports torchvision.

The registry's ``torchvision==0.28.0`` (the match for ``torch==2.13.0``) is a CUDA build. On a CPU-only torch
its C extension cannot load, and ``import torchvision`` then fails inside ``torchvision._meta_registrations``
with ``operator torchvision::nms does not exist``: that module registers fake (meta) kernels for ``nms`` and
``qnms`` unconditionally, while every other op's registration is skipped when the extension is missing.
Defining just those two operator *schemas* (no kernels) lets the import finish; models, transforms and
datasets are pure Python and work, while detection ops (``torchvision.ops.nms`` and friends) stay unavailable.
The shim is installed only when a plain import fails for exactly that reason, so a working torchvision
(a CPU build, or this one on a machine with CUDA) is imported untouched.
"""

from __future__ import annotations

import sys
from types import ModuleType

# The schemas live as long as this Library object: keep it at module level so it is never garbage collected.
_SCHEMA_LIB = None

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)


def import_torchvision() -> ModuleType:
    """Import and return :mod:`torchvision`, working around a C extension that cannot load.

    Returns:
        The ``torchvision`` module.

    Raises:
        ImportError: torchvision is not installed.
        RuntimeError: torchvision failed to import for a reason other than the missing ``nms`` schemas.
    """
    try:
        import torchvision
    except RuntimeError as err:
        if "torchvision::nms" not in str(err) and "torchvision::qnms" not in str(err):
            raise
        _forget_partial_import()
        _define_missing_schemas()
        import torchvision
    return torchvision


def _forget_partial_import() -> None:
    # The failed import left torchvision.extension and friends in sys.modules; a retry would reuse those
    # half-initialised modules instead of running torchvision/__init__.py again.
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]


def _define_missing_schemas() -> None:
    global _SCHEMA_LIB
    if _SCHEMA_LIB is not None:
        return
    import torch

    lib = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        lib.define(schema)
    _SCHEMA_LIB = lib
