"""Data loaders whose order is a pure function of (seed, phase, epoch), so a run resumes mid-epoch exactly."""

from __future__ import annotations

from typing import Iterator, Sized

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


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


def train_loader(data: Dataset, batch_size: int, seed: int, phase: int, num_workers: int) -> DataLoader:
    """A shuffling loader over ``data`` driven by an :class:`EpochSampler`.

    The loader gets its own generator (for worker seeds) so that starting an epoch draws nothing from the
    global RNG, which would make a resumed run drift from an uninterrupted one.
    """
    sampler = EpochSampler(data, seed, phase)  # type: ignore[arg-type]
    return DataLoader(data, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      generator=torch.Generator().manual_seed(seed), persistent_workers=False)


def eval_loader(data: Dataset, batch_size: int, num_workers: int = 0) -> DataLoader:
    """A loader in dataset order; its own generator keeps the global RNG untouched."""
    return DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                      generator=torch.Generator().manual_seed(0))


def start_epoch(loader: DataLoader, epoch: int, batches_done: int = 0) -> int:
    """Point the loader at ``epoch``, skipping ``batches_done`` batches; returns the batches left."""
    sampler: EpochSampler = loader.sampler  # type: ignore[assignment]
    sampler.set_epoch(epoch, batches_done * loader.batch_size)  # type: ignore[operator]
    loader.generator.manual_seed(epoch_seed(sampler.seed, sampler.phase, epoch))  # type: ignore[union-attr]
    return len(loader)
