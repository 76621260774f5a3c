"""``format=semi_structured``: 2:4 Linear (and transformers Conv1D) weights packed for NVIDIA's sparse kernels.

``<output>`` (safetensors) holds the model's state dict, except that each 2:4 layer's weight is stored as
``<weight FQN>:2of4.values`` (``[out, in/2]``, in ``semi_structured.dtype``) and ``<weight FQN>:2of4.positions``
(``uint8 [out, ceil(in/8)]``), the portable form of :mod:`prunecli.export.two_four`; everything else keeps its
dtype. ``<output stem>.json`` holds the model spec, ``dtype``, ``layers`` (``{weight FQN: {"shape": stored
weight shape, "layout": "linear" | "conv1d"}}``), ``dense`` (``{layer FQN: why it stays dense}``: not 2:4, tied,
or ``nn.MultiheadAttention``'s input projection), the dataset node and the weights' SHA-256. Both are written
together, or not at all.

:func:`load` rebuilds the dense model (registered builders only, as for checkpoints; never pickle, never a
``_target_`` from the file) with the 2:4 weights unpacked bit for bit; given a CUDA ``device`` of compute
capability >= 8.0 it casts the model to ``dtype`` and swaps every layer the kernels take for
``torch.sparse.to_sparse_semi_structured``. On CPU it is a dense model computing the same function, so
``prunecli evaluate checkpoint=<output>.json`` works everywhere.

The export itself needs such a GPU (``semi_structured.require_cuda``, default true): there it converts the
layers and checks the sparse model's outputs against the dense model's in ``dtype`` (``semi_structured.atol``)
before writing. ``require_cuda=false`` writes the same file on any machine without that check; the
conversion then happens, and can first fail, when the file is loaded on a GPU.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any, Mapping, Optional

import torch
from torch import nn

from prunecli._atomic import json_bytes, staged
from prunecli._checks import known_keys, number
from prunecli.errors import CheckpointError, ConfigError
from prunecli.export import two_four
from prunecli.export.dense import read_spec, spec_format, spec_path
from prunecli.models.spec import Origin, short

SUFFIX = ".safetensors"
FORMAT = "prunecli-semi-structured"
VERSION = 1
VALUES, POSITIONS = ":2of4.values", ":2of4.positions"
NEEDS = "a CUDA device with compute capability >= 8.0 (torch.sparse.to_sparse_semi_structured)"


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``semi_structured.dtype`` (float16 | bfloat16), ``.require_cuda`` (bool), ``.atol`` (>= 0, 1e-2)."""
    known_keys("semi_structured", options, ("dtype", "require_cuda", "atol"))
    dtype = options.get("dtype", "float16")
    if dtype not in two_four.DTYPES:
        raise ConfigError("semi_structured.dtype", dtype, list(two_four.DTYPES))
    require = options.get("require_cuda", True)
    if not isinstance(require, bool):
        raise ConfigError("semi_structured.require_cuda", require, "true or false")
    return {"dtype": dtype, "require_cuda": require,
            "atol": number("semi_structured.atol", options.get("atol", 1e-2), 0.0)}


def plan(model: nn.Module) -> tuple[dict[str, str], dict[str, str]]:
    """``(packed, dense)``: ``{weight FQN: layout}`` of the Linear/Conv1D layers whose weights are 2:4 along the
    input dim, and ``{layer FQN: reason}`` for those that stay dense."""
    shared: dict[int, int] = {}
    for _, p in model.named_parameters(remove_duplicate=False):
        shared[id(p)] = shared.get(id(p), 0) + 1
    packed, dense = {}, {}
    for name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):  # its out_proj is an nn.Linear, listed on its own
            dense[name] = "nn.MultiheadAttention's input projection is a bare parameter, not a Linear layer"
        conv1d = two_four.is_conv1d(module)
        if not (conv1d or isinstance(module, nn.Linear)):
            continue
        reason = two_four.violation(two_four.matrix(module))
        if reason is None and shared[id(module.weight)] > 1:
            reason = "its weight is tied to another parameter"
        if reason is None:
            packed[f"{name}.weight"] = "conv1d" if conv1d else "linear"
        else:
            dense[name] = reason
    return packed, dense


def pack_state(state: Mapping[str, torch.Tensor], packed: Mapping[str, str], dtype: torch.dtype) -> dict:
    """``state`` with each packed weight replaced by its ``:2of4.values`` / ``:2of4.positions`` pair."""
    out = {k: v for k, v in state.items() if k not in packed}
    for key, layout in packed.items():
        weight = state[key].t() if layout == "conv1d" else state[key]
        values, positions = two_four.pack(weight.to(dtype))
        out[key + VALUES], out[key + POSITIONS] = values, positions
    return out


