"""What keeps the ranks of a data-parallel run in step (:mod:`prunecli.engine.distributed` starts them).

- Metrics: each rank evaluates its shard of the validation set; the task's sums (correct, loss times samples,
  samples) are summed over ranks before the metrics are computed, so they are those of the whole set.
- Buffers: BatchNorm running statistics are averaged over ranks at each evaluation and checkpoint (DDP's
  per-step broadcast of rank 0's buffers is off): the mean of the ranks' running means is the running mean of
  the global batch's means, what one process would have.
- Masks: criteria that accumulate data per rank (gradients, activations) have their unit scores averaged over
  ranks before selection; weight criteria score rank 0's (identical) weights, broadcast; searched allocations
  evaluate on rank 0 and broadcast the choice. With ``trainer.check_masks=true`` a hash of every mask is
  compared over ranks after each step's mask update; a difference stops the run naming the step and parameter.
"""

from __future__ import annotations

import zlib
from typing import Any, Mapping

import torch
from torch import Tensor, nn

from prunecli.engine.evaluation import evaluate
from prunecli.errors import ConfigError


def _dist():
    import torch.distributed as dist

    return dist if dist.is_available() and dist.is_initialized() else None


def sum_over_ranks(totals: Mapping[str, float], device: torch.device) -> dict[str, float]:
    """``totals`` (Python numbers) summed over ranks, in float64; unchanged without a process group."""
    dist = _dist()
    if dist is None or not totals:
        return dict(totals)
    keys = sorted(totals)
    values = torch.tensor([float(totals[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(values)
    return {k: float(v) for k, v in zip(keys, values.tolist())}


@torch.no_grad()
def average_buffers(model: nn.Module) -> None:
    """Replace every floating-point buffer (BatchNorm running statistics) by its mean over ranks."""
    dist = _dist()
    buffers = [b for b in model.buffers() if b.is_floating_point()]
    if dist is None or not buffers:
        return
    flat = torch.cat([b.reshape(-1).to(torch.float64) for b in buffers])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 0
    for b in buffers:
        b.copy_(flat[offset:offset + b.numel()].view_as(b))
        offset += b.numel()


def train_metrics(run: Any, pos: Any) -> dict[str, float]:
    """The epoch's train metrics of a :class:`prunecli.engine.setup.Run` at ``pos``: of all ranks' batches in a
    data-parallel run."""
    if not run.env.distributed:
        return pos.epoch_metrics(run.task)
    return {f"train_{k}": v for k, v in run.task.metrics(sum_over_ranks(pos.epoch_sums, run.device)).items()}


def validate(run: Any) -> dict[str, float]:
    """The task's metrics on the whole validation set: in a data-parallel run each rank evaluates its part and
    the sums are added over ranks, after averaging the ranks' BatchNorm statistics (:mod:`prunecli.engine.ranks`)."""
    if not run.env.distributed:
        return evaluate(run.task, run.model, run.val_loader, run.device, run.amp)
    average_buffers(run.model)
    return evaluate(run.task, run.model, run.val_part, run.device, run.amp,
                    reduce=lambda totals: sum_over_ranks(totals, run.device))


def gather_objects(obj: Any) -> list[Any]:
    """``obj`` of every rank, in rank order (``[obj]`` without a process group)."""
    dist = _dist()
    if dist is None:
        return [obj]
    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank."""
    dist = _dist()
    if dist is None:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    dist = _dist()
    if dist is not None:
        dist.barrier()


class RankScores:
    """A criterion whose unit scores are the same on every rank: averaged over ranks for a criterion that
    observes data (each rank saw its shard), rank 0's broadcast otherwise. Everything else is the criterion's."""

    def __init__(self, criterion: Any):
        self.inner = criterion
        self.observes = bool(getattr(criterion, "needs_grad", False) or getattr(criterion, "needs_activations",
                                                                                 False))

    def score(self, site: Any) -> Tensor:
        dist = _dist()
        score = self.inner.score(site)
        if dist is None:
            return score
        score = score.float().contiguous().clone()
        if self.observes:
            dist.all_reduce(score)
            score /= dist.get_world_size()
        else:
            dist.broadcast(score, src=0)
        return score

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


class RankZeroAllocation:
    """An allocation that runs on rank 0 only (a search evaluates models there) and broadcasts its choice."""

    def __init__(self, allocation: Any):
        self.inner = allocation

    def allocate(self, scores: dict[str, Tensor], sites: dict[str, Any], sparsity: float) -> dict[str, Tensor]:
        dist = _dist()
        if dist is None:
            return self.inner.allocate(scores, sites, sparsity)
        keep = self.inner.allocate(scores, sites, sparsity) if dist.get_rank() == 0 else None
        device = next(iter(scores.values())).device if scores else torch.device("cpu")
        keep = broadcast_object({k: v.cpu() for k, v in keep.items()} if keep is not None else None)
        return {k: v.to(device) for k, v in keep.items()}

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def share_pruner(pruner: Any) -> Any:
    """Make ``pruner`` (a :class:`prunecli.pruner.Pruner`) choose the same masks on every rank: see the module
    docstring. A no-op without a process group or for hooks that are not a pruner."""
    if _dist() is None or not hasattr(pruner, "criterion"):
        return pruner
    pruner.criterion = RankScores(pruner.criterion)
    if getattr(pruner.allocation, "needs_evaluator", False):
        pruner.allocation = RankZeroAllocation(pruner.allocation)
    return pruner


def mask_hashes(masks: Mapping[str, Tensor]) -> list[int]:
    """A CRC32 of each mask's bytes, in name order."""
    return [zlib.crc32(masks[n].detach().to(torch.uint8).cpu().numpy().tobytes()) for n in sorted(masks)]


def check_masks(masks: Mapping[str, Tensor], step: int) -> None:
    """Compare the masks' hashes over ranks; a difference is a :class:`ConfigError` naming ``step`` and the
    first differing parameter (``trainer.check_masks=true``)."""
    dist = _dist()
    if dist is None or not masks:
        return
    mine = torch.tensor(mask_hashes(masks), dtype=torch.int64)
    everyone = [torch.empty_like(mine) for _ in range(dist.get_world_size())]
    dist.all_gather(everyone, mine) if dist.get_backend() == "gloo" else _gather_on_device(everyone, mine)
    names = sorted(masks)
    for rank, theirs in enumerate(everyone):
        differ = (theirs != everyone[0]).nonzero()
        if differ.numel():
            name = names[int(differ[0, 0])]
            raise ConfigError("trainer.check_masks", True, "masks identical on every rank",
                              reason=f"at step {step} the mask of {name} differs between rank 0 and rank {rank}")


def _gather_on_device(out: list[Tensor], mine: Tensor) -> None:
    """all_gather through the current CUDA device (NCCL gathers device tensors only)."""
    dist = _dist()
    device = torch.device("cuda", torch.cuda.current_device())
    parts = [torch.empty_like(mine, device=device) for _ in out]
    dist.all_gather(parts, mine.to(device))
    for o, p in zip(out, parts):
        o.copy_(p.cpu())
