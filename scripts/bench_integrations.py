"""Step-time overhead of :class:`prunecli.integrations.hf.PruningCallback` inside a ``transformers.Trainer``.

The same tiny BERT (from a config) trains on the same synthetic token task through a real ``Trainer``, with and
without the callback (``block_4x1``, 80%, masks final at 30% of the run). A timer callback takes the wall time
between consecutive ``on_step_end`` events (everything of an optimizer step: data, forward, backward, pruner
hooks, optimizer), as wall time and as the main thread's CPU time. Steady state = the steps after the last mask
update plus ``--settle`` steps; the median over those steps is taken per run (the mean for the whole run,
mask updates included), runs alternate dense / pruned (so load drift hits both), and the table shows the
median over ``--repeats`` runs, the ratio (goal <= 1.05x) and the range of the per-run ratios.

Usage: ``python scripts/bench_integrations.py [--steps 120] [--repeats 5] [--hidden 32] [--threads 1]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import prunecli  # noqa: F401  (first: prepares the torchvision import of transformers' models on a CPU torch)

# isort: split
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)
from transformers import logging as hf_logging

from prunecli.integrations.hf import PruningCallback

SEQ, VOCAB, END = 32, 64, 0.3


class StepTimer(TrainerCallback):
    """Time between consecutive ``on_step_end`` events, by the step that ended: wall time, and the main
    thread's CPU time (with one torch thread and no loader workers all the work is on that thread, so CPU time
    is what a step costs without the waits a shared, loaded machine adds)."""

    def __init__(self) -> None:
        self.last: tuple[float, float] | None = None
        self.wall: dict[int, float] = {}
        self.cpu: dict[int, float] = {}
        self.events: dict[int, float] = {}  # CPU time inside the pruning callback's events, per step

    def on_step_end(self, args, state, control, **kwargs) -> None:
        now = (time.perf_counter(), time.thread_time())
        if self.last is not None:
            self.wall[state.global_step] = now[0] - self.last[0]
            self.cpu[state.global_step] = now[1] - self.last[1]
        self.last = now


class TimedPruning(PruningCallback):
    """The pruning callback, with the CPU time spent in its per-step events summed by the step they ran in
    (the pruner's gradient hooks run inside backward and are not counted here)."""

    EVENTS = ("on_step_begin", "on_pre_optimizer_step", "on_optimizer_step", "on_step_end")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.spent: dict[int, float] = {}
        for event in self.EVENTS:
            setattr(self, event, self._timed(getattr(self, event)))

    def _timed(self, hook):
        def timed(args, state, control, **kwargs):
            start = time.thread_time()
            hook(args, state, control, **kwargs)
            step = state.global_step - (hook.__name__ == "on_step_end")  # on_step_end runs after the increment
            self.spent[step] = self.spent.get(step, 0.0) + time.thread_time() - start

        return timed


def tiny_bert(hidden: int) -> BertForSequenceClassification:
    torch.manual_seed(0)
    return BertForSequenceClassification(BertConfig(
        vocab_size=VOCAB, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=2 * hidden, max_position_embeddings=SEQ, num_labels=2))


def token_task(n: int) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    labels = torch.randint(0, 2, (n,), generator=g)
    tokens = torch.randint(0, VOCAB // 2, (n, SEQ), generator=g) + labels[:, None] * (VOCAB // 2)
    return [{"input_ids": t, "attention_mask": torch.ones(SEQ, dtype=torch.long), "labels": y}
            for t, y in zip(tokens, labels)]


def run(prune: bool, steps: int, hidden: int, batch: int) -> StepTimer:
    """The step times of one Trainer run."""
    timer = StepTimer()
    callbacks = [TimedPruning("block_4x1", sparsity=0.8, overrides=[f"schedule.end={END}"])] if prune else []
    with tempfile.TemporaryDirectory() as out:
        args = TrainingArguments(output_dir=out, use_cpu=True, report_to=[], max_steps=steps,
                                 per_device_train_batch_size=batch, learning_rate=1e-3, save_strategy="no",
                                 logging_strategy="no", disable_tqdm=True, seed=0, dataloader_num_workers=0)
        trainer = Trainer(model=tiny_bert(hidden), args=args, train_dataset=token_task(steps * batch),
                          callbacks=[*callbacks, timer])
        trainer.remove_callback(PrinterCallback)  # its end-of-run metrics line would break the table
        trainer.train()
    if prune:
        pruner = callbacks[0].pruner
        assert abs(pruner.report().sparsity - 0.8) < 0.01 and not pruner._reapply_each_step
        timer.events = callbacks[0].spent
    return timer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--settle", type=int, default=5, help="steps after the last mask update left out")
    a = parser.parse_args()
    torch.set_num_threads(a.threads)
    hf_logging.set_verbosity_error()
    steady_from = round(END * a.steps) + a.settle
    run(True, 2 * steady_from, a.hidden, a.batch)  # warm-up: imports, allocator, first-call paths
    rows = {f"steady state (steps > {steady_from}), CPU": ("cpu", True), "steady state, wall": ("wall", True),
            "whole run incl. mask updates, CPU": ("cpu", False)}
    tables: dict[str, dict[bool, list[float]]] = {label: {False: [], True: []} for label in rows}
    inside: list[float] = []
    for _ in range(a.repeats):
        for prune in (False, True):
            timer = run(prune, a.steps, a.hidden, a.batch)
            for label, (clock, steady) in rows.items():
                times = getattr(timer, clock)
                kept = [t for s, t in times.items() if s > steady_from or not steady]
                tables[label][prune].append(statistics.median(kept) if steady else statistics.mean(kept))
            if prune:
                inside.append(statistics.median(t for s, t in timer.events.items() if s > steady_from))
    load = os.getloadavg()[0]
    print(f"tiny BERT (hidden {a.hidden}, 2 layers, seq {SEQ}, batch {a.batch}), Trainer use_cpu, "
          f"{a.threads} thread(s), {a.steps} steps x {a.repeats} runs each, load avg {load:.2f}")
    print(f"{'':34}{'dense ms':>10}{'callback ms':>13}{'ratio':>8}   per-run ratios (noise)")
    for label, table in tables.items():
        dense, pruned = statistics.median(table[False]) * 1e3, statistics.median(table[True]) * 1e3
        ratios = sorted(p / d for d, p in zip(table[False], table[True]))
        print(f"{label:34}{dense:10.2f}{pruned:13.2f}{pruned / dense:8.3f}x   "
              f"{ratios[0]:.3f} .. {ratios[-1]:.3f}")
    events, dense = statistics.median(inside) * 1e3, statistics.median(tables[next(iter(rows))][False]) * 1e3
    print(f"CPU time inside the callback's step events, steady state: {events:.3f} ms per step "
          f"({events / dense:.1%} of a dense step)")


if __name__ == "__main__":
    main()
