"""FLOPs of each site's layer, counted by :func:`prunecli.metrics.module_flops` (``FlopCounterMode``) during one
call of the evaluator (which runs the model).

A site's FLOPs are those of its module (the layer that owns its primary parameter; the attention module for
heads), summed over every sample the evaluator runs; AMC uses only their ratios. Pruning a fraction ``s`` of a
site's units is taken to remove ``s`` of its FLOPs; what it also saves in the next layer's inputs (second order) is
not counted. A site whose module ran no counted op during that call (an evaluator that does not run the model, or
runs it through a wrapper) counts ``2 x`` its scored weights: the FLOPs of one output position.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn

from prunecli.metrics import module_flops
from prunecli.sites import Site


def site_flops(model: nn.Module, sites: dict[str, Site], run: Callable[[], float]) -> tuple[Tensor, float]:
    """``(FLOPs of each site's module during run(), run())``: ``run`` is called once, under the FLOP counter."""
    _, per_module, value = module_flops(model, run)
    flops = []
    for site in sites.values():
        counted = per_module.get(site.module, 0) if site.module is not None else 0
        flops.append(counted or 2 * sum(m.param.numel() for m in site.members if m.scored))
    return torch.tensor(flops, dtype=torch.float64), value
