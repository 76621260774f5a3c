"""A tiny causal transformer language model for quick runs on the embedded ``stdlib_text`` dataset.

Token embedding plus learned positions, ``layers`` pre-norm blocks (``nn.MultiheadAttention`` under a causal
mask, then a GELU MLP, each with a residual), a final LayerNorm and a linear LM head (untied, so pruning the
head never touches the embedding). Radford et al., "Language Models are Unsupervised Multitask Learners", 2019
(the GPT-2 block layout).
"""

from __future__ import annotations

import torch
from torch import nn

from prunecli._checks import integer, number
from prunecli.errors import ConfigError
from prunecli.models._registry import register_model


class Block(nn.Module):
    """``x + attn(ln(x))`` under a causal mask, then ``x + mlp(ln(x))``."""

    def __init__(self, dim: int, heads: int, hidden: int, dropout: float):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class TinyLM(nn.Module):
    """Logits ``[B, T, vocab_size]`` of ``input_ids`` ``[B, T]`` (``T <= seq_len``); position ``t`` sees ``<= t``."""

    def __init__(self, vocab_size: int, seq_len: int, dim: int, heads: int, layers: int, mlp_ratio: int,
                 dropout: float):
        super().__init__()
        self.seq_len = seq_len
        self.tokens = nn.Embedding(vocab_size, dim)
        self.positions = nn.Embedding(seq_len, dim)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(dim, heads, dim * mlp_ratio, dropout) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        t = input_ids.shape[1]
        if t > self.seq_len:
            raise ValueError(f"input of {t} tokens is longer than the model's seq_len {self.seq_len}")
        positions = torch.arange(t, device=input_ids.device)
        x = self.drop(self.tokens(input_ids) + self.positions(positions))
        # True above the diagonal: a position never attends to a later one.
        mask = torch.ones(t, t, dtype=torch.bool, device=input_ids.device).triu(1)
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.ln(x))


@register_model
def tiny_lm(
    *,
    vocab_size: int = 256,
    seq_len: int = 128,
    dim: int = 64,
    heads: int = 4,
    layers: int = 2,
    mlp_ratio: int = 4,
    dropout: float = 0.0,
) -> nn.Module:
    """A tiny causal transformer LM: embeddings, pre-norm attention/MLP blocks, final LayerNorm, LM head.

    Args:
        vocab_size: Token ids and output logits (the task's; 256 for the byte-level ``stdlib_text``).
        seq_len: The longest input, in tokens (the task's; learned positions).
        dim: Width of the residual stream, a multiple of ``heads``.
        heads: Attention heads per block.
        layers: Transformer blocks.
        mlp_ratio: MLP hidden width as a multiple of ``dim``.
        dropout: Dropout probability on embeddings, attention weights and MLP outputs (0 disables it).
    """
    integer("model.dim", dim, 1)
    integer("model.heads", heads, 1)
    integer("model.layers", layers, 1)
    integer("model.mlp_ratio", mlp_ratio, 1)
    number("model.dropout", dropout, 0.0)
    if dim % heads:
        raise ConfigError("model.dim", dim, f"a multiple of model.heads={heads}")
    if dropout >= 1.0:
        raise ConfigError("model.dropout", dropout, "a float in [0, 1)")
    return TinyLM(vocab_size, seq_len, dim, heads, layers, mlp_ratio, float(dropout))
