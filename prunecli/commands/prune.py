"""``prunecli prune``: train (optionally dense first), prune with fine-tuning, write summary.json."""

from __future__ import annotations

import logging
import time
from typing import Any

from prunecli._checks import integer
from prunecli.commands._common import run_dir, task
from prunecli.errors import ConfigError

log = logging.getLogger("prunecli")

# summary.json's size fields that ``optimize`` may name besides the task's metrics
SIZES = ("sparsity", "unit_sparsity", "target_sparsity", "params_nonzero", "params_total", "steps", "wall_seconds")


@task
def prune(cfg: Any) -> Any:
    """Run the engine on the composed config; writes ``summary.json`` and returns the summary, or, with
    ``optimize`` set, the metric(s) it names (the number a Hydra sweeper such as Optuna optimises)."""
    from prunecli._atomic import write_json
    from prunecli.engine import setup, train
    from prunecli.loggers import build_loggers

    start = time.perf_counter()
    check_sparsity(cfg.get("sparsity"))
    check_seed(cfg.get("seed"))
    out = run_dir()
    loggers = build_loggers(cfg, out)  # first: a logger whose package is missing fails before any work
    summary = None
    try:
        run = setup(cfg, out)
        optimize = check_optimize(cfg.get("optimize"), run.task)
        run.loggers = loggers
        summary = summarize(cfg, run, train(run), start)
    finally:
        if loggers is not None:  # a failed run's loggers close too (MLflow marks the run FAILED)
            loggers.close(summary)
    if run.main:  # rank 0 of a data-parallel run writes the summary
        write_json(out / "summary.json", summary)
        print_summary(summary)
    return summary if optimize is None else objective(summary, optimize)


def summarize(cfg: Any, run: Any, result: Any, start: float) -> dict[str, Any]:
    """The contents of ``summary.json``: the run's choices, dense and pruned metrics, sparsity and sizes."""
    from hydra.core.hydra_config import HydraConfig

    from prunecli.engine.setup import plain

    out = run.run_dir
    choices = HydraConfig.get().runtime.choices
    pruner = result.pruner
    # The objective (params, flops, latency) may have turned `sparsity` into another final sparsity.
    report = pruner.report() if pruner is not None else None
    target = report.target_sparsity if report is not None else float(cfg.sparsity)
    summary = {
        "model": choices.get("model"), "dataset": choices.get("dataset"), "pruner": choices.get("pruner"),
        "schedule": choices.get("schedule"), "objective": choices.get("objective"), "target_sparsity": target,
        **metric_fields(run.task, result),
        "sparsity": result.report["sparsity"],
        # The goal's own unit: the fraction of channels/heads removed (channel sparsity also counts inputs).
        "unit": pruner.unit_name if pruner is not None else None,
        "unit_sparsity": pruner.unit_sparsity() if pruner is not None else None,
        "params_total": result.report["params_total"],
        "params_nonzero": result.report["params_nonzero"],
        "per_layer": result.report["per_layer"],
        "per_layer_kind": pruner.parameter_kinds() if pruner is not None else {},  # units, or inputs only
        "steps": result.steps,
        "rounds": plain(cfg.get("rounds")),
        "calibration": plain(cfg.get("calibration")),  # a one-shot preset's calibration data, else None
        "wall_seconds": round(time.perf_counter() - start, 3),
        "run_dir": str(out), "checkpoint": str(out / "checkpoint" / "last"),
    }
    if report is not None and report.search is not None:
        summary["search"] = report.search   # evaluations spent and the allocation chosen
    return summary


