"""Evaluation of a model on a loader: the task's metrics (:mod:`prunecli.tasks`) over every batch."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping, Optional

import torch
from torch import nn

from prunecli.engine.runtime import autocast
from prunecli.tasks import Task


@torch.no_grad()
def evaluate(task: Task, model: nn.Module, loader: Iterable[Any], device: torch.device,
             amp: Optional[torch.dtype] = None,
             reduce: Optional[Callable[[dict[str, float]], dict[str, float]]] = None) -> dict[str, float]:
    """``{**task.metrics(sums), "samples": n}`` over ``loader`` in eval mode (image classification: mean
    cross-entropy ``loss`` and top-1 ``accuracy``); restores train mode. ``reduce`` combines the sums of all
    ranks' loaders before the metrics (:func:`prunecli.engine.ranks.sum_over_ranks`)."""
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    for batch in loader:
        batch = task.to_device(batch, device)
        with autocast(device, amp):
            sums = task.evaluation_step(model, batch)
        for key, value in sums.items():
            totals[key] = totals.get(key, 0) + (value.item() if isinstance(value, torch.Tensor) else value)
    model.train(was_training)
    if reduce is not None:
        totals = reduce(totals)
    return {**task.metrics(totals), "samples": int(totals.get("samples", 0))}


def describe(task: Task, metrics: Mapping[str, float]) -> str:
    """``accuracy 0.9000, loss 0.3000``: the task's score first, then its other metrics (for log lines)."""
    names = [task.score, *(k for k in task.metrics({}) if k != task.score)]
    return ", ".join(f"{name} {metrics[name]:.4f}" for name in names if name in metrics)
