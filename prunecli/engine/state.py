"""Where a run stands, and saving / restoring it through checkpoints so a resumed run is bit-identical."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prunecli.checkpoint import Checkpoint, save_checkpoint
from prunecli.engine.runtime import rng_state, set_rng_state
from prunecli.engine.setup import Phase, Run, plain
from prunecli.errors import CheckpointError


@dataclass
class Position:
    """Progress of a run. ``batches_done`` counts micro-batches of ``epoch`` already trained."""

    phase: str = "pretrain"
    epoch: int = 0
    batches_done: int = 0
    step: int = 0
    round: int = 0  # the round of iterative pruning (prunecli.engine.rounds) being trained; 0 without rounds
    best_accuracy: float = -1.0
    best_sparsity: float = -1.0
    dense: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Position":
        return cls(**d)


def current_masks(phase: Phase) -> dict[str, Any]:
    """The pruner's masks, or none in a dense phase."""
    return dict(getattr(phase.hooks, "masks", None) or {})


def sparsity_stats(run: Run, phase: Phase) -> dict[str, Any]:
    """Sparsity report of the model under the phase's masks (none before pruning), as a dict."""
    from prunecli.report import sparsity_report

    return sparsity_report(run.model, current_masks(phase)).to_dict()


def save(run: Run, phase: Phase, pos: Position, name: str) -> Path:
    """Write ``<run dir>/checkpoint/<name>`` with everything a resume needs."""
    state: dict[str, Any] = {
        "progress": asdict(pos),
        "optimizer": phase.optimizer.state_dict(),
        "lr_scheduler": phase.scheduler.state_dict() if phase.scheduler is not None else None,
        "scaler": phase.scaler.state_dict() if phase.scaler is not None else None,
        "pruner": phase.hooks.state_dict() if hasattr(phase.hooks, "state_dict") else None,
        "rng": rng_state(),
    }
    if run.rewound is not None:
        state["rewind"] = run.rewound
    meta = {
        "config": plain(run.cfg),
        "model": run.spec,
        "sparsity": sparsity_stats(run, phase),
        "metrics": {"dense": pos.dense, "last": pos.last},
        "progress": {"phase": pos.phase, "round": pos.round, "epoch": pos.epoch, "step": pos.step},
    }
    return save_checkpoint(run.run_dir / "checkpoint" / name, model_state=run.model.state_dict(),
                           masks=current_masks(phase), meta=meta, state=state)


def restore(run: Run, phase: Phase, checkpoint: Checkpoint) -> None:
    """Load model, optimizer, LR schedule, scaler, pruner and RNG states, in that order (RNG last).

    A checkpoint of another model or optimizer is a :class:`CheckpointError` naming ``trainer.resume``.
    """
    state = checkpoint.state or {}
    try:
        run.model.load_state_dict(checkpoint.model_state)
        phase.optimizer.load_state_dict(state["optimizer"])
        if phase.scheduler is not None and state.get("lr_scheduler") is not None:
            phase.scheduler.load_state_dict(state["lr_scheduler"])
        if phase.scaler is not None and state.get("scaler") is not None:
            phase.scaler.load_state_dict(state["scaler"])
    except (RuntimeError, ValueError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"trainer.resume={str(checkpoint.path)!r} does not fit this run: {first}") from None
    if state.get("pruner") is not None:
        phase.hooks.load_state_dict(state["pruner"])
    set_rng_state(state["rng"])
