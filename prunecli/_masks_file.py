"""The bytes of safetensors files prunecli reads from disk: the header (read without the tensors) and the
bit-packed masks file of a checkpoint (its layout: :mod:`prunecli.checkpoint`). Every malformed input is one
:class:`~prunecli.errors.CheckpointError` line naming the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import torch

from prunecli._bits import pack, unpack
from prunecli.errors import CheckpointError, first_line
from prunecli.models.spec import short

MASKS_LAYOUT = "bits"  # masks.safetensors metadata of checkpoint version 2: bit-packed masks


def encode_masks(masks: Mapping[str, torch.Tensor]) -> bytes:
    """The masks.safetensors bytes of bool ``masks``: bit-packed, shapes in the metadata (see the module doc)."""
    from safetensors.torch import save

    shapes = {k: list(m.shape) for k, m in masks.items()}
    return save({k: pack(m.bool()) for k, m in masks.items()},
                metadata={"masks": json.dumps({"layout": MASKS_LAYOUT, "shapes": shapes})})


def decode_masks(data: bytes, name: Path | str, weights: Mapping[str, Sequence[int]]) -> dict[str, torch.Tensor]:
    """Bool masks from masks.safetensors bytes, bit-packed or (version 1) bool; each mask's shape must be that of
    the weight of the same FQN in ``weights`` (shapes), or a :class:`CheckpointError` names it."""
    from safetensors.torch import load

    metadata = safetensors_header(data, name).get("__metadata__") or {}
    try:
        tensors = load(data)
    except Exception as err:  # safetensors raises several types for a malformed file
        raise CheckpointError(f"{name} is corrupt: {first_line(err)}") from None
    if "masks" not in metadata:  # version 1: bool tensors
        for key, mask in sorted(tensors.items()):
            if mask.dtype != torch.bool:
                raise CheckpointError(f"{name} holds {short(key)} as {mask.dtype}: expected bool masks or the "
                                      f"{MASKS_LAYOUT!r} layout")
        return tensors
    record = _json_object(metadata["masks"], name)
    if record.get("layout") != MASKS_LAYOUT:
        raise CheckpointError(f"{name} has layout={short(record.get('layout'))}: expected {MASKS_LAYOUT!r}")
    shapes = _mask_shapes(record.get("shapes"), name)
    if set(shapes) != set(tensors):
        odd = sorted(set(shapes) ^ set(tensors))[0]
        raise CheckpointError(f"{name} is malformed: {short(odd)} is in its tensors or its shapes, not both")
    masks = {}
    for key, shape in shapes.items():
        if key not in weights or tuple(weights[key]) != shape:
            raise CheckpointError(f"{name} holds a mask of {short(key)} of shape {list(shape)}, which is not a "
                                  "weight of that shape in model.safetensors")
        try:
            masks[key] = unpack(tensors[key], shape)
        except ValueError as err:
            raise CheckpointError(f"{name} is malformed: {short(key)}: {err}") from None
    return masks


def _json_object(value: str, name: Path | str) -> dict[str, Any]:
    """The ``masks`` metadata of a bit-packed masks file, parsed: a JSON object."""
    try:
        record = json.loads(value)
    except (ValueError, RecursionError):
        record = None
    if not isinstance(record, dict):
        raise CheckpointError(f"{name} is malformed: its masks metadata is not a JSON object")
    return record


def _mask_shapes(shapes: Any, name: Path | str) -> dict[str, tuple[int, ...]]:
    """The ``shapes`` of a bit-packed masks file's metadata: a mapping of FQN to a list of sizes."""
    if not isinstance(shapes, dict) or not all(
            isinstance(s, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in s)
            for s in shapes.values()):
        raise CheckpointError(f"{name} is malformed: its shapes are not a JSON object of FQN to sizes")
    return {k: tuple(s) for k, s in shapes.items()}


def safetensors_header(data: bytes, name: Path | str) -> dict[str, Any]:
    """A safetensors file's header (8-byte little-endian length, then JSON), read without the tensors."""
    try:
        size = int.from_bytes(data[:8], "little")
        if len(data) < 8 or size > len(data) - 8:
            raise ValueError("the header length is past the end of the file")
        header = json.loads(data[8 : 8 + size])
        if not isinstance(header, dict):
            raise ValueError("the header is not a mapping")
        return header
    except (ValueError, RecursionError) as err:
        raise CheckpointError(f"{name} is not a safetensors file: {first_line(err)}"
                              ) from None


def safetensors_shapes(data: bytes, name: Path | str) -> dict[str, tuple[int, ...]]:
    """Tensor shapes from a safetensors file's header only."""
    header = safetensors_header(data, name)
    try:
        shapes = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"}
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for s in shapes.values() for d in s):
            raise ValueError("a shape is not a list of sizes")
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as err:
        raise CheckpointError(f"{name} is not a safetensors file: {first_line(err)}"
                              ) from None
    return shapes