def unpack_state(tensors: Mapping[str, torch.Tensor], meta: Mapping[str, Any], origin: Origin) -> dict:
    """The dense state dict of a file's ``tensors`` (the inverse of :func:`pack_state`), shapes and dtypes checked."""
    dtype = two_four.DTYPES[meta["dtype"]]
    state = {k: v for k, v in tensors.items() if not k.endswith((VALUES, POSITIONS))}
    for key, layer in meta["layers"].items():
        values, positions = tensors.get(key + VALUES), tensors.get(key + POSITIONS)
        shape = layer["shape"][::-1] if layer["layout"] == "conv1d" else layer["shape"]
        want = two_four.packed_shapes(*shape)
        if values is None or positions is None or tuple(values.shape) != want[0] or values.dtype != dtype \
                or tuple(positions.shape) != want[1] or positions.dtype != torch.uint8:
            raise origin.error(f"layers[{short(key)}]", "does not match its packed tensors in the weights file "
                               f"(values {list(want[0])} {dtype}, positions {list(want[1])} uint8)")
        try:
            weight = two_four.unpack(values, positions, shape[1])
        except ValueError as err:
            raise origin.error(f"layers[{short(key)}]", str(err)) from None
        state[key] = weight.t().contiguous() if layer["layout"] == "conv1d" else weight
    return state


def export(model: nn.Module, checkpoint: Any, output: Path, options: dict[str, Any]) -> dict[str, Any]:
    from safetensors.torch import save

    from prunecli.checkpoint import fold_masks
    from prunecli.export.dense import spec_beside

    opts = check_options(options)
    spec_path = spec_beside(output)
    gpu_problem = two_four.cuda_support()
    if opts["require_cuda"] and gpu_problem:
        raise ConfigError("format", "semi_structured", NEEDS,
                          reason=f"{gpu_problem}; semi_structured.require_cuda=false writes the portable file "
                                 "here and converts its layers when it is loaded on such a GPU")
    packed, dense = plan(model)
    if not packed:
        raise ConfigError("format", "semi_structured", "a run pruned with pruner=semi_structured_2_4 or "
                          "pruner.target=2:4", reason="no Linear or Conv1D weight is 2:4 along its input dim")
    dtype = two_four.DTYPES[opts["dtype"]]
    state = fold_masks(model.state_dict(), checkpoint.masks)
    tensors = pack_state(state, packed, dtype)
    data = save(tensors)
    spec = {"format": FORMAT, "version": VERSION, "weights": output.name, "model": checkpoint.spec,
            "dtype": opts["dtype"], "layers": {k: {"shape": list(state[k].shape), "layout": v}
                                               for k, v in packed.items()},
            "dense": dense, "dataset": checkpoint.meta.get("config", {}).get("dataset"),
            "sha256": hashlib.sha256(data).hexdigest(), "source": str(checkpoint.path)}
    result: dict[str, Any] = {"spec": str(spec_path), "bytes": len(data), "packed": sorted(packed),
                              "dense": dense, "dtype": opts["dtype"]}
    if not gpu_problem:
        result.update(_check_on_gpu(model, tensors, spec, opts["atol"]))
    with staged(output, spec_path) as (tmp_weights, tmp_spec):
        tmp_weights.write_bytes(data)
        tmp_spec.write_bytes(json_bytes(spec))
    return result


def _check_on_gpu(model: nn.Module, tensors: dict, spec: dict[str, Any], atol: float) -> dict[str, Any]:
    """Reload the packed weights, convert them on the GPU and compare with the dense model in the same dtype."""
    from prunecli.metrics import call_model
    from prunecli.tasks import task_of

    device = two_four.gpu()
    dtype = two_four.DTYPES[spec["dtype"]]
    sparse = copy.deepcopy(model)
    sparse.load_state_dict(unpack_state(tensors, spec, Origin("semi-structured export", "being written")))
    reference = copy.deepcopy(model).to(device, dtype).eval()
    example = _floats_as(task_of(spec["model"]).example_inputs(spec["model"], 2, device), dtype)
    try:
        report = sparsify(sparse, spec, device)
        with torch.no_grad():
            diff = float((call_model(sparse, example).float() - call_model(reference, example).float()).abs().max())
    except RuntimeError as err:  # torch without the kernels, or kernels refusing an input (non-contiguous)
        raise ConfigError("format", "semi_structured", "a model whose converted layers run on this GPU",
                          reason=f"converting or running it failed: {_first_line(err)}") from None
    if not diff <= atol:
        raise ConfigError("format", "semi_structured", f"a model whose sparse and dense {spec['dtype']} outputs "
                          f"agree within semi_structured.atol={atol}", reason=f"they differ by {diff:.3g}")
    return {**report, "max_abs_diff": diff, "atol": atol}


def _first_line(err: Exception) -> str:
    """The first line of an exception's message, or its repr when it has none."""
    return str(err).splitlines()[0] if str(err).strip() else repr(err)


def _floats_as(inputs: Any, dtype: torch.dtype) -> Any:
    """Example inputs with their floating tensors (images) in ``dtype``; token ids stay integers."""
    if isinstance(inputs, Mapping):
        return {k: _floats_as(v, dtype) for k, v in inputs.items()}
    return inputs.to(dtype) if torch.is_floating_point(inputs) else inputs


