"""Benchmark of pruning inside a data-parallel (DDP) training step; results go to BENCHMARKS.md.

Step time of dense DDP vs DDP with a pruner, on ``--nproc`` processes (gloo on CPU, one thread each; NCCL with
``--device cuda``): an MLP 784-1024-1024-10, global batch 128 (each rank its share), SGD with momentum.

- ``fixed masks``: 90% unstructured (magnitude, global), masks set once; the steady state of fine-tuning.
- ``update every 10 steps``: 4x1 blocks climbing 50% -> 80% (global), a gradient criterion (``taylor``,
  ``|w * grad|``) whose unit scores are averaged over ranks before each update, as the engine does
  (:func:`prunecli.engine.ranks.share_pruner`).

Variants interleave each round (so drift on a shared machine hits all alike); one sample is 10 steps (one
mask update in the updating variant); the table gives rank 0's medians after warm-up, their ratio to dense, and
the median over rounds of each round's ratio to that round's dense sample (steadier on a loaded machine).
Goals (issue 13): <= 1.03 with fixed masks, <= 1.15 with an update every 10 steps.

Usage: ``nice -n 10 python scripts/bench_ddp.py [--rounds 30] [--nproc 2] [--device cpu|cuda]``
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from prunecli import build_pruner
from prunecli.engine.ranks import share_pruner

INNER, WARMUP, BATCH = 10, 20, 128


def mlp() -> nn.Module:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(),
                         nn.Linear(1024, 10))


def make_step(model: nn.Module, device: torch.device, x: torch.Tensor, y: torch.Tensor, pruner_cfg=None):
    """A DDP-wrapped copy of ``model`` and its training step in the hook order of prunecli.hooks."""
    model = copy.deepcopy(model).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    pruner = None
    if pruner_cfg is not None:
        pruner = share_pruner(build_pruner(model, pruner_cfg, optimizer=opt))
        pruner.on_train_begin()
    net = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)

    def step() -> None:
        if pruner is not None:
            pruner.on_step_begin()
        nn.functional.cross_entropy(net(x), y).backward()
        if pruner is not None:
            pruner.on_before_optimizer_step()
        opt.step()
        if pruner is not None:
            pruner.on_after_optimizer_step()
            pruner.on_step_end()
        opt.zero_grad(set_to_none=True)

    if pruner is not None and pruner.schedule.name == "oneshot":
        step()  # the one-shot masks are set at step 0; fixed afterwards
    return step, pruner


def worker(rank: int, world: int, port: int, rounds: int, device_name: str, out: dict) -> None:
    torch.set_num_threads(1)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    device = torch.device("cuda", rank) if device_name == "cuda" else torch.device("cpu")
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
    torch.manual_seed(0)
    base = mlp()
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(BATCH // world, 1, 28, 28, generator=g).to(device)
    y = torch.randint(0, 10, (BATCH // world,), generator=g).to(device)
    fixed = {"target": "unstructured", "criterion": "magnitude", "allocation": "global",
             "schedule": {"name": "oneshot", "final_sparsity": 0.9}}
    updating = {"target": "4x1", "criterion": "taylor", "allocation": "global",
                "schedule": {"name": "linear", "initial_sparsity": 0.5, "final_sparsity": 0.8, "start_step": 0,
                             "end_step": 4000, "frequency": 10}}
    variants = {"dense DDP": make_step(base, device, x, y),
                "fixed masks (90% unstructured)": make_step(base, device, x, y, fixed),
                "update every 10 steps (4x1, taylor)": make_step(base, device, x, y, updating)}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for step, _ in variants.values():
        for _ in range(WARMUP):
            step()
    samples = {name: [] for name in variants}
    names = list(variants)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            step = variants[name][0]
            sync()
            dist.barrier()
            start = time.perf_counter()
            for _ in range(INNER):
                step()
            sync()
            samples[name].append((time.perf_counter() - start) / INNER)
    updater = variants[names[2]][1]
    assert updater.report().sparsity > 0.5 and updater.step < 4000
    if rank == 0:  # per variant: median ms, and the median over rounds of its ratio to that round's dense time
        dense = samples[names[0]]
        out.update({name: (statistics.median(s), statistics.median(a / d for a, d in zip(s, dense)))
                    for name, s in samples.items()})
    dist.destroy_process_group()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--nproc", type=int, default=2)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = parser.parse_args()
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(worker, args=(args.nproc, free_port(), args.rounds, args.device, out), nprocs=args.nproc)
        times = dict(out)
    backend = "nccl" if args.device == "cuda" else "gloo"
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {args.nproc} x {backend} "
          f"({'1 thread each' if args.device == 'cpu' else 'one GPU each'}), MLP 784-1024-1024-10, global batch "
          f"{BATCH}, {args.rounds} rounds of {INNER} steps, load {os.getloadavg()[0]:.2f}")
    dense = times["dense DDP"][0]
    print("| variant | ms / step (median) | vs dense (ratio of medians) | vs dense (median of per-round ratios) |")
    print("|---|---:|---:|---:|")
    for name, (value, ratio) in times.items():
        print(f"| {name} | {value * 1e3:.2f} | {value / dense:.3f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
