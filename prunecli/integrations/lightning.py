"""Prune inside a Lightning ``Trainer``: :class:`PruningCallback`.

    from prunecli.integrations.lightning import PruningCallback
    trainer = lightning.Trainer(max_steps=1000, callbacks=[PruningCallback("block_4x1", sparsity=0.8)])
    trainer.fit(module, train_loader)

Lightning's events map onto :mod:`prunecli.hooks` as the engine calls them:

===========================  =========================================================================
Lightning event              pruner hook
===========================  =========================================================================
on_train_start               the pruner is built here (optimizers exist; ``estimated_stepping_batches``
                             is the run's optimizer steps); then ``on_train_begin``
on_train_batch_start         ``on_step_begin(global_step)`` on the first micro-batch of an optimizer
                             step (``accumulate_grad_batches``), before its forward pass
on_before_optimizer_step     ``on_before_optimizer_step``: the accumulated gradient, before Lightning
                             clips it (as in the engine)
on_train_batch_end           after a batch whose optimizer stepped: ``on_after_optimizer_step`` and
                             ``on_step_end``
on_validation_start / _end   ``on_before_eval`` / ``on_after_eval``
on_train_epoch_start / _end  ``on_epoch_begin`` / ``on_epoch_end``
on_train_end                 ``on_train_end``
===========================  =========================================================================

Lightning has no event right after the optimizer step. ``on_train_batch_end`` is the first one after it, and
nothing between the two reads the weights (the LR scheduler steps, no forward pass runs), so masks re-applied
there hold exactly for the next forward pass; with the zero-state fast path (the pruner gets the torch
optimizer inside ``LightningOptimizer``) pruned weights stay exactly zero through the step itself. Wrapping the
module's ``optimizer_step`` would need patching the user's module, which prunecli never does.

The pruner's state rides in Lightning's checkpoints (:meth:`PruningCallback.state_dict`) and is restored when
``fit(ckpt_path=...)`` resumes.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch

from prunecli.config import build_pruner
from prunecli.errors import ConfigError
from prunecli.integrations._common import resolve_config
from prunecli.pruner import Pruner

try:
    from lightning.pytorch import Callback
    from lightning.pytorch.core.optimizer import LightningOptimizer
except ImportError as err:  # one line naming the extra
    raise ImportError(f"prunecli.integrations.lightning needs lightning ({err.name} is missing): "
                      "pip install prunecli[lightning]") from None

__all__ = ["PruningCallback", "unwrap_optimizer"]


def unwrap_optimizer(optimizer: Any) -> torch.optim.Optimizer:
    """The torch optimizer inside a ``LightningOptimizer`` (or ``optimizer`` itself)."""
    return optimizer.optimizer if isinstance(optimizer, LightningOptimizer) else optimizer


def owning_optimizer(optimizers: Sequence[Any], params: Sequence[torch.Tensor]) -> torch.optim.Optimizer | None:
    """The (unwrapped) optimizer that updates the first of ``params``, or None."""
    first = {id(p) for p in params[:1]}
    for optimizer in map(unwrap_optimizer, optimizers):
        if any(id(p) in first for group in optimizer.param_groups for p in group["params"]):
            return optimizer
    return None


class PruningCallback(Callback):
    """Prune the LightningModule while it trains, with the CLI's pruner config.

    Args:
        pruner: A preset of ``conf/pruner/`` (``agp``, ``block_4x1``, ``movement``, ...) or the mapping
            :func:`prunecli.build_pruner` takes.
        sparsity: The final sparsity (the CLI's ``sparsity=``).
        overrides: Hydra overrides for a preset, as on the command line (``schedule.end=0.5``).
        example_inputs: One input batch, for targets that trace the model (``channel``) and budget objectives.
        evaluator: ``evaluator(model) -> float`` for searched allocations (sensitivity, simulated_annealing).
        keys: Keys of the pruner mapping (``target="4x1"``, ``layers={"exclude_last": False}``, ...).

    The pruner prunes the LightningModule itself: its parameter names (``model.encoder.0.weight``) are the
    masks' keys, and ``layers`` rules match them.

    Raises:
        ConfigError: At construction, for a bad preset, override or part (before any training).
    """

    def __init__(self, pruner: str | Mapping[str, Any] = "agp", *, sparsity: float | None = None,
                 overrides: Sequence[str] = (), example_inputs: Any = None,
                 evaluator: Callable[[torch.nn.Module], float] | None = None, **keys: Any):
        self.config = resolve_config(pruner, sparsity, overrides, keys)
        self.example_inputs, self.evaluator = example_inputs, evaluator
        self.pruner: Pruner | None = None
        self.optimizer: torch.optim.Optimizer | None = None  # what the pruner got: the unwrapped optimizer
        self._restored: dict[str, Any] | None = None
        self._new_step, self._stepped = True, False

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        total = trainer.estimated_stepping_batches
        if total == float("inf"):
            raise ConfigError("trainer.max_steps", trainer.max_steps, "a finite number of steps (max_steps or "
                              "max_epochs with a sized dataloader)", "the schedule needs the run's total steps")
        self.pruner = build_pruner(pl_module, self.config, total_steps=int(total), example_inputs=self.example_inputs,
                                   evaluator=self.evaluator)
        self.optimizer = owning_optimizer(trainer.optimizers, list(self.pruner.params.values()))
        self.pruner.optimizer = self.optimizer
        self.pruner.on_train_begin()
        if self._restored is not None:
            self.pruner.load_state_dict(self._restored)
            self._restored = None
        self._new_step, self._stepped = True, False

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self.pruner.on_epoch_begin(trainer.current_epoch)

    def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
        if self._new_step:
            self.pruner.on_step_begin(trainer.global_step)
            self._new_step = False

    def on_before_optimizer_step(self, trainer: Any, pl_module: Any, optimizer: Any) -> None:
        if self.pruner is not None and unwrap_optimizer(optimizer) is self.optimizer:
            self.pruner.on_before_optimizer_step()
            self._stepped = True

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self._stepped:
            self.pruner.on_after_optimizer_step()
            self.pruner.on_step_end()
            self._new_step, self._stepped = True, False

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        self.pruner.on_epoch_end(trainer.current_epoch)

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        if self.pruner is not None:  # None during the sanity check before training
            self.pruner.on_before_eval()

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if self.pruner is not None:
            self.pruner.on_after_eval()

    def on_train_end(self, trainer: Any, pl_module: Any) -> None:
        self.pruner.on_train_end()

    def state_dict(self) -> dict[str, Any]:
        """The pruner's state (masks, step, criterion accumulators), saved in Lightning's checkpoints."""
        return self.pruner.state_dict() if self.pruner is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Keep a checkpoint's pruner state until the pruner is built in ``on_train_start``."""
        self._restored = dict(state_dict) or None
