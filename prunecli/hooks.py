"""The one place that names the training-loop hooks a pruner reacts to.

The engine (or a user's own loop, a Hugging Face ``TrainerCallback``, a Lightning callback) calls these on the
pruner in this order::

    on_train_begin()
    for epoch:  on_epoch_begin(epoch)
        for step:   on_step_begin(step)
                    forward / backward (possibly several micro-batches)
                    on_before_optimizer_step()
                    optimizer.step()
                    on_after_optimizer_step()
                    on_step_end()
        on_before_eval(); evaluate(); on_after_eval()
        on_epoch_end(epoch)
    on_train_end()

:class:`TrainingHooks` declares them: :class:`prunecli.pruner.Pruner` satisfies it (``isinstance(pruner,
TrainingHooks)``), and so must any object a loop drives in its place.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

HOOKS: tuple[str, ...] = (
    "on_train_begin",
    "on_epoch_begin",
    "on_step_begin",
    "on_before_optimizer_step",
    "on_after_optimizer_step",
    "on_step_end",
    "on_epoch_end",
    "on_train_end",
    "on_before_eval",
    "on_after_eval",
)


@runtime_checkable
class TrainingHooks(Protocol):
    """What a training loop may call; every method is optional to react to but must exist (the names of
    :data:`HOOKS`)."""

    def on_train_begin(self) -> None: ...
    def on_epoch_begin(self, epoch: int) -> None: ...
    def on_step_begin(self, step: int | None = None) -> None: ...
    def on_before_optimizer_step(self) -> None: ...
    def on_after_optimizer_step(self) -> None: ...
    def on_step_end(self) -> None: ...
    def on_epoch_end(self, epoch: int) -> None: ...
    def on_train_end(self) -> None: ...
    def on_before_eval(self) -> None: ...
    def on_after_eval(self) -> None: ...
