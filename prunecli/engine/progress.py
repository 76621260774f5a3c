"""Rich progress bars for the engine: loss, accuracy and sparsity; silent when not on a terminal."""

from __future__ import annotations

import sys
from typing import Any, Optional


class Bars:
    """One bar per epoch. ``enabled=None`` shows bars only when stderr is a terminal (never in tests or CI)."""

    def __init__(self, enabled: Optional[bool] = None):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self._progress: Any = None
        self._task: Any = None

    def __enter__(self) -> "Bars":
        if self.enabled:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("{task.fields[status]}"), console=Console(stderr=True), transient=False,
            )
            self._progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)
            self._progress = None

    def start(self, description: str, total: int) -> None:
        if self._progress is not None:
            self._task = self._progress.add_task(description, total=total, status="")

    def advance(self, **status: float) -> None:
        if self._progress is not None and self._task is not None:
            text = "  ".join(f"{k} {v:.4f}" for k, v in status.items())
            self._progress.update(self._task, advance=1, status=text)
