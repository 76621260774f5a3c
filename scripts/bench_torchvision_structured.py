"""Sweep: coupled ``channel`` pruning at 50% on every torchvision classifier, exact or refused, vs Torch-Pruning.

For each name in ``torchvision.models.list_models(module=torchvision.models)`` (built with ``weights=None``,
10 classes, 64x64 inputs or 75x75 for Inception-v3, random BatchNorm statistics and random weights for a
zero-initialised Linear (ViT's head), so outputs are not near zero),
in its own subprocess (both sides, one after the other) with a time limit and an address-space limit, one
thread, two sides:

- prunecli: ``build_pruner(target=channel, criterion=l2, allocation=local, oneshot 0.5)`` on example inputs,
  one mask update, :func:`prunecli.structure.compact` on a deep copy, masked vs compact outputs compared on a
  batch of 2 relative to the outputs' scale (exact: <= 1e-5, as ``export format=compact`` judges). Outcome:
  ``exact``, ``refused`` (a one-line ``ConfigError``), ``mismatch`` (compact differs: the export would refuse),
  ``crash`` (any other exception), ``timeout`` / ``memory`` (the subprocess hit a limit).
- Torch-Pruning: ``tp.pruner.MagnitudePruner`` (its ``BasePruner``) with ``MagnitudeImportance(p=2)``,
  ``pruning_ratio=0.5``, its other defaults, the classifier (Linear or Conv2d layers with 10 outputs) ignored;
  success = ``step()`` and a forward pass run.

Records per model: outcome and reason, fraction of parameters removed, skipped groups by reason, max relative
difference, analysis time (``build_pruner``), peak RSS; and TP's success and parameter ratio. Results go to a
JSONL file (one line per model and side, so a long sweep can be resumed); ``--table`` prints the markdown table.
This script may import ``torch_pruning`` directly (it is a benchmark, not the package).

Usage::

    nice -n 10 python scripts/bench_torchvision_structured.py [--out sweep.jsonl] [--timeout 300] [--mem-gb 8]
    python scripts/bench_torchvision_structured.py --table [--out sweep.jsonl]
"""

from __future__ import annotations

import argparse
import json
import re
import resource
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

CLASSES = 10
# Models whose analysis is slowest: last, so a time-boxed sweep covers the rest first.
LAST = ("swin", "maxvit", "vit_l", "vit_h", "regnet_y_128gf", "regnet_y_32gf", "regnet_x_32gf", "regnet_y_16gf")


def image_size(name: str) -> int:
    return 75 if name.startswith("inception") else 64


def build(name: str):
    """The model ``name`` with random BatchNorm statistics and affine parameters (seeded), in eval mode."""
    import torch
    from torch import nn

    from prunecli.models.torchvision_models import build_torchvision_model

    torch.manual_seed(0)
    model = build_torchvision_model(name, in_channels=3, num_classes=CLASSES, image_size=image_size(name),
                                    small_stem=False)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None:
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            elif isinstance(m, nn.Linear) and not m.weight.any():  # ViT's zero-initialised head: outputs all 0
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.weight.shape[1] ** 0.5)
    return model.eval()


def inputs(name: str):
    import torch

    return torch.randn(2, 3, image_size(name), image_size(name), generator=torch.Generator().manual_seed(1))


def reason_kind(reason: str) -> str:
    """A skip reason without layer names, so reasons can be counted across layers."""
    op = re.search(r"op \S*?\((\w+)\)", reason)
    if op:
        return f"op {op.group(1)} mixes channels"
    rules = [("grouped convolution", "grouped convolution"), ("subclasses a norm", "norm subclass"),
             ("outputs of the model", "model outputs"), ("beyond", "index beyond size"),
             ("layer rules leave dense", "shared with a dense layer"), ("not reached", "not traced"),
             ("head dims", "attention head dims"), ("no affine", "norm without affine"),
             ("tied parameter", "tied parameter"), ("residual channels are kept", "untraceable"),
             ("mixes or rescales", "unknown layer")]
    return next((kind for key, kind in rules if key in reason), reason[:60])


