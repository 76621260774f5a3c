"""Experiment loggers: ``logger=tensorboard``, ``csv``, ``mlflow``, or several (``logger=[tensorboard,csv]``).

Each logs every row of ``metrics.jsonl`` (as ``<phase>/<metric>`` at the row's optimizer step), the per-layer
sparsity after each mask update (``layer_sparsity/<parameter>``, ``masks/sparsity`` and a histogram where the
backend has them), the composed config as hyperparameters, and the summary's numbers (``summary/<key>``) at the
end. The engine feeds one :class:`Loggers` fan-out (``run.loggers``); each backend is a small class in a module of
its own (``conf/logger/<name>.yaml`` names it), which imports its library only when built, so a backend that is not
installed is one line naming the extra. Only rank 0 of a distributed run logs.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Protocol

from prunecli.errors import ConfigError


class Backend(Protocol):
    """What a logger backend does; built from ``conf/logger/<name>.yaml`` with ``run_dir=``."""

    def log_params(self, params: dict[str, Any]) -> None:
        """The flattened config (``trainer.batch_size: 32``), once at the start."""

    def log_scalars(self, values: dict[str, float], step: int) -> None:
        """Scalars by tag at an optimizer step."""

    def log_histogram(self, tag: str, values: list[float], step: int) -> None:
        """A distribution (the per-layer sparsities); a backend without histograms ignores it."""

    def close(self, final: dict[str, float] | None) -> None:
        """End of the run: ``final`` holds the summary's numbers by tag, None when the run failed."""


def build_loggers(cfg: Any, run_dir: Path) -> Loggers | None:
    """The loggers of ``cfg.logger`` (None when there are none, or on a rank other than 0), config logged."""
    from prunecli._instantiate import build

    nodes = cfg.get("logger") or {}
    if not nodes or not is_rank_zero():
        return None
    loggers = Loggers({name: build(node, f"logger.{name}", run_dir=run_dir) for name, node in nodes.items()})
    loggers.log_config(cfg)
    return loggers


def is_rank_zero() -> bool:
    """True outside a distributed run and on its rank 0 (torchrun's ``RANK`` before the process group starts)."""
    import os

    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return os.environ.get("RANK", "0") == "0"


def missing_extra(name: str, extra: str) -> ConfigError:
    """The one-line error for a backend whose package is not installed."""
    return ConfigError("logger", name, "a logger whose package is installed", f"pip install 'prunecli[{extra}]'")


class Loggers:
    """Fan-out to the backends: the engine calls :meth:`log_metrics` for each ``metrics.jsonl`` row and
    :meth:`log_masks` after each optimizer step's hooks; the task calls :meth:`close` with the summary."""

    def __init__(self, backends: dict[str, Backend]):
        self.backends = backends
        self._seen: tuple[int, int] = (0, 0)  # (pruner id, its mask_updates) last logged

    def log_config(self, cfg: Any) -> None:
        for backend in self.backends.values():
            backend.log_params(flat_config(cfg))

    def log_metrics(self, row: dict[str, Any]) -> None:
        """One ``metrics.jsonl`` row: every number as ``<phase>/<key>`` (``prune/round2/<key>`` in rounds)."""
        step = int(row.get("step", 0))
        prefix = str(row.get("phase", "train")) + (f"/round{row['round']}" if "round" in row else "")
        values = {f"{prefix}/{k}": float(v) for k, v in row.items() if k not in ("phase", "step", "round")
                  and _number(v)}
        self._scalars(values, step)

    def log_masks(self, pruner: Any, step: int, final: bool = False) -> None:
        """Per-layer sparsity, when ``pruner`` has updated its masks since the last call (cheap otherwise); with
        ``final`` (the end of pruning) also masks set without an update (a one-shot method's)."""
        seen = (id(pruner), pruner.mask_updates)
        if seen == self._seen or (pruner.mask_updates == 0 and not final):
            return
        self._seen = seen
        per_layer = layer_sparsity(pruner.masks)
        total = sum(m.numel() for m in pruner.masks.values())
        pruned = sum(per_layer[n] * m.numel() for n, m in pruner.masks.items())
        values = {f"layer_sparsity/{n}": s for n, s in per_layer.items()}
        self._scalars({**values, "masks/sparsity": pruned / max(total, 1)}, step)
        for backend in self.backends.values():
            backend.log_histogram("masks/layer_sparsity", list(per_layer.values()), step)

    def close(self, summary: dict[str, Any] | None) -> None:
        """The summary's numbers as ``summary/<key>`` at its last step, then each backend closes."""
        final = None
        if summary is not None:
            final = {f"summary/{k}": float(v) for k, v in summary.items() if _number(v)}
            self._scalars(final, int(summary.get("steps") or 0))
        for backend in self.backends.values():
            backend.close(final)

    def _scalars(self, values: dict[str, float], step: int) -> None:
        for backend in self.backends.values():
            backend.log_scalars(values, step)


def layer_sparsity(masks: dict[str, Any]) -> dict[str, float]:
    """``{parameter: fraction of its mask that is pruned}``."""
    return {name: 1.0 - int(m.view(-1).sum()) / max(m.numel(), 1) for name, m in masks.items()}


def flat_config(cfg: Any) -> dict[str, Any]:
    """The composed config as ``{dotted key: scalar}`` (lists as JSON), resolved where it resolves."""
    from omegaconf import OmegaConf

    try:
        tree = OmegaConf.to_container(cfg, resolve=True)
    except Exception:  # noqa: BLE001  an interpolation only the engine fills in: log it as written
        tree = OmegaConf.to_container(cfg, resolve=False)
    flat: dict[str, Any] = {}

    def walk(node: Any, path: str) -> None:
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(value, f"{path}.{key}" if path else str(key))
        elif node is None or isinstance(node, (bool, int, float, str)):
            flat[path] = node
        else:
            flat[path] = json.dumps(node, default=str)

    walk(tree, "")
    return flat


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
