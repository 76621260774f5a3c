"""Schedule axis: when masks are updated and which sparsity they reach at each step.

Every formula is a pure function of the step; :class:`Schedule` only binds the parameters and answers two
questions: ``sparsity(step)`` and ``is_update_step(step)``.

Notation: ``s_i`` initial sparsity, ``s_f`` final sparsity, ``t0`` start step, ``t1`` end step,
``p = clamp((t - t0) / (t1 - t0), 0, 1)`` the progress through the pruning window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from prunecli.errors import ConfigError
from prunecli.registry import Registry, build_target

# The formulas by schedule name: each maps (progress p, s_i, s_f) to a sparsity.
FORMULAS = Registry("schedule")


@FORMULAS.register("oneshot")
def oneshot(p: float, s_i: float, s_f: float) -> float:
    """Jump to the final sparsity at the start step."""
    return s_f


@FORMULAS.register("linear")
def linear(p: float, s_i: float, s_f: float) -> float:
    """``s_i + (s_f - s_i) * p``."""
    return s_i + (s_f - s_i) * p


@FORMULAS.register("agp")
def agp(p: float, s_i: float, s_f: float) -> float:
    """Automated gradual pruning, ``s_f + (s_i - s_f) * (1 - p)**3``.

    Zhu & Gupta, "To prune, or not to prune", 2017, https://arxiv.org/abs/1710.01878 (eq. 1 with
    ``p = (t - t0) / (n * dt)``).
    """
    return s_f + (s_i - s_f) * (1.0 - p) ** 3


@FORMULAS.register("exp")
def exp(p: float, s_i: float, s_f: float) -> float:
    """Density decays geometrically: ``1 - (1 - s_i) * ((1 - s_f) / (1 - s_i)) ** p``.

    The same fraction of the remaining weights is removed at each equal step of progress (Neural Compressor's
    ``sparsity_decay_type: exp``).
    """
    return 1.0 - (1.0 - s_i) * ((1.0 - s_f) / (1.0 - s_i)) ** p


@FORMULAS.register("cos")
def cos(p: float, s_i: float, s_f: float) -> float:
    """``s_i + (s_f - s_i) * (1 - cos(p * pi / 2))``: slow start, fast finish (Neural Compressor's ``cos``)."""
    return s_i + (s_f - s_i) * (1.0 - math.cos(p * math.pi / 2))


@FORMULAS.register("none")
def none(p: float, s_i: float, s_f: float) -> float:
    """Never changes the masks (used by ``pattern_lock``); the value is the initial sparsity."""
    return s_i


def lottery_ticket_rate(final_sparsity: float, rounds: int) -> float:
    """Per-round pruning rate ``1 - (1 - P) ** (1 / n)`` that reaches ``P`` after ``n`` rounds.

    Frankle & Carbin, "The Lottery Ticket Hypothesis", 2019, https://arxiv.org/abs/1803.03635.
    """
    return 1.0 - (1.0 - final_sparsity) ** (1.0 / rounds)


@dataclass(frozen=True)
class Schedule:
    """A named formula bound to its window.

    Masks are updated at ``start_step``, then every ``frequency`` steps, and at ``end_step``; between updates
    the sparsity stays constant. ``oneshot`` updates once, at ``start_step``; ``none`` never updates.
    """

    name: str = "oneshot"
    initial_sparsity: float = 0.0
    final_sparsity: float = 0.5
    start_step: int = 0
    end_step: int = 0
    frequency: int = 1

    def __post_init__(self) -> None:
        if self.name not in FORMULAS:
            raise ConfigError("schedule.name", self.name, sorted(FORMULAS))
        for key in ("initial_sparsity", "final_sparsity"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ConfigError(f"schedule.{key}", value, "a float in [0, 1)")
        if self.initial_sparsity > self.final_sparsity:
            raise ConfigError("schedule.initial_sparsity", self.initial_sparsity,
                              f"a value <= schedule.final_sparsity ({self.final_sparsity})")
        if not isinstance(self.start_step, int) or self.start_step < 0:
            raise ConfigError("schedule.start_step", self.start_step, "an integer >= 0")
        if not isinstance(self.end_step, int) or self.end_step < self.start_step:
            raise ConfigError("schedule.end_step", self.end_step, f"an integer >= start_step ({self.start_step})")
        if not isinstance(self.frequency, int) or self.frequency < 1:
            raise ConfigError("schedule.frequency", self.frequency, "an integer >= 1")

    def progress(self, step: int) -> float:
        """Fraction of the pruning window done at ``step``, clamped to [0, 1]."""
        span = self.end_step - self.start_step
        if span <= 0:
            return 1.0 if step >= self.start_step else 0.0
        return min(max((step - self.start_step) / span, 0.0), 1.0)

    def sparsity(self, step: int) -> float:
        """Target sparsity in force after the update at ``step`` (0 before the window opens)."""
        if self.name == "none":
            return self.initial_sparsity
        if step < self.start_step:
            return 0.0
        if self.name == "oneshot":
            return self.final_sparsity
        last = self.start_step + (step - self.start_step) // self.frequency * self.frequency
        if step >= self.end_step:
            last = self.end_step
        return FORMULAS[self.name](self.progress(last), self.initial_sparsity, self.final_sparsity)

    def is_update_step(self, step: int) -> bool:
        """Whether the masks are recomputed at ``step``."""
        if self.name == "none":
            return False
        if self.name == "oneshot":
            return step == self.start_step
        if step == self.end_step:
            return True
        return self.start_step <= step < self.end_step and (step - self.start_step) % self.frequency == 0


def build_schedule(cfg: dict, total_steps: int | None = None) -> Any:
    """Build a :class:`Schedule` from a config mapping (or a user's own, ``{_target_: ...}``, a subclass of it).

    ``start``/``end`` (fractions of ``total_steps``) are accepted in place of ``start_step``/``end_step`` so that
    one YAML serves runs of any length.
    """
    cfg = dict(cfg)
    if "_target_" in cfg:
        return build_target(cfg, "schedule")
    for frac_key, step_key in (("start", "start_step"), ("end", "end_step")):
        if frac_key not in cfg:
            continue
        frac = cfg.pop(frac_key)
        if step_key in cfg and cfg[step_key] is not None:
            raise ConfigError(f"schedule.{frac_key}", frac, f"absent when schedule.{step_key} is given")
        if not isinstance(frac, (int, float)) or not 0.0 <= frac <= 1.0:
            raise ConfigError(f"schedule.{frac_key}", frac, "a fraction of the run in [0, 1]")
        if total_steps is None:
            raise ConfigError(f"schedule.{frac_key}", frac, f"schedule.{step_key} as an integer",
                              "a fraction needs the run's total_steps")
        cfg[step_key] = int(round(frac * total_steps))
    cfg = {k: v for k, v in cfg.items() if v is not None}
    allowed = set(Schedule.__dataclass_fields__)
    unknown = sorted(set(cfg) - allowed)
    if unknown:
        keys = sorted(allowed | {"start", "end"})
        raise ConfigError(f"schedule.{unknown[0]}", cfg[unknown[0]], f"a key among {keys}")
    if cfg.get("name", "oneshot") == "oneshot" and "end_step" not in cfg:
        cfg["end_step"] = cfg.get("start_step", 0)
    if "end_step" in cfg and cfg["end_step"] < cfg.get("start_step", 0) and cfg.get("name") != "oneshot":
        raise ConfigError("schedule.end_step", cfg["end_step"],
                          f"an integer >= start_step ({cfg.get('start_step', 0)})")
    return Schedule(**cfg)
