"""``format=sparse``: a pruned model in a file that shrinks with its sparsity (unstructured, N:M or blocks).

``<output>`` (safetensors) holds, for each masked weight, ``<weight FQN>:mask`` (its keep mask bit-packed:
``uint8 [ceil(numel / 8)]``, 1 bit per element, row-major, lowest bit first; :func:`prunecli._bits.pack`) and
``<weight FQN>:values`` (the kept elements only, 1-D, row-major, in the weight's dtype); every other tensor
(biases, norms, buffers, weights without a mask) is stored dense under its own key. ``<output stem>.json``
holds the model spec, ``layers`` (``{weight FQN: {"shape": [...], "dtype": "float32", "kept": count}}``), the
checkpoint's sparsity report, the dataset node, the sizes (``bytes``, ``bytes_dense``: the state's raw bytes)
and the weights' SHA-256. Both are written together, or not at all.

An fp32 weight at sparsity ``s`` takes ``(1 - s) + 1/32`` of its dense bytes: 0.13x at 90%, 0.53x at 2:4.
The export is refused (``ConfigError``) when the file would not be smaller than the dense state (no masks,
or too few pruned weights).

:func:`load_state` gives back the dense state dict, bit for bit the checkpoint's folded weights (pruned
elements are +0.0); :func:`load` the model (registered builders only, as for checkpoints; never pickle).
``prunecli evaluate checkpoint=<output>`` reads it with the checkpoint's masks, so its report is the
checkpoint's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from prunecli._atomic import json_bytes, staged
from prunecli._bits import pack, unpack
from prunecli._checks import known_keys
from prunecli.errors import CheckpointError, ConfigError, first_line
from prunecli.export.dense import read_spec, spec_format, spec_path
from prunecli.models.spec import Origin, short

SUFFIX = ".safetensors"
FORMAT = "prunecli-sparse"
VERSION = 1
MASK, VALUES = ":mask", ":values"
DTYPES = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``format=sparse`` takes no options."""
    known_keys("sparse", options, ())
    return {}


def pack_state(state: Mapping[str, torch.Tensor],
               masks: Mapping[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, Any]]]:
    """``(tensors, layers)``: ``state`` (folded: pruned elements zero) with each masked weight replaced by its
    ``:mask`` / ``:values`` pair, and the ``layers`` record of the spec."""
    tensors, layers = {}, {}
    for key, value in state.items():
        mask = masks.get(key)
        if mask is None or value.dtype not in DTYPES.values():
            tensors[key] = value
            continue
        mask = mask.to(device="cpu", dtype=torch.bool).contiguous()
        tensors[key + MASK] = pack(mask)
        tensors[key + VALUES] = torch.masked_select(value.cpu(), mask).contiguous()
        layers[key] = {"shape": list(value.shape), "dtype": str(value.dtype).removeprefix("torch."),
                       "kept": tensors[key + VALUES].numel()}
    return tensors, layers


def unpack_state(tensors: Mapping[str, torch.Tensor], layers: Mapping[str, Any], origin: Origin,
                 into: Mapping[str, torch.Tensor] | None = None) -> tuple[dict[str, torch.Tensor], dict]:
    """``(dense state dict, masks)`` of a file's ``tensors`` (the inverse of :func:`pack_state`); each packed
    pair is checked against its ``layers`` record (bytes, dtype, count of kept values).

    ``into`` (``model.state_dict()``): the weights are unpacked into those tensors where they are contiguous
    CPU tensors of the same shape and dtype, and the state holds them: no second copy of the weights.
    """
    stray = sorted(k for k in tensors if k.endswith((MASK, VALUES)) and k.rsplit(":", 1)[0] not in layers)
    if stray:
        raise origin.error("layers", f"do not list {short(stray[0])}, which the weights file holds")
    state = {k: v for k, v in tensors.items() if not k.endswith((MASK, VALUES))}
    masks = {}
    for key, layer in layers.items():
        bits, values = tensors.get(key + MASK), tensors.get(key + VALUES)
        if bits is None or values is None:
            raise origin.error(f"layers[{short(key)}]", "has no :mask and :values tensors in the weights file")
        try:
            mask = unpack(bits, tuple(layer["shape"]))
        except ValueError as err:
            raise origin.error(f"layers[{short(key)}]", f"does not match its :mask tensor: {err}") from None
        positions = np.flatnonzero(mask.numpy())
        dtype = DTYPES[layer["dtype"]]
        if values.dtype != dtype or values.dim() != 1 or values.numel() != len(positions) \
                or len(positions) != layer["kept"]:
            raise origin.error(f"layers[{short(key)}]", f"does not match its :values tensor (expected "
                               f"{len(positions)} kept {layer['dtype']} values as the mask says and kept="
                               f"{layer['kept']}, got {list(values.shape)} {str(values.dtype).removeprefix('torch.')})")
        state[key], masks[key] = _scatter(positions, values, _destination(into, key, mask.shape, dtype)), mask
    return state, masks


