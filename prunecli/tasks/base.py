"""The task protocol: what a batch is and how a model is judged.

The engine, the searches' evaluator, ``evaluate``, the exports and the objectives never assume images or labels:
they ask the run's task (:func:`prunecli.tasks.task_of` a model spec, :func:`prunecli.tasks.get_task` a dataset's
``task`` name) to move a batch, run a step, turn sums into metrics and make example inputs.

Metrics are aggregated from *sums*: each step returns per-batch sums (device tensors or ints: loss x count,
hits, samples, tokens), the engine adds them up (in training without a device sync per batch) and
:meth:`Task.metrics` turns the totals into means over the whole split. A language model's perplexity is then
``exp(loss sum / token count)``, exact over any batching.
"""

from __future__ import annotations

from typing import Any, Mapping, Protocol, Union

import torch
from torch import nn

from prunecli.metrics import Inputs  # one tensor, or keyword tensors (input_ids, attention_mask)

# Per-batch or running sums keyed by name; every task reports ``samples`` (examples seen).
Sums = Mapping[str, Union[torch.Tensor, int, float]]


class Task(Protocol):
    """What a batch is and how a model is judged; one instance per task name (:mod:`prunecli.tasks`).

    Attributes:
        name: The registered name, stored as ``"task"`` in model specs (checkpoints, exports).
        spec_fields: The model spec keys the model builder takes besides its config node (its sizes).
        score: The metric (a key of :meth:`metrics`) where higher is better: it picks the best checkpoint.
    """

    name: str
    spec_fields: tuple[str, ...]
    score: str

    def sizes(self, data: Any) -> dict[str, Any]:
        """The model builder's size arguments (:attr:`spec_fields`) from a :class:`prunecli.data.DataBundle`."""

    def check_spec(self, spec: Mapping[str, Any], origin: Any, key: str) -> None:
        """Refuse a file-given spec whose sizes are malformed or too large: ``origin.error(...)``."""

    def data_options(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """Settings a dataset builder takes from a model spec so its samples fit the model."""

    def to_device(self, batch: Any, device: torch.device) -> Any:
        """A batch as the loader yields it, on ``device``."""

    def training_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, Sums]:
        """``(mean loss to back-propagate, detached per-batch sums)``; no device sync."""

    def evaluation_step(self, model: nn.Module, batch: Any) -> Sums:
        """The per-batch sums of an evaluation (called without gradients)."""

    def metrics(self, sums: Mapping[str, float]) -> dict[str, float]:
        """Means over a split from its summed sums (``{}`` gives zeros); excludes ``samples``."""

    def example_inputs(self, spec: Mapping[str, Any], batch_size: int = 1, device: torch.device | str = "cpu",
                       seed: int = 0) -> Inputs:
        """Random inputs of ``batch_size`` samples that the spec's model takes (tracing, FLOPs, ONNX, compaction)."""


def check_sizes(spec: Mapping[str, Any], origin: Any, key: str, limits: Mapping[str, int],
                low: Mapping[str, int] | None = None) -> None:
    """Each size ``spec[name]`` an int in ``[low[name] (default 1), limits[name]]``, else ``origin.error(...)``
    naming ``<key>.<name>=<value>``."""
    for name, limit in limits.items():
        value, least = spec.get(name), (low or {}).get(name, 1)
        if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= limit:
            raise origin.error(f"{key}.{name}={short(value)}", f"is not allowed: expected an integer in [{least}, "
                                                                f"{limit}]")


def classification_sums(logits: torch.Tensor, labels: torch.Tensor) -> Sums:
    """Summed cross-entropy (float32 under autocast), correct top-1 predictions and samples of one batch."""
    return {"loss": nn.functional.cross_entropy(logits.float(), labels, reduction="sum"),
            "correct": (logits.argmax(dim=1) == labels).sum(), "samples": labels.numel()}


def classification_step(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, Sums]:
    """``(mean cross-entropy to back-propagate, detached sums as in :func:`classification_sums`)``."""
    loss = nn.functional.cross_entropy(logits.float(), labels)
    n = labels.numel()
    return loss, {"loss": loss.detach() * n, "correct": (logits.argmax(dim=1) == labels).sum(), "samples": n}


def classification_metrics(sums: Mapping[str, float]) -> dict[str, float]:
    """Mean ``loss`` and ``accuracy`` over the summed samples."""
    n = max(sums.get("samples", 0), 1)
    return {"loss": float(sums.get("loss", 0.0)) / n, "accuracy": float(sums.get("correct", 0)) / n}


def short(value: Any) -> str:
    """``repr(value)``, cut to 60 characters for a one-line error."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
