"""Benchmark of ``export format=sparse``: file size and load time against plain safetensors and torch's sparse tensors.

torchvision resnet18 (random weights, fp32, 11.7M parameters, 46.8 MB), every conv and linear weight pruned by
magnitude per tensor to 50/75/90/95% unstructured, and 2:4 (the 2 largest of every 4 consecutive inputs of a
row; a layer whose row length is not a multiple of 4, the 3x7x7 stem, stays dense). Three files of the
same masked state:

- ``dense``: ``safetensors.torch.save_file`` of the state dict (what ``export format=dense`` writes);
- ``torch.save to_sparse``: ``torch.save`` of the state with each masked weight as ``weight.to_sparse()``
  (COO), loaded with ``torch.load(weights_only=True)`` and ``.to_dense()``;
- ``prunecli sparse``: :func:`prunecli.export.sparse.export` (bit-packed masks plus kept values), loaded with
  :func:`prunecli.export.sparse.load_state` (SHA-256 check, spec checks, unpacking into the model's tensors).

Load time is file -> weights in a built model (``model.load_state_dict``; the model is built once, outside
the timing): the median of ``--repeats`` after ``--warmup`` untimed loads, the three interleaved, files in the
page cache; the minimum is printed too (on a shared machine the median carries other processes' load).
Every load is checked bit for bit against the masked state once. Prints a markdown table with ratios against
the dense file.

Usage: ``nice -n 10 python scripts/bench_export.py [--repeats 7] [--warmup 2]``
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from prunecli.checkpoint import Checkpoint, fold_masks, model_from_spec
from prunecli.export import sparse

SPEC = {"config": {"_target_": "prunecli.models.build_model", "_partial_": True, "name": "resnet18",
                   "small_stem": "auto", "weights": None},
        "task": "image_classification", "in_channels": 3, "num_classes": 1000, "image_size": 224}
LEVELS = (("50%", 0.5), ("75%", 0.75), ("90%", 0.9), ("95%", 0.95), ("2:4", None))


def magnitude_masks(model: nn.Module, sparsity: float | None) -> dict[str, torch.Tensor]:
    """Keep masks of every conv/linear weight: the largest ``1 - sparsity`` by |w| per tensor, or 2:4 (None)."""
    masks = {}
    for name, p in model.named_parameters():
        if p.dim() < 2:
            continue
        w = p.detach().abs()
        if sparsity is None:
            rows = w.reshape(w.shape[0], -1)
            if rows.shape[1] % 4:
                masks[name] = torch.ones_like(w, dtype=torch.bool)
                continue
            keep = rows.reshape(rows.shape[0], -1, 4).topk(2, dim=-1).indices
            groups = torch.zeros(rows.shape[0], rows.shape[1] // 4, 4, dtype=torch.bool).scatter_(-1, keep, True)
            masks[name] = groups.reshape(w.shape)
        else:
            k = int(round(sparsity * w.numel()))
            threshold = w.reshape(-1).kthvalue(k).values if k else -1.0
            masks[name] = w > threshold
    return masks


def timed(load: Callable[[], object]) -> float:
    """Seconds one call of ``load`` takes."""
    start = time.perf_counter()
    load()
    return time.perf_counter() - start


def files(model: nn.Module, masks: dict[str, torch.Tensor], folder: Path) -> dict[str, Path]:
    """The three files of ``model``'s state under ``masks``."""
    state = fold_masks(model.state_dict(), masks)
    paths = {"dense": folder / "dense.safetensors", "torch.save to_sparse": folder / "coo.pt",
             "prunecli sparse": folder / "sparse.safetensors"}
    save_file(state, str(paths["dense"]))
    torch.save({k: v.to_sparse() if k in masks else v for k, v in state.items()}, paths["torch.save to_sparse"])
    record = Checkpoint(folder, {"model": SPEC}, state, masks)
    sparse.export(model, record, paths["prunecli sparse"], {})
    return paths


def loaders(paths: dict[str, Path], model: nn.Module) -> dict[str, Callable[[], dict]]:
    def dense() -> dict:
        state = load_file(str(paths["dense"]))
        model.load_state_dict(state)
        return state

    def coo() -> dict:
        loaded = torch.load(paths["torch.save to_sparse"], weights_only=True)
        state = {k: v.to_dense() if v.is_sparse else v for k, v in loaded.items()}
        model.load_state_dict(state)
        return state

    def ours() -> dict:
        state, _ = sparse.load_state(paths["prunecli sparse"], into=model.state_dict())
        model.load_state_dict(state)
        return state

    return {"dense": dense, "torch.save to_sparse": coo, "prunecli sparse": ours}


def bench(repeats: int, warmup: int) -> list[dict]:
    torch.manual_seed(0)
    model = model_from_spec(SPEC).eval()
    for module in model.modules():  # non-trivial norm statistics, as in a trained model
        if isinstance(module, nn.BatchNorm2d):
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    target = model_from_spec(SPEC).eval()
    rows = []
    for label, level in LEVELS:
        masks = magnitude_masks(model, level)
        reference = fold_masks(model.state_dict(), masks)
        with tempfile.TemporaryDirectory() as tmp:
            paths = files(model, masks, Path(tmp))
            loads = loaders(paths, target)
            for name, load in loads.items():  # bit-identical once, before timing
                state = load()
                assert all(torch.equal(state[k].view(torch.uint8) if state[k].is_floating_point() else state[k],
                                       v.view(torch.uint8) if v.is_floating_point() else v)
                           for k, v in reference.items()), name
            times = {name: [] for name in loads}
            for _ in range(warmup):
                for load in loads.values():
                    load()
            for _ in range(repeats):  # interleaved, so a burst of load on the machine hits all three
                for name, load in loads.items():
                    times[name].append(timed(load))
            sizes = {name: os.path.getsize(path) for name, path in paths.items()}
        kept = sum(int(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
        for name in loads:
            median, fastest = statistics.median(times[name]), min(times[name])
            rows.append({"level": label, "kept": kept, "file": name, "bytes": sizes[name],
                         "size_ratio": sizes[name] / sizes["dense"], "load_ms": median * 1e3, "min_ms": fastest * 1e3,
                         "load_ratio": median / statistics.median(times["dense"]),
                         "min_ratio": fastest / min(times["dense"])})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    args = parser.parse_args()
    rows = bench(args.repeats, args.warmup)
    print(f"resnet18 fp32 (11.7M params), torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}, median of {args.repeats} loads after {args.warmup} "
          f"warm-up, load average {os.getloadavg()[0]:.2f}")
    print()
    print("| sparsity | kept | file | size (MB) | size vs dense | load median (ms) | vs dense | load min (ms) "
          "| vs dense |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['level']} | {r['kept']:.3f} | {r['file']} | {r['bytes'] / 1e6:.2f} | {r['size_ratio']:.3f}x | "
              f"{r['load_ms']:.1f} | {r['load_ratio']:.2f}x | {r['min_ms']:.1f} | {r['min_ratio']:.2f}x |")


if __name__ == "__main__":
    main()
