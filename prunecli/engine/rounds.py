"""Iterative pruning: rounds of prune -> (rewind) -> fine-tune, the outer loop of Lottery Ticket and of NNI's
iterative Linear/AGP pruners.

Round ``r`` of ``n`` (1-based) prunes the weights trained so far to :func:`round_sparsity` (the schedule's
formula at progress ``r / n``: the ``exp`` schedule gives Lottery Ticket's ``1 - (1 - P)^(r/n)``, i.e. a rate
:func:`prunecli.schedules.lottery_ticket_rate` of the survivors per round), then rewinds the surviving weights,
then trains ``trainer.epochs`` with a fresh optimizer and LR schedule. Masks carry over (pruned units stay
pruned). Rewind (Frankle & Carbin 2019, https://arxiv.org/abs/1803.03635; Frankle et al. 2020,
https://arxiv.org/abs/1912.05671):

- ``null``: keep the trained weights (iterative pruning with fine-tuning);
- ``init``: the weights the model had before any training of this run;
- ``step:N``: the weights after ``N`` optimizer steps of the run's first training (dense pre-training, or round 1
  when there is none; round 1 then starts from where it is);
- ``random``: the control for ``init`` (Frankle & Carbin's random re-initialisation): every round rewinds to
  the initial weights as ``init`` does, so the masks are the same, except the last, which re-initialises the
  survivors at random (``reset_parameters``, a seed of its own).

Round 1 prunes the weights the run starts the rounds with: train them first (``trainer.pretrain_epochs`` or
``model.weights``). A checkpoint is written at each round's start (after pruning and rewinding) and records
the round; a resume continues inside the round.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import nn

from prunecli.errors import ConfigError
from prunecli.schedules import FORMULAS

log = logging.getLogger(__name__)

REWINDS = ("null", "init", "step:N", "random")


@dataclass(frozen=True)
class Rounds:
    """``count`` rounds; ``rewind`` is None, ``init``, ``random`` or ``step`` (then ``rewind_step`` = N)."""

    count: int
    rewind: Optional[str] = None
    rewind_step: int = 0

    @property
    def snapshot_at_start(self) -> bool:
        """Whether the weights to rewind to are those before any training (``init``, ``random``, ``step:0``)."""
        return self.rewind in ("init", "random") or (self.rewind == "step" and self.rewind_step == 0)

    @classmethod
    def from_config(cls, node: Any, objective: Any = None) -> Optional["Rounds"]:
        """The ``rounds`` node (``{count: 3, rewind: init}``), or None for a run without rounds.

        ``objective`` is the run's objective node: rounds prune to the schedule's sparsity at ``r / n``, so any
        objective but ``sparsity`` is refused here, before any training, rather than silently ignored.
        """
        if node is None:
            return None
        check_objective(objective)
        node = dict(node)
        unknown = sorted(set(node) - {"count", "rewind"})
        if unknown:
            raise ConfigError(f"rounds.{unknown[0]}", node[unknown[0]], "a key among count, rewind")
        count = node.get("count")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ConfigError("rounds.count", count, "an integer >= 1")
        rewind = node.get("rewind")
        if rewind is None or rewind in ("init", "random"):
            return cls(count, rewind)
        text = str(rewind)
        if text.startswith("step:") and text[5:].isdigit():
            return cls(count, "step", int(text[5:]))
        raise ConfigError("rounds.rewind", rewind, REWINDS)


def check_objective(objective: Any) -> None:
    """Refuse an objective other than ``sparsity`` with rounds (``pruner=lottery_ticket``, ``rounds=iterative``)."""
    name = objective.get("_target_", objective.get("name", "sparsity")) if isinstance(objective, dict) else objective
    if name not in (None, "sparsity"):
        raise ConfigError("objective", name, "objective=sparsity with rounds (pruner=lottery_ticket, rounds=iterative)",
                          "each round prunes to the schedule's sparsity at r/n: set sparsity= instead")


def round_sparsity(schedule: str, r: int, n: int, s_i: float, s_f: float) -> float:
    """Target sparsity after round ``r`` of ``n``: the schedule formula at progress ``r / n`` (pure)."""
    if schedule in ("oneshot", "none"):
        return s_f if schedule == "oneshot" else s_i
    return FORMULAS[schedule](r / n, s_i, s_f)


def round_config(pruner_cfg: dict[str, Any], sparsity: float) -> dict[str, Any]:
    """The pruner config of one round: masks never change by schedule inside a round (the engine prunes at its
    start), so the schedule is ``none`` at the round's sparsity."""
    return {**pruner_cfg, "schedule": {"name": "none", "initial_sparsity": sparsity, "final_sparsity": sparsity}}


def check_rewind_step(rounds: Rounds, first_training_steps: int, where: str) -> None:
    """``step:N`` must fall inside the first training (``where`` names it)."""
    if rounds.rewind == "step" and rounds.rewind_step > first_training_steps:
        raise ConfigError("rounds.rewind", f"step:{rounds.rewind_step}",
                          f"step:0 .. step:{first_training_steps} (the optimizer steps of {where})")


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A copy of the model's state (parameters and buffers) to rewind to."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@torch.no_grad()
def rewind(model: nn.Module, rounds: Rounds, r: int, saved: Optional[dict[str, torch.Tensor]],
           masks: dict[str, Any], seed: int) -> None:
    """Reset the surviving weights at the start of round ``r`` as ``rounds.rewind`` says, then zero the pruned ones."""
    if rounds.rewind == "random" and r == rounds.count:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            for module in model.modules():
                if hasattr(module, "reset_parameters"):
                    module.reset_parameters()
    elif rounds.rewind is not None and saved is not None:
        model.load_state_dict(saved)
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask.to(params[name].dtype))
