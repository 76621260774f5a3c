"""``logger=tensorboard``: TensorBoard event files through ``torch.utils.tensorboard.SummaryWriter``.

Scalars for every metric, a histogram of the per-layer sparsities at each mask update, the config as text at
the start and as hyperparameters (the HParams tab, with the summary's numbers as its metrics) at the end.
``tensorboard --logdir <run or sweep dir>`` shows them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prunecli.loggers import missing_extra


class TensorBoardLogger:
    """Writes to ``log_dir`` (default ``<run dir>/tensorboard``)."""

    def __init__(self, run_dir: Path, log_dir: str | None = None):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's writer needs the tensorboard package
            raise missing_extra("tensorboard", "tensorboard") from None
        self.writer = SummaryWriter(log_dir=str(log_dir or Path(run_dir) / "tensorboard"))
        self.params: dict[str, Any] = {}

    def log_params(self, params: dict[str, Any]) -> None:
        # the HParams plugin takes numbers, strings and booleans
        self.params = {k: v if isinstance(v, (bool, int, float, str)) else str(v) for k, v in params.items()}
        lines = [f"    {key}: {value}" for key, value in params.items()]  # indented: markdown code block
        self.writer.add_text("config", "\n".join(lines), 0)

    def log_scalars(self, values: dict[str, float], step: int) -> None:
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)

    def log_histogram(self, tag: str, values: list[float], step: int) -> None:
        import numpy as np

        self.writer.add_histogram(tag, np.asarray(values, dtype=np.float64), step)

    def close(self, final: dict[str, float] | None) -> None:
        if final:
            # SummaryWriter.add_hparams would write to a new sub-run; these three summaries join this run's
            # scalars (the summary/<key> tags logged already) in the HParams tab
            from torch.utils.tensorboard.summary import hparams

            for summary in hparams(self.params, final):
                self.writer.file_writer.add_summary(summary)
        self.writer.close()
