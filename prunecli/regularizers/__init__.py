"""Regularisers: a sparsity-inducing penalty added to the training loss's gradients while pruning.

A regulariser has one method, ``penalize(sites)``: it adds the gradient of its penalty to ``param.grad`` of
the sites' parameters. The pruner calls it in ``on_before_optimizer_step``, inside its window
(:class:`Window`, the whole run by default), in this order:

1. the criterion observes the gradients (it scores importance to the training loss, so it sees the loss's
   gradient alone, not the penalty's);
2. the regulariser adds its penalty's gradient;
3. the gradients of pruned weights are zeroed again, so a penalty can never move a pruned weight.

A regulariser with state (:class:`ADMM`'s Z and U) has ``state_dict()``/``load_state_dict()``; the pruner saves
it with its own state. A user's own regulariser plugs in as ``{_target_: my.module.MyPenalty, ...}``; window keys
(``start``, ``end``, ``start_step``, ``end_step``) stay next to it in the same mapping.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Protocol, runtime_checkable

import torch

from prunecli.criteria import norm_weight
from prunecli.errors import ConfigError
from prunecli.registry import Registry, build_target, fields_of
from prunecli.regularizers._admm import ADMM
from prunecli.sites import Site

__all__ = ["REGULARIZERS", "Regularizer", "ADMM", "L1BN", "GroupLasso", "Window", "parse_regularizer"]


@runtime_checkable
class Regularizer(Protocol):
    """Adds a penalty's gradient to the gradients of the sites' parameters.

    Optional members, with their defaults when left out (:data:`prunecli._parts.DEFAULTS`): ``bind(sites)``,
    ``share_allocation(allocation)`` and ``load_state_dict(state)`` (no-ops), ``state_dict()`` (``{}``).
    """

    def penalize(self, sites: Mapping[str, Site]) -> None:
        """``param.grad += d penalty / d param`` for the parameters the penalty covers (grads present)."""
        ...


REGULARIZERS = Registry("regularizer")
REGULARIZERS.add("admm", ADMM)


def _check_strength(value: Any, key: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < math.inf:
        raise ConfigError(f"{key}.strength", value, "a float >= 0")


@REGULARIZERS.register("l1_bn")
@dataclass(frozen=True)
class L1BN:
    """L1 penalty on the scales of the norm layers after the pruned layers, ``strength * sum |gamma|``;
    its gradient ``strength * sign(gamma)`` is added to ``gamma.grad`` (Liu et al. 2017, "Learning Efficient
    Convolutional Networks through Network Slimming", https://arxiv.org/abs/1708.06519, eq. 1)."""

    strength: float = 1e-4

    def __post_init__(self) -> None:
        _check_strength(self.strength, "pruner.regularizer")

    def bind(self, sites: Mapping[str, Site]) -> None:
        for site in sites.values():
            if norm_weight(site) is None:
                raise ConfigError("pruner.regularizer", "l1_bn", "a channel target whose layers each feed a norm "
                                  "layer with a scale", f"layer {site.module or site.name} has no BatchNorm "
                                  "directly after it")

    @torch.no_grad()
    def penalize(self, sites: Mapping[str, Site]) -> None:
        for site in sites.values():
            gamma = norm_weight(site).param
            if gamma.grad is not None:
                gamma.grad.add_(torch.sign(gamma), alpha=self.strength)


@REGULARIZERS.register("group_lasso")
@dataclass(frozen=True)
class GroupLasso:
    """Group lasso over the target's units, ``strength * sum_u ||w_u||_2`` (a unit's weights over the site's
    scored members); its gradient ``strength * w_u / ||w_u||_2`` (0 for a unit that is all zero) is added to
    the weights' gradients (Wen et al. 2016, "Learning Structured Sparsity in Deep Neural Networks",
    https://arxiv.org/abs/1608.03665, eq. 2). Neural Compressor's ``GroupLasso`` scales by the norm of
    the gradient block instead; this follows the paper."""

    strength: float = 1e-4

    def __post_init__(self) -> None:
        _check_strength(self.strength, "pruner.regularizer")

    @torch.no_grad()
    def penalize(self, sites: Mapping[str, Site]) -> None:
        for site in sites.values():
            scored = [m for m in site.members if m.scored]
            norms = sum(m.layout.to_units(m.param.detach().float()).square().sum(1) for m in scored).sqrt()
            scale = torch.where(norms > 0, self.strength / norms.clamp_min(1e-30), torch.zeros_like(norms))
            for m in scored:
                if m.param.grad is not None:
                    factor = m.layout.expand(scale).to(m.param.grad.dtype)
                    m.param.grad.addcmul_(m.param.detach(), factor)


@dataclass(frozen=True)
class Window:
    """Optimizer steps ``[start_step, end_step)`` during which the regulariser acts (``end_step=None``: to the
    end of the run)."""

    start_step: int = 0
    end_step: int | None = None

    def __contains__(self, step: int) -> bool:
        return step >= self.start_step and (self.end_step is None or step < self.end_step)


_WINDOW_KEYS = ("start", "end", "start_step", "end_step")


def parse_regularizer(spec: Any, total_steps: int | None = None, schedule_end: int | None = None,
                      key: str = "pruner.regularizer") -> tuple[Regularizer | None, Window]:
    """A name, ``{name: ..., strength: ..., start/end: ...}`` or ``{_target_: ...}`` -> (regulariser, window).

    ``start``/``end`` are fractions of ``total_steps``; ``end: schedule`` ends the window at the schedule's last
    mask update (``schedule_end``), so the penalty shapes the weights until pruning is done and fine-tuning
    runs without it. ``start_step``/``end_step`` give steps directly.
    """
    if spec is None:
        return None, Window()
    if isinstance(spec, Regularizer):
        return spec, Window()
    options: dict[str, Any] = dict(spec) if isinstance(spec, Mapping) else {"name": spec}
    window = _window({k: options.pop(k) for k in _WINDOW_KEYS if k in options}, total_steps, schedule_end, key)
    if "_target_" in options:
        return build_target(options, key), window
    name = options.pop("name", None)
    cls = REGULARIZERS.get(name)
    if cls is None:
        raise ConfigError(key, name, REGULARIZERS.names())
    for option in options:
        if option not in fields_of(cls):
            raise ConfigError(f"{key}.{option}", options[option],
                              f"an option of {name}: {sorted([*fields_of(cls), *_WINDOW_KEYS])}")
    return cls(**options), window


def _window(cfg: dict[str, Any], total_steps: int | None, schedule_end: int | None, key: str) -> Window:
    steps: dict[str, int | None] = {}
    for frac_key, step_key in (("start", "start_step"), ("end", "end_step")):
        if frac_key in cfg and step_key in cfg:
            raise ConfigError(f"{key}.{frac_key}", cfg[frac_key], f"absent when {key}.{step_key} is given")
        if step_key in cfg:
            value = cfg[step_key]
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ConfigError(f"{key}.{step_key}", value, "an integer >= 0, or null")
            steps[step_key] = value
        elif frac_key in cfg:
            steps[step_key] = _resolve(cfg[frac_key], frac_key, total_steps, schedule_end, key)
    window = Window(steps.get("start_step") or 0, steps.get("end_step"))
    if window.end_step is not None and window.end_step < window.start_step:
        raise ConfigError(f"{key}.end", window.end_step, f"a step >= the window's start ({window.start_step})")
    return window


def _resolve(value: Any, frac_key: str, total_steps: int | None, schedule_end: int | None, key: str) -> int | None:
    if value is None:
        return None
    if frac_key == "end" and value == "schedule":
        return schedule_end
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        allowed = "a fraction of the run in [0, 1]" + (", 'schedule' or null" if frac_key == "end" else " or null")
        raise ConfigError(f"{key}.{frac_key}", value, allowed)
    if total_steps is None:
        raise ConfigError(f"{key}.{frac_key}", value, f"{key}.{frac_key}_step as an integer",
                          "a fraction needs the run's total_steps")
    return int(round(value * total_steps))
