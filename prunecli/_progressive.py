"""Progressive pruning: Neural Compressor's mask interpolation between two mask updates.

At a mask update of a gradual schedule, the weights the new masks prune (kept before, pruned now) are not
zeroed at once: they are ordered by the criterion's score of each single weight (lowest first) and zeroed
over ``stages`` equal slices, one slice every ``frequency // steps`` optimizer steps, so the last slice lands
before the next update. Block patterns thus reach their blocks through a few fine-grained intermediate masks
(Neural Compressor 2.x, ``PytorchProgressivePruner`` with ``progressive_type: scores``, per layer). The
schedule's last update (and a one-shot update) applies its masks at once, so the final sparsity is reached at
the schedule's end step. Only weight-level targets (one parameter per site: unstructured, N:M, RxC blocks)
can interpolate.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Callable

from torch import Tensor

from prunecli.errors import ConfigError
from prunecli.schedules import Schedule
from prunecli.sites import ElementLayout, Member, Site

log = logging.getLogger(__name__)


@dataclass
class Progressive:
    """Interpolates masks over ``steps`` stages after each update of a gradual schedule (``steps = 1``: off)."""

    steps: int = 1
    _queues: dict[str, Tensor] = field(default_factory=dict, repr=False)  # flat indices, lowest score first
    _start: int = field(default=0, repr=False)
    _every: int = field(default=1, repr=False)
    _stages: int = field(default=1, repr=False)
    _stage: int = field(default=0, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1:
            raise ConfigError("pruner.progressive.steps", self.steps, "an integer >= 1 (1 = no interpolation)")

    def check(self, sites: dict[str, Site], schedule: Schedule) -> None:
        """Refuse sites that are not one weight each; turn off (and say so) where the window is too short."""
        if self.steps == 1:
            return
        for site in sites.values():
            if len(site.members) != 1 or site.unit_dim is not None:
                raise ConfigError("pruner.progressive.steps", self.steps, "1 (no interpolation) for this target",
                                  f"site {site.name} is not a single weight: progressive pruning needs an "
                                  "unstructured, N:M or RxC block target")
        if schedule.name in ("oneshot", "none") or schedule.end_step - schedule.start_step <= self.steps:
            log.info("progressive pruning is off: schedule %s updates too rarely for %d stages", schedule.name,
                     self.steps)
            self.steps = 1

    def interpolates(self, step: int, schedule: Schedule) -> bool:
        """Whether the update at ``step`` is interpolated (every update but the schedule's last)."""
        return self.steps > 1 and step < schedule.end_step

    def begin(self, step: int, schedule: Schedule, before: dict[str, Tensor], masks: dict[str, Tensor],
              sites: dict[str, Site], score: Callable[[Site], Tensor]) -> None:
        """Queue the weights ``masks`` newly prune (vs ``before``), keep all but the first stage's slice."""
        self._stages = min(self.steps, schedule.frequency)
        self._every = max(schedule.frequency // self._stages, 1)
        self._start, self._stage, self._queues = step, 0, {}
        for site in sites.values():
            (member,) = site.members
            new = (before[member.name] & ~masks[member.name]).reshape(-1)
            if not bool(new.any()):
                continue
            view = Site(site.name, (Member(member.name, member.param, ElementLayout(tuple(member.param.shape))),),
                        module=site.module)
            scores = score(view).float().reshape(-1)
            idx = new.nonzero().squeeze(1)
            self._queues[member.name] = idx[scores[idx].argsort(stable=True)]
            masks[member.name] = masks[member.name].clone()  # it may be a view of the allocation's keep vector
            masks[member.name].view(-1)[idx] = True
        self.advance(step, masks)

    def advance(self, step: int, masks: dict[str, Tensor]) -> bool:
        """Prune the slices due by ``step``; returns whether any mask changed."""
        if not self._queues:
            return False
        due = min((step - self._start) // self._every + 1, self._stages)
        if due <= self._stage:
            return False
        for name, queue in self._queues.items():
            lo, hi = (math.ceil(k * len(queue) / self._stages) for k in (self._stage, due))
            masks[name].view(-1)[queue[lo:hi]] = False
        self._stage = due
        if due == self._stages:
            self._queues = {}
        return True

    def finish(self, masks: dict[str, Tensor]) -> bool:
        """Prune every queued weight now (before the next update); returns whether any mask changed."""
        if not self._queues:
            return False
        for name, queue in self._queues.items():
            masks[name].view(-1)[queue[math.ceil(self._stage * len(queue) / self._stages):]] = False
        self._queues, self._stage = {}, self._stages
        return True

    def state_dict(self) -> dict[str, Any]:
        return {"queues": {n: q.clone() for n, q in self._queues.items()}, "start": self._start,
                "every": self._every, "stages": self._stages, "stage": self._stage, "steps": self.steps}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._queues = {n: q.clone() for n, q in state.get("queues", {}).items()}
        self._start, self._every = int(state.get("start", 0)), int(state.get("every", 1))
        self._stages, self._stage = int(state.get("stages", 1)), int(state.get("stage", 0))
        self.steps = int(state.get("steps", self.steps))


def parse_progressive(spec: Any, key: str = "pruner.progressive") -> Progressive:
    """``null``/``false`` (off), an int (stages), or ``{steps: 4}`` -> :class:`Progressive`."""
    if spec is None or spec is False:
        return Progressive()
    if isinstance(spec, dict):
        unknown = sorted(set(spec) - {"steps"})
        if unknown:
            raise ConfigError(f"{key}.{unknown[0]}", spec[unknown[0]], "steps")
        return Progressive(spec.get("steps", 4))
    if isinstance(spec, int) and not isinstance(spec, bool):
        return Progressive(spec)
    raise ConfigError(key, spec, "null, an integer >= 1, or {steps: <int>}")
