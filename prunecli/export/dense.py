"""``format=dense``: the weights (masks folded in) as safetensors, and the model spec beside them as JSON.

``<output>`` holds the state dict; ``<output stem>.json`` holds the model spec (what
:func:`prunecli.checkpoint.load_model` needs), the sparsity report and the tensors' SHA-256. Both are
written to temp files and renamed into place together, or not at all.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

from torch import nn

from prunecli._atomic import json_bytes, staged
from prunecli._checks import known_keys
from prunecli.errors import CheckpointError, ConfigError
from prunecli.models.spec import Origin, check_spec, short

SUFFIX = ".safetensors"


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``format=dense`` takes no options."""
    known_keys("dense", options, ())
    return {}


def spec_beside(output: Path) -> Path:
    """``<output stem>.json``, the spec written beside ``output``; an ``output`` that is that path is refused."""
    spec = output.with_suffix(".json")
    if spec == output:
        raise ConfigError("output", str(output), "a path not ending in .json",
                          reason="the model spec is written beside the weights as <stem>.json")
    return spec


def spec_path(path: Path | str) -> Path:
    """The JSON spec of an export given its ``.safetensors`` or ``.json`` path."""
    return Path(path).expanduser().with_suffix(".json")


def spec_format(path: Path | str) -> str | None:
    """The ``format`` an export's JSON spec names (compact, semi-structured ...), or None for anything else."""
    spec = spec_path(path)
    if not spec.is_file() or Path(path).is_dir():
        return None
    try:
        meta = json.loads(spec.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return meta.get("format") if isinstance(meta, dict) else None


def read_spec(path: Path | str, fmt: str, version: int, label: str) -> tuple[dict[str, Any], Origin]:
    """An export's JSON spec and its :class:`Origin`, with the fields every format writes checked: ``format``
    is ``fmt``, a supported ``version``, ``weights`` a bare file name beside the spec (default
    ``<stem>.safetensors``), ``sha256`` present, ``model`` a valid spec, ``dataset`` a mapping or null.

    Raises:
        CheckpointError: Any of them is not what an export writes.
    """
    from prunecli.checkpoint import check_version, read_json

    spec = spec_path(path)
    meta = read_json(spec)
    origin = Origin(label, str(spec))
    if not isinstance(meta, dict) or meta.get("format") != fmt:
        raise CheckpointError(f"{spec} is not a {fmt} spec")
    check_version(meta.get("version", 1), version, origin)
    meta.setdefault("weights", spec.with_suffix(SUFFIX).name)
    name = meta["weights"]
    if not isinstance(name, str) or not name or name in (".", "..") or "/" in name or "\\" in name \
            or Path(name).is_absolute() or Path(name).name != name:
        raise origin.error(f"weights={short(name)}", "is not a bare file name beside the spec")
    if not isinstance(meta.get("sha256"), str):
        raise origin.error("sha256", "is missing: expected the SHA-256 of the weights file")
    check_spec(meta.get("model"), origin)
    if meta.get("dataset") is not None and not isinstance(meta["dataset"], dict):
        raise origin.error("dataset", "is not a mapping: expected the dataset node or null")
    return meta, origin


def export(model: nn.Module, checkpoint: Any, output: Path, options: dict[str, Any]) -> dict[str, Any]:
    from safetensors.torch import save

    from prunecli.checkpoint import fold_masks

    check_options(options)
    spec_path = spec_beside(output)
    data = save(fold_masks(model.state_dict(), checkpoint.masks))
    spec = {"model": checkpoint.spec, "sparsity": checkpoint.meta.get("sparsity"),
            "sha256": hashlib.sha256(data).hexdigest(), "source": str(checkpoint.path)}
    with staged(output, spec_path) as (tmp_weights, tmp_spec):
        tmp_weights.write_bytes(data)
        tmp_spec.write_bytes(json_bytes(spec))
    return {"spec": str(spec_path), "bytes": len(data)}
