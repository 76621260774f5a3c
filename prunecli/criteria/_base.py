"""What every criterion module shares: the registry of built-ins, the public base of weight-only criteria, and
the helper that finds a channel's norm scale (also used by :mod:`prunecli.regularizers`)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Mapping

from torch import Tensor, nn

from prunecli.registry import Registry
from prunecli.sites import Member, Site

CRITERIA = Registry("criterion")


class WeightCriterion(ABC):
    """Base of a criterion that scores from the weights alone: a subclass implements :meth:`score` only.

    It supplies the rest of the :class:`~prunecli.criteria.Criterion` protocol and its optional members: no
    gradients or activations are needed, any site is accepted, the criterion is always ready, and there is
    nothing to accumulate or save. Example::

        class LastRowsLeast(WeightCriterion):
            def score(self, site):
                return site.reduce(lambda name, w: w.abs().float())  # one value per unit of the site

    Plug it in with ``pruner.criterion={_target_: my.module.LastRowsLeast}``.
    """

    needs_grad = False
    needs_activations = False
    ready = True

    def bind(self, sites: Mapping[str, Site]) -> None:
        """Any site can be scored from its weights."""

    @abstractmethod
    def score(self, site: Site) -> Tensor:
        """Importance of each unit of ``site`` (higher = keep): a float tensor ``[site.num_units]``."""

    def observe(self, params: Mapping[str, nn.Parameter]) -> None:
        """Nothing to accumulate."""

    def after_update(self) -> None:
        """Nothing to reset."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """No state."""


def norm_weight(site: Site) -> Member | None:
    """The member holding the scale of the norm layer after a channel site's layer, or ``None``."""
    return site.member(f"{site.norm}.weight") if site.norm and site.unit_dim is not None else None
