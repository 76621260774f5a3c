"""Rich progress bars for the engine: loss, accuracy and sparsity; silent when not on a terminal."""

from __future__ import annotations

import sys
from typing import Any, Optional


class EpochBar:
    """A transient bar for one epoch (it disappears when the epoch's log line is printed).

    ``enabled=None`` shows it only when stderr is a terminal, so tests, CI and log files see no bars.
    """

    def __init__(self, description: str, total: int, enabled: Optional[bool] = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.description, self.total = description, total
        self._progress: Any = None

    def __enter__(self) -> "EpochBar":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[status]}"), console=Console(stderr=True), transient=True,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(self.description, total=self.total, status="")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def advance(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)

    def status(self, **values: float) -> None:
        if self._progress is not None:
            text = "  ".join(f"{k} {v:.4f}" for k, v in values.items())
            self._progress.update(self._task, status=text)
