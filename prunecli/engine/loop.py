"""The training loop. The engine owns it; a pruner only reacts to the hooks of :mod:`prunecli.hooks`.

A run has up to two phases, each with its own optimizer and LR schedule: dense pre-training (no pruner), then
pruning with fine-tuning, during which the pruner's hooks are called in the documented order. With a
``rounds`` node, the pruning phase repeats as rounds of prune -> rewind -> fine-tune (:mod:`prunecli.engine.rounds`).
"""

from __future__ import annotations

import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from prunecli._atomic import write_bytes
from prunecli.checkpoint import Checkpoint, load_checkpoint
from prunecli.config import build_pruner, check_pruner_config
from prunecli.engine.data import start_epoch
from prunecli.engine.evaluation import describe
from prunecli.engine.evaluator import run_evaluator
from prunecli.engine.oneshot import oneshot_phase, oneshot_settings
from prunecli.engine.progress import EpochBar
from prunecli.engine.ranks import check_masks, share_pruner, train_metrics, validate
from prunecli.engine.rounds import check_rewind_step, rewind, round_config, round_sparsity, snapshot
from prunecli.engine.runtime import autocast
from prunecli.engine.setup import Phase, Run, make_phase, phase_steps, pretrain_epochs, pruner_config
from prunecli.engine.state import Position, check_resume_config, current_masks, restore, save, sparsity_stats

log = logging.getLogger(__name__)

_BAR_EVERY = 10  # optimizer steps between progress-bar refreshes (each one syncs the device)


@dataclass
class TrainResult:
    """What :func:`train` returns: metrics of the dense and the pruned model, and the pruner's report."""

    dense: dict[str, float]
    final: dict[str, float]
    best_accuracy: float
    report: dict[str, Any]
    steps: int
    pruner: Any


def train(run: Run) -> TrainResult:
    """Pre-train (dense), evaluate the dense model, then prune and fine-tune (a one-shot preset: prune from
    calibration data, :mod:`prunecli.engine.oneshot`); resumes ``trainer.resume``."""
    shot = oneshot_settings(run)  # None for a training preset; a one-shot one is checked before pre-training
    resume = run.settings.resume
    ckpt = load_checkpoint(resume, with_state=True, key="trainer.resume") if resume else None
    pos = Position.from_dict(ckpt.state["progress"]) if ckpt else Position()
    if ckpt and run.env.rank > 0:  # the checkpoint's train sums are all ranks' (state.save): rank 0 carries them
        pos.epoch_sums = {key: 0.0 for key in pos.epoch_sums}
    if ckpt:
        check_resume_config(run.cfg, ckpt.meta.get("config") or {}, ckpt.path, run.settings.resume_override)
        log.info("resuming %s at %s epoch %d, step %d", ckpt.path, pos.phase, pos.epoch, pos.step)
        run.rewound = (ckpt.state or {}).get("rewind")
        _drop_later_metrics(run, ckpt, ckpt.state["progress"].get("metrics_rows"))  # None: an older checkpoint
    elif run.rounds is not None and run.rounds.snapshot_at_start:
        run.rewound = snapshot(run.model)
    if pos.phase == "pretrain":
        pretrain(run, pos, ckpt, check=shot is None)
        pos, ckpt = Position(phase="prune", metrics_rows=pos.metrics_rows), None
    if not pos.dense:
        pos.dense = validate(run)
        log.info("dense model: %s", describe(run.task, pos.dense))
        _write_metrics(run, pos, {"phase": "dense", **pos.dense})
    if shot is not None:
        phase = oneshot_phase(run, shot)
    elif run.rounds is not None:
        phase = train_rounds(run, pos, ckpt)
    else:
        phase = make_pruning_phase(run)
        phase.hooks.on_train_begin()
        if ckpt:  # after on_train_begin, so the saved state wins over anything it did
            restore(run, phase, ckpt)
        run_phase(run, phase, pos)
    if phase.total_steps == 0:  # trainer.epochs=0: the masks of step 0 (one-shot pruning), no fine-tuning
        phase.hooks.on_step_begin(0)
        phase.hooks.on_step_end()
    phase.hooks.on_train_end()
    _check_masks(run, phase, pos.step)
    _log_masks(run, phase, pos.step, final=True)  # a one-shot preset's masks too
    if not pos.last:
        phase.hooks.on_before_eval()
        pos.last = {**validate(run), **_sparsity(phase)}
        phase.hooks.on_after_eval()
    save(run, phase, pos, "last")
    return TrainResult(dense=pos.dense, final=pos.last, best_accuracy=pos.best_accuracy,
                       report=sparsity_stats(run, phase), steps=pos.step, pruner=phase.hooks)


