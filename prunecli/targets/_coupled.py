"""The ``channel`` target: coupled channel groups and attention heads as sites.

The groups come from :func:`prunecli.structure.channel_groups` (Torch-Pruning's dependency graph on example
inputs: every slice that must lose a channel together) and the heads from :func:`prunecli.structure.head_site`;
this module picks those rooted at the layers the layer rules select and reports why the rest stay dense.
Masking a site's channels computes exactly what removing them computes (:func:`prunecli.structure.compact`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from torch import nn

from prunecli.errors import ConfigError
from prunecli.sites import Site
from prunecli.structure import OWNERS, channel_groups, head_site

log = logging.getLogger(__name__)


def coupled_sites(model: nn.Module, modules: dict[str, nn.Module], example_inputs: Any,
                  round_to: int = 1, heads: bool = True) -> tuple[list[Site], dict[str, str]]:
    """Sites of the coupled groups rooted at the selected ``modules`` and (with ``heads``) the heads of the
    selected attention modules, and ``{module FQN: reason}`` for the rest."""
    attention = [n for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]
    # An attention module's out_proj is pruned through the attention module (heads, residual channels).
    modules = {n: m for n, m in modules.items() if not any(n.startswith(f"{a}.") for a in attention)}
    sites, skipped = [], {}
    for group in channel_groups(model, example_inputs, modules, round_to):
        if group.site is not None:
            sites.append(group.site)
            continue
        log.info("%s: channel group skipped: %s", group.root, group.reason)
        for producer in group.producers:  # every selected layer whose output channels are in the group
            if producer in modules:
                skipped[producer] = group.reason
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
        elif name not in skipped and not any(s.member(f"{name}.weight") for s in sites):
            skipped[name] = "not reached by the traced forward pass"
    return sites, skipped


@dataclass(frozen=True)
class CoupledChannel:
    """Whole channels of coupled groups (``pruner.target=channel``), found on the model's example inputs.

    A channel's mask covers every coupled slice (see :mod:`prunecli.structure`), so the masked model computes
    what the compacted model computes (``prunecli export format=compact``). Selected ``nn.MultiheadAttention``
    modules add one head site each, scored and allocated like the channel groups (``heads: false`` keeps heads
    whole, e.g. for criteria that read output channels). ``round_to`` keeps each group's channel count a multiple
    of e.g. 8. Without example inputs (``build_pruner(..., example_inputs=None)``) it falls
    back to :class:`~prunecli.targets.LayerChannel` (layer + following norm, no coupling) with a warning.
    """

    round_to: int = 1
    heads: bool = True
    module_types = OWNERS
    needs_example_inputs = True
    unit_name = "channels"  # what a goal counts (the summary's "channels 0.50 removed")

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

    def __str__(self) -> str:
        options = [f"round_to={self.round_to}"] * (self.round_to != 1) + ["heads=false"] * (not self.heads)
        return f"channel({', '.join(options)})" if options else "channel"
