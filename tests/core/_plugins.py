"""A user's own criteria and target, plugged in by dotted path (``_target_: _plugins.Rows``)."""

from dataclasses import dataclass

import torch
from torch import nn

from prunecli.criteria import WeightCriterion
from prunecli.sites import AxisLayout, Member, Site


@dataclass
class FirstUnitsLeast:
    """Scores units by their index: the first units are pruned first."""

    needs_grad = False
    ready = True

    def observe(self, params):
        pass

    def score(self, site):
        return torch.arange(site.num_units, dtype=torch.float32)

    def after_update(self):
        pass

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


@dataclass(frozen=True)
class Rows:
    """Whole rows of Linear weights, without touching biases."""

    module_types = (nn.Linear,)

    def sites(self, model, modules):
        return [Site(f"{n}.weight",
                     (Member(f"{n}.weight", m.weight, AxisLayout(tuple(m.weight.shape), 0, m.weight.shape[0])),))
                for n, m in modules.items()], {}


class LastUnitsLeast(WeightCriterion):
    """A user's weight-only criterion: one method (the last units of each site are pruned first)."""

    def score(self, site):
        return -torch.arange(site.num_units, dtype=torch.float32)


class PlainAllocation:
    """A user's allocation with the required members only (no bind, no report): one threshold per site."""

    def allocate(self, scores, sites, sparsity):
        keep = {}
        for name, score in scores.items():
            pruned = int(round(sparsity * score.numel()))
            order = torch.argsort(score, stable=True)
            keep[name] = torch.ones(score.numel(), dtype=torch.bool)
            keep[name][order[:pruned]] = False
        return keep

    def reachable(self, sites):
        return 1.0


class CountingPenalty:
    """A user's regularizer with ``penalize`` only (no bind, share_allocation or state)."""

    def __init__(self):
        self.calls = 0

    def penalize(self, sites):
        self.calls += 1
