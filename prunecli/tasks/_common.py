"""What the task functions share: the run dir, the user-error boundary, mandatory keys, the run-dir check."""

from __future__ import annotations

import functools
import logging
import sys
from pathlib import Path
from typing import Any, Callable

from hydra.experimental.callback import Callback

from prunecli.errors import CheckpointError, ConfigError

log = logging.getLogger("prunecli")

USER_ERROR_EXIT = 2
INTERRUPT_EXIT = 130


def run_dir() -> Path:
    """Hydra's output dir of the running job (version_base 1.3 does not chdir into it)."""
    from hydra.core.hydra_config import HydraConfig

    return Path(HydraConfig.get().runtime.output_dir)


def task(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Turn user errors raised by a task into one line on stderr and exit code 2, Ctrl-C into exit code 130.

    Hydra would otherwise print a traceback for any exception a job raises.
    """

    @functools.wraps(fn)
    def wrapper(cfg: Any) -> Any:
        try:
            check_interpolations(cfg)
            return fn(cfg)
        except (ConfigError, CheckpointError) as err:
            log.error("error: %s", "; ".join(line.strip() for line in str(err).splitlines() if line.strip()))
            sys.exit(USER_ERROR_EXIT)
        except KeyboardInterrupt:
            last = run_dir() / "checkpoint" / "last"
            if last.is_dir():
                log.error("interrupted: checkpoint/last in %s is intact; continue with trainer.resume=%s",
                          run_dir(), run_dir())
            else:
                log.error("interrupted before any checkpoint was written")
            sys.exit(INTERRUPT_EXIT)

    return wrapper


def check_interpolations(cfg: Any) -> None:
    """Every ``${...}`` of the config resolves, or a :class:`ConfigError` naming the key (before any work).

    OmegaConf resolves lazily, so ``sparsity=${nope}`` would otherwise fail with a traceback wherever the
    key is first read. Resolving a copy leaves interpolations the engine fills in later (``total_steps``) live.
    Top-level values go first, so ``sparsity=${nope}`` is named rather than ``schedule.final_sparsity: ${sparsity}``.
    """
    from omegaconf import OmegaConf
    from omegaconf.errors import InterpolationResolutionError

    if not OmegaConf.is_config(cfg):
        return
    raw = OmegaConf.to_container(cfg, resolve=False)
    keys = sorted(raw, key=lambda k: isinstance(raw[k], (dict, list)))   # scalars first
    try:
        for key in keys:
            if OmegaConf.is_missing(cfg, key):   # ``???``: require() names it where it is needed
                continue
            value = cfg[key]
            if OmegaConf.is_config(value):
                OmegaConf.to_container(value, resolve=True)
    except InterpolationResolutionError as err:
        value = str(err.child_node) if err.child_node is not None else None
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ConfigError(err.full_key or "config", value, "an interpolation that resolves", reason) from None


def require(cfg: Any, key: str, allowed: str) -> Any:
    """The value of a mandatory key (``???`` in the YAML), or a :class:`ConfigError` naming it."""
    from omegaconf import OmegaConf

    if OmegaConf.is_missing(cfg, key) or cfg.get(key) is None:
        raise ConfigError(key, None, allowed, reason=f"pass {key}=...")
    return cfg.get(key)


class RunDirCheck(Callback):
    """Hydra callback: an output dir that cannot be created is one ``error:`` line, not Hydra's traceback.

    Hydra creates the run dir itself, before any task code runs; this checks it first.
    """

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        self._check("hydra.run.dir", config.hydra.run.dir)

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self._check("hydra.sweep.dir", config.hydra.sweep.dir)

    @staticmethod
    def _check(key: str, value: Any) -> None:
        import os

        path = Path(str(value))
        try:
            path.mkdir(parents=True, exist_ok=True)
            writable = os.access(path, os.W_OK)
            reason = None
        except OSError as err:
            writable, reason = False, err.strerror
        if not writable:
            error = ConfigError(key, str(value), "a directory that can be created and written", reason)
            print(f"error: {error}", file=sys.stderr)
            sys.exit(USER_ERROR_EXIT)
