"""What a dataset builder returns: the two splits, the sizes a model is built for, and the task they serve."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import torch
from torch.utils.data import Dataset, TensorDataset


@dataclass(frozen=True)
class DataBundle:
    """A train and a validation split, the sizes a model is built for, and the task they serve.

    An image bundle holds ``(float tensor CxHxW, int label)`` samples and sets the three image sizes; a text
    bundle holds dicts of tensors (``input_ids`` ``[seq_len]``; ``attention_mask`` where there is padding;
    ``labels`` for task ``text_classification``, which also sets ``num_classes``), sets ``vocab_size`` and
    ``seq_len`` and leaves the image sizes None.

    Attributes:
        train: Training samples.
        val: Validation samples (the official test split for datasets that ship one).
        in_channels: ``C`` of every image (None for text).
        num_classes: Labels are ``0 .. num_classes - 1`` (None for text).
        image_size: ``H == W`` of every image (None for text).
        name: The dataset's short name (``digits``, ``cifar10``, ``stdlib_text``, ...).
        task: The registered task (:mod:`prunecli.tasks`) that reads its batches and judges a model on them.
        vocab_size: Token ids are ``0 .. vocab_size - 1`` (text only).
        seq_len: Tokens per sample (text only).
        recorded: Dataset settings the builder resolved (absolute file paths, the order of string class labels):
            the engine writes them into the run's ``dataset`` config, so a checkpoint rebuilds the same data.
    """

    train: Dataset
    val: Dataset
    in_channels: Optional[int]
    num_classes: Optional[int]
    image_size: Optional[int]
    name: str
    task: str = "image_classification"
    vocab_size: Optional[int] = None
    seq_len: Optional[int] = None
    recorded: dict[str, Any] = field(default_factory=dict)


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