def pretrain(run: Run, pos: Position, ckpt: Checkpoint | None, check: bool = True) -> None:
    """Dense epochs before pruning (no hooks), after checking the pruner config (``check``; a one-shot preset's
    was checked already) so a typo fails fast (what needs the model, such as no layer selected, fails when the
    pruning phase builds the pruner)."""
    if check:
        check_pruner_config(pruner_config(run.cfg), phase_steps(run, run.settings.epochs)[2])
    phase = make_phase(run, "pretrain", pretrain_epochs(run))
    if run.rounds is not None and phase.total_steps > 0:
        check_rewind_step(run.rounds, phase.total_steps, "dense pre-training, trainer.pretrain_epochs")
        if run.rounds.rewind == "step" and run.rounds.rewind_step > 0:
            phase.snapshot_step = run.rounds.rewind_step
    if ckpt:
        restore(run, phase, ckpt)
    run_phase(run, phase, pos)


def make_pruning_phase(run: Run) -> Phase:
    """The pruning phase: optimizer and schedule as in :func:`make_phase`, the pruner as its hooks."""
    phase = make_phase(run, "prune", run.settings.epochs)
    phase.hooks = make_pruner(run, pruner_config(run.cfg), phase.total_steps, phase.optimizer)
    return phase


def make_pruner(run: Run, cfg: dict[str, Any], total_steps: int, optimizer=None):
    """The pruner for a phase: one example batch lets structured targets trace coupled channels, and the
    validation evaluator serves searched allocations."""
    pruner = build_pruner(run.model, cfg, total_steps=total_steps, optimizer=optimizer, evaluator=run_evaluator(run),
                          example_inputs=run.task.example_inputs(run.spec, 1, run.device))
    return share_pruner(pruner)  # the same masks on every rank of a data-parallel run


def train_rounds(run: Run, pos: Position, ckpt: Checkpoint | None) -> Phase:
    """Rounds of prune -> rewind -> fine-tune (:mod:`prunecli.engine.rounds`); returns the last round's phase.

    Each round has a fresh optimizer and LR schedule and a pruner whose masks start where the last round's ended.
    """
    rounds, base = run.rounds, pruner_config(run.cfg)
    schedule = base["schedule"] if isinstance(base["schedule"], dict) else {"name": base["schedule"]}
    name, s_i, s_f = schedule.get("name", "oneshot"), schedule.get("initial_sparsity", 0.0), schedule["final_sparsity"]
    previous: dict[str, Any] | None = None
    for r in range(max(pos.round, 1), rounds.count + 1):
        sparsity = round_sparsity(name, r, rounds.count, s_i, s_f)
        phase = make_phase(run, "prune", run.settings.epochs)
        phase.hooks = make_pruner(run, round_config(base, sparsity), phase.total_steps, phase.optimizer)
        if r == 1 and run.rewound is None and rounds.rewind == "step":
            check_rewind_step(rounds, phase.total_steps, "round 1 (no dense pre-training)")
            phase.snapshot_step = rounds.rewind_step
        phase.hooks.on_train_begin()
        if ckpt is not None and pos.round == r:  # resume inside this round
            restore(run, phase, ckpt)
            ckpt = None
        else:
            if previous is not None:
                # masks carry over; the step, the final sparsity and a search (on new weights) are the round's own
                carried = {k: v for k, v in previous.items() if k not in ("solved_sparsity", "allocation")}
                phase.hooks.load_state_dict({**carried, "step": 0})
            start_round(run, phase, r, sparsity)
            pos.round, pos.epoch, pos.batches_done, pos.step = r, 0, 0, 0
            save(run, phase, pos, "last")  # a round boundary is a checkpoint
        run_phase(run, phase, pos)
        if r < rounds.count:
            phase.hooks.on_train_end()
            previous = phase.hooks.state_dict()
    return phase


def start_round(run: Run, phase: Phase, r: int, sparsity: float) -> None:
    """Prune the trained weights to ``sparsity``, then rewind the survivors."""
    pruner = phase.hooks
    pruner.prune_to(sparsity)
    rewind(run.model, run.rounds, r, run.rewound, pruner.masks, seed=int(run.cfg.seed) * 1_000 + r)
    log.info("round %d/%d: pruned to sparsity %.4f, rewind %s", r, run.rounds.count, sparsity,
             run.rounds.rewind if run.rounds.rewind != "step" else f"step:{run.rounds.rewind_step}")


