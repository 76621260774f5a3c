"""Data loaders whose order is a pure function of (seed, phase, epoch), so a run resumes mid-epoch exactly."""

from __future__ import annotations

from typing import Iterator, Sized

import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset


def epoch_seed(seed: int, phase: int, epoch: int) -> int:
    """The seed of one epoch's shuffle: distinct per phase and epoch, independent of the global RNG."""
    return (seed * 1_000_003 + phase * 10_007 + epoch) % 2**63


class EpochSampler(Sampler[int]):
    """A shuffle fixed by :func:`epoch_seed`, starting ``start`` samples into the epoch (for resuming).

    Call :meth:`set_epoch` before iterating an epoch.
    """

    def __init__(self, data: Sized, seed: int, phase: int = 0):
        self.n, self.seed, self.phase = len(data), seed, phase
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        # A resume whose epoch is fully trained goes to the epoch's end, never here (engine.loop.run_phase).
        assert 0 <= start < max(self.n, 1), f"start {start} outside an epoch of {self.n} samples"
        self.epoch, self.start = epoch, start

    def __iter__(self) -> Iterator[int]:
        g = torch.Generator().manual_seed(epoch_seed(self.seed, self.phase, self.epoch))
        return iter(torch.randperm(self.n, generator=g)[self.start :].tolist())

    def __len__(self) -> int:
        return self.n - self.start


def share(n: int, rank: int, world: int) -> tuple[int, int]:
    """``[start, end)`` of ``rank``'s contiguous part of ``n`` items split over ``world`` ranks (sizes differ by at
    most one, the larger parts first, as :func:`torch.tensor_split`)."""
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


class RankBatches(Sampler[list[int]]):
    """The global batches of an :class:`EpochSampler`'s shuffle, each cut into ``world`` parts: this rank gets its
    part of every batch, so the ranks together train on the batches one process would (data-parallel runs,
    :mod:`prunecli.engine.distributed`). Call :meth:`set_epoch` before iterating an epoch."""

    def __init__(self, sampler: EpochSampler, batch_size: int, rank: int, world: int):
        self.sampler, self.batch_size, self.rank, self.world = sampler, batch_size, rank, world

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.sampler.set_epoch(epoch, start_batch * self.batch_size)

    def weight(self, batch: int) -> float:
        """The loss factor of global batch ``batch`` on this rank: its share of the batch's samples times the
        world size (1 when the batch splits evenly over the ranks), so DDP's mean of the ranks' gradients is the
        batch's mean gradient."""
        size = min(self.batch_size, self.sampler.n - batch * self.batch_size)
        start, end = share(size, self.rank, self.world)
        return (end - start) * self.world / size

    def __iter__(self) -> Iterator[list[int]]:
        order = list(self.sampler)
        for b in range(0, len(order), self.batch_size):
            batch = order[b:b + self.batch_size]
            start, end = share(len(batch), self.rank, self.world)
            yield batch[start:end]

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)


def train_loader(data: Dataset, batch_size: int, seed: int, phase: int, num_workers: int, rank: int = 0,
                 world: int = 1) -> DataLoader:
    """A shuffling loader over ``data`` driven by an :class:`EpochSampler` (cut into this rank's parts of each
    global batch of ``batch_size`` by :class:`RankBatches` when ``world`` > 1).

    The loader gets its own generator (for worker seeds) so that starting an epoch draws nothing from the
    global RNG, which would make a resumed run drift from an uninterrupted one.
    """
    sampler = EpochSampler(data, seed, phase)  # type: ignore[arg-type]
    generator = torch.Generator().manual_seed(seed)
    if world > 1:
        return DataLoader(data, batch_sampler=RankBatches(sampler, batch_size, rank, world), num_workers=num_workers,
                          generator=generator, persistent_workers=False)
    return DataLoader(data, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      generator=generator, persistent_workers=False)


def eval_loader(data: Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    """A loader in dataset order; its own generator keeps the global RNG untouched."""
    return DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      generator=torch.Generator().manual_seed(0))


def rank_part(data: Dataset, rank: int, world: int) -> Dataset:
    """This rank's contiguous part of ``data`` (for evaluation, whose sums are added over ranks)."""
    if world == 1:
        return data
    start, end = share(len(data), rank, world)  # type: ignore[arg-type]
    return Subset(data, range(start, end))


def start_epoch(loader: DataLoader, epoch: int, batches_done: int = 0) -> int:
    """Point the loader at ``epoch``, skipping ``batches_done`` batches; returns the batches left."""
    if isinstance(loader.batch_sampler, RankBatches):
        loader.batch_sampler.set_epoch(epoch, batches_done)
        sampler = loader.batch_sampler.sampler
    else:
        sampler = loader.sampler  # type: ignore[assignment]
        sampler.set_epoch(epoch, batches_done * loader.batch_size)  # type: ignore[operator]
    loader.generator.manual_seed(epoch_seed(sampler.seed, sampler.phase, epoch))  # type: ignore[union-attr]
    return len(loader)
