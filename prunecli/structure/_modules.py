"""Modules a compacted model needs where stock torch layers cannot express "masked channels removed".

A channel masked to zero everywhere it is produced stays zero through a LayerNorm or GroupNorm whose weight and
bias are masked too, but the norm's statistics still count it: the masked model normalises over all ``C``
channels, zeros included. Removing the channel must keep that count, so the compact model uses
:class:`CountedLayerNorm` / :class:`CountedGroupNorm`, which normalise the ``C'`` kept channels with the
original count ``C``:

    mean = sum_kept(x) / C
    var  = (sum_kept((x - mean)^2) + (C - C') * mean^2) / C

(each removed channel is an ``x = 0`` term: it adds nothing to the sum and ``(0 - mean)^2`` to the squares).

``torch.nn.MultiheadAttention`` ties its inner width (heads x head_dim) to its embedding width, so it cannot
hold fewer heads than residual channels or the reverse; :class:`Attention` computes the same function with the
same parameter names (``in_proj_weight``, ``in_proj_bias``, ``out_proj``) and takes every width from its
parameters' shapes, so slicing them is all compaction does. Each module is built exactly equal to the dense
layer it replaces (``from_dense``); the channel and head removal is plain slicing of its parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _counted_var(squares: Tensor, mean: Tensor, count: Tensor | float, missing: Tensor | float) -> Tensor:
    """Variance over ``count`` elements of which ``missing`` are zeros absent from ``squares`` (the sum of
    ``(x - mean)^2`` over the present ones)."""
    return (squares + missing * mean * mean) / count


class CountedLayerNorm(nn.Module):
    """LayerNorm over the last dim that keeps the dense layer's element count (see the module docstring).

    Args:
        weight: Affine scale of the kept channels ``[C']``.
        bias: Affine shift ``[C']`` or None.
        count: Channels of the dense layer ``C`` (removed channels count as zeros).
        eps: The dense layer's epsilon.
    """

    def __init__(self, weight: Tensor, bias: Tensor | None, count: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None
        self.count = int(count)
        self.eps = float(eps)

    @classmethod
    def from_dense(cls, norm: nn.LayerNorm) -> "CountedLayerNorm":
        assert len(norm.normalized_shape) == 1 and norm.weight is not None, "checked by group discovery"
        return cls(norm.weight, norm.bias, norm.normalized_shape[0], norm.eps)

    def forward(self, x: Tensor) -> Tensor:
        kept = x.shape[-1]
        mean = x.sum(-1, keepdim=True) / self.count
        centered = x - mean
        var = _counted_var((centered * centered).sum(-1, keepdim=True), mean, self.count, self.count - kept)
        y = centered * torch.rsqrt(var + self.eps) * self.weight
        return y + self.bias if self.bias is not None else y

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]} of {self.count} channels, eps={self.eps}"


def is_layer_norm_2d(module: nn.Module) -> bool:
    """Whether ``module`` is torchvision's ``LayerNorm2d`` (ConvNeXt): an ``nn.LayerNorm`` over the channel dim
    of an NCHW tensor (permuted to the last dim and back)."""
    kind = type(module)
    return kind.__name__ == "LayerNorm2d" and kind.__module__ == "torchvision.models.convnext"


class CountedLayerNorm2d(CountedLayerNorm):
    """:class:`CountedLayerNorm` over the channel dim of an NCHW tensor, for torchvision's ``LayerNorm2d``."""

    @classmethod
    def from_dense(cls, norm: nn.LayerNorm) -> "CountedLayerNorm2d":
        assert is_layer_norm_2d(norm) and norm.weight is not None, "checked by group discovery"
        return cls(norm.weight, norm.bias, norm.normalized_shape[0], norm.eps)

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def is_rms_norm(module: nn.Module) -> bool:
    """Whether ``module`` is a Llama-style RMSNorm (``weight * x / sqrt(mean(x^2) + variance_epsilon)``, computed
    in float32): transformers' ``LlamaRMSNorm``, ``MistralRMSNorm``, ``Qwen2RMSNorm``..."""
    weight = getattr(module, "weight", None)
    return (isinstance(weight, nn.Parameter) and weight.dim() == 1 and isinstance(
        getattr(module, "variance_epsilon", None), float) and getattr(module, "bias", None) is None
        and len(list(module.parameters())) == 1)


class CountedRMSNorm(nn.Module):
    """Llama-style RMSNorm over the last dim that keeps the dense layer's element count: the mean of squares
    divides by ``count`` (removed channels are zeros), ``y = weight * x / sqrt(sum(x^2) / count + eps)``."""

    def __init__(self, weight: Tensor, count: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        self.count = int(count)
        self.variance_epsilon = float(eps)

    @classmethod
    def from_dense(cls, norm: nn.Module) -> "CountedRMSNorm":
        assert is_rms_norm(norm), "checked by the caller"
        return cls(norm.weight, norm.weight.shape[0], norm.variance_epsilon)

    def forward(self, x: Tensor) -> Tensor:
        dtype = x.dtype
        h = x.to(torch.float32)
        var = h.pow(2).sum(-1, keepdim=True) / self.count
        return self.weight * (h * torch.rsqrt(var + self.variance_epsilon)).to(dtype)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]} of {self.count} channels, eps={self.variance_epsilon}"


class CountedGroupNorm(nn.Module):
    """GroupNorm whose groups keep the dense layer's channel count (see the module docstring).

    The unit stays the channel: each kept channel remembers its dense group (buffer ``channel_group``), and each
    group's statistics divide by its dense size ``C / G`` times the spatial size, so groups may lose different
    numbers of channels (a group may lose all of them).
    """

    def __init__(self, weight: Tensor, bias: Tensor, channel_group: Tensor, num_groups: int, group_size: int,
                 eps: float):
        super().__init__()
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone())
        self.register_buffer("channel_group", channel_group.detach().clone().long())
        self.num_groups = int(num_groups)
        self.group_size = int(group_size)
        self.eps = float(eps)

    @classmethod
    def from_dense(cls, norm: nn.GroupNorm) -> "CountedGroupNorm":
        assert norm.affine, "checked by group discovery"
        size = norm.num_channels // norm.num_groups
        groups = torch.arange(norm.num_channels, device=norm.weight.device) // size
        return cls(norm.weight, norm.bias, groups, norm.num_groups, size, norm.eps)

    def forward(self, x: Tensor) -> Tensor:
        n, c = x.shape[:2]
        flat = x.reshape(n, c, -1)
        spatial = flat.shape[-1]
        groups = self.channel_group
        total = float(self.group_size * spatial)
        sums = flat.new_zeros(n, self.num_groups).index_add_(1, groups, flat.sum(-1))
        mean = sums / total
        centered = flat - mean[:, groups, None]
        squares = flat.new_zeros(n, self.num_groups).index_add_(1, groups, (centered * centered).sum(-1))
        kept = torch.bincount(groups, minlength=self.num_groups).to(flat.dtype)
        var = _counted_var(squares, mean, total, (self.group_size - kept) * spatial)
        y = centered * torch.rsqrt(var + self.eps)[:, groups, None]
        y = y * self.weight[:, None] + self.bias[:, None]
        return y.reshape(x.shape)

    def extra_repr(self) -> str:
        return (f"{self.weight.shape[0]} of {self.num_groups * self.group_size} channels, "
                f"{self.num_groups} groups of {self.group_size}, eps={self.eps}")


