"""Data-parallel runs from the command line, before Hydra places the run dir (called by ``RunDirCheck``).

- ``prunecli prune trainer.devices=N`` (``trainer.strategy=ddp``) in a process no launcher started claims the run
  dir, then re-runs the same command in ``N`` processes through torchrun's launcher
  (:func:`prunecli.engine.distributed.launch`) with ``hydra.run.dir`` set to that dir, and exits with their code.
- A process torchrun or a Slurm step started joins the process group; rank 0 claims the run dir and the others
  use it (without writing Hydra's ``.hydra/`` files again; each logs to ``<task>.rank<r>.log``).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, Callable

from prunecli.errors import ConfigError

log = logging.getLogger("prunecli")

USER_ERROR_EXIT = 2


def place_run_dir(config: Any, place: Callable[[Any, str], Path], quote: Callable[[str], str]) -> None:
    """Place ``hydra.run.dir`` with ``place(config, "run")`` as one process would, or for a data-parallel run as
    the module docstring says (a re-launch ends this process)."""
    from omegaconf import OmegaConf

    trainer = OmegaConf.select(config, "trainer", default=None)
    if trainer is None:  # evaluate, export: one process
        place(config, "run")
        return
    from prunecli.engine.distributed import Parallel, check_request, launch, launched, start

    try:
        par = Parallel.from_config(trainer)
        device = str(trainer.get("device", "auto"))
        env = launched(strategy=par.strategy)
        if env is None or not env.distributed:
            if (par.devices or 1) * par.num_nodes == 1:
                place(config, "run")
                return
            check_request(par, device)
        else:
            env = start(par, device)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(USER_ERROR_EXIT)
    if env is None or not env.distributed:
        path = place(config, "run")
        sys.exit(_relaunch(config, path, par.devices or 1, launch, quote))
    _share_dir(config, env, place)


def _relaunch(config: Any, path: Path, nproc: int, launch: Callable[[int, list[str]], int],
              quote: Callable[[str], str]) -> int:
    """Run this command again in ``nproc`` processes in the run dir ``path``; their exit code, explained."""
    from omegaconf import OmegaConf

    task = [str(w) for w in OmegaConf.to_container(config.hydra.overrides.task, resolve=False)]
    hydra = [str(w) for w in OmegaConf.to_container(config.hydra.overrides.hydra, resolve=False)
             if not str(w).lstrip("+").startswith("hydra.run.dir=")]
    args = [str(config.hydra.job.name), *task, *hydra, f"hydra.run.dir={quote(str(path))}"]
    code = launch(nproc, args)
    if code not in (0, USER_ERROR_EXIT):
        resume = f"continue with trainer.resume={path}" if (path / "checkpoint" / "last").is_dir() else \
            "no checkpoint was written yet"
        print(f"error: a process of the {nproc}-process run failed (exit code {code}) and the others were "
              f"stopped; {resume}", file=sys.stderr)
    return code


def _share_dir(config: Any, env: Any, place: Callable[[Any, str], Path]) -> None:
    """Rank 0 places the run dir; the others take its path (only rank 0 writes Hydra's ``.hydra/`` files)."""
    from omegaconf import open_dict, read_write

    from prunecli.engine.ranks import broadcast_object

    path = place(config, "run") if env.is_main else None
    path = Path(broadcast_object(str(path) if path is not None else None))
    if not env.is_main:
        logging.getLogger("prunecli").setLevel(logging.WARNING)  # rank 0 reports; the others only warn
        path.mkdir(parents=True, exist_ok=True)  # another machine: its log file goes there (checkpoints need a
        # filesystem all machines share, as the resume of every rank reads rank 0's)
        with read_write(config.hydra), open_dict(config.hydra):
            config.hydra.run.dir = str(path)
            config.hydra.output_subdir = None
            handlers = config.hydra.job_logging.get("handlers") or {}
            if "file" in handlers:
                handlers.file.filename = str(path / f"{config.hydra.job.name}.rank{env.rank}.log")
