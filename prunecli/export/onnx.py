"""``format=onnx``: an ONNX graph with a dynamic batch axis, checked against PyTorch with onnxruntime.

Uses the TorchScript exporter (``dynamo=False``): it needs no extra package (the dynamo exporter needs
onnxscript) and handles the CNNs prunecli builds. Zeros of pruned weights are stored as they are.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from prunecli._atomic import write_bytes

SUFFIX = ".onnx"


def export(model: nn.Module, checkpoint: Any, output: Path, options: dict[str, Any]) -> dict[str, Any]:
    from prunecli.metrics import example_input

    example = example_input(checkpoint.spec, int(options.get("batch_size", 2)))
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=int(options.get("opset", 17)),
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    write_bytes(output, buffer.getvalue())
    diff = max_abs_diff(model, output, example)
    atol = float(options.get("atol", 1e-4))
    return {"max_abs_diff": diff, "atol": atol, "match": diff <= atol, "opset": int(options.get("opset", 17))}


@torch.no_grad()
def max_abs_diff(model: nn.Module, path: Path, example: torch.Tensor) -> float:
    """Largest absolute difference between PyTorch's and onnxruntime's outputs on ``example``."""
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (ours,) = session.run(None, {"input": example.numpy()})
    return float((torch.from_numpy(ours) - model(example)).abs().max())
