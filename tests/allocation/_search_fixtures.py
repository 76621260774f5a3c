"""A tiny MLP and a synthetic evaluator whose optimum is known: it only penalises pruning one layer."""

import torch
from torch import nn

from prunecli import build_pruner


def mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(),
                         nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 10))   # sites 1, 3, 5 (the classifier 7 stays)


def penalise(layer: str, calls: list | None = None):
    """``evaluator(model) = -10 * (fraction of zeros in <layer>.weight)``: the best allocation spares ``layer``."""

    def evaluator(model: nn.Module) -> float:
        if calls is not None:
            calls.append(1)
        weight = model.get_submodule(layer).weight
        return -10.0 * float((weight == 0).float().mean())

    return evaluator


def prune(model: nn.Module, allocation: dict, evaluator, sparsity: float = 0.5, target: str = "unstructured",
          criterion: str = "magnitude"):
    cfg = {"target": target, "criterion": criterion, "allocation": allocation, "layers": {"exclude_last": True},
           "schedule": {"name": "oneshot", "final_sparsity": sparsity, "start_step": 0}}
    pruner = build_pruner(model, cfg, total_steps=1, evaluator=evaluator)
    pruner.on_train_begin()
    pruner.on_step_begin(0)
    pruner.on_train_end()
    return pruner


def per_layer(pruner) -> dict[str, float]:
    return pruner.report().to_dict()["per_layer"]
