"""AMC: a DDPG agent chooses each layer's sparsity under a FLOPs (or parameter) budget.

He et al. 2018, "AMC: AutoML for Model Compression and Acceleration on Mobile Devices"
(https://arxiv.org/abs/1802.03494), resource-constrained variant.

An episode walks the layers in order. The state of layer ``t`` embeds it: ``(t / L, units, unit size, its share
of the budget weight, its FLOPs share, budget removed so far, budget weight of the layers after it, previous
action)``, each static feature min-max scaled over the layers. The actor (an MLP with a sigmoid) proposes an
action ``a_t`` in ``[0, 1]``, the layer's sparsity ``s_t = lo_t + a_t (hi_t - lo_t)``; exploration adds truncated
normal noise (``noise`` decays by ``noise_decay`` per episode; the first ``warmup`` episodes act uniformly at
random). The budget is enforced by clipping: ``s_t`` is raised so the layers after it can still reach the
target at their caps and lowered so they need not go below their floors; the last layer takes the remainder,
so every episode meets the budget exactly. The episode's reward, the evaluator's score (e.g. ``-error``), minus a
moving-average baseline, is the target of every transition's critic value ``Q(s_t, a_t)`` (all transitions share
the final reward, as in AMC); the actor ascends ``Q(s, actor(s))``. The best episode's allocation is returned.
Evaluations per search: ``1`` (the dense model, which also records the FLOPs) ``+ episodes``.

``budget: flops`` reads the requested sparsity as the fraction of the targeted layers' FLOPs (counted by
``FlopCounterMode`` in the dense evaluation, :mod:`prunecli.allocation.search.flops`) to remove; ``budget: params``
as the usual fraction of their weights.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from prunecli.allocation.search.base import SearchBase, check_budget, check_count, check_range, element_weights, private
from prunecli.allocation.search.flops import site_flops
from prunecli.errors import ConfigError
from prunecli.sites import Site

BUDGETS = ("flops", "params")


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Module:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, outputs))


@dataclass
class AMC(SearchBase):
    """A compact DDPG agent searching per-layer sparsities (see the module docstring).

    Args:
        budget: ``flops`` or ``params``: what the requested sparsity is a fraction of.
        episodes: Episodes (one evaluation each).
        warmup: Episodes of uniformly random actions before the actor acts (AMC: 100 of 400).
        noise: Initial standard deviation of the truncated normal exploration noise.
        noise_decay: Factor applied to ``noise`` after each episode past the warm-up.
        hidden: Width of the actor's and critic's hidden layers.
        updates: Gradient steps of actor and critic after each episode past the warm-up.
        batch_size: Transitions per gradient step.
        lr_actor: Adam learning rate of the actor.
        lr_critic: Adam learning rate of the critic.
        seed: Seed of the agent's weights, noise and replay sampling.
        min_sparsity, max_sparsity, eval_batches: see :class:`~prunecli.allocation.search.base.SearchBase`.
    """

    budget: str = "flops"
    episodes: int = 30
    warmup: int = 10
    noise: float = 0.5
    noise_decay: float = 0.95
    hidden: int = 64
    updates: int = 20
    batch_size: int = 64
    lr_actor: float = 1e-3
    lr_critic: float = 1e-3
    seed: int = 0
    _total: int = private(0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.budget not in BUDGETS:
            raise ConfigError(f"{self.key}.budget", self.budget, BUDGETS)
        for name in ("episodes", "hidden", "updates", "batch_size"):
            check_count(f"{self.key}.{name}", getattr(self, name), "episode" if name == "episodes" else name)
        if not isinstance(self.warmup, int) or self.warmup < 0:
            raise ConfigError(f"{self.key}.warmup", self.warmup, "an integer >= 0")
        check_range(f"{self.key}.noise", self.noise, 0.0, 10.0)
        check_range(f"{self.key}.noise_decay", self.noise_decay, 0.0, 1.0)
        for name in ("lr_actor", "lr_critic"):
            check_range(f"{self.key}.{name}", getattr(self, name), 0.0, 1.0, open_low=True)

    @property
    def method(self) -> str:
        return "amc"

    def allocate(self, scores: dict[str, Tensor], sites: dict[str, Site], sparsity: float) -> dict[str, Tensor]:
        self.start(sites)
        lo, hi = self.bounds(scores, sites)
        flops, dense = site_flops(self._model, sites, lambda: self.evaluate(scores, sites, lo, lo, hi))
        w = flops if self.budget == "flops" else element_weights(sites)
        check_budget(w, lo, hi, sparsity, "sparsity" if self.budget == "params" else "sparsity (budget: flops)")
        static = _static_features(sites, w, flops)
        agent = _Agent(static.shape[1] + 3, self.hidden, self.seed + self._total, self.lr_actor, self.lr_critic)
        rng = random.Random(self.seed + self._total)
        best, best_score, baseline, noise = None, None, dense, float(self.noise)
        for episode in range(self.episodes):
            explore = episode < self.warmup
            states, actions, chosen = self._episode(agent, static, w, lo, hi, sparsity, rng, explore, noise)
            score = self.evaluate(scores, sites, chosen, lo, hi)
            if best_score is None or score > best_score:
                best, best_score = chosen, score
            agent.remember(states, actions, score - baseline)
            baseline = 0.95 * baseline + 0.05 * score
            if not explore:
                agent.learn(self.updates, self.batch_size, rng)
                noise *= self.noise_decay
        self._total += self._evaluations
        self.finish(sites, best, best_score)
        return self.keep_vectors(scores, sites, best, lo, hi)

    def _episode(self, agent: "_Agent", static: Tensor, w: Tensor, lo: Tensor, hi: Tensor, target: float,
                 rng: random.Random, explore: bool, noise: float) -> tuple[Tensor, Tensor, Tensor]:
        total, layers = float(w.sum()), len(w)
        need = target * total
        states, actions, chosen, prev = [], [], torch.zeros(layers, dtype=torch.float64), 0.0
        for t in range(layers):
            removed = float((w[:t] * chosen[:t]).sum())
            after = float(w[t + 1:].sum())
            state = torch.cat([static[t], torch.tensor([removed / total, after / total, prev])]).float()
            a = rng.random() if explore else agent.act(state, noise)
            s = float(lo[t] + a * (hi[t] - lo[t]))
            left = need - removed
            floor = (left - float((w[t + 1:] * hi[t + 1:]).sum())) / float(w[t])
            ceiling = (left - float((w[t + 1:] * lo[t + 1:]).sum())) / float(w[t])
            s = min(max(s, floor, float(lo[t])), ceiling, float(hi[t]))
            chosen[t] = s
            span = float(hi[t] - lo[t])
            prev = (s - float(lo[t])) / span if span > 0 else 0.0
            states.append(state)
            actions.append(prev)
        return torch.stack(states), torch.tensor(actions).unsqueeze(1), chosen

    def report(self) -> dict[str, Any]:
        return {**super().report(), "total_evaluations": self._total, "budget": self.budget}


def _static_features(sites: dict[str, Site], w: Tensor, flops: Tensor) -> Tensor:
    """Per-layer ``[index, units, unit size, budget share, FLOPs share]``, min-max scaled per column."""
    rows = [[i, s.num_units, s.unit_size, float(w[i]), float(flops[i])] for i, s in enumerate(sites.values())]
    x = torch.tensor(rows, dtype=torch.float64)
    span = (x.max(0).values - x.min(0).values).clamp_min(1e-12)
    return ((x - x.min(0).values) / span).float()


class _Agent:
    """DDPG actor and critic with a replay buffer of ``(state, action, advantage)``."""

    def __init__(self, features: int, hidden: int, seed: int, lr_actor: float, lr_critic: float):
        self.gen = torch.Generator().manual_seed(seed)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.actor = nn.Sequential(_mlp(features, hidden, 1), nn.Sigmoid())
            self.critic = _mlp(features + 1, hidden, 1)
        self.opt_actor = torch.optim.Adam(self.actor.parameters(), lr=lr_actor)
        self.opt_critic = torch.optim.Adam(self.critic.parameters(), lr=lr_critic)
        self.memory: list[tuple[Tensor, Tensor, Tensor]] = []

    @torch.no_grad()
    def act(self, state: Tensor, noise: float) -> float:
        mean = float(self.actor(state))
        if noise <= 0:
            return mean
        sample = torch.empty(1)
        nn.init.trunc_normal_(sample, mean, noise, 0.0, 1.0, generator=self.gen)
        return float(sample)

    def remember(self, states: Tensor, actions: Tensor, advantage: float) -> None:
        self.memory.append((states, actions.float(), torch.full((len(states), 1), advantage)))

    @torch.enable_grad()  # the pruner updates masks under no_grad
    def learn(self, updates: int, batch_size: int, rng: random.Random) -> None:
        states = torch.cat([m[0] for m in self.memory])
        actions = torch.cat([m[1] for m in self.memory])
        rewards = torch.cat([m[2] for m in self.memory])
        for _ in range(updates):
            idx = torch.tensor([rng.randrange(len(states)) for _ in range(min(batch_size, len(states)))])
            s, a, r = states[idx], actions[idx], rewards[idx]
            critic_loss = nn.functional.mse_loss(self.critic(torch.cat([s, a], 1)), r)
            self.opt_critic.zero_grad()
            critic_loss.backward()
            self.opt_critic.step()
            actor_loss = -self.critic(torch.cat([s, self.actor(s)], 1)).mean()
            self.opt_actor.zero_grad()
            actor_loss.backward()
            self.opt_actor.step()
