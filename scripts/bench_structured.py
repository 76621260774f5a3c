"""Benchmark of structured pruning: prunecli's coupled channels + compaction vs Torch-Pruning.

torchvision resnet18 (1000 classes, random weights with random BatchNorm statistics) pruned to 50% of the
channels of every coupled group (local allocation, L2 magnitude), on 3x224x224 batch 8 and 3x32x32 batch 32:

- prunecli: ``build_pruner(target=channel, criterion=l2, allocation=local, oneshot)`` with example inputs, one
  mask update, then :func:`prunecli.structure.compact` on a deep copy (the code path of
  ``export format=compact``); the max abs difference of masked vs compact outputs is reported.
- Torch-Pruning: ``tp.pruner.MetaPruner`` with ``tp.importance.MagnitudeImportance(p=2)``,
  ``pruning_ratio=0.5``, the classifier ``fc`` ignored (prunecli skips it: its channels are model outputs).

Params, MACs (``FlopCounterMode`` FLOPs / 2), forward latency (eval, ``torch.no_grad``, warm-up, median of
repeats, the three models interleaved), speedups over dense, our/TP speedup ratio (goal >= 0.95) and pruning
time; prints a markdown table.
This script may import ``torch_pruning`` directly (it is a benchmark, not the package).

Usage: ``python scripts/bench_structured.py [--repeats 5] [--warmup 2]``
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from prunecli import build_pruner
from prunecli._torchvision import import_torchvision
from prunecli.structure import compact

INPUTS = ((8, 224), (32, 32))


def resnet18() -> nn.Module:
    torch.manual_seed(0)
    model = import_torchvision().models.resnet18(num_classes=1000).eval()
    with torch.no_grad():  # non-trivial norm statistics, so masked vs compact differences would show
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return model


@torch.no_grad()
def macs(model: nn.Module, x: torch.Tensor) -> int:
    with FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops()) // 2


@torch.no_grad()
def latencies_ms(models: list[nn.Module], x: torch.Tensor, warmup: int, repeats: int) -> list[float]:
    """Median forward time of each model; the models take turns, so load from other jobs on a shared machine
    falls on all of them alike."""
    times: list[list[float]] = [[] for _ in models]
    for i in range(warmup + repeats):
        for model, t in zip(models, times):
            start = time.perf_counter()
            model.eval()(x)
            if i >= warmup:
                t.append((time.perf_counter() - start) * 1e3)
    return [statistics.median(t) for t in times]


def prune_prunecli(model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, float, float]:
    """(compact model, pruning seconds, max abs diff masked vs compact)."""
    masked = copy.deepcopy(model)
    start = time.perf_counter()
    pruner = build_pruner(masked, {"target": "channel", "criterion": "l2", "allocation": "local",
                                   "schedule": {"name": "oneshot", "final_sparsity": 0.5}}, example_inputs=x[:1])
    pruner.update_masks(pruner.schedule.final_sparsity)
    small = copy.deepcopy(masked).eval()
    compact(small, pruner.masks, x[:1])
    seconds = time.perf_counter() - start
    with torch.no_grad():
        diff = float((small(x) - masked.eval()(x)).abs().max())
    return small, seconds, diff


def prune_torch_pruning(model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, float]:
    import torch_pruning as tp

    small = copy.deepcopy(model)
    start = time.perf_counter()
    pruner = tp.pruner.MetaPruner(small, x[:1], importance=tp.importance.MagnitudeImportance(p=2),
                                  pruning_ratio=0.5, ignored_layers=[small.fc])
    pruner.step()
    return small.eval(), time.perf_counter() - start


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def bench(batch: int, size: int, warmup: int, repeats: int) -> list[dict]:
    repeats = repeats if size >= 224 else 4 * repeats  # the 32x32 pass is ~15x cheaper: more repeats, same time
    model = resnet18()
    x = torch.randn(batch, 3, size, size)
    ours, our_time, diff = prune_prunecli(model, x)
    theirs, tp_time = prune_torch_pruning(model, x)
    rows = []
    timed = latencies_ms([model, ours, theirs], x, warmup, repeats)
    dense_ms = timed[0]
    runs = (("dense", model, 0.0, None), ("prunecli", ours, our_time, diff), ("Torch-Pruning", theirs, tp_time, None))
    for (name, m, seconds, d), ms in zip(runs, timed):
        rows.append({"input": f"3x{size}x{size} b{batch}", "model": name, "params": params(m), "macs": macs(m, x),
                     "ms": ms, "speedup": dense_ms / ms, "prune_s": seconds, "diff": d})
    rows[1]["ratio"] = rows[1]["speedup"] / rows[2]["speedup"]
    return rows


def table(rows: list[dict]) -> str:
    out = ["| input | model | params (M) | MACs (G) | latency ms (median) | speedup | ours/TP speedup | "
           "max abs diff masked vs compact | pruning time s |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else ""
        diff = f"{r['diff']:.1e}" if r["diff"] is not None else ""
        prune_s = f"{r['prune_s']:.2f}" if r["model"] != "dense" else ""
        out.append(f"| {r['input']} | {r['model']} | {r['params'] / 1e6:.2f} | {r['macs'] / 1e9:.3f} | "
                   f"{r['ms']:.1f} | {r['speedup']:.2f}x | {ratio} | {diff} | {prune_s} |")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
          f"{torch.get_num_threads()} threads, warm-up {args.warmup}, median of {args.repeats}")
    rows = [r for batch, size in INPUTS for r in bench(batch, size, args.warmup, args.repeats)]
    print(table(rows))


if __name__ == "__main__":
    main()