def run_phase(run: Run, phase: Phase, pos: Position) -> None:
    """Epochs of ``phase`` from ``pos`` on; each ends with an evaluation and a ``checkpoint/last``.

    A checkpoint written at an epoch's last optimizer step (``trainer.checkpoint_every``, ``trainer.max_steps``)
    resumes straight at that epoch's end: its batches are all trained.
    """
    while pos.epoch < phase.epochs and (pos.step < phase.total_steps or pos.batches_done > 0):
        if pos.batches_done == 0:
            phase.hooks.on_epoch_begin(pos.epoch)
        if pos.batches_done < phase.batches_per_epoch and pos.step < phase.total_steps:
            train_epoch(run, phase, pos)
        end_epoch(run, phase, pos, train_metrics(run, pos))


def train_epoch(run: Run, phase: Phase, pos: Position) -> None:
    """Optimizer steps over the rest of one epoch (or until ``total_steps``); sums the task's train sums in
    ``pos``."""
    s = run.settings
    left = start_epoch(phase.loader, pos.epoch, pos.batches_done)
    run.model.train()
    totals: dict[str, Any] = dict(pos.epoch_sums)  # the sums of the batches a resumed epoch already did
    micro = 0
    with EpochBar(f"{phase.name} {pos.epoch + 1}/{phase.epochs}", left, s.progress,
                  steps=(pos.step, phase.total_steps), phase=f"{phase.name} steps") as bar:
        for batch in phase.loader:
            if micro == 0:
                phase.hooks.on_step_begin(pos.step)
                _check_masks(run, phase, pos.step)
                _log_masks(run, phase, pos.step)
            last = micro + 1 == s.accumulate or pos.batches_done + 1 == phase.batches_per_epoch
            _accumulate(totals, forward_backward(run, phase, batch, pos.batches_done, sync=last))
            micro, pos.batches_done = micro + 1, pos.batches_done + 1
            bar.advance()
            if micro == s.accumulate or pos.batches_done == phase.batches_per_epoch:
                optimizer_step(run, phase)
                pos.step, micro = pos.step + 1, 0
                bar.step()
                if pos.step == phase.snapshot_step:
                    run.rewound = snapshot(run.model)
                if s.checkpoint_every and pos.step % s.checkpoint_every == 0:
                    pos.epoch_sums = _plain(totals)
                    save(run, phase, pos, "last")
                if bar.enabled and pos.step % _BAR_EVERY == 0:
                    bar.status(**run.task.metrics(_plain(totals)), **_sparsity(phase))
                if pos.step >= phase.total_steps:
                    break
    pos.epoch_sums = _plain(totals)


def forward_backward(run: Run, phase: Phase, batch: Any, index: int = 0, sync: bool = True) -> dict[str, Any]:
    """One micro-batch (number ``index`` of the epoch): the task's forward and loss (under autocast), backward of
    the loss scaled for accumulation; returns the task's detached per-batch sums. In a data-parallel run the
    gradients are averaged over ranks at the backward of the optimizer step's last micro-batch (``sync``)."""
    batch = run.task.to_device(batch, run.device)
    net = run.trained
    no_sync = net.no_sync() if run.net is not None and not sync else contextlib.nullcontext()
    with no_sync:
        with autocast(run.device, run.amp):
            loss, sums = run.task.training_step(net, batch)
        scaled = loss / run.settings.accumulate
        if run.net is not None:  # this rank's share of a batch that splits unevenly (engine.data.RankBatches.weight)
            weight = phase.loader.batch_sampler.weight(index)
            scaled = scaled * weight if weight != 1.0 else scaled
        (phase.scaler.scale(scaled) if phase.scaler is not None else scaled).backward()
    return sums


def _accumulate(totals: dict[str, Any], sums: dict[str, Any]) -> None:
    """Add one batch's sums to ``totals`` on the device, in place (no sync, no new tensor after the first batch;
    a Python number resumed from a checkpoint plus the first batch's tensor makes a fresh tensor)."""
    for key, value in sums.items():
        if key in totals:
            totals[key] += value
        else:
            totals[key] = value.clone() if isinstance(value, torch.Tensor) else value


def _plain(totals: dict[str, Any]) -> dict[str, float]:
    """Running sums as Python numbers (one device sync per tensor)."""
    return {key: value.item() if isinstance(value, torch.Tensor) else value for key, value in totals.items()}


