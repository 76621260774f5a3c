"""OWL's statistics pass: every block's outlier ratio, from the dense model, before any block is pruned.

OWL (:class:`~prunecli.allocation.OWL`) decides each block's sparsity from the outlier ratios of *all*
blocks, so they must be known before the first block is pruned, while the block-by-block pass
(:mod:`prunecli.oneshot.run`) only reaches block ``i`` after pruning blocks ``0 .. i-1``. The two are kept
apart: this pass runs the dense blocks in order over the calibration batches, as the pruning pass does (one
block's activations at a time), computes each block's Wanda scores ``|W_ij| * ||X_j||`` from its dense
inputs and keeps only two numbers per block, its outlier ratio and its number of prunable weights; then the
pruning pass runs unchanged with one sparsity per block. It costs one more forward pass through the blocks and
no memory beyond the pruning pass's. The ratios come from the dense model, as in the paper's code
(and llmcompressor's), whatever the method: magnitude and SparseGPT get the same layer sparsities as Wanda.
"""

from __future__ import annotations

import logging
from typing import Any, Collection, Iterable

import torch
from torch import nn

from prunecli.allocation import OWL
from prunecli.criteria import Wanda
from prunecli.oneshot.blocks import block_layers, capture_inputs, find_blocks, run_block
from prunecli.oneshot.feeds import InputFeeds
from prunecli.targets import Unstructured

log = logging.getLogger(__name__)

__all__ = ["outlier_ratios", "owl_sparsities"]


@torch.no_grad()
def outlier_ratios(model: nn.Module, batches: Iterable[Any], owl: OWL, blocks: str | None = None,
                   device: torch.device | None = None,
                   layers: Collection[str] | None = None) -> dict[str, tuple[float, int]]:
    """``{block FQN: (outlier ratio D, prunable weights)}`` of every block of ``model`` holding any of ``layers``
    (module FQNs; default: every prunable layer of the blocks), over those layers, from the dense model's
    activations on ``batches``; the model is left unchanged."""
    prefix, blocklist = find_blocks(model, blocks)
    layers = set(block_layers(model, prefix)) if layers is None else set(layers)
    inputs = capture_inputs(model, blocklist, batches, device)
    found: dict[str, tuple[float, int]] = {}
    for index, block in enumerate(blocklist):
        name = f"{prefix}.{index}" if prefix else str(index)
        home = next(block.parameters()).device
        if device is not None:
            block.to(device)
        modules = {fqn: m for n, m in block.named_modules() if (fqn := f"{name}.{n}" if n else name) in layers}
        sites = {s.name: s for s in Unstructured().sites(model, modules)[0]}
        wanda = Wanda()
        with InputFeeds(block, name, set(sites), wanda.observe_input) as feeds:
            run_block(block, index, inputs, replace=True)
        seen = [sites[n] for n in sites if n in feeds.observed]
        if seen:  # a block with no selected layer keeps the uniform sparsity and is not in OWL's share
            found[name] = (owl.outlier_ratio(wanda.score(s) for s in seen), sum(s.num_units for s in seen))
        wanda.after_update()
        if device is not None:
            block.to(home)
    return found


def owl_sparsities(model: nn.Module, batches: Iterable[Any], sparsity: float, owl: OWL | None = None,
                   blocks: str | None = None, device: str | torch.device | None = None,
                   layers: Collection[str] | None = None) -> dict[str, float]:
    """``{block FQN: sparsity}`` OWL gives ``model``'s blocks (those holding any of ``layers``) at overall
    ``sparsity`` of their ``layers`` (what
    :func:`~prunecli.oneshot.prune_oneshot` with ``layer_sparsity="owl"`` prunes every layer of each block to).

    Raises:
        ConfigError: ``owl.lam`` does not fit ``sparsity`` (:meth:`OWL.check`), checked before any pass.
    """
    owl = owl if owl is not None else OWL()
    owl.check(sparsity)
    was_training = model.training
    model.eval()
    try:
        stats = outlier_ratios(model, batches, owl, blocks, torch.device(device) if device is not None else None,
                               layers)
    finally:
        model.train(was_training)
    if not stats:
        return {}
    ratios, sizes = zip(*stats.values())
    chosen = dict(zip(stats, owl.sparsities(ratios, sizes, sparsity)))
    for name, (ratio, _) in stats.items():
        log.info("OWL: %s outlier ratio %.4f -> sparsity %.4f", name, ratio, chosen[name])
    return chosen
