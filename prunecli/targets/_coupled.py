"""The ``channel`` target: coupled channel groups and attention heads as sites.

The groups come from :func:`prunecli.structure.channel_groups` (Torch-Pruning's dependency graph on example
inputs: every slice that must lose a channel together) and the heads from :func:`prunecli.structure.head_site`;
this module picks those rooted at the layers the layer rules select and reports why the rest stay dense.
Masking a site's channels computes exactly what removing them computes (:func:`prunecli.structure.compact`).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from torch import nn

from prunecli.errors import ConfigError
from prunecli.sites import Site
from prunecli.structure import (
    OWNERS,
    ChannelGroup,
    channel_groups,
    conv1d_types,
    head_site,
    index_member,
    producers,
    site_keys,
    transformer_sites,
)
from prunecli.targets._structured import selected_by

log = logging.getLogger(__name__)


def _traced(model: nn.Module, modules: dict[str, nn.Module], example_inputs: Any, round_to: int,
            blocks: list[Site]) -> tuple[list[ChannelGroup], str]:
    """The coupled groups of the selected modules but those rooted at a producer of ``blocks`` (heads,
    feed-forward widths), or, where the model cannot be traced and has ``blocks`` (found without the graph),
    none and the reason."""
    try:
        return channel_groups(model, example_inputs, modules, round_to, skip=producers(blocks)), ""
    except ConfigError as err:
        if not blocks:
            raise
        return [], f"its residual channels are kept: {err.reason or err}"


def coupled_sites(model: nn.Module, modules: dict[str, nn.Module], example_inputs: Any,
                  round_to: int = 1, heads: bool = True) -> tuple[list[Site], dict[str, str]]:
    """Sites of the coupled groups rooted at the selected ``modules``, the heads of the selected attention
    modules (with ``heads``) and the intermediate width of selected feed-forward blocks, and ``{module FQN:
    reason}`` for the rest. A traced group that holds a slice of an attention's heads or of a feed-forward
    block is not a site of its own: its channels are pruned as whole heads (q/k/v dims never split a head)."""
    attention = [n for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]
    # An attention module's out_proj is pruned through the attention module (heads, residual channels).
    modules = {n: m for n, m in modules.items() if not any(n.startswith(f"{a}.") for a in attention)}
    blocks, refused = transformer_sites(model, index_member, round_to)
    head_keys = {key: site.name for site in blocks if site.unit_dim is None for key in site_keys(site)}
    claimed = set().union(*(site_keys(site) for site in blocks))
    sites = [s for s in blocks if selected_by(s, modules) and (heads or s.unit_dim is not None)]
    skipped = {name: reason for name, reason in refused.items()
               if any(m.startswith(f"{name}.") for m in modules)}
    groups, untraced = _traced(model, modules, example_inputs, round_to, blocks)
    for group in groups:
        keys = site_keys(group.site) if group.site is not None else set()
        if group.site is not None and not keys & claimed:
            sites.append(group.site)
            continue
        owner = next((head_keys[k] for k in sorted(keys) if k in head_keys), None)
        reason = group.reason or (f"its channels are head dims of {owner}, pruned as whole heads" if owner else "")
        if reason:
            log.info("%s: channel group skipped: %s", group.root, reason)
        for producer in group.producers or ((group.root,) if reason else ()):
            if producer in modules:  # every selected layer whose output channels are in the group
                skipped[producer] = reason
    produced_by = {m.name.rpartition(".")[0]: s for s in blocks for m in s.members if not m.consumer}
    for name, module in modules.items():
        if isinstance(module, nn.MultiheadAttention) and not heads:
            skipped.setdefault(name, "its heads are kept whole (pruner.target.heads: false)")
        elif isinstance(module, nn.MultiheadAttention):
            site = head_site(name, module)
            if isinstance(site, Site):
                sites.append(site)
                skipped.pop(name, None)  # its heads are pruned even where the residual channels through it stay dense
            else:
                skipped[name] = site
        elif name in produced_by and produced_by[name].unit_dim is None and not heads:
            skipped[name] = "its heads are kept whole (pruner.target.heads: false)"
        elif name in produced_by:
            skipped.pop(name, None)  # it produces a head or feed-forward site's units
        elif untraced and name not in skipped:
            skipped[name] = untraced  # e.g. an attention's output projection: its output channels stay
        elif name not in skipped and not any(s.member(f"{name}.weight") for s in sites):
            skipped[name] = "not reached by the traced forward pass"
    return sites, skipped


def _cause(reason: str) -> str:
    """A group's skip reason with its layer names left out where an op is named, so causes can be counted."""
    op = re.search(r"op \S*?\((\w+)\)", reason)
    return f"op {op.group(1)} mixes channels" if op else reason


