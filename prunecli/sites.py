"""Sites: the parameters a target prunes together, and how their elements map onto prunable units.

A :class:`Site` is what the Target axis hands to the rest of the core. A unit is what is kept or pruned as one:
an element, a block, an output channel, an attention head. Each member parameter has a layout that maps an
element-wise tensor of the parameter's shape to ``[units, k]`` and a per-unit keep vector back to an element mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

import numpy as np
import torch
from torch import Tensor, nn

from prunecli._bits import false_positions


class Layout(Protocol):
    """Maps a parameter's elements onto ``num_units`` units."""

    num_units: int

    def to_units(self, t: Tensor) -> Tensor:
        """``t`` (the parameter's shape) -> ``[num_units, k]`` (padding, if any, is zero)."""
        ...

    def reduce(self, t: Tensor) -> Tensor:
        """Sum of ``t`` over each unit -> ``[num_units]`` (scaled to a full unit where padded)."""
        ...

    def expand(self, keep: Tensor) -> Tensor:
        """Per-unit bool ``[num_units]`` -> bool mask of the parameter's shape."""
        ...


def element_positions(layout: Layout, units: Tensor) -> Tensor:
    """Flat (row-major) indices of the parameter elements that belong to ``units`` (unit indices).

    Layouts may answer directly with an ``elements_of(units)`` method (element and block layouts do);
    otherwise the units are expanded to a mask and its set positions gathered.
    """
    if hasattr(layout, "elements_of"):
        return layout.elements_of(units)
    keep = torch.ones(layout.num_units, dtype=torch.bool, device=units.device)
    keep[units] = False
    return false_positions(layout.expand(keep).reshape(-1))


@dataclass(frozen=True)
class ElementLayout:
    """Every element is its own unit, optionally in a permuted order (N:M groups run over the input dim)."""

    shape: tuple[int, ...]
    perm: tuple[int, ...] | None = None

    @property
    def num_units(self) -> int:
        return math.prod(self.shape)

    def to_units(self, t: Tensor) -> Tensor:
        if self.perm is not None:
            t = t.permute(self.perm)
        return t.reshape(-1, 1)

    def reduce(self, t: Tensor) -> Tensor:
        return self.to_units(t).reshape(-1)

    def expand(self, keep: Tensor) -> Tensor:
        if self.perm is None:
            return keep.reshape(self.shape)
        permuted = [self.shape[i] for i in self.perm]
        inverse = sorted(range(len(self.perm)), key=self.perm.__getitem__)
        return keep.reshape(permuted).permute(inverse).contiguous()

    def elements_of(self, units: Tensor) -> Tensor:
        if self.perm is None:
            return units
        coords = torch.unravel_index(units, tuple(self.shape[i] for i in self.perm))
        strides = [math.prod(self.shape[d + 1:]) for d in range(len(self.shape))]
        return sum(c * strides[d] for c, d in zip(coords, self.perm))


