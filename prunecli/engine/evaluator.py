"""The evaluator the engine hands to searched allocations (:mod:`prunecli.allocation.search`): the negative mean
loss of the run's task on the first ``eval_batches`` batches of the validation loader (higher is better), in eval
mode and without gradients."""

from __future__ import annotations

from collections.abc import Mapping
from itertools import islice
from typing import Any, Callable, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from prunecli.engine.evaluation import evaluate
from prunecli.tasks import Task

DEFAULT_BATCHES = 4


def loader_evaluator(task: Task, loader: DataLoader, device: torch.device, amp: Optional[torch.dtype] = None,
                     batches: int = DEFAULT_BATCHES) -> Callable[[nn.Module], float]:
    """``evaluator(model) -> -loss`` over the first ``batches`` batches of ``loader`` (train mode restored)."""

    def evaluator(model: nn.Module) -> float:
        return -evaluate(task, model, islice(loader, batches), device, amp)["loss"]

    return evaluator


def run_evaluator(run: Any) -> Callable[[nn.Module], float]:
    """The engine's evaluator for a :class:`prunecli.engine.setup.Run`; ``pruner.allocation.eval_batches``
    (default 4) sets how many validation batches one evaluation reads."""
    allocation = run.cfg.pruner.get("allocation")
    # the allocation is a short name (no options) or a mapping that may set eval_batches
    batches = allocation.get("eval_batches", DEFAULT_BATCHES) if isinstance(allocation, Mapping) else DEFAULT_BATCHES
    return loader_evaluator(run.task, run.val_loader, run.device, run.amp, int(batches))
