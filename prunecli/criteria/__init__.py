"""Criterion axis: how important each unit is (higher = keep).

A criterion only scores; it never selects. ``score(site)`` returns one value per unit of the site. Criteria
that need data say so and collect it through hooks the pruner installs and removes:

- gradients (``needs_grad``): ``observe(params)`` is called after backward (grads present) and before the
  optimizer step, only inside the pruning window;
- activations (``needs_activations``, optional): ``observe_activation(site, output)`` is called from a forward
  hook on ``site.output_module``, installed only while a mask update is due within the next ``batches``
  training forward passes (see :class:`ActivationCriterion`);
- layer inputs (``wanda``): ``observe_input(names, x)`` is called by the one-shot runner
  (:mod:`prunecli.oneshot`) with the calibration inputs of the linear layers whose weights are ``names``.

A mask update due before the criterion is ``ready`` waits until it is. ``bind(sites)`` (optional) lets a
criterion refuse sites it cannot score, with a :class:`~prunecli.errors.ConfigError`, before anything changes.

A user's own criterion plugs in as ``{_target_: my.module.MyCriterion, ...}``. One that scores from the weights
alone subclasses :class:`WeightCriterion` and implements ``score(site)`` only; any other implements the methods
of :class:`Criterion` (and, to read activations, those of :class:`ActivationCriterion`). Built-ins are
registered in :data:`CRITERIA` (a :class:`~prunecli.registry.Registry`).
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, runtime_checkable

from torch import Tensor, nn

from prunecli.criteria._activation import APoZ, MeanActivation
from prunecli.criteria._base import CRITERIA, WeightCriterion, norm_weight
from prunecli.criteria._gradient import Gradient, Movement, SnipMomentum, Taylor
from prunecli.criteria._wanda import Wanda
from prunecli.criteria._weight import FPGM, L1, L2, BNScale, Magnitude, Random
from prunecli.sites import Site

__all__ = ["Criterion", "ActivationCriterion", "WeightCriterion", "CRITERIA", "norm_weight",
           "Magnitude", "L1", "L2", "Random", "FPGM", "BNScale", "Taylor",
           "Movement", "SnipMomentum", "Gradient", "APoZ", "MeanActivation", "Wanda", "parse_criterion", "name_of"]


@runtime_checkable
class Criterion(Protocol):
    """Scores units; may accumulate statistics from gradients.

    Optional members, with their defaults when left out (:data:`prunecli._parts.DEFAULTS`): ``bind(sites)``
    (no-op; called once when the pruner is built: raise :class:`~prunecli.errors.ConfigError` for sites it
    cannot score), ``needs_activations`` (False), ``batches`` (1) and ``per_unit`` (False).
    """

    needs_grad: bool
    ready: bool  # False while a data-driven criterion has not observed enough yet

    def observe(self, params: Mapping[str, nn.Parameter]) -> None:
        """Accumulate from ``param.grad`` (called once per optimizer step while the schedule is active)."""
        ...

    def score(self, site: Site) -> Tensor:
        """Importance of each unit of ``site``: a float tensor ``[site.num_units]``."""
        ...

    def after_update(self) -> None:
        """Called after masks were recomputed (e.g. to start a new accumulation window)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@runtime_checkable
class ActivationCriterion(Criterion, Protocol):
    """A criterion scoring output channels from their activations (``needs_activations = True``)."""

    needs_activations: bool
    batches: int  # training forward passes to observe before a mask update

    def bind(self, sites: Mapping[str, Site]) -> None:
        """Remember the sites to wait for; refuse sites without output channels."""
        ...

    def observe_activation(self, site: Site, output: Tensor) -> None:
        """Add the output of ``site.output_module`` for one forward pass (units along ``site.unit_dim``)."""
        ...


def parse_criterion(spec: Any, key: str = "pruner.criterion") -> Criterion:
    """A name, ``{name: ..., **options}`` or ``{_target_: ...}`` -> a criterion."""
    if isinstance(spec, Criterion):
        return spec
    return CRITERIA.build(spec, key)


def name_of(criterion: Any) -> str:
    """The config name of a built-in criterion (``taylor``), else its class name."""
    return CRITERIA.name_of(criterion) or type(criterion).__name__