def _destination(into: Mapping[str, torch.Tensor] | None, key: str, shape: torch.Size,
                 dtype: torch.dtype) -> torch.Tensor:
    """``into[key]`` when the weights can be written there in place, else a new tensor."""
    out = None if into is None else into.get(key)
    if out is None or out.shape != shape or out.dtype != dtype or out.device.type != "cpu" \
            or not out.is_contiguous():
        return torch.empty(shape, dtype=dtype)
    return out


def _scatter(positions: np.ndarray, values: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """``out`` zeroed, holding ``values`` at the flat (row-major) ``positions``.

    All in numpy: its fancy assignment is 2-5x faster than torch's ``masked_scatter_`` / ``index_copy_`` on CPU
    (torch 2.13), and its ``fill`` does not start torch's worker threads (``zero_`` on a busy 2-core machine took
    25x longer than ``fill``). bfloat16, which numpy lacks, is moved as int16 (the same bits).
    """
    bf16 = values.dtype == torch.bfloat16
    flat = (out.detach().view(torch.int16) if bf16 else out.detach()).numpy().reshape(-1)
    flat.fill(0)
    flat[positions] = (values.view(torch.int16) if bf16 else values).numpy()
    return out


def export(model: nn.Module, checkpoint: Any, output: Path, options: dict[str, Any]) -> dict[str, Any]:
    from safetensors.torch import save

    from prunecli.checkpoint import fold_masks
    from prunecli.export.dense import spec_beside

    check_options(options)
    spec_path = spec_beside(output)
    state = fold_masks(model.state_dict(), checkpoint.masks)
    dense_bytes = sum(t.numel() * t.element_size() for t in state.values())
    if not checkpoint.masks:
        raise ConfigError("format", "sparse", "a pruned checkpoint (one with masks)",
                          reason="it has no masks, so every weight would be stored; use format=dense")
    tensors, layers = pack_state(state, checkpoint.masks)
    data = save(tensors)
    payload = sum(t.numel() * t.element_size() for t in tensors.values())
    if payload >= dense_bytes:
        kept = sum(layer["kept"] for layer in layers.values()) / max(1, sum(_numel(layer) for layer in layers.values()))
        raise ConfigError("format", "sparse", "a model pruned far enough that masks plus kept values are smaller "
                          "than the dense weights", reason=f"{kept:.1%} of its masked weights are kept, so the "
                          f"file would be {payload / dense_bytes:.2f}x the dense state; use format=dense")
    spec = {"format": FORMAT, "version": VERSION, "weights": output.name, "model": checkpoint.spec,
            "layers": layers, "sparsity": checkpoint.meta.get("sparsity"),
            "dataset": checkpoint.meta.get("config", {}).get("dataset"), "bytes": len(data),
            "bytes_dense": dense_bytes, "sha256": hashlib.sha256(data).hexdigest(), "source": str(checkpoint.path)}
    with staged(output, spec_path) as (tmp_weights, tmp_spec):
        tmp_weights.write_bytes(data)
        tmp_spec.write_bytes(json_bytes(spec))
    return {"spec": str(spec_path), "bytes": len(data), "bytes_dense": dense_bytes,
            "ratio": len(data) / dense_bytes, "layers": len(layers)}


def _numel(layer: Mapping[str, Any]) -> int:
    numel = 1
    for size in layer["shape"]:
        numel *= size
    return numel


def is_sparse(path: Path | str) -> bool:
    """Whether ``path`` names a sparse export (its JSON spec says so)."""
    return spec_format(path) == FORMAT


def load_spec(path: Path | str) -> dict[str, Any]:
    """The JSON spec of a sparse export, checked field by field; anything :func:`export` would not write is a
    :class:`CheckpointError`."""
    meta, origin = read_spec(path, FORMAT, VERSION, "sparse export")
    layers = meta.get("layers")
    if not isinstance(layers, dict):
        raise origin.error("layers", "is not a mapping of weight FQN to shape, dtype and kept")
    for key, layer in layers.items():
        ok = (isinstance(layer, dict) and layer.get("dtype") in DTYPES and isinstance(layer.get("shape"), list)
              and all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in layer["shape"])
              and isinstance(layer.get("kept"), int) and not isinstance(layer["kept"], bool)
              and 0 <= layer["kept"] <= _numel(layer))
        if not ok:
            raise origin.error(f"layers[{short(key)}]", "is not {shape: [sizes], dtype: "
                               f"{'|'.join(DTYPES)}, kept: count of kept values}}")
    return meta


