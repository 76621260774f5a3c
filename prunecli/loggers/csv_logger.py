"""``logger=csv``: ``metrics.csv`` in long form, one ``step,metric,value`` row per number (standard library).

Long form because rows differ in their metrics (dense, pre-training, pruning epochs, per-layer sparsity): every
metric of ``metrics.jsonl`` is a row under its tag (``prune/accuracy``), each mask update adds
``layer_sparsity/<parameter>`` rows, the end adds ``summary/<key>`` rows. The config is ``.hydra/config.yaml``
beside it. ``pandas.read_csv(...).pivot_table(index="step", columns="metric")`` makes it wide.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

FIELDS = ("step", "metric", "value")


class CSVLogger:
    """Appends to ``path`` (default ``<run dir>/metrics.csv``), flushed after each call."""

    def __init__(self, run_dir: Path, path: str | None = None):
        self.path = Path(path) if path else Path(run_dir) / "metrics.csv"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.is_file() or self.path.stat().st_size == 0
        self.file = open(self.path, "a", newline="")
        self.writer = csv.writer(self.file)
        if fresh:
            self.writer.writerow(FIELDS)

    def log_params(self, params: dict[str, Any]) -> None:
        """Nothing: the composed config is ``.hydra/config.yaml`` in the run dir."""

    def log_scalars(self, values: dict[str, float], step: int) -> None:
        self.writer.writerows((step, tag, repr(value)) for tag, value in values.items())
        self.file.flush()

    def log_histogram(self, tag: str, values: list[float], step: int) -> None:
        """Nothing: each layer's sparsity is a row of its own."""

    def close(self, final: dict[str, float] | None) -> None:
        self.file.close()
