"""``logger=mlflow``: an MLflow run through ``mlflow.MlflowClient`` (mlflow-skinny is enough).

The config as params (flattened, ``trainer.batch_size``), every metric and the per-layer sparsities as metrics at
their optimizer step, the summary's numbers at the end; the run ends FINISHED, or FAILED when the prune failed.
Default store: ``file:<run dir>/mlruns`` (``mlflow ui --backend-store-uri <that uri>``); any tracking URI may be
set instead (a server, ``sqlite:///...``, or one shared dir for the jobs of a sweep).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from prunecli.loggers import missing_extra

PARAM_CHARS = 6000  # MLflow's limit on a param value


class MLflowLogger:
    """One MLflow run in ``experiment_name`` at ``tracking_uri`` (default ``file:<run dir>/mlruns``)."""

    def __init__(self, run_dir: Path, tracking_uri: str | None = None, experiment_name: str = "prunecli",
                 run_name: str | None = None):
        uri = tracking_uri or (Path(run_dir) / "mlruns").resolve().as_uri()
        if uri.startswith("file:"):
            # MLflow 3 keeps its file store, the one store mlflow-skinny writes without a database or a server,
            # behind this switch (it is in maintenance, not removed)
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            from mlflow import MlflowClient
        except ImportError:
            raise missing_extra("mlflow", "mlflow") from None
        self.client = MlflowClient(tracking_uri=uri)
        experiment = self._experiment(experiment_name)
        run = self.client.create_run(experiment, run_name=run_name or Path(run_dir).name,
                                     tags={"prunecli.run_dir": str(run_dir)})
        self.run_id = run.info.run_id

    def _experiment(self, name: str) -> str:
        """The experiment's id, created when missing (another job of a sweep may create it at the same time)."""
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except MlflowException:
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        self.client.log_batch(self.run_id, params=[Param(k, str(v)[:PARAM_CHARS]) for k, v in params.items()])

    def log_scalars(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in values.items()])

    def log_histogram(self, tag: str, values: list[float], step: int) -> None:
        """Nothing: MLflow has no histograms; each layer's sparsity is a metric of its own."""

    def close(self, final: dict[str, float] | None) -> None:
        self.client.set_terminated(self.run_id, "FINISHED" if final is not None else "FAILED")
