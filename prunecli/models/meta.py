"""Build a model without memory: :func:`on_meta`, the meta device for every tensor but the tiny ones.

Loading a checkpoint builds its model on the meta device first, to compare shapes and count elements before
anything is allocated (a spec asking for a width of 4e9 would otherwise allocate terabytes).
"""

from __future__ import annotations

import math
from typing import Any, Optional

import torch
from torch.overrides import TorchFunctionMode

SMALL_TENSOR = 1024   # elements; a weight is never this small in practice, a model's shape arithmetic is

# The tensor factories whose device a model's constructor leaves to the default (torch.tensor and
# torch.as_tensor copy Python data, which already exists, so they stay on the CPU).
_FACTORIES = {torch.empty, torch.zeros, torch.ones, torch.full, torch.rand, torch.randn, torch.randint,
              torch.empty_strided, torch.eye, torch.arange, torch.linspace, torch.logspace}
_SIZE = (tuple, list, torch.Size)


def on_meta() -> TorchFunctionMode:
    """``with on_meta(): model = build()``: like ``with torch.device("meta")``, but factory calls of at most
    :data:`SMALL_TENSOR` elements stay on the CPU.

    Torchvision's RegNet computes its stage widths with small tensors and reads them back (``.tolist()``),
    which the meta device cannot do. Move the result with ``model.to("meta")`` before running it.
    """
    return _LargeOnMeta()


class _LargeOnMeta(TorchFunctionMode):
    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: Optional[dict] = None) -> Any:
        kwargs = dict(kwargs or {})
        if func in _FACTORIES and kwargs.get("device") is None and _numel(func, args, kwargs) > SMALL_TENSOR:
            kwargs["device"] = "meta"
        return func(*args, **kwargs)


def _numel(func: Any, args: tuple, kwargs: dict) -> float:
    """Elements a factory call creates; infinite when it cannot tell (so the tensor goes to meta)."""
    try:
        if func is torch.arange:
            nums = [float(a) for a in args[:3]] + [float(kwargs[k]) for k in ("start", "end", "step") if k in kwargs]
            start, end, step = (0.0, nums[0], 1.0) if len(nums) == 1 else (*nums[:2], nums[2] if len(nums) > 2 else 1.0)
            return abs((end - start) / step)
        if func in (torch.linspace, torch.logspace):
            return float(args[2] if len(args) > 2 else kwargs["steps"])
        if func is torch.eye:
            n = int(args[0] if args else kwargs["n"])
            m = args[1] if len(args) > 1 and isinstance(args[1], int) else kwargs.get("m", n)
            return float(n * m)
        if func is torch.randint:
            size = next((a for a in args if isinstance(a, _SIZE)), None) or kwargs["size"]
        elif func in (torch.full, torch.empty_strided) or (len(args) == 1 and isinstance(args[0], _SIZE)):
            size = args[0] if args else kwargs["size"]
        else:
            size = args if args else kwargs["size"]
        return float(math.prod(int(s) for s in size))
    except (KeyError, IndexError, TypeError, ValueError, ZeroDivisionError):
        return math.inf
