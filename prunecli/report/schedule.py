"""A run's sparsity schedule redrawn from its config, and the steps where it updated the masks.

The only module of :mod:`prunecli.report` that imports a layer (:mod:`prunecli.schedules`, so the formulas stay in
one place); the import-linter contract of pyproject.toml lets it (and :mod:`prunecli.report.build`) do so.
"""

from __future__ import annotations

from typing import Optional

from prunecli.errors import ConfigError
from prunecli.report.read import Job
from prunecli.report.series import ScheduleTrace
from prunecli.schedules import build_schedule

_MAX_SCHEDULE_STEPS = 1_000_000   # beyond this the schedule is not walked step by step (it would take seconds)


def schedule_trace(job: Job, start: float = 0.0) -> Optional[ScheduleTrace]:
    """The schedule of ``job`` (its resolved ``schedule`` config, its final sparsity after the objective, its
    number of pruning steps), offset by ``start``; None when it cannot be rebuilt (rounds, a user's own schedule
    class, no config, no steps)."""
    summary = job.summary or {}
    steps = summary.get("steps")
    cfg = job.meta_config().get("schedule")
    if summary.get("rounds") or not isinstance(cfg, dict) or "_target_" in cfg or not isinstance(steps, int):
        return None
    if steps <= 0 or steps > _MAX_SCHEDULE_STEPS:
        return None
    cfg = dict(cfg)
    if isinstance(summary.get("target_sparsity"), (int, float)):
        cfg["final_sparsity"] = float(summary["target_sparsity"])
    try:
        schedule = build_schedule(cfg, total_steps=steps)
    except (ConfigError, TypeError, ValueError):
        return None
    xs, ys, updates, at = [], [], [], []
    for step in range(steps + 1):
        value = schedule.sparsity(step)
        if step == 0 or step == steps or value != ys[-1]:
            xs.append(start + step)
            ys.append(value)
        if step < steps and schedule.is_update_step(step):
            updates.append(start + step)
            at.append(value)
    return ScheduleTrace(xs, ys, updates, at)
