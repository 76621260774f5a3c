"""Exports of a checkpoint, one module per format.

Each format module defines ``SUFFIX`` (the default file suffix), ``check_options(options) -> dict`` (the
``<format>.*`` keys checked, defaults filled) and ``export(model, checkpoint, output, options) -> dict`` that
writes ``output`` (all or nothing) and returns what it measured.
A new format is one more module registered in :data:`FORMATS` (a :class:`~prunecli.registry.Registry` of modules).
"""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any, Mapping

from prunecli.errors import ConfigError
from prunecli.export import compact, dense, onnx, semi_structured, sparse
from prunecli.registry import Registry

FORMATS = Registry("export format")
for _module in (dense, onnx, compact, semi_structured, sparse):
    FORMATS.add(_module.__name__.rsplit(".", 1)[-1], _module)


def format_module(name: str) -> ModuleType:
    """The module that writes format ``name``; an unknown name is a :class:`ConfigError`."""
    if name not in FORMATS:
        raise ConfigError("format", name, FORMATS.names())
    return FORMATS[name]


def export(checkpoint: Any, fmt: str, output: Path, options: Mapping[str, Any] | None = None, *,
           model: Any = None, trust_checkpoint_code: bool = False) -> dict[str, Any]:
    """Rebuild the checkpoint's model and write it as ``fmt`` to ``output``; returns the format's report.

    ``model`` and ``trust_checkpoint_code``: as in :func:`prunecli.checkpoint.load_model`.
    """
    from prunecli.checkpoint import load_model

    module = format_module(fmt)
    model = load_model(checkpoint, model=model, trust_checkpoint_code=trust_checkpoint_code).eval()
    return {"format": fmt, "output": str(output), **module.export(model, checkpoint, Path(output), dict(options or {}))}


__all__ = ["FORMATS", "export", "format_module"]
