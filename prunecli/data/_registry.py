"""The registry of dataset builders by short name (what users type as ``dataset=<name>``)."""

from __future__ import annotations

from typing import Callable, TypeVar

from prunecli.data.bundle import DataBundle
from prunecli.registry import Registry

DatasetBuilder = Callable[..., DataBundle]
_F = TypeVar("_F", bound=DatasetBuilder)

_DATASETS = Registry("dataset")


def register_dataset(name: str) -> Callable[[_F], _F]:
    """Register the decorated builder as dataset ``name``.

    A builder takes keyword arguments only, each with a default, and returns a :class:`DataBundle`. It
    declares the shared settings it uses (``root``, ``download``, ``val_fraction``, ``seed``,
    ``image_size``) among its parameters; :func:`prunecli.data.build_dataset` passes only those.
    """

    return _DATASETS.register(name)


def list_datasets() -> list[str]:
    """Names of the registered datasets, sorted."""
    return _DATASETS.names()


def get_dataset_builder(name: str) -> DatasetBuilder | None:
    """The builder registered as ``name``, or None."""
    return _DATASETS.get(name)
