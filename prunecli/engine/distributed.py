"""Data-parallel runs: the ``trainer.strategy`` / ``devices`` / ``num_nodes`` keys, the launcher's environment,
and the process group.

Built on ``torch.distributed`` and torchrun directly, not on Lightning Fabric: ``lightning`` is only an optional
extra of prunecli (the engine depending on it would add a large core dependency), and the engine already has its
own device, AMP, seeding and bit-identical resume code, which Fabric would duplicate. Processes are never
managed here: ``prunecli prune trainer.devices=2`` on one machine re-launches itself through torchrun's own code
(:func:`torch.distributed.launcher.api.elastic_launch`, standalone rendezvous on localhost), and
``torchrun --nproc-per-node N [--nnodes M --rdzv-endpoint host:port] -m prunecli prune ...`` or a Slurm job step
(``srun``, with ``MASTER_ADDR``/``MASTER_PORT`` exported) start the processes themselves. Each process reads
its rank from the environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``; in a Slurm step
``SLURM_PROCID``, ``SLURM_NTASKS``, ``SLURM_LOCALID``) and joins a gloo (CPU) or NCCL (CUDA) process group whose
collectives time out (``PRUNECLI_DIST_TIMEOUT`` seconds, default 600), so the survivors of a killed rank stop
instead of waiting forever; torchrun stops the others first when it sees a worker die.

``trainer.batch_size`` is the *global* batch: each of the ``W`` processes trains on ``batch_size / W`` samples of
every batch, the same samples a single process would train on together (:class:`prunecli.engine.data.RankBatches`),
so a DDP run and a one-process run of the same config take the same optimizer steps on the same data.
"""

from __future__ import annotations

import datetime
import os
import sys
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch

from prunecli.errors import ConfigError

STRATEGIES = ("auto", "ddp")
DEFAULT_TIMEOUT_S = 600


@dataclass(frozen=True)
class Parallel:
    """The checked ``trainer.strategy``, ``trainer.devices`` (an int, or None for auto) and ``trainer.num_nodes``."""

    strategy: str = "auto"
    devices: Optional[int] = None
    num_nodes: int = 1

    @classmethod
    def from_config(cls, node: Mapping[str, Any]) -> "Parallel":
        strategy = node.get("strategy", "auto")
        if strategy not in STRATEGIES:
            raise ConfigError("trainer.strategy", strategy, STRATEGIES)
        devices = node.get("devices", "auto")
        if devices != "auto" and (isinstance(devices, bool) or not isinstance(devices, int) or devices < 1):
            raise ConfigError("trainer.devices", devices, "an integer >= 1 or auto")
        nodes = node.get("num_nodes", 1)
        if isinstance(nodes, bool) or not isinstance(nodes, int) or nodes < 1:
            raise ConfigError("trainer.num_nodes", nodes, "an integer >= 1")
        out = cls(strategy=strategy, devices=None if devices == "auto" else devices, num_nodes=nodes)
        if strategy != "ddp" and (out.devices or 1) * nodes > 1:
            key, value = ("trainer.devices", devices) if (out.devices or 1) > 1 else ("trainer.num_nodes", nodes)
            raise ConfigError(key, value, "1 or auto unless trainer.strategy=ddp",
                              reason=f"trainer.strategy={strategy} runs one process")
        return out


