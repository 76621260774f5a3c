"""``prunecli evaluate``: accuracy, loss, sparsity per layer, params, FLOPs and latency of a checkpoint."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from prunecli._checks import integer
from prunecli.commands._common import require, run_dir, task
from prunecli.errors import ConfigError

log = logging.getLogger("prunecli")

_CHECKPOINT = ("a checkpoint dir (.../checkpoint/last), a prune run dir, or a compact, semi_structured or sparse "
               "export (model.safetensors)")


@dataclass(frozen=True)
class EvaluateOptions:
    """The numbers of ``conf/evaluate.yaml``, checked before the checkpoint is loaded."""

    batch_size: int
    latency_batch_size: int
    warmup: int
    repeats: int

    @classmethod
    def from_config(cls, cfg: Any) -> "EvaluateOptions":
        lat = cfg.get("latency") or {}
        return cls(batch_size=integer("batch_size", cfg.get("batch_size"), 1),
                   latency_batch_size=integer("latency.batch_size", lat.get("batch_size"), 1),
                   warmup=integer("latency.warmup", lat.get("warmup"), 0),
                   repeats=integer("latency.repeats", lat.get("repeats"), 1))


@task
def evaluate(cfg: Any) -> dict[str, Any]:
    """Evaluate ``cfg.checkpoint`` on its own dataset (or ``dataset=...``); writes ``evaluate.json``."""
    from prunecli._atomic import write_json
    from prunecli.checkpoint import load_checkpoint, load_model
    from prunecli.engine import evaluate as evaluate_model
    from prunecli.engine.data import eval_loader
    from prunecli.engine.runtime import pick_device
    from prunecli.export import compact, semi_structured, sparse
    from prunecli.metrics import count_flops, measure_latency
    from prunecli.report import sparsity_report
    from prunecli.tasks import task_of

    options = EvaluateOptions.from_config(cfg)
    path = require(cfg, "checkpoint", _CHECKPOINT)
    rebuild = model_options(cfg)
    is_compact = compact.is_compact(path)
    if is_compact:
        ckpt, model = compact.load_for_evaluate(path, **rebuild)
    elif semi_structured.is_semi_structured(path):  # the dense model of its unpacked 2:4 weights (same outputs)
        ckpt, model = semi_structured.load_for_evaluate(path, **rebuild)
    elif sparse.is_sparse(path):  # the dense model, with the checkpoint's masks and sparsity report
        ckpt, model = sparse.load_for_evaluate(path, **rebuild)
    else:
        ckpt = load_checkpoint(path)
        model = load_model(ckpt, **rebuild)
    device = pick_device(str(cfg.device), key="device")
    model = model.to(device)
    task = task_of(ckpt.spec)
    data = load_dataset(cfg, ckpt)
    metrics = evaluate_model(task, model, eval_loader(data.val, options.batch_size), device)
    report = {**sparsity_report(model, ckpt.masks).to_dict(), **recorded_units(ckpt.meta)}
    if is_compact:
        report = compact_report(report, ckpt.meta)
    example = task.example_inputs(ckpt.spec, options.latency_batch_size, device)
    result = {
        "checkpoint": str(ckpt.path), "dataset": data.name, "task": task.name, **metrics, "compact": False, **report,
        **count_flops(model, task.example_inputs(ckpt.spec, 1, device), ckpt.masks),
        **measure_latency(model, example, warmup=options.warmup, repeats=options.repeats),
        "device": str(device),
    }
    write_json(run_dir() / "evaluate.json", result)
    print_result(result)
    return result


def recorded_units(meta: dict[str, Any]) -> dict[str, Any]:
    """What the pruner recorded in the checkpoint beyond its masks: the target's unit (``channels``), the fraction
    of units removed and each parameter's kind (``units`` or ``inputs``); only well-formed values are taken."""
    stats = meta.get("sparsity")
    if not isinstance(stats, dict):
        return {}
    out: dict[str, Any] = {}
    if isinstance(stats.get("unit"), str):
        out["unit"] = stats["unit"]
    if isinstance(stats.get("unit_sparsity"), float):
        out["unit_sparsity"] = stats["unit_sparsity"]
    kinds = stats.get("per_layer_kind")
    if isinstance(kinds, dict) and all(isinstance(k, str) and v in ("units", "inputs") for k, v in kinds.items()):
        out["per_layer_kind"] = kinds
    return out


