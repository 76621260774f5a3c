"""Multiply-accumulates of each site's own weights per sample, from shapes and one observed forward pass.

A linear layer costs ``weight.numel()`` MACs per token, a convolution ``weight.numel()`` per output position.
The output positions are recorded by forward hooks during one call of the evaluator (which runs the model);
a site whose module produced no output in that call (an evaluator that does not run the model) counts one
position. Pruning a layer's output channels also saves MACs of the next layer's inputs; that second-order
saving is not counted here.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import Tensor, nn

from prunecli.sites import Site


def positions(module: nn.Module, output: Tensor) -> int:
    """Output positions per sample: spatial size for convolutions, tokens for linear layers."""
    if not isinstance(output, Tensor) or output.dim() < 2:
        return 1
    if isinstance(module, nn.modules.conv._ConvNd):
        return math.prod(output.shape[2:])
    return math.prod(output.shape[1:-1])


def site_flops(model: nn.Module, sites: dict[str, Site], run: Callable[[], float]) -> tuple[Tensor, float]:
    """``(MACs per sample of each site, run())``: ``run`` is called once with hooks recording output sizes."""
    seen: dict[str, int] = {}
    handles = []
    for name, site in sites.items():
        if site.module is None:
            continue
        module = model.get_submodule(site.module)

        def hook(mod: nn.Module, args: object, out: object, name: str = name) -> None:
            seen.setdefault(name, positions(mod, out[0] if isinstance(out, tuple) else out))

        handles.append(module.register_forward_hook(hook))
    try:
        value = run()
    finally:
        for handle in handles:
            handle.remove()
    macs = [sum(m.param.numel() for m in s.members if m.scored) * seen.get(n, 1) for n, s in sites.items()]
    return torch.tensor(macs, dtype=torch.float64), value