def load_state(path: Path | str, *, into: Mapping[str, torch.Tensor] | None = None
               ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(dense state dict, masks)`` of a sparse export (``model.safetensors`` or its ``model.json``), without
    building the model: the weights file is hash-checked and every packed pair checked against the spec.

    ``into``: a built model's ``state_dict()``, whose weights are then unpacked in place (see
    :func:`unpack_state`); ``model.load_state_dict(state)`` finishes the load.
    """
    meta, origin, data = _verified(path)
    return _decode(data, meta, origin, into)


def _verified(path: Path | str) -> tuple[dict[str, Any], Origin, bytes]:
    """``(spec, origin, weights file bytes)``, the spec checked and the bytes' SHA-256 compared with it."""
    from prunecli.checkpoint import read_regular_file

    meta = load_spec(path)
    spec = spec_path(path)
    weights = spec.parent / meta["weights"]
    data = read_regular_file(weights)
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise CheckpointError(f"{weights} is corrupt or was modified: its SHA-256 differs from {spec}")
    return meta, Origin("sparse export", str(spec)), data


def _decode(data: bytes, meta: Mapping[str, Any], origin: Origin,
            into: Mapping[str, torch.Tensor] | None = None) -> tuple[dict, dict]:
    from safetensors.torch import load as load_tensors

    try:
        tensors = load_tensors(data)
    except Exception as err:  # safetensors raises several types for a malformed file
        raise CheckpointError(f"{origin.file} names a corrupt weights file: {first_line(err)}") from None
    return unpack_state(tensors, meta["layers"], origin, into)


def load(path: Path | str, *, model: Any = None, trust_checkpoint_code: bool = False) -> nn.Module:
    """The dense model of a sparse export, in eval mode. ``model`` and ``trust_checkpoint_code``: as in
    :func:`prunecli.checkpoint.load_model`; the model is built on the meta device and compared with the
    stored shapes before the weights are unpacked."""
    return _load(path, model=model, trust_checkpoint_code=trust_checkpoint_code)[0]


def _load(path: Path | str, *, model: Any, trust_checkpoint_code: bool) -> tuple[nn.Module, dict, dict]:
    from prunecli._masks_file import safetensors_shapes
    from prunecli.checkpoint import fit_model, model_builder

    meta, origin, data = _verified(path)
    shapes = {k: v for k, v in safetensors_shapes(data, origin.file).items() if not k.endswith((MASK, VALUES))}
    shapes.update({k: tuple(layer["shape"]) for k, layer in meta["layers"].items()})
    net = fit_model(model_builder(meta["model"], origin, model=model, trust_checkpoint_code=trust_checkpoint_code),
                    shapes, origin)
    state, masks = _decode(data, meta, origin, net.state_dict())
    try:
        net.load_state_dict(state)  # the unpacked weights are the model's own tensors already: not copied
    except RuntimeError as err:
        raise origin.error("model", f"weights do not fit the model it names: {str(err).splitlines()[0]}") from None
    return net.eval(), masks, meta


def load_for_evaluate(path: Path | str, *, model: Any = None,
                      trust_checkpoint_code: bool = False) -> tuple[Any, nn.Module]:
    """``(checkpoint-like record, dense model)`` for ``prunecli evaluate checkpoint=<sparse export>``: the
    record carries the stored masks and the checkpoint's sparsity report, so evaluate reports what it reports
    for the checkpoint."""
    from prunecli.checkpoint import Checkpoint

    net, masks, meta = _load(path, model=model, trust_checkpoint_code=trust_checkpoint_code)
    record = Checkpoint(spec_path(path), {"model": meta["model"], "sparsity": meta.get("sparsity"),
                                          "config": {"dataset": meta.get("dataset")}}, net.state_dict(), masks)
    return record, net