def _block_sums(t2: Tensor, rows: int, cols: int) -> Tensor:
    """Sums of the ``rows x cols`` blocks of the 2-D ``t2`` (its sides divisible) -> ``[out/rows, inner/cols]``.

    ``sum`` over a short innermost dim is slow on CPU (1x4 blocks of a 1024x1024 matrix: 1.2 ms, 2x2: 6 ms), so
    the columns of each block are summed by a matrix-vector product with ones, then the rows by ``sum`` over
    a strided dim (together 0.3 and 0.6 ms); no permuted ``[units, k]`` copy is made.
    """
    out, inner = t2.shape
    if cols > 1:
        if t2.dtype in (torch.float32, torch.float64):
            t2 = torch.mv(t2.reshape(out * (inner // cols), cols), t2.new_ones(cols)).view(out, inner // cols)
        else:
            t2 = t2.reshape(out, inner // cols, cols).sum(-1)
    return t2.reshape(out // rows, rows, -1).sum(1) if rows > 1 else t2


@dataclass(frozen=True)
class BlockLayout:
    """``rows x cols`` blocks of the weight viewed as 2-D ``[out, in * kernel]``; edges are zero-padded."""

    shape: tuple[int, ...]
    rows: int
    cols: int

    @property
    def _grid(self) -> tuple[int, int, int, int]:
        out, inner = self.shape[0], math.prod(self.shape[1:])
        return out, inner, -(-out // self.rows), -(-inner // self.cols)

    @property
    def num_units(self) -> int:
        _, _, gr, gc = self._grid
        return gr * gc

    def to_units(self, t: Tensor) -> Tensor:
        out, inner, gr, gc = self._grid
        t2 = t.reshape(out, inner)
        pad_r, pad_c = gr * self.rows - out, gc * self.cols - inner
        if pad_r or pad_c:
            t2 = nn.functional.pad(t2, (0, pad_c, 0, pad_r))
        return t2.reshape(gr, self.rows, gc, self.cols).permute(0, 2, 1, 3).reshape(gr * gc, self.rows * self.cols)

    def reduce(self, t: Tensor) -> Tensor:
        out, inner, gr, gc = self._grid
        t2 = t.reshape(out, inner)
        if out % self.rows or inner % self.cols:
            t2 = nn.functional.pad(t2, (0, gc * self.cols - inner, 0, gr * self.rows - out))
        sums = _block_sums(t2, self.rows, self.cols).reshape(-1)
        if out % self.rows or inner % self.cols:
            # Edge blocks hold fewer real elements; scale them to a full block so they are not pruned first.
            counts = self.to_units(torch.ones(self.shape, device=t.device)).sum(1)
            sums = sums * (self.rows * self.cols) / counts
        return sums

    def elements_of(self, units: Tensor) -> Tensor:
        out, inner, _, gc = self._grid
        u = units.cpu().numpy()  # few units: numpy's per-op cost is a fraction of torch's
        rows = (u // gc)[:, None] * self.rows + np.arange(self.rows)
        cols = (u % gc)[:, None] * self.cols + np.arange(self.cols)
        flat = rows[:, :, None] * inner + cols[:, None, :]
        return torch.from_numpy(flat[(rows < out)[:, :, None] & (cols < inner)[:, None, :]]).to(units.device)

    def expand(self, keep: Tensor) -> Tensor:
        out, inner, gr, gc = self._grid
        blocks = keep.reshape(gr, 1, gc, 1).expand(gr, self.rows, gc, self.cols)
        return blocks.reshape(gr * self.rows, gc * self.cols)[:out, :inner].reshape(self.shape).contiguous()


@dataclass(frozen=True)
class AxisLayout:
    """Units are slices along one dim: output channels, or heads (``chunks`` > 1 for packed q/k/v)."""

    shape: tuple[int, ...]
    dim: int
    num_units: int
    chunks: int = 1

    def _split(self, t: Tensor) -> Tensor:
        t = t.movedim(self.dim, 0)
        return t.reshape(self.chunks, self.num_units, -1).transpose(0, 1).reshape(self.num_units, -1)

    def to_units(self, t: Tensor) -> Tensor:
        return self._split(t)

    def reduce(self, t: Tensor) -> Tensor:
        return self._split(t).sum(1)

    def expand(self, keep: Tensor) -> Tensor:
        size = self.shape[self.dim]
        per = size // (self.chunks * self.num_units)
        along = keep.reshape(1, self.num_units, 1).expand(self.chunks, self.num_units, per).reshape(size)
        view = [1] * len(self.shape)
        view[self.dim] = size
        return along.reshape(view).expand(self.shape).contiguous()


@dataclass(frozen=True, eq=False)
class IndexLayout:
    """Units are slices along ``dim`` at arbitrary positions: ``positions[j]`` belongs to unit ``units[j]``.

    Slices at positions not listed are not part of the site (their mask stays True). Coupled channel groups
    use it: a consumer after a concatenation holds the group's channels at an offset, a Linear after a
    flatten holds each channel's ``H*W`` features.
    """

    shape: tuple[int, ...]
    dim: int
    positions: tuple[int, ...]
    units: tuple[int, ...]
    num_units: int

    @property
    def elements(self) -> int:
        """Elements of the parameter this layout covers (for a site's per-unit size)."""
        return len(self.positions) * math.prod(self.shape) // self.shape[self.dim]

    def _index(self, device: torch.device) -> tuple[Tensor, Tensor]:
        return (torch.tensor(self.positions, dtype=torch.long, device=device),
                torch.tensor(self.units, dtype=torch.long, device=device))

    def to_units(self, t: Tensor) -> Tensor:
        pos, units = self._index(t.device)
        rows = t.movedim(self.dim, 0)[pos].reshape(len(self.positions), -1)
        order = torch.argsort(units, stable=True)
        counts = torch.bincount(units, minlength=self.num_units)
        width = int(counts.max()) if len(self.positions) else 0
        slot = torch.arange(len(order), device=t.device) - (torch.cumsum(counts, 0) - counts)[units[order]]
        out = rows.new_zeros(self.num_units, width, rows.shape[1])
        out[units[order], slot] = rows[order]
        return out.reshape(self.num_units, -1)

    def reduce(self, t: Tensor) -> Tensor:
        pos, units = self._index(t.device)
        sums = t.movedim(self.dim, 0)[pos].reshape(len(self.positions), -1).sum(1)
        return sums.new_zeros(self.num_units).index_add_(0, units, sums)

    def expand(self, keep: Tensor) -> Tensor:
        pos, units = self._index(keep.device)
        # Positions outside every unit stay kept (bool keep vectors) or get nothing (per-unit values, e.g. a
        # regulariser's scale).
        fill = keep.new_ones if keep.dtype == torch.bool else keep.new_zeros
        along = fill(self.shape[self.dim])
        along[pos] = keep[units]
        view = [1] * len(self.shape)
        view[self.dim] = self.shape[self.dim]
        return along.reshape(view).expand(self.shape).contiguous()


@dataclass(frozen=True)
class Member:
    """One parameter of a site. ``scored`` members feed the criterion; the others are only masked with them.
    ``consumer`` members take the units as inputs (a next layer's input columns): pruning a unit costs them
    inputs, while their own outputs stay."""

    name: str
    param: nn.Parameter
    layout: Layout
    scored: bool = True
    consumer: bool = False


@dataclass
class Site:
    """Parameters pruned together, unit by unit.

    Attributes:
        name: The site's name (the primary parameter's FQN, or the attention module's FQN for heads).
        members: Member parameters; all share ``num_units``.
        max_sparsity: Largest fraction of units the pattern allows to prune (0.5 for 2:4).
        protect: Optional map ``unit_scores -> unit_scores`` setting units the pattern must keep to +inf
            (N:M keeps the N largest of every M).
        module: FQN of the module that owns the primary parameter (the attention module for heads).
        norm: FQN of the norm layer directly after ``module`` (channel sites); its weight and bias, if it has
            them, are members.
        round_to: Kept unit counts are rounded to a multiple of this (hardware-friendly channel counts).
        unit_dim: For sites whose units are the output channels of ``module``: the dim of the output (of the
            norm layer if any, else of ``module``) that indexes the units (1 for conv, -1 for linear). ``None``
            for sites whose units are not output channels; activation criteria need it.
    """

    name: str
    members: tuple[Member, ...]
    max_sparsity: float = 1.0
    protect: Callable[[Tensor], Tensor] | None = None
    module: str | None = None
    norm: str | None = None
    unit_dim: int | None = None
    round_to: int = 1
    num_units: int = field(init=False)
    unit_size: int = field(init=False)

    def __post_init__(self) -> None:
        counts = {m.layout.num_units for m in self.members}
        assert len(counts) == 1, f"members of {self.name} disagree on unit count: {counts}"
        self.num_units = counts.pop()
        self.unit_size = max(1, round(sum(getattr(m.layout, "elements", m.param.numel())
                                           for m in self.members if m.scored) / self.num_units))

    @property
    def weight(self) -> nn.Parameter:
        """The primary parameter (first member)."""
        return self.members[0].param

    @property
    def output_module(self) -> str | None:
        """FQN of the module whose output carries the units: the following norm layer, else the layer itself."""
        return self.norm or self.module

    def member(self, name: str) -> Member | None:
        """The member whose parameter FQN is ``name``, if any."""
        return next((m for m in self.members if m.name == name), None)

    def reduce(self, element_score: Callable[[str, Tensor], Tensor]) -> Tensor:
        """Sum an element-wise score over each unit of every scored member -> ``[num_units]``."""
        total = None
        for m in self.members:
            if m.scored:
                part = m.layout.reduce(element_score(m.name, m.param.detach()))
                total = part if total is None else total + part
        return total

    def rounded(self, keep: Tensor, scores: Tensor) -> Tensor:
        """``keep`` with its kept count rounded to the nearest multiple of ``round_to`` (at least one multiple,
        at most all units): the best-scored pruned units are revived, or the worst-scored kept units pruned."""
        if self.round_to <= 1:
            return keep
        kept = int(keep.sum())
        target = min(max(round(kept / self.round_to), 1) * self.round_to, self.num_units)
        if target == kept:
            return keep
        grow = target > kept
        candidates = (~keep if grow else keep).nonzero().reshape(-1)
        order = torch.argsort(scores[candidates], descending=grow)[: abs(target - kept)]
        out = keep.clone()
        out[candidates[order]] = grow
        return out

    def unit_masks(self, keep: Tensor) -> dict[str, Tensor]:
        """Per-unit keep vector -> element masks keyed by parameter FQN, each with its own memory (a layout may
        return a view of ``keep``; masks sharing memory could not be saved as separate tensors)."""
        masks, shared = {}, keep.untyped_storage().data_ptr()
        for m in self.members:
            mask = m.layout.expand(keep)
            masks[m.name] = mask.clone() if mask.untyped_storage().data_ptr() == shared else mask
        return masks
