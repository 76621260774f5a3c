"""``format=dense``: the weights (masks folded in) as safetensors, and the model spec beside them as JSON.

``<output>`` holds the state dict; ``<output stem>.json`` holds the model spec (what
:func:`prunecli.checkpoint.build_model` needs), the sparsity report and the tensors' SHA-256.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from torch import nn

from prunecli._atomic import write_bytes, write_json

SUFFIX = ".safetensors"


def export(model: nn.Module, checkpoint: Any, output: Path, options: dict[str, Any]) -> dict[str, Any]:
    from safetensors.torch import save

    from prunecli.checkpoint import fold_masks

    data = save(fold_masks(model.state_dict(), checkpoint.masks))
    write_bytes(output, data)
    spec_path = output.with_suffix(".json")
    write_json(spec_path, {"model": checkpoint.spec, "sparsity": checkpoint.meta.get("sparsity"),
                           "sha256": hashlib.sha256(data).hexdigest(), "source": str(checkpoint.path)})
    return {"spec": str(spec_path), "bytes": len(data)}