def sparsify(model: nn.Module, meta: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Move ``model`` to ``device`` in the file's dtype and swap its 2:4 layers for semi-structured tensors;
    returns ``{"converted": [layer FQN], "skipped": {layer FQN: reason}}``. Refused off a capable GPU."""
    if problem := two_four.cuda_support(device):
        raise ConfigError("device", str(device), NEEDS, reason=problem)
    names = [key.rsplit(".", 1)[0] for key in meta["layers"]]
    model.to(device, two_four.DTYPES[meta["dtype"]]).eval()
    ready, skipped = two_four.convertible(model, names, two_four.DTYPES[meta["dtype"]])
    two_four.convert(model, ready)
    return {"converted": ready, "skipped": skipped}


def is_semi_structured(path: Path | str) -> bool:
    """Whether ``path`` names a semi-structured export (its JSON spec says so)."""
    return spec_format(path) == FORMAT


def load_spec(path: Path | str) -> dict[str, Any]:
    """The JSON spec of an export, checked field by field; anything :func:`export` would not write is a
    :class:`CheckpointError`."""
    meta, origin = read_spec(path, FORMAT, VERSION, "semi-structured export")
    if meta.get("dtype") not in two_four.DTYPES:
        raise origin.error(f"dtype={short(meta.get('dtype'))}", f"is not one of {', '.join(two_four.DTYPES)}")
    layers = meta.get("layers")
    if not isinstance(layers, dict):
        raise origin.error("layers", "is not a mapping of weight FQN to shape and layout")
    for key, layer in layers.items():
        ok = (isinstance(layer, dict) and layer.get("layout") in ("linear", "conv1d")
              and isinstance(layer.get("shape"), list) and len(layer["shape"]) == 2
              and all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in layer["shape"]))
        inputs = ok and layer["shape"][0 if layer["layout"] == "conv1d" else 1]
        if not ok or inputs % two_four.GROUP or not key.endswith(".weight"):
            raise origin.error(f"layers[{short(key)}]", "is not {shape: [out, in], layout: linear|conv1d} of a "
                                                       "weight whose inputs are a multiple of 4")
    return meta


def load(path: Path | str, *, model: Any = None, trust_checkpoint_code: bool = False,
         device: Optional[torch.device | str] = None) -> nn.Module:
    """The model of an export (``model.safetensors`` or its ``model.json``), in eval mode: dense on the CPU
    (``device=None``), or on a capable CUDA ``device`` in the file's dtype with its 2:4 layers converted
    (see :func:`sparsify`). ``model`` and ``trust_checkpoint_code``: as in :func:`prunecli.checkpoint.load_model`.
    """
    from safetensors.torch import load as load_tensors

    from prunecli._masks_file import safetensors_shapes
    from prunecli.checkpoint import fit_model, model_builder, read_regular_file

    meta = load_spec(path)
    spec = spec_path(path)
    origin = Origin("semi-structured export", str(spec))
    weights = spec.parent / meta["weights"]
    data = read_regular_file(weights)
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise CheckpointError(f"{weights} is corrupt or was modified: its SHA-256 differs from {spec}")
    shapes = {k: v for k, v in safetensors_shapes(data, weights).items() if not k.endswith((VALUES, POSITIONS))}
    shapes.update({k: tuple(layer["shape"]) for k, layer in meta["layers"].items()})
    net = fit_model(model_builder(meta["model"], origin, model=model, trust_checkpoint_code=trust_checkpoint_code),
                    shapes, origin)
    try:
        tensors = load_tensors(data)
    except Exception as err:  # safetensors raises several types for a malformed file
        raise CheckpointError(f"{weights} is corrupt: {_first_line(err)}") from None
    state = unpack_state(tensors, meta, origin)
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        raise origin.error("model", f"weights do not fit the model it names: {str(err).splitlines()[0]}") from None
    net.eval()
    if device is not None and torch.device(device).type != "cpu":
        sparsify(net, meta, torch.device(device))
    return net


def load_for_evaluate(path: Path | str, *, model: Any = None,
                      trust_checkpoint_code: bool = False) -> tuple[Any, nn.Module]:
    """``(checkpoint-like record, dense model)`` for ``prunecli evaluate checkpoint=<export>.json``; the record's
    masks are the packed weights' non-zeros, so the report shows their 2:4 sparsity."""
    from prunecli.checkpoint import Checkpoint

    meta = load_spec(path)
    net = load(path, model=model, trust_checkpoint_code=trust_checkpoint_code)
    params = dict(net.named_parameters())
    masks = {key: params[key].detach() != 0 for key in meta["layers"]}
    record = Checkpoint(spec_path(path), {"model": meta["model"], "config": {"dataset": meta.get("dataset")}},
                        net.state_dict(), masks)
    return record, net
