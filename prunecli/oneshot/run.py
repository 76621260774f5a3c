"""Block-by-block one-shot pruning: the papers' procedure (SparseGPT section 3.3, Wanda section 3).

For each transformer block in order: hook its linear layers, run the block over the calibration batches to
collect the statistics the method needs, prune the layers, and (``sequential=True``) run the block again with
the pruned weights, whose outputs are the next block's inputs. With ``sequential=False`` the next block's
inputs are the outputs of the dense block (one pass per block: every statistic comes from the dense model's
activations). Only one block's inputs and statistics are held at a time; with ``device`` only the current
block is moved there.

``layer_sparsity="owl"`` gives each block its own sparsity (:class:`~prunecli.allocation.OWL`), decided from
every block's outlier ratio before the first block is pruned: a first pass over the dense blocks collects
them (:mod:`prunecli.oneshot.owl`), then the block-by-block pass prunes every layer of block ``l`` to ``S_l``
within the chosen comparison group (``allocation``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import torch
from torch import Tensor, nn

from prunecli.allocation import parse_layer_sparsity
from prunecli.errors import ConfigError
from prunecli.oneshot.blocks import BlockInputs, block_layers, capture_inputs, find_blocks, run_block
from prunecli.oneshot.feeds import InputFeeds
from prunecli.oneshot.methods import Method, parse_method
from prunecli.oneshot.owl import owl_sparsities
from prunecli.sites import Site
from prunecli.targets import NM, Target, parse_target

log = logging.getLogger(__name__)


def prune_oneshot(model: nn.Module, batches: Iterable[Any], method: Any = "wanda", *, sparsity: float = 0.5,
                  target: Any = "unstructured", allocation: Any = None, sequential: bool = True,
                  blocks: str | None = None, device: str | torch.device | None = None,
                  layer_sparsity: Any = "uniform", layers: Any = None) -> dict[str, Tensor]:
    """Prune every linear layer of ``model``'s transformer blocks from calibration ``batches``.

    Args:
        model: Any model with a ``nn.ModuleList`` of blocks (:func:`~prunecli.oneshot.blocks.find_blocks`).
        batches: Calibration batches: mappings of keyword tensors (``{"input_ids": ...}``) or tensors.
        method: ``magnitude``, ``wanda``, ``sparsegpt`` (``{name: sparsegpt, blocksize: 128, percdamp: 0.01}``)
            or a :class:`~prunecli.oneshot.methods.Method`.
        sparsity: Share of each layer's weights to prune (with OWL: of all the blocks' weights).
        target: ``unstructured`` or ``N:M`` (``2:4``, along the input dim).
        allocation: The comparison group: ``local`` (per layer), ``per_row``, ``global`` (over one block;
            magnitude and wanda only). Default: ``per_row`` for wanda, ``local`` otherwise.
        sequential: Statistics of block ``i`` from the outputs of the pruned blocks before it (the papers'),
            or from the dense model.
        blocks: FQN of the block list, if the largest one is not it.
        device: Where each block runs while it is pruned (default: where it is).
        layer_sparsity: How ``sparsity`` is spread over the blocks: ``uniform``, or ``owl`` /
            ``{name: owl, m: 5, lam: 0.08}`` (:class:`~prunecli.allocation.OWL`; unstructured targets only,
            with one more pass over the dense blocks first).
        layers: Which of the blocks' linear layers are pruned: None (all), or rules as ``pruner.layers`` takes
            them, e.g. ``{"include": [".*mlp.*"]}`` or ``{"exclude": [".*attn.*"]}`` (module FQN regexes,
            :class:`~prunecli.layers.LayerSelection`); the other layers stay dense.

    Returns:
        Keep masks (bool, True = kept) keyed by parameter FQN; the model's weights are masked (and, for
        sparsegpt, updated) in place.
    """
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) or not 0 <= sparsity < 1:
        raise ConfigError("sparsity", sparsity, "a float in [0, 1)")
    method, target = parse_method(method, allocation), parse_target(target)
    owl = parse_layer_sparsity(layer_sparsity)
    if owl is not None and isinstance(target, NM):
        raise ConfigError("pruner.layer_sparsity", "owl", ["uniform"],
                          f"target {target} gives every layer the same sparsity")
    prefix, blocklist = find_blocks(model, blocks)
    chosen = frozenset(block_layers(model, prefix, layers))
    names = [f"{prefix}.{i}" if prefix else str(i) for i in range(len(blocklist))]
    started = time.perf_counter()
    per_block = dict.fromkeys(names, sparsity)
    if owl is not None:
        batches = batches if isinstance(batches, Sequence) else list(batches)  # read twice: OWL's pass, pruning
        per_block.update(owl_sparsities(model, batches, sparsity, owl, prefix, device, chosen))
    device = torch.device(device) if device is not None else None
    was_training = model.training
    model.eval()
    run = _BlockPass(model, method, target, sequential, device, chosen)
    try:
        inputs = capture_inputs(model, blocklist, batches, device)
        masks: dict[str, Tensor] = {}
        for index, (block, name) in enumerate(zip(blocklist, names)):
            done = run.prune(block, index, name, inputs, per_block[name])
            masks.update(done)
            log.info("block %d/%d pruned: %d tensors, %.2f s", index + 1, len(blocklist), len(done),
                     time.perf_counter() - started)
    finally:
        model.train(was_training)
    log.info("one-shot pruned %d tensors in %d blocks in %.2f s", len(masks), len(blocklist),
             time.perf_counter() - started)
    return masks


@dataclass(frozen=True)
class _BlockPass:
    """What is done to every block: its statistics collected, its layers pruned, its outputs computed."""

    model: nn.Module
    method: Method
    target: Target
    sequential: bool
    device: torch.device | None
    layers: frozenset[str]  # FQNs of the layers to prune

    def prune(self, block: nn.Module, index: int, name: str, inputs: BlockInputs,
              sparsity: float) -> dict[str, Tensor]:
        """Prune the linear layers of ``block`` (the ``index``-th, FQN ``name``) whose inputs are ``inputs`` to
        ``sparsity``; leaves the next block's inputs in ``inputs`` and returns the masks, on the device the block
        was on."""
        home = next(block.parameters()).device
        if self.device is not None:
            block.to(self.device)
        sites = self._sites(block, index, name, inputs)
        masks = self.method.prune(sites, sparsity, self.target) if sites else {}
        self.method.clear()
        with torch.no_grad():
            for fqn, mask in masks.items():
                self.model.get_parameter(fqn).mul_(mask)
        if self.sequential:
            run_block(block, index, inputs, replace=True)
        if self.device is not None:
            block.to(home)
        return {fqn: mask.to(home) for fqn, mask in masks.items()}

    def _sites(self, block: nn.Module, index: int, name: str, inputs: BlockInputs) -> dict[str, Site]:
        """The target's sites in ``block``, after the pass that feeds the method their inputs (and, when not
        sequential, computes the next block's inputs from the dense block); layers no input reached are left
        out."""
        modules = {fqn: m for n, m in block.named_modules() if (fqn := f"{name}.{n}" if n else name) in self.layers}
        found, skipped = self.target.sites(self.model, modules)
        sites = {s.name: s for s in found}
        if self.method.needs_inputs:
            with InputFeeds(block, name, set(sites), self.method.observe_input) as feeds:
                run_block(block, index, inputs, replace=not self.sequential)
            for unseen in set(sites) - feeds.observed:
                skipped[unseen] = "no calibration input reached it"
                del sites[unseen]
        elif not self.sequential:
            run_block(block, index, inputs, replace=True)
        for module, reason in skipped.items():
            log.warning("%s: not pruned: %s", module, reason)
        return sites
