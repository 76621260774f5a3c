"""``format=onnx``: an ONNX graph with a dynamic batch axis, checked against PyTorch with onnxruntime.

An image model takes ``input`` ``[batch, C, H, W]``; a text model (keyword inputs) takes ``input_ids`` (and
``attention_mask`` when its task's batches have one) ``[batch, sequence]``, both axes dynamic, and returns
``logits``; a Hugging Face model is traced with eager attention.

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
from prunecli.metrics import Inputs, call_model

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
    from prunecli.models.hf import for_export, is_hf_model
    from prunecli.tasks import task_of

    opts = check_options(options)
    example = task_of(checkpoint.spec).example_inputs(checkpoint.spec, opts["batch_size"])
    graph = Graph.of(for_export(model), example, sequence_axis=is_hf_model(model))
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
            torch.onnx.export(graph.module, graph.args, buffer, dynamo=False, opset_version=opts["opset"],
                              input_names=graph.names, output_names=["logits"], dynamic_axes=graph.axes)
    except torch.onnx.errors.OnnxExporterError as err:
        raise ConfigError("onnx.opset", opts["opset"], "an opset that has every op of the model",
                          reason=str(err).splitlines()[0] if str(err) else type(err).__name__) from None
    with staged(output) as (tmp,):
        tmp.write_bytes(buffer.getvalue())
        diff = graph_diff(graph, tmp, output)
        if not diff <= opts["atol"]:
            raise ConfigError("onnx.atol", opts["atol"], f"a tolerance >= {diff:.3g}",
                              reason=f"ONNX outputs differ from PyTorch by {diff:.3g}; {output} was not written")
    return {"max_abs_diff": diff, "atol": opts["atol"], "match": True, "opset": opts["opset"],
            "inputs": graph.names}


class Graph:
    """What is traced: the model and its example as positional tensors, with the ONNX names and dynamic axes.

    One tensor (an image classifier) is the input ``input`` with a dynamic batch axis. Keyword tensors (a text
    model's ``input_ids`` and ``attention_mask``) become inputs of those names, in the example's order; the model
    is wrapped so the graph returns its logits tensor (a Hugging Face model returns an output object). The batch
    axis is dynamic; the sequence axis too with ``sequence_axis`` (Hugging Face models trace their masks and
    positions from the input's shape; ``nn.MultiheadAttention`` bakes its shapes in, so tiny_lm keeps seq_len).
    """

    def __init__(self, module: nn.Module, names: list[str], args: tuple[torch.Tensor, ...], sequence_axis: bool):
        self.module, self.names, self.args, self.sequence_axis = module, names, args, sequence_axis
        axes = {0: "batch", 1: "sequence"} if sequence_axis else {0: "batch"}
        self.axes = {name: axes if arg.dim() > 1 else {0: "batch"} for name, arg in zip(names, args)}
        self.axes["logits"] = axes

    @classmethod
    def of(cls, model: nn.Module, example: Inputs, sequence_axis: bool = False) -> "Graph":
        if isinstance(example, torch.Tensor):
            return cls(model, ["input"], (example,), False)
        names = list(example)
        return cls(KeywordInputs(model, names).eval(), names, tuple(example[name] for name in names), sequence_axis)

    def checks(self) -> list[tuple[torch.Tensor, ...]]:
        """The example, then its first sample (cut to half its length with a dynamic sequence axis): the dynamic
        axes are checked too."""
        length = max(self.args[0].shape[1] // 2, 2) if self.sequence_axis else None
        first = tuple(arg[:1, :length] if length and arg.dim() > 1 else arg[:1] for arg in self.args)
        return [self.args, first]

    def feeds(self, args: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        return dict(zip(self.names, args))


class KeywordInputs(nn.Module):
    """``model(**dict(zip(names, args)))`` as its main output tensor (a Hugging Face output's ``logits``)."""

    def __init__(self, model: nn.Module, names: list[str]):
        super().__init__()
        self.model, self.names = model, names

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return call_model(self.model, dict(zip(self.names, args)))


def graph_diff(graph: Graph, path: Path, output: Path) -> float:
    """:func:`max_abs_diff` over the graph's checks; a graph onnxruntime cannot run on them is a
    :class:`ConfigError` (a shape the trace baked in: ``output`` was not written)."""
    try:
        return max(max_abs_diff(graph.module, path, graph.feeds(part)) for part in graph.checks())
    except Exception as err:  # onnxruntime's Fail, InvalidArgument ...
        line = next((part.strip() for part in str(err).splitlines() if part.strip()), type(err).__name__)
        raise ConfigError("format", "onnx", "a model whose traced graph runs on other batch sizes",
                          reason=f"onnxruntime: {line[:200]}; {output} was not written") from None


@torch.no_grad()
def max_abs_diff(module: nn.Module, path: Path, feeds: dict[str, torch.Tensor]) -> float:
    """Largest absolute difference between PyTorch's and onnxruntime's outputs on ``feeds`` (input name: tensor)."""
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (ours,) = session.run(None, {name: value.numpy() for name, value in feeds.items()})
    return float((torch.from_numpy(ours) - module(*feeds.values())).abs().max())