def peak_mb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def run_prunecli(name: str) -> dict:
    import copy

    import torch

    from prunecli import build_pruner
    from prunecli.errors import ConfigError
    from prunecli.structure import compact, output_gap

    model, x = build(name), inputs(name)
    dense = sum(p.numel() for p in model.parameters())
    start = time.perf_counter()
    cfg = {"target": "channel", "criterion": "l2", "allocation": "local",
           "schedule": {"name": "oneshot", "final_sparsity": 0.5}}
    with torch.no_grad():
        reference = model(x)
    try:
        pruner = build_pruner(model, cfg, example_inputs=x[:1])
    except ConfigError as err:
        return {"outcome": "refused", "reason": str(err).splitlines()[0], "analysis_s": time.perf_counter() - start}
    result = {"analysis_s": time.perf_counter() - start, "sites": len(pruner.sites),
              "skipped": dict(Counter(reason_kind(r) for r in pruner.skipped.values()))}
    pruner.update_masks(0.5)
    small = copy.deepcopy(model)
    try:
        compact(small, pruner.masks, x[:1])
    except ConfigError as err:
        return {**result, "outcome": "refused", "reason": str(err).splitlines()[0]}
    with torch.no_grad():
        masked = model(x)
        try:
            out = small(x)
        except Exception as err:
            return {**result, "outcome": "refused", "reason": f"compact forward fails: {type(err).__name__}: "
                                                               f"{str(err).splitlines()[0][:160]}"}
    diff, scale = output_gap(masked, out)
    relative = diff / scale if scale else float(diff > 0)
    removed = 1 - sum(p.numel() for p in small.parameters()) / dense
    masked_gap, _ = output_gap(reference, masked)
    return {**result, "outcome": "exact" if relative <= 1e-5 else "mismatch", "removed": removed,
            "max_rel_diff": relative, "output_scale": scale, "masks_changed_output": masked_gap > 0}


def run_tp(name: str) -> dict:
    import torch
    import torch_pruning as tp
    from torch import nn

    model, x = build(name), inputs(name)
    dense = sum(p.numel() for p in model.parameters())
    ignored = [m for m in model.modules() if isinstance(m, nn.Linear) and m.out_features == CLASSES
               or isinstance(m, nn.Conv2d) and m.out_channels == CLASSES]  # SqueezeNet's classifier is a conv
    start = time.perf_counter()
    try:
        pruner = tp.pruner.MagnitudePruner(model, x[:1], importance=tp.importance.MagnitudeImportance(p=2),
                                           pruning_ratio=0.5, ignored_layers=ignored)
        pruner.step()
        with torch.no_grad():
            out = model(x)
        ok = tuple(out.shape) == (2, CLASSES)
    except Exception as err:  # noqa: BLE001 - any failure of the other library is its outcome
        return {"outcome": "failed", "reason": f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"
                if str(err) else type(err).__name__, "seconds": time.perf_counter() - start}
    return {"outcome": "ok" if ok else "wrong output shape", "seconds": time.perf_counter() - start,
            "removed": 1 - sum(p.numel() for p in model.parameters()) / dense}


