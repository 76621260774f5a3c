"""The numbers a report plots, computed without matplotlib: training curves on one step axis, per-layer sizes,
Pareto fronts (the sparsity schedule: :mod:`prunecli.report.schedule`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

from prunecli.report.read import Job


@dataclass
class Curves:
    """Evaluations of one run on one step axis (a phase or round after another starts where the last ended).

    Attributes:
        steps: Global optimizer step of each evaluation (the dense evaluation sits where pruning starts).
        rows: The ``metrics.jsonl`` line of each evaluation.
        prune_start: Global step where the pruning phase starts (after dense pre-training).
        pretrain_end: Global step where dense pre-training ended (0 without it).
    """

    steps: list[float] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    prune_start: float = 0.0
    pretrain_end: float = 0.0

    def series(self, key: str, phases: Optional[set[str]] = None) -> tuple[list[float], list[float]]:
        """Steps and values of ``key`` in the rows that have it (of ``phases`` only, when given)."""
        xs, ys = [], []
        for x, row in zip(self.steps, self.rows):
            value = row.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and (
                    phases is None or row.get("phase") in phases):
                xs.append(x)
                ys.append(float(value))
        return xs, ys


def curves(rows: Sequence[dict[str, Any]]) -> Curves:
    """Lay the ``metrics.jsonl`` rows out on one step axis: each phase (and round) restarts its step count at 0,
    so its steps are offset by where the one before ended."""
    out = Curves()
    offset, last, key = 0.0, 0.0, None
    for row in rows:
        step = row.get("step")
        if row.get("phase") == "dense" or not isinstance(step, (int, float)):
            if row.get("phase") == "dense":   # evaluated between pre-training and pruning
                out.steps.append(last)
                out.rows.append(dict(row))
            continue
        phase_key = (row.get("phase"), row.get("round"))
        if phase_key != key:
            offset, key = last, phase_key
            if row.get("phase") == "prune" and not any(r.get("phase") == "prune" for r in out.rows):
                out.prune_start = offset
        last = offset + float(step)
        if row.get("phase") == "pretrain":
            out.pretrain_end = last
            out.prune_start = last
        out.steps.append(last)
        out.rows.append(dict(row))
    return out


@dataclass
class ScheduleTrace:
    """The schedule's target sparsity over the pruning phase and the steps where it updated the masks."""

    steps: list[float]
    sparsity: list[float]
    updates: list[float]
    update_sparsity: list[float]


def layer_sizes(job: Job) -> dict[str, int]:
    """Parameter FQN -> element count, from the checkpoint's ``model.safetensors`` header (no tensor is read)."""
    from safetensors import safe_open

    path = job.checkpoint / "model.safetensors"
    if not path.is_file():
        return {}
    try:
        with safe_open(str(path), framework="numpy") as f:
            return {name: math.prod(f.get_slice(name).get_shape()) for name in f.keys()}
    except Exception:  # noqa: BLE001  a damaged file only loses the counts in the chart
        return {}


def pareto_front(points: Sequence[tuple[float, float]], x_higher: bool, y_higher: bool) -> list[int]:
    """Indices of the points no other point beats in both coordinates (ties kept), in order of ``x``."""
    sx, sy = (1 if x_higher else -1), (1 if y_higher else -1)
    front = []
    for i, (x, y) in enumerate(points):
        if not any(sx * a >= sx * x and sy * b >= sy * y and (a, b) != (x, y) for a, b in points):
            front.append(i)
    return sorted(front, key=lambda i: points[i][0])
