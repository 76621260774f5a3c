"""Synthetic images that are learnable yet cost nothing: for smoke tests and CI."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from prunecli.data._registry import register_dataset
from prunecli.data.bundle import DataBundle, ImageTensorDataset
from prunecli.errors import ConfigError

# Class patterns are drawn at this resolution and upsampled, so they are smooth blobs a small conv can see.
_PATTERN_SIDE = 4


@register_dataset("fake")
def fake(
    *,
    num_samples: int = 500,
    num_classes: int = 10,
    in_channels: int = 3,
    image_size: int | None = 32,
    val_fraction: float = 0.2,
    seed: int = 0,
    signal: float = 0.15,
) -> DataBundle:
    """Gaussian noise around one smooth random pattern per class, a pure function of its arguments.

    Each image is ``signal * pattern[label] + N(0, 1)`` noise; labels are balanced (``i % num_classes``,
    shuffled). The default ``signal`` is weak enough that accuracy means something: the ``cnn`` model
    reaches about 40% validation accuracy after one epoch and over 90% after two (chance is 10%).

    Args:
        num_samples: Images in both splits together.
        num_classes: Distinct labels.
        in_channels: Channels per image.
        image_size: Side length (None means 32).
        val_fraction: Fraction held out for validation (rounded up).
        seed: Seed of the patterns, the noise, the labels and the split.
        signal: Amplitude of the class pattern relative to the unit noise.
    """
    size = image_size or 32
    for key, value in (("num_samples", num_samples), ("num_classes", num_classes), ("in_channels", in_channels)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"dataset.{key}", value, "a positive integer")
    n_val = math.ceil(num_samples * val_fraction)
    if n_val < 1 or num_samples - n_val < 1:
        raise ConfigError("dataset.num_samples", num_samples, f"enough samples for both splits at "
                          f"val_fraction={val_fraction}")
    g = torch.Generator().manual_seed(seed)
    patterns = torch.randn(num_classes, in_channels, _PATTERN_SIDE, _PATTERN_SIDE, generator=g)
    patterns = F.interpolate(patterns, size=(size, size), mode="bilinear", align_corners=False)
    patterns = patterns / patterns.flatten(1).std(dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)
    labels = (torch.arange(num_samples) % num_classes)[torch.randperm(num_samples, generator=g)]
    noise = torch.randn(num_samples, in_channels, size, size, generator=g)
    images = signal * patterns[labels] + noise
    return DataBundle(
        train=ImageTensorDataset(images[n_val:], labels[n_val:]),
        val=ImageTensorDataset(images[:n_val], labels[:n_val]),
        in_channels=in_channels, num_classes=num_classes, image_size=size, name="fake",
    )
