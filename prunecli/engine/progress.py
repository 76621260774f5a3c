"""Rich progress bars for the engine: speed, ETA, loss, accuracy and sparsity; silent when not on a terminal.

Two rows, as Lightning's and Hugging Face's bars show: the epoch's batches (speed in it/s, elapsed and remaining
time, the latest loss/accuracy/sparsity) and the phase's optimizer steps (``k/N`` and the phase's ETA).
Advancing a bar is pure Python: it never reads a device tensor, so it adds no synchronisation to a step.
"""

from __future__ import annotations

import sys
from typing import Any, Optional

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class SpeedColumn(ProgressColumn):
    """Iterations per second (``12.3 it/s``), or seconds per iteration below one (``2.50 s/it``)."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        if not speed:
            return Text("? it/s", style="progress.data.speed")
        text = f"{speed:.1f} it/s" if speed >= 1 else f"{1 / speed:.2f} s/it"
        return Text(text, style="progress.data.speed")


def columns() -> tuple[ProgressColumn, ...]:
    """Description, bar, done/total, speed, elapsed < remaining, then the status text (loss, acc, sparsity)."""
    return (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), SpeedColumn(),
            TimeElapsedColumn(), TextColumn("<"), TimeRemainingColumn(), TextColumn("{task.fields[status]}"))


class EpochBar:
    """A transient bar for one epoch (it disappears when the epoch's log line is printed), with a second row
    for the optimizer steps of the whole phase.

    Args:
        description: The epoch row's label, e.g. ``prune 2/10``.
        total: Micro-batches left in this epoch.
        enabled: ``None`` shows the bars only when stderr is a terminal, so tests, CI and log files see none.
        steps: ``(optimizer steps done, steps of the phase)``; ``None`` shows the epoch row only.
        phase: The phase row's label (``prune steps``).
        console: Where to draw (default: stderr).
    """

    def __init__(self, description: str, total: int, enabled: Optional[bool] = None,
                 steps: Optional[tuple[int, int]] = None, phase: str = "steps", console: Optional[Console] = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.description, self.total, self.steps, self.phase = description, total, steps, phase
        self.console = console
        self._progress: Any = None
        self._step_task: Any = None

    def __enter__(self) -> "EpochBar":
        if self.enabled:
            self._progress = Progress(*columns(), console=self.console or Console(stderr=True), transient=True)
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total, status="")
            if self.steps is not None:
                done, total = self.steps
                self._step_task = self._progress.add_task(self.phase, total=total, completed=done, status="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def advance(self) -> None:
        """One micro-batch done."""
        if self._progress is not None:
            self._progress.advance(self._task)

    def step(self) -> None:
        """One optimizer step of the phase done."""
        if self._step_task is not None and self._progress is not None:
            self._progress.advance(self._step_task)

    def status(self, **values: float) -> None:
        """Show ``values`` (``loss 0.1234  acc 0.9000``) at the end of the epoch row."""
        if self._progress is not None:
            text = "  ".join(f"{k} {v:.4f}" for k, v in values.items())
            self._progress.update(self._task, status=text)
