"""Text classification: batches ``{"input_ids": [B, T], "attention_mask": [B, T], "labels": [B]}``, cross-entropy
over the model's logits ``[B, num_classes]``, top-1 accuracy.

The model is called as ``model(input_ids=..., attention_mask=...)`` (:func:`prunecli.metrics.call_model`: a
Hugging Face sequence classifier's output gives its ``logits``). The model spec's sizes are ``vocab_size``,
``seq_len`` and ``num_classes``.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from prunecli.metrics import call_model
from prunecli.tasks._registry import register_task
from prunecli.tasks.base import Sums, check_sizes, classification_metrics, classification_step, classification_sums

# Upper bounds of the sizes a file-given spec may hold: example inputs (seq_len ids) and the embedding and output
# layers are allocated from them before any weight is checked.
SIZE_LIMITS = {"vocab_size": 1_000_000, "seq_len": 1_000_000, "num_classes": 1_000_000}
MODEL_INPUTS = ("input_ids", "attention_mask")


@register_task("text_classification")
class TextClassification:
    """Mean cross-entropy (float32 under autocast) and top-1 ``accuracy`` (the score) over the samples."""

    name = "text_classification"
    spec_fields = tuple(SIZE_LIMITS)
    score = "accuracy"

    def sizes(self, data: Any) -> dict[str, Any]:
        return {"vocab_size": data.vocab_size, "seq_len": data.seq_len, "num_classes": data.num_classes}

    def check_spec(self, spec: Mapping[str, Any], origin: Any, key: str) -> None:
        """Each size an int within :data:`SIZE_LIMITS` (``num_classes`` >= 2)."""
        check_sizes(spec, origin, key, SIZE_LIMITS, low={"num_classes": 2})

    def data_options(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """The dataset pads and cuts its texts to the model's ``seq_len`` tokens."""
        return {"seq_len": spec["seq_len"]}

    def to_device(self, batch: Any, device: torch.device) -> dict[str, torch.Tensor]:
        return {key: value.to(device, non_blocking=True) for key, value in batch.items()}

    def training_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, Sums]:
        return classification_step(_logits(model, batch), batch["labels"])

    def evaluation_step(self, model: nn.Module, batch: Any) -> Sums:
        return classification_sums(_logits(model, batch), batch["labels"])

    def metrics(self, sums: Mapping[str, float]) -> dict[str, float]:
        return classification_metrics(sums)

    def example_inputs(self, spec: Mapping[str, Any], batch_size: int = 1, device: torch.device | str = "cpu",
                       seed: int = 0) -> dict[str, torch.Tensor]:
        """Uniformly random ``input_ids`` ``[batch_size, seq_len]`` and an all-ones ``attention_mask``, the same
        for the same ``seed``."""
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(0, spec["vocab_size"], (batch_size, spec["seq_len"]), generator=g)
        return {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}


def _logits(model: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """The model's ``[B, num_classes]`` logits of the batch's inputs (never its labels: the task owns the loss)."""
    return call_model(model, {key: batch[key] for key in MODEL_INPUTS if key in batch})

