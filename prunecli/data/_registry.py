"""The registry of dataset builders by short name (what users type as ``dataset=<name>``)."""

from __future__ import annotations

from typing import Callable, TypeVar

from prunecli.data.bundle import DataBundle

DatasetBuilder = Callable[..., DataBundle]
_F = TypeVar("_F", bound=DatasetBuilder)

_DATASETS: dict[str, DatasetBuilder] = {}


def register_dataset(name: str) -> Callable[[_F], _F]:
    """Register the decorated builder as dataset ``name``.

    A builder takes keyword arguments only, each with a default, and returns a :class:`DataBundle`. It
    declares the shared settings it uses (``root``, ``download``, ``val_fraction``, ``seed``,
    ``image_size``) among its parameters; :func:`prunecli.data.build_dataset` passes only those.
    """

    def decorate(fn: _F) -> _F:
        if name in _DATASETS:
            raise ValueError(f"dataset {name!r} is registered twice")
        _DATASETS[name] = fn
        return fn

    return decorate


def list_datasets() -> list[str]:
    """Names of the registered datasets, sorted."""
    return sorted(_DATASETS)


def get_dataset_builder(name: str) -> DatasetBuilder | None:
    """The builder registered as ``name``, or None."""
    return _DATASETS.get(name)