def compact_report(report: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    """A compact export has no masks (its pruned channels are gone): report its size against the dense model's
    (``params_dense`` of its spec) instead of a sparsity of 0."""
    dense = spec.get("params_dense")
    ratio = report["params_total"] / dense if isinstance(dense, int) and dense > 0 else None
    return {**report, "compact": True, "sparsity": None, "params_dense": dense, "params_ratio": ratio}


def model_options(cfg: Any) -> dict[str, Any]:
    """``model`` (your own config node, or None) and ``trust_checkpoint_code`` for rebuilding a checkpoint's model
    (see :func:`prunecli.checkpoint.load_model`)."""
    trust = cfg.get("trust_checkpoint_code", False)
    if not isinstance(trust, bool):
        raise ConfigError("trust_checkpoint_code", trust, "true or false")
    return {"model": cfg.get("model"), "trust_checkpoint_code": trust}


def load_dataset(cfg: Any, ckpt: Any) -> Any:
    """The ``dataset=`` override, or the checkpoint's own dataset; it must serve the model's task and sizes.

    The checkpoint's dataset node is file data: only a registered builder with plain values (see
    :mod:`prunecli.models.spec`), unless ``trust_checkpoint_code=true``, and its ``download`` is ignored.
    """
    from prunecli._instantiate import build
    from prunecli.models.spec import build as build_spec
    from prunecli.tasks import task_of

    spec = ckpt.spec
    task = task_of(spec)
    fit = task.data_options(spec)  # image classification: the images are resized to the model's image_size
    if cfg.get("dataset"):
        data = build(cfg.dataset, "dataset", **fit)
    else:
        config = ckpt.meta.get("config")
        node = config.get("dataset") if isinstance(config, dict) else None
        if node is None:
            raise ckpt.origin.error("config.dataset", "is missing: pass dataset=<name> to evaluate on")
        if model_options(cfg)["trust_checkpoint_code"]:
            data = build(node, "dataset", **fit)
        else:  # a file never makes prunecli fetch anything: downloads only when typed (dataset.download=true)
            node = {**node, "download": False} if isinstance(node, dict) and "download" in node else node
            data = build_spec(node, "dataset", ckpt.origin, "config.dataset", **fit)
    check_fit(data, spec)
    return data


def check_fit(data: Any, spec: dict[str, Any]) -> None:
    """The dataset serves the model's task with the model's sizes, or a :class:`ConfigError` naming both."""
    from prunecli.tasks import task_of

    task = task_of(spec)
    if data.task != task.name:
        raise ConfigError("dataset", data.name, f"a dataset for the checkpoint's task, {task.name}",
                          reason=f"it serves {data.task}")
    sizes = task.sizes(data)
    wrong = [name for name, value in sizes.items() if spec.get(name) != value]
    if wrong:
        want = ", ".join(f"{name}={spec.get(name)}" for name in sizes)
        have = ", ".join(f"{name}={sizes[name]}" for name in wrong)
        raise ConfigError("dataset", data.name, f"a dataset with the checkpoint's model sizes ({want})",
                          reason=f"it has {have}")


def print_result(r: dict[str, Any]) -> None:
    """A per-layer sparsity table and the totals, on stdout."""
    from rich.console import Console
    from rich.table import Table

    kinds = r.get("per_layer_kind") or {}
    layers = Table("layer (parameter FQN)", "sparsity", *(["pruned"] if kinds else []), title="per-layer sparsity",
                   title_justify="left")
    for name, value in sorted(r["per_layer"].items()):
        kind = {"units": f"own {r.get('unit') or 'units'}", "inputs": "input columns only"}.get(kinds.get(name), "")
        layers.add_row(name, f"{value:.4f}", *([kind] if kinds else []))
    totals = Table(show_header=False, box=None)
    if "perplexity" in r:  # a language model (causal_lm)
        totals.add_row("perplexity / loss", f"{r['perplexity']:.2f} / {r['loss']:.4f} on {r['samples']} "
                       f"{r['dataset']} samples")
    else:
        totals.add_row("accuracy / loss", f"{r['accuracy']:.4f} / {r['loss']:.4f} on {r['samples']} "
                       f"{r['dataset']} samples")
    if r["compact"]:
        ratio = "" if r["params_ratio"] is None else f" ({r['params_ratio']:.1%})"
        totals.add_row("compact", f"{r['params_total']:,} params of the dense model's {r['params_dense']:,}{ratio}, "
                       "pruned channels removed")
    else:
        units = f"{r['unit']} {r['unit_sparsity']:.4f} removed; " if r.get("unit") and "unit_sparsity" in r else ""
        totals.add_row("sparsity", f"{units}{r['sparsity']:.4f} of targeted weights")
    totals.add_row("params", f"{r['params_nonzero']:,} non-zero of {r['params_total']:,}")
    totals.add_row("FLOPs", f"{r['flops']:,} dense, {r['flops_effective']:,} skipping zeros (per sample)")
    totals.add_row("latency", f"{r['latency_ms_median']:.3f} ms median (batch {r['latency_batch_size']}, "
                   f"{r['latency_repeats']} repeats, {r['device']})")
    console = Console(soft_wrap=True)
    if r["per_layer"]:   # a compact export has no masks, so no per-layer sparsity
        console.print(layers)
    console.print(totals)
