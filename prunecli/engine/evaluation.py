"""Evaluation of a classifier: mean cross-entropy loss and top-1 accuracy over a loader."""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from prunecli.engine.runtime import autocast


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, device: torch.device,
             amp: Optional[torch.dtype] = None) -> dict[str, float]:
    """``{"loss": mean cross-entropy, "accuracy": top-1 in [0, 1], "samples": n}``; restores train mode."""
    was_training = model.training
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for inputs, targets in loader:
        inputs, targets = inputs.to(device), targets.to(device)
        with autocast(device, amp):
            logits = model(inputs)
        loss_sum += nn.functional.cross_entropy(logits.float(), targets, reduction="sum").item()
        correct += (logits.argmax(dim=1) == targets).sum().item()
        n += targets.numel()
    model.train(was_training)
    return {"loss": loss_sum / max(n, 1), "accuracy": correct / max(n, 1), "samples": n}
