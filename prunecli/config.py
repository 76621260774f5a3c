"""Build a :class:`~prunecli.pruner.Pruner` from a plain mapping: the keys of a ``conf/pruner/*.yaml`` node plus
``schedule`` (and optionally ``objective``). Strings are parsed into typed parts here, once."""

from __future__ import annotations

from typing import Any, Callable, Mapping

import torch
from torch import nn

from prunecli._progressive import parse_progressive
from prunecli.aliases import note_alias
from prunecli.allocation import parse_allocation
from prunecli.criteria import parse_criterion
from prunecli.errors import ConfigError
from prunecli.layers import LayerSelection
from prunecli.objectives import OBJECTIVES, Sparsity, parse_objective
from prunecli.pruner import Pruner
from prunecli.regularizers import ADMM, parse_regularizer
from prunecli.schedules import build_schedule
from prunecli.targets import parse_target

KEYS = ("target", "criterion", "allocation", "schedule", "layers", "objective", "initial_masks", "reapply",
        "regularizer", "progressive", "alias")


def build_pruner(model: nn.Module, cfg: Mapping[str, Any], *, total_steps: int | None = None,
                 optimizer: torch.optim.Optimizer | None = None, example_inputs: Any = None,
                 evaluator: Callable[[nn.Module], float] | None = None) -> Pruner:
    """Compose a pruner for ``model`` from ``cfg``.

    Example::

        pruner = build_pruner(model, {
            "target": "2:4", "criterion": "magnitude", "allocation": "global",
            "schedule": {"name": "agp", "final_sparsity": 0.5, "start_step": 0, "end_step": 1000, "frequency": 100},
        }, optimizer=optimizer)

    Args:
        model: The model to prune.
        cfg: ``target`` (default ``unstructured``), ``criterion`` (``magnitude``), ``allocation`` (``local``),
            ``schedule`` (required), ``layers``, ``objective``, ``initial_masks``, ``reapply``, ``regularizer``
            (none; window keys ``start``/``end`` beside its options), ``progressive`` (none, or ``{steps: 4}``)
            and ``alias`` (set by the alias configs of :mod:`prunecli.aliases`: logs the preset's new name).
            Each part is a short name, a mapping with ``name`` and options, or a mapping with ``_target_``.
        total_steps: Training steps of the run, to resolve ``schedule.start``/``schedule.end`` fractions.
        optimizer: The optimizer, if known (enables the zero-state fast path of :class:`Pruner`).
        example_inputs: One input batch; the ``channel`` target traces the model on it to find coupled
            channels, and the ``flops``/``latency`` objectives measure on it.
        evaluator: ``evaluator(model) -> float`` (higher is better) for searched allocations
            (:mod:`prunecli.allocation.search`); they raise ``ConfigError`` at their first mask update without one.

    Raises:
        ConfigError: For any bad key or value; nothing is applied to the model before all parts are valid.
    """
    cfg = dict(cfg)
    for key in cfg:
        if key not in KEYS:
            raise ConfigError(f"pruner.{key}", cfg[key], f"a key among {', '.join(KEYS)}")
    if "schedule" not in cfg:
        raise ConfigError("schedule", None, "a schedule mapping, e.g. {name: agp, final_sparsity: 0.9, ...}")
    schedule_cfg = cfg["schedule"]
    if isinstance(schedule_cfg, str):
        schedule_cfg = {"name": schedule_cfg}
    if cfg.get("alias") is not None:
        note_alias(cfg["alias"])
    schedule = build_schedule(schedule_cfg, total_steps)
    regularizer, window = parse_regularizer(cfg.get("regularizer"), total_steps, schedule.end_step)
    objective = parse_objective(cfg.get("objective"))
    _check_admm_objective(regularizer, objective)
    return Pruner(
        model,
        target=parse_target(cfg.get("target", "unstructured")),
        criterion=parse_criterion(cfg.get("criterion", "magnitude")),
        allocation=parse_allocation(cfg.get("allocation", "local")),
        schedule=schedule,
        layers=LayerSelection.from_config(cfg.get("layers")),
        objective=objective,
        optimizer=optimizer,
        initial_masks=cfg.get("initial_masks", "dense"),
        reapply=cfg.get("reapply", "auto"),
        regularizer=regularizer,
        regularizer_window=window,
        progressive=parse_progressive(cfg.get("progressive")),
        example_inputs=example_inputs,
        evaluator=evaluator,
    )


def _check_admm_objective(regularizer: Any, objective: Any) -> None:
    """ADMM projects onto its own ``sparsity`` (``${sparsity}`` in the admm and auto_compress presets), which an
    objective does not translate: refuse the combination rather than constrain to the wrong sparsity."""
    if isinstance(regularizer, ADMM) and not isinstance(objective, Sparsity):
        name = OBJECTIVES.name_of(objective) or type(objective).__name__
        raise ConfigError("objective", name, "objective=sparsity with the admm regularizer (pruner=admm, "
                          "pruner=auto_compress)",
                          "ADMM projects onto pruner.regularizer.sparsity: set sparsity= instead")
