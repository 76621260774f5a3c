"""Prune inside a Hugging Face ``transformers.Trainer``: :class:`PruningCallback` and the one-call :func:`prune`.

    from prunecli.integrations.hf import prune
    trainer = Trainer(model=model, args=args, train_dataset=train)
    pruner = prune(trainer, "block_4x1", sparsity=0.8)      # trains; masks held in model and checkpoints
    print(pruner.report().sparsity)

The Trainer's events map onto :mod:`prunecli.hooks` as the engine calls them:

==========================  ==========================================================================
Trainer event               pruner hook
==========================  ==========================================================================
on_train_begin              the pruner is built here: the optimizer exists (the Trainer creates it late),
                            ``state.max_steps`` is the run's optimizer steps; then ``on_train_begin``
on_step_begin               ``on_step_begin(state.global_step)``, once per optimizer step, before the
                            first micro-batch of a gradient-accumulation window (as the engine does)
on_pre_optimizer_step       ``on_before_optimizer_step``: gradient criteria see the accumulated gradient
on_optimizer_step           ``on_after_optimizer_step``: masks hold after every step
on_step_end / on_epoch_end  ``on_step_end`` / ``on_epoch_end``; ``on_before_eval`` when an evaluation follows
on_evaluate                 ``on_after_eval``
on_save                     the pruner's state into the checkpoint folder (:data:`STATE_FILE`)
on_train_end                ``on_train_end``
==========================  ==========================================================================

The Trainer hands callbacks accelerate's ``AcceleratedOptimizer``; the pruner gets the torch optimizer inside
it, so its zero-state fast path holds (a masked model trains at dense speed). One difference from the engine:
the Trainer clips gradients before ``on_pre_optimizer_step``, so gradient criteria (movement, Taylor,
SNIP-momentum) see clipped gradients; clipping scales every gradient of a step by one factor, so a step's
ranking is unchanged. Gradients of pruned weights are zeroed as they accumulate, so they count in no norm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch

from prunecli.config import build_pruner
from prunecli.integrations._common import STATE_FILE, read_state, resolve_config, write_state
from prunecli.pruner import Pruner

try:
    from accelerate.optimizer import AcceleratedOptimizer
    from transformers import Trainer, TrainerCallback
except ImportError as err:  # one line naming the extra
    raise ImportError(f"prunecli.integrations.hf needs transformers and accelerate ({err.name} is missing): "
                      "pip install prunecli[hf]") from None

__all__ = ["PruningCallback", "prune", "unwrap_optimizer", "STATE_FILE"]


def unwrap_optimizer(optimizer: Any) -> torch.optim.Optimizer | None:
    """The torch optimizer inside accelerate's ``AcceleratedOptimizer`` (or ``optimizer`` itself)."""
    while isinstance(optimizer, AcceleratedOptimizer):
        optimizer = optimizer.optimizer
    return optimizer


class PruningCallback(TrainerCallback):
    """Prune the Trainer's model while it trains, with the CLI's pruner config.

    Args:
        pruner: A preset of ``conf/pruner/`` (``agp``, ``block_4x1``, ``movement``, ...) or the mapping
            :func:`prunecli.build_pruner` takes.
        sparsity: The final sparsity (the CLI's ``sparsity=``).
        overrides: Hydra overrides for a preset, as on the command line (``schedule.end=0.5``).
        example_inputs: One input batch, for targets that trace the model (``channel``) and budget objectives.
        evaluator: ``evaluator(model) -> float`` for searched allocations (sensitivity, simulated_annealing).
        save_state: Write the pruner's state into each Trainer checkpoint folder, and read it back when the
            Trainer resumes from one.
        keys: Keys of the pruner mapping (``target="4x1"``, ``layers={"exclude_last": False}``, ...).

    Raises:
        ConfigError: At construction, for a bad preset, override or part (before any training).
    """

    def __init__(self, pruner: str | Mapping[str, Any] = "agp", *, sparsity: float | None = None,
                 overrides: Sequence[str] = (), example_inputs: Any = None,
                 evaluator: Callable[[torch.nn.Module], float] | None = None, save_state: bool = True,
                 **keys: Any):
        self.config = resolve_config(pruner, sparsity, overrides, keys)
        self.example_inputs, self.evaluator, self.save_state = example_inputs, evaluator, save_state
        self.pruner: Pruner | None = None
        self.optimizer: torch.optim.Optimizer | None = None  # what the pruner got: the unwrapped optimizer
        self._epoch = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
                       **kwargs: Any) -> None:
        self.optimizer = unwrap_optimizer(optimizer)
        self.pruner = build_pruner(model, self.config, total_steps=state.max_steps, optimizer=self.optimizer,
                                   example_inputs=self.example_inputs, evaluator=self.evaluator)
        self.pruner.on_train_begin()
        resumed = Path(args.output_dir) / f"checkpoint-{state.global_step}" / STATE_FILE
        if self.save_state and state.global_step > 0 and resumed.is_file():
            read_state(self.pruner, resumed)

    def on_epoch_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._epoch = int(state.epoch or 0)
        self.pruner.on_epoch_begin(self._epoch)

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.pruner.on_step_begin(state.global_step)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.pruner.on_before_optimizer_step()

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.pruner.on_after_optimizer_step()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.pruner.on_step_end()
        if control.should_evaluate:  # set by the Trainer's flow callback, which runs before this one
            self.pruner.on_before_eval()

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.pruner.on_epoch_end(self._epoch)
        if control.should_evaluate:
            self.pruner.on_before_eval()

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.pruner is not None:
            self.pruner.on_after_eval()

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        folder = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if self.save_state and self.pruner is not None and args.should_save and folder.is_dir():
            write_state(self.pruner, folder / STATE_FILE)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.pruner.on_train_end()


def prune(trainer: Trainer, pruner: str | Mapping[str, Any] = "agp", *, sparsity: float | None = None,
          overrides: Sequence[str] = (), resume_from_checkpoint: str | bool | None = None, **keys: Any) -> Pruner:
    """Train ``trainer`` with a :class:`PruningCallback` (added for this call only) and return the pruner
    (``pruner.report()`` gives the sparsity per layer). Arguments as :class:`PruningCallback`'s;
    ``resume_from_checkpoint`` goes to ``trainer.train``.

    Raises:
        ConfigError: For a bad config, before training starts.
    """
    callback = PruningCallback(pruner, sparsity=sparsity, overrides=overrides, **keys)
    trainer.add_callback(callback)
    try:
        trainer.train(resume_from_checkpoint=resume_from_checkpoint)
    finally:
        trainer.remove_callback(callback)
    return callback.pruner
