"""Where a run stands, and saving / restoring it through checkpoints so a resumed run is bit-identical."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prunecli._atomic import recover_dir
from prunecli.checkpoint import Checkpoint, save_checkpoint
from prunecli.engine.ranks import average_buffers, broadcast_object, gather_objects, sum_over_ranks
from prunecli.engine.runtime import rng_state, set_rng_state
from prunecli.engine.setup import NoHooks, Phase, Run, plain
from prunecli.errors import CheckpointError
from prunecli.tasks import Task


@dataclass
class Position:
    """Progress of a run. ``batches_done`` counts micro-batches of ``epoch`` already trained.

    ``epoch_sums`` holds the task's train sums of those batches (image classification: ``loss`` times samples,
    ``correct``, ``samples``), so an epoch resumed mid-way reports the same train metrics; ``metrics_rows`` counts
    the lines of ``metrics.jsonl`` written so far, so a resume in the same run dir drops the lines written after
    its checkpoint.
    """

    phase: str = "pretrain"
    epoch: int = 0
    batches_done: int = 0
    step: int = 0
    round: int = 0  # the round of iterative pruning (prunecli.engine.rounds) being trained; 0 without rounds
    epoch_sums: dict[str, float] = field(default_factory=dict)
    metrics_rows: int = 0
    best_accuracy: float = -1.0
    best_sparsity: float = -1.0
    dense: dict[str, float] = field(default_factory=dict)
    last: dict[str, float] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Position":
        d = dict(d)
        if "epoch_loss" in d:  # a checkpoint from before tasks: image classification's three sums by name
            d["epoch_sums"] = {"loss": d.pop("epoch_loss"), "correct": d.pop("epoch_correct", 0),
                               "samples": d.pop("epoch_seen", 0)}
        return cls(**d)

    def epoch_metrics(self, task: Task) -> dict[str, float]:
        """The task's train metrics (``train_loss``, ``train_accuracy``) over the epoch's batches trained so far."""
        return {f"train_{key}": value for key, value in task.metrics(self.epoch_sums).items()}


def current_masks(phase: Phase) -> dict[str, Any]:
    """The pruner's masks, or none in a dense phase."""
    return {} if isinstance(phase.hooks, NoHooks) else dict(phase.hooks.masks)


def sparsity_stats(run: Run, phase: Phase) -> dict[str, Any]:
    """Sparsity report of the model under the phase's masks (none before pruning), as a dict; with a pruner it
    also names the target's unit and carries the fraction of units removed and each parameter's kind."""
    from prunecli.report import sparsity_report

    if isinstance(phase.hooks, NoHooks):
        return sparsity_report(run.model, {}).to_dict()
    return {**phase.hooks.report().to_dict(), "unit": phase.hooks.unit_name}


def save(run: Run, phase: Phase, pos: Position, name: str) -> Path:
    """Write ``<run dir>/checkpoint/<name>`` with everything a resume needs.

    In a data-parallel run every rank calls it: the ranks' BatchNorm statistics are averaged (so the model goes on
    training with what the checkpoint holds), each rank's RNG state is gathered, rank 0 writes, and every rank
    raises its :class:`CheckpointError` if the write failed."""
    ranks = gather_objects(rng_state()) if run.env.distributed else None
    sums = dict(pos.epoch_sums)
    if run.env.distributed:
        average_buffers(run.model)
        sums = sum_over_ranks(sums, run.device)  # the train sums of all ranks' batches so far
    error = None
    path = run.run_dir / "checkpoint" / name
    if run.main:
        try:
            _write(run, phase, pos, path, ranks, sums)
        except CheckpointError as err:
            error = str(err)
    if run.env.distributed:
        error = broadcast_object(error)
    if error is not None:
        raise CheckpointError(error)
    return path


