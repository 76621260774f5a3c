"""Benchmark of the pruning core, side by side in one process; results go to BENCHMARKS.md.

1. Steady-state training-step time with fixed masks (90% unstructured) vs the same loop dense, on a small
   CNN (3x32x32, batch 128) and an MLP 784-1024-1024-10 (batch 128), and vs ``torch.nn.utils.prune`` with the
   same masks. prunecli is timed twice: told the optimizer (zero-state fast path) and with ``reapply=always``
   (what a loop that does not pass its optimizer gets).
2. Training-step time with a mask update on EVERY step (MLP above, 4x1 blocks climbing from 50% to 80%,
   global allocation) vs dense, with two gradient criteria: snip_momentum (Neural Compressor's default,
   reads weights and gradients) and gradient (``|g|``).
3. Global selection over 24 tensors of 2048x2048 at 90% vs concatenate + ``torch.kthvalue`` (from
   ``scripts/bench_select.py``).

Usage: ``python scripts/bench_core.py [--rounds 40] [--skip-selection] [--only-updates]``
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from prunecli import build_pruner
from prunecli.models import build_model

sys.path.insert(0, str(Path(__file__).resolve().parent))


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                         nn.Linear(1024, 10))


def make_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, pruner=None):
    """One training step in the hook order of prunecli.hooks (pruner=None: the dense loop)."""

    def step() -> None:
        if pruner is not None:
            pruner.on_step_begin()
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(x), y).backward()
        if pruner is not None:
            pruner.on_before_optimizer_step()
        optimizer.step()
        if pruner is not None:
            pruner.on_after_optimizer_step()
            pruner.on_step_end()

    return step


def time_side_by_side(steps: dict, rounds: int, inner: int = 5, warmup: int = 10) -> dict[str, float]:
    """Median seconds per step of each variant; variants interleave each round so drift hits all alike."""
    for fn in steps.values():
        for _ in range(warmup):
            fn()
    samples = {name: [] for name in steps}
    names = list(steps)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            for _ in range(inner):
                steps[name]()
            samples[name].append((time.perf_counter() - start) / inner)
    return {name: statistics.median(s) for name, s in samples.items()}


def steady_state(name: str, base: nn.Module, x: torch.Tensor, y: torch.Tensor, rounds: int) -> list[tuple]:
    def sgd(m):
        return torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    cfg = {"target": "unstructured", "allocation": "global", "schedule": {"name": "oneshot", "final_sparsity": 0.9}}
    variants, masks = {}, None
    dense = copy.deepcopy(base)
    variants["dense"] = make_step(dense, sgd(dense), x, y)
    pruned = (("prunecli (optimizer known)", {}, True), ("prunecli reapply=always", {"reapply": "always"}, False))
    for label, extra, tell in pruned:
        model = copy.deepcopy(base)
        opt = sgd(model)
        pruner = build_pruner(model, {**cfg, **extra}, optimizer=opt if tell else None)
        pruner.on_train_begin()
        pruner.on_step_begin(0)           # one-shot prune now; masks stay fixed afterwards
        pruner.on_after_optimizer_step()
        masks = pruner.masks
        variants[label] = make_step(model, opt, x, y, pruner)
    reparam = copy.deepcopy(base)
    for fqn, mask in masks.items():
        module_name, param = fqn.rsplit(".", 1)
        torch_prune.custom_from_mask(reparam.get_submodule(module_name), param, mask)
    variants["torch.nn.utils.prune"] = make_step(reparam, sgd(reparam), x, y)
    times = time_side_by_side(variants, rounds)
    return [(name, label, times[label] * 1e3, times[label] / times["dense"]) for label in variants]


def update_every_step(x: torch.Tensor, y: torch.Tensor, rounds: int) -> list[tuple]:
    base = mlp()
    dense = copy.deepcopy(base)
    variants = {"dense": make_step(dense, torch.optim.SGD(dense.parameters(), lr=0.01, momentum=0.9), x, y)}
    pruners = []
    for criterion in ("snip_momentum", "gradient"):
        model = copy.deepcopy(base)
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        pruner = build_pruner(model, {
            "target": "4x1", "criterion": criterion, "allocation": "global",
            # Sparsity climbs 0.5 -> 0.8 over 2000 steps, so every timed update really changes the masks.
            "schedule": {"name": "linear", "initial_sparsity": 0.5, "final_sparsity": 0.8, "start_step": 0,
                         "end_step": 2000, "frequency": 1}}, optimizer=opt)
        pruner.on_train_begin()
        variants[f"prunecli, {criterion}"] = make_step(model, opt, x, y, pruner)
        pruners.append(pruner)
    times = time_side_by_side(variants, rounds)
    assert all(p.step < 2000 and p.report().sparsity > 0.5 for p in pruners)
    return [("MLP 784-1024-1024-10, update every step, 4x1 global, 50->80%", k, v * 1e3, v / times["dense"])
            for k, v in times.items()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--skip-selection", action="store_true")
    parser.add_argument("--only-updates", action="store_true", help="time part 2 only")
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}, {time.strftime('%Y-%m-%d')}")
    rows = []
    xm, ym = torch.randn(128, 784), torch.randint(0, 10, (128,))
    if not args.only_updates:
        cnn = build_model("cnn", in_channels=3, num_classes=10, image_size=32)
        rows += steady_state("small CNN 3x32x32 b128", cnn, torch.randn(128, 3, 32, 32),
                             torch.randint(0, 10, (128,)), args.rounds)
        rows += steady_state("MLP 784-1024-1024-10 b128", mlp(), xm, ym, args.rounds)
    rows += update_every_step(xm, ym, args.rounds)
    print("\n| setup | variant | ms/step (median) | vs dense |\n|---|---|---|---|")
    for setup, variant, ms, ratio in rows:
        print(f"| {setup} | {variant} | {ms:.2f} | {ratio:.3f}x |")
    if not (args.skip_selection or args.only_updates):
        from bench_select import bench_global_selection

        result = bench_global_selection()
        print("\nGlobal selection, 24 x 2048x2048 float32 at 90%:")
        for key, value in result.items():
            print(f"  {key}: {value}")


if __name__ == "__main__":
    main()
