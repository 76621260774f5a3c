"""Image classification: batches of ``(images (N, C, H, W), labels (N,))``, cross-entropy loss, top-1 accuracy.

The model spec's sizes are ``in_channels``, ``num_classes`` and ``image_size`` (what every model builder of
:mod:`prunecli.models` takes); a spec without a ``task`` (every checkpoint before tasks were named) is this task's.
"""

from __future__ import annotations

from typing import Any, Mapping

import torch
from torch import nn

from prunecli.tasks._registry import register_task
from prunecli.tasks.base import (
    Sums,
    check_sizes,
    classification_metrics,
    classification_step,
    classification_sums,
)

# Upper bounds of the sizes a file-given spec may hold: example inputs (in_channels x image_size^2 per sample)
# and the output layer are allocated from them before any weight is checked.
SIZE_LIMITS = {"in_channels": 4096, "num_classes": 1_000_000, "image_size": 8192}
MAX_SAMPLE_ELEMENTS = 2**26


@register_task("image_classification")
class ImageClassification:
    """Mean cross-entropy (computed in float32 under autocast) and top-1 accuracy over the samples."""

    name = "image_classification"
    spec_fields = tuple(SIZE_LIMITS)
    score = "accuracy"

    def sizes(self, data: Any) -> dict[str, Any]:
        return {"in_channels": data.in_channels, "num_classes": data.num_classes, "image_size": data.image_size}

    def check_spec(self, spec: Mapping[str, Any], origin: Any, key: str) -> None:
        """Each size a positive int within :data:`SIZE_LIMITS`, one sample within :data:`MAX_SAMPLE_ELEMENTS`."""
        check_sizes(spec, origin, key, SIZE_LIMITS)
        if spec["in_channels"] * spec["image_size"] ** 2 > MAX_SAMPLE_ELEMENTS:
            raise origin.error(f"{key}.image_size={spec['image_size']}", f"with in_channels={spec['in_channels']} "
                               f"is over {MAX_SAMPLE_ELEMENTS:,} input elements per sample")

    def data_options(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        """The dataset resizes its images to the model's ``image_size``."""
        return {"image_size": spec["image_size"]}

    def to_device(self, batch: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        images, labels = batch
        return images.to(device, non_blocking=True), labels.to(device, non_blocking=True)

    def training_step(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, Sums]:
        images, labels = batch
        return classification_step(model(images), labels)

    def evaluation_step(self, model: nn.Module, batch: Any) -> Sums:
        images, labels = batch
        return classification_sums(model(images), labels)

    def metrics(self, sums: Mapping[str, float]) -> dict[str, float]:
        return classification_metrics(sums)

    def example_inputs(self, spec: Mapping[str, Any], batch_size: int = 1, device: torch.device | str = "cpu",
                       seed: int = 0) -> torch.Tensor:
        """Standard-normal images ``(batch_size, in_channels, H, W)``, the same for the same ``seed``."""
        size = spec["image_size"]
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        g = torch.Generator().manual_seed(seed)
        return torch.randn(batch_size, spec["in_channels"], h, w, generator=g).to(device)

