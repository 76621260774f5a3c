"""The ``trainer`` config node, checked once and turned into a typed :class:`TrainerSettings`."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

from prunecli._checks import integer, number
from prunecli.engine.distributed import Parallel
from prunecli.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
# Optimizer arguments with a floor (torch checks most of them, but lets NaN and inf through).
OPTIMIZER_MINIMUM = {"lr": 0.0, "momentum": 0.0, "dampening": 0.0, "weight_decay": 0.0, "eps": 0.0}
# LR-scheduler arguments that count steps or epochs (a schedule over -1 steps trains silently at a wrong LR).
SCHEDULER_COUNTS = ("T_max", "T_0", "T_mult", "step_size", "step_size_up", "step_size_down", "total_iters",
                    "total_steps", "epochs", "steps_per_epoch")


def _int(node: Mapping[str, Any], key: str, minimum: int, *, optional: bool = False) -> Optional[int]:
    return integer(f"trainer.{key}", node.get(key), minimum, optional=optional)


def _check_arguments(key: str, node: Optional[Mapping[str, Any]], floors: Optional[Mapping[str, float]] = None,
                     counts: tuple[str, ...] = ()) -> None:
    """The numeric arguments of an optimizer or LR-scheduler node: counts, floors, and finite everywhere."""
    for name, value in (node or {}).items():
        full = f"{key}.{name}"
        if str(name).startswith("_") or value is None or isinstance(value, bool):
            continue
        if name in counts:
            integer(full, value, 1)
        elif floors and name in floors:
            number(full, value, floors[name])
        elif isinstance(value, (int, float)):
            number(full, value)
        elif isinstance(value, Sequence) and not isinstance(value, str):   # betas, milestones
            if any(isinstance(v, float) and not math.isfinite(v) for v in value):
                raise ConfigError(full, list(value), "finite numbers")


def _threads(node: Mapping[str, Any]) -> Optional[int]:
    value = node.get("num_threads", "auto")
    if value == "auto":
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError("trainer.num_threads", value, "an integer >= 1 or auto")
    return value


def _flag(node: Mapping[str, Any], key: str) -> Optional[bool]:
    value = node.get(key, "auto")
    if value == "auto":
        return None
    if not isinstance(value, bool):
        raise ConfigError(f"trainer.{key}", value, "auto, true or false")
    return value


@dataclass(frozen=True)
class TrainerSettings:
    """Typed, checked view of ``conf/trainer/*.yaml`` (the optimizer and LR schedule stay config nodes)."""

    epochs: int
    pretrain_epochs: int
    max_steps: Optional[int]
    batch_size: int
    eval_batch_size: int
    accumulate: int
    grad_clip: Optional[float]
    device: str
    precision: str
    num_workers: int
    checkpoint_every: Optional[int]
    resume: Optional[str]
    resume_override: bool
    progress: Optional[bool]
    num_threads: Optional[int] = None  # None: auto (see prunecli.engine.runtime.set_threads)
    parallel: Parallel = Parallel()  # trainer.strategy, devices, num_nodes (prunecli.engine.distributed)
    check_masks: bool = False  # compare the masks' hashes over ranks after every step (prunecli.engine.ranks)

    @classmethod
    def from_config(cls, node: Mapping[str, Any]) -> "TrainerSettings":
        """Check every value; a bad one raises :class:`ConfigError` naming ``trainer.<key>``."""
        precision = node.get("precision", "auto")
        if precision not in PRECISIONS:
            raise ConfigError("trainer.precision", precision, PRECISIONS)
        device = str(node.get("device", "auto"))
        if device.split(":")[0] not in ("auto", "cpu", "cuda", "mps"):
            raise ConfigError("trainer.device", device, "auto, cpu, cuda, cuda:<index> or mps")
        clip = number("trainer.grad_clip", node.get("grad_clip"), 0, above=True, optional=True)
        _check_arguments("trainer.optimizer", node.get("optimizer"), floors=OPTIMIZER_MINIMUM)
        _check_arguments("trainer.lr_scheduler", node.get("lr_scheduler"), counts=SCHEDULER_COUNTS)
        resume = node.get("resume")
        resume_override = node.get("resume_override", False)
        if not isinstance(resume_override, bool):
            raise ConfigError("trainer.resume_override", resume_override, "true or false")
        check_masks = node.get("check_masks", False)
        if not isinstance(check_masks, bool):
            raise ConfigError("trainer.check_masks", check_masks, "true or false")
        return cls(
            epochs=_int(node, "epochs", 0),
            pretrain_epochs=_int(node, "pretrain_epochs", 0),
            max_steps=_int(node, "max_steps", 1, optional=True),
            batch_size=_int(node, "batch_size", 1),
            eval_batch_size=_int(node, "eval_batch_size", 1),
            accumulate=_int(node, "accumulate", 1),
            grad_clip=clip,
            device=device,
            precision=precision,
            num_workers=_int(node, "num_workers", 0),
            checkpoint_every=_int(node, "checkpoint_every", 1, optional=True),
            resume=None if resume is None else str(resume),
            resume_override=resume_override,
            progress=_flag(node, "progress"),
            num_threads=_threads(node),
            parallel=Parallel.from_config(node),
            check_masks=check_masks,
        )
