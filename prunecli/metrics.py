"""Cost of a model: FLOPs and measured latency (parameter counts: :func:`prunecli.report.sparsity_report`)."""

from __future__ import annotations

from typing import Callable, Mapping, Optional, TypeVar

import torch
from torch import nn


T = TypeVar("T")


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
def count_flops(model: nn.Module, example: torch.Tensor,
                masks: Optional[Mapping[str, torch.Tensor]] = None) -> dict[str, int]:
    """FLOPs of one eval-mode forward pass on ``example`` (:func:`module_flops`).

    ``flops`` is what dense kernels compute. ``flops_effective`` scales each masked module's FLOPs by the
    density of its weight: what a kernel that skips zeros would compute (an estimate for unstructured masks).
    """
    was_training = model.training
    model.eval()
    try:
        total, per_module, _ = module_flops(model, lambda: model(example))
    finally:
        model.train(was_training)
    saved = 0.0
    for fqn, mask in (masks or {}).items():
        module, _, name = fqn.rpartition(".")
        if name == "weight":
            saved += per_module.get(module, 0) * (1.0 - float(mask.float().mean()))
    return {"flops": total, "flops_effective": int(round(total - saved))}


@torch.inference_mode()
def measure_latency(model: nn.Module, example: torch.Tensor, *, warmup: int = 5, repeats: int = 30) -> dict[str, float]:
    """Median and spread of the forward time in milliseconds over ``repeats`` timed passes after ``warmup``
    untimed ones, timed by :class:`torch.utils.benchmark.Timer` (it synchronises CUDA and keeps torch's thread
    count); ``latency_ms_iqr`` is the interquartile range."""
    from torch.utils import benchmark

    was_training = model.training
    model.eval()
    for _ in range(warmup):
        model(example)
    timer = benchmark.Timer(stmt="model(example)", globals={"model": model, "example": example},
                            num_threads=torch.get_num_threads())
    runs = benchmark.Measurement.merge([timer.timeit(1) for _ in range(max(repeats, 1))])[0]
    model.train(was_training)
    times = [t * 1e3 for t in runs.times]
    return {"latency_ms_median": runs.median * 1e3, "latency_ms_iqr": runs.iqr * 1e3, "latency_ms_min": min(times),
            "latency_ms_max": max(times), "latency_repeats": len(times), "latency_batch_size": example.shape[0]}


def example_input(spec: Mapping, batch_size: int = 1, device: torch.device | str = "cpu",
                  seed: int = 0) -> torch.Tensor:
    """A random input of the model's shape ``(batch, in_channels, H, W)`` from a checkpoint's model spec."""
    size = spec["image_size"]
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, spec["in_channels"], h, w, generator=g).to(device)
