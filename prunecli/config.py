"""Build a :class:`~prunecli.pruner.Pruner` from a plain mapping: the keys of a ``conf/pruner/*.yaml`` node plus
``schedule`` (and optionally ``objective``).

Two stages: :func:`parse_pruner_config` turns strings into typed parts, once, without a model (so
:func:`check_pruner_config` can refuse a typo before dense pre-training); :func:`compose` puts them together on
the model: site discovery, objective solving, binding. The pruner gets ready parts."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

import torch
from torch import nn

from prunecli._parts import optional
from prunecli._progressive import Progressive, parse_progressive
from prunecli.aliases import note_alias
from prunecli.allocation import Global, Local, parse_allocation
from prunecli.criteria import Random, parse_criterion
from prunecli.errors import ConfigError
from prunecli.layers import LayerSelection
from prunecli.objectives import OBJECTIVES, Sparsity, parse_objective
from prunecli.pruner import Pruner, check_options
from prunecli.regularizers import ADMM, Window, parse_regularizer
from prunecli.schedules import Schedule, build_schedule
from prunecli.sites import Site
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
    return compose(model, parse_pruner_config(cfg, total_steps), optimizer=optimizer,
                   example_inputs=example_inputs, evaluator=evaluator)


@dataclass
class PrunerParts:
    """Every part of a pruner config, parsed and checked on its own; nothing has touched a model yet."""

    target: Any
    criterion: Any
    allocation: Any
    schedule: Any
    layers: LayerSelection
    objective: Any
    regularizer: Any
    window: Window
    progressive: Progressive
    initial_masks: str
    reapply: str


def parse_pruner_config(cfg: Mapping[str, Any], total_steps: int | None = None) -> PrunerParts:
    """Parse every part of ``cfg`` (the mapping :func:`build_pruner` takes) without a model.

    Raises:
        ConfigError: For any bad key or value: an unknown part name, option or key, a bad schedule.
    """
    cfg = dict(cfg)
    if cfg.get("method") is not None:  # a one-shot preset (conf/pruner/wanda.yaml ...): it has no training hooks
        raise ConfigError("pruner.method", str(cfg["method"]), "a training preset (no method key)",
                          reason="a one-shot preset runs with prunecli prune, or prunecli.oneshot.prune_oneshot")
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
    parts = PrunerParts(
        target=parse_target(cfg.get("target", "unstructured")),
        criterion=parse_criterion(cfg.get("criterion", "magnitude")),
        allocation=parse_allocation(cfg.get("allocation", "local")),
        schedule=schedule, layers=LayerSelection.from_config(cfg.get("layers")), objective=objective,
        regularizer=regularizer, window=window, progressive=parse_progressive(cfg.get("progressive")),
        initial_masks=cfg.get("initial_masks", "dense"), reapply=cfg.get("reapply", "auto"))
    check_options(parts.initial_masks, parts.reapply)
    if optional(parts.criterion, "calibration_only"):
        # scored from calibration inputs that only the one-shot runner feeds: a training run would end waiting
        raise ConfigError("pruner.criterion", str(cfg.get("criterion")), "a criterion a training run feeds",
                          reason="it scores from calibration inputs: prune one-shot with "
                                 "prunecli.oneshot.prune_oneshot(model, batches, 'wanda')")
    return parts


def check_pruner_config(cfg: Mapping[str, Any], total_steps: int | None = None) -> None:
    """Check a pruner config without a model, so a typo fails before dense pre-training: every part parses and
    the schedule is valid. What needs the model (no layer selected, an unreachable sparsity) is checked when
    the pruner is built.

    Raises:
        ConfigError: As :func:`parse_pruner_config`.
    """
    parse_pruner_config(cfg, total_steps)


def compose(model: nn.Module, parts: PrunerParts, *, optimizer: torch.optim.Optimizer | None = None,
            example_inputs: Any = None, evaluator: Callable[[nn.Module], float] | None = None) -> Pruner:
    """Compose parsed parts on ``model``: find the target's sites on the selected layers, bind the allocation,
    solve the objective into the schedule's final sparsity, share the allocation with the regulariser, check
    the interpolation, bind the criterion and regulariser to the sites, then build the :class:`Pruner`.

    Raises:
        ConfigError: No layer selected, the final sparsity cannot be reached, or a part cannot work on the sites.
    """
    target, criterion, allocation, regularizer = parts.target, parts.criterion, parts.allocation, parts.regularizer
    traced = {"example_inputs": example_inputs} if optional(target, "needs_example_inputs") else {}
    sites, skipped = target.sites(model, parts.layers.select(model, target.module_types), **traced)
    if not sites and hasattr(target, "check_sites"):
        target.check_sites(model, sites, skipped)  # the channel target blames the model's ops where they are why
    if not sites:
        raise ConfigError("pruner.layers", parts.layers.describe(), f"rules selecting layers that target {target} "
                          f"can prune; skipped: {skipped}")
    by_name = {s.name: s for s in sites}
    optional(allocation, "bind")(model=model, evaluator=evaluator)
    schedule = solve_schedule(parts, model, sites, example_inputs)
    optional(regularizer, "share_allocation")(allocation)
    parts.progressive.check(by_name, schedule)
    if parts.progressive.steps > 1 and optional(criterion, "per_unit"):
        criterion.per_unit = False  # interpolation ranks single weights: keep element scores
    for part in (criterion, regularizer):
        optional(part, "bind")(by_name)
    return Pruner(model, sites, target=target, criterion=criterion, allocation=allocation, schedule=schedule,
                  optimizer=optimizer, initial_masks=parts.initial_masks, reapply=parts.reapply,
                  regularizer=regularizer, regularizer_window=parts.window, progressive=parts.progressive,
                  skipped=skipped, requested_sparsity=parts.schedule.final_sparsity)


def solve_schedule(parts: PrunerParts, model: nn.Module, sites: list[Site], example_inputs: Any) -> Schedule:
    """The schedule with the final sparsity the objective asks for on ``sites``.

    Raises:
        ConfigError: (``sparsity``) the allocation cannot reach that sparsity with the target's pattern.
    """
    schedule, allocation = parts.schedule, parts.allocation
    final = parts.objective.to_sparsity(schedule.final_sparsity, model, sites,
                                        **objective_parts(parts, example_inputs))
    reachable = allocation.reachable({s.name: s for s in sites})
    if final > reachable + 1e-9:
        raise ConfigError("sparsity", round(final, 6), f"a value <= {reachable:.4g}",
                          f"target {parts.target} with {type(allocation).__name__.lower()} allocation "
                          "cannot prune more of the selected layers")
    return schedule if final == schedule.final_sparsity else replace(schedule, final_sparsity=final)


def objective_parts(parts: PrunerParts, example_inputs: Any) -> dict[str, Any]:
    """What a budget objective (FLOPs, params, latency) simulates the masks with: the pruner's own allocation
    (unless it searches) and its criterion when it scores from the weights alone (exact when masks are set on the
    current weights; gradient and activation criteria have no scores yet, so L2 magnitude stands in)."""
    if not optional(parts.objective, "needs_example_inputs"):
        return {}
    out: dict[str, Any] = {"example_inputs": example_inputs}
    criterion = parts.criterion
    if isinstance(parts.allocation, (Local, Global)):
        out["allocation"] = parts.allocation
        static = not criterion.needs_grad and not optional(criterion, "needs_activations")
        if static and not isinstance(criterion, Random):  # scoring would advance Random's draws
            out["criterion"] = criterion
    return out


def _check_admm_objective(regularizer: Any, objective: Any) -> None:
    """ADMM projects onto its own ``sparsity`` (``${sparsity}`` in the admm and auto_compress presets), which an
    objective does not translate: refuse the combination rather than constrain to the wrong sparsity."""
    if isinstance(regularizer, ADMM) and not isinstance(objective, Sparsity):
        name = OBJECTIVES.name_of(objective) or type(objective).__name__
        raise ConfigError("objective", name, "objective=sparsity with the admm regularizer (pruner=admm, "
                          "pruner=auto_compress)",
                          "ADMM projects onto pruner.regularizer.sparsity: set sparsity= instead")