def child(name: str, sides: list[str], mem_gb: float) -> None:
    """Run ``sides`` on ``name`` in this process, one JSON line each (printed as each ends, so a side that hangs
    later loses nothing)."""
    limit = int(mem_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    import torch

    torch.set_num_threads(1)
    for side in sides:
        try:
            result = run_prunecli(name) if side == "prunecli" else run_tp(name)
        except MemoryError:
            result = {"outcome": "memory", "reason": f"MemoryError at {mem_gb:g} GB"}
        except Exception as err:  # noqa: BLE001 - a crash is an outcome the sweep records
            result = {"outcome": "crash", "reason": f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"
                      if str(err) else type(err).__name__}
            if "can't allocate memory" in str(err):  # torch's allocator under the address-space limit
                result = {"outcome": "memory", "reason": f"the {mem_gb:g} GB address-space limit of this sweep"}
        print(json.dumps({"side": side, **result, "peak_mb": peak_mb()}), flush=True)


# One model per family first (and the deep models an absolute tolerance refused), so a time-boxed sweep covers
# every family; then the rest, smallest analysis first.
FIRST = ("alexnet", "convnext_tiny", "densenet121", "efficientnet_b0", "efficientnet_v2_s", "googlenet",
         "inception_v3", "mnasnet0_5", "mobilenet_v2", "mobilenet_v3_small", "regnet_x_400mf", "regnet_y_400mf",
         "resnet18", "resnext50_32x4d", "shufflenet_v2_x0_5", "squeezenet1_0", "vgg11", "vit_b_32",
         "wide_resnet50_2", "swin_t", "swin_v2_t", "maxvit_t", "resnet152", "wide_resnet101_2", "mnasnet1_0")


def order(names: list[str]) -> list[str]:
    def rank(name: str) -> tuple[int, int]:
        if name in FIRST:
            return (0, FIRST.index(name))
        return (1, next((i + 1 for i, p in enumerate(LAST) if name.startswith(p)), 0))
    return sorted(names, key=lambda n: (rank(n), n))


def sweep(out: Path, timeout: float, mem_gb: float, only: list[str]) -> None:
    import prunecli  # noqa: F401 - makes torchvision importable
    from prunecli.models.torchvision_models import torchvision_model_names

    done = {(r["model"], r["side"]) for r in read(out)}
    for name in order(only or torchvision_model_names()):
        sides = [side for side in ("prunecli", "tp") if (name, side) not in done]
        if not sides:
            continue
        start = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, __file__, "--child", name, ",".join(sides),
                                   "--mem-gb", str(mem_gb)], capture_output=True, text=True, timeout=timeout)
            stdout, failure = proc.stdout, {
                "outcome": "memory" if proc.returncode < 0 else "crash",
                "reason": (proc.stderr.strip().splitlines() or [f"exit {proc.returncode}"])[-1][:160]}
        except subprocess.TimeoutExpired as err:
            stdout = err.stdout.decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
            failure = {"outcome": "timeout", "reason": f"over {timeout:g} s"}
        results = {r["side"]: r for r in (json.loads(line) for line in stdout.splitlines() if line.startswith("{"))}
        for side in sides:
            record = {"model": name, "side": side, "wall_s": round(time.perf_counter() - start, 1),
                      **results.get(side, failure)}
            with out.open("a") as f:
                f.write(json.dumps(record) + "\n")
            print(json.dumps(record), flush=True)


def read(out: Path) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()] if out.exists() else []


def table(out: Path) -> str:
    rows: dict[str, dict] = {}
    for r in read(out):
        rows.setdefault(r["model"], {})[r["side"]] = r
    lines = ["| model | prunecli | params removed | max rel diff | analysis s | peak MB | groups skipped (reason: n) "
             "| TP | TP params removed |", "|---|---|---|---|---|---|---|---|---|"]
    count = Counter()
    for name in sorted(rows):
        ours, tp = rows[name].get("prunecli", {}), rows[name].get("tp", {})
        outcome = ours.get("outcome", "-")
        count[outcome] += 1
        count["tp " + tp.get("outcome", "-")] += 1
        what = outcome if outcome == "exact" else f"{outcome}: {ours.get('reason', '')}".replace("|", "/")
        skipped = "; ".join(f"{k}: {v}" for k, v in sorted(ours.get("skipped", {}).items())).replace("|", "/")
        tp_what = tp.get("outcome", "-") if tp.get("outcome") == "ok" else \
            f"{tp.get('outcome', '-')}: {tp.get('reason', '')}".replace("|", "/")
        lines.append(f"| {name} | {what} | {fmt(ours.get('removed'), '.1%')} | {fmt(ours.get('max_rel_diff'), '.1e')} "
                     f"| {fmt(ours.get('analysis_s'), '.1f')} | {ours.get('peak_mb', '-')} | {skipped} | {tp_what} "
                     f"| {fmt(tp.get('removed'), '.1%')} |")
    lines.append("")
    lines.append("Totals: " + ", ".join(f"{k} {v}" for k, v in sorted(count.items())))
    return "\n".join(lines)


def fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench_torchvision_structured.jsonl"))
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds per model (both sides)")
    parser.add_argument("--mem-gb", type=float, default=8.0, help="address-space limit per subprocess")
    parser.add_argument("--table", action="store_true", help="print the markdown table of --out and exit")
    parser.add_argument("--child", nargs=2, metavar=("MODEL", "SIDE"), help=argparse.SUPPRESS)
    parser.add_argument("models", nargs="*", help="only these models (default: every classifier)")
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1].split(","), args.mem_gb)
    elif args.table:
        print(table(args.out))
    else:
        sweep(args.out, args.timeout, args.mem_gb, args.models)


if __name__ == "__main__":
    main()