class Attention(nn.Module):
    """Multi-head attention with independent residual width ``E'`` and head count ``H'`` (fixed head_dim).

    Computes what ``torch.nn.MultiheadAttention`` computes, with the same call signature and parameter names,
    for packed ``in_proj_weight`` ``[3 * H' * head_dim, E']`` (q, k, v rows, head after head), ``in_proj_bias``
    and ``out_proj`` (``Linear(H' * head_dim, E')``). Removed heads are the masked model's zeroed heads: their
    output is zero, and their attention weights were uniform over the allowed keys (``softmax`` of the mask
    alone), which the head-averaged weights of ``need_weights=True`` include with the dense head count
    ``dense_heads``. ``average_attn_weights=False`` returns the kept heads only. Per-head 3-D ``attn_mask`` is
    not supported (it indexes the dense heads).
    """

    def __init__(self, in_proj_weight: Tensor, in_proj_bias: Tensor | None, out_proj: nn.Linear, head_dim: int,
                 dense_heads: int, batch_first: bool, dropout: float):
        super().__init__()
        self.in_proj_weight = nn.Parameter(in_proj_weight.detach().clone())
        self.in_proj_bias = nn.Parameter(in_proj_bias.detach().clone()) if in_proj_bias is not None else None
        self.out_proj = nn.Linear(out_proj.in_features, out_proj.out_features, bias=out_proj.bias is not None,
                                  device=out_proj.weight.device, dtype=out_proj.weight.dtype)
        self.out_proj.load_state_dict(out_proj.state_dict())
        self.head_dim = int(head_dim)
        self.dense_heads = int(dense_heads)
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)

    @classmethod
    def from_dense(cls, mha: nn.MultiheadAttention) -> "Attention":
        assert mha._qkv_same_embed_dim and mha.bias_k is None and not mha.add_zero_attn, "checked by group discovery"
        return cls(mha.in_proj_weight, mha.in_proj_bias, mha.out_proj, mha.head_dim, mha.num_heads,
                   mha.batch_first, mha.dropout)

    @property
    def num_heads(self) -> int:
        return self.in_proj_weight.shape[0] // (3 * self.head_dim)

    def _heads(self, x: Tensor, part: int) -> Tensor:
        """Project ``x`` ``[B, L, E']`` with the q (0), k (1) or v (2) rows -> ``[B, H', L, head_dim]``."""
        rows = self.num_heads * self.head_dim
        bias = self.in_proj_bias[part * rows:(part + 1) * rows] if self.in_proj_bias is not None else None
        y = F.linear(x, self.in_proj_weight[part * rows:(part + 1) * rows], bias)
        return y.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

    @staticmethod
    def _mask(attn_mask: Tensor | None, key_padding_mask: Tensor | None, dtype: torch.dtype) -> Tensor | None:
        """One additive float mask broadcastable to ``[B, H', L, S]`` (True in a bool mask = not allowed)."""
        def additive(m: Tensor) -> Tensor:
            return torch.zeros_like(m, dtype=dtype).masked_fill(m, float("-inf")) if m.dtype == torch.bool \
                else m.to(dtype)

        mask = None
        if attn_mask is not None:
            if attn_mask.dim() != 2:
                raise ValueError("a compacted Attention takes a 2-D attn_mask [L, S] only (a per-head 3-D mask "
                                 "indexes the dense model's heads)")
            mask = additive(attn_mask)
        if key_padding_mask is not None:
            pad = additive(key_padding_mask)[:, None, None, :]
            mask = pad if mask is None else mask + pad
        return mask

    def forward(self, query: Tensor, key: Tensor, value: Tensor, key_padding_mask: Tensor | None = None,
                need_weights: bool = True, attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        unbatched = query.dim() == 2
        if unbatched:
            query, key, value = query.unsqueeze(1), key.unsqueeze(1), value.unsqueeze(1)
            key_padding_mask = key_padding_mask.unsqueeze(0) if key_padding_mask is not None else None
        if not self.batch_first or unbatched:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        q, k, v = self._heads(query, 0), self._heads(key, 1), self._heads(value, 2)
        if is_causal and attn_mask is None:
            length = q.shape[-2]
            attn_mask = torch.ones(length, k.shape[-2], dtype=torch.bool, device=q.device).triu(1)
        mask = self._mask(attn_mask, key_padding_mask, q.dtype)
        p = self.dropout if self.training else 0.0
        weights = None
        if need_weights:
            scores = q @ k.transpose(-2, -1) / self.head_dim ** 0.5
            probs = torch.softmax(scores + mask if mask is not None else scores, dim=-1)
            weights = probs
            if average_attn_weights:
                # Removed heads attended uniformly over the allowed keys in the masked model.
                rest = self.dense_heads - self.num_heads
                uniform = (torch.softmax(mask.expand(probs.shape[0], 1, *probs.shape[2:]), dim=-1)
                           if mask is not None else torch.full_like(probs[:, :1], 1.0 / probs.shape[-1]))
                weights = (probs.sum(1) + rest * uniform[:, 0]) / self.dense_heads
            out = F.dropout(probs, p, self.training) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        out = self.out_proj(out.transpose(1, 2).flatten(2))
        if not self.batch_first or unbatched:
            out = out.transpose(0, 1)
        if unbatched:
            out, weights = out.squeeze(1), weights.squeeze(0) if weights is not None else None
        return out, weights

    def extra_repr(self) -> str:
        return (f"embed_dim={self.in_proj_weight.shape[1]}, num_heads={self.num_heads} of {self.dense_heads}, "
                f"head_dim={self.head_dim}, batch_first={self.batch_first}")
