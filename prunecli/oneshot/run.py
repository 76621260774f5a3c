"""Block-by-block one-shot pruning: the papers' procedure (SparseGPT section 3.3, Wanda section 3).

For each transformer block in order: hook its linear layers, run the block over the calibration batches to
collect the statistics the method needs, prune the layers, and (``sequential=True``) run the block again with
the pruned weights, whose outputs are the next block's inputs. With ``sequential=False`` the next block's
inputs are the outputs of the dense block (one pass per block: every statistic comes from the dense model's
activations). Only one block's inputs and statistics are held at a time; with ``device`` only the current
block is moved there.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterable

import torch
from torch import Tensor, nn

from prunecli.errors import ConfigError
from prunecli.oneshot.blocks import PRUNABLE, capture_inputs, find_blocks, run_block
from prunecli.oneshot.feeds import InputFeeds
from prunecli.oneshot.methods import Method, parse_method
from prunecli.targets import parse_target

log = logging.getLogger(__name__)


def prune_oneshot(model: nn.Module, batches: Iterable[Any], method: Any = "wanda", *, sparsity: float = 0.5,
                  target: Any = "unstructured", allocation: Any = None, sequential: bool = True,
                  blocks: str | None = None, device: str | torch.device | None = None) -> dict[str, Tensor]:
    """Prune every linear layer of ``model``'s transformer blocks from calibration ``batches``.

    Args:
        model: Any model with a ``nn.ModuleList`` of blocks (:func:`~prunecli.oneshot.blocks.find_blocks`).
        batches: Calibration batches: mappings of keyword tensors (``{"input_ids": ...}``) or tensors.
        method: ``magnitude``, ``wanda``, ``sparsegpt`` (``{name: sparsegpt, blocksize: 128, percdamp: 0.01}``)
            or a :class:`~prunecli.oneshot.methods.Method`.
        sparsity: Share of each layer's weights to prune.
        target: ``unstructured`` or ``N:M`` (``2:4``, along the input dim).
        allocation: The comparison group: ``local`` (per layer), ``per_row``, ``global`` (over one block;
            magnitude and wanda only). Default: ``per_row`` for wanda, ``local`` otherwise.
        sequential: Statistics of block ``i`` from the outputs of the pruned blocks before it (the papers'),
            or from the dense model.
        blocks: FQN of the block list, if the largest one is not it.
        device: Where each block runs while it is pruned (default: where it is).

    Returns:
        Keep masks (bool, True = kept) keyed by parameter FQN; the model's weights are masked (and, for
        sparsegpt, updated) in place.
    """
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
        raise ConfigError("sparsity", sparsity, "a float in [0, 1)")
    method, target = parse_method(method, allocation), parse_target(target)
    prefix, layers = find_blocks(model, blocks)
    device = torch.device(device) if device is not None else None
    was_training = model.training
    model.eval()
    started = time.perf_counter()
    try:
        inputs = capture_inputs(model, layers[0], batches, device)
        masks: dict[str, Tensor] = {}
        for index, block in enumerate(layers):
            masks.update(_prune_block(model, block, f"{prefix}.{index}" if prefix else str(index), inputs,
                                      method, target, sparsity, sequential, device))
    finally:
        model.train(was_training)
    log.info("one-shot pruned %d tensors in %d blocks in %.2f s", len(masks), len(layers),
             time.perf_counter() - started)
    return masks


def _prune_block(model: nn.Module, block: nn.Module, name: str, inputs: Any, method: Method, target: Any,
                 sparsity: float, sequential: bool, device: torch.device | None) -> dict[str, Tensor]:
    home = next(block.parameters()).device
    if device is not None:
        block.to(device)
    modules = {f"{name}.{n}" if n else name: m for n, m in block.named_modules() if isinstance(m, PRUNABLE)}
    sites, skipped = target.sites(model, modules)
    sites = {s.name: s for s in sites}
    if method.needs_inputs:
        with InputFeeds(block, name, set(sites), method.observe_input) as feeds:
            run_block(block, inputs, replace=not sequential)
        for unseen in set(sites) - feeds.observed:
            skipped[unseen] = "no calibration input reached it"
            del sites[unseen]
    elif not sequential:
        run_block(block, inputs, replace=True)
    for module, reason in skipped.items():
        log.warning("%s: not pruned: %s", module, reason)
    masks = method.prune(sites, sparsity, target) if sites else {}
    method.clear()
    with torch.no_grad():
        for fqn, mask in masks.items():
            model.get_parameter(fqn).mul_(mask)
    if sequential:
        run_block(block, inputs, replace=True)
    if device is not None:
        block.to(home)
    return {fqn: mask.to(home) for fqn, mask in masks.items()}
