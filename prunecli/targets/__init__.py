"""Target axis: what is pruned together.

A target turns the selected layers of a model into :class:`~prunecli.sites.Site` objects (parameters plus the
map from their elements to prunable units). Strings are parsed once, here:

=================  ===============================================================
``unstructured``   each weight element on its own
``N:M``            keep N of every M consecutive weights along the input dim (``2:4``)
``RxC``            blocks of R output rows by C input columns (``4x1``, ``1x4``, ``8x8``)
``channel``        coupled channel groups (producers, norms incl. LayerNorm/GroupNorm, bare parameters,
                   attention in/out projections, consumers, residual adds, concats), found by Torch-Pruning
                   on example inputs, plus the heads of each attention module (``nn.MultiheadAttention``
                   and Hugging Face BERT/DistilBERT/GPT-2/Llama-style attention: q/k/v dims are never
                   pruned apart from their head) and the intermediate width of each feed-forward block;
                   ``{name: channel, round_to: 8}``. Without example inputs: whole output channels with
                   bias and a directly following norm layer
``head``           whole attention heads (``nn.MultiheadAttention`` and the attention modules
                   :func:`prunecli.structure.find_attention` finds, or q/k/v/o quartets)
=================  ===============================================================

The named targets are registered in :data:`TARGETS` (a :class:`~prunecli.registry.Registry`); ``N:M`` and ``RxC``
are parsed by :func:`parse_pattern`. A user's own target plugs in as a mapping with
``_target_: my.module.MyTarget``; it needs ``module_types`` (the layer types it applies to by default) and
``sites(model, modules) -> (sites, skipped)``.
"""

from __future__ import annotations

import re
from typing import Any, Mapping, Protocol, runtime_checkable

from torch import nn

from prunecli.errors import ConfigError
from prunecli.registry import Registry, build_target
from prunecli.sites import Site
from prunecli.targets._coupled import CoupledChannel
from prunecli.targets._structured import Head, LayerChannel
from prunecli.targets._weights import NM, Block, Unstructured, element_types, input_dim

__all__ = ["TARGETS", "Target", "Unstructured", "NM", "Block", "LayerChannel", "CoupledChannel", "Head", "parse_target",
           "element_types", "input_dim"]

NAMES = ("unstructured", "N:M (e.g. 2:4)", "RxC blocks (e.g. 4x1)", "channel", "head")


@runtime_checkable
class Target(Protocol):
    """What is pruned together.

    Optional members, with their defaults when left out (:data:`prunecli._parts.DEFAULTS`):
    ``needs_example_inputs`` (False; True: ``sites`` also gets ``example_inputs=``) and ``unit_name`` (None:
    weights; else what the units are called in a summary, e.g. ``channels``).
    """

    module_types: tuple[type[nn.Module], ...]

    def sites(self, model: nn.Module, modules: dict[str, nn.Module]) -> tuple[list[Site], dict[str, str]]:
        """Sites for the selected modules, and ``{module FQN: reason}`` for those skipped."""
        ...


TARGETS = Registry("target")
for _names, _cls in ((("unstructured", "element", "elementwise"), Unstructured),
                     (("channel", "filter"), CoupledChannel), (("head",), Head)):
    for _name in _names:
        TARGETS.add(_name, _cls)


def parse_target(spec: Any, key: str = "pruner.target") -> Target:
    """Turn a config value into a target: a name, a mapping ``{name: ..., **options}``, or ``{_target_: ...}``."""
    if isinstance(spec, Target):
        return spec
    options = dict(spec) if isinstance(spec, Mapping) else {}
    if "_target_" in options:
        return build_target(options, key)
    name = options.pop("name", None) if isinstance(spec, Mapping) else spec
    cls = TARGETS.get(name)
    allowed = [f for f in getattr(cls, "__dataclass_fields__", {}) if not f.startswith("_")]
    for option, value in options.items():
        if option not in allowed:
            raise ConfigError(f"{key}.{option}", value, ", ".join(allowed) or "no options for this target")
    if cls is None:
        return parse_pattern(name, key)
    if "quartets" in options:
        options["quartets"] = tuple(dict(q) for q in options["quartets"] or ())
    return cls(**options)


def parse_pattern(spec: Any, key: str = "pruner.target") -> Target:
    """``N:M`` (keep N of every M, ``2:4``) or ``RxC`` blocks (``4x1``); anything else is a :class:`ConfigError`
    listing every target spelling."""
    text = str(spec).strip().lower()
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
