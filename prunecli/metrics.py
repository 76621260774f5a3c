"""Cost of a model: FLOPs and measured latency (parameter counts: :func:`prunecli.report.sparsity_report`)."""

from __future__ import annotations

import statistics
import time
from typing import Mapping, Optional

import torch
from torch import nn


@torch.no_grad()
def count_flops(model: nn.Module, example: torch.Tensor,
                masks: Optional[Mapping[str, torch.Tensor]] = None) -> dict[str, int]:
    """FLOPs of one forward pass on ``example``, counted by :class:`torch.utils.flop_counter.FlopCounterMode`.

    ``flops`` is what dense kernels compute. ``flops_effective`` scales each masked module's FLOPs by the
    density of its weight: what a kernel that skips zeros would compute (an estimate for unstructured masks).
    """
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter:
        model(example)
    model.train(was_training)
    total = int(counter.get_total_flops())
    per_module = counter.get_flop_counts()
    root = type(model).__name__
    saved = 0.0
    for fqn, mask in (masks or {}).items():
        module, _, name = fqn.rpartition(".")
        if name != "weight":
            continue
        flops = sum(per_module.get(f"{root}.{module}" if module else root, {}).values())
        saved += flops * (1.0 - float(mask.float().mean()))
    return {"flops": total, "flops_effective": int(round(total - saved))}


@torch.inference_mode()
def measure_latency(model: nn.Module, example: torch.Tensor, *, warmup: int = 5, repeats: int = 30) -> dict[str, float]:
    """Median and spread of wall-clock forward time in milliseconds, after ``warmup`` untimed passes."""
    was_training = model.training
    model.eval()
    sync = torch.cuda.synchronize if example.device.type == "cuda" else (lambda: None)
    times = []
    with torch.no_grad():  # inference time: no autograd graph
        for _ in range(warmup):
            model(example)
        sync()
        for _ in range(max(repeats, 1)):
            start = time.perf_counter()
            model(example)
            sync()
            times.append((time.perf_counter() - start) * 1e3)
    model.train(was_training)
    return {"latency_ms_median": statistics.median(times), "latency_ms_min": min(times),
            "latency_ms_max": max(times), "latency_repeats": len(times), "latency_batch_size": example.shape[0]}


def example_input(spec: Mapping, batch_size: int = 1, device: torch.device | str = "cpu",
                  seed: int = 0) -> torch.Tensor:
    """A random input of the model's shape ``(batch, in_channels, H, W)`` from a checkpoint's model spec."""
    size = spec["image_size"]
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch_size, spec["in_channels"], h, w, generator=g).to(device)
