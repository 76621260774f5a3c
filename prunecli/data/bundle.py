"""What a dataset builder returns: the two splits, the sizes a model is built for, and the task they serve."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset, TensorDataset


@dataclass(frozen=True)
class DataBundle:
    """A train and a validation split of ``(float tensor CxHxW, int label)`` samples, and their shape.

    Attributes:
        train: Training samples.
        val: Validation samples (the official test split for datasets that ship one).
        in_channels: ``C`` of every image.
        num_classes: Labels are ``0 .. num_classes - 1``.
        image_size: ``H == W`` of every image.
        name: The dataset's short name (``digits``, ``cifar10``, ...).
        task: The registered task (:mod:`prunecli.tasks`) that reads its batches and judges a model on them.
    """

    train: Dataset
    val: Dataset
    in_channels: int
    num_classes: int
    image_size: int
    name: str
    task: str = "image_classification"


class ImageTensorDataset(TensorDataset):
    """Images ``(N, C, H, W)`` and labels ``(N,)`` held in memory; a sample is ``(image, int label)``.

    A :class:`~torch.utils.data.TensorDataset` whose label is a Python int, like torchvision's datasets.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        if images.dim() != 4 or labels.shape != images.shape[:1]:
            raise ValueError(f"expected images (N, C, H, W) and labels (N,), got {tuple(images.shape)} "
                             f"and {tuple(labels.shape)}")
        super().__init__(images.float().contiguous(), labels.long())

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        images, labels = self.tensors
        return images[index], int(labels[index])
