"""Physical removal by slicing parameters: the compaction Torch-Pruning's own pruners cannot do exactly.

Torch-Pruning shrinks a LayerNorm's or GroupNorm's normalised size (its statistics then count fewer channels
than the masked model's) and cuts a ``MultiheadAttention``'s inner width together with its embedding width
(every head loses dims). Groups through such layers, bare parameters and heads are removed here instead
(:func:`sliced_sites` picks them), as *cuts* (:func:`site_cuts`): ``[parameter FQN, dim, [indices]]`` in the
dense model's index space, one per parameter and dim.
:func:`apply_cuts` (the same code for ``compact`` and for loading an export):

1. replaces each ``nn.LayerNorm``, ``nn.GroupNorm`` and ``nn.MultiheadAttention`` that owns a cut parameter by
   its exact dense equivalent from :mod:`prunecli.structure._modules` (same parameter names, widths taken from
   the parameters' shapes, the norms keeping the dense channel count);
2. slices every cut parameter (and the per-channel buffers of norm layers);
3. updates the shape attributes of Linear, Conv and BatchNorm layers, and the widths a known model's
   ``forward`` reads from attributes (torchvision's ``VisionTransformer.hidden_dim``; transformers' ``Conv1D``
   sizes and GPT-2's ``split_size``, with the head counts of attention modules kept true:
   :func:`prunecli.structure._blocks.refit_blocks`).
"""

from __future__ import annotations

import sys
from typing import Iterable

import torch
from torch import nn

from prunecli.sites import Site
from prunecli.structure._blocks import refit_blocks
from prunecli.structure._modules import (
    Attention,
    CountedGroupNorm,
    CountedLayerNorm,
    CountedLayerNorm2d,
    CountedRMSNorm,
    is_layer_norm_2d,
    is_rms_norm,
)

CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
SWAPS = {nn.LayerNorm: CountedLayerNorm.from_dense, nn.GroupNorm: CountedGroupNorm.from_dense,
         nn.MultiheadAttention: Attention.from_dense}


def cut_list(removed: dict[tuple[str, int], Iterable[int]]) -> list[list]:
    """``{(FQN, dim): indices}`` -> the sorted, JSON-ready cuts ``[[FQN, dim, [indices]], ...]``."""
    return [[fqn, int(dim), sorted({int(i) for i in idxs})] for (fqn, dim), idxs in sorted(removed.items()) if idxs]


def sliced_sites(model: nn.Module, sites: list[Site], exact_types: tuple[type, ...]) -> set[int]:
    """Indices of ``sites`` to remove by slicing: those holding a parameter of a layer not of ``exact_types``
    (what Torch-Pruning removes exactly) or inside an attention module, and those sharing a parameter dim with
    one of them (so each sliced dim is cut once, in the dense index space)."""
    attention = [n for n, m in model.named_modules() if isinstance(m, nn.MultiheadAttention)]

    def exact(fqn: str) -> bool:
        owner = fqn.rpartition(".")[0]
        module = model.get_submodule(owner) if owner else None
        # Torch-Pruning cuts a grouped conv's input channels inside every group; whole groups are sliced here.
        grouped = isinstance(module, CONV) and module.groups > 1 and not (
            module.groups == module.in_channels == module.out_channels)
        return bool(owner) and isinstance(module, exact_types) and not grouped and not any(
            owner.startswith(f"{a}.") for a in attention)

    keys = [{(m.name, m.layout.dim) for m in s.members} for s in sites]
    own = {i for i, s in enumerate(sites) if not all(exact(m.name) for m in s.members)}
    while True:
        taken = set().union(*(keys[i] for i in own))
        grown = {i for i in range(len(sites)) if i not in own and keys[i] & taken}
        if not grown:
            return own
        own |= grown


def site_cuts(removals: list[tuple[Site, list[int]]]) -> list[list]:
    """Cuts removing units ``idxs`` of each ``(site, idxs)`` (index-layout members), merged per parameter and dim."""
    removed: dict[tuple[str, int], set[int]] = {}
    for site, idxs in removals:
        gone = set(idxs)
        for m in site.members:
            layout = m.layout
            removed.setdefault((m.name, layout.dim), set()).update(
                p for p, u in zip(layout.positions, layout.units) if u in gone)
    return cut_list(removed)


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, attr, module)


def _swap_owners(model: nn.Module, cuts: list[list]) -> None:
    """Replace the stock layers that own a cut parameter (or whose submodule does) by prunecli's."""
    for fqn, _, _ in cuts:
        parts = fqn.split(".")
        for i in range(len(parts) - 1, 0, -1):
            name = ".".join(parts[:i])
            module = model.get_submodule(name)
            if type(module) in SWAPS or is_rms_norm(module) or is_layer_norm_2d(module):
                swap = SWAPS.get(type(module)) or (CountedLayerNorm2d.from_dense if is_layer_norm_2d(module)
                                                   else CountedRMSNorm.from_dense)
                _set_module(model, name, swap(module))
                break


def _refit(module: nn.Module) -> None:
    """Shape attributes of a layer from its (sliced) parameters."""
    if isinstance(module, nn.Linear):
        module.out_features, module.in_features = module.weight.shape
    elif isinstance(module, CONV):
        depthwise = module.groups > 1 and module.groups == module.in_channels and module.weight.shape[1] == 1
        if depthwise:
            module.in_channels = module.groups = module.out_channels = module.weight.shape[0]
        else:  # a grouped conv loses whole groups: its rows per group stay
            per_group = module.out_channels // module.groups
            module.out_channels = module.weight.shape[0]
            module.groups = max(1, module.out_channels // per_group) if module.groups > 1 else 1
            module.in_channels = module.weight.shape[1] * module.groups
    elif isinstance(module, nn.Embedding):
        module.num_embeddings, module.embedding_dim = module.weight.shape
    elif isinstance(module, nn.modules.batchnorm._BatchNorm):
        module.num_features = module.weight.shape[0]


def _refit_model(model: nn.Module) -> None:
    """Widths that a model's ``forward`` reads from attributes rather than from its layers."""
    vit = sys.modules.get("torchvision.models.vision_transformer")  # imported if such a model exists
    if vit is not None:
        for module in model.modules():
            if isinstance(module, vit.VisionTransformer):  # reshapes the patch embedding with self.hidden_dim
                module.hidden_dim = module.class_token.shape[-1]
    refit_blocks(model)  # transformers' attention head counts (GPT-2's split_size) and Conv1D sizes


@torch.no_grad()
def apply_cuts(model: nn.Module, cuts: list[list]) -> nn.Module:
    """Remove, in place, the slices named by ``cuts`` (see the module docstring); returns ``model``."""
    _swap_owners(model, cuts)
    for fqn, dim, idxs in cuts:
        owner_name, _, attr = fqn.rpartition(".")
        owner = model.get_submodule(owner_name) if owner_name else model
        param = getattr(owner, attr)
        size = param.shape[dim]
        gone = set(idxs)
        keep = torch.tensor([i for i in range(size) if i not in gone], dtype=torch.long, device=param.device)
        setattr(owner, attr, nn.Parameter(param.detach().index_select(dim, keep), requires_grad=param.requires_grad))
        if attr == "weight" and dim == 0:
            for bname, buf in owner.named_buffers(recurse=False):  # BatchNorm running stats, GroupNorm's groups
                if buf is not None and buf.dim() and buf.shape[0] == size:
                    setattr(owner, bname, buf.index_select(0, keep))
        _refit(owner)
    _refit_model(model)
    return model
