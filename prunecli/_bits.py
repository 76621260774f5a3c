"""Fast primitives on bool masks.

On CPU, torch's bool kernels are slow next to numpy's: ``nonzero`` on 262K bools took 230 us against 32 us
for ``numpy.flatnonzero``, ``count_nonzero`` 57 us against 10 us (torch 2.13 CPU, 1 thread). CPU masks go
through numpy (a zero-copy view); other devices keep torch's kernels, which are fast there.
"""

from __future__ import annotations

import numpy as np
import torch


def true_positions(mask: torch.Tensor) -> torch.Tensor:
    """Ascending flat (row-major) int64 indices where the bool ``mask`` is True."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(mask.numpy()))
    return mask.reshape(-1).nonzero().squeeze(1)


def false_positions(mask: torch.Tensor) -> torch.Tensor:
    """Ascending flat (row-major) int64 indices where the bool ``mask`` is False."""
    if mask.device.type == "cpu":
        return torch.from_numpy(np.flatnonzero(~mask.numpy()))
    return torch.logical_not(mask).reshape(-1).nonzero().squeeze(1)


def count_true(mask: torch.Tensor) -> int:
    """How many elements of the bool ``mask`` are True."""
    if mask.device.type == "cpu":
        return int(np.count_nonzero(mask.numpy()))
    return int(torch.count_nonzero(mask))