def _write(run: Run, phase: Phase, pos: Position, path: Path, ranks: list[Any] | None,
           sums: dict[str, float]) -> Path:
    name = path.name
    state: dict[str, Any] = {
        "progress": {**asdict(pos), "epoch_sums": sums},
        "optimizer": phase.optimizer.state_dict(),
        "lr_scheduler": phase.scheduler.state_dict() if phase.scheduler is not None else None,
        "scaler": phase.scaler.state_dict() if phase.scaler is not None else None,
        "pruner": None if isinstance(phase.hooks, NoHooks) else phase.hooks.state_dict(),
        "rng": rng_state(),
    }
    if ranks is not None:  # rank r resumes with its own RNG state (dropout differs per rank)
        state["rng_ranks"] = ranks
    if run.rewound is not None:
        state["rewind"] = run.rewound
    meta = {
        "config": plain(run.cfg),
        "model": run.spec,
        "sparsity": sparsity_stats(run, phase),
        "metrics": {"dense": pos.dense, "last": pos.last},
        "progress": {"phase": pos.phase, "round": pos.round, "epoch": pos.epoch, "step": pos.step},
    }
    try:
        return save_checkpoint(path, model_state=run.model.state_dict(), masks=current_masks(phase), meta=meta,
                               state=state)
    except OSError as err:  # a full disk, a lost mount: the previous checkpoint is untouched (replace_dir)
        reason = (err.strerror or str(err)).lower()
        raise CheckpointError(f"cannot write checkpoint/{name} in {run.run_dir}: {reason}; {_intact(path)}") from None


def _intact(path: Path) -> str:
    """What survives a failed save of ``path``: the step of the checkpoint already there, if any."""
    try:
        step = json.loads((recover_dir(path) / "meta.json").read_text())["progress"]["step"]
    except (OSError, ValueError, KeyError, TypeError):
        return f"no earlier checkpoint/{path.name} was written"
    return f"checkpoint/{path.name} from step {step} is intact"


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
    ranks = state.get("rng_ranks") or []
    if run.env.rank < len(ranks):
        set_rng_state(ranks[run.env.rank])
    elif run.env.rank == 0:
        set_rng_state(state["rng"])  # other ranks of a run saved with fewer processes keep their rank's seed


# Keys that may differ between a checkpoint's config and the resumed run's: they do not change the result.
# The global batch is the same on any number of processes, so a run may resume on another number of them.
RESUME_FREE_KEYS = ("trainer.resume", "trainer.resume_override", "trainer.progress", "trainer.num_workers",
                    "trainer.num_threads", "trainer.total_steps", "trainer.strategy", "trainer.devices",
                    "trainer.num_nodes", "trainer.check_masks")


def check_resume_config(cfg: Any, saved: dict[str, Any], path: Path, override: bool) -> None:
    """Refuse to resume the checkpoint at ``path`` with a config other than ``saved``, the one it was saved with
    (its ``meta.json``), unless ``override`` (``trainer.resume_override=true``): a :class:`CheckpointError`
    listing the keys that differ."""
    diffs = config_differences(_resolved_like(cfg, saved), saved)
    if diffs and not override:
        listed = ", ".join(f"{key} ({_short(a)} -> {_short(b)})" for key, (a, b) in diffs.items())
        raise CheckpointError(f"trainer.resume={str(path)!r} was saved with another config: {listed}; "
                              "resume without these overrides, or pass trainer.resume_override=true")


def config_differences(current: dict[str, Any], saved: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{dotted key: (saved value, current value)}`` where two plain configs differ, but for
    :data:`RESUME_FREE_KEYS`; a key missing on one side shows as ``<unset>``."""
    a, b = _dotted(saved), _dotted(current)
    free = lambda key: any(key == k or key.startswith(k + ".") for k in RESUME_FREE_KEYS)  # noqa: E731
    return {key: (a.get(key, "<unset>"), b.get(key, "<unset>")) for key in sorted(a.keys() | b.keys())
            if not free(key) and a.get(key, "<unset>") != b.get(key, "<unset>")}


def _resolved_like(cfg: Any, saved: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` (without Hydra's own node) resolved as the checkpoint's was: with its ``trainer.total_steps``,
    which the engine sets per phase and LR schedules interpolate (``T_max: ${trainer.total_steps}``)."""
    import copy

    from omegaconf import OmegaConf, open_dict, read_write

    cfg = copy.deepcopy(cfg)
    if OmegaConf.is_config(cfg):
        with read_write(cfg), open_dict(cfg):
            cfg.pop("hydra", None)
            if "trainer" in cfg:
                cfg.trainer.total_steps = (saved.get("trainer") or {}).get("total_steps")
    return plain(cfg)


def _dotted(node: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(node, dict) or not node:
        return {prefix: node} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in node.items():
        out.update(_dotted(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _short(value: Any) -> str:
    text = repr(value) if value != "<unset>" else value
    return text if len(text) <= 40 else text[:37] + "..."
