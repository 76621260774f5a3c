"""The registry of tasks by name (what a dataset bundle and a model spec name as ``task``)."""

from __future__ import annotations

from typing import Any, Callable, Mapping, TypeVar

from prunecli.errors import ConfigError
from prunecli.registry import Registry
from prunecli.tasks.base import Task

# Every model spec written before specs named their task is an image classifier's.
DEFAULT_TASK = "image_classification"

_C = TypeVar("_C", bound=Callable[[], Task])
_TASKS = Registry("task")


def register_task(name: str) -> Callable[[_C], _C]:
    """Register the decorated class (built with no arguments) as task ``name``."""

    def decorate(cls: _C) -> _C:
        _TASKS.add(name, cls())
        return cls

    return decorate


def list_tasks() -> list[str]:
    """Names of the registered tasks, sorted."""
    return _TASKS.names()


def get_task(name: Any, key: str = "task") -> Task:
    """The task registered as ``name``; another value is a :class:`ConfigError` naming ``key``."""
    task = _TASKS.get(name) if isinstance(name, str) else None
    if task is None:
        raise ConfigError(key, name, list_tasks())
    return task


def task_of(spec: Mapping[str, Any]) -> Task:
    """The task of a model spec: its ``task`` name, or :data:`DEFAULT_TASK` for a spec without one."""
    return get_task(spec.get("task", DEFAULT_TASK), key="model.task")