def refuse_unprunable(model: nn.Module, skipped: dict[str, str]) -> None:
    """Raise when no site was found because of the model's ops (not because the layer rules leave a sharing
    layer dense or select nothing traced, which is ``pruner.layers``' to say), naming the commonest causes."""
    causes = Counter(_cause(r) for r in skipped.values() if "layer rules leave" not in r and "not reached" not in r)
    if not causes:
        return
    top = "; ".join(f"{cause} ({n} layer{'s' * (n > 1)})" for cause, n in causes.most_common(3))
    more = f"; and {len(causes) - 3} other causes" if len(causes) > 3 else ""
    raise ConfigError("pruner.target", "channel", "a model with a coupled channel group masks can make exact",
                      reason=f"every coupled group of {type(model).__name__} is unprunable: {top}{more}")


@dataclass(frozen=True)
class CoupledChannel:
    """Whole channels of coupled groups (``pruner.target=channel``), found on the model's example inputs.

    A channel's mask covers every coupled slice (see :mod:`prunecli.structure`), so the masked model computes
    what the compacted model computes (``prunecli export format=compact``). Selected ``nn.MultiheadAttention``
    modules and Hugging Face attention modules (:func:`prunecli.structure.find_attention`, selected through
    their q/k/v projections) add one head site each, scored and allocated like the channel groups
    (``heads: false`` keeps heads whole, e.g. for criteria that read output channels); their q/k/v dims are
    never free channels. Feed-forward blocks (:func:`prunecli.structure.find_ffn`) add their intermediate width.
    ``round_to`` keeps each group's channel count a multiple of e.g. 8. Without example inputs
    (``build_pruner(..., example_inputs=None)``) it falls back to :class:`~prunecli.targets.LayerChannel`
    (layer + following norm, no coupling) with a warning.
    """

    round_to: int = 1
    heads: bool = True
    needs_example_inputs = True
    unit_name = "channels"  # what a goal counts (the summary's "channels 0.50 removed")

    @property
    def module_types(self) -> tuple[type[nn.Module], ...]:
        """Conv/Linear/attention layers, and transformers' Conv1D (GPT-2) once transformers is loaded."""
        return (*OWNERS, *conv1d_types())

    def __post_init__(self) -> None:
        if not isinstance(self.round_to, int) or isinstance(self.round_to, bool) or self.round_to < 1:
            raise ConfigError("pruner.target.round_to", self.round_to, "a positive integer, e.g. 8")
        if not isinstance(self.heads, bool):
            raise ConfigError("pruner.target.heads", self.heads, "true or false")

    def sites(self, model: nn.Module, modules: dict[str, nn.Module],
              example_inputs: Any = None) -> tuple[list[Site], dict[str, str]]:
        if example_inputs is None:
            from prunecli.targets._structured import LayerChannel

            log.warning("pruner.target=channel without example inputs: channels are masked per layer (with the "
                        "following norm), not across coupled layers; compact export removes nothing")
            return LayerChannel().sites(model, modules)
        return coupled_sites(model, modules, example_inputs, self.round_to, self.heads)

    def check_sites(self, model: nn.Module, sites: list[Site], skipped: dict[str, str]) -> None:
        """Without any site, refuse at ``pruner.target`` when the model's ops made every group unprunable."""
        if not sites:
            refuse_unprunable(model, skipped)

    def __str__(self) -> str:
        options = [f"round_to={self.round_to}"] * (self.round_to != 1) + ["heads=false"] * (not self.heads)
        return f"channel({', '.join(options)})" if options else "channel"
