"""Compaction: physically remove every channel and head whose coupled slices are all masked, and replay it.

:func:`compact` removes what Torch-Pruning removes exactly (conv, linear, BatchNorm groups) with Torch-Pruning,
and the rest (groups through LayerNorm, GroupNorm, attention or bare parameters, and heads) by slicing
(:mod:`prunecli.structure._surgery`). Its *plan* (``history`` and ``cuts``) is what a compact export stores and
what :func:`replay` applies to a fresh dense model.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import Tensor, nn

from prunecli.errors import ConfigError
from prunecli.sites import Site
from prunecli.structure._blocks import producers, site_keys, transformer_sites
from prunecli.structure._graph import CONV, AnalysisBudget, dependency_graph, history, load_history, prune_out_channels
from prunecli.structure._groups import NORMS, head_site, index_member, traced_groups
from prunecli.structure._surgery import apply_cuts, site_cuts, sliced_sites

# Layers whose channel removal Torch-Pruning performs exactly; groups holding anything else are sliced.
TP_EXACT = (*CONV, nn.Linear, *NORMS)


def output_gap(reference: Tensor, other: Tensor) -> tuple[float, float]:
    """``(max |other - reference|, max |reference|)``: how far a compact model's outputs are from the masked
    model's, and the outputs' scale. Deep models with random weights reach logits of 1e7 where float32
    rounding alone differs by tens, so exactness is judged by the ratio, not the absolute difference."""
    diff = float((other.detach().double() - reference.detach().double()).abs().max()) if reference.numel() else 0.0
    scale = float(reference.detach().double().abs().max()) if reference.numel() else 0.0
    return diff, scale


def removable(site: Site, masks: dict[str, Tensor]) -> list[int]:
    """Units of ``site`` whose every member slice is masked (False) in ``masks``: removing them is exact."""
    kept = torch.zeros(site.num_units, dtype=torch.bool)
    for m in site.members:
        mask = masks.get(m.name)
        if mask is None:
            return []
        kept |= m.layout.reduce(mask.cpu().float()) > 0  # a unit with any kept element stays
    return [int(i) for i in (~kept).nonzero().reshape(-1)]


@torch.no_grad()
def compact(model: nn.Module, masks: dict[str, Tensor], example_inputs: Any) -> dict[str, list]:
    """Physically remove, in place, every channel and head whose coupled slices are all masked.

    ``masks`` maps parameter FQNs to boolean keep-masks (``pruner.masks``); ``example_inputs`` is one input
    batch to trace ``model`` on. Returns the plan :func:`replay` applies to a fresh dense model:
    ``{"history": Torch-Pruning's pruning history ([[root FQN, True, [indices]], ...]), "cuts": slices removed
    by slicing ([[parameter FQN, dim, [indices]], ...], dense index space)}``.

    Raises:
        ConfigError: (``format``) the compacted model would have removed slices its masks keep
            (:func:`check_widths`) or fails to run on ``example_inputs`` (:func:`check_runs`); ``model`` is
            then compacted all the same: call it on a copy.
    """
    dense_shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    blocks, _ = transformer_sites(model, index_member)
    removals = [(site, idxs) for site in blocks if (idxs := removable(site, masks))]
    claimed = set().union(*(site_keys(site) for site in blocks))
    try:
        graph = dependency_graph(model, example_inputs, key="format")
    except ConfigError:
        if not blocks:
            raise
        graph = None  # heads and feed-forward widths are cut without the graph (GPT-2's Conv1D defeats it)
    planned = []
    for root, group in traced_groups(graph, skip=producers(blocks)) if graph is not None else ():
        if group.site is not None and not site_keys(group.site) & claimed and (idxs := removable(group.site, masks)):
            planned.append((root, group.site, idxs))
    own = sliced_sites(model, [site for _, site, _ in planned], TP_EXACT)
    removals += [(site, idxs) for i, (_, site, idxs) in enumerate(planned) if i in own]
    for name, mha in model.named_modules():
        if isinstance(mha, nn.MultiheadAttention):
            site = head_site(name, mha)
            if isinstance(site, Site) and (idxs := removable(site, masks)):
                removals.append((site, idxs))
    for i, (root, _, idxs) in enumerate(planned):
        if i not in own:
            try:
                prune_out_channels(graph, root, idxs)
            except AnalysisBudget:
                pass  # over the time bound this time: its channels stay, masked to zero (still exact)
    cuts = site_cuts(removals)
    plan = {"history": history(graph) if graph is not None else [], "cuts": cuts}
    apply_cuts(model, cuts)
    check_widths(model, dense_shapes, masks)
    check_runs(model, example_inputs)
    return plan


def check_runs(model: nn.Module, example_inputs: Any) -> None:
    """The compacted ``model`` runs on ``example_inputs``.

    Raises:
        ConfigError: (``format``) it fails, e.g. where its forward reshapes a pruned tensor to a channel count
            read from another tensor (PVT's ``sr(x).reshape(B, C, -1)``), which the graph cannot see.
    """
    was_training = model.training
    model.eval()
    try:
        if isinstance(example_inputs, Mapping):
            model(**example_inputs)
        elif isinstance(example_inputs, (tuple, list)):
            model(*example_inputs)
        else:
            model(example_inputs)
    except Exception as err:  # any op of the model's own forward
        line = str(err).splitlines()[0] if str(err) else ""
        raise ConfigError("format", "compact", "a model whose compacted forward runs",
                          reason=f"the compacted {type(model).__name__} fails: {type(err).__name__}: {line} (its "
                                 "forward may reshape to a channel count it reads from another tensor)") from None
    finally:
        model.train(was_training)


def check_widths(model: nn.Module, dense_shapes: dict[str, tuple[int, ...]], masks: dict[str, Tensor]) -> None:
    """Every parameter of the compacted ``model`` keeps at least the slices its mask keeps along each dim (all
    of them without a mask), and no more than it had.

    Raises:
        ConfigError: (``format``) a parameter lost slices its mask keeps, e.g. where a layer concatenates a
            tensor with a transform of itself (ghost modules) and the graph couples the two halves.
    """
    params = dict(model.named_parameters())
    for fqn, shape in dense_shapes.items():
        param = params.get(fqn)
        if param is None or tuple(param.shape) == shape:
            continue
        mask = masks.get(fqn)
        for dim, size in enumerate(shape):
            width = param.shape[dim] if param.dim() == len(shape) else -1
            if width == size:
                continue
            kept = size if mask is None or tuple(mask.shape) != shape else \
                int(mask.movedim(dim, 0).reshape(size, -1).any(1).sum())
            if not kept <= width <= size:
                raise ConfigError("format", "compact", "a compaction that removes only what the masks remove",
                                  reason=f"{fqn} would keep {max(width, 0)} of {size} slices along dim {dim} where "
                                         f"its mask keeps {kept}; the coupled groups of "
                                         f"{type(model).__name__} are wrong there, so nothing is written")


def replay(model: nn.Module, plan: dict[str, list] | list[list], example_inputs: Any) -> nn.Module:
    """Apply a :func:`compact` plan (or a bare Torch-Pruning history, compact export spec v1) to a dense model
    of the same architecture, in place (deterministic); returns ``model``."""
    entries, cuts = (plan, []) if isinstance(plan, list) else (plan["history"], plan.get("cuts", []))
    if entries:
        load_history(dependency_graph(model, example_inputs, key="format"), entries)
    return apply_cuts(model, cuts)