@dataclass(frozen=True)
class Env:
    """Where this process stands in a launched job: its rank, the world size, its rank on the machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched(environ: Optional[Mapping[str, str]] = None, strategy: str = "auto") -> Optional[Env]:
    """The torchrun (``RANK``/``WORLD_SIZE``) or, with ``strategy=ddp``, Slurm-step environment of this process,
    or None when no launcher started it. A launcher without a rendezvous address is a :class:`ConfigError`."""
    env = os.environ if environ is None else environ
    if "WORLD_SIZE" in env or "RANK" in env:
        names = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE")
    elif strategy == "ddp" and int(env.get("SLURM_NTASKS", "1") or 1) > 1 and "SLURM_PROCID" in env:
        names = ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE")
    else:
        return None
    try:
        rank, world = int(env.get(names[0], "0")), int(env.get(names[1], "1"))
        local = int(env.get(names[2], str(rank)))
        per_node = int(str(env.get(names[3], world)).split("(")[0])  # Slurm writes "2(x3)"
    except ValueError:
        raise ConfigError(names[1], env.get(names[1]), "integers in the launcher's rank variables") from None
    if world > 1:
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not env.get(k)]
        if missing:
            raise ConfigError(names[1], world, "a launch with a rendezvous (torchrun, or MASTER_ADDR and "
                              "MASTER_PORT exported for srun)", reason=f"{' and '.join(missing)} not set")
    return Env(rank=rank, world_size=world, local_rank=local, local_world_size=per_node)


def check_world(par: Parallel, env: Env, device: str) -> None:
    """The launched world against the config: ``devices`` (when an int) per node times ``num_nodes``, and no
    more processes on a machine than it has CUDA devices."""
    if par.devices is not None and env.distributed and par.devices * par.num_nodes != env.world_size:
        raise ConfigError("trainer.devices", par.devices, f"{env.world_size // max(par.num_nodes, 1)} or auto",
                          reason=f"the launcher started {env.world_size} processes on {par.num_nodes} node(s)")
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda and env.local_world_size > torch.cuda.device_count():
        raise ConfigError("trainer.devices", env.local_world_size, f"at most {torch.cuda.device_count()}",
                          reason="more processes than CUDA devices on this machine")


def check_request(par: Parallel, device: str) -> None:
    """A one-machine request (``trainer.devices=N``, no launcher) that can be launched here."""
    if par.num_nodes > 1:
        raise ConfigError("trainer.num_nodes", par.num_nodes, "1 without a launcher",
                          reason="start each node with torchrun --nnodes or a Slurm job step")
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda and (par.devices or 1) > torch.cuda.device_count():
        raise ConfigError("trainer.devices", par.devices, f"at most {torch.cuda.device_count()}",
                          reason="more devices than this machine has")
    if device.startswith("cuda:"):
        raise ConfigError("trainer.device", device, "auto, cpu or cuda with trainer.devices > 1",
                          reason="each process takes the CUDA device of its local rank")


def backend(device: torch.device) -> str:
    """NCCL for CUDA, gloo otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def process_device(device: torch.device, env: Env) -> torch.device:
    """The device of this process: ``cuda:<local rank>`` on CUDA, else ``device``."""
    if device.type == "cuda" and env.distributed:
        torch.cuda.set_device(env.local_rank)
        return torch.device("cuda", env.local_rank)
    return device


def init_group(env: Env, device: torch.device) -> None:
    """Join the process group (once); collectives time out after ``PRUNECLI_DIST_TIMEOUT`` seconds."""
    import torch.distributed as dist

    if dist.is_initialized() or not env.distributed:
        return
    seconds = float(os.environ.get("PRUNECLI_DIST_TIMEOUT", DEFAULT_TIMEOUT_S))
    os.environ.setdefault("RANK", str(env.rank))
    os.environ.setdefault("WORLD_SIZE", str(env.world_size))
    dist.init_process_group(backend(device), rank=env.rank, world_size=env.world_size,
                            timeout=datetime.timedelta(seconds=seconds))


def current() -> Env:
    """This process's place in the initialised process group (rank 0 of 1 without one)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return Env()
    local = int(os.environ.get("LOCAL_RANK", os.environ.get("SLURM_LOCALID", dist.get_rank())))
    return Env(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local)


def rank_seed(seed: int, rank: int) -> int:
    """The global-RNG seed of ``rank`` (rank 0 keeps ``seed``, so it draws what a single process draws)."""
    return (seed + 1_000_003 * rank) % 2**32


def launch(nproc: int, args: list[str]) -> int:
    """Run ``python -m prunecli *args`` in ``nproc`` processes through torchrun's launcher (standalone
    rendezvous on localhost); returns 0, or the exit code of the first process that failed."""
    import uuid

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=str(uuid.uuid4()),
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, monitor_interval=0.5,
                          start_method="spawn")
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # torchrun's default for several processes per machine
    try:
        elastic_launch(config, entrypoint=sys.executable)("-m", "prunecli", *args)
    except ChildFailedError as err:
        first = min(err.failures.values(), key=lambda f: f.timestamp)
        return first.exitcode if first.exitcode > 0 else 1
    return 0


def start(par: Parallel, device_name: str) -> Env:
    """Join the launched job's process group (once) and return this process's place in it; ``Env()`` (rank 0 of
    1) for a single process. ``trainer.devices`` > 1 in a process no launcher started is a ConfigError (the CLI
    re-launches itself before it gets here)."""
    from prunecli.engine.runtime import pick_device

    env = launched(strategy=par.strategy)
    if env is None or not env.distributed:
        if (par.devices or 1) * par.num_nodes > 1:
            raise ConfigError("trainer.devices", par.devices, "1 or auto in a process no launcher started",
                              reason="run it with prunecli prune, torchrun or a Slurm job step")
        return Env()
    check_world(par, env, device_name)
    init_group(env, process_device(pick_device(device_name), env))
    return env
