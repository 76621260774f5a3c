"""Target axis: what is pruned together.

A target turns the selected layers of a model into :class:`~prunecli.sites.Site` objects (parameters plus the
map from their elements to prunable units). Strings are parsed once, here:

=================  ===============================================================
``unstructured``   each weight element on its own
``N:M``            keep N of every M consecutive weights along the input dim (``2:4``)
``RxC``            blocks of R output rows by C input columns (``4x1``, ``1x4``, ``8x8``)
``channel``        coupled channel groups (producers, norms incl. LayerNorm/GroupNorm, bare parameters,
                   attention in/out projections, consumers, residual adds, concats), found by Torch-Pruning
                   on example inputs, plus the heads of each ``nn.MultiheadAttention``;
                   ``{name: channel, round_to: 8}``. Without example inputs: whole output channels with
                   bias and a directly following norm layer
``head``           whole attention heads (``nn.MultiheadAttention`` or q/k/v/o quartets)
=================  ===============================================================

A user's own target plugs in as a mapping with ``_target_: my.module.MyTarget``; it needs ``module_types``
(the layer types it applies to by default) and ``sites(model, modules) -> (sites, skipped)``.
"""

from __future__ import annotations

import re
from typing import Any, Protocol, runtime_checkable

from torch import nn

from prunecli.errors import ConfigError
from prunecli.sites import Site
from prunecli.targets._coupled import CoupledChannel
from prunecli.targets._structured import Head, LayerChannel
from prunecli.targets._weights import NM, Block, Unstructured

__all__ = ["Target", "Unstructured", "NM", "Block", "LayerChannel", "CoupledChannel", "Head", "parse_target"]

NAMES = ("unstructured", "N:M (e.g. 2:4)", "RxC blocks (e.g. 4x1)", "channel", "head")


@runtime_checkable
class Target(Protocol):
    """What is pruned together."""

    module_types: tuple[type[nn.Module], ...]

    def sites(self, model: nn.Module, modules: dict[str, nn.Module]) -> tuple[list[Site], dict[str, str]]:
        """Sites for the selected modules, and ``{module FQN: reason}`` for those skipped."""
        ...


def parse_target(spec: Any, key: str = "pruner.target") -> Target:
    """Turn a config value into a target: a name, a mapping ``{name: ..., **options}``, or ``{_target_: ...}``."""
    if isinstance(spec, Target):
        return spec
    if isinstance(spec, dict):
        spec = dict(spec)
        if "_target_" in spec:
            from hydra.utils import instantiate

            return instantiate(spec)
        name = spec.pop("name", None)
        if name == "head":
            quartets = tuple(dict(q) for q in spec.pop("quartets", ()) or ())
            heads = spec.pop("num_heads", None)
            if spec:
                raise ConfigError(f"{key}.{next(iter(spec))}", spec[next(iter(spec))], "num_heads, quartets")
            return Head(num_heads=heads, quartets=quartets)
        if name in ("channel", "filter"):
            options = {k: spec.pop(k) for k in ("round_to", "heads") if k in spec}
            if spec:
                raise ConfigError(f"{key}.{next(iter(spec))}", spec[next(iter(spec))], "round_to, heads")
            return CoupledChannel(**options)
        if spec:
            raise ConfigError(f"{key}.{next(iter(spec))}", spec[next(iter(spec))], "no options for this target")
        return parse_target(name, key)
    text = str(spec).strip().lower()
    if text in ("unstructured", "element", "elementwise"):
        return Unstructured()
    if text in ("channel", "filter"):
        return CoupledChannel()
    if text == "head":
        return Head()
    if match := re.fullmatch(r"(\d+)\s*:\s*(\d+)", text):
        n, m = int(match[1]), int(match[2])
        if not 0 < n < m:
            raise ConfigError(key, spec, "N:M with 0 < N < M, e.g. 2:4")
        return NM(n, m)
    if match := re.fullmatch(r"(\d+)\s*x\s*(\d+)", text):
        rows, cols = int(match[1]), int(match[2])
        if rows < 1 or cols < 1 or rows * cols < 2:
            raise ConfigError(key, spec, "RxC blocks with R, C >= 1 and R*C >= 2, e.g. 4x1")
        return Block(rows, cols)
    raise ConfigError(key, spec, NAMES)
