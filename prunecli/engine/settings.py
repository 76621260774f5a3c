"""The ``trainer`` config node, checked once and turned into a typed :class:`TrainerSettings`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

from prunecli.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def _int(node: Mapping[str, Any], key: str, minimum: int, *, optional: bool = False) -> Optional[int]:
    value = node.get(key)
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        allowed = f"an integer >= {minimum}" + (" or null" if optional else "")
        raise ConfigError(f"trainer.{key}", value, allowed)
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

    @classmethod
    def from_config(cls, node: Mapping[str, Any]) -> "TrainerSettings":
        """Check every value; a bad one raises :class:`ConfigError` naming ``trainer.<key>``."""
        precision = node.get("precision", "auto")
        if precision not in PRECISIONS:
            raise ConfigError("trainer.precision", precision, PRECISIONS)
        device = str(node.get("device", "auto"))
        if device.split(":")[0] not in ("auto", "cpu", "cuda", "mps"):
            raise ConfigError("trainer.device", device, "auto, cpu, cuda, cuda:<index> or mps")
        clip = node.get("grad_clip")
        if clip is not None and (isinstance(clip, bool) or not isinstance(clip, (int, float)) or clip <= 0):
            raise ConfigError("trainer.grad_clip", clip, "a number > 0 or null")
        resume = node.get("resume")
        resume_override = node.get("resume_override", False)
        if not isinstance(resume_override, bool):
            raise ConfigError("trainer.resume_override", resume_override, "true or false")
        return cls(
            epochs=_int(node, "epochs", 0),
            pretrain_epochs=_int(node, "pretrain_epochs", 0),
            max_steps=_int(node, "max_steps", 1, optional=True),
            batch_size=_int(node, "batch_size", 1),
            eval_batch_size=_int(node, "eval_batch_size", 1),
            accumulate=_int(node, "accumulate", 1),
            grad_clip=None if clip is None else float(clip),
            device=device,
            precision=precision,
            num_workers=_int(node, "num_workers", 0),
            checkpoint_every=_int(node, "checkpoint_every", 1, optional=True),
            resume=None if resume is None else str(resume),
            resume_override=resume_override,
            progress=_flag(node, "progress"),
        )
