"""Cost of a model: FLOPs and measured latency (parameter counts: :func:`prunecli.report.sparsity_report`)."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, TypeVar, Union

import torch
from torch import nn

T = TypeVar("T")
# A model's input: one tensor, or keyword tensors (``model(**inputs)``, as Hugging Face models take them).
Inputs = Union[torch.Tensor, Mapping[str, torch.Tensor]]


def call_model(model: nn.Module, inputs: Inputs) -> Any:
    """``model(**inputs)`` for keyword tensors, else ``model(inputs)``; a Hugging Face output object as its
    main tensor (:func:`main_output`)."""
    return main_output(model(**inputs) if isinstance(inputs, Mapping) else model(inputs))


# The tensor that stands for a Hugging Face ``ModelOutput``: task heads' logits, a plain encoder's hidden states.
OUTPUT_FIELDS = ("logits", "last_hidden_state")


def main_output(output: Any) -> Any:
    """``output.logits`` (or ``last_hidden_state``) of a Hugging Face ``ModelOutput``; any other output as is."""
    for name in OUTPUT_FIELDS:
        value = getattr(output, name, None)
        if isinstance(value, torch.Tensor) and not isinstance(output, torch.Tensor):
            return value
    return output


def to_device(inputs: Inputs, device: torch.device | str) -> Inputs:
    """``inputs`` (a tensor, or keyword tensors) on ``device``."""
    if isinstance(inputs, Mapping):
        return {key: value.to(device) for key, value in inputs.items()}
    return inputs.to(device)


def first_tensor(inputs: Inputs) -> torch.Tensor:
    """The input tensor (or the first of keyword tensors): its device and batch size are the inputs'."""
    return next(iter(inputs.values())) if isinstance(inputs, Mapping) else inputs


def module_flops(model: nn.Module, run: Callable[[], T]) -> tuple[int, dict[str, int], T]:
    """``(total FLOPs, FLOPs per module, run())`` of one call of ``run``, counted by
    :class:`torch.utils.flop_counter.FlopCounterMode` (FLOPs are 2 x multiply-accumulates).

    The per-module counts are keyed by the names of ``model.named_modules()`` (``""`` is ``model``) and include
    submodules. FlopCounterMode names modules from the first module called, so ``run`` must call ``model`` itself:
    modules called through a wrapper, or not at all, have no count.
    """
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        value = run()
    root = type(model).__name__
    per_module = {}
    for name, ops in counter.get_flop_counts().items():
        if name == root or name.startswith(f"{root}."):
            per_module[name[len(root) + 1:]] = int(sum(ops.values()))
    return int(counter.get_total_flops()), per_module, value


@torch.no_grad()
def count_flops(model: nn.Module, example: Inputs,
                masks: Optional[Mapping[str, torch.Tensor]] = None) -> dict[str, int]:
    """FLOPs of one eval-mode forward pass on ``example`` (:func:`module_flops`).

    ``flops`` is what dense kernels compute. ``flops_effective`` scales each masked module's FLOPs by the
    density of its weight: what a kernel that skips zeros would compute (an estimate for unstructured masks).
    """
    was_training = model.training
    model.eval()
    try:
        total, per_module, _ = module_flops(model, lambda: call_model(model, example))
    finally:
        model.train(was_training)
    saved = 0.0
    for fqn, mask in (masks or {}).items():
        module, _, name = fqn.rpartition(".")
        if name == "weight":
            saved += per_module.get(module, 0) * (1.0 - float(mask.float().mean()))
    return {"flops": total, "flops_effective": int(round(total - saved))}


@torch.inference_mode()
def measure_latency(model: nn.Module, example: Inputs, *, warmup: int = 5, repeats: int = 30) -> dict[str, float]:
    """Median and spread of the forward time in milliseconds over ``repeats`` timed passes after ``warmup``
    untimed ones, timed by :class:`torch.utils.benchmark.Timer` (it synchronises CUDA and keeps torch's thread
    count); ``latency_ms_iqr`` is the interquartile range."""
    from torch.utils import benchmark

    was_training = model.training
    model.eval()
    for _ in range(warmup):
        call_model(model, example)
    timer = benchmark.Timer(stmt="call_model(model, example)", num_threads=torch.get_num_threads(),
                            globals={"call_model": call_model, "model": model, "example": example})
    runs = benchmark.Measurement.merge([timer.timeit(1) for _ in range(max(repeats, 1))])[0]
    model.train(was_training)
    times = [t * 1e3 for t in runs.times]
    return {"latency_ms_median": runs.median * 1e3, "latency_ms_iqr": runs.iqr * 1e3, "latency_ms_min": min(times),
            "latency_ms_max": max(times), "latency_repeats": len(times),
            "latency_batch_size": first_tensor(example).shape[0]}
