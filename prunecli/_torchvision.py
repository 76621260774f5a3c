"""The one place prunecli imports torchvision.

The registry's ``torchvision==0.28.0`` (the match for ``torch==2.13.0``) is a CUDA build. On a CPU-only torch
its C extension cannot load, and ``import torchvision`` then fails inside ``torchvision._meta_registrations``
with ``operator torchvision::nms does not exist``: that module registers fake (meta) kernels for ``nms`` and
``qnms`` unconditionally, while every other op's registration is skipped when the extension is missing.
Defining just those two operator *schemas* (no kernels) lets the import finish; models, transforms and
datasets are pure Python and work, while detection ops (``torchvision.ops.nms`` and friends) stay unavailable.
The shim is installed only when a plain import fails for exactly that reason, so a working torchvision
(a CPU build, or this one on a machine with CUDA) is imported untouched.

Other libraries import torchvision too (``transformers`` does when a model class is first used), so
``import prunecli`` calls :func:`install_import_hook`: a finder at the front of ``sys.meta_path`` that, the
first time anything imports torchvision, tries to load torchvision's C extension and, only when that fails,
defines the two schemas; then the normal import runs. ``import prunecli`` itself stays cheap (no torch).
"""

from __future__ import annotations

import importlib.machinery
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

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


class _PrepareTorchvision:
    """A ``sys.meta_path`` finder that prepares the first import of torchvision and then steps aside."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if name == "torchvision":
            uninstall_import_hook()
            _prepare()
        return None  # the regular finders import it


_HOOK = _PrepareTorchvision()


def install_import_hook() -> None:
    """Make any later ``import torchvision`` (prunecli's or another library's) survive a C extension that
    cannot load. Nothing happens when torchvision is already imported; a failed earlier attempt's half
    imported submodules are dropped so the next import starts clean."""
    if "torchvision" in sys.modules:
        return
    _forget_partial_import()
    if _HOOK not in sys.meta_path:
        sys.meta_path.insert(0, _HOOK)


def uninstall_import_hook() -> None:
    """Remove the finder of :func:`install_import_hook` (it removes itself after its first use)."""
    while _HOOK in sys.meta_path:
        sys.meta_path.remove(_HOOK)


def _prepare() -> None:
    """Define the missing schemas when torchvision's C extension is present but cannot be loaded."""
    spec = importlib.machinery.PathFinder.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return  # not installed: the import fails with its own ImportError
    libs = [p for d in spec.submodule_search_locations for p in Path(d).glob("_C.*")
            if p.suffix in (".so", ".pyd", ".dylib")]
    if not libs:
        return
    import torch

    try:
        torch.ops.load_library(str(libs[0]))
    except (ImportError, OSError):
        _define_missing_schemas()
