"""``format=onnx``: an ONNX graph with a dynamic batch axis, checked against PyTorch with onnxruntime.

Uses the TorchScript exporter (``dynamo=False``): it needs no extra package (the dynamo exporter needs
onnxscript) and handles the CNNs prunecli builds. Zeros of pruned weights are stored as they are. The graph
is written to a temp file beside ``output`` and renamed over it only once onnxruntime's outputs match.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from prunecli._atomic import staged
from prunecli._checks import integer, known_keys, number
from prunecli.errors import ConfigError

SUFFIX = ".onnx"
# The TorchScript exporter's opsets (torch.onnx._constants ONNX_MIN_OPSET .. ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
# in torch 2.13); above 20 it only warns that the opset is unsupported.
OPSETS = (7, 20)
DEFAULTS = {"opset": 17, "batch_size": 2, "atol": 1e-4}


def check_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """``onnx.opset`` in :data:`OPSETS`, ``onnx.batch_size`` >= 1, ``onnx.atol`` finite >= 0 (defaults filled)."""
    known_keys("onnx", options, DEFAULTS)
    given = {**DEFAULTS, **options}
    return {"opset": integer("onnx.opset", given["opset"], *OPSETS),
            "batch_size": integer("onnx.batch_size", given["batch_size"], 1),
            "atol": number("onnx.atol", given["atol"], 0.0)}


def export(model: nn.Module, checkpoint: Any, output: Path, options: dict[str, Any]) -> dict[str, Any]:
    from prunecli.tasks import task_of

    opts = check_options(options)
    example = task_of(checkpoint.spec).example_inputs(checkpoint.spec, opts["batch_size"])
    if not isinstance(example, torch.Tensor):
        raise ConfigError("format", "onnx", "a model whose input is one tensor (an image classifier)",
                          reason="keyword inputs are not exported to ONNX yet; use format=dense")
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=opts["opset"],
                              input_names=["input"], output_names=["logits"],
                              dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    except torch.onnx.errors.OnnxExporterError as err:
        raise ConfigError("onnx.opset", opts["opset"], "an opset that has every op of the model",
                          reason=str(err).splitlines()[0] if str(err) else type(err).__name__) from None
    with staged(output) as (tmp,):
        tmp.write_bytes(buffer.getvalue())
        diff = max_abs_diff(model, tmp, example)
        if not diff <= opts["atol"]:
            raise ConfigError("onnx.atol", opts["atol"], f"a tolerance >= {diff:.3g}",
                              reason=f"ONNX outputs differ from PyTorch by {diff:.3g}; {output} was not written")
    return {"max_abs_diff": diff, "atol": opts["atol"], "match": True, "opset": opts["opset"]}


@torch.no_grad()
def max_abs_diff(model: nn.Module, path: Path, example: torch.Tensor) -> float:
    """Largest absolute difference between PyTorch's and onnxruntime's outputs on ``example``."""
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (ours,) = session.run(None, {"input": example.numpy()})
    return float((torch.from_numpy(ours) - model(example)).abs().max())
