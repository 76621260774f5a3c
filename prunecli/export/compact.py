"""``format=compact``: the physically smaller model, pruned channels removed, saved without pickle.

``<output>`` (safetensors) holds the compact model's state dict; ``<output stem>.json`` holds the dense model's
spec and the removal plan of :func:`prunecli.structure.compact`: ``history``, Torch-Pruning's pruning
history (``[[root layer FQN, out channels?, [indices]], ...]``), and (spec v2) ``cuts``, the slices removed by
prunecli itself (``[[parameter FQN, dim, [indices]], ...]``, dense index space: groups through LayerNorm,
GroupNorm, attention or bare parameters, and attention heads). :func:`load` rebuilds the dense model from the
spec, replays the history on the same example input (deterministic), applies the cuts (which also swap in
the counted norms and compact attention of :mod:`prunecli.structure`, rebuilt from the dense layers)
and loads the weights. v1 specs (history only) load unchanged. Removal is exact: a channel goes only when every coupled
slice of it is masked, and the export checks that the compact model's outputs equal the masked model's on
random inputs before writing anything: the largest difference relative to the outputs' scale at most
``compact.rtol`` (1e-5; float32 rounding of a deep random model's 1e7 logits differs by tens), or the absolute
difference at most ``compact.atol`` (1e-6, for outputs near zero).

The spec is data (see :mod:`prunecli.models.spec`): loading calls only registered builders, reads the weights
only from the spec's own directory, and checks the plan's shapes and names before replaying it. The spec's
``sha256`` detects a damaged weights file; it proves nothing about who wrote the pair.
"""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from prunecli._atomic import json_bytes, staged
from prunecli._checks import known_keys, number
from prunecli.errors import CheckpointError, ConfigError, first_line
from prunecli.export.dense import read_spec, spec_format, spec_path
from prunecli.metrics import Inputs, call_model, to_device
from prunecli.models.spec import Origin, short

SUFFIX = ".safetensors"
FORMAT = "prunecli-compact"
VERSION = 2
RTOL = 1e-5
ATOL = 1e-6


