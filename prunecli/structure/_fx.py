"""Which norm layer directly follows each layer, found with torch.fx: the graph fact of channel pruning
*without* example inputs.

Everything else in :mod:`prunecli.structure` reads Torch-Pruning's ``DependencyGraph``, which is built by
running the model forward on example inputs (autograd records the graph) and so cannot exist without them.
``pruner.target=channel`` without example inputs (``build_pruner(..., example_inputs=None)``) still masks a
layer's following norm: ``torch.fx.symbolic_trace`` traces the model on proxies, needing no input, for that
one fact. This is the only torch.fx tracer in prunecli.
"""

from __future__ import annotations

import logging

from torch import fx, nn

log = logging.getLogger(__name__)

NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm)


def following_norms(model: nn.Module) -> dict[str, str]:
    """Map each layer whose output feeds only a norm layer to that norm layer's FQN.

    Returns an empty mapping (and logs a warning) when the model cannot be traced symbolically; masks then
    cover the layer's own weight and bias only.
    """
    try:
        graph = fx.symbolic_trace(model).graph
    except Exception as exc:  # fx raises many types for untraceable control flow
        log.warning("could not trace %s with torch.fx (%s): channel masks will not cover following norm layers",
                    type(model).__name__, exc)
        return {}
    modules = dict(model.named_modules())
    pairs = {}
    for node in graph.nodes:
        if node.op != "call_module" or len(node.users) != 1:
            continue
        (user,) = node.users
        if user.op == "call_module" and isinstance(modules.get(user.target), NORM_TYPES):
            pairs[node.target] = user.target
    return pairs
