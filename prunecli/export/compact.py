"""``format=compact``: the physically smaller model, pruned channels removed, saved without pickle.

``<output>`` (safetensors) holds the compact model's state dict; ``<output stem>.json`` holds the dense model's
spec and the removal plan of :func:`prunecli.targets._coupled.compact`: ``history``, Torch-Pruning's pruning
history (``[[root layer FQN, out channels?, [indices]], ...]``), and (spec v2) ``cuts``, the slices removed by
prunecli itself (``[[parameter FQN, dim, [indices]], ...]``, dense index space: groups through LayerNorm,
GroupNorm, attention or bare parameters, and attention heads). :func:`load` rebuilds the dense model from the
spec, replays the history on the same example input (deterministic), applies the cuts (which also swap in
the counted norms and compact attention of :mod:`prunecli.export._modules`, rebuilt from the dense layers)
and loads the weights. v1 specs (history only) load unchanged. Removal is exact: a channel goes only when every coupled
slice of it is masked, and the export checks that the compact model's outputs equal the masked model's on
random inputs (``atol``, default 1e-4) before writing anything.
"""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from prunecli._atomic import json_bytes, staged
from prunecli._checks import known_keys, number
from prunecli.errors import CheckpointError, ConfigError

SUFFIX = ".safetensors"
FORMAT = "prunecli-compact"
VERSION = 2


def _example(spec: dict[str, Any], batch: int) -> torch.Tensor:
    from prunecli.metrics import example_input

    return example_input(spec, batch)


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``compact.atol`` (finite, >= 0; default 1e-4): how far compact and masked outputs may differ."""
    known_keys("compact", options, ("atol",))
    return {"atol": number("compact.atol", options.get("atol", 1e-4), 0.0)}


def export(model: nn.Module, checkpoint: Any, output: Path, options: dict[str, Any]) -> dict[str, Any]:
    from safetensors.torch import save

    from prunecli.export.dense import spec_beside
    from prunecli.targets._coupled import compact

    atol = check_options(options)["atol"]
    spec_path = spec_beside(output)
    model = model.eval()
    example = _example(checkpoint.spec, 2)
    small = copy.deepcopy(model)
    plan = compact(small, checkpoint.masks, example[:1])
    if not plan["history"] and not plan["cuts"]:
        raise ConfigError("format", "compact", "a run pruned with pruner.target=channel or head",
                          reason="its masks remove no whole channel or head, so nothing would shrink; "
                                 "use format=dense")
    with torch.no_grad():
        diff = float((small(example) - model(example)).abs().max())
    if not diff <= atol:
        raise ConfigError("format", "compact", f"a model whose masked and compacted outputs agree within {atol}",
                          reason=f"they differ by {diff:.3g}: an op in {type(model).__name__} mixes pruned "
                                 "channels into kept ones; use format=dense")
    data = save({k: v.detach().cpu().contiguous() for k, v in small.state_dict().items()})
    params = (sum(p.numel() for p in model.parameters()), sum(p.numel() for p in small.parameters()))
    spec = {"format": FORMAT, "version": VERSION, "weights": output.name,
            "model": checkpoint.spec, "history": plan["history"], "cuts": plan["cuts"],
            "dataset": checkpoint.meta.get("config", {}).get("dataset"),
            "sha256": hashlib.sha256(data).hexdigest(), "source": str(checkpoint.path),
            "params_dense": params[0], "params_compact": params[1], "max_abs_diff": diff}
    with staged(output, spec_path) as (tmp_weights, tmp_spec):
        tmp_weights.write_bytes(data)
        tmp_spec.write_bytes(json_bytes(spec))
    return {"spec": str(spec_path), "bytes": len(data), "params_dense": params[0], "params_compact": params[1],
            "max_abs_diff": diff, "atol": atol}


def spec_path(path: Path | str) -> Path:
    """The JSON spec of a compact export given the export's ``.safetensors`` or ``.json`` path."""
    return Path(path).expanduser().with_suffix(".json")


def is_compact(path: Path | str) -> bool:
    """Whether ``path`` names a compact export (its JSON spec says so)."""
    spec = spec_path(path)
    if not spec.is_file() or Path(path).is_dir():
        return False
    try:
        return json.loads(spec.read_text()).get("format") == FORMAT
    except (OSError, ValueError):
        return False


def load_spec(path: Path | str) -> dict[str, Any]:
    """The JSON spec of a compact export, checked."""
    spec = spec_path(path)
    try:
        meta = json.loads(spec.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{spec} is unreadable: {err}") from None
    if meta.get("format") != FORMAT or meta.get("version", 0) > VERSION:
        raise CheckpointError(f"{spec} is not a {FORMAT} spec of version {VERSION} or older")
    return meta


def load(path: Path | str) -> nn.Module:
    """The compact model of an export (``model.safetensors`` or its ``model.json``), in eval mode."""
    from safetensors.torch import load as load_tensors

    from prunecli.checkpoint import model_from_spec
    from prunecli.targets._coupled import replay

    meta = load_spec(path)
    spec = spec_path(path)
    weights = spec.parent / meta.get("weights", spec.with_suffix(SUFFIX).name)   # beside the spec, as written
    try:
        data = weights.read_bytes()
    except OSError:
        raise CheckpointError(f"{weights} is missing") from None
    if hashlib.sha256(data).hexdigest() != meta["sha256"]:
        raise CheckpointError(f"{weights} is corrupt or was modified: its SHA-256 differs from {spec_path(path)}")
    plan = {"history": meta["history"], "cuts": meta.get("cuts", [])}
    try:
        model = replay(model_from_spec(meta["model"]).eval(), plan, _example(meta["model"], 1))
    except (AttributeError, IndexError, KeyError, TypeError) as err:
        raise CheckpointError(f"{spec}: its removal plan does not fit the model it names: {err}") from None
    try:
        model.load_state_dict(load_tensors(data))
    except RuntimeError as err:
        raise CheckpointError(f"{weights}: weights do not fit the rebuilt compact model: "
                              f"{str(err).splitlines()[0]}") from None
    return model.eval()


def load_for_evaluate(path: Path | str) -> tuple[Any, nn.Module]:
    """``(checkpoint-like record, model)`` for ``prunecli evaluate checkpoint=<compact export>`` (no masks)."""
    from prunecli.checkpoint import Checkpoint

    meta = load_spec(path)
    model = load(path)
    record = Checkpoint(spec_path(path), {"model": meta["model"], "config": {"dataset": meta["dataset"]}},
                        model.state_dict(), {})
    return record, model
