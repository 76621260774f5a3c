"""The UCI handwritten digits, embedded in scikit-learn: a real default dataset that needs no download.

Alpaydin and Kaynak, "Optical Recognition of Handwritten Digits", UCI Machine Learning Repository, 1998:
1,797 grey 8x8 images of the digits 0-9 with pixel values 0-16 (``sklearn.datasets.load_digits``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from prunecli.data._registry import register_dataset
from prunecli.data.bundle import DataBundle, ImageTensorDataset

NATIVE_SIZE = 8
_MAX_PIXEL = 16.0


@register_dataset("digits")
def digits(*, val_fraction: float = 0.2, seed: int = 0, image_size: int | None = None) -> DataBundle:
    """The digits as 1x8x8 tensors, split into train and validation, stratified by label.

    Pixels are scaled to [0, 1], then standardised with the training split's mean and standard deviation.
    With ``val_fraction=0.2`` the split is 1,437 / 360 images, the same for the same ``seed``.

    Args:
        val_fraction: Fraction of images held out for validation (rounded up, as scikit-learn does).
        seed: Seed of the split.
        image_size: Resize (bilinear) to this side length, e.g. 32 for ImageNet-style models; None keeps 8.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = torch.as_tensor(data.images, dtype=torch.float32).unsqueeze(1) / _MAX_PIXEL
    labels = torch.as_tensor(data.target, dtype=torch.long)
    train_idx, val_idx = train_test_split(
        torch.arange(len(labels)).numpy(), test_size=val_fraction, stratify=labels.numpy(), random_state=seed
    )
    train_idx, val_idx = torch.as_tensor(train_idx), torch.as_tensor(val_idx)
    size = image_size or NATIVE_SIZE
    if size != NATIVE_SIZE:
        images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False,
                               antialias=size < NATIVE_SIZE)
    mean, std = images[train_idx].mean(), images[train_idx].std()
    images = (images - mean) / std
    return DataBundle(
        train=ImageTensorDataset(images[train_idx], labels[train_idx]),
        val=ImageTensorDataset(images[val_idx], labels[val_idx]),
        in_channels=1, num_classes=10, image_size=size, name="digits",
    )
