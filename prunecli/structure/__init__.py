"""Model structure: graph analysis, coupled channel groups, compaction, replay and the compact modules.

The public API, for the channel target, the structured objectives, ``export format=compact`` and your own
training loop::

    import prunecli.structure

    plan = prunecli.structure.compact(model, pruner.masks, x[:1])   # in place: fewer parameters, same outputs
    small = prunecli.structure.replay(fresh_dense_model, plan, x[:1])  # the same removal on another copy

- :func:`compact` ``(model, masks, example_inputs) -> plan``: physically removes every channel and attention
  head whose coupled slices are all masked (``False``) in ``masks``; ``plan`` is the removal plan a compact
  export stores: ``{"history": [[root layer FQN, out channels?, [indices]], ...], "cuts": [[parameter FQN,
  dim, [indices]], ...]}`` (dense index space).
- :func:`output_gap` ``(reference, other) -> (max abs difference, max abs reference)``: the check a compact
  export makes (exact when the ratio is at most ``compact.rtol``, 1e-5).
- :func:`replay` ``(model, plan, example_inputs) -> model``: applies a plan (or a bare ``history`` list,
  compact export spec v1) to a dense model of the same architecture.
- :func:`channel_groups` ``(model, example_inputs, selected=None, round_to=1) -> [ChannelGroup]``: the coupled
  channel groups Torch-Pruning's ``DependencyGraph`` finds, each with its site (every coupled slice, index
  layouts) or the reason masks cannot make it exact; :func:`head_site` / :func:`mha_head_site`: an
  ``nn.MultiheadAttention``'s heads as one site.
- :func:`find_attention` ``(model) -> ([AttentionHeads], {module: reason})``: the attention modules of common
  Hugging Face models (BERT/RoBERTa, DistilBERT, GPT-2, Llama/Mistral/Qwen2 with grouped-query attention) and
  ``nn.MultiheadAttention``, with their q/k/v/o projection FQNs and head counts; :func:`attention_site`: one's
  heads as a site (a unit = one key/value head with its query heads). :func:`find_ffn` / :func:`ffn_site`:
  feed-forward blocks' intermediate width; :func:`transformer_sites`: all of them, as compaction sees them.
- :func:`following_norms` ``(model) -> {layer: norm}``: the one graph fact found without example inputs.
- :class:`CountedLayerNorm` (:class:`CountedLayerNorm2d` for torchvision's ConvNeXt), :class:`CountedGroupNorm`,
  :class:`CountedRMSNorm`, :class:`Attention`: the
  modules a compacted model uses where stock layers cannot hold "masked channels removed" (see
  :mod:`prunecli.structure._modules`).
"""

from __future__ import annotations

from prunecli.structure._blocks import (
    AttentionHeads,
    FeedForward,
    attention_site,
    conv1d_types,
    ffn_site,
    find_attention,
    find_ffn,
    producers,
    site_keys,
    transformer_sites,
)
from prunecli.structure._compact import compact, output_gap, replay
from prunecli.structure._fx import following_norms
from prunecli.structure._groups import OWNERS, ChannelGroup, channel_groups, head_site, index_member, mha_head_site
from prunecli.structure._modules import (
    Attention,
    CountedGroupNorm,
    CountedLayerNorm,
    CountedLayerNorm2d,
    CountedRMSNorm,
)

__all__ = ["compact", "replay", "output_gap", "channel_groups", "ChannelGroup", "head_site", "mha_head_site",
           "following_norms", "OWNERS", "Attention", "CountedLayerNorm", "CountedLayerNorm2d", "CountedGroupNorm",
           "CountedRMSNorm",
           "find_attention",
           "AttentionHeads", "attention_site", "find_ffn", "FeedForward", "ffn_site", "transformer_sites",
           "site_keys", "producers", "conv1d_types", "index_member"]
