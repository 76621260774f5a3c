"""Tensor primitives of :func:`prunecli.allocation.select.select_lowest`: cuts in score order and the
comparison, gathering and counting passes it makes over one flattened score tensor at a time."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from prunecli._bits import count_true, false_positions

_NUMPY_FLOATS = {torch.float32: (np.float32, float(np.finfo(np.float32).max)),
                 torch.float16: (np.float16, float(np.finfo(np.float16).max))}


@dataclass
class _Cut:
    """A threshold in score order: the units below it are ``s <= value`` if ``inclusive`` else ``s < value``."""

    value: float
    inclusive: bool
    counts: list[int] = field(default_factory=list)  # per tensor, how many units lie below the cut

    @property
    def key(self) -> tuple[float, bool]:
        return self.value, self.inclusive

    def for_dtype(self, dtype: torch.dtype) -> tuple[float, bool]:
        """An equivalent cut whose value is exactly representable in ``dtype``.

        Comparing a float16 tensor with a float64 value would round the value first and move the cut. If the
        value is not representable, rounding gives a neighbour ``t`` with no ``dtype`` value strictly between
        it and the cut, so ``s < v`` becomes ``s < t`` (``t > v``) or ``s <= t`` (``t < v``).
        """
        if dtype == torch.float64:
            return self.value, self.inclusive
        numpy_type, largest = _NUMPY_FLOATS.get(dtype, (None, 0.0))  # numpy rounds a scalar ~50x faster
        if numpy_type is not None and abs(self.value) <= largest:
            t = float(numpy_type(self.value))
        else:  # bfloat16, or out of range (rounds to the largest value or to +-inf)
            t = torch.tensor(self.value, dtype=torch.float64).to(dtype).item()
        if t == self.value:
            return self.value, self.inclusive
        return t, t < self.value


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1)  # a view if contiguous, else a copy of this one tensor


def _compare(flat: torch.Tensor, cut: _Cut, out: torch.Tensor, below: bool) -> torch.Tensor:
    """Write ``flat`` below ``cut`` (or, with ``below=False``, not below it; NaN is neither) into ``out``."""
    value, inclusive = cut.for_dtype(flat.dtype)
    if below:
        return (torch.le if inclusive else torch.lt)(flat, value, out=out)
    return (torch.gt if inclusive else torch.ge)(flat, value, out=out)


def _free_positions(taken: torch.Tensor, limit: float) -> torch.Tensor | None:
    """Ascending flat indices where the contiguous bool vector ``taken`` is False; None if over ``limit``."""
    idx = false_positions(taken)
    return idx if idx.numel() <= limit else None


def _count_equal(flat: torch.Tensor, value: float, out: torch.Tensor) -> int:
    """Count ``flat == value`` into ``out``; zero (and ``out`` all False) if ``value`` is not a ``flat`` value."""
    if torch.tensor(value, dtype=torch.float64).to(flat.dtype).item() != value:
        out.zero_()
        return 0
    return count_true(torch.eq(flat, value, out=out))


def _segment_counts(flags: torch.Tensor, ends: torch.Tensor) -> list[int]:
    """How many of ``flags`` are True in each segment of a concatenation whose segments end at ``ends``."""
    upto = torch.cat([flags.new_zeros(1, dtype=torch.int64), flags.cumsum(0)])[ends]
    return torch.diff(upto, prepend=upto.new_zeros(1)).tolist()


def _check_nan(vals: torch.Tensor) -> None:
    if torch.isnan(vals).any():
        raise ValueError("scores contain NaN")
