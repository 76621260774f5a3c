"""Nested state (optimizer, pruner, RNG) as flat tensors plus a JSON skeleton, so it saves without pickle.

``flatten({"state": {0: {"momentum_buffer": t}}, "lr": 0.1})`` gives the tensors
``{"state.0.momentum_buffer": t}`` and a JSON skeleton in which that tensor is ``{"__tensor__": key}``.
Dicts whose keys are not all strings, and tuples, are tagged so :func:`unflatten` rebuilds the same types.
With ``pack_bools``, bool tensors are stored bit-packed (:func:`prunecli._bits.pack`, 8x smaller) as
``{"__bits__": [key, shape]}``; :func:`unflatten` reads both forms, so states written before still load.
"""

from __future__ import annotations

from typing import Any

import torch

from prunecli._bits import pack, unpack

_TENSOR, _ITEMS, _TUPLE, _BITS = "__tensor__", "__items__", "__tuple__", "__bits__"


def flatten(obj: Any, prefix: str = "", *, pack_bools: bool = False) -> tuple[dict[str, torch.Tensor], Any]:
    """Split ``obj`` into ``(tensors keyed by dotted path, JSON-able skeleton)``; ``pack_bools``: bool tensors
    bit-packed."""
    tensors: dict[str, torch.Tensor] = {}

    def walk(value: Any, path: str) -> Any:
        if isinstance(value, torch.Tensor) and pack_bools and value.dtype == torch.bool:
            tensors[path] = pack(value)
            return {_BITS: [path, list(value.shape)]}
        if isinstance(value, torch.Tensor):
            tensors[path] = value.detach().cpu().contiguous().clone()
            return {_TENSOR: path}
        if isinstance(value, dict):
            items = [(k, walk(v, f"{path}.{k}" if path else str(k))) for k, v in value.items()]
            if all(isinstance(k, str) and k not in (_TENSOR, _ITEMS, _TUPLE, _BITS) for k, _ in items):
                return dict(items)
            return {_ITEMS: [[k, v] for k, v in items]}
        if isinstance(value, (list, tuple)):
            out = [walk(v, f"{path}.{i}" if path else str(i)) for i, v in enumerate(value)]
            return {_TUPLE: out} if isinstance(value, tuple) else out
        if value is None or isinstance(value, (bool, int, float, str)):
            return value
        raise TypeError(f"cannot save a {type(value).__name__} at {path!r}: only tensors and JSON values")

    return tensors, walk(obj, prefix)


def unflatten(skeleton: Any, tensors: dict[str, torch.Tensor]) -> Any:
    """Inverse of :func:`flatten`. A skeleton that does not fit ``tensors`` raises KeyError, TypeError or
    ValueError."""
    if isinstance(skeleton, dict):
        if set(skeleton) == {_TENSOR}:
            return tensors[skeleton[_TENSOR]]
        if set(skeleton) == {_BITS}:
            key, shape = skeleton[_BITS]
            if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
                raise ValueError(f"{key!r}: shape {shape!r} is not a list of sizes")
            return unpack(tensors[key], tuple(shape))
        if set(skeleton) == {_ITEMS}:
            return {_key(k): unflatten(v, tensors) for k, v in skeleton[_ITEMS]}
        if set(skeleton) == {_TUPLE}:
            return tuple(unflatten(v, tensors) for v in skeleton[_TUPLE])
        return {k: unflatten(v, tensors) for k, v in skeleton.items()}
    if isinstance(skeleton, list):
        return [unflatten(v, tensors) for v in skeleton]
    return skeleton


def _key(key: Any) -> Any:
    return tuple(key) if isinstance(key, list) else key
