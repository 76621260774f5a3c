"""Build what a run needs from the composed config: model, data, device, and one optimizer per phase."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
from torch import nn
from torch.utils.data import DataLoader

from prunecli._instantiate import build
from prunecli.engine.data import eval_loader, rank_part, train_loader
from prunecli.engine.distributed import Env, process_device, rank_seed, start
from prunecli.engine.rounds import Rounds
from prunecli.engine.runtime import amp_dtype, grad_scaler, pick_device, seed_everything
from prunecli.engine.settings import TrainerSettings
from prunecli.errors import ConfigError
from prunecli.hooks import HOOKS
from prunecli.metrics import Inputs, call_model
from prunecli.models import recorded_node
from prunecli.presets import pruner_config  # noqa: F401  (the engine's pruner mapping, shared with presets)
from prunecli.tasks import Task, get_task

log = logging.getLogger(__name__)

PHASES = ("pretrain", "prune")
# trainer.num_threads=auto: a CPU run whose conv/linear layers do fewer multiply-adds per training batch than
# this uses one torch thread. Such small ops gain little from intra-op threads, and on a shared machine torch's
# spinning workers slow them many-fold (the default cnn on digits, 11M per batch: see conf/trainer/default.yaml).
SMALL_STEP_MACS = 100_000_000
DEFAULT_THREADS = torch.get_num_threads()  # torch's own choice, kept before any run changes it


class NoHooks:
    """The hooks of a phase without a pruner (dense pre-training): every hook does nothing."""

    def __getattr__(self, name: str) -> Any:
        if name in HOOKS:
            return lambda *args, **kwargs: None
        raise AttributeError(name)


@dataclass
class Run:
    """Everything built once per run. ``spec`` rebuilds the model: see :func:`prunecli.checkpoint.load_model`;
    ``task`` (the dataset's) reads the batches and judges the model (:mod:`prunecli.tasks`)."""

    cfg: Any
    settings: TrainerSettings
    model: nn.Module
    data: Any  # prunecli.data.DataBundle
    spec: dict[str, Any]
    device: torch.device
    amp: Optional[torch.dtype]
    val_loader: DataLoader
    run_dir: Path
    task: Task
    rounds: Optional[Rounds] = None  # iterative pruning (prunecli.engine.rounds), or None
    rewound: Optional[dict[str, torch.Tensor]] = None  # the weights rounds rewind to, once known
    loggers: Any = None  # experiment loggers fed each metrics row and mask update (prunecli.loggers.Loggers)
    env: Env = field(default_factory=Env)  # this process's rank in a data-parallel run (prunecli.engine.distributed)
    net: Optional[nn.Module] = None  # what training calls: the model, or its DistributedDataParallel wrapper
    val_part: Optional[DataLoader] = None  # this rank's part of the validation set (its sums are added over ranks)

    @property
    def trained(self) -> nn.Module:
        """The module a training step calls (DDP's wrapper of ``model`` in a data-parallel run)."""
        return self.net if self.net is not None else self.model

    @property
    def main(self) -> bool:
        """Whether this process writes the run's files (rank 0)."""
        return self.env.is_main


@dataclass
class Phase:
    """One training phase: dense pre-training (``hooks`` = :class:`NoHooks`) or pruning (``hooks`` = the pruner)."""

    name: str
    epochs: int
    total_steps: int
    steps_per_epoch: int
    batches_per_epoch: int
    loader: DataLoader
    optimizer: torch.optim.Optimizer
    scheduler: Any
    scaler: Optional[torch.amp.GradScaler]
    hooks: Any = field(default_factory=NoHooks)
    snapshot_step: Optional[int] = None  # after this optimizer step, keep the weights as the rewind point


def setup(cfg: Any, run_dir: Path) -> Run:
    """Seed, then build the dataset, its task, the model (sized by the dataset) and the validation loader."""
    settings = TrainerSettings.from_config(cfg.trainer)
    rounds = Rounds.from_config(plain(cfg.get("rounds")), plain(cfg.get("objective")))
    env = start(settings.parallel, settings.device)
    seed_everything(int(cfg.seed))
    data = build(cfg.dataset, "dataset")
    record_dataset(cfg, data.recorded)
    task = get_task(data.task, key="dataset.task")
    sizes = task.sizes(data)
    model = build(cfg.model, "model", **sizes)
    device = process_device(pick_device(settings.device), env)
    model.to(device)
    # a Hugging Face model records its class and config, not its directory: the checkpoint alone rebuilds it
    spec = {"config": recorded_node(plain(cfg.model), model), "task": task.name, **sizes}
    sample = task.example_inputs(spec, 1, device)
    check_model_inputs(model, sample, task.name, cfg.model.get("name", cfg.model.get("_target_")))
    threads = set_threads(settings.num_threads, model, device, sample, settings.batch_size)
    log.info("%s on %s (%s): %d train / %d val samples, %s, device %s (%d CPU threads)%s",
             cfg.model.get("name", "model"), data.name, task.name, len(data.train), len(data.val),
             ", ".join(f"{k} {v}" for k, v in sizes.items()), device, threads,
             f", rank {env.rank} of {env.world_size}" if env.distributed else "")
    val_loader = eval_loader(data.val, settings.eval_batch_size, settings.num_workers)
    run = Run(cfg=cfg, settings=settings, model=model, data=data, spec=spec, device=device,
              amp=amp_dtype(settings.precision, device), val_loader=val_loader, run_dir=run_dir, task=task,
              rounds=rounds, env=env, val_part=val_loader)
    if env.distributed:
        data_parallel(run)
    return run


def data_parallel(run: Run) -> None:
    """Wrap the model in DistributedDataParallel, give this rank its part of the validation set and its own
    global-RNG seed (rank 0 keeps ``seed``: it draws what one process draws). The pruner, the checkpoints and
    evaluation use the unwrapped model, so parameter names carry no ``module.`` prefix."""
    from torch.nn.parallel import DistributedDataParallel

    env, s = run.env, run.settings
    last = len(run.data.train) % s.batch_size
    if s.batch_size < env.world_size or 0 < last < env.world_size:
        raise ConfigError("trainer.batch_size", s.batch_size, f"a global batch that gives each of the "
                          f"{env.world_size} processes a sample of every batch",
                          reason=f"{len(run.data.train)} training samples leave a last batch of {last}")
    # buffers (BatchNorm statistics) are averaged over ranks at evaluations and checkpoints (engine.ranks)
    run.net = DistributedDataParallel(run.model, device_ids=[run.device.index] if run.device.type == "cuda" else None,
                                      forward_sync_buffers=False)
    run.val_part = eval_loader(rank_part(run.data.val, env.rank, env.world_size), s.eval_batch_size, s.num_workers)
    if env.rank > 0:
        seed_everything(rank_seed(int(run.cfg.seed), env.rank))


@torch.no_grad()
def check_model_inputs(model: nn.Module, sample: Inputs, task: str, name: Any) -> None:
    """One eval-mode forward pass of the task's example inputs; a model that cannot take them (a task/model
    mismatch: ``tiny_lm`` on text classification) is a one-line :class:`ConfigError` before any training."""
    was_training = model.training
    model.eval()
    try:
        call_model(model, sample)
    except torch.OutOfMemoryError:
        raise
    except (TypeError, ValueError, RuntimeError, IndexError) as err:
        takes = ", ".join(sample) if isinstance(sample, dict) else "a tensor"
        line = next((s.strip() for s in str(err).splitlines() if s.strip()), type(err).__name__)
        raise ConfigError("model", name, f"a model for the dataset's task {task} (inputs: {takes})",
                          reason=line[:200]) from None
    finally:
        model.train(was_training)


def record_dataset(cfg: Any, recorded: dict[str, Any]) -> None:
    """Write the settings the dataset resolved (absolute paths, class order) into ``cfg.dataset``: the checkpoint
    saves that config, so ``evaluate`` rebuilds the same data from any folder."""
    if not recorded:
        return
    from omegaconf import open_dict, read_write

    with read_write(cfg), open_dict(cfg):
        for key, value in recorded.items():
            cfg.dataset[key] = value


def set_threads(num_threads: Optional[int], model: nn.Module, device: torch.device, sample: Inputs,
                batch_size: int) -> int:
    """Apply ``trainer.num_threads`` with ``torch.set_num_threads`` and return the count. ``None`` (auto): one
    thread on CPU when a training batch of ``batch_size`` samples like ``sample`` (a batch of one) takes fewer
    than :data:`SMALL_STEP_MACS` multiply-adds, else torch's default."""
    if num_threads is None:
        small = device.type == "cpu" and forward_macs(model, sample) * batch_size < SMALL_STEP_MACS
        num_threads = 1 if small else DEFAULT_THREADS
    torch.set_num_threads(num_threads)
    return num_threads


@torch.no_grad()
def forward_macs(model: nn.Module, sample: Inputs) -> int:
    """Multiply-adds of the conv and linear layers in one forward pass of ``sample`` (weight elements times
    output positions per output channel; attention's own matmuls and elementwise ops are left out)."""
    total = 0

    def count(module: nn.Module, args: Any, output: Any) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += module.weight.numel() * output.numel() // module.weight.shape[0]

    layers = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)
    handles = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, layers)]
    was_training = model.training
    try:
        model.eval()  # BatchNorm running statistics stay untouched
        call_model(model, sample)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return total


