"""Small models shared by the core tests."""

import torch
from torch import nn


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
        nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10),
    )


def mlp(seed: int = 0, widths=(64, 48, 32)) -> nn.Module:
    torch.manual_seed(seed)
    layers = [nn.Flatten()]
    for a, b in zip(widths[:-1], widths[1:]):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(widths[-1], 10))
    return nn.Sequential(*layers)


def batch(shape=(16, 3, 8, 8), seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.randint(0, 10, (shape[0],), generator=g)


def train(model, pruner, optimizer, steps: int, shape=(16, 3, 8, 8)):
    """The canonical hook order of prunecli.hooks."""
    pruner.on_train_begin()
    for step in range(steps):
        x, y = batch(shape, seed=step)
        pruner.on_step_begin()
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        pruner.on_before_optimizer_step()
        optimizer.step()
        pruner.on_after_optimizer_step()
        pruner.on_step_end()
