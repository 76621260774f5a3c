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
from prunecli.errors import ConfigError

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