def optimizer_step(run: Run, phase: Phase) -> None:
    """The hooks around one optimizer step, in the order of :mod:`prunecli.hooks`."""
    if phase.scaler is not None:
        phase.scaler.unscale_(phase.optimizer)  # the pruner sees true gradients
    phase.hooks.on_before_optimizer_step()
    if run.settings.grad_clip is not None:
        nn.utils.clip_grad_norm_(run.model.parameters(), run.settings.grad_clip)
    if phase.scaler is not None:
        phase.scaler.step(phase.optimizer)
        phase.scaler.update()
    else:
        phase.optimizer.step()
    phase.hooks.on_after_optimizer_step()
    phase.optimizer.zero_grad(set_to_none=True)
    if phase.scheduler is not None:
        phase.scheduler.step()
    phase.hooks.on_step_end()


def end_epoch(run: Run, phase: Phase, pos: Position, train_metrics: dict[str, float]) -> None:
    """Evaluate, call the epoch-end hooks, log a metrics line, save ``last`` (and ``best``)."""
    phase.hooks.on_before_eval()
    val = validate(run)
    phase.hooks.on_after_eval()
    phase.hooks.on_epoch_end(pos.epoch)
    sparsity = _sparsity(phase).get("sparsity", 0.0)
    pos.last = {**val, **train_metrics, "sparsity": sparsity}
    pos.epoch, pos.batches_done = pos.epoch + 1, 0
    pos.epoch_sums = {}
    lr = phase.optimizer.param_groups[0]["lr"]
    rounds = {"round": pos.round} if run.rounds is not None and phase.name == "prune" else {}
    row = {"phase": phase.name, **rounds, "epoch": pos.epoch, "step": pos.step, "lr": lr, **pos.last}
    _write_metrics(run, pos, row)
    log.info("%s epoch %d/%d: val %s, sparsity %.4f", phase.name, pos.epoch, phase.epochs, describe(run.task, val),
             sparsity)
    if phase.name == "prune" and _better(pos, val[run.task.score], sparsity):
        save(run, phase, pos, "best")  # before last: a run killed between the two redoes this epoch
    save(run, phase, pos, "last")


def _better(pos: Position, accuracy: float, sparsity: float) -> bool:
    """Best = the highest task score (``accuracy``) at the highest sparsity reached so far (so a dense early epoch
    never wins)."""
    if sparsity > pos.best_sparsity + 1e-9 or accuracy > pos.best_accuracy:
        if sparsity >= pos.best_sparsity - 1e-9:
            pos.best_accuracy, pos.best_sparsity = accuracy, max(sparsity, pos.best_sparsity)
            return True
    return False


def _check_masks(run: Run, phase: Phase, step: int) -> None:
    """``trainer.check_masks``: the same masks on every rank (a one-line error naming the step otherwise)."""
    if run.settings.check_masks and run.env.distributed:
        check_masks(current_masks(phase), step)


def _sparsity(phase: Phase) -> dict[str, float]:
    """Fraction of masked-out entries over all masks (cheap: no report)."""
    masks = current_masks(phase)
    if not masks:
        return {}
    total = sum(m.numel() for m in masks.values())
    kept = sum(int(m.sum()) for m in masks.values())
    return {"sparsity": 1.0 - kept / max(total, 1)}


def _write_metrics(run: Run, pos: Position, row: dict[str, Any]) -> None:
    if run.main:  # every rank counts the rows (a resume drops the later ones); rank 0 writes them
        with open(run.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
    pos.metrics_rows += 1
    if run.loggers is not None:
        run.loggers.log_metrics(row)


def _log_masks(run: Run, phase: Phase, step: int, final: bool = False) -> None:
    """The per-layer sparsity to the experiment loggers when the pruner has just updated its masks."""
    if run.loggers is not None and phase.name == "prune":
        run.loggers.log_masks(phase.hooks, step, final)


def _drop_later_metrics(run: Run, ckpt: Checkpoint, rows: int | None) -> None:
    """Resuming in the checkpoint's own run dir: drop the ``metrics.jsonl`` lines written after the checkpoint
    (the resumed run writes them again), so the file reads like one uninterrupted run."""
    path = run.run_dir / "metrics.jsonl"
    if not run.main or rows is None or ckpt.path.resolve().parent.parent != run.run_dir.resolve() or not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    if len(lines) > rows:
        write_bytes(path, "".join(lines[:rows]).encode())  # atomic: a kill now leaves the old file whole