def metric_fields(task: Any, result: Any) -> dict[str, Any]:
    """The task's metrics of the dense and the pruned model, score first, and the best score: image classification
    gives ``dense_accuracy, dense_loss, accuracy, loss, best_accuracy``; causal_lm ``dense_log_likelihood,
    dense_loss, dense_perplexity, log_likelihood, loss, perplexity, best_log_likelihood``."""
    from prunecli.engine.state import Position

    names = [task.score, *(k for k in task.metrics({}) if k != task.score)]
    no_epochs = result.best_accuracy == Position().best_accuracy  # the best score was never set
    return {**{f"dense_{k}": result.dense[k] for k in names}, **{k: result.final[k] for k in names},
            f"best_{task.score}": None if no_epochs else result.best_accuracy}


def optimizable(task: Any) -> list[str]:
    """The summary metrics ``optimize`` may name: the task's metrics (dense, pruned, best score) and the sizes."""
    names = [task.score, *(k for k in task.metrics({}) if k != task.score)]
    return [*names, *(f"dense_{k}" for k in names), f"best_{task.score}", *SIZES]


def check_optimize(value: Any, task: Any) -> list[str] | str | None:
    """``optimize``: None, a summary metric, or a list of them (checked before any training). A sweeper that
    optimises refuses None before its first job (:class:`prunecli.commands._common.RunDirCheck`)."""
    from omegaconf import OmegaConf

    allowed = optimizable(task)
    if value is None:
        return None
    names = OmegaConf.to_container(value) if OmegaConf.is_list(value) else value
    for name in names if isinstance(names, list) else [names]:
        if name not in allowed:
            raise ConfigError("optimize", name, allowed)
    return names


def objective(summary: dict[str, Any], optimize: list[str] | str) -> float | list[float]:
    """The value(s) of ``optimize`` in ``summary`` as floats (a list for several metrics)."""
    values = []
    for name in optimize if isinstance(optimize, list) else [optimize]:
        if summary.get(name) is None:  # best_accuracy of a run without pruning epochs
            raise ConfigError("optimize", name, "a metric this run measured", "the summary has no value for it")
        values.append(float(summary[name]))
    return values if isinstance(optimize, list) else values[0]


def check_sparsity(value: Any) -> float:
    """The top-level ``sparsity`` must be a number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ConfigError("sparsity", value, "a number in [0, 1)")
    return float(value)


def check_seed(value: Any) -> int:
    """The top-level ``seed`` must be an integer numpy can take: in [0, 2**32)."""
    return integer("seed", value, 0, 2**32 - 1)


def print_summary(s: dict[str, Any]) -> None:
    """Dense vs pruned accuracy (a language model's perplexity), sparsity and size on stdout."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{s['model']} on {s['dataset']}, pruner {s['pruner']}", show_header=False, box=None)
    if "perplexity" in s:  # a language model (causal_lm)
        table.add_row("perplexity", f"dense {s['dense_perplexity']:.2f} -> pruned {s['perplexity']:.2f} "
                      f"(loss {s['dense_loss']:.4f} -> {s['loss']:.4f} nats per token)")
    else:
        table.add_row("accuracy", f"dense {s['dense_accuracy']:.4f} -> pruned {s['accuracy']:.4f}")
    if s.get("unit"):  # channels/heads: the goal counts units; the weights also lose the consumers' inputs
        table.add_row("sparsity", f"{s['unit']} {s['unit_sparsity']:.2f} removed (goal {s['target_sparsity']:.4g}); "
                      f"weights {s['sparsity']:.4f} of targeted weights")
    else:
        table.add_row("sparsity", f"{s['sparsity']:.4f} of targeted weights (goal {s['target_sparsity']:.4g})")
    inputs = [f"{n} {s['per_layer'][n]:.4f}" for n, kind in s.get("per_layer_kind", {}).items() if kind == "inputs"]
    if inputs:
        table.add_row("inputs only", f"{', '.join(inputs)} (lost input columns; output channels untouched)")
    table.add_row("params", f"{s['params_nonzero']:,} non-zero of {s['params_total']:,}")
    table.add_row("time", f"{s['wall_seconds']:.1f} s, {s['steps']} pruning steps")
    table.add_row("run dir", s["run_dir"])
    Console(soft_wrap=True).print(table)
