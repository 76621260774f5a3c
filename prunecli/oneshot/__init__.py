"""One-shot pruning of transformer models from calibration data, block by block (no training).

Model and calibration batches in, masks out; the model's weights are pruned (and, for SparseGPT, updated)
in place::

    import torch
    from prunecli.models import build_model
    from prunecli.oneshot import prune_oneshot

    model = build_model("tiny_lm", vocab_size=256, seq_len=64)  # or a transformers model you loaded
    batches = [{"input_ids": torch.randint(0, 256, (8, 64))} for _ in range(4)]  # real text in practice
    masks = prune_oneshot(model, batches, "sparsegpt", sparsity=0.5)  # or "wanda", "magnitude"
    kept = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())  # 0.5
    masks_24 = prune_oneshot(build_model("tiny_lm", seq_len=64), batches, "wanda", target="2:4")
    masks_owl = prune_oneshot(build_model("tiny_lm", seq_len=64), batches, "wanda", sparsity=0.7,
                              layer_sparsity={"name": "owl", "m": 5, "lam": 0.08})  # 0.7 over all blocks

``masks`` maps each pruned parameter's FQN to a bool keep mask. The parts:

- :mod:`prunecli.oneshot.run`: :func:`prune_oneshot`, the block-by-block procedure;
- :mod:`prunecli.oneshot.blocks`: finding the blocks, capturing the first one's inputs;
- :mod:`prunecli.oneshot.feeds`: hooks feeding each linear layer's inputs to the method's statistics;
- :mod:`prunecli.oneshot.methods`: ``magnitude``, ``wanda`` (criterion :class:`~prunecli.criteria.Wanda`,
  allocation ``per_row``) and ``sparsegpt``;
- :mod:`prunecli.oneshot.sparsegpt`: the SparseGPT solver (Hessians, inverse factor, column sweep);
- :mod:`prunecli.oneshot.owl`: OWL's pass collecting every block's outlier ratio (``layer_sparsity="owl"``).
"""

from __future__ import annotations

from prunecli.oneshot.blocks import BlockInputs, block_kinds, capture_inputs, find_blocks, run_block
from prunecli.oneshot.feeds import InputFeeds
from prunecli.oneshot.methods import METHODS, Method, Ranked, SparseGPT, parse_method
from prunecli.oneshot.owl import outlier_ratios, owl_sparsities
from prunecli.oneshot.run import prune_oneshot
from prunecli.oneshot.sparsegpt import Hessians, column_selector, inverse_factor, prune_columns

__all__ = ["prune_oneshot", "find_blocks", "capture_inputs", "run_block", "BlockInputs", "block_kinds", "InputFeeds",
           "METHODS", "Method", "Ranked", "SparseGPT", "parse_method", "Hessians", "inverse_factor",
           "column_selector", "prune_columns", "outlier_ratios", "owl_sparsities"]
