"""The part builder under its earlier name: :func:`prunecli.registry.build_part` (``build_part(spec, registry, key,
default)`` with a :class:`~prunecli.registry.Registry` or a plain name -> class mapping)."""

from prunecli.registry import build_part

__all__ = ["build_part"]