def _example(spec: dict[str, Any], batch: int) -> Inputs:
    """The spec's task's example inputs of ``batch`` samples (seed 0: a replay traces what the export traced)."""
    from prunecli.tasks import task_of

    return task_of(spec).example_inputs(spec, batch)


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``compact.rtol`` (finite, >= 0; default 1e-5): how far compact and masked outputs may differ relative to
    the outputs' scale (max |difference| / max |masked output|); ``compact.atol`` (default 1e-6): an absolute
    difference that always passes (outputs near zero have no scale)."""
    known_keys("compact", options, ("atol", "rtol"))
    return {"atol": number("compact.atol", options.get("atol", ATOL), 0.0),
            "rtol": number("compact.rtol", options.get("rtol", RTOL), 0.0)}


def check_exact(model_name: str, diff: float, scale: float, atol: float, rtol: float) -> float:
    """The relative difference ``diff / scale``; a :class:`ConfigError` naming both numbers when it is above
    ``rtol`` and ``diff`` above ``atol``."""
    relative = diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))
    if not (relative <= rtol or diff <= atol):
        raise ConfigError("format", "compact", f"a model whose masked and compacted outputs agree within "
                          f"compact.rtol={rtol:g} of their scale",
                          reason=f"they differ by {diff:.3g} at an output scale of {scale:.3g} (relative "
                                 f"{relative:.3g}): an op in {model_name} mixes pruned channels into kept ones; "
                                 "use format=dense")
    return relative


def export(model: nn.Module, checkpoint: Any, output: Path, options: dict[str, Any]) -> dict[str, Any]:
    from safetensors.torch import save

    from prunecli.checkpoint import fold_masks
    from prunecli.export.dense import spec_beside
    from prunecli.structure import compact, output_gap

    opts = check_options(options)
    spec_path = spec_beside(output)
    model = model.eval()
    example = _example(checkpoint.spec, 2)
    small = copy.deepcopy(model)
    plan = compact(small, checkpoint.masks, _example(checkpoint.spec, 1))
    if not plan["history"] and not plan["cuts"]:
        raise ConfigError("format", "compact", "a run pruned with pruner.target=channel or head",
                          reason="its masks remove no whole channel or head, so nothing would shrink; "
                                 "use format=dense")
    with torch.no_grad():
        reference = call_model(model, example)
        try:
            compacted = call_model(small, example)
        except Exception as err:  # e.g. a reshape whose channel count the forward reads from another tensor
            raise ConfigError("format", "compact", "a model whose compacted forward runs",
                              reason=f"the compact {type(model).__name__} fails: {type(err).__name__}: "
                                     f"{first_line(err)} (its forward may reshape to a channel count it reads "
                                     "from another tensor); use format=dense") from None
        diff, scale = output_gap(reference, compacted)
    relative = check_exact(type(model).__name__, diff, scale, opts["atol"], opts["rtol"])
    data = save(fold_masks(small.state_dict(), {}))  # own copies: tied weights (GPT-2's lm_head) share memory
    params = (sum(p.numel() for p in model.parameters()), sum(p.numel() for p in small.parameters()))
    spec = {"format": FORMAT, "version": VERSION, "weights": output.name,
            "model": checkpoint.spec, "history": plan["history"], "cuts": plan["cuts"],
            "dataset": checkpoint.meta.get("config", {}).get("dataset"),
            "sha256": hashlib.sha256(data).hexdigest(), "source": str(checkpoint.path),
            "params_dense": params[0], "params_compact": params[1], "max_abs_diff": diff,
            "output_scale": scale, "max_rel_diff": relative}
    with staged(output, spec_path) as (tmp_weights, tmp_spec):
        tmp_weights.write_bytes(data)
        tmp_spec.write_bytes(json_bytes(spec))
    return {"spec": str(spec_path), "bytes": len(data), "params_dense": params[0], "params_compact": params[1],
            "max_abs_diff": diff, "output_scale": scale, "max_rel_diff": relative, **opts}


def is_compact(path: Path | str) -> bool:
    """Whether ``path`` names a compact export (its JSON spec says so)."""
    return spec_format(path) == FORMAT


def load_spec(path: Path | str) -> dict[str, Any]:
    """The JSON spec of a compact export, checked: every field has the type and shape :func:`export` writes.

    ``weights`` must be a bare file name (it is read from the spec's own directory); ``history`` and ``cuts``
    lists of ``[FQN, bool, [indices]]`` and ``[FQN, dim, [indices]]``. Anything else is a :class:`CheckpointError`.
    """
    meta, origin = read_spec(path, FORMAT, VERSION, "compact export")
    meta.setdefault("cuts", [])
    _check_plan_shape(meta.get("history"), "history", bool, origin)
    _check_plan_shape(meta["cuts"], "cuts", int, origin)
    return meta


def load(path: Path | str, *, model: Any = None, trust_checkpoint_code: bool = False) -> nn.Module:
    """The compact model of an export (``model.safetensors`` or its ``model.json``), in eval mode.

    ``model`` (your own config node) and ``trust_checkpoint_code`` are as in
    :func:`prunecli.checkpoint.load_model`; by default the spec's model must name a registered builder. The
    weights are hash-checked (integrity against damage, not proof of who wrote them), then the rebuilt model's
    shapes are compared with their header on the meta device before anything is allocated.
    """
    from safetensors.torch import load as load_tensors

    from prunecli._masks_file import safetensors_shapes
    from prunecli.checkpoint import fit_model, model_builder, read_regular_file
    from prunecli.structure import replay

    meta = load_spec(path)
    spec = spec_path(path)
    origin = Origin("compact export", str(spec))
    weights = spec.parent / meta["weights"]
    if weights.resolve().parent != spec.parent.resolve():
        raise origin.error(f"weights={short(meta['weights'])}", "is a link out of the spec's directory")
    data = read_regular_file(weights)
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise CheckpointError(f"{weights} is corrupt or was modified: its SHA-256 differs from {spec}")
    shapes = safetensors_shapes(data, weights)
    plan = {"history": meta["history"], "cuts": meta["cuts"]}
    example = _example(meta["model"], 1)

    def compacted(dense: nn.Module, device: torch.device) -> nn.Module:
        _check_plan_names(dense, plan, origin)
        try:
            return replay(dense.eval(), plan, to_device(example, device))
        except (CheckpointError, ConfigError):
            raise
        except Exception as err:  # Torch-Pruning and the cuts raise many types for a plan of another model
            line = str(err).splitlines()[0] if str(err) else repr(err)
            raise origin.error("history/cuts", f"do not fit the model it names: {line}") from None

    small = fit_model(model_builder(meta["model"], origin, model=model, trust_checkpoint_code=trust_checkpoint_code),
                      shapes, origin, then=compacted)
    try:
        small.load_state_dict(load_tensors(data))
    except Exception as err:  # safetensors raises several types for a malformed file
        raise CheckpointError(f"{weights}: weights do not load into the rebuilt compact model: "
                              f"{first_line(err)}") from None
    return small.eval()


def load_for_evaluate(path: Path | str, *, model: Any = None,
                      trust_checkpoint_code: bool = False) -> tuple[Any, nn.Module]:
    """``(checkpoint-like record, model)`` for ``prunecli evaluate checkpoint=<compact export>`` (no masks)."""
    from prunecli.checkpoint import Checkpoint

    meta = load_spec(path)
    small = load(path, model=model, trust_checkpoint_code=trust_checkpoint_code)
    record = Checkpoint(spec_path(path), {"model": meta["model"], "config": {"dataset": meta.get("dataset")},
                                          "params_dense": meta.get("params_dense")}, small.state_dict(), {})
    return record, small


def _check_plan_shape(entries: Any, key: str, second: type, origin: Origin) -> None:
    """``entries`` is a list of ``[str, second, [int >= 0, ...]]`` (``second`` bool for history, int for cuts)."""
    if not isinstance(entries, list):
        raise origin.error(key, "is not a list")
    for i, entry in enumerate(entries):
        ok = (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], str)
              and isinstance(entry[1], second) and (second is bool or not isinstance(entry[1], bool))
              and isinstance(entry[2], list)
              and all(isinstance(j, int) and not isinstance(j, bool) and j >= 0 for j in entry[2]))
        if not ok:
            shape = "[layer FQN, true|false, [indices]]" if second is bool else "[parameter FQN, dim, [indices]]"
            raise origin.error(f"{key}[{i}]", f"is not {shape}")


def _check_plan_names(dense: nn.Module, plan: dict[str, list], origin: Origin) -> None:
    """Every name the plan touches is a module (history) or parameter (cuts) of the dense model, in range."""
    modules = dict(dense.named_modules())
    params = dict(dense.named_parameters())
    for i, (name, _, _) in enumerate(plan["history"]):
        if name not in modules:
            raise origin.error(f"history[{i}]", f"names {name[:80]!r}, which is not a layer of the model")
    for i, (name, dim, idxs) in enumerate(plan["cuts"]):
        param = params.get(name)
        if param is None or not 0 <= dim < param.dim() or any(j >= param.shape[dim] for j in idxs):
            raise origin.error(f"cuts[{i}]", f"names {name[:80]!r} dim {dim}, which is not a parameter slice "
                                             "of the model")