def pretrain_epochs(run: Run) -> int:
    """Dense epochs before pruning: ``trainer.pretrain_epochs``, or 0 for a model loaded from weights (a
    ``weights`` file, or a Hugging Face model directory's)."""
    loaded = run.cfg.model.get("weights") or run.cfg.model.get("path")
    return 0 if loaded else run.settings.pretrain_epochs


def make_phase(run: Run, name: str, epochs: int) -> Phase:
    """A fresh optimizer and LR schedule (by ``_target_``) for one phase of ``epochs`` epochs."""
    s = run.settings
    loader = train_loader(run.data.train, s.batch_size, int(run.cfg.seed), PHASES.index(name), s.num_workers,
                          run.env.rank, run.env.world_size)
    batches, steps_per_epoch, total = phase_steps(run, epochs)
    run.cfg.trainer.total_steps = max(total, 1)  # for LR schedules: T_max: ${trainer.total_steps}
    optimizer = build(run.cfg.trainer.optimizer, "trainer.optimizer", run.model.parameters())
    node = run.cfg.trainer.get("lr_scheduler")
    scheduler = build(node, "trainer.lr_scheduler", optimizer) if node else None
    return Phase(name=name, epochs=epochs, total_steps=total, steps_per_epoch=steps_per_epoch,
                 batches_per_epoch=batches, loader=loader, optimizer=optimizer, scheduler=scheduler,
                 scaler=grad_scaler(run.device, run.amp))


def phase_steps(run: Run, epochs: int) -> tuple[int, int, int]:
    """``(batches per epoch, optimizer steps per epoch, optimizer steps of the phase)``."""
    s = run.settings
    batches = math.ceil(len(run.data.train) / s.batch_size)
    steps_per_epoch = math.ceil(batches / s.accumulate)
    total = epochs * steps_per_epoch
    return batches, steps_per_epoch, total if s.max_steps is None else min(s.max_steps, total)


def plain(node: Any) -> Any:
    """A resolved plain-Python copy of a config node."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
